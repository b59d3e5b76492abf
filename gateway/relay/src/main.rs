//! `cloister-relay`: the third party's OHTTP relay in front of an operator's Cloister gateways.

use std::time::Duration;

use clap::Parser;
use cloister_http::BodyPace;
use cloister_http::shutdown_signal;
use cloister_relay::{RelayConfig, Upstream, serve_tls_until, serve_until};

#[derive(Parser)]
#[command(
    about = "An OHTTP relay: forwards message/ohttp-req to the operator's gateways, adds nothing"
)]
struct Cli {
    /// A gateway's OHTTP resource, `http://HOST:PORT/PATH` (repeatable: the operator's
    /// gateways, which share one outer key set, take turns; one that cannot be reached is
    /// passed over).
    #[arg(
        long = "gateway",
        env = "CLOISTER_RELAY_GATEWAYS",
        value_delimiter = ',',
        required = true
    )]
    gateways: Vec<Upstream>,
    /// Address to listen on (port 0: any free port; the READY line names it).
    #[arg(long, env = "CLOISTER_RELAY_LISTEN", default_value = "127.0.0.1:8700")]
    listen: String,
    /// Largest request or response body, bytes.
    #[arg(long, env = "CLOISTER_RELAY_MAX_BODY", default_value_t = 1 << 20)]
    max_body: usize,
    /// Deadline of one exchange with the gateway, seconds. Longer than the gateway's own
    /// deadline for a node (300 s by default), so that an answer a node produced, and a token
    /// spent for it, is never dropped on the way back.
    #[arg(long, env = "CLOISTER_RELAY_TIMEOUT", default_value_t = 330)]
    timeout: u64,
    /// Requests in flight at once (503 beyond).
    #[arg(long, env = "CLOISTER_RELAY_MAX_IN_FLIGHT", default_value_t = 512)]
    max_in_flight: usize,
    /// Time a request's whole body may take to arrive, seconds.
    #[arg(long, env = "CLOISTER_RELAY_BODY_DEADLINE", default_value_t = 10)]
    body_deadline: u64,
    /// Slowest average rate a request body may arrive at after its first two seconds, bytes
    /// a second.
    #[arg(long, env = "CLOISTER_RELAY_BODY_MIN_RATE", default_value_t = 4096)]
    body_min_rate: u64,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key. Without it
    /// the relay speaks plain HTTP (behind a TLS terminator).
    #[arg(long, env = "CLOISTER_RELAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "CLOISTER_RELAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cloister_http::no_core_dumps();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(cloister_http::tls::acceptor(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("READY {scheme}://{}", listener.local_addr()?);
    tracing::info!("relay listening");
    let config = RelayConfig {
        upstreams: cli.gateways,
        max_body: cli.max_body,
        timeout: Duration::from_secs(cli.timeout),
        max_in_flight: cli.max_in_flight,
        body_pace: BodyPace {
            deadline: Duration::from_secs(cli.body_deadline.max(1)),
            min_rate: cli.body_min_rate,
            ..BodyPace::default()
        },
    };
    // On Ctrl-C or SIGTERM: stop accepting, let requests in flight finish (up to 30 s).
    let drain = Duration::from_secs(30);
    match tls {
        Some(tls) => serve_tls_until(config, listener, tls, shutdown_signal(), drain).await?,
        None => serve_until(config, listener, shutdown_signal(), drain).await?,
    }
    Ok(())
}
