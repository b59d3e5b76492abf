//! `cloister-gateway`: the operator's OHTTP gateway in front of its nodes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use cloister_gateway::gateway::{Gateway, GatewayConfig, LogTiles, serve_until};
use cloister_gateway::logkeys;
use cloister_gateway::nodes::{Connector as NodeConnector, NodeAddress};
use cloister_gateway::redeem::AcceptedKey;
use cloister_gateway::spent::SpentStore;
use cloister_http::{Upstream, shutdown_signal};
use cloister_protocol::LogProof;
use cloister_protocol::access::{NodeId, decode_token_key};
use privacypass::TokenType;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::PublicKey;
use zeroize::Zeroizing;

#[derive(Parser)]
#[command(about = "Cloister gateway: outer OHTTP, Privacy Pass redemption, forwarding to nodes")]
struct Cli {
    /// Address to listen on (port 0: any free port; the READY line names it).
    #[arg(
        long,
        env = "CLOISTER_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8701"
    )]
    listen: String,
    /// A node, `ID=ADDRESS` with ADDRESS `vsock://CID:PORT`, `vhost-user:UDS:PORT`,
    /// `unix:PATH` or `tcp://HOST:PORT` (a host agent's; needs the host TLS) (repeatable).
    #[arg(
        long = "node",
        env = "CLOISTER_GATEWAY_NODES",
        value_delimiter = ',',
        required_unless_present = "registry"
    )]
    nodes: Vec<String>,
    /// The fleet's registry (`redis://HOST:PORT[/DB]`): the nodes host agents register join
    /// the `--node`s, and leave when their registration expires.
    #[arg(long, env = "CLOISTER_GATEWAY_REGISTRY")]
    registry: Option<String>,
    /// The most nodes one directory fetch is answered with: a fleet with more answers each
    /// fetch with a fresh random sample of this many (or of the device's own sample size, if
    /// smaller).
    #[arg(long, env = "CLOISTER_GATEWAY_DIRECTORY_MAX", default_value_t = cloister_gateway::directory::DEFAULT_DIRECTORY_MAX)]
    directory_max: usize,
    /// How often the registry is read, seconds (a change refreshes the directory at once).
    #[arg(long, env = "CLOISTER_GATEWAY_REGISTRY_INTERVAL", default_value_t = 5)]
    registry_interval: u64,
    /// This gateway's client certificate chain (PEM) for its hosts' TLS (`tcp://` nodes).
    #[arg(
        long,
        env = "CLOISTER_GATEWAY_HOST_TLS_CERT",
        requires_all = ["host_tls_key", "host_ca"]
    )]
    host_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--host-tls-cert`.
    #[arg(
        long,
        env = "CLOISTER_GATEWAY_HOST_TLS_KEY",
        requires = "host_tls_cert"
    )]
    host_tls_key: Option<PathBuf>,
    /// The CA (PEM) that issues the host agents' certificates: a host whose certificate it did
    /// not issue for the name in the node's address is not a node of this fleet.
    #[arg(long, env = "CLOISTER_GATEWAY_HOST_CA", requires = "host_tls_cert")]
    host_ca: Option<PathBuf>,
    /// A transparency-log proof (`log-proof.json` from `cargo xtask publish`) to attach to the
    /// evidence of nodes running that release (repeatable).
    #[arg(
        long = "log-proof",
        env = "CLOISTER_GATEWAY_LOG_PROOFS",
        value_delimiter = ','
    )]
    log_proofs: Vec<PathBuf>,
    /// The transparency log (`http://HOST:PORT`), whose hash tiles devices fetch through the
    /// gateway.
    #[arg(long, env = "CLOISTER_GATEWAY_LOG_URL", conflicts_with = "log_dir")]
    log_url: Option<Upstream>,
    /// A copy of the transparency log's static files (C2SP tlog-tiles layout, e.g. synced from
    /// the log's server), whose hash tiles devices fetch through the gateway.
    #[arg(long, env = "CLOISTER_GATEWAY_LOG_DIR")]
    log_dir: Option<PathBuf>,
    /// A file holding the 32-byte secret (hex) the outer OHTTP key is derived from, created
    /// (owner-only) when missing. Devices that check the log seal only to a key configuration
    /// published there (`cloister-gateway-key/v1`); its bytes are what `GET /ohttp-keys`
    /// lists, also printed at start. Without it the key is fresh at every start.
    /// Give it again for each key during a rotation: every key opens requests, the first is
    /// listed first until the registry (`cloister:outer-key:current`) names another.
    #[arg(long, env = "CLOISTER_GATEWAY_OUTER_KEY_SEED", value_delimiter = ',')]
    outer_key_seed: Vec<PathBuf>,
    /// The issuer's name in the token challenge.
    #[arg(
        long,
        env = "CLOISTER_GATEWAY_ISSUER_NAME",
        default_value = "cloister-issuer"
    )]
    issuer_name: String,
    /// This gateway's origin name in the token challenge.
    #[arg(
        long,
        env = "CLOISTER_GATEWAY_ORIGIN",
        default_value = "cloister-gateway"
    )]
    origin: String,
    /// An accepted issuer public key (SPKI, base64url, as `cloister-issuer init` prints it),
    /// or a file holding one (repeatable).
    #[arg(
        long = "issuer-key",
        env = "CLOISTER_GATEWAY_ISSUER_KEYS",
        value_delimiter = ',',
        required = true
    )]
    issuer_keys: Vec<String>,
    /// Spent tokens: a redb file path, or `redis://HOST:PORT[/DB]` for a fleet of gateways.
    #[arg(
        long,
        env = "CLOISTER_GATEWAY_SPENT_STORE",
        default_value = "cloister-spent.redb"
    )]
    spent_store: String,
    /// Deadline of one exchange with a node, seconds.
    #[arg(long, env = "CLOISTER_GATEWAY_NODE_TIMEOUT", default_value_t = 300)]
    node_timeout: u64,
    /// Largest request or answer body, bytes.
    #[arg(long, env = "CLOISTER_GATEWAY_MAX_BODY", default_value_t = 1 << 20)]
    max_body: usize,
    /// Requests in flight at once (503 beyond).
    #[arg(long, env = "CLOISTER_GATEWAY_MAX_IN_FLIGHT", default_value_t = 512)]
    max_in_flight: usize,
    /// How often node evidence is fetched again, seconds.
    #[arg(long, env = "CLOISTER_GATEWAY_REFRESH", default_value_t = 60)]
    refresh: u64,
    /// Deadline of one evidence fetch, seconds (every node is asked at once; a node that has
    /// not answered by then is left out of this refresh).
    #[arg(long, env = "CLOISTER_GATEWAY_EVIDENCE_TIMEOUT", default_value_t = 30)]
    evidence_timeout: u64,
    /// Time a request's whole body may take to arrive, seconds.
    #[arg(long, env = "CLOISTER_GATEWAY_BODY_DEADLINE", default_value_t = 10)]
    body_deadline: u64,
    /// Slowest average rate a request body may arrive at after its first two seconds, bytes
    /// a second.
    #[arg(long, env = "CLOISTER_GATEWAY_BODY_MIN_RATE", default_value_t = 4096)]
    body_min_rate: u64,
    /// An AMD CRL (DER, as `/vcek/v1/{product}/crl` of AMD's key service serves it) to staple
    /// to the SNP evidence of that product's nodes; repeatable, one per product; read again at
    /// every refresh. Devices refuse hardware SNP evidence without its CRL.
    #[arg(
        long = "snp-crl",
        env = "CLOISTER_GATEWAY_SNP_CRLS",
        value_delimiter = ','
    )]
    snp_crls: Vec<std::path::PathBuf>,
}

fn issuer_key(arg: &str) -> Result<PublicKey> {
    let text = match std::fs::read_to_string(arg) {
        Ok(t) => t,
        Err(_) => arg.to_owned(),
    };
    let spki = decode_token_key(&text)
        .with_context(|| format!("issuer key {arg:?} is neither a file nor base64url"))?;
    PublicKey::from_spki(&spki).map_err(|e| anyhow::anyhow!("issuer key {arg:?}: {e}"))
}

/// The seed in `path` (hex), made and written owner-only when the file does not exist.
fn outer_seed(path: &std::path::Path) -> Result<Zeroizing<[u8; 32]>> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut seed = Zeroizing::new([0u8; 32]);
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            hex::decode_to_slice(text.trim(), &mut seed[..])
                .with_context(|| format!("{} is not a 32-byte hex secret", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            getrandom::fill(&mut seed[..]).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating {}", path.display()))?;
            f.write_all(Zeroizing::new(hex::encode(&seed[..])).as_bytes())?;
            f.sync_all()?;
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    Ok(seed)
}

async fn config(cli: Cli) -> Result<GatewayConfig> {
    let mut nodes = BTreeMap::new();
    for n in &cli.nodes {
        let (id, address) = n
            .split_once('=')
            .with_context(|| format!("--node {n:?} is not ID=ADDRESS"))?;
        let id = NodeId::new(id)?;
        let address: NodeAddress = address.parse()?;
        if nodes.insert(id.clone(), address).is_some() {
            bail!("node id {id} is given twice");
        }
    }
    let mut log_proofs = Vec::new();
    for p in &cli.log_proofs {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        log_proofs.push(LogProof::from_json(&bytes).with_context(|| format!("{}", p.display()))?);
    }
    let keys = cli
        .issuer_keys
        .iter()
        .map(|k| issuer_key(k))
        .collect::<Result<Vec<_>>>()?;
    let log = match (cli.log_url, cli.log_dir) {
        (Some(u), _) => Some(LogTiles::Upstream(u)),
        (None, Some(d)) => Some(LogTiles::Directory(d)),
        (None, None) => None,
    };
    let node_timeout = Duration::from_secs(cli.node_timeout);
    // Each key's tokens are accepted, and their nonces kept, until its logged epoch ends.
    let issuer_keys = match &log {
        Some(log) => {
            let entries = logkeys::entries(log, node_timeout).await?;
            logkeys::resolve(&entries, &cli.issuer_name, &keys, cloister_http::now_unix())?
        }
        None => {
            tracing::warn!(
                "no log configured: issuer keys are accepted without an epoch and spent tokens \
                 kept forever; devices that check issuer keys against the log refuse them"
            );
            keys.into_iter().map(AcceptedKey::unlogged).collect()
        }
    };
    let connector = match (&cli.host_tls_cert, &cli.host_tls_key, &cli.host_ca) {
        (Some(cert), Some(key), Some(ca)) => {
            NodeConnector::with_host_tls(cloister_http::tls::mutual_connector(cert, key, ca)?)
        }
        _ => NodeConnector::local(),
    };
    if !connector.has_host_tls()
        && let Some(id) = nodes
            .iter()
            .find_map(|(id, a)| matches!(a, NodeAddress::Tcp { .. }).then_some(id))
    {
        bail!("node {id} is a tcp:// node: give --host-tls-cert, --host-tls-key and --host-ca");
    }
    let registry = match &cli.registry {
        Some(url) => Some(cloister_registry::Registry::connect(url)?),
        None => None,
    };
    let spent = if cli.spent_store.starts_with("redis://") {
        SpentStore::redis(&cli.spent_store)?
    } else {
        SpentStore::open_redb(cli.spent_store.as_ref())?
    };
    Ok(GatewayConfig {
        nodes,
        registry,
        registry_interval: Duration::from_secs(cli.registry_interval.max(1)),
        directory_max: cli.directory_max.max(1),
        connector,
        log_proofs,
        log,
        challenge: TokenChallenge::new(TokenType::Public, &cli.issuer_name, None, &[cli.origin]),
        issuer_keys,
        spent,
        node_timeout,
        max_body: cli.max_body,
        max_in_flight: cli.max_in_flight,
        refresh: Duration::from_secs(cli.refresh.max(1)),
        evidence_timeout: Duration::from_secs(cli.evidence_timeout.max(1)),
        body_pace: cloister_http::BodyPace {
            deadline: Duration::from_secs(cli.body_deadline.max(1)),
            min_rate: cli.body_min_rate,
            ..cloister_http::BodyPace::default()
        },
        snp_crls: cli.snp_crls.clone(),
        outer_seeds: cli
            .outer_key_seed
            .iter()
            .map(|p| outer_seed(p))
            .collect::<Result<_>>()?,
    })
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
    let cli = Cli::parse();
    let listen = cli.listen.clone();
    let gw = Gateway::new(config(cli).await?)?;
    for config in ohttp::KeyConfig::decode_list(&gw.key_configs()).unwrap_or_default() {
        tracing::info!(key_config = %hex::encode(config.encode().unwrap_or_default()), "outer key");
    }
    gw.follow_registry_key().await;
    let listed = gw.refresh().await;
    tracing::info!(nodes = listed, "directory ready");
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!("READY http://{} nodes={listed}", listener.local_addr()?);
    tokio::spawn(gw.clone().refresh_forever());
    // On Ctrl-C or SIGTERM: stop accepting, let requests in flight finish (up to 30 s).
    serve_until(gw, listener, shutdown_signal(), Duration::from_secs(30)).await?;
    Ok(())
}
