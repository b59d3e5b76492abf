//! `cloister`: the device's command line. Verifies the nodes behind a relay and a gateway, and
//! sends chats to summarise, drafts to rewrite, or bytes to echo, to a node it verified.
//!
//! ```text
//! cloister --relay https://relay.example nodes [--json]
//! cloister --relay URL --issuer URL --account-token-file F summarize [--file F] [--json]
//! cloister … rewrite --tone friendly [--file F] [--json]
//! cloister … echo [--file F]
//! ```
//!
//! Every flag can also come from the environment (`CLOISTER_RELAY`, `CLOISTER_ISSUER`, …).
#![forbid(unsafe_code)]

use std::io::{Read as _, Write as _};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use cloister_client::nodes::NodeReport;
use cloister_client::token_file::SealedTokenFile;
use cloister_client::trust::Quorum;
use cloister_client::workload::{rewrite_body, rewrite_text, summary_text};
use cloister_client::{
    BaseUrl, ChatInput as _, Client, ClientConfig, FileStore, InnerResponse, IssuerAccount,
    LogKeys, MemoryStore, SecretString, SeenStore, SummarizeRequest, Tone, Trust,
};
use cloister_measurement::{Clock as _, InsecureEmulatedRoot, Policy, SystemClock};
use cloister_protocol::media;
use cloister_protocol::workload::{ECHO_PATH, REWRITE_PATH, SUMMARIZE_PATH};
use zeroize::Zeroizing;

/// Largest input read from a file or stdin.
const MAX_INPUT: u64 = 16 << 20;

/// Cloister's device: verify the nodes, then send to one of them through the OHTTP relay.
#[derive(Parser, Debug)]
#[command(name = "cloister", version)]
struct Cli {
    /// The OHTTP relay, http://HOST[:PORT][/PREFIX].
    #[arg(long, env = "CLOISTER_RELAY", global = true)]
    relay: Option<String>,
    /// The Privacy Pass issuer, http://HOST[:PORT][/PREFIX] (needed to send).
    #[arg(long, env = "CLOISTER_ISSUER", global = true)]
    issuer: Option<String>,
    /// A file holding the account's bearer token for the issuer (needed to send).
    #[arg(long, env = "CLOISTER_ACCOUNT_TOKEN_FILE", global = true)]
    account_token_file: Option<PathBuf>,
    /// Trust the software-emulated AMD secure processor whose ARK (DER) is in this file,
    /// instead of AMD and Intel hardware. INSECURE: no confidentiality; CI and research only.
    #[arg(
        long,
        env = "CLOISTER_INSECURE_EMULATED",
        value_name = "ARK_DER_FILE",
        global = true
    )]
    insecure_emulated: Option<PathBuf>,
    /// Policy and reference values (JSON, see cloister_measurement::policy); the default
    /// accepts no measurement unless a log is trusted.
    #[arg(long, env = "CLOISTER_POLICY", global = true)]
    policy: Option<PathBuf>,
    /// A file holding the transparency log's signed-note verifier key: accept only
    /// measurements published in that log.
    #[arg(long, env = "CLOISTER_LOG_KEY", global = true)]
    log_key: Option<PathBuf>,
    /// A witness's tlog-cosignature verifier key (repeatable; comma-separated in the env).
    #[arg(
        long = "witness-key",
        env = "CLOISTER_WITNESS_KEYS",
        value_delimiter = ',',
        global = true
    )]
    witness_keys: Vec<String>,
    /// Witness cosignatures required on the log's checkpoints (at least one: a log's own
    /// signature cannot show that every device sees the same tree).
    #[arg(long, env = "CLOISTER_QUORUM", default_value_t = NonZeroUsize::MIN, global = true)]
    quorum: NonZeroUsize,
    /// INSECURE: trust the log's signature alone, with no witness. A log that shows this device
    /// a tree no auditor sees (a split view, hiding a release) then goes unnoticed.
    #[arg(
        long,
        env = "CLOISTER_INSECURE_NO_WITNESS",
        global = true,
        conflicts_with = "witness_keys"
    )]
    insecure_no_witness: bool,
    /// Distinct machines (SNP chips, TDX platforms) the directory's nodes must span; with one,
    /// the operator knows where every request goes. Lower it only for a deployment that has
    /// no second machine.
    #[arg(long, env = "CLOISTER_MIN_MACHINES", default_value_t = NonZeroUsize::new(cloister_client::choose::DEFAULT_MIN_MACHINES).unwrap_or(NonZeroUsize::MIN), global = true)]
    min_machines: NonZeroUsize,
    /// Nodes each directory fetch asks for: the gateway answers a fresh random sample of that
    /// many of its verified nodes (all of them when it has fewer).
    #[arg(long, env = "CLOISTER_DIRECTORY_SAMPLE", default_value_t = std::num::NonZeroU16::new(cloister_protocol::access::DEFAULT_DIRECTORY_SAMPLE).unwrap_or(std::num::NonZeroU16::MIN), global = true)]
    directory_sample: std::num::NonZeroU16,
    /// INSECURE: use whatever keys the issuer and the relay serve, not only the current keys
    /// the log holds. An issuer that gives each account its own key then learns whose every
    /// request is; a relay that substitutes the gateway's key reads the token and the node.
    /// Only for a device that trusts no log.
    #[arg(long, global = true)]
    insecure_unlogged_keys: bool,
    /// Trust only this root (PEM) for an `https://` relay or issuer, instead of the operating
    /// system's store.
    #[arg(long, env = "CLOISTER_TLS_ROOT", global = true)]
    tls_root: Option<PathBuf>,
    /// The file holding the key the token store is sealed under [default:
    /// $XDG_RUNTIME_DIR/cloister/token-store.key: memory, gone at logout or reboot, and the
    /// tokens with it]. Without either, tokens are kept in memory for this run only.
    #[arg(long, env = "CLOISTER_TOKEN_KEY_FILE", global = true)]
    token_key_file: Option<PathBuf>,
    /// Tokens to fetch at once when the store has none (the spare ones are stored).
    #[arg(long, env = "CLOISTER_TOKEN_BATCH", default_value_t = 1, global = true)]
    token_batch: usize,
    /// Where the newest log checkpoint seen is kept [default: $XDG_STATE_HOME/cloister or
    /// $HOME/.local/state/cloister].
    #[arg(long, env = "CLOISTER_STATE", global = true)]
    state: Option<PathBuf>,
    /// Deadline of the whole operation, in seconds.
    #[arg(long, env = "CLOISTER_DEADLINE", default_value_t = 300, global = true)]
    deadline: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the nodes and the result of verifying each (exit 1 if none passes).
    Nodes {
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Summarise a chat (JSON or `Sender: text` lines; see cloister_client::chat).
    Summarize {
        /// Read the chat from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Longest summary wanted, in words (10..=400).
        #[arg(long)]
        max_words: Option<u32>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite a draft in a tone: formal, friendly, concise, apologetic or confident.
    Rewrite {
        /// The tone.
        #[arg(long)]
        tone: Tone,
        /// Read the draft from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Print the node's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Send bytes to the node's echo workload and print what comes back.
    Echo {
        /// Read the bytes from this file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// The token store: tokens fetched ahead, sealed in the state directory under a key kept
    /// in memory (`--token-key-file`). Run `fill` from a timer at random times (for example a
    /// systemd timer with `RandomizedDelaySec`), so that a request spends a token fetched long
    /// before it rather than one fetched right then.
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
}

#[derive(Subcommand, Debug)]
enum TokensAction {
    /// Fetch tokens for the gateway's current challenge into the store.
    Fill {
        /// How many.
        #[arg(long, default_value_t = 8)]
        count: usize,
    },
    /// Print how many tokens the store holds.
    Count,
}

fn main() -> ExitCode {
    // The account token, the tokens and the plaintext live in this process: no core dump.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
    let cli = Cli::parse();
    if cli.insecure_emulated.is_some() {
        eprintln!(
            "WARNING: trusting the INSECURE emulated AMD secure processor: the emulated \
             platform offers NO confidentiality; never send real data this way"
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Nodes { json } => {
            let client = client(&cli, false)?;
            let reports = client.nodes().await?;
            if *json {
                let all: Vec<_> = reports.iter().map(report_json).collect();
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                let now = SystemClock.now_unix();
                for r in &reports {
                    print_report(r, now);
                }
            }
            if !reports.iter().any(NodeReport::passed) {
                eprintln!("error: no node passed verification");
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Summarize {
            file,
            max_words,
            json,
        } => {
            let input = read_input(file.as_deref())?;
            let body = SummarizeRequest::parse(&input)?
                .with_max_words(*max_words)?
                .to_body();
            drop(input);
            let client = client(&cli, true)?;
            let r = answered(
                client
                    .send(SUMMARIZE_PATH, media::JSON, body.expose())
                    .await?,
            )?;
            if *json {
                write_out(r.body.expose(), true)?;
            } else {
                write_out(summary_text(r.body.expose())?.as_bytes(), true)?;
            }
        }
        Command::Rewrite { tone, file, json } => {
            let input = read_input(file.as_deref())?;
            let body = rewrite_body(&input, *tone)?;
            drop(input);
            let client = client(&cli, true)?;
            let r = answered(
                client
                    .send(REWRITE_PATH, media::JSON, body.expose())
                    .await?,
            )?;
            if *json {
                write_out(r.body.expose(), true)?;
            } else {
                write_out(rewrite_text(r.body.expose())?.as_bytes(), true)?;
            }
        }
        Command::Echo { file } => {
            let input = read_input(file.as_deref())?;
            let client = client(&cli, true)?;
            let r = client.send(ECHO_PATH, media::OCTET_STREAM, &input).await?;
            write_out(answered(r)?.body.expose(), false)?;
        }
        Command::Tokens { action } => {
            let client = client(&cli, matches!(action, TokensAction::Fill { .. }))?;
            if !client.has_token_file() {
                bail!(
                    "no token store: it needs a state directory (--log-key) and a key file \
                     (--token-key-file or XDG_RUNTIME_DIR)"
                );
            }
            match action {
                TokensAction::Fill { count } => {
                    let held = client.fill_tokens(*count).await?;
                    println!("{held} tokens held for the gateway's current challenge");
                }
                TokensAction::Count => println!("{}", client.reserved_tokens()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer if the node said 200; its problem otherwise.
fn answered(r: InnerResponse) -> Result<InnerResponse> {
    if r.status == 200 {
        return Ok(r);
    }
    match r.problem() {
        Some((kind, detail)) => bail!("node {} answered {} ({kind}): {detail}", r.node, r.status),
        None => bail!("node {} answered {}", r.node, r.status),
    }
}

fn client(cli: &Cli, sending: bool) -> Result<Client> {
    let relay: BaseUrl = cli
        .relay
        .as_deref()
        .context("--relay (or CLOISTER_RELAY) is required")?
        .parse()?;
    let issuer = if sending {
        let url: BaseUrl = cli
            .issuer
            .as_deref()
            .context("--issuer (or CLOISTER_ISSUER) is required to send")?
            .parse()?;
        let path = cli
            .account_token_file
            .as_deref()
            .context("--account-token-file (or CLOISTER_ACCOUNT_TOKEN_FILE) is required to send")?;
        let mut token = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the account token {}", path.display()))?,
        );
        let account_token = SecretString::new(std::mem::take(&mut *token));
        if account_token.is_empty() {
            bail!("the account token file {} is empty", path.display());
        }
        Some(IssuerAccount { url, account_token })
    } else {
        None
    };
    let policy = match &cli.policy {
        Some(p) => Policy::from_json(
            &std::fs::read(p).with_context(|| format!("reading the policy {}", p.display()))?,
        )?,
        None => Policy::default(),
    };
    let (log, state): (Option<LogKeys>, Option<PathBuf>) = match &cli.log_key {
        Some(p) => {
            let key = std::fs::read_to_string(p)
                .with_context(|| format!("reading the log key {}", p.display()))?;
            let quorum = if cli.insecure_no_witness {
                eprintln!(
                    "INSECURE: --insecure-no-witness: the log's signature alone is trusted; a \
                     split view of the log would go unnoticed"
                );
                Quorum::InsecureLogSignatureOnly
            } else if cli.witness_keys.is_empty() {
                bail!(
                    "a trusted log needs its witnesses: give --witness-key KEY (the log's own \
                     signature cannot show that every device sees the same tree), or accept \
                     that by name with --insecure-no-witness"
                )
            } else {
                Quorum::Witnesses(cli.quorum)
            };
            let keys = LogKeys {
                log_key: key.trim().to_owned(),
                witness_keys: cli.witness_keys.clone(),
                quorum,
            };
            (Some(keys), Some(state_dir(cli.state.as_deref())?))
        }
        None if !cli.witness_keys.is_empty() || cli.insecure_no_witness => {
            bail!("--witness-key and --insecure-no-witness need --log-key")
        }
        None => (None, None),
    };
    // With a trusted log the seen checkpoint is kept on disk; without one there is nothing to
    // keep between runs.
    let store: Box<dyn SeenStore> = match &state {
        Some(dir) => Box::new(FileStore::new(dir)),
        None => Box::<MemoryStore>::default(),
    };
    let token_key = cli.token_key_file.clone().or_else(|| {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|p| p.join("cloister/token-store.key"))
    });
    let token_file = match (&state, token_key) {
        (Some(dir), Some(key)) => Some(SealedTokenFile::new(dir, &key)),
        _ => None,
    };
    let trust = match &cli.insecure_emulated {
        Some(p) => {
            let der = std::fs::read(p)
                .with_context(|| format!("reading the emulated ARK {}", p.display()))?;
            let root = InsecureEmulatedRoot::from_ark_der(&der)?;
            eprintln!("WARNING: emulated ARK sha256 {}", root.fingerprint());
            Trust::insecure_emulated(root, policy, log, store)?
        }
        None => Trust::hardware(policy, log, store)?,
    }
    .with_min_machines(cli.min_machines)
    .with_directory_sample(cli.directory_sample);
    let trust = if cli.insecure_unlogged_keys {
        eprintln!(
            "WARNING: accepting unlogged operator keys: an issuer can give this account a key \
             of its own and link every request to it, and a relay can substitute the \
             gateway's key"
        );
        trust.with_insecure_unlogged_keys()
    } else {
        trust
    };
    let client = Client::new(ClientConfig {
        relay,
        issuer,
        trust,
        deadline: Duration::from_secs(cli.deadline),
        tls_roots: match &cli.tls_root {
            Some(p) => cloister_client::tls::TlsRoots::pinned_pem(
                &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            )?,
            None => cloister_client::tls::TlsRoots::Platform,
        },
    })?
    .with_token_batch(cli.token_batch);
    Ok(match token_file {
        Some(f) => client.with_token_file(f),
        None => client,
    })
}

/// `--state`, else `$XDG_STATE_HOME/cloister`, else `$HOME/.local/state/cloister`.
fn state_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_path_buf());
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").and_then(absolute) {
        return Ok(x.join("cloister"));
    }
    match std::env::var_os("HOME").and_then(absolute) {
        Some(h) => Ok(h.join(".local/state/cloister")),
        None => {
            bail!("no state directory for the log checkpoint: set --state, XDG_STATE_HOME or HOME")
        }
    }
}

/// The input (file or stdin), at most [`MAX_INPUT`] bytes, zeroized when dropped.
fn read_input(file: Option<&Path>) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::new());
    let read = match file {
        Some(p) => std::fs::File::open(p)
            .with_context(|| format!("opening {}", p.display()))?
            .take(MAX_INPUT + 1)
            .read_to_end(&mut out),
        None => std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut out),
    };
    read.context("reading the input")?;
    if out.len() as u64 > MAX_INPUT {
        bail!("the input is larger than {MAX_INPUT} bytes");
    }
    Ok(out)
}

fn write_out(bytes: &[u8], newline: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    if newline && !bytes.ends_with(b"\n") {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

fn print_report(r: &NodeReport, now: u64) {
    match &r.result {
        Ok(_) => println!("{}  PASS", r.id),
        Err(f) => println!("{}  FAIL at {}: {}", r.id, f.step.name(), f.error),
    }
    if let Some(p) = r.platform {
        println!("  platform     {p}");
    }
    if let Some(m) = &r.measurement {
        println!("  measurement  {m}");
    }
    if let Some(t) = &r.tcb {
        println!("  tcb          {t}");
    }
    if let Some(m) = &r.machine {
        println!("  machine      {m}");
    }
    if let Some(e) = r.expires_at {
        match e.checked_sub(now) {
            Some(left) => println!("  expires      {e} (in {left} s)"),
            None => println!("  expires      {e} (expired {} s ago)", now - e),
        }
    }
    if let Some(cp) = &r.checkpoint {
        println!("  log          tree of {}, root {}", cp.size, cp.root);
    }
}

fn report_json(r: &NodeReport) -> serde_json::Value {
    let (step, reason) = match &r.result {
        Ok(_) => (None, None),
        Err(f) => (Some(f.step.name()), Some(f.error.to_string())),
    };
    serde_json::json!({
        "id": r.id,
        "passed": r.passed(),
        "platform": r.platform.map(|p| p.as_str()),
        "measurement": r.measurement,
        "tcb": r.tcb,
        "machine": r.machine.as_ref().map(ToString::to_string),
        "expires_at": r.expires_at,
        "checkpoint": r.checkpoint.as_ref().map(|c| serde_json::json!({"size": c.size, "root": c.root})),
        "failed_step": step,
        "reason": reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "cloister",
            "rewrite",
            "--tone",
            "friendly",
            "--relay",
            "http://r:1",
            "--witness-key",
            "a,b",
        ])
        .expect("parses");
        assert!(matches!(
            cli.command,
            Command::Rewrite {
                tone: Tone::Friendly,
                ..
            }
        ));
        assert_eq!(cli.witness_keys, vec!["a", "b"]);
        assert_eq!(cli.deadline, 300);
        assert!(Cli::try_parse_from(["cloister", "rewrite", "--tone", "pirate"]).is_err());
    }

    #[test]
    fn the_state_flag_wins() {
        assert_eq!(
            state_dir(Some(Path::new("/s"))).expect("flag"),
            PathBuf::from("/s")
        );
    }
}
