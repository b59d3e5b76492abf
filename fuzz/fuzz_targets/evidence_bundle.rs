//! Evidence bundle decoding (JSON, base64 fields, per-platform shape) and, when it decodes,
//! the log proof it carries.
#![no_main]

use cloister_fuzz::{real_bundles, write_seeds};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let b = real_bundles();
    let proof = b[1]
        .log_proof
        .as_ref()
        .expect("the TDX seed carries a proof");
    vec![
        ("milan", b[0].to_json()),
        ("tdx-with-proof", b[1].to_json()),
        ("log-proof", proof.to_json()),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(bundle) = cloister_protocol::EvidenceBundle::from_json(data) {
        // What decodes must encode and decode to itself.
        let again = cloister_protocol::EvidenceBundle::from_json(&bundle.to_json())
            .expect("a decoded bundle re-encodes to a valid one");
        assert_eq!(again, bundle);
    }
    let _ = cloister_protocol::LogProof::from_json(data);
});
