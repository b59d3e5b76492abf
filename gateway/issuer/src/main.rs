//! `cloister-issuer`: the operator's Privacy Pass issuer (RFC 9578, token type 0x0002).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use cloister_http::shutdown_signal;
use cloister_issuer::accounts::AccountStore;
use cloister_issuer::{IssuerConfig, IssuerKey, serve_tls_until, serve_until};
use cloister_protocol::access::encode_token_key;

#[derive(Parser)]
#[command(about = "Privacy Pass issuer: blind-RSA tokens for accounts, with a daily quota")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Makes a new RSA-2048 issuer key (PEM, mode 0600; never overwrites) and prints its
    /// public key (SPKI, base64url), the value a gateway's `--issuer-key` takes.
    Init {
        /// Where the private key goes.
        #[arg(long, env = "CLOISTER_ISSUER_KEY")]
        key: PathBuf,
    },
    /// Prints the public key (SPKI, base64url) of an issuer key.
    PublicKey {
        /// The private key file.
        #[arg(long, env = "CLOISTER_ISSUER_KEY")]
        key: PathBuf,
    },
    /// Makes an account and prints its bearer token (shown once, stored only as a digest).
    AddAccount {
        /// The account store: a redb file (one issuer), or `postgres://USER@HOST/DB` shared
        /// by a fleet of issuers.
        #[arg(long, env = "CLOISTER_ISSUER_DB")]
        db: String,
        /// The CA (PEM) of the PostgreSQL server's certificate (TLS unless the URL says
        /// `sslmode=disable`).
        #[arg(long, env = "CLOISTER_ISSUER_DB_CA")]
        db_ca: Option<PathBuf>,
        /// A name for the operator's records.
        #[arg(long)]
        name: String,
        /// Tokens per UTC day.
        #[arg(long, default_value_t = 100)]
        quota: u32,
    },
    /// Serves the issuer directory and token requests.
    Serve {
        /// The private key file.
        #[arg(long, env = "CLOISTER_ISSUER_KEY")]
        key: PathBuf,
        /// The account store: a redb file (one issuer), or `postgres://USER@HOST/DB` shared
        /// by a fleet of issuers (each charge is one atomic statement: issuers serving one
        /// account at once never exceed its quota).
        #[arg(long, env = "CLOISTER_ISSUER_DB")]
        db: String,
        /// The CA (PEM) of the PostgreSQL server's certificate (TLS unless the URL says
        /// `sslmode=disable`).
        #[arg(long, env = "CLOISTER_ISSUER_DB_CA")]
        db_ca: Option<PathBuf>,
        /// Address to listen on (port 0: any free port; the READY line names it).
        #[arg(long, env = "CLOISTER_ISSUER_LISTEN", default_value = "127.0.0.1:8702")]
        listen: String,
        /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key. The
        /// account's bearer token travels in this exchange: without TLS here, put the issuer
        /// behind a TLS terminator.
        #[arg(long, env = "CLOISTER_ISSUER_TLS_CERT", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The certificate's private key (PEM).
        #[arg(long, env = "CLOISTER_ISSUER_TLS_KEY", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    cloister_http::no_core_dumps();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match Cli::parse().command {
        Command::Init { key } => {
            let k = IssuerKey::generate()?;
            k.save(&key)?;
            println!("{}", encode_token_key(k.spki()));
        }
        Command::PublicKey { key } => {
            println!("{}", encode_token_key(IssuerKey::load(&key)?.spki()));
        }
        Command::AddAccount {
            db,
            db_ca,
            name,
            quota,
        } => {
            let token = AccountStore::open(&db, db_ca.as_deref())
                .await?
                .add(&name, quota)
                .await?;
            println!("{}", token.0.as_str());
        }
        Command::Serve {
            key,
            db,
            db_ca,
            listen,
            tls_cert,
            tls_key,
        } => {
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(cloister_http::tls::acceptor(cert, key)?),
                _ => None,
            };
            let config = IssuerConfig {
                key: IssuerKey::load(&key)?,
                accounts: AccountStore::open(&db, db_ca.as_deref()).await?,
            };
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            let scheme = if tls.is_some() { "https" } else { "http" };
            println!("READY {scheme}://{}", listener.local_addr()?);
            tracing::info!("issuer listening");
            // On Ctrl-C or SIGTERM: stop accepting, let requests in flight finish (up to 30 s).
            let drain = Duration::from_secs(30);
            match tls {
                Some(tls) => {
                    serve_tls_until(config, listener, tls, shutdown_signal(), drain).await?
                }
                None => serve_until(config, listener, shutdown_signal(), drain).await?,
            }
        }
    }
    Ok(())
}
