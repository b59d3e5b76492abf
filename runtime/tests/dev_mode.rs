//! Development mode, end to end without QEMU: the emulated AMD secure processor and the runtime
//! on Unix sockets; a client fetches evidence, verifies it with `measurement::Verifier` under
//! the insecure emulated anchor, and talks to the echo workload through inner OHTTP.
mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloister_runtime::attest::emulated::{EmulatedSnpAttester, SpAddress};
use cloister_runtime::evidence::EvidenceService;
use cloister_runtime::keys::{KeyRing, Now};
use cloister_runtime::server::{self, AppState, Limits, Listen};
use cloister_runtime::workload::{Request, Response, Router, Workload};
use common::{attested_key, bhttp_request, call, http, sp, verifier};

const OCTETS: &str = "application/octet-stream";

/// Sleeps, then echoes: for the overload and deadline tests.
struct Slow(Duration);
impl Workload for Slow {
    fn handle(&self, r: &Request) -> Response {
        std::thread::sleep(self.0);
        Response {
            status: 200,
            content_type: "application/octet-stream",
            body: r.body.clone(),
        }
    }
}

struct Guest {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    state: Arc<AppState>,
}

async fn start_guest(limits: Limits) -> Guest {
    let dir = tempfile::tempdir().expect("tempdir");
    let attester = Arc::new(EmulatedSnpAttester::new(SpAddress::Unix(
        sp().socket.clone(),
    )));
    let keys = KeyRing::new(
        Duration::from_secs(24 * 3600),
        Duration::from_secs(3600),
        Now::read(),
    )
    .expect("keys");
    let router = Router::with_echo().route(
        "POST",
        "/v1/slow",
        Arc::new(Slow(Duration::from_millis(700))),
    );
    let state = Arc::new(AppState::new(
        keys,
        EvidenceService::new(attester, [0x42; 32]),
        router,
        limits,
    ));
    let socket = dir.path().join("runtime.sock");
    let (s, path) = (Arc::clone(&state), socket.clone());
    tokio::spawn(async move {
        server::serve(s, Listen::Unix(path), || {}, std::future::pending()).await
    });
    for _ in 0..100 {
        if socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Guest {
        _dir: dir,
        socket,
        state,
    }
}

fn limits() -> Limits {
    Limits {
        max_body: 64 * 1024,
        max_concurrent: 4,
        deadline: Duration::from_secs(10),
        max_connections: 64,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_verifies_and_echo_answers_through_ohttp() {
    let g = start_guest(limits()).await;
    let key = attested_key(&g.socket).await;
    let (status, inner) = call(
        &g.socket,
        &key,
        "/v1/echo",
        OCTETS,
        b"summarise my unread messages",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(inner, Some((200, b"summarise my unread messages".to_vec())));

    // A fresh bundle bound to the client's nonce.
    let (status, _, bundle) = http(
        &g.socket,
        "GET",
        "/v1/evidence?nonce=00112233",
        None,
        vec![],
    )
    .await;
    assert_eq!(status, 200);
    verifier()
        .verify_json(&bundle, &[0, 0x11, 0x22, 0x33])
        .expect("nonce-bound evidence verifies");
    assert!(
        verifier().verify_json(&bundle, b"").is_err(),
        "a nonce-bound bundle is not the cached one"
    );

    // Unknown inner route: an encrypted 404, not an outer error.
    let (status, inner) = call(&g.socket, &key, "/v1/nope", OCTETS, b"x").await;
    assert_eq!((status, inner.map(|i| i.0)), (200, Some(404)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_requests_get_their_errors_and_the_server_keeps_serving() {
    let g = start_guest(limits()).await;
    let key = attested_key(&g.socket).await;
    let client = ohttp::ClientRequest::from_encoded_config(&key).expect("key config");
    let (enc, _) = client
        .encapsulate(&bhttp_request("/v1/echo", OCTETS, b"hello"))
        .expect("encapsulate");
    let post = |body: Vec<u8>| {
        http(
            &g.socket,
            "POST",
            "/v1/ohttp",
            Some("message/ohttp-req"),
            body,
        )
    };

    let mut wrong_key = enc.clone();
    wrong_key[0] ^= 0x80;
    assert_eq!(post(wrong_key).await.0, 422, "wrong key id");
    assert_eq!(
        post(enc[..enc.len() - 5].to_vec()).await.0,
        400,
        "truncated ciphertext"
    );
    let mut flipped = enc.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert_eq!(post(flipped).await.0, 400, "tampered ciphertext");
    assert_eq!(post(vec![]).await.0, 400, "empty body");
    assert_eq!(post(vec![0u8; 200 * 1024]).await.0, 413, "oversize body");
    let (status, _, _) = http(
        &g.socket,
        "POST",
        "/v1/ohttp",
        Some("text/plain"),
        enc.clone(),
    )
    .await;
    assert_eq!(status, 415, "wrong content type");
    let (status, _, _) = http(&g.socket, "GET", "/v1/evidence?nonce=xyz", None, vec![]).await;
    assert_eq!(status, 400, "bad nonce");

    // Still serving.
    assert_eq!(
        call(&g.socket, &key, "/v1/echo", OCTETS, b"still here")
            .await
            .1,
        Some((200, b"still here".to_vec()))
    );

    // A host replaying a sealed request (to time the workload again, or watch its memory
    // again): the first copy is answered, every later one refused before the workload runs.
    assert_eq!(post(enc.clone()).await.0, 200, "the first copy is answered");
    let (status, _, problem) = post(enc.clone()).await;
    assert_eq!(status, 400, "a replay is refused");
    assert!(
        String::from_utf8_lossy(&problem).contains("ohttp-replayed"),
        "{}",
        String::from_utf8_lossy(&problem)
    );
    // Replay after the key was rotated away (and revoked): refused as an unknown key.
    g.state
        .keys
        .write()
        .expect("keys")
        .rotate_now(Now::read(), true)
        .expect("rotate");
    assert_eq!(post(enc).await.0, 422, "replay after rotation");
    let new_key = attested_key(&g.socket).await;
    assert_ne!(new_key, key);
    assert_eq!(
        call(&g.socket, &new_key, "/v1/echo", OCTETS, b"new key")
            .await
            .1,
        Some((200, b"new key".to_vec()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_sheds_with_503_and_deadline_gives_504() {
    let g = start_guest(Limits {
        max_concurrent: 1,
        deadline: Duration::from_millis(300),
        ..limits()
    })
    .await;
    let key = attested_key(&g.socket).await;
    // Deadline: the slow workload takes 700 ms.
    assert_eq!(call(&g.socket, &key, "/v1/slow", OCTETS, b"x").await.0, 504);
    // While that abandoned work still holds the only permit, a new request is shed.
    assert_eq!(call(&g.socket, &key, "/v1/echo", OCTETS, b"x").await.0, 503);
    // Once it finishes, the server serves again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        call(&g.socket, &key, "/v1/echo", OCTETS, b"ok").await.1,
        Some((200, b"ok".to_vec()))
    );
}
