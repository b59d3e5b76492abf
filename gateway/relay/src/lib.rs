//! The OHTTP relay (RFC 9458 §4's "Oblivious Relay Resource"), run by a third party: it sees
//! who asks but not what (the request is encapsulated to the gateway's key); the gateway sees
//! what (after decapsulating the outer layer) but not who.
//!
//! `POST /` with `Content-Type: message/ohttp-req` is forwarded to a configured gateway (the
//! operator's gateways take turns; one that cannot be connected to is passed over for the next,
//! since nothing was sent to it — so a gateway restarting loses no request) as a new request carrying only `Host`, `Content-Type` and `Content-Length` — no client
//! address, no `Forwarded`/`X-Forwarded-For`/`Via`, no cookie, no user agent — and the
//! gateway's `message/ohttp-res` comes back the same way. Bodies are capped, the exchange has a
//! deadline, requests in flight are bounded (503 beyond), nothing is kept. Logs carry status
//! and time only. `GET /ohttp-keys` fetches the gateway's key configuration the same way (it is
//! public; the device needs it before its first request). The gateway's own refusals (4xx and
//! 503 problem documents, e.g. a stale key id) come back as they are; anything else from the
//! gateway is a 502. `GET /healthz` answers `ok`.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use tokio::sync::Semaphore;

use cloister_http::pool::Pool;
use cloister_http::{
    BodyPace, Options, Reply, Upstreamed, overloaded, problem, read_body_paced, reply,
};
use cloister_protocol::access::{
    HEALTH_PATH, OHTTP_KEYS_MEDIA, OHTTP_KEYS_PATH, OHTTP_REQ_MEDIA, OHTTP_RES_MEDIA,
    PROBLEM_MEDIA, RELAY_PATH,
};
use cloister_protocol::media;

pub use cloister_http::Upstream;

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The operator's gateways (at least one; they share the outer key set).
    pub upstreams: Vec<Upstream>,
    /// Largest request or response body.
    pub max_body: usize,
    /// Deadline of a whole exchange with the gateway.
    pub timeout: Duration,
    /// Requests in flight at once; more get 503.
    pub max_in_flight: usize,
    /// How fast a request body must arrive (read before a slot is taken).
    pub body_pace: BodyPace,
}

/// Serves the relay on `listener` until the task is dropped.
pub async fn serve(config: RelayConfig, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(config, listener, std::future::pending(), Duration::ZERO).await
}

/// Serves the relay until `shutdown`, then lets exchanges in flight finish for up to `drain`.
pub async fn serve_until(
    config: RelayConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    serve_over(config, listener, None, shutdown, drain).await
}

/// [`serve_until`] over TLS (see `cloister_http::tls`).
pub async fn serve_tls_until(
    config: RelayConfig,
    listener: tokio::net::TcpListener,
    tls: cloister_http::tls::TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    serve_over(config, listener, Some(tls), shutdown, drain).await
}

async fn serve_over(
    config: RelayConfig,
    listener: tokio::net::TcpListener,
    tls: Option<cloister_http::tls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let pools = Gateways {
        pools: config
            .upstreams
            .iter()
            .map(|u| (u.clone(), Pool::new(&u.authority, 64)))
            .collect(),
        next: AtomicUsize::new(0),
    };
    let state = Arc::new((config.clone(), Semaphore::new(config.max_in_flight), pools));
    let handler = move |req| {
        let state = state.clone();
        async move { handle(&state.0, &state.1, &state.2, req).await }
    };
    let options = Options::default();
    match tls {
        Some(tls) => {
            cloister_http::serve_tls(listener, tls, handler, options, shutdown, drain).await
        }
        None => cloister_http::serve(listener, handler, options, shutdown, drain).await,
    }
}

/// The gateways, each with its keep-alive pool, taken in turn.
struct Gateways {
    pools: Vec<(Upstream, Pool)>,
    next: AtomicUsize,
}

impl Gateways {
    /// One exchange with the next gateway in turn; a gateway that cannot be connected to (no
    /// byte of the request reached it) is passed over for the next, each tried once.
    async fn exchange(
        &self,
        method: Method,
        path: Option<&str>,
        content_type: Option<&'static str>,
        body: Bytes,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Upstreamed, &'static str> {
        let n = self.pools.len();
        if n == 0 {
            return Err(cloister_http::pool::UNREACHABLE);
        }
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Err(cloister_http::pool::UNREACHABLE);
        for i in 0..n {
            let (upstream, pool) = &self.pools[(first + i) % n];
            let path = path.unwrap_or(&upstream.path);
            last = pool
                .exchange(
                    method.clone(),
                    path,
                    content_type,
                    body.clone(),
                    timeout,
                    max_body,
                )
                .await;
            match last {
                Err(cloister_http::pool::UNREACHABLE) => continue,
                _ => return last,
            }
        }
        last
    }
}

async fn handle(
    config: &RelayConfig,
    permits: &Semaphore,
    pool: &Gateways,
    req: hyper::Request<Incoming>,
) -> Reply {
    let started = Instant::now();
    let reply = match (req.method(), req.uri().path()) {
        (&Method::GET, HEALTH_PATH) => reply(200, media::TEXT, &b"ok\n"[..]),
        (&Method::POST, RELAY_PATH) => relay(config, permits, pool, req).await,
        (&Method::GET, OHTTP_KEYS_PATH) => keys(config, permits, pool).await,
        (_, RELAY_PATH) => problem(405, "method-not-allowed", "POST an OHTTP request"),
        _ => problem(404, "not-found", "no such route"),
    };
    tracing::info!(
        status = reply.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "relayed"
    );
    reply
}

async fn relay(
    config: &RelayConfig,
    permits: &Semaphore,
    pool: &Gateways,
    req: hyper::Request<Incoming>,
) -> Reply {
    let is_ohttp = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| media::is(v, OHTTP_REQ_MEDIA));
    if !is_ohttp {
        return problem(415, "unsupported-media-type", "expected message/ohttp-req");
    }
    // The body is read before a slot is taken, under a deadline and a minimum rate: slow
    // clients hold connections (bounded, and each ended within the pace's deadline), never
    // the slots that exchanges with the gateway need.
    let body = match read_body_paced(req.into_body(), config.max_body, config.body_pace).await {
        Ok(b) => b,
        Err(e) => return e.problem(),
    };
    let Ok(_permit) = permits.try_acquire() else {
        return overloaded();
    };
    let answer = pool
        .exchange(
            Method::POST,
            None,
            Some(OHTTP_REQ_MEDIA),
            body,
            config.timeout,
            config.max_body,
        )
        .await;
    pass_back(answer, OHTTP_RES_MEDIA)
}

/// The gateway's key configuration list, fetched afresh (nothing of the client goes with it).
async fn keys(config: &RelayConfig, permits: &Semaphore, pool: &Gateways) -> Reply {
    let Ok(_permit) = permits.try_acquire() else {
        return overloaded();
    };
    let answer = pool
        .exchange(
            Method::GET,
            Some(OHTTP_KEYS_PATH),
            None,
            Bytes::new(),
            config.timeout,
            config.max_body,
        )
        .await;
    pass_back(answer, OHTTP_KEYS_MEDIA)
}

/// The gateway's answer as the client gets it: a 200 of the expected type, or the gateway's own
/// refusal (a 4xx or 503 problem document: the device must know why, e.g. a stale key id);
/// anything else is the relay's 502, a timeout its 504.
fn pass_back(answer: Result<Upstreamed, &'static str>, expected: &'static str) -> Reply {
    let a = match answer {
        Ok(a) => a,
        Err("did not answer in time") => {
            return problem(504, "gateway-timeout", "the gateway did not answer in time");
        }
        Err(why) => return problem(502, "bad-gateway", &format!("the gateway {why}")),
    };
    let ct = a.content_type.to_ascii_lowercase();
    if a.status == 200 && ct == expected {
        return reply(200, expected, a.body);
    }
    let refusal = (400..500).contains(&a.status) || a.status == 503;
    if refusal && ct == PROBLEM_MEDIA {
        return reply(a.status, PROBLEM_MEDIA, a.body);
    }
    problem(
        502,
        "bad-gateway",
        "the gateway did not answer with the expected media type",
    )
}
