//! The seen checkpoint on disk, for the CLI and other processes with a state directory:
//! `seen-checkpoints.json`, one entry per trusted log key:
//! `{"version":1,"logs":{"<log key>":{"size":N,"root":"<hex>"}}}`. It is written through a
//! temporary file (mode 0600, in a 0700 directory) and a rename, synced, and never moved
//! backwards (two processes racing leave the larger tree).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cloister_device_core::ClientError;
use cloister_device_core::trust::{SeenStore, keep_larger};
use cloister_transparency::SeenCheckpoint;
use serde::{Deserialize, Serialize};

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "seen-checkpoints.json";
const STATE_VERSION: u32 = 1;

/// A [`SeenStore`] in a state directory.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

impl FileStore {
    /// The store in `dir` (created, 0700, on the first write).
    pub fn new(dir: &Path) -> Self {
        FileStore {
            dir: dir.to_owned(),
        }
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    logs: BTreeMap<String, SeenCheckpoint>,
}

impl SeenStore for FileStore {
    fn load(&self, log_key: &str) -> Result<Option<SeenCheckpoint>, ClientError> {
        Ok(read_state(&self.path())?.logs.get(log_key).copied())
    }

    fn store(&self, log_key: &str, seen: SeenCheckpoint) -> Result<(), ClientError> {
        let path = self.path();
        let mut state = read_state(&path)?;
        let next = keep_larger(state.logs.get(log_key).copied(), seen);
        state.logs.insert(log_key.to_owned(), next);
        write_state(&path, &state)
    }
}

pub(crate) fn state_error(path: &Path, reason: impl std::fmt::Display) -> ClientError {
    ClientError::State {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_state(path: &Path) -> Result<StateFile, ClientError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(StateFile {
                version: STATE_VERSION,
                logs: BTreeMap::new(),
            });
        }
        Err(e) => return Err(state_error(path, e)),
    };
    let state: StateFile = serde_json::from_slice(&bytes).map_err(|e| state_error(path, e))?;
    if state.version != STATE_VERSION {
        return Err(state_error(
            path,
            format!("version {}, expected {STATE_VERSION}", state.version),
        ));
    }
    Ok(state)
}

fn write_state(path: &Path, state: &StateFile) -> Result<(), ClientError> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| state_error(path, e))?;
    write_private(path, &bytes)
}

/// Writes `bytes` to `path` (mode 0600, in a 0700 directory made if missing) through a synced
/// temporary file and a rename.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| state_error(dir, e))?;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(state_error(path, e));
    }
    // The rename is durable once the directory is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| state_error(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(size: u64, byte: u8) -> SeenCheckpoint {
        SeenCheckpoint {
            size,
            root: [byte; 32],
        }
    }

    #[test]
    fn the_file_persists_keeps_the_larger_tree_and_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let state = tempfile::tempdir().expect("tempdir");
        let dir = state.path().join("nested");
        let a = FileStore::new(&dir);
        assert_eq!(a.load("log").expect("no file yet"), None);
        a.store("log", checkpoint(3, 1)).expect("store");
        // A second process (another store on the same directory) sees it, and cannot move it
        // backwards.
        let b = FileStore::new(&dir);
        assert_eq!(b.load("log").expect("read"), Some(checkpoint(3, 1)));
        b.store("log", checkpoint(1, 2)).expect("store");
        assert_eq!(a.load("log").expect("read"), Some(checkpoint(3, 1)));
        assert_eq!(a.load("other").expect("read"), None);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&a.path()), 0o600);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_a_reset() {
        let state = tempfile::tempdir().expect("tempdir");
        std::fs::write(state.path().join(STATE_FILE), b"{\"version\":1,").expect("write");
        let store = FileStore::new(state.path());
        assert!(matches!(store.load("log"), Err(ClientError::State { .. })));
        assert!(matches!(
            store.store("log", checkpoint(1, 1)),
            Err(ClientError::State { .. })
        ));
    }
}
