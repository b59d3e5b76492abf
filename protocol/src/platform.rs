//! The confidential-computing platforms a bundle can come from, by their wire names.

use std::fmt;
use std::str::FromStr;

/// A platform name that is not one of [`Platform::ALL`]'s (clipped to 40 characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform {0:?} is unknown (expected sev-snp, tdx or emulated-sev-snp)")]
pub struct UnknownPlatform(pub String);

/// The confidential-computing platform that produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Platform {
    /// AMD SEV-SNP: a 1184-byte attestation report signed by the chip's VCEK.
    SevSnp,
    /// Intel TDX: a DCAP quote.
    Tdx,
    /// SEV-SNP reports signed by a software-emulated AMD secure processor. Insecure: accepted
    /// only by a verifier built with the explicitly insecure emulated trust anchor.
    EmulatedSevSnp,
}

impl Platform {
    /// Every platform, in wire order.
    pub const ALL: [Platform; 3] = [Platform::SevSnp, Platform::Tdx, Platform::EmulatedSevSnp];

    /// The wire name (`sev-snp`, `tdx`, `emulated-sev-snp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::SevSnp => "sev-snp",
            Platform::Tdx => "tdx",
            Platform::EmulatedSevSnp => "emulated-sev-snp",
        }
    }

    /// Whether the evidence is an SNP attestation report (real or emulated).
    pub fn is_snp_report(self) -> bool {
        matches!(self, Platform::SevSnp | Platform::EmulatedSevSnp)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPlatform(s.chars().take(40).collect()))
    }
}
