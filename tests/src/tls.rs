//! TLS fixtures: a test CA and a certificate for 127.0.0.1 it signs (rcgen), written as PEM
//! files; and a TCP recorder that passes bytes between a client and a server and keeps what
//! the client sent (what the network would see).

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// A CA's certificate and a server certificate and key for `127.0.0.1`, as PEM files.
#[derive(Debug)]
pub struct TestPki {
    /// The CA (the device's `--tls-root`).
    pub ca: PathBuf,
    /// The server's chain (leaf, CA).
    pub cert: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

/// Makes the files in `dir`.
pub fn test_pki(dir: &Path) -> TestPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let pki = TestPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&pki.ca, ca.pem()).expect("ca file");
    std::fs::write(&pki.cert, format!("{}{}", leaf.pem(), ca.pem())).expect("cert file");
    std::fs::write(&pki.key, leaf_key.serialize_pem()).expect("key file");
    pki
}

/// An operator's fleet PKI: one CA, a certificate for each host's address, and one for the
/// gateways (their client certificate), as PEM files in `dir`.
#[derive(Debug)]
pub struct FleetPki {
    /// The operator's CA (both ends trust it).
    pub ca: PathBuf,
    /// Per host address: its certificate and key.
    pub hosts: Vec<(PathBuf, PathBuf)>,
    /// The gateways' client certificate and key.
    pub gateway: (PathBuf, PathBuf),
}

/// Makes [`FleetPki`]'s files in `dir` for hosts at `addresses`.
pub fn fleet_pki(dir: &Path, addresses: &[&str]) -> FleetPki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf = |name: &str, san: &str| {
        let key = KeyPair::generate().expect("leaf key");
        let cert = CertificateParams::new(vec![san.to_owned()])
            .expect("leaf params")
            .signed_by(&key, &ca)
            .expect("leaf");
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).expect("cert file");
        std::fs::write(&k, key.serialize_pem()).expect("key file");
        (c, k)
    };
    let hosts = addresses
        .iter()
        .enumerate()
        .map(|(i, a)| leaf(&format!("host-{i}"), a))
        .collect();
    let gateway = leaf("gateway", "gateway");
    let ca_file = dir.join("fleet-ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("ca file");
    FleetPki {
        ca: ca_file,
        hosts,
        gateway,
    }
}

/// A recorder in front of `upstream` (`HOST:PORT`): its address, and the bytes clients sent.
pub fn recorder(upstream: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind recorder");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (upstream, keep) = (upstream.to_owned(), seen.clone());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_read, mut s_write) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let (mut s_read, mut c_write) = (server, client);
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 << 10];
                while let Ok(n) = c_read.read(&mut buf) {
                    if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    keep.lock().expect("lock").extend_from_slice(&buf[..n]);
                }
                let _ = s_write.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (addr, seen)
}
