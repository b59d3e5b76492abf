//! The whole client against an in-process stand-in for relay, gateway, nodes and issuer: one
//! loopback HTTP server that speaks the protocol of `cloister_protocol::access` with real
//! OHTTP keys, real Privacy Pass issuance and redemption, and emulated evidence.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Cursor;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bhttp::Message;
use cloister_measurement::Step;
use cloister_protocol::access::{
    DIRECTORY_VERSION, ISSUER_DIRECTORY_PATH, NodeEntry, TOKEN_REQUEST_PATH, parse_nodes_path,
    problem_json,
};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::server::{IssuerServer, OriginKeyStore as _, OriginServer};
use privacypass::public_tokens::{PublicToken, TokenRequest};
use privacypass::{Deserialize as _, Serialize as _, TokenType};

use super::*;
use cloister_device_core::testkit::{
    IssuerKeys, MEASUREMENT, OriginKeys, Spent, bhttp_response, bundle_json, bundle_on, chip,
    emulated_trust, ohttp_server,
};

const ACCOUNT: &str = "acct-1";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Verifies, and the gateway routes to it.
    Good,
    /// Evidence of an image the policy does not accept.
    OtherImage,
    /// Verifies, but the gateway has no route to it.
    Ghost,
    /// Verifies, but its host does not answer: the gateway says `node-unreachable`.
    Unreachable,
}

/// What the stand-in saw: per node request, the node, the inner path and plaintext body; and
/// every outer-layer plaintext (what a gateway could read).
#[derive(Default)]
struct Seen {
    inner: Vec<(String, String, Vec<u8>)>,
    outer: Vec<Vec<u8>>,
}

struct Stack {
    gateway: ohttp::Server,
    key_list: Vec<u8>,
    nodes: HashMap<String, ohttp::Server>,
    directory: Vec<u8>,
    issuer: IssuerServer,
    issuer_keys: IssuerKeys,
    issuer_directory: Vec<u8>,
    origin_keys: OriginKeys,
    spent: Spent,
    seen: Mutex<Seen>,
    fault: Mutex<Fault>,
    unreachable: Vec<String>,
    undelivered: Mutex<usize>,
}

/// What a hostile or broken relay does to the answers it passes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// `/ohttp-keys` answers bytes that are no key configuration list.
    GarbageKeys,
    /// The gateway's answer replaced by random bytes of the right media type.
    GarbageOuter,
    /// The gateway's answer as an HTML error page.
    WrongMedia,
    /// The node's sealed answer one byte short.
    TruncatedInner,
}

fn noise(len: usize) -> Vec<u8> {
    use rand::RngExt as _;
    let mut rng = crate::choose::os_rng().expect("rng");
    (0..len).map(|_| rng.random()).collect()
}

type Reply = hyper::Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_str(content_type).expect("media type"),
    );
    r
}

fn problem(status: u16, kind: &str) -> (u16, String, Vec<u8>) {
    (
        status,
        "application/problem+json".into(),
        problem_json(status, kind, "stand-in"),
    )
}

impl Stack {
    async fn start(nodes: &[(&str, Kind)]) -> (Arc<Stack>, BaseUrl) {
        let mut rng = crate::choose::os_rng().expect("rng");
        let issuer = IssuerServer::new();
        let issuer_keys = IssuerKeys::default();
        let pk = issuer
            .create_keypair(&mut rng, &issuer_keys)
            .await
            .expect("issuer key");
        let origin_keys = OriginKeys::default();
        let id =
            privacypass::public_tokens::public_key_to_truncated_token_key_id(&pk).expect("key id");
        origin_keys.insert(id, pk.clone()).await;
        let issuer_directory = serde_json::json!({
            "issuer-request-uri": TOKEN_REQUEST_PATH,
            "token-keys": [{"token-type": 2, "token-key": URL_SAFE_NO_PAD.encode(pk.to_spki().expect("spki"))}],
        });
        let challenge = TokenChallenge::new(TokenType::Public, "issuer.invalid", None, &[]);

        let mut servers = HashMap::new();
        let mut entries = Vec::new();
        for (i, (id, kind)) in nodes.iter().enumerate() {
            let server = ohttp_server(i as u8);
            let config = server.config().encode().expect("config");
            let measurement = match kind {
                Kind::OtherImage => [0x11; 48],
                _ => MEASUREMENT,
            };
            entries.push(NodeEntry {
                id: NodeId::new(id).expect("id"),
                evidence: bundle_json(&bundle_on(chip(i as u32 % 4), &config, measurement, true)),
            });
            if *kind != Kind::Ghost {
                servers.insert((*id).to_owned(), server);
            }
        }
        let directory = NodeDirectory {
            version: DIRECTORY_VERSION,
            token_challenge: URL_SAFE_NO_PAD.encode(challenge.serialize().expect("challenge")),
            nodes: entries,
        };
        let gateway = ohttp_server(9);
        let key_list = ohttp::KeyConfig::encode_list(&[gateway.config()]).expect("key list");
        let stack = Arc::new(Stack {
            gateway,
            key_list,
            nodes: servers,
            directory: directory.to_json(),
            issuer,
            issuer_keys,
            issuer_directory: issuer_directory.to_string().into_bytes(),
            origin_keys,
            spent: Spent::default(),
            seen: Mutex::default(),
            fault: Mutex::new(Fault::None),
            unreachable: nodes
                .iter()
                .filter(|(_, k)| *k == Kind::Unreachable)
                .map(|(id, _)| (*id).to_owned())
                .collect(),
            undelivered: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let serving = stack.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let stack = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let stack = stack.clone();
                        async move { Ok::<_, Infallible>(stack.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (stack, url.parse().expect("url"))
    }

    async fn handle(&self, req: hyper::Request<Incoming>) -> Reply {
        let (method, path) = (req.method().clone(), req.uri().path().to_owned());
        let bearer = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec());
        let body = req.into_body().collect().await.expect("body").to_bytes();
        let fault = *self.fault.lock().expect("lock");
        match (fault, method.as_str(), path.as_str()) {
            (Fault::GarbageKeys, "GET", OHTTP_KEYS_PATH) => {
                return reply(200, OHTTP_KEYS_MEDIA, noise(41));
            }
            (Fault::GarbageOuter, "POST", "/") => return reply(200, OHTTP_RES_MEDIA, noise(120)),
            (Fault::WrongMedia, "POST", "/") => {
                return reply(502, "text/html", b"<html>Bad Gateway</html>".to_vec());
            }
            _ => {}
        }
        match (method.as_str(), path.as_str()) {
            ("GET", OHTTP_KEYS_PATH) => reply(200, OHTTP_KEYS_MEDIA, self.key_list.clone()),
            ("POST", "/") => {
                let (plain, ctx) = self.gateway.decapsulate(&body).expect("outer request");
                self.seen.lock().expect("lock").outer.push(plain.clone());
                let m = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp");
                let (status, ct, body) = self.route(&m).await;
                let answer = ctx
                    .encapsulate(&bhttp_response(status, &ct, &body))
                    .expect("seal");
                reply(200, OHTTP_RES_MEDIA, answer)
            }
            ("GET", ISSUER_DIRECTORY_PATH) => reply(
                200,
                "application/private-token-issuer-directory",
                self.issuer_directory.clone(),
            ),
            ("POST", TOKEN_REQUEST_PATH) => {
                if bearer.as_deref() != Some(format!("Bearer {ACCOUNT}").as_bytes()) {
                    let (s, ct, b) = problem(401, "account-unknown");
                    return reply(s, &ct, b);
                }
                let request = TokenRequest::tls_deserialize(&mut &body[..]).expect("request");
                let response = self
                    .issuer
                    .issue_token_response(&self.issuer_keys, request)
                    .await
                    .expect("issued");
                let bytes = response.tls_serialize_detached().expect("bytes");
                reply(200, TOKEN_RESPONSE_MEDIA, bytes)
            }
            _ => reply(404, "text/plain", Vec::new()),
        }
    }

    /// What the gateway answers inside the outer layer.
    async fn route(&self, m: &Message) -> (u16, String, Vec<u8>) {
        let path = String::from_utf8_lossy(m.control().path().unwrap_or_default()).into_owned();
        if matches!(parse_nodes_path(&path), Some(Ok(_))) {
            return (200, "application/json".into(), self.directory.clone());
        }
        let Some(id) = path
            .strip_prefix("/v1/nodes/")
            .and_then(|p| p.strip_suffix("/ohttp"))
        else {
            return problem(404, "not-found");
        };
        // The device writes RFC 9577's quoted, padded form; the stand-in reads exactly that.
        let token = m
            .header()
            .get(b"authorization")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.strip_prefix("PrivateToken token=\""))
            .and_then(|v| v.strip_suffix('"'))
            .and_then(|b64| base64::engine::general_purpose::URL_SAFE.decode(b64).ok())
            .and_then(|bytes| {
                use privacypass::Deserialize as _;
                PublicToken::tls_deserialize_exact(&bytes).ok()
            });
        let Some(token): Option<PublicToken> = token else {
            return problem(401, "token-missing");
        };
        // Spent and refunded, as the gateway does when a node's host does not answer.
        if self.unreachable.iter().any(|u| u == id) {
            *self.undelivered.lock().expect("lock") += 1;
            return problem(502, "node-unreachable");
        }
        let redeemed = OriginServer::new()
            .redeem_token(&self.origin_keys, &self.spent, token)
            .await;
        if redeemed.is_err() {
            return problem(401, "token-invalid");
        }
        let Some(node) = self.nodes.get(id) else {
            return problem(404, "node-unknown");
        };
        let (plain, ctx) = node.decapsulate(m.content()).expect("inner request");
        let inner = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp");
        let inner_path = String::from_utf8_lossy(inner.control().path().unwrap_or_default());
        self.seen.lock().expect("lock").inner.push((
            id.to_owned(),
            inner_path.into_owned(),
            inner.content().to_vec(),
        ));
        let answer = bhttp_response(200, "application/octet-stream", inner.content());
        let mut sealed = ctx.encapsulate(&answer).expect("seal");
        if *self.fault.lock().expect("lock") == Fault::TruncatedInner {
            sealed.pop();
        }
        (200, OHTTP_RES_MEDIA.into(), sealed)
    }
}

fn client(url: &BaseUrl, account: &str) -> Client {
    // Stacks of one node (one machine) are asked for by name; the default refuses them
    // (`a_directory_the_device_cannot_use_whole_is_refused`).
    client_trusting(
        url,
        account,
        emulated_trust().with_min_machines(std::num::NonZeroUsize::MIN),
    )
}

/// A client of the stand-in at `url` for `account`, under `trust`.
fn client_trusting(url: &BaseUrl, account: &str, trust: Trust) -> Client {
    Client::new(ClientConfig {
        relay: url.clone(),
        issuer: Some(IssuerAccount {
            url: url.clone(),
            account_token: SecretString::new(account.to_owned()),
        }),
        trust,
        deadline: Duration::from_secs(60),
        tls_roots: Default::default(),
    })
    .expect("client")
}

#[tokio::test]
async fn requests_reach_a_random_verified_node_and_come_back() {
    let (stack, url) = Stack::start(&[("good-a", Kind::Good), ("good-b", Kind::Good)]).await;
    let client = client_trusting(&url, ACCOUNT, emulated_trust());
    let mut chosen = std::collections::BTreeSet::new();
    for i in 0..30 {
        let plaintext = format!("MARKER-{i}");
        let r = client
            .send("/v1/echo", "text/plain", plaintext.as_bytes())
            .await
            .expect("answered");
        assert_eq!(
            (r.status, r.content_type.as_deref()),
            (200, Some("application/octet-stream"))
        );
        assert_eq!(r.body.expose(), plaintext.as_bytes());
        chosen.insert(r.node.to_string());
    }
    assert_eq!(
        chosen.len(),
        2,
        "both verified nodes are chosen: {chosen:?}"
    );

    let seen = stack.seen.lock().expect("lock");
    assert_eq!(seen.inner.len(), 30);
    assert!(seen.inner.iter().all(|(_, path, _)| path == "/v1/echo"));
    // The gateway's plaintext holds the token and the node, never the request.
    for outer in &seen.outer {
        assert!(
            !outer.windows(7).any(|w| w == b"MARKER-"),
            "plaintext reached the gateway"
        );
    }
}

#[tokio::test]
async fn a_directory_the_device_cannot_use_whole_is_refused() {
    // One good node among nodes that fail: refused, the failing ones named.
    let (stack, url) = Stack::start(&[
        ("good-a", Kind::Good),
        ("other-image", Kind::OtherImage),
        ("good-b", Kind::Good),
    ])
    .await;
    let e = client(&url, ACCOUNT)
        .send("/v1/echo", "text/plain", b"hi")
        .await
        .expect_err("mixed directory");
    assert!(
        matches!(&e, ClientError::MixedDirectory { verified: 2, failures }
            if failures.len() == 1 && failures[0].id.as_str() == "other-image"),
        "{e}"
    );
    assert!(stack.seen.lock().expect("lock").inner.is_empty());

    // One machine, under the default policy: refused before any token is fetched.
    let (stack, url) = Stack::start(&[("good-a", Kind::Good)]).await;
    let strict = client_trusting(&url, ACCOUNT, emulated_trust());
    assert!(matches!(
        strict.send("/v1/echo", "text/plain", b"hi").await,
        Err(ClientError::TooFewMachines {
            found: 1,
            required: 2
        })
    ));
    assert!(stack.seen.lock().expect("lock").inner.is_empty());
}

#[tokio::test]
async fn nodes_reports_each_node_and_send_to_picks_one() {
    let (_stack, url) =
        Stack::start(&[("good-a", Kind::Good), ("other-image", Kind::OtherImage)]).await;
    let client = client(&url, ACCOUNT);
    let reports = client.nodes().await.expect("directory");
    let summary: Vec<(&str, Option<Step>)> = reports
        .iter()
        .map(|r| (r.id.as_str(), r.result.as_ref().err().map(|f| f.step)))
        .collect();
    assert_eq!(
        summary,
        vec![("good-a", None), ("other-image", Some(Step::Measurement))]
    );
    // The machine is known once the signature held, even for a node refused later.
    assert!(reports.iter().all(|r| r.machine.is_some()));
    assert_ne!(reports[0].machine, reports[1].machine);

    let (_stack, url) = Stack::start(&[("good-a", Kind::Good), ("good-b", Kind::Good)]).await;
    let client = self::client(&url, ACCOUNT);
    let good = NodeId::new("good-a").expect("id");
    let r = client
        .send_to(&good, "/v1/echo", "text/plain", b"hi")
        .await
        .expect("answered");
    assert_eq!(r.node, good);
    let absent = NodeId::new("other-image").expect("id");
    assert!(matches!(
        client.send_to(&absent, "/v1/echo", "text/plain", b"hi").await,
        Err(ClientError::UnknownNode(id)) if id == absent
    ));
}

/// What a gateway reads of a directory fetch is the same bytes from every device with the
/// same policy — no account, no state, no key of the device — so a gateway cannot answer one
/// device with a sample of its own choosing.
#[tokio::test]
async fn every_devices_directory_fetch_reads_the_same_to_the_gateway() {
    let (stack, url) = Stack::start(&[("a", Kind::Good), ("b", Kind::Good)]).await;
    let first = client(&url, ACCOUNT);
    let second = client_trusting(&url, "acct-other", emulated_trust());
    first.nodes().await.expect("first device");
    second.nodes().await.expect("second device");
    first.nodes().await.expect("first device again");
    let seen = stack.seen.lock().expect("lock");
    let fetches: Vec<&Vec<u8>> = seen
        .outer
        .iter()
        .filter(|plain| {
            let m = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp");
            let path = String::from_utf8_lossy(m.control().path().unwrap_or_default()).into_owned();
            matches!(parse_nodes_path(&path), Some(Ok(Some(8))))
        })
        .collect();
    assert_eq!(
        fetches.len(),
        3,
        "three fetches, each asking for the default sample"
    );
    assert!(fetches.iter().all(|f| *f == fetches[0]), "the same bytes");
}

/// A request the gateway says no node received (its host is down) goes again to another node,
/// with a fresh directory; after [`DELIVERY_ATTEMPTS`] undelivered attempts the refusal is the
/// answer.
#[tokio::test]
async fn an_undelivered_request_goes_to_another_node() {
    let (stack, url) = Stack::start(&[
        ("down-a", Kind::Unreachable),
        ("down-b", Kind::Unreachable),
        ("good", Kind::Good),
    ])
    .await;
    let client = client(&url, ACCOUNT);
    for _ in 0..6 {
        let r = client
            .send("/v1/echo", "text/plain", b"hi")
            .await
            .expect("delivered to the node that answers");
        assert_eq!(r.node.as_str(), "good");
    }
    // Every undelivered attempt was to a different node than the ones before it.
    assert!(*stack.undelivered.lock().expect("lock") <= 12);

    let (stack, url) =
        Stack::start(&[("down-a", Kind::Unreachable), ("down-b", Kind::Unreachable)]).await;
    let e = client_trusting(&url, ACCOUNT, emulated_trust())
        .send("/v1/echo", "text/plain", b"hi")
        .await
        .expect_err("nothing answers");
    assert!(
        matches!(&e, ClientError::Gateway { status: 502, kind, .. } if kind == "node-unreachable"),
        "{e}"
    );
    assert_eq!(*stack.undelivered.lock().expect("lock"), DELIVERY_ATTEMPTS);
}

#[tokio::test]
async fn refusals_are_named_by_who_refused() {
    let (_stack, url) = Stack::start(&[("good-a", Kind::Good), ("ghost", Kind::Ghost)]).await;
    let e = client(&url, "acct-unknown")
        .send("/v1/echo", "text/plain", b"hi")
        .await
        .expect_err("unknown account");
    assert!(
        matches!(&e, ClientError::Issuer { status: 401, kind: Some(k) } if k == "account-unknown"),
        "{e}"
    );
    let ghost = NodeId::new("ghost").expect("id");
    let e = client(&url, ACCOUNT)
        .send_to(&ghost, "/v1/echo", "text/plain", b"hi")
        .await
        .expect_err("no route");
    assert!(
        matches!(&e, ClientError::Gateway { status: 404, kind, .. } if kind == "node-unknown"),
        "{e}"
    );

    let (_stack, url) = Stack::start(&[("other-image", Kind::OtherImage)]).await;
    let e = client(&url, ACCOUNT)
        .send("/v1/echo", "text/plain", b"hi")
        .await
        .expect_err("nothing verifies");
    match e {
        ClientError::NoVerifiedNode(f) => {
            assert_eq!(f.len(), 1);
            assert_eq!(
                (f[0].id.as_str(), f[0].step),
                ("other-image", Step::Measurement)
            );
        }
        e => panic!("expected NoVerifiedNode, got {e}"),
    }
}

#[test]
fn progress_reads_back_every_stage() {
    let p = Progress::default();
    assert_eq!(p.get(), Stage::OuterKey);
    for s in Stage::ALL {
        p.set(s);
        assert_eq!(p.get(), s);
    }
}

#[tokio::test]
async fn the_deadline_names_the_stage_it_cut() {
    // A relay that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let client = Client::new(ClientConfig {
        relay: format!("http://{addr}").parse().expect("url"),
        issuer: None,
        trust: Trust::hardware(
            cloister_measurement::Policy::default(),
            None,
            Box::<crate::MemoryStore>::default(),
        )
        .expect("trust"),
        deadline: Duration::from_millis(200),
        tls_roots: Default::default(),
    })
    .expect("client");
    let e = client
        .send("/v1/echo", "text/plain", b"x")
        .await
        .expect_err("times out");
    assert!(
        matches!(
            e,
            ClientError::Timeout {
                stage: Stage::OuterKey,
                ..
            }
        ),
        "{e}"
    );
    hold.abort();
}

#[tokio::test]
async fn a_token_batch_is_spent_one_per_request_from_memory() {
    let (_stack, url) = Stack::start(&[("good-a", Kind::Good)]).await;
    let client = client(&url, ACCOUNT).with_token_batch(4);
    let mut reserved = Vec::new();
    for i in 0..5 {
        let body = format!("batch-{i}");
        let r = client
            .send("/v1/echo", "text/plain", body.as_bytes())
            .await
            .expect("every token is fresh: the stand-in redeems each once");
        assert_eq!(r.body.expose(), body.as_bytes());
        reserved.push(client.reserved_tokens());
    }
    // Four fetched at the first request, one used per request, four more at the fifth.
    assert_eq!(reserved, [3, 2, 1, 0, 3]);
    assert!(!format!("{client:?}").contains("PrivateToken"));
}

#[tokio::test]
async fn a_relay_that_garbles_or_truncates_gets_a_named_error_and_nothing_sticks() {
    let (stack, url) = Stack::start(&[("good-a", Kind::Good)]).await;
    let c = client(&url, ACCOUNT);
    let set = |f| *stack.fault.lock().expect("lock") = f;

    set(Fault::GarbageKeys);
    let e = c
        .send("/v1/echo", "text/plain", b"x")
        .await
        .expect_err("keys");
    assert!(matches!(e, ClientError::OuterKey(_)), "{e}");

    set(Fault::GarbageOuter);
    let e = c
        .send("/v1/echo", "text/plain", b"x")
        .await
        .expect_err("outer");
    assert!(
        matches!(
            e,
            ClientError::Ohttp {
                layer: crate::Layer::Outer,
                operation: "decapsulation",
                ..
            }
        ),
        "{e}"
    );

    set(Fault::WrongMedia);
    let e = c
        .send("/v1/echo", "text/plain", b"x")
        .await
        .expect_err("media");
    assert!(matches!(e, ClientError::Relay { status: 502, .. }), "{e}");

    set(Fault::TruncatedInner);
    let before = stack.seen.lock().expect("lock").inner.len();
    let e = c
        .send("/v1/echo", "text/plain", b"x")
        .await
        .expect_err("inner");
    assert!(
        matches!(
            e,
            ClientError::Ohttp {
                layer: crate::Layer::Inner,
                operation: "decapsulation",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(stack.seen.lock().expect("lock").inner.len(), before + 1);

    // Nothing is left wedged: the same client works once the relay behaves.
    set(Fault::None);
    let r = c
        .send("/v1/echo", "text/plain", b"again")
        .await
        .expect("recovers");
    assert_eq!(r.body.expose(), b"again");
}

#[tokio::test]
async fn a_relay_that_cuts_its_answer_short_is_an_http_error() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // Promises 100 bytes, sends 10, closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/ohttp-keys\r\n\
                      content-length: 100\r\n\r\n0123456789",
                )
                .await;
        }
    });
    let client = Client::new(ClientConfig {
        relay: format!("http://{addr}").parse().expect("url"),
        issuer: None,
        trust: emulated_trust(),
        deadline: Duration::from_secs(30),
        tls_roots: Default::default(),
    })
    .expect("client");
    let e = client.nodes().await.expect_err("truncated");
    assert!(matches!(e, ClientError::Http { .. }), "{e}");
    server.abort();
}
