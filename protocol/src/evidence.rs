//! The evidence bundle: what a guest presents so that a device can decide whether to trust it.
//!
//! Wire form: one JSON object, byte fields in standard base64 (with padding), digests in
//! lower-case hex. Decoding is strict — unknown versions, unknown platforms, unknown fields,
//! oversize fields and malformed base64 are each refused with their own [`BundleError`] — and
//! checks sizes before it decodes, so a hostile host cannot make a device allocate much.

use serde::{Deserialize, Serialize};

pub use crate::platform::Platform;
use crate::wire::{self, BundleError};

/// The only bundle version this crate reads and writes.
pub const BUNDLE_VERSION: u32 = 1;

/// Largest encoded bundle accepted (bytes of JSON).
pub const MAX_BUNDLE_LEN: usize = 1 << 20;
/// Largest report or quote (bytes). An SNP report is 1184 bytes; a TDX v4 quote with its
/// embedded PCK chain is about 5 KiB.
pub const MAX_EVIDENCE_LEN: usize = 16 * 1024;
/// Largest DER certificate.
pub const MAX_CERT_LEN: usize = 8 * 1024;
/// Largest TDX collateral (dcap-qvl `QuoteCollateralV3` JSON).
pub const MAX_COLLATERAL_LEN: usize = 256 * 1024;
/// Largest OHTTP key config.
pub const MAX_KEY_CONFIG_LEN: usize = 1024;
/// Largest signed checkpoint (note text with signatures and cosignatures).
pub const MAX_CHECKPOINT_LEN: usize = 16 * 1024;
/// Largest logged entry (release record).
pub const MAX_LOG_ENTRY_LEN: usize = 64 * 1024;
/// Most hashes in an inclusion proof (a tree of 2^63 leaves needs 63).
pub const MAX_PROOF_HASHES: usize = 63;

/// The certificates that endorse an SNP report: the chip's VCEK, and optionally the AMD SEV
/// signing key (ASK) and root key (ARK) as the host's certificate table carried them. A verifier
/// never trusts a presented ARK: it must be byte-identical to a pinned one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpCertificates {
    /// VCEK certificate (DER).
    pub vcek: Vec<u8>,
    /// ASK certificate (DER), if the host supplied it.
    pub ask: Option<Vec<u8>>,
    /// ARK certificate (DER), if the host supplied it.
    pub ark: Option<Vec<u8>>,
    /// The product's certificate revocation list as AMD's key distribution service serves it
    /// (DER, signed by the ARK), stapled by the host or the gateway: the device checks
    /// revocation offline.
    pub crl: Option<Vec<u8>>,
}

/// What endorses the raw evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endorsements {
    /// SNP (real or emulated): the certificate chain.
    Snp(SnpCertificates),
    /// TDX: the quote's collateral (TCB info, QE identity, CRLs), dcap-qvl's
    /// `QuoteCollateralV3` JSON.
    Tdx {
        /// Collateral JSON bytes.
        collateral: Vec<u8>,
    },
}

/// The transparency-log proof that the guest's measurement was published, attached by the
/// operator outside the hardware report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogProof {
    /// The logged entry (a release record).
    pub entry: Vec<u8>,
    /// The entry's index in the log.
    pub leaf_index: u64,
    /// RFC 9162 inclusion proof, leaf to root.
    pub inclusion_proof: Vec<[u8; 32]>,
    /// The C2SP checkpoint (signed note, with cosignatures) the proof leads to.
    pub checkpoint: String,
}

/// A guest's evidence: hardware report, its endorsements, and the key it binds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceBundle {
    /// Which platform produced `evidence`.
    pub platform: Platform,
    /// The raw report (SNP) or quote (TDX), exactly as the hardware returned it.
    pub evidence: Vec<u8>,
    /// Certificate chain or collateral.
    pub endorsements: Endorsements,
    /// The guest's OHTTP key config (RFC 9458 §3), bound into `report_data`.
    pub key_config: Vec<u8>,
    /// When the key, and therefore this evidence, stops being valid (Unix seconds).
    pub expires_at: u64,
    /// SHA-256 of the image manifest the guest booted.
    pub image_manifest_digest: [u8; 32],
    /// Transparency-log proof for the measurement, when the operator attached one.
    pub log_proof: Option<LogProof>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireBundle {
    version: u32,
    platform: String,
    evidence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    certificates: Option<WireCertificates>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    collateral: Option<String>,
    key_config: String,
    expires_at: u64,
    image_manifest_digest: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_proof: Option<WireLogProof>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireCertificates {
    vcek: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ask: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ark: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    crl: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireLogProof {
    entry: String,
    leaf_index: u64,
    inclusion_proof: Vec<String>,
    checkpoint: String,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl EvidenceBundle {
    /// Decodes a bundle from its JSON wire form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge {
                found: bytes.len(),
                max: MAX_BUNDLE_LEN,
            });
        }
        // The version is read first so that a bundle from a newer protocol is refused as such,
        // not as a pile of unknown fields.
        let VersionOnly { version } = serde_json::from_slice(bytes).map_err(wire::json_error)?;
        if version != BUNDLE_VERSION {
            return Err(BundleError::UnsupportedVersion {
                found: version,
                supported: BUNDLE_VERSION,
            });
        }
        let w: WireBundle = serde_json::from_slice(bytes).map_err(wire::json_error)?;
        let platform: Platform = w.platform.parse()?;
        let evidence = wire::b64("evidence", &w.evidence, MAX_EVIDENCE_LEN)?;
        let endorsements = match (platform, w.certificates, w.collateral) {
            (p, Some(c), None) if p.is_snp_report() => Endorsements::Snp(SnpCertificates {
                vcek: wire::b64("certificates.vcek", &c.vcek, MAX_CERT_LEN)?,
                ask: wire::b64_opt("certificates.ask", c.ask.as_deref(), MAX_CERT_LEN)?,
                ark: wire::b64_opt("certificates.ark", c.ark.as_deref(), MAX_CERT_LEN)?,
                crl: wire::b64_opt("certificates.crl", c.crl.as_deref(), MAX_CERT_LEN)?,
            }),
            (Platform::Tdx, None, Some(c)) => Endorsements::Tdx {
                collateral: wire::b64("collateral", &c, MAX_COLLATERAL_LEN)?,
            },
            (p, _, Some(_)) if p.is_snp_report() => {
                return Err(BundleError::UnexpectedField {
                    field: "collateral",
                    platform,
                });
            }
            (p, None, None) if p.is_snp_report() => {
                return Err(BundleError::MissingField {
                    field: "certificates",
                    platform,
                });
            }
            (_, Some(_), _) => {
                return Err(BundleError::UnexpectedField {
                    field: "certificates",
                    platform,
                });
            }
            (_, None, _) => {
                return Err(BundleError::MissingField {
                    field: "collateral",
                    platform,
                });
            }
        };
        let key_config = wire::b64("key_config", &w.key_config, MAX_KEY_CONFIG_LEN)?;
        let image_manifest_digest = wire::hex32("image_manifest_digest", &w.image_manifest_digest)?;
        let log_proof = w.log_proof.map(LogProof::from_wire).transpose()?;
        Ok(EvidenceBundle {
            platform,
            evidence,
            endorsements,
            key_config,
            expires_at: w.expires_at,
            image_manifest_digest,
            log_proof,
        })
    }

    /// Encodes the bundle in its JSON wire form.
    pub fn to_json(&self) -> Vec<u8> {
        let (certificates, collateral) = match &self.endorsements {
            Endorsements::Snp(c) => (
                Some(WireCertificates {
                    vcek: wire::enc(&c.vcek),
                    ask: c.ask.as_deref().map(wire::enc),
                    ark: c.ark.as_deref().map(wire::enc),
                    crl: c.crl.as_deref().map(wire::enc),
                }),
                None,
            ),
            Endorsements::Tdx { collateral } => (None, Some(wire::enc(collateral))),
        };
        let w = WireBundle {
            version: BUNDLE_VERSION,
            platform: self.platform.as_str().to_owned(),
            evidence: wire::enc(&self.evidence),
            certificates,
            collateral,
            key_config: wire::enc(&self.key_config),
            expires_at: self.expires_at,
            image_manifest_digest: hex::encode(self.image_manifest_digest),
            log_proof: self.log_proof.as_ref().map(LogProof::to_wire),
        };
        // Serialising plain strings and integers into a Vec cannot fail.
        serde_json::to_vec_pretty(&w).unwrap_or_default()
    }
}

impl LogProof {
    fn from_wire(w: WireLogProof) -> Result<Self, BundleError> {
        if w.inclusion_proof.len() > MAX_PROOF_HASHES {
            return Err(BundleError::TooManyItems {
                field: "log_proof.inclusion_proof",
                found: w.inclusion_proof.len(),
                max: MAX_PROOF_HASHES,
            });
        }
        if w.checkpoint.len() > MAX_CHECKPOINT_LEN {
            return Err(BundleError::FieldTooLarge {
                field: "log_proof.checkpoint",
                found: w.checkpoint.len(),
                max: MAX_CHECKPOINT_LEN,
            });
        }
        let inclusion_proof = w
            .inclusion_proof
            .iter()
            .map(|h| {
                let raw = wire::b64("log_proof.inclusion_proof", h, 32)?;
                <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| BundleError::WrongLength {
                    field: "log_proof.inclusion_proof",
                    found: raw.len(),
                    expected: 32,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LogProof {
            entry: wire::b64("log_proof.entry", &w.entry, MAX_LOG_ENTRY_LEN)?,
            leaf_index: w.leaf_index,
            inclusion_proof,
            checkpoint: w.checkpoint,
        })
    }

    /// The proof's JSON wire form alone (as the evidence bundle's `log_proof` field): what a
    /// log serves for an entry and `cargo xtask publish` stores beside an image.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(&self.to_wire()).unwrap_or_default()
    }

    /// Decodes the JSON wire form, with the evidence bundle's size limits.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_BUNDLE_LEN {
            return Err(BundleError::TooLarge {
                found: bytes.len(),
                max: MAX_BUNDLE_LEN,
            });
        }
        let w: WireLogProof = serde_json::from_slice(bytes).map_err(wire::json_error)?;
        Self::from_wire(w)
    }

    fn to_wire(&self) -> WireLogProof {
        WireLogProof {
            entry: wire::enc(&self.entry),
            leaf_index: self.leaf_index,
            inclusion_proof: self.inclusion_proof.iter().map(|h| wire::enc(h)).collect(),
            checkpoint: self.checkpoint.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
