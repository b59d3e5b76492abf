//! Evidence through `/dev/sev-guest` (the `sev` crate's `Firmware`), for SNP guests whose
//! kernel lacks configfs-tsm. Each request opens the device, asks for an extended report
//! (report and the host's certificate table) for VMPL 0, and closes it.
//!
//! Caution, and why configfs-tsm ([`super::tsm`]) is the primary SNP path: `sev` 8.0.0 parses
//! the certificate table itself (`get_ext_report` → `CertTableEntry::parse_table`) and follows
//! the host-supplied offsets and lengths without checking them against the buffer. A hostile
//! host can therefore make that parser read past the buffer; whatever it reads would end up in
//! the "certificates" of the evidence. This module can only check what the parser returns (the
//! same rules as for `auxblob`: [`super::certtable::certificates`]), not what it read.

use std::io;

use cloister_protocol::{Endorsements, Platform};
use sev::firmware::guest::Firmware;
use sev::firmware::host::CertTableEntry;

use super::certtable::{self, CertEntry, CertKind, CertTableError, Guid};
use super::{AttestError, Attester, Evidence};

/// The device the `sev-guest` module creates.
pub const DEVICE: &str = "/dev/sev-guest";
/// Length of an SNP `ATTESTATION_REPORT` (AMD 56860, Table 23).
pub const SNP_REPORT_LEN: usize = 1184;

/// An SNP attester over `/dev/sev-guest`.
#[derive(Debug, Clone, Default)]
pub struct SevGuestAttester {
    _private: (),
}

impl SevGuestAttester {
    /// The attester. Nothing is opened until a request.
    pub fn new() -> Self {
        SevGuestAttester::default()
    }
}

/// Opening fails with "unavailable" when the device or its driver is absent, and with an I/O
/// error otherwise (e.g. permissions), so that a misconfiguration is not mistaken for absence.
fn open_error(e: io::Error) -> AttestError {
    let absent = e.kind() == io::ErrorKind::NotFound
        || matches!(
            e.raw_os_error(),
            Some(code) if code == nix::errno::Errno::ENXIO as i32
                || code == nix::errno::Errno::ENODEV as i32
        );
    if absent {
        AttestError::Unavailable(format!(
            "{DEVICE}: {e} (not an SEV-SNP guest, or the sev-guest module is not loaded)"
        ))
    } else {
        AttestError::Io {
            action: "open",
            path: DEVICE.to_owned(),
            source: e,
        }
    }
}

/// Converts the `sev` crate's parsed table to ours, so that the same rules pick the
/// certificates as for configfs-tsm's `auxblob`.
pub fn from_sev_entries(entries: Vec<CertTableEntry>) -> Vec<CertEntry> {
    entries
        .into_iter()
        .map(|e| {
            // Through the GUID text, which `sev` prints for every type (including `OTHER`).
            let kind = Guid::parse(&e.guid_string())
                .map(CertKind::from_guid)
                .unwrap_or(CertKind::Other(Guid::ZERO));
            CertEntry { kind, data: e.data }
        })
        .collect()
}

impl Attester for SevGuestAttester {
    fn platform(&self) -> Platform {
        Platform::SevSnp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let mut firmware = Firmware::open().map_err(open_error)?;
        // Message version: the crate's default (1). VMPL 0: the verifier's policy requires it.
        let (report, table) = firmware
            .get_ext_report(None, Some(*report_data), Some(0))
            .map_err(|e| AttestError::Request(format!("{DEVICE} extended report: {e}")))?;
        if report.len() != SNP_REPORT_LEN {
            return Err(AttestError::ReportLength {
                found: report.len(),
                expected: SNP_REPORT_LEN,
            });
        }
        let entries = table.ok_or(CertTableError::Absent)?;
        let certificates = certtable::certificates(from_sev_entries(entries))?;
        Ok(Evidence {
            platform: Platform::SevSnp,
            evidence: report,
            endorsements: Endorsements::Snp(certificates),
        })
    }
}

#[cfg(test)]
mod tests {
    use sev::firmware::host::CertType;

    use super::*;

    #[test]
    fn absent_device_is_unavailable() {
        if std::path::Path::new(DEVICE).exists() {
            // On a real SNP guest this test has nothing to show.
            return;
        }
        let a = SevGuestAttester::new();
        assert_eq!(a.platform(), Platform::SevSnp);
        match a.evidence(&[0; 64]) {
            Err(AttestError::Unavailable(m)) => assert!(m.contains(DEVICE), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn open_errors_are_classified() {
        assert!(matches!(
            open_error(io::Error::from(io::ErrorKind::NotFound)),
            AttestError::Unavailable(_)
        ));
        assert!(matches!(
            open_error(io::Error::from_raw_os_error(
                nix::errno::Errno::ENXIO as i32
            )),
            AttestError::Unavailable(_)
        ));
        assert!(matches!(
            open_error(io::Error::from(io::ErrorKind::PermissionDenied)),
            AttestError::Io { action: "open", .. }
        ));
    }

    #[test]
    fn sev_entries_convert_like_an_auxblob() {
        let crl = CertTableEntry::new(CertType::CRL, b"crl".to_vec());
        let entries = vec![
            CertTableEntry::new(CertType::ARK, b"ark".to_vec()),
            CertTableEntry::new(CertType::ASK, b"ask".to_vec()),
            CertTableEntry::new(CertType::VCEK, b"vcek".to_vec()),
            crl,
        ];
        let ours = from_sev_entries(entries);
        assert_eq!(ours[0].kind, CertKind::Ark);
        assert_eq!(ours[1].kind, CertKind::Ask);
        assert_eq!(ours[2].kind, CertKind::Vcek);
        assert!(matches!(ours[3].kind, CertKind::Other(_)));
        // The same bytes as a configfs-tsm auxblob give the same certificates.
        let via_table = certtable::certificates_from_table(&certtable::encode(&ours));
        assert_eq!(certtable::certificates(ours), via_table);
        let c = via_table.expect("certificates");
        assert_eq!(c.vcek, b"vcek");
        assert_eq!(c.ask.as_deref(), Some(&b"ask"[..]));
        assert_eq!(c.ark.as_deref(), Some(&b"ark"[..]));
    }

    #[test]
    fn sev_vlek_only_is_refused_by_name() {
        let ours = from_sev_entries(vec![CertTableEntry::new(CertType::VLEK, b"vlek".to_vec())]);
        assert_eq!(
            certtable::certificates(ours),
            Err(CertTableError::VlekNotSupported)
        );
    }
}
