use cloister_device_core::report::Status;
use cloister_device_core::testkit::{self, milan};

use super::*;

fn options(anchor: &str, at: u64) -> String {
    format!(r#"{{"anchor": "{anchor}", "at": {at}}}"#)
}

#[test]
fn the_entry_point_answers_the_cores_report_as_json() {
    let bundle = milan::bundle().to_json();
    let refs = milan::reference_values();
    let json = inspect_json(&bundle, &refs, &options("hardware", milan::AT), None, None);
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["accepted"], false);
    assert_eq!(v["checks"][5]["step"], "binding");
    assert_eq!(v["checks"][5]["status"], "failed");
    assert_eq!(v["checks"][5]["refusal"], "ReportDataMismatch");
    assert_eq!(v["checks"][4]["refusal"], "TcbTooLow");
    assert_eq!(v["checks"][2]["status"], "ok");
}

#[test]
fn the_anchor_is_what_the_user_named_and_nothing_is_ignored() {
    let b = testkit::bundle(b"kc", testkit::MEASUREMENT, true).to_json();
    let refs = format!(
        r#"{{"snp_measurements": ["{}"]}}"#,
        hex::encode(testkit::MEASUREMENT)
    );
    let ark = testkit::signer().ark_der().to_vec();
    let now = testkit::now();
    let hw = options("hardware", now);
    let emu = options("insecure-emulated", now);
    let r = inspect(&b, refs.as_bytes(), &emu, Some(ark.clone()), None).expect("runs");
    assert!(r.accepted);
    assert!(matches!(
        inspect(&b, refs.as_bytes(), &hw, Some(ark), None),
        Err(WebError::UnexpectedArk)
    ));
    assert!(matches!(
        inspect(&b, refs.as_bytes(), &emu, None, None),
        Err(WebError::MissingArk)
    ));
    let r = inspect(&b, refs.as_bytes(), &hw, None, None).expect("runs");
    assert_eq!(r.checks[1].status, Status::Failed);
    assert!(matches!(
        inspect(
            &b,
            refs.as_bytes(),
            r#"{"at": 1, "anchr": "x"}"#,
            None,
            None
        ),
        Err(WebError::Options(_))
    ));
    assert!(matches!(
        inspect(&b, refs.as_bytes(), &hw, None, Some(b"{}".to_vec())),
        Err(WebError::ProofWithoutLog)
    ));
    let json = inspect_json(&b, refs.as_bytes(), &emu, None, None);
    assert!(
        json.contains(r#""error":"the insecure emulated anchor needs"#),
        "{json}"
    );
}
