//! `cargo xtask publish`: appends the built image's release record to a transparency log and
//! stores the entry's log proof beside the image (`log-proof.json`, the JSON form of the
//! evidence bundle's `log_proof`), for the operator to attach to the node's evidence.
//!
//! The log is a local directory by default (created on first use, its key beside it), or a
//! served log (`--log-url`, with the operator's API key).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use cloister_protocol::LogProof;
use cloister_transparency::ReleaseRecord;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use zeroize::Zeroizing;

use cloister_xtask::release::{DEFAULT_ORIGIN, publish_local, release_record};

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
    /// Also publish this issuer token key (base64url SPKI, or a file holding it, as
    /// `cloister-issuer init` prints it) for an epoch starting now (local log only).
    #[arg(long, conflicts_with = "log_url")]
    issuer_key: Option<String>,
    /// The issuer's name in the gateway's token challenge.
    #[arg(long, default_value = "cloister-issuer")]
    issuer_name: String,
    /// Also publish the outer key configuration derived from this gateway secret (the file
    /// `cloister-gateway --outer-key-seed` reads) for an epoch starting now (local log only).
    #[arg(long, conflicts_with = "log_url")]
    gateway_key_seed: Option<PathBuf>,
    /// Length of a published key's epoch, days (7 to 90).
    #[arg(long, default_value_t = 30)]
    epoch_days: u64,
}

/// The key records asked for, before the release (so that the release's proof covers them).
fn key_records(args: &Args) -> Result<Vec<Vec<u8>>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (from, to) = (now, now + args.epoch_days * 86_400);
    let mut out = Vec::new();
    if let Some(k) = &args.issuer_key {
        let text = std::fs::read_to_string(k).unwrap_or_else(|_| k.clone());
        out.push(
            cloister_transparency::IssuerKeyRecord {
                schema: cloister_transparency::issuer_key::ISSUER_KEY_SCHEMA.into(),
                issuer: args.issuer_name.clone(),
                token_type: 2,
                token_key: text.trim().to_owned(),
                not_before: from,
                not_after: to,
            }
            .to_bytes()?,
        );
    }
    if let Some(p) = &args.gateway_key_seed {
        let text = Zeroizing::new(
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        );
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), &mut seed[..])
            .with_context(|| format!("{} is not a 32-byte hex secret", p.display()))?;
        let config = cloister_protocol::node::gateway_key_config(&seed)
            .and_then(|c| c.encode())
            .map_err(|e| anyhow::anyhow!("gateway key: {e}"))?;
        out.push(
            cloister_transparency::GatewayKeyRecord {
                schema: cloister_transparency::gateway_key::GATEWAY_KEY_SCHEMA.into(),
                gateway: cloister_protocol::access::GATEWAY_AUTHORITY.into(),
                key_config: hex::encode(config),
                not_before: from,
                not_after: to,
            }
            .to_bytes()?,
        );
    }
    Ok(out)
}

/// `cargo xtask publish`.
pub fn run(args: &Args) -> Result<std::process::ExitCode> {
    let record = release_record(&args.image)?;
    let entry = record.to_bytes()?;
    let proof = match &args.log_url {
        None => {
            for key in key_records(args)? {
                let (_, p) = publish_local(&args.log, &args.origin, &key)?;
                println!("key record        entry {}", p.leaf_index);
            }
            publish_local(&args.log, &args.origin, &entry)?.1
        }
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
