//! A device's view of the log that reveals nothing of what it saw before (issue 24, attack 6).
//!
//! A consistency proof is asked for by two sizes, and the older one is the device's own: a log
//! or gateway that hands out distinct tree sizes could recognise each device when it comes
//! back. Here the device fetches instead every hash tile of the **newest** tree (C2SP
//! tlog-tiles: every full tile and the right-edge partial tile at every level, the same list
//! for every reader of that size, [`tiles_of`]) and checks the older trees against them
//! locally: every tile is authenticated against the newest root (the root recomputed from
//! them, each full tile's hash found in its parent tile), and each older root must be the tree
//! hash those tiles give at its size. What the operator sees depends only on the newest size, which
//! it chose itself.
//!
//! The cost is every tile of the tree: `⌈n/256⌉` level-0 tiles of at most 8 KiB (and a few above
//! them) — 1 tile for a log under 256 entries, 40 (320 KiB) for 10,000. A release log grows by a
//! release a week; the device refuses a tree above [`MAX_TILED_TREE`] rather than fetch
//! without bound.

use std::collections::BTreeMap;

use tlog_tiles::{HASH_SIZE, Hash, HashReader, Tile, stored_hash_index};

use crate::{HEIGHT, LogError, VerifyError};

/// The largest tree a device fetches whole (2^20 entries: 4,096 level-0 tiles, 32 MiB).
pub const MAX_TILED_TREE: u64 = 1 << 20;

/// The C2SP path (`tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>…`) of `tile`.
pub fn c2sp_path(tile: &Tile) -> String {
    let go = tile.path();
    let rest = go.strip_prefix(&format!("tile/{HEIGHT}/")).unwrap_or(&go);
    match rest.strip_prefix("data/") {
        Some(n) => format!("tile/entries/{n}"),
        None => format!("tile/{rest}"),
    }
}

/// The canonical C2SP path of the tile or bundle `path` names, if it names one.
pub fn tile_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("tile/")?;
    let (level, index) = rest.split_once('/')?;
    // `Tile::from_path` panics on a level above 63 or a width outside 1..=2^H: refused first.
    if level != "entries" && level.parse::<u8>().ok().is_none_or(|l| l > 63) {
        return None;
    }
    if let Some((_, width)) = index.split_once(".p/")
        && width
            .parse::<u64>()
            .ok()
            .is_none_or(|w| w == 0 || w >= 1 << HEIGHT)
    {
        return None;
    }
    let go = match level {
        "entries" => format!("tile/{HEIGHT}/data/{index}"),
        _ => format!("tile/{HEIGHT}/{rest}"),
    };
    // And any other assertion of the crate's on hostile input is a refusal, not a crash.
    let tile = std::panic::catch_unwind(|| Tile::from_path(&go))
        .ok()?
        .ok()?;
    let canonical = c2sp_path(&tile);
    (canonical == path).then_some(canonical)
}

/// The entries of a bundle.
pub fn read_bundle(mut bytes: &[u8]) -> Result<Vec<&[u8]>, LogError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let [a, b, rest @ ..] = bytes else {
            return Err(LogError::BundleFormat);
        };
        let len = u16::from_be_bytes([*a, *b]) as usize;
        if rest.len() < len {
            return Err(LogError::BundleFormat);
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(out)
}

/// The `tlog_tiles` (Go-style) path of a C2SP hash-tile path.
fn go_path(c2sp: &str) -> String {
    format!("tile/{HEIGHT}/{}", c2sp.trim_start_matches("tile/"))
}

/// Every hash tile of the tree of `size` entries, as C2SP paths, lowest level first.
pub fn tiles_of(size: u64) -> Result<Vec<String>, VerifyError> {
    if size > MAX_TILED_TREE {
        return Err(VerifyError::TreeTooLarge {
            size,
            max: MAX_TILED_TREE,
        });
    }
    Ok(Tile::new_tiles(HEIGHT, 0, size)
        .iter()
        .map(c2sp_path)
        .collect())
}

/// Every entry bundle of the tree of `size` entries, as C2SP paths (`tile/entries/…`).
pub fn bundles_of(size: u64) -> Result<Vec<String>, VerifyError> {
    if size > MAX_TILED_TREE {
        return Err(VerifyError::TreeTooLarge {
            size,
            max: MAX_TILED_TREE,
        });
    }
    let full = size >> HEIGHT;
    let mut out = Vec::new();
    for n in 0..full {
        let mut t = Tile::new(HEIGHT, 0, n, 1 << HEIGHT, false);
        t.set_is_data();
        out.push(c2sp_path(&t));
    }
    let rest = (size - (full << HEIGHT)) as u32;
    if rest > 0 {
        let mut t = Tile::new(HEIGHT, 0, full, rest, false);
        t.set_is_data();
        out.push(c2sp_path(&t));
    }
    Ok(out)
}

/// The tree size a checkpoint (signed note) names, read without checking its signatures: for
/// an operator reading its own log's copy, never for a device.
pub fn unverified_checkpoint_size(bytes: &[u8]) -> Result<u64, VerifyError> {
    let note =
        signed_note::Note::from_bytes(bytes).map_err(|e| VerifyError::Malformed(e.to_string()))?;
    tlog_tiles::Checkpoint::from_bytes(note.text())
        .map(|cp| cp.size())
        .map_err(|e| VerifyError::Malformed(e.to_string()))
}

/// The tiles of one tree, as fetched (not yet authenticated).
#[derive(Debug, Default, Clone)]
pub struct TileSet {
    size: u64,
    tiles: BTreeMap<String, Vec<u8>>,
}

impl TileSet {
    /// An empty set for the tree of `size` entries.
    pub fn new(size: u64) -> Self {
        TileSet {
            size,
            tiles: BTreeMap::new(),
        }
    }

    /// The tree size the set is for.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Adds the tile at `path` (one of [`tiles_of`]).
    pub fn insert(&mut self, path: String, bytes: Vec<u8>) {
        self.tiles.insert(path, bytes);
    }

    /// The root of the tree of `size` entries (at most the set's), from the tiles, after they
    /// were authenticated against `root` of the set's tree.
    fn tree_hash(&self, root: [u8; 32], size: u64) -> Result<[u8; 32], VerifyError> {
        for path in tiles_of(self.size)? {
            let width = Tile::from_path(&go_path(&path))
                .map_err(|e| VerifyError::Malformed(e.to_string()))?
                .width() as usize;
            match self.tiles.get(&path) {
                Some(b) if b.len() == width * HASH_SIZE => {}
                _ => return Err(VerifyError::TileMissing(path)),
            }
        }
        // The crate's `TileHashReader` (0.2.0) skips the parent check of the tiles it adds after
        // the root's own: a full tile could go unauthenticated. Every tile is checked here
        // instead: the root recomputed from the tiles (which covers every partial tile and the
        // top one), and every full tile's hash equal to the one its parent tile holds.
        let computed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if tlog_tiles::tree_hash(self.size, self)? != Hash(root) {
                return Err(tlog_tiles::Error::InconsistentTile);
            }
            for tile in Tile::new_tiles(HEIGHT, 0, self.size) {
                if tile.width() != 1 << HEIGHT {
                    continue;
                }
                let data = self.data(&tile)?;
                let up = (tile.level() + 1) * HEIGHT;
                let held = self.read_hashes(&[stored_hash_index(up, tile.level_index())])?;
                if held.first() != Some(&Tile::subtree_hash(data)) {
                    return Err(tlog_tiles::Error::InconsistentTile);
                }
            }
            tlog_tiles::tree_hash(size, self)
        }));
        match computed {
            Ok(Ok(h)) => Ok(h.0),
            Ok(Err(tlog_tiles::Error::InconsistentTile)) => {
                Err(VerifyError::Fork { size: self.size })
            }
            Ok(Err(e)) => Err(VerifyError::Malformed(format!("tiles: {e}"))),
            Err(_) => Err(VerifyError::Malformed("tiles: inconsistent lengths".into())),
        }
    }

    /// The bytes of `tile` (of the set's tree), checked for length.
    fn data(&self, tile: &Tile) -> Result<&[u8], tlog_tiles::Error> {
        self.tiles
            .get(&c2sp_path(tile))
            .filter(|b| b.len() == tile.width() as usize * HASH_SIZE)
            .map(Vec::as_slice)
            .ok_or(tlog_tiles::Error::BadMath)
    }

    /// Every entry of the tree, in order, from its entry `bundles` (path → bytes, the paths of
    /// [`bundles_of`]): each entry's leaf hash must be the one the tiles hold, the tiles
    /// authenticated against `root` first.
    pub fn entries(
        &self,
        root: [u8; 32],
        bundles: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, VerifyError> {
        // Authenticates every tile against `root` (the tree hash of the whole tree).
        if self.tree_hash(root, self.size)? != root {
            return Err(VerifyError::Fork { size: self.size });
        }
        let mut out = Vec::new();
        for path in bundles_of(self.size)? {
            let bytes = bundles
                .get(&path)
                .ok_or_else(|| VerifyError::TileMissing(path.clone()))?;
            let first = out.len() as u64;
            let entries =
                read_bundle(bytes).map_err(|e| VerifyError::Malformed(format!("{path}: {e}")))?;
            let want = (self.size - first).min(1 << HEIGHT);
            if entries.len() as u64 != want {
                return Err(VerifyError::Malformed(format!(
                    "{path}: {} entries, the tree has {want} there",
                    entries.len()
                )));
            }
            let indexes: Vec<u64> = (first..first + want)
                .map(|i| stored_hash_index(0, i))
                .collect();
            let leaves = self
                .read_hashes(&indexes)
                .map_err(|e| VerifyError::Malformed(format!("tiles: {e}")))?;
            for (i, (entry, leaf)) in entries.iter().zip(leaves).enumerate() {
                if tlog_tiles::record_hash(entry) != leaf {
                    return Err(VerifyError::EntryNotInTree {
                        index: first + i as u64,
                    });
                }
                out.push(entry.to_vec());
            }
        }
        Ok(out)
    }

    /// Whether the tree `(size, root)` is a prefix of `(self.size(), newest_root)`: the tiles
    /// are authenticated against `newest_root`, then give the older root. Refused: a larger
    /// tree (a rollback of the newest), tiles that do not hash to the newest root, a root
    /// they do not give (a fork).
    pub fn check_prefix(
        &self,
        newest_root: [u8; 32],
        size: u64,
        root: [u8; 32],
    ) -> Result<(), VerifyError> {
        if size > self.size {
            return Err(VerifyError::Rollback {
                seen: size,
                offered: self.size,
            });
        }
        if size == self.size {
            return if root == newest_root {
                Ok(())
            } else {
                Err(VerifyError::Fork { size })
            };
        }
        if size == 0 {
            return Ok(());
        }
        if self.tree_hash(newest_root, size)? == root {
            Ok(())
        } else {
            Err(VerifyError::Fork { size: self.size })
        }
    }
}

/// The stored hashes of the set's tree, read from its tiles (unauthenticated: [`TileSet`]'s
/// checks authenticate every tile before a result is used).
impl HashReader for TileSet {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&x| {
                let tile = Tile::from_index(HEIGHT, x)
                    .parent(0, self.size)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)?;
                tile.hash_at_index(self.data(&tile)?, x)
            })
            .collect()
    }
}

#[cfg(all(test, feature = "store"))]
mod tests;
