//! Attesters: where the guest gets hardware evidence for a `report_data`.
//!
//! * [`tsm::TsmAttester`] — Linux configfs-tsm (`/sys/kernel/config/tsm/report`), for
//!   `sev_guest` and `tdx_guest` providers (Linux ≥ 6.7).
//! * [`sev_guest::SevGuestAttester`] — `/dev/sev-guest` through the `sev` crate, for kernels
//!   without configfs-tsm.
//! * [`emulated::EmulatedSnpAttester`] — asks the emulated AMD secure processor on the host
//!   (CI and local research only; its reports verify only under the insecure emulated anchor).

pub mod certtable;
pub mod emulated;
pub mod sev_guest;
pub mod tsm;

use cloister_protocol::{Endorsements, Platform};

/// Raw evidence for one `report_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// Platform that produced it.
    pub platform: Platform,
    /// SNP report or TDX quote, as the hardware returned it.
    pub evidence: Vec<u8>,
    /// Certificates (SNP) or collateral (TDX).
    pub endorsements: Endorsements,
}

/// Why evidence could not be obtained.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The interface is not present (no configfs-tsm, no /dev/sev-guest, …).
    #[error("attestation interface unavailable: {0}")]
    Unavailable(String),
    /// The kernel or device refused the request.
    #[error("attestation request failed: {0}")]
    Request(String),
    /// Another writer changed the report between our write and read (configfs-tsm
    /// `generation` moved).
    #[error(
        "configfs-tsm report was changed by a concurrent writer (generation {before} → {after})"
    )]
    Concurrent {
        /// Generation before.
        before: u64,
        /// Generation after.
        after: u64,
    },
    /// The provider is not the expected one.
    #[error("unexpected attestation provider {found:?} (expected {expected})")]
    Provider {
        /// Provider found.
        found: String,
        /// Provider expected.
        expected: &'static str,
    },
    /// The evidence or its endorsements are malformed.
    #[error("malformed evidence: {0}")]
    Malformed(String),
    /// An SNP report that is not exactly one `ATTESTATION_REPORT` long.
    #[error("SNP report is {found} bytes, expected {expected}")]
    ReportLength {
        /// Bytes found.
        found: usize,
        /// Bytes expected (1184).
        expected: usize,
    },
    /// A TDX quote that is empty or larger than an evidence bundle accepts.
    #[error("TDX quote is {found} bytes, expected 1 to {max}")]
    QuoteSize {
        /// Bytes found.
        found: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// The SNP certificate table is absent, malformed, or lacks a usable VCEK.
    #[error("SNP certificate table: {0}")]
    CertTable(#[from] certtable::CertTableError),
    /// The emulated processor's response breaks its wire format.
    #[error("emulated secure processor response: {0}")]
    SpWire(#[from] cloister_protocol::emulated_sp::SpWireError),
    /// The attester cannot produce evidence for this platform.
    #[error("the {attester} attester cannot produce {platform} evidence")]
    UnsupportedPlatform {
        /// Platform asked for.
        platform: Platform,
        /// Attester.
        attester: &'static str,
    },
    /// The emulated processor answered with an error or could not be reached.
    #[error("emulated secure processor: {0}")]
    Emulated(String),
    /// An I/O error.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path or address.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// A source of hardware evidence. Blocking: the server calls it on a blocking thread.
pub trait Attester: Send + Sync + std::fmt::Debug {
    /// The platform this attester's evidence is for.
    fn platform(&self) -> Platform;
    /// Evidence binding `report_data`.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError>;
}
