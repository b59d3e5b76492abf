//! The device's whole request, under one deadline:
//!
//! 1. the gateway's outer key configuration, from the relay (`GET /ohttp-keys`);
//! 2. the node directory, through relay and gateway (`GET /v1/nodes` inside the outer layer);
//! 3. every node's evidence verified; the log checkpoints they name checked against each other
//!    and against the one seen before (from every hash tile of the newest tree, through the
//!    gateway: nothing names the size seen before), and the seen checkpoint advanced — a
//!    rollback or a fork stops here;
//! 4. the directory checked whole (every node verified, no key twice, enough distinct
//!    machines) and a node chosen: a machine uniformly, then one of its nodes;
//! 5. one Privacy Pass token from the issuer, for the directory's challenge;
//! 6. the request sealed to the node's attested key, that sealed to the gateway's key with the
//!    token, posted to the relay; both answers opened.

use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cloister_measurement::{Clock as _, SystemClock};
use cloister_protocol::access::{
    GATEWAY_AUTHORITY, NodeDirectory, NodeId, OHTTP_KEYS_MEDIA, OHTTP_KEYS_PATH, OHTTP_REQ_MEDIA,
    OHTTP_RES_MEDIA, TOKEN_REQUEST_MEDIA, TOKEN_RESPONSE_MEDIA, node_ohttp_path, nodes_path,
    parse_problem,
};
use hyper::Method;
use zeroize::Zeroizing;

use crate::envelope::{self, Decoded};
use crate::error::{ClientError, Stage};
use crate::http::{self, BaseUrl, HttpRequest, HttpResponse, MAX_RESPONSE};
use crate::nodes::{self, NodeReport};
use crate::secret::{SecretBytes, SecretString};
use crate::tls::{Tls, TlsRoots};
use crate::token_file::SealedTokenFile;
use crate::trust::OperatorKeys;
use crate::trust::{self, Trust};
use crate::{choose, token_store, tokens};
use cloister_device_core::token_store::TokenStore;
use cloister_transparency::{
    TileSet, VerifiedCheckpoint, bundles_of, current_gateway_keys, current_keys, tiles_of,
};

/// The issuer and the account it knows this device by.
#[derive(Debug)]
pub struct IssuerAccount {
    /// The issuer.
    pub url: BaseUrl,
    /// The account's bearer token (sent to the issuer only).
    pub account_token: SecretString,
}

/// What a [`Client`] needs.
#[derive(Debug)]
pub struct ClientConfig {
    /// The OHTTP relay.
    pub relay: BaseUrl,
    /// The token issuer (needed to send; not to list nodes).
    pub issuer: Option<IssuerAccount>,
    /// The verifier and the seen-checkpoint store.
    pub trust: Trust,
    /// Deadline of one whole operation.
    pub deadline: Duration,
    /// The roots an `https://` relay's or issuer's certificate must chain to.
    pub tls_roots: TlsRoots,
}

/// A node's answer, opened.
#[derive(Debug)]
pub struct InnerResponse {
    /// The node that answered.
    pub node: NodeId,
    /// Its HTTP status.
    pub status: u16,
    /// Media type, lower-case, without parameters.
    pub content_type: Option<String>,
    /// The body (plaintext).
    pub body: SecretBytes,
    /// Where the time went.
    pub timings: Timings,
}

/// How long each part of one request took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    /// Outer key, directory, verification of every node, log consistency.
    pub session: Duration,
    /// The Privacy Pass token from the issuer.
    pub token: Duration,
    /// Sealing both layers, relay → gateway (redemption) → node → back, opening both layers.
    pub exchange: Duration,
}

impl InnerResponse {
    /// The problem kind and detail of an error answer (RFC 9457), if it is one.
    pub fn problem(&self) -> Option<(String, String)> {
        parse_problem(self.body.expose())
    }
}

/// The device side of Cloister.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    tls: Tls,
    /// Tokens fetched ahead, for the challenge each was made for (see [`TokenStore`]): in
    /// memory, and sealed on disk when a [`SealedTokenFile`] is given.
    tokens: std::sync::Mutex<TokenStore>,
    token_file: Option<SealedTokenFile>,
    batch: usize,
}

/// The stage an operation is in, readable when its deadline cuts it off.
#[derive(Default)]
struct Progress(AtomicU8);

impl Progress {
    fn set(&self, stage: Stage) {
        let i = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
        self.0.store(i as u8, Ordering::Relaxed);
    }

    fn get(&self) -> Stage {
        let i = usize::from(self.0.load(Ordering::Relaxed));
        Stage::ALL.get(i).copied().unwrap_or(Stage::OuterKey)
    }
}

/// The operator's keys found current in the log.
struct LoggedKeys {
    /// The issuer's token keys (SPKIs).
    issuer_spkis: Vec<Vec<u8>>,
    /// The gateway's key list, its logged configurations only.
    outer_keys: Vec<u8>,
}

/// The verified directory of one operation.
struct Session {
    outer_keys: Vec<u8>,
    directory: NodeDirectory,
    reports: Vec<NodeReport>,
    /// The newest log checkpoint the nodes named, and its tree's hash tiles.
    log: Option<(VerifiedCheckpoint, TileSet)>,
}

impl Client {
    /// A client (refused: TLS roots it cannot use).
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        Ok(Client {
            tls: Tls::new(&config.tls_roots)?,
            config,
            tokens: std::sync::Mutex::new(TokenStore::default()),
            token_file: None,
            batch: 1,
        })
    }

    /// When the store has no token for the challenge, fetches `batch` and keeps the spare
    /// ones, so that most redemptions follow no issuance of their own (the default, 1, fetches
    /// one per request unless the store was filled ahead, [`Client::fill_tokens`]).
    pub fn with_token_batch(mut self, batch: usize) -> Self {
        self.batch = batch.clamp(1, 64);
        self
    }

    /// Keeps the token store sealed in `file` (read before each request, written after each
    /// change), so that tokens fetched ahead outlive this process.
    pub fn with_token_file(mut self, file: SealedTokenFile) -> Self {
        self.token_file = Some(file);
        self
    }

    /// Whether the token store is kept in a sealed file.
    pub fn has_token_file(&self) -> bool {
        self.token_file.is_some()
    }

    /// Tokens held for later requests.
    pub fn reserved_tokens(&self) -> usize {
        match &self.token_file {
            Some(f) => f.load().map_or(0, |s| s.len()),
            None => self.tokens.lock().map_or(0, |r| r.len()),
        }
    }

    /// Fetches `count` tokens for the directory's current challenge, under the issuer's logged
    /// key, into the store (run at random times, `token_store::refill_delay`); returns the tokens held
    /// for that challenge afterwards.
    pub async fn fill_tokens(&self, count: usize) -> Result<usize, ClientError> {
        let progress = Progress::default();
        let run = async {
            let session = self.session(&progress).await?;
            progress.set(Stage::Token);
            let logged = self.logged_keys(&session).await?;
            let issuer_spkis = logged.as_ref().map(|l| l.issuer_spkis.as_slice());
            let challenge = &session.directory.token_challenge;
            let mut fresh = Vec::with_capacity(count);
            for _ in 0..count.min(token_store::MAX_TOKENS) {
                fresh.push(self.issue(challenge, issuer_spkis).await?);
            }
            self.update_store(|store| {
                for t in fresh {
                    store.add(challenge, t);
                }
                store.count(challenge)
            })
        };
        self.deadline(&progress, run).await
    }

    /// Applies `f` to the token store: the sealed file's when there is one (read, changed,
    /// written back), else the one in memory.
    fn update_store<T>(&self, f: impl FnOnce(&mut TokenStore) -> T) -> Result<T, ClientError> {
        let mut memory = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        match &self.token_file {
            Some(file) => {
                let mut store = file.load()?;
                let out = f(&mut store);
                file.save(&store)?;
                Ok(out)
            }
            None => Ok(f(&mut memory)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Fetches and verifies the node directory; advances the seen log checkpoint.
    pub async fn nodes(&self) -> Result<Vec<NodeReport>, ClientError> {
        let progress = Progress::default();
        let session = self.deadline(&progress, self.session(&progress)).await?;
        Ok(session.reports)
    }

    /// Sends `body` to `path` on a node chosen uniformly among the verified ones. When the
    /// gateway answers that no node received the request (the node's host is unreachable,
    /// restarting, or has left the fleet since the directory was read: [`NOT_DELIVERED`]), the
    /// token was refunded, and the request goes again — with a fresh directory — to a node
    /// chosen among the others, up to [`DELIVERY_ATTEMPTS`] times in all, within the one
    /// deadline.
    pub async fn send(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<InnerResponse, ClientError> {
        let progress = Progress::default();
        let run = async {
            let mut tried = Vec::new();
            loop {
                let sent = self
                    .send_inner(&progress, None, &mut tried, path, content_type, body)
                    .await;
                match sent {
                    Err(ClientError::Gateway { ref kind, .. })
                        if NOT_DELIVERED.contains(&kind.as_str())
                            && tried.len() < DELIVERY_ATTEMPTS => {}
                    other => return other,
                }
            }
        };
        self.deadline(&progress, run).await
    }

    /// Sends `body` to `path` on node `node`, which must be verified (for tests and diagnosis:
    /// a device that lets anyone pick its node gives up non-targetability).
    pub async fn send_to(
        &self,
        node: &NodeId,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<InnerResponse, ClientError> {
        let progress = Progress::default();
        let mut tried = Vec::new();
        let run = self.send_inner(&progress, Some(node), &mut tried, path, content_type, body);
        self.deadline(&progress, run).await
    }

    async fn deadline<T>(
        &self,
        progress: &Progress,
        run: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let deadline = self.config.deadline;
        tokio::time::timeout(deadline, run)
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Timeout {
                    stage: progress.get(),
                    deadline,
                })
            })
    }

    /// One attempt; the node chosen is added to `tried`, and a node already in it is chosen
    /// only when no other candidate is left.
    async fn send_inner(
        &self,
        progress: &Progress,
        target: Option<&NodeId>,
        tried: &mut Vec<NodeId>,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<InnerResponse, ClientError> {
        let started = std::time::Instant::now();
        let session = self.session(progress).await?;
        let session_done = std::time::Instant::now();
        let candidates = choose::candidates(&session.reports, self.config.trust.min_machines())?;
        let (id, node) = match target {
            Some(t) => candidates
                .find(t)
                .ok_or_else(|| ClientError::UnknownNode(t.clone()))?,
            None => {
                let mut rng = choose::os_rng()?;
                candidates
                    .choose_except(&mut rng, tried)
                    .or_else(|| candidates.choose(&mut rng))
                    .ok_or_else(|| ClientError::NoVerifiedNode(Vec::new()))?
            }
        };
        tried.push(id.clone());
        progress.set(Stage::Token);
        let logged = self.logged_keys(&session).await?;
        let outer_keys = match &logged {
            Some(l) => l.outer_keys.as_slice(),
            None => session.outer_keys.as_slice(),
        };
        let issuer_spkis = logged.as_ref().map(|l| l.issuer_spkis.as_slice());
        let authorization = self
            .token(&session.directory.token_challenge, issuer_spkis)
            .await?;
        let token_done = std::time::Instant::now();

        progress.set(Stage::Exchange);
        let inner = envelope::node_request(&node.key_config, path, content_type, body)?;
        let headers = [
            ("authorization", authorization.expose().as_bytes()),
            ("content-type", OHTTP_REQ_MEDIA.as_bytes()),
        ];
        let answer = self
            .gateway(
                outer_keys,
                "POST",
                &node_ohttp_path(id),
                &headers,
                &inner.bytes,
            )
            .await?;
        if answer.status != 200 {
            let e = gateway_error(&answer);
            if let ClientError::Gateway { kind, .. } = &e
                && NOT_DELIVERED.contains(&kind.as_str())
            {
                // The gateway refunded it: no node received the request. Kept for the retry
                // (or the next request); a gateway that lied gets it refused as spent.
                let challenge = session.directory.token_challenge.as_str();
                self.update_store(|s| s.add(challenge, authorization))?;
            }
            return Err(e);
        }
        drop(authorization);
        if !answer.is(OHTTP_RES_MEDIA) {
            return Err(media_error(
                "node answer",
                OHTTP_RES_MEDIA,
                answer.content_type,
            ));
        }
        let opened = inner.open(&answer.body)?;
        let timings = Timings {
            session: session_done - started,
            token: token_done - session_done,
            exchange: token_done.elapsed(),
        };
        Ok(InnerResponse {
            node: id.clone(),
            status: opened.status,
            content_type: opened.content_type,
            body: SecretBytes::from(opened.body),
            timings,
        })
    }

    /// Steps 1–3: outer key, directory, verification, log checkpoint.
    async fn session(&self, progress: &Progress) -> Result<Session, ClientError> {
        progress.set(Stage::OuterKey);
        let outer_keys = self.outer_keys().await?;
        progress.set(Stage::Directory);
        let answer = self
            .gateway(
                &outer_keys,
                "GET",
                &nodes_path(self.config.trust.directory_sample()),
                &[],
                &[],
            )
            .await?;
        if answer.status != 200 {
            return Err(gateway_error(&answer));
        }
        if !answer.is(cloister_protocol::media::JSON) {
            return Err(media_error(
                "node directory",
                cloister_protocol::media::JSON,
                answer.content_type,
            ));
        }
        let directory = NodeDirectory::from_json(&answer.body).map_err(ClientError::Directory)?;
        progress.set(Stage::Verify);
        let reports = nodes::verify_directory(self.config.trust.verifier(), &directory);
        progress.set(Stage::Consistency);
        let log = self.settle_log(&outer_keys, &reports).await?;
        Ok(Session {
            outer_keys,
            directory,
            reports,
            log,
        })
    }

    /// Every verified node's checkpoint must be a prefix of the newest, and the newest must
    /// extend the one seen before; then it becomes the one seen. Checked against every hash
    /// tile of the newest tree, fetched whatever this device saw before, so that the gateway
    /// learns nothing of that (issue 24, attack 6).
    async fn settle_log(
        &self,
        keys: &[u8],
        reports: &[NodeReport],
    ) -> Result<Option<(VerifiedCheckpoint, TileSet)>, ClientError> {
        let checkpoints = nodes::checkpoints(reports);
        let Some((newest, older)) = checkpoints.split_first() else {
            return Ok(None);
        };
        let tiles = self.tiles(keys, newest.size).await?;
        for cp in older {
            trust::check_prefix(cp, newest, &tiles)?;
        }
        let trust = &self.config.trust;
        let seen = trust.seen()?;
        let next = trust::advance(seen, newest, &tiles)?;
        if seen != Some(next) {
            trust.record(next)?;
        }
        Ok(Some(((*newest).clone(), tiles)))
    }

    /// The operator's keys this device may use, from the log (every entry of the newest tree,
    /// fetched through the gateway and checked against its tiles): the challenge's issuer's
    /// current token keys, and the gateway's key list cut to its logged configurations. `None`
    /// when the device accepts unlogged keys by name.
    async fn logged_keys(&self, session: &Session) -> Result<Option<LoggedKeys>, ClientError> {
        if self.config.trust.operator_keys() == OperatorKeys::InsecureUnlogged {
            return Ok(None);
        }
        let Some((checkpoint, tiles)) = &session.log else {
            return Err(ClientError::NoLogForIssuerKeys);
        };
        let mut bundles = std::collections::BTreeMap::new();
        for path in bundles_of(checkpoint.size).map_err(ClientError::Log)? {
            let at = cloister_protocol::access::log_tile_path(&path);
            let answer = self
                .gateway(&session.outer_keys, "GET", &at, &[], &[])
                .await?;
            if answer.status != 200 {
                return Err(gateway_error(&answer));
            }
            bundles.insert(path, answer.body.to_vec());
        }
        let entries = tiles
            .entries(checkpoint.root, &bundles)
            .map_err(ClientError::Log)?;
        let now = SystemClock.now_unix();
        let gateway_configs = current_gateway_keys(&entries, GATEWAY_AUTHORITY, now)
            .map_err(ClientError::GatewayKeys)?;
        let outer_keys = envelope::logged_outer_keys(&session.outer_keys, &gateway_configs)?;
        let challenge = tokens::parse_challenge(&session.directory.token_challenge)?;
        let records = current_keys(&entries, &challenge.issuer_name(), now)
            .map_err(ClientError::IssuerKeys)?;
        Ok(Some(LoggedKeys {
            issuer_spkis: tokens::logged_spkis(&records),
            outer_keys,
        }))
    }

    /// Every hash tile of the tree of `size`, through the gateway.
    async fn tiles(&self, keys: &[u8], size: u64) -> Result<TileSet, ClientError> {
        let mut set = TileSet::new(size);
        for tile in tiles_of(size).map_err(ClientError::Log)? {
            let path = cloister_protocol::access::log_tile_path(&tile);
            let answer = self.gateway(keys, "GET", &path, &[], &[]).await?;
            if answer.status != 200 {
                return Err(gateway_error(&answer));
            }
            set.insert(tile, answer.body.to_vec());
        }
        Ok(set)
    }

    async fn outer_keys(&self) -> Result<Vec<u8>, ClientError> {
        let relay = &self.config.relay;
        let req = HttpRequest {
            method: Method::GET,
            target: relay.join(OHTTP_KEYS_PATH),
            content_type: None,
            authorization: None,
            body: Bytes::new(),
        };
        let r = http::exchange(relay, req, MAX_RESPONSE, &self.tls).await?;
        if r.status != 200 {
            return Err(relay_error(&r));
        }
        if !r.is(OHTTP_KEYS_MEDIA) {
            return Err(media_error(
                "key configuration",
                OHTTP_KEYS_MEDIA,
                r.content_type,
            ));
        }
        envelope::check_outer_keys(&r.body)?;
        Ok(r.body)
    }

    /// One request to the gateway through the relay; the gateway's Binary HTTP answer.
    async fn gateway(
        &self,
        keys: &[u8],
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
    ) -> Result<Decoded, ClientError> {
        let mut sealed = envelope::gateway_request(keys, method, path, headers, body)?;
        let relay = &self.config.relay;
        let req = HttpRequest {
            method: Method::POST,
            target: relay.join("/"),
            content_type: Some(OHTTP_REQ_MEDIA),
            authorization: None,
            body: Bytes::from(std::mem::take(&mut sealed.bytes)),
        };
        let r = http::exchange(relay, req, MAX_RESPONSE, &self.tls).await?;
        if r.status != 200 {
            return Err(relay_error(&r));
        }
        if !r.is(OHTTP_RES_MEDIA) {
            return Err(media_error("relay answer", OHTTP_RES_MEDIA, r.content_type));
        }
        sealed.open(&r.body)
    }

    /// One token for `challenge`: from the store when it holds one (no issuance right before
    /// this redemption), else a batch fetched now, the spare ones stored.
    async fn token(
        &self,
        challenge_b64: &str,
        logged: Option<&[Vec<u8>]>,
    ) -> Result<SecretString, ClientError> {
        if let Some(t) = self.update_store(|s| s.take(challenge_b64))? {
            return Ok(t);
        }
        let mut fresh = Vec::with_capacity(self.batch);
        for _ in 0..self.batch {
            fresh.push(self.issue(challenge_b64, logged).await?);
        }
        let token = fresh.pop().ok_or(ClientError::NoIssuer)?;
        if !fresh.is_empty() {
            self.update_store(|s| {
                for t in fresh {
                    s.add(challenge_b64, t);
                }
            })?;
        }
        Ok(token)
    }

    /// One token from the issuer for `challenge`.
    async fn issue(
        &self,
        challenge: &str,
        logged: Option<&[Vec<u8>]>,
    ) -> Result<SecretString, ClientError> {
        let account = self.config.issuer.as_ref().ok_or(ClientError::NoIssuer)?;
        let challenge = tokens::parse_challenge(challenge)?;
        let issuer = &account.url;
        let req = HttpRequest {
            method: Method::GET,
            target: issuer.join(cloister_protocol::access::ISSUER_DIRECTORY_PATH),
            content_type: None,
            authorization: None,
            body: Bytes::new(),
        };
        let r = http::exchange(issuer, req, 64 << 10, &self.tls).await?;
        if r.status != 200 {
            return Err(issuer_error(&r));
        }
        let (key, uri) = tokens::logged_issuer_key(&r.body, SystemClock.now_unix(), logged)?;
        let target = tokens::request_target(issuer, &uri)?;
        let mut rng = choose::os_rng()?;
        let (request, pending) = tokens::token_request(&mut rng, key, &challenge)?;
        let bearer = Zeroizing::new(format!("Bearer {}", account.account_token.expose()));
        let req = HttpRequest {
            method: Method::POST,
            target,
            content_type: Some(TOKEN_REQUEST_MEDIA),
            authorization: Some(&bearer),
            body: Bytes::from(request),
        };
        let r = http::exchange(issuer, req, 64 << 10, &self.tls).await?;
        if r.status != 200 {
            return Err(issuer_error(&r));
        }
        if !r.is(TOKEN_RESPONSE_MEDIA) {
            return Err(media_error(
                "token response",
                TOKEN_RESPONSE_MEDIA,
                r.content_type,
            ));
        }
        tokens::finish_token(pending, &r.body)
    }
}

fn media_error(what: &'static str, expected: &'static str, found: Option<String>) -> ClientError {
    ClientError::MediaType {
        what,
        expected,
        found,
    }
}

fn relay_error(r: &HttpResponse) -> ClientError {
    ClientError::Relay {
        status: r.status,
        kind: parse_problem(&r.body).map(|(kind, _)| kind),
    }
}

fn issuer_error(r: &HttpResponse) -> ClientError {
    ClientError::Issuer {
        status: r.status,
        kind: parse_problem(&r.body).map(|(kind, _)| kind),
    }
}

/// The gateway's refusals that say no node received the request (and the token was refunded):
/// the host did not answer (`node-unreachable`), the guest is restarting (`node-down`, from
/// its host agent), or the node left the fleet after the directory was read
/// (`node-departed`).
pub const NOT_DELIVERED: [&str; 3] = ["node-unreachable", "node-down", "node-departed"];

/// Attempts of one [`Client::send`] when a request was not delivered.
pub const DELIVERY_ATTEMPTS: usize = 3;

fn gateway_error(d: &Decoded) -> ClientError {
    let (kind, detail) =
        parse_problem(&d.body).unwrap_or_else(|| ("unknown".to_owned(), String::new()));
    ClientError::Gateway {
        status: d.status,
        kind,
        detail,
    }
}

#[cfg(test)]
mod tests;
