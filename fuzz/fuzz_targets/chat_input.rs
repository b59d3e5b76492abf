//! The CLI's chat input (summariser JSON, an array of messages, or `Sender: text` lines).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cloister_client::SummarizeRequest::parse(data);
});
