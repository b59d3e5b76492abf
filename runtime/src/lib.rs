//! Cloister's guest runtime: the program that is PID 1 inside the confidential VM, and that
//! also runs as an ordinary process (development mode: Unix socket, emulated attestation).
//!
//! * Configuration comes from the (measured) kernel command line: `cloister_protocol::GuestConfig`.
//! * [`init`] — PID 1 duties: mounts, kernel modules, reaping, power-off on fatal errors.
//! * [`keys`] — ephemeral OHTTP keys in memory, rotated before expiry with overlap.
//! * [`memory`] — the guest's memory, printed on the console at an interval (sizes only).
//! * [`attest`] — attesters (configfs-tsm, /dev/sev-guest, emulated SNP).
//! * [`evidence`] — the evidence bundle for the current key, cached per key.
//! * [`inner`] — sans-IO inner OHTTP: decapsulate, decode Binary HTTP, route, encapsulate.
//! * [`workload`] — the `Workload` trait, the router and the `echo` workload.
//! * `summarize` (feature `summarizer`, on by default) — the summariser's workloads
//!   (`/v1/summarize`, `/v1/rewrite`) and model loading. Without it the runtime is the echo
//!   runtime and builds without candle.
//! * [`server`] — HTTP/1.1 over vsock or a Unix socket, with limits.
//! * [`weights`] — the dm-verity weights disk: verified, mounted read-only.
#![forbid(unsafe_code)]

pub mod attest;
pub mod evidence;
pub mod init;
pub mod inner;
pub mod keys;
pub mod memory;
pub mod server;
#[cfg(feature = "summarizer")]
pub mod summarize;
pub mod weights;
pub mod workload;
