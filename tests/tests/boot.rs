//! Boot the real image under QEMU (TCG) with vhost-device-vsock and the emulated AMD secure
//! processor; verify its evidence; talk to it through inner OHTTP.
use std::process::Command;
use std::time::Duration;

use cloister_guest_image::launch::{
    LaunchOptions, RunningGuest, VCPU_TYPE, expect_firmware_refusal,
};
use cloister_guest_image::vm::BootError;
use cloister_measurement::VerifyError;
use cloister_protocol::EvidenceBundle;
use cloister_tests::{emulated_image, initrd_plus_one_byte, marker, publish};

/// The digest `cargo xtask measure` prints for these exact boot inputs.
fn xtask_measure(image: &cloister_guest_image::image::Image, vcpus: u32) -> String {
    let out = Command::new(env!("CARGO"))
        .args([
            "run",
            "--quiet",
            "--locked",
            "-p",
            "cloister-xtask",
            "--",
            "measure",
            "--json",
        ])
        .args([
            "--vcpus",
            &vcpus.to_string(),
            "--vcpu-type",
            VCPU_TYPE,
            "--firmware",
        ])
        .arg(&image.firmware.amdsev)
        .arg("--kernel")
        .arg(&image.kernel)
        .arg("--initrd")
        .arg(&image.initrd)
        .args(["--append", &image.cmdline])
        .output()
        .expect("cargo xtask measure runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("json");
    v["snp_launch_digest"].as_str().expect("digest").to_owned()
}

#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn boots_attests_and_answers_through_inner_ohttp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_image(dir.path());
    let opts = LaunchOptions::default();
    let guest = RunningGuest::start(&image, &opts).expect("the guest boots to READY");
    eprintln!("boot to ready: {:.1} s", guest.boot_time.as_secs_f64());

    // The evidence verifies, and its measurement is the one `cargo xtask measure` computes.
    let bundle = guest.evidence(b"").expect("evidence");
    let verified = guest
        .verifier(&[guest.measurement])
        .verify_json(&bundle, b"")
        .expect("evidence verifies under the emulated anchor");
    let cloister_measurement::Measurement::Snp(m) = &verified.measurement else {
        panic!("not an SNP measurement");
    };
    assert_eq!(m.to_hex(), xtask_measure(&image, opts.vcpus));
    assert_eq!(
        hex::encode(verified.image_manifest_digest),
        image.manifest_sha256
    );

    // The measurement as a device accepts it: found in the transparency log, the operator's
    // log proof attached to the evidence, no allow-list.
    let (proof, trusted) = publish(&image, opts.vcpus, &dir.path().join("log"));
    let mut attached = EvidenceBundle::from_json(&bundle).expect("the bundle parses");
    attached.log_proof = Some(proof);
    let logged = guest
        .verifier(&[])
        .with_log(trusted)
        .verify(&attached, b"")
        .expect("accepted through the log");
    assert_eq!(
        logged.logged.map(|c| (c.size, c.witnesses.len())),
        Some((1, 1))
    );
    assert!(matches!(
        guest.verifier(&[]).verify_json(&bundle, b""),
        Err(VerifyError::MeasurementNotAllowed { .. })
    ));

    // A fresh, nonce-bound bundle.
    let nonce = [0x5c; 32];
    let fresh = guest.evidence(&nonce).expect("nonce evidence");
    guest
        .verifier(&[guest.measurement])
        .verify_json(&fresh, &nonce)
        .expect("nonce-bound evidence verifies");

    // A request through inner OHTTP; its plaintext never reaches the console.
    let secret = marker();
    let body = format!(r#"{{"messages":[{{"from":"Ana","text":"{secret}"}}]}}"#);
    let (status, answer) = guest
        .call(&verified, "POST", "/v1/echo", body.as_bytes())
        .expect("echo through OHTTP");
    assert_eq!(status, 200);
    assert_eq!(answer, body.as_bytes());
    std::thread::sleep(Duration::from_millis(300));
    let console = guest.console().join("\n");
    assert!(console.contains("cloister: READY"));
    assert!(
        !console.contains(&secret),
        "the console showed request plaintext"
    );
}

/// One byte more in the initrd, under the original hashes page: the firmware's own hash check
/// refuses to start the kernel, and the harness says so within its timeout.
#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn firmware_refuses_an_initrd_changed_by_one_byte() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_image(dir.path());
    let tampered = initrd_plus_one_byte(&image, dir.path());
    let opts = LaunchOptions {
        boot_initrd: Some(tampered),
        kernel_timeout: Duration::from_secs(45),
        ..LaunchOptions::default()
    };
    let err = expect_firmware_refusal(&image, &opts).expect("the launch is refused");
    assert!(matches!(err, BootError::FirmwareRefused(_)), "{err}");
}

/// The same changed initrd with a recomputed hashes page boots — and the verifier refuses its
/// evidence: its measurement is not the image's.
#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn verifier_refuses_a_changed_initrd_with_a_recomputed_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_image(dir.path());
    let (original, _, _) =
        cloister_guest_image::launch::expected(&image, &image.initrd, 1).expect("expected digest");
    let tampered = initrd_plus_one_byte(&image, dir.path());
    let opts = LaunchOptions {
        boot_initrd: Some(tampered),
        measure_boot_initrd: true,
        ..LaunchOptions::default()
    };
    let guest = RunningGuest::start(&image, &opts).expect("boots with its own page");
    assert_ne!(guest.measurement, original);
    let bundle = guest.evidence(b"").expect("evidence");
    let err = guest
        .verifier(&[original])
        .verify_json(&bundle, b"")
        .expect_err("the verifier refuses it");
    assert!(
        matches!(err, VerifyError::MeasurementNotAllowed { .. }),
        "{err}"
    );
    // Through the log: the operator can only attach the proof of the release it published,
    // which holds the original measurement, not this one.
    let (proof, trusted) = publish(&image, 1, &dir.path().join("log"));
    let mut attached = EvidenceBundle::from_json(&bundle).expect("the bundle parses");
    attached.log_proof = Some(proof);
    let err = guest
        .verifier(&[])
        .with_log(trusted)
        .verify(&attached, b"")
        .expect_err("not in the log");
    assert!(matches!(err, VerifyError::NotInLog { .. }), "{err}");
}
