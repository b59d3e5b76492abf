//! Length hiding on the wire: what the relay forwards to the gateway, and what comes back, is
//! a bucket size whatever the chat — both OHTTP layers pad their Binary HTTP
//! (`cloister_protocol::padding`). A recorder stands between a relay and the gateway (where a
//! hostile relay operator, or anyone on that link, sees the bytes) and notes every size.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloister_protocol::access::OHTTP_REQ_MEDIA;
use cloister_protocol::media;
use cloister_protocol::padding::BUCKETS;
use cloister_protocol::workload::ECHO_PATH;
use cloister_tests::stack::{NodeSpec, Stack, relay_to};

/// RFC 9458 overhead of a request to an X25519/HKDF-SHA256/AES-128-GCM key: 7-byte header,
/// 32-byte encapsulated key, 16-byte tag.
const REQUEST_OVERHEAD: usize = 7 + 32 + 16;
/// …and of its response: a 16-byte response nonce (max(Nn, Nk)) and the tag.
const RESPONSE_OVERHEAD: usize = 16 + 16;

/// (request bytes, answer bytes) of each `message/ohttp-req` the relay forwarded.
type Seen = Arc<Mutex<Vec<(usize, usize)>>>;

/// An HTTP recorder in front of `gateway` (`HOST:PORT`); returns its base URL.
fn recorder(rt: &tokio::runtime::Runtime, gateway: String, seen: Seen) -> String {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(cloister_http::serve(
        listener,
        move |req: hyper::Request<hyper::body::Incoming>| {
            let gateway = gateway.clone();
            let seen = Arc::clone(&seen);
            async move {
                let method = req.method().clone();
                let path = req.uri().path().to_owned();
                let post = method == hyper::Method::POST;
                let Ok(body) = cloister_http::read_body(req.into_body(), 4 << 20).await else {
                    return cloister_http::reply(413, "text/plain", "too large");
                };
                let len = body.len();
                let content_type = post.then_some(OHTTP_REQ_MEDIA);
                match cloister_http::exchange_tcp(
                    &gateway,
                    method,
                    &path,
                    content_type,
                    body,
                    Duration::from_secs(60),
                    4 << 20,
                )
                .await
                {
                    Ok(answer) => {
                        if post {
                            seen.lock().expect("lock").push((len, answer.body.len()));
                        }
                        cloister_http::reply(answer.status, &answer.content_type, answer.body)
                    }
                    Err(e) => cloister_http::reply(502, "text/plain", Bytes::from(e)),
                }
            }
        },
        cloister_http::Options::default(),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    format!("http://{addr}")
}

/// A chat of `n` messages as the summariser takes it (the echo workload sends it back).
fn chat(n: usize) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let from = ["Maya", "Jonas", "Aiko"][i % 3];
            serde_json::json!({
                "from": from,
                "at": format!("2026-03-01T10:{:02}", i % 60),
                "text": format!("message {i}: can we move the dinner to Friday at 7.30pm?"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "messages": messages })).expect("json")
}

#[test]
fn the_relay_sees_only_bucket_sizes_and_one_size_per_bucket() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = NodeSpec {
        id: "node-a",
        cmdline: "cloister.attest=emulated",
        models: None,
        logged: true,
    };
    let mut stack = Stack::start(dir.path(), &[node], &[], 100);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let seen: Seen = Arc::default();
    let recorder = recorder(&rt, stack.gateway.authority().to_owned(), Arc::clone(&seen));
    stack.relay = relay_to(dir.path(), "relay-recorded", &format!("{recorder}/gateway"));
    let client = stack.client();

    let allowed_requests: Vec<usize> = BUCKETS.iter().map(|b| b + REQUEST_OVERHEAD).collect();
    let allowed_answers: Vec<usize> = BUCKETS.iter().map(|b| b + RESPONSE_OVERHEAD).collect();
    // Chats from 1 to 2,000 messages; 3 and 4 messages share the smallest bucket.
    let mut by_chat = BTreeMap::new();
    for n in [1, 3, 4, 10, 100, 500, 1000, 2000] {
        let body = chat(n);
        let before = seen.lock().expect("lock").len();
        let answer = rt
            .block_on(client.send(ECHO_PATH, media::JSON, &body))
            .unwrap_or_else(|e| panic!("chat of {n} messages ({} bytes): {e}", body.len()));
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body.expose(), &body[..], "the node echoes the chat");
        let sizes = seen.lock().expect("lock")[before..].to_vec();
        let last = *sizes.last().expect("the request went through the relay");
        by_chat.insert(n, (body.len(), last));
    }
    let all = seen.lock().expect("lock").clone();
    assert!(!all.is_empty());
    for (request, answer) in &all {
        assert!(
            allowed_requests.contains(request),
            "{request} bytes forwarded, not a bucket: {allowed_requests:?}"
        );
        assert!(
            allowed_answers.contains(answer),
            "{answer} bytes answered, not a bucket: {allowed_answers:?}"
        );
    }
    let (len3, wire3) = by_chat[&3];
    let (len4, wire4) = by_chat[&4];
    assert_ne!(len3, len4);
    assert_eq!(
        wire3, wire4,
        "two chats in one bucket look the same on the wire"
    );
    let (_, wire2000) = by_chat[&2000];
    assert!(wire2000.0 > wire3.0, "a long chat is in a larger bucket");
}
