//! The summariser inside the guest: an image carrying pinned model weights boots under QEMU
//! (TCG), attests, and answers a real summarise request through inner OHTTP — with the weights
//! in the measured initramfs, and with them on a read-only disk that the guest opens through
//! dm-verity under the root hash on its measured command line. Either way the weights are
//! named in the manifest the evidence binds; a disk changed by one byte is refused in the guest.
//!
//! CI's image carries the embedder alone (the extractive summariser, all-MiniLM-L6-v2): under
//! TCG even SmolLM2-135M did not finish a 3-message summary within 600 s (measured: TCG runs
//! candle's SIMD kernels some 60x slower than the host), while the language-model path is
//! tested end to end natively in `runtime/tests/summarize_dev.rs`. `cargo xtask run` boots a
//! language model.
use std::time::{Duration, Instant};

use cloister_guest_image::image::{Image, WeightsPlacement};
use cloister_guest_image::launch::{LaunchError, LaunchOptions, RunningGuest};
use cloister_guest_image::model::MINILM_L6_V2;
use cloister_guest_image::vm::BootError;
use cloister_protocol::Weights;
use cloister_tests::{emulated_model_image, marker};

fn manifest(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest"))
        .expect("manifest json")
}

/// Boots `image`, verifies its evidence (manifest digest included) and has it summarise a chat
/// carrying a secret marker, which the console must never show.
fn boots_and_summarises(image: &Image) {
    let opts = LaunchOptions::for_image(image);
    assert!(opts.memory_mib >= 1024);
    let guest = RunningGuest::start(image, &opts).expect("the model image boots to READY");
    eprintln!(
        "boot to ready with the model: {:.1} s",
        guest.boot_time.as_secs_f64()
    );
    let bundle = guest.evidence(b"").expect("evidence");
    let verified = guest
        .verifier(&[guest.measurement])
        .verify_json(&bundle, b"")
        .expect("evidence verifies");
    assert_eq!(
        hex::encode(verified.image_manifest_digest),
        image.manifest_sha256
    );

    let secret = marker();
    let chat = format!(
        r#"{{"messages": [
          {{"from": "Maya", "at": "18:01", "text": "Can we move the team dinner to Friday? Thursday I have the dentist."}},
          {{"from": "Jonas", "at": "18:03", "text": "Friday works. I'll book the Lebanese place on Elm Street for 7.30pm."}},
          {{"from": "Aiko", "at": "18:05", "text": "Great. I will buy the card. Code word {secret}."}}
        ], "max_words": 30}}"#
    );
    let asked = Instant::now();
    let (status, answer) = match guest.call(&verified, "POST", "/v1/summarize", chat.as_bytes()) {
        Ok(r) => r,
        Err(e) => panic!(
            "summarise through OHTTP failed after {:.1} s: {e:#}\nconsole:\n{}",
            asked.elapsed().as_secs_f64(),
            guest.console().join("\n")
        ),
    };
    eprintln!(
        "summarised under TCG in {:.1} s",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let v: serde_json::Value = serde_json::from_slice(&answer).expect("json answer");
    assert_eq!(v["model"], MINILM_L6_V2.name);
    assert_eq!(v["stop"], "extractive");
    let summary = v["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("- "), "{v}");
    assert!(
        summary.contains("Friday"),
        "the thread is about Friday: {v}"
    );

    std::thread::sleep(Duration::from_millis(300));
    let console = guest.console().join("\n");
    assert!(
        console.contains("cloister: model all-minilm-l6-v2 loaded"),
        "{console}"
    );
    if let Some(disk) = &image.weights_disk {
        assert!(
            console.contains(&format!(
                "weights disk verified by dm-verity ({} data blocks, root {})",
                disk.verity.data_blocks,
                hex::encode(disk.verity.root_hash)
            )),
            "{console}"
        );
    }
    assert!(
        !console.contains(&secret),
        "the console showed request plaintext"
    );
}

#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn weights_in_the_initramfs_boot_and_summarise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_model_image(dir.path(), MINILM_L6_V2.name, WeightsPlacement::Initramfs);
    assert!(image.cmdline.contains("cloister.model=all-minilm-l6-v2"));
    assert!(image.cmdline.contains("cloister.weights=initramfs"));
    assert!(image.cmdline.contains("CANDLE_BARRIER_POOL_SPIN_LIMIT=0"));
    assert!(image.weights_disk.is_none());
    // The weights are in the manifest, by digest.
    let text = manifest(dir.path()).to_string();
    for sha in MINILM_L6_V2.files.iter().map(|f| f.sha256) {
        assert!(text.contains(sha), "manifest lacks {sha}");
    }
    boots_and_summarises(&image);
}

#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn weights_on_a_verity_disk_boot_and_summarise() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_model_image(dir.path(), MINILM_L6_V2.name, WeightsPlacement::Disk);
    let disk = image.weights_disk.as_ref().expect("a weights disk");
    // The command line (measured) carries the disk's verity parameters; the manifest names
    // the disk and every file on it by digest, and the initramfs holds no weights.
    assert_eq!(image.config.weights, Weights::Verity(disk.verity));
    assert!(
        image
            .cmdline
            .contains(&format!("cloister.weights={}", image.config.weights))
    );
    let m = manifest(dir.path());
    assert_eq!(
        m["weights_disk"]["root_hash"],
        hex::encode(disk.verity.root_hash)
    );
    assert_eq!(m["weights_disk"]["disk_sha256"], disk.sha256);
    for f in MINILM_L6_V2.files {
        let path = format!("{}/{}", MINILM_L6_V2.name, f.name);
        assert_eq!(m["weights_disk"]["files"][&path], f.sha256, "{path}");
    }
    let files = m["files"].as_array().expect("files");
    assert!(
        files.iter().all(|f| !f["path"]
            .as_str()
            .unwrap_or("")
            .starts_with("/cloister/models")),
        "weights left in the initramfs"
    );
    boots_and_summarises(&image);
}

/// One byte of the weights changed on the host: the measurement is unchanged (the command line
/// still carries the original root hash), and the guest's kernel refuses the block when the
/// runtime reads it; the runtime stops instead of serving with other weights.
#[test]
#[ignore = "full tier: QEMU, vhost-device-vsock, firmware, kernel, model weights (cargo xtask test)"]
fn a_weights_disk_changed_by_one_byte_is_refused_in_the_guest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_model_image(dir.path(), MINILM_L6_V2.name, WeightsPlacement::Disk);
    let disk = image.weights_disk.as_ref().expect("a weights disk");
    let mut bytes = std::fs::read(&disk.path).expect("disk");
    // The middle of the data: inside the 90 MB safetensors file, which the runtime reads whole.
    let at = (disk.verity.data_bytes() / 2) as usize;
    bytes[at] ^= 0x40;
    let tampered = dir.path().join("weights-tampered.img");
    std::fs::write(&tampered, bytes).expect("write");
    let opts = LaunchOptions {
        boot_disk: Some(tampered),
        ..LaunchOptions::for_image(&image)
    };
    let err = match RunningGuest::start(&image, &opts) {
        Ok(_) => panic!("a guest with changed weights reached READY"),
        Err(e) => e,
    };
    assert!(
        matches!(err, LaunchError::Boot(BootError::GuestFatal(_))),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("all-minilm-l6-v2"), "{text}");
    assert!(text.contains("os error 5"), "not an I/O error: {text}");
    let console = std::fs::read_to_string(dir.path().join("console.log")).expect("console log");
    assert!(
        console.contains("device-mapper: verity") && console.contains("is corrupted"),
        "the kernel did not report the corrupted block:\n{console}"
    );
}
