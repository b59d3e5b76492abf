//! End-to-end tests of Cloister live in `tests/`; this library holds their shared fixtures.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use cloister_guest_image::image::{self, Image, WeightsPlacement};
use cloister_protocol::{AttestMode, GuestConfig};

/// Builds the emulated-attestation image into `dir` (cached inputs make this quick after the
/// first build: firmware, kernel and the static runtime are reused).
pub fn emulated_image(dir: &Path) -> Image {
    image::build(&GuestConfig::new(AttestMode::Emulated), dir).expect("the guest image builds")
}

/// Builds the emulated-attestation image with `model`'s weights (and the embedder's) where
/// `placement` says, `cloister.model` set, and the deadline a model image gets under TCG.
pub fn emulated_model_image(dir: &Path, model: &str, placement: WeightsPlacement) -> Image {
    let mut config = GuestConfig::new(AttestMode::Emulated);
    config.model = model.to_owned();
    config.deadline = std::time::Duration::from_secs(600);
    image::build_with(&config, placement, dir).expect("the model image builds")
}

/// A marker string no log, console or file may ever show.
pub fn marker() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("random");
    format!("cloister-secret-marker-{}", hex::encode(b))
}

/// The image's initrd with one zero byte appended (the kernel's initramfs unpacker skips zero
/// padding, so it still boots — but its hash, and so the measurement, differ).
pub fn initrd_plus_one_byte(image: &Image, dir: &Path) -> PathBuf {
    let tampered = dir.join("initrd-tampered");
    let mut bytes = std::fs::read(&image.initrd).expect("initrd");
    bytes.push(0);
    std::fs::write(&tampered, bytes).expect("write");
    tampered
}
pub mod fleet;
pub mod netns;
pub mod publish;
pub mod soak;
pub mod stack;
pub mod stand_in;
pub mod tls;

/// Every regular file under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                pending.push(e.path());
            } else if kind.is_file()
                && std::fs::read(e.path())
                    .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(e.path());
            }
        }
    }
    found.sort();
    found
}

/// Whether process `pid` runs with core dumps off (`RLIMIT_CORE` 0, soft and hard).
pub fn core_dumps_off(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/limits")).is_ok_and(|l| {
        l.lines().any(|line| {
            line.starts_with("Max core file size")
                && line.split_whitespace().skip(4).take(2).all(|v| v == "0")
        })
    })
}

/// The image's release published in a fresh log in `dir`, cosigned by a witness.
pub fn publish(
    image: &cloister_guest_image::image::Image,
    vcpus: u32,
    dir: &std::path::Path,
) -> (
    cloister_protocol::LogProof,
    cloister_transparency::TrustedLog,
) {
    let (digest, gpa, _) = cloister_guest_image::launch::expected(image, &image.initrd, vcpus)
        .expect("expected digest");
    let m = cloister_guest_image::release::measurement_json(image, &digest, gpa, vcpus)
        .expect("measurement");
    let record = cloister_guest_image::release::record_from(&m).expect("a release record");
    cloister_guest_image::release::witnessed_release(dir, &record).expect("published and cosigned")
}

/// Boots `image` under QEMU (TCG), publishes its release in a fresh log under `dir`, and starts
/// the way in to it on `rt` (issuer with `tokens` tokens, gateway and relay in-process; the
/// device trusting that log and its witness; `deadline` for the node and each operation).
pub fn boot_with_way_in(
    rt: &tokio::runtime::Runtime,
    image: &Image,
    dir: &Path,
    deadline: std::time::Duration,
    tokens: u32,
) -> (
    cloister_guest_image::launch::RunningGuest,
    cloister_guest_image::way_in::WayIn,
) {
    let opts = cloister_guest_image::launch::LaunchOptions::for_image(image);
    let guest = cloister_guest_image::launch::RunningGuest::start(image, &opts)
        .expect("the guest boots to READY");
    let log_dir = dir.join("log");
    let (proof, _) = publish(image, opts.vcpus, &log_dir);
    let release = cloister_guest_image::way_in::Release {
        proof,
        log_dir: &log_dir,
        root: guest.root.clone(),
    };
    let way_in = rt
        .block_on(cloister_guest_image::way_in::WayIn::start(
            &guest.endpoint,
            release,
            dir,
            deadline,
            tokens,
        ))
        .expect("issuer, gateway and relay in front of the guest");
    (guest, way_in)
}
