//! Expected launch measurements, computed from an image's parts alone.
//!
//! * [`amd`] — SEV, SEV-ES and SEV-SNP launch digests of an AmdSev OVMF launch with measured
//!   direct boot; [`hashes`] — the kernel-hashes table and page QEMU fills (and the launcher
//!   injects under emulation); [`gctx`] — the SNP launch digest's page fold.

pub mod amd;
pub mod gctx;
pub mod hashes;

pub use amd::{AmdLaunch, AmdSevFirmware, SevMode, vcpu_type, vmm_type};
pub use hashes::BootHashes;

/// Why an expected measurement could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The firmware image could not be parsed.
    #[error("firmware image: {0}")]
    Firmware(String),
    /// The firmware has no SEV hashes table (not an AmdSev build), but kernel hashes were asked.
    #[error(
        "firmware has no SEV kernel-hashes table (SNP_KERNEL_HASHES): it cannot measure a direct boot"
    )]
    NoHashesTable,
    /// The hashes table would not fit its page at this offset.
    #[error("hashes table offset {0:#x} does not fit in a page")]
    HashesTableOffset(usize),
    /// The command line starts or ends with whitespace (calculators disagree on it).
    #[error(
        "kernel command line has leading or trailing whitespace: its measurement would be ambiguous"
    )]
    CmdlineWhitespace,
    /// The command line contains a NUL byte.
    #[error("kernel command line contains a NUL byte")]
    CmdlineNul,
    /// Zero vCPUs.
    #[error("a launch needs at least one vCPU")]
    NoVcpus,
    /// A vCPU model this calculator does not know.
    #[error("unknown vCPU type {0:?} (expected a QEMU EPYC model such as EPYC-v4 or EPYC-Milan)")]
    UnknownVcpuType(String),
    /// A VMM this calculator does not know.
    #[error("unknown VMM type {0:?} (expected QEMU, ec2 or krun)")]
    UnknownVmm(String),
    /// An unknown SEV mode.
    #[error("unknown SEV mode {0:?} (expected sev, seves or snp)")]
    UnknownMode(String),
    /// The VMSA could not be built.
    #[error("VMSA: {0}")]
    Vmsa(String),
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// Path.
        path: std::path::PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}
