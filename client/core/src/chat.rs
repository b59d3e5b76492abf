//! The chat the `cloister summarize` command reads, turned into the body of
//! `POST /v1/summarize`. Two input formats, told apart by the first non-blank character:
//!
//! * **JSON** (`{` or `[`): exactly the summariser's request,
//!   `{"messages":[{"from":"Ana","at":"2026-03-01T10:02","text":"…"}],"max_words":120}`
//!   (`max_words` optional), or a bare array of those message objects. Unknown fields are
//!   refused. The body sent is the parsed value re-encoded (canonical field order, no
//!   whitespace).
//! * **Plain text**, one message per line, `Sender: text`. The sender is what precedes the
//!   first `:` (1–128 bytes, the line not starting with whitespace); a line that has none, or
//!   starts with whitespace, continues the previous message (joined with a newline); blank
//!   lines are skipped. `at` is left empty.
//!
//! Both are checked against the summariser's limits (at most 2000 messages, sender 128 bytes,
//! timestamp 64 bytes, text 4096 bytes and not blank, `max_words` in 10..=400) so that a bad
//! input fails here, with its line number, rather than after a token is spent. Errors never
//! quote the input.

use zeroize::Zeroizing;

use crate::secret::SecretBytes;

pub use cloister_protocol::workload::{
    ChatMessage, LimitError, MAX_AT_BYTES, MAX_FROM_BYTES, MAX_MESSAGES, MAX_TEXT_BYTES,
    MAX_WORDS_RANGE, SummarizeRequest,
};

/// Where in the input a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// A line of plain-text input (1-based).
    Line(usize),
    /// A message of JSON input (0-based index).
    Message(usize),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Message(i) => write!(f, "messages[{i}]"),
        }
    }
}

/// Why an input cannot be sent. Never quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Nothing but whitespace.
    #[error("the input is empty")]
    Empty,
    /// Not UTF-8.
    #[error("the input is not UTF-8 text")]
    NotUtf8,
    /// JSON that does not parse or has the wrong shape.
    #[error("{what} at line {line} column {column}")]
    Json {
        /// Category of the problem.
        what: &'static str,
        /// Line (1-based).
        line: usize,
        /// Column (1-based).
        column: usize,
    },
    /// Plain text whose first message has no sender.
    #[error("line {line}: expected `Sender: text`, found no sender")]
    NoSender {
        /// Line (1-based).
        line: usize,
    },
    /// More messages than the summariser takes.
    #[error("{count} messages; at most {max}")]
    TooManyMessages {
        /// Messages given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A field longer than the summariser takes.
    #[error("{at}: {field} is {len} bytes; at most {max}")]
    FieldTooLong {
        /// Where.
        at: Location,
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A message whose text is blank.
    #[error("{at}: the message text is empty")]
    EmptyMessage {
        /// Where.
        at: Location,
    },
    /// `max_words` out of range.
    #[error("max_words {found} is not in {}..={}", MAX_WORDS_RANGE.0, MAX_WORDS_RANGE.1)]
    MaxWords {
        /// Value given.
        found: u32,
    },
    /// A tone `/v1/rewrite` does not offer.
    #[error(transparent)]
    Tone(#[from] cloister_protocol::workload::UnknownTone),
    /// A draft longer than `/v1/rewrite` takes.
    #[error("the draft is {len} bytes; at most {max}")]
    DraftTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A workload's answer that is not the JSON expected.
    #[error("the node's answer is not the expected JSON: {0}")]
    Answer(&'static str),
}

/// The `cloister summarize` input read into the contract's `POST /v1/summarize` body
/// (`cloister_protocol::workload::SummarizeRequest`), checked against its limits with the
/// problem's line or message named.
pub trait ChatInput: Sized {
    /// Reads a chat in either format (see the module documentation) and checks it.
    fn parse(input: &[u8]) -> Result<Self, InputError>;
    /// Sets `max_words` (checked).
    fn with_max_words(self, max_words: Option<u32>) -> Result<Self, InputError>;
    /// The canonical JSON body.
    fn to_body(&self) -> SecretBytes;
}

impl ChatInput for SummarizeRequest {
    fn parse(input: &[u8]) -> Result<Self, InputError> {
        let text = std::str::from_utf8(input).map_err(|_| InputError::NotUtf8)?;
        let (req, lines) = match text.trim_start().chars().next() {
            None => return Err(InputError::Empty),
            Some('{') => (from_json::<SummarizeRequest>(input)?, None),
            Some('[') => {
                let messages = from_json::<Vec<ChatMessage>>(input)?;
                let req = SummarizeRequest {
                    messages,
                    max_words: None,
                };
                (req, None)
            }
            Some(_) => {
                let (messages, lines) = from_plain_text(text)?;
                let req = SummarizeRequest {
                    messages,
                    max_words: None,
                };
                (req, Some(lines))
            }
        };
        req.validate().map_err(|e| located(e, lines.as_deref()))?;
        Ok(req)
    }

    fn with_max_words(mut self, max_words: Option<u32>) -> Result<Self, InputError> {
        if max_words.is_some() {
            self.max_words = max_words;
        }
        self.validate().map_err(|e| located(e, None))?;
        Ok(self)
    }

    fn to_body(&self) -> SecretBytes {
        let estimate = 32
            + self
                .messages
                .iter()
                .map(|m| m.from.len() + m.at.len() + m.text.len() + 64)
                .sum::<usize>();
        let mut out = Zeroizing::new(Vec::with_capacity(estimate));
        // Writing plain structs of strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, self);
        SecretBytes::from(out)
    }
}

/// The contract's limit, located by the message's first line (plain text) or its index.
fn located(e: LimitError, lines: Option<&[usize]>) -> InputError {
    let at = |i: usize| match lines.and_then(|l| l.get(i)) {
        Some(line) => Location::Line(*line),
        None => Location::Message(i),
    };
    match e {
        LimitError::EmptyThread => InputError::Empty,
        LimitError::TooManyMessages { count, max } => InputError::TooManyMessages { count, max },
        LimitError::FieldTooLong {
            index,
            field,
            len,
            max,
        } => InputError::FieldTooLong {
            at: at(index.unwrap_or(0)),
            field,
            len,
            max,
        },
        LimitError::EmptyText { index } => InputError::EmptyMessage {
            at: at(index.unwrap_or(0)),
        },
        LimitError::MaxWords { found } => InputError::MaxWords { found },
    }
}

/// Reads JSON, reporting only the category and position of a problem (serde's messages can
/// quote the input).
fn from_json<T: serde::de::DeserializeOwned>(input: &[u8]) -> Result<T, InputError> {
    serde_json::from_slice(input).map_err(|e| {
        use serde_json::error::Category;
        let what = match e.classify() {
            Category::Io | Category::Syntax => "malformed JSON",
            Category::Data => "JSON of the wrong shape (missing, unknown or mistyped field)",
            Category::Eof => "truncated JSON",
        };
        InputError::Json {
            what,
            line: e.line(),
            column: e.column(),
        }
    })
}

/// A new message's sender and text, if `line` starts one.
fn sender_line(line: &str) -> Option<(&str, &str)> {
    if line.starts_with(char::is_whitespace) {
        return None;
    }
    let (from, text) = line.split_once(':')?;
    let from = from.trim_end();
    (!from.is_empty() && from.len() <= MAX_FROM_BYTES).then_some((from, text.trim()))
}

/// Plain-text messages and the line each starts on.
fn from_plain_text(text: &str) -> Result<(Vec<ChatMessage>, Vec<usize>), InputError> {
    // (sender, parts, first line): parts are joined once, so the text is not copied around.
    let mut pending: Vec<(&str, Vec<&str>, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        if let Some((from, first)) = sender_line(raw) {
            pending.push((from, vec![first], line));
        } else if let Some((_, parts, _)) = pending.last_mut() {
            parts.push(raw.trim());
        } else {
            return Err(InputError::NoSender { line });
        }
    }
    let lines = pending.iter().map(|(_, _, line)| *line).collect();
    let messages = pending
        .into_iter()
        .map(|(from, parts, _)| ChatMessage {
            from: from.to_owned(),
            at: String::new(),
            text: parts
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join("\n"),
        })
        .collect();
    Ok((messages, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(input: &str) -> String {
        let req = SummarizeRequest::parse(input.as_bytes()).expect("valid");
        String::from_utf8(req.to_body().expose().to_vec()).expect("utf-8")
    }

    #[test]
    fn json_object_is_forwarded_canonically() {
        let input = r#" { "max_words": 50, "messages": [ {"text": "hi", "at": "10:00", "from": "Ana"} ] } "#;
        assert_eq!(
            body(input),
            r#"{"messages":[{"from":"Ana","at":"10:00","text":"hi"}],"max_words":50}"#
        );
    }

    #[test]
    fn json_array_of_messages_is_accepted() {
        let input = r#"[{"from":"Ana","at":"","text":"a"},{"from":"Bo","at":"","text":"b"}]"#;
        assert_eq!(
            body(input),
            r#"{"messages":[{"from":"Ana","at":"","text":"a"},{"from":"Bo","at":"","text":"b"}]}"#
        );
    }

    #[test]
    fn plain_text_lines_become_messages() {
        let input =
            "Ana: are we still on for 7?\n\n  I can bring the salad\nBo:yes!\nsee you: there\n";
        let req = SummarizeRequest::parse(input.as_bytes()).expect("valid");
        let got: Vec<(&str, &str)> = req
            .messages
            .iter()
            .map(|m| (m.from.as_str(), m.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Ana", "are we still on for 7?\nI can bring the salad"),
                ("Bo", "yes!"),
                ("see you", "there"),
            ]
        );
        // A line without a `Name:` prefix continues the message before it.
        let req = SummarizeRequest::parse(b"Ana: one\ntwo, three\n").expect("valid");
        assert_eq!(req.messages.len(), 1);
        assert_eq!(req.messages[0].text, "one\ntwo, three");
    }

    #[test]
    fn errors_carry_line_numbers_and_no_content() {
        let e = |s: &str| SummarizeRequest::parse(s.as_bytes()).expect_err("invalid");
        assert_eq!(e(""), InputError::Empty);
        assert_eq!(e(" \n\t\n"), InputError::Empty);
        assert_eq!(
            e("\n\n  no sender SECRET\nAna: x"),
            InputError::NoSender { line: 3 }
        );
        assert_eq!(
            e("Ana: fine\nBo:\n\nCy: ok"),
            InputError::EmptyMessage {
                at: Location::Line(2)
            }
        );
        let long = format!("Ana: hi\nBo: {}", "x".repeat(MAX_TEXT_BYTES + 1));
        assert_eq!(
            e(&long),
            InputError::FieldTooLong {
                at: Location::Line(2),
                field: "text",
                len: MAX_TEXT_BYTES + 1,
                max: MAX_TEXT_BYTES
            }
        );
        assert!(matches!(
            e("{\"messages\": [SECRET"),
            InputError::Json { line: 1, .. }
        ));
        let wrong = e("{\"messages\": \"SECRET\"}");
        assert!(matches!(wrong, InputError::Json { .. }));
        assert!(!wrong.to_string().contains("SECRET"), "{wrong}");
        assert!(matches!(
            e(r#"{"messages":[{"from":"a","at":"b","text":"c","x":1}]}"#),
            InputError::Json { .. }
        ));
        assert_eq!(e(r#"{"messages":[]}"#), InputError::Empty);
        assert_eq!(
            e(r#"[{"from":"a","at":"","text":"c"},{"from":"a","at":"","text":" "}]"#),
            InputError::EmptyMessage {
                at: Location::Message(1)
            }
        );
        assert_eq!(
            e(r#"{"messages":[{"from":"a","at":"","text":"c"}],"max_words":5}"#),
            InputError::MaxWords { found: 5 }
        );
        assert_eq!(
            SummarizeRequest::parse(&[0xff, 0xfe]).err(),
            Some(InputError::NotUtf8)
        );
        let many = "A: x\n".repeat(MAX_MESSAGES + 1);
        assert!(matches!(e(&many), InputError::TooManyMessages { .. }));
    }

    #[test]
    fn max_words_is_set_and_checked() {
        let req = SummarizeRequest::parse(b"Ana: hi").expect("valid");
        let req = req.with_max_words(Some(40)).expect("in range");
        assert!(String::from_utf8_lossy(req.to_body().expose()).ends_with(r#","max_words":40}"#));
        let req = SummarizeRequest::parse(b"Ana: hi").expect("valid");
        assert_eq!(
            req.with_max_words(Some(401)).err(),
            Some(InputError::MaxWords { found: 401 })
        );
    }

    #[test]
    fn debug_shows_no_plaintext() {
        let req = SummarizeRequest::parse(b"Ana: MARKER-42").expect("valid");
        let dbg = format!("{req:?} {:?}", req.messages[0]);
        assert!(!dbg.contains("MARKER") && !dbg.contains("Ana"), "{dbg}");
    }
}
