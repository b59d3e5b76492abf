//! The summariser's request bodies as the guest reads them after the inner layer:
//! `/v1/summarize` and `/v1/rewrite` JSON, with their limits. What is accepted keeps its
//! plaintext out of `Debug`.
#![no_main]

use cloister_fuzz::write_seeds;
use cloister_summarizer::api::{RewriteRequest, SummarizeRequest};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![
        (
            "summarize",
            br#"{"messages":[{"from":"Ana","at":"2026-03-01T10:02","text":"Dinner at 7?"},{"from":"Ben","at":"2026-03-01T10:05","text":"Yes, the usual place"}],"max_words":60}"#.to_vec(),
        ),
        ("rewrite", br#"{"text":"can't make it tmrw sorry","tone":"apologetic"}"#.to_vec()),
    ]
}

fn hidden(debug: &str, text: &str) -> bool {
    // Short or numeric texts can coincide with the lengths Debug does show.
    text.len() < 8 || text.chars().all(|c| c.is_ascii_digit()) || !debug.contains(text)
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(req) = SummarizeRequest::from_json(data) {
        assert!(!req.messages.is_empty());
        let debug = format!("{req:?}");
        for m in &req.messages {
            assert!(hidden(&debug, &m.text), "message text in Debug");
        }
    }
    if let Ok(req) = RewriteRequest::from_json(data) {
        assert!(hidden(&format!("{req:?}"), &req.text), "draft in Debug");
    }
});
