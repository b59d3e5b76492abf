//! What the device believes: the verifier (trust anchor, policy, optional transparency log)
//! and the newest log checkpoint it has seen, kept across runs (through a [`SeenStore`]) so
//! that the operator cannot roll the log back or show this device a fork.
//!
//! The store is the platform's: a file for the CLI (`cloister_client::FileStore`), the
//! browser's or the phone's storage elsewhere, [`MemoryStore`] for the life of a process. It
//! is never moved backwards: [`Trust::record`] keeps the larger tree.

use std::collections::BTreeMap;
use std::sync::Mutex;

use cloister_measurement::{InsecureEmulatedRoot, Policy, SystemClock, TrustAnchor, Verifier};
pub use cloister_transparency::Quorum;
use cloister_transparency::{SeenCheckpoint, TileSet, TrustedLog, VerifiedCheckpoint, VerifyError};

use crate::error::ClientError;

/// The transparency log a device trusts: the log's signed-note verifier key and the witnesses'
/// tlog-cosignature verifier keys of which `quorum` must cosign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogKeys {
    /// The log's verifier key.
    pub log_key: String,
    /// The witnesses' verifier keys.
    pub witness_keys: Vec<String>,
    /// Cosignatures required ([`Quorum::ONE`] at least, unless the user named the insecure
    /// choice).
    pub quorum: Quorum,
}

/// Where the newest checkpoint seen of each trusted log is kept, by the log's verifier key.
pub trait SeenStore: Send + Sync + std::fmt::Debug {
    /// The checkpoint recorded for `log_key`, if any.
    fn load(&self, log_key: &str) -> Result<Option<SeenCheckpoint>, ClientError>;
    /// Records `seen` for `log_key` unless a larger tree is already recorded there (another
    /// process may have moved it on since [`SeenStore::load`]).
    fn store(&self, log_key: &str, seen: SeenCheckpoint) -> Result<(), ClientError>;
}

/// A [`SeenStore`] in memory, for the life of the process.
#[derive(Debug, Default)]
pub struct MemoryStore(Mutex<BTreeMap<String, SeenCheckpoint>>);

impl SeenStore for MemoryStore {
    fn load(&self, log_key: &str) -> Result<Option<SeenCheckpoint>, ClientError> {
        Ok(self
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(log_key)
            .copied())
    }

    fn store(&self, log_key: &str, seen: SeenCheckpoint) -> Result<(), ClientError> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let next = keep_larger(m.get(log_key).copied(), seen);
        m.insert(log_key.to_owned(), next);
        Ok(())
    }
}

impl<T: SeenStore + ?Sized> SeenStore for std::sync::Arc<T> {
    fn load(&self, log_key: &str) -> Result<Option<SeenCheckpoint>, ClientError> {
        (**self).load(log_key)
    }

    fn store(&self, log_key: &str, seen: SeenCheckpoint) -> Result<(), ClientError> {
        (**self).store(log_key, seen)
    }
}

/// `seen`, unless `old` is a larger tree.
pub fn keep_larger(old: Option<SeenCheckpoint>, seen: SeenCheckpoint) -> SeenCheckpoint {
    match old {
        Some(old) if old.size > seen.size => old,
        _ => seen,
    }
}

/// The verifier and the seen-checkpoint store.
#[derive(Debug)]
pub struct Trust {
    verifier: Verifier<SystemClock>,
    log_key: Option<String>,
    store: Box<dyn SeenStore>,
    min_machines: usize,
    directory_sample: std::num::NonZeroU16,
    operator_keys: OperatorKeys,
}

/// Where the device learns which of the operator's keys (the issuer's token key, the
/// gateway's outer key) it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorKeys {
    /// Only keys published in the trusted log, in their epoch, at most two open at once (the
    /// default): an issuer cannot give this device a key of its own, nor a relay substitute
    /// the gateway's.
    Logged,
    /// INSECURE: whatever keys the issuer and the relay serve. An issuer that gives each
    /// account its own key learns whose every request is; a relay that substitutes the
    /// gateway's key reads the token and the chosen node. Only for a device that trusts no log
    /// (tests, research).
    InsecureUnlogged,
}

impl Trust {
    /// Trust real AMD and Intel hardware (the pinned roots).
    pub fn hardware(
        policy: Policy,
        log: Option<LogKeys>,
        store: Box<dyn SeenStore>,
    ) -> Result<Self, ClientError> {
        let anchor = TrustAnchor::hardware().map_err(ClientError::Anchor)?;
        Self::with_anchor(anchor, policy, log, store)
    }

    /// Trust the software-emulated AMD secure processor with this root. INSECURE: whoever
    /// holds the emulated processor's seed can sign any report; for CI and local research.
    pub fn insecure_emulated(
        root: InsecureEmulatedRoot,
        policy: Policy,
        log: Option<LogKeys>,
        store: Box<dyn SeenStore>,
    ) -> Result<Self, ClientError> {
        Self::with_anchor(TrustAnchor::InsecureEmulated(root), policy, log, store)
    }

    fn with_anchor(
        anchor: TrustAnchor,
        policy: Policy,
        log: Option<LogKeys>,
        store: Box<dyn SeenStore>,
    ) -> Result<Self, ClientError> {
        let mut verifier = Verifier::new(anchor, policy, SystemClock);
        let mut log_key = None;
        if let Some(keys) = log {
            let trusted = TrustedLog::new(keys.log_key.trim(), &keys.witness_keys, keys.quorum)
                .map_err(ClientError::LogKeys)?;
            verifier = verifier.with_log(trusted);
            log_key = Some(keys.log_key.trim().to_owned());
        }
        Ok(Trust {
            verifier,
            log_key,
            store,
            min_machines: crate::choose::DEFAULT_MIN_MACHINES,
            directory_sample: std::num::NonZeroU16::new(
                cloister_protocol::access::DEFAULT_DIRECTORY_SAMPLE,
            )
            .unwrap_or(std::num::NonZeroU16::MIN),
            operator_keys: OperatorKeys::Logged,
        })
    }

    /// INSECURE: use whatever keys the issuer and the relay serve (see
    /// [`OperatorKeys::InsecureUnlogged`]).
    pub fn with_insecure_unlogged_keys(mut self) -> Self {
        self.operator_keys = OperatorKeys::InsecureUnlogged;
        self
    }

    /// Where the operator's keys must be found.
    pub fn operator_keys(&self) -> OperatorKeys {
        self.operator_keys
    }

    /// Accept directories spanning at least `n` distinct machines (default
    /// [`crate::choose::DEFAULT_MIN_MACHINES`]). One machine means the operator knows where
    /// every request goes: only for a deployment that has no second machine, asked for by name.
    pub fn with_min_machines(mut self, n: std::num::NonZeroUsize) -> Self {
        self.min_machines = n.get();
        self
    }

    /// Ask each directory fetch for a random sample of `k` nodes (default
    /// [`cloister_protocol::access::DEFAULT_DIRECTORY_SAMPLE`]). It must be more than the
    /// nodes any one machine runs times one less than the minimum of machines, or a sample may
    /// span too few machines.
    pub fn with_directory_sample(mut self, k: std::num::NonZeroU16) -> Self {
        self.directory_sample = k;
        self
    }

    /// The sample size each directory fetch asks for.
    pub fn directory_sample(&self) -> std::num::NonZeroU16 {
        self.directory_sample
    }

    /// The fewest distinct machines a directory must span.
    pub fn min_machines(&self) -> usize {
        self.min_machines
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier<SystemClock> {
        &self.verifier
    }

    /// Whether the anchor is the insecure emulated one.
    pub fn is_insecure(&self) -> bool {
        self.verifier.anchor().is_insecure()
    }

    fn key(&self) -> &str {
        self.log_key.as_deref().unwrap_or_default()
    }

    /// The newest checkpoint seen of the trusted log.
    pub fn seen(&self) -> Result<Option<SeenCheckpoint>, ClientError> {
        self.store.load(self.key())
    }

    /// Records `seen` unless a larger tree is already recorded.
    pub fn record(&self, seen: SeenCheckpoint) -> Result<(), ClientError> {
        let next = keep_larger(self.store.load(self.key())?, seen);
        self.store.store(self.key(), next)
    }
}

/// Moves from `seen` (none on first use) to `new`, checking `seen` against `tiles` (every hash
/// tile of `new`'s tree, fetched without naming `seen`'s size; see
/// [`cloister_transparency::TileSet`]). A smaller tree is a rollback; another root of the same
/// size, or an older root the tiles do not give, a fork.
pub fn advance(
    seen: Option<SeenCheckpoint>,
    new: &VerifiedCheckpoint,
    tiles: &TileSet,
) -> Result<SeenCheckpoint, ClientError> {
    if tiles.size() != new.size {
        return Err(ClientError::Log(VerifyError::Malformed(format!(
            "tiles of a tree of {}, the checkpoint has {}",
            tiles.size(),
            new.size
        ))));
    }
    if let Some(seen) = seen {
        tiles
            .check_prefix(new.root, seen.size, seen.root)
            .map_err(ClientError::Log)?;
    }
    Ok(SeenCheckpoint {
        size: new.size,
        root: new.root,
    })
}

/// Checks that `older` (another node's checkpoint) is a prefix of `newer`, from the tiles of
/// `newer`'s tree: two nodes under forked trees are a split view.
pub fn check_prefix(
    older: &VerifiedCheckpoint,
    newer: &VerifiedCheckpoint,
    tiles: &TileSet,
) -> Result<(), ClientError> {
    let seen = SeenCheckpoint {
        size: older.size,
        root: older.root,
    };
    advance(Some(seen), newer, tiles).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_transparency::Log;
    use zeroize::Zeroizing;

    // The example key pair of the signed-note format (golang.org/x/mod/sumdb/note).
    const SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

    /// A real log: checkpoints of sizes 1 and 3 and the tiles of the tree of 3.
    fn log() -> (
        tempfile::TempDir,
        VerifiedCheckpoint,
        VerifiedCheckpoint,
        TileSet,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::create(dir.path(), &Zeroizing::new(SKEY.to_owned()), VKEY).expect("log");
        let cp = |log: &Log| {
            let (_, size, root) = log.checkpoint().expect("checkpoint");
            VerifiedCheckpoint {
                size,
                root: root.0,
                witnesses: vec![],
            }
        };
        log.append(&[b"release 1".to_vec()], |_| {})
            .expect("append");
        let one = cp(&log);
        log.append(&[b"release 2".to_vec(), b"release 3".to_vec()], |_| {})
            .expect("append");
        let three = cp(&log);
        let mut tiles = TileSet::new(3);
        for path in cloister_transparency::tiles_of(3).expect("small") {
            let bytes = std::fs::read(dir.path().join(&path)).expect("tile");
            tiles.insert(path, bytes);
        }
        (dir, one, three, tiles)
    }

    fn trust(store: &std::sync::Arc<MemoryStore>) -> Trust {
        let keys = LogKeys {
            log_key: VKEY.into(),
            witness_keys: vec![],
            quorum: Quorum::InsecureLogSignatureOnly,
        };
        Trust::hardware(Policy::default(), Some(keys), Box::new(store.clone())).expect("trust")
    }

    #[test]
    fn the_seen_checkpoint_advances_and_never_goes_back() {
        let (_log, one, three, tiles) = log();
        let store = std::sync::Arc::new(MemoryStore::default());
        let t = trust(&store);
        assert_eq!(t.seen().expect("nothing yet"), None);

        let first = advance(None, &one, &TileSet::new(1)).expect("first use");
        t.record(first).expect("record");

        // Another Trust over the same store reads what the first recorded.
        let t = trust(&store);
        let seen = t.seen().expect("read");
        assert_eq!(seen.map(|s| (s.size, s.root)), Some((1, one.root)));
        let next = advance(seen, &three, &tiles).expect("consistent");
        t.record(next).expect("record");
        assert_eq!(trust(&store).seen().expect("read").map(|s| s.size), Some(3));

        // Never recorded backwards.
        t.record(first).expect("record");
        assert_eq!(trust(&store).seen().expect("read").map(|s| s.size), Some(3));
        check_prefix(&one, &three, &tiles).expect("one is a prefix of three");
    }

    #[test]
    fn rollback_and_forks_are_refused() {
        let (_log, one, three, tiles) = log();
        let seen = Some(advance(None, &three, &tiles).expect("first"));
        let mut tiles_of_one = TileSet::new(1);
        tiles_of_one.insert("tile/0/000.p/1".into(), vec![0; 32]);
        assert!(matches!(
            advance(seen, &one, &tiles_of_one),
            Err(ClientError::Log(VerifyError::Rollback {
                seen: 3,
                offered: 1
            }))
        ));
        let mut other = three.clone();
        other.root[0] ^= 1;
        assert!(matches!(
            advance(seen, &other, &tiles),
            Err(ClientError::Log(VerifyError::Fork { size: 3 }))
        ));
        // Growth the tiles do not join to the tree seen.
        let seen_one = Some(advance(None, &one, &tiles_of_one).expect("first"));
        assert!(matches!(
            advance(seen_one, &other, &tiles),
            Err(ClientError::Log(VerifyError::Fork { size: 3 }))
        ));
        assert!(matches!(
            check_prefix(&one, &other, &tiles),
            Err(ClientError::Log(VerifyError::Fork { .. }))
        ));
        // Tiles of another tree, or none.
        assert!(matches!(
            advance(seen_one, &three, &tiles_of_one),
            Err(ClientError::Log(VerifyError::Malformed(_)))
        ));
        assert!(matches!(
            advance(seen_one, &three, &TileSet::new(3)),
            Err(ClientError::Log(VerifyError::TileMissing(p))) if p == "tile/0/000.p/3"
        ));
    }

    #[test]
    fn the_memory_store_keeps_the_larger_tree() {
        let (_log, one, three, _tiles) = log();
        let t =
            Trust::hardware(Policy::default(), None, Box::<MemoryStore>::default()).expect("trust");
        assert!(!t.is_insecure());
        assert_eq!(t.seen().expect("memory"), None);
        t.record(advance(None, &three, &TileSet::new(3)).expect("first"))
            .expect("record");
        t.record(advance(None, &one, &TileSet::new(1)).expect("first"))
            .expect("record");
        assert_eq!(t.seen().expect("memory").map(|s| s.size), Some(3));
    }
}
