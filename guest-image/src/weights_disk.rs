//! The weights disk: model weights on a read-only virtio disk instead of in the initramfs.
//!
//! Layout: an EROFS image (uncompressed, 4096-byte blocks, every file owned by root with a
//! fixed time, built by `mkfs.erofs`) followed directly by its dm-verity hash tree
//! (`veritysetup format --no-superblock`, SHA-256, 4096-byte blocks). Nothing on the disk says
//! how to read it: the data block count, the salt and the root hash go on the measured kernel
//! command line ([`cloister_protocol::VerityWeights`]), so the launch measurement binds the
//! weights and the guest's kernel checks each block against it as the block is read.
//!
//! The salt is derived from the files' names and digests and every time stamp is fixed, so one
//! set of weights always gives the same disk and root hash, whatever the release, and different
//! weights never share a salt.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cloister_protocol::VerityWeights;
use cloister_protocol::weights::VERITY_BLOCK_SIZE;
use sha2::{Digest as _, Sha256};

use crate::digest::sha256_file;
use crate::error::ImageError;
use crate::run::{Progress, require_tool, run_logged};

/// Domain separator of the salt derivation.
const SALT_CONTEXT: &[u8] = b"cloister weights disk v1\0";

/// What goes on the disk: (path inside the file system, source file).
#[derive(Debug, Clone)]
pub struct WeightsDiskSpec {
    /// Files, by relative path (`MODEL/FILE`); directories are implied.
    pub files: Vec<(String, PathBuf)>,
}

/// Time stamp of every file and of the file system: fixed, so that the disk and its root hash
/// depend on the weights alone (not on the release), and one disk serves every release that
/// pins the same weights.
const DISK_TIME: u32 = 0;

/// A built weights disk.
#[derive(Debug, Clone)]
pub struct BuiltWeightsDisk {
    /// The disk image (file system, then hash tree).
    pub path: PathBuf,
    /// What the command line must say to open it.
    pub verity: VerityWeights,
    /// sha256 of the whole disk image.
    pub sha256: String,
    /// sha256 of each file on it, by path.
    pub files: BTreeMap<String, String>,
    /// `mkfs.erofs` and `veritysetup` versions that built it (the layout depends on them).
    pub tools: BTreeMap<String, String>,
}

impl BuiltWeightsDisk {
    /// The manifest's description of the disk (keys sorted, like the rest of the manifest).
    pub fn manifest_value(&self) -> serde_json::Value {
        use serde_json::Value;
        let mut m: BTreeMap<&str, Value> = BTreeMap::new();
        m.insert(
            "format",
            Value::from("erofs + dm-verity (sha256, 4096-byte blocks, no superblock)"),
        );
        m.insert("disk_sha256", Value::from(self.sha256.as_str()));
        m.insert("data_blocks", Value::from(self.verity.data_blocks));
        m.insert("root_hash", Value::from(hex::encode(self.verity.root_hash)));
        m.insert("salt", Value::from(hex::encode(self.verity.salt)));
        m.insert("files", sorted(&self.files));
        m.insert("tools", sorted(&self.tools));
        sorted(&m)
    }
}

fn sorted<V: serde::Serialize>(
    map: &BTreeMap<impl serde::Serialize + Ord, V>,
) -> serde_json::Value {
    serde_json::to_value(map).unwrap_or(serde_json::Value::Null)
}

fn check_relative(path: &str) -> Result<(), ImageError> {
    let ok = !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::WeightsDiskPath(path.to_owned()))
    }
}

/// The salt for files with these digests: SHA-256 over a context string and each
/// `path NUL sha256 NUL`, in path order.
pub fn derive_salt(files: &BTreeMap<String, String>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(SALT_CONTEXT);
    for (path, sha) in files {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(sha.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// Links (or, across file systems, copies) `src` to `dest` with mode 0644.
fn stage_file(src: &Path, dest: &Path) -> Result<(), ImageError> {
    let linked = std::fs::hard_link(src, dest).is_ok()
        && std::fs::metadata(dest).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o644);
    if !linked {
        let _ = std::fs::remove_file(dest);
        std::fs::copy(src, dest).map_err(ImageError::io("copying", src))?;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
            .map_err(ImageError::io("setting the mode of", dest))?;
    }
    Ok(())
}

fn tool_version(tool: &str, arg: &str) -> String {
    Command::new(tool)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn uuid_from(salt: &[u8; 32]) -> String {
    let h = hex::encode(&salt[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Reads the root hash from `veritysetup format`'s report.
fn root_hash(report: &str) -> Option<[u8; 32]> {
    let line = report.lines().find(|l| l.starts_with("Root hash:"))?;
    let hex_root = line.split_whitespace().last()?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_root, &mut out).ok()?;
    Some(out)
}

fn verity_args(cmd: &mut Command, data_blocks: u64, salt: &[u8; 32]) {
    let bs = VERITY_BLOCK_SIZE.to_string();
    cmd.args(["--no-superblock", "--hash=sha256"])
        .arg(format!("--data-block-size={bs}"))
        .arg(format!("--hash-block-size={bs}"))
        .arg(format!("--data-blocks={data_blocks}"))
        .arg(format!("--hash-offset={}", data_blocks * VERITY_BLOCK_SIZE))
        .arg(format!("--salt={}", hex::encode(salt)));
}

/// Builds the disk for `spec` at `out` (a scratch directory beside it is removed afterwards).
pub fn build(spec: &WeightsDiskSpec, out: &Path) -> Result<BuiltWeightsDisk, ImageError> {
    // The spec is checked before anything is required or read: bad input is named as such.
    let mut paths = std::collections::BTreeSet::new();
    for (path, _) in &spec.files {
        check_relative(path)?;
        if !paths.insert(path.as_str()) {
            return Err(ImageError::DuplicatePath(path.clone()));
        }
    }
    require_tool("mkfs.erofs", "erofs-utils")?;
    require_tool("fsck.erofs", "erofs-utils")?;
    require_tool("veritysetup", "cryptsetup-bin")?;
    let progress = Progress::new("weights disk");
    let mut files = BTreeMap::new();
    for (path, src) in &spec.files {
        progress.tick(&format!("hashing {path}"));
        files.insert(path.clone(), sha256_file(src)?);
    }
    let salt = derive_salt(&files);
    let staging = out.with_extension("staging");
    let _ = std::fs::remove_dir_all(&staging);
    for (path, src) in &spec.files {
        let dest = staging.join(path);
        for dir in dest.ancestors().skip(1) {
            if dir.starts_with(&staging) {
                std::fs::create_dir_all(dir).map_err(ImageError::io("creating", dir))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(ImageError::io("setting the mode of", dir))?;
            }
        }
        stage_file(src, &dest)?;
    }
    let _ = std::fs::remove_file(out);
    let log = out.with_extension("log");
    progress.stage("mkfs.erofs");
    let mut mkfs = Command::new("mkfs.erofs");
    mkfs.args(["-x", "-1", "--all-root", "--ignore-mtime"])
        .arg(format!("-T{DISK_TIME}"))
        .arg(format!("-U{}", uuid_from(&salt)))
        .arg(out)
        .arg(&staging);
    let made = run_logged(mkfs, &log, &progress);
    let _ = std::fs::remove_dir_all(&staging);
    made?;
    let size = std::fs::metadata(out)
        .map_err(ImageError::io("reading the size of", out))?
        .len();
    if size == 0 || size % VERITY_BLOCK_SIZE != 0 {
        return Err(ImageError::WeightsDiskSize(size));
    }
    let data_blocks = size / VERITY_BLOCK_SIZE;
    progress.stage("veritysetup format");
    let mut format = Command::new("veritysetup");
    format.arg("format");
    verity_args(&mut format, data_blocks, &salt);
    format.arg(out).arg(out);
    run_logged(format, &log, &progress)?;
    let report = std::fs::read_to_string(&log).map_err(ImageError::io("reading", &log))?;
    let root = root_hash(&report).ok_or_else(|| ImageError::VerityRootHash(log.clone()))?;
    // Check the tree in user space before anything depends on it.
    progress.stage("veritysetup verify");
    let mut verify = Command::new("veritysetup");
    verify.arg("verify");
    verify_args_then(&mut verify, data_blocks, &salt, out, &root);
    run_logged(verify, &out.with_extension("verify.log"), &progress)?;
    let mut tools = BTreeMap::new();
    tools.insert("erofs-utils".to_owned(), tool_version("fsck.erofs", "-V"));
    tools.insert(
        "veritysetup".to_owned(),
        tool_version("veritysetup", "--version"),
    );
    let sha256 = sha256_file(out)?;
    progress.finish(&format!(
        "{data_blocks} data blocks, root {}",
        hex::encode(root)
    ));
    Ok(BuiltWeightsDisk {
        path: out.to_owned(),
        verity: VerityWeights {
            data_blocks,
            root_hash: root,
            salt,
        },
        sha256,
        files,
        tools,
    })
}

fn verify_args_then(cmd: &mut Command, blocks: u64, salt: &[u8; 32], disk: &Path, root: &[u8; 32]) {
    verity_args(cmd, blocks, salt);
    cmd.arg(disk).arg(disk).arg(hex::encode(root));
}

/// Checks `disk` against `verity` in user space (`veritysetup verify`): `Ok(false)` when a
/// block does not match.
pub fn verify(disk: &Path, verity: &VerityWeights) -> Result<bool, ImageError> {
    require_tool("veritysetup", "cryptsetup-bin")?;
    let mut cmd = Command::new("veritysetup");
    cmd.arg("verify");
    verify_args_then(
        &mut cmd,
        verity.data_blocks,
        &verity.salt,
        disk,
        &verity.root_hash,
    );
    let out = cmd
        .output()
        .map_err(ImageError::io("running", "veritysetup verify"))?;
    Ok(out.status.success())
}

#[cfg(test)]
mod tests;
