//! TLS to the relay and the issuer (rustls on ring, `cloister_http::tls::ring_provider`'s
//! choice): the platform's roots (`rustls-native-certs`: the operating system's store), or a
//! pinned root the device names (`--tls-root`), never both and never none.

use std::sync::Arc;

use cloister_device_core::ClientError;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::http::BaseUrl;

/// Which roots a server's certificate must chain to.
#[derive(Debug, Clone, Default)]
pub enum TlsRoots {
    /// The operating system's store.
    #[default]
    Platform,
    /// Only these (DER): a pinned root.
    Pinned(Vec<Vec<u8>>),
}

impl TlsRoots {
    /// The certificates of a PEM file's contents, pinned.
    pub fn pinned_pem(pem: &[u8]) -> Result<Self, ClientError> {
        let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::TlsRoots(e.to_string()))?;
        if certs.is_empty() {
            return Err(ClientError::TlsRoots("no PEM certificate".into()));
        }
        Ok(TlsRoots::Pinned(certs))
    }
}

/// The device's TLS client configuration.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// A configuration trusting `roots`.
    pub fn new(roots: &TlsRoots) -> Result<Self, ClientError> {
        let mut store = rustls::RootCertStore::empty();
        match roots {
            TlsRoots::Platform => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A certificate the store holds but webpki cannot parse is skipped.
                    let _ = store.add(cert);
                }
            }
            TlsRoots::Pinned(certs) => {
                for der in certs {
                    store
                        .add(CertificateDer::from(der.clone()))
                        .map_err(|e| ClientError::TlsRoots(e.to_string()))?;
                }
            }
        }
        let provider = Arc::new(cloister_http::tls::ring_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::TlsRoots(e.to_string()))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(Arc::new(config)))
    }

    /// A TLS connection to `base` over `tcp`, the server's certificate checked for its host.
    pub(crate) async fn connect(
        &self,
        base: &BaseUrl,
        tcp: tokio::net::TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ClientError> {
        let tls_err = |reason: String| ClientError::Tls {
            authority: base.authority().to_owned(),
            reason,
        };
        let name =
            ServerName::try_from(base.host().to_owned()).map_err(|e| tls_err(e.to_string()))?;
        tokio_rustls::TlsConnector::from(self.0.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| tls_err(e.to_string()))
    }
}
