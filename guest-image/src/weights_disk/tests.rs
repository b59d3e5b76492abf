use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// dm-verity format 1, computed independently of veritysetup: each level hashes the blocks of
/// the level below as SHA-256(salt ‖ block), packs the digests into zero-padded 4096-byte
/// blocks, and stops at one block, whose salted hash is the root.
fn oracle_root(data: &[u8], salt: &[u8; 32]) -> [u8; 32] {
    let bs = VERITY_BLOCK_SIZE as usize;
    let hash = |block: &[u8]| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(salt);
        h.update(block);
        h.finalize().into()
    };
    let mut level: Vec<u8> = data.to_vec();
    loop {
        let digests: Vec<[u8; 32]> = level.chunks(bs).map(hash).collect();
        let mut packed: Vec<u8> = digests.concat();
        packed.resize(packed.len().next_multiple_of(bs), 0);
        if packed.len() == bs {
            return hash(&packed);
        }
        level = packed;
    }
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Bytes that do not repeat (so that no two data blocks are equal).
fn noise(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Sha256::digest([seed]);
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    out.truncate(len);
    out
}

fn sources(dir: &Path, mode: u32) -> WeightsDiskSpec {
    let big = dir.join("m/big.bin");
    let small = dir.join("other/config.json");
    // 700 KiB: more than 128 data blocks, so the tree has two levels.
    write(&big, &noise(700 * 1024 + 5, 1), mode);
    write(&small, br#"{"hidden_size": 8}"#, mode);
    WeightsDiskSpec {
        files: vec![
            ("m/big.bin".to_owned(), big),
            ("m2/config.json".to_owned(), small),
        ],
    }
}

#[test]
#[ignore = "full tier: mkfs.erofs and veritysetup (cargo xtask test)"]
fn same_weights_same_disk_and_the_tree_matches_an_independent_computation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = build(
        &sources(&tmp.path().join("a"), 0o644),
        &tmp.path().join("a.img"),
    )
    .expect("builds");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Other modes and times on the sources change nothing on the disk.
    let b = build(
        &sources(&tmp.path().join("b"), 0o600),
        &tmp.path().join("b.img"),
    )
    .expect("builds");
    assert_eq!(a.sha256, b.sha256);
    assert_eq!(a.verity, b.verity);
    assert_eq!(a.files, b.files);
    assert!(a.verity.data_blocks > 128, "a two-level tree");

    let disk = std::fs::read(&a.path).expect("disk");
    let data = &disk[..a.verity.data_bytes() as usize];
    assert_eq!(oracle_root(data, &a.verity.salt), a.verity.root_hash);
    assert!(
        disk.len() as u64 > a.verity.data_bytes(),
        "hash tree after the data"
    );
    assert!(verify(&a.path, &a.verity).expect("veritysetup runs"));
    assert_eq!(a.verity.salt, derive_salt(&a.files));

    // The file system holds exactly the files, byte for byte.
    let out = tmp.path().join("extracted");
    let status = Command::new("fsck.erofs")
        .arg(format!("--extract={}", out.display()))
        .arg(&a.path)
        .status()
        .expect("fsck.erofs runs");
    assert!(status.success());
    assert_eq!(
        std::fs::read(out.join("m/big.bin")).expect("big"),
        noise(700 * 1024 + 5, 1)
    );
    assert_eq!(
        std::fs::read(out.join("m2/config.json")).expect("config"),
        br#"{"hidden_size": 8}"#
    );
    let manifest = a.manifest_value();
    assert_eq!(manifest["root_hash"], hex::encode(a.verity.root_hash));
    assert_eq!(manifest["files"]["m/big.bin"], a.files["m/big.bin"]);
}

#[test]
#[ignore = "full tier: mkfs.erofs and veritysetup (cargo xtask test)"]
fn one_changed_byte_in_the_data_or_the_tree_fails_verification() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let built = build(&sources(tmp.path(), 0o644), &tmp.path().join("w.img")).expect("builds");
    let original = std::fs::read(&built.path).expect("disk");
    for at in [
        built.verity.data_bytes() as usize / 2,
        built.verity.data_bytes() as usize + 17,
    ] {
        let mut changed = original.clone();
        changed[at] ^= 0x01;
        let path = tmp.path().join(format!("changed-{at}.img"));
        std::fs::write(&path, &changed).expect("write");
        assert!(
            !verify(&path, &built.verity).expect("veritysetup runs"),
            "byte {at}"
        );
    }
}

#[test]
#[ignore = "full tier: mkfs.erofs and veritysetup (cargo xtask test)"]
fn other_weights_get_another_salt_and_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = build(
        &sources(&tmp.path().join("a"), 0o644),
        &tmp.path().join("a.img"),
    )
    .expect("builds");
    let mut spec = sources(&tmp.path().join("b"), 0o644);
    write(&spec.files[1].1, br#"{"hidden_size": 9}"#, 0o644);
    spec.files[1].0 = "m2/config.json".to_owned();
    let b = build(&spec, &tmp.path().join("b.img")).expect("builds");
    assert_ne!(a.verity.salt, b.verity.salt);
    assert_ne!(a.verity.root_hash, b.verity.root_hash);
}

#[test]
fn refuses_paths_that_are_not_plain_and_relative() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("f");
    write(&src, b"x", 0o644);
    for bad in ["", "/abs", "a/../b", "a//b", "./a", "a/."] {
        let spec = WeightsDiskSpec {
            files: vec![(bad.to_owned(), src.clone())],
        };
        assert!(
            matches!(
                build(&spec, &tmp.path().join("x.img")),
                Err(ImageError::WeightsDiskPath(_))
            ),
            "{bad:?}"
        );
    }
    let twice = WeightsDiskSpec {
        files: vec![("a".to_owned(), src.clone()), ("a".to_owned(), src)],
    };
    assert!(matches!(
        build(&twice, &tmp.path().join("y.img")),
        Err(ImageError::DuplicatePath(_))
    ));
}

#[test]
fn reads_the_root_hash_from_veritysetups_report() {
    let report = "VERITY header information for disk.img\nUUID:            \t\nHash type:       \t1\n\
                  Root hash:      \tc5ac36e13f90f983b3fe1aaaae7d26a54621cedbda5f64862f60510e4bf9e306\n";
    assert_eq!(
        root_hash(report).map(hex::encode).as_deref(),
        Some("c5ac36e13f90f983b3fe1aaaae7d26a54621cedbda5f64862f60510e4bf9e306")
    );
    assert_eq!(root_hash("Root hash: xyz"), None);
    assert_eq!(root_hash(""), None);
}
