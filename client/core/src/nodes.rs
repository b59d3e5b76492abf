//! The node directory, verified: every node's evidence bundle goes through the [`Verifier`]
//! (parse → platform → chain → signature → policy → binding → expiry → measurement), and each
//! node gets a [`NodeReport`] saying what it attests to or which check refused it and why.
//! Sans-IO: the directory comes in as a value.

use cloister_measurement::{
    Clock, Inspection, MachineId, Measurement, Step, Verified, Verifier, VerifyError,
};
use cloister_protocol::EvidenceBundle;
use cloister_protocol::Platform;
use cloister_protocol::access::{NodeDirectory, NodeEntry, NodeId};
use cloister_transparency::VerifiedCheckpoint;

use crate::error::NodeFailure;

/// A log checkpoint, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Entries in the tree.
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
}

/// What the device found out about one node.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node.
    pub id: NodeId,
    /// Platform the bundle names (absent when it does not parse).
    pub platform: Option<Platform>,
    /// The attested measurement, hex (SNP launch digest; TDX MRTD); verified nodes only.
    pub measurement: Option<String>,
    /// The attested TCB, one line; verified nodes only.
    pub tcb: Option<String>,
    /// The machine whose hardware signed the evidence (once its signature held).
    pub machine: Option<MachineId>,
    /// When the node's key and evidence expire (Unix seconds), as the bundle says.
    pub expires_at: Option<u64>,
    /// The log checkpoint the measurement was found under (verified nodes, trusted log).
    pub checkpoint: Option<CheckpointInfo>,
    /// The verified evidence, or the check that refused it.
    pub result: Result<Verified, NodeFailure>,
}

impl NodeReport {
    /// Whether the node passed every check.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// The verified evidence, if it passed.
    pub fn verified(&self) -> Option<&Verified> {
        self.result.as_ref().ok()
    }
}

/// The measurement as hex: the SNP launch digest, or the TDX MRTD.
pub fn measurement_hex(m: &Measurement) -> String {
    match m {
        Measurement::Snp(d) => d.to_hex(),
        Measurement::Tdx { mrtd, .. } => mrtd.to_hex(),
    }
}

/// Verifies every node of `directory` (cached bundles: no nonce).
pub fn verify_directory<C: Clock>(
    verifier: &Verifier<C>,
    directory: &NodeDirectory,
) -> Vec<NodeReport> {
    directory
        .nodes
        .iter()
        .map(|n| verify_node(verifier, n))
        .collect()
}

fn verify_node<C: Clock>(verifier: &Verifier<C>, node: &NodeEntry) -> NodeReport {
    let refused = |platform, expires_at, machine, step, error| NodeReport {
        id: node.id.clone(),
        platform,
        measurement: None,
        tcb: None,
        machine,
        expires_at,
        checkpoint: None,
        result: Err(NodeFailure {
            id: node.id.clone(),
            step,
            error,
        }),
    };
    let bundle = serde_json::to_vec(&node.evidence)
        .map_err(|e| VerifyError::Bundle(cloister_protocol::BundleError::Json(e.to_string())))
        .and_then(|bytes| EvidenceBundle::from_json(&bytes).map_err(VerifyError::from));
    let bundle = match bundle {
        Ok(b) => b,
        Err(e) => return refused(None, None, None, Step::Parse, e),
    };
    let (platform, expires_at) = (Some(bundle.platform), Some(bundle.expires_at));
    match verifier.verify(&bundle, b"") {
        Ok(v) => NodeReport {
            id: node.id.clone(),
            platform,
            measurement: Some(measurement_hex(&v.measurement)),
            tcb: Some(v.tcb.clone()),
            machine: Some(v.machine.clone()),
            expires_at,
            checkpoint: v.logged.as_ref().map(|cp| CheckpointInfo {
                size: cp.size,
                root: hex::encode(cp.root),
            }),
            result: Ok(v),
        },
        Err(e) => {
            // The inspection says which step refused (verification is deterministic, so its
            // first refusal is the same error).
            let inspection = verifier.inspect(&bundle, b"");
            let step = failed_step(&inspection, &e);
            refused(platform, expires_at, inspection.machine().cloned(), step, e)
        }
    }
}

fn failed_step(inspection: &Inspection, error: &VerifyError) -> Step {
    inspection
        .checks
        .iter()
        .find(|c| c.result.as_ref().err() == Some(error))
        .or_else(|| inspection.checks.iter().find(|c| c.result.is_err()))
        .map_or(Step::Parse, |c| c.step)
}

/// The nodes that failed, in directory order.
pub fn failures(reports: &[NodeReport]) -> Vec<NodeFailure> {
    reports
        .iter()
        .filter_map(|r| r.result.as_ref().err().cloned())
        .collect()
}

/// The distinct log checkpoints of the verified nodes, largest tree first.
pub fn checkpoints(reports: &[NodeReport]) -> Vec<&VerifiedCheckpoint> {
    let mut cps: Vec<&VerifiedCheckpoint> = reports
        .iter()
        .filter_map(|r| r.verified().and_then(|v| v.logged.as_ref()))
        .collect();
    cps.sort_by(|a, b| b.size.cmp(&a.size).then(a.root.cmp(&b.root)));
    cps.dedup_by(|a, b| a.size == b.size && a.root == b.root);
    cps
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_measurement::{Policy, SystemClock, TrustAnchor};
    use cloister_protocol::access::DIRECTORY_VERSION;

    use crate::testkit::{MEASUREMENT, bundle, bundle_json, emulated_root};

    fn entry(id: &str, evidence: serde_json::Value) -> NodeEntry {
        NodeEntry {
            id: NodeId::new(id).expect("id"),
            evidence,
        }
    }

    #[test]
    fn each_node_reports_its_measurement_or_the_check_that_refused_it() {
        let key = b"\x01\x00\x20key-config-bytes";
        let directory = NodeDirectory {
            version: DIRECTORY_VERSION,
            token_challenge: String::new(),
            nodes: vec![
                entry("good", bundle_json(&bundle(key, MEASUREMENT, true))),
                entry("other-image", bundle_json(&bundle(key, [0x11; 48], true))),
                entry("unbound", bundle_json(&bundle(key, MEASUREMENT, false))),
                entry("garbage", serde_json::json!({"version": 1})),
            ],
        };
        let verifier = Verifier::new(
            TrustAnchor::InsecureEmulated(emulated_root()),
            Policy::default().with_snp_measurement(MEASUREMENT),
            SystemClock,
        );
        let reports = verify_directory(&verifier, &directory);
        assert_eq!(reports.len(), 4);

        let good = &reports[0];
        assert!(good.passed(), "{:?}", good.result);
        assert_eq!(good.measurement.as_deref(), Some("6d".repeat(48).as_str()));
        assert_eq!(good.platform, Some(Platform::EmulatedSevSnp));
        assert!(good.tcb.is_some() && good.checkpoint.is_none());

        let steps: Vec<Option<Step>> = reports
            .iter()
            .map(|r| r.result.as_ref().err().map(|f| f.step))
            .collect();
        assert_eq!(
            steps,
            vec![
                None,
                Some(Step::Measurement),
                Some(Step::Binding),
                Some(Step::Parse)
            ]
        );
        let f = failures(&reports);
        assert_eq!(f.len(), 3);
        assert!(matches!(
            f[0].error,
            VerifyError::MeasurementNotAllowed { .. }
        ));
        assert!(
            f[1].to_string()
                .starts_with("unbound: binding check failed")
        );
        assert_eq!(reports[3].platform, None);
        assert!(checkpoints(&reports).is_empty());

        // A hardware verifier refuses the emulated platform, at the platform step.
        let hardware = Verifier::new(
            TrustAnchor::hardware().expect("pinned roots"),
            Policy::default().with_snp_measurement(MEASUREMENT),
            SystemClock,
        );
        let reports = verify_directory(&hardware, &directory);
        assert_eq!(
            reports[0].result.as_ref().err().map(|f| f.step),
            Some(Step::Platform)
        );
    }

    #[test]
    fn checkpoints_are_distinct_and_largest_first() {
        let key = b"\x01\x00\x20key-config-bytes";
        let verifier = Verifier::new(
            TrustAnchor::InsecureEmulated(emulated_root()),
            Policy::default().with_snp_measurement(MEASUREMENT),
            SystemClock,
        );
        let directory = NodeDirectory {
            version: DIRECTORY_VERSION,
            token_challenge: String::new(),
            nodes: vec![entry("good", bundle_json(&bundle(key, MEASUREMENT, true)))],
        };
        let template = verify_directory(&verifier, &directory).remove(0);
        let with = |size: u64, root: u8, passed: bool| {
            let mut r = template.clone();
            let cp = VerifiedCheckpoint {
                size,
                root: [root; 32],
                witnesses: vec![],
            };
            r.result.as_mut().expect("the template passed").logged = Some(cp);
            if !passed {
                r.result = Err(NodeFailure {
                    id: r.id.clone(),
                    step: Step::Expiry,
                    error: VerifyError::LogProofMissing,
                });
            }
            r
        };
        let reports = vec![
            with(5, 1, true),
            with(7, 2, true),
            with(5, 1, true),
            with(5, 3, true),
            with(9, 9, false),
        ];
        let got: Vec<(u64, u8)> = checkpoints(&reports)
            .iter()
            .map(|c| (c.size, c.root[0]))
            .collect();
        assert_eq!(got, vec![(7, 2), (5, 1), (5, 3)]);
    }
}
