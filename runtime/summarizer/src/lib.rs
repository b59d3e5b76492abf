//! Cloister's summariser, run by the guest runtime on decrypted requests: "summarise my unread
//! messages" (`POST /v1/summarize`) and "help me write" (`POST /v1/rewrite`).
//!
//! * [`llm`]: a quantised language model from one pinned GGUF file (candle's llama and qwen2),
//!   its tokenizer and chat template taken from the file's metadata, greedy decoding by default.
//! * [`embed`]: all-MiniLM-L6-v2 sentence embeddings, to pick the messages that carry a thread.
//! * [`service`]: the two combined, with a context budget and a deadline.
//! * [`api`]: the JSON bodies and their limits.
//!
//! Without the default `model` feature only [`api`] and [`error`] are built.
//!
//! CPU only; nothing here logs request text, and request text is zeroized when dropped.
#![forbid(unsafe_code)]

pub mod api;
#[cfg(feature = "model")]
pub mod embed;
pub mod error;
#[cfg(feature = "model")]
pub mod llm;
pub mod oblivious;
#[cfg(feature = "model")]
pub mod service;
#[cfg(feature = "model")]
pub mod template;
#[cfg(feature = "model")]
pub mod transformer;

pub use api::{
    FromBody, RewriteRequest, RewriteResponse, Stop, SummarizeRequest, SummarizeResponse, Tone,
};
#[cfg(feature = "model")]
pub use embed::Embedder;
pub use error::SummarizeError;
#[cfg(feature = "model")]
pub use llm::{Decoding, GenerateParams, Generation, LanguageModel};
#[cfg(feature = "model")]
pub use service::{Summarizer, SummarizerConfig};
