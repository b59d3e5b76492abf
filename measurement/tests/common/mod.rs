//! Shared fixtures: real vectors from `testdata/` and emulated processors.
#![allow(dead_code)]

use std::sync::OnceLock;

use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_measurement::{FixedClock, Policy, TrustAnchor, Verifier};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform, SnpCertificates, report_data};
use sev::firmware::guest::AttestationReport;

pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata");

pub fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}/{name}")).expect("test vector present")
}

/// 2026-01-01T00:00:00Z: inside the Milan VCEK's and the emulated chain's validity.
pub const NOW: u64 = 1_767_225_600;
/// The key config the emulated guest binds (any bytes do: the verifier treats it as opaque).
pub const KEY_CONFIG: &[u8] = b"\x01\x00\x20example-ohttp-key-config-bytes";
pub const EXPIRES_AT: u64 = NOW + 24 * 3600;
pub const MEASUREMENT: [u8; 48] = [0x5a; 48];

pub fn emulated() -> &'static EmulatedSnpSigner {
    static S: OnceLock<EmulatedSnpSigner> = OnceLock::new();
    S.get_or_init(|| EmulatedSnpSigner::from_seed(&[1u8; 32]).expect("emulated processor"))
}

/// A second, independent emulated processor (another root).
pub fn other_emulated() -> &'static EmulatedSnpSigner {
    static S: OnceLock<EmulatedSnpSigner> = OnceLock::new();
    S.get_or_init(|| EmulatedSnpSigner::from_seed(&[2u8; 32]).expect("emulated processor"))
}

pub fn bound_report_data(nonce: &[u8]) -> [u8; 64] {
    report_data(KEY_CONFIG, EXPIRES_AT, nonce).expect("binds")
}

/// A correctly bound report from the emulated processor, after `edit`, signed.
pub fn emulated_report(edit: impl FnOnce(&mut AttestationReport)) -> Vec<u8> {
    let s = emulated();
    let mut r = s.report_template(MEASUREMENT, bound_report_data(b""));
    edit(&mut r);
    s.sign(&r).expect("signs")
}

pub fn emulated_bundle(report: Vec<u8>) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::EmulatedSevSnp,
        evidence: report,
        endorsements: Endorsements::Snp(emulated().certificates()),
        key_config: KEY_CONFIG.to_vec(),
        expires_at: EXPIRES_AT,
        image_manifest_digest: [0x11; 32],
        log_proof: None,
    }
}

pub fn emulated_policy() -> Policy {
    Policy::default().with_snp_measurement(MEASUREMENT)
}

pub fn emulated_verifier_with(policy: Policy, now: u64) -> Verifier<FixedClock> {
    let root = emulated().insecure_root().expect("root");
    Verifier::new(TrustAnchor::InsecureEmulated(root), policy, FixedClock(now))
}

pub fn emulated_verifier() -> Verifier<FixedClock> {
    emulated_verifier_with(emulated_policy(), NOW)
}

pub fn milan_report() -> Vec<u8> {
    let hex_text = String::from_utf8(testdata("snp_milan_report.hex")).expect("utf-8");
    hex::decode(hex_text.trim()).expect("hex")
}

/// ASK and ARK DER from the PEM chain (ASK first, as AMD's KDS serves it).
pub fn milan_ask_ark() -> (Vec<u8>, Vec<u8>) {
    use der::DecodePem as _;
    use der::Encode as _;
    let pem = String::from_utf8(testdata("snp_milan_ask_ark.pem")).expect("utf-8");
    let blocks: Vec<&str> = pem
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|b| b.contains("BEGIN"))
        .collect();
    let der = |b: &str| {
        x509_cert::Certificate::from_pem(b.trim())
            .expect("pem")
            .to_der()
            .expect("der")
    };
    (der(blocks[0]), der(blocks[1]))
}

/// 2026-10-01T00:00:00Z: inside AMD's real CRLs' window (2026-09-22 to 2026-11-09) and the
/// Milan VCEK's validity.
pub const CRL_NOW: u64 = 1_790_812_800;

/// The real Milan report and VCEK (ASK and ARK too when asked), with AMD's real Milan CRL
/// stapled; its expiry an hour after [`CRL_NOW`].
pub fn milan_bundle(with_ask_ark: bool) -> EvidenceBundle {
    let (ask, ark) = milan_ask_ark();
    EvidenceBundle {
        platform: Platform::SevSnp,
        evidence: milan_report(),
        endorsements: Endorsements::Snp(SnpCertificates {
            vcek: testdata("snp_milan_vcek.der"),
            ask: with_ask_ark.then_some(ask),
            ark: with_ask_ark.then_some(ark),
            crl: Some(testdata("crl/milan_12.crl")),
        }),
        key_config: KEY_CONFIG.to_vec(),
        expires_at: CRL_NOW + 3600,
        image_manifest_digest: [0x22; 32],
        log_proof: None,
    }
}

pub fn tdx_bundle(quote: &str, collateral: &str) -> EvidenceBundle {
    EvidenceBundle {
        platform: Platform::Tdx,
        evidence: testdata(quote),
        endorsements: Endorsements::Tdx {
            collateral: testdata(collateral),
        },
        key_config: KEY_CONFIG.to_vec(),
        expires_at: TDX_NOW + 3600,
        image_manifest_digest: [0x33; 32],
        log_proof: None,
    }
}

/// 2025-07-01T00:00:00Z: inside the sample TDX collateral's window.
pub const TDX_NOW: u64 = 1_751_328_000;
/// 2026-03-01T00:00:00Z: inside the outdated sample's collateral window.
pub const TDX_OUTDATED_NOW: u64 = 1_772_323_200;

pub fn tdx_reference(quote: &str) -> cloister_measurement::TdxReference {
    use cloister_measurement::Digest48;
    let q = dcap_qvl::quote::Quote::parse(&testdata(quote)).expect("parses");
    let td = match &q.report {
        dcap_qvl::quote::Report::TD10(r) => *r,
        dcap_qvl::quote::Report::TD15(r) => r.base,
        other => panic!("not a TD report: {other:?}"),
    };
    cloister_measurement::TdxReference {
        mrtd: Digest48(td.mr_td),
        rtmr0: Digest48(td.rt_mr0),
        rtmr1: Digest48(td.rt_mr1),
        rtmr2: Digest48(td.rt_mr2),
        rtmr3: Digest48(td.rt_mr3),
        mr_config_id: Digest48(td.mr_config_id),
        mr_owner: Digest48(td.mr_owner),
        mr_owner_config: Digest48(td.mr_owner_config),
        mr_service_td: Digest48(match &q.report {
            dcap_qvl::quote::Report::TD15(r) => r.mr_service_td,
            _ => [0; 48],
        }),
    }
}
