//! Everything between a user's device and the guest, so that the operator never sees who asked
//! or what was asked. So far: [`relay`], the third party's OHTTP relay (`cloister-relay`). The
//! gateway (outer OHTTP, token redemption, forwarding to a node over vsock) and the Privacy
//! Pass issuer come next.
#![forbid(unsafe_code)]

pub mod relay;

use bytes::Bytes;
use http_body_util::Full;

/// An `application/problem+json` reply (RFC 9457).
pub fn problem(status: u16, kind: &str, detail: &str) -> hyper::Response<Full<Bytes>> {
    let body = cloister_protocol::access::problem_json(status, kind, detail);
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/problem+json"),
    );
    r
}
