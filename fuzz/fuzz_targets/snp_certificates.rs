//! Certificate chain decoding: the host supplies the VCEK (and may supply an ASK and ARK);
//! each in turn is replaced by the fuzzer's bytes under the real Milan report. Also the
//! emulated platform's root, read from an ARK DER.
#![no_main]

use std::sync::OnceLock;

use cloister_fuzz::{SNP_NOW, milan_ask_ark, milan_report, tagged, testdata, write_seeds};
use cloister_measurement::{FixedClock, InsecureEmulatedRoot, Policy, TrustAnchor, Verifier};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform, SnpCertificates};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    verifier: Verifier<FixedClock>,
    report: Vec<u8>,
    vcek: Vec<u8>,
    ask: Vec<u8>,
    ark: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (ask, ark) = milan_ask_ark();
        let anchor = TrustAnchor::hardware().expect("pinned AMD roots");
        Fixture {
            verifier: Verifier::new(anchor, Policy::default(), FixedClock(SNP_NOW)),
            report: milan_report(),
            vcek: testdata("snp_milan_vcek.der"),
            ask,
            ark,
        }
    })
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let f = fixture();
    vec![
        ("vcek", tagged(0, &f.vcek)),
        ("ask", tagged(1, &f.ask)),
        ("ark", tagged(2, &f.ark)),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let f = fixture();
    let Some((&mode, der)) = data.split_first() else {
        return;
    };
    let mut certs = SnpCertificates {
        vcek: f.vcek.clone(),
        ask: Some(f.ask.clone()),
        ark: Some(f.ark.clone()),
        crl: None,
    };
    match mode % 3 {
        0 => certs.vcek = der.to_vec(),
        1 => certs.ask = Some(der.to_vec()),
        _ => {
            certs.ark = Some(der.to_vec());
            let _ = InsecureEmulatedRoot::from_ark_der(der);
        }
    }
    let bundle = EvidenceBundle {
        platform: Platform::SevSnp,
        evidence: f.report.clone(),
        endorsements: Endorsements::Snp(certs),
        key_config: b"\x01\x00\x20fuzz-key-config".to_vec(),
        expires_at: SNP_NOW + 3600,
        image_manifest_digest: [0x22; 32],
        log_proof: None,
    };
    assert!(!f.verifier.inspect(&bundle, b"").is_accepted());
});
