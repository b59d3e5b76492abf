//! The guest's measured kernel command line (`cloister.*` parameters).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cloister_protocol::GuestConfig::from_cmdline(text);
    }
});
