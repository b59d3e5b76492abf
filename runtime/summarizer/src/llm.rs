//! A quantised causal language model loaded from one GGUF file: weights (Cloister's own
//! llama/qwen2 forward pass on candle's quantised kernels, [`crate::transformer`]), the tokenizer and chat template from the file's own metadata, and a
//! decoding loop with explicit stop conditions.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::tokenizer::TokenizerFromGguf as _;
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use crate::api::Stop;
use crate::error::SummarizeError;
use crate::template::{ChatTemplate, Turn, neutralise};
use crate::transformer::{Config, Transformer};

/// Prompt tokens run through the model per forward pass. Bounds the attention matrix's size and
/// lets a deadline interrupt a long prompt between chunks.
pub const PREFILL_CHUNK: usize = 512;

/// How tokens are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decoding {
    /// The most likely token every step: the same input always gives the same text.
    Greedy,
    /// Nucleus sampling.
    TopP {
        /// Softmax temperature (> 0).
        temperature: f64,
        /// Cumulative probability kept (0 < p ≤ 1).
        top_p: f64,
        /// Random seed.
        seed: u64,
    },
}

/// One generation's settings.
#[derive(Debug, Clone, Copy)]
pub struct GenerateParams {
    /// Token choice.
    pub decoding: Decoding,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Penalty on tokens seen in the last [`Self::repeat_window`] generated tokens (1.0: none).
    pub repeat_penalty: f32,
    /// Window of the repeat penalty.
    pub repeat_window: usize,
    /// Stop when this instant passes (the text so far is kept).
    pub deadline: Option<Instant>,
    /// Generate exactly `max_new_tokens`, past end-of-turn tokens (benchmarks).
    pub ignore_stop_tokens: bool,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            decoding: Decoding::Greedy,
            max_new_tokens: 256,
            repeat_penalty: 1.1,
            repeat_window: 64,
            deadline: None,
            ignore_stop_tokens: false,
        }
    }
}

/// What one generation produced, with its timings.
#[derive(Clone)]
pub struct Generation {
    /// The generated text (special tokens removed).
    pub text: String,
    /// The generated token ids (the stop token not included).
    pub tokens: Vec<u32>,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens (the stop token not counted).
    pub generated_tokens: usize,
    /// Why it stopped.
    pub stop: Stop,
    /// Time in prompt processing (first token included).
    pub prompt_time: Duration,
    /// Time in token-by-token generation.
    pub generate_time: Duration,
}

impl std::fmt::Debug for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generation")
            .field("text_len", &self.text.len())
            .field("prompt_tokens", &self.prompt_tokens)
            .field("generated_tokens", &self.generated_tokens)
            .field("stop", &self.stop)
            .finish()
    }
}

/// A loaded model. Weights are shared and read-only; one generation runs at a time (each uses
/// every core).
pub struct LanguageModel {
    id: String,
    description: String,
    weights: Mutex<Transformer>,
    tokenizer: Tokenizer,
    template: ChatTemplate,
    controls: Vec<String>,
    stops: Vec<u32>,
    context_length: usize,
}

impl std::fmt::Debug for LanguageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanguageModel")
            .field("id", &self.id)
            .field("description", &self.description)
            .field("context_length", &self.context_length)
            .finish_non_exhaustive()
    }
}

fn unsupported(path: &Path, reason: impl Into<String>) -> SummarizeError {
    SummarizeError::UnsupportedModel {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn meta_str(ct: &Content, key: &str) -> Option<String> {
    ct.metadata
        .get(key)
        .and_then(|v| v.to_string().ok().cloned())
}

fn meta_u32(ct: &Content, key: &str) -> Option<u32> {
    ct.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl LanguageModel {
    /// Loads `path` (a GGUF file) under the name `id`. When `expect_basename` is given, the
    /// file's `general.basename` must equal it (a pinned file that names another model is
    /// refused).
    pub fn load(
        path: &Path,
        id: &str,
        expect_basename: Option<&str>,
    ) -> Result<Self, SummarizeError> {
        let mut file = File::open(path).map_err(|source| SummarizeError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let ct = Content::read(&mut file).map_err(|e| unsupported(path, e.to_string()))?;
        let arch = meta_str(&ct, "general.architecture")
            .ok_or_else(|| unsupported(path, "no general.architecture"))?;
        let basename = meta_str(&ct, "general.basename").unwrap_or_default();
        if let Some(want) = expect_basename
            && basename != want
        {
            return Err(unsupported(
                path,
                format!("general.basename is {basename:?}, expected {want:?}"),
            ));
        }
        let description = meta_str(&ct, "general.name").unwrap_or_else(|| basename.clone());
        let source = meta_str(&ct, "tokenizer.chat_template")
            .ok_or_else(|| unsupported(path, "no tokenizer.chat_template in the metadata"))?;
        let mut tokenizer =
            Tokenizer::from_gguf(&ct).map_err(|e| SummarizeError::Tokenizer(e.to_string()))?;
        fix_pretokenizer(&ct, &mut tokenizer);
        let (controls, stops) = control_tokens(&ct, &tokenizer);
        let token_text = |key: &str| {
            meta_u32(&ct, key)
                .and_then(|id| tokenizer.id_to_token(id))
                .unwrap_or_default()
        };
        let template = ChatTemplate::new(
            &source,
            &token_text("tokenizer.ggml.bos_token_id"),
            &token_text("tokenizer.ggml.eos_token_id"),
        )?;
        let context_length = meta_u32(&ct, &format!("{arch}.context_length"))
            .ok_or_else(|| unsupported(path, "no context_length"))?
            as usize;
        let config = Config::from_gguf(&ct, &arch).map_err(|e| relabel(path, e))?;
        let weights = Transformer::load(&ct, &mut file, config).map_err(|e| relabel(path, e))?;
        Ok(LanguageModel {
            id: id.to_string(),
            description,
            weights: Mutex::new(weights),
            tokenizer,
            template,
            controls,
            stops,
            context_length,
        })
    }

    /// The pinned name it was loaded under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Positions the model can attend over.
    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Neutralises control-token text in request text (see [`neutralise`]).
    pub fn sanitise(&self, text: &str) -> String {
        neutralise(text, &self.controls)
    }

    /// Tokens in `text` as ordinary text (no special tokens).
    pub fn count_tokens(&self, text: &str) -> Result<usize, SummarizeError> {
        Ok(self.encode(text)?.len())
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, SummarizeError> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| SummarizeError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Renders `turns` with the model's chat template (the text a peer runtime is given).
    pub fn render(&self, turns: &[Turn<'_>]) -> Result<zeroize::Zeroizing<String>, SummarizeError> {
        Ok(zeroize::Zeroizing::new(self.template.render(turns)?))
    }

    /// Tokenizes text already rendered by [`Self::render`]: control-token text in it becomes
    /// control tokens. Request text must go through [`Self::prompt`] instead.
    pub fn encode_rendered(&self, rendered: &str) -> Result<Vec<u32>, SummarizeError> {
        self.encode(rendered)
    }

    /// Renders `turns` with the model's chat template and tokenizes the result.
    pub fn prompt(&self, turns: &[Turn<'_>]) -> Result<Vec<u32>, SummarizeError> {
        self.encode(&self.render(turns)?)
    }

    /// Generates from `prompt` (token ids). Waits for the model until the deadline.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerateParams,
    ) -> Result<Generation, SummarizeError> {
        if prompt.is_empty() {
            return Err(SummarizeError::Tokenizer("empty prompt".into()));
        }
        if prompt.len() + params.max_new_tokens > self.context_length {
            return Err(SummarizeError::Tokenizer(format!(
                "{} prompt tokens + {} new exceed the model's {} positions",
                prompt.len(),
                params.max_new_tokens,
                self.context_length
            )));
        }
        let weights = lock_until(&self.weights, params.deadline)?;
        let sampling = match params.decoding {
            Decoding::Greedy => Sampling::ArgMax,
            Decoding::TopP {
                temperature, top_p, ..
            } => Sampling::TopP {
                p: top_p,
                temperature,
            },
        };
        let seed = match params.decoding {
            Decoding::TopP { seed, .. } => seed,
            Decoding::Greedy => 0,
        };
        let mut sampler = LogitsProcessor::from_sampling(seed, sampling);
        let passed = |d: Option<Instant>| d.is_some_and(|d| Instant::now() >= d);

        let t0 = Instant::now();
        let mut cache = weights.cache(prompt.len() + params.max_new_tokens);
        let mut logits = None;
        for chunk in prompt.chunks(PREFILL_CHUNK) {
            if passed(params.deadline) {
                return Err(SummarizeError::DeadlineExceeded);
            }
            logits = Some(weights.forward(chunk, &mut cache)?);
        }
        let logits = logits.ok_or_else(|| SummarizeError::Tokenizer("empty prompt".into()))?;
        let mut next = sampler.sample(&Tensor::from_slice(&logits, logits.len(), &Device::Cpu)?)?;
        let prompt_time = t0.elapsed();

        let t1 = Instant::now();
        let mut out: Vec<u32> = Vec::with_capacity(params.max_new_tokens);
        let stop = loop {
            if !params.ignore_stop_tokens && self.stops.contains(&next) {
                break Stop::Eos;
            }
            if out.len() >= params.max_new_tokens {
                break Stop::Length;
            }
            out.push(next);
            if out.len() >= params.max_new_tokens {
                break Stop::Length;
            }
            if passed(params.deadline) {
                break Stop::Deadline;
            }
            let logits = weights.forward(&[next], &mut cache)?;
            let logits = Tensor::from_slice(&logits, logits.len(), &Device::Cpu)?;
            let logits = if params.repeat_penalty == 1.0 {
                logits
            } else {
                let start = out.len().saturating_sub(params.repeat_window);
                candle_transformers::utils::apply_repeat_penalty(
                    &logits,
                    params.repeat_penalty,
                    &out[start..],
                )?
            };
            next = sampler.sample(&logits)?;
        };
        let generate_time = t1.elapsed();
        drop(weights);
        let text = self
            .tokenizer
            .decode(&out, true)
            .map_err(|e| SummarizeError::Tokenizer(e.to_string()))?;
        Ok(Generation {
            text: text.trim().to_string(),
            prompt_tokens: prompt.len(),
            generated_tokens: out.len(),
            tokens: out,
            stop,
            prompt_time,
            generate_time,
        })
    }
}

/// Names the file in a load error from the model code.
fn relabel(path: &Path, e: SummarizeError) -> SummarizeError {
    match e {
        SummarizeError::UnsupportedModel { reason, .. } => unsupported(path, reason),
        e => e,
    }
}

/// Waits for the model, polling so that a deadline can end the wait.
fn lock_until<T>(
    m: &Mutex<T>,
    deadline: Option<Instant>,
) -> Result<std::sync::MutexGuard<'_, T>, SummarizeError> {
    loop {
        match m.try_lock() {
            Ok(g) => return Ok(g),
            // A panic during an earlier generation leaves the weights intact: they are only
            // read, and each generation has its own cache.
            Err(std::sync::TryLockError::Poisoned(p)) => return Ok(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(SummarizeError::DeadlineExceeded);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// candle's GGUF tokenizer builds GPT-2 byte-level pre-tokenization with a prefix space for
/// any `tokenizer.ggml.pre` it does not know; SmolLM2 (`smollm`) then reads
/// `<|im_start|>system` as `<|im_start|> system`. Rebuild Hugging Face's pipeline for it:
/// individual digits, then byte-level without a prefix space.
fn fix_pretokenizer(ct: &Content, tok: &mut Tokenizer) {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::pre_tokenizers::digits::Digits;
    use tokenizers::pre_tokenizers::sequence::Sequence;
    if meta_str(ct, "tokenizer.ggml.pre").as_deref() == Some("smollm") {
        let seq = Sequence::new(vec![
            Digits::new(true).into(),
            ByteLevel::new(false, true, true).into(),
        ]);
        tok.with_pre_tokenizer(Some(seq));
    }
}

/// Control and user-defined tokens (GGUF token types 3 and 4): their text is neutralised in
/// request text; the end-of-turn ones among them stop generation, with `eos_token_id`.
fn control_tokens(ct: &Content, tok: &Tokenizer) -> (Vec<String>, Vec<u32>) {
    let mut controls = Vec::new();
    if let Some(Value::Array(types)) = ct.metadata.get("tokenizer.ggml.token_type") {
        for (id, ty) in types.iter().enumerate() {
            if matches!(ty.to_i32(), Ok(3 | 4))
                && let Some(text) = tok.id_to_token(id as u32)
                && text.chars().count() > 1
            {
                controls.push(text);
            }
        }
    }
    let mut stops: Vec<u32> = meta_u32(ct, "tokenizer.ggml.eos_token_id")
        .into_iter()
        .collect();
    for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"] {
        if let Some(id) = tok.token_to_id(t)
            && !stops.contains(&id)
        {
            stops.push(id);
        }
    }
    (controls, stops)
}
