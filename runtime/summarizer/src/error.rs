//! Why a summarise or rewrite request was refused or failed. Messages name the reason and the
//! limit; they never quote request text.

/// A refused request or a failed inference.
#[derive(Debug, thiserror::Error)]
pub enum SummarizeError {
    /// The thread has no messages.
    #[error("the thread has no messages")]
    EmptyThread,
    /// A message has no text.
    #[error("message {index} has no text")]
    EmptyMessage {
        /// Position in the thread.
        index: usize,
    },
    /// Too many messages in one thread.
    #[error("the thread has {count} messages; at most {max} are accepted")]
    TooManyMessages {
        /// Messages sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// One field is longer than its limit.
    #[error("{field} is {len} bytes; at most {max} are accepted")]
    FieldTooLong {
        /// Which field (`messages[3].text`, `text`, …).
        field: String,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `max_words` outside its range.
    #[error("max_words must be between {min} and {max}")]
    MaxWordsOutOfRange {
        /// Smallest accepted.
        min: u32,
        /// Largest accepted.
        max: u32,
    },
    /// The request body is not the expected JSON.
    #[error("the request is not valid JSON for this endpoint: {0}")]
    BadJson(String),
    /// This image carries no language model, so nothing can be rewritten.
    #[error("this image has no language model (cloister.model selects an extractive summariser)")]
    NoLanguageModel,
    /// The deadline passed before an answer could be produced.
    #[error("the deadline passed before the model could answer")]
    DeadlineExceeded,
    /// A model file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The GGUF file is not one this summariser can run.
    #[error("model {path}: {reason}")]
    UnsupportedModel {
        /// The file.
        path: String,
        /// What is missing or unexpected.
        reason: String,
    },
    /// The chat template in the model's metadata does not parse or render.
    #[error("chat template: {0}")]
    Template(String),
    /// The tokenizer failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// candle failed while loading or running a model.
    #[cfg(feature = "model")]
    #[error("inference: {0}")]
    Inference(#[from] candle_core::Error),
}

impl SummarizeError {
    /// Whether the client caused this (a 4xx), rather than the model or the image (a 5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            SummarizeError::EmptyThread
                | SummarizeError::EmptyMessage { .. }
                | SummarizeError::TooManyMessages { .. }
                | SummarizeError::FieldTooLong { .. }
                | SummarizeError::MaxWordsOutOfRange { .. }
                | SummarizeError::BadJson(_)
        )
    }
}
