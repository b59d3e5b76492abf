//! `cargo xtask publish` as an operator runs it: an image's release record into a local log
//! (created with its key on first use) and into a served log, the log proof beside the image.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use cloister_protocol::{AttestMode, GuestConfig, LogProof};
use cloister_transparency::{Log, Quorum, TrustedLog};
use zeroize::Zeroizing;

const DIGEST: [u8; 48] = [0x4d; 48];

/// An image directory with the `measurement.json` `cargo xtask image` writes.
fn image(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("image");
    std::fs::create_dir_all(&out).expect("test value");
    let h = hex::encode([0x21u8; 32]);
    let m = serde_json::json!({
        "snp_launch_digest": hex::encode(DIGEST),
        "vcpus": 2,
        "vcpu_type": "EPYC-v4",
        "kernel_sha256": h,
        "initrd_sha256": h,
        "manifest_sha256": h,
        "amdsev_firmware_sha256": h,
        "cmdline": GuestConfig::new(AttestMode::Emulated).to_cmdline(),
    });
    std::fs::write(out.join("measurement.json"), m.to_string()).expect("test value");
    out
}

fn publish(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cloister-xtask"))
        .arg("publish")
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn proof_of(image: &std::path::Path) -> LogProof {
    LogProof::from_json(&std::fs::read(image.join("log-proof.json")).expect("written"))
        .expect("a log proof")
}

#[test]
fn a_local_log_is_created_once_and_grows() {
    let dir = tempfile::tempdir().expect("test value");
    let img = image(dir.path());
    let log = dir.path().join("log");
    let (i, l) = (img.display().to_string(), log.display().to_string());
    for expected in [0, 1] {
        let (ok, out) = publish(&["--image", &i, "--log", &l]);
        assert!(ok, "{out}");
        assert_eq!(proof_of(&img).leaf_index, expected);
    }
    let key = log.with_extension("key");
    let mode = std::fs::metadata(&key)
        .expect("the key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the log key is private");
    let vkey = std::fs::read_to_string(log.with_extension("pub")).expect("test value");
    let trusted =
        TrustedLog::new(vkey.trim(), &[], Quorum::InsecureLogSignatureOnly).expect("test value");
    let (record, cp) = trusted.verify_proof(&proof_of(&img)).expect("verifies");
    assert_eq!(cp.size, 2);
    assert!(record.has_measurement("emulated-sev-snp", &hex::encode(DIGEST)));
    assert!(record.source_revision.len() >= 40);
}

#[test]
fn a_served_log_takes_the_record_with_the_operator_key_only() {
    let dir = tempfile::tempdir().expect("test value");
    let img = image(dir.path());
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, "served.example/log");
    let log =
        Log::create(&dir.path().join("log"), &Zeroizing::new(skey), &vkey).expect("test value");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("test value");
    let port = listener.local_addr().expect("test value").port();
    listener.set_nonblocking(true).expect("test value");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("a runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("test value");
            let key = Zeroizing::new("operator-key-0123456789".to_owned());
            let _ = cloister_transparency::server::serve(log, key, listener).await;
        });
    });
    let (good, bad) = (dir.path().join("key"), dir.path().join("bad"));
    std::fs::write(&good, "operator-key-0123456789\n").expect("test value");
    std::fs::write(&bad, "someone-else-0123456789\n").expect("test value");
    let url = format!("http://127.0.0.1:{port}");
    let i = img.display().to_string();
    let served = |key: &std::path::Path| {
        let key = key.display().to_string();
        publish(&["--image", &i, "--log-url", &url, "--api-key-file", &key])
    };
    let (ok, out) = served(&bad);
    assert!(!ok && out.contains("401"), "{out}");
    let (ok, out) = served(&good);
    assert!(ok, "{out}");
    let trusted =
        TrustedLog::new(&vkey, &[], Quorum::InsecureLogSignatureOnly).expect("test value");
    let (record, cp) = trusted.verify_proof(&proof_of(&img)).expect("verifies");
    assert_eq!((cp.size, record.measurements[0].vcpus), (1, 2));
}
