//! Why an image artifact could not be fetched, built or checked.

use std::path::PathBuf;

/// Image-building errors, one variant per reason.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A tool from a Debian package is not installed.
    #[error(
        "`{tool}` is missing: run `cargo xtask setup` (it installs the Debian package {package})"
    )]
    MissingTool {
        /// The command or file looked for.
        tool: &'static str,
        /// The Debian package that brings it.
        package: &'static str,
    },
    /// A tool installed with `cargo install` is not on PATH.
    #[error("`{tool}` is missing: run `cargo xtask setup` (it runs `cargo install {krate}`)")]
    MissingCargoTool {
        /// The command looked for.
        tool: &'static str,
        /// The crate that brings it.
        krate: &'static str,
    },
    /// The machine's apt configuration names no Debian mirror to derive sources from.
    #[error("no Debian mirror found in the apt configuration ({0})")]
    NoMirror(String),
    /// An external command failed.
    #[error("`{command}` failed ({status}); last lines of {log}:\n{tail}")]
    CommandFailed {
        /// What ran.
        command: String,
        /// Its exit status.
        status: String,
        /// Where its full output is.
        log: PathBuf,
        /// The end of its output.
        tail: String,
    },
    /// A downloaded or built artifact does not have its pinned digest.
    #[error("{artifact}: sha256 {found} differs from the pinned {expected}")]
    DigestMismatch {
        /// Which artifact.
        artifact: String,
        /// Pinned sha256.
        expected: String,
        /// Found sha256.
        found: String,
    },
    /// A pinned artifact is absent after its fetch.
    #[error("{artifact} is missing after fetching it ({path})")]
    Missing {
        /// Which artifact.
        artifact: String,
        /// Where it was expected.
        path: PathBuf,
    },
    /// A pinned model is not in the cache (and this path does not fetch).
    #[error(
        "model {model} is not in {dir}: run `cargo xtask setup` (or `cargo xtask model {model}`) ({why})"
    )]
    ModelNotFetched {
        /// The model's pinned name.
        model: &'static str,
        /// Where it was expected.
        dir: PathBuf,
        /// What the check found.
        why: String,
    },
    /// The package index does not list the pinned version.
    #[error("apt does not list {package} {version}: {detail}")]
    VersionNotListed {
        /// Package.
        package: String,
        /// Pinned version.
        version: String,
        /// What apt said.
        detail: String,
    },
    /// A kernel module is in no file of the extracted package.
    #[error("kernel module {module}: no {module}.ko.xz under {root}")]
    ModuleNotFound {
        /// Module name.
        module: String,
        /// Where it was looked for.
        root: PathBuf,
    },
    /// A kernel module's file name occurs more than once, so which one to pack is unclear.
    #[error("kernel module {module}: found in more than one place: {paths:?}")]
    ModuleAmbiguous {
        /// Module name.
        module: String,
        /// Every file found.
        paths: Vec<PathBuf>,
    },
    /// An xz-compressed file could not be decompressed.
    #[error("decompressing {path}: {detail}")]
    Decompress {
        /// The compressed file.
        path: PathBuf,
        /// What the decompressor said.
        detail: String,
    },
    /// An initramfs entry's path is not one the archive may hold.
    #[error("initramfs path {path:?}: {problem}")]
    ArchivePath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        problem: PathProblem,
    },
    /// Two initramfs entries have the same path.
    #[error("initramfs path {0:?} is given twice")]
    DuplicatePath(String),
    /// An initramfs entry takes a path the builder writes itself (the manifest).
    #[error("initramfs path {0:?} is reserved for the builder")]
    ReservedPath(String),
    /// An initramfs entry lies under a path that is not a directory in the archive.
    #[error("initramfs path {path:?}: its parent {parent:?} is not a directory")]
    ParentNotDirectory {
        /// The entry.
        path: String,
        /// The parent given as a file, symlink or device.
        parent: String,
    },
    /// A kernel module name cannot be a file name and a line of the load-order file.
    #[error("kernel module name {0:?} is not [A-Za-z0-9_-]+")]
    ModuleName(String),
    /// A file is larger than newc's 32-bit size field.
    #[error("initramfs file {path:?} has {size} bytes; newc holds at most 4 GiB - 1 per file")]
    FileTooLarge {
        /// Path in the archive.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A source file changed between hashing it for the manifest and packing it.
    #[error("initramfs source {source_path} (for {path:?}) changed while the archive was built")]
    SourceChanged {
        /// Path in the archive.
        path: String,
        /// The source file.
        source_path: PathBuf,
    },
    /// A weights disk path that is not plain and relative.
    #[error("weights disk path {0:?} is not a plain relative path")]
    WeightsDiskPath(String),
    /// mkfs.erofs wrote an image that is not whole 4096-byte blocks.
    #[error("mkfs.erofs wrote {0} bytes, not a whole number of 4096-byte blocks")]
    WeightsDiskSize(u64),
    /// veritysetup's report has no root hash.
    #[error("veritysetup printed no root hash (see {0})")]
    VerityRootHash(PathBuf),
    /// The manifest could not be serialised.
    #[error("serialising the initramfs manifest: {0}")]
    Manifest(String),
    /// A wheel (zip) could not be read, or lacks the pinned member.
    #[error("wheel {wheel}: {reason}")]
    Wheel {
        /// The wheel.
        wheel: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io {
            action,
            path,
            source,
        }
    }
}

/// Why an initramfs path is refused. Paths are absolute and normalised (`/a/b`), so that one
/// archive path has one spelling and duplicates cannot hide behind `//` or `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// It does not start with `/`.
    #[error("not absolute (must start with `/`)")]
    NotAbsolute,
    /// It is `/` itself, which the archive's root already is.
    #[error("is the root itself")]
    Root,
    /// It has an empty component (`//`, a trailing `/`) or a `.` component.
    #[error("not normalised (empty or `.` component)")]
    NotNormalised,
    /// It has a `..` component, which could escape or alias another path.
    #[error("has a `..` component")]
    ParentComponent,
    /// It holds a NUL byte, which ends a name in a cpio header.
    #[error("contains a NUL byte")]
    Nul,
}
