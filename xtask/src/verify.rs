//! `cargo xtask verify BUNDLE.json --reference-values FILE [--insecure-emulated …]
//! [--log-key FILE [--witness-key K]… [--quorum N] [--log-proof FILE]] [--json]`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use cloister_measurement::{
    Clock, FixedClock, InsecureEmulatedRoot, Inspection, Policy, Step, SystemClock, TrustAnchor,
    Verifier,
};
use cloister_protocol::{EvidenceBundle, LogProof};
use cloister_transparency::TrustedLog;

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
    /// Witness cosignatures required.
    #[arg(long, default_value_t = 0, requires = "log_key")]
    quorum: usize,
    /// The log proof to attach to the bundle (as the operator does), e.g. an image's
    /// `log-proof.json` from `cargo xtask publish`.
    #[arg(long, requires = "log_key")]
    log_proof: Option<PathBuf>,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    let bundle_bytes = std::fs::read(&args.bundle)
        .with_context(|| format!("reading bundle {}", args.bundle.display()))?;
    let policy_bytes = std::fs::read(&args.reference_values).with_context(|| {
        format!(
            "reading reference values {}",
            args.reference_values.display()
        )
    })?;
    let policy = Policy::from_json(&policy_bytes)?;
    let nonce = hex::decode(&args.nonce).context("--nonce is not hex")?;
    let anchor = match (&args.emulated_ark, args.insecure_emulated) {
        (Some(path), true) => {
            let der = std::fs::read(path)
                .with_context(|| format!("reading emulated ARK {}", path.display()))?;
            let root = InsecureEmulatedRoot::from_ark_der(&der)?;
            eprintln!(
                "WARNING: verifying under the INSECURE emulated trust anchor (ARK sha256 {}): \
                 this proves nothing about real hardware",
                root.fingerprint()
            );
            TrustAnchor::InsecureEmulated(root)
        }
        _ => TrustAnchor::hardware()?,
    };
    let clock: Box<dyn Clock> = match args.at {
        Some(t) => Box::new(FixedClock(t)),
        None => Box::new(SystemClock),
    };
    let now = clock.now_unix();
    let mut verifier = Verifier::new(anchor, policy, FixedClock(now));
    if let Some(path) = &args.log_key {
        let key = std::fs::read_to_string(path)
            .with_context(|| format!("reading log key {}", path.display()))?;
        verifier = verifier.with_log(TrustedLog::new(
            key.trim(),
            &args.witness_keys,
            args.quorum,
        )?);
    }
    let log_proof = match &args.log_proof {
        Some(path) => Some(LogProof::from_json(
            &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
        )?),
        None => None,
    };

    let (platform, inspection) = match EvidenceBundle::from_json(&bundle_bytes) {
        Ok(mut b) => {
            if log_proof.is_some() {
                b.log_proof = log_proof;
            }
            (Some(b.platform), verifier.inspect(&b, &nonce))
        }
        Err(e) => (None, Inspection::refused_at_parse(e.into())),
    };
    let accepted = inspection.is_accepted();
    if args.json {
        let checks: Vec<_> = Step::ALL
            .iter()
            .map(|step| {
                let check = inspection.checks.iter().find(|c| c.step == *step);
                let (status, detail) = match check.map(|c| &c.result) {
                    Some(Ok(d)) => ("ok", d.clone()),
                    Some(Err(e)) => ("failed", e.to_string()),
                    None => ("skipped", String::new()),
                };
                serde_json::json!({"step": step.name(), "status": status, "detail": detail})
            })
            .collect();
        let out = serde_json::json!({
            "accepted": accepted,
            "platform": platform.map(|p| p.as_str()),
            "anchor": verifier.anchor().name(),
            "verified_at": now,
            "checks": checks,
        });
        println!("{out}");
    } else {
        for step in Step::ALL {
            match inspection.checks.iter().find(|c| c.step == step) {
                Some(c) => match &c.result {
                    Ok(d) => println!("ok      {:<12} {d}", step.name()),
                    Err(e) => println!("FAILED  {:<12} {e}", step.name()),
                },
                None => println!("skipped {:<12}", step.name()),
            }
        }
        println!("{}", if accepted { "ACCEPTED" } else { "REFUSED" });
    }
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
