//! The VCEK's AMD extensions: which chip and which TCB the key was derived for.
//!
//! AMD, "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface Specification"
//! (57230), §3: the VCEK carries the SPLs it was derived from (`1.3.6.1.4.1.3704.1.3.x`, DER
//! INTEGERs) and the chip's hardware ID (`1.3.6.1.4.1.3704.1.4`, raw bytes: 64 for Milan/Genoa,
//! 8 for Turin). The `sev` crate checks the signature only; a report signed by a genuine VCEK
//! of *another* TCB or chip must still be refused, so the verifier compares them here.

use der::Decode as _;
use der::asn1::ObjectIdentifier;
use sev::firmware::guest::AttestationReport;

use crate::error::VerifyError;

/// `structVersion`.
pub const OID_STRUCT_VERSION: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.1");
/// `productName` (IA5String, e.g. `Milan-B0`).
pub const OID_PRODUCT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.2");
/// `blSPL`.
pub const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// `teeSPL`.
pub const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// `snpSPL`.
pub const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// `ucodeSPL`.
pub const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// `fmcSPL` (Turin).
pub const OID_FMC_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.9");
/// `hwID`.
pub const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// What a VCEK certifies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VcekClaims {
    /// Hardware ID (chip ID).
    pub hw_id: Option<Vec<u8>>,
    /// Bootloader SPL.
    pub bootloader: Option<u8>,
    /// TEE SPL.
    pub tee: Option<u8>,
    /// SNP SPL.
    pub snp: Option<u8>,
    /// Microcode SPL.
    pub microcode: Option<u8>,
    /// FMC SPL (Turin).
    pub fmc: Option<u8>,
}

fn spl(field: &'static str, value: &[u8]) -> Result<u8, VerifyError> {
    u8::from_der(value).map_err(|e| VerifyError::VcekMismatch {
        field,
        cert: format!("undecodable ({e})"),
        report: "-".to_owned(),
    })
}

impl VcekClaims {
    /// Reads the AMD extensions of a VCEK.
    pub fn from_certificate(cert: &x509_cert::Certificate) -> Result<Self, VerifyError> {
        let mut c = VcekClaims::default();
        for ext in cert.tbs_certificate.extensions.iter().flatten() {
            let v = ext.extn_value.as_bytes();
            match ext.extn_id {
                OID_BL_SPL => c.bootloader = Some(spl("blSPL", v)?),
                OID_TEE_SPL => c.tee = Some(spl("teeSPL", v)?),
                OID_SNP_SPL => c.snp = Some(spl("snpSPL", v)?),
                OID_UCODE_SPL => c.microcode = Some(spl("ucodeSPL", v)?),
                OID_FMC_SPL => c.fmc = Some(spl("fmcSPL", v)?),
                OID_HW_ID => c.hw_id = Some(v.to_vec()),
                _ => {}
            }
        }
        Ok(c)
    }

    /// Checks that the VCEK was derived for this report's chip and reported TCB.
    pub fn check(&self, report: &AttestationReport) -> Result<(), VerifyError> {
        let hw_id = self.hw_id.as_deref().ok_or_else(|| absent("hwID"))?;
        // Turin VCEKs carry an 8-byte hwID; the report's 64-byte CHIP_ID is zero-padded.
        let matches = match hw_id.len() {
            64 => hw_id == report.chip_id,
            8 => hw_id == &report.chip_id[..8] && report.chip_id[8..].iter().all(|b| *b == 0),
            _ => false,
        };
        if !matches {
            return Err(VerifyError::VcekMismatch {
                field: "hwID",
                cert: hex::encode(hw_id),
                report: hex::encode(report.chip_id),
            });
        }
        let tcb = &report.reported_tcb;
        for (field, cert, found) in [
            ("blSPL", self.bootloader, tcb.bootloader),
            ("teeSPL", self.tee, tcb.tee),
            ("snpSPL", self.snp, tcb.snp),
            ("ucodeSPL", self.microcode, tcb.microcode),
        ] {
            let cert = cert.ok_or_else(|| absent(field))?;
            if cert != found {
                return Err(VerifyError::VcekMismatch {
                    field,
                    cert: cert.to_string(),
                    report: found.to_string(),
                });
            }
        }
        if let (Some(cert), Some(found)) = (self.fmc, tcb.fmc)
            && cert != found
        {
            return Err(VerifyError::VcekMismatch {
                field: "fmcSPL",
                cert: cert.to_string(),
                report: found.to_string(),
            });
        }
        Ok(())
    }
}

fn absent(field: &'static str) -> VerifyError {
    VerifyError::VcekMismatch {
        field,
        cert: "absent".to_owned(),
        report: "-".to_owned(),
    }
}
