//! Transparency-log release records (one canonical encoding only).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = cloister_transparency::ReleaseRecord::from_bytes(data) {
        // Canonical: what is accepted is exactly its own encoding.
        assert_eq!(r.to_bytes().expect("encodes"), data);
    }
});
