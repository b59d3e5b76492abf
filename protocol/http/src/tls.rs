//! TLS served by the relay and the issuer themselves (rustls on ring), from a PEM certificate
//! chain and a PEM private key. They can also sit behind a terminator; either way the device
//! speaks HTTPS to them (its account's bearer token goes to the issuer).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Why a TLS server configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error("TLS certificate {path}: {reason}")]
    Certificate {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error("TLS private key {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair (the key does not match the certificate, an unsupported key).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// rustls's ring provider: ring is already the workspace's crypto (dcap-qvl) and needs no C
/// toolchain. rustls 0.23.48 deprecates it for lacking a post-quantum key exchange
/// (X25519MLKEM768, which only its aws-lc-rs provider offers); what these connections protect
/// — the relay's sealed bytes and the issuer's bearer token — is named in the README's threat
/// model with that limit.
#[allow(deprecated)]
pub fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn chain_and_key(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let shown = |p: &Path| p.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| TlsError::Certificate {
            path: shown(cert),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Certificate {
            path: shown(cert),
            reason: "no certificate".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: shown(key),
        reason: e.to_string(),
    })?;
    Ok((chain, key))
}

/// The certificates in `path` (PEM) as a root store: the operator's CA that both ends of a
/// mutually authenticated connection trust.
fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let bad = |reason: String| TlsError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| bad(e.to_string()))?;
    let mut store = rustls::RootCertStore::empty();
    for c in certs {
        store.add(c).map_err(|e| bad(e.to_string()))?;
    }
    if store.is_empty() {
        return Err(bad("no CA certificate".into()));
    }
    Ok(store)
}

/// An acceptor serving the chain in `cert` (PEM, leaf first) with the key in `key` (PEM), for
/// HTTP/1.1 (ALPN `http/1.1`), TLS 1.2 and 1.3.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let (chain, key) = chain_and_key(cert, key)?;
    let provider = Arc::new(ring_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// An acceptor that, beyond [`acceptor`], requires every client to present a certificate
/// issued by a CA in `client_ca` (PEM): a host agent admits only the operator's gateways. TLS
/// 1.3 only — both ends are the operator's own software.
pub fn mutual_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let (chain, key) = chain_and_key(cert, key)?;
    let provider = Arc::new(ring_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(client_ca)?),
        provider.clone(),
    )
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// A connector for [`mutual_acceptor`]'s servers: presents the chain in `cert` with `key`,
/// and trusts only servers whose certificate a CA in `server_ca` issued for the name dialled.
pub fn mutual_connector(
    cert: &Path,
    key: &Path,
    server_ca: &Path,
) -> Result<tokio_rustls::TlsConnector, TlsError> {
    let (chain, key) = chain_and_key(cert, key)?;
    let provider = Arc::new(ring_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots(server_ca)?)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
