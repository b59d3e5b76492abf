//! SNP report parsing and the whole verification after it, against the real Milan chain
//! (VCEK from the host's table, ASK and ARK pinned) and a policy that expects the Milan
//! report's own measurement — so a report that parses goes through chain, signature, policy
//! and measurement before the `report_data` binding (which a vector from outside Cloister
//! never satisfies) refuses it.
#![no_main]

use std::sync::OnceLock;

use cloister_fuzz::{SNP_NOW, milan_report, testdata, write_seeds};
use cloister_measurement::{FixedClock, Policy, TrustAnchor, Verifier};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform, SnpCertificates};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    verifier: Verifier<FixedClock>,
    vcek: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let report = milan_report();
        let measurement: [u8; 48] = report[0x90..0xC0].try_into().expect("48 bytes");
        let policy = Policy::default().with_snp_measurement(measurement);
        let anchor = TrustAnchor::hardware().expect("pinned AMD roots");
        Fixture {
            verifier: Verifier::new(anchor, policy, FixedClock(SNP_NOW)),
            vcek: testdata("snp_milan_vcek.der"),
        }
    })
}

fuzz_target!(
    init: write_seeds(|| vec![("milan", milan_report())]),
    |data: &[u8]| {
        let f = fixture();
        let bundle = EvidenceBundle {
            platform: Platform::SevSnp,
            evidence: data.to_vec(),
            endorsements: Endorsements::Snp(SnpCertificates {
                vcek: f.vcek.clone(),
                ask: None,
                ark: None,
                crl: None,
            }),
            key_config: b"\x01\x00\x20fuzz-key-config".to_vec(),
            expires_at: SNP_NOW + 3600,
            image_manifest_digest: [0x22; 32],
            log_proof: None,
        };
        let inspection = f.verifier.inspect(&bundle, b"");
        assert!(
            !inspection.is_accepted(),
            "a report not bound to this key config was accepted"
        );
    }
);
