//! Everything between a user's device and the guest, so that the operator never sees who asked
//! or what was asked:
//!
//! * [`relay`] — the third party's OHTTP relay (`cloister-relay`);
//! * [`gateway`] — the operator's gateway (`cloister-gateway`): outer OHTTP ([`outer`]), the
//!   node directory, Privacy Pass redemption against the spent-token store ([`spent`]), and
//!   forwarding of the still-encrypted inner message to a node ([`nodes`]);
//! * [`issuer`] — the operator's Privacy Pass issuer (`cloister-issuer`) with its accounts
//!   ([`accounts`]).
#![forbid(unsafe_code)]

pub mod accounts;
pub mod credentials;
pub mod gateway;
pub mod issuer;
pub mod nodes;
pub mod outer;
pub mod pool;
pub mod redeem;
pub mod relay;
pub mod server;
pub mod spent;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;

/// An `application/problem+json` reply (RFC 9457).
pub fn problem(status: u16, kind: &str, detail: &str) -> hyper::Response<Full<Bytes>> {
    let body = cloister_protocol::access::problem_json(status, kind, detail);
    reply(status, cloister_protocol::access::PROBLEM_MEDIA, body)
}

/// A reply with a body and its content type.
pub fn reply(
    status: u16,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

/// A 503 with `Retry-After`.
pub fn overloaded() -> hyper::Response<Full<Bytes>> {
    let mut r = problem(503, "overloaded", "too many requests in flight; retry");
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

/// A plain HTTP answer from another server.
#[derive(Debug)]
pub struct Upstreamed {
    /// Status.
    pub status: u16,
    /// Content type (empty when absent).
    pub content_type: String,
    /// Body.
    pub body: Bytes,
}

/// One HTTP/1.1 exchange with `authority` on a fresh TCP connection carrying only `Host`,
/// `Content-Type` and `Content-Length`, within `timeout`, the answer capped at `max_body`.
/// Errors are short fixed phrases (nothing of the exchange is echoed).
pub async fn exchange_tcp(
    authority: &str,
    method: hyper::Method,
    path: &str,
    content_type: Option<&'static str>,
    body: Bytes,
    timeout: Duration,
    max_body: usize,
) -> Result<Upstreamed, &'static str> {
    let work = async {
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|_| "unreachable")?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "refused the connection")?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, authority);
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(body)).map_err(|_| "unusable URL")?;
        let res = send
            .send_request(req)
            .await
            .map_err(|_| "closed the exchange")?;
        let answer = read_answer(res, max_body).await;
        conn.abort();
        answer
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| "did not answer in time")?
}

/// An upstream's answer read whole, its body capped at `max_body`.
pub(crate) async fn read_answer(
    res: hyper::Response<hyper::body::Incoming>,
    max_body: usize,
) -> Result<Upstreamed, &'static str> {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = Limited::new(res.into_body(), max_body)
        .collect()
        .await
        .map_err(|_| "answered too much or cut its answer short")?
        .to_bytes();
    Ok(Upstreamed {
        status,
        content_type,
        body,
    })
}
