//! AMD's CRLs, stapled to the SNP evidence the gateway lists.
//!
//! A real guest's report comes with the certificates the host's extended guest request
//! supplies (VCEK, ASK, ARK) — never a CRL, which no certificate-table GUID carries. The device
//! demands the product's CRL (it checks revocation offline, without AMD's service), so the
//! operator fetches `https://kdsintf.amd.com/vcek/v1/{product}/crl` for each product it runs
//! and points the gateway at the files (`--snp-crl FILE`, read again at every refresh so a new
//! list takes effect without a restart). The gateway is not trusted with them: each list is
//! signed by the product's ARK, and the device checks that and its freshness itself.

use std::path::PathBuf;

use cloister_protocol::{Endorsements, EvidenceBundle};
use der::Decode as _;
use x509_cert::crl::CertificateList;

/// The product a certificate's issuer or subject names (`CN=SEV-Milan` → `Milan`,
/// `CN=ARK-Genoa` → `Genoa`).
fn product(name: &x509_cert::name::Name) -> Option<String> {
    let text = name.to_string();
    let cn = text
        .split(',')
        .find_map(|part| part.trim().strip_prefix("CN="))?;
    let (_, product) = cn.split_once('-')?;
    Some(product.to_owned())
}

/// The CRLs the operator named, read now: `(product, DER)` for each that parses.
pub fn load(paths: &[PathBuf]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for path in paths {
        let der = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "AMD CRL unreadable");
                continue;
            }
        };
        match CertificateList::from_der(&der)
            .ok()
            .and_then(|c| product(&c.tbs_cert_list.issuer))
        {
            Some(p) => out.push((p, der)),
            None => tracing::warn!(path = %path.display(), "not an AMD CRL"),
        }
    }
    out
}

/// Staples the CRL of the bundle's product (the VCEK's issuer names it) unless the bundle has
/// one already.
pub fn staple(bundle: &mut EvidenceBundle, crls: &[(String, Vec<u8>)]) {
    let Endorsements::Snp(certs) = &mut bundle.endorsements else {
        return;
    };
    if certs.crl.is_some() {
        return;
    }
    let Some(wanted) = x509_cert::Certificate::from_der(&certs.vcek)
        .ok()
        .and_then(|v| product(&v.tbs_certificate.issuer))
    else {
        return;
    };
    certs.crl = crls
        .iter()
        .find(|(p, _)| *p == wanted)
        .map(|(_, der)| der.clone());
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_protocol::{Platform, SnpCertificates};

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../measurement/testdata");

    fn milan() -> EvidenceBundle {
        EvidenceBundle {
            platform: Platform::SevSnp,
            evidence: vec![0; 1184],
            endorsements: Endorsements::Snp(SnpCertificates {
                vcek: std::fs::read(format!("{TESTDATA}/snp_milan_vcek.der")).expect("VCEK"),
                ask: None,
                ark: None,
                crl: None,
            }),
            key_config: vec![1; 41],
            expires_at: 0,
            image_manifest_digest: [0; 32],
            log_proof: None,
        }
    }

    #[test]
    fn each_bundle_gets_its_products_crl() {
        let dir = tempfile::tempdir().expect("tempdir");
        let junk = dir.path().join("junk.crl");
        std::fs::write(&junk, b"not a CRL").expect("write");
        let paths = [
            PathBuf::from(format!("{TESTDATA}/crl/genoa_11.crl")),
            junk,
            dir.path().join("missing.crl"),
            PathBuf::from(format!("{TESTDATA}/crl/milan_12.crl")),
        ];
        let crls = load(&paths);
        let products: Vec<_> = crls.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(products, ["Genoa", "Milan"]);
        let mut b = milan();
        staple(&mut b, &crls);
        let Endorsements::Snp(c) = &b.endorsements else {
            panic!("SNP")
        };
        assert_eq!(
            c.crl.as_deref(),
            Some(&std::fs::read(format!("{TESTDATA}/crl/milan_12.crl")).expect("CRL")[..])
        );
        // None for a product the operator has no list of.
        let mut b = milan();
        staple(&mut b, &crls[..1]);
        assert!(matches!(&b.endorsements, Endorsements::Snp(c) if c.crl.is_none()));
    }
}
