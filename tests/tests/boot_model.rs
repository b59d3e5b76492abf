//! The summariser inside the guest: an image carrying pinned model weights boots under QEMU
//! (TCG), attests, and answers a real summarise request through inner OHTTP; the weights are
//! in the measured initramfs, named in the manifest the evidence binds.
//!
//! CI's image carries the embedder alone (the extractive summariser, all-MiniLM-L6-v2): under
//! TCG even SmolLM2-135M did not finish a 3-message summary within 600 s (measured: TCG runs
//! candle's SIMD kernels some 60x slower than the host), while the language-model path is
//! tested end to end natively in `runtime/tests/summarize_dev.rs`. `cargo xtask run` boots a
//! language model.
use std::time::{Duration, Instant};

use cloister_guest_image::model::MINILM_L6_V2;
use cloister_tests::{emulated_model_image, marker};
use cloister_xtask::launch::{LaunchOptions, RunningGuest};

#[test]
fn a_model_image_boots_and_summarises_a_chat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = emulated_model_image(dir.path(), MINILM_L6_V2.name);
    assert!(image.cmdline.contains("cloister.model=all-minilm-l6-v2"));
    assert!(image.cmdline.contains("CANDLE_BARRIER_POOL_SPIN_LIMIT=0"));
    // The weights are in the manifest, by digest.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("manifest.json")).expect("manifest"),
    )
    .expect("manifest json");
    let text = manifest.to_string();
    for sha in MINILM_L6_V2.files.iter().map(|f| f.sha256) {
        assert!(text.contains(sha), "manifest lacks {sha}");
    }

    let opts = LaunchOptions::for_image(&image);
    assert!(opts.memory_mib >= 1024);
    let guest = RunningGuest::start(&image, &opts).expect("the model image boots to READY");
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
    assert!(
        !console.contains(&secret),
        "the console showed request plaintext"
    );
}
