//! A witness: it keeps the last checkpoint it cosigned, and cosigns a new one only when it is
//! signed by the log and a consistency proof shows the old tree is a prefix of it. A
//! checkpoint that is not an extension of what it saw (a split view) gets no cosignature.

use std::path::{Path, PathBuf};

use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::cosign::CosignatureSigner;
use crate::verify::SeenCheckpoint;
use crate::{LogError, io};

/// Why a witness did not cosign an `add-checkpoint` request.
#[derive(Debug, thiserror::Error)]
pub enum WitnessRefusal {
    /// The request is not in the protocol's shape.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The request's old size is not the size last cosigned (which this carries).
    #[error("the witness last cosigned a tree of {0}")]
    Conflict(u64),
    /// The checkpoint or proof was refused.
    #[error(transparent)]
    Log(LogError),
}

impl WitnessRefusal {
    /// The HTTP status C2SP tlog-witness gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            WitnessRefusal::Malformed(_) => 400,
            WitnessRefusal::Conflict(_) => 409,
            WitnessRefusal::Log(LogError::SplitView { .. }) => 422,
            WitnessRefusal::Log(LogError::Checkpoint(_)) => 403,
            WitnessRefusal::Log(_) => 500,
        }
    }
}

/// A witness for one log, its state in a file.
pub struct Witness {
    signer: CosignatureSigner,
    log_key: String,
    origin: String,
    state: PathBuf,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("origin", &self.origin)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// A witness of the log with signed-note verifier key `log_key`, signing with `signer`,
    /// keeping its last cosigned checkpoint in `state`.
    pub fn new(signer: CosignatureSigner, log_key: &str, state: &Path) -> Result<Self, LogError> {
        let v = StandardVerifier::new(log_key)
            .map_err(|_| LogError::VerifierKey(log_key.chars().take(80).collect()))?;
        let origin = signed_note::Verifier::name(&v).to_owned();
        Ok(Witness {
            signer,
            log_key: log_key.to_owned(),
            origin,
            state: state.to_path_buf(),
        })
    }

    /// Cosignatures from now on state `time` (seconds since the epoch).
    pub fn set_time(&mut self, time: u64) {
        self.signer.set_time(time);
    }

    /// The last checkpoint cosigned (size 0 before the first).
    pub fn seen(&self) -> Result<SeenCheckpoint, LogError> {
        match std::fs::read(&self.state) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| LogError::WitnessState(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SeenCheckpoint {
                size: 0,
                root: tlog_tiles::EMPTY_HASH.0,
            }),
            Err(e) => Err(io(&self.state)(e)),
        }
    }

    /// The C2SP tlog-witness `add-checkpoint` request: `old <size>`, the consistency proof
    /// (one base64 hash per line), an empty line, then the signed checkpoint. Returns the
    /// cosignature line to send back; an `old` that is not the size last cosigned is a
    /// [`WitnessRefusal::Conflict`] naming that size, so the log can retry with the right proof.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<u8>, WitnessRefusal> {
        let bad = |why: &str| WitnessRefusal::Malformed(why.to_owned());
        let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line"))?;
        let mut lines = head.lines();
        let old: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad("the first line is not `old <size>`"))?;
        let proof = lines
            .map(|l| {
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, l)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash)
                    .ok_or_else(|| bad("a proof line is not a base64 hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seen = self.seen().map_err(WitnessRefusal::Log)?;
        if old != seen.size {
            return Err(WitnessRefusal::Conflict(seen.size));
        }
        let signed = self
            .cosign(note.as_bytes(), &proof)
            .map_err(WitnessRefusal::Log)?;
        // The new signature is the note's last line.
        let line = String::from_utf8_lossy(&signed)
            .trim_end()
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(format!("{line}\n").into_bytes())
    }

    /// Cosigns `signed` (a checkpoint note) given the consistency `proof` from the last one
    /// cosigned; returns the note with the cosignature added.
    pub fn cosign(&self, signed: &[u8], proof: &[Hash]) -> Result<Vec<u8>, LogError> {
        let mut note = Note::from_bytes(signed).map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let log = StandardVerifier::new(&self.log_key)
            .map_err(|_| LogError::VerifierKey(self.log_key.chars().take(80).collect()))?;
        note.verify(&VerifierList::new(vec![Box::new(log)]))
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let cp =
            Checkpoint::from_bytes(note.text()).map_err(|e| LogError::Checkpoint(e.to_string()))?;
        if cp.origin() != self.origin {
            return Err(LogError::Checkpoint(format!("origin {}", cp.origin())));
        }
        let mut seen = self.seen()?;
        let before = seen;
        seen.advance(
            &crate::VerifiedCheckpoint {
                size: cp.size(),
                root: cp.hash().0,
                witnesses: Vec::new(),
            },
            proof,
        )
        .map_err(|e| LogError::SplitView {
            seen: before.size,
            offered: cp.size(),
            reason: e.to_string(),
        })?;
        // The state is saved before the cosignature leaves: a crash in between at worst
        // withholds one cosignature, never signs two views.
        let tmp = self.state.with_extension("tmp");
        let bytes = serde_json::to_vec(&seen).map_err(|e| LogError::WitnessState(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.state).map_err(io(&self.state))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        Ok(note.to_bytes())
    }
}
