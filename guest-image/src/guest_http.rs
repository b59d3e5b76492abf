//! HTTP/1.1 to the guest's server through vhost-device-vsock (host → guest `CONNECT port`).

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// A guest endpoint: vhost-device-vsock's Unix socket and the guest's port.
#[derive(Debug, Clone)]
pub struct GuestEndpoint {
    /// `uds-path` of vhost-device-vsock.
    pub uds: PathBuf,
    /// Guest vsock port.
    pub port: u32,
    /// Deadline of one exchange.
    pub timeout: Duration,
}

/// Why an exchange with the guest failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestHttpError {
    /// No answer within the endpoint's deadline.
    #[error("the guest did not answer within {0:?}")]
    Timeout(Duration),
    /// vhost-device-vsock did not connect to the guest's port.
    #[error("connecting to guest port {port}: {source}")]
    Connect {
        /// The guest's vsock port.
        port: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The local runtime or socket failed.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built (a bad method or path).
    #[error("request: {0}")]
    Request(#[from] hyper::http::Error),
}

type Result<T, E = GuestHttpError> = std::result::Result<T, E>;

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

impl GuestEndpoint {
    /// One request on a fresh connection.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // The timeout future must be made inside the runtime (it registers with its timer).
        rt.block_on(async {
            tokio::time::timeout(
                self.timeout,
                self.exchange(method, path, content_type, body),
            )
            .await
        })
        .map_err(|_| GuestHttpError::Timeout(self.timeout))?
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply> {
        // vhost-device-vsock can refuse a connection while the guest's virtio-vsock device is
        // still settling right after the ready line: retry the handshake briefly, saying so.
        let mut attempt = 0;
        let std_stream = loop {
            match crate::vm::connect_guest(&self.uds, self.port, self.timeout) {
                Ok(s) => break s,
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    if attempt == 1 {
                        eprintln!("[guest-http] vsock connect failed ({e}); retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(source) => {
                    return Err(GuestHttpError::Connect {
                        port: self.port,
                        source,
                    });
                }
            }
        };
        std_stream.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(std_stream)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "cloister-guest");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok(Reply {
            status,
            content_type,
            body,
        })
    }
}
