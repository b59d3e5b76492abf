//! The CLI's chat input (summariser JSON, an array of messages, or `Sender: text` lines).
#![no_main]

use cloister_device_core::ChatInput;
use cloister_fuzz::write_seeds;
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![
        ("json", br#"{"messages":[{"from":"Ana","at":"2026-03-01T10:02","text":"Dinner at 7?"}],"max_words":60}"#.to_vec()),
        ("array", br#"[{"from":"Ana","at":"","text":"Dinner?"},{"from":"Ben","at":"","text":"Yes"}]"#.to_vec()),
        ("text", b"Ana: Dinner at 7?\nBen: Yes,\n  the usual place\n\nAna: great".to_vec()),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let _ = cloister_device_core::SummarizeRequest::parse(data);
});
