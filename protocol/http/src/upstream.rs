//! One HTTP/1.1 exchange with another server (the relay's gateway, the gateway's log, a node),
//! and where such a server is: `http://HOST:PORT/PATH`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;

/// An upstream server: `http://HOST:PORT/PATH` (TLS in front of it is a terminator's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// `HOST:PORT`.
    pub authority: String,
    /// The resource path.
    pub path: String,
}

/// A URL that is not `http://HOST:PORT/PATH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the URL {0:?} is not http://HOST:PORT/PATH")]
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
pub async fn read_answer(
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
