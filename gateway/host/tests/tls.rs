//! The host's ports admit only the operator's gateways, and the gateway talks only to the
//! operator's hosts: mutual TLS with certificates from one CA, each end checked. A stranger
//! without a gateway certificate reaches no guest; a host with a certificate from another CA,
//! or for another name, gets nothing from the gateway. A guest that is down is answered 503 by
//! the host itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloister_gateway::nodes::{Connector, NodeAddress, NodeError};
use cloister_host::forward::{InFlight, serve_guest};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;

struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new() -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca(CertifiedIssuer::self_signed(p, KeyPair::generate().expect("key")).expect("ca"))
    }

    /// Writes the CA, and a leaf for `names` with its key, into `dir` as `NAME.pem` etc.
    fn leaf(&self, dir: &Path, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .expect("params")
            .signed_by(&key, &self.0)
            .expect("leaf");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("cert");
        std::fs::write(&k, key.serialize_pem()).expect("key");
        (c, k)
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(format!("{name}.pem"));
        std::fs::write(&p, self.0.pem()).expect("ca");
        p
    }
}

/// A stand-in guest on a Unix socket: answers every request `200 guest`, counting them.
async fn guest(dir: &Path) -> (NodeAddress, Arc<std::sync::atomic::AtomicUsize>) {
    let sock = dir.join("guest.sock");
    let listener = tokio::net::UnixListener::bind(&sock).expect("bind");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nguest")
                    .await;
            });
        }
    });
    (NodeAddress::Unix(sock), count)
}

/// A host port on 127.0.0.1 in front of `endpoint`, serving `cert` and admitting `client_ca`.
async fn host(
    cert: &(PathBuf, PathBuf),
    client_ca: &Path,
    endpoint: Option<NodeAddress>,
) -> (NodeAddress, watch::Sender<Option<NodeAddress>>) {
    let tls = cloister_http::tls::mutual_acceptor(&cert.0, &cert.1, client_ca).expect("acceptor");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = watch::channel(endpoint);
    let (_stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        let _keep = _stop_tx;
        serve_guest(listener, tls, rx, Arc::new(InFlight::default()), stop).await;
    });
    let address = format!("tcp://127.0.0.1:{port}").parse().expect("address");
    (address, tx)
}

fn connector(cert: &(PathBuf, PathBuf), server_ca: &Path) -> Connector {
    Connector::with_host_tls(
        cloister_http::tls::mutual_connector(&cert.0, &cert.1, server_ca).expect("connector"),
    )
}

async fn get(via: &Connector, at: &NodeAddress) -> Result<(u16, Vec<u8>), NodeError> {
    at.exchange(
        via,
        "GET",
        "/v1/evidence",
        None,
        Duration::from_secs(5),
        1 << 16,
    )
    .await
    .map(|r| (r.status, r.body))
}

#[tokio::test]
async fn only_the_operators_gateways_and_hosts_speak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (operator, stranger) = (Ca::new(), Ca::new());
    let operator_ca = operator.write(d, "operator-ca");
    let stranger_ca = stranger.write(d, "stranger-ca");
    let host_cert = operator.leaf(d, "host", &["127.0.0.1"]);
    let gateway_cert = operator.leaf(d, "gateway", &["gateway"]);
    let (endpoint, delivered) = guest(d).await;
    let (at, endpoint_tx) = host(&host_cert, &operator_ca, Some(endpoint.clone())).await;

    // The operator's gateway reaches the guest, bytes untouched.
    let gw = connector(&gateway_cert, &operator_ca);
    assert_eq!(
        get(&gw, &at).await.expect("through"),
        (200, b"guest".to_vec())
    );
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A stranger with a certificate of its own CA reaches nothing.
    let intruder = connector(&stranger.leaf(d, "intruder", &["gateway"]), &operator_ca);
    let e = get(&intruder, &at).await.expect_err("refused");
    assert!(matches!(e, NodeError::Tls(_) | NodeError::Http(_)), "{e}");
    assert_eq!(
        delivered.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "nothing delivered"
    );

    // An impostor host (another CA's certificate for the right name) gets no request.
    let (impostor, _tx) = host(
        &stranger.leaf(d, "impostor", &["127.0.0.1"]),
        &operator_ca,
        Some(endpoint.clone()),
    )
    .await;
    let e = get(&gw, &impostor).await.expect_err("impostor host");
    assert!(matches!(e, NodeError::Tls(_)), "{e}");
    // Nor does a host of the operator's whose certificate names another machine.
    let (elsewhere, _tx) = host(
        &operator.leaf(d, "elsewhere", &["10.0.0.9"]),
        &operator_ca,
        Some(endpoint),
    )
    .await;
    let e = get(&gw, &elsewhere).await.expect_err("wrong name");
    assert!(matches!(e, NodeError::Tls(_)), "{e}");
    assert_eq!(delivered.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The guest is down: the host answers 503 `node-down` itself (the gateway refunds).
    endpoint_tx.send_replace(None);
    let (status, body) = get(&gw, &at).await.expect("answered");
    assert_eq!(status, 503);
    assert!(String::from_utf8_lossy(&body).contains("node-down"));
    // A gateway trusting the stranger's CA does not accept the operator's host either.
    let misconfigured = connector(&gateway_cert, &stranger_ca);
    assert!(matches!(
        get(&misconfigured, &at).await,
        Err(NodeError::Tls(_))
    ));
}
