//! Keep-alive HTTP/1.1 connections to one upstream (the relay's gateway). A fresh connection per
//! request costs a TCP handshake and a new server task on every hop; a relay that serves many
//! devices sends them all down a few warm connections instead. Nothing of a device rides on a
//! connection (the relay adds nothing that identifies one), so sharing them links nothing.
//!
//! A request that was not written before its connection turned out closed is retried once on a
//! fresh connection; one that was written is never sent twice.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::upstream::{Upstreamed, read_answer};

/// Idle connections older than this are dropped (the gateway closes idle connections after its
/// 10 s header-read timeout).
const MAX_IDLE_AGE: Duration = Duration::from_secs(4);

type Sender = SendRequest<Full<Bytes>>;

/// The error of an exchange whose upstream could not be connected to: no byte of the request
/// reached it, so another upstream may be asked.
pub const UNREACHABLE: &str = "unreachable";

/// Keep-alive connections to `authority`.
pub struct Pool {
    authority: String,
    idle: Mutex<Vec<(Instant, Sender)>>,
    max_idle: usize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("authority", &self.authority)
            .field("idle", &self.idle.lock().map_or(0, |i| i.len()))
            .finish()
    }
}

impl Pool {
    /// A pool keeping at most `max_idle` idle connections to `authority`.
    pub fn new(authority: &str, max_idle: usize) -> Self {
        Pool {
            authority: authority.to_owned(),
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    fn take_idle(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((since, s)) = idle.pop() {
            if since.elapsed() < MAX_IDLE_AGE && !s.is_closed() && s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put_back(&self, s: Sender) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push((Instant::now(), s));
        }
    }

    async fn connect(&self) -> Result<Sender, &'static str> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|_| UNREACHABLE)?;
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| "refused the connection")?;
        tokio::spawn(conn);
        Ok(send)
    }

    /// One exchange, like [`crate::exchange_tcp`], on a pooled connection.
    pub async fn exchange(
        &self,
        method: hyper::Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Bytes,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Upstreamed, &'static str> {
        let work = async {
            let build = || {
                let mut req = hyper::Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header(hyper::header::HOST, &self.authority);
                if let Some(ct) = content_type {
                    req = req.header(hyper::header::CONTENT_TYPE, ct);
                }
                req.body(Full::new(body.clone()))
                    .map_err(|_| "unusable URL")
            };
            // A warm connection first; a request it had not yet written goes out on a fresh one.
            let warm = match self.take_idle() {
                Some(mut s) => match s.try_send_request(build()?).await {
                    Ok(res) => Some((s, res)),
                    Err(e) if e.message().is_some() => None,
                    Err(_) => return Err("closed the exchange"),
                },
                None => None,
            };
            let (mut sender, res) = match warm {
                Some(sent) => sent,
                None => {
                    let mut s = self.connect().await?;
                    let res = s
                        .send_request(build()?)
                        .await
                        .map_err(|_| "closed the exchange")?;
                    (s, res)
                }
            };
            let answer = read_answer(res, max_body).await?;
            // The answer was read whole: the connection can carry another request.
            if sender.ready().await.is_ok() {
                self.put_back(sender);
            }
            Ok(answer)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| "did not answer in time")?
    }
}
