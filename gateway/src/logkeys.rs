//! The issuer keys the gateway accepts, resolved against the transparency log (issue 24,
//! attack 1): a key must be logged for this issuer, and its tokens are accepted — and their
//! nonces kept — until its epoch ends. Read from the gateway's own copy or server of the log,
//! which it trusts (devices check the same records against the witnessed checkpoint).

use std::time::Duration;

use bytes::Bytes;
use cloister_http::exchange_tcp;
use cloister_protocol::access::decode_token_key;
use cloister_transparency::{IssuerKeyRecord, bundles_of, read_bundle, unverified_checkpoint_size};
use hyper::Method;
use privacypass::public_tokens::PublicKey;

use crate::gateway::LogTiles;
use crate::redeem::AcceptedKey;

/// Why the issuer keys could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum LogKeysError {
    /// The log (its copy or its server) could not be read.
    #[error("reading the log: {0}")]
    Read(String),
    /// A configured key has no current or future epoch in the log for this issuer.
    #[error(
        "issuer key {0} is not in the log for this issuer (or its epoch has ended): devices \
         would refuse its tokens; publish its record first"
    )]
    NotLogged(String),
}

/// Every entry of the log, as the gateway's source holds it now.
pub async fn entries(log: &LogTiles, timeout: Duration) -> Result<Vec<Vec<u8>>, LogKeysError> {
    let read = |path: String| async move { fetch(log, &path, timeout).await };
    let size = unverified_checkpoint_size(&read("checkpoint".into()).await?)
        .map_err(|e| LogKeysError::Read(e.to_string()))?;
    let mut out = Vec::new();
    for path in bundles_of(size).map_err(|e| LogKeysError::Read(e.to_string()))? {
        let bytes = read(path.clone()).await?;
        let bundle = read_bundle(&bytes).map_err(|e| LogKeysError::Read(format!("{path}: {e}")))?;
        out.extend(bundle.into_iter().map(<[u8]>::to_vec));
    }
    Ok(out)
}

async fn fetch(log: &LogTiles, path: &str, timeout: Duration) -> Result<Vec<u8>, LogKeysError> {
    match log {
        LogTiles::Directory(dir) => tokio::fs::read(dir.join(path))
            .await
            .map_err(|e| LogKeysError::Read(format!("{}: {e}", dir.join(path).display()))),
        LogTiles::Upstream(u) => {
            let at = format!("{}/{path}", u.path.trim_end_matches('/'));
            match exchange_tcp(
                &u.authority,
                Method::GET,
                &at,
                None,
                Bytes::new(),
                timeout,
                8 << 20,
            )
            .await
            {
                Ok(a) if a.status == 200 => Ok(a.body.to_vec()),
                Ok(a) => Err(LogKeysError::Read(format!("{at}: status {}", a.status))),
                Err(why) => Err(LogKeysError::Read(format!("{at}: {why}"))),
            }
        }
    }
}

/// Each of `keys` with the end of its latest logged epoch for `issuer` that has not ended by
/// `now`; a key without one is refused by name.
pub fn resolve(
    entries: &[Vec<u8>],
    issuer: &str,
    keys: &[PublicKey],
    now: u64,
) -> Result<Vec<AcceptedKey>, LogKeysError> {
    let records: Vec<(Vec<u8>, u64)> = entries
        .iter()
        .filter_map(|e| IssuerKeyRecord::from_bytes(e).ok())
        .filter(|r| r.issuer == issuer && r.not_after > now)
        .filter_map(|r| {
            let der = decode_token_key(&r.token_key)?;
            let spki = PublicKey::from_spki(&der).ok()?.to_spki().ok()?;
            Some((spki, r.not_after))
        })
        .collect();
    keys.iter()
        .map(|k| {
            let spki = k.to_spki().map_err(|e| LogKeysError::Read(e.to_string()))?;
            records
                .iter()
                .filter(|(s, _)| *s == spki)
                .map(|(_, end)| *end)
                .max()
                .map(|end| AcceptedKey::logged(k.clone(), end))
                .ok_or_else(|| {
                    LogKeysError::NotLogged(cloister_protocol::access::encode_token_key(&spki))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redeem::KeyEnd;
    use cloister_issuer::IssuerKey;
    use cloister_transparency::issuer_key::ISSUER_KEY_SCHEMA;

    fn record(issuer: &str, key: &IssuerKey, not_before: u64) -> Vec<u8> {
        IssuerKeyRecord {
            schema: ISSUER_KEY_SCHEMA.into(),
            issuer: issuer.into(),
            token_type: 2,
            token_key: cloister_protocol::access::encode_token_key(key.spki()),
            not_before,
            not_after: not_before + 30 * 86_400,
        }
        .to_bytes()
        .expect("record")
    }

    #[test]
    fn a_key_is_accepted_until_its_latest_epoch_ends_and_an_unlogged_one_is_refused() {
        let (a, b) = (
            IssuerKey::generate().expect("key"),
            IssuerKey::generate().expect("key"),
        );
        let now = 100 * 86_400;
        let log = vec![
            record("cloister-issuer", &a, now - 40 * 86_400),
            record("cloister-issuer", &a, now - 10 * 86_400),
            record("someone-else", &b, now),
        ];
        let got = resolve(&log, "cloister-issuer", &[a.public_key()], now).expect("logged");
        assert_eq!(got[0].until, KeyEnd::Logged(now + 20 * 86_400));
        // Logged for another issuer only, or not at all: refused by name.
        let e = resolve(&log, "cloister-issuer", &[b.public_key()], now).expect_err("unlogged");
        assert!(matches!(e, LogKeysError::NotLogged(_)), "{e}");
        // After its last epoch ended.
        assert!(
            resolve(
                &log,
                "cloister-issuer",
                &[a.public_key()],
                now + 21 * 86_400
            )
            .is_err()
        );
    }
}
