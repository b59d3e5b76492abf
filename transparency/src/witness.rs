//! A witness: it keeps the last checkpoint it cosigned, and cosigns a new one only when it is
//! signed by the log and a consistency proof shows the old tree is a prefix of it. A
//! checkpoint that is not an extension of what it saw (a split view) gets no cosignature.

use std::path::{Path, PathBuf};

use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::cosign::CosignatureSigner;
use crate::verify::SeenCheckpoint;
use crate::{LogError, io};

/// A witness for one log, its state in a file.
pub struct Witness {
    signer: CosignatureSigner,
    log: VerifierList,
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
            log: VerifierList::new(vec![Box::new(v)]),
            origin,
            state: state.to_path_buf(),
        })
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

    /// Cosigns `signed` (a checkpoint note) given the consistency `proof` from the last one
    /// cosigned; returns the note with the cosignature added.
    pub fn cosign(&self, signed: &[u8], proof: &[Hash]) -> Result<Vec<u8>, LogError> {
        let mut note = Note::from_bytes(signed).map_err(|e| LogError::Checkpoint(e.to_string()))?;
        note.verify(&self.log)
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
