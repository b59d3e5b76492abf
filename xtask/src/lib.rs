//! The builder's and launcher's library behind `cargo xtask`, shared with the end-to-end tests.
//!
//! * [`image`] — the measured guest image: static runtime, pinned kernel and modules,
//!   deterministic initramfs with its manifest, command line from a typed config.
//! * [`launch`] — an emulated confidential launch under QEMU: expected launch digest and
//!   kernel-hashes page, emulated AMD secure processor, vhost-device-vsock, console watching.
//! * [`guest_http`] — HTTP/1.1 to the guest through vhost-device-vsock.
//! * [`release`] — release records and the local transparency log (`publish`, `run`, tests).
//! * [`score`] — scoring summaries against the evaluation set (`cargo xtask eval`).
//! * [`setup`] — the one set-up step every command runs first (`cargo xtask setup`).
//! * [`stage`] — a command's stage lines and heartbeats.
//! * [`web`] — the browser verifier's page (`cargo xtask web`).
#![forbid(unsafe_code)]

pub mod guest_http;
pub mod image;
pub mod launch;
pub mod release;
pub mod score;
pub mod setup;
pub mod stage;
pub mod way_in;
pub mod web;
