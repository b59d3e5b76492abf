//! The gateway on loopback, driven at the byte level: real outer OHTTP requests, real Privacy
//! Pass tokens from a real issuer key, a stand-in node on a Unix socket (the gateway never opens
//! the inner layer, so the node's bytes are opaque to it). Every refusal the device can meet is
//! checked by its status and problem kind, inside the outer layer or before it.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cloister_gateway::gateway::GatewayConfig;
use cloister_gateway::redeem::KeyEnd;
use cloister_gateway::spent::SpentStore;
use cloister_issuer::IssuerKey;
use cloister_protocol::access::NodeDirectory;
use privacypass::TokenType;
use privacypass::auth::authenticate::TokenChallenge;

use common::*;

/// A key's tokens are accepted until its logged epoch ends, not after: once the store may
/// forget a nonce, the token is refused for its key (a spent token cannot come back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_key_epoch_ended_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = node(dir.path(), "n1", Duration::ZERO);
    let now = cloister_http::now_unix();
    let issuer = IssuerKey::generate().expect("key");
    let open = start_until(
        &[("n1", &n1.socket)],
        redb(dir.path()),
        issuer.clone(),
        Duration::from_secs(5),
        KeyEnd::Logged(now + 3600),
    )
    .await;
    let path = "/v1/nodes/n1/ohttp";
    let t = token(&open.issuer, &open.challenge).await;
    assert_eq!(
        call(&open, "POST", path, Some(&t), b"1").await,
        Outcome::Inner(200, b"echo:1".to_vec())
    );
    let dir2 = tempfile::tempdir().expect("tempdir");
    let ended = start_until(
        &[("n1", &n1.socket)],
        redb(dir2.path()),
        issuer,
        Duration::from_secs(5),
        KeyEnd::Logged(now - 1),
    )
    .await;
    let t = token(&ended.issuer, &ended.challenge).await;
    let r = call(&ended, "POST", path, Some(&t), b"2").await;
    assert_eq!(r.kind().as_deref(), Some("token-key-expired"), "{r:?}");
    assert_eq!(n1.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_once_per_token_and_names_every_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = node(dir.path(), "n1", Duration::ZERO);
    let s = start(
        &[("n1", &n1.socket)],
        redb(dir.path()),
        IssuerKey::generate().expect("key"),
        Duration::from_secs(5),
    )
    .await;

    // The directory: the challenge devices make tokens for; the stand-in node serves no
    // evidence, so it is left out.
    let Outcome::Inner(200, d) = call(&s, "GET", "/v1/nodes", None, b"").await else {
        panic!("directory");
    };
    let d = NodeDirectory::from_json(&d).expect("directory");
    assert_eq!(d.token_challenge, s.challenge.to_base64().expect("b64"));
    assert!(d.nodes.is_empty());

    // A good token: forwarded, the node's bytes come back untouched.
    let t = token(&s.issuer, &s.challenge).await;
    let path = "/v1/nodes/n1/ohttp";
    assert_eq!(
        call(&s, "POST", path, Some(&t), b"inner").await,
        Outcome::Inner(200, b"echo:inner".to_vec())
    );
    assert_eq!(n1.hits.load(Ordering::SeqCst), 1);
    // The same token again: spent.
    let again = call(&s, "POST", path, Some(&t), b"inner").await;
    assert_eq!(again.kind().as_deref(), Some("token-spent"), "{again:?}");
    // No token; garbage; another issuer's key; another challenge.
    let none = call(&s, "POST", path, None, b"x").await;
    assert_eq!(none.kind().as_deref(), Some("token-missing"));
    let junk = call(&s, "POST", path, Some("PrivateToken token=AAAA"), b"x").await;
    assert_eq!(junk.kind().as_deref(), Some("token-malformed"));
    let empty = call(&s, "POST", path, Some("PrivateToken"), b"x").await;
    assert_eq!(empty.kind().as_deref(), Some("token-malformed"));
    let other_issuer = IssuerKey::generate().expect("key");
    let foreign = token(&other_issuer, &s.challenge).await;
    let r = call(&s, "POST", path, Some(&foreign), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("token-unknown-key"), "{r:?}");
    let elsewhere = TokenChallenge::new(TokenType::Public, "issuer.test", None, &["other".into()]);
    let misdirected = token(&s.issuer, &elsewhere).await;
    let r = call(&s, "POST", path, Some(&misdirected), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("token-wrong-challenge"), "{r:?}");
    // A forged signature (the authenticator's last byte flipped) is invalid, and does not burn
    // the nonce of the real token.
    let real = token(&s.issuer, &s.challenge).await;
    let forged = tamper_token(&real);
    let r = call(&s, "POST", path, Some(&forged), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("token-invalid"), "{r:?}");
    assert_eq!(
        call(&s, "POST", path, Some(&real), b"ok").await,
        Outcome::Inner(200, b"echo:ok".to_vec())
    );
    // A node id that does not exist (the token is spent: probing is not free).
    let t = token(&s.issuer, &s.challenge).await;
    let r = call(&s, "POST", "/v1/nodes/n9/ohttp", Some(&t), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("node-unknown"), "{r:?}");
    let r = call(&s, "POST", "/v1/nodes/n1/ohttp", Some(&t), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("token-spent"), "{r:?}");
    // An outer message to another key id, or to this id under another key: plaintext refusals.
    let other =
        cloister_gateway::outer::OuterKey::generate(s.key_configs[2].wrapping_add(1)).expect("key");
    let r = call_with(&s, other.encoded_list(), "GET", "/v1/nodes", None, b"").await;
    assert_eq!(r, Outcome::Plain(422, "ohttp-unknown-key-id".into()));
    let twin = cloister_gateway::outer::OuterKey::generate(s.key_configs[2]).expect("key");
    let r = call_with(&s, twin.encoded_list(), "GET", "/v1/nodes", None, b"").await;
    assert_eq!(r, Outcome::Plain(400, "ohttp-decapsulation".into()));
    assert_eq!(
        n1.hits.load(Ordering::SeqCst),
        2,
        "only the two good tokens reached the node"
    );
}

/// RFC 9577 §2.2.2: the `token` parameter is "either a token or a quoted-string" — the RFC's
/// own example is `Authorization: PrivateToken token="abc..."` — and "all unknown or unsupported
/// parameters … MUST be ignored". Each form below carries a fresh good token and is forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rfc_9577_form_of_the_credentials_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n1 = node(dir.path(), "n1", Duration::ZERO);
    let s = start(
        &[("n1", &n1.socket)],
        redb(dir.path()),
        IssuerKey::generate().expect("key"),
        Duration::from_secs(5),
    )
    .await;
    let forms: [fn(&str) -> String; 7] = [
        |t| format!("PrivateToken token=\"{t}\""),
        |t| format!("PrivateToken token={t}, ext=abc"),
        |t| format!("PrivateToken token=\"{t}\", ext=\"a, \\\"quoted\\\" b\""),
        |t| format!("PrivateToken ext=abc, token=\"{t}\""),
        |t| format!("privatetoken Token = \"{t}\""),
        |t| format!("PrivateToken ,token=\"{t}\",,"),
        |t| format!("PrivateToken token={}", t.trim_end_matches('=')),
    ];
    for (i, form) in forms.iter().enumerate() {
        let header = token(&s.issuer, &s.challenge).await;
        let b64 = header
            .strip_prefix("PrivateToken token=")
            .expect("the crate's form")
            .trim_matches('"');
        let value = form(b64);
        let r = call(&s, "POST", "/v1/nodes/n1/ohttp", Some(&value), b"x").await;
        assert_eq!(
            r,
            Outcome::Inner(200, b"echo:x".to_vec()),
            "form {i}: {value}"
        );
        // The same token in another form is the same token: spent.
        let again = format!("PrivateToken token=\"{b64}\"");
        let r = call(&s, "POST", "/v1/nodes/n1/ohttp", Some(&again), b"x").await;
        assert_eq!(r.kind().as_deref(), Some("token-spent"), "form {i}");
    }
    assert_eq!(n1.hits.load(Ordering::SeqCst), forms.len());
}

fn tamper_token(header: &str) -> String {
    use base64::Engine as _;
    let b64 = header
        .strip_prefix("PrivateToken token=")
        .expect("token header")
        .trim_matches('"');
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = engine
        .decode(b64.trim_end_matches('='))
        .expect("base64url token");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    format!("PrivateToken token={}", engine.encode(raw))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_dead_node_is_a_named_error_within_the_deadline_and_only_no_work_is_refunded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = node(dir.path(), "slow", Duration::from_secs(30));
    let gone = dir.path().join("gone.sock");
    let s = start(
        &[("slow", &slow.socket), ("gone", &gone)],
        redb(dir.path()),
        IssuerKey::generate().expect("key"),
        Duration::from_millis(800),
    )
    .await;
    let t = token(&s.issuer, &s.challenge).await;
    let started = Instant::now();
    let r = call(&s, "POST", "/v1/nodes/slow/ohttp", Some(&t), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("node-timeout"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let t = token(&s.issuer, &s.challenge).await;
    let r = call(&s, "POST", "/v1/nodes/gone/ohttp", Some(&t), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("node-unreachable"), "{r:?}");
    // The unreachable node did no work: the token was refunded and pays for the next request.
    // A timed-out one may have done work: that token stays spent.
    let r = call(&s, "POST", "/v1/nodes/slow/ohttp", Some(&t), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("node-timeout"), "refunded: {r:?}");
    let r = call(&s, "POST", "/v1/nodes/gone/ohttp", Some(&t), b"x").await;
    assert_eq!(r.kind().as_deref(), Some("token-spent"), "{r:?}");
}

/// A real `redis-server` on a free port, stopped on drop.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: u16, dir: &Path) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run `cargo xtask setup`");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis { child, port }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: redis-server (cargo xtask test)"]
async fn redis_spends_once_across_gateways_and_its_absence_is_503() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let redis = Redis::start(port, dir.path());
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let n1 = node(dir.path(), "n1", Duration::ZERO);
    let issuer = IssuerKey::generate().expect("key");
    let store = || SpentStore::redis(&url).expect("redis");
    // Two gateways of one fleet share the store.
    let a = start(
        &[("n1", &n1.socket)],
        store(),
        issuer.clone(),
        Duration::from_secs(5),
    )
    .await;
    let b = start(
        &[("n1", &n1.socket)],
        store(),
        issuer,
        Duration::from_secs(5),
    )
    .await;
    let t = token(&a.issuer, &a.challenge).await;
    let path = "/v1/nodes/n1/ohttp";
    assert_eq!(
        call(&a, "POST", path, Some(&t), b"1").await,
        Outcome::Inner(200, b"echo:1".to_vec())
    );
    let r = call(&b, "POST", path, Some(&t), b"1").await;
    assert_eq!(r.kind().as_deref(), Some("token-spent"), "{r:?}");
    // A key without an epoch: its nonces never expire. A logged key's: when the epoch ends
    // (and an hour more for clocks).
    let mut conn = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("cloister:spent:*")
        .query_async(&mut conn)
        .await
        .expect("keys");
    assert_eq!(keys.len(), 1);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert_eq!(ttl, -1, "an unlogged key's nonce expired");
    let end = cloister_http::now_unix() + 7 * 86_400;
    assert!(store().spend(&[0x42; 32], Some(end)).await.expect("spend"));
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("cloister:spent:{}", hex::encode([0x42u8; 32])))
        .query_async(&mut conn)
        .await
        .expect("ttl");
    assert!(
        (7 * 86_400 + 3_500..=7 * 86_400 + 3_600).contains(&ttl),
        "ttl {ttl}"
    );

    // Redis down: 503, and a fresh token is not accepted unchecked.
    drop(redis);
    let fresh = token(&a.issuer, &a.challenge).await;
    let r = call(&a, "POST", path, Some(&fresh), b"2").await;
    assert_eq!(r, Outcome::Inner(503, r_body(&r)), "{r:?}");
    assert_eq!(r.kind().as_deref(), Some("spent-store-unavailable"));
    assert_eq!(n1.hits.load(Ordering::SeqCst), 1);

    // Redis back: the same token is accepted once (it was never recorded).
    let _redis = Redis::start(port, dir.path());
    let mut accepted = None;
    for _ in 0..20 {
        match call(&a, "POST", path, Some(&fresh), b"3").await {
            Outcome::Inner(200, body) => {
                accepted = Some(body);
                break;
            }
            other => {
                assert_eq!(other.kind().as_deref(), Some("spent-store-unavailable"));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    assert_eq!(accepted.as_deref(), Some(&b"echo:3"[..]));
    // The other gateway reconnects too, and finds the token spent.
    let mut r = call(&b, "POST", path, Some(&fresh), b"3").await;
    for _ in 0..20 {
        if r.kind().as_deref() != Some("spent-store-unavailable") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        r = call(&b, "POST", path, Some(&fresh), b"3").await;
    }
    assert_eq!(r.kind().as_deref(), Some("token-spent"), "{r:?}");
    assert_eq!(n1.hits.load(Ordering::SeqCst), 2);
}

fn r_body(o: &Outcome) -> Vec<u8> {
    match o {
        Outcome::Inner(_, b) => b.clone(),
        Outcome::Plain(..) => Vec::new(),
    }
}

/// Two gateways hold the old and the new outer key; the registry names the current one and
/// both switch at their next read; a request sealed to the old key is still opened by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: redis-server (cargo xtask test)"]
async fn gateways_switch_their_outer_key_together_through_the_registry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start(free_port(), dir.path());
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let registry = cloister_registry::Registry::connect(&url).expect("registry");
    let (old, new) = ([1u8; 32], [2u8; 32]);
    let list = |seed: &[u8; 32]| {
        cloister_gateway::outer::OuterKey::from_seed(seed)
            .expect("key")
            .encoded_list()
            .to_vec()
    };
    let (old_list, new_list) = (list(&old), list(&new));
    let new_id = cloister_protocol::node::gateway_key_id(&new);
    let issuer = IssuerKey::generate().expect("key");
    let mut gateways = Vec::new();
    for i in 0..2 {
        let registry = registry.clone();
        let tune = move |c: &mut GatewayConfig| {
            c.outer_seeds = vec![old.into(), new.into()];
            c.registry = Some(registry);
            c.registry_interval = Duration::from_millis(200);
        };
        let own = dir.path().join(format!("g{i}"));
        std::fs::create_dir_all(&own).expect("dir");
        let spent = redb(&own);
        let s = start_configured(
            &[],
            spent,
            issuer.clone(),
            Duration::from_secs(5),
            KeyEnd::Unlogged,
            Duration::from_secs(5),
            tune,
        )
        .await;
        tokio::spawn(s.gw.clone().refresh_forever());
        gateways.push(s);
    }
    for s in &gateways {
        assert!(
            s.gw.key_configs().starts_with(&old_list),
            "the first seed is current"
        );
    }
    registry.set_current_outer_key(new_id).await.expect("named");
    let started = std::time::Instant::now();
    while !gateways
        .iter()
        .all(|s| s.gw.key_configs().starts_with(&new_list))
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the gateways did not switch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for s in &gateways {
        // A device that fetched the old list before the switch is still served.
        let r = call_with(s, &old_list, "GET", "/v1/nodes", None, b"").await;
        assert!(matches!(r, Outcome::Inner(200, _)), "{r:?}");
        let r = call_with(s, &new_list, "GET", "/v1/nodes", None, b"").await;
        assert!(matches!(r, Outcome::Inner(200, _)), "{r:?}");
    }
    // A key no gateway holds is not switched to.
    let held = [cloister_protocol::node::gateway_key_id(&old), new_id];
    let stranger = (0..=255u8).find(|i| !held.contains(i)).expect("id");
    registry
        .set_current_outer_key(stranger)
        .await
        .expect("named");
    tokio::time::sleep(Duration::from_millis(800)).await;
    for s in &gateways {
        assert!(s.gw.key_configs().starts_with(&new_list));
    }
}
