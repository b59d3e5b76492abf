//! Release records and the local transparency log, for `cargo xtask publish` and `run` and the
//! end-to-end tests: the record of a built image, a local log (created with its key on first
//! use) and a local witness that cosigns each new checkpoint after checking its consistency
//! with the last one it cosigned.

use std::path::Path;
use std::process::Command;

use cloister_protocol::{GuestConfig, LogProof};
use cloister_transparency::cosign::CosignatureSigner;
use cloister_transparency::{
    Log, LogError, Measurement, ReleaseRecord, SCHEMA, TrustedLog, Witness,
};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::image::{self, BuildError, source_date_epoch, workspace_root};

/// Why a release could not be recorded or published.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A file of the image or the log could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The image's `measurement.json` lacks a field or is not JSON.
    #[error("the measurement: {0}")]
    Measurement(String),
    /// The image's command line is not a guest configuration.
    #[error("the image's command line: {0}")]
    Cmdline(#[from] cloister_protocol::ConfigError),
    /// No release record is defined for this attestation mode.
    #[error("release records for {0} images are not built yet")]
    Unsupported(String),
    /// git could not name the source revision.
    #[error("git: {0}")]
    Git(String),
    /// The image's digests or build time.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The log or its witness refused or failed.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log's or the witness's key is not usable by a device.
    #[error("the trusted log: {0}")]
    Trust(#[from] cloister_transparency::VerifyError),
    /// A witness key file is not a hex seed.
    #[error("{0} is not a hex seed")]
    Seed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ReleaseError {
    let what = what.into();
    move |source| ReleaseError::Io { what, source }
}

type Result<T, E = ReleaseError> = std::result::Result<T, E>;

/// The local log's name.
pub const DEFAULT_ORIGIN: &str = "log.cloister.invalid/releases";
/// The local witness's name.
const WITNESS: &str = "witness.cloister.invalid";

/// An image's `measurement.json`: the expected launch digest and every digest it covers (the
/// release record is made from it).
pub fn measurement_json(
    img: &image::Image,
    digest: &[u8; 48],
    gpa: u64,
    vcpus: u32,
) -> Result<Value> {
    Ok(serde_json::json!({
        "snp_launch_digest": hex::encode(digest),
        "vcpus": vcpus,
        "vcpu_type": crate::launch::VCPU_TYPE,
        "hashes_page_gpa": format!("{gpa:#x}"),
        "kernel_sha256": crate::digest::sha256_file(&img.kernel).map_err(BuildError::from)?,
        "initrd_sha256": crate::digest::sha256_file(&img.initrd).map_err(BuildError::from)?,
        "manifest_sha256": img.manifest_sha256,
        "amdsev_firmware_sha256": crate::firmware::AMDSEV_SHA256,
        "cmdline": img.cmdline,
        "init_bytes": img.init_size,
        "model": img.config.model,
        "model_bytes": img.model_bytes,
        "weights_disk": img.weights_disk.as_ref().map(|d| d.manifest_value()),
    }))
}

/// The release record of the image in `dir`, from its `measurement.json`.
pub fn release_record(dir: &Path) -> Result<ReleaseRecord> {
    let path = dir.join("measurement.json");
    let m: Value = serde_json::from_slice(
        &std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?,
    )
    .map_err(|e| ReleaseError::Measurement(format!("{} is not JSON: {e}", path.display())))?;
    record_from(&m)
}

/// The release record of an image's measurement (`measurement.json`'s content).
pub fn record_from(m: &Value) -> Result<ReleaseRecord> {
    let field = |k: &str| -> Result<String> {
        m[k].as_str()
            .map(str::to_owned)
            .ok_or_else(|| ReleaseError::Measurement(format!("no {k}")))
    };
    let cmdline = field("cmdline")?;
    let config = GuestConfig::from_cmdline(&cmdline)?;
    let platform = match config.attest.as_str() {
        "emulated" => "emulated-sev-snp",
        "snp" => "sev-snp",
        other => return Err(ReleaseError::Unsupported(other.to_owned())),
    };
    let (revision, dirty) = git_revision()?;
    if dirty {
        eprintln!("warning: the work tree has changes; the record names {revision}");
    }
    Ok(ReleaseRecord {
        schema: SCHEMA.to_owned(),
        measurements: vec![Measurement {
            platform: platform.to_owned(),
            vcpus: m["vcpus"]
                .as_u64()
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| ReleaseError::Measurement("no vcpus".to_owned()))?,
            vcpu_type: field("vcpu_type")?,
            digest: field("snp_launch_digest")?,
        }],
        manifest_sha256: field("manifest_sha256")?,
        kernel_sha256: field("kernel_sha256")?,
        initramfs_sha256: field("initrd_sha256")?,
        firmware_sha256: field("amdsev_firmware_sha256")?,
        cmdline,
        weights_disk_sha256: m["weights_disk"]["sha256"].as_str().map(str::to_owned),
        source_revision: revision,
        source_date_epoch: u64::from(source_date_epoch()?),
    })
}

fn git_revision() -> Result<(String, bool)> {
    let git = |args: &[&str]| -> Result<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .map_err(io("running git"))?;
        if !out.status.success() {
            return Err(ReleaseError::Git(format!("git {args:?} failed")));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok((if dirty { format!("{head}-dirty") } else { head }, dirty))
}

/// Appends `entry` to the local log in `dir` (created, with its key, when missing); returns the
/// log, its verifier key, whether it was created, and the entry's proof.
pub fn publish_local(dir: &Path, origin: &str, entry: &[u8]) -> Result<(LocalLog, LogProof)> {
    let key_path = dir.with_extension("key");
    let pub_path = dir.with_extension("pub");
    let created = !dir.join("checkpoint").exists();
    let log = if !created {
        let skey = Zeroizing::new(
            std::fs::read_to_string(&key_path)
                .map_err(io(format!("reading {}", key_path.display())))?,
        );
        let vkey = std::fs::read_to_string(&pub_path)
            .map_err(io(format!("reading {}", pub_path.display())))?;
        Log::open(dir, &skey, vkey.trim())?
    } else {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, origin);
        let skey = Zeroizing::new(skey);
        write_private(&key_path, &skey)?;
        std::fs::write(&pub_path, format!("{vkey}\n"))
            .map_err(io(format!("writing {}", pub_path.display())))?;
        println!(
            "new log           {} (verifier key in {})",
            dir.display(),
            pub_path.display()
        );
        Log::create(dir, &skey, &vkey)?
    };
    let appended = log.append(&[entry.to_vec()], |_| {})?;
    let proof = log.log_proof(appended.first)?;
    let vkey = std::fs::read_to_string(&pub_path)
        .map_err(io(format!("reading {}", pub_path.display())))?
        .trim()
        .to_owned();
    Ok((LocalLog { log, vkey, created }, proof))
}

/// A local log opened for appends.
#[derive(Debug)]
pub struct LocalLog {
    /// The log.
    pub log: Log,
    /// Its verifier key.
    pub vkey: String,
    /// Whether this call created it.
    pub created: bool,
}

/// `record` appended to the local log in `dir` and cosigned by a local witness (its key and
/// state beside the log), which checks the consistency proof from the last checkpoint it
/// cosigned. Returns the log proof the operator attaches to the node's evidence and the keys a
/// device trusts (the log, and that witness, quorum 1).
pub fn witnessed_release(dir: &Path, record: &ReleaseRecord) -> Result<(LogProof, TrustedLog)> {
    let (local, mut proof) = publish_local(dir, DEFAULT_ORIGIN, &record.to_bytes()?)?;
    let key_path = dir.with_extension("witness.key");
    let state = dir.with_extension("witness.json");
    if local.created {
        // A new log: a witness state from an older one would (rightly) refuse it.
        let _ = std::fs::remove_file(&state);
    }
    let seed = match std::fs::read_to_string(&key_path) {
        Ok(hex_seed) => {
            let mut seed = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hex_seed.trim(), &mut seed[..])
                .map_err(|_| ReleaseError::Seed(key_path.display().to_string()))?;
            seed
        }
        Err(_) => {
            let mut seed = Zeroizing::new([0u8; 32]);
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed[..]);
            write_private(&key_path, &Zeroizing::new(hex::encode(&seed[..])))?;
            seed
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signer = CosignatureSigner::new(WITNESS, &seed, now)?;
    let witness_key = signer.verifier_key();
    let witness = Witness::new(signer, &local.vkey, &state)?;
    let seen = witness.seen()?;
    let (_, size, _) = local.log.checkpoint()?;
    let consistency = if seen.size == 0 {
        Vec::new()
    } else {
        local.log.prove_consistency(seen.size, size)?
    };
    let cosigned = witness.cosign(proof.checkpoint.as_bytes(), &consistency)?;
    proof.checkpoint = String::from_utf8(cosigned).map_err(|_| {
        ReleaseError::Log(LogError::Checkpoint(
            "the witness's cosigned checkpoint is not UTF-8".to_owned(),
        ))
    })?;
    let trusted = TrustedLog::new(&local.vkey, &[witness_key], 1)?;
    Ok((proof, trusted))
}

/// The verifier key of the local witness beside the log in `dir` (after [`witnessed_release`]).
pub fn witness_key(dir: &Path) -> Result<String> {
    let key_path = dir.with_extension("witness.key");
    let hex_seed = Zeroizing::new(
        std::fs::read_to_string(&key_path)
            .map_err(io(format!("reading {}", key_path.display())))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(hex_seed.trim(), &mut seed[..])
        .map_err(|_| ReleaseError::Seed(key_path.display().to_string()))?;
    Ok(CosignatureSigner::new(WITNESS, &seed, 0)?.verifier_key())
}

fn write_private(path: &Path, secret: &str) -> Result<()> {
    cloister_transparency::write_secret(path, secret)
        .map_err(io(format!("creating {}", path.display())))
}
