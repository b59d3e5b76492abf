//! The log's entries: one release record per release, in one canonical JSON encoding (fields
//! in a fixed order, no white space, measurements sorted), so that a record has exactly one
//! leaf hash and a device can rebuild the bytes it checks.

use serde::{Deserialize, Serialize};

use crate::LogError;

/// The record format this crate writes and accepts.
pub const SCHEMA: &str = "cloister-release/v1";

/// One launch measurement of the release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// `sev-snp`, `tdx` or `emulated-sev-snp`.
    pub platform: String,
    /// vCPUs the digest was computed for (SNP measures one VMSA per vCPU).
    pub vcpus: u32,
    /// The vCPU model the VMSAs were computed for.
    pub vcpu_type: String,
    /// The launch digest (SNP: 48 bytes) or MRTD (TDX), lower-case hex.
    pub digest: String,
}

/// The lowest reported TCB a release accepts on one product (the SPLs of the SNP report's
/// REPORTED_TCB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordTcb {
    /// PSP bootloader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL (Turin and later).
    pub fmc: u8,
}

/// A release: what a device must find in the log before it sends a request to a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseRecord {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Launch measurements, sorted.
    pub measurements: Vec<Measurement>,
    /// SHA-256 of the image manifest (the guest reports it; it names every file).
    pub manifest_sha256: String,
    /// SHA-256 of the kernel, initramfs and firmware the measurements cover.
    pub kernel_sha256: String,
    /// SHA-256 of the initramfs.
    pub initramfs_sha256: String,
    /// SHA-256 of the firmware.
    pub firmware_sha256: String,
    /// The measured kernel command line.
    pub cmdline: String,
    /// SHA-256 of the weights disk, when the release has one (its root hash is on `cmdline`).
    pub weights_disk_sha256: Option<String>,
    /// The source revision built (a git commit).
    pub source_revision: String,
    /// `SOURCE_DATE_EPOCH` of the build.
    pub source_date_epoch: u64,
    /// The TCB floors this release was published with, per AMD product (`Milan`, `Genoa`,
    /// `Turin`): a device enforces the larger of these and its own, component by component,
    /// and an auditor reads the same numbers in the log. Absent from records published before
    /// floors were recorded (the field is then left out of the canonical encoding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp_min_tcb: Option<std::collections::BTreeMap<String, RecordTcb>>,
}

impl ReleaseRecord {
    /// The canonical encoding (measurements sorted, fields in declaration order, compact).
    pub fn to_bytes(&self) -> Result<Vec<u8>, LogError> {
        let mut canonical = self.clone();
        canonical.measurements.sort();
        canonical.check()?;
        serde_json::to_vec(&canonical).map_err(|e| LogError::Record(e.to_string()))
    }

    /// Parses a record, refusing any encoding but the canonical one.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LogError> {
        from_canonical(bytes, ReleaseRecord::to_bytes)
    }

    fn check(&self) -> Result<(), LogError> {
        if self.schema != SCHEMA {
            return Err(LogError::Record(format!(
                "schema {:?}, not {SCHEMA:?}",
                self.schema
            )));
        }
        if self.measurements.is_empty() {
            return Err(LogError::Record("no measurement".into()));
        }
        let hex_of = |what: &str, v: &str, len: usize| {
            if v.len() == 2 * len
                && v.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                Ok(())
            } else {
                Err(LogError::Record(format!(
                    "{what} is not {len} bytes of lower-case hex"
                )))
            }
        };
        for m in &self.measurements {
            if !matches!(m.digest.len(), 64 | 96) {
                return Err(LogError::Record(format!(
                    "{} digest of {} hex digits",
                    m.platform,
                    m.digest.len()
                )));
            }
            hex_of("a digest", &m.digest, m.digest.len() / 2)?;
        }
        hex_of("manifest_sha256", &self.manifest_sha256, 32)?;
        hex_of("kernel_sha256", &self.kernel_sha256, 32)?;
        hex_of("initramfs_sha256", &self.initramfs_sha256, 32)?;
        hex_of("firmware_sha256", &self.firmware_sha256, 32)?;
        if let Some(d) = &self.weights_disk_sha256 {
            hex_of("weights_disk_sha256", d, 32)?;
        }
        Ok(())
    }

    /// Whether the release holds `digest` (hex) for `platform`.
    pub fn has_measurement(&self, platform: &str, digest: &str) -> bool {
        self.measurements
            .iter()
            .any(|m| m.platform == platform && m.digest == digest)
    }
}

/// Parses an entry of any kind, refusing any encoding but the one `to_bytes` writes (one entry,
/// one leaf hash).
pub(crate) fn from_canonical<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    to_bytes: impl Fn(&T) -> Result<Vec<u8>, LogError>,
) -> Result<T, LogError> {
    let record: T = serde_json::from_slice(bytes).map_err(|e| LogError::Record(e.to_string()))?;
    if to_bytes(&record)? != bytes {
        return Err(LogError::NonCanonical);
    }
    Ok(record)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(n: u64) -> ReleaseRecord {
        let h = |b: u8| hex::encode([b; 32]);
        ReleaseRecord {
            schema: SCHEMA.into(),
            measurements: vec![
                Measurement {
                    platform: "sev-snp".into(),
                    vcpus: 4,
                    vcpu_type: "EPYC-v4".into(),
                    digest: hex::encode([n as u8; 48]),
                },
                Measurement {
                    platform: "emulated-sev-snp".into(),
                    vcpus: 2,
                    vcpu_type: "EPYC-v4".into(),
                    digest: hex::encode([n as u8 ^ 0xff; 48]),
                },
            ],
            manifest_sha256: h(1),
            kernel_sha256: h(2),
            initramfs_sha256: h(3),
            firmware_sha256: h(4),
            cmdline: "console=ttyS0 cloister.attest=sev-snp".into(),
            weights_disk_sha256: None,
            source_revision: format!("{n:040x}"),
            source_date_epoch: 1_700_000_000 + n,
            snp_min_tcb: None,
        }
    }

    #[test]
    fn the_canonical_encoding_round_trips_and_is_the_only_one_accepted() {
        let r = record(7);
        let bytes = r.to_bytes().expect("test value");
        let back = ReleaseRecord::from_bytes(&bytes).expect("test value");
        assert_eq!(back.to_bytes().expect("test value"), bytes);
        assert!(back.has_measurement("sev-snp", &hex::encode([7u8; 48])));
        assert!(!back.has_measurement("tdx", &hex::encode([7u8; 48])));
        // Measurements come out sorted whatever order they were given in.
        assert_eq!(back.measurements[0].platform, "emulated-sev-snp");
        // White space, another field order, an unknown field: each is refused.
        let text = String::from_utf8(bytes.clone()).expect("test value");
        let spaced = text.replacen(",", ", ", 1);
        assert!(matches!(
            ReleaseRecord::from_bytes(spaced.as_bytes()),
            Err(LogError::NonCanonical)
        ));
        let extra = text.replacen('{', "{\"x\":1,", 1);
        assert!(matches!(
            ReleaseRecord::from_bytes(extra.as_bytes()),
            Err(LogError::Record(_))
        ));
    }

    #[test]
    fn malformed_records_are_refused_by_name() {
        let mut r = record(1);
        r.schema = "other".into();
        assert!(matches!(r.to_bytes(), Err(LogError::Record(m)) if m.contains("schema")));
        let mut r = record(1);
        r.measurements[0].digest = "AB".repeat(48);
        assert!(matches!(r.to_bytes(), Err(LogError::Record(m)) if m.contains("hex")));
        let mut r = record(1);
        r.measurements.clear();
        assert!(matches!(r.to_bytes(), Err(LogError::Record(m)) if m.contains("measurement")));
        let mut r = record(1);
        r.kernel_sha256.pop();
        assert!(matches!(r.to_bytes(), Err(LogError::Record(m)) if m.contains("kernel")));
    }
}
