//! The HTTP/1.1 plumbing every Cloister server shares — the guest's runtime, the relay, the
//! gateway, the issuer, the log and the witness — so that each answers, limits and stops the
//! same way:
//!
//! * [`serve`] — the accept loop over any listener (TCP, Unix, vsock), a header-read timeout, a
//!   connection limit, a graceful stop (no new connection; exchanges in flight finish, for at
//!   most a drain time), Ctrl-C/SIGTERM, and no core dumps in processes that hold secrets;
//! * answers: [`reply`], RFC 9457 [`problem`] documents (the format is `cloister_protocol`'s),
//!   [`overloaded`], bodies read under a cap ([`read_body`]);
//! * [`upstream`] — one exchange with another server, and [`pool`] — warm keep-alive
//!   connections to one upstream.
#![forbid(unsafe_code)]

pub mod body;
pub mod pool;
pub mod serve;
#[cfg(feature = "tls")]
pub mod tls;
pub mod upstream;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};

pub use body::{BodyError, BodyPace, read_body_paced};
#[cfg(feature = "tls")]
pub use serve::serve_tls;
pub use serve::{Accept, Options, no_core_dumps, serve, serve_connection, shutdown_signal};
pub use upstream::{Upstream, UpstreamError, Upstreamed, exchange_tcp};

/// Every server's answer type.
pub type Reply = hyper::Response<Full<Bytes>>;

/// A reply with a body and its content type.
pub fn reply(status: u16, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut r = hyper::Response::new(Full::new(body.into()));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// An `application/problem+json` reply (RFC 9457; the document is
/// [`cloister_protocol::access::problem_json`]'s).
pub fn problem(status: u16, kind: &str, detail: &str) -> Reply {
    use cloister_protocol::access::{PROBLEM_MEDIA, problem_json};
    reply(status, PROBLEM_MEDIA, problem_json(status, kind, detail))
}

/// A 503 `overloaded` with `Retry-After: 1`.
pub fn overloaded() -> Reply {
    let mut r = problem(503, "overloaded", "too many requests in flight; retry");
    r.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("1"),
    );
    r
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A body larger than its cap (or cut short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the body exceeds {0} bytes or was cut short")]
pub struct TooLarge(pub usize);

/// Reads a request or response body whole, refusing more than `max` bytes.
pub async fn read_body<B>(body: B, max: usize) -> Result<Bytes, TooLarge>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Limited::new(body, max)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| TooLarge(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_problem_is_rfc_9457_json_with_its_status() {
        let r = problem(422, "ohttp-unknown-key-id", "no such key");
        assert_eq!(r.status(), 422);
        assert_eq!(
            r.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let o = overloaded();
        assert_eq!(o.status(), 503);
        assert_eq!(
            o.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }

    #[tokio::test]
    async fn a_body_over_its_cap_is_refused() {
        let ok = read_body(Full::new(Bytes::from_static(b"abc")), 3).await;
        assert_eq!(ok, Ok(Bytes::from_static(b"abc")));
        let big = read_body(Full::new(Bytes::from_static(b"abcd")), 3).await;
        assert_eq!(big, Err(TooLarge(3)));
    }
}
