//! The operator's gateway: serves its outer key configuration, opens the outer OHTTP layer,
//! answers the node directory, redeems a Privacy Pass token exactly once, and forwards the
//! still-encrypted inner message to the node the device chose. It holds no key for the inner
//! layer: what the device asks the node stays between the device and the node.
//!
//! Plaintext answers only before the outer layer is open (wrong media type, oversize, stale
//! key id, overload); everything after is encapsulated to the device, so the relay learns
//! nothing from a refusal. Logs carry the route, status and milliseconds — no address, no token,
//! no node choice.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bhttp::Message;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, header::CONTENT_TYPE};
use privacypass::auth::authenticate::TokenChallenge;
use tokio::sync::Semaphore;

use cloister_protocol::access::{
    GATEWAY_PATH, HEALTH_PATH, LOG_TILE_PREFIX, NodeId, OHTTP_KEYS_MEDIA, OHTTP_KEYS_PATH,
    OHTTP_REQ_MEDIA, OHTTP_RES_MEDIA, parse_node_ohttp_path, parse_nodes_path,
};
use cloister_protocol::{EvidenceBundle, LogProof, media, node};

use crate::fleet::NodeSet;
use crate::nodes::{NodeAddress, NodeError};
use crate::outer::{Answer, OuterKey, OuterKeys, header, request_parts};
use crate::redeem::{AcceptedKey, Redeemer, TokenRefusal};
use crate::spent::SpentStore;
use cloister_http::{Options, Upstream, exchange_tcp, overloaded, problem, reply};

pub use cloister_http::now_unix;

/// The gateway's settings.
#[derive(Debug)]
pub struct GatewayConfig {
    /// The nodes its flags name, by id.
    pub nodes: BTreeMap<NodeId, NodeAddress>,
    /// The fleet's registry, whose nodes join the flags' (read at every `registry_interval`).
    pub registry: Option<cloister_registry::Registry>,
    /// How often the registry is read (a change refreshes the directory at once).
    pub registry_interval: Duration,
    /// How nodes are reached (`tcp://` nodes need the host TLS).
    pub connector: crate::nodes::Connector,
    /// The most nodes one directory fetch gets (a sample of them when there are more).
    pub directory_max: usize,
    /// Log proofs to attach: each bundle gets the proof whose release names its manifest.
    pub log_proofs: Vec<LogProof>,
    /// Where the transparency log's hash tiles come from, for devices to fetch through the
    /// gateway.
    pub log: Option<LogTiles>,
    /// The token challenge redeemed here.
    pub challenge: TokenChallenge,
    /// The issuer keys whose tokens are accepted, each until its epoch ends.
    pub issuer_keys: Vec<AcceptedKey>,
    /// Where spent tokens are kept.
    pub spent: SpentStore,
    /// Deadline of one exchange with a node.
    pub node_timeout: Duration,
    /// Largest request or answer body.
    pub max_body: usize,
    /// Requests in flight at once (503 beyond).
    pub max_in_flight: usize,
    /// How often node evidence is fetched again.
    pub refresh: Duration,
    /// Deadline of one evidence fetch (all nodes are asked at once, so this bounds a whole
    /// refresh).
    pub evidence_timeout: Duration,
    /// How fast a device's request body must arrive (read before a slot is taken).
    pub body_pace: cloister_http::BodyPace,
    /// AMD CRL files (one per product) stapled to SNP evidence; read at every refresh.
    pub snp_crls: Vec<std::path::PathBuf>,
    /// The secrets the outer keys are derived from (keys their operator has logged), the
    /// first current until the registry names another; none: a fresh key, which devices that
    /// check the log refuse.
    pub outer_seeds: Vec<zeroize::Zeroizing<[u8; 32]>>,
}

/// Where the gateway reads the log's hash tiles (self-verifying: either may be untrusted).
#[derive(Debug, Clone)]
pub enum LogTiles {
    /// The log's server (`http://HOST:PORT[/PREFIX]`), asked for `/tile/…`.
    Upstream(Upstream),
    /// A copy of the log's static files (C2SP tlog-tiles layout) on this machine.
    Directory(std::path::PathBuf),
}

/// A running gateway's state.
pub struct Gateway {
    key: OuterKeys,
    config: GatewayConfig,
    redeemer: Redeemer,
    challenge_b64: String,
    /// The verified nodes' entries of the last refresh; each fetch gets a sample of them.
    directory: RwLock<Arc<Vec<cloister_protocol::access::NodeEntry>>>,
    nodes: NodeSet,
    permits: Semaphore,
    /// When a node's 400 or 422 (it could not open a request) last made the gateway refresh
    /// the directory; held while that refresh runs, so that a directory read waits for it.
    key_refreshed: Arc<tokio::sync::Mutex<Option<Instant>>>,
}

/// The least time between two directory refreshes that nodes' 400 and 422 answers trigger
/// (the scheduled refresh runs regardless): a device cannot make the gateway hammer its nodes
/// for evidence.
const KEY_REFRESH_SPACING: Duration = Duration::from_secs(10);

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("key", &self.key)
            .field("nodes", &self.nodes.current().len())
            .finish_non_exhaustive()
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The outer key.
    #[error(transparent)]
    Key(#[from] crate::outer::OuterError),
    /// The challenge or an issuer key could not be encoded.
    #[error("token configuration: {0}")]
    Tokens(String),
}

impl Gateway {
    /// A gateway with a fresh outer key (id from the OS random source).
    pub fn new(config: GatewayConfig) -> Result<Arc<Self>, GatewayError> {
        let keys = if config.outer_seeds.is_empty() {
            let mut id = [0u8; 1];
            getrandom::fill(&mut id).map_err(|e| GatewayError::Tokens(e.to_string()))?;
            vec![OuterKey::generate(id[0])?]
        } else {
            config
                .outer_seeds
                .iter()
                .map(|s| OuterKey::from_seed(s))
                .collect::<Result<_, _>>()?
        };
        let key = OuterKeys::new(keys)?;
        let challenge_b64 = config
            .challenge
            .to_base64()
            .map_err(|e| GatewayError::Tokens(e.to_string()))?;
        let redeemer = Redeemer::new(&config.challenge, &config.issuer_keys, config.spent.clone())
            .map_err(GatewayError::Tokens)?;
        let permits = Semaphore::new(config.max_in_flight);
        let nodes = NodeSet::new(
            config.nodes.clone(),
            config.registry.clone(),
            config.connector.clone(),
        );
        let gw = Arc::new(Gateway {
            key,
            nodes,
            config,
            redeemer,
            challenge_b64,
            directory: RwLock::new(Arc::new(Vec::new())),
            permits,
            key_refreshed: Arc::new(tokio::sync::Mutex::new(None)),
        });
        gw.set_directory(Vec::new());
        Ok(gw)
    }

    /// The outer key configuration list: the current key first.
    pub fn key_configs(&self) -> Vec<u8> {
        self.key.encoded_list().as_ref().clone()
    }

    /// Makes the outer key the registry names current (every gateway of the fleet reads the
    /// same name, so they switch together). Called at start and every registry interval.
    pub async fn follow_registry_key(&self) {
        let Some(registry) = &self.config.registry else {
            return;
        };
        match registry.current_outer_key().await {
            Ok(Some(id)) if id != self.key.current() => match self.key.set_current(id) {
                Ok(()) => tracing::info!(key_id = id, "outer key switched, as the registry says"),
                Err(_) => tracing::warn!(
                    key_id = id,
                    held = ?self.key.ids(),
                    "the registry names an outer key this gateway does not hold"
                ),
            },
            Ok(_) => {}
            Err(why) => tracing::warn!(%why, "registry unreadable: the outer key stays"),
        }
    }

    fn set_directory(&self, nodes: Vec<cloister_protocol::access::NodeEntry>) {
        if let Ok(mut slot) = self.directory.write() {
            *slot = Arc::new(nodes);
        }
    }

    /// A directory of `k` nodes drawn at random (capped at `directory_max`; `None`: the cap).
    fn directory_sample(&self, k: Option<usize>) -> Answer {
        let entries = self
            .directory
            .read()
            .map(|d| Arc::clone(&d))
            .unwrap_or_default();
        let k = k.unwrap_or(usize::MAX).min(self.config.directory_max);
        match crate::directory::sample(&entries, k) {
            Ok(nodes) => Answer {
                status: 200,
                content_type: media::JSON.into(),
                body: cloister_protocol::access::NodeDirectory {
                    version: cloister_protocol::access::DIRECTORY_VERSION,
                    token_challenge: self.challenge_b64.clone(),
                    nodes,
                }
                .to_json(),
            },
            Err(e) => Answer::problem(500, "random-source", &e.to_string()),
        }
    }

    /// Fetches every node's evidence — all nodes at once, each within `evidence_timeout`, so
    /// a refresh takes at most that long whatever the nodes do — attaches its log proof, and
    /// publishes the directory. A node that does not answer in time, or answers no valid
    /// bundle, is left out (and logged by id).
    pub async fn refresh(&self) -> usize {
        self.refresh_listed(self.nodes.listed().await).await
    }

    /// [`Gateway::refresh`] of the nodes `listed` (the flags' and the registry's, just read).
    async fn refresh_listed(&self, listed: crate::fleet::Nodes) -> usize {
        let mut asked = tokio::task::JoinSet::new();
        for (id, address) in &listed {
            let (id, address) = (id.clone(), address.clone());
            let via = self.nodes.connector().clone();
            let (timeout, max_body) = (self.config.evidence_timeout, self.config.max_body);
            asked.spawn(async move {
                let fetched = fetch_evidence(&via, &address, timeout, max_body).await;
                (id, fetched)
            });
        }
        let mut fetched = BTreeMap::new();
        while let Some(done) = asked.join_next().await {
            if let Ok((id, result)) = done {
                fetched.insert(id, result);
            }
        }
        let crls = crate::crl::load(&self.config.snp_crls);
        let mut entries = Vec::new();
        for (id, result) in fetched {
            let stapled = result.map(|mut bundle| {
                crate::crl::staple(&mut bundle, &crls);
                bundle
            });
            match stapled.map(|bundle| self.with_log_proof(bundle)) {
                Ok(bundle) => entries.push(cloister_protocol::access::NodeEntry {
                    id,
                    evidence: serde_json::from_slice(&bundle.to_json())
                        .unwrap_or(serde_json::Value::Null),
                }),
                Err(why) => tracing::warn!(node = %id, %why, "node left out of the directory"),
            }
        }
        let n = entries.len();
        // Requests go to the nodes listed now: a node that left is refused from here on, a
        // new one is reachable as its evidence is published.
        self.nodes.set(listed);
        self.set_directory(entries);
        n
    }

    fn with_log_proof(&self, mut bundle: EvidenceBundle) -> EvidenceBundle {
        let manifest = hex::encode(bundle.image_manifest_digest);
        bundle.log_proof = self
            .config
            .log_proofs
            .iter()
            .find(|p| {
                cloister_transparency::ReleaseRecord::from_bytes(&p.entry)
                    .is_ok_and(|r| r.manifest_sha256 == manifest)
            })
            .cloned();
        bundle
    }

    /// A node could not open a request sealed to a key from the directory: it restarted, or
    /// the key was rotated away and revoked, and the directory the device used may be stale.
    /// Fetch it again now rather than at the next interval, at most once per
    /// [`KEY_REFRESH_SPACING`] (answers arriving together share one refresh) — in the
    /// background: the device's answer does not wait for it, but its next directory read does
    /// (the refresh holds the lock from before the answer leaves; it is bounded by
    /// `evidence_timeout`).
    fn refresh_after_stale_key(self: &Arc<Self>) {
        let Ok(mut last) = Arc::clone(&self.key_refreshed).try_lock_owned() else {
            // A refresh is running: this answer shares it.
            return;
        };
        if last.is_some_and(|t| t.elapsed() < KEY_REFRESH_SPACING) {
            return;
        }
        let gw = Arc::clone(self);
        tokio::spawn(async move {
            let n = gw.refresh().await;
            tracing::info!(
                nodes = n,
                "directory refreshed: a node could not open a request sealed to a key it listed"
            );
            *last = Some(Instant::now());
        });
    }

    /// Refreshes the directory every `refresh` until the task is dropped; with a registry,
    /// also every `registry_interval` in which the registry's node set changed (a host came or
    /// went).
    pub async fn refresh_forever(self: Arc<Self>) {
        let mut last = Instant::now();
        loop {
            let wait = if self.nodes.has_registry() {
                self.config.registry_interval.min(self.config.refresh)
            } else {
                self.config.refresh
            };
            tokio::time::sleep(wait).await;
            self.follow_registry_key().await;
            let listed = self.nodes.listed().await;
            let due = last.elapsed() >= self.config.refresh;
            if due || listed != *self.nodes.current() {
                let n = self.refresh_listed(listed).await;
                tracing::info!(nodes = n, "directory refreshed");
                last = Instant::now();
            }
        }
    }
}

/// One node's evidence bundle, within `timeout`.
async fn fetch_evidence(
    via: &crate::nodes::Connector,
    address: &NodeAddress,
    timeout: Duration,
    max_body: usize,
) -> Result<EvidenceBundle, String> {
    let r = address
        .exchange(via, "GET", node::EVIDENCE_PATH, None, timeout, max_body)
        .await
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("evidence answered {}", r.status));
    }
    EvidenceBundle::from_json(&r.body).map_err(|e| e.to_string())
}

/// Serves the gateway on `listener` until the task is dropped.
pub async fn serve(gw: Arc<Gateway>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(gw, listener, std::future::pending(), Duration::ZERO).await
}

/// Serves the gateway until `shutdown`, then lets requests in flight finish for up to `drain`.
pub async fn serve_until(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let handler = move |req| {
        let gw = gw.clone();
        async move { handle(&gw, req).await }
    };
    cloister_http::serve(listener, handler, Options::default(), shutdown, drain).await
}

type Reply = hyper::Response<http_body_util::Full<Bytes>>;

async fn handle(gw: &Arc<Gateway>, req: hyper::Request<Incoming>) -> Reply {
    let started = Instant::now();
    let (route, reply) = match (req.method(), req.uri().path()) {
        (&Method::GET, HEALTH_PATH) => ("health", reply(200, media::TEXT, &b"ok\n"[..])),
        (&Method::GET, OHTTP_KEYS_PATH) => ("keys", reply(200, OHTTP_KEYS_MEDIA, gw.key_configs())),
        (&Method::POST, GATEWAY_PATH) => gateway(gw, req).await,
        _ => ("other", problem(404, "not-found", "no such route")),
    };
    tracing::info!(
        route,
        status = reply.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "gateway"
    );
    reply
}

async fn gateway(gw: &Arc<Gateway>, req: hyper::Request<Incoming>) -> (&'static str, Reply) {
    let typed = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(OHTTP_REQ_MEDIA));
    if !typed {
        let r = problem(415, "unsupported-media-type", "expected message/ohttp-req");
        return ("ohttp", r);
    }
    // The body is read before a slot is taken, under a deadline and a minimum rate: a slow
    // device holds its connection (bounded, and ended within the pace's deadline), never a
    // slot that forwarding needs.
    let body = match cloister_http::read_body_paced(
        req.into_body(),
        gw.config.max_body,
        gw.config.body_pace,
    )
    .await
    {
        Ok(b) => b,
        Err(e) => return ("ohttp", e.problem()),
    };
    let Ok(_permit) = gw.permits.try_acquire() else {
        return ("ohttp", overloaded());
    };
    let (message, ctx) = match gw.key.open(&body) {
        Ok(opened) => opened,
        Err(e) => {
            let (status, kind) = e.status_kind();
            return ("ohttp", problem(status, kind, &e.to_string()));
        }
    };
    let (route, answer) = match message {
        Some(m) => route(gw, &m).await,
        None => (
            "ohttp",
            Answer::problem(400, "bhttp-malformed", "not a Binary HTTP request"),
        ),
    };
    match answer.seal(ctx) {
        Ok(sealed) => (route, reply(200, OHTTP_RES_MEDIA, sealed)),
        Err(e) => (route, problem(500, "ohttp-encapsulation", &e.to_string())),
    }
}

async fn route(gw: &Arc<Gateway>, m: &Message) -> (&'static str, Answer) {
    let (method, path) = request_parts(m);
    if method == "GET"
        && let Some(sample) = parse_nodes_path(&path)
    {
        // A refresh after a stale key is running: the directory it makes is the one to give.
        drop(gw.key_refreshed.lock().await);
        let answer = match sample {
            Ok(k) => gw.directory_sample(k),
            Err(e) => Answer::problem(400, "directory-sample-invalid", &e.to_string()),
        };
        return ("directory", answer);
    }
    if method == "GET" && path.starts_with(LOG_TILE_PREFIX) {
        return ("log-tile", log_tile(gw, &path).await);
    }
    if method == "POST"
        && let Some(id) = parse_node_ohttp_path(&path)
    {
        return ("forward", forward(gw, m, id).await);
    }
    ("other", Answer::problem(404, "not-found", "no such route"))
}

/// Proxies one hash tile or entry bundle of the log (self-verifying: the device authenticates
/// every tile against a checkpoint it verified, and every entry against the tiles). Only
/// canonical C2SP paths go to the log.
async fn log_tile(gw: &Gateway, path: &str) -> Answer {
    let Some(log) = &gw.config.log else {
        return Answer::problem(404, "log-unavailable", "this gateway has no log configured");
    };
    let c2sp = path.trim_start_matches("/v1/log/");
    let Some(tile) = cloister_transparency::tile_path(c2sp) else {
        return Answer::problem(
            404,
            "not-found",
            "expected a C2SP tile or entry-bundle path",
        );
    };
    let log = match log {
        LogTiles::Upstream(u) => u,
        LogTiles::Directory(dir) => {
            // `tile` is canonical (digits, `x`, `/`, `.p`): it cannot leave the directory.
            return match tokio::fs::read(dir.join(&tile)).await {
                Ok(bytes) => Answer {
                    status: 200,
                    content_type: media::OCTET_STREAM.into(),
                    body: bytes,
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Answer::problem(404, "not-found", "no such tile")
                }
                Err(_) => Answer::problem(502, "log-unavailable", "the log's copy is unreadable"),
            };
        }
    };
    let path = format!("{}/{tile}", log.path.trim_end_matches('/'));
    match exchange_tcp(
        &log.authority,
        Method::GET,
        &path,
        None,
        Bytes::new(),
        gw.config.node_timeout,
        1 << 20,
    )
    .await
    {
        Ok(a) if a.status == 200 => Answer {
            status: 200,
            content_type: media::OCTET_STREAM.into(),
            body: a.body.to_vec(),
        },
        Ok(a) => Answer::problem(502, "log-failed", &format!("the log answered {}", a.status)),
        Err(why) => Answer::problem(502, "log-unavailable", &format!("the log {why}")),
    }
}

async fn forward(
    gw: &Arc<Gateway>,
    m: &Message,
    id: Result<NodeId, cloister_protocol::BundleError>,
) -> Answer {
    let content_ok = header(m, "content-type")
        .is_some_and(|v| v.eq_ignore_ascii_case(OHTTP_REQ_MEDIA.as_bytes()));
    if !content_ok {
        return Answer::problem(415, "unsupported-media-type", "expected message/ohttp-req");
    }
    // The token is spent before the node is known to exist: a device that names a missing node
    // learns nothing for free.
    let nonce = match gw.redeemer.redeem(header(m, "authorization")).await {
        Ok(nonce) => nonce,
        Err(refusal) => {
            let (status, kind) = refusal.status_kind();
            return Answer::problem(status, kind, &refusal.to_string());
        }
    };
    let Ok(id) = id else {
        return Answer::problem(404, "node-unknown", "no node has this id");
    };
    let Some(address) = gw.nodes.get(&id) else {
        if gw.nodes.departed(&id) {
            // It was in a directory a device may still hold: no work was done.
            gw.redeemer.refund(&nonce).await;
            return Answer::problem(
                503,
                "node-departed",
                "this node has left; fetch the directory again",
            );
        }
        return Answer::problem(404, "node-unknown", "no node has this id");
    };
    let reply = address
        .exchange(
            gw.nodes.connector(),
            "POST",
            node::OHTTP_PATH,
            Some(m.content().to_vec()),
            gw.config.node_timeout,
            gw.config.max_body,
        )
        .await;
    match reply {
        Ok(r) => {
            match r.status {
                // The runtime sheds with 503 before it opens the request: no work was done.
                503 => gw.redeemer.refund(&nonce).await,
                // The node holds no key with this id (the runtime answers 422
                // `ohttp-unknown-key-id` for nothing else): it opened nothing, and the
                // directory the device trusted is stale.
                422 => {
                    gw.redeemer.refund(&nonce).await;
                    gw.refresh_after_stale_key();
                }
                // It could not open the request: tampered — or sealed to a key that a restarted
                // node's new key now shares the id of (one restart in 255). The token stays
                // spent (a tampering device pays), but the directory may be stale too.
                400 => gw.refresh_after_stale_key(),
                _ => {}
            }
            Answer {
                status: r.status,
                content_type: r.content_type,
                body: r.body,
            }
        }
        Err(e @ NodeError::Timeout(_)) => Answer::problem(504, "node-timeout", &e.to_string()),
        Err(
            e @ (NodeError::Connect(_)
            | NodeError::Handshake { .. }
            | NodeError::Tls(_)
            | NodeError::NoHostTls),
        ) => {
            gw.redeemer.refund(&nonce).await;
            Answer::problem(502, "node-unreachable", &e.to_string())
        }
        Err(e) => Answer::problem(502, "node-failed", &e.to_string()),
    }
}

impl TokenRefusal {
    /// Status and problem kind.
    pub fn status_kind(&self) -> (u16, &'static str) {
        match self {
            TokenRefusal::Missing => (401, "token-missing"),
            TokenRefusal::Malformed => (401, "token-malformed"),
            TokenRefusal::WrongChallenge => (401, "token-wrong-challenge"),
            TokenRefusal::UnknownKey => (401, "token-unknown-key"),
            TokenRefusal::KeyExpired => (401, "token-key-expired"),
            TokenRefusal::Invalid => (401, "token-invalid"),
            TokenRefusal::Spent => (401, "token-spent"),
            TokenRefusal::StoreUnavailable(_) => (503, "spent-store-unavailable"),
        }
    }
}
