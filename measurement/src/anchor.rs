//! Trust anchors: the roots a verifier believes.
//!
//! [`TrustAnchor::Hardware`] pins AMD's ARKs for Milan, Genoa and Turin (the certificates built
//! into the `sev` crate) and Intel's SGX/TDX root CA (built into `dcap-qvl`). The emulated AMD
//! secure processor's root is a different type, [`TrustAnchor::InsecureEmulated`]: nothing
//! chooses it by default and a hardware verifier never accepts an emulated bundle.

use sev::certs::snp::{Certificate, builtin};

use crate::error::{CertRole, VerifyError};

/// One pinned AMD root: the ARK, and the ASK it issued (used when the host does not send one).
#[derive(Debug, Clone)]
pub struct SnpRoot {
    /// Product line (`Milan`, `Genoa`, `Turin`, or `Emulated`).
    pub product: &'static str,
    /// ARK certificate.
    pub ark: x509_cert::Certificate,
    /// DER of the ARK, compared byte for byte with a presented ARK.
    pub ark_der: Vec<u8>,
    /// The ASK this ARK issued, if pinned.
    pub ask: Option<x509_cert::Certificate>,
}

impl SnpRoot {
    fn from_certs(
        product: &'static str,
        ark: Certificate,
        ask: Option<Certificate>,
    ) -> Result<Self, VerifyError> {
        let ark_der = ark
            .to_der()
            .map_err(|e| VerifyError::CertificateMalformed {
                role: CertRole::Ark,
                reason: e.to_string(),
            })?;
        Ok(SnpRoot {
            product,
            ark: ark.into(),
            ark_der,
            ask: ask.map(Into::into),
        })
    }
}

/// The roots of real hardware.
#[derive(Debug, Clone)]
pub struct HardwareRoots {
    pub(crate) amd: Vec<SnpRoot>,
}

impl HardwareRoots {
    /// AMD's Milan, Genoa and Turin ARK/ASK pairs as built into `sev` 8.0.0, and Intel's root
    /// CA as built into `dcap-qvl` 0.7.1 (both crates are pinned exactly in `Cargo.toml`).
    pub fn pinned() -> Result<Self, VerifyError> {
        let malformed = |role| {
            move |e: std::io::Error| VerifyError::CertificateMalformed {
                role,
                reason: e.to_string(),
            }
        };
        let mut amd = Vec::new();
        for (product, ark, ask) in [
            ("Milan", builtin::milan::ark(), builtin::milan::ask()),
            ("Genoa", builtin::genoa::ark(), builtin::genoa::ask()),
            ("Turin", builtin::turin::ark(), builtin::turin::ask()),
        ] {
            let ark = ark.map_err(malformed(CertRole::Ark))?;
            let ask = ask.map_err(malformed(CertRole::Ask))?;
            amd.push(SnpRoot::from_certs(product, ark, Some(ask))?);
        }
        Ok(HardwareRoots { amd })
    }

    /// The pinned AMD roots.
    pub fn amd(&self) -> &[SnpRoot] {
        &self.amd
    }
}

/// The root of a software-emulated AMD secure processor. Insecure: whoever holds the emulated
/// processor's seed can sign any report.
#[derive(Debug, Clone)]
pub struct InsecureEmulatedRoot {
    pub(crate) root: Box<SnpRoot>,
}

impl InsecureEmulatedRoot {
    /// Pins the emulated ARK given as DER.
    pub fn from_ark_der(der: &[u8]) -> Result<Self, VerifyError> {
        let ark = Certificate::from_der(der).map_err(|e| VerifyError::CertificateMalformed {
            role: CertRole::Ark,
            reason: e.to_string(),
        })?;
        Ok(InsecureEmulatedRoot {
            root: Box::new(SnpRoot::from_certs("Emulated", ark, None)?),
        })
    }

    /// SHA-256 of the pinned emulated ARK, for display.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&self.root.ark_der))
    }
}

/// What a verifier believes.
#[derive(Debug, Clone)]
pub enum TrustAnchor {
    /// Real AMD SEV-SNP and Intel TDX hardware.
    Hardware(HardwareRoots),
    /// The emulated AMD secure processor (CI and local research only). Accepts only bundles
    /// whose platform is `emulated-sev-snp`.
    InsecureEmulated(InsecureEmulatedRoot),
}

impl TrustAnchor {
    /// The hardware anchor with the pinned roots.
    pub fn hardware() -> Result<Self, VerifyError> {
        HardwareRoots::pinned().map(TrustAnchor::Hardware)
    }

    /// Short name, used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            TrustAnchor::Hardware(_) => "hardware (AMD, Intel)",
            TrustAnchor::InsecureEmulated(_) => "INSECURE emulated",
        }
    }

    /// Whether this is the insecure emulated anchor.
    pub fn is_insecure(&self) -> bool {
        matches!(self, TrustAnchor::InsecureEmulated(_))
    }
}
