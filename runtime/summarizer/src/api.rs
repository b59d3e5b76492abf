//! The summariser's reading of its request bodies. The bodies themselves — requests, answers,
//! tones, limits — are the wire contract, defined once in `cloister_protocol::workload`; this
//! module parses them ([`FromBody`]) into the summariser's named errors, whose messages never
//! quote the request.

use crate::error::SummarizeError;

pub use cloister_protocol::workload::{
    ChatMessage, DEFAULT_MAX_WORDS, LimitError, MAX_AT_BYTES, MAX_DRAFT_BYTES, MAX_FROM_BYTES,
    MAX_MESSAGES, MAX_TEXT_BYTES, MAX_WORDS_RANGE, RewriteRequest, RewriteResponse, Stop,
    SummarizeRequest, SummarizeResponse, Tone,
};

/// A request body the summariser reads: parsed, then checked against the contract's limits.
pub trait FromBody: Sized {
    /// Parses and checks a request body.
    fn from_json(body: &[u8]) -> Result<Self, SummarizeError>;
}

impl FromBody for SummarizeRequest {
    fn from_json(body: &[u8]) -> Result<Self, SummarizeError> {
        let req: SummarizeRequest =
            serde_json::from_slice(body).map_err(|e| SummarizeError::BadJson(redact(&e)))?;
        req.validate().map_err(limit)?;
        Ok(req)
    }
}

impl FromBody for RewriteRequest {
    fn from_json(body: &[u8]) -> Result<Self, SummarizeError> {
        let req: RewriteRequest =
            serde_json::from_slice(body).map_err(|e| SummarizeError::BadJson(redact(&e)))?;
        req.validate().map_err(limit)?;
        Ok(req)
    }
}

impl From<LimitError> for SummarizeError {
    fn from(e: LimitError) -> Self {
        limit(e)
    }
}

/// The contract's limit, as the summariser names it.
fn limit(e: LimitError) -> SummarizeError {
    match e {
        LimitError::EmptyThread => SummarizeError::EmptyThread,
        LimitError::TooManyMessages { count, max } => {
            SummarizeError::TooManyMessages { count, max }
        }
        LimitError::FieldTooLong {
            index,
            field,
            len,
            max,
        } => SummarizeError::FieldTooLong {
            field: match index {
                Some(i) => format!("messages[{i}].{field}"),
                None => field.to_owned(),
            },
            len,
            max,
        },
        LimitError::EmptyText { index } => SummarizeError::EmptyMessage {
            index: index.unwrap_or(0),
        },
        LimitError::MaxWords { .. } => SummarizeError::MaxWordsOutOfRange {
            min: MAX_WORDS_RANGE.0,
            max: MAX_WORDS_RANGE.1,
        },
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
