//! The transparency log's and its witnesses' HTTP resources: the C2SP ones (tlog-tiles,
//! tlog-witness) and the log server's own (entry proofs, consistency proofs, appends).

/// C2SP tlog-tiles: the signed checkpoint.
pub const CHECKPOINT_PATH: &str = "/checkpoint";
/// C2SP tlog-tiles: the checkpoint's media type.
pub const CHECKPOINT_MEDIA: &str = "text/plain; charset=utf-8";
/// C2SP tlog-tiles: hash tiles and entry bundles live under this prefix.
pub const TILE_PREFIX: &str = "/tile/";
/// C2SP tlog-witness: where a log submits a checkpoint for cosigning.
pub const ADD_CHECKPOINT_PATH: &str = "/add-checkpoint";
/// C2SP tlog-witness: the body of a 409, the size last cosigned.
pub const TLOG_SIZE_MEDIA: &str = "text/x.tlog.size";
/// The log server: an entry's log proof (`/bundle/<index>`).
pub const BUNDLE_PREFIX: &str = "/bundle/";
/// The log server: a consistency proof (`/consistency/<old>/<new>`), one base64 hash a line.
pub const CONSISTENCY_PREFIX: &str = "/consistency/";
/// The log server: the operator's authorised appends.
pub const ADD_PATH: &str = "/add";

/// `/consistency/<old>/<new>`.
pub fn consistency_path(old: u64, new: u64) -> String {
    format!("{CONSISTENCY_PREFIX}{old}/{new}")
}

/// The `(old, new)` of a path made by [`consistency_path`] with `prefix` stripped: `None` if
/// it is not two decimal sizes.
pub fn parse_sizes(rest: &str) -> Option<(u64, u64)> {
    let (a, b) = rest.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_paths_round_trip() {
        let p = consistency_path(12, 14);
        assert_eq!(p, "/consistency/12/14");
        assert_eq!(parse_sizes(&p[CONSISTENCY_PREFIX.len()..]), Some((12, 14)));
        assert_eq!(parse_sizes("12"), None);
        assert_eq!(parse_sizes("a/1"), None);
    }
}
