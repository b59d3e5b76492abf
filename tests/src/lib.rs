//! End-to-end tests of Cloister live in `tests/`; this library holds their shared fixtures.
#![forbid(unsafe_code)]

use std::path::Path;

use cloister_protocol::{AttestMode, GuestConfig};
use cloister_xtask::image::{self, Image};

/// Builds the emulated-attestation image into `dir` (cached inputs make this quick after the
/// first build: firmware, kernel and the static runtime are reused).
pub fn emulated_image(dir: &Path) -> Image {
    image::build(&GuestConfig::new(AttestMode::Emulated), dir).expect("the guest image builds")
}

/// A marker string no log, console or file may ever show.
pub fn marker() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("random");
    format!("cloister-secret-marker-{}", hex::encode(b))
}
