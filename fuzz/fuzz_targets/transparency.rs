//! The transparency log's formats as a device or a monitor reads them from an untrusted
//! server, against a real log (three release records, the signed-note format's example key):
//! * mode 0 — a checkpoint (signed note): signature, origin, size, root;
//! * mode 1 — the hash tile of the tree of 3, as a device checks the tree of 1 it saw against it;
//! * mode 2 — a log proof (JSON, as a bundle carries it): checkpoint, then inclusion;
//! * mode 3 — a tile path and an entry bundle.
#![no_main]

use std::sync::OnceLock;

use cloister_device_core::trust;
use cloister_fuzz::{release_record, tagged, write_seeds};
use cloister_transparency::{
    Log, LogProof, Quorum, SeenCheckpoint, TileSet, TrustedLog, VerifiedCheckpoint, storage,
};
use libfuzzer_sys::fuzz_target;
use zeroize::Zeroizing;

// The example key pair of the signed-note format (golang.org/x/mod/sumdb/note).
const SKEY: &str = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

struct Fixture {
    trusted: TrustedLog,
    seen: SeenCheckpoint,
    three: VerifiedCheckpoint,
    checkpoint: Vec<u8>,
    tile: Vec<u8>,
    proof: LogProof,
    bundle: Vec<u8>,
    entries: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::create(dir.path(), &Zeroizing::new(SKEY.to_owned()), VKEY).expect("log");
        let entries: Vec<Vec<u8>> = (1..=3).map(release_record).collect();
        log.append(&entries[..1], |_| {}).expect("append");
        let (_, size, root) = log.checkpoint().expect("checkpoint");
        let seen = SeenCheckpoint { size, root: root.0 };
        log.append(&entries[1..], |_| {}).expect("append");
        let (checkpoint, _, _) = log.checkpoint().expect("checkpoint");
        let trusted = TrustedLog::new(VKEY, &[], Quorum::InsecureLogSignatureOnly).expect("trusted log");
        let three = trusted
            .verify_checkpoint(&checkpoint)
            .expect("own checkpoint verifies");
        let tile = std::fs::read(dir.path().join("tile/0/000.p/3")).expect("hash tile");
        let proof = log.log_proof(1).expect("log proof");
        let bundle = std::fs::read(dir.path().join("tile/entries/000.p/3")).expect("entry bundle");
        Fixture {
            trusted,
            seen,
            three,
            checkpoint,
            tile,
            proof,
            bundle,
            entries,
        }
    })
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let f = fixture();
    vec![
        ("checkpoint", tagged(0, &f.checkpoint)),
        ("tile", tagged(1, &f.tile)),
        ("log-proof", tagged(2, &f.proof.to_json())),
        ("bundle", tagged(3, &f.bundle)),
        ("tile-path", tagged(3, b"tile/0/x001/234.p/5")),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 4 {
        0 => {
            if let Ok(cp) = f.trusted.verify_checkpoint(body) {
                // The only tree this key signed has three entries.
                assert_eq!((cp.size, cp.root), (f.three.size, f.three.root), "forged checkpoint");
            }
        }
        1 => {
            let mut tiles = TileSet::new(3);
            tiles.insert("tile/0/000.p/3".into(), body.to_vec());
            if trust::advance(Some(f.seen), &f.three, &tiles).is_ok() {
                // Any other tile that passes would be a second preimage of the root.
                assert_eq!(body, &f.tile[..], "a forged tile accepted");
            }
        }
        2 => {
            if let Ok(proof) = LogProof::from_json(body)
                && f.trusted.verify_proof(&proof).is_ok()
            {
                assert!(f.entries.contains(&proof.entry), "an entry proved that was never logged");
            }
        }
        _ => {
            if let Ok(path) = std::str::from_utf8(body) {
                let _ = storage::tile_path(path);
            }
            let _ = storage::read_bundle(body);
        }
    }
});
