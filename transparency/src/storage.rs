//! The log on disk, in the C2SP `tlog-tiles` layout any static web server or object store can
//! serve: `checkpoint` (a signed note), hash tiles `tile/<L>/<N>[.p/<W>]` and entry bundles
//! `tile/entries/<N>[.p/<W>]` (each entry a 2-byte big-endian length and its bytes), height 8.
//! Beside them, not served, `hashes` holds every stored hash in index order for appends and
//! proofs.
//!
//! An append is durable and atomic: the new hashes are written and synced; every new tile and
//! bundle is written to a temporary file, synced and renamed into place; the directories are
//! synced; only then is the new checkpoint signed and renamed over the old. A crash at any
//! point leaves the previous checkpoint valid and every visible file whole; the next open cuts
//! `hashes` back to the checkpoint's tree.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cloister_protocol::LogProof;
use signed_note::{Note, StandardSigner, StandardVerifier, VerifierList};
use tlog_tiles::{Checkpoint, Hash, HashReader, Tile};
use zeroize::Zeroizing;

pub use crate::tiles::{c2sp_path, read_bundle, tile_path};
use crate::{HEIGHT, LogError, io};

/// Entries per bundle (2^HEIGHT).
const BUNDLE: u64 = 1 << HEIGHT;
/// The prefix of files being written (a crash can leave them; `open` removes them).
const TEMPORARY: &str = ".tmp.";
/// Largest entry a bundle can hold (its length is two bytes).
pub const MAX_ENTRY: usize = u16::MAX as usize;

/// Where an append has got to, for fault-injection tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The hashes are synced; no tile is written yet.
    HashesWritten,
    /// Every tile and bundle is in place; the checkpoint is still the old one.
    TilesWritten,
}

/// A log directory opened for appends, holding its signing key.
pub struct Log {
    dir: PathBuf,
    origin: String,
    signer: StandardSigner,
    vkey: String,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The result of an append.
#[derive(Debug, Clone)]
pub struct Appended {
    /// The index of the first entry appended.
    pub first: u64,
    /// The new signed checkpoint.
    pub checkpoint: Vec<u8>,
}

impl Log {
    /// Creates an empty log in `dir` (which must not hold one) for `origin`, signed with the
    /// signed-note key `skey` (verifier key `vkey`); writes the size-0 checkpoint.
    pub fn create(dir: &Path, skey: &Zeroizing<String>, vkey: &str) -> Result<Self, LogError> {
        if dir.join("checkpoint").exists() {
            return Err(LogError::Exists(dir.to_path_buf()));
        }
        std::fs::create_dir_all(dir.join("tile")).map_err(io(dir))?;
        File::create(dir.join("hashes")).map_err(io(dir))?;
        let log = Self::with_keys(dir, skey, vkey)?;
        let empty = tlog_tiles::tree_hash(0, &Hashes::new(dir, 0)?)?;
        log.write_checkpoint(0, empty)?;
        Ok(log)
    }

    /// Opens the log in `dir`, checking its checkpoint against `vkey`.
    pub fn open(dir: &Path, skey: &Zeroizing<String>, vkey: &str) -> Result<Self, LogError> {
        let log = Self::with_keys(dir, skey, vkey)?;
        log.checkpoint()?;
        remove_temporaries(dir)?;
        Ok(log)
    }

    fn with_keys(dir: &Path, skey: &Zeroizing<String>, vkey: &str) -> Result<Self, LogError> {
        let signer = StandardSigner::new(skey).map_err(|_| LogError::SignerKey)?;
        let verifier = StandardVerifier::new(vkey)
            .map_err(|_| LogError::VerifierKey(vkey.chars().take(80).collect()))?;
        if signed_note::Signer::key_id(&signer) != signed_note::Verifier::key_id(&verifier) {
            return Err(LogError::SignerKey);
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            origin: signed_note::Signer::name(&signer).to_owned(),
            signer,
            vkey: vkey.to_owned(),
        })
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current checkpoint: its signed bytes, size and root hash (signature checked).
    pub fn checkpoint(&self) -> Result<(Vec<u8>, u64, Hash), LogError> {
        let path = self.dir.join("checkpoint");
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let note = Note::from_bytes(&bytes).map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let verifier = StandardVerifier::new(&self.vkey)
            .map_err(|_| LogError::VerifierKey(self.vkey.chars().take(80).collect()))?;
        note.verify(&VerifierList::new(vec![Box::new(verifier)]))
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let cp =
            Checkpoint::from_bytes(note.text()).map_err(|e| LogError::Checkpoint(e.to_string()))?;
        if cp.origin() != self.origin {
            return Err(LogError::Checkpoint(format!("origin {}", cp.origin())));
        }
        Ok((bytes, cp.size(), *cp.hash()))
    }

    /// Appends `entries` (at most [`MAX_ENTRY`] bytes each) as one batch; `hook` is told each
    /// [`Stage`] reached (tests stop the process there).
    pub fn append(
        &self,
        entries: &[Vec<u8>],
        mut hook: impl FnMut(Stage),
    ) -> Result<Appended, LogError> {
        if let Some(big) = entries.iter().find(|e| e.len() > MAX_ENTRY) {
            return Err(LogError::EntrySize(big.len()));
        }
        let lock = File::open(&self.dir).map_err(io(&self.dir))?;
        lock.lock().map_err(io(&self.dir))?;
        let (_, old, _) = self.checkpoint()?;
        let hashes = Hashes::new(&self.dir, old)?;
        for (i, e) in entries.iter().enumerate() {
            let n = old + i as u64;
            let new = tlog_tiles::stored_hashes(n, e, &hashes)?;
            hashes.push(&new)?;
        }
        hashes.sync()?;
        hook(Stage::HashesWritten);
        let size = old + entries.len() as u64;
        let root = tlog_tiles::tree_hash(size, &hashes)?;
        let mut dirs = Vec::new();
        for tile in Tile::new_tiles(HEIGHT, old, size) {
            let data = tile.read_data(&hashes)?;
            dirs.push(self.write_atomic(&c2sp_path(&tile), &data)?);
            if tile.level() == 0 {
                let bundle = self.bundle(tile, old, entries)?;
                let mut data_tile = tile;
                data_tile.set_is_data();
                dirs.push(self.write_atomic(&c2sp_path(&data_tile), &bundle)?);
            }
        }
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            sync_dir(&d)?;
        }
        hook(Stage::TilesWritten);
        let checkpoint = self.write_checkpoint(size, root)?;
        Ok(Appended {
            first: old,
            checkpoint,
        })
    }

    /// The bundle for level-0 tile `tile` of the tree after appending `entries` at `old`.
    fn bundle(&self, tile: Tile, old: u64, entries: &[Vec<u8>]) -> Result<Vec<u8>, LogError> {
        let start = tile.level_index() * BUNDLE;
        let end = start + u64::from(tile.width());
        let mut out = Vec::new();
        if start < old {
            // The entries already in the log: the bundle the old checkpoint published.
            let have = old - start;
            let mut prev = Tile::new(HEIGHT, 0, tile.level_index(), have as u32, false);
            prev.set_is_data();
            let path = self.dir.join(c2sp_path(&prev));
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            if read_bundle(&bytes)?.len() as u64 != have {
                return Err(LogError::Bundle(path));
            }
            out = bytes;
        }
        for e in &entries[(start.max(old) - old) as usize..(end - old) as usize] {
            out.extend_from_slice(&(e.len() as u16).to_be_bytes());
            out.extend_from_slice(e);
        }
        Ok(out)
    }

    fn write_checkpoint(&self, size: u64, root: Hash) -> Result<Vec<u8>, LogError> {
        let cp = Checkpoint::new(&self.origin, size, root, "")
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let mut note =
            Note::new(&cp.to_bytes(), &[]).map_err(|e| LogError::Checkpoint(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| LogError::Checkpoint(e.to_string()))?;
        let bytes = note.to_bytes();
        let dir = self.write_atomic("checkpoint", &bytes)?;
        sync_dir(&dir)?;
        Ok(bytes)
    }

    /// Writes `rel` through a synced temporary file and a rename; returns its directory.
    fn write_atomic(&self, rel: &str, data: &[u8]) -> Result<PathBuf, LogError> {
        let path = self.dir.join(rel);
        let dir = path.parent().unwrap_or(&self.dir).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let tmp = dir.join(format!(
            "{TEMPORARY}{}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("x")
        ));
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        Ok(dir)
    }

    /// The proof that entry `index` is in the tree of `size` entries.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        let (_, current, _) = self.checkpoint()?;
        self.inclusion_under(index, size, current)
    }

    fn inclusion_under(&self, index: u64, size: u64, current: u64) -> Result<Vec<Hash>, LogError> {
        if index >= size || size > current {
            return Err(LogError::Range { index, size });
        }
        let hashes = Hashes::reader(&self.dir, current)?;
        Ok(tlog_tiles::prove_record(size, index, &hashes)?)
    }

    /// The proof that the tree of `old` entries is a prefix of the tree of `new`.
    pub fn prove_consistency(&self, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
        let (_, current, _) = self.checkpoint()?;
        if old > new || new > current {
            return Err(LogError::Range {
                index: old,
                size: new,
            });
        }
        // RFC 6962 §2.1.2: the proof between a tree and itself is empty, and the empty tree is
        // a prefix of every tree with nothing to prove (the witness protocol sends no lines
        // for old size 0).
        if old == 0 || old == new {
            return Ok(Vec::new());
        }
        let hashes = Hashes::reader(&self.dir, current)?;
        Ok(tlog_tiles::prove_tree(new, old, &hashes)?)
    }

    /// The log proof of entry `index` under the current checkpoint.
    pub fn log_proof(&self, index: u64) -> Result<LogProof, LogError> {
        let (checkpoint, size, _) = self.checkpoint()?;
        let proof = self.inclusion_under(index, size, size)?;
        Ok(LogProof {
            entry: self.entry_under(index, size)?,
            leaf_index: index,
            inclusion_proof: proof.iter().map(|h| h.0).collect(),
            checkpoint: String::from_utf8_lossy(&checkpoint).into_owned(),
        })
    }

    /// Entry `index`, read from its bundle.
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, LogError> {
        let (_, size, _) = self.checkpoint()?;
        self.entry_under(index, size)
    }

    fn entry_under(&self, index: u64, size: u64) -> Result<Vec<u8>, LogError> {
        if index >= size {
            return Err(LogError::Range { index, size });
        }
        let n = index / BUNDLE;
        let width = (size - n * BUNDLE).min(BUNDLE) as u32;
        let mut tile = Tile::new(HEIGHT, 0, n, width, false);
        tile.set_is_data();
        let path = self.dir.join(c2sp_path(&tile));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let entries = read_bundle(&bytes)?;
        entries
            .get((index - n * BUNDLE) as usize)
            .map(|e| e.to_vec())
            .ok_or(LogError::Bundle(path))
    }
}

/// Removes the temporary files a crashed append left (never renamed into place).
fn remove_temporaries(dir: &Path) -> Result<(), LogError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io(&path))?.is_dir() {
            remove_temporaries(&path)?;
        } else if entry.file_name().to_string_lossy().starts_with(TEMPORARY) {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The `hashes` file, read up to the tree of `size` entries (and cut back to it when opened
/// for an append).
struct Hashes {
    file: File,
    path: PathBuf,
    len: std::cell::Cell<u64>,
}

impl Hashes {
    /// For an append (under the log's lock): cuts the file back to the tree of `size`.
    fn new(dir: &Path, size: u64) -> Result<Self, LogError> {
        Self::open(dir, size, true)
    }

    /// For proofs, beside a concurrent append: reads only the tree of `size`, changes nothing.
    fn reader(dir: &Path, size: u64) -> Result<Self, LogError> {
        Self::open(dir, size, false)
    }

    fn open(dir: &Path, size: u64, write: bool) -> Result<Self, LogError> {
        let path = dir.join("hashes");
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&path)
            .map_err(io(&path))?;
        let want = tlog_tiles::stored_hash_count(size) * tlog_tiles::HASH_SIZE as u64;
        let have = file.metadata().map_err(io(&path))?.len();
        if have < want {
            return Err(LogError::HashesShort { have, want });
        }
        if have > want && write {
            // A crashed append's hashes, beyond the checkpoint: drop them.
            file.set_len(want).map_err(io(&path))?;
        }
        Ok(Hashes {
            file,
            path,
            len: std::cell::Cell::new(want),
        })
    }

    fn push(&self, hashes: &[Hash]) -> Result<(), LogError> {
        let bytes: Vec<u8> = hashes.iter().flat_map(|h| h.0).collect();
        self.file
            .write_all_at(&bytes, self.len.get())
            .map_err(io(&self.path))?;
        self.len.set(self.len.get() + bytes.len() as u64);
        Ok(())
    }

    fn sync(&self) -> Result<(), LogError> {
        self.file.sync_all().map_err(io(&self.path))
    }
}

impl HashReader for Hashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                let mut h = [0u8; tlog_tiles::HASH_SIZE];
                let at = i * tlog_tiles::HASH_SIZE as u64;
                if at + h.len() as u64 > self.len.get() {
                    return Err(tlog_tiles::Error::IndexesNotInTree);
                }
                self.file
                    .read_exact_at(&mut h, at)
                    .map_err(|_| tlog_tiles::Error::IndexesNotInTree)?;
                Ok(Hash(h))
            })
            .collect()
    }
}
