//! The relay between a client and a stand-in gateway on loopback: what reaches the gateway is
//! the body and nothing of the client; every failure is a named problem within the deadline.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cloister_relay::{RelayConfig, serve};
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// What the stand-in gateway saw: each request's header names and body.
type Seen = Arc<Mutex<Vec<(Vec<String>, Vec<u8>)>>>;

/// A gateway that answers `/ok` with the body reversed, `/slow` after 5 s, `/bad` with 500,
/// `/big` with 2 MiB.
async fn gateway() -> (u16, Seen) {
    let (port, seen, _) = counted_gateway().await;
    (port, seen)
}

/// [`gateway`], also counting the connections it accepted.
async fn counted_gateway() -> (u16, Seen, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let names = req.headers().keys().map(|k| k.to_string()).collect();
                        let body = req.into_body().collect().await.expect("body").to_bytes();
                        record.lock().expect("lock").push((names, body.to_vec()));
                        let mut out: Vec<u8> = body.iter().rev().copied().collect();
                        let mut status = 200;
                        match path.as_str() {
                            "/slow" => tokio::time::sleep(Duration::from_secs(5)).await,
                            "/bad" => status = 500,
                            "/big" => out = vec![0; 2 << 20],
                            _ => {}
                        }
                        let mut r = hyper::Response::new(Full::new(Bytes::from(out)));
                        *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                        r.headers_mut()
                            .insert("content-type", "message/ohttp-res".parse().expect("value"));
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, seen, accepted)
}

async fn relay(gateway: u16, path: &str) -> u16 {
    relay_to(&[gateway], path).await
}

/// A relay in front of the gateways on `ports`, all at `path`.
async fn relay_to(ports: &[u16], path: &str) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = RelayConfig {
        upstreams: ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}{path}").parse().expect("url"))
            .collect(),
        max_body: 1 << 20,
        timeout: Duration::from_secs(1),
        max_in_flight: 64,
        body_pace: cloister_http::BodyPace::default(),
    };
    tokio::spawn(serve(config, listener));
    port
}

/// One request from a "client" that sends identifying headers.
async fn post(port: u16, content_type: &str, body: Vec<u8>) -> (u16, String, Vec<u8>) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method("POST")
        .uri("/")
        .header("host", "relay.example")
        .header("content-type", content_type)
        .header("user-agent", "phone/1.0")
        .header("cookie", "session=abc")
        .header("x-forwarded-for", "203.0.113.7")
        .header("forwarded", "for=203.0.113.7")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let res = send.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, ctype, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_gets_the_body_and_nothing_of_the_client() {
    let (gw, seen) = gateway().await;
    let port = relay(gw, "/ok").await;
    let (status, ctype, body) = post(port, "message/ohttp-req", b"encapsulated".to_vec()).await;
    assert_eq!((status, ctype.as_str()), (200, "message/ohttp-res"));
    assert_eq!(body, b"detaluspacne");
    let seen = seen.lock().expect("lock");
    let (names, body) = &seen[0];
    assert_eq!(body, b"encapsulated");
    let mut names = names.clone();
    names.sort();
    assert_eq!(
        names,
        ["content-length", "content-type", "host"],
        "only these reach the gateway"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_a_named_problem() {
    let (gw, seen) = gateway().await;
    let ok = relay(gw, "/ok").await;
    let (s, ctype, _) = post(ok, "application/json", b"{}".to_vec()).await;
    assert_eq!((s, ctype.as_str()), (415, "application/problem+json"));
    let (s, _, _) = post(ok, "message/ohttp-req", vec![0; (1 << 20) + 1]).await;
    assert_eq!(s, 413);
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing refused reached the gateway"
    );

    let started = std::time::Instant::now();
    let (s, _, body) = post(relay(gw, "/slow").await, "message/ohttp-req", b"x".to_vec()).await;
    assert_eq!(s, 504, "{}", String::from_utf8_lossy(&body));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "within the deadline"
    );
    let (s, _, _) = post(relay(gw, "/bad").await, "message/ohttp-req", b"x".to_vec()).await;
    assert_eq!(s, 502);
    let (s, _, _) = post(relay(gw, "/big").await, "message/ohttp-req", b"x".to_vec()).await;
    assert_eq!(s, 502);
    // A gateway that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let gone = closed.local_addr().expect("addr").port();
    drop(closed);
    let (s, _, _) = post(relay(gone, "/").await, "message/ohttp-req", b"x".to_vec()).await;
    assert_eq!(s, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_exchange_in_flight_finish_and_accepts_no_more() {
    let (gw, _seen) = gateway().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = RelayConfig {
        upstreams: vec![format!("http://127.0.0.1:{gw}/slow").parse().expect("url")],
        max_body: 1 << 20,
        timeout: Duration::from_secs(30),
        max_in_flight: 64,
        body_pace: cloister_http::BodyPace::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cloister_relay::serve_until(
        config,
        listener,
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(20),
    ));
    // A 5-second exchange starts; the relay is told to stop one second into it.
    let in_flight = tokio::spawn(post(port, "message/ohttp-req", b"late".to_vec()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send(()).expect("stop");
    let (status, _, body) = in_flight.await.expect("request task");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"etal"[..]),
        "drained, not dropped"
    );
    server
        .await
        .expect("server task")
        .expect("the relay stops cleanly");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "no new connection after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_share_one_warm_connection_to_the_gateway() {
    let (gw, seen, accepted) = counted_gateway().await;
    let port = relay(gw, "/ok").await;
    for i in 0..5u8 {
        let (status, _, body) = post(port, "message/ohttp-req", vec![i, 1]).await;
        assert_eq!((status, body), (200, vec![1, i]));
    }
    assert_eq!(seen.lock().expect("lock").len(), 5);
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one keep-alive connection carried all five"
    );
}

/// Sends a request head, then one body byte every 200 ms; the status and when it came.
async fn trickler(port: u16) -> (u16, std::time::Duration) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = std::time::Instant::now();
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut read, mut write) = s.into_split();
    let head = "POST / HTTP/1.1\r\nHost: relay.example\r\nContent-Type: message/ohttp-req\r\n\
                Content-Length: 4000\r\n\r\n";
    write.write_all(head.as_bytes()).await.expect("head");
    let trickle = tokio::spawn(async move {
        for _ in 0..4000 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
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
async fn trickling_clients_hold_no_slot_and_are_ended_within_the_pace() {
    let (gw, _seen) = gateway().await;
    let port = relay(gw, "/ok").await;
    // More tricklers than the relay has slots (64).
    let tricklers: Vec<_> = (0..96).map(|_| tokio::spawn(trickler(port))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let (status, _, body) = post(port, "message/ohttp-req", vec![1, 2]).await;
    assert_eq!(
        (status, body),
        (200, vec![2, 1]),
        "served while they trickle"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    for t in tricklers {
        let (status, took) = t.await.expect("trickler");
        assert_eq!(status, 408, "after {took:?}");
        assert!(took < Duration::from_secs(6), "{took:?}");
    }
}

/// The operator's gateways take turns; one that is down (restarting) is passed over: no
/// request is lost, and none reaches a gateway twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_take_turns_and_one_that_is_down_is_passed_over() {
    let (a, seen_a) = gateway().await;
    let (b, seen_b) = gateway().await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let port = relay_to(&[a, down, b], "/ok").await;
    for i in 0..12u8 {
        let (status, _, body) = post(port, "message/ohttp-req", vec![i, 1]).await;
        assert_eq!((status, body), (200, vec![1, i]));
    }
    let (na, nb) = (
        seen_a.lock().expect("lock").len(),
        seen_b.lock().expect("lock").len(),
    );
    assert_eq!(na + nb, 12, "each request reached exactly one gateway");
    assert!(na >= 4 && nb >= 4, "both took turns: {na} and {nb}");
}
