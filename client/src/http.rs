//! A minimal HTTP/1.1 client over TCP, or TLS for `https://` (rustls, [`crate::tls`]): one
//! fresh connection per exchange, no cookies, no user agent, no `Accept`, nothing but `Host`,
//! `Content-Type`, `Content-Length` and, when asked, `Authorization` — so that the requests of
//! all devices look alike to the relay and the issuer. Answers are read up to a cap.
//!
//! What the client sends through the relay is OHTTP-encapsulated end to end (RFC 9458); the
//! issuer exchange carries the account's bearer token, which only TLS keeps from the network:
//! give the issuer an `https://` URL.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::Method;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper_util::rt::TokioIo;

use cloister_device_core::ClientError;
use cloister_device_core::url::media_type;

pub use cloister_device_core::url::BaseUrl;

/// Largest answer body the client reads (the node directory is at most 4 MiB).
pub const MAX_RESPONSE: usize = 8 << 20;

/// One request.
pub(crate) struct HttpRequest<'a> {
    pub method: Method,
    /// Request target (already joined with the base URL's prefix).
    pub target: String,
    pub content_type: Option<&'static str>,
    /// An `Authorization` value (sent marked sensitive).
    pub authorization: Option<&'a str>,
    pub body: Bytes,
}

/// One answer.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status: u16,
    /// The media type, lower-case, without parameters.
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// Whether the media type is `media`.
    pub fn is(&self, media: &str) -> bool {
        self.content_type.as_deref() == Some(media)
    }
}

/// Sends `req` to `base` on a new connection (TLS under `tls` for `https://`) and reads the
/// answer (at most `max_body` bytes).
pub(crate) async fn exchange(
    base: &BaseUrl,
    req: HttpRequest<'_>,
    max_body: usize,
    tls: &crate::tls::Tls,
) -> Result<HttpResponse, ClientError> {
    let stream = tokio::net::TcpStream::connect((base.host(), base.port()))
        .await
        .map_err(|source| ClientError::Connect {
            authority: base.authority().to_owned(),
            source,
        })?;
    // Small requests: do not wait for Nagle.
    let _ = stream.set_nodelay(true);
    if base.is_tls() {
        let stream = tls.connect(base, stream).await?;
        exchange_on(stream, base, req, max_body).await
    } else {
        exchange_on(stream, base, req, max_body).await
    }
}

async fn exchange_on<S>(
    stream: S,
    base: &BaseUrl,
    req: HttpRequest<'_>,
    max_body: usize,
) -> Result<HttpResponse, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let authority = || base.authority().to_owned();
    let http_err = |e: &dyn std::fmt::Display| ClientError::Http {
        authority: authority(),
        reason: e.to_string(),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http_err(&e))?;
    let mut builder = hyper::Request::builder()
        .method(req.method)
        .uri(&req.target)
        .header(HOST, base.authority());
    if let Some(ct) = req.content_type {
        builder = builder.header(CONTENT_TYPE, ct);
    }
    if let Some(auth) = req.authorization {
        let mut v = HeaderValue::from_str(auth)
            .map_err(|_| http_err(&"the Authorization value is not a valid header"))?;
        v.set_sensitive(true);
        builder = builder.header(AUTHORIZATION, v);
    }
    let request = builder
        .body(Full::new(req.body))
        .map_err(|e| http_err(&e))?;
    let exchange = async move {
        let res = sender
            .send_request(request)
            .await
            .map_err(|e| http_err(&e))?;
        // The connection ends once the only sender is gone.
        drop(sender);
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| media_type(v.as_bytes()));
        let body = match Limited::new(res.into_body(), max_body).collect().await {
            Ok(b) => b.to_bytes().to_vec(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(ClientError::TooLarge {
                    authority: authority(),
                    max: max_body,
                });
            }
            Err(e) => return Err(http_err(&e)),
        };
        Ok(HttpResponse {
            status,
            content_type,
            body,
        })
    };
    // Drive the connection in this future, not a spawned task: a request dropped at its
    // deadline closes its connection with it.
    let (result, _conn) = tokio::join!(exchange, conn);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> crate::tls::Tls {
        crate::tls::Tls::new(&crate::tls::TlsRoots::Platform).expect("tls")
    }
    use std::convert::Infallible;
    use tokio::sync::mpsc;

    /// A server that reports each request's header names and answers `len` bytes, `len` taken
    /// from the path.
    async fn server() -> (BaseUrl, mpsc::UnboundedReceiver<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let names: Vec<String> = req
                            .headers()
                            .keys()
                            .map(|k| k.as_str().to_owned())
                            .collect();
                        let _ = tx.send(names);
                        let len: usize = req.uri().path()[1..].parse().unwrap_or(0);
                        async move {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                                vec![b'x'; len],
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}").parse().expect("url"), rx)
    }

    fn post(target: &str, authorization: Option<&'static str>) -> HttpRequest<'static> {
        HttpRequest {
            method: Method::POST,
            target: target.to_owned(),
            content_type: Some("message/ohttp-req"),
            authorization,
            body: Bytes::from_static(b"ciphertext"),
        }
    }

    #[tokio::test]
    async fn sends_no_identifying_headers() {
        let (base, mut seen) = server().await;
        let r = exchange(&base, post("/5", Some("Bearer acct")), 1024, &plain())
            .await
            .expect("exchange");
        assert_eq!((r.status, r.body.len()), (200, 5));
        let names = seen.recv().await.expect("a request");
        let allowed = ["host", "content-type", "content-length", "authorization"];
        for n in &names {
            assert!(allowed.contains(&n.as_str()), "unexpected header {n}");
        }
        assert!(names.iter().any(|n| n == "host"), "{names:?}");
        assert!(names.iter().any(|n| n == "authorization"), "{names:?}");
        let get = HttpRequest {
            method: Method::GET,
            target: "/0".into(),
            content_type: None,
            authorization: None,
            body: Bytes::new(),
        };
        exchange(&base, get, 1024, &plain()).await.expect("get");
        let names = seen.recv().await.expect("a request");
        assert!(
            names.iter().all(|n| n == "host" || n == "content-length"),
            "{names:?}"
        );
    }

    #[tokio::test]
    async fn enforces_the_body_cap() {
        let (base, _seen) = server().await;
        exchange(&base, post("/1024", None), 1024, &plain())
            .await
            .expect("exactly the cap is read");
        let e = exchange(&base, post("/1025", None), 1024, &plain())
            .await
            .expect_err("over the cap");
        assert!(matches!(e, ClientError::TooLarge { max: 1024, .. }), "{e}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let base: BaseUrl = format!("http://{addr}").parse().expect("url");
        let e = exchange(&base, post("/", None), 10, &plain())
            .await
            .expect_err("nothing listens");
        assert!(matches!(e, ClientError::Connect { .. }), "{e}");
    }
}
