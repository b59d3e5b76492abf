//! Cloister's reproducible guest image.
//!
//! * [`firmware`] — OVMF (AmdSev, IntelTdx) built from Debian's pinned edk2 source at a fixed
//!   logical path, checked against pinned digests.
//! * [`kernel`] — Debian's pinned cloud kernel and the guest's modules, decompressed.
//! * [`initramfs`] — the deterministic newc initramfs and its manifest.
//! * [`weights_disk`] — model weights on an EROFS disk with a dm-verity hash tree.
//! * [`apt`] — a private apt context derived from the machine's own configuration.
//!
//! The recipe built from them, shared by `cargo xtask` and the end-to-end tests:
//!
//! * [`image`] — the measured guest image: static runtime, pinned kernel and modules,
//!   deterministic initramfs with its manifest, command line from a typed config.
//! * [`launch`] — an emulated confidential launch under QEMU: expected launch digest and
//!   kernel-hashes page, emulated AMD secure processor, vhost-device-vsock, console watching.
//! * [`guest_http`] — HTTP/1.1 to the guest through vhost-device-vsock.
//! * [`release`] — release records and the local transparency log with its witness.
//! * [`way_in`] (feature `way-in`) — issuer, gateway, relay and a device on loopback in front
//!   of a launched guest.
//! * [`stage`] — a long command's stage lines and heartbeats.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod apt;
pub mod cache;
pub mod digest;
pub mod error;
pub mod firmware;
pub mod guest_http;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod launch;
pub mod model;
pub mod peers;
pub mod release;
pub mod run;
pub mod stage;
pub mod vm;
#[cfg(feature = "way-in")]
pub mod way_in;
pub mod weights_disk;

pub use cache::cache_root;
pub use error::ImageError;
