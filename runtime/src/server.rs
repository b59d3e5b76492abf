//! HTTP/1.1 over vsock (in the guest) or a Unix socket (development), with limits.
//!
//! Routes (ARCHITECTURE.md, "The request path"):
//! * `GET /v1/evidence[?nonce=HEX]` → `application/json` evidence bundle (cached per key
//!   without a nonce);
//! * `POST /v1/ohttp` (`message/ohttp-req`) → `message/ohttp-res`;
//! * `GET /healthz` → `ok`.
//!
//! Limits: request body size (413), requests processed at once (503 with `Retry-After`, never
//! a queue that grows), per-request deadline (504), connections at once, header read timeout.
//! Errors are `application/problem+json`. Logs carry route, status, sizes and time — never
//! content, keys, nonces or report data.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::evidence::EvidenceService;
use crate::gateway;
use crate::keys::KeyRing;
use crate::workload::Router;

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body: usize,
    /// Requests processed at once; more are refused with 503.
    pub max_concurrent: usize,
    /// Deadline of one request.
    pub deadline: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Where to listen.
#[derive(Debug, Clone)]
pub enum Listen {
    /// AF_VSOCK, any CID, this port (in the guest).
    Vsock(u32),
    /// A Unix socket (development mode).
    Unix(PathBuf),
}

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: String,
        /// OS error.
        source: std::io::Error,
    },
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct AppState {
    /// The ephemeral keys.
    pub keys: RwLock<KeyRing>,
    /// Evidence for them.
    pub evidence: EvidenceService,
    /// Workloads.
    pub router: Router,
    /// Limits.
    pub limits: Limits,
    permits: Arc<Semaphore>,
}

impl AppState {
    /// Assembles the state.
    pub fn new(keys: KeyRing, evidence: EvidenceService, router: Router, limits: Limits) -> Self {
        AppState {
            keys: RwLock::new(keys),
            evidence,
            router,
            permits: Arc::new(Semaphore::new(limits.max_concurrent)),
            limits,
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

type Reply = hyper::Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn problem(status: u16, kind: &str, detail: &str) -> Reply {
    use cloister_protocol::access::{PROBLEM_MEDIA, problem_json};
    reply(status, PROBLEM_MEDIA, problem_json(status, kind, detail))
}

fn nonce_from_query(query: Option<&str>) -> Result<Vec<u8>, &'static str> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    let mut nonce = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("nonce", v)) if nonce.is_none() => nonce = Some(v),
            _ => return Err("the only query parameter is nonce=HEX, once"),
        }
    }
    match nonce {
        None => Ok(Vec::new()),
        Some(v) if v.len() > 2 * cloister_protocol::binding::MAX_NONCE_LEN => {
            Err("nonce is longer than 64 bytes")
        }
        Some(v) => hex::decode(v).map_err(|_| "nonce is not hex"),
    }
}

async fn evidence(state: Arc<AppState>, query: Option<String>) -> Reply {
    let nonce = match nonce_from_query(query.as_deref()) {
        Ok(n) => n,
        Err(why) => return problem(400, "bad-nonce", why),
    };
    let epoch = match state.keys.read() {
        Ok(k) => k.current(),
        Err(_) => return problem(500, "internal", "key ring unavailable"),
    };
    let s = Arc::clone(&state);
    let result = tokio::task::spawn_blocking(move || s.evidence.bundle(&epoch, &nonce)).await;
    match result {
        Ok(Ok(json)) => reply(200, "application/json", Bytes::from(json.as_ref().clone())),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "evidence unavailable");
            problem(
                500,
                "attestation-failed",
                "the attester could not produce evidence",
            )
        }
        Err(_) => problem(500, "internal", "evidence task failed"),
    }
}

async fn ohttp(state: Arc<AppState>, req: hyper::Request<Incoming>) -> Reply {
    let ct = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    if ct != Some("message/ohttp-req") {
        return problem(415, "unsupported-media-type", "expected message/ohttp-req");
    }
    // An OHTTP request is the inner request plus a header, a KEM share and an AEAD tag.
    let cap = state.limits.max_body + 256;
    let body = match Limited::new(req.into_body(), cap).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return problem(413, "too-large", "request body exceeds the limit"),
    };
    let Ok(permit) = Arc::clone(&state.permits).try_acquire_owned() else {
        let mut r = problem(503, "overloaded", "too many requests in progress; retry");
        r.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
        return r;
    };
    let s = Arc::clone(&state);
    // The workload is told a deadline a little before the server's, so that an early answer
    // (a shorter or extractive summary) is encrypted and sent before the server gives up.
    let limit = state.limits.deadline;
    let deadline = Instant::now() + limit - (limit / 20).min(Duration::from_secs(1));
    let work = tokio::task::spawn_blocking(move || {
        // The permit is held until the work is really over, even past the deadline, so
        // abandoned work still counts against the limit.
        let _permit = permit;
        // The key ring's lock is held only for the lookup, never while the workload runs, so
        // a long request cannot hold up key rotation.
        let find = |key_id| {
            s.keys
                .read()
                .ok()
                .and_then(|ring| ring.find(key_id, now_unix()))
        };
        gateway::handle_with(find, &s.router, &body, Some(deadline))
    });
    match tokio::time::timeout(state.limits.deadline, work).await {
        Err(_) => problem(
            504,
            "deadline",
            "the request did not finish within its deadline",
        ),
        Ok(Err(_)) => problem(500, "internal", "request task failed"),
        Ok(Ok(Err(e))) => problem(e.status(), e.kind(), &e.to_string()),
        Ok(Ok(Ok((sealed, outcome)))) => {
            tracing::debug!(
                key_id = outcome.key_id,
                inner_status = outcome.inner_status,
                "ohttp"
            );
            reply(200, "message/ohttp-res", sealed)
        }
    }
}

async fn route(state: Arc<AppState>, req: hyper::Request<Incoming>) -> Reply {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let (route, reply) = match (req.method(), path.as_str()) {
        (&Method::GET, "/v1/evidence") => {
            let q = req.uri().query().map(str::to_owned);
            ("evidence", evidence(state, q).await)
        }
        (&Method::POST, "/v1/ohttp") => ("ohttp", ohttp(state, req).await),
        (&Method::GET, "/healthz") => ("healthz", reply(200, "text/plain", "ok")),
        (_, "/v1/evidence" | "/v1/ohttp" | "/healthz") => (
            "other",
            problem(405, "method-not-allowed", "wrong method for this path"),
        ),
        _ => ("other", problem(404, "not-found", "no such route")),
    };
    tracing::info!(
        route,
        status = reply.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    reply
}

/// Serves HTTP/1.1 on one accepted connection until it closes (also what the fuzz target
/// drives with arbitrary bytes).
pub async fn serve_connection<S>(state: Arc<AppState>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = Arc::clone(&state);
        async move { Ok::<_, std::convert::Infallible>(route(state, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Rotates keys in the background.
pub fn spawn_rotation(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if let Ok(mut ring) = state.keys.write() {
                match ring.rotate_if_due(now_unix()) {
                    Ok(true) => tracing::info!(keys = ?ring.key_ids(), "rotated the OHTTP key"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "key rotation failed"),
                }
            }
        }
    })
}

/// Listens, calls `ready` once the socket accepts connections, and serves until `shutdown`
/// resolves.
pub async fn serve(
    state: Arc<AppState>,
    listen: Listen,
    ready: impl FnOnce(),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let conns = Arc::new(Semaphore::new(state.limits.max_connections));
    tokio::pin!(shutdown);
    macro_rules! accept_loop {
        ($listener:expr) => {
            loop {
                tokio::select! {
                    _ = &mut shutdown => return Ok(()),
                    accepted = $listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let Ok(permit) = Arc::clone(&conns).try_acquire_owned() else {
                            // Over the connection limit: close at once.
                            drop(stream);
                            continue;
                        };
                        let state = Arc::clone(&state);
                        tokio::spawn(async move {
                            serve_connection(state, stream).await;
                            drop(permit);
                        });
                    }
                }
            }
        };
    }
    match listen {
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener =
                tokio::net::UnixListener::bind(&path).map_err(|source| ServerError::Listen {
                    addr: path.display().to_string(),
                    source,
                })?;
            ready();
            accept_loop!(listener)
        }
        Listen::Vsock(port) => {
            let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
            let listener =
                tokio_vsock::VsockListener::bind(addr).map_err(|source| ServerError::Listen {
                    addr: format!("vsock port {port}"),
                    source,
                })?;
            ready();
            accept_loop!(listener)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::nonce_from_query;

    #[test]
    fn nonce_query() {
        assert_eq!(nonce_from_query(None), Ok(vec![]));
        assert_eq!(nonce_from_query(Some("nonce=0aff")), Ok(vec![0x0a, 0xff]));
        assert!(nonce_from_query(Some("nonce=zz")).is_err());
        assert!(nonce_from_query(Some("nonce=00&nonce=01")).is_err());
        assert!(nonce_from_query(Some("debug=1")).is_err());
        assert!(nonce_from_query(Some(&format!("nonce={}", "00".repeat(65)))).is_err());
    }
}
