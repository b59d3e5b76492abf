//! Accounts and daily quotas shared by a fleet of issuers, in PostgreSQL.
//!
//! The same records as the embedded store — (account digest, name, quota) and (account digest,
//! UTC day, tokens issued) — in two tables. A charge is one statement: an insert of the day's
//! first token or an increment of its count, only while the count is below the account's
//! quota. PostgreSQL locks the day's row for the increment and re-checks the condition on its
//! latest version, so issuers charging one account at once never issue beyond its quota.
//!
//! The connection is TLS (rustls, the CA given) unless the URL says `sslmode=disable`, which a
//! deployment must ask for by name (an issuer and its database on one host's loopback, or a
//! test). A lost connection is made again at the next charge; until then charges fail, and the
//! issuer answers 503 — it never issues without charging.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::accounts::{AccountError, BearerToken, digest, new_bearer, valid_name};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS cloister_accounts (
    digest BYTEA PRIMARY KEY CHECK (octet_length(digest) = 32),
    name TEXT NOT NULL,
    quota INTEGER NOT NULL CHECK (quota >= 0)
);
CREATE TABLE IF NOT EXISTS cloister_usage (
    digest BYTEA NOT NULL REFERENCES cloister_accounts (digest) ON DELETE CASCADE,
    day BIGINT NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (digest, day)
);
";

/// Charges one token if the day's count is below the quota; returns the new count and the
/// quota, or no row (unknown account, or quota used).
const CHARGE: &str = "
INSERT INTO cloister_usage AS u (digest, day, used)
SELECT a.digest, $2, 1 FROM cloister_accounts a WHERE a.digest = $1 AND a.quota > 0
ON CONFLICT (digest, day) DO UPDATE SET used = u.used + 1
    WHERE u.used < (SELECT quota FROM cloister_accounts WHERE digest = u.digest)
RETURNING used, (SELECT quota FROM cloister_accounts WHERE digest = $1)
";

/// How the issuer reaches PostgreSQL.
#[derive(Clone)]
enum Tls {
    /// rustls with these roots.
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
    /// `sslmode=disable`, asked for by name in the URL.
    InsecureDisabled,
}

/// The shared store.
#[derive(Clone)]
pub struct SharedAccounts {
    config: tokio_postgres::Config,
    tls: Tls,
    client: Arc<Mutex<Option<Arc<Client>>>>,
}

impl std::fmt::Debug for SharedAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedAccounts")
            .field("hosts", &self.config.get_hosts().len())
            .finish_non_exhaustive()
    }
}

fn db(e: impl std::fmt::Display) -> AccountError {
    AccountError::Database(e.to_string())
}

impl SharedAccounts {
    /// The store at `url` (`postgres://USER@HOST[:PORT]/DB[?sslmode=…]`), over TLS trusting
    /// `ca` (PEM) unless the URL says `sslmode=disable`; connects and makes the tables.
    pub async fn connect(url: &str, ca: Option<&Path>) -> Result<Self, AccountError> {
        let config: tokio_postgres::Config = url.parse().map_err(db)?;
        let disabled = config.get_ssl_mode() == tokio_postgres::config::SslMode::Disable;
        let tls = match (disabled, ca) {
            (true, _) => Tls::InsecureDisabled,
            (false, Some(ca)) => {
                let mut roots = rustls::RootCertStore::empty();
                use rustls::pki_types::pem::PemObject as _;
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
                    .map_err(|e| db(format!("{}: {e}", ca.display())))?;
                for cert in certs {
                    roots.add(cert.map_err(db)?).map_err(db)?;
                }
                let provider = Arc::new(cloister_http::tls::ring_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(db)?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Tls::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(config))
            }
            (false, None) => {
                return Err(AccountError::Database(
                    "a PostgreSQL account store needs --db-ca (its server's CA), or \
                     sslmode=disable in the URL for a database on this host"
                        .into(),
                ));
            }
        };
        let store = SharedAccounts {
            config,
            tls,
            client: Arc::new(Mutex::new(None)),
        };
        store
            .client()
            .await?
            .batch_execute(SCHEMA)
            .await
            .map_err(db)?;
        Ok(store)
    }

    /// A live connection, made again if the last one closed.
    async fn client(&self) -> Result<Arc<Client>, AccountError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(Arc::clone(c));
        }
        let client = match &self.tls {
            Tls::Rustls(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.map_err(db)?;
                tokio::spawn(conn);
                client
            }
            Tls::InsecureDisabled => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(db)?;
                tokio::spawn(conn);
                client
            }
        };
        let client = Arc::new(client);
        *slot = Some(Arc::clone(&client));
        Ok(client)
    }

    /// Makes an account allowed `quota` tokens per UTC day; returns its bearer token.
    pub async fn add(&self, name: &str, quota: u32) -> Result<BearerToken, AccountError> {
        valid_name(name)?;
        let quota = i32::try_from(quota).map_err(|_| db("quota above 2^31"))?;
        let token = new_bearer()?;
        self.client()
            .await?
            .execute(
                "INSERT INTO cloister_accounts (digest, name, quota) VALUES ($1, $2, $3)",
                &[&digest(&token.0).as_slice(), &name, &quota],
            )
            .await
            .map_err(db)?;
        Ok(token)
    }

    /// Charges one token to the account with `bearer` for UTC day `day`; returns how many are
    /// left today.
    pub async fn charge(&self, bearer: &str, day: u64) -> Result<u32, AccountError> {
        let id = digest(bearer);
        let day = i64::try_from(day).map_err(db)?;
        let client = self.client().await?;
        let charged = client
            .query_opt(CHARGE, &[&id.as_slice(), &day])
            .await
            .map_err(db)?;
        if let Some(row) = charged {
            let (used, quota): (i32, i32) = (row.get(0), row.get(1));
            return Ok(u32::try_from(quota - used).unwrap_or(0));
        }
        let quota = client
            .query_opt(
                "SELECT quota FROM cloister_accounts WHERE digest = $1",
                &[&id.as_slice()],
            )
            .await
            .map_err(db)?;
        match quota {
            None => Err(AccountError::Unknown),
            Some(row) => Err(AccountError::QuotaExhausted {
                quota: u32::try_from(row.get::<_, i32>(0)).unwrap_or(0),
            }),
        }
    }

    /// Tokens issued to the account with `bearer` on `day`.
    pub async fn used(&self, bearer: &str, day: u64) -> Result<u32, AccountError> {
        let day = i64::try_from(day).map_err(db)?;
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT used FROM cloister_usage WHERE digest = $1 AND day = $2",
                &[&digest(bearer).as_slice(), &day],
            )
            .await
            .map_err(db)?;
        Ok(row.map_or(0, |r| u32::try_from(r.get::<_, i32>(0)).unwrap_or(0)))
    }

    /// Deletes usage rows older than `day`.
    pub async fn prune(&self, day: u64) -> Result<usize, AccountError> {
        let day = i64::try_from(day).map_err(db)?;
        let n = self
            .client()
            .await?
            .execute("DELETE FROM cloister_usage WHERE day < $1", &[&day])
            .await
            .map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tls_is_required_unless_disabled_by_name() {
        let e = SharedAccounts::connect("postgres://cloister@127.0.0.1:1/db", None)
            .await
            .expect_err("no CA");
        assert!(e.to_string().contains("--db-ca"), "{e}");
        // Disabled by name: it gets as far as connecting (nothing listens on port 1).
        let e = SharedAccounts::connect("postgres://cloister@127.0.0.1:1/db?sslmode=disable", None)
            .await
            .expect_err("nothing listens");
        assert!(!e.to_string().contains("--db-ca"), "{e}");
        assert!(SharedAccounts::connect("not a url", None).await.is_err());
    }
}
