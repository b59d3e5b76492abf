//! What the gateway's tests share: a stand-in node, a gateway on loopback with a real issuer
//! key, tokens, and a device's call through both OHTTP layers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bhttp::{Message, Mode};
use blind_rsa_signatures::DefaultRng;
use bytes::Bytes;
use cloister_gateway::gateway::{Gateway, GatewayConfig, serve};
use cloister_gateway::redeem::{AcceptedKey, KeyEnd};
use cloister_gateway::spent::SpentStore;
use cloister_http::exchange_tcp;
use cloister_issuer::IssuerKey;
use cloister_protocol::access::{NodeId, parse_problem};
use http_body_util::{BodyExt as _, Full};
use hyper::Method;
use hyper_util::rt::TokioIo;
use privacypass::TokenType;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::auth::authorize::build_authorization_header;
use privacypass::public_tokens::TokenRequest;
use privacypass::public_tokens::server::IssuerServer;

/// A stand-in node: `POST /v1/ohttp` answers `echo:` + the body after `delay`; counts requests.
pub struct Node {
    pub socket: PathBuf,
    pub hits: Arc<AtomicUsize>,
}

pub fn node(dir: &Path, name: &str, delay: Duration) -> Node {
    node_answering(dir, name, delay, 200)
}

/// A node that accepts connections and never answers anything.
pub fn silent_node(dir: &Path, name: &str) -> PathBuf {
    let socket = dir.join(format!("{name}.sock"));
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind node");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    socket
}

/// [`node`], every answer with `status`.
pub fn node_answering(dir: &Path, name: &str, delay: Duration, status: u16) -> Node {
    let socket = dir.join(format!("{name}.sock"));
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind node");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let counter = counter.clone();
                        async move {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            tokio::time::sleep(delay).await;
                            let mut out = b"echo:".to_vec();
                            out.extend_from_slice(&body);
                            let mut r = hyper::Response::new(Full::new(Bytes::from(out)));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                            r.headers_mut().insert(
                                hyper::header::CONTENT_TYPE,
                                hyper::header::HeaderValue::from_static("message/ohttp-res"),
                            );
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Node { socket, hits }
}

pub struct Setup {
    pub gw: Arc<Gateway>,
    pub addr: String,
    pub key_configs: Vec<u8>,
    pub issuer: IssuerKey,
    pub challenge: TokenChallenge,
}

pub async fn start(
    nodes: &[(&str, &Path)],
    spent: SpentStore,
    issuer: IssuerKey,
    node_timeout: Duration,
) -> Setup {
    start_until(nodes, spent, issuer, node_timeout, KeyEnd::Unlogged).await
}

/// [`start`], the issuer key accepted until `until`.
pub async fn start_until(
    nodes: &[(&str, &Path)],
    spent: SpentStore,
    issuer: IssuerKey,
    node_timeout: Duration,
    until: KeyEnd,
) -> Setup {
    start_tuned(nodes, spent, issuer, node_timeout, until, node_timeout).await
}

/// [`start_until`], each evidence fetch within `evidence_timeout`.
pub async fn start_tuned(
    nodes: &[(&str, &Path)],
    spent: SpentStore,
    issuer: IssuerKey,
    node_timeout: Duration,
    until: KeyEnd,
    evidence_timeout: Duration,
) -> Setup {
    let tune = |_: &mut GatewayConfig| {};
    start_configured(
        nodes,
        spent,
        issuer,
        node_timeout,
        until,
        evidence_timeout,
        tune,
    )
    .await
}

/// [`start_tuned`], the configuration changed by `tune` before the gateway starts.
pub async fn start_configured(
    nodes: &[(&str, &Path)],
    spent: SpentStore,
    issuer: IssuerKey,
    node_timeout: Duration,
    until: KeyEnd,
    evidence_timeout: Duration,
    tune: impl FnOnce(&mut GatewayConfig),
) -> Setup {
    let challenge =
        TokenChallenge::new(TokenType::Public, "issuer.test", None, &["gw.test".into()]);
    let mut map = BTreeMap::new();
    for (id, path) in nodes {
        map.insert(
            NodeId::new(id).expect("id"),
            format!("unix:{}", path.display()).parse().expect("address"),
        );
    }
    let mut config = GatewayConfig {
        nodes: map,
        log_proofs: Vec::new(),
        log: None,
        challenge: challenge.clone(),
        issuer_keys: vec![AcceptedKey {
            key: issuer.public_key(),
            until,
        }],
        spent,
        node_timeout,
        max_body: 1 << 20,
        max_in_flight: 64,
        refresh: Duration::from_secs(3600),
        evidence_timeout,
        body_pace: cloister_http::BodyPace::default(),
        snp_crls: Vec::new(),
        registry: None,
        registry_interval: Duration::from_secs(5),
        connector: cloister_gateway::nodes::Connector::local(),
        directory_max: cloister_gateway::directory::DEFAULT_DIRECTORY_MAX,
        outer_seeds: Vec::new(),
    };
    tune(&mut config);
    let gw = Gateway::new(config).expect("gateway");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let key_configs = gw.key_configs();
    tokio::spawn(serve(gw.clone(), listener));
    Setup {
        gw,
        addr,
        key_configs,
        issuer,
        challenge,
    }
}

/// A token from `issuer` for `challenge`, as an Authorization header value.
pub async fn token(issuer: &IssuerKey, challenge: &TokenChallenge) -> String {
    let (req, state) =
        TokenRequest::new(&mut DefaultRng, issuer.public_key(), challenge).expect("request");
    let resp = IssuerServer::new()
        .issue_token_response(issuer, req)
        .await
        .expect("issued");
    let token = resp.issue_token(&state).expect("finalized");
    let (_, value) = build_authorization_header(&token).expect("header");
    value.to_str().expect("ascii").to_owned()
}

/// What came back: plaintext status + problem kind, or (inside the layer) status and body.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Plain(u16, String),
    Inner(u16, Vec<u8>),
}

impl Outcome {
    pub fn kind(&self) -> Option<String> {
        match self {
            Outcome::Plain(_, k) => Some(k.clone()),
            Outcome::Inner(_, body) => parse_problem(body).map(|p| p.0),
        }
    }
}

pub async fn call(s: &Setup, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> Outcome {
    call_with(s, &s.key_configs, method, path, auth, body).await
}

pub async fn call_with(
    s: &Setup,
    configs: &[u8],
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Outcome {
    let mut m = Message::request(
        method.as_bytes().to_vec(),
        b"https".to_vec(),
        b"cloister-gateway".to_vec(),
        path.as_bytes().to_vec(),
    );
    m.put_header("content-type", "message/ohttp-req");
    if let Some(a) = auth {
        m.put_header("authorization", a);
    }
    m.write_content(body);
    let mut plain = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut plain).expect("bhttp");
    let (enc, ctx) = ohttp::ClientRequest::from_encoded_config_list(configs)
        .expect("config")
        .encapsulate(&plain)
        .expect("encapsulate");
    let a = exchange_tcp(
        &s.addr,
        Method::POST,
        "/gateway",
        Some("message/ohttp-req"),
        Bytes::from(enc),
        Duration::from_secs(30),
        1 << 20,
    )
    .await
    .expect("gateway answers");
    if a.status != 200 {
        let kind = parse_problem(&a.body).map(|p| p.0).unwrap_or_default();
        return Outcome::Plain(a.status, kind);
    }
    let plain = ctx.decapsulate(&a.body).expect("decapsulate");
    let r = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp response");
    Outcome::Inner(
        r.control().status().map_or(0, |s| s.code()),
        r.content().to_vec(),
    )
}

pub fn redb(dir: &Path) -> SpentStore {
    SpentStore::open_redb(&dir.join("spent.redb")).expect("spent store")
}
