//! The browser verifier: [`cloister_device_core::report`] behind one WebAssembly entry point.
//! The page (`www/`) reads the bundle, the reference values and the optional ARK, log key and
//! log proof from files or URLs, calls [`inspect_json`] and draws each step. Nothing is sent
//! to a server: the page is static and the verification runs in the browser.
//!
//! The anchor is AMD's and Intel's roots unless the page's user chose the insecure emulated
//! anchor by name and gave its ARK; the report says which anchor decided.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use cloister_device_core::report::{self, AnchorChoice, LogChoice, Report, ReportInput};
use cloister_device_core::trust::Quorum;
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::wasm_bindgen;

/// What the page asks for, besides the documents themselves.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// `hardware` (default) or `insecure-emulated`.
    #[serde(default)]
    pub anchor: Anchor,
    /// The nonce the guest bound, hex (empty for a cached bundle).
    #[serde(default)]
    pub nonce: String,
    /// Unix seconds of the inspection (the page's clock unless the user set one).
    pub at: u64,
    /// The log's signed-note verifier key; absent: the reference values' allow-list decides.
    #[serde(default)]
    pub log_key: Option<String>,
    /// Witness verifier keys.
    #[serde(default)]
    pub witness_keys: Vec<String>,
    /// Cosignatures required (default: every witness given; at least one).
    #[serde(default)]
    pub quorum: Option<usize>,
    /// INSECURE: trust the log's signature alone (no witness; a split view goes unnoticed).
    #[serde(default)]
    pub insecure_no_witness: bool,
}

/// The anchor named on the page.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Anchor {
    /// AMD's and Intel's roots.
    #[default]
    Hardware,
    /// The emulated processor's ARK, given beside. INSECURE.
    InsecureEmulated,
}

/// Why the page's request could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The options are not valid JSON of [`Options`].
    #[error("options: {0}")]
    Options(String),
    /// The nonce is not hex.
    #[error("nonce is not hex")]
    Nonce,
    /// The insecure anchor was chosen without its ARK.
    #[error("the insecure emulated anchor needs the emulated processor's ARK (DER)")]
    MissingArk,
    /// An ARK was given but the hardware anchor chosen: refused rather than ignored.
    #[error(
        "an ARK was given but the anchor is hardware: choose the insecure emulated anchor by name"
    )]
    UnexpectedArk,
    /// A log key without a witness (or a quorum of none), and the insecure choice not named.
    #[error(
        "a trusted log needs at least one witness: give its key, or choose insecure-no-witness \
         by name"
    )]
    NoWitness,
    /// A log proof was given without a log key to check it against.
    #[error("a log proof needs the log's key")]
    ProofWithoutLog,
    /// The inspection could not start.
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

/// The page's answer: the report, or why there is none.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Answer {
    /// Every step's line.
    Report(Report),
    /// No inspection ran.
    Error {
        /// The reason, for the page to show.
        error: String,
    },
}

/// Inspects `bundle` against `reference_values`; `ark` is the emulated processor's ARK (DER)
/// under the insecure anchor, `log_proof` a log proof to attach (JSON).
pub fn inspect(
    bundle: &[u8],
    reference_values: &[u8],
    options: &str,
    ark: Option<Vec<u8>>,
    log_proof: Option<Vec<u8>>,
) -> Result<Report, WebError> {
    let o: Options = serde_json::from_str(options).map_err(|e| WebError::Options(e.to_string()))?;
    let anchor = match (o.anchor, ark) {
        (Anchor::Hardware, None) => AnchorChoice::Hardware,
        (Anchor::Hardware, Some(_)) => return Err(WebError::UnexpectedArk),
        (Anchor::InsecureEmulated, Some(ark_der)) => AnchorChoice::InsecureEmulated { ark_der },
        (Anchor::InsecureEmulated, None) => return Err(WebError::MissingArk),
    };
    let nonce = hex::decode(o.nonce.trim()).map_err(|_| WebError::Nonce)?;
    let log = match o.log_key {
        Some(key) => {
            let wanted = std::num::NonZeroUsize::new(o.quorum.unwrap_or(o.witness_keys.len()));
            let quorum = match (o.insecure_no_witness, wanted) {
                (true, _) => Quorum::InsecureLogSignatureOnly,
                (false, Some(n)) => Quorum::Witnesses(n),
                (false, None) => return Err(WebError::NoWitness),
            };
            Some(LogChoice {
                quorum,
                witness_keys: o.witness_keys,
                key,
            })
        }
        None => None,
    };
    if log.is_none() && log_proof.is_some() {
        return Err(WebError::ProofWithoutLog);
    }
    Ok(report::inspect(&ReportInput {
        bundle,
        reference_values,
        anchor,
        nonce: &nonce,
        at: o.at,
        log,
        log_proof: log_proof.as_deref(),
    })?)
}

/// The WebAssembly entry point: [`inspect`], answered as JSON (a report, or `{"error": …}`).
#[wasm_bindgen(js_name = inspect)]
pub fn inspect_json(
    bundle: &[u8],
    reference_values: &[u8],
    options: &str,
    ark: Option<Vec<u8>>,
    log_proof: Option<Vec<u8>>,
) -> String {
    let answer = match inspect(bundle, reference_values, options, ark, log_proof) {
        Ok(r) => Answer::Report(r),
        Err(e) => Answer::Error {
            error: e.to_string(),
        },
    };
    serde_json::to_string(&answer).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

#[cfg(test)]
mod tests;
