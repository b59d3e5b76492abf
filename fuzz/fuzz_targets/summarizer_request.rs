//! The summariser's request bodies as the guest reads them after the inner layer:
//! `/v1/summarize` and `/v1/rewrite` JSON, with their limits. What is accepted prints the same
//! `Debug` whatever its plaintext (a first harness that searched for the text in `Debug` was
//! fooled by a draft `pologetic` beside the tone `Apologetic`; that input stays in the seeds).
#![no_main]

use cloister_fuzz::write_seeds;
use cloister_summarizer::FromBody;
use cloister_summarizer::api::{ChatMessage, RewriteRequest, SummarizeRequest};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![
        (
            "summarize",
            br#"{"messages":[{"from":"Ana","at":"2026-03-01T10:02","text":"Dinner at 7?"},{"from":"Ben","at":"2026-03-01T10:05","text":"Yes, the usual place"}],"max_words":60}"#.to_vec(),
        ),
        ("rewrite", br#"{"text":"can't make it tmrw sorry","tone":"apologetic"}"#.to_vec()),
        ("draft-like-its-tone", br#"{"text":"pologetic","tone":"apologetic"}"#.to_vec()),
    ]
}

fn masked(s: &str) -> String {
    "x".repeat(s.len())
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    // Debug must not depend on the plaintext: the same request with every text replaced by
    // as many `x` prints the same.
    if let Ok(req) = SummarizeRequest::from_json(data) {
        assert!(!req.messages.is_empty());
        let same = SummarizeRequest {
            messages: req
                .messages
                .iter()
                .map(|m| ChatMessage {
                    from: masked(&m.from),
                    at: masked(&m.at),
                    text: masked(&m.text),
                })
                .collect(),
            max_words: req.max_words,
        };
        assert_eq!(format!("{req:?}"), format!("{same:?}"), "plaintext in Debug");
    }
    if let Ok(req) = RewriteRequest::from_json(data) {
        let same = RewriteRequest {
            text: masked(&req.text),
            tone: req.tone,
        };
        assert_eq!(format!("{req:?}"), format!("{same:?}"), "draft in Debug");
    }
});
