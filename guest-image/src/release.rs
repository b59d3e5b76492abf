//! Release records and the local transparency log, for `cargo xtask publish` and `run` and the
//! end-to-end tests: the record of a built image, a local log (created with its key on first
//! use) and a local witness that cosigns each new checkpoint after checking its consistency
//! with the last one it cosigned.

use std::path::Path;
use std::process::Command;

use cloister_protocol::{GuestConfig, LogProof};
use cloister_transparency::cosign::CosignatureSigner;
use cloister_transparency::{
    Log, LogError, Measurement, Quorum, ReleaseRecord, SCHEMA, TrustedLog, Witness,
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
        snp_min_tcb: Some(shipped_floors()),
    })
}

/// The device's shipped TCB floors (`cloister_measurement::floors`, from AMD's bulletins), one
/// per product: the lowest row of each (what applies to a report without CPUID), recorded so
/// that an auditor reads in the log the floor devices enforce.
pub fn shipped_floors() -> std::collections::BTreeMap<String, cloister_transparency::RecordTcb> {
    cloister_measurement::floors::SNP_FLOORS
        .iter()
        .filter(|f| f.cpuid.is_none())
        .map(|f| {
            let t = f.min;
            (
                f.product.to_owned(),
                cloister_transparency::RecordTcb {
                    bootloader: t.bootloader,
                    tee: t.tee,
                    snp: t.snp,
                    microcode: t.microcode,
                    fmc: t.fmc,
                },
            )
        })
        .collect()
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
    let w = witnessed_append(dir, &[record.to_bytes()?])?;
    Ok((w.proof(w.first)?, w.trusted))
}

/// Entries appended to a local log and the checkpoint after them, cosigned by its witness.
#[derive(Debug)]
pub struct Witnessed {
    log: Log,
    checkpoint: String,
    /// The index of the first entry appended.
    pub first: u64,
    /// The keys a device trusts: the log and the witness, quorum 1.
    pub trusted: TrustedLog,
}

impl Witnessed {
    /// The proof of entry `index` (any entry of the log, old or new) under the cosigned
    /// checkpoint.
    pub fn proof(&self, index: u64) -> Result<LogProof> {
        let mut proof = self.log.log_proof(index)?;
        proof.checkpoint = self.checkpoint.clone();
        Ok(proof)
    }
}

/// `entries` appended to the local log in `dir` and the new checkpoint cosigned by the local
/// witness (see [`witnessed_release`]).
pub fn witnessed_append(dir: &Path, entries: &[Vec<u8>]) -> Result<Witnessed> {
    let (first, rest) = entries
        .split_first()
        .ok_or_else(|| ReleaseError::Log(LogError::Record("nothing to append".to_owned())))?;
    let (local, first_proof) = publish_local(dir, DEFAULT_ORIGIN, first)?;
    if !rest.is_empty() {
        local.log.append(rest, |_| {})?;
    }
    let mut proof = local.log.log_proof(first_proof.leaf_index)?;
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
    let signer = CosignatureSigner::new(WITNESS, &seed, unix_now())?;
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
    let trusted = TrustedLog::new(&local.vkey, &[witness_key], Quorum::ONE)?;
    Ok(Witnessed {
        log: local.log,
        checkpoint: proof.checkpoint,
        first: first_proof.leaf_index,
        trusted,
    })
}

/// The issuer's token key for a local stack, kept beside the log in `dir` (`<dir>.issuer.pem`)
/// and published in it: a key whose epoch has more than a day left is reused; otherwise a new
/// one is made and its record (`issuer`, an epoch of 30 days) appended and cosigned. Returns
/// the key's PEM path and, when a record was appended, the cosigned log (whose
/// [`Witnessed::proof`] refreshes a release's proof to the checkpoint that holds the key).
pub fn logged_issuer_key(
    dir: &Path,
    issuer: &str,
    spki_of: impl Fn(&Path) -> Option<String>,
    generate: impl Fn(&Path) -> Result<String>,
) -> Result<(std::path::PathBuf, Option<Witnessed>)> {
    let key_path = dir.with_extension("issuer.pem");
    if let Some(spki) = spki_of(&key_path)
        && logged_until(dir, issuer, &spki)?.is_some_and(|end| end > unix_now() + REUSE_MARGIN_SECS)
    {
        return Ok((key_path, None));
    }
    let _ = std::fs::remove_file(&key_path);
    let spki = generate(&key_path)?;
    let (not_before, not_after) = stack_epoch();
    let record = cloister_transparency::IssuerKeyRecord {
        schema: cloister_transparency::issuer_key::ISSUER_KEY_SCHEMA.to_owned(),
        issuer: issuer.to_owned(),
        token_type: 2,
        token_key: spki,
        not_before,
        not_after,
    };
    let w = witnessed_append(dir, &[record.to_bytes()?])?;
    Ok((key_path, Some(w)))
}

/// The gateway's outer-key secret for a local stack, kept beside the log in `dir`
/// (`<dir>.gateway-seed`, hex, owner-only) and its key configuration published in the log as
/// `gateway`'s (an epoch of 30 days) unless a record with more than a day left is there.
/// Returns the secret and, when a record was appended, the cosigned log.
pub fn logged_gateway_key(
    dir: &Path,
    gateway: &str,
) -> Result<(Zeroizing<[u8; 32]>, Option<Witnessed>)> {
    let seed_path = dir.with_extension("gateway-seed");
    let mut seed = Zeroizing::new([0u8; 32]);
    let read = std::fs::read_to_string(&seed_path)
        .ok()
        .map(Zeroizing::new)
        .is_some_and(|t| hex::decode_to_slice(t.trim(), &mut seed[..]).is_ok());
    if !read {
        let _ = std::fs::remove_file(&seed_path);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed[..]);
        write_private(&seed_path, &Zeroizing::new(hex::encode(&seed[..])))?;
    }
    let config = cloister_protocol::node::gateway_key_config(&seed)
        .and_then(|c| c.encode())
        .map_err(|e| ReleaseError::Log(LogError::Record(e.to_string())))?;
    let now = unix_now();
    let logged = entries(dir)?.iter().any(|e| {
        cloister_transparency::GatewayKeyRecord::from_bytes(e).is_ok_and(|r| {
            r.gateway == gateway
                && r.key_config == hex::encode(&config)
                && r.is_active(now)
                && r.not_after > now + REUSE_MARGIN_SECS
        })
    });
    if logged {
        return Ok((seed, None));
    }
    let (not_before, not_after) = stack_epoch();
    let record = cloister_transparency::GatewayKeyRecord {
        schema: cloister_transparency::gateway_key::GATEWAY_KEY_SCHEMA.to_owned(),
        gateway: gateway.to_owned(),
        key_config: hex::encode(&config),
        not_before,
        not_after,
    };
    let w = witnessed_append(dir, &[record.to_bytes()?])?;
    Ok((seed, Some(w)))
}

/// Every entry of the local log in `dir` (none if it has none yet).
fn entries(dir: &Path) -> Result<Vec<Vec<u8>>> {
    if !dir.join("checkpoint").exists() {
        return Ok(Vec::new());
    }
    let skey = Zeroizing::new(
        std::fs::read_to_string(dir.with_extension("key")).map_err(io(format!(
            "reading {}",
            dir.with_extension("key").display()
        )))?,
    );
    let vkey = std::fs::read_to_string(dir.with_extension("pub")).map_err(io(format!(
        "reading {}",
        dir.with_extension("pub").display()
    )))?;
    let log = Log::open(dir, &skey, vkey.trim())?;
    let (_, size, _) = log.checkpoint()?;
    (0..size).map(|i| Ok(log.entry(i)?)).collect()
}

/// The end of the epoch of `spki`'s current record in the local log in `dir`, if it has one.
pub fn logged_until(dir: &Path, issuer: &str, spki: &str) -> Result<Option<u64>> {
    let now = unix_now();
    Ok(entries(dir)?
        .iter()
        .filter_map(|e| cloister_transparency::IssuerKeyRecord::from_bytes(e).ok())
        .filter(|r| r.issuer == issuer && r.token_key == spki && r.is_active(now))
        .map(|r| r.not_after)
        .max())
}

/// The epoch a local stack's key record gets: from an hour ago (clocks) for 30 days.
fn stack_epoch() -> (u64, u64) {
    let from = unix_now().saturating_sub(3600);
    (from, from + 30 * 24 * 3600)
}

/// A key whose epoch ends within this margin is replaced rather than reused.
const REUSE_MARGIN_SECS: u64 = 24 * 3600;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A local stack's keys are published once and reused while their epoch has a day left.
    #[test]
    fn stack_keys_are_logged_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log");
        let spki_of = |p: &Path| std::fs::read_to_string(p).ok();
        let generate = |p: &Path| -> Result<String> {
            std::fs::write(p, "AAAA").map_err(io("key"))?;
            Ok("AAAA".to_owned())
        };
        let (_, first) =
            logged_issuer_key(&log, "cloister-issuer", spki_of, generate).expect("published");
        assert_eq!(first.expect("appended").first, 0);
        let (_, again) =
            logged_issuer_key(&log, "cloister-issuer", spki_of, generate).expect("reused");
        assert!(again.is_none());
        let until = logged_until(&log, "cloister-issuer", "AAAA").expect("read");
        assert!(until.is_some_and(|end| end > unix_now() + 29 * 24 * 3600));
        assert_eq!(
            logged_until(&log, "someone-else", "AAAA").expect("read"),
            None
        );

        let (seed, first) = logged_gateway_key(&log, "cloister-gateway").expect("published");
        assert_eq!(first.expect("appended").first, 1);
        let (seed_again, again) = logged_gateway_key(&log, "cloister-gateway").expect("reused");
        assert!(again.is_none());
        assert_eq!(*seed, *seed_again);
    }
}
