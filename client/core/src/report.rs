//! One inspection of an evidence bundle, step by step, as a person reads it: what the
//! `cargo xtask verify --json` command prints and what the browser verifier (`cloister-web`)
//! shows. Every step of [`Verifier::inspect`] is reported as passed, failed with its named
//! refusal, or not run (its inputs were not authenticated by an earlier step).
//!
//! The anchor is a type: the hardware roots (AMD, Intel) unless the caller names
//! [`AnchorChoice::InsecureEmulated`] and hands over the emulated processor's ARK.

use cloister_measurement::{
    FixedClock, InsecureEmulatedRoot, Inspection, Policy, PolicyError, Step, TrustAnchor, Verifier,
    VerifyError,
};
use cloister_protocol::{EvidenceBundle, LogProof};
use cloister_transparency::TrustedLog;
use serde::Serialize;

/// Which roots the inspection trusts.
#[derive(Clone, Debug)]
pub enum AnchorChoice {
    /// AMD's pinned ARKs and Intel's root: the only anchor a real deployment uses.
    Hardware,
    /// The emulated secure processor whose ARK this is. INSECURE: proves nothing about
    /// hardware; only a caller that names it gets it.
    InsecureEmulated {
        /// The emulated processor's ARK, DER.
        ark_der: Vec<u8>,
    },
}

/// The transparency log a measurement must be in.
#[derive(Clone, Debug)]
pub struct LogChoice {
    /// The log's signed-note verifier key.
    pub key: String,
    /// tlog-cosignature verifier keys of the witnesses.
    pub witness_keys: Vec<String>,
    /// Cosignatures required.
    pub quorum: cloister_transparency::Quorum,
}

/// What to inspect and how.
#[derive(Clone, Debug)]
pub struct ReportInput<'a> {
    /// The evidence bundle (JSON).
    pub bundle: &'a [u8],
    /// Reference values and policy (JSON, see `cloister_measurement::policy`).
    pub reference_values: &'a [u8],
    /// The roots.
    pub anchor: AnchorChoice,
    /// The nonce the guest was asked to bind (empty for a cached bundle).
    pub nonce: &'a [u8],
    /// The time of the inspection, Unix seconds (the caller's clock: this crate has none).
    pub at: u64,
    /// The log the measurement must be in; without it the reference values' allow-list decides.
    pub log: Option<LogChoice>,
    /// A log proof to attach to the bundle, as the operator does (JSON).
    pub log_proof: Option<&'a [u8]>,
}

/// Why no inspection could start: the inputs that say what to trust are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The reference values are not valid.
    #[error("reference values: {0}")]
    ReferenceValues(#[from] PolicyError),
    /// The emulated ARK is not a usable root.
    #[error("emulated ARK: {0}")]
    EmulatedArk(#[source] VerifyError),
    /// The hardware roots could not be loaded.
    #[error("hardware roots: {0}")]
    HardwareRoots(#[source] VerifyError),
    /// The log key, a witness key or the quorum is not usable.
    #[error("transparency log: {0}")]
    Log(#[source] cloister_transparency::VerifyError),
    /// The log proof is not a valid log proof document.
    #[error("log proof: {0}")]
    LogProof(String),
}

/// How one step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// It ran and passed.
    Ok,
    /// It ran and refused.
    Failed,
    /// It did not run: an earlier step refused what it would read.
    Skipped,
}

/// One step's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The step's name (`parse`, `platform`, `chain`, …).
    pub step: &'static str,
    /// How it ended.
    pub status: Status,
    /// What it found, or its refusal (the `VerifyError`'s message).
    pub detail: String,
    /// The refusal's variant name, e.g. `ReportDataMismatch` (empty unless failed).
    pub refusal: String,
}

/// The whole inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every step ran and passed.
    pub accepted: bool,
    /// The bundle's platform, when it parsed.
    pub platform: Option<&'static str>,
    /// The anchor's name (`hardware (AMD, Intel)` or `INSECURE emulated`).
    pub anchor: &'static str,
    /// The emulated root's SHA-256 fingerprint, under that anchor.
    pub insecure_root: Option<String>,
    /// The time of the inspection.
    pub verified_at: u64,
    /// Every step, in order.
    pub checks: Vec<StepReport>,
}

impl Report {
    /// The line of one step.
    pub fn step(&self, step: Step) -> Option<&StepReport> {
        self.checks.iter().find(|c| c.step == step.name())
    }
}

/// Inspects a bundle: every step that can run, each with its outcome.
pub fn inspect(input: &ReportInput<'_>) -> Result<Report, ReportError> {
    let policy = Policy::from_json(input.reference_values)?;
    let (anchor, insecure_root) = match &input.anchor {
        AnchorChoice::Hardware => (
            TrustAnchor::hardware().map_err(ReportError::HardwareRoots)?,
            None,
        ),
        AnchorChoice::InsecureEmulated { ark_der } => {
            let root =
                InsecureEmulatedRoot::from_ark_der(ark_der).map_err(ReportError::EmulatedArk)?;
            let fingerprint = root.fingerprint();
            (TrustAnchor::InsecureEmulated(root), Some(fingerprint))
        }
    };
    let mut verifier = Verifier::new(anchor, policy, FixedClock(input.at));
    if let Some(log) = &input.log {
        let trusted = TrustedLog::new(log.key.trim(), &log.witness_keys, log.quorum)
            .map_err(ReportError::Log)?;
        verifier = verifier.with_log(trusted);
    }
    let log_proof = match input.log_proof {
        Some(bytes) => {
            Some(LogProof::from_json(bytes).map_err(|e| ReportError::LogProof(e.to_string()))?)
        }
        None => None,
    };
    let (platform, inspection) = match EvidenceBundle::from_json(input.bundle) {
        Ok(mut bundle) => {
            if log_proof.is_some() {
                bundle.log_proof = log_proof;
            }
            let platform = bundle.platform.as_str();
            (Some(platform), verifier.inspect(&bundle, input.nonce))
        }
        Err(e) => (None, Inspection::refused_at_parse(e.into())),
    };
    Ok(Report {
        accepted: inspection.is_accepted(),
        platform,
        anchor: verifier.anchor().name(),
        insecure_root,
        verified_at: input.at,
        checks: lines(&inspection),
    })
}

fn lines(inspection: &Inspection) -> Vec<StepReport> {
    Step::ALL
        .iter()
        .map(|step| {
            let check = inspection.checks.iter().find(|c| c.step == *step);
            let (status, detail, refusal) = match check.map(|c| &c.result) {
                Some(Ok(found)) => (Status::Ok, found.clone(), String::new()),
                Some(Err(e)) => (Status::Failed, e.to_string(), variant_name(e)),
                None => (Status::Skipped, String::new(), String::new()),
            };
            StepReport {
                step: step.name(),
                status,
                detail,
                refusal,
            }
        })
        .collect()
}

/// The variant's name: the part of its `Debug` before any field.
fn variant_name(e: &VerifyError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests;
