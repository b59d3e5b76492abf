//! Workloads: what runs on a decrypted request. A workload sees one Binary HTTP request and
//! returns one response; it never sees keys, and nothing it handles is logged.

use std::sync::Arc;
use std::time::Instant;

use cloister_protocol::access::{PROBLEM_MEDIA, problem_json};
use cloister_protocol::media;
use cloister_protocol::workload::ECHO_PATH;
use zeroize::Zeroize;

/// A decrypted request (plaintext: zeroized on drop, never logged, never `Debug`-printed).
pub struct Request {
    /// Method (`GET`, `POST`, …).
    pub method: String,
    /// Path (`/v1/echo`).
    pub path: String,
    /// `content-type`, if given.
    pub content_type: Option<String>,
    /// Body.
    pub body: Vec<u8>,
    /// When the server stops waiting for the answer: a workload that can answer early with
    /// less (a shorter or extractive summary) should do so by then.
    pub deadline: Option<Instant>,
}

impl Drop for Request {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// A response to encrypt (plaintext: zeroized on drop).
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `content-type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Drop for Response {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Response {
    /// A JSON problem (RFC 9457, the contract's document) with a status.
    pub fn problem(status: u16, kind: &str, detail: &str) -> Self {
        Response {
            status,
            content_type: PROBLEM_MEDIA,
            body: problem_json(status, kind, detail),
        }
    }
}

/// A request handler inside the guest. Handlers are synchronous (inference is CPU-bound); the
/// server runs them on blocking threads under its concurrency limit and deadline.
pub trait Workload: Send + Sync {
    /// Handles one request.
    fn handle(&self, request: &Request) -> Response;
}

/// Returns the request body unchanged: the smallest workload that proves the whole path.
#[derive(Debug, Default)]
pub struct Echo;

impl Workload for Echo {
    fn handle(&self, request: &Request) -> Response {
        Response {
            status: 200,
            content_type: media::OCTET_STREAM,
            body: request.body.clone(),
        }
    }
}

/// Routes `(method, path)` to workloads.
#[derive(Default, Clone)]
pub struct Router {
    routes: Vec<(&'static str, &'static str, Arc<dyn Workload>)>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let routes: Vec<_> = self
            .routes
            .iter()
            .map(|(m, p, _)| format!("{m} {p}"))
            .collect();
        f.debug_struct("Router").field("routes", &routes).finish()
    }
}

impl Router {
    /// The routes every guest serves: `POST /v1/echo`.
    pub fn with_echo() -> Self {
        Router::default().route("POST", ECHO_PATH, Arc::new(Echo))
    }

    /// Adds a route.
    pub fn route(mut self, method: &'static str, path: &'static str, w: Arc<dyn Workload>) -> Self {
        self.routes.push((method, path, w));
        self
    }

    /// Dispatches a request: 404 for an unknown path, 405 for a known path with another method.
    pub fn dispatch(&self, request: &Request) -> Response {
        let mut path_known = false;
        for (method, path, w) in &self.routes {
            if *path == request.path {
                path_known = true;
                if *method == request.method {
                    return w.handle(request);
                }
            }
        }
        if path_known {
            Response::problem(405, "method-not-allowed", "this path takes another method")
        } else {
            Response::problem(404, "not-found", "no workload serves this path")
        }
    }
}
