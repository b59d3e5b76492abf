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
use hyper::Method;
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use cloister_http::{Accept, Options, Reply, problem, read_body, reply};
use cloister_protocol::access::{HEALTH_PATH, OHTTP_REQ_MEDIA, OHTTP_RES_MEDIA};
use cloister_protocol::{media, node};

use crate::evidence::EvidenceService;
use crate::inner;
use crate::keys::{KeyRing, Now};
use crate::workload::Router;

pub use cloister_http::now_unix;

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

async fn evidence(state: Arc<AppState>, query: Option<String>) -> Reply {
    let nonce = match node::parse_nonce_query(query.as_deref()) {
        Ok(n) => n,
        Err(why) => return problem(400, "bad-nonce", &why.to_string()),
    };
    let epoch = match state.keys.read() {
        Ok(k) => k.current(),
        Err(_) => return problem(500, "internal", "key ring unavailable"),
    };
    let s = Arc::clone(&state);
    let result = tokio::task::spawn_blocking(move || s.evidence.bundle(&epoch, &nonce)).await;
    match result {
        Ok(Ok(json)) => reply(200, media::JSON, Bytes::from(json.as_ref().clone())),
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
    let ohttp = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| media::is(v, OHTTP_REQ_MEDIA));
    if !ohttp {
        return problem(415, "unsupported-media-type", "expected message/ohttp-req");
    }
    // An OHTTP request is the inner request plus a header, a KEM share and an AEAD tag.
    let cap = state.limits.max_body + 256;
    let body = match read_body(req.into_body(), cap).await {
        Ok(b) => b,
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
                .and_then(|ring| ring.find(key_id, Instant::now()))
        };
        inner::handle_with(find, &s.router, &body, Some(deadline))
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
            reply(200, OHTTP_RES_MEDIA, sealed)
        }
    }
}

async fn route(state: Arc<AppState>, req: hyper::Request<Incoming>) -> Reply {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let (route, reply) = match (req.method(), path.as_str()) {
        (&Method::GET, node::EVIDENCE_PATH) => {
            let q = req.uri().query().map(str::to_owned);
            ("evidence", evidence(state, q).await)
        }
        (&Method::POST, node::OHTTP_PATH) => ("ohttp", ohttp(state, req).await),
        (&Method::GET, HEALTH_PATH) => ("healthz", reply(200, media::TEXT, "ok")),
        (_, node::EVIDENCE_PATH | node::OHTTP_PATH | HEALTH_PATH) => (
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

fn options(limits: &Limits) -> Options {
    Options {
        max_connections: limits.max_connections,
        ..Options::default()
    }
}

/// Serves HTTP/1.1 on one accepted connection until it closes (also what the fuzz target
/// drives with arbitrary bytes).
pub async fn serve_connection<S>(state: Arc<AppState>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = state.limits;
    let handler = move |req| route(Arc::clone(&state), req);
    cloister_http::serve_connection(stream, handler, &options(&limits)).await;
}

/// vsock connections, for the shared accept loop.
struct Vsock(tokio_vsock::VsockListener);

impl Accept for Vsock {
    type Stream = tokio_vsock::VsockStream;
    async fn accept(&mut self) -> std::io::Result<Self::Stream> {
        self.0.accept().await.map(|(s, _)| s)
    }
}

/// Rotates keys in the background.
pub fn spawn_rotation(state: Arc<AppState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            if let Ok(mut ring) = state.keys.write() {
                match ring.rotate_if_due(Now::read()) {
                    Ok(true) => tracing::info!(keys = ?ring.key_ids(), "rotated the OHTTP key"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "key rotation failed"),
                }
            }
        }
    })
}

/// Listens, calls `ready` once the socket accepts connections, and serves until `shutdown`
/// resolves (connections beyond the limit are closed at once).
pub async fn serve(
    state: Arc<AppState>,
    listen: Listen,
    ready: impl FnOnce(),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServerError> {
    let options = options(&state.limits);
    let handler = move |req| route(Arc::clone(&state), req);
    let served = match listen {
        Listen::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener =
                tokio::net::UnixListener::bind(&path).map_err(|source| ServerError::Listen {
                    addr: path.display().to_string(),
                    source,
                })?;
            ready();
            cloister_http::serve(listener, handler, options, shutdown, Duration::ZERO).await
        }
        Listen::Vsock(port) => {
            let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, port);
            let listener =
                tokio_vsock::VsockListener::bind(addr).map_err(|source| ServerError::Listen {
                    addr: format!("vsock port {port}"),
                    source,
                })?;
            ready();
            cloister_http::serve(Vsock(listener), handler, options, shutdown, Duration::ZERO).await
        }
    };
    served.map_err(|source| ServerError::Listen {
        addr: "the listener".into(),
        source,
    })
}
