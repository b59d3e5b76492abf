//! SEV-SNP evidence (real and emulated): parse, chain to a pinned ARK, report signature,
//! guest policy, measurement.
//!
//! Report layout and fields: AMD SEV-SNP ABI specification (56860), Table 23
//! "ATTESTATION_REPORT structure"; the signature covers bytes 0x0..0x2A0.

use der::Decode as _;
use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser as _;

use cloister_protocol::SnpCertificates;

use crate::anchor::SnpRoot;
use crate::certsig::{verify_pss_sha384, verify_report_signature};
use crate::crl;
use crate::error::{CertRole, VerifyError};
use crate::floors;
use crate::policy::{Digest48, MinTcb, Policy};
use crate::vcek::VcekClaims;

/// Size of an SNP attestation report.
pub const REPORT_LEN: usize = 1184;
/// SIGNATURE_ALGO for ECDSA P-384 with SHA-384.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;
/// SIGNING_KEY value meaning "VCEK".
pub const SIGNING_KEY_VCEK: u32 = 0;

struct Cert {
    x509: x509_cert::Certificate,
    der: Vec<u8>,
}

impl Cert {
    fn parse(role: CertRole, der: &[u8]) -> Result<Self, VerifyError> {
        let malformed = |reason: String| VerifyError::CertificateMalformed { role, reason };
        let x509 = x509_cert::Certificate::from_der(der).map_err(|e| malformed(e.to_string()))?;
        Ok(Cert {
            x509,
            der: der.to_vec(),
        })
    }
}

/// A parsed, not yet verified SNP bundle.
pub(crate) struct SnpEvidence {
    pub(crate) report: AttestationReport,
    raw: Vec<u8>,
    vcek: Cert,
    ask: Option<Cert>,
    ark: Option<Cert>,
    crl: Option<Vec<u8>>,
}

pub(crate) fn parse(raw: &[u8], certs: &SnpCertificates) -> Result<SnpEvidence, VerifyError> {
    if raw.len() != REPORT_LEN {
        return Err(VerifyError::SnpReportMalformed(format!(
            "{} bytes, expected {REPORT_LEN}",
            raw.len()
        )));
    }
    let report = AttestationReport::from_bytes(raw)
        .map_err(|e| VerifyError::SnpReportMalformed(e.to_string()))?;
    Ok(SnpEvidence {
        report,
        raw: raw.to_vec(),
        vcek: Cert::parse(CertRole::Vcek, &certs.vcek)?,
        ask: certs
            .ask
            .as_deref()
            .map(|d| Cert::parse(CertRole::Ask, d))
            .transpose()?,
        ark: certs
            .ark
            .as_deref()
            .map(|d| Cert::parse(CertRole::Ark, d))
            .transpose()?,
        crl: certs.crl.clone(),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Picks the pinned root the chain claims. A presented ARK must be byte-identical to a pinned
/// one (the crate's `verify` would happily accept any self-signed ARK); without one, the
/// issuer names decide which pinned root to try, and the signatures then settle it.
fn select_root<'r>(roots: &'r [SnpRoot], ev: &SnpEvidence) -> Result<&'r SnpRoot, VerifyError> {
    if let Some(ark) = &ev.ark {
        return roots.iter().find(|r| r.ark_der == ark.der).ok_or_else(|| {
            VerifyError::UntrustedRoot {
                reason: format!(
                    "presented ARK (sha256 {}, subject {}) is not a pinned root",
                    sha256_hex(&ark.der),
                    ark.x509.tbs_certificate.subject
                ),
            }
        });
    }
    let (issuer, by_ask) = match &ev.ask {
        Some(ask) => (&ask.x509.tbs_certificate.issuer, false),
        None => (&ev.vcek.x509.tbs_certificate.issuer, true),
    };
    roots
        .iter()
        .find(|r| {
            let subject = if by_ask {
                r.ask.as_ref().map(|a| &a.tbs_certificate.subject)
            } else {
                Some(&r.ark.tbs_certificate.subject)
            };
            subject.is_some_and(|s| s == issuer)
        })
        .ok_or_else(|| VerifyError::UntrustedRoot {
            reason: format!("no pinned root issued a certificate to {issuer}"),
        })
}

fn check_validity(
    role: CertRole,
    cert: &x509_cert::Certificate,
    now: u64,
) -> Result<(), VerifyError> {
    let v = &cert.tbs_certificate.validity;
    let not_before = v.not_before.to_unix_duration().as_secs();
    let not_after = v.not_after.to_unix_duration().as_secs();
    if now < not_before {
        return Err(VerifyError::CertificateNotYetValid {
            role,
            not_before,
            now,
        });
    }
    if now > not_after {
        return Err(VerifyError::CertificateExpired {
            role,
            not_after,
            now,
        });
    }
    Ok(())
}

/// ARK pinned → ARK signs ASK → ASK signs VCEK; every certificate valid now; the VCEK issued
/// for this chip and reported TCB; the ASK not on the ARK's stapled CRL (a CRL is required when
/// `require_crl`). Returns the line and the product the root is for.
pub(crate) fn check_chain(
    roots: &[SnpRoot],
    ev: &SnpEvidence,
    now: u64,
    require_crl: bool,
) -> Result<(String, &'static str), VerifyError> {
    let root = select_root(roots, ev)?;
    let ask = match (&ev.ask, &root.ask) {
        (Some(presented), _) => &presented.x509,
        (None, Some(pinned)) => pinned,
        (None, None) => {
            return Err(VerifyError::UntrustedRoot {
                reason: format!("no ASK presented and none pinned for {}", root.product),
            });
        }
    };
    verify_pss_sha384(&root.ark, ask).map_err(VerifyError::AskSignature)?;
    verify_pss_sha384(ask, &ev.vcek.x509).map_err(VerifyError::VcekSignature)?;
    check_validity(CertRole::Ark, &root.ark, now)?;
    check_validity(CertRole::Ask, ask, now)?;
    check_validity(CertRole::Vcek, &ev.vcek.x509, now)?;
    VcekClaims::from_certificate(&ev.vcek.x509)?.check(&ev.report)?;
    let revocation = match &ev.crl {
        Some(der) => {
            let c = crl::check(root, der, ask.tbs_certificate.serial_number.as_bytes(), now)?;
            match c.number {
                Some(n) => format!("; ASK not revoked (CRL #{n}, current to {})", c.next_update),
                None => format!("; ASK not revoked (CRL current to {})", c.next_update),
            }
        }
        None if require_crl => return Err(VerifyError::CrlAbsent),
        None => "; no CRL".to_owned(),
    };
    let line = format!(
        "{} ARK (pinned) → ASK → VCEK for chip {}…{revocation}",
        root.product,
        &hex::encode(ev.report.chip_id)[..16]
    );
    Ok((line, root.product))
}

/// The VCEK signs the report with ECDSA P-384/SHA-384.
pub(crate) fn check_signature(ev: &SnpEvidence) -> Result<String, VerifyError> {
    let r = &ev.report;
    if r.sig_algo != SIG_ALGO_ECDSA_P384_SHA384 {
        return Err(VerifyError::UnsupportedSignatureAlgorithm { found: r.sig_algo });
    }
    let signing_key = r.key_info.signing_key();
    if signing_key != SIGNING_KEY_VCEK {
        return Err(VerifyError::UnsupportedSigningKey { found: signing_key });
    }
    verify_report_signature(&ev.vcek.x509, &ev.raw).map_err(VerifyError::ReportSignature)?;
    Ok("ECDSA P-384/SHA-384 by the VCEK".to_owned())
}

/// The floor this report must meet: the shipped one for its product and stepping, raised by the
/// policy's and by the logged release's. Under the hardware anchor a floor that demands
/// nothing is refused.
pub(crate) fn floor(
    r: &AttestationReport,
    policy: &Policy,
    product: &str,
    hardware: bool,
    release: Option<MinTcb>,
) -> Result<MinTcb, VerifyError> {
    let cpuid = match (r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) {
        (Some(f), Some(m), Some(s)) => Some((f, m, s)),
        _ => None,
    };
    let shipped = floors::shipped(product, cpuid).map_or(MinTcb::default(), |f| f.min);
    let floor = floors::max(
        floors::max(shipped, policy.snp_min_tcb),
        release.unwrap_or_default(),
    );
    if hardware && floors::is_zero(&floor) {
        return Err(VerifyError::NoTcbFloor {
            product: product.to_owned(),
        });
    }
    Ok(floor)
}

/// Guest policy and platform state the report attests to.
pub(crate) fn check_policy(
    ev: &SnpEvidence,
    policy: &Policy,
    product: &str,
    hardware: bool,
    release: Option<MinTcb>,
) -> Result<String, VerifyError> {
    let r = &ev.report;
    if r.version < policy.snp_min_report_version {
        return Err(VerifyError::ReportVersionTooOld {
            found: r.version,
            min: policy.snp_min_report_version,
        });
    }
    if r.policy.debug_allowed() {
        return Err(VerifyError::DebugAllowed);
    }
    if r.policy.migrate_ma_allowed() {
        return Err(VerifyError::MigrationAgentAllowed);
    }
    if r.vmpl != 0 {
        return Err(VerifyError::VmplNotZero { found: r.vmpl });
    }
    let pins = &policy.snp_platform;
    if !pins.allow_smt && r.plat_info.smt_enabled() {
        return Err(VerifyError::SmtEnabled);
    }
    if pins.require_single_socket && !r.policy.single_socket_required() {
        return Err(VerifyError::SingleSocketNotRequired);
    }
    if pins.require_ciphertext_hiding && !r.plat_info.ciphertext_hiding_enabled() {
        return Err(VerifyError::CiphertextHidingOff);
    }
    let t = &r.reported_tcb;
    let min = &floor(r, policy, product, hardware, release)?;
    let mut components = vec![
        ("bootloader", t.bootloader, min.bootloader),
        ("tee", t.tee, min.tee),
        ("snp", t.snp, min.snp),
        ("microcode", t.microcode, min.microcode),
    ];
    if let Some(fmc) = t.fmc {
        components.push(("fmc", fmc, min.fmc));
    }
    for (component, found, min) in components {
        if found < min {
            return Err(VerifyError::TcbTooLow {
                component,
                found,
                min,
            });
        }
    }
    Ok(format!(
        "report v{}, debug off, migration agent off, VMPL 0, SMT {}, single socket {}, \
         ciphertext hiding {}, TCB bl={} tee={} snp={} ucode={} at or above the floor \
         bl={} tee={} snp={} ucode={}",
        r.version,
        on_off(r.plat_info.smt_enabled()),
        on_off(r.policy.single_socket_required()),
        on_off(r.plat_info.ciphertext_hiding_enabled()),
        t.bootloader,
        t.tee,
        t.snp,
        t.microcode,
        min.bootloader,
        min.tee,
        min.snp,
        min.microcode
    ))
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

pub(crate) fn check_measurement(
    ev: &SnpEvidence,
    policy: &Policy,
) -> Result<Digest48, VerifyError> {
    let m = Digest48(ev.report.measurement);
    if policy.snp_measurements.contains(&m) {
        Ok(m)
    } else {
        Err(VerifyError::MeasurementNotAllowed {
            measurement: m.to_hex(),
        })
    }
}

/// A one-line description of the reported TCB.
pub(crate) fn tcb_summary(r: &AttestationReport) -> String {
    let t = &r.reported_tcb;
    match t.fmc {
        Some(fmc) => format!(
            "fmc={fmc} bl={} tee={} snp={} ucode={}",
            t.bootloader, t.tee, t.snp, t.microcode
        ),
        None => format!(
            "bl={} tee={} snp={} ucode={}",
            t.bootloader, t.tee, t.snp, t.microcode
        ),
    }
}
