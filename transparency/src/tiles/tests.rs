//! Older trees checked against the tiles of the newest, with roots from an independent RFC 6962
//! implementation (`ct-merkle`).

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use sha2_011::Sha256;
use zeroize::Zeroizing;

use super::*;
use crate::Log;
use crate::record::tests::record;
use std::collections::BTreeMap;

const ORIGIN: &str = "log.cloister.example/releases";

/// A log of 600 entries, the tiles of its tree read from disk, its root, and the root of every
/// prefix (from `ct-merkle`).
fn log() -> (tempfile::TempDir, TileSet, [u8; 32], Vec<[u8; 32]>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, ORIGIN);
    let log = Log::create(dir.path(), &Zeroizing::new(skey), &vkey).expect("log");
    let entries: Vec<Vec<u8>> = (0..600)
        .map(|n| record(n).to_bytes().expect("record"))
        .collect();
    let mut done = 0;
    for batch in [1, 254, 1, 1, 343] {
        log.append(&entries[done..done + batch], |_| {})
            .expect("append");
        done += batch;
    }
    let mut oracle: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let mut roots = vec![[0u8; 32]];
    for e in &entries {
        oracle.push(e.clone());
        let mut r = [0u8; 32];
        r.copy_from_slice(oracle.root().as_bytes());
        roots.push(r);
    }
    let (_, size, root) = log.checkpoint().expect("checkpoint");
    assert_eq!((size, root.0), (600, roots[600]));
    let mut tiles = TileSet::new(600);
    for path in tiles_of(600).expect("small tree") {
        let bytes = std::fs::read(dir.path().join(&path)).expect("tile on disk");
        tiles.insert(path, bytes);
    }
    (dir, tiles, root.0, roots)
}

#[test]
fn the_tiles_of_a_tree_are_the_same_list_for_every_reader() {
    assert_eq!(
        tiles_of(600).expect("small"),
        [
            "tile/0/000",
            "tile/0/001",
            "tile/0/002.p/88",
            "tile/1/000.p/2"
        ]
    );
    assert_eq!(tiles_of(1).expect("small"), ["tile/0/000.p/1"]);
    assert_eq!(
        tiles_of(256).expect("small"),
        ["tile/0/000", "tile/1/000.p/1"]
    );
    assert!(tiles_of(0).expect("empty").is_empty());
    assert_eq!(
        tiles_of(MAX_TILED_TREE + 1),
        Err(VerifyError::TreeTooLarge {
            size: MAX_TILED_TREE + 1,
            max: MAX_TILED_TREE
        })
    );
}

#[test]
fn every_older_tree_is_checked_against_the_newest_tiles() {
    let (_dir, tiles, root, roots) = log();
    for m in [0u64, 1, 2, 100, 255, 256, 257, 511, 512, 599, 600] {
        tiles
            .check_prefix(root, m, roots[m as usize])
            .unwrap_or_else(|e| panic!("tree of {m}: {e}"));
    }
}

#[test]
fn forks_rollbacks_and_bad_tiles_are_refused_by_name() {
    let (_dir, tiles, root, roots) = log();
    // Another root at an older size: a fork.
    let mut other = roots[300];
    other[0] ^= 1;
    assert_eq!(
        tiles.check_prefix(root, 300, other),
        Err(VerifyError::Fork { size: 600 })
    );
    assert_eq!(
        tiles.check_prefix(root, 600, other),
        Err(VerifyError::Fork { size: 600 })
    );
    // A device that saw a larger tree: the newest is a rollback.
    assert_eq!(
        tiles.check_prefix(root, 601, roots[600]),
        Err(VerifyError::Rollback {
            seen: 601,
            offered: 600
        })
    );
    // Tiles that do not hash to the newest root.
    let mut wrong_root = root;
    wrong_root[31] ^= 1;
    assert_eq!(
        tiles.check_prefix(wrong_root, 300, roots[300]),
        Err(VerifyError::Fork { size: 600 })
    );
    for path in tiles_of(600).expect("small") {
        let mut bad = tiles.clone();
        let mut bytes = tiles.tiles[&path].clone();
        bytes[5] ^= 0x80;
        bad.insert(path.clone(), bytes.clone());
        assert_eq!(
            bad.check_prefix(root, 300, roots[300]),
            Err(VerifyError::Fork { size: 600 }),
            "a flipped bit in {path}"
        );
        bytes.pop();
        bad.insert(path.clone(), bytes);
        assert_eq!(
            bad.check_prefix(root, 300, roots[300]),
            Err(VerifyError::TileMissing(path.clone()))
        );
        let mut missing = tiles.clone();
        missing.tiles.remove(&path);
        assert_eq!(
            missing.check_prefix(root, 300, roots[300]),
            Err(VerifyError::TileMissing(path))
        );
    }
}

#[test]
fn entries_come_out_only_as_the_tree_holds_them() {
    let (dir, tiles, root, _) = log();
    let mut bundles = BTreeMap::new();
    for path in bundles_of(600).expect("small") {
        bundles.insert(
            path.clone(),
            std::fs::read(dir.path().join(&path)).expect("bundle"),
        );
    }
    assert_eq!(
        bundles.keys().cloned().collect::<Vec<_>>(),
        [
            "tile/entries/000",
            "tile/entries/001",
            "tile/entries/002.p/88"
        ]
    );
    let entries = tiles.entries(root, &bundles).expect("authenticated");
    assert_eq!(entries.len(), 600);
    assert_eq!(entries[599], record(599).to_bytes().expect("record"));

    // An entry changed in a bundle.
    let mut forged = bundles.clone();
    let b = forged.get_mut("tile/entries/001").expect("bundle");
    let at = b.len() - 2;
    b[at] ^= 1;
    assert_eq!(
        tiles.entries(root, &forged),
        Err(VerifyError::EntryNotInTree { index: 511 })
    );
    // An entry left out, a bundle missing, another root.
    let mut short = bundles.clone();
    let b = short.get_mut("tile/entries/002.p/88").expect("bundle");
    let entries = read_bundle(b).expect("bundle");
    let cut: usize = entries[..87].iter().map(|e| e.len() + 2).sum();
    b.truncate(cut);
    assert!(matches!(
        tiles.entries(root, &short),
        Err(VerifyError::Malformed(_))
    ));
    let mut missing = bundles.clone();
    missing.remove("tile/entries/000");
    assert_eq!(
        tiles.entries(root, &missing),
        Err(VerifyError::TileMissing("tile/entries/000".into()))
    );
    let mut other = root;
    other[0] ^= 1;
    assert_eq!(
        tiles.entries(other, &bundles),
        Err(VerifyError::Fork { size: 600 })
    );
}
