//! `cargo xtask verify` as a user runs it.
use std::process::Command;

use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_protocol::{Endorsements, EvidenceBundle, Platform, report_data};

const NOW: u64 = 1_767_225_600;
const MEASUREMENT: [u8; 48] = [0x3c; 48];

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let signer = EmulatedSnpSigner::from_seed(&[9u8; 32]).expect("emulated processor");
        let key_config = b"key-config".to_vec();
        let expires_at = NOW + 3600;
        let rd = report_data(&key_config, expires_at, b"").expect("binds");
        let bundle = EvidenceBundle {
            platform: Platform::EmulatedSevSnp,
            evidence: signer.attest(MEASUREMENT, rd).expect("signs"),
            endorsements: Endorsements::Snp(signer.certificates()),
            key_config,
            expires_at,
            image_manifest_digest: [0; 32],
            log_proof: None,
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let write =
            |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).expect("write");
        write("bundle.json", &bundle.to_json());
        write("ark.der", signer.ark_der());
        write(
            "refs.json",
            format!(
                r#"{{"snp_measurements": ["{}"]}}"#,
                hex::encode(MEASUREMENT)
            )
            .as_bytes(),
        );
        write("other-refs.json", br#"{"snp_measurements": []}"#);
        write(
            "garbage.json",
            b"{\"version\": 1, \"platform\": \"sev-snp\"",
        );
        Fixture { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_cloister-xtask"))
            .arg("verify")
            .args(args)
            .output()
            .expect("runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Fixture {
    /// Runs `verify BUNDLE --reference-values REFS --insecure-emulated --emulated-ark ARK
    /// --at AT [extra…]`.
    fn run_emulated(&self, refs: &str, at: u64, extra: &[&str]) -> (i32, String, String) {
        let (bundle, refs, ark) = (
            self.path("bundle.json"),
            self.path(refs),
            self.path("ark.der"),
        );
        let at = at.to_string();
        let mut args = vec![bundle.as_str(), "--reference-values", &refs];
        args.extend(["--insecure-emulated", "--emulated-ark", &ark, "--at", &at]);
        args.extend(extra);
        self.run(&args)
    }
}

fn failed_at(out: &str, step: &str) -> bool {
    out.lines()
        .any(|l| l.starts_with(&format!("FAILED  {step}")))
}

#[test]
fn verify_command_reports_each_check() {
    let f = Fixture::new();

    // Accepted: every step ok, exit 0, the insecure anchor announced.
    let (code, out, err) = f.run_emulated("refs.json", NOW, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok ")).count(),
        8,
        "{out}"
    );
    assert!(out.trim_end().ends_with("ACCEPTED"));
    assert!(err.contains("INSECURE"));

    // --json: one object.
    let (code, out, _) = f.run_emulated("refs.json", NOW, &["--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["accepted"], true);
    assert_eq!(v["platform"], "emulated-sev-snp");
    assert_eq!(v["checks"].as_array().map(Vec::len), Some(8));

    // Measurement not in the reference values: refused at that step.
    let (code, out, _) = f.run_emulated("other-refs.json", NOW, &[]);
    assert_eq!(code, 1);
    assert!(failed_at(&out, "measurement"), "{out}");

    // Expired at a later time.
    let (code, out, _) = f.run_emulated("refs.json", NOW + 7200, &[]);
    assert_eq!(code, 1);
    assert!(failed_at(&out, "expiry"), "{out}");

    // The hardware anchor refuses the emulated platform; later steps do not run.
    let (bundle, refs) = (f.path("bundle.json"), f.path("refs.json"));
    let (code, out, _) = f.run(&[&bundle, "--reference-values", &refs]);
    assert_eq!(code, 1);
    assert!(failed_at(&out, "platform"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("skipped chain")), "{out}");

    // A broken bundle is refused at parse, not a crash.
    let (code, out, _) = f.run(&[&f.path("garbage.json"), "--reference-values", &refs]);
    assert_eq!(code, 1);
    assert!(failed_at(&out, "parse"), "{out}");

    // --insecure-emulated without the ARK is a usage error.
    let (code, _, _) = f.run(&[&bundle, "--reference-values", &refs, "--insecure-emulated"]);
    assert_eq!(code, 2);
}

/// A log holding a release of `measurement` (manifest all zeros, as the fixture's bundle);
/// writes `log.pub` and `proof.json` into the fixture.
fn publish(f: &Fixture, measurement: [u8; 48]) {
    use cloister_transparency::{Log, Measurement, ReleaseRecord, SCHEMA};
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "log.example/releases");
    let dir = f
        .dir
        .path()
        .join(format!("log-{}", hex::encode(&measurement[..2])));
    let log = Log::create(&dir, &zeroize::Zeroizing::new(skey), &vkey).expect("a log");
    let h = hex::encode([0u8; 32]);
    let record = ReleaseRecord {
        schema: SCHEMA.into(),
        measurements: vec![Measurement {
            platform: "emulated-sev-snp".into(),
            vcpus: 1,
            vcpu_type: "EPYC-v4".into(),
            digest: hex::encode(measurement),
        }],
        manifest_sha256: h.clone(),
        kernel_sha256: h.clone(),
        initramfs_sha256: h.clone(),
        firmware_sha256: h,
        cmdline: String::new(),
        weights_disk_sha256: None,
        source_revision: "test".into(),
        source_date_epoch: 0,
        snp_min_tcb: None,
    };
    let first = log
        .append(&[record.to_bytes().expect("a record")], |_| {})
        .expect("appends")
        .first;
    let proof = log.log_proof(first).expect("a proof");
    std::fs::write(f.dir.path().join("log.pub"), vkey).expect("write");
    std::fs::write(f.dir.path().join("proof.json"), proof.to_json()).expect("write");
}

#[test]
fn verify_with_a_log_needs_the_measurement_logged() {
    let f = Fixture::new();
    let (key, proof) = (f.path("log.pub"), f.path("proof.json"));
    // The allow-list is empty: the log alone accepts the measurement.
    publish(&f, MEASUREMENT);
    // A log with no witness is trusted only when that is asked for by name.
    let (code, out, err) = f.run_emulated(
        "other-refs.json",
        NOW,
        &["--log-key", &key, "--log-proof", &proof],
    );
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("--insecure-no-witness"), "{err}");
    let no_witness = "--insecure-no-witness";
    let (code, out, err) = f.run_emulated(
        "other-refs.json",
        NOW,
        &["--log-key", &key, no_witness, "--log-proof", &proof],
    );
    assert!(err.contains("INSECURE"), "{err}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("is in the log"), "{out}");
    // Without the proof, or with a proof of another release: refused at the measurement.
    let (code, out, _) = f.run_emulated("other-refs.json", NOW, &["--log-key", &key, no_witness]);
    assert_eq!(code, 1);
    assert!(
        failed_at(&out, "measurement") && out.contains("no transparency-log proof"),
        "{out}"
    );
    publish(&f, [0x77; 48]);
    let (code, out, _) = f.run_emulated(
        "other-refs.json",
        NOW,
        &["--log-key", &key, no_witness, "--log-proof", &proof],
    );
    assert_eq!(code, 1);
    assert!(
        failed_at(&out, "measurement") && out.contains("not in the logged release"),
        "{out}"
    );
}
