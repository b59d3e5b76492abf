//! Full evidence verification, as a device does it before sending anything.
//!
//! * `snp_emulated_bundle_json`: decode the JSON bundle, parse report and three certificates,
//!   ARK pin, ARK→ASK→VCEK (RSA-4096 PSS), validity, VCEK extensions, the ARK's CRL (RSA-4096
//!   PSS, freshness, the ASK not listed), report signature (P-384), policy, binding, expiry,
//!   measurement — every step, accepted.
//! * `snp_milan_real`: the same on AMD's real Milan report, VCEK and CRL under the pinned Milan
//!   root (refused at the TCB floor and the binding; every step runs).
use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_measurement::{FixedClock, Policy, TrustAnchor, Verifier};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform, SnpCertificates, report_data};
use criterion::{Criterion, criterion_group, criterion_main};
use sev::parser::ByteParser as _;

const NOW: u64 = 1_767_225_600;
/// 2026-10-01: inside AMD's real Milan CRL #12's window.
const CRL_NOW: u64 = 1_790_812_800;

fn bench(c: &mut Criterion) {
    let signer = EmulatedSnpSigner::from_seed(&[7u8; 32]).expect("emulated processor");
    let key_config = vec![0x42u8; 41];
    let expires_at = NOW + 3600;
    let measurement = [0x5au8; 48];
    let rd = report_data(&key_config, expires_at, b"").expect("binds");
    let bundle = EvidenceBundle {
        platform: Platform::EmulatedSevSnp,
        evidence: signer.attest(measurement, rd).expect("signs"),
        endorsements: Endorsements::Snp(SnpCertificates {
            crl: Some(signer.crl(&[], NOW - 3600, NOW + 86_400).expect("CRL")),
            ..signer.certificates()
        }),
        key_config: key_config.clone(),
        expires_at,
        image_manifest_digest: [0; 32],
        log_proof: None,
    };
    let json = bundle.to_json();
    let v = Verifier::new(
        TrustAnchor::InsecureEmulated(signer.insecure_root().expect("root")),
        Policy::default().with_snp_measurement(measurement),
        FixedClock(NOW),
    );
    v.verify_json(&json, b"").expect("verifies");
    c.bench_function("snp_emulated_bundle_json", |b| {
        b.iter(|| {
            v.verify_json(std::hint::black_box(&json), b"")
                .expect("verifies")
        })
    });

    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");
    let report_hex =
        std::fs::read_to_string(format!("{dir}/snp_milan_report.hex")).expect("vector");
    let report = hex::decode(report_hex.trim()).expect("hex");
    let parsed = sev::firmware::guest::AttestationReport::from_bytes(&report).expect("parses");
    let milan = EvidenceBundle {
        platform: Platform::SevSnp,
        evidence: report,
        endorsements: Endorsements::Snp(SnpCertificates {
            vcek: std::fs::read(format!("{dir}/snp_milan_vcek.der")).expect("vector"),
            ask: None,
            ark: None,
            crl: Some(std::fs::read(format!("{dir}/crl/milan_12.crl")).expect("vector")),
        }),
        key_config,
        expires_at: CRL_NOW + 3600,
        image_manifest_digest: [0; 32],
        log_proof: None,
    };
    let hv = Verifier::new(
        TrustAnchor::hardware().expect("pinned"),
        Policy::default().with_snp_measurement(parsed.measurement),
        FixedClock(CRL_NOW),
    );
    c.bench_function("snp_milan_real", |b| {
        b.iter(|| hv.inspect(std::hint::black_box(&milan), b""))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
