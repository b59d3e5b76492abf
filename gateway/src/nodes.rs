//! The gateway's way to a node: one HTTP/1.1 exchange on a fresh connection over AF_VSOCK,
//! over vhost-device-vsock's Unix socket (`CONNECT <port>\n`, answered `OK <host port>\n`),
//! over a plain Unix socket (a runtime in development mode), or over TCP to a host agent on
//! another machine (`tcp://HOST:PORT`, mutually authenticated TLS 1.3: the inner layer is end to
//! end, so TLS adds no secrecy the device relies on; it keeps the operator's fleet its own — a
//! stranger can neither pose as a host nor reach one). Every exchange has a deadline and a cap on
//! the answer's size.

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
    /// `tcp://HOST:PORT`: a host agent's port for one of its guests, over mutual TLS.
    Tcp {
        /// DNS name or IP address (the name the host's certificate must carry).
        host: String,
        /// TCP port.
        port: u16,
    },
}

/// A node address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not vsock://CID:PORT, vhost-user:PATH:PORT, unix:PATH or tcp://HOST:PORT")]
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
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
            // `[v6]` in URL form; the name the certificate is checked against has no brackets.
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            let named = rustls::pki_types::ServerName::try_from(host).is_ok();
            if host.is_empty() || !named || host.contains('/') {
                return Err(bad());
            }
            let port: u16 = port.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(bad());
            }
            return Ok(NodeAddress::Tcp {
                host: host.to_owned(),
                port,
            });
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
            NodeAddress::Tcp { host, port } if host.contains(':') => {
                write!(f, "tcp://[{host}]:{port}")
            }
            NodeAddress::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
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
    /// A `tcp://` node, but this gateway has no client certificate for its hosts.
    #[error(
        "a tcp:// node needs the gateway's host TLS (--host-tls-cert, --host-tls-key, --host-ca)"
    )]
    NoHostTls,
    /// The TLS handshake with the host failed (its certificate is not from the operator's CA
    /// or not for this name, it refused ours, or it spoke no TLS).
    #[error("TLS with the node's host failed: {0}")]
    Tls(std::io::Error),
}

/// How the gateway reaches nodes: local transports need nothing; `tcp://` nodes need the
/// gateway's client certificate and the CA its hosts' certificates come from.
#[derive(Clone, Default)]
pub struct Connector {
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("host_tls", &self.tls.is_some())
            .finish()
    }
}

impl Connector {
    /// Local transports only (`vsock://`, `vhost-user:`, `unix:`).
    pub fn local() -> Connector {
        Connector { tls: None }
    }

    /// Local transports and `tcp://` hosts over mutual TLS
    /// ([`cloister_http::tls::mutual_connector`]).
    pub fn with_host_tls(tls: tokio_rustls::TlsConnector) -> Connector {
        Connector { tls: Some(tls) }
    }

    /// Whether `tcp://` nodes can be reached.
    pub fn has_host_tls(&self) -> bool {
        self.tls.is_some()
    }
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

/// A byte stream to a node.
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncReadWrite for T {}

impl NodeAddress {
    /// A fresh connection to the node (a host agent passes bytes between it and a gateway).
    pub async fn connect(&self, via: &Connector) -> Result<Box<dyn AsyncReadWrite>, NodeError> {
        match self {
            NodeAddress::Tcp { host, port } => {
                let tls = via.tls.as_ref().ok_or(NodeError::NoHostTls)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| NodeError::Tls(std::io::Error::other(e)))?;
                let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(NodeError::Connect)?;
                let _ = tcp.set_nodelay(true);
                let s = tls.connect(name, tcp).await.map_err(NodeError::Tls)?;
                Ok(Box::new(s))
            }
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
        via: &Connector,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        deadline: Duration,
        max_body: usize,
    ) -> Result<NodeReply, NodeError> {
        tokio::time::timeout(
            deadline,
            self.exchange_inner(via, method, path, body, max_body),
        )
        .await
        .map_err(|_| NodeError::Timeout(deadline))?
    }

    async fn exchange_inner(
        &self,
        via: &Connector,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        max_body: usize,
    ) -> Result<NodeReply, NodeError> {
        let io = self.connect(via).await?;
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
            "tcp://1.2.3.4",
            "tcp://:5",
            "tcp://a b:5",
            "tcp://host:0",
            "tcp://host:70000",
            "",
        ] {
            assert!(bad.parse::<NodeAddress>().is_err(), "{bad:?}");
        }
        let a: NodeAddress = "vhost-user:/run/v.sock:8080".parse().expect("parses");
        assert_eq!(a.to_string(), "vhost-user:/run/v.sock:8080");
        for (text, host, port) in [
            ("tcp://10.0.0.7:9001", "10.0.0.7", 9001),
            (
                "tcp://host-3.fleet.example:443",
                "host-3.fleet.example",
                443,
            ),
            ("tcp://[fd00::7]:9001", "fd00::7", 9001),
        ] {
            let a: NodeAddress = text.parse().expect("parses");
            let want = NodeAddress::Tcp {
                host: host.into(),
                port,
            };
            assert_eq!(a, want);
            assert_eq!(a.to_string(), text);
        }
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
                &Connector::local(),
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
            .exchange(
                &Connector::local(),
                "GET",
                "/",
                None,
                Duration::from_secs(5),
                1024,
            )
            .await
            .expect_err("refused");
        assert!(matches!(e, NodeError::Handshake { port: 7, .. }), "{e}");
        let e = addr
            .exchange(
                &Connector::local(),
                "GET",
                "/",
                None,
                Duration::from_millis(300),
                1024,
            )
            .await
            .expect_err("silent");
        assert!(matches!(e, NodeError::Timeout(_)), "{e}");
        let missing = NodeAddress::Unix(dir.path().join("none.sock"));
        let e = missing
            .exchange(
                &Connector::local(),
                "GET",
                "/",
                None,
                Duration::from_secs(1),
                1024,
            )
            .await
            .expect_err("absent");
        assert!(matches!(e, NodeError::Connect(_)), "{e}");
        let tcp: NodeAddress = "tcp://127.0.0.1:1".parse().expect("parses");
        let e = tcp
            .exchange(
                &Connector::local(),
                "GET",
                "/",
                None,
                Duration::from_secs(1),
                1024,
            )
            .await
            .expect_err("no TLS");
        assert!(matches!(e, NodeError::NoHostTls), "{e}");
    }
}
