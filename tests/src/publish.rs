//! What the tests publish in the transparency log: the issuer's key, the gateway's key and the
//! development runtime's release, witnessed, with the release's proof.

use std::path::{Path, PathBuf};

use cloister_transparency::{Measurement, ReleaseRecord, SCHEMA};

use crate::stack::{ISSUER_NAME, LOGGED_MANIFEST, MEASUREMENT};

/// The log's record of the issuer key `spki` (base64url, as `cloister-issuer init` prints it):
/// an epoch of 30 days from an hour ago.
pub fn issuer_key_record(spki: &str) -> cloister_transparency::IssuerKeyRecord {
    let now = cloister_measurement::Clock::now_unix(&cloister_measurement::SystemClock);
    cloister_transparency::IssuerKeyRecord {
        schema: cloister_transparency::issuer_key::ISSUER_KEY_SCHEMA.into(),
        issuer: ISSUER_NAME.into(),
        token_type: 2,
        token_key: spki.trim().to_owned(),
        not_before: now - 3600,
        not_after: now - 3600 + 30 * 24 * 3600,
    }
}

/// The log's record of the gateway key derived from `seed`: an epoch of 30 days from an hour
/// ago.
pub fn gateway_key_record(seed: &[u8; 32]) -> cloister_transparency::GatewayKeyRecord {
    let now = cloister_measurement::Clock::now_unix(&cloister_measurement::SystemClock);
    let config = cloister_protocol::node::gateway_key_config(seed)
        .and_then(|c| c.encode())
        .expect("key config");
    cloister_transparency::GatewayKeyRecord {
        schema: cloister_transparency::gateway_key::GATEWAY_KEY_SCHEMA.into(),
        gateway: cloister_protocol::access::GATEWAY_AUTHORITY.into(),
        key_config: hex::encode(config),
        not_before: now - 3600,
        not_after: now - 3600 + 30 * 24 * 3600,
    }
}

/// A release record for the development-mode runtime: the emulated measurement and `manifest`.
pub fn dev_release(manifest: &[u8; 32]) -> ReleaseRecord {
    let h = |b: u8| hex::encode([b; 32]);
    ReleaseRecord {
        schema: SCHEMA.to_owned(),
        measurements: vec![Measurement {
            platform: "emulated-sev-snp".into(),
            vcpus: 1,
            vcpu_type: "EPYC-v4".into(),
            digest: hex::encode(MEASUREMENT),
        }],
        manifest_sha256: hex::encode(manifest),
        kernel_sha256: h(1),
        initramfs_sha256: h(2),
        firmware_sha256: h(3),
        cmdline: "cloister.attest=emulated".into(),
        weights_disk_sha256: None,
        source_revision: "0".repeat(40),
        source_date_epoch: 1,
        snp_min_tcb: None,
    }
}

/// What [`publish`] wrote.
#[derive(Debug)]
pub struct Published {
    /// The log's files (its verifier key is `log_dir` with the extension `.pub`).
    pub log_dir: PathBuf,
    /// The release's log proof.
    pub proof_file: PathBuf,
    /// The witness's verifier key.
    pub witness_key: String,
    /// The gateway's outer key seed (hex).
    pub seed_file: PathBuf,
}

/// Publishes, together and witnessed, the issuer's key `spki`, the gateway key of the seed it
/// writes to `dir/gateway-seed`, and the development runtime's release ([`LOGGED_MANIFEST`]).
pub fn publish(dir: &Path, spki: &str) -> Published {
    let log_dir = dir.join("log");
    let seed_file = dir.join("gateway-seed");
    let seed = [0x5e_u8; 32];
    std::fs::write(&seed_file, hex::encode(seed)).expect("gateway seed");
    let records = [
        issuer_key_record(spki).to_bytes(),
        gateway_key_record(&seed).to_bytes(),
        dev_release(&LOGGED_MANIFEST).to_bytes(),
    ];
    let records: Vec<Vec<u8>> = records
        .into_iter()
        .map(|r| r.expect("a valid record"))
        .collect();
    let witnessed = cloister_guest_image::release::witnessed_append(&log_dir, &records)
        .expect("published and cosigned");
    let proof = witnessed
        .proof(witnessed.first + 2)
        .expect("the release's proof");
    let proof_file = dir.join("log-proof.json");
    std::fs::write(&proof_file, proof.to_json()).expect("write proof");
    let witness_key =
        cloister_guest_image::release::witness_key(&log_dir).expect("witness verifier key");
    Published {
        log_dir,
        proof_file,
        witness_key,
        seed_file,
    }
}
