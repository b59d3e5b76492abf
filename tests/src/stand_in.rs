//! A stand-in node for what a real runtime cannot be made to do on demand: serve evidence that
//! has expired. Its evidence is genuine in every other way (the emulated processor's chain, a
//! report binding its own OHTTP key), so the expiry is the one check that refuses it; it counts
//! every request that reaches `/v1/ohttp`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use cloister_insecure_emulated_sp::EmulatedSnpSigner;
use cloister_protocol::{Endorsements, EvidenceBundle, Platform, report_data};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::stack::MEASUREMENT;

/// The stand-in's socket and its request counter.
#[derive(Debug)]
pub struct StaleNode {
    /// Its Unix socket.
    pub socket: PathBuf,
    /// Requests that reached `/v1/ohttp`.
    pub hits: Arc<AtomicUsize>,
}

/// Serves, on `dir/stale.sock`, evidence from `signer` for `manifest` that expired an hour ago.
pub fn stale_node(dir: &Path, signer: &EmulatedSnpSigner, manifest: [u8; 32]) -> StaleNode {
    let server = ohttp::Server::new(cloister_protocol::node::key_config(1).expect("key config"))
        .expect("server");
    let key_config = server.config().encode().expect("encode");
    let expires_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        - 3600;
    let rd = report_data(&key_config, expires_at, b"").expect("binding");
    let bundle = EvidenceBundle {
        platform: Platform::EmulatedSevSnp,
        evidence: signer.attest(MEASUREMENT, rd).expect("report"),
        endorsements: Endorsements::Snp(signer.certificates()),
        key_config,
        expires_at,
        image_manifest_digest: manifest,
        log_proof: None,
    };
    let evidence = Bytes::from(bundle.to_json());
    let socket = dir.join("stale.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::UnixListener::from_std(listener).expect("tokio listener");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (evidence, counter) = (evidence.clone(), counter.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (evidence, counter) = (evidence.clone(), counter.clone());
                        async move {
                            let body = if req.uri().path() == "/v1/evidence" {
                                evidence
                            } else {
                                counter.fetch_add(1, Ordering::SeqCst);
                                Bytes::new()
                            };
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    StaleNode { socket, hits }
}
