//! The TDX tamper table, on dcap-qvl's real sample quotes. A TDX quote cannot be re-signed
//! here (that needs Intel's PCK key), and the sample binds no Cloister key, so rows behind the
//! binding step are read from `Verifier::inspect`, which runs policy, binding, expiry and
//! measurement independently once the quote's signature holds.
mod common;

use cloister_measurement::{
    FixedClock, Policy, Step, TdxReference, TrustAnchor, Verifier, VerifyError,
};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform};
use common::*;

fn policy(edit: impl FnOnce(&mut TdxReference)) -> Policy {
    let mut r = tdx_reference("tdx_quote.bin");
    edit(&mut r);
    Policy {
        tdx: vec![r],
        ..Policy::default()
    }
}

fn verifier(policy: Policy, now: u64) -> Verifier<FixedClock> {
    Verifier::new(
        TrustAnchor::hardware().expect("pinned"),
        policy,
        FixedClock(now),
    )
}

fn sample() -> EvidenceBundle {
    tdx_bundle("tdx_quote.bin", "tdx_quote_collateral.json")
}

fn edit_collateral(edit: impl FnOnce(&mut serde_json::Value)) -> EvidenceBundle {
    let mut b = sample();
    if let Endorsements::Tdx { collateral } = &mut b.endorsements {
        let mut v: serde_json::Value = serde_json::from_slice(collateral).expect("json");
        edit(&mut v);
        *collateral = serde_json::to_vec(&v).expect("json");
    }
    b
}

struct Row {
    name: &'static str,
    bundle: EvidenceBundle,
    verifier: Verifier<FixedClock>,
    /// `None`: the first refusal of `verify`; `Some(step)`: that step's outcome in `inspect`.
    step: Option<Step>,
    expect: fn(&VerifyError) -> bool,
}

fn rows() -> Vec<Row> {
    let v = || verifier(policy(|_| {}), TDX_NOW);
    let mut flipped_body = sample();
    flipped_body.evidence[48 + 200] ^= 1; // inside the TD report body (MRTD)
    let mut flipped_sig = sample();
    flipped_sig.evidence[48 + 584 + 4 + 10] ^= 1; // inside the ECDSA quote signature
    let mut truncated = sample();
    truncated.evidence.truncate(300);
    let mut emulated_anchor = sample();
    emulated_anchor.platform = Platform::Tdx;

    let rtmr_row = |index: usize| Row {
        name: ["RTMR0", "RTMR1", "RTMR2", "RTMR3"][index],
        bundle: sample(),
        verifier: verifier(
            policy(|r| match index {
                0 => r.rtmr0.0[0] ^= 1,
                1 => r.rtmr1.0[0] ^= 1,
                2 => r.rtmr2.0[0] ^= 1,
                _ => r.rtmr3.0[0] ^= 1,
            }),
            TDX_NOW,
        ),
        step: Some(Step::Measurement),
        expect: match index {
            0 => |e| matches!(e, VerifyError::TdxRtmrMismatch { index: 0, .. }),
            1 => |e| matches!(e, VerifyError::TdxRtmrMismatch { index: 1, .. }),
            2 => |e| matches!(e, VerifyError::TdxRtmrMismatch { index: 2, .. }),
            _ => |e| matches!(e, VerifyError::TdxRtmrMismatch { index: 3, .. }),
        },
    };

    vec![
        Row {
            name: "quote body (MRTD byte)",
            bundle: flipped_body,
            verifier: v(),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxQuoteRejected(_)),
        },
        Row {
            name: "quote signature",
            bundle: flipped_sig,
            verifier: v(),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxQuoteRejected(_)),
        },
        Row {
            name: "TCB info in the collateral",
            bundle: edit_collateral(|c| {
                let t = c["tcb_info"]
                    .as_str()
                    .expect("string")
                    .replacen("UpToDate", "Revoked", 1);
                c["tcb_info"] = t.into();
            }),
            verifier: v(),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxQuoteRejected(_)),
        },
        Row {
            name: "collateral expired",
            bundle: sample(),
            verifier: verifier(policy(|_| {}), NOW),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxCollateralExpired { .. }),
        },
        Row {
            name: "platform TCB not appraisable (real out-of-date platform)",
            bundle: tdx_bundle(
                "tdx_quote_outdated.bin",
                "tdx_quote_outdated_collateral.json",
            ),
            verifier: verifier(
                Policy {
                    tdx: vec![tdx_reference("tdx_quote_outdated.bin")],
                    ..Policy::default()
                },
                TDX_OUTDATED_NOW,
            ),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxQuoteRejected(m) if m.contains("TCB level")),
        },
        Row {
            name: "collateral from before the policy's TCB recovery",
            bundle: sample(),
            verifier: verifier(
                Policy {
                    tdx_min_tcb_evaluation: 18,
                    ..policy(|_| {})
                },
                TDX_NOW,
            ),
            step: None,
            expect: |e| {
                matches!(
                    e,
                    VerifyError::TdxTcbEvaluationTooOld { found: 17, min: 18 }
                )
            },
        },
        Row {
            name: "TCB status outside a narrower policy",
            bundle: sample(),
            verifier: verifier(
                Policy {
                    tdx_allowed_tcb_statuses: vec!["SWHardeningNeeded".to_owned()],
                    ..policy(|_| {})
                },
                TDX_NOW,
            ),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxTcbStatusNotAllowed { .. }),
        },
        Row {
            name: "report_data binds no Cloister key",
            bundle: sample(),
            verifier: v(),
            step: None,
            expect: |e| matches!(e, VerifyError::ReportDataMismatch),
        },
        Row {
            name: "MRTD",
            bundle: sample(),
            verifier: verifier(policy(|r| r.mrtd.0[47] ^= 1), TDX_NOW),
            step: Some(Step::Measurement),
            expect: |e| matches!(e, VerifyError::TdxMrtdMismatch { .. }),
        },
        rtmr_row(0),
        rtmr_row(1),
        rtmr_row(2),
        rtmr_row(3),
        Row {
            name: "evidence expired",
            bundle: EvidenceBundle {
                expires_at: TDX_NOW,
                ..sample()
            },
            verifier: v(),
            step: Some(Step::Expiry),
            expect: |e| matches!(e, VerifyError::Expired { .. }),
        },
        Row {
            name: "quote truncated",
            bundle: truncated,
            verifier: v(),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxQuoteMalformed(_)),
        },
        Row {
            name: "collateral not JSON",
            bundle: EvidenceBundle {
                endorsements: Endorsements::Tdx {
                    collateral: b"<xml/>".to_vec(),
                },
                ..sample()
            },
            verifier: v(),
            step: None,
            expect: |e| matches!(e, VerifyError::TdxCollateralMalformed(_)),
        },
        Row {
            name: "TDX under the emulated anchor",
            bundle: emulated_anchor,
            verifier: Verifier::new(
                TrustAnchor::InsecureEmulated(emulated().insecure_root().expect("root")),
                policy(|_| {}),
                FixedClock(TDX_NOW),
            ),
            step: None,
            expect: |e| {
                matches!(
                    e,
                    VerifyError::PlatformNotTrusted {
                        platform: Platform::Tdx,
                        ..
                    }
                )
            },
        },
    ]
}

#[test]
fn the_sample_passes_every_check_but_the_binding() {
    let i = verifier(policy(|_| {}), TDX_NOW).inspect(&sample(), b"");
    assert_eq!(i.first_error(), Some(&VerifyError::ReportDataMismatch));
    assert_eq!(i.checks.iter().filter(|c| c.result.is_err()).count(), 1);
}

#[test]
fn each_tampered_field_is_refused_by_its_own_check() {
    let rows = rows();
    assert!(rows.len() >= 6);
    let mut failures = Vec::new();
    for r in &rows {
        let found = match r.step {
            None => r.verifier.verify(&r.bundle, b"").err(),
            Some(step) => r.verifier.inspect(&r.bundle, b"").error_at(step).cloned(),
        };
        match found {
            None => failures.push(format!("{}: accepted", r.name)),
            Some(e) if !(r.expect)(&e) => failures.push(format!("{}: wrong error {e:?}", r.name)),
            Some(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
