//! Faults on the way in (loopback, a development-mode runtime; every actor its own process).
//!
//! The gateway is killed (SIGKILL: nothing drained, nothing flushed) and started again on the
//! same address while eight devices redeem 200 tokens through the relay. Afterwards every
//! token is presented again. Then:
//! * no token was accepted twice, across the crash;
//! * every token accepted before the crash is refused as `token-spent` after it (no spend lost
//!   from the store);
//! * a request cut by the crash was either spent (its answer lost) or is accepted now — never
//!   both; one the node shed with 503 was refunded (accepted now); every error was a named one;
//! * at the end all 200 nonces are in the spent store, once each, and the node answered no
//!   more requests than tokens were spent.
//!
//! And a node restarted under a stale directory (its key gone) is named once, then served.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use cloister_client::{ClientError, choose, envelope, tokens};
use cloister_http::{Upstreamed, exchange_tcp};
use cloister_issuer::IssuerKey;
use cloister_protocol::EvidenceBundle;
use cloister_protocol::access::{
    NODES_PATH, NodeDirectory, NodeId, OHTTP_KEYS_PATH, OHTTP_REQ_MEDIA, node_ohttp_path,
    parse_problem,
};
use cloister_tests::stack::{LOGGED_MANIFEST, NodeSpec, Stack, runtime};
use hyper::Method;

const TOKENS: usize = 200;
const DEVICES: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Spent,
    /// Any other refusal or failure, by name.
    Failed(String),
}

async fn relay_exchange(
    relay: &str,
    method: Method,
    path: &str,
    body: Vec<u8>,
) -> Result<Upstreamed, String> {
    let ct = (method == Method::POST).then_some(OHTTP_REQ_MEDIA);
    exchange_tcp(
        relay,
        method,
        path,
        ct,
        Bytes::from(body),
        Duration::from_secs(10),
        8 << 20,
    )
    .await
    .map_err(|e| format!("relay {e}"))
}

async fn outer_keys(relay: &str) -> Result<Vec<u8>, String> {
    let r = relay_exchange(relay, Method::GET, OHTTP_KEYS_PATH, Vec::new()).await?;
    if r.status != 200 {
        return Err(format!("keys: relay answered {}", r.status));
    }
    Ok(r.body.to_vec())
}

/// The problem kind of a non-200 answer.
fn kind(status: u16, body: &[u8]) -> String {
    parse_problem(body).map_or_else(
        || format!("{status} without a problem document"),
        |(k, _)| k,
    )
}

/// One echo to `node` paid with `token`, sealed to the node and to the gateway's current key.
async fn redeem(relay: &str, node: &NodeId, key_config: &[u8], token: &str) -> Outcome {
    let keys = match outer_keys(relay).await {
        Ok(k) => k,
        Err(e) => return Outcome::Failed(e),
    };
    let inner = envelope::node_request(key_config, "/v1/echo", "text/plain", b"fault")
        .expect("inner request");
    let headers: [(&str, &[u8]); 2] = [
        ("authorization", token.as_bytes()),
        ("content-type", OHTTP_REQ_MEDIA.as_bytes()),
    ];
    let sealed = envelope::gateway_request(
        &keys,
        "POST",
        &node_ohttp_path(node),
        &headers,
        &inner.bytes,
    )
    .expect("outer request");
    let r = match relay_exchange(relay, Method::POST, "/", sealed.bytes.clone()).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(e),
    };
    if r.status != 200 {
        return Outcome::Failed(format!(
            "relay answered {} ({})",
            r.status,
            kind(r.status, &r.body)
        ));
    }
    match sealed.open(&r.body) {
        Ok(d) if d.status == 200 => Outcome::Accepted,
        Ok(d) => match kind(d.status, &d.body).as_str() {
            "token-spent" => Outcome::Spent,
            other => Outcome::Failed(format!("gateway answered {} ({other})", d.status)),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_while_redeeming_loses_no_spend_and_accepts_no_token_twice() {
    gateway_killed_while_redeeming("cloister.attest=emulated").await;
}

/// The same crash with the node taking one request at a time, so that eight devices make it
/// shed (503, token refunded) in every run: a shed request is not one served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_killed_while_a_node_sheds_refunds_only_what_the_node_did_not_serve() {
    let shed =
        gateway_killed_while_redeeming("cloister.attest=emulated cloister.max_concurrent=1").await;
    assert!(
        shed >= 1,
        "the node shed no request: the case is not exercised"
    );
}

/// Runs the crash against one node started with `cmdline`; returns how many requests the node
/// shed.
async fn gateway_killed_while_redeeming(cmdline: &'static str) -> usize {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut stack = {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let spec = NodeSpec {
                id: "node-a",
                cmdline,
                models: None,
                logged: true,
            };
            Stack::start(&dir, &[spec], &[], 10)
        })
        .await
        .expect("stack")
    };
    let relay = stack.relay.authority().to_owned();

    // What a device learns inside the outer layer: the challenge, the node and its key.
    let keys = outer_keys(&relay).await.expect("keys");
    let sealed = envelope::gateway_request(&keys, "GET", NODES_PATH, &[], b"").expect("seal");
    let r = relay_exchange(&relay, Method::POST, "/", sealed.bytes.clone())
        .await
        .expect("directory");
    let d = sealed.open(&r.body).expect("opens");
    let directory = NodeDirectory::from_json(&d.body).expect("directory");
    let challenge = tokens::parse_challenge(&directory.token_challenge).expect("challenge");
    let node = directory.nodes[0].id.clone();
    let evidence = serde_json::to_vec(&directory.nodes[0].evidence).expect("json");
    let key_config = Arc::new(
        EvidenceBundle::from_json(&evidence)
            .expect("bundle")
            .key_config,
    );

    // 200 tokens from the issuer's key (the issuer's account quota is not under test here).
    let issuer = IssuerKey::load(&dir.path().join("issuer.pem")).expect("issuer key");
    let mut rng = choose::os_rng().expect("rng");
    let mut minted = Vec::new();
    for _ in 0..TOKENS {
        let (request, pending) =
            tokens::token_request(&mut rng, issuer.public_key(), &challenge).expect("request");
        let response = issuer
            .sign(issuer.parse_request(&request).expect("parses"))
            .await
            .expect("signs");
        let token = tokens::finish_token(pending, &response).expect("token");
        minted.push(token.expose().to_owned());
    }
    let minted = Arc::new(minted);

    // Eight devices redeem them; the gateway is killed and restarted after 40 acceptances.
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..DEVICES)
        .map(|_| {
            let (next, accepted, minted) = (next.clone(), accepted.clone(), minted.clone());
            let (relay, node, key_config) = (relay.clone(), node.clone(), key_config.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= TOKENS {
                        return seen;
                    }
                    let o = redeem(&relay, &node, &key_config, &minted[i]).await;
                    if o == Outcome::Accepted {
                        accepted.fetch_add(1, Ordering::SeqCst);
                    }
                    seen.push((i, o));
                }
            })
        })
        .collect();
    while accepted.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::task::block_in_place(|| stack.restart_gateway());
    let mut first = BTreeMap::new();
    for w in workers {
        for (i, o) in w.await.expect("worker") {
            first.insert(i, o);
        }
    }
    assert_eq!(first.len(), TOKENS);

    // Every token again, after the crash.
    let mut failures = BTreeMap::<String, usize>::new();
    let (mut spent_before, mut cut, mut cut_spent) = (0, 0, 0);
    for (i, token) in minted.iter().enumerate() {
        let again = redeem(&relay, &node, &key_config, token).await;
        match (&first[&i], &again) {
            (Outcome::Accepted, Outcome::Spent) => spent_before += 1,
            (Outcome::Accepted, other) => {
                panic!("token {i} accepted, then {other:?} after the crash")
            }
            (Outcome::Spent, _) => panic!("token {i} was spent before it was first presented"),
            (Outcome::Failed(why), Outcome::Spent) if why.contains("(overloaded)") => {
                panic!("token {i}: shed by the node ({why}) yet not refunded")
            }
            (Outcome::Failed(why), Outcome::Accepted | Outcome::Spent) => {
                *failures.entry(why.clone()).or_default() += 1;
                cut += 1;
                if again == Outcome::Spent {
                    cut_spent += 1;
                }
            }
            (Outcome::Failed(why), Outcome::Failed(now)) => {
                panic!("token {i}: {why}, then still {now} with the gateway back")
            }
        }
    }
    eprintln!(
        "gateway crash: {spent_before} accepted before and refused as spent after; {cut} cut by \
         the crash ({cut_spent} of them had been spent, {} accepted now); errors met: {failures:?}",
        cut - cut_spent
    );
    assert!(spent_before >= 40, "{spent_before}");

    // The store holds each token's nonce once. The node served (opened and answered, 200) at
    // least every request a device got an answer to and at most one per token: a request it
    // shed (503) was never opened, and its refunded token paid for the one served later. A
    // request the crash cut after the node answered was served and spent, its answer lost.
    let node = &stack.nodes[0];
    let (served, shed) = (node.answered("ohttp", 200), node.answered("ohttp", 503));
    let answered = spent_before + (cut - cut_spent);
    eprintln!(
        "the node served {served} requests and shed {shed}; {answered} answers reached devices"
    );
    stack.gateway.kill();
    let nonces =
        cloister_gateway::spent::redb_nonces(&dir.path().join("spent.redb")).expect("store");
    assert_eq!(nonces.len(), TOKENS, "every token spent, once");
    let unique: std::collections::BTreeSet<_> = nonces.iter().collect();
    assert_eq!(unique.len(), TOKENS);
    assert!(
        served <= TOKENS,
        "the node served {served} requests for {TOKENS} tokens"
    );
    assert!(
        served >= answered,
        "devices got {answered} answers but the node served {served}"
    );
    shed
}

/// A node restarted (so its ephemeral key is gone: what a key rotated away and revoked looks
/// like from outside) while the gateway's directory still lists the old key: the first device
/// to seal to it gets the node's named 422 `ohttp-unknown-key-id` (its token refunded) — and
/// the gateway, told so, fetches the directory again at once (its scheduled refresh is an
/// hour away here), so the next request is served with the new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_with_a_new_key_is_named_once_and_the_directory_catches_up() {
    const CMDLINE: &str = "cloister.attest=emulated";
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_owned();
    let mut stack = tokio::task::spawn_blocking(move || {
        let spec = NodeSpec {
            id: "node-a",
            cmdline: CMDLINE,
            models: None,
            logged: true,
        };
        Stack::start_with(&path, &[spec], &[], 100, &["--refresh", "3600"])
    })
    .await
    .expect("stack");
    let client = stack.client();
    let r = client
        .send("/v1/echo", "text/plain", b"first key")
        .await
        .expect("an echo before the restart");
    assert_eq!(r.body.expose(), b"first key");

    stack.nodes[0].kill();
    let _ = std::fs::remove_file(dir.path().join("node-a.sock"));
    stack.nodes[0] = runtime(
        dir.path(),
        "node-a",
        &stack.sp,
        &LOGGED_MANIFEST,
        CMDLINE,
        None,
    );
    let e = client
        .send("/v1/echo", "text/plain", b"stale key")
        .await
        .expect_err("sealed to a key the node no longer holds");
    // The new key's id is random: one restart in 255 draws the old id, and then the node
    // cannot tell a stale key from a tampered request.
    assert!(
        matches!(&e, ClientError::Gateway { status: 422, kind, .. } if kind == "ohttp-unknown-key-id")
            || matches!(&e, ClientError::Gateway { status: 400, kind, .. } if kind == "ohttp-decapsulation"),
        "{e}"
    );
    let r = client
        .send("/v1/echo", "text/plain", b"new key")
        .await
        .expect("the gateway fetched the node's new evidence");
    assert_eq!(r.body.expose(), b"new key");
    assert!(
        stack
            .all_logs()
            .contains("directory refreshed: a node could not open a request sealed to a key"),
        "the refresh was the gateway's answer to the node, not its schedule"
    );
}
