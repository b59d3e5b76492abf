//! `cloister-witness`: a witness of one Cloister release log. `init` makes its key; `serve`
//! answers C2SP tlog-witness `POST /add-checkpoint`, cosigning (tlog-cosignature/v1) only a
//! checkpoint the log signed that extends the last one it cosigned.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use cloister_http::{Options, Reply, read_body, reply};
use cloister_protocol::{media, tlog};
use cloister_transparency::Witness;
use cloister_transparency::cosign::CosignatureSigner;
use rand_core::RngCore;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(about = "A witness of a Cloister transparency log")]
struct Cli {
    /// The witness's key file (`name` and the hex Ed25519 seed), readable by its owner only.
    #[arg(long, env = "CLOISTER_WITNESS_KEY")]
    key: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Makes the key of a witness named NAME; prints its verifier key.
    Init {
        /// The witness's name.
        name: String,
    },
    /// Serves `POST /add-checkpoint` for the log with verifier key `--log-key`.
    Serve {
        /// The log's signed-note verifier key.
        #[arg(long, env = "CLOISTER_WITNESS_LOG_KEY")]
        log_key: String,
        /// Where the last cosigned checkpoint is kept.
        #[arg(long)]
        state: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8601")]
        listen: String,
    },
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn load(path: &Path) -> anyhow::Result<CosignatureSigner> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let (name, seed) = text
        .trim()
        .split_once(' ')
        .context("the key file is `name hex-seed`")?;
    let mut bytes = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(seed, &mut bytes[..]).context("the seed is not 32 hex bytes")?;
    Ok(CosignatureSigner::new(name, &bytes, now())?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // The witness's signing key is in this process: no core dumps, not dumpable.
    cloister_http::no_core_dumps();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Init { name } => {
            if cli.key.exists() {
                bail!(
                    "{} exists: refusing to replace a witness key",
                    cli.key.display()
                );
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            rand_core::OsRng.fill_bytes(&mut seed[..]);
            let signer = CosignatureSigner::new(&name, &seed, now())?;
            let line = Zeroizing::new(format!("{name} {}\n", hex::encode(&seed[..])));
            write_private(&cli.key, &line)?;
            use std::io::Write;
            writeln!(std::io::stdout(), "{}", signer.verifier_key())?;
        }
        Command::Serve {
            log_key,
            state,
            listen,
        } => {
            let witness = Witness::new(load(&cli.key)?, &log_key, &state)?;
            let witness = Arc::new(Mutex::new(witness));
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            tracing::info!(%listen, "witness listening");
            let handler = move |req| {
                let witness = witness.clone();
                async move { handle(witness, req).await }
            };
            cloister_http::serve(
                listener,
                handler,
                Options::default(),
                cloister_http::shutdown_signal(),
                std::time::Duration::from_secs(10),
            )
            .await?;
        }
    }
    Ok(())
}

async fn handle(witness: Arc<Mutex<Witness>>, req: hyper::Request<hyper::body::Incoming>) -> Reply {
    if req.method() != hyper::Method::POST || req.uri().path() != tlog::ADD_CHECKPOINT_PATH {
        return reply(404, media::TEXT, &b"not found\n"[..]);
    }
    let Ok(body) = read_body(req.into_body(), 64 * 1024).await else {
        return reply(413, media::TEXT, &b"too large\n"[..]);
    };
    let answer = tokio::task::spawn_blocking(move || {
        let mut w = witness.lock().unwrap_or_else(|p| p.into_inner());
        w.set_time(now());
        w.add_checkpoint(&body)
    })
    .await;
    let status = match &answer {
        Ok(Ok(_)) => 200,
        Ok(Err(e)) => e.status(),
        Err(_) => 500,
    };
    tracing::info!(status, "add-checkpoint");
    match answer {
        Ok(Ok(line)) => reply(200, media::TEXT, line),
        Ok(Err(e)) => match e.conflict_size() {
            // C2SP tlog-witness: a 409 names the size last cosigned, as `text/x.tlog.size`.
            Some(size) => reply(409, tlog::TLOG_SIZE_MEDIA, format!("{size}\n")),
            None => reply(e.status(), media::TEXT, format!("{e}\n")),
        },
        Err(_) => reply(500, media::TEXT, &b"internal\n"[..]),
    }
}

fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    cloister_transparency::write_secret(path, secret)
        .with_context(|| format!("creating {}", path.display()))
}
