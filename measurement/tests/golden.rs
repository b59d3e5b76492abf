//! Real vectors through the full verifier.
mod common;

use cloister_measurement::{
    FixedClock, MachineId, Policy, Step, TrustAnchor, Verifier, VerifyError,
};
use common::*;
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser as _;

fn milan_policy() -> Policy {
    let r = AttestationReport::from_bytes(&milan_report()).expect("parses");
    Policy::default().with_snp_measurement(r.measurement)
}

/// The real Milan report verifies under AMD's pinned Milan root: chain, signature, policy,
/// expiry and measurement pass. Its report_data was not made for a Cloister key, so the
/// binding — and only the binding — refuses it. (It was taken on firmware from before AMD's
/// fixes, SNP SPL 8 and microcode SPL 115 (0x73): the shipped floors refuse it — see the next
/// test — so this one lowers nothing but reads the floors' step apart.)
#[test]
fn real_milan_report_is_refused_by_the_shipped_tcb_floor_and_passes_everything_else() {
    let v = Verifier::new(
        TrustAnchor::hardware().expect("pinned roots"),
        milan_policy(),
        FixedClock(CRL_NOW),
    );
    let inspection = v.inspect(&milan_bundle(false), b"");
    for c in &inspection.checks {
        match c.step {
            Step::Binding => assert_eq!(c.result, Err(VerifyError::ReportDataMismatch)),
            // AMD-SB-3023's SNP SPL 0x1B (27); the report's firmware has 8.
            Step::Policy => assert_eq!(
                c.result,
                Err(VerifyError::TcbTooLow {
                    component: "snp",
                    found: 8,
                    min: 0x1B
                })
            ),
            _ => assert!(c.result.is_ok(), "{:?}: {:?}", c.step, c.result),
        }
    }
    // A policy file with a zero floor does not lower the shipped one.
    let zero = Policy {
        snp_min_tcb: cloister_measurement::MinTcb::default(),
        ..milan_policy()
    };
    let v = Verifier::new(
        TrustAnchor::hardware().expect("pinned"),
        zero,
        FixedClock(CRL_NOW),
    );
    assert!(matches!(
        v.verify(&milan_bundle(false), b""),
        Err(VerifyError::TcbTooLow {
            component: "snp",
            ..
        })
    ));
}

#[test]
fn real_milan_report_verifies_under_the_amd_anchor() {
    for with_ask_ark in [false, true] {
        let v = Verifier::new(
            TrustAnchor::hardware().expect("pinned roots"),
            milan_policy(),
            FixedClock(CRL_NOW),
        );
        let inspection = v.inspect(&milan_bundle(with_ask_ark), b"");
        for c in &inspection.checks {
            match c.step {
                Step::Binding => assert_eq!(c.result, Err(VerifyError::ReportDataMismatch)),
                Step::Policy => assert!(
                    matches!(c.result, Err(VerifyError::TcbTooLow { .. })),
                    "{:?}",
                    c.result
                ),
                _ => assert!(c.result.is_ok(), "{:?}: {:?}", c.step, c.result),
            }
        }
        assert_eq!(inspection.checks.len(), Step::ALL.len());
        let chain = &inspection.checks[2];
        assert!(
            chain
                .result
                .as_ref()
                .is_ok_and(|s| s.starts_with("Milan") && s.contains("not revoked (CRL #12")),
            "{chain:?}"
        );
        // The machine is the report's chip, the one the VCEK's hwID names.
        let r = AttestationReport::from_bytes(&milan_report()).expect("parses");
        assert_eq!(
            inspection.machine(),
            Some(&MachineId::SnpChip(r.chip_id.to_vec()))
        );
    }
}

/// Revocation is checked offline from the stapled CRL: without one, hardware evidence is
/// refused (unless the policy says otherwise by name); a stale one is refused; another
/// product's is refused.
#[test]
fn real_milan_report_needs_a_current_crl_of_its_own_product() {
    let v = |policy: Policy, now: u64| {
        Verifier::new(
            TrustAnchor::hardware().expect("pinned"),
            policy,
            FixedClock(now),
        )
    };
    let chain = |v: &Verifier<FixedClock>, bundle: &cloister_protocol::EvidenceBundle| {
        v.inspect(bundle, b"")
            .checks
            .iter()
            .find(|c| c.step == Step::Chain)
            .map(|c| c.result.clone())
            .expect("chain step")
    };
    let with_crl = |crl: Option<Vec<u8>>| {
        let mut b = milan_bundle(true);
        if let cloister_protocol::Endorsements::Snp(c) = &mut b.endorsements {
            c.crl = crl;
        }
        b
    };
    assert_eq!(
        chain(&v(milan_policy(), CRL_NOW), &with_crl(None)),
        Err(VerifyError::CrlAbsent)
    );
    let lenient = Policy {
        snp_require_crl: false,
        ..milan_policy()
    };
    assert!(chain(&v(lenient, CRL_NOW), &with_crl(None)).is_ok_and(|s| s.ends_with("no CRL")));
    // 2026-12-07: AMD's CRL #12 ran out on 2026-11-09.
    assert!(matches!(
        chain(&v(milan_policy(), 1_796_601_600), &milan_bundle(true)),
        Err(VerifyError::CrlStale { .. })
    ));
    assert!(matches!(
        chain(
            &v(milan_policy(), CRL_NOW),
            &with_crl(Some(testdata("crl/genoa_11.crl")))
        ),
        Err(VerifyError::CrlWrongIssuer { .. })
    ));
}

#[test]
fn real_milan_report_is_refused_under_the_emulated_anchor() {
    let v = emulated_verifier_with(milan_policy(), NOW);
    assert!(matches!(
        v.verify(&milan_bundle(true), b""),
        Err(VerifyError::PlatformNotTrusted { .. })
    ));
}

pub fn tdx_policy() -> Policy {
    Policy {
        tdx: vec![tdx_reference("tdx_quote.bin")],
        ..Policy::default()
    }
}

/// dcap-qvl's real TDX quote verifies under Intel's root at a time inside its collateral's
/// window; only the binding refuses it (it binds no Cloister key).
#[test]
fn real_tdx_quote_verifies_under_the_intel_anchor() {
    let v = Verifier::new(
        TrustAnchor::hardware().expect("pinned roots"),
        tdx_policy(),
        FixedClock(TDX_NOW),
    );
    let inspection = v.inspect(
        &tdx_bundle("tdx_quote.bin", "tdx_quote_collateral.json"),
        b"",
    );
    assert_eq!(inspection.checks.len(), Step::ALL.len());
    for c in &inspection.checks {
        if c.step == Step::Binding {
            assert_eq!(c.result, Err(VerifyError::ReportDataMismatch));
        } else {
            assert!(c.result.is_ok(), "{:?}: {:?}", c.step, c.result);
        }
    }
    // The machine is the platform its PCK certificate names (a 16-byte PPID).
    let machine = inspection.machine().expect("known after the signature");
    assert!(matches!(machine, MachineId::TdxPlatform(p) if p.len() == 16));
    let signature = &inspection.checks[3];
    assert!(
        signature
            .result
            .as_ref()
            .is_ok_and(|s| s.ends_with(&machine.to_string())),
        "{signature:?}"
    );
}

/// The same quote today: Intel's collateral has expired, and the verifier says so.
#[test]
fn real_tdx_quote_with_stale_collateral_is_refused() {
    let v = Verifier::new(
        TrustAnchor::hardware().expect("pinned roots"),
        tdx_policy(),
        FixedClock(NOW),
    );
    assert!(matches!(
        v.verify(
            &tdx_bundle("tdx_quote.bin", "tdx_quote_collateral.json"),
            b""
        ),
        Err(VerifyError::TdxCollateralExpired { .. })
    ));
}
