//! The spent-token store: a token's nonce goes in once; a second redemption finds it there.
//!
//! * [`SpentStore::Redb`] — an embedded redb database (one gateway): each spend is one durable
//!   write transaction (insert only if absent, fsynced before the gateway answers).
//! * [`SpentStore::Redis`] — a Redis shared by a fleet of gateways: `SET key 1 NX [EX ttl]`,
//!   the one atomic step needed. A nonce is kept for as long as its issuer key is accepted (the
//!   key's logged epoch, and an hour more for clocks), and forever for a key without an epoch:
//!   a token whose entry expired could otherwise be spent again. An unreachable or slow Redis is an error ([`StoreError`]), never a
//!   "fresh" answer: the gateway then refuses to redeem (503) rather than accept a token it
//!   cannot check.
//!
//! Only the nonce is stored — a value the issuer never saw (RFC 9578: it signs a blinded
//! message), so the issuer's records cannot be joined with these.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privacypass::{Nonce, NonceStore};
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};

const SPENT: TableDefinition<&[u8; 32], u64> = TableDefinition::new("spent");

/// Kept beyond a key's epoch, for gateways whose clocks run behind.
const CLOCK_MARGIN_SECS: u64 = 3600;

/// How long a Redis operation may take before the store counts as unavailable.
const REDIS_TIMEOUT: Duration = cloister_registry::REDIS_TIMEOUT;

/// Why the store could not answer. Never read as "not spent".
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The embedded database failed.
    #[error("spent-token database: {0}")]
    Redb(String),
    /// Redis failed or is unreachable.
    #[error("spent-token Redis: {0}")]
    Redis(String),
    /// Redis did not answer within its deadline.
    #[error("spent-token Redis did not answer within {0:?}")]
    RedisTimeout(Duration),
}

/// Where spent tokens are kept.
#[derive(Clone)]
pub enum SpentStore {
    /// Embedded database file.
    Redb(Arc<Database>),
    /// Redis (`redis://HOST:PORT[/DB]`), each entry expiring when its key's epoch has ended.
    Redis {
        /// The connection (reconnects by itself).
        conn: redis::aio::ConnectionManager,
        /// Key prefix.
        prefix: String,
    },
}

impl std::fmt::Debug for SpentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpentStore::Redb(_) => f.write_str("SpentStore::Redb"),
            SpentStore::Redis { prefix, .. } => f
                .debug_struct("SpentStore::Redis")
                .field("prefix", prefix)
                .finish(),
        }
    }
}

fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Redb(e.into().to_string())
}

impl SpentStore {
    /// Opens (creating if needed) the embedded store at `path`.
    pub fn open_redb(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(redb_err)?;
        let tx = db.begin_write().map_err(redb_err)?;
        tx.open_table(SPENT).map_err(redb_err)?;
        tx.commit().map_err(redb_err)?;
        Ok(SpentStore::Redb(Arc::new(db)))
    }

    /// Connects lazily to Redis at `url` (the gateway starts even while Redis is down, and
    /// answers 503 until it is back).
    pub fn redis(url: &str) -> Result<Self, StoreError> {
        let conn = cloister_registry::lazy_connection(url).map_err(StoreError::Redis)?;
        Ok(SpentStore::Redis {
            conn,
            prefix: "cloister:spent:".into(),
        })
    }

    /// Records `nonce` as spent, to be kept until `keep_until` (Unix seconds; `None`: forever):
    /// `Ok(true)` when it was not spent before, `Ok(false)` when it was, an error when the store
    /// cannot tell. (The embedded store keeps every nonce.)
    pub async fn spend(&self, nonce: &Nonce, keep_until: Option<u64>) -> Result<bool, StoreError> {
        match self {
            SpentStore::Redb(db) => {
                let db = Arc::clone(db);
                let nonce = *nonce;
                tokio::task::spawn_blocking(move || {
                    let tx = db.begin_write().map_err(redb_err)?;
                    let fresh = {
                        let mut table = tx.open_table(SPENT).map_err(redb_err)?;
                        if table.get(&nonce).map_err(redb_err)?.is_some() {
                            false
                        } else {
                            table.insert(&nonce, now()).map_err(redb_err)?;
                            true
                        }
                    };
                    tx.commit().map_err(redb_err)?;
                    Ok(fresh)
                })
                .await
                .map_err(|e| StoreError::Redb(e.to_string()))?
            }
            SpentStore::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                let mut cmd = redis::cmd("SET");
                cmd.arg(format!("{prefix}{}", hex::encode(nonce)))
                    .arg(1)
                    .arg("NX");
                if let Some(until) = keep_until {
                    cmd.arg("EX")
                        .arg(until.saturating_sub(now()).max(1) + CLOCK_MARGIN_SECS);
                }
                let answer: Option<String> =
                    tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async(&mut conn))
                        .await
                        .map_err(|_| StoreError::RedisTimeout(REDIS_TIMEOUT))?
                        .map_err(|e| StoreError::Redis(e.to_string()))?;
                Ok(answer.is_some())
            }
        }
    }

    /// Forgets `nonce` (a token whose signature failed, so that a forged token cannot burn the
    /// nonce of a real one). Best effort: a failure leaves the nonce spent, which is safe.
    pub async fn unspend(&self, nonce: &Nonce) {
        match self {
            SpentStore::Redb(db) => {
                let db = Arc::clone(db);
                let nonce = *nonce;
                let _ = tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
                    let tx = db.begin_write().map_err(redb_err)?;
                    tx.open_table(SPENT)
                        .map_err(redb_err)?
                        .remove(&nonce)
                        .map_err(redb_err)?;
                    tx.commit().map_err(redb_err)
                })
                .await;
            }
            SpentStore::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let cmd = redis::cmd("DEL")
                    .arg(format!("{prefix}{}", hex::encode(nonce)))
                    .to_owned();
                let _ =
                    tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<i64>(&mut conn)).await;
            }
        }
    }

    /// Whether `nonce` is recorded (tests and operators' checks).
    pub async fn contains(&self, nonce: &Nonce) -> Result<bool, StoreError> {
        match self {
            SpentStore::Redb(db) => {
                let tx = db.begin_read().map_err(redb_err)?;
                let table = tx.open_table(SPENT).map_err(redb_err)?;
                Ok(table.get(nonce).map_err(redb_err)?.is_some())
            }
            SpentStore::Redis { conn, prefix, .. } => {
                let mut conn = conn.clone();
                let cmd = redis::cmd("EXISTS")
                    .arg(format!("{prefix}{}", hex::encode(nonce)))
                    .to_owned();
                let n: i64 = tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async(&mut conn))
                    .await
                    .map_err(|_| StoreError::RedisTimeout(REDIS_TIMEOUT))?
                    .map_err(|e| StoreError::Redis(e.to_string()))?;
                Ok(n > 0)
            }
        }
    }
}

/// Every nonce in the embedded store at `path` (an operator's audit, and the tests' check that
/// the store holds nothing but nonces). The gateway must not have the file open.
pub fn redb_nonces(path: &Path) -> Result<Vec<[u8; 32]>, StoreError> {
    let db = Database::create(path).map_err(redb_err)?;
    let tx = db.begin_read().map_err(redb_err)?;
    let table = tx.open_table(SPENT).map_err(redb_err)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(redb_err)? {
        let (k, _) = row.map_err(redb_err)?;
        out.push(*k.value());
    }
    Ok(out)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `privacypass` crate's nonce store over a [`SpentStore`], for one redemption. The crate
/// reserves before it checks the signature and releases when the check fails; its interface has
/// no room for a store error, so `reserve` answers "taken" and the error is kept here for the
/// caller to report (503, not "double spend").
pub(crate) struct Redemption<'a> {
    store: &'a SpentStore,
    keep_until: Option<u64>,
    pub(crate) failure: Mutex<Option<StoreError>>,
}

impl<'a> Redemption<'a> {
    pub(crate) fn new(store: &'a SpentStore, keep_until: Option<u64>) -> Self {
        Redemption {
            store,
            keep_until,
            failure: Mutex::new(None),
        }
    }

    pub(crate) fn take_failure(&self) -> Option<StoreError> {
        self.failure.lock().ok().and_then(|mut f| f.take())
    }
}

#[async_trait::async_trait]
impl NonceStore for Redemption<'_> {
    async fn reserve(&self, nonce: &Nonce) -> bool {
        match self.store.spend(nonce, self.keep_until).await {
            Ok(fresh) => fresh,
            Err(e) => {
                if let Ok(mut f) = self.failure.lock() {
                    *f = Some(e);
                }
                false
            }
        }
    }

    async fn commit(&self, _nonce: &Nonce) {
        // `reserve` already made the spend durable.
    }

    async fn release(&self, nonce: &Nonce) {
        self.store.unspend(nonce).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redb_spends_once_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("spent.redb");
        let store = SpentStore::open_redb(&path).expect("open");
        let a = [1u8; 32];
        assert!(store.spend(&a, None).await.expect("first"));
        assert!(!store.spend(&a, None).await.expect("second"));
        assert!(store.spend(&[2u8; 32], None).await.expect("another"));
        store.unspend(&[2u8; 32]).await;
        assert!(!store.contains(&[2u8; 32]).await.expect("read"));
        drop(store);
        let store = SpentStore::open_redb(&path).expect("reopen");
        assert!(store.contains(&a).await.expect("read"));
        assert!(!store.spend(&a, None).await.expect("after reopening"));
    }

    #[tokio::test]
    async fn concurrent_spends_of_one_nonce_admit_exactly_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SpentStore::open_redb(&dir.path().join("s.redb")).expect("open");
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move { s.spend(&[9u8; 32], None).await }));
        }
        let mut fresh = 0;
        for t in tasks {
            if t.await.expect("join").expect("spend") {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1);
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_an_error_not_fresh() {
        // Port 1 on loopback: nothing listens.
        let store = SpentStore::redis("redis://127.0.0.1:1/").expect("lazy client");
        let e = store
            .spend(&[3u8; 32], Some(now() + 60))
            .await
            .expect_err("unreachable");
        assert!(
            matches!(e, StoreError::Redis(_) | StoreError::RedisTimeout(_)),
            "{e}"
        );
        let r = Redemption::new(&store, None);
        assert!(!r.reserve(&[3u8; 32]).await);
        assert!(r.take_failure().is_some());
    }
}
