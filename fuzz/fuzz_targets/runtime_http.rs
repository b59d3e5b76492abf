//! The HTTP/1.1 framing the guest runtime accepts on its vsock port: the fuzzer's bytes are
//! everything a host writes on one connection (any number of pipelined requests), served by
//! the runtime's own connection handler with its limits. The connection must end by itself:
//! a wedged one is a finding.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cloister_fuzz::{block_on, write_seeds};
use cloister_runtime::attest::emulated::{EmulatedSnpAttester, SpAddress};
use cloister_runtime::evidence::EvidenceService;
use cloister_runtime::keys::{KeyRing, Now};
use cloister_runtime::server::{self, AppState, Limits};
use cloister_runtime::workload::Router;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn state() -> Arc<AppState> {
    static S: OnceLock<Arc<AppState>> = OnceLock::new();
    Arc::clone(S.get_or_init(|| {
        let keys = KeyRing::new(Duration::from_secs(3600), Duration::from_secs(600), Now::read())
            .expect("keys");
        // No secure processor listens here: evidence requests fail as they would on a
        // host that withholds the attestation channel.
        let attester = EmulatedSnpAttester::new(SpAddress::Unix("/nonexistent/sp.sock".into()));
        let limits = Limits {
            max_body: 64 << 10,
            max_concurrent: 4,
            deadline: Duration::from_secs(2),
            max_connections: 4,
        };
        Arc::new(AppState::new(
            keys,
            EvidenceService::new(Arc::new(attester), [0x11; 32]),
            Router::with_echo(),
            limits,
        ))
    }))
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![
        (
            "healthz",
            b"GET /healthz HTTP/1.1\r\nHost: g\r\n\r\n".to_vec(),
        ),
        (
            "evidence",
            b"GET /v1/evidence?nonce=00ff HTTP/1.1\r\nHost: g\r\n\r\n".to_vec(),
        ),
        (
            "ohttp",
            b"POST /v1/ohttp HTTP/1.1\r\nHost: g\r\nContent-Type: message/ohttp-req\r\n\
              Content-Length: 5\r\n\r\n\x01\x00\x20\x00\x01"
                .to_vec(),
        ),
        (
            "chunked-pipelined",
            b"POST /v1/ohttp HTTP/1.1\r\nHost: g\r\nContent-Type: message/ohttp-req\r\n\
              Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"
                .to_vec(),
        ),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let state = state();
    let input = data.to_vec();
    block_on(async move {
        let (host, guest) = tokio::io::duplex(64 << 10);
        let conn = tokio::spawn(server::serve_connection(state, guest));
        let (mut from_guest, mut to_guest) = tokio::io::split(host);
        // Written and read at once, so a long answer cannot block the host's writing.
        let writer = tokio::spawn(async move {
            let _ = to_guest.write_all(&input).await;
            let _ = to_guest.shutdown().await;
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), from_guest.read_to_end(&mut answer));
        assert!(read.await.is_ok(), "the connection did not end after the host closed its side");
        let _ = writer.await;
        drop(from_guest);
        let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
        assert!(ended.is_ok(), "the connection's task outlived the connection");
    });
});
