//! AMD's certificate revocation lists, checked offline.
//!
//! AMD's key distribution service serves, per product, a CRL signed by the product's ARK
//! (`/vcek/v1/{product}/crl`: X.509 v2, RSASSA-PSS/SHA-384); it lists the ARK-issued
//! certificates AMD has revoked — ASKs (a Genoa ASK, serial 02 00 01, since 2022-10-31). A
//! revoked ASK makes every VCEK it signed untrustworthy. The host (or the gateway) fetches the
//! CRL and staples it to the evidence, like the VCEK; the device checks its issuer and
//! signature against the pinned ARK and its freshness against its own clock, then refuses a
//! chain whose ASK is listed. AMD publishes no ASK-signed CRL, so a single VCEK cannot be
//! revoked this way: a revoked chip is revoked through its ASK, or by raising the TCB floor.
//!
//! A stapled CRL can be stale only within its own window (AMD's run about seven weeks from
//! thisUpdate to nextUpdate): an operator may staple the previous, unexpired CRL for that long.

use der::Decode as _;
use x509_cert::crl::CertificateList;

use crate::anchor::SnpRoot;
use crate::certsig::verify_crl_pss_sha384;
use crate::error::{CertRole, VerifyError};

/// What a checked CRL says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CrlChecked {
    /// The CRL's number (the cRLNumber extension), when it has one.
    pub number: Option<u64>,
    /// nextUpdate, Unix seconds.
    pub next_update: u64,
}

fn malformed(why: impl std::fmt::Display) -> VerifyError {
    VerifyError::CrlMalformed(why.to_string())
}

fn crl_number(crl: &CertificateList) -> Option<u64> {
    const CRL_NUMBER: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("2.5.29.20");
    let ext = crl
        .tbs_cert_list
        .crl_extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == CRL_NUMBER)?;
    let n = der::asn1::UintRef::from_der(ext.extn_value.as_bytes()).ok()?;
    let bytes = n.as_bytes();
    (bytes.len() <= 8).then(|| bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// Checks `der` as `root`'s CRL at `now` and refuses the chain if it lists the ASK
/// (`ask_serial`, the DER content octets of its serial number).
pub(crate) fn check(
    root: &SnpRoot,
    der: &[u8],
    ask_serial: &[u8],
    now: u64,
) -> Result<CrlChecked, VerifyError> {
    let crl = CertificateList::from_der(der).map_err(malformed)?;
    let tbs = &crl.tbs_cert_list;
    if tbs.issuer != root.ark.tbs_certificate.subject {
        return Err(VerifyError::CrlWrongIssuer {
            issuer: tbs.issuer.to_string(),
            product: root.product.to_owned(),
        });
    }
    verify_crl_pss_sha384(&root.ark, &crl).map_err(VerifyError::CrlSignature)?;
    let this_update = tbs.this_update.to_unix_duration().as_secs();
    let next_update = tbs
        .next_update
        .map(|t| t.to_unix_duration().as_secs())
        .ok_or_else(|| malformed("no nextUpdate: its freshness cannot be judged"))?;
    if now < this_update || now > next_update {
        return Err(VerifyError::CrlStale {
            this_update,
            next_update,
            now,
        });
    }
    let revoked = tbs
        .revoked_certificates
        .iter()
        .flatten()
        .any(|r| r.serial_number.as_bytes() == ask_serial);
    if revoked {
        return Err(VerifyError::Revoked {
            role: CertRole::Ask,
            serial: hex::encode(ask_serial),
        });
    }
    Ok(CrlChecked {
        number: crl_number(&crl),
        next_update,
    })
}

#[cfg(test)]
mod tests {
    //! On AMD's real CRLs (`testdata/crl/`, see `testdata/README.md`), against the pinned ARKs.
    use super::*;
    use crate::anchor::HardwareRoots;

    /// 2026-10-01T00:00:00Z: inside every CRL's window (2026-09-22 to 2026-11-09).
    const INSIDE: u64 = 1_790_812_800;

    fn root(product: &str) -> SnpRoot {
        HardwareRoots::pinned()
            .expect("pinned")
            .amd()
            .iter()
            .find(|r| r.product == product)
            .cloned()
            .expect(product)
    }

    fn pinned_ask_serial(product: &str) -> Vec<u8> {
        let r = root(product);
        r.ask
            .expect("pinned ASK")
            .tbs_certificate
            .serial_number
            .as_bytes()
            .to_vec()
    }

    const MILAN: &[u8] = include_bytes!("../testdata/crl/milan_12.crl");
    const GENOA: &[u8] = include_bytes!("../testdata/crl/genoa_11.crl");
    const TURIN: &[u8] = include_bytes!("../testdata/crl/turin_8.crl");

    #[test]
    fn amds_real_crls_verify_under_the_pinned_arks_and_revoke_no_pinned_ask() {
        for (product, der, number) in [
            ("Milan", MILAN, 12),
            ("Genoa", GENOA, 11),
            ("Turin", TURIN, 8),
        ] {
            let checked = check(&root(product), der, &pinned_ask_serial(product), INSIDE)
                .unwrap_or_else(|e| panic!("{product}: {e}"));
            assert_eq!(checked.number, Some(number), "{product}");
        }
    }

    #[test]
    fn the_revoked_genoa_ask_is_refused_by_name() {
        // Genoa's first ASK, serial 02 00 01, revoked 2022-10-31 (the pinned one is 02 00 02).
        assert_eq!(pinned_ask_serial("Genoa"), vec![2, 0, 2]);
        assert_eq!(
            check(&root("Genoa"), GENOA, &[2, 0, 1], INSIDE),
            Err(VerifyError::Revoked {
                role: CertRole::Ask,
                serial: "020001".to_owned()
            })
        );
    }

    #[test]
    fn another_products_crl_a_flipped_byte_and_a_stale_list_are_refused() {
        assert!(matches!(
            check(&root("Genoa"), MILAN, &[2, 0, 2], INSIDE),
            Err(VerifyError::CrlWrongIssuer { .. })
        ));
        let mut flipped = MILAN.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            check(&root("Milan"), &flipped, &[1, 0, 1], INSIDE),
            Err(VerifyError::CrlSignature(_))
        ));
        // 2026-12-07: after nextUpdate (2026-11-09).
        assert!(matches!(
            check(&root("Milan"), MILAN, &[1, 0, 1], 1_796_601_600),
            Err(VerifyError::CrlStale { .. })
        ));
        assert!(matches!(
            check(&root("Milan"), b"not a crl", &[1, 0, 1], INSIDE),
            Err(VerifyError::CrlMalformed(_))
        ));
    }
}
