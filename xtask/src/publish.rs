//! `cargo xtask publish`: appends the built image's release record to a transparency log and
//! stores the entry's log proof beside the image (`log-proof.json`, the JSON form of the
//! evidence bundle's `log_proof`), for the operator to attach to the node's evidence.
//!
//! The log is a local directory by default (created on first use, its key beside it), or a
//! served log (`--log-url`, with the operator's API key).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use cloister_protocol::{GuestConfig, LogProof};
use cloister_transparency::cosign::CosignatureSigner;
use cloister_transparency::{Log, Measurement, ReleaseRecord, SCHEMA, TrustedLog, Witness};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use zeroize::Zeroizing;

use cloister_xtask::image::{source_date_epoch, workspace_root};

/// Arguments of `cargo xtask publish`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The image directory (`cargo xtask image`'s output).
    #[arg(long, default_value = "target/cloister-image/emulated")]
    image: PathBuf,
    /// A local log directory (created with a new key, `<dir>.key`, when missing).
    #[arg(
        long,
        default_value = "target/cloister-log",
        conflicts_with = "log_url"
    )]
    log: PathBuf,
    /// Origin (name) of a log created here.
    #[arg(long, default_value = DEFAULT_ORIGIN)]
    origin: String,
    /// A served log (`cloister-log serve`), e.g. `http://127.0.0.1:8600`.
    #[arg(long)]
    log_url: Option<String>,
    /// The operator's API key file for `--log-url`.
    #[arg(long, env = "CLOISTER_LOG_API_KEY_FILE", requires = "log_url")]
    api_key_file: Option<PathBuf>,
}

/// The release record of the image in `dir`, from its `measurement.json`.
pub fn release_record(dir: &Path) -> Result<ReleaseRecord> {
    let path = dir.join("measurement.json");
    let m: Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("{} is not JSON", path.display()))?;
    record_from(&m).with_context(|| format!("{}", path.display()))
}

/// The release record of an image's measurement (`measurement.json`'s content).
pub fn record_from(m: &Value) -> Result<ReleaseRecord> {
    let field = |k: &str| -> Result<String> {
        m[k].as_str()
            .map(str::to_owned)
            .with_context(|| format!("the measurement has no {k}"))
    };
    let cmdline = field("cmdline")?;
    let config = GuestConfig::from_cmdline(&cmdline).context("the image's command line")?;
    let platform = match config.attest.as_str() {
        "emulated" => "emulated-sev-snp",
        "snp" => "sev-snp",
        other => bail!("release records for {other} images are not built yet"),
    };
    let (revision, dirty) = git_revision()?;
    if dirty {
        eprintln!("warning: the work tree has changes; the record names {revision}");
    }
    Ok(ReleaseRecord {
        schema: SCHEMA.to_owned(),
        measurements: vec![Measurement {
            platform: platform.to_owned(),
            vcpus: m["vcpus"].as_u64().context("no vcpus")? as u32,
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
            .context("running git")?;
        if !out.status.success() {
            bail!("git {args:?} failed");
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "HEAD"])?;
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"])?.is_empty();
    Ok((if dirty { format!("{head}-dirty") } else { head }, dirty))
}

/// `cargo xtask publish`.
pub fn run(args: &Args) -> Result<std::process::ExitCode> {
    let record = release_record(&args.image)?;
    let entry = record.to_bytes()?;
    let proof = match &args.log_url {
        None => publish_local(&args.log, &args.origin, &entry)?.1,
        Some(url) => {
            let key_file = args
                .api_key_file
                .as_ref()
                .context("--log-url needs --api-key-file")?;
            let key = Zeroizing::new(std::fs::read_to_string(key_file)?);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(publish_served(url, key.trim(), &record))?
        }
    };
    let out = args.image.join("log-proof.json");
    std::fs::write(&out, proof.to_json())?;
    println!("entry             {}", proof.leaf_index);
    println!(
        "measurement       {} ({})",
        record.measurements[0].digest, record.measurements[0].platform
    );
    println!(
        "checkpoint        {}",
        proof.checkpoint.lines().nth(1).unwrap_or("?")
    );
    println!("log proof         {}", out.display());
    Ok(std::process::ExitCode::SUCCESS)
}

/// Appends `entry` to the local log in `dir` (created, with its key, when missing); returns the
/// log, its verifier key, whether it was created, and the entry's proof.
fn publish_local(dir: &Path, origin: &str, entry: &[u8]) -> Result<(Local, LogProof)> {
    let key_path = dir.with_extension("key");
    let pub_path = dir.with_extension("pub");
    let created = !dir.join("checkpoint").exists();
    let log = if !created {
        let skey = Zeroizing::new(std::fs::read_to_string(&key_path)?);
        let vkey = std::fs::read_to_string(&pub_path)?;
        Log::open(dir, &skey, vkey.trim())?
    } else {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, origin);
        let skey = Zeroizing::new(skey);
        write_private(&key_path, &skey)?;
        std::fs::write(&pub_path, format!("{vkey}\n"))?;
        println!(
            "new log           {} (verifier key in {})",
            dir.display(),
            pub_path.display()
        );
        Log::create(dir, &skey, &vkey)?
    };
    let appended = log.append(&[entry.to_vec()], |_| {})?;
    let proof = log.log_proof(appended.first)?;
    let vkey = std::fs::read_to_string(&pub_path)?.trim().to_owned();
    Ok((Local { log, vkey, created }, proof))
}

/// A local log opened for appends.
struct Local {
    log: Log,
    vkey: String,
    created: bool,
}

/// For `cargo xtask run`: the release of the booted image appended to the local log
/// (`target/cloister-log`) and cosigned by a local witness, which checks the consistency
/// proof from the last checkpoint it cosigned. Returns the log proof the operator attaches to
/// the node's evidence and the keys a device trusts (the log, and that witness, quorum 1).
pub fn local_release(measurement: &Value) -> Result<(LogProof, TrustedLog)> {
    let record = record_from(measurement)?;
    let dir = workspace_root().join("target/cloister-log");
    let (local, mut proof) = publish_local(&dir, DEFAULT_ORIGIN, &record.to_bytes()?)?;
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
                .with_context(|| format!("{} is not a hex seed", key_path.display()))?;
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
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
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
    proof.checkpoint = String::from_utf8(cosigned)?;
    let trusted = TrustedLog::new(&local.vkey, &[witness_key], 1)?;
    Ok((proof, trusted))
}

/// The local log's name.
const DEFAULT_ORIGIN: &str = "log.cloister.invalid/releases";
/// The local witness's name.
const WITNESS: &str = "witness.cloister.invalid";

async fn publish_served(url: &str, key: &str, record: &ReleaseRecord) -> Result<LogProof> {
    let authority = url
        .strip_prefix("http://")
        .context("--log-url must be http://HOST:PORT (put TLS in front of the log)")?
        .trim_end_matches('/');
    let body = serde_json::to_vec(record)?;
    let (status, reply) = request(authority, "POST", "/add", Some(key), body).await?;
    if status != 200 {
        bail!(
            "the log refused the record ({status}): {}",
            String::from_utf8_lossy(&reply)
        );
    }
    let v: Value = serde_json::from_slice(&reply)?;
    let index = v["indexes"][0].as_u64().context("the log named no index")?;
    let (status, reply) =
        request(authority, "GET", &format!("/bundle/{index}"), None, vec![]).await?;
    if status != 200 {
        bail!("the log gave no proof ({status})");
    }
    Ok(LogProof::from_json(&reply)?)
}

async fn request(
    authority: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>)> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let res = send
        .send_request(req.body(Full::new(Bytes::from(body)))?)
        .await?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await?.to_bytes().to_vec();
    Ok((status, body))
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    cloister_transparency::write_secret(path, secret)
        .with_context(|| format!("creating {}", path.display()))
}
