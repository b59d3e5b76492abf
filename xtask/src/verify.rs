//! `cargo xtask verify BUNDLE.json --reference-values FILE [--insecure-emulated …]
//! [--log-key FILE [--witness-key K]… [--quorum N] [--log-proof FILE]] [--json]`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use cloister_device_core::report::{self, AnchorChoice, LogChoice, ReportInput, Status};
use cloister_measurement::{Clock, SystemClock};
use cloister_transparency::Quorum;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The evidence bundle (JSON).
    bundle: PathBuf,
    /// Reference values and policy (JSON; see `cloister_measurement::policy`).
    #[arg(long)]
    reference_values: PathBuf,
    /// Trust the emulated AMD secure processor instead of AMD and Intel. INSECURE: for CI and
    /// local research only.
    #[arg(long, requires = "emulated_ark")]
    insecure_emulated: bool,
    /// The emulated processor's ARK (DER), pinned under `--insecure-emulated`.
    #[arg(long, requires = "insecure_emulated")]
    emulated_ark: Option<PathBuf>,
    /// The nonce the guest was asked to bind, in hex (empty for a cached bundle).
    #[arg(long, default_value = "")]
    nonce: String,
    /// Verify at this time (Unix seconds) instead of now: for recorded evidence.
    #[arg(long)]
    at: Option<u64>,
    /// Demand the measurement in this transparency log: a file with the log's signed-note
    /// verifier key (the reference values' allow-list is then not consulted for SNP).
    #[arg(long)]
    log_key: Option<PathBuf>,
    /// A witness's tlog-cosignature verifier key (repeatable).
    #[arg(long = "witness-key", requires = "log_key")]
    witness_keys: Vec<String>,
    /// Witness cosignatures required (at least one).
    #[arg(long, default_value_t = std::num::NonZeroUsize::MIN, requires = "log_key")]
    quorum: std::num::NonZeroUsize,
    /// INSECURE: the log's signature alone, no witness (a split view goes unnoticed).
    #[arg(long, requires = "log_key", conflicts_with = "witness_keys")]
    insecure_no_witness: bool,
    /// The log proof to attach to the bundle (as the operator does), e.g. an image's
    /// `log-proof.json` from `cargo xtask publish`.
    #[arg(long, requires = "log_key")]
    log_proof: Option<PathBuf>,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

/// The witnesses demanded: at least one, or none by name.
fn quorum(args: &Args) -> Result<Quorum> {
    if args.insecure_no_witness {
        eprintln!("INSECURE: --insecure-no-witness: the log's signature alone is trusted");
        return Ok(Quorum::InsecureLogSignatureOnly);
    }
    if args.witness_keys.is_empty() {
        anyhow::bail!(
            "--log-key needs a witness: give --witness-key KEY, or --insecure-no-witness"
        );
    }
    Ok(Quorum::Witnesses(args.quorum))
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
    };
    let bundle = read(&args.bundle, "bundle")?;
    let reference_values = read(&args.reference_values, "reference values")?;
    let nonce = hex::decode(&args.nonce).context("--nonce is not hex")?;
    let anchor = match (&args.emulated_ark, args.insecure_emulated) {
        (Some(path), true) => AnchorChoice::InsecureEmulated {
            ark_der: read(path, "emulated ARK")?,
        },
        _ => AnchorChoice::Hardware,
    };
    let log = match &args.log_key {
        Some(path) => Some(LogChoice {
            key: std::fs::read_to_string(path)
                .with_context(|| format!("reading log key {}", path.display()))?,
            witness_keys: args.witness_keys.clone(),
            quorum: quorum(args)?,
        }),
        None => None,
    };
    let log_proof = match &args.log_proof {
        Some(path) => Some(read(path, "log proof")?),
        None => None,
    };
    let at = args.at.unwrap_or_else(|| SystemClock.now_unix());
    let report = report::inspect(&ReportInput {
        bundle: &bundle,
        reference_values: &reference_values,
        anchor,
        nonce: &nonce,
        at,
        log,
        log_proof: log_proof.as_deref(),
    })?;
    if let Some(fingerprint) = &report.insecure_root {
        eprintln!(
            "WARNING: verifying under the INSECURE emulated trust anchor (ARK sha256 \
             {fingerprint}): this proves nothing about real hardware"
        );
    }
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for c in &report.checks {
            match c.status {
                Status::Ok => println!("ok      {:<12} {}", c.step, c.detail),
                Status::Failed => println!("FAILED  {:<12} {}", c.step, c.detail),
                Status::Skipped => println!("skipped {:<12}", c.step),
            }
        }
        println!(
            "{}",
            if report.accepted {
                "ACCEPTED"
            } else {
                "REFUSED"
            }
        );
    }
    Ok(if report.accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
