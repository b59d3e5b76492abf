//! Helpers shared by the development-mode tests: one emulated AMD secure processor per test
//! binary, HTTP over a Unix socket, evidence verification, inner OHTTP calls.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::AtomicBool;

use bhttp::{Message, Mode};
use bytes::Bytes;
use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_insecure_emulated_sp::EmulatedSp;
use cloister_measurement::{InsecureEmulatedRoot, Policy, SystemClock, TrustAnchor, Verifier};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

pub const MEASUREMENT: [u8; 48] = [0x6d; 48];

pub struct SharedSp {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: InsecureEmulatedRoot,
}

/// One emulated processor for the whole test binary (RSA-4096 key generation is slow).
pub fn sp() -> &'static SharedSp {
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

/// One HTTP/1.1 exchange over a Unix socket.
pub async fn http(
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

pub fn verifier() -> Verifier<SystemClock> {
    Verifier::new(
        TrustAnchor::InsecureEmulated(sp().root.clone()),
        Policy::default().with_snp_measurement(MEASUREMENT),
        SystemClock,
    )
}

pub fn bhttp_request(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"guest".to_vec(),
        path.as_bytes().to_vec(),
    );
    m.put_header("content-type", content_type);
    m.write_content(body);
    let mut out = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut out).expect("bhttp");
    out
}

/// Fetches and verifies evidence; returns the attested key config.
pub async fn attested_key(socket: &Path) -> Vec<u8> {
    let (status, ct, bundle) = http(socket, "GET", "/v1/evidence", None, vec![]).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    verifier()
        .verify_json(&bundle, b"")
        .expect("evidence verifies")
        .key_config
}

/// Encapsulates `path`+`body` to the key, posts it, decrypts the answer.
pub async fn call(
    socket: &Path,
    key_config: &[u8],
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Option<(u16, Vec<u8>)>) {
    let client = ohttp::ClientRequest::from_encoded_config(key_config).expect("key config");
    let (enc, ctx) = client
        .encapsulate(&bhttp_request(path, content_type, body))
        .expect("encapsulate");
    let (status, _, resp) = http(socket, "POST", "/v1/ohttp", Some("message/ohttp-req"), enc).await;
    if status != 200 {
        return (status, None);
    }
    let plain = ctx.decapsulate(&resp).expect("decapsulate response");
    let m = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp response");
    let inner = m.control().status().map(|s| s.code()).unwrap_or(0);
    (status, Some((inner, m.content().to_vec())))
}
