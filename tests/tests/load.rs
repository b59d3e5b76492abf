//! Load on the whole way in (loopback, development-mode runtimes): 500 concurrent echo requests
//! through relay → gateway → runtime, each with its own token; none lost, none duplicated, each
//! answer the one its request asked for. The figures (throughput, p50/p99, and what the privacy
//! layers add to an unloaded request against the same node called directly) are printed, not
//! asserted: speed is a benchmark's business, correctness this test's.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bhttp::{Message, Mode};
use bytes::Bytes;
use cloister_tests::stack::{NodeSpec, Stack};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

const CONCURRENT: usize = 500;
const SEQUENTIAL: usize = 100;
const CMDLINE: &str = "cloister.attest=emulated cloister.max_concurrent=512";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One HTTP/1.1 exchange on the node's Unix socket (what the gateway does, minus the gateway).
async fn node_http(socket: &str, method: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "cloister-guest")
        .header("content-type", "message/ohttp-req")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let res = send.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.expect("body").to_bytes();
    (status, body.to_vec())
}

/// An echo straight to the node through the inner layer alone.
async fn direct_echo(socket: &str, key_config: &[u8], body: &[u8]) -> Vec<u8> {
    let mut m = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"cloister-guest".to_vec(),
        b"/v1/echo".to_vec(),
    );
    m.put_header("content-type", "application/octet-stream");
    m.write_content(body);
    let mut plain = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut plain).expect("bhttp");
    let (enc, ctx) = ohttp::ClientRequest::from_encoded_config(key_config)
        .expect("key")
        .encapsulate(&plain)
        .expect("seal");
    let (status, answer) = node_http(socket, "POST", "/v1/ohttp", enc).await;
    assert_eq!(status, 200);
    let plain = ctx.decapsulate(&answer).expect("open");
    Message::read_bhttp(&mut Cursor::new(&plain[..]))
        .expect("bhttp")
        .content()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_echoes_none_lost_none_duplicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = |id| NodeSpec {
        id,
        cmdline: CMDLINE,
        models: None,
        logged: true,
    };
    let stack = {
        let dir = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            Stack::start(&dir, &[spec("node-a"), spec("node-b")], &[], 10_000)
        })
        .await
        .expect("stack")
    };
    let client = Arc::new(stack.client());

    // Unloaded: the same echo directly to node-a (inner layer only) and through the way in.
    let reports = client.nodes().await.expect("nodes");
    let key_a = reports
        .iter()
        .find(|r| r.id.as_str() == "node-a")
        .and_then(|r| r.verified())
        .map(|v| v.key_config.clone())
        .expect("node-a verified");
    let socket_a = stack.nodes[0].url.trim_start_matches("unix:").to_owned();
    let mut direct = Vec::new();
    for i in 0..SEQUENTIAL {
        let body = format!("direct-{i}");
        let t = Instant::now();
        let back = direct_echo(&socket_a, &key_a, body.as_bytes()).await;
        direct.push(t.elapsed());
        assert_eq!(back, body.as_bytes());
    }
    let (mut exchange, mut session, mut token, mut total) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..SEQUENTIAL {
        let body = format!("sequential-{i}");
        let t = Instant::now();
        let r = client
            .send("/v1/echo", "application/octet-stream", body.as_bytes())
            .await
            .expect("echo");
        total.push(t.elapsed());
        assert_eq!((r.status, r.body.expose()), (200, body.as_bytes()));
        exchange.push(r.timings.exchange);
        session.push(r.timings.session);
        token.push(r.timings.token);
    }
    for v in [
        &mut direct,
        &mut exchange,
        &mut session,
        &mut token,
        &mut total,
    ] {
        v.sort();
    }

    // 500 at once.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CONCURRENT {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("concurrent-{i:04}");
            let t = Instant::now();
            let r = client
                .send("/v1/echo", "application/octet-stream", body.as_bytes())
                .await;
            (i, body, r, t.elapsed())
        }));
    }
    let mut answers = std::collections::BTreeSet::new();
    let mut latencies = Vec::new();
    let mut per_node = std::collections::BTreeMap::<String, usize>::new();
    for t in tasks {
        let (i, body, r, took) = t.await.expect("task");
        let r = r.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(r.status, 200, "request {i}");
        assert_eq!(
            r.body.expose(),
            body.as_bytes(),
            "request {i} got another's answer"
        );
        assert!(answers.insert(body), "request {i} answered twice");
        *per_node.entry(r.node.to_string()).or_default() += 1;
        latencies.push(took);
    }
    let wall = started.elapsed();
    assert_eq!(answers.len(), CONCURRENT, "none lost");
    latencies.sort();

    eprintln!("way-in load figures (2 echo nodes, loopback, development mode):");
    eprintln!(
        "  {CONCURRENT} concurrent: {:.1} requests/s ({:.2} s wall), p50 {:.1} ms, p99 {:.1} ms, per node {per_node:?}",
        CONCURRENT as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
    );
    eprintln!(
        "  unloaded, p50 (p99) of {SEQUENTIAL}: direct inner echo {:.3} ({:.3}) ms; exchange through relay+gateway {:.3} ({:.3}) ms; session {:.3} ms; token {:.3} ms; whole request {:.3} ms",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99)),
        ms(percentile(&exchange, 0.5)),
        ms(percentile(&exchange, 0.99)),
        ms(percentile(&session, 0.5)),
        ms(percentile(&token, 0.5)),
        ms(percentile(&total, 0.5)),
    );
    eprintln!(
        "  privacy layers add (exchange - direct, p50): {:.3} ms",
        ms(percentile(&exchange, 0.5)) - ms(percentile(&direct, 0.5))
    );
    assert_eq!(per_node.values().sum::<usize>(), CONCURRENT);
    assert_eq!(per_node.len(), 2, "both nodes served: {per_node:?}");
    drop(stack);
}
