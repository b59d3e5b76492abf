//! A witness: it keeps the last checkpoint it cosigned, and cosigns a new one only when it is
//! signed by the log and a consistency proof shows the old tree is a prefix of it. A
//! checkpoint that is not an extension of what it saw (a split view) gets no cosignature.

use std::path::{Path, PathBuf};

use signed_note::{Note, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::cosign::CosignatureSigner;
use crate::verify::SeenCheckpoint;
use crate::{LogError, io};

/// Why a witness did not cosign an `add-checkpoint` request, each with the HTTP status that
/// C2SP tlog-witness gives it.
#[derive(Debug, thiserror::Error)]
pub enum WitnessRefusal {
    /// The request is not in the protocol's shape (400).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The checkpoint's origin is not the log this witness follows (404).
    #[error("unknown log origin {0:?}")]
    UnknownOrigin(String),
    /// No signature by the log's key verifies (403).
    #[error("no signature by the log's key verifies: {0}")]
    NotSignedByLog(String),
    /// The old size is larger than the checkpoint's size (400).
    #[error("old size {old} is larger than the checkpoint's size {size}")]
    OldSizeTooLarge {
        /// The request's old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The request's old size is not the size last cosigned, which this carries (409, body
    /// `text/x.tlog.size`).
    #[error("the witness last cosigned a tree of {0}")]
    Conflict(u64),
    /// A checkpoint of the size last cosigned with another root hash: a split view (409).
    #[error("a tree of {0} with another root than the one cosigned: a split view")]
    OtherRoot(u64),
    /// The consistency proof does not verify (422).
    #[error("the consistency proof from {old} to {size} does not verify")]
    Inconsistent {
        /// The old size.
        old: u64,
        /// The checkpoint's size.
        size: u64,
    },
    /// The witness's own state could not be read or written (500).
    #[error(transparent)]
    Log(LogError),
}

impl WitnessRefusal {
    /// The HTTP status C2SP tlog-witness gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            WitnessRefusal::Malformed(_) | WitnessRefusal::OldSizeTooLarge { .. } => 400,
            WitnessRefusal::NotSignedByLog(_) => 403,
            WitnessRefusal::UnknownOrigin(_) => 404,
            WitnessRefusal::Conflict(_) | WitnessRefusal::OtherRoot(_) => 409,
            WitnessRefusal::Inconsistent { .. } => 422,
            WitnessRefusal::Log(_) => 500,
        }
    }

    /// The size a 409 names (the size last cosigned), for the `text/x.tlog.size` body.
    pub fn conflict_size(&self) -> Option<u64> {
        match self {
            WitnessRefusal::Conflict(size) | WitnessRefusal::OtherRoot(size) => Some(*size),
            _ => None,
        }
    }
}

/// The most consistency-proof lines a request may carry (C2SP tlog-witness).
const MAX_PROOF_LINES: usize = 63;

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
    /// cosignature line to send back. The checks run in the specification's order: the
    /// checkpoint's origin (404) and the log's signature (403) before anything about sizes, so
    /// that nobody learns the witness's state without a checkpoint the log signed; then the
    /// old size against the checkpoint's (400) and against the size last cosigned (409, naming
    /// it); then the proof (422), or for the same size the root (409).
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<Vec<u8>, WitnessRefusal> {
        let bad = |why: &str| WitnessRefusal::Malformed(why.to_owned());
        let text = std::str::from_utf8(body).map_err(|_| bad("not UTF-8"))?;
        let (head, note) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
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
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 consistency proof lines"));
        }
        let (mut note, cp) = self.verified(note.as_bytes())?;
        self.record(&cp, old, &proof)?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| WitnessRefusal::Log(LogError::Checkpoint(e.to_string())))?;
        // The new signature is the note's last line.
        let signed = note.to_bytes();
        let line = String::from_utf8_lossy(&signed)
            .trim_end()
            .rsplit('\n')
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(format!("{line}\n").into_bytes())
    }

    /// Cosigns `signed` (a checkpoint note) given the consistency `proof` from the last one
    /// cosigned (a witness run in-process, as `cargo xtask publish` does); returns the note
    /// with the cosignature added.
    pub fn cosign(&self, signed: &[u8], proof: &[Hash]) -> Result<Vec<u8>, LogError> {
        let seen = self.seen()?;
        let refused = |r: WitnessRefusal, offered: u64| match r {
            WitnessRefusal::Log(e) => e,
            r @ (WitnessRefusal::OldSizeTooLarge { .. }
            | WitnessRefusal::OtherRoot(_)
            | WitnessRefusal::Inconsistent { .. }) => LogError::SplitView {
                seen: seen.size,
                offered,
                reason: r.to_string(),
            },
            r => LogError::Checkpoint(r.to_string()),
        };
        let (mut note, cp) = self.verified(signed).map_err(|r| refused(r, 0))?;
        self.record(&cp, seen.size, proof)
            .map_err(|r| refused(r, cp.size()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        Ok(note.to_bytes())
    }

    /// The note and its checkpoint, if it is this log's (404 otherwise) and the log signed it
    /// (403 otherwise).
    fn verified(&self, signed: &[u8]) -> Result<(Note, Checkpoint), WitnessRefusal> {
        let note = Note::from_bytes(signed)
            .map_err(|e| WitnessRefusal::Malformed(format!("the checkpoint note: {e}")))?;
        let cp = Checkpoint::from_bytes(note.text())
            .map_err(|e| WitnessRefusal::Malformed(format!("the checkpoint: {e}")))?;
        if cp.origin() != self.origin {
            return Err(WitnessRefusal::UnknownOrigin(
                cp.origin().chars().take(100).collect(),
            ));
        }
        let log = StandardVerifier::new(&self.log_key).map_err(|_| {
            WitnessRefusal::Log(LogError::VerifierKey(
                self.log_key.chars().take(80).collect(),
            ))
        })?;
        note.verify(&VerifierList::new(vec![Box::new(log)]))
            .map_err(|e| WitnessRefusal::NotSignedByLog(e.to_string()))?;
        Ok((note, cp))
    }

    /// Checks `cp` against the state for a request whose old size is `old`, and records it.
    /// The state is saved before the cosignature leaves: a crash in between at worst withholds
    /// one cosignature, never signs two views.
    fn record(&self, cp: &Checkpoint, old: u64, proof: &[Hash]) -> Result<(), WitnessRefusal> {
        let size = cp.size();
        if old > size {
            return Err(WitnessRefusal::OldSizeTooLarge { old, size });
        }
        let seen = self.seen().map_err(WitnessRefusal::Log)?;
        if old != seen.size {
            return Err(WitnessRefusal::Conflict(seen.size));
        }
        if old == size {
            // The same tree again: its root must be the one cosigned (and the proof empty).
            if cp.hash().0 != seen.root {
                return Err(WitnessRefusal::OtherRoot(seen.size));
            }
            if !proof.is_empty() {
                return Err(WitnessRefusal::Inconsistent { old, size });
            }
            return Ok(());
        }
        let consistent = if old == 0 {
            // RFC 6962 has no proof from the empty tree: the proof must be empty.
            proof.is_empty()
        } else {
            tlog_tiles::check_tree(&proof.to_vec(), size, *cp.hash(), old, Hash(seen.root)).is_ok()
        };
        if !consistent {
            return Err(WitnessRefusal::Inconsistent { old, size });
        }
        let next = SeenCheckpoint {
            size,
            root: cp.hash().0,
        };
        let tmp = self.state.with_extension("tmp");
        let bytes = serde_json::to_vec(&next)
            .map_err(|e| WitnessRefusal::Log(LogError::WitnessState(e.to_string())))?;
        let save = || -> std::io::Result<()> {
            std::fs::write(&tmp, &bytes)?;
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &self.state)
        };
        save().map_err(|e| WitnessRefusal::Log(io(&self.state)(e)))
    }
}
