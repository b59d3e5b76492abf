//! The device's verifier of evidence bundles: [`Verifier`] built from a [`TrustAnchor`], a
//! [`Policy`] and a [`Clock`], checking in the order ARCHITECTURE.md gives, each refusal its
//! own [`VerifyError`] variant. Platforms: AMD SEV-SNP (`sev` crate, pinned ARKs), Intel TDX
//! (`dcap-qvl`), and the emulated SEV-SNP processor (its own, explicitly insecure anchor).
//!
//! Nothing else lives here: the launch-digest calculators are the builder's
//! (`cloister-launch`), the emulated processor is its own insecure crate
//! (`cloister-insecure-emulated-sp`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod anchor;
mod certsig;
pub mod clock;
mod crl;
pub mod error;
pub mod floors;
mod machine;
pub mod policy;
mod snp;
mod tdx;
mod tdx_policy;
pub mod vcek;
mod verifier;

pub use anchor::{HardwareRoots, InsecureEmulatedRoot, SnpRoot, TrustAnchor};
pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{CertRole, VerifyError};
pub use machine::MachineId;
pub use policy::{
    Digest48, MinTcb, Policy, PolicyError, SnpPlatformPolicy, TdxAttributePolicy, TdxModuleSvn,
    TdxReference,
};
pub use snp::{REPORT_LEN as SNP_REPORT_LEN, SIG_ALGO_ECDSA_P384_SHA384};
pub use verifier::{Check, Inspection, Measurement, Step, Verified, Verifier};
