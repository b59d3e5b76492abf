//! Slow devices and slow nodes must not lock anyone out (issue 25, item 8): a device that
//! trickles its body holds a connection for a bounded time and never a forwarding slot; a node
//! that never answers its evidence request bounds a directory refresh, not stalls it; and a
//! device whose request met a stale key hears so at once, not after the refresh it triggered.

mod common;

use std::time::{Duration, Instant};

use cloister_gateway::redeem::KeyEnd;
use cloister_issuer::IssuerKey;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use common::*;

/// A device that sends its request head, then one byte of its body every `every`; returns the
/// status the gateway answered with, and when.
async fn trickler(addr: String, every: Duration) -> (u16, Duration) {
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = "POST /gateway HTTP/1.1\r\nHost: gw.test\r\nContent-Type: message/ohttp-req\r\n\
                Content-Length: 4000\r\n\r\n";
    s.write_all(head.as_bytes()).await.expect("head");
    let (mut read, mut write) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..4000 {
            tokio::time::sleep(every).await;
            if write.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    trickle.abort();
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|a| a.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_bodies_hold_no_slot_and_are_ended_within_the_pace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = node(dir.path(), "n", Duration::ZERO);
    let s = start(
        &[("n", &n.socket)],
        redb(dir.path()),
        IssuerKey::generate().expect("key"),
        Duration::from_secs(10),
    )
    .await;
    // More tricklers than the gateway has slots (64).
    let tricklers: Vec<_> = (0..96)
        .map(|_| tokio::spawn(trickler(s.addr.clone(), Duration::from_millis(200))))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A device with a prompt body is served while they trickle.
    let t = token(&s.issuer, &s.challenge).await;
    let started = Instant::now();
    let r = call(&s, "POST", "/v1/nodes/n/ohttp", Some(&t), b"hi").await;
    assert_eq!(r, Outcome::Inner(200, b"echo:hi".to_vec()), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Each trickler is refused by name once the grace has passed, long before its body could
    // have ended (4,000 bytes at 5 a second: 800 s).
    for t in tricklers {
        let (status, took) = t.await.expect("trickler");
        assert_eq!(status, 408, "after {took:?}");
        assert!(took < Duration::from_secs(6), "{took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_bounds_a_refresh_and_a_stale_key_answer_does_not_wait_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = node_answering(dir.path(), "stale", Duration::ZERO, 422);
    let silent = silent_node(dir.path(), "silent");
    let s = start_tuned(
        &[("stale", &stale.socket), ("silent", &silent)],
        redb(dir.path()),
        IssuerKey::generate().expect("key"),
        Duration::from_secs(60),
        KeyEnd::Unlogged,
        Duration::from_secs(3),
    )
    .await;
    // All nodes are asked at once, each for at most the evidence timeout: the silent node
    // costs one timeout, not the 60 s a forwarded request may take.
    let started = Instant::now();
    s.gw.refresh().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(5),
        "{took:?}"
    );
    // The stale node's 422 triggers a refresh (which waits 3 s on the silent node); the device
    // has its answer before that.
    let t = token(&s.issuer, &s.challenge).await;
    let started = Instant::now();
    let r = call(&s, "POST", "/v1/nodes/stale/ohttp", Some(&t), b"x").await;
    assert!(matches!(r, Outcome::Inner(422, _)), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // And the 422 refunded the token: it pays for the next request.
    let r = call(&s, "POST", "/v1/nodes/stale/ohttp", Some(&t), b"x").await;
    assert!(matches!(r, Outcome::Inner(422, _)), "refunded: {r:?}");
}
