//! Evidence bundle decoding (JSON, base64 fields, per-platform shape) and, when it decodes,
//! the log proof it carries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = cloister_protocol::EvidenceBundle::from_json(data) {
        // What decodes must encode and decode to itself.
        let again = cloister_protocol::EvidenceBundle::from_json(&bundle.to_json())
            .expect("a decoded bundle re-encodes to a valid one");
        assert_eq!(again, bundle);
    }
    let _ = cloister_protocol::LogProof::from_json(data);
});
