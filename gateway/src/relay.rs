//! The OHTTP relay (RFC 9458 §4's "Oblivious Relay Resource"), run by a third party: it sees
//! who asks but not what (the request is encapsulated to the gateway's key); the gateway sees
//! what (after decapsulating the outer layer) but not who.
//!
//! `POST /` with `Content-Type: message/ohttp-req` is forwarded to the one configured gateway
//! as a new request carrying only `Host`, `Content-Type` and `Content-Length` — no client
//! address, no `Forwarded`/`X-Forwarded-For`/`Via`, no cookie, no user agent — and the
//! gateway's `message/ohttp-res` comes back the same way. Bodies are capped, the exchange has a
//! deadline, requests in flight are bounded (503 beyond), nothing is kept. Logs carry status
//! and time only. `GET /ohttp-keys` fetches the gateway's key configuration the same way (it is
//! public; the device needs it before its first request). The gateway's own refusals (4xx and
//! 503 problem documents, e.g. a stale key id) come back as they are; anything else from the
//! gateway is a 502. `GET /healthz` answers `ok`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Method;
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use tokio::sync::Semaphore;

use cloister_protocol::access::{HEALTH_PATH, OHTTP_KEYS_MEDIA, OHTTP_KEYS_PATH, PROBLEM_MEDIA};

use crate::pool::Pool;
use crate::{Upstreamed, overloaded, problem, reply};

/// The media types of RFC 9458.
pub const REQUEST_TYPE: &str = "message/ohttp-req";
/// The response's media type.
pub const RESPONSE_TYPE: &str = "message/ohttp-res";

type Reply = hyper::Response<Full<Bytes>>;

/// Where the relay forwards to: `http://HOST:PORT/PATH` (TLS to the gateway is a terminator's
/// job in front of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `HOST:PORT`.
    pub authority: String,
    /// The gateway's resource path.
    pub path: String,
}

/// A gateway URL that is not `http://HOST:PORT/PATH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the gateway URL {0:?} is not http://HOST:PORT/PATH")]
pub struct UpstreamError(String);

impl std::str::FromStr for Upstream {
    type Err = UpstreamError;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let bad = || UpstreamError(url.chars().take(100).collect());
        let rest = url.strip_prefix("http://").ok_or_else(bad)?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() || path.contains(['?', '#', ' ']) {
            return Err(bad());
        }
        Ok(Upstream {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The one gateway.
    pub upstream: Upstream,
    /// Largest request or response body.
    pub max_body: usize,
    /// Deadline of a whole exchange with the gateway.
    pub timeout: Duration,
    /// Requests in flight at once; more get 503.
    pub max_in_flight: usize,
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
    let pool = Pool::new(&config.upstream.authority, 64);
    let state = Arc::new((config.clone(), Semaphore::new(config.max_in_flight), pool));
    let handler = move |req| {
        let state = state.clone();
        async move { handle(&state.0, &state.1, &state.2, req).await }
    };
    crate::server::serve_http(listener, handler, shutdown, drain).await
}

async fn handle(
    config: &RelayConfig,
    permits: &Semaphore,
    pool: &Pool,
    req: hyper::Request<Incoming>,
) -> Reply {
    let started = Instant::now();
    let reply = match (req.method(), req.uri().path()) {
        (&Method::GET, HEALTH_PATH) => reply(200, "text/plain", &b"ok\n"[..]),
        (&Method::POST, "/") => relay(config, permits, pool, req).await,
        (&Method::GET, OHTTP_KEYS_PATH) => keys(config, permits, pool).await,
        (_, "/") => problem(405, "method-not-allowed", "POST an OHTTP request"),
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
    pool: &Pool,
    req: hyper::Request<Incoming>,
) -> Reply {
    let Ok(_permit) = permits.try_acquire() else {
        return overloaded();
    };
    let is_ohttp = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(REQUEST_TYPE));
    if !is_ohttp {
        return problem(415, "unsupported-media-type", "expected message/ohttp-req");
    }
    let body = match Limited::new(req.into_body(), config.max_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return problem(413, "too-large", "the request exceeds the relay's limit"),
    };
    let answer = pool
        .exchange(
            Method::POST,
            &config.upstream.path,
            Some(REQUEST_TYPE),
            body,
            config.timeout,
            config.max_body,
        )
        .await;
    pass_back(answer, RESPONSE_TYPE)
}

/// The gateway's key configuration list, fetched afresh (nothing of the client goes with it).
async fn keys(config: &RelayConfig, permits: &Semaphore, pool: &Pool) -> Reply {
    let Ok(_permit) = permits.try_acquire() else {
        return overloaded();
    };
    let answer = pool
        .exchange(
            Method::GET,
            OHTTP_KEYS_PATH,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_parsed_strictly() {
        assert_eq!(
            "http://10.0.0.5:8443/gateway".parse(),
            Ok(Upstream {
                authority: "10.0.0.5:8443".into(),
                path: "/gateway".into()
            })
        );
        assert_eq!(
            "http://gw:80".parse::<Upstream>().map(|u| u.path),
            Ok("/".to_owned())
        );
        for bad in [
            "https://gw:443/",
            "http://gw/",
            "http://:80/",
            "http://gw:99999/",
            "http://gw:80/a?b",
            "gw:80",
        ] {
            assert!(bad.parse::<Upstream>().is_err(), "{bad}");
        }
    }
}
