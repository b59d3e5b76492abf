//! Certificate signatures of AMD's chain: RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48
//! (AMD 57230 §2: ARK and ASK are RSA-4096 keys and sign with these parameters).
//!
//! The `sev` crate checks these with the `rsa` crate, whose bignum arithmetic takes about
//! 2 ms per RSA-4096 verification here — most of a bundle's verification time. `ring` does the
//! same check in about a tenth of a millisecond, so the chain is checked with `ring`; the
//! parameters are fixed by the algorithm chosen (`RSA_PSS_2048_8192_SHA384`), as in `sev`, so a
//! certificate cannot talk the verifier into weaker ones through its AlgorithmIdentifier.

use der::Encode as _;
use der::asn1::ObjectIdentifier;
use ring::signature::{RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};

/// id-RSASSA-PSS (RFC 4055).
const RSASSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// rsaEncryption (RFC 8017).
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// Checks that `issuer`'s RSA key signed `subject` with RSASSA-PSS/SHA-384.
pub(crate) fn verify_pss_sha384(
    issuer: &x509_cert::Certificate,
    subject: &x509_cert::Certificate,
) -> Result<(), String> {
    if subject.signature_algorithm.oid != RSASSA_PSS
        || subject.tbs_certificate.signature.oid != RSASSA_PSS
    {
        return Err(format!(
            "signature algorithm {} is not RSASSA-PSS",
            subject.signature_algorithm.oid
        ));
    }
    let tbs = subject
        .tbs_certificate
        .to_der()
        .map_err(|e| format!("TBS certificate cannot be encoded: {e}"))?;
    let signature = subject
        .signature
        .as_bytes()
        .ok_or_else(|| "signature has unused bits".to_owned())?;
    verify_pss_sha384_bytes(issuer, &tbs, signature)
}

/// Checks that `issuer`'s RSA key signed the CRL `crl` with RSASSA-PSS/SHA-384.
pub(crate) fn verify_crl_pss_sha384(
    issuer: &x509_cert::Certificate,
    crl: &x509_cert::crl::CertificateList,
) -> Result<(), String> {
    if crl.signature_algorithm.oid != RSASSA_PSS || crl.tbs_cert_list.signature.oid != RSASSA_PSS {
        return Err(format!(
            "signature algorithm {} is not RSASSA-PSS",
            crl.signature_algorithm.oid
        ));
    }
    let tbs = crl
        .tbs_cert_list
        .to_der()
        .map_err(|e| format!("TBS certificate list cannot be encoded: {e}"))?;
    let signature = crl
        .signature
        .as_bytes()
        .ok_or_else(|| "signature has unused bits".to_owned())?;
    verify_pss_sha384_bytes(issuer, &tbs, signature)
}

fn verify_pss_sha384_bytes(
    issuer: &x509_cert::Certificate,
    tbs: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let spki = &issuer.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != RSA_ENCRYPTION {
        return Err(format!("issuer key {} is not RSA", spki.algorithm.oid));
    }
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "issuer key has unused bits".to_owned())?;
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA384, key)
        .verify(tbs, signature)
        .map_err(|_| "RSASSA-PSS/SHA-384 signature does not verify".to_owned())
}

/// Checks an SNP report's ECDSA P-384/SHA-384 signature by the VCEK over the report's first
/// 0x2A0 bytes as received (AMD 56860, Table 23 and "Signature format": R and S are 72-byte
/// little-endian integers, zero above 48 bytes). Done with `ring` for the same reason as above:
/// the `p384` crate that `sev` uses takes ~2 ms per verification here.
pub(crate) fn verify_report_signature(
    vcek: &x509_cert::Certificate,
    raw_report: &[u8],
) -> Result<(), String> {
    const SIGNED_LEN: usize = 0x2a0;
    const SIG_FIELD: usize = 72;
    if raw_report.len() < SIGNED_LEN + 2 * SIG_FIELD {
        return Err(format!("report is {} bytes", raw_report.len()));
    }
    let mut fixed = [0u8; 96];
    for (i, half) in [0usize, 1].into_iter().enumerate() {
        let field = &raw_report[SIGNED_LEN + half * SIG_FIELD..][..SIG_FIELD];
        if field[48..].iter().any(|b| *b != 0) {
            return Err("signature component exceeds 384 bits".to_owned());
        }
        for (o, b) in fixed[i * 48..(i + 1) * 48]
            .iter_mut()
            .zip(field[..48].iter().rev())
        {
            *o = *b;
        }
    }
    let key = vcek
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| "VCEK key has unused bits".to_owned())?;
    UnparsedPublicKey::new(&ring::signature::ECDSA_P384_SHA384_FIXED, key)
        .verify(&raw_report[..SIGNED_LEN], &fixed)
        .map_err(|_| "ECDSA P-384/SHA-384 signature does not verify".to_owned())
}
