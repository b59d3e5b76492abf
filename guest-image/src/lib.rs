//! Cloister's reproducible guest image.
//!
//! * [`firmware`] — OVMF (AmdSev, IntelTdx) built from Debian's pinned edk2 source at a fixed
//!   logical path, checked against pinned digests.
//! * [`kernel`] — Debian's pinned cloud kernel and the guest's modules, decompressed.
//! * [`initramfs`] — the deterministic newc initramfs and its manifest.
//! * [`weights_disk`] — model weights on an EROFS disk with a dm-verity hash tree.
//! * [`apt`] — a private apt context derived from the machine's own configuration.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apt;
pub mod cache;
pub mod digest;
pub mod error;
pub mod firmware;
pub mod initramfs;
pub mod kernel;
pub mod model;
pub mod peers;
pub mod run;
pub mod vm;
pub mod weights_disk;

pub use cache::cache_root;
pub use error::ImageError;
