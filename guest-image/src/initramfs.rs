//! The guest's initramfs: a deterministic newc cpio archive and its manifest.
//!
//! The archive is part of the launch measurement (QEMU's `kernel-hashes=on` puts its sha256
//! in the firmware's hashes page), so anyone rebuilding it from the same inputs must get the
//! same bytes. Nothing about the build machine may reach the archive: entries are sorted by
//! path, every parent directory is an explicit entry before its children, modes are fixed by
//! the entry's kind (never copied from the source file, so umask does not matter), uid/gid are
//! 0, every mtime is the caller's `SOURCE_DATE_EPOCH`, nlink is 1 and inode numbers count up
//! from 1 in archive order. Gzip output has no file name and a zero mtime in its header.
//!
//! The archive is newc (`070701`), the only cpio format the kernel unpacks; names are written
//! without the leading `/`, as the kernel's own `gen_init_cpio` writes them.
//!
//! A manifest (canonical JSON) lists every regular file's path, size, mode and sha256 with the
//! kernel, firmware and command line the image is meant for; it is packed at
//! [`MANIFEST_PATH`] and its sha256 goes into the evidence bundle.

use std::collections::BTreeMap;
use std::io::{BufReader, BufWriter, Read as _, Write};
use std::path::{Path, PathBuf};

use cpio::newc::Builder;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::digest::sha256_file;
use crate::error::{ImageError, PathProblem};

/// Where the builder puts the manifest inside the archive.
pub const MANIFEST_PATH: &str = "/cloister/manifest.json";
/// Where the runtime finds its kernel modules, and the `order` file naming them.
pub const MODULES_DIR: &str = "/lib/modules/cloister";
/// The manifest's format tag.
pub const MANIFEST_FORMAT: &str = "cloister-initramfs-manifest/v1";

/// Mode bits of each kind of entry: fixed, whatever the source file's mode or the umask.
const DIR_MODE: u32 = 0o040_755;
const EXEC_MODE: u32 = 0o100_755;
const FILE_MODE: u32 = 0o100_644;
const SYMLINK_MODE: u32 = 0o120_777;
const CHAR_MODE: u32 = 0o020_600;
/// Fixed gzip level: the compressed bytes depend on it.
const GZIP_LEVEL: u32 = 9;

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// A file on the build machine, streamed (only its contents are used).
    File(PathBuf),
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: mode 0755 when executable, else 0644.
    File {
        /// Its contents.
        content: Content,
        /// Whether it is executable.
        executable: bool,
    },
    /// A directory, mode 0755.
    Directory,
    /// A symbolic link (mode 0777, as Linux reports every symlink).
    Symlink {
        /// What it points to (not checked: it is resolved inside the guest).
        target: String,
    },
    /// A character device node, mode 0600.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Absolute, normalised path inside the archive (`/lib/modules/cloister/tsm.ko`).
    pub path: String,
    /// What is at that path.
    pub kind: EntryKind,
}

impl Entry {
    /// A regular file.
    pub fn file(path: &str, content: Content, executable: bool) -> Self {
        Entry {
            path: path.to_owned(),
            kind: EntryKind::File {
                content,
                executable,
            },
        }
    }

    /// A directory.
    pub fn dir(path: &str) -> Self {
        Entry {
            path: path.to_owned(),
            kind: EntryKind::Directory,
        }
    }

    /// A symbolic link.
    pub fn symlink(path: &str, target: &str) -> Self {
        Entry {
            path: path.to_owned(),
            kind: EntryKind::Symlink {
                target: target.to_owned(),
            },
        }
    }

    /// A character device node.
    pub fn char_device(path: &str, major: u32, minor: u32) -> Self {
        Entry {
            path: path.to_owned(),
            kind: EntryKind::CharDevice { major, minor },
        }
    }
}

/// How the archive is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Gzip at a fixed level, with no name and a zero mtime in the header.
    Gzip,
    /// The bare cpio (for large model weights, which do not compress and are better mapped
    /// as they are).
    None,
}

/// What the image is for, recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFields {
    /// sha256 of the kernel image booted with this initramfs.
    pub kernel_sha256: String,
    /// sha256 of each firmware image, by platform name (`amdsev`, `inteltdx`).
    pub firmware_sha256: BTreeMap<String, String>,
    /// The kernel command line (the guest's configuration).
    pub cmdline: String,
    /// The weights disk, when the weights are not in the initramfs
    /// ([`crate::weights_disk::BuiltWeightsDisk::manifest_value`]).
    pub weights_disk: Option<Value>,
}

/// Everything an archive is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsSpec {
    /// The entries; parent directories not listed are added (mode 0755).
    pub entries: Vec<Entry>,
    /// Every entry's mtime (newc holds 32 bits).
    pub source_date_epoch: u32,
    /// How the archive is stored.
    pub compression: Compression,
    /// Recorded in the manifest.
    pub manifest: ManifestFields,
}

/// A built archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltInitramfs {
    /// Where it was written.
    pub path: PathBuf,
    /// sha256 of the file as written (compressed, if it is).
    pub sha256: String,
    /// sha256 of the manifest.
    pub manifest_sha256: String,
    /// The manifest, as packed at [`MANIFEST_PATH`].
    pub manifest_json: String,
}

/// The layout the runtime expects: `/init` (mode 0755), each module at
/// `/lib/modules/cloister/<name>.ko` with `/lib/modules/cloister/order` naming them one per
/// line in load order, `/dev/console` (5, 1) for the kernel's first console, `/dev/null` (1, 3),
/// and the mount points `/proc /sys /dev /tmp /run`. Append further entries (model weights)
/// before building.
pub fn guest_entries(init: &Path, modules: &[(String, PathBuf)]) -> Result<Vec<Entry>, ImageError> {
    let mut entries = vec![Entry::file("/init", Content::File(init.to_owned()), true)];
    let mut order = String::new();
    for (name, ko) in modules {
        // The name becomes a file name and a line of `order`.
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(ImageError::ModuleName(name.clone()));
        }
        entries.push(Entry::file(
            &format!("{MODULES_DIR}/{name}.ko"),
            Content::File(ko.clone()),
            false,
        ));
        order.push_str(name);
        order.push('\n');
    }
    entries.push(Entry::file(
        &format!("{MODULES_DIR}/order"),
        Content::Bytes(order.into_bytes()),
        false,
    ));
    for dir in ["/proc", "/sys", "/dev", "/tmp", "/run"] {
        entries.push(Entry::dir(dir));
    }
    entries.push(Entry::char_device("/dev/console", 5, 1));
    entries.push(Entry::char_device("/dev/null", 1, 3));
    Ok(entries)
}

/// Refuses paths with more than one spelling, or none inside the archive.
fn check_path(path: &str) -> Result<(), ImageError> {
    let refuse = |problem| {
        Err(ImageError::ArchivePath {
            path: path.to_owned(),
            problem,
        })
    };
    if path.contains('\0') {
        return refuse(PathProblem::Nul);
    }
    let Some(rest) = path.strip_prefix('/') else {
        return refuse(PathProblem::NotAbsolute);
    };
    if rest.is_empty() {
        return refuse(PathProblem::Root);
    }
    for component in rest.split('/') {
        match component {
            ".." => return refuse(PathProblem::ParentComponent),
            "" | "." => return refuse(PathProblem::NotNormalised),
            _ => {}
        }
    }
    Ok(())
}

/// The parent of a checked path, `None` for a top-level entry.
fn parent(path: &str) -> Option<&str> {
    path.rfind('/').filter(|&i| i > 0).map(|i| &path[..i])
}

/// A regular file's size and sha256, computed before anything is written.
#[derive(Debug, Clone)]
struct Digested {
    size: u32,
    sha256: String,
}

fn too_large(path: &str, size: u64) -> ImageError {
    ImageError::FileTooLarge {
        path: path.to_owned(),
        size,
    }
}

fn digest(path: &str, content: &Content) -> Result<Digested, ImageError> {
    let (size, sha256) = match content {
        Content::Bytes(b) => (b.len() as u64, hex::encode(Sha256::digest(b))),
        Content::File(src) => {
            let meta = std::fs::metadata(src).map_err(ImageError::io("inspecting", src))?;
            // Refused before reading: a 4 GiB file would otherwise be hashed for nothing.
            if meta.len() > u64::from(u32::MAX) {
                return Err(too_large(path, meta.len()));
            }
            (meta.len(), sha256_file(src)?)
        }
    };
    let size = u32::try_from(size).map_err(|_| too_large(path, size))?;
    Ok(Digested { size, sha256 })
}

/// Sorted, checked entries with every parent directory present.
fn resolve(entries: &[Entry]) -> Result<BTreeMap<&str, &EntryKind>, ImageError> {
    static DIRECTORY: EntryKind = EntryKind::Directory;
    let mut tree: BTreeMap<&str, &EntryKind> = BTreeMap::new();
    for e in entries {
        check_path(&e.path)?;
        if e.path == MANIFEST_PATH {
            return Err(ImageError::ReservedPath(e.path.clone()));
        }
        if let EntryKind::Symlink { target } = &e.kind
            && target.contains('\0')
        {
            return Err(ImageError::ArchivePath {
                path: target.clone(),
                problem: PathProblem::Nul,
            });
        }
        if tree.insert(&e.path, &e.kind).is_some() {
            return Err(ImageError::DuplicatePath(e.path.clone()));
        }
    }
    let paths: Vec<&str> = tree.keys().copied().chain([MANIFEST_PATH]).collect();
    for path in paths {
        let mut child = path;
        while let Some(dir) = parent(child) {
            match tree.get(dir) {
                None => {
                    tree.insert(dir, &DIRECTORY);
                }
                Some(EntryKind::Directory) => {}
                Some(_) => {
                    return Err(ImageError::ParentNotDirectory {
                        path: path.to_owned(),
                        parent: dir.to_owned(),
                    });
                }
            }
            child = dir;
        }
    }
    Ok(tree)
}

fn octal_mode(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// Canonical JSON: objects are `BTreeMap`s (sorted keys), compact.
fn manifest_json(
    spec: &InitramfsSpec,
    tree: &BTreeMap<&str, &EntryKind>,
    digests: &BTreeMap<&str, Digested>,
) -> Result<String, ImageError> {
    let mut files = Vec::new();
    let mut symlinks = Vec::new();
    for (path, kind) in tree {
        match kind {
            EntryKind::File { executable, .. } => {
                let d = &digests[path];
                let mode = if *executable { EXEC_MODE } else { FILE_MODE };
                let mut f: BTreeMap<&str, Value> = BTreeMap::new();
                f.insert("path", Value::from(*path));
                f.insert("size", Value::from(d.size));
                f.insert("mode", Value::from(octal_mode(mode)));
                f.insert("sha256", Value::from(d.sha256.as_str()));
                files.push(to_value(&f)?);
            }
            EntryKind::Symlink { target } => {
                let mut l: BTreeMap<&str, Value> = BTreeMap::new();
                l.insert("path", Value::from(*path));
                l.insert("target", Value::from(target.as_str()));
                symlinks.push(to_value(&l)?);
            }
            EntryKind::Directory | EntryKind::CharDevice { .. } => {}
        }
    }
    let m = &spec.manifest;
    let mut top: BTreeMap<&str, Value> = BTreeMap::new();
    top.insert("format", Value::from(MANIFEST_FORMAT));
    top.insert("kernel_sha256", Value::from(m.kernel_sha256.as_str()));
    top.insert("firmware_sha256", to_value(&m.firmware_sha256)?);
    top.insert("cmdline", Value::from(m.cmdline.as_str()));
    if let Some(disk) = &m.weights_disk {
        top.insert("weights_disk", disk.clone());
    }
    top.insert("source_date_epoch", Value::from(spec.source_date_epoch));
    top.insert("files", Value::Array(files));
    top.insert("symlinks", Value::Array(symlinks));
    serde_json::to_string(&top).map_err(|e| ImageError::Manifest(e.to_string()))
}

/// A `serde_json` value of a `BTreeMap`: its keys stay sorted whether or not another crate
/// turns on serde_json's `preserve_order`.
fn to_value<K: serde::Serialize + Ord, V: serde::Serialize>(
    map: &BTreeMap<K, V>,
) -> Result<Value, ImageError> {
    serde_json::to_value(map).map_err(|e| ImageError::Manifest(e.to_string()))
}

/// The output stream: plain or gzip over a buffered file.
enum Sink {
    Plain(BufWriter<std::fs::File>),
    Gzip(flate2::write::GzEncoder<BufWriter<std::fs::File>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> std::io::Result<std::fs::File> {
        let buffered = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

/// Copies exactly `expected.size` bytes of `src` into `out`, failing if they no longer have
/// the digest the manifest recorded (the file changed after it was hashed).
fn copy_checked(
    path: &str,
    src: &Path,
    expected: &Digested,
    out: &mut impl Write,
    part: &Path,
) -> Result<(), ImageError> {
    let file = std::fs::File::open(src).map_err(ImageError::io("opening", src))?;
    let mut reader = BufReader::new(file).take(u64::from(expected.size));
    let mut hasher = Sha256::new();
    let mut copied = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(ImageError::io("reading", src))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(ImageError::io("writing", part))?;
        copied += n as u64;
    }
    if copied != u64::from(expected.size) || hex::encode(hasher.finalize()) != expected.sha256 {
        return Err(ImageError::SourceChanged {
            path: path.to_owned(),
            source_path: src.to_owned(),
        });
    }
    Ok(())
}

/// Builds the archive described by `spec` at `out` (through `out.part`, renamed when
/// complete) and returns its digests and manifest.
pub fn build(spec: &InitramfsSpec, out: &Path) -> Result<BuiltInitramfs, ImageError> {
    let mut tree = resolve(&spec.entries)?;
    let mut digests: BTreeMap<&str, Digested> = BTreeMap::new();
    for (path, kind) in &tree {
        if let EntryKind::File { content, .. } = kind {
            digests.insert(path, digest(path, content)?);
        }
    }
    let manifest = manifest_json(spec, &tree, &digests)?;
    let manifest_entry = EntryKind::File {
        content: Content::Bytes(manifest.clone().into_bytes()),
        executable: false,
    };
    let manifest_digest = digest(
        MANIFEST_PATH,
        &Content::Bytes(manifest.clone().into_bytes()),
    )?;
    let manifest_sha256 = manifest_digest.sha256.clone();
    tree.insert(MANIFEST_PATH, &manifest_entry);
    digests.insert(MANIFEST_PATH, manifest_digest);

    let mut part = out.as_os_str().to_owned();
    part.push(".part");
    let part = PathBuf::from(part);
    let written = write_archive(spec, &tree, &digests, &part);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, out).map_err(ImageError::io("renaming", &part))?;
    Ok(BuiltInitramfs {
        path: out.to_owned(),
        sha256: sha256_file(out)?,
        manifest_sha256,
        manifest_json: manifest,
    })
}

fn write_archive(
    spec: &InitramfsSpec,
    tree: &BTreeMap<&str, &EntryKind>,
    digests: &BTreeMap<&str, Digested>,
    part: &Path,
) -> Result<(), ImageError> {
    let io_err = || ImageError::io("writing", part);
    let file = std::fs::File::create(part).map_err(ImageError::io("creating", part))?;
    let buffered = BufWriter::with_capacity(1 << 20, file);
    let mut sink = match spec.compression {
        Compression::None => Sink::Plain(buffered),
        Compression::Gzip => Sink::Gzip(
            flate2::GzBuilder::new()
                .mtime(0)
                .write(buffered, flate2::Compression::new(GZIP_LEVEL)),
        ),
    };
    for (ino, (path, kind)) in (1u32..).zip(tree.iter()) {
        let name = path.trim_start_matches('/');
        let header = Builder::new(name)
            .ino(ino)
            .uid(0)
            .gid(0)
            .nlink(1)
            .mtime(spec.source_date_epoch);
        match kind {
            EntryKind::Directory => header.mode(DIR_MODE).write(&mut sink, 0).finish(),
            EntryKind::CharDevice { major, minor } => header
                .mode(CHAR_MODE)
                .rdev_major(*major)
                .rdev_minor(*minor)
                .write(&mut sink, 0)
                .finish(),
            EntryKind::Symlink { target } => {
                let size = u32::try_from(target.len())
                    .map_err(|_| too_large(path, target.len() as u64))?;
                let mut w = header.mode(SYMLINK_MODE).write(&mut sink, size);
                w.write_all(target.as_bytes()).map_err(io_err())?;
                w.finish()
            }
            EntryKind::File {
                content,
                executable,
            } => {
                let d = &digests[path];
                let mode = if *executable { EXEC_MODE } else { FILE_MODE };
                let mut w = header.mode(mode).write(&mut sink, d.size);
                match content {
                    Content::Bytes(b) => w.write_all(b).map_err(io_err())?,
                    Content::File(src) => copy_checked(path, src, d, &mut w, part)?,
                }
                w.finish()
            }
        }
        .map_err(io_err())?;
    }
    cpio::newc::trailer(&mut sink).map_err(io_err())?;
    let file = sink.finish().map_err(io_err())?;
    file.sync_all().map_err(io_err())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::FileTimes;
    use std::os::unix::fs::PermissionsExt as _;
    use std::time::{Duration, SystemTime};

    use super::*;

    const EPOCH: u32 = 1_700_000_000;

    /// One entry as read back with the `cpio` crate's reader.
    #[derive(Debug, PartialEq, Eq)]
    struct Parsed {
        name: String,
        ino: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        nlink: u32,
        mtime: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    /// (name, mode, (rdev major, rdev minor), contents) of an expected entry.
    type Expected<'a> = (&'a str, u32, (u32, u32), Vec<u8>);

    fn parse(mut archive: &[u8]) -> Vec<Parsed> {
        let mut out = Vec::new();
        loop {
            let mut r = cpio::NewcReader::new(archive).expect("header");
            let e = r.entry().clone();
            if e.is_trailer() {
                break;
            }
            let mut data = Vec::new();
            r.read_to_end(&mut data).expect("data");
            out.push(Parsed {
                name: e.name().to_owned(),
                ino: e.ino(),
                mode: e.mode(),
                uid: e.uid(),
                gid: e.gid(),
                nlink: e.nlink(),
                mtime: e.mtime(),
                rdev: (e.rdev_major(), e.rdev_minor()),
                data,
            });
            archive = r.finish().expect("next");
        }
        out
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    fn fields() -> ManifestFields {
        ManifestFields {
            kernel_sha256: "ab".repeat(32),
            firmware_sha256: BTreeMap::from([
                ("inteltdx".to_owned(), "cd".repeat(32)),
                ("amdsev".to_owned(), "ef".repeat(32)),
            ]),
            cmdline: "console=ttyS0 cloister.attester=sev-snp".to_owned(),
            weights_disk: None,
        }
    }

    /// Source files as a build machine might have them: any mode, any mtime.
    fn sources(dir: &Path, exec_mode: u32, file_mode: u32, mtime: SystemTime) -> Vec<Entry> {
        let write = |name: &str, bytes: &[u8], mode: u32| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write");
            let f = std::fs::File::options().write(true).open(&p).expect("open");
            f.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))
                .expect("times");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
            p
        };
        let init = write("init", b"\x7fELF static init", exec_mode);
        let modules = vec![
            (
                "vsock".to_owned(),
                write("vsock.ko", b"vsock module", file_mode),
            ),
            (
                "sev-guest".to_owned(),
                write("sev.ko", b"sev module", file_mode),
            ),
        ];
        let weights: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let weights = write("w.bin", &weights, file_mode);
        let mut entries = guest_entries(&init, &modules).expect("layout");
        entries.push(Entry::file(
            "/models/tiny/weights.bin",
            Content::File(weights),
            false,
        ));
        entries.push(Entry::symlink("/models/current", "tiny"));
        entries
    }

    fn spec(entries: Vec<Entry>, compression: Compression) -> InitramfsSpec {
        InitramfsSpec {
            entries,
            source_date_epoch: EPOCH,
            compression,
            manifest: fields(),
        }
    }

    fn set_umask(mask: u32) -> u32 {
        use nix::sys::stat::{Mode, umask};
        umask(Mode::from_bits_truncate(mask)).bits()
    }

    #[test]
    fn identical_across_umask_paths_modes_and_mtimes() {
        for compression in [Compression::Gzip, Compression::None] {
            let (a, b) = (
                tempfile::tempdir().expect("a"),
                tempfile::tempdir().expect("b"),
            );

            let old = set_umask(0o022);
            let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
            let first = build(
                &spec(sources(a.path(), 0o755, 0o644, t1), compression),
                &a.path().join("initrd"),
            );
            set_umask(0o077);
            let t2 = SystemTime::now();
            let second = build(
                &spec(sources(b.path(), 0o700, 0o600, t2), compression),
                &b.path().join("initrd"),
            );
            set_umask(old);

            let (first, second) = (first.expect("first"), second.expect("second"));
            let bytes_a = std::fs::read(&first.path).expect("read a");
            let bytes_b = std::fs::read(&second.path).expect("read b");
            assert!(bytes_a == bytes_b, "{compression:?} archives differ");
            assert_eq!(first.sha256, sha(&bytes_a));
            assert_eq!(first.sha256, second.sha256);
            assert_eq!(first.manifest_sha256, second.manifest_sha256);
            assert!(!PathBuf::from(format!("{}.part", first.path.display())).exists());
        }
    }

    #[test]
    fn parses_back_into_exactly_the_expected_entries() {
        let tmp = tempfile::tempdir().expect("tmp");
        let built = build(
            &spec(
                sources(tmp.path(), 0o700, 0o600, SystemTime::now()),
                Compression::None,
            ),
            &tmp.path().join("initrd.cpio"),
        )
        .expect("build");
        let parsed = parse(&std::fs::read(&built.path).expect("read"));

        let weights: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 256) as u8).collect();
        fn dir(name: &str) -> Expected<'_> {
            (name, 0o040_755, (0, 0), Vec::new())
        }
        fn file<'a>(name: &'a str, data: &[u8]) -> Expected<'a> {
            (name, 0o100_644, (0, 0), data.to_vec())
        }
        let expected: Vec<Expected> = vec![
            dir("cloister"),
            file("cloister/manifest.json", built.manifest_json.as_bytes()),
            dir("dev"),
            ("dev/console", 0o020_600, (5, 1), Vec::new()),
            ("dev/null", 0o020_600, (1, 3), Vec::new()),
            ("init", 0o100_755, (0, 0), b"\x7fELF static init".to_vec()),
            dir("lib"),
            dir("lib/modules"),
            dir("lib/modules/cloister"),
            file("lib/modules/cloister/order", b"vsock\nsev-guest\n"),
            file("lib/modules/cloister/sev-guest.ko", b"sev module"),
            file("lib/modules/cloister/vsock.ko", b"vsock module"),
            dir("models"),
            ("models/current", 0o120_777, (0, 0), b"tiny".to_vec()),
            dir("models/tiny"),
            file("models/tiny/weights.bin", &weights),
            dir("proc"),
            dir("run"),
            dir("sys"),
            dir("tmp"),
        ];
        assert_eq!(
            parsed.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>()
        );
        for (i, (p, (name, mode, rdev, data))) in parsed.iter().zip(&expected).enumerate() {
            let want = Parsed {
                name: (*name).to_owned(),
                ino: i as u32 + 1,
                mode: *mode,
                uid: 0,
                gid: 0,
                nlink: 1,
                mtime: EPOCH,
                rdev: *rdev,
                data: data.clone(),
            };
            assert_eq!(p, &want);
        }
    }

    #[test]
    fn the_manifest_lists_every_file_with_its_sha256() {
        let tmp = tempfile::tempdir().expect("tmp");
        let built = build(
            &spec(
                sources(tmp.path(), 0o755, 0o644, SystemTime::now()),
                Compression::Gzip,
            ),
            &tmp.path().join("initrd.gz"),
        )
        .expect("build");
        let gz = std::fs::read(&built.path).expect("read");
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio)
            .expect("gunzip");
        let parsed = parse(&cpio);

        assert_eq!(built.manifest_sha256, sha(built.manifest_json.as_bytes()));
        let packed = parsed
            .iter()
            .find(|p| p.name == "cloister/manifest.json")
            .expect("manifest packed");
        assert_eq!(packed.data, built.manifest_json.as_bytes());

        let m: Value = serde_json::from_str(&built.manifest_json).expect("json");
        let listed: Vec<(String, u64, String, String)> = m["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().expect("path").to_owned(),
                    f["size"].as_u64().expect("size"),
                    f["mode"].as_str().expect("mode").to_owned(),
                    f["sha256"].as_str().expect("sha").to_owned(),
                )
            })
            .collect();
        let regular: Vec<(String, u64, String, String)> = parsed
            .iter()
            .filter(|p| p.mode & 0o170_000 == 0o100_000 && p.name != "cloister/manifest.json")
            .map(|p| {
                (
                    format!("/{}", p.name),
                    p.data.len() as u64,
                    format!("{:04o}", p.mode & 0o7777),
                    sha(&p.data),
                )
            })
            .collect();
        assert_eq!(listed, regular);
        assert_eq!(listed.len(), 5);
        assert_eq!(m["kernel_sha256"], "ab".repeat(32));
        assert_eq!(m["firmware_sha256"]["amdsev"], "ef".repeat(32));
        assert_eq!(m["cmdline"], "console=ttyS0 cloister.attester=sev-snp");
        assert_eq!(m["source_date_epoch"], EPOCH);
        assert_eq!(m["format"], MANIFEST_FORMAT);
        assert_eq!(m["symlinks"][0]["target"], "tiny");
        // Canonical: compact, keys sorted at every level.
        assert!(built.manifest_json.starts_with(r#"{"cmdline":"#));
        assert!(
            built
                .manifest_json
                .contains(r#"{"mode":"0755","path":"/init","sha256":"#)
        );
        assert!(
            built
                .manifest_json
                .contains(r#""firmware_sha256":{"amdsev":"#)
        );
    }

    #[test]
    fn gzip_header_carries_no_name_and_no_time() {
        let tmp = tempfile::tempdir().expect("tmp");
        let entries = vec![Entry::file("/a", Content::Bytes(b"a".to_vec()), false)];
        let gz = build(
            &spec(entries.clone(), Compression::Gzip),
            &tmp.path().join("g"),
        )
        .expect("gzip");
        let plain = build(&spec(entries, Compression::None), &tmp.path().join("p")).expect("p");
        let gz = std::fs::read(gz.path).expect("read");
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=2 (best) OS=255 (unknown)
        assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
        let mut cpio = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut cpio)
            .expect("gunzip");
        assert_eq!(cpio, std::fs::read(plain.path).expect("read"));
    }

    /// The archive bytes of a fixed input, pinned: a change in the cpio writer, the deflate
    /// implementation (miniz_oxide, fixed by Cargo.lock) or this module changes every image's
    /// measurement, and must be noticed here first.
    #[test]
    fn golden_archive_digests() {
        let tmp = tempfile::tempdir().expect("tmp");
        let entries = vec![
            Entry::file("/init", Content::Bytes(b"#!/bin/init\n".to_vec()), true),
            Entry::char_device("/dev/console", 5, 1),
            Entry::dir("/proc"),
        ];
        let gz = build(
            &spec(entries.clone(), Compression::Gzip),
            &tmp.path().join("g"),
        )
        .expect("gzip");
        let plain = build(&spec(entries, Compression::None), &tmp.path().join("p")).expect("p");
        assert_eq!(
            plain.manifest_sha256,
            "1c6070518d3b2c7c00d44b9d1db0ed0e0041b0913ce30f4dd7ab498a3681a109"
        );
        assert_eq!(
            plain.sha256,
            "188e0c6ef337f8e4880ea11766aa78ccc448a0a7d5c6ff62a08d0ed142666cb1"
        );
        assert_eq!(
            gz.sha256,
            "9397d3fe1e20aa5d8090d4776dcd834fa5ea61c1491e4d6310ea4663eebcf70f"
        );
    }

    #[test]
    fn refuses_paths_with_another_spelling_or_none() {
        let cases = [
            ("init", PathProblem::NotAbsolute),
            ("./init", PathProblem::NotAbsolute),
            ("/", PathProblem::Root),
            ("/lib//modules", PathProblem::NotNormalised),
            ("/lib/", PathProblem::NotNormalised),
            ("/lib/./modules", PathProblem::NotNormalised),
            ("/lib/../etc/passwd", PathProblem::ParentComponent),
            ("/..", PathProblem::ParentComponent),
            ("/a\0b", PathProblem::Nul),
        ];
        let tmp = tempfile::tempdir().expect("tmp");
        for (path, problem) in cases {
            let entries = vec![Entry::dir(path)];
            let got = build(&spec(entries, Compression::None), &tmp.path().join("x"));
            assert!(
                matches!(&got, Err(ImageError::ArchivePath { path: p, problem: q }) if p == path && *q == problem),
                "{path:?}: {got:?}"
            );
        }
        assert!(!tmp.path().join("x").exists());
    }

    #[test]
    fn refuses_duplicates_the_manifest_path_and_entries_under_non_directories() {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("x");
        let f = |p: &str| Entry::file(p, Content::Bytes(Vec::new()), false);
        let refused = |entries: Vec<Entry>| build(&spec(entries, Compression::None), &out);

        assert!(matches!(
            refused(vec![f("/a"), Entry::dir("/a")]),
            Err(ImageError::DuplicatePath(p)) if p == "/a"
        ));
        assert!(matches!(
            refused(vec![f(MANIFEST_PATH)]),
            Err(ImageError::ReservedPath(p)) if p == MANIFEST_PATH
        ));
        assert!(matches!(
            refused(vec![f("/a"), f("/a/b/c")]),
            Err(ImageError::ParentNotDirectory { path, parent }) if path == "/a/b/c" && parent == "/a"
        ));
        assert!(matches!(
            refused(vec![Entry::symlink("/cloister", "/tmp")]),
            Err(ImageError::ParentNotDirectory { path, parent })
                if path == MANIFEST_PATH && parent == "/cloister"
        ));
        assert!(matches!(
            refused(vec![Entry::symlink("/l", "a\0b")]),
            Err(ImageError::ArchivePath {
                problem: PathProblem::Nul,
                ..
            })
        ));
        // Listing a directory that would be implied anyway is not a duplicate.
        build(
            &spec(vec![Entry::dir("/cloister"), f("/x/y")], Compression::None),
            &out,
        )
        .expect("explicit parents are fine");
    }

    #[test]
    fn refuses_module_names_that_are_not_plain_file_names() {
        let init = Path::new("/nonexistent/init");
        for name in ["", "../vsock", "a b", "vsock\nrm", "tsm.ko/x"] {
            let modules = vec![(name.to_owned(), PathBuf::from("/nonexistent/m.ko"))];
            assert!(
                matches!(guest_entries(init, &modules), Err(ImageError::ModuleName(n)) if n == name),
                "{name:?}"
            );
        }
    }

    #[test]
    fn refuses_files_newc_cannot_hold() {
        let tmp = tempfile::tempdir().expect("tmp");
        let big = tmp.path().join("big");
        // Sparse: nothing is written or read.
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(1 << 32))
            .expect("sparse file");
        let entries = vec![Entry::file("/models/big", Content::File(big), false)];
        assert!(matches!(
            build(&spec(entries, Compression::None), &tmp.path().join("x")),
            Err(ImageError::FileTooLarge { path, size }) if path == "/models/big" && size == 1 << 32
        ));
    }

    #[test]
    fn notices_a_source_changed_after_it_was_hashed() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("w");
        std::fs::write(&src, b"weights v1").expect("write");
        let hashed = digest("/w", &Content::File(src.clone())).expect("digest");

        let mut out = Vec::new();
        copy_checked("/w", &src, &hashed, &mut out, tmp.path()).expect("unchanged");
        assert_eq!(out, b"weights v1");

        for changed in [&b"weights v2"[..], b"weights"] {
            std::fs::write(&src, changed).expect("rewrite");
            assert!(matches!(
                copy_checked("/w", &src, &hashed, &mut Vec::new(), tmp.path()),
                Err(ImageError::SourceChanged { path, .. }) if path == "/w"
            ));
        }
    }
}
