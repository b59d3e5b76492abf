//! Cloister's forward pass against the implementation it replaced, candle-transformers'
//! quantised llama and qwen2, on small random models written as GGUF files (both rotary
//! styles, grouped key/value heads, q/k/v biases, tied and separate output weights, Q4_K, Q6_K
//! and Q8_0 matrices): the same logits for a prompt in one pass and for each token after it.

use std::io::Cursor;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, IndexOp, Tensor};
use candle_transformers::models::{quantized_llama, quantized_qwen2};
use cloister_summarizer::transformer::{Config, Transformer};

const EMBEDDING: usize = 256;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = EMBEDDING / HEADS;
const FFN: usize = 512;
const LAYERS: usize = 2;
const VOCAB: usize = 320;

thread_local! {
    /// Whether [`model`] quantises its matrices (else every tensor is f32).
    static QUANTISED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Deterministic values in `[-scale, scale]` (xorshift).
struct Noise(u64);

impl Noise {
    fn values(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn tensor(noise: &mut Noise, dims: &[usize], dtype: GgmlDType, scale: f32, offset: f32) -> QTensor {
    let dtype = if QUANTISED.with(|q| q.get()) {
        dtype
    } else {
        GgmlDType::F32
    };
    let n = dims.iter().product();
    let v: Vec<f32> = noise.values(n, scale).iter().map(|x| x + offset).collect();
    let t = Tensor::from_vec(v, dims, &Device::Cpu).expect("tensor");
    QTensor::quantize(&t, dtype).expect("quantize")
}

/// A random model of `arch` as GGUF bytes.
fn model(arch: &str, tied: bool, seed: u64) -> Vec<u8> {
    let mut noise = Noise(seed);
    let (q_w, kv_w) = (HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add = |name: String, dims: &[usize], dtype, scale, offset| {
        tensors.push((name, tensor(&mut noise, dims, dtype, scale, offset)));
    };
    add(
        "token_embd.weight".into(),
        &[VOCAB, EMBEDDING],
        GgmlDType::Q4K,
        1.0,
        0.0,
    );
    if !tied {
        add(
            "output.weight".into(),
            &[VOCAB, EMBEDDING],
            GgmlDType::Q6K,
            0.2,
            0.0,
        );
    }
    add(
        "output_norm.weight".into(),
        &[EMBEDDING],
        GgmlDType::F32,
        0.2,
        1.0,
    );
    for i in 0..LAYERS {
        let n = |p: &str| format!("blk.{i}.{p}");
        add(
            n("attn_norm.weight"),
            &[EMBEDDING],
            GgmlDType::F32,
            0.2,
            1.0,
        );
        add(
            n("attn_q.weight"),
            &[q_w, EMBEDDING],
            GgmlDType::Q4K,
            0.2,
            0.0,
        );
        add(
            n("attn_k.weight"),
            &[kv_w, EMBEDDING],
            GgmlDType::Q4K,
            0.2,
            0.0,
        );
        add(
            n("attn_v.weight"),
            &[kv_w, EMBEDDING],
            GgmlDType::Q6K,
            0.2,
            0.0,
        );
        if arch == "qwen2" {
            add(n("attn_q.bias"), &[q_w], GgmlDType::F32, 0.5, 0.0);
            add(n("attn_k.bias"), &[kv_w], GgmlDType::F32, 0.5, 0.0);
            add(n("attn_v.bias"), &[kv_w], GgmlDType::F32, 0.5, 0.0);
        }
        add(
            n("attn_output.weight"),
            &[EMBEDDING, q_w],
            GgmlDType::Q8_0,
            0.1,
            0.0,
        );
        add(n("ffn_norm.weight"), &[EMBEDDING], GgmlDType::F32, 0.2, 1.0);
        add(
            n("ffn_gate.weight"),
            &[FFN, EMBEDDING],
            GgmlDType::Q4K,
            0.2,
            0.0,
        );
        add(
            n("ffn_up.weight"),
            &[FFN, EMBEDDING],
            GgmlDType::Q4K,
            0.2,
            0.0,
        );
        add(
            n("ffn_down.weight"),
            &[EMBEDDING, FFN],
            GgmlDType::Q6K,
            0.1,
            0.0,
        );
    }
    let u = |v: usize| Value::U32(v as u32);
    let key = |k: &str| format!("{arch}.{k}");
    let metadata = vec![
        (
            "general.architecture".to_string(),
            Value::String(arch.into()),
        ),
        (key("embedding_length"), u(EMBEDDING)),
        (key("block_count"), u(LAYERS)),
        (key("attention.head_count"), u(HEADS)),
        (key("attention.head_count_kv"), u(KV_HEADS)),
        (key("feed_forward_length"), u(FFN)),
        (key("context_length"), u(64)),
        (key("rope.dimension_count"), u(HEAD_DIM)),
        (key("rope.freq_base"), Value::F32(10_000.0)),
        (key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
    ];
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut out = Cursor::new(Vec::new());
    gguf_file::write(&mut out, &metadata, &refs).expect("write gguf");
    out.into_inner()
}

enum Reference {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
}

impl Reference {
    fn forward(&mut self, tokens: &[u32], pos: usize) -> Vec<f32> {
        let x = Tensor::new(tokens, &Device::Cpu)
            .expect("test value")
            .unsqueeze(0)
            .expect("test value");
        let logits = match self {
            Reference::Llama(m) => m.forward(&x, pos),
            Reference::Qwen2(m) => m.forward(&x, pos),
        }
        .expect("reference forward");
        logits
            .i(0)
            .expect("test value")
            .to_vec1()
            .expect("test value")
    }
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .expect("test value")
}

/// Runs a 12-token prompt, then 4 single tokens, through both and compares the logits. With f32
/// weights they must agree to float rounding and pick the same token. With quantised weights
/// both quantise activations to Q8_K; a one-ulp difference before a rounding boundary (the
/// norms sum in another order) moves a quantised activation by one step, which these random,
/// untrained layers amplify to 2-6 % of the largest logit (the same order as the gap between
/// quantised and f32 activations, measured at 3-4 %); a wrong rotary pairing, head grouping,
/// bias or cache position moves them by the whole logit scale.
fn compare(arch: &str, tied: bool, quantised: bool) {
    QUANTISED.with(|q| q.set(quantised));
    let bytes = model(arch, tied, 0x5eed_0000 + tied as u64);
    let read = || {
        let mut r = Cursor::new(bytes.clone());
        let ct = Content::read(&mut r).expect("gguf");
        (ct, r)
    };
    let (ct, mut r) = read();
    let ours = Transformer::load(&ct, &mut r, Config::from_gguf(&ct, arch).expect("config"))
        .expect("load");
    let (ct, mut r) = read();
    let mut reference = match arch {
        "llama" => Reference::Llama(
            quantized_llama::ModelWeights::from_gguf(ct, &mut r, &Device::Cpu).expect("test value"),
        ),
        _ => Reference::Qwen2(
            quantized_qwen2::ModelWeights::from_gguf(ct, &mut r, &Device::Cpu).expect("test value"),
        ),
    };
    let prompt: Vec<u32> = vec![3, 141, 59, 26, 5, 35, 89, 79, 32, 38, 46, 264];
    let mut cache = ours.cache(prompt.len() + 4);
    let mut steps: Vec<(Vec<u32>, usize)> = vec![(prompt.clone(), 0)];
    steps.extend(
        [7u32, 300, 0, 150]
            .iter()
            .enumerate()
            .map(|(i, &t)| (vec![t], prompt.len() + i)),
    );
    for (tokens, pos) in steps {
        let got = ours.forward(&tokens, &mut cache).expect("forward");
        let want = reference.forward(&tokens, pos);
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = got
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let tolerance = if quantised { 0.1 } else { 1e-5 };
        assert!(
            worst <= tolerance * scale,
            "{arch} (tied {tied}, quantised {quantised}) at position {pos}: logits differ by \
             {worst} (largest {scale})"
        );
        if !quantised {
            assert_eq!(argmax(&got), argmax(&want), "{arch} at position {pos}");
        }
    }
    assert_eq!(cache.len(), prompt.len() + 4);
}

#[test]
fn llama_matches_candle_transformers() {
    for (tied, quantised) in [(true, false), (false, false), (true, true), (false, true)] {
        compare("llama", tied, quantised);
    }
}

#[test]
fn qwen2_matches_candle_transformers() {
    for (tied, quantised) in [(true, false), (false, false), (true, true), (false, true)] {
        compare("qwen2", tied, quantised);
    }
}

#[test]
fn a_full_cache_and_an_unknown_token_are_named_errors() {
    let bytes = model("qwen2", true, 7);
    let mut r = Cursor::new(bytes);
    let ct = Content::read(&mut r).expect("test value");
    let m = Transformer::load(
        &ct,
        &mut r,
        Config::from_gguf(&ct, "qwen2").expect("test value"),
    )
    .expect("test value");
    let mut cache = m.cache(2);
    assert!(m.forward(&[1, 2, 3], &mut cache).is_err());
    assert!(m.forward(&[VOCAB as u32], &mut cache).is_err());
    assert_eq!(cache.len(), 0, "a refused call stores nothing");
    m.forward(&[1, 2], &mut cache).expect("test value");
    assert!(m.forward(&[1], &mut cache).is_err());
}
