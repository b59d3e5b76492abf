//! The guest workloads' contract, shared by the device that writes a request and the guest that
//! answers it: their paths, the request and answer bodies of `/v1/summarize` and `/v1/rewrite`,
//! the closed set of rewrite tones, and the limits both sides check (the device before a token
//! is spent, the guest again on arrival).
//!
//! Request and answer text is plaintext from or for the user's device: zeroized on drop, and
//! `Debug` shows lengths only.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The echo workload (the body comes back as it went).
pub const ECHO_PATH: &str = "/v1/echo";
/// "Summarise my unread messages".
pub const SUMMARIZE_PATH: &str = "/v1/summarize";
/// "Help me write".
pub const REWRITE_PATH: &str = "/v1/rewrite";

/// Most messages in one thread.
pub const MAX_MESSAGES: usize = 2000;
/// Longest message text, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest sender name, in bytes.
pub const MAX_FROM_BYTES: usize = 128;
/// Longest timestamp, in bytes.
pub const MAX_AT_BYTES: usize = 64;
/// Longest draft `/v1/rewrite` accepts, in bytes.
pub const MAX_DRAFT_BYTES: usize = 8192;
/// Range of `max_words` (inclusive).
pub const MAX_WORDS_RANGE: (u32, u32) = (10, 400);
/// `max_words` when a request does not say.
pub const DEFAULT_MAX_WORDS: u32 = 120;

/// One chat message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// Sender's display name.
    pub from: String,
    /// When it was sent, as the device shows it (ISO 8601 recommended).
    pub at: String,
    /// The message.
    pub text: String,
}

impl std::fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatMessage")
            .field("text_len", &self.text.len())
            .finish_non_exhaustive()
    }
}

/// The tones `/v1/rewrite` offers (a closed set: free text here would be a prompt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Polite and professional.
    Formal,
    /// Relaxed and warm.
    Friendly,
    /// As short as the meaning allows.
    Concise,
    /// Owning a mistake, without grovelling.
    Apologetic,
    /// Direct and assured.
    Confident,
}

impl Tone {
    /// Every tone.
    pub const ALL: [Tone; 5] = [
        Tone::Formal,
        Tone::Friendly,
        Tone::Concise,
        Tone::Apologetic,
        Tone::Confident,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tone::Formal => "formal",
            Tone::Friendly => "friendly",
            Tone::Concise => "concise",
            Tone::Apologetic => "apologetic",
            Tone::Confident => "confident",
        }
    }
}

/// A tone name that is not one of [`Tone::ALL`] (quotes at most 20 characters of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tone {0:?}; expected formal, friendly, concise, apologetic or confident")]
pub struct UnknownTone(pub String);

impl std::str::FromStr for Tone {
    type Err = UnknownTone;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Tone::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownTone(s.chars().take(20).collect()))
    }
}

/// Which limit a request breaks. Never quotes the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// No messages.
    #[error("the thread has no messages")]
    EmptyThread,
    /// More than [`MAX_MESSAGES`].
    #[error("the thread has {count} messages; at most {max} are accepted")]
    TooManyMessages {
        /// Messages sent.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field longer than its limit; `index` is the message's (none for a draft).
    #[error("{field} is {len} bytes; at most {max} are accepted")]
    FieldTooLong {
        /// The message's position, if the field is a message's.
        index: Option<usize>,
        /// `from`, `at`, `text`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message (or draft) whose text is blank.
    #[error("the text is empty")]
    EmptyText {
        /// The message's position (none for a draft).
        index: Option<usize>,
    },
    /// `max_words` outside [`MAX_WORDS_RANGE`].
    #[error("max_words {found} is not in {}..={}", MAX_WORDS_RANGE.0, MAX_WORDS_RANGE.1)]
    MaxWords {
        /// The value sent.
        found: u32,
    },
}

fn check_len(
    index: Option<usize>,
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), LimitError> {
    if value.len() > max {
        return Err(LimitError::FieldTooLong {
            index,
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// The body of `POST /v1/summarize`.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct SummarizeRequest {
    /// The unread messages, oldest first.
    pub messages: Vec<ChatMessage>,
    /// Longest summary wanted, in words (default [`DEFAULT_MAX_WORDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// Checks the limits: a non-empty thread, bounded fields, no blank text, `max_words` in
    /// range.
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.messages.is_empty() {
            return Err(LimitError::EmptyThread);
        }
        if self.messages.len() > MAX_MESSAGES {
            return Err(LimitError::TooManyMessages {
                count: self.messages.len(),
                max: MAX_MESSAGES,
            });
        }
        for (i, m) in self.messages.iter().enumerate() {
            check_len(Some(i), "from", &m.from, MAX_FROM_BYTES)?;
            check_len(Some(i), "at", &m.at, MAX_AT_BYTES)?;
            check_len(Some(i), "text", &m.text, MAX_TEXT_BYTES)?;
            if m.text.trim().is_empty() {
                return Err(LimitError::EmptyText { index: Some(i) });
            }
        }
        if let Some(found) = self.max_words {
            let (min, max) = MAX_WORDS_RANGE;
            if !(min..=max).contains(&found) {
                return Err(LimitError::MaxWords { found });
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
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

/// The body of `POST /v1/rewrite`.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
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
    /// Checks the limits: a draft that is not blank and at most [`MAX_DRAFT_BYTES`].
    pub fn validate(&self) -> Result<(), LimitError> {
        if self.text.trim().is_empty() {
            return Err(LimitError::EmptyText { index: None });
        }
        check_len(None, "text", &self.text, MAX_DRAFT_BYTES)
    }
}

/// The answer to `POST /v1/rewrite`.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tones_round_trip_by_name_and_json() {
        for t in Tone::ALL {
            assert_eq!(t.as_str().parse::<Tone>(), Ok(t));
            assert_eq!(
                t.as_str().to_uppercase().parse::<Tone>(),
                Ok(t),
                "case-insensitive"
            );
            let json = serde_json::to_string(&t).expect("encode");
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<Tone>(&json).expect("decode"), t);
        }
        let long = "p".repeat(100);
        assert_eq!(long.parse::<Tone>(), Err(UnknownTone("p".repeat(20))));
        assert!(
            serde_json::from_str::<Tone>("\"Formal\"").is_err(),
            "the wire is lowercase"
        );
    }

    #[test]
    fn messages_refuse_unknown_fields_and_hide_their_text() {
        let m: ChatMessage =
            serde_json::from_str(r#"{"from":"Ana","at":"","text":"secret plan"}"#).expect("m");
        assert!(!format!("{m:?}").contains("secret"));
        assert!(
            serde_json::from_str::<ChatMessage>(r#"{"from":"A","at":"","text":"t","x":1}"#)
                .is_err()
        );
    }

    fn thread(n: usize, text: &str) -> SummarizeRequest {
        SummarizeRequest {
            messages: (0..n)
                .map(|i| ChatMessage {
                    from: format!("p{i}"),
                    at: String::new(),
                    text: text.to_owned(),
                })
                .collect(),
            max_words: None,
        }
    }

    #[test]
    fn each_limit_is_named_with_its_message() {
        assert_eq!(thread(0, "x").validate(), Err(LimitError::EmptyThread));
        assert!(matches!(
            thread(MAX_MESSAGES + 1, "x").validate(),
            Err(LimitError::TooManyMessages { .. })
        ));
        assert_eq!(
            thread(2, &"x".repeat(MAX_TEXT_BYTES + 1)).validate(),
            Err(LimitError::FieldTooLong {
                index: Some(0),
                field: "text",
                len: MAX_TEXT_BYTES + 1,
                max: MAX_TEXT_BYTES
            })
        );
        assert_eq!(
            thread(1, " ").validate(),
            Err(LimitError::EmptyText { index: Some(0) })
        );
        let mut words = thread(1, "x");
        words.max_words = Some(5);
        assert_eq!(words.validate(), Err(LimitError::MaxWords { found: 5 }));
        assert_eq!(thread(3, "hi").validate(), Ok(()));
        let draft = RewriteRequest {
            text: " ".into(),
            tone: Tone::Formal,
        };
        assert_eq!(draft.validate(), Err(LimitError::EmptyText { index: None }));
    }

    #[test]
    fn bodies_keep_the_wire_shape_and_hide_their_text() {
        let r: SummarizeRequest =
            serde_json::from_str(r#"{"messages":[{"from":"A","at":"","text":"secret"}]}"#)
                .expect("request");
        assert_eq!(
            serde_json::to_string(&r).expect("encode"),
            r#"{"messages":[{"from":"A","at":"","text":"secret"}]}"#
        );
        assert!(!format!("{r:?}").contains("secret"));
        let w: RewriteRequest =
            serde_json::from_str(r#"{"text":"see you","tone":"formal"}"#).expect("rewrite");
        assert!(!format!("{w:?}").contains("see you"));
        assert!(serde_json::from_str::<RewriteRequest>(r#"{"text":"x","tone":"pirate"}"#).is_err());
        let a = SummarizeResponse {
            summary: "Dinner at 7.".into(),
            model: "m".into(),
            truncated: false,
            messages_used: 1,
            tokens_in: 2,
            tokens_out: 3,
            stop: Stop::Eos,
        };
        let json = serde_json::to_string(&a).expect("encode");
        assert_eq!(
            json,
            r#"{"summary":"Dinner at 7.","model":"m","truncated":false,"messages_used":1,"tokens_in":2,"tokens_out":3,"stop":"eos"}"#
        );
        let back: SummarizeResponse = serde_json::from_str(&json).expect("decode");
        assert_eq!(back.stop, Stop::Eos);
        assert!(!format!("{back:?}").contains("Dinner"));
    }
}
