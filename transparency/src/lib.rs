//! Cloister's transparency log of release measurements.
//!
//! The operator must publish every measurement it wants devices to accept in an append-only
//! log run by a third party. This crate is both halves:
//!
//! * [`Log`] — the log on disk in the C2SP `tlog-tiles` layout (static files any web server or
//!   object store can serve), its `tlog-checkpoint` signed as a `signed-note` (Ed25519), with
//!   durable, atomic, batched appends ([`storage`]);
//! * [`Witness`] — cosigns (C2SP `tlog-cosignature/v1`) only checkpoints that extend the last
//!   one it cosigned;
//! * [`TrustedLog`] and [`SeenCheckpoint`] — what a device checks offline from an
//!   [`LogProof`]: the log's signature, K of N witnesses, the inclusion proof, and
//!   consistency with the newest checkpoint it saw before.
//!
//! Feature `store` (on by default, with `server`) is the operator's and the witnesses' half: the
//! log on disk and the witness. Without it (`default-features = false`) this is the verifying
//! half alone — records, checkpoints, proofs — which a device (and a browser) builds.
//!
//! Entries are canonical [`ReleaseRecord`]s. Hashing and proofs are RFC 6962/9162, through the
//! `tlog_tiles` crate (checked against `ct-merkle` in the tests).
#![forbid(unsafe_code)]

pub mod cosign;
pub mod gateway_key;
pub mod issuer_key;
mod record;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "store")]
pub mod storage;
mod tiles;
mod verify;
#[cfg(feature = "store")]
mod witness;

#[cfg(feature = "store")]
use std::path::Path;
use std::path::PathBuf;

pub use cloister_protocol::LogProof;
pub use gateway_key::{GatewayKeyRecord, GatewayKeysError, current_gateway_keys};
pub use issuer_key::{IssuerKeyRecord, IssuerKeysError, current_keys};
pub use record::{Measurement, RecordTcb, ReleaseRecord, SCHEMA};
#[cfg(feature = "store")]
pub use storage::{Appended, Log, Stage};
pub use tiles::{
    MAX_TILED_TREE, TileSet, bundles_of, c2sp_path, read_bundle, tile_path, tiles_of,
    unverified_checkpoint_size,
};
pub use verify::{Quorum, SeenCheckpoint, TrustedLog, VerifiedCheckpoint};
#[cfg(feature = "store")]
pub use witness::{Witness, WitnessRefusal};

/// Tile height (C2SP tlog-tiles fixes 8: 256 hashes or entries per tile).
pub const HEIGHT: u8 = 8;

/// What the log, its storage and its witness can refuse.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file of the log could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `create` was pointed at a directory that holds a log.
    #[error("{0} already holds a log")]
    Exists(PathBuf),
    /// The signing key is not a signed-note Ed25519 key, or not the verifier key's pair.
    #[error("the log's signing key is malformed or does not match its verifier key")]
    SignerKey,
    /// A verifier key is malformed.
    #[error("malformed verifier key {0:?}")]
    VerifierKey(String),
    /// A key name has spaces or pluses.
    #[error("invalid key name {0:?}")]
    KeyName(String),
    /// The checkpoint on disk or offered is malformed, unsigned, or for another origin.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The hashes file holds fewer hashes than the checkpoint's tree needs.
    #[error("the hashes file has {have} bytes; the checkpoint needs {want}")]
    HashesShort {
        /// Bytes present.
        have: u64,
        /// Bytes needed.
        want: u64,
    },
    /// An entry is longer than a bundle can hold.
    #[error("an entry of {0} bytes is longer than 65535")]
    EntrySize(usize),
    /// A bundle on disk does not hold the entries its name says.
    #[error("{0}: the bundle does not hold the entries the checkpoint covers")]
    Bundle(PathBuf),
    /// Bytes that are not a sequence of length-prefixed entries.
    #[error("a bundle's entries overrun it")]
    BundleFormat,
    /// An index or size beyond the log.
    #[error("index {index} is not in a tree of {size} entries the log has")]
    Range {
        /// The index (or old size).
        index: u64,
        /// The size.
        size: u64,
    },
    /// The tree algorithms refused (a hash the store lacks).
    #[error("tree: {0}")]
    Tree(String),
    /// A record is not a valid release record.
    #[error("release record: {0}")]
    Record(String),
    /// A record in another encoding than the canonical one.
    #[error("the release record is not canonically encoded")]
    NonCanonical,
    /// The witness's state file is unreadable.
    #[error("witness state: {0}")]
    WitnessState(String),
    /// A checkpoint that does not extend the one the witness cosigned last.
    #[error("split view: cosigned a tree of {seen}, offered {offered}: {reason}")]
    SplitView {
        /// The size cosigned last.
        seen: u64,
        /// The size offered.
        offered: u64,
        /// Why it is not an extension.
        reason: String,
    },
}

impl From<tlog_tiles::Error> for LogError {
    fn from(e: tlog_tiles::Error) -> Self {
        LogError::Tree(e.to_string())
    }
}

/// What a device's check of a log bundle can refuse; each reason its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A configured key is malformed.
    #[error("malformed trusted key {0:?}")]
    Key(String),
    /// More witnesses required than configured.
    #[error("a quorum of {quorum} among {witnesses} witnesses cannot be met")]
    Quorum {
        /// Required.
        quorum: usize,
        /// Configured.
        witnesses: usize,
    },
    /// The bundle, checkpoint or proof cannot be parsed.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A signature by a trusted key does not verify (a forged or altered checkpoint).
    #[error("the signature of {0} does not verify")]
    BadSignature(String),
    /// The checkpoint is not signed by the trusted log key.
    #[error("the checkpoint is not signed by the log")]
    NoLogSignature,
    /// Too few configured witnesses cosigned.
    #[error("{have} witness cosignatures; {need} required")]
    Witnesses {
        /// Valid cosignatures.
        have: usize,
        /// Required.
        need: usize,
    },
    /// The checkpoint names another log.
    #[error("the checkpoint is for log {0:?}")]
    Origin(String),
    /// The entry's index is not in the checkpoint's tree.
    #[error("index {index} is beyond the tree of {size}")]
    IndexBeyondTree {
        /// The index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The inclusion proof does not lead from the entry to the checkpoint's root.
    #[error("the inclusion proof does not verify")]
    Inclusion,
    /// A checkpoint older than one already seen.
    #[error("rollback: seen a tree of {seen}, offered {offered}")]
    Rollback {
        /// Size seen.
        seen: u64,
        /// Size offered.
        offered: u64,
    },
    /// An entry whose hash is not the leaf the tree holds at its index.
    #[error("entry {index} is not the one the tree holds there")]
    EntryNotInTree {
        /// The entry's index.
        index: u64,
    },
    /// A tile of the newest tree was not fetched, or has the wrong length.
    #[error("tile {0} is missing or of the wrong length")]
    TileMissing(String),
    /// A tree larger than a device fetches whole.
    #[error("a tree of {size} entries; a device fetches at most {max} whole")]
    TreeTooLarge {
        /// The size offered.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A checkpoint that is not an extension of the one seen.
    #[error("fork: the tree of {size} does not extend the one seen")]
    Fork {
        /// The size offered.
        size: u64,
    },
}

/// Writes a new secret file (a key) readable by its owner only, synced; refuses to replace
/// one.
#[cfg(feature = "store")]
pub fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()
}

#[cfg(feature = "store")]
pub(crate) fn io(path: &Path) -> impl Fn(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(all(test, feature = "store"))]
mod tests;
