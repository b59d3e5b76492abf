//! SHA-256 of files, streamed.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// Lower-case hex SHA-256 of a file's contents.
pub fn sha256_file(path: &Path) -> Result<String, ImageError> {
    let mut f = std::fs::File::open(path).map_err(ImageError::io("opening", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(ImageError::io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Fails unless `path` has the pinned digest.
pub fn check_sha256(artifact: &str, path: &Path, expected: &str) -> Result<(), ImageError> {
    if !path.exists() {
        return Err(ImageError::Missing {
            artifact: artifact.to_owned(),
            path: path.to_owned(),
        });
    }
    let found = sha256_file(path)?;
    if found != expected {
        return Err(ImageError::DigestMismatch {
            artifact: artifact.to_owned(),
            expected: expected.to_owned(),
            found,
        });
    }
    Ok(())
}
