//! Evidence from the emulated AMD secure processor on the host (`cloister-emulated-sp`).
//! INSECURE: CI and local research only; its reports verify only under the explicitly insecure
//! emulated trust anchor, and this attester is its own type so that nothing picks it by accident.
//!
//! In a guest the processor is reached over AF_VSOCK at the host (CID 2) on a port from the
//! (measured) kernel command line; in development mode over a Unix socket. One connection per
//! request, in the [`cloister_protocol::emulated_sp`] wire format. The whole exchange is bounded
//! by a deadline ([`DEFAULT_TIMEOUT`]) and the response by its 64 KiB payload cap, so a stuck or
//! hostile host can delay attestation only that long and cannot make the guest allocate much.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cloister_protocol::emulated_sp::{RESPONSE_HEADER_LEN, ResponseHeader, SpRequest, SpResponse};
use cloister_protocol::{Endorsements, Platform};

use super::{AttestError, Attester, Evidence};

/// How long one request may take, connection to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Length of an SNP `ATTESTATION_REPORT` (AMD 56860, Table 23).
pub const SNP_REPORT_LEN: usize = 1184;
/// Longest error message from the processor that is passed on.
const MAX_MESSAGE_CHARS: usize = 200;

/// Where the emulated processor listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpAddress {
    /// AF_VSOCK (in a guest: the host is CID [`SpAddress::HOST_CID`]).
    Vsock {
        /// Context id.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A Unix socket (development mode, tests).
    Unix(PathBuf),
}

impl SpAddress {
    /// The host's vsock context id (`VMADDR_CID_HOST`).
    pub const HOST_CID: u32 = 2;

    /// The host, on `port`.
    pub fn host(port: u32) -> Self {
        SpAddress::Vsock {
            cid: Self::HOST_CID,
            port,
        }
    }
}

impl std::fmt::Display for SpAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpAddress::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            SpAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// An SNP attester that asks the emulated secure processor. Its evidence is
/// [`Platform::EmulatedSevSnp`].
#[derive(Debug, Clone)]
pub struct EmulatedSnpAttester {
    address: SpAddress,
    timeout: Duration,
}

impl EmulatedSnpAttester {
    /// An attester for the processor at `address`, with [`DEFAULT_TIMEOUT`].
    pub fn new(address: SpAddress) -> Self {
        EmulatedSnpAttester {
            address,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same, with another deadline per request.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        EmulatedSnpAttester { timeout, ..self }
    }

    /// Where it connects.
    pub fn address(&self) -> &SpAddress {
        &self.address
    }

    fn io_error(&self, action: &'static str) -> impl FnOnce(io::Error) -> AttestError + '_ {
        move |source| AttestError::Io {
            action,
            path: self.address.to_string(),
            source,
        }
    }

    fn exchange(&self, request: &SpRequest) -> Result<SpResponse, AttestError> {
        let deadline = Instant::now() + self.timeout;
        match &self.address {
            SpAddress::Unix(path) => {
                let stream = UnixStream::connect(path).map_err(self.io_error("connect to"))?;
                self.exchange_on(Timed(stream), request, deadline)
            }
            // The kernel bounds a vsock connect by its own timeout (2 s by default).
            SpAddress::Vsock { cid, port } => {
                let stream = vsock::VsockStream::connect_with_cid_port(*cid, *port)
                    .map_err(self.io_error("connect to"))?;
                self.exchange_on(Timed(stream), request, deadline)
            }
        }
    }

    fn exchange_on<S: Stream>(
        &self,
        mut stream: Timed<S>,
        request: &SpRequest,
        deadline: Instant,
    ) -> Result<SpResponse, AttestError> {
        stream
            .write_all_by(&request.encode(), deadline)
            .map_err(self.io_error("send request to"))?;
        let mut header = [0u8; RESPONSE_HEADER_LEN];
        stream
            .read_exact_by(&mut header, deadline)
            .map_err(self.io_error("read response header from"))?;
        // Refuses an oversize length before anything is allocated for it.
        let header = ResponseHeader::decode(&header)?;
        let mut payload = vec![0u8; header.payload_len];
        stream
            .read_exact_by(&mut payload, deadline)
            .map_err(self.io_error("read response from"))?;
        Ok(SpResponse::decode_payload(header, &payload)?)
    }
}

impl Attester for EmulatedSnpAttester {
    fn platform(&self) -> Platform {
        Platform::EmulatedSevSnp
    }

    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        match self.exchange(&SpRequest::vmpl0(*report_data))? {
            SpResponse::Report(r) => {
                if r.report.len() != SNP_REPORT_LEN {
                    return Err(AttestError::ReportLength {
                        found: r.report.len(),
                        expected: SNP_REPORT_LEN,
                    });
                }
                let certificates = r.certificates();
                Ok(Evidence {
                    platform: Platform::EmulatedSevSnp,
                    evidence: r.report,
                    endorsements: Endorsements::Snp(certificates),
                })
            }
            // The host's text, clipped: it goes into logs and error responses.
            SpResponse::Error(message) => Err(AttestError::Emulated(
                message.chars().take(MAX_MESSAGE_CHARS).collect(),
            )),
        }
    }
}

/// A blocking stream whose read and write timeouts can be set.
trait Stream: Read + Write {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl Stream for vsock::VsockStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

/// Reads and writes against one deadline: before each system call the socket timeout is set to
/// the time left, so a peer that trickles bytes cannot stretch the exchange.
struct Timed<S>(S);

impl<S: Stream> Timed<S> {
    fn arm(&self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "emulated secure processor did not answer in time",
            ));
        }
        self.0.set_timeouts(left)
    }

    fn read_exact_by(&mut self, mut buf: &mut [u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            self.arm(deadline)?;
            match self.0.read(buf) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed mid-response",
                    ));
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn write_all_by(&mut self, mut buf: &[u8], deadline: Instant) -> io::Result<()> {
        while !buf.is_empty() {
            self.arm(deadline)?;
            match self.0.write(buf) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::path::Path;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    use cloister_insecure_emulated_sp::EmulatedSnpSigner;
    use cloister_insecure_emulated_sp::EmulatedSp;
    use cloister_measurement::{FixedClock, Policy, TrustAnchor, Verifier};
    use cloister_protocol::emulated_sp::SpWireError;
    use cloister_protocol::{EvidenceBundle, report_data};

    use super::*;

    const MEASUREMENT: [u8; 48] = [0x5a; 48];
    const NOW: u64 = 1_767_225_600;
    const KEY_CONFIG: &[u8] = b"\x01\x00\x20example-ohttp-key-config-bytes";
    const EXPIRES_AT: u64 = NOW + 24 * 3600;

    fn sp() -> &'static EmulatedSp {
        static SP: OnceLock<EmulatedSp> = OnceLock::new();
        SP.get_or_init(|| {
            EmulatedSp::new(
                EmulatedSnpSigner::from_seed(&[9u8; 32]).expect("emulated processor"),
                MEASUREMENT,
            )
        })
    }

    /// Runs `f` against the emulated processor serving on a Unix socket in a temp dir.
    fn with_sp<T>(f: impl FnOnce(&Path) -> T) -> T {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sp.sock");
        let listener = UnixListener::bind(&path).expect("binds");
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let server = scope.spawn(|| sp().serve(listener, &stop));
            let out = f(&path);
            stop.store(true, Ordering::SeqCst);
            server.join().expect("joins").expect("serves");
            out
        })
    }

    /// Runs `f` against a fake processor that answers every connection with `response`.
    fn with_fake(response: Vec<u8>, f: impl FnOnce(&Path)) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("fake.sock");
        let listener = UnixListener::bind(&path).expect("binds");
        std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Ok((mut s, _)) = listener.accept() {
                    let mut req = [0u8; 70];
                    let _ = s.read_exact(&mut req);
                    let _ = s.write_all(&response);
                }
            });
            f(&path);
        });
    }

    fn attester(path: &Path) -> EmulatedSnpAttester {
        EmulatedSnpAttester::new(SpAddress::Unix(path.to_path_buf()))
    }

    #[test]
    fn evidence_from_the_emulated_processor_verifies() {
        let rd = report_data(KEY_CONFIG, EXPIRES_AT, b"").expect("binds");
        let ev = with_sp(|path| attester(path).evidence(&rd)).expect("evidence");
        assert_eq!(ev.platform, Platform::EmulatedSevSnp);
        assert_eq!(ev.evidence.len(), SNP_REPORT_LEN);
        let bundle = EvidenceBundle {
            platform: ev.platform,
            evidence: ev.evidence,
            endorsements: ev.endorsements,
            key_config: KEY_CONFIG.to_vec(),
            expires_at: EXPIRES_AT,
            image_manifest_digest: [0x11; 32],
            log_proof: None,
        };
        let root = sp().signer().insecure_root().expect("root");
        let verifier = Verifier::new(
            TrustAnchor::InsecureEmulated(root),
            Policy::default().with_snp_measurement(MEASUREMENT),
            FixedClock(NOW),
        );
        let verified = verifier
            .verify_json(&bundle.to_json(), b"")
            .expect("verifies");
        assert_eq!(verified.platform, Platform::EmulatedSevSnp);
        // And the hardware anchor refuses it: emulated evidence is never silently accepted.
        let hardware = Verifier::new(
            TrustAnchor::hardware().expect("pinned roots"),
            Policy::default().with_snp_measurement(MEASUREMENT),
            FixedClock(NOW),
        );
        assert!(hardware.verify(&bundle, b"").is_err());
    }

    #[test]
    fn absent_processor_is_an_io_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = attester(&dir.path().join("nobody.sock"));
        assert_eq!(a.platform(), Platform::EmulatedSevSnp);
        match a.evidence(&[0; 64]) {
            Err(AttestError::Io { action, path, .. }) => {
                assert_eq!(action, "connect to");
                assert!(path.starts_with("unix:"), "{path}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn processor_error_is_passed_on_clipped() {
        let long = format!("refused: {}", "x".repeat(1000));
        with_fake(SpResponse::encode_error(&long), |path| {
            match attester(path).evidence(&[0; 64]) {
                Err(AttestError::Emulated(m)) => {
                    assert!(m.starts_with("refused: "));
                    assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS);
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn oversize_response_is_refused_before_reading_it() {
        with_fake(vec![0, 0xff, 0xff, 0xff, 0xff], |path| {
            assert!(matches!(
                attester(path).evidence(&[0; 64]),
                Err(AttestError::SpWire(SpWireError::Oversize { .. }))
            ));
        });
    }

    #[test]
    fn malformed_response_is_refused_by_name() {
        with_fake(vec![7, 0, 0, 0, 0], |path| {
            assert!(matches!(
                attester(path).evidence(&[0; 64]),
                Err(AttestError::SpWire(SpWireError::UnknownStatus { found: 7 }))
            ));
        });
        let bad_json = {
            let mut v = vec![0, 0, 0, 0, 2];
            v.extend_from_slice(b"{}");
            v
        };
        with_fake(bad_json, |path| {
            assert!(matches!(
                attester(path).evidence(&[0; 64]),
                Err(AttestError::SpWire(SpWireError::Json(_)))
            ));
        });
    }

    #[test]
    fn truncated_response_is_an_io_error() {
        let full = SpResponse::Error("nope".into()).encode().expect("encodes");
        with_fake(full[..full.len() - 1].to_vec(), |path| {
            match attester(path).evidence(&[0; 64]) {
                Err(AttestError::Io { source, .. }) => {
                    assert_eq!(source.kind(), io::ErrorKind::UnexpectedEof)
                }
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn short_report_is_refused() {
        let response = SpResponse::Report(cloister_protocol::emulated_sp::SpReport {
            report: vec![1; 100],
            vcek: b"v".to_vec(),
            ask: b"a".to_vec(),
            ark: b"r".to_vec(),
        })
        .encode()
        .expect("encodes");
        with_fake(response, |path| {
            assert!(matches!(
                attester(path).evidence(&[0; 64]),
                Err(AttestError::ReportLength {
                    found: 100,
                    expected: SNP_REPORT_LEN
                })
            ));
        });
    }

    #[test]
    fn silent_processor_times_out() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("silent.sock");
        let listener = UnixListener::bind(&path).expect("binds");
        std::thread::scope(|scope| {
            let release = std::sync::mpsc::channel::<()>();
            let (tx, rx) = release;
            scope.spawn(move || {
                // Accept, then say nothing until the client has given up.
                let conn = listener.accept();
                let _ = rx.recv();
                drop(conn);
            });
            let a = attester(&path).with_timeout(Duration::from_millis(300));
            let started = Instant::now();
            let result = a.evidence(&[0; 64]);
            let _ = tx.send(());
            assert!(started.elapsed() < Duration::from_secs(5));
            match result {
                Err(AttestError::Io { source, .. }) => assert!(
                    matches!(
                        source.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "{source:?}"
                ),
                other => panic!("{other:?}"),
            }
        });
    }

    #[test]
    fn addresses_display() {
        assert_eq!(SpAddress::host(5000).to_string(), "vsock://2:5000");
        assert_eq!(
            SpAddress::Unix("/run/sp.sock".into()).to_string(),
            "unix:/run/sp.sock"
        );
        let a = EmulatedSnpAttester::new(SpAddress::host(1));
        assert_eq!(a.address(), &SpAddress::host(1));
    }
}
