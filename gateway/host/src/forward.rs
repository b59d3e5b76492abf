//! Each guest's port on the network: a TCP listener whose connections must complete mutual TLS
//! 1.3 with a certificate from the operator's gateway CA, then carry bytes to and from the
//! guest's local endpoint (vhost-device-vsock's socket, or a development runtime's Unix socket)
//! untouched. The inner OHTTP layer is end to end between the device and the guest: nothing
//! here can read a request, and nothing here needs to.
//!
//! When the guest is down (restarting, or not yet ready) the agent answers `503 node-down`
//! itself, before any byte reaches a guest: the gateway refunds the device's token, as it does
//! for a runtime that sheds load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloister_gateway::nodes::{Connector, NodeAddress};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections being carried, across all guests of the host (the drain waits for zero).
#[derive(Debug, Default)]
pub struct InFlight {
    count: AtomicUsize,
    zero: Notify,
}

/// One carried connection; counted until dropped.
#[derive(Debug)]
pub struct Carried(Arc<InFlight>);

impl InFlight {
    /// Counts a connection in.
    pub fn enter(self: &Arc<Self>) -> Carried {
        self.count.fetch_add(1, Ordering::SeqCst);
        Carried(Arc::clone(self))
    }

    /// Connections now.
    pub fn now(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until no connection is carried, or `limit` passes; the count left.
    pub async fn settle(&self, limit: Duration) -> usize {
        let wait = async {
            loop {
                let notified = self.zero.notified();
                if self.now() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
        self.now()
    }
}

impl Drop for Carried {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.zero.notify_waiters();
        }
    }
}

/// Where a guest is reachable now: `None` while it is down.
pub type GuestEndpoint = watch::Receiver<Option<NodeAddress>>;

/// Serves `listener` for one guest until `stop` turns true: each connection is TLS-accepted,
/// then joined to the guest's endpoint (or answered 503 while it is down).
pub async fn serve_guest(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    guest: GuestEndpoint,
    in_flight: Arc<InFlight>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((tcp, peer)) = accepted else {
            // Out of descriptors or a reset before accept: keep serving.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let carried = in_flight.enter();
        let (tls, endpoint) = (tls.clone(), guest.borrow().clone());
        tokio::spawn(async move {
            let _carried = carried;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(why)) => {
                    // A stranger without the gateways' certificate, or no TLS at all.
                    tracing::warn!(%peer, %why, "TLS refused");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            carry(stream, endpoint).await;
        });
    }
}

async fn carry<S>(mut stream: S, endpoint: Option<NodeAddress>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let guest = match endpoint {
        Some(a) => a.connect(&Connector::local()).await.ok(),
        None => None,
    };
    let Some(mut guest) = guest else {
        answer_down(stream).await;
        return;
    };
    // Bytes both ways until either side closes; a half-close is passed on.
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut guest).await;
}

/// `503 node-down` on the gateway's connection: no byte reached a guest.
async fn answer_down<S>(stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(cloister_http::problem(
            503,
            "node-down",
            "the guest is restarting",
        ))
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, conn).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_drain_waits_for_carried_connections() {
        let in_flight = Arc::new(InFlight::default());
        assert_eq!(in_flight.settle(Duration::from_millis(10)).await, 0);
        let a = in_flight.enter();
        let b = in_flight.enter();
        assert_eq!(in_flight.settle(Duration::from_millis(20)).await, 2);
        let waiter = {
            let f = Arc::clone(&in_flight);
            tokio::spawn(async move { f.settle(Duration::from_secs(10)).await })
        };
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.await.expect("join"), 0);
    }
}
