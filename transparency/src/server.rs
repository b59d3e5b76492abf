//! `cloister-log serve`: the log over HTTP.
//!
//! * `GET /checkpoint` and `GET /tile/…` — the C2SP static files, read from the directory
//!   (any web server could serve them instead);
//! * `GET /bundle/<index>` — the entry's log proof (`cloister_protocol::LogProof`, JSON) under
//!   the current checkpoint;
//! * `GET /consistency/<old>/<new>` — a consistency proof, one base64 hash per line (the
//!   witness protocol's encoding);
//! * `POST /add` with `Authorization: Bearer <operator key>` — release records (a JSON record
//!   or an array of them), appended in their canonical encoding. Appends are serialised
//!   through one writer that takes every request waiting at once as one batch (one fsync
//!   round for all of them);
//! * `GET /healthz`.
//!
//! Errors are `application/problem+json`; logs carry the route and status, never the key.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_http::{Options, Reply, problem, read_body, reply};
use cloister_protocol::access::HEALTH_PATH;
use cloister_protocol::{media, tlog};
use hyper::Method;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use crate::{Log, LogError, ReleaseRecord};

/// Largest `POST /add` body.
const MAX_BODY: usize = 1 << 20;
/// Requests waiting for the writer before `POST /add` answers 503.
const QUEUE: usize = 1024;

type Batch = (
    Vec<Vec<u8>>,
    oneshot::Sender<Result<(u64, Vec<u8>), String>>,
);

/// A running log server's shared state.
#[derive(Debug)]
struct State {
    log: Arc<Log>,
    /// SHA-256 of the operator's API key (compared as digests: no timing on the key).
    key_digest: [u8; 32],
    writer: mpsc::Sender<Batch>,
}

fn log_problem(e: &LogError) -> Reply {
    match e {
        LogError::Range { .. } => problem(404, "not-in-log", &e.to_string()),
        _ => problem(500, "log", &e.to_string()),
    }
}

/// C2SP tlog-tiles: tiles and entry bundles are immutable ("caching headers SHOULD be
/// long-lived"); a partial tile of width W never changes either.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// C2SP tlog-tiles: the checkpoint is mutable ("SHOULD prevent caching beyond a few seconds").
const CHECKPOINT_CACHE: &str = "public, max-age=5";

fn cached(mut r: Reply, cache_control: &'static str) -> Reply {
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static(cache_control),
    );
    r
}

/// Whether an `Accept-Encoding` value admits gzip (RFC 9110 §12.5.3: `gzip` or `x-gzip`, or
/// `*`, with a q-value that is not 0).
fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .or_else(|| p.trim().strip_prefix("Q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        !q_zero
            && (coding.eq_ignore_ascii_case("gzip")
                || coding.eq_ignore_ascii_case("x-gzip")
                || coding == "*")
    })
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes)?;
    enc.finish()
}

/// Serves `log` on `listener` until the process ends; `api_key` authorises appends.
pub async fn serve(
    log: Log,
    api_key: Zeroizing<String>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    let log = Arc::new(log);
    let (tx, rx) = mpsc::channel(QUEUE);
    let writer_log = log.clone();
    tokio::task::spawn_blocking(move || writer(&writer_log, rx));
    let state = Arc::new(State {
        log,
        key_digest: Sha256::digest(api_key.trim().as_bytes()).into(),
        writer: tx,
    });
    let handler = move |req| {
        let state = state.clone();
        async move { route(&state, req).await }
    };
    cloister_http::serve(
        listener,
        handler,
        Options::default(),
        std::future::pending(),
        std::time::Duration::ZERO,
    )
    .await
}

async fn route(state: &Arc<State>, req: hyper::Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let reply = match (req.method(), path.as_str()) {
        (&Method::GET, HEALTH_PATH) => reply(200, media::TEXT, "ok\n"),
        (&Method::GET, tlog::CHECKPOINT_PATH) => checkpoint(state).await,
        (&Method::GET, p) if p.starts_with(tlog::TILE_PREFIX) => {
            let gzip_ok = req
                .headers()
                .get_all(hyper::header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(accepts_gzip);
            tile(state, &p[1..], gzip_ok).await
        }
        (&Method::GET, p) if p.starts_with(tlog::BUNDLE_PREFIX) => {
            bundle(state, &p[tlog::BUNDLE_PREFIX.len()..]).await
        }
        (&Method::GET, p) if p.starts_with(tlog::CONSISTENCY_PREFIX) => {
            consistency(state, &p[tlog::CONSISTENCY_PREFIX.len()..]).await
        }
        (&Method::POST, tlog::ADD_PATH) => add(state, req).await,
        (_, tlog::ADD_PATH | tlog::CHECKPOINT_PATH | HEALTH_PATH) => {
            problem(405, "method-not-allowed", "wrong method for this path")
        }
        _ => problem(404, "not-found", "no such route"),
    };
    tracing::info!(route = %route_name(&path), status = reply.status().as_u16(), "request");
    reply
}

fn route_name(path: &str) -> &str {
    path.split('/').nth(1).unwrap_or("")
}

async fn blocking<T: Send + 'static>(
    state: &Arc<State>,
    f: impl FnOnce(&Log) -> Result<T, LogError> + Send + 'static,
) -> Result<T, Reply> {
    let log = state.log.clone();
    match tokio::task::spawn_blocking(move || f(&log)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(log_problem(&e)),
        Err(_) => Err(problem(500, "internal", "the task failed")),
    }
}

async fn checkpoint(state: &Arc<State>) -> Reply {
    match blocking(state, |log| Ok(log.checkpoint()?.0)).await {
        Ok(bytes) => cached(reply(200, tlog::CHECKPOINT_MEDIA, bytes), CHECKPOINT_CACHE),
        Err(r) => r,
    }
}

/// A tile or bundle, if `rel` is a C2SP tile path (nothing else is read from the directory).
/// Entry bundles go gzip-compressed to a client that accepts it (C2SP tlog-tiles: "SHOULD be
/// compressed at the HTTP layer"); hash tiles are random bytes and go as they are.
async fn tile(state: &Arc<State>, rel: &str, gzip_ok: bool) -> Reply {
    let Some(rel) = crate::storage::tile_path(rel) else {
        return problem(404, "not-found", "not a tile path");
    };
    let bundle = rel.starts_with("tile/entries/");
    let path = state.log.dir().join(&rel);
    let read = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(path)?;
        if bundle && gzip_ok {
            gzip(&bytes).map(|z| (z, true))
        } else {
            Ok((bytes, false))
        }
    });
    match read.await {
        Ok(Ok((bytes, zipped))) => {
            let mut r = cached(reply(200, media::OCTET_STREAM, bytes), IMMUTABLE);
            if zipped {
                r.headers_mut().insert(
                    hyper::header::CONTENT_ENCODING,
                    hyper::header::HeaderValue::from_static("gzip"),
                );
            }
            if bundle {
                r.headers_mut().insert(
                    hyper::header::VARY,
                    hyper::header::HeaderValue::from_static("accept-encoding"),
                );
            }
            r
        }
        _ => problem(404, "not-found", "no such tile"),
    }
}

async fn bundle(state: &Arc<State>, index: &str) -> Reply {
    let Ok(index) = index.parse::<u64>() else {
        return problem(400, "bad-index", "the index is not a number");
    };
    match blocking(state, move |log| log.log_proof(index)).await {
        Ok(proof) => reply(200, media::JSON, proof.to_json()),
        Err(r) => r,
    }
}

async fn consistency(state: &Arc<State>, sizes: &str) -> Reply {
    let Some((old, new)) = tlog::parse_sizes(sizes) else {
        return problem(400, "bad-sizes", "expected /consistency/<old>/<new>");
    };
    match blocking(state, move |log| log.prove_consistency(old, new)).await {
        Ok(proof) => {
            let text: String = proof
                .iter()
                .map(|h| format!("{}\n", STANDARD.encode(h.0)))
                .collect();
            reply(200, media::TEXT, text)
        }
        Err(r) => r,
    }
}

async fn add(state: &Arc<State>, req: hyper::Request<Incoming>) -> Reply {
    let authorised = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| <[u8; 32]>::from(Sha256::digest(k.trim().as_bytes())) == state.key_digest);
    if !authorised {
        return problem(401, "unauthorised", "appends need the operator's key");
    }
    let body = match read_body(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return problem(413, "too-large", "the body exceeds 1 MiB"),
    };
    let records: Vec<ReleaseRecord> = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(a)) => match serde_json::from_value(a.into()) {
            Ok(r) => r,
            Err(e) => return problem(400, "bad-record", &e.to_string()),
        },
        Ok(one) => match serde_json::from_value(one) {
            Ok(r) => vec![r],
            Err(e) => return problem(400, "bad-record", &e.to_string()),
        },
        Err(e) => return problem(400, "bad-json", &e.to_string()),
    };
    let mut entries = Vec::with_capacity(records.len());
    for r in &records {
        match r.to_bytes() {
            Ok(b) => entries.push(b),
            Err(e) => return problem(400, "bad-record", &e.to_string()),
        }
    }
    if entries.is_empty() {
        return problem(400, "bad-record", "no record");
    }
    let count = entries.len() as u64;
    let (tx, rx) = oneshot::channel();
    if state.writer.try_send((entries, tx)).is_err() {
        return problem(503, "overloaded", "too many appends waiting; retry");
    }
    match rx.await {
        Ok(Ok((first, checkpoint))) => {
            let body = serde_json::json!({
                "indexes": (first..first + count).collect::<Vec<_>>(),
                "checkpoint": String::from_utf8_lossy(&checkpoint),
            });
            reply(200, media::JSON, body.to_string())
        }
        Ok(Err(e)) => problem(500, "log", &e),
        Err(_) => problem(500, "internal", "the writer stopped"),
    }
}

/// The one writer: waits for a request, takes every other one already waiting, appends them
/// as one batch and answers each with its first index.
fn writer(log: &Log, mut rx: mpsc::Receiver<Batch>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let entries: Vec<Vec<u8>> = batch.iter().flat_map(|(e, _)| e.iter().cloned()).collect();
        match log.append(&entries, |_| {}) {
            Ok(appended) => {
                let mut next = appended.first;
                for (e, reply) in batch {
                    let _ = reply.send(Ok((next, appended.checkpoint.clone())));
                    next += e.len() as u64;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "append failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }
}
