//! The issuer's accounts and their daily quotas, in an embedded redb database (one issuer), or
//! in PostgreSQL shared by a fleet of issuers ([`AccountStore`], [`crate::shared`]).
//!
//! An account is known by the SHA-256 of its bearer token (the token itself is shown once, when
//! the account is made, and never stored). Each issuance charges the account's count for the
//! current UTC day in one durable write transaction. Nothing of a token request is stored:
//! the issuer's records are (account digest, day, count) — nothing that can be joined with a
//! redemption.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// account digest → (name, tokens per day)
const ACCOUNTS: TableDefinition<&[u8; 32], (&str, u32)> = TableDefinition::new("accounts");
/// (account digest, UTC day) → tokens issued that day
const USAGE: TableDefinition<(&[u8; 32], u64), u32> = TableDefinition::new("usage");

/// Why an account could not be charged or managed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// No account has this bearer token.
    #[error("no account has this bearer token")]
    Unknown,
    /// The account used its quota for today.
    #[error("the account has used its {quota} tokens for today")]
    QuotaExhausted {
        /// Tokens per day.
        quota: u32,
    },
    /// An account name that is empty, too long or not printable ASCII.
    #[error("account name {0:?} is not 1-64 printable ASCII characters")]
    BadName(String),
    /// The database failed.
    #[error("account database: {0}")]
    Database(String),
}

fn db_err(e: impl Into<redb::Error>) -> AccountError {
    AccountError::Database(e.into().to_string())
}

/// The account database.
#[derive(Clone)]
pub struct Accounts {
    db: Arc<Database>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Accounts")
    }
}

/// A bearer token: shown once, never logged.
pub struct BearerToken(pub Zeroizing<String>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// The digest an account is known by.
pub(crate) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks an account's name.
pub(crate) fn valid_name(name: &str) -> Result<(), AccountError> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AccountError::BadName(name.chars().take(64).collect()));
    }
    Ok(())
}

/// A fresh bearer token: 32 random bytes, hex.
pub(crate) fn new_bearer() -> Result<BearerToken, AccountError> {
    let mut raw = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *raw).map_err(|e| AccountError::Database(e.to_string()))?;
    Ok(BearerToken(Zeroizing::new(hex::encode(*raw))))
}

/// Where the accounts are: this machine's redb file, or PostgreSQL shared by a fleet of
/// issuers.
#[derive(Debug, Clone)]
pub enum AccountStore {
    /// One issuer: redb.
    Embedded(Accounts),
    /// A fleet of issuers: PostgreSQL.
    Shared(Box<crate::shared::SharedAccounts>),
}

impl From<Accounts> for AccountStore {
    fn from(a: Accounts) -> Self {
        AccountStore::Embedded(a)
    }
}

impl AccountStore {
    /// `postgres://…` (with `ca` for its TLS) or a redb file's path.
    pub async fn open(spec: &str, ca: Option<&Path>) -> Result<Self, AccountError> {
        if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
            Ok(AccountStore::Shared(Box::new(
                crate::shared::SharedAccounts::connect(spec, ca).await?,
            )))
        } else {
            Ok(AccountStore::Embedded(Accounts::open(Path::new(spec))?))
        }
    }

    /// Makes an account allowed `quota` tokens per UTC day; returns its bearer token.
    pub async fn add(&self, name: &str, quota: u32) -> Result<BearerToken, AccountError> {
        match self {
            AccountStore::Embedded(a) => a.add(name, quota),
            AccountStore::Shared(s) => s.add(name, quota).await,
        }
    }

    /// Charges one token to the account with `bearer` for UTC day `day`; how many are left.
    pub async fn charge(&self, bearer: &str, day: u64) -> Result<u32, AccountError> {
        match self {
            AccountStore::Embedded(a) => {
                let (a, bearer) = (a.clone(), Zeroizing::new(bearer.to_owned()));
                tokio::task::spawn_blocking(move || a.charge(&bearer, day))
                    .await
                    .map_err(|e| AccountError::Database(e.to_string()))?
            }
            AccountStore::Shared(s) => s.charge(bearer, day).await,
        }
    }
}

impl Accounts {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, AccountError> {
        let db = Database::create(path).map_err(db_err)?;
        let tx = db.begin_write().map_err(db_err)?;
        tx.open_table(ACCOUNTS).map_err(db_err)?;
        tx.open_table(USAGE).map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(Accounts { db: Arc::new(db) })
    }

    /// Makes an account allowed `quota` tokens per UTC day; returns its bearer token.
    pub fn add(&self, name: &str, quota: u32) -> Result<BearerToken, AccountError> {
        valid_name(name)?;
        let BearerToken(token) = new_bearer()?;
        let tx = self.db.begin_write().map_err(db_err)?;
        tx.open_table(ACCOUNTS)
            .map_err(db_err)?
            .insert(&digest(&token), (name, quota))
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
        Ok(BearerToken(token))
    }

    /// Charges one token to the account with `bearer` for UTC day `day`; returns how many are
    /// left today.
    pub fn charge(&self, bearer: &str, day: u64) -> Result<u32, AccountError> {
        let id = digest(bearer);
        let tx = self.db.begin_write().map_err(db_err)?;
        let left = {
            let accounts = tx.open_table(ACCOUNTS).map_err(db_err)?;
            let quota = match accounts.get(&id).map_err(db_err)? {
                Some(v) => v.value().1,
                None => return Err(AccountError::Unknown),
            };
            let mut usage = tx.open_table(USAGE).map_err(db_err)?;
            let used = usage
                .get((&id, day))
                .map_err(db_err)?
                .map_or(0, |v| v.value());
            if used >= quota {
                return Err(AccountError::QuotaExhausted { quota });
            }
            usage.insert((&id, day), used + 1).map_err(db_err)?;
            quota - used - 1
        };
        tx.commit().map_err(db_err)?;
        Ok(left)
    }

    /// Tokens issued to the account with `bearer` on `day`.
    pub fn used(&self, bearer: &str, day: u64) -> Result<u32, AccountError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let usage = tx.open_table(USAGE).map_err(db_err)?;
        Ok(usage
            .get((&digest(bearer), day))
            .map_err(db_err)?
            .map_or(0, |v| v.value()))
    }

    /// Deletes usage rows older than `day` (they are only needed for the current day).
    pub fn prune(&self, day: u64) -> Result<usize, AccountError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        let removed = {
            let mut usage = tx.open_table(USAGE).map_err(db_err)?;
            let old: Vec<([u8; 32], u64)> = usage
                .iter()
                .map_err(db_err)?
                .filter_map(Result::ok)
                .map(|(k, _)| {
                    let (id, d) = k.value();
                    (*id, d)
                })
                .filter(|(_, d)| *d < day)
                .collect();
            for (id, d) in &old {
                usage.remove((id, *d)).map_err(db_err)?;
            }
            old.len()
        };
        tx.commit().map_err(db_err)?;
        Ok(removed)
    }
}

/// The UTC day number of Unix time `secs`.
pub fn utc_day(secs: u64) -> u64 {
    secs / 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_per_day_and_unknown_accounts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounts.redb");
        let accounts = Accounts::open(&path).expect("open");
        let alice = accounts.add("alice", 2).expect("add");
        assert_eq!(alice.0.len(), 64);
        assert_eq!(format!("{alice:?}"), "BearerToken([redacted])");
        assert_eq!(accounts.charge(&alice.0, 100), Ok(1));
        assert_eq!(accounts.charge(&alice.0, 100), Ok(0));
        assert_eq!(
            accounts.charge(&alice.0, 100),
            Err(AccountError::QuotaExhausted { quota: 2 })
        );
        // A new day, a new quota.
        assert_eq!(accounts.charge(&alice.0, 101), Ok(1));
        assert_eq!(
            accounts.charge("not-a-token", 101),
            Err(AccountError::Unknown)
        );
        assert_eq!(accounts.used(&alice.0, 100), Ok(2));
        assert_eq!(accounts.prune(101), Ok(1));
        assert_eq!(accounts.used(&alice.0, 100), Ok(0));
        assert!(matches!(accounts.add("", 1), Err(AccountError::BadName(_))));
        assert!(matches!(
            accounts.add("a b", 1),
            Err(AccountError::BadName(_))
        ));
        drop(accounts);
        // Durable: the count survives reopening; the token itself is not in the file.
        let accounts = Accounts::open(&path).expect("reopen");
        assert_eq!(accounts.used(&alice.0, 101), Ok(1));
        let file = std::fs::read(&path).expect("read db");
        assert!(!file.windows(alice.0.len()).any(|w| w == alice.0.as_bytes()));
    }
}
