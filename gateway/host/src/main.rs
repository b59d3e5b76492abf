//! `cloister-host`: the host agent (see the library's text).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};
use cloister_host::agent::{Agent, AgentConfig};
use cloister_host::guests::GuestSpec;
use cloister_host::preflight::{self, Platform};

#[derive(Parser)]
#[command(
    about = "Cloister host agent: preflight, guests, their ports behind mutual TLS, the registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks that this host can run PLATFORM (KVM's VM types; for sev-snp the secure
    /// processor's reported TCB against the devices' floor), and prints what it found.
    Preflight {
        /// `sev-snp`, `tdx`, `insecure-emulated` or `insecure-development`.
        #[arg(long, env = "CLOISTER_HOST_PLATFORM")]
        platform: Platform,
        /// The KVM device.
        #[arg(long, env = "CLOISTER_HOST_KVM", default_value = "/dev/kvm")]
        kvm: PathBuf,
    },
    /// Runs the guests and serves them to the fleet's gateways until SIGTERM or SIGINT, then
    /// drains.
    Serve(Box<Serve>),
}

#[derive(clap::Args)]
struct Serve {
    /// `sev-snp`, `tdx`, `insecure-emulated` or `insecure-development` (runtimes as processes,
    /// emulated attestation: no confidentiality, named so that nobody runs it by accident).
    #[arg(long, env = "CLOISTER_HOST_PLATFORM")]
    platform: Platform,
    /// The KVM device (preflight).
    #[arg(long, env = "CLOISTER_HOST_KVM", default_value = "/dev/kvm")]
    kvm: PathBuf,
    /// This host's name: its nodes are NAME-0, NAME-1, ….
    #[arg(long, env = "CLOISTER_HOST_NAME")]
    name: String,
    /// How many guests to run.
    #[arg(long, env = "CLOISTER_HOST_GUESTS", default_value_t = 1)]
    guests: usize,
    /// The name or address gateways dial (the TLS certificate must carry it).
    #[arg(long, env = "CLOISTER_HOST_ADVERTISE")]
    advertise: String,
    /// The address the guests' ports listen on.
    #[arg(long, env = "CLOISTER_HOST_LISTEN_IP", default_value = "0.0.0.0")]
    listen_ip: std::net::IpAddr,
    /// The first guest's port; the others follow (0: any free ports, named in the READY line).
    #[arg(long, env = "CLOISTER_HOST_FIRST_PORT", default_value_t = 7100)]
    first_port: u16,
    /// This host's certificate chain (PEM), for the name in `--advertise`.
    #[arg(long, env = "CLOISTER_HOST_TLS_CERT")]
    tls_cert: PathBuf,
    /// Its private key (PEM).
    #[arg(long, env = "CLOISTER_HOST_TLS_KEY")]
    tls_key: PathBuf,
    /// The CA (PEM) of the gateways' client certificates: nobody else reaches a guest.
    #[arg(long, env = "CLOISTER_HOST_GATEWAY_CA")]
    gateway_ca: PathBuf,
    /// The fleet's registry (`redis://HOST:PORT[/DB]`).
    #[arg(long, env = "CLOISTER_HOST_REGISTRY")]
    registry: String,
    /// A registration's time to live, seconds (renewed at a third of it): a host that dies
    /// leaves the fleet within it.
    #[arg(long, env = "CLOISTER_HOST_TTL", default_value_t = 15)]
    ttl: u64,
    /// Seconds the ports keep serving after a drain took the nodes out of the registry (at
    /// least the gateways' registry interval).
    #[arg(long, env = "CLOISTER_HOST_DRAIN_GRACE", default_value_t = 10)]
    drain_grace: u64,
    /// Seconds requests in flight may take to finish once the ports close.
    #[arg(long, env = "CLOISTER_HOST_DRAIN_LIMIT", default_value_t = 300)]
    drain_limit: u64,
    /// Directory for the guests' sockets and logs.
    #[arg(
        long,
        env = "CLOISTER_HOST_STATE_DIR",
        default_value = "/run/cloister-host"
    )]
    state_dir: PathBuf,
    /// insecure-development: the runtime binary (default: `cloister-runtime` beside this one).
    #[arg(long, env = "CLOISTER_HOST_RUNTIME")]
    runtime: Option<PathBuf>,
    /// insecure-development: an argument for each runtime besides `--unix` (repeatable; e.g.
    /// `--runtime-arg=--emulated-sp --runtime-arg=/run/sp.sock`).
    #[arg(long = "runtime-arg", allow_hyphen_values = true)]
    runtime_args: Vec<String>,
    /// Seconds a guest may take to become ready.
    #[arg(long, env = "CLOISTER_HOST_READY_TIMEOUT", default_value_t = 600)]
    ready_timeout: u64,
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("this executable's path")?;
    Ok(exe.with_file_name(name))
}

async fn serve(s: Serve) -> Result<()> {
    let report = preflight::check(s.platform, &s.kvm)?;
    tracing::info!(?report, "preflight passed");
    let guests = match s.platform {
        Platform::InsecureDevelopment => {
            let runtime = match s.runtime {
                Some(r) => r,
                None => sibling("cloister-runtime")?,
            };
            std::fs::create_dir_all(&s.state_dir)
                .with_context(|| format!("creating {}", s.state_dir.display()))?;
            (0..s.guests)
                .map(|i| GuestSpec::InsecureDevelopment {
                    runtime: runtime.clone(),
                    args: s.runtime_args.clone(),
                    socket: s.state_dir.join(format!("guest-{i}.sock")),
                    log: s.state_dir.join(format!("guest-{i}.log")),
                    ready_timeout: Duration::from_secs(s.ready_timeout),
                })
                .collect()
        }
        other => bail!(
            "the agent launches {} guests in a later step (issue 26); this build runs \
             insecure-development guests only",
            other.name()
        ),
    };
    let tls = cloister_http::tls::mutual_acceptor(&s.tls_cert, &s.tls_key, &s.gateway_ca)?;
    let registry = cloister_registry::Registry::connect(&s.registry)?;
    let agent = Agent::start(AgentConfig {
        name: s.name,
        advertise: s.advertise,
        listen_ip: s.listen_ip,
        first_port: s.first_port,
        tls,
        registry,
        ttl: Duration::from_secs(s.ttl.max(1)),
        drain_grace: Duration::from_secs(s.drain_grace),
        drain_limit: Duration::from_secs(s.drain_limit),
        guests,
    })
    .await?;
    let nodes: Vec<String> = agent
        .served()
        .iter()
        .map(|n| format!("{}={}", n.id, n.address))
        .collect();
    println!("READY {}", nodes.join(","));
    cloister_http::shutdown_signal().await;
    let left = agent.drain().await;
    if left > 0 {
        tracing::warn!(left, "connections still open at the drain limit");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    cloister_http::no_core_dumps();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Preflight { platform, kvm } => {
            let report = preflight::check(platform, &kvm)?;
            println!("{report:?}");
            Ok(())
        }
        Command::Serve(s) => serve(*s).await,
    }
}
