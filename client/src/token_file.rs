//! The token store on disk, sealed (issue 24, attack 3): `tokens.sealed` in the state
//! directory, sealed under a key kept in another file — by default in the per-user runtime
//! directory (`$XDG_RUNTIME_DIR`, memory: gone at logout or reboot, and never in a backup). A
//! store whose key is gone cannot be opened and is dropped (its tokens are lost, never read);
//! one that was altered is an error.

use std::path::{Path, PathBuf};

use cloister_device_core::ClientError;
use cloister_device_core::token_store::{SealKey, TokenStore, TokenStoreError};
use zeroize::Zeroizing;

use crate::state::{state_error, write_private};

/// The sealed store's name inside the state directory.
pub const TOKEN_FILE: &str = "tokens.sealed";

/// A sealed token store: its file and its key's file.
#[derive(Debug, Clone)]
pub struct SealedTokenFile {
    path: PathBuf,
    key_path: PathBuf,
}

impl SealedTokenFile {
    /// The store in `state_dir`, sealed under the key in `key_path` (made when missing).
    pub fn new(state_dir: &Path, key_path: &Path) -> Self {
        SealedTokenFile {
            path: state_dir.join(TOKEN_FILE),
            key_path: key_path.to_owned(),
        }
    }

    /// The sealed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn key(&self, create: bool) -> Result<Option<SealKey>, ClientError> {
        match std::fs::read_to_string(&self.key_path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                let mut k = Zeroizing::new([0u8; 32]);
                hex::decode_to_slice(text.trim(), &mut k[..])
                    .map_err(|_| state_error(&self.key_path, "not a 32-byte hex key"))?;
                Ok(Some(SealKey::from_bytes(*k)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let key = SealKey::generate(&mut cloister_device_core::choose::os_rng()?);
                let text = Zeroizing::new(hex::encode(key.expose()));
                write_private(&self.key_path, text.as_bytes())?;
                Ok(Some(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_error(&self.key_path, e)),
        }
    }

    /// The store (empty when there is none, or when its key is gone).
    pub fn load(&self) -> Result<TokenStore, ClientError> {
        let sealed = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(TokenStore::default()),
            Err(e) => return Err(state_error(&self.path, e)),
        };
        let Some(key) = self.key(false)? else {
            // Sealed under a key that is gone (a reboot): nobody can read these tokens.
            let _ = std::fs::remove_file(&self.path);
            return Ok(TokenStore::default());
        };
        match TokenStore::open(&sealed, &key) {
            Ok(store) => Ok(store),
            Err(TokenStoreError::Unsealing) if sealed.len() >= 40 => {
                // Another key: a store from before the key was replaced. Dropped, not read.
                let _ = std::fs::remove_file(&self.path);
                Ok(TokenStore::default())
            }
            Err(e) => Err(state_error(&self.path, e)),
        }
    }

    /// Seals and writes `store` (the key made when missing).
    pub fn save(&self, store: &TokenStore) -> Result<(), ClientError> {
        let key = self
            .key(true)?
            .ok_or_else(|| state_error(&self.key_path, "no key"))?;
        let sealed = store
            .seal(&key, &mut cloister_device_core::choose::os_rng()?)
            .map_err(|e| state_error(&self.path, e))?;
        write_private(&self.path, &sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_device_core::SecretString;

    #[test]
    fn the_store_persists_sealed_and_is_dropped_when_its_key_is_gone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tempfile::tempdir().expect("tempdir");
        let file = SealedTokenFile::new(dir.path(), &runtime.path().join("cloister/key"));
        assert!(file.load().expect("nothing yet").is_empty());
        let mut store = TokenStore::default();
        store.add(
            "c",
            SecretString::new("PrivateToken token=\"SECRET\"".into()),
        );
        file.save(&store).expect("save");
        let on_disk = std::fs::read(file.path()).expect("sealed");
        assert!(!on_disk.windows(6).any(|w| w == b"SECRET"));
        let mode = std::fs::metadata(file.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(file.load().expect("opens").count("c"), 1);
        // The key gone (a reboot cleared the runtime directory): the tokens are dropped unread.
        std::fs::remove_file(runtime.path().join("cloister/key")).expect("rm key");
        assert!(file.load().expect("dropped").is_empty());
        assert!(!file.path().exists());
    }
}
