//! The summariser's request and response bodies (JSON). Request text is plaintext from the
//! user's device: it is zeroized on drop and never printed by `Debug`.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::SummarizeError;

pub use cloister_protocol::workload::{
    ChatMessage, DEFAULT_MAX_WORDS, MAX_AT_BYTES, MAX_DRAFT_BYTES, MAX_FROM_BYTES, MAX_MESSAGES,
    MAX_TEXT_BYTES, MAX_WORDS_RANGE, Tone,
};

/// `POST /v1/summarize`.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct SummarizeRequest {
    /// The unread messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Longest summary wanted, in words (default [`DEFAULT_MAX_WORDS`]).
    #[serde(default)]
    pub max_words: Option<u32>,
}

impl std::fmt::Debug for SummarizeRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummarizeRequest")
            .field("messages", &self.messages.len())
            .field("max_words", &self.max_words)
            .finish()
    }
}

impl SummarizeRequest {
    /// Parses and checks a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, SummarizeError> {
        let req: SummarizeRequest =
            serde_json::from_slice(body).map_err(|e| SummarizeError::BadJson(redact(&e)))?;
        req.validate()?;
        Ok(req)
    }

    /// Checks the limits: a non-empty thread, bounded fields, `max_words` in range.
    pub fn validate(&self) -> Result<(), SummarizeError> {
        if self.messages.is_empty() {
            return Err(SummarizeError::EmptyThread);
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(SummarizeError::TooManyMessages {
                count: self.messages.len(),
                max: MAX_MESSAGES,
            });
        }
        for (i, m) in self.messages.iter().enumerate() {
            check_len(&format!("messages[{i}].from"), &m.from, MAX_FROM_BYTES)?;
            check_len(&format!("messages[{i}].at"), &m.at, MAX_AT_BYTES)?;
            check_len(&format!("messages[{i}].text"), &m.text, MAX_TEXT_BYTES)?;
            if m.text.trim().is_empty() {
                return Err(SummarizeError::EmptyMessage { index: i });
            }
        }
        if let Some(w) = self.max_words {
            let (min, max) = MAX_WORDS_RANGE;
            if !(min..=max).contains(&w) {
                return Err(SummarizeError::MaxWordsOutOfRange { min, max });
            }
        }
        Ok(())
    }

    /// `max_words`, or the default.
    pub fn max_words(&self) -> u32 {
        self.max_words.unwrap_or(DEFAULT_MAX_WORDS)
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// The model ended its answer.
    Eos,
    /// The token budget ran out.
    Length,
    /// The request's deadline came first; the text is what was written by then.
    Deadline,
    /// No generation: the summary was extracted from the messages.
    Extractive,
}

/// The answer to `POST /v1/summarize`.
#[derive(Serialize, Zeroize, ZeroizeOnDrop)]
pub struct SummarizeResponse {
    /// The summary.
    pub summary: String,
    /// Which pinned model wrote it.
    #[zeroize(skip)]
    pub model: String,
    /// Whether some messages were left out to fit the model's context budget.
    pub truncated: bool,
    /// How many messages the summary was written from.
    pub messages_used: usize,
    /// Prompt tokens.
    pub tokens_in: usize,
    /// Generated tokens.
    pub tokens_out: usize,
    /// Why generation stopped.
    #[zeroize(skip)]
    pub stop: Stop,
}

impl std::fmt::Debug for SummarizeResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SummarizeResponse")
            .field("summary_len", &self.summary.len())
            .field("model", &self.model)
            .field("truncated", &self.truncated)
            .field("tokens_in", &self.tokens_in)
            .field("tokens_out", &self.tokens_out)
            .field("stop", &self.stop)
            .finish()
    }
}

/// How the rewrite instruction names a tone.
pub fn describe(tone: Tone) -> &'static str {
    match tone {
        Tone::Formal => "formal, polite and professional",
        Tone::Friendly => "friendly and warm",
        Tone::Concise => "concise (as short as possible without losing meaning)",
        Tone::Apologetic => "apologetic but not grovelling",
        Tone::Confident => "confident and direct",
    }
}

/// `POST /v1/rewrite`.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct RewriteRequest {
    /// The draft.
    pub text: String,
    /// The tone wanted.
    #[zeroize(skip)]
    pub tone: Tone,
}

impl std::fmt::Debug for RewriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewriteRequest")
            .field("text_len", &self.text.len())
            .field("tone", &self.tone)
            .finish()
    }
}

impl RewriteRequest {
    /// Parses and checks a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, SummarizeError> {
        let req: RewriteRequest =
            serde_json::from_slice(body).map_err(|e| SummarizeError::BadJson(redact(&e)))?;
        if req.text.trim().is_empty() {
            return Err(SummarizeError::EmptyMessage { index: 0 });
        }
        check_len("text", &req.text, MAX_DRAFT_BYTES)?;
        Ok(req)
    }
}

/// The answer to `POST /v1/rewrite`.
#[derive(Serialize, Zeroize, ZeroizeOnDrop)]
pub struct RewriteResponse {
    /// The rewritten draft.
    pub text: String,
}

impl std::fmt::Debug for RewriteResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RewriteResponse")
            .field("text_len", &self.text.len())
            .finish()
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), SummarizeError> {
    if value.len() > max {
        return Err(SummarizeError::FieldTooLong {
            field: field.to_string(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// serde_json's messages can quote the input ("invalid type: string \"…\""): keep only the
/// category and position.
fn redact(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Io => "unreadable body",
        Category::Syntax => "malformed JSON",
        Category::Data => "JSON of the wrong shape (missing, unknown or mistyped field)",
        Category::Eof => "truncated JSON",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(messages: usize, text: &str) -> Vec<u8> {
        let m: Vec<_> = (0..messages)
            .map(|i| serde_json::json!({"from": "Ana", "at": format!("2026-03-01T10:{i:02}"), "text": text}))
            .collect();
        serde_json::to_vec(&serde_json::json!({ "messages": m })).expect("json")
    }

    #[test]
    fn accepts_a_thread() {
        let r = SummarizeRequest::from_json(&body(3, "hi")).expect("valid");
        assert_eq!(r.messages.len(), 3);
        assert_eq!(r.max_words(), DEFAULT_MAX_WORDS);
    }

    #[test]
    fn refuses_each_bad_input_by_name() {
        assert!(matches!(
            SummarizeRequest::from_json(&body(0, "hi")),
            Err(SummarizeError::EmptyThread)
        ));
        assert!(matches!(
            SummarizeRequest::from_json(&body(MAX_MESSAGES + 1, "hi")),
            Err(SummarizeError::TooManyMessages { count, max }) if count == MAX_MESSAGES + 1 && max == MAX_MESSAGES
        ));
        assert!(matches!(
            SummarizeRequest::from_json(&body(2, &"x".repeat(MAX_TEXT_BYTES + 1))),
            Err(SummarizeError::FieldTooLong { field, .. }) if field == "messages[0].text"
        ));
        assert!(matches!(
            SummarizeRequest::from_json(&body(1, "  ")),
            Err(SummarizeError::EmptyMessage { index: 0 })
        ));
        let words = br#"{"messages":[{"from":"a","at":"b","text":"c"}],"max_words":5}"#;
        assert!(matches!(
            SummarizeRequest::from_json(words),
            Err(SummarizeError::MaxWordsOutOfRange { .. })
        ));
        let unknown = br#"{"messages":[{"from":"a","at":"b","text":"c","x":1}]}"#;
        assert!(matches!(
            SummarizeRequest::from_json(unknown),
            Err(SummarizeError::BadJson(_))
        ));
        assert!(matches!(
            SummarizeRequest::from_json(b"{\"messages\": ["),
            Err(SummarizeError::BadJson(_))
        ));
    }

    #[test]
    fn json_errors_do_not_quote_the_request() {
        let secret = br#"{"messages":"MARKER-7f3a"}"#;
        let e = SummarizeRequest::from_json(secret).expect_err("wrong type");
        assert!(!e.to_string().contains("MARKER"), "{e}");
        let dbg = format!(
            "{:?}",
            SummarizeRequest::from_json(&body(1, "MARKER-7f3a")).expect("valid")
        );
        assert!(!dbg.contains("MARKER"), "{dbg}");
    }

    #[test]
    fn rewrite_takes_only_known_tones() {
        let ok = RewriteRequest::from_json(br#"{"text":"see you","tone":"formal"}"#).expect("ok");
        assert_eq!(ok.tone, Tone::Formal);
        assert!(matches!(
            RewriteRequest::from_json(br#"{"text":"see you","tone":"pirate"}"#),
            Err(SummarizeError::BadJson(_))
        ));
        assert!(matches!(
            RewriteRequest::from_json(br#"{"text":" ","tone":"formal"}"#),
            Err(SummarizeError::EmptyMessage { .. })
        ));
    }
}
