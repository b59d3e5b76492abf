//! Cloister's measurer and verifier.
//!
//! * Verification of evidence bundles: [`Verifier`] built from a [`TrustAnchor`], a
//!   [`Policy`] and a [`Clock`], checking in the order ARCHITECTURE.md gives, each refusal its
//!   own [`VerifyError`] variant. Platforms: AMD SEV-SNP (`sev` crate, pinned ARKs), Intel TDX
//!   (`dcap-qvl`), and the emulated SEV-SNP processor (its own, explicitly insecure anchor).
//! * With feature `emulated`: [`emulated::EmulatedSnpSigner`], the software AMD secure
//!   processor's signing half, for CI and local research.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anchor;
mod certsig;
pub mod clock;
#[cfg(feature = "emulated")]
pub mod emulated;
#[cfg(feature = "emulated")]
pub mod emulated_sp;
pub mod error;
pub mod launch;
pub mod policy;
mod snp;
mod tdx;
pub mod tdx_launch;
pub mod vcek;
mod verifier;

pub use anchor::{HardwareRoots, InsecureEmulatedRoot, SnpRoot, TrustAnchor};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{CertRole, VerifyError};
pub use policy::{Digest48, MinTcb, Policy, PolicyError, TdxReference};
pub use snp::REPORT_LEN as SNP_REPORT_LEN;
pub use verifier::{Check, Inspection, Measurement, Step, Verified, Verifier};
