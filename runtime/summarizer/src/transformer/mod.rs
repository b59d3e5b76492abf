//! Cloister's own forward pass for llama-family models (llama, qwen2) from GGUF.
//!
//! candle-transformers' quantised llama and qwen2 were 0.46x llama.cpp's generation speed on
//! these machines with 1.5x its memory: they dequantise the token embedding to f32 (0.9 GB for
//! Qwen2.5's 152k-token vocabulary), grow the KV cache by concatenation (every token copies the
//! whole cache), copy the keys for every grouped head, and candle 0.11 runs every Q4_K matrix
//! — decode included — through a repacked copy of the weights (a third more bytes per token,
//! and both copies stay in memory). Here each weight matrix is held once, compact, as read from
//! the file. Prompts are multiplied by `cloister-kernels` (Q4_K and Q6_K over eight activation
//! rows per pass; see `linear.rs`), single tokens by candle's ggml-style kernels on the same
//! bytes; the token embedding stays quantised and only the rows a prompt uses are expanded; the
//! KV cache is allocated once per generation; attention shares each pass over a key/value head
//! between all the query heads of its group (see `attention.rs`).

mod attention;
mod linear;
mod ops;

use std::io::{Read, Seek};

use cloister_kernels::Format;

use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use zeroize::Zeroizing;

pub use attention::KvCache;
use linear::{Linear, Matrix, kernel, project, project_then};
use ops::{Rope, RopeStyle};

use crate::error::SummarizeError;

/// The shape of a model, from its GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Width of the residual stream.
    pub embedding: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `heads`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Width of the feed-forward layer.
    pub ffn: usize,
    /// Tokens in the vocabulary (rows of the embedding).
    pub vocab: usize,
    /// RMS norm epsilon.
    pub eps: f32,
    /// Rotary frequency base.
    pub rope_base: f32,
    /// Rotary dimension pairing.
    pub rope: RopeStyle,
}

struct Layer {
    attn_norm: Vec<f32>,
    q: Linear,
    k: Linear,
    v: Linear,
    q_bias: Option<Vec<f32>>,
    k_bias: Option<Vec<f32>>,
    v_bias: Option<Vec<f32>>,
    o: Linear,
    ffn_norm: Vec<f32>,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// A loaded model: weights and shape. Stateless; a generation's state is its [`KvCache`].
pub struct Transformer {
    config: Config,
    embedding: Linear,
    /// `None`: the output projection is the embedding (tied weights).
    output: Option<Linear>,
    output_norm: Vec<f32>,
    layers: Vec<Layer>,
    rope: Rope,
}

impl std::fmt::Debug for Transformer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn bad(reason: impl Into<String>) -> SummarizeError {
    SummarizeError::UnsupportedModel {
        path: String::new(),
        reason: reason.into(),
    }
}

/// Whether candle 0.11 has only a scalar kernel for this type (it has SIMD ones for Q4_K,
/// Q6_K and Q8_0): 10x slower prompt processing, measured on SmolLM2's Q4_1.
fn scalar_only(t: GgmlDType) -> bool {
    matches!(t, GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1)
}

struct Loader<'a, R> {
    ct: &'a Content,
    reader: &'a mut R,
}

impl<R: Read + Seek> Loader<'_, R> {
    fn tensor(&mut self, name: &str, dims: &[usize]) -> Result<QTensor, SummarizeError> {
        if !self.ct.tensor_infos.contains_key(name) {
            return Err(bad(format!("no tensor {name}")));
        }
        let t = self.ct.tensor(self.reader, name, &Device::Cpu)?;
        if t.shape().dims() != dims {
            return Err(bad(format!(
                "tensor {name} has shape {:?}, expected {dims:?}",
                t.shape().dims()
            )));
        }
        Ok(t)
    }

    /// A weight matrix, kept compact. Types with only scalar kernels are requantised to Q8_0
    /// (deterministic, at least as precise as the source, and SIMD).
    fn linear(&mut self, name: &str, rows: usize, cols: usize) -> Result<Linear, SummarizeError> {
        self.linear_keeping(name, rows, cols, false)
    }

    /// [`Self::linear`], keeping the bytes of a candle-only type when `keep_raw` (the token
    /// embedding, looked up obliviously).
    fn linear_keeping(
        &mut self,
        name: &str,
        rows: usize,
        cols: usize,
        keep_raw: bool,
    ) -> Result<Linear, SummarizeError> {
        let t = self.tensor(name, &[rows, cols])?;
        let t = if scalar_only(t.dtype()) && cols.is_multiple_of(32) {
            QTensor::quantize(&t.dequantize(&Device::Cpu)?, GgmlDType::Q8_0)?
        } else {
            t
        };
        if let Some(format) = Format::of(t.dtype())
            && cloister_kernels::has_avx2()
        {
            let w = cloister_kernels::Matrix::new(format, &t.data()?).map_err(kernel)?;
            return Ok(Linear {
                w: Matrix::Packed(w),
                rows,
                cols,
                raw: None,
            });
        }
        let bytes = t.data()?;
        let raw = keep_raw.then(|| bytes.to_vec());
        match QStorage::from_data(bytes, &Device::Cpu, t.dtype())? {
            QStorage::Cpu(w) => Ok(Linear {
                w: Matrix::Candle(w),
                rows,
                cols,
                raw,
            }),
            _ => Err(bad(format!("tensor {name} did not load to the CPU"))),
        }
    }

    fn vector(&mut self, name: &str, len: usize) -> Result<Vec<f32>, SummarizeError> {
        let t = self.tensor(name, &[len])?;
        Ok(t.dequantize(&Device::Cpu)?.to_vec1::<f32>()?)
    }

    fn optional_vector(
        &mut self,
        name: &str,
        len: usize,
    ) -> Result<Option<Vec<f32>>, SummarizeError> {
        if self.ct.tensor_infos.contains_key(name) {
            self.vector(name, len).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Config {
    /// Reads the shape of `arch` (`llama` or `qwen2`) from the metadata.
    pub fn from_gguf(ct: &Content, arch: &str) -> Result<Self, SummarizeError> {
        let rope = match arch {
            "llama" => RopeStyle::Interleaved,
            "qwen2" => RopeStyle::Halves,
            other => return Err(bad(format!("architecture {other:?}"))),
        };
        let get = |key: &str| ct.metadata.get(&format!("{arch}.{key}"));
        let num = |key: &str| -> Result<usize, SummarizeError> {
            get(key)
                .and_then(|v| v.to_u32().ok())
                .map(|v| v as usize)
                .ok_or_else(|| bad(format!("no {arch}.{key} in the metadata")))
        };
        let embedding = num("embedding_length")?;
        let heads = num("attention.head_count")?;
        let kv_heads = num("attention.head_count_kv").unwrap_or(heads);
        if heads == 0
            || kv_heads == 0
            || !heads.is_multiple_of(kv_heads)
            || !embedding.is_multiple_of(heads)
        {
            return Err(bad(format!(
                "{heads} heads, {kv_heads} key/value heads, width {embedding}"
            )));
        }
        let head_dim = num("attention.key_length").unwrap_or(embedding / heads);
        if !head_dim.is_multiple_of(2) || num("rope.dimension_count").is_ok_and(|r| r != head_dim) {
            return Err(bad("partial or odd rotary dimensions"));
        }
        let vocab = ct
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .ok_or_else(|| bad("no token_embd.weight"))?;
        Ok(Config {
            embedding,
            layers: num("block_count")?,
            heads,
            kv_heads,
            head_dim,
            ffn: num("feed_forward_length")?,
            vocab,
            eps: get("attention.layer_norm_rms_epsilon")
                .and_then(|v| v.to_f32().ok())
                .ok_or_else(|| bad("no layer_norm_rms_epsilon"))?,
            rope_base: get("rope.freq_base")
                .and_then(|v| v.to_f32().ok())
                .unwrap_or(10_000.0),
            rope,
        })
    }
}

impl Transformer {
    /// Loads the weights of a model of shape `config` from `reader`.
    pub fn load<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        config: Config,
    ) -> Result<Self, SummarizeError> {
        let c = &config;
        let mut ld = Loader { ct, reader };
        let (q_w, kv_w) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let embedding = ld.linear_keeping("token_embd.weight", c.vocab, c.embedding, true)?;
        let output = if ct.tensor_infos.contains_key("output.weight") {
            Some(ld.linear("output.weight", c.vocab, c.embedding)?)
        } else {
            None
        };
        let output_norm = ld.vector("output_norm.weight", c.embedding)?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let n = |part: &str| format!("blk.{i}.{part}");
            layers.push(Layer {
                attn_norm: ld.vector(&n("attn_norm.weight"), c.embedding)?,
                q: ld.linear(&n("attn_q.weight"), q_w, c.embedding)?,
                k: ld.linear(&n("attn_k.weight"), kv_w, c.embedding)?,
                v: ld.linear(&n("attn_v.weight"), kv_w, c.embedding)?,
                q_bias: ld.optional_vector(&n("attn_q.bias"), q_w)?,
                k_bias: ld.optional_vector(&n("attn_k.bias"), kv_w)?,
                v_bias: ld.optional_vector(&n("attn_v.bias"), kv_w)?,
                o: ld.linear(&n("attn_output.weight"), c.embedding, q_w)?,
                ffn_norm: ld.vector(&n("ffn_norm.weight"), c.embedding)?,
                gate: ld.linear(&n("ffn_gate.weight"), c.ffn, c.embedding)?,
                up: ld.linear(&n("ffn_up.weight"), c.ffn, c.embedding)?,
                down: ld.linear(&n("ffn_down.weight"), c.embedding, c.ffn)?,
            });
        }
        Ok(Transformer {
            rope: Rope::new(c.rope, c.head_dim, c.rope_base),
            config,
            embedding,
            output,
            output_norm,
            layers,
        })
    }

    /// The model's shape.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A cache for `positions` positions of this model.
    pub fn cache(&self, positions: usize) -> KvCache {
        let c = &self.config;
        KvCache::new(c.layers, c.kv_heads, c.head_dim, positions)
    }

    /// Runs `tokens` at the cache's next positions, stores their keys and values, and returns
    /// the logits of the last one.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
    ) -> Result<Zeroizing<Vec<f32>>, SummarizeError> {
        let c = &self.config;
        let m = tokens.len();
        if m == 0 || cache.len() + m > cache.capacity() {
            return Err(bad(format!(
                "{m} tokens at position {} exceed the cache's {} positions",
                cache.len(),
                cache.capacity()
            )));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= c.vocab) {
            return Err(bad(format!("token {t} is outside the vocabulary")));
        }
        let (e, q_w, kv_w) = (c.embedding, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let buf = |n: usize| Zeroizing::new(vec![0f32; n]);
        let mut x = self.embedding.rows(tokens, e)?;
        let (mut h, mut o) = (buf(m * e), buf(m * e));
        let (mut q, mut k, mut v, mut att) =
            (buf(m * q_w), buf(m * kv_w), buf(m * kv_w), buf(m * q_w));
        let (mut gate, mut up) = (buf(m * c.ffn), buf(m * c.ffn));
        let table = self.rope.table(cache.len(), m);
        for (i, l) in self.layers.iter().enumerate() {
            ops::rms_norm(&x, &l.attn_norm, c.eps, &mut h);
            project(&[&l.q, &l.k, &l.v], &h, &mut [&mut q, &mut k, &mut v])?;
            for (t, bias) in [
                (&mut q, &l.q_bias),
                (&mut k, &l.k_bias),
                (&mut v, &l.v_bias),
            ] {
                if let Some(b) = bias {
                    ops::add_bias(t, b);
                }
            }
            self.rope.apply(&mut q, c.heads, &table);
            self.rope.apply(&mut k, c.kv_heads, &table);
            cache.store(i, &k, &v);
            cache.attend(i, &q, c.heads, &mut att);
            project(&[&l.o], &att, &mut [&mut o])?;
            ops::add_assign(&mut x, &o);

            ops::rms_norm(&x, &l.ffn_norm, c.eps, &mut h);
            project_then(&[&l.gate, &l.up], &h, &mut [&mut gate, &mut up], |o| {
                if let [g, u] = o {
                    ops::swiglu(g, u);
                }
            })?;
            project(&[&l.down], &gate, &mut [&mut o])?;
            ops::add_assign(&mut x, &o);
        }
        cache.advance(m);
        let last = &x[(m - 1) * e..];
        ops::rms_norm(last, &self.output_norm, c.eps, &mut h[..e]);
        let mut logits = buf(c.vocab);
        let output = self.output.as_ref().unwrap_or(&self.embedding);
        project(&[output], &h[..e], &mut [&mut logits])?;
        Ok(logits)
    }
}
