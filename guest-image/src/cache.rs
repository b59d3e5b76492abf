//! Where fetched and built artifacts are kept between runs.

use std::path::PathBuf;

/// The cache root: `$CLOISTER_CACHE`, else `$XDG_CACHE_HOME/cloister`, else
/// `$HOME/.cache/cloister`, else `./target/cloister-cache`. Everything in it is keyed by the
/// pinned inputs and re-checked against pinned digests before use.
pub fn cache_root() -> PathBuf {
    if let Some(p) = std::env::var_os("CLOISTER_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join("cloister");
    }
    if let Some(p) = std::env::var_os("HOME").filter(|p| !p.is_empty()) {
        return PathBuf::from(p).join(".cache").join("cloister");
    }
    PathBuf::from("target").join("cloister-cache")
}
