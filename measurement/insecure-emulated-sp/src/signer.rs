//! The signing half of a software-emulated AMD secure processor. INSECURE by construction:
//! whoever holds the seed can sign any report. It exists so that CI and machines without SNP
//! hardware exercise the very same verification path as real hardware — same certificate
//! shapes, same report bytes, same checks — with only the pinned root differing
//! (`cloister_measurement::TrustAnchor::InsecureEmulated`).
//!
//! Shapes follow AMD's: ARK and ASK are RSA-4096 certificates signed with RSASSA-PSS/SHA-384
//! (salt 48), the VCEK is a P-384 key certified by the ASK and carries AMD's VCEK extensions
//! (SPLs, hwID; AMD 57230 §3), and reports are byte-exact SNP ABI `ATTESTATION_REPORT`s
//! (AMD 56860, Table 23) signed with ECDSA P-384/SHA-384 over bytes 0..0x2A0, r and s stored
//! as 72-byte little-endian integers.

use std::time::Duration;

use der::asn1::{BitString, Ia5StringRef, OctetString, UtcTime};
use der::{Decode as _, Encode as _};
use p384::ecdsa::signature::Signer as _;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng as _;
use rsa::pkcs8::EncodePublicKey as _;
use rsa::signature::RandomizedSigner as _;
use sev::firmware::guest::{AttestationReport, GuestPolicy, Version};
use sev::firmware::host::TcbVersion;
use sev::parser::ByteParser as _;
use sha2::{Digest as _, Sha256};
use spki::{DynSignatureAlgorithmIdentifier as _, SubjectPublicKeyInfoOwned};
use x509_cert::builder::{Builder as _, CertificateBuilder, Profile};
use x509_cert::certificate::{TbsCertificate, Version as X509Version};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use cloister_protocol::SnpCertificates;

use cloister_measurement::vcek;
use cloister_measurement::{InsecureEmulatedRoot, SIG_ALGO_ECDSA_P384_SHA384, VerifyError};

type PssSigner = rsa::pss::BlindedSigningKey<sha2::Sha384>;

/// Certificates are valid from 2025-01-01T00:00:00Z …
const NOT_BEFORE: u64 = 1_735_689_600;
/// … to 2049-12-31T23:59:59Z (the last instant UTCTime can express).
const NOT_AFTER: u64 = 2_524_607_999;

/// CPUID family and model written into reports (Genoa), which also selects the report's TCB
/// encoding.
const CPUID_FAMILY: u8 = 0x19;
const CPUID_MODEL: u8 = 0x11;
const CPUID_STEPPING: u8 = 0x01;

/// Why the emulated processor could not build its keys or sign.
#[derive(Debug, thiserror::Error)]
pub enum EmulatedError {
    /// Key generation failed.
    #[error("emulated key generation failed: {0}")]
    Key(String),
    /// Certificate construction failed.
    #[error("emulated certificate could not be built: {0}")]
    Certificate(String),
    /// The report could not be encoded.
    #[error("report could not be encoded: {0}")]
    Report(String),
}

fn cert_err(e: impl std::fmt::Display) -> EmulatedError {
    EmulatedError::Certificate(e.to_string())
}

/// The TCB the emulated processor reports and derives its VCEK for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatedTcb {
    /// Bootloader SVN.
    pub bootloader: u8,
    /// TEE SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode SVN.
    pub microcode: u8,
}

impl Default for EmulatedTcb {
    /// Values of a current Genoa platform.
    fn default() -> Self {
        EmulatedTcb {
            bootloader: 9,
            tee: 0,
            snp: 23,
            microcode: 72,
        }
    }
}

impl From<EmulatedTcb> for TcbVersion {
    fn from(t: EmulatedTcb) -> Self {
        TcbVersion::new(None, t.bootloader, t.tee, t.snp, t.microcode)
    }
}

/// An emulated AMD secure processor's keys: ARK → ASK → VCEK, derived from a seed.
pub struct EmulatedSnpSigner {
    ark_der: Vec<u8>,
    ask_der: Vec<u8>,
    vcek_der: Vec<u8>,
    // p384's SigningKey zeroizes its scalar on drop.
    vcek: p384::ecdsa::SigningKey,
    chip_id: [u8; 64],
    tcb: EmulatedTcb,
    // What another chip under the same ASK needs (an emulated, insecure processor).
    seed: [u8; 32],
    ask_signer: PssSigner,
    ask_name: Name,
    ark_signer: PssSigner,
    ark_name: Name,
}

impl std::fmt::Debug for EmulatedSnpSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatedSnpSigner")
            .field("chip_id", &hex::encode(&self.chip_id[..8]))
            .field("tcb", &self.tcb)
            .finish_non_exhaustive()
    }
}

fn rng(seed: &[u8; 32], label: &str) -> ChaCha20Rng {
    let mut h = Sha256::new();
    h.update(b"cloister/emulated-amd-sp/v1/");
    h.update(label.as_bytes());
    h.update(seed);
    ChaCha20Rng::from_seed(h.finalize().into())
}

fn validity() -> Result<Validity, EmulatedError> {
    let t = |s| {
        UtcTime::from_unix_duration(Duration::from_secs(s))
            .map(Time::UtcTime)
            .map_err(cert_err)
    };
    Ok(Validity {
        not_before: t(NOT_BEFORE)?,
        not_after: t(NOT_AFTER)?,
    })
}

fn name(cn: &str) -> Result<Name, EmulatedError> {
    format!("CN={cn},O=Cloister emulated AMD-SP (INSECURE),L=Santa Clara,ST=CA,C=US,OU=Engineering")
        .parse()
        .map_err(cert_err)
}

fn spki_of(der: &[u8]) -> Result<SubjectPublicKeyInfoOwned, EmulatedError> {
    SubjectPublicKeyInfoOwned::from_der(der).map_err(cert_err)
}

fn ext(oid: der::asn1::ObjectIdentifier, value: Vec<u8>) -> Result<Extension, EmulatedError> {
    Ok(Extension {
        extn_id: oid,
        critical: false,
        extn_value: OctetString::new(value).map_err(cert_err)?,
    })
}

/// Chip `index`'s VCEK under the ASK: its key, chip ID and certificate. Index 0 keeps the
/// labels of the first version, so the first chip's keys are unchanged.
fn chip(
    seed: &[u8; 32],
    index: u32,
    tcb: EmulatedTcb,
    ask_signer: &PssSigner,
    ask_name: &Name,
    sign_rng: &mut ChaCha20Rng,
) -> Result<(p384::ecdsa::SigningKey, [u8; 64], Vec<u8>), EmulatedError> {
    let label = |l: &str| {
        if index == 0 {
            l.to_owned()
        } else {
            format!("chip/{index}/{l}")
        }
    };
    let vcek = p384::ecdsa::SigningKey::random(&mut rng(seed, &label("vcek")));
    let mut chip_id = [0u8; 64];
    for (i, half) in chip_id.chunks_mut(32).enumerate() {
        let mut r = rng(seed, &label(&format!("chip-id/{i}")));
        rand_core::RngCore::fill_bytes(&mut r, half);
    }
    // The VCEK carries AMD's extensions, which x509-cert's builder cannot add generically,
    // so its TBS is assembled here and signed with the ASK's PSS key.
    let vcek_pub = p384::PublicKey::from(vcek.verifying_key());
    let vcek_spki = spki_of(vcek_pub.to_public_key_der().map_err(cert_err)?.as_bytes())?;
    let int = |v: u8| v.to_der().map_err(cert_err);
    let product = Ia5StringRef::new("Genoa-Emulated")
        .and_then(|s| s.to_der())
        .map_err(cert_err)?;
    let extensions = vec![
        ext(vcek::OID_STRUCT_VERSION, int(0)?)?,
        ext(vcek::OID_PRODUCT_NAME, product)?,
        ext(vcek::OID_BL_SPL, int(tcb.bootloader)?)?,
        ext(vcek::OID_TEE_SPL, int(tcb.tee)?)?,
        ext(vcek::OID_SNP_SPL, int(tcb.snp)?)?,
        ext(vcek::OID_UCODE_SPL, int(tcb.microcode)?)?,
        ext(vcek::OID_HW_ID, chip_id.to_vec())?,
    ];
    let sig_alg = ask_signer
        .signature_algorithm_identifier()
        .map_err(cert_err)?;
    let tbs = TbsCertificate {
        version: X509Version::V3,
        serial_number: SerialNumber::from(3u32),
        signature: sig_alg.clone(),
        issuer: ask_name.clone(),
        validity: validity()?,
        subject: name("SEV-VCEK")?,
        subject_public_key_info: vcek_spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs.to_der().map_err(cert_err)?;
    let sig: rsa::pss::Signature = ask_signer.sign_with_rng(sign_rng, &tbs_der);
    let vcek_cert = x509_cert::Certificate {
        tbs_certificate: tbs,
        signature_algorithm: sig_alg,
        signature: BitString::from_bytes(&Box::<[u8]>::from(sig)).map_err(cert_err)?,
    };
    Ok((vcek, chip_id, vcek_cert.to_der().map_err(cert_err)?))
}

impl EmulatedSnpSigner {
    /// Derives the whole emulated processor from `seed` with a default (Genoa-like) TCB.
    /// RSA-4096 key generation makes this take a few seconds.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, EmulatedError> {
        Self::with_tcb(seed, EmulatedTcb::default())
    }

    /// Derives the emulated processor with a chosen TCB (its VCEK is derived for that TCB).
    pub fn with_tcb(seed: &[u8; 32], tcb: EmulatedTcb) -> Result<Self, EmulatedError> {
        let key_err = |e: rsa::Error| EmulatedError::Key(e.to_string());
        let ark_key = rsa::RsaPrivateKey::new(&mut rng(seed, "ark"), 4096).map_err(key_err)?;
        let ask_key = rsa::RsaPrivateKey::new(&mut rng(seed, "ask"), 4096).map_err(key_err)?;

        let ark_signer = PssSigner::new(ark_key.clone());
        let ask_signer = PssSigner::new(ask_key.clone());
        let pub_der = |k: &rsa::RsaPrivateKey| {
            k.to_public_key()
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .map_err(cert_err)
        };
        let ark_name = name("ARK-Emulated")?;
        let ask_name = name("SEV-Emulated")?;
        let mut sign_rng = rng(seed, "certificate-signatures");

        let ark = CertificateBuilder::new(
            Profile::Root,
            SerialNumber::from(1u32),
            validity()?,
            ark_name.clone(),
            spki_of(&pub_der(&ark_key)?)?,
            &ark_signer,
        )
        .map_err(cert_err)?
        .build_with_rng::<rsa::pss::Signature>(&mut sign_rng)
        .map_err(cert_err)?;

        let ask = CertificateBuilder::new(
            Profile::SubCA {
                issuer: ark_name.clone(),
                path_len_constraint: Some(0),
            },
            SerialNumber::from(2u32),
            validity()?,
            ask_name.clone(),
            spki_of(&pub_der(&ask_key)?)?,
            &ark_signer,
        )
        .map_err(cert_err)?
        .build_with_rng::<rsa::pss::Signature>(&mut sign_rng)
        .map_err(cert_err)?;

        let (vcek, chip_id, vcek_der) = chip(seed, 0, tcb, &ask_signer, &ask_name, &mut sign_rng)?;

        Ok(EmulatedSnpSigner {
            ark_der: ark.to_der().map_err(cert_err)?,
            ask_der: ask.to_der().map_err(cert_err)?,
            vcek_der,
            vcek,
            chip_id,
            tcb,
            seed: *seed,
            ask_signer,
            ask_name,
            ark_signer,
            ark_name,
        })
    }

    /// Another chip under the same ARK and ASK (as AMD's ASK certifies every chip of a
    /// product): its own chip ID and VCEK, derived from the seed and `index` (1, 2, …; index 0
    /// is this processor's first chip). A loopback fleet gives each node its own machine.
    pub fn another_chip(&self, index: u32) -> Result<Self, EmulatedError> {
        let mut sign_rng = rng(&self.seed, &format!("certificate-signatures/chip/{index}"));
        let (vcek, chip_id, vcek_der) = chip(
            &self.seed,
            index,
            self.tcb,
            &self.ask_signer,
            &self.ask_name,
            &mut sign_rng,
        )?;
        Ok(EmulatedSnpSigner {
            ark_der: self.ark_der.clone(),
            ask_der: self.ask_der.clone(),
            vcek_der,
            vcek,
            chip_id,
            tcb: self.tcb,
            seed: self.seed,
            ask_signer: self.ask_signer.clone(),
            ask_name: self.ask_name.clone(),
            ark_signer: self.ark_signer.clone(),
            ark_name: self.ark_name.clone(),
        })
    }

    /// A CRL in AMD's form (X.509 v2, RSASSA-PSS/SHA-384 by the ARK) valid from `this_update`
    /// to `next_update` (Unix seconds), revoking the ARK-issued certificates with these serial
    /// numbers (the emulated ASK's is 2).
    pub fn crl(
        &self,
        revoked: &[u32],
        this_update: u64,
        next_update: u64,
    ) -> Result<Vec<u8>, EmulatedError> {
        use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
        let t = |s| {
            UtcTime::from_unix_duration(Duration::from_secs(s))
                .map(Time::UtcTime)
                .map_err(cert_err)
        };
        let algorithm = self
            .ark_signer
            .signature_algorithm_identifier()
            .map_err(cert_err)?;
        let entries = revoked
            .iter()
            .map(|s| {
                Ok(RevokedCert {
                    serial_number: SerialNumber::from(*s),
                    revocation_date: t(this_update)?,
                    crl_entry_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, EmulatedError>>()?;
        let tbs = TbsCertList {
            version: X509Version::V2,
            signature: algorithm.clone(),
            issuer: self.ark_name.clone(),
            this_update: t(this_update)?,
            next_update: Some(t(next_update)?),
            revoked_certificates: (!entries.is_empty()).then_some(entries),
            crl_extensions: None,
        };
        let mut sign_rng = rng(&self.seed, &format!("crl/{this_update}"));
        let signature: rsa::pss::Signature = self
            .ark_signer
            .sign_with_rng(&mut sign_rng, &tbs.to_der().map_err(cert_err)?);
        let crl = CertificateList {
            tbs_cert_list: tbs,
            signature_algorithm: algorithm,
            signature: BitString::from_bytes(&rsa::signature::SignatureEncoding::to_vec(
                &signature,
            ))
            .map_err(cert_err)?,
        };
        crl.to_der().map_err(cert_err)
    }

    /// The emulated ARK (DER): what an insecure emulated verifier pins.
    pub fn ark_der(&self) -> &[u8] {
        &self.ark_der
    }

    /// The trust anchor that accepts this processor's reports.
    pub fn insecure_root(&self) -> Result<InsecureEmulatedRoot, VerifyError> {
        InsecureEmulatedRoot::from_ark_der(&self.ark_der)
    }

    /// VCEK, ASK and ARK, as a host's certificate table would carry them.
    pub fn certificates(&self) -> SnpCertificates {
        SnpCertificates {
            vcek: self.vcek_der.clone(),
            ask: Some(self.ask_der.clone()),
            ark: Some(self.ark_der.clone()),
            crl: None,
        }
    }

    /// The emulated chip's ID.
    pub fn chip_id(&self) -> [u8; 64] {
        self.chip_id
    }

    /// The report the processor would produce for a guest launched with `measurement` asking
    /// for `report_data` from VMPL 0, unsigned. Tests change fields of it, then [`Self::sign`].
    pub fn report_template(
        &self,
        measurement: [u8; 48],
        report_data: [u8; 64],
    ) -> AttestationReport {
        let tcb = TcbVersion::from(self.tcb);
        let report_id: [u8; 32] = Sha256::new()
            .chain_update(b"cloister/emulated-amd-sp/v1/report-id")
            .chain_update(self.chip_id)
            .chain_update(measurement)
            .finalize()
            .into();
        AttestationReport {
            version: 3,
            guest_svn: 0,
            // Bit 17 is reserved and must be one; bit 16: SMT allowed. Debug and migration
            // agent off, ABI 0.0.
            policy: GuestPolicy(0x3_0000),
            vmpl: 0,
            sig_algo: SIG_ALGO_ECDSA_P384_SHA384,
            current_tcb: tcb,
            // SMT enabled, TSME enabled.
            plat_info: 0x3.into(),
            report_data,
            measurement,
            report_id,
            reported_tcb: tcb,
            cpuid_fam_id: Some(CPUID_FAMILY),
            cpuid_mod_id: Some(CPUID_MODEL),
            cpuid_step: Some(CPUID_STEPPING),
            chip_id: self.chip_id,
            committed_tcb: tcb,
            current: Version::new(1, 55, 21),
            committed: Version::new(1, 55, 21),
            launch_tcb: tcb,
            ..Default::default()
        }
    }

    /// Signs a report as the AMD secure processor does and returns its 1184 wire bytes.
    pub fn sign(&self, report: &AttestationReport) -> Result<Vec<u8>, EmulatedError> {
        let mut report = *report;
        let unsigned = report
            .to_bytes()
            .map_err(|e| EmulatedError::Report(e.to_string()))?;
        // RFC 6979 deterministic ECDSA: the same report always gets the same signature.
        let sig: p384::ecdsa::Signature = self.vcek.sign(&unsigned[..0x2a0]);
        let (r, s) = sig.split_bytes();
        report.signature = sev::certs::snp::ecdsa::Signature::new(le72(&r), le72(&s));
        report
            .to_bytes()
            .map(|b| b.to_vec())
            .map_err(|e| EmulatedError::Report(e.to_string()))
    }

    /// Produces a signed report for `measurement` and `report_data`.
    pub fn attest(
        &self,
        measurement: [u8; 48],
        report_data: [u8; 64],
    ) -> Result<Vec<u8>, EmulatedError> {
        self.sign(&self.report_template(measurement, report_data))
    }
}

/// Big-endian scalar → the report's 72-byte little-endian field.
fn le72(be: &[u8]) -> [u8; 72] {
    let mut out = [0u8; 72];
    for (o, b) in out.iter_mut().zip(be.iter().rev()) {
        *o = *b;
    }
    out
}
