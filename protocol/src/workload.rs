//! The guest workloads' vocabulary, shared by the device that writes a request and the
//! summariser that reads it: one chat message, the closed set of rewrite tones, and the limits
//! both sides check (the device before a token is spent, the guest again on arrival).
//!
//! A [`ChatMessage`] is plaintext from the user's device: zeroized on drop, and its `Debug`
//! shows a length only.

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

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
}
