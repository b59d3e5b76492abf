//! Development mode, end to end without QEMU: the emulated AMD secure processor and the runtime
//! on Unix sockets; a client fetches evidence, verifies it with `measurement::Verifier` under
//! the insecure emulated anchor, and talks to the echo workload through inner OHTTP.
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bhttp::{Message, Mode};
use bytes::Bytes;
use cloister_measurement::emulated::EmulatedSnpSigner;
use cloister_measurement::emulated_sp::EmulatedSp;
use cloister_measurement::{InsecureEmulatedRoot, Policy, SystemClock, TrustAnchor, Verifier};
use cloister_runtime::attest::emulated::{EmulatedSnpAttester, SpAddress};
use cloister_runtime::evidence::EvidenceService;
use cloister_runtime::keys::KeyRing;
use cloister_runtime::server::{self, AppState, Limits, Listen};
use cloister_runtime::workload::{Request, Response, Router, Workload};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

const MEASUREMENT: [u8; 48] = [0x6d; 48];

struct SharedSp {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    root: InsecureEmulatedRoot,
}

/// One emulated processor for the whole test binary (RSA-4096 key generation is slow).
fn sp() -> &'static SharedSp {
    static SP: OnceLock<SharedSp> = OnceLock::new();
    SP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("sp.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind sp");
        let sp = EmulatedSp::new(
            EmulatedSnpSigner::from_seed(&[4u8; 32]).expect("emulated processor"),
            MEASUREMENT,
        );
        let root = sp.signer().insecure_root().expect("root");
        std::thread::spawn(move || {
            static STOP: AtomicBool = AtomicBool::new(false);
            if let Err(e) = sp.serve(listener, &STOP) {
                eprintln!("emulated processor stopped: {e}");
            }
        });
        SharedSp {
            _dir: dir,
            socket,
            root,
        }
    })
}

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
        server::now_unix(),
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

/// One HTTP/1.1 exchange over a Unix socket.
async fn http(
    socket: &Path,
    method: &str,
    uri: &str,
    ct: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Vec<u8>) {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "guest");
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, ct, body)
}

fn verifier() -> Verifier<SystemClock> {
    Verifier::new(
        TrustAnchor::InsecureEmulated(sp().root.clone()),
        Policy::default().with_snp_measurement(MEASUREMENT),
        SystemClock,
    )
}

fn bhttp_request(path: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"guest".to_vec(),
        path.as_bytes().to_vec(),
    );
    m.put_header("content-type", "application/octet-stream");
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut out).expect("bhttp");
    out
}

/// Fetches and verifies evidence; returns the attested key config.
async fn attested_key(g: &Guest) -> Vec<u8> {
    let (status, ct, bundle) = http(&g.socket, "GET", "/v1/evidence", None, vec![]).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    verifier()
        .verify_json(&bundle, b"")
        .expect("evidence verifies")
        .key_config
}

/// Encapsulates `path`+`body` to the key, posts it, decrypts the answer.
async fn call(
    g: &Guest,
    key_config: &[u8],
    path: &str,
    body: &[u8],
) -> (u16, Option<(u16, Vec<u8>)>) {
    let client = ohttp::ClientRequest::from_encoded_config(key_config).expect("key config");
    let (enc, ctx) = client
        .encapsulate(&bhttp_request(path, body))
        .expect("encapsulate");
    let (status, _, resp) = http(
        &g.socket,
        "POST",
        "/v1/ohttp",
        Some("message/ohttp-req"),
        enc,
    )
    .await;
    if status != 200 {
        return (status, None);
    }
    let plain = ctx.decapsulate(&resp).expect("decapsulate response");
    let m = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp response");
    let inner = m.control().status().map(|s| s.code()).unwrap_or(0);
    (status, Some((inner, m.content().to_vec())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_verifies_and_echo_answers_through_ohttp() {
    let g = start_guest(limits()).await;
    let key = attested_key(&g).await;
    let (status, inner) = call(&g, &key, "/v1/echo", b"summarise my unread messages").await;
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
    let (status, inner) = call(&g, &key, "/v1/nope", b"x").await;
    assert_eq!((status, inner.map(|i| i.0)), (200, Some(404)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_requests_get_their_errors_and_the_server_keeps_serving() {
    let g = start_guest(limits()).await;
    let key = attested_key(&g).await;
    let client = ohttp::ClientRequest::from_encoded_config(&key).expect("key config");
    let (enc, _) = client
        .encapsulate(&bhttp_request("/v1/echo", b"hello"))
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
        call(&g, &key, "/v1/echo", b"still here").await.1,
        Some((200, b"still here".to_vec()))
    );

    // Replay after the key was rotated away (and revoked): refused as an unknown key.
    assert_eq!(
        post(enc.clone()).await.0,
        200,
        "replay before rotation is answered"
    );
    g.state
        .keys
        .write()
        .expect("keys")
        .rotate_now(server::now_unix(), true)
        .expect("rotate");
    assert_eq!(post(enc).await.0, 422, "replay after rotation");
    let new_key = attested_key(&g).await;
    assert_ne!(new_key, key);
    assert_eq!(
        call(&g, &new_key, "/v1/echo", b"new key").await.1,
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
    let key = attested_key(&g).await;
    // Deadline: the slow workload takes 700 ms.
    assert_eq!(call(&g, &key, "/v1/slow", b"x").await.0, 504);
    // While that abandoned work still holds the only permit, a new request is shed.
    assert_eq!(call(&g, &key, "/v1/echo", b"x").await.0, 503);
    // Once it finishes, the server serves again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        call(&g, &key, "/v1/echo", b"ok").await.1,
        Some((200, b"ok".to_vec()))
    );
}
