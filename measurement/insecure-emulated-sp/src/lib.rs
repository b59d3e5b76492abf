//! A software-emulated AMD secure processor. **INSECURE by construction**: whoever holds its
//! seed signs any report. It exists so that CI and machines without SEV-SNP hardware exercise
//! the very same verification path as real hardware — byte-exact SNP reports, AMD's
//! certificate shapes — with only the pinned root differing, under the verifier's
//! `TrustAnchor::InsecureEmulated`, which nothing chooses by default.
//!
//! * [`signer`] — the ARK → ASK → VCEK chain derived from a seed, and report signing.
//! * [`server`] — the processor as a service for guests (`cloister_protocol::emulated_sp`).
//!
//! Only development, tests and `cargo xtask run` depend on this crate; a device, the gateway
//! and the guest's production attesters do not.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod server;
pub mod signer;

pub use server::{EmulatedSp, SpEvent};
pub use signer::EmulatedSnpSigner;
