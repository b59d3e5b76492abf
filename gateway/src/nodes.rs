//! The gateway's way to a node: one HTTP/1.1 exchange on a fresh connection over AF_VSOCK,
//! over vhost-device-vsock's Unix socket (`CONNECT <port>\n`, answered `OK <host port>\n`), or
//! over a plain Unix socket (a runtime in development mode). Every exchange has a deadline and
//! a cap on the answer's size.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader};

use cloister_protocol::access::OHTTP_REQ_MEDIA;

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAddress {
    /// `vsock://CID:PORT`: the host kernel's AF_VSOCK (needs `/dev/vhost-vsock`).
    Vsock {
        /// Guest context id.
        cid: u32,
        /// Guest port.
        port: u32,
    },
    /// `vhost-user:PATH:PORT`: vhost-device-vsock's Unix socket and the guest's port.
    VhostUser {
        /// The `uds-path` vhost-device-vsock listens on.
        uds: PathBuf,
        /// Guest port.
        port: u32,
    },
    /// `unix:PATH`: a runtime in development mode (no confidentiality: emulated attestation).
    Unix(PathBuf),
}

/// A node address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not vsock://CID:PORT, vhost-user:PATH:PORT or unix:PATH")]
pub struct AddressError(String);

impl std::str::FromStr for NodeAddress {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AddressError(s.chars().take(200).collect());
        if let Some(rest) = s.strip_prefix("vsock://") {
            let (cid, port) = rest.split_once(':').ok_or_else(bad)?;
            return Ok(NodeAddress::Vsock {
                cid: cid.parse().map_err(|_| bad())?,
                port: port.parse().map_err(|_| bad())?,
            });
        }
        if let Some(rest) = s.strip_prefix("vhost-user:") {
            let (uds, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            if uds.is_empty() {
                return Err(bad());
            }
            return Ok(NodeAddress::VhostUser {
                uds: uds.into(),
                port: port.parse().map_err(|_| bad())?,
            });
        }
        if let Some(path) = s.strip_prefix("unix:")
            && !path.is_empty()
        {
            return Ok(NodeAddress::Unix(path.into()));
        }
        Err(bad())
    }
}

impl std::fmt::Display for NodeAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeAddress::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            NodeAddress::VhostUser { uds, port } => {
                write!(f, "vhost-user:{}:{port}", uds.display())
            }
            NodeAddress::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Why an exchange with a node failed. Each maps to the status the device is told.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// No connection could be made.
    #[error("cannot connect to the node: {0}")]
    Connect(std::io::Error),
    /// vhost-device-vsock did not answer `OK` to `CONNECT`.
    #[error("vhost-device-vsock refused CONNECT {port}: {answer:?}")]
    Handshake {
        /// Guest port asked for.
        port: u32,
        /// What came back (clipped).
        answer: String,
    },
    /// The HTTP exchange failed (the node closed the connection, spoke no HTTP, ...).
    #[error("HTTP exchange with the node failed: {0}")]
    Http(String),
    /// The node's answer is larger than allowed.
    #[error("the node's answer is larger than {0} bytes")]
    TooLarge(usize),
    /// The deadline passed.
    #[error("the node did not answer within {0:?}")]
    Timeout(Duration),
}

/// The node's answer.
#[derive(Debug)]
pub struct NodeReply {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

impl NodeAddress {
    async fn connect(&self) -> Result<Box<dyn Io>, NodeError> {
        match self {
            NodeAddress::Vsock { cid, port } => {
                let addr = tokio_vsock::VsockAddr::new(*cid, *port);
                let s = tokio_vsock::VsockStream::connect(addr)
                    .await
                    .map_err(NodeError::Connect)?;
                Ok(Box::new(s))
            }
            NodeAddress::VhostUser { uds, port } => {
                let mut s = tokio::net::UnixStream::connect(uds)
                    .await
                    .map_err(NodeError::Connect)?;
                s.write_all(format!("CONNECT {port}\n").as_bytes())
                    .await
                    .map_err(NodeError::Connect)?;
                // Read the answer line byte by byte so that nothing after it is consumed.
                let mut reader = BufReader::with_capacity(1, s);
                let mut line = String::new();
                reader
                    .read_line(&mut line)
                    .await
                    .map_err(NodeError::Connect)?;
                if !line.starts_with("OK ") {
                    return Err(NodeError::Handshake {
                        port: *port,
                        answer: line.trim().chars().take(80).collect(),
                    });
                }
                Ok(Box::new(reader.into_inner()))
            }
            NodeAddress::Unix(path) => {
                let s = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(NodeError::Connect)?;
                Ok(Box::new(s))
            }
        }
    }

    /// One request on a fresh connection, within `deadline`, the answer capped at `max_body`.
    pub async fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        deadline: Duration,
        max_body: usize,
    ) -> Result<NodeReply, NodeError> {
        tokio::time::timeout(deadline, self.exchange_inner(method, path, body, max_body))
            .await
            .map_err(|_| NodeError::Timeout(deadline))?
    }

    async fn exchange_inner(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        max_body: usize,
    ) -> Result<NodeReply, NodeError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| NodeError::Http(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "cloister-guest");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, OHTTP_REQ_MEDIA);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| NodeError::Http(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| NodeError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = Limited::new(resp.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    NodeError::TooLarge(max_body)
                } else {
                    NodeError::Http(e.to_string())
                }
            })?
            .to_bytes()
            .to_vec();
        conn.abort();
        Ok(NodeReply {
            status,
            content_type,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_strictly() {
        assert_eq!(
            "vsock://3:8080".parse::<NodeAddress>(),
            Ok(NodeAddress::Vsock { cid: 3, port: 8080 })
        );
        assert_eq!(
            "vhost-user:/run/v.sock:8080".parse::<NodeAddress>(),
            Ok(NodeAddress::VhostUser {
                uds: "/run/v.sock".into(),
                port: 8080
            })
        );
        assert_eq!(
            "unix:/tmp/r.sock".parse::<NodeAddress>(),
            Ok(NodeAddress::Unix("/tmp/r.sock".into()))
        );
        for bad in [
            "vsock://3",
            "vsock://x:1",
            "vsock://3:99999999999",
            "vhost-user::1",
            "vhost-user:/p",
            "unix:",
            "tcp://1.2.3.4:5",
            "",
        ] {
            assert!(bad.parse::<NodeAddress>().is_err(), "{bad:?}");
        }
        let a: NodeAddress = "vhost-user:/run/v.sock:8080".parse().expect("parses");
        assert_eq!(a.to_string(), "vhost-user:/run/v.sock:8080");
    }

    #[tokio::test]
    async fn vhost_user_handshake_then_http() {
        use tokio::io::AsyncReadExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let uds = dir.path().join("v.sock");
        let listener = tokio::net::UnixListener::bind(&uds).expect("bind");
        // A stand-in vhost-device-vsock: expects CONNECT 5000, answers OK, then one HTTP reply.
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut first = [0u8; 13];
            s.read_exact(&mut first).await.expect("connect line");
            assert_eq!(&first, b"CONNECT 5000\n");
            s.write_all(b"OK 1234\n").await.expect("ok");
            let mut buf = vec![0u8; 4096];
            let n = s.read(&mut buf).await.expect("request");
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nhi",
            )
            .await
            .expect("reply");
            req
        });
        let addr = NodeAddress::VhostUser { uds, port: 5000 };
        let reply = addr
            .exchange(
                "GET",
                cloister_protocol::node::EVIDENCE_PATH,
                None,
                Duration::from_secs(5),
                1024,
            )
            .await
            .expect("exchange");
        assert_eq!((reply.status, reply.body.as_slice()), (200, &b"hi"[..]));
        let req = server.await.expect("server");
        assert!(req.starts_with("GET /v1/evidence HTTP/1.1\r\n"), "{req}");
    }

    #[tokio::test]
    async fn refused_handshake_timeout_and_cap_are_named() {
        use tokio::io::AsyncReadExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let uds = dir.path().join("v.sock");
        let listener = tokio::net::UnixListener::bind(&uds).expect("bind");
        tokio::spawn(async move {
            // 1: refuses the CONNECT.
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut b = [0u8; 64];
            let _ = s.read(&mut b).await;
            let _ = s.write_all(b"NO\n").await;
            drop(s);
            // 2: accepts, then never answers.
            let (mut s, _) = listener.accept().await.expect("accept");
            let _ = s.read(&mut b).await;
            let _ = s.write_all(b"OK 1\n").await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let addr = NodeAddress::VhostUser { uds, port: 7 };
        let e = addr
            .exchange("GET", "/", None, Duration::from_secs(5), 1024)
            .await
            .expect_err("refused");
        assert!(matches!(e, NodeError::Handshake { port: 7, .. }), "{e}");
        let e = addr
            .exchange("GET", "/", None, Duration::from_millis(300), 1024)
            .await
            .expect_err("silent");
        assert!(matches!(e, NodeError::Timeout(_)), "{e}");
        let missing = NodeAddress::Unix(dir.path().join("none.sock"));
        let e = missing
            .exchange("GET", "/", None, Duration::from_secs(1), 1024)
            .await
            .expect_err("absent");
        assert!(matches!(e, NodeError::Connect(_)), "{e}");
    }
}
