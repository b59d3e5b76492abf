use cloister_measurement::Step;

use super::*;
use crate::testkit::{self, milan};

fn input<'a>(bundle: &'a [u8], refs: &'a [u8], anchor: AnchorChoice, at: u64) -> ReportInput<'a> {
    ReportInput {
        bundle,
        reference_values: refs,
        anchor,
        nonce: b"",
        at,
        log: None,
        log_proof: None,
    }
}

fn statuses(r: &Report) -> Vec<(&'static str, Status)> {
    r.checks.iter().map(|c| (c.step, c.status)).collect()
}

/// Taken on firmware from before AMD's 2025–2026 fixes, the report fails the shipped TCB floor
/// and (not made for a Cloister key) the binding; every other step passes.
#[test]
fn amds_real_milan_report_passes_every_step_but_the_floor_and_the_binding() {
    let bundle = milan::bundle().to_json();
    let refs = milan::reference_values();
    let r = inspect(&input(&bundle, &refs, AnchorChoice::Hardware, milan::AT)).expect("runs");
    assert!(!r.accepted);
    assert_eq!(r.platform, Some("sev-snp"));
    assert_eq!(r.insecure_root, None);
    for c in &r.checks {
        if c.step == Step::Binding.name() {
            assert_eq!(c.status, Status::Failed);
            assert_eq!(c.refusal, "ReportDataMismatch");
        } else if c.step == Step::Policy.name() {
            assert_eq!(c.status, Status::Failed);
            assert_eq!(c.refusal, "TcbTooLow");
        } else {
            assert_eq!(c.status, Status::Ok, "{c:?}");
        }
    }
    assert_eq!(r.checks.len(), Step::ALL.len());
}

#[test]
fn an_emulated_bundle_passes_only_under_the_insecure_anchor_named_with_its_ark() {
    let b = testkit::bundle(b"key-config", testkit::MEASUREMENT, true);
    let bundle = b.to_json();
    let refs = format!(
        r#"{{"snp_measurements": ["{}"]}}"#,
        hex::encode(testkit::MEASUREMENT)
    );
    let now = testkit::now();
    let ark_der = testkit::signer().ark_der().to_vec();
    let emulated = AnchorChoice::InsecureEmulated { ark_der };
    let r = inspect(&input(&bundle, refs.as_bytes(), emulated, now)).expect("runs");
    assert!(r.accepted, "{r:?}");
    assert_eq!(r.anchor, "INSECURE emulated");
    assert_eq!(
        r.insecure_root,
        Some(testkit::emulated_root().fingerprint())
    );

    let r = inspect(&input(
        &bundle,
        refs.as_bytes(),
        AnchorChoice::Hardware,
        now,
    ))
    .expect("runs");
    assert!(!r.accepted);
    let platform = r.step(Step::Platform).expect("platform line");
    assert_eq!(platform.refusal, "PlatformNotTrusted");
    assert!(
        statuses(&r)[2..].iter().all(|(_, s)| *s == Status::Skipped),
        "{r:?}"
    );
}

#[test]
fn a_tampered_report_is_refused_at_its_signature() {
    let mut b = milan::bundle();
    b.evidence[0x90] ^= 1; // one bit of the measurement
    let bundle = b.to_json();
    let refs = milan::reference_values();
    let r = inspect(&input(&bundle, &refs, AnchorChoice::Hardware, milan::AT)).expect("runs");
    assert!(!r.accepted);
    let want = [Status::Ok, Status::Ok, Status::Ok, Status::Failed];
    assert_eq!(
        statuses(&r)[..4]
            .iter()
            .map(|(_, s)| *s)
            .collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        r.step(Step::Signature).expect("line").refusal,
        "ReportSignature"
    );
}

#[test]
fn unusable_inputs_are_named_before_anything_runs() {
    let bundle = milan::bundle().to_json();
    let bad_ark = AnchorChoice::InsecureEmulated {
        ark_der: b"not der".to_vec(),
    };
    let refs = milan::reference_values();
    let err = inspect(&input(&bundle, &refs, bad_ark, milan::AT)).expect_err("refused");
    assert!(matches!(err, ReportError::EmulatedArk(_)), "{err}");
    let err = inspect(&input(&bundle, b"{", AnchorChoice::Hardware, milan::AT)).expect_err("bad");
    assert!(matches!(err, ReportError::ReferenceValues(_)), "{err}");
    let r = inspect(&input(b"{}", &refs, AnchorChoice::Hardware, milan::AT)).expect("runs");
    assert_eq!(r.checks[0].status, Status::Failed);
    assert_eq!(r.platform, None);
}
