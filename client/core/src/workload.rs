//! The guest workloads' other bodies: the `POST /v1/rewrite` request (a draft and a tone from a
//! closed set), and the text inside the summariser's and the rewriter's JSON answers.

use zeroize::Zeroizing;

use crate::chat::InputError;
use crate::secret::SecretBytes;

pub use cloister_protocol::workload::{
    MAX_DRAFT_BYTES, RewriteRequest, RewriteResponse, SummarizeResponse, Tone,
};

/// The body of `POST /v1/rewrite` for `draft` (UTF-8; surrounding whitespace dropped).
pub fn rewrite_body(draft: &[u8], tone: Tone) -> Result<SecretBytes, InputError> {
    let text = std::str::from_utf8(draft)
        .map_err(|_| InputError::NotUtf8)?
        .trim();
    if text.is_empty() {
        return Err(InputError::Empty);
    }
    if text.len() > MAX_DRAFT_BYTES {
        return Err(InputError::DraftTooLong {
            len: text.len(),
            max: MAX_DRAFT_BYTES,
        });
    }
    let request = RewriteRequest {
        text: text.to_owned(),
        tone,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(text.len() + 64));
    // A struct of a string and an enum always serializes.
    let _ = serde_json::to_writer(&mut *out, &request);
    Ok(SecretBytes::from(out))
}

/// The `summary` of a `/v1/summarize` answer (the contract's `SummarizeResponse`).
pub fn summary_text(answer: &[u8]) -> Result<Zeroizing<String>, InputError> {
    let a: SummarizeResponse = serde_json::from_slice(answer)
        .map_err(|_| InputError::Answer("expected the summariser's answer object"))?;
    Ok(Zeroizing::new(a.summary.clone()))
}

/// The `text` of a `/v1/rewrite` answer (the contract's `RewriteResponse`).
pub fn rewrite_text(answer: &[u8]) -> Result<Zeroizing<String>, InputError> {
    let a: RewriteResponse = serde_json::from_slice(answer)
        .map_err(|_| InputError::Answer("expected an object with a \"text\" string"))?;
    Ok(Zeroizing::new(a.text.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_bodies_are_the_summarisers_shape() {
        let b = rewrite_body(b"  see you at 7\n", "Formal".parse().expect("tone")).expect("body");
        assert_eq!(b.expose(), br#"{"text":"see you at 7","tone":"formal"}"#);
        assert_eq!(
            "pirate".parse::<Tone>(),
            Err(cloister_protocol::workload::UnknownTone("pirate".into()))
        );
        assert_eq!(
            rewrite_body(b" \n", Tone::Concise).err(),
            Some(InputError::Empty)
        );
        let long = vec![b'x'; MAX_DRAFT_BYTES + 1];
        assert!(matches!(
            rewrite_body(&long, Tone::Concise),
            Err(InputError::DraftTooLong { .. })
        ));
        assert_eq!(
            rewrite_body(&[0xff], Tone::Concise).err(),
            Some(InputError::NotUtf8)
        );
    }

    #[test]
    fn answers_yield_their_text() {
        let s = summary_text(
            br#"{"summary":"Dinner at 7.","model":"m","truncated":false,"messages_used":1,"tokens_in":1,"tokens_out":1,"stop":"eos"}"#,
        )
        .expect("summary");
        assert_eq!(s.as_str(), "Dinner at 7.");
        assert_eq!(
            rewrite_text(br#"{"text":"Hi."}"#).expect("text").as_str(),
            "Hi."
        );
        assert!(matches!(summary_text(b"{}"), Err(InputError::Answer(_))));
        assert!(matches!(rewrite_text(b"nope"), Err(InputError::Answer(_))));
    }
}
