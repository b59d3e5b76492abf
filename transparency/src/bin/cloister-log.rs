//! `cloister-log`: create a release log, append release records, print its checkpoint, and
//! write inclusion bundles. (The HTTP server comes next; the directory is already servable
//! as static files.)

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use cloister_transparency::{Log, ReleaseRecord};
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(about = "Cloister's transparency log of release measurements")]
struct Cli {
    /// The log directory (C2SP tiles, checkpoint).
    #[arg(long, env = "CLOISTER_LOG_DIR")]
    log: PathBuf,
    /// The signing key file (signed-note `PRIVATE+KEY+…`), kept outside the served directory.
    #[arg(long, env = "CLOISTER_LOG_KEY")]
    key: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates an empty log named ORIGIN and its key pair; prints the verifier key.
    Init {
        /// The log's name (its checkpoints' origin line).
        origin: String,
    },
    /// Appends release records (files of canonical JSON) in one batch.
    Add {
        /// The records.
        #[arg(required = true)]
        records: Vec<PathBuf>,
    },
    /// Prints the current signed checkpoint.
    Checkpoint,
    /// Prints the log proof (JSON) of entry INDEX under the current checkpoint.
    Prove {
        /// The entry.
        index: u64,
    },
    /// Serves the log over HTTP (static tiles, bundles, consistency proofs, `POST /add`).
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8600")]
        listen: String,
        /// File holding the operator's API key for `POST /add`.
        #[arg(long, env = "CLOISTER_LOG_API_KEY_FILE")]
        api_key_file: PathBuf,
    },
}

fn vkey_path(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

fn open(cli: &Cli) -> anyhow::Result<Log> {
    let skey = Zeroizing::new(
        std::fs::read_to_string(&cli.key)
            .with_context(|| format!("reading {}", cli.key.display()))?,
    );
    let vkey = std::fs::read_to_string(vkey_path(&cli.key))?;
    Ok(Log::open(&cli.log, &skey, vkey.trim())?)
}

fn main() -> anyhow::Result<()> {
    use std::io::Write;
    // The log's signing key is in this process: no core dumps, not dumpable.
    cloister_http::no_core_dumps();
    let cli = Cli::parse();
    // Output errors (a closed pipe) are returned, not panics.
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Init { origin } => {
            if cli.key.exists() {
                bail!(
                    "{} exists: refusing to replace a log key",
                    cli.key.display()
                );
            }
            let (skey, vkey) = signed_note::generate_key(&mut rand_core::OsRng, origin);
            let skey = Zeroizing::new(skey);
            write_private(&cli.key, &skey)?;
            std::fs::write(vkey_path(&cli.key), format!("{vkey}\n"))?;
            Log::create(&cli.log, &skey, &vkey)?;
            writeln!(out, "{vkey}")?;
        }
        Command::Add { records } => {
            let log = open(&cli)?;
            let mut entries = Vec::new();
            for r in records {
                let bytes = std::fs::read(r).with_context(|| format!("reading {}", r.display()))?;
                // Records are appended in their canonical encoding whatever the file's layout.
                let record: ReleaseRecord = serde_json::from_slice(&bytes)
                    .with_context(|| format!("{} is not a release record", r.display()))?;
                entries.push(record.to_bytes()?);
            }
            let appended = log.append(&entries, |_| {})?;
            for (i, r) in records.iter().enumerate() {
                writeln!(out, "{}\t{}", appended.first + i as u64, r.display())?;
            }
        }
        Command::Checkpoint => {
            let (cp, _, _) = open(&cli)?.checkpoint()?;
            out.write_all(&cp)?;
        }
        Command::Serve {
            listen,
            api_key_file,
        } => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                // Colour codes only on a terminal: log files and journald get plain text.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init();
            let log = open(&cli)?;
            let key = Zeroizing::new(
                std::fs::read_to_string(api_key_file)
                    .with_context(|| format!("reading {}", api_key_file.display()))?,
            );
            if key.trim().len() < 16 {
                bail!("the API key must be at least 16 characters");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                tracing::info!(%listen, "log listening");
                cloister_transparency::server::serve(log, key, listener).await
            })?;
        }
        Command::Prove { index } => {
            let proof = open(&cli)?.log_proof(*index)?;
            out.write_all(&proof.to_json())?;
            writeln!(out)?;
        }
    }
    Ok(())
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    cloister_transparency::write_secret(path, secret)
        .with_context(|| format!("creating {}", path.display()))
}
