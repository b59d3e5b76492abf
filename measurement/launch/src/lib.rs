//! The builder's calculators: the launch measurements a confidential VM will report, computed
//! from the image's parts alone (firmware, kernel, initrd, command line, vCPUs), so that anyone
//! can rebuild a release and check its published measurement.
//!
//! * [`sev`] — AMD SEV, SEV-ES and SEV-SNP launch digests of an AmdSev OVMF launch with
//!   measured direct boot, and the kernel-hashes page (equal to sev-snp-measure byte for byte).
//! * [`tdx`] — Intel TDX MRTD and RTMR0–3 of an OVMF IntelTdx launch with direct boot.
//!
//! Devices never link this crate: they check a reported measurement against the log, and the
//! verifier (`cloister-measurement`) has no builder code in its dependency tree.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod sev;
pub mod tdx;
