//! The verifier: an ordered chain of named checks with an injected clock.
//!
//! Order (ARCHITECTURE.md, "Evidence and binding"): parse → platform accepted by the anchor →
//! chain to the pinned root → report signature → policy → report_data binding → expiry →
//! measurement. With a trusted transparency log ([`Verifier::with_log`]) the measurement step
//! demands the bundle's log proof: the checkpoint signed by the log and enough witnesses, the
//! entry's inclusion, and the reported measurement and manifest in that release record.
//! Without one, the measurement must be in the policy's allow-set.

use cloister_protocol::{Endorsements, EvidenceBundle, Platform, report_data};
use cloister_transparency::{TrustedLog, VerifiedCheckpoint};

use crate::anchor::{SnpRoot, TrustAnchor};
use crate::clock::Clock;
use crate::error::VerifyError;
use crate::machine::MachineId;
use crate::policy::{Digest48, MinTcb, Policy};
use crate::{snp, tdx};

/// A verification step, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Decode the bundle, the report or quote, and the endorsements.
    Parse,
    /// The anchor covers the bundle's platform.
    Platform,
    /// Certificate chain (SNP) or collateral (TDX) leads to a pinned root and is current.
    Chain,
    /// The hardware's signature over the report or quote.
    Signature,
    /// Guest policy, VMPL, TCB (SNP); TCB status and TD attributes (TDX).
    Policy,
    /// `report_data` binds the key config, expiry and nonce.
    Binding,
    /// The evidence has not expired.
    Expiry,
    /// The launch measurement is an accepted one.
    Measurement,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 8] = [
        Step::Parse,
        Step::Platform,
        Step::Chain,
        Step::Signature,
        Step::Policy,
        Step::Binding,
        Step::Expiry,
        Step::Measurement,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Step::Parse => "parse",
            Step::Platform => "platform",
            Step::Chain => "chain",
            Step::Signature => "signature",
            Step::Policy => "policy",
            Step::Binding => "binding",
            Step::Expiry => "expiry",
            Step::Measurement => "measurement",
        }
    }
}

/// The outcome of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Which step.
    pub step: Step,
    /// What it found, or why it refused.
    pub result: Result<String, VerifyError>,
}

/// The outcome of every step that could run. Steps after a refused parse, platform, chain or
/// signature step do not run (their inputs are not authenticated); policy, binding, expiry and
/// measurement are independent of each other and all run once the signature holds, so a
/// diagnosis shows every problem at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Checks in order.
    pub checks: Vec<Check>,
    /// The machine that signed the evidence, once its signature held.
    machine: Option<MachineId>,
    accepted: Option<Accepted>,
}

impl Inspection {
    /// The first refusal, in step order.
    pub fn first_error(&self) -> Option<&VerifyError> {
        self.checks.iter().find_map(|c| c.result.as_ref().err())
    }

    /// The refusal of one step, if it ran and refused.
    pub fn error_at(&self, step: Step) -> Option<&VerifyError> {
        self.checks
            .iter()
            .find(|c| c.step == step)
            .and_then(|c| c.result.as_ref().err())
    }

    /// The inspection of a bundle that could not even be decoded.
    pub fn refused_at_parse(error: VerifyError) -> Self {
        Inspection {
            checks: vec![Check {
                step: Step::Parse,
                result: Err(error),
            }],
            machine: None,
            accepted: None,
        }
    }

    /// The machine the evidence comes from, known once the chain and the signature held
    /// (even if a later step refused).
    pub fn machine(&self) -> Option<&MachineId> {
        self.machine.as_ref()
    }

    /// Whether every step ran and passed.
    pub fn is_accepted(&self) -> bool {
        self.accepted.is_some() && self.first_error().is_none()
    }
}

/// The measurement a verified bundle attests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measurement {
    /// SNP launch digest.
    Snp(Digest48),
    /// TDX build-time and run-time registers.
    Tdx {
        /// MRTD.
        mrtd: Digest48,
        /// RTMR0..=3.
        rtmrs: [Digest48; 4],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Accepted {
    measurement: Measurement,
    tcb: String,
    logged: Option<VerifiedCheckpoint>,
}

/// A bundle that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Platform.
    pub platform: Platform,
    /// The attested measurement.
    pub measurement: Measurement,
    /// The attested TCB, one line.
    pub tcb: String,
    /// The guest's OHTTP key config, now bound to the measurement.
    pub key_config: Vec<u8>,
    /// When the key expires (Unix seconds).
    pub expires_at: u64,
    /// The image manifest digest the bundle names.
    pub image_manifest_digest: [u8; 32],
    /// The machine that signed the evidence (SNP chip, TDX platform).
    pub machine: MachineId,
    /// The log checkpoint the measurement was found under, when a log is trusted (a device
    /// advances its `SeenCheckpoint` with it: no rollback, no fork).
    pub logged: Option<VerifiedCheckpoint>,
    /// The checks that passed, in order.
    pub checks: Vec<Check>,
}

/// Verifies evidence bundles against a trust anchor and a policy at the clock's time.
#[derive(Debug)]
pub struct Verifier<C: Clock> {
    anchor: TrustAnchor,
    policy: Policy,
    clock: C,
    log: Option<TrustedLog>,
}

struct Run {
    checks: Vec<Check>,
    machine: Option<MachineId>,
}

impl Run {
    /// Records a step; returns its value when it passed.
    fn step<T>(
        &mut self,
        step: Step,
        r: Result<T, VerifyError>,
        ok: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match r {
            Ok(v) => {
                self.checks.push(Check {
                    step,
                    result: Ok(ok(&v)),
                });
                Some(v)
            }
            Err(e) => {
                self.checks.push(Check {
                    step,
                    result: Err(e),
                });
                None
            }
        }
    }
}

impl<C: Clock> Verifier<C> {
    /// A verifier for this anchor, policy and clock.
    pub fn new(anchor: TrustAnchor, policy: Policy, clock: C) -> Self {
        Verifier {
            anchor,
            policy,
            clock,
            log: None,
        }
    }

    /// Accept only measurements found in this log (instead of the policy's allow-set for
    /// SNP; in addition to the policy's RTMR references for TDX, whose release records carry
    /// the MRTD only).
    pub fn with_log(mut self, log: TrustedLog) -> Self {
        self.log = Some(log);
        self
    }

    /// The anchor.
    pub fn anchor(&self) -> &TrustAnchor {
        &self.anchor
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Decodes and verifies a bundle's JSON wire form. `nonce` is what the client asked the
    /// guest to bind (empty for the guest's cached bundle).
    pub fn verify_json(&self, bundle: &[u8], nonce: &[u8]) -> Result<Verified, VerifyError> {
        let bundle = EvidenceBundle::from_json(bundle)?;
        self.verify(&bundle, nonce)
    }

    /// Verifies a bundle; the first refusal in step order is the error.
    pub fn verify(&self, bundle: &EvidenceBundle, nonce: &[u8]) -> Result<Verified, VerifyError> {
        let inspection = self.inspect(bundle, nonce);
        if let Some(e) = inspection.first_error() {
            return Err(e.clone());
        }
        match (inspection.accepted, inspection.machine) {
            (Some(a), Some(machine)) => Ok(Verified {
                platform: bundle.platform,
                measurement: a.measurement,
                tcb: a.tcb,
                key_config: bundle.key_config.clone(),
                expires_at: bundle.expires_at,
                image_manifest_digest: bundle.image_manifest_digest,
                logged: a.logged,
                machine,
                checks: inspection.checks,
            }),
            // Unreachable by construction (no error means every step ran); fail closed anyway.
            _ => Err(VerifyError::ReportDataMismatch),
        }
    }

    /// Runs every step that can run and reports each outcome (see [`Inspection`]).
    pub fn inspect(&self, bundle: &EvidenceBundle, nonce: &[u8]) -> Inspection {
        let now = self.clock.now_unix();
        let mut run = Run {
            checks: Vec::new(),
            machine: None,
        };
        let accepted = match &bundle.endorsements {
            Endorsements::Snp(certs) => self.inspect_snp(&mut run, bundle, certs, nonce, now),
            Endorsements::Tdx { collateral } => {
                self.inspect_tdx(&mut run, bundle, collateral, nonce, now)
            }
        };
        Inspection {
            checks: run.checks,
            machine: run.machine,
            accepted,
        }
    }

    fn snp_roots(&self, platform: Platform) -> Result<&[SnpRoot], VerifyError> {
        match (&self.anchor, platform) {
            (TrustAnchor::Hardware(h), Platform::SevSnp) => Ok(h.amd()),
            (TrustAnchor::InsecureEmulated(e), Platform::EmulatedSevSnp) => {
                Ok(std::slice::from_ref(&*e.root))
            }
            _ => Err(VerifyError::PlatformNotTrusted {
                platform,
                anchor: self.anchor.name(),
            }),
        }
    }

    fn inspect_snp(
        &self,
        run: &mut Run,
        bundle: &EvidenceBundle,
        certs: &cloister_protocol::SnpCertificates,
        nonce: &[u8],
        now: u64,
    ) -> Option<Accepted> {
        let ev = run.step(Step::Parse, snp::parse(&bundle.evidence, certs), |e| {
            format!(
                "SNP report v{}, {} certificates",
                e.report.version,
                1 + certs.ask.is_some() as u8 + certs.ark.is_some() as u8
            )
        })?;
        let roots = run.step(Step::Platform, self.snp_roots(bundle.platform), |_| {
            format!(
                "{} under the {} anchor",
                bundle.platform,
                self.anchor.name()
            )
        })?;
        let hardware = matches!(self.anchor, TrustAnchor::Hardware(_));
        let require_crl = hardware && self.policy.snp_require_crl;
        let (_, product) = run.step(
            Step::Chain,
            snp::check_chain(roots, &ev, now, require_crl),
            |(line, _)| line.clone(),
        )?;
        run.step(Step::Signature, snp::check_signature(&ev), String::clone)?;
        run.machine = Some(MachineId::SnpChip(ev.report.chip_id.to_vec()));
        let reported = Digest48(ev.report.measurement);
        // The logged release (when a log is trusted) is read first: its TCB floor raises the
        // policy step's.
        let in_log_result = self
            .log
            .as_ref()
            .map(|log| logged(log, bundle, &reported.to_hex()));
        let release_floor = match &in_log_result {
            Some(Ok((_, record))) => record
                .snp_min_tcb
                .as_ref()
                .and_then(|floors| floors.get(product))
                .map(|t| MinTcb {
                    bootloader: t.bootloader,
                    tee: t.tee,
                    snp: t.snp,
                    microcode: t.microcode,
                    fmc: t.fmc,
                }),
            _ => None,
        };
        let policy = run.step(
            Step::Policy,
            snp::check_policy(&ev, &self.policy, product, hardware, release_floor),
            String::clone,
        );
        let binding = run.step(
            Step::Binding,
            self.check_binding(&ev.report.report_data, bundle, nonce),
            String::clone,
        );
        let expiry = run.step(Step::Expiry, self.check_expiry(bundle, now), String::clone);
        let measurement = match in_log_result {
            None => run.step(
                Step::Measurement,
                snp::check_measurement(&ev, &self.policy).map(|m| (m, None)),
                |(m, _)| format!("{m} is accepted"),
            ),
            Some(result) => run.step(
                Step::Measurement,
                result.map(|(cp, _)| (reported, Some(cp))),
                |(m, cp)| in_log(m, cp.as_ref()),
            ),
        };
        policy?;
        binding?;
        expiry?;
        let (measurement, logged) = measurement?;
        Some(Accepted {
            measurement: Measurement::Snp(measurement),
            tcb: snp::tcb_summary(&ev.report),
            logged,
        })
    }

    fn inspect_tdx(
        &self,
        run: &mut Run,
        bundle: &EvidenceBundle,
        collateral: &[u8],
        nonce: &[u8],
        now: u64,
    ) -> Option<Accepted> {
        let ev = run.step(Step::Parse, tdx::parse(&bundle.evidence, collateral), |e| {
            format!("TDX quote, MRTD {}…", &hex::encode(e.td.mr_td)[..16])
        })?;
        let platform_ok = match (&self.anchor, bundle.platform) {
            (TrustAnchor::Hardware(_), Platform::Tdx) => Ok(()),
            (anchor, platform) => Err(VerifyError::PlatformNotTrusted {
                platform,
                anchor: anchor.name(),
            }),
        };
        run.step(Step::Platform, platform_ok, |_| {
            "tdx under Intel's pinned root (dcap-qvl)".to_owned()
        })?;
        run.step(
            Step::Chain,
            tdx::check_collateral_window(&ev, now, &self.policy),
            String::clone,
        )?;
        let (verified, machine) =
            run.step(Step::Signature, tdx::check_quote(&ev, now), |(_, m)| {
                format!("PCK chain to Intel root, QE report and quote signature; {m}")
            })?;
        run.machine = Some(machine);
        let (mrtd, rtmrs, rd) = match tdx::registers(&verified) {
            Ok(r) => r,
            Err(e) => {
                run.step::<()>(Step::Policy, Err(e), |_| String::new());
                return None;
            }
        };
        let policy = run.step(
            Step::Policy,
            tdx::check_policy(&verified, &self.policy),
            String::clone,
        );
        let binding = run.step(
            Step::Binding,
            self.check_binding(&rd, bundle, nonce),
            String::clone,
        );
        let expiry = run.step(Step::Expiry, self.check_expiry(bundle, now), String::clone);
        let measurement = run.step(
            Step::Measurement,
            tdx::check_measurement(&verified, &mrtd, &rtmrs, &self.policy).and_then(|found| {
                match &self.log {
                    None => Ok((found, None)),
                    Some(log) => {
                        logged(log, bundle, &mrtd.to_hex()).map(|(cp, _)| (found, Some(cp)))
                    }
                }
            }),
            |(found, cp)| match cp {
                None => found.clone(),
                Some(cp) => format!("{found}; {}", in_log(&mrtd, Some(cp))),
            },
        );
        policy?;
        binding?;
        expiry?;
        let (_, logged) = measurement?;
        Some(Accepted {
            measurement: Measurement::Tdx { mrtd, rtmrs },
            tcb: verified.status.clone(),
            logged,
        })
    }

    fn check_binding(
        &self,
        found: &[u8; 64],
        bundle: &EvidenceBundle,
        nonce: &[u8],
    ) -> Result<String, VerifyError> {
        let expected = report_data(&bundle.key_config, bundle.expires_at, nonce)?;
        // Public values: no constant-time comparison needed.
        if *found == expected {
            Ok(if nonce.is_empty() {
                "report_data binds the key config and expiry".to_owned()
            } else {
                "report_data binds the key config, expiry and the client's nonce".to_owned()
            })
        } else {
            Err(VerifyError::ReportDataMismatch)
        }
    }

    fn check_expiry(&self, bundle: &EvidenceBundle, now: u64) -> Result<String, VerifyError> {
        let expires_at = bundle.expires_at;
        if now >= expires_at {
            return Err(VerifyError::Expired { expires_at, now });
        }
        let max_lifetime = self.policy.max_evidence_lifetime_secs;
        if expires_at - now > max_lifetime {
            return Err(VerifyError::ExpiryTooFar {
                expires_at,
                max_lifetime,
                now,
            });
        }
        Ok(format!("valid for {} s more", expires_at - now))
    }
}

/// The measurement step's log check: the bundle's proof verifies under `log`, and its release
/// record holds the reported `measurement` (hex) for the bundle's platform and the bundle's
/// manifest digest.
fn logged(
    log: &TrustedLog,
    bundle: &EvidenceBundle,
    measurement: &str,
) -> Result<(VerifiedCheckpoint, cloister_transparency::ReleaseRecord), VerifyError> {
    let proof = bundle
        .log_proof
        .as_ref()
        .ok_or(VerifyError::LogProofMissing)?;
    let (record, checkpoint) = log.verify_proof(proof).map_err(VerifyError::Log)?;
    let platform = bundle.platform.as_str();
    if !record.has_measurement(platform, measurement) {
        return Err(VerifyError::NotInLog {
            platform: platform.to_owned(),
            measurement: measurement.to_owned(),
        });
    }
    let found = hex::encode(bundle.image_manifest_digest);
    if record.manifest_sha256 != found {
        return Err(VerifyError::ManifestNotInLog {
            logged: record.manifest_sha256,
            found,
        });
    }
    Ok((checkpoint, record))
}

fn in_log(m: &Digest48, cp: Option<&VerifiedCheckpoint>) -> String {
    match cp {
        Some(cp) => format!(
            "{}… is in the log (tree of {}, {} witness cosignatures)",
            &m.to_hex()[..16],
            cp.size,
            cp.witnesses.len()
        ),
        None => format!("{m} is accepted"),
    }
}
