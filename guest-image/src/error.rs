//! Why an image artifact could not be fetched, built or checked.

use std::path::PathBuf;

/// Image-building errors, one variant per reason.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A build tool is not installed.
    #[error(
        "build tool `{tool}` is missing: install the Debian package `{package}` (apt-get install {package})"
    )]
    MissingTool {
        /// The command or file looked for.
        tool: &'static str,
        /// The Debian package that brings it.
        package: &'static str,
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
