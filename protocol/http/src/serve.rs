//! The accept loop: HTTP/1.1 on any listener with a header-read timeout, a connection limit and
//! a graceful stop — on shutdown no new connection is accepted, connections in flight finish
//! their current exchange (idle keep-alive ones are closed), and after `drain` whatever is left
//! is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;

use crate::Reply;

/// A listener the loop can accept from (TCP and Unix here; the guest adds vsock).
pub trait Accept: Send {
    /// An accepted connection.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// The next connection.
    fn accept(&mut self) -> impl Future<Output = std::io::Result<Self::Stream>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<Self::Stream> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Accept for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    async fn accept(&mut self) -> std::io::Result<Self::Stream> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How long a client may take to send its request headers.
    pub header_read_timeout: Duration,
    /// Connections served at once; one more is closed at once.
    pub max_connections: usize,
    /// Largest buffered request head.
    pub max_buf_size: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_buf_size: 64 * 1024,
        }
    }
}

fn builder(options: &Options) -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_buf_size);
    b
}

/// Serves HTTP/1.1 on one connection until it closes (also what a fuzz target drives with
/// arbitrary bytes).
pub async fn serve_connection<S, H, Fut>(stream: S, handler: H, options: &Options)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    if let Err(e) = builder(options)
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Serves `handler` on `listener` until `shutdown` resolves, then drains for at most `drain`.
pub async fn serve<L, H, Fut>(
    listener: L,
    handler: H,
    options: Options,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()>
where
    L: Accept,
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    serve_with(listener, None, handler, options, shutdown, drain).await
}

/// What accepts TLS connections: rustls's acceptor with feature `tls`; without it, nothing
/// (an empty type: the TLS branch of the loop cannot be reached).
#[cfg(feature = "tls")]
type Acceptor = tokio_rustls::TlsAcceptor;
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
enum Acceptor {}

/// [`serve`] over TLS: each connection's handshake (within the header-read timeout) runs in
/// its own task, so a slow client holds up no other.
#[cfg(feature = "tls")]
pub async fn serve_tls<L, H, Fut>(
    listener: L,
    tls: tokio_rustls::TlsAcceptor,
    handler: H,
    options: Options,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()>
where
    L: Accept,
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    serve_with(listener, Some(tls), handler, options, shutdown, drain).await
}

async fn serve_with<L, H, Fut>(
    mut listener: L,
    tls: Option<Acceptor>,
    handler: H,
    options: Options,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()>
where
    L: Accept,
    H: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Reply> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(options.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
                    // Over the connection limit: close at once.
                    drop(stream);
                    continue;
                };
                let handler = handler.clone();
                let service = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let Some(tls) = tls.clone() else {
                    let conn = builder(&options).serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        let _ = conn.await;
                        drop(permit);
                    });
                    continue;
                };
                tls_connection(tls, stream, service, options, graceful.watcher(), permit);
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("drained"),
        () = tokio::time::sleep(drain) => tracing::warn!("stopped with requests still in flight"),
    }
    Ok(())
}

/// Serves one TLS connection in its own task: the handshake within the header-read timeout,
/// then HTTP/1.1, watched for the graceful stop.
#[cfg(feature = "tls")]
fn tls_connection<S, Svc>(
    tls: Acceptor,
    stream: S,
    service: Svc,
    options: Options,
    watcher: hyper_util::server::graceful::Watcher,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<hyper::Request<Incoming>, Response = Reply, Error = Infallible>
        + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    tokio::spawn(async move {
        let handshake = tokio::time::timeout(options.header_read_timeout, tls.accept(stream));
        match handshake.await {
            Ok(Ok(stream)) => {
                let conn = builder(&options).serve_connection(TokioIo::new(stream), service);
                let _ = watcher.watch(conn).await;
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
        drop(permit);
    });
}

#[cfg(not(feature = "tls"))]
fn tls_connection<S, Svc>(
    tls: Acceptor,
    _stream: S,
    _service: Svc,
    _options: Options,
    _watcher: hyper_util::server::graceful::Watcher,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    match tls {}
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// No core dumps, and not dumpable (no ptrace attach by other processes of the same user): a
/// crash must not write tokens, keys or plaintext to disk. Every server binary calls this first.
pub fn no_core_dumps() {
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    let _ = nix::sys::prctl::set_dumpable(false);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_over_the_limit_is_closed_and_shutdown_stops_the_loop() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let options = Options {
            max_connections: 1,
            ..Options::default()
        };
        let server = tokio::spawn(serve(
            listener,
            |_req| async { crate::reply(200, "text/plain", "ok") },
            options,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        // The first connection holds the only permit (it sends nothing yet).
        let mut first = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The second is closed without an answer.
        let mut second = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = second.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let n = second.read_to_end(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "closed at once: {}", String::from_utf8_lossy(&buf));
        // The first is served.
        first
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = Vec::new();
        first.read_to_end(&mut answer).await.expect("read");
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let _ = stop.send(());
        server.await.expect("joins").expect("serves");
    }
}
