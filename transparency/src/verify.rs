//! The verifying half: what a device checks, offline, from the log proof the operator attaches
//! to a node's evidence (`cloister_protocol::LogProof`) —
//! the checkpoint's log signature, K of N witness cosignatures, the entry's inclusion proof —
//! and, against the newest checkpoint it verified before, a consistency proof (no rollback,
//! no fork).

use cloister_protocol::LogProof;
use serde::{Deserialize, Serialize};
use signed_note::{Note, NoteError, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash};

use crate::cosign::CosignatureVerifier;
use crate::{ReleaseRecord, VerifyError};

/// How many of the configured witnesses must cosign a checkpoint.
///
/// A log's own signature proves only that the log said so: a log that shows one device a tree
/// no one else sees (a split view, to hide a release from auditors) signs it just as well.
/// Witnesses cosign a checkpoint only when it extends every one they saw before, so a device
/// that demands their cosignatures sees the tree everyone sees. Trusting the log's signature
/// alone is therefore a named, insecure choice, not a zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quorum {
    /// At least this many distinct configured witnesses.
    Witnesses(std::num::NonZeroUsize),
    /// INSECURE: the log's signature alone; a split view goes unnoticed.
    InsecureLogSignatureOnly,
}

impl Quorum {
    /// One witness: the least a production device accepts.
    pub const ONE: Quorum = Quorum::Witnesses(std::num::NonZeroUsize::MIN);

    /// Cosignatures required.
    pub fn count(self) -> usize {
        match self {
            Quorum::Witnesses(n) => n.get(),
            Quorum::InsecureLogSignatureOnly => 0,
        }
    }
}

/// The keys a device trusts: the log's, and the witnesses of which `quorum` must cosign.
#[derive(Debug, Clone)]
pub struct TrustedLog {
    origin: String,
    log_key: String,
    witnesses: Vec<CosignatureVerifier>,
    quorum: usize,
}

/// A checkpoint whose signatures verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    /// Entries in the tree.
    pub size: u64,
    /// The tree's root hash.
    pub root: [u8; 32],
    /// The witnesses that cosigned it (names).
    pub witnesses: Vec<String>,
}

impl TrustedLog {
    /// Trust the log with signed-note verifier key `log_key` and origin its key name, and
    /// `witness_keys` (tlog-cosignature verifier keys) of which `quorum` must cosign.
    pub fn new(
        log_key: &str,
        witness_keys: &[String],
        quorum: Quorum,
    ) -> Result<Self, VerifyError> {
        let quorum = quorum.count();
        let v = StandardVerifier::new(log_key)
            .map_err(|_| VerifyError::Key(log_key.chars().take(80).collect()))?;
        let witnesses = witness_keys
            .iter()
            .map(|k| CosignatureVerifier::new(k).map_err(|_| VerifyError::Key(k.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        if quorum > witnesses.len() {
            return Err(VerifyError::Quorum {
                quorum,
                witnesses: witnesses.len(),
            });
        }
        Ok(TrustedLog {
            origin: v.name().to_owned(),
            log_key: log_key.to_owned(),
            witnesses,
            quorum,
        })
    }

    /// Checks a signed checkpoint: the log's signature, the origin, and at least `quorum`
    /// distinct configured witnesses' cosignatures.
    pub fn verify_checkpoint(&self, signed: &[u8]) -> Result<VerifiedCheckpoint, VerifyError> {
        let note = Note::from_bytes(signed).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let log = StandardVerifier::new(&self.log_key)
            .map_err(|_| VerifyError::Key(self.log_key.clone()))?;
        let log_id = (log.name().to_owned(), log.key_id());
        let mut all: Vec<Box<dyn Verifier>> = vec![Box::new(log)];
        all.extend(
            self.witnesses
                .iter()
                .map(|w| Box::new(w.clone()) as Box<dyn Verifier>),
        );
        let (verified, _) = note.verify(&VerifierList::new(all)).map_err(|e| match e {
            NoteError::InvalidSignature { name, .. } => VerifyError::BadSignature(name),
            NoteError::UnverifiedNote => VerifyError::NoLogSignature,
            e => VerifyError::Malformed(e.to_string()),
        })?;
        if !verified
            .iter()
            .any(|s| (s.name(), s.id()) == (log_id.0.as_str(), log_id.1))
        {
            return Err(VerifyError::NoLogSignature);
        }
        let witnesses: Vec<String> = verified
            .iter()
            .filter(|s| (s.name(), s.id()) != (log_id.0.as_str(), log_id.1))
            .map(|s| s.name().to_owned())
            .collect();
        if witnesses.len() < self.quorum {
            return Err(VerifyError::Witnesses {
                have: witnesses.len(),
                need: self.quorum,
            });
        }
        let cp = Checkpoint::from_bytes(note.text())
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if cp.origin() != self.origin {
            return Err(VerifyError::Origin(cp.origin().to_owned()));
        }
        Ok(VerifiedCheckpoint {
            size: cp.size(),
            root: cp.hash().0,
            witnesses,
        })
    }

    /// Checks a log proof, offline: its checkpoint, then the entry's inclusion under it.
    /// Returns the release record and the checkpoint.
    pub fn verify_proof(
        &self,
        proof: &LogProof,
    ) -> Result<(ReleaseRecord, VerifiedCheckpoint), VerifyError> {
        let cp = self.verify_checkpoint(proof.checkpoint.as_bytes())?;
        if proof.leaf_index >= cp.size {
            return Err(VerifyError::IndexBeyondTree {
                index: proof.leaf_index,
                size: cp.size,
            });
        }
        let path: Vec<Hash> = proof.inclusion_proof.iter().map(|h| Hash(*h)).collect();
        tlog_tiles::check_record(
            &path,
            cp.size,
            Hash(cp.root),
            proof.leaf_index,
            tlog_tiles::record_hash(&proof.entry),
        )
        .map_err(|_| VerifyError::Inclusion)?;
        let record = ReleaseRecord::from_bytes(&proof.entry)
            .map_err(|e| VerifyError::Malformed(e.to_string()))?;
        Ok((record, cp))
    }
}

/// The newest checkpoint a device has verified; it moves only forward along one tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenCheckpoint {
    /// Entries in the tree.
    pub size: u64,
    /// Its root hash.
    #[serde(with = "hex::serde")]
    pub root: [u8; 32],
}

impl SeenCheckpoint {
    /// Moves to `new` if `proof` shows this tree is a prefix of it; an older tree is a
    /// rollback and another tree of a size already seen, or one the proof does not join, a
    /// fork.
    pub fn advance(&mut self, new: &VerifiedCheckpoint, proof: &[Hash]) -> Result<(), VerifyError> {
        if new.size < self.size {
            return Err(VerifyError::Rollback {
                seen: self.size,
                offered: new.size,
            });
        }
        if new.size == self.size {
            return if new.root == self.root {
                Ok(())
            } else {
                Err(VerifyError::Fork { size: new.size })
            };
        }
        if self.size > 0 {
            tlog_tiles::check_tree(
                &proof.to_vec(),
                new.size,
                Hash(new.root),
                self.size,
                Hash(self.root),
            )
            .map_err(|_| VerifyError::Fork { size: new.size })?;
        }
        *self = SeenCheckpoint {
            size: new.size,
            root: new.root,
        };
        Ok(())
    }
}
