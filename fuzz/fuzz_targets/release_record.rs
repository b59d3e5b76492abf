//! Transparency-log release records (one canonical encoding only).
#![no_main]

use cloister_fuzz::{release_record, write_seeds};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![("record", release_record(1))]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(r) = cloister_transparency::ReleaseRecord::from_bytes(data) {
        // Canonical: what is accepted is exactly its own encoding.
        assert_eq!(r.to_bytes().expect("encodes"), data);
    }
});
