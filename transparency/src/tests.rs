//! The log against an independent RFC 6962 implementation, and every refusal by name.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use sha2_011::Sha256;
use zeroize::Zeroizing;

use super::*;
use crate::cosign::CosignatureSigner;
use crate::record::tests::record;

const ORIGIN: &str = "log.cloister.example/releases";

fn keys() -> (Zeroizing<String>, String) {
    let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, ORIGIN);
    (Zeroizing::new(skey), vkey)
}

fn entries(range: std::ops::Range<u64>) -> Vec<Vec<u8>> {
    range
        .map(|n| record(n).to_bytes().expect("test value"))
        .collect()
}

fn witness(dir: &Path, name: &str, seed: u8, vkey: &str) -> (Witness, String) {
    let signer = CosignatureSigner::new(name, &Zeroizing::new([seed; 32]), 1_800_000_000)
        .expect("test value");
    let key = signer.verifier_key();
    let w = Witness::new(signer, vkey, &dir.join(format!("{name}.json"))).expect("test value");
    (w, key)
}

#[test]
fn roots_and_proofs_agree_with_ct_merkle_across_bundles() {
    let dir = tempfile::tempdir().expect("test value");
    let (skey, vkey) = keys();
    let log = Log::create(dir.path(), &skey, &vkey).expect("test value");
    let mut oracle: MemoryBackedTree<Sha256, Vec<u8>> = MemoryBackedTree::new();
    let mut done = 0u64;
    for batch in [1u64, 7, 250, 42, 1] {
        let new = entries(done..done + batch);
        let appended = log.append(&new, |_| {}).expect("test value");
        assert_eq!(appended.first, done);
        for e in &new {
            oracle.push(e.clone());
        }
        done += batch;
        let (_, size, root) = log.checkpoint().expect("test value");
        assert_eq!(size, done);
        assert_eq!(
            &root.0[..],
            oracle.root().as_bytes().as_slice(),
            "root at {done}"
        );
        for index in [0, done / 2, done - 1] {
            let proof = log.prove_inclusion(index, done).expect("test value");
            let flat: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
            let want = oracle.prove_inclusion(index as usize);
            assert_eq!(flat, want.as_bytes(), "inclusion of {index} in {done}");
            assert_eq!(
                log.entry(index).expect("test value"),
                entries(index..index + 1)[0]
            );
        }
    }
    // Consistency from 8 to 301 is ct-merkle's proof too.
    let proof = log.prove_consistency(8, done).expect("test value");
    let flat: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
    assert_eq!(
        flat,
        oracle.prove_consistency((done - 8) as usize).as_bytes()
    );
    // The C2SP layout: a full level-0 tile and bundle, the partial ones, a level-1 tile.
    for path in [
        "tile/0/000",
        "tile/entries/000",
        "tile/0/001.p/45",
        "tile/entries/001.p/45",
        "tile/1/000.p/1",
        "checkpoint",
    ] {
        assert!(dir.path().join(path).is_file(), "{path}");
    }
    let bundle = std::fs::read(dir.path().join("tile/entries/000")).expect("test value");
    assert_eq!(
        storage::read_bundle(&bundle).expect("test value").len(),
        256
    );
    assert!(matches!(
        log.prove_inclusion(done, done),
        Err(LogError::Range { .. })
    ));
    assert!(matches!(
        log.append(&[vec![0; 70_000]], |_| {}),
        Err(LogError::EntrySize(70_000))
    ));
    assert!(matches!(
        Log::create(dir.path(), &skey, &vkey),
        Err(LogError::Exists(_))
    ));
    let (other_skey, _) = keys();
    assert!(matches!(
        Log::open(dir.path(), &other_skey, &vkey),
        Err(LogError::SignerKey)
    ));
}

/// A log of 20 records, cosigned by two of three witnesses; the bundle for entry 13.
struct Fixture {
    _dir: tempfile::TempDir,
    log: Log,
    trusted: TrustedLog,
    bundle: LogProof,
    witnesses: Vec<Witness>,
    skey: Zeroizing<String>,
    vkey: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("test value");
    let (skey, vkey) = keys();
    let log = Log::create(&dir.path().join("log"), &skey, &vkey).expect("test value");
    let (w1, k1) = witness(dir.path(), "w1.example", 1, &vkey);
    let (w2, k2) = witness(dir.path(), "w2.example", 2, &vkey);
    let (w3, k3) = witness(dir.path(), "w3.example", 3, &vkey);
    log.append(&entries(0..20), |_| {}).expect("test value");
    let (cp, size, _) = log.checkpoint().expect("test value");
    let cp = w1.cosign(&cp, &[]).expect("test value");
    let cp = w2.cosign(&cp, &[]).expect("test value");
    let mut bundle = log.log_proof(13).expect("test value");
    assert_eq!(bundle.leaf_index, 13);
    assert_eq!(size, 20);
    bundle.checkpoint = String::from_utf8(cp).expect("test value");
    let trusted = TrustedLog::new(
        &vkey,
        &[k1, k2, k3],
        Quorum::Witnesses(2.try_into().expect("nonzero")),
    )
    .expect("test value");
    Fixture {
        _dir: dir,
        log,
        trusted,
        bundle,
        witnesses: vec![w1, w2, w3],
        skey,
        vkey,
    }
}

#[test]
fn a_good_bundle_verifies_and_each_tamper_is_refused_by_name() {
    let f = fixture();
    let (rec, cp) = f.trusted.verify_proof(&f.bundle).expect("test value");
    assert_eq!(
        rec.to_bytes().expect("test value"),
        record(13).to_bytes().expect("test value")
    );
    assert_eq!((cp.size, cp.witnesses.len()), (20, 2));

    let check = |b: &LogProof| f.trusted.verify_proof(b).map(|_| ());
    let mut b = f.bundle.clone();
    b.entry = record(12).to_bytes().expect("test value");
    assert_eq!(check(&b), Err(VerifyError::Inclusion), "wrong leaf");
    let mut b = f.bundle.clone();
    b.leaf_index = 12;
    assert_eq!(check(&b), Err(VerifyError::Inclusion), "wrong index");
    let mut b = f.bundle.clone();
    b.leaf_index = 20;
    assert!(matches!(
        check(&b),
        Err(VerifyError::IndexBeyondTree { .. })
    ));
    let mut b = f.bundle.clone();
    b.inclusion_proof.pop();
    assert_eq!(check(&b), Err(VerifyError::Inclusion), "truncated proof");
    let mut b = f.bundle.clone();
    b.inclusion_proof[0][0] ^= 1;
    assert_eq!(check(&b), Err(VerifyError::Inclusion), "altered proof");
    // A proof for one entry (the log's) whose bytes are not a release record.
    let mut b = f.bundle.clone();
    b.entry = b"not a record".to_vec();
    assert_eq!(check(&b), Err(VerifyError::Inclusion));
    // A checkpoint claiming another size: the log's signature no longer verifies.
    let mut b = f.bundle.clone();
    b.checkpoint = b.checkpoint.replacen("\n20\n", "\n21\n", 1);
    assert!(matches!(check(&b), Err(VerifyError::BadSignature(n)) if n == ORIGIN));
    // A checkpoint signed by another key under the log's name.
    let (forger, _) = keys();
    let cp = tlog_tiles::Checkpoint::from_bytes(
        signed_note::Note::from_bytes(f.bundle.checkpoint.as_bytes())
            .expect("test value")
            .text(),
    )
    .expect("test value");
    let mut note = signed_note::Note::new(&cp.to_bytes(), &[]).expect("test value");
    note.add_sigs(&[&signed_note::StandardSigner::new(&forger).expect("test value")])
        .expect("test value");
    let mut b = f.bundle.clone();
    b.checkpoint = String::from_utf8(note.to_bytes()).expect("test value");
    assert_eq!(
        check(&b),
        Err(VerifyError::NoLogSignature),
        "forged signature"
    );
    // One witness short of the quorum.
    let (log_only, _, _) = f.log.checkpoint().expect("test value");
    let one = f.witnesses[0].cosign(&log_only, &[]).expect("test value");
    let mut b = f.bundle.clone();
    b.checkpoint = String::from_utf8(one).expect("test value");
    assert_eq!(
        check(&b),
        Err(VerifyError::Witnesses { have: 1, need: 2 }),
        "missing witness"
    );
    // A witness's cosignature with an altered time.
    let mut b = f.bundle.clone();
    let last = b
        .checkpoint
        .trim_end()
        .rsplit('\n')
        .next()
        .expect("test value")
        .to_owned();
    let sig = last.rsplit(' ').next().expect("test value");
    let mut raw = STANDARD.decode(sig).expect("test value");
    raw[11] ^= 1;
    b.checkpoint = b.checkpoint.replace(sig, &STANDARD.encode(raw));
    assert!(matches!(check(&b), Err(VerifyError::BadSignature(n)) if n == "w2.example"));
    assert!(matches!(
        TrustedLog::new("nonsense", &[], Quorum::InsecureLogSignatureOnly),
        Err(VerifyError::Key(_))
    ));
    assert!(matches!(
        TrustedLog::new(&f.vkey, &[], Quorum::ONE),
        Err(VerifyError::Quorum { .. })
    ));
}

#[test]
fn devices_and_witnesses_refuse_rollback_and_forks() {
    let f = fixture();
    let (_, cp20) = f.trusted.verify_proof(&f.bundle).expect("test value");
    let mut seen = SeenCheckpoint {
        size: 0,
        root: tlog_tiles::EMPTY_HASH.0,
    };
    seen.advance(&cp20, &[]).expect("test value");
    f.log.append(&entries(20..31), |_| {}).expect("test value");
    let (cp31, size, root) = f.log.checkpoint().expect("test value");
    let proof = f.log.prove_consistency(20, 31).expect("test value");
    let cp31 = f.witnesses[0].cosign(&cp31, &proof).expect("test value");
    let cp31 = f.witnesses[1].cosign(&cp31, &proof).expect("test value");
    let v31 = f.trusted.verify_checkpoint(&cp31).expect("test value");
    assert_eq!((v31.size, v31.root), (size, root.0));
    // A wrong proof: refused, and the device stays where it was.
    assert_eq!(
        seen.clone().advance(&v31, &proof[1..]),
        Err(VerifyError::Fork { size: 31 })
    );
    seen.advance(&v31, &proof).expect("test value");
    assert_eq!(
        seen.clone().advance(&cp20, &[]),
        Err(VerifyError::Rollback {
            seen: 31,
            offered: 20
        })
    );
    // The same size with another root.
    let mut other = v31.clone();
    other.root[0] ^= 1;
    assert_eq!(
        seen.clone().advance(&other, &[]),
        Err(VerifyError::Fork { size: 31 })
    );

    // A forked log under the same key: 20 other records. Witness 1 has seen the real tree of
    // 31 and refuses; a fresh witness would have cosigned, but one is short of the quorum.
    let fork_dir = tempfile::tempdir().expect("test value");
    let forked = Log::create(fork_dir.path(), &f.skey, &f.vkey).expect("test value");
    forked
        .append(&entries(100..140), |_| {})
        .expect("test value");
    let (fcp, _, _) = forked.checkpoint().expect("test value");
    let fproof = forked.prove_consistency(20, 40).expect("test value");
    assert!(matches!(
        f.witnesses[0].cosign(&fcp, &fproof),
        Err(LogError::SplitView { seen: 31, .. })
    ));
    let fresh = f.witnesses[2]
        .cosign(&fcp, &[])
        .expect("a witness that saw nothing");
    assert_eq!(
        f.trusted.verify_checkpoint(&fresh),
        Err(VerifyError::Witnesses { have: 1, need: 2 }),
        "the forked tree has one cosignature"
    );
}

#[test]
fn only_c2sp_tile_paths_are_read() {
    assert_eq!(
        storage::tile_path("tile/0/000").as_deref(),
        Some("tile/0/000")
    );
    assert_eq!(
        storage::tile_path("tile/entries/x001/234.p/7").as_deref(),
        Some("tile/entries/x001/234.p/7")
    );
    assert_eq!(
        storage::tile_path("tile/2/001.p/255").as_deref(),
        Some("tile/2/001.p/255")
    );
    for bad in [
        "tile/0/000.p/0",
        "tile/0/000.p/256",
        "tile/64/000",
        "tile/255/000",
        "tile/0/1",
        "tile/0/x000/001",
        "tile/0/../../hashes",
        "tile/entries",
        "checkpoint",
        "tile/8/0/000",
    ] {
        assert_eq!(storage::tile_path(bad), None, "{bad}");
    }
}
