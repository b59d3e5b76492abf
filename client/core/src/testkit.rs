//! Test fixtures (feature `testkit`, dev-dependencies only): Privacy Pass stores for an
//! in-process issuer and origin, OHTTP key pairs, and evidence from the INSECURE emulated AMD
//! secure processor.
#![allow(missing_docs)] // Fixtures, each named for what it gives.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};

use blind_rsa_signatures::{Deterministic, PSS, Sha384};
use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_measurement::{InsecureEmulatedRoot, Policy};
use cloister_protocol::{Endorsements, EvidenceBundle, Platform};
use ohttp::Server;
use privacypass::public_tokens::PublicKey;
use privacypass::public_tokens::server::{IssuerKeyStore, OriginKeyStore};
use privacypass::{Nonce, NonceStore, TruncatedTokenKeyId};

use crate::trust::Trust;

/// The launch measurement the emulated evidence attests.
pub const MEASUREMENT: [u8; 48] = [0x6d; 48];

pub type KeyPair = blind_rsa_signatures::KeyPair<Sha384, PSS, Deterministic>;
type Fut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn ready<'a, T: Send + 'a>(v: T) -> Fut<'a, T> {
    Box::pin(std::future::ready(v))
}

// The stores are `async_trait` traits; these are the signatures that macro writes.
#[derive(Default, Debug)]
pub struct IssuerKeys(pub Mutex<HashMap<TruncatedTokenKeyId, KeyPair>>);

impl IssuerKeyStore for IssuerKeys {
    fn insert<'s, 'a>(&'s self, id: TruncatedTokenKeyId, pair: KeyPair) -> Fut<'a, bool>
    where
        's: 'a,
        Self: 'a,
    {
        ready(self.0.lock().expect("lock").insert(id, pair).is_none())
    }

    fn get<'s, 'i, 'a>(&'s self, id: &'i TruncatedTokenKeyId) -> Fut<'a, Option<KeyPair>>
    where
        's: 'a,
        'i: 'a,
        Self: 'a,
    {
        ready(self.0.lock().expect("lock").get(id).cloned())
    }

    fn remove<'s, 'i, 'a>(&'s self, id: &'i TruncatedTokenKeyId) -> Fut<'a, bool>
    where
        's: 'a,
        'i: 'a,
        Self: 'a,
    {
        ready(self.0.lock().expect("lock").remove(id).is_some())
    }
}

#[derive(Default, Debug)]
pub struct OriginKeys(Mutex<HashMap<TruncatedTokenKeyId, Vec<PublicKey>>>);

impl OriginKeyStore for OriginKeys {
    fn insert<'s, 'a>(&'s self, id: TruncatedTokenKeyId, key: PublicKey) -> Fut<'a, ()>
    where
        's: 'a,
        Self: 'a,
    {
        self.0
            .lock()
            .expect("lock")
            .entry(id)
            .or_default()
            .push(key);
        ready(())
    }

    fn get<'s, 'i, 'a>(&'s self, id: &'i TruncatedTokenKeyId) -> Fut<'a, Vec<PublicKey>>
    where
        's: 'a,
        'i: 'a,
        Self: 'a,
    {
        ready(
            self.0
                .lock()
                .expect("lock")
                .get(id)
                .cloned()
                .unwrap_or_default(),
        )
    }

    fn remove<'s, 'i, 'a>(&'s self, id: &'i TruncatedTokenKeyId) -> Fut<'a, bool>
    where
        's: 'a,
        'i: 'a,
        Self: 'a,
    {
        ready(self.0.lock().expect("lock").remove(id).is_some())
    }
}

#[derive(Default, Debug)]
pub struct Spent(Mutex<HashSet<Nonce>>);

impl NonceStore for Spent {
    fn reserve<'s, 'n, 'a>(&'s self, nonce: &'n Nonce) -> Fut<'a, bool>
    where
        's: 'a,
        'n: 'a,
        Self: 'a,
    {
        ready(self.0.lock().expect("lock").insert(*nonce))
    }

    fn commit<'s, 'n, 'a>(&'s self, _nonce: &'n Nonce) -> Fut<'a, ()>
    where
        's: 'a,
        'n: 'a,
        Self: 'a,
    {
        ready(())
    }

    fn release<'s, 'n, 'a>(&'s self, nonce: &'n Nonce) -> Fut<'a, ()>
    where
        's: 'a,
        'n: 'a,
        Self: 'a,
    {
        self.0.lock().expect("lock").remove(nonce);
        ready(())
    }
}

/// One emulated processor for the test binary (RSA-4096 key generation takes seconds).
pub fn signer() -> &'static EmulatedSnpSigner {
    static SIGNER: OnceLock<EmulatedSnpSigner> = OnceLock::new();
    SIGNER.get_or_init(|| EmulatedSnpSigner::from_seed(&[4u8; 32]).expect("emulated processor"))
}

/// Chip `index` of the emulated processor (0 is [`signer`]; all share its ARK): another
/// machine.
pub fn chip(index: u32) -> &'static EmulatedSnpSigner {
    static CHIPS: OnceLock<Vec<EmulatedSnpSigner>> = OnceLock::new();
    let chips = CHIPS.get_or_init(|| {
        (1..4)
            .map(|i| signer().another_chip(i).expect("emulated chip"))
            .collect()
    });
    match index {
        0 => signer(),
        i => &chips[(i - 1) as usize],
    }
}

/// The emulated processor's root.
pub fn emulated_root() -> InsecureEmulatedRoot {
    signer().insecure_root().expect("root")
}

/// A trust in the emulated processor, accepting [`MEASUREMENT`], no log (so any operator key,
/// by name), state in memory.
pub fn emulated_trust() -> Trust {
    let policy = Policy::default().with_snp_measurement(MEASUREMENT);
    Trust::insecure_emulated(
        emulated_root(),
        policy,
        None,
        Box::<crate::trust::MemoryStore>::default(),
    )
    .expect("trust")
    .with_insecure_unlogged_keys()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Evidence for `key_config` with `measurement`; `bind` false leaves report_data zero.
pub fn bundle(key_config: &[u8], measurement: [u8; 48], bind: bool) -> EvidenceBundle {
    bundle_on(signer(), key_config, measurement, bind)
}

/// [`bundle`], signed by `chip` (see [`chip`]).
pub fn bundle_on(
    chip: &EmulatedSnpSigner,
    key_config: &[u8],
    measurement: [u8; 48],
    bind: bool,
) -> EvidenceBundle {
    let signer = || chip;
    let expires_at = now() + 3600;
    let rd = cloister_protocol::report_data(key_config, expires_at, b"").expect("binding");
    let rd = if bind { rd } else { [0u8; 64] };
    EvidenceBundle {
        platform: Platform::EmulatedSevSnp,
        evidence: signer().attest(measurement, rd).expect("report"),
        endorsements: Endorsements::Snp(signer().certificates()),
        key_config: key_config.to_vec(),
        expires_at,
        image_manifest_digest: [0; 32],
        log_proof: None,
    }
}

/// The bundle as the directory carries it.
pub fn bundle_json(b: &EvidenceBundle) -> serde_json::Value {
    serde_json::from_slice(&b.to_json()).expect("json")
}

/// An OHTTP key pair of the contract's suite (`cloister_protocol::node::key_config`).
pub fn ohttp_server(key_id: u8) -> Server {
    let config = cloister_protocol::node::key_config(key_id).expect("key config");
    Server::new(config).expect("server")
}

/// A known-length Binary HTTP response.
pub fn bhttp_response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut m = bhttp::Message::response(bhttp::StatusCode::try_from(status).expect("status"));
    m.put_header("content-type", content_type);
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(bhttp::Mode::KnownLength, &mut out)
        .expect("bhttp");
    out
}

/// AMD's real Milan vectors (`measurement/testdata`, recorded by the `sev` crate's authors).
pub mod milan {
    use cloister_protocol::{Endorsements, EvidenceBundle, Platform, SnpCertificates};

    const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../measurement/testdata");
    /// 2026-10-01T00:00:00Z: inside the Milan VCEK's validity and AMD's Milan CRL #12's window
    /// (stapled to the bundle).
    pub const AT: u64 = 1_790_812_800;
    /// Offset of MEASUREMENT in the SNP ATTESTATION_REPORT (SEV-SNP ABI, Table 23: 90h, 48 bytes).
    const MEASUREMENT_AT: usize = 0x90;

    fn testdata(name: &str) -> Vec<u8> {
        std::fs::read(format!("{TESTDATA}/{name}")).expect("Milan test vector present")
    }

    /// The report's bytes.
    pub fn report() -> Vec<u8> {
        let text = String::from_utf8(testdata("snp_milan_report.hex")).expect("utf-8");
        hex::decode(text.trim()).expect("hex")
    }

    /// The report in a bundle with its VCEK (ASK and ARK come from the pinned roots); the key
    /// config is not the one the report binds (it binds none of Cloister's).
    pub fn bundle() -> EvidenceBundle {
        EvidenceBundle {
            platform: Platform::SevSnp,
            evidence: report(),
            endorsements: Endorsements::Snp(SnpCertificates {
                vcek: testdata("snp_milan_vcek.der"),
                ask: None,
                ark: None,
                crl: Some(testdata("crl/milan_12.crl")),
            }),
            key_config: b"\x01\x00\x20example-ohttp-key-config-bytes".to_vec(),
            expires_at: AT + 24 * 3600,
            image_manifest_digest: [0x22; 32],
            log_proof: None,
        }
    }

    /// Reference values allowing the report's own measurement.
    pub fn reference_values() -> Vec<u8> {
        let m = &report()[MEASUREMENT_AT..MEASUREMENT_AT + 48];
        format!(r#"{{"snp_measurements": ["{}"]}}"#, hex::encode(m)).into_bytes()
    }
}
