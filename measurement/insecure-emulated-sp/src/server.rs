//! The emulated AMD secure processor as a service: it answers guests' report requests
//! ([`cloister_protocol::emulated_sp`] wire format) with reports signed by an
//! [`EmulatedSnpSigner`] for the launch measurement the launcher computed. INSECURE by
//! construction, like the signer: CI and local research only.
//!
//! [`EmulatedSp::handle`] is sans-IO (request bytes in, response bytes out);
//! [`EmulatedSp::serve`] is the blocking socket loop around it.
//!
//! Nothing here logs, formats or returns a request's `report_data` except inside the signed
//! report itself: it is derived from the guest's key and the client's nonce.

use std::io::{self, Read as _, Write as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cloister_protocol::emulated_sp::{REQUEST_LEN, SpReport, SpRequest, SpResponse};

use crate::signer::EmulatedSnpSigner;

/// How long a connection may take to deliver its request, and to take the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; more are answered with an error and closed.
pub const MAX_CONCURRENT: usize = 16;
/// How often the accept loop looks at its stop flag when no connection arrives.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// What happened to one connection, for the caller's log. Carries no request content.
#[derive(Debug)]
pub enum SpEvent {
    /// A report was signed and sent.
    Served,
    /// The request was refused with an error response; the text is what the guest was told.
    Refused(String),
    /// Too many connections were open; this one was answered "busy" and closed.
    Busy,
    /// Reading the request or writing the response failed.
    Connection(io::Error),
}

/// The emulated secure processor: an emulated ARK → ASK → VCEK chain and the launch
/// measurement of the one guest it attests.
#[derive(Debug)]
pub struct EmulatedSp {
    signer: EmulatedSnpSigner,
    measurement: [u8; 48],
}

impl EmulatedSp {
    /// A processor that signs reports carrying `measurement` (the launch digest of the image the
    /// launcher actually boots).
    pub fn new(signer: EmulatedSnpSigner, measurement: [u8; 48]) -> Self {
        EmulatedSp {
            signer,
            measurement,
        }
    }

    /// The signer (its ARK is what an insecure emulated verifier pins).
    pub fn signer(&self) -> &EmulatedSnpSigner {
        &self.signer
    }

    /// The measurement every report carries.
    pub fn measurement(&self) -> [u8; 48] {
        self.measurement
    }

    /// Answers one request: its response bytes (a signed report, or an error message).
    pub fn handle(&self, request: &[u8]) -> Vec<u8> {
        self.answer(request).0
    }

    fn answer(&self, request: &[u8]) -> (Vec<u8>, SpEvent) {
        let refuse = |message: String| {
            (
                SpResponse::encode_error(&message),
                SpEvent::Refused(message),
            )
        };
        let request = match SpRequest::decode(request) {
            Ok(r) => r,
            Err(e) => return refuse(format!("malformed request: {e}")),
        };
        // The emulated processor stands in for a guest at VMPL 0 only; signing a report that
        // claims VMPL 0 for a request from another level would be a lie a verifier accepts.
        if request.vmpl != 0 {
            return refuse(format!(
                "request from VMPL {} refused: the emulated processor attests VMPL 0 only",
                request.vmpl
            ));
        }
        let report = match self.signer.attest(self.measurement, request.report_data) {
            Ok(r) => r,
            Err(e) => return refuse(format!("signing failed: {e}")),
        };
        let chain = self.signer.certificates();
        let (Some(ask), Some(ark)) = (chain.ask, chain.ark) else {
            return refuse("signer has no ASK/ARK".to_owned());
        };
        let response = SpResponse::Report(SpReport {
            report,
            vcek: chain.vcek,
            ask,
            ark,
        });
        match response.encode() {
            Ok(bytes) => (bytes, SpEvent::Served),
            Err(e) => refuse(format!("response could not be encoded: {e}")),
        }
    }

    /// Serves `listener` until `stop` is set: one request per connection, each on its own
    /// thread, at most [`MAX_CONCURRENT`] at once. Returns after the connections in flight
    /// finish (each is bounded by [`IO_TIMEOUT`]).
    pub fn serve(&self, listener: UnixListener, stop: &AtomicBool) -> io::Result<()> {
        self.serve_with(listener, stop, &|_| {})
    }

    /// [`Self::serve`], reporting what happens to each connection to `on_event`.
    pub fn serve_with(
        &self,
        listener: UnixListener,
        stop: &AtomicBool,
        on_event: &(dyn Fn(SpEvent) + Sync),
    ) -> io::Result<()> {
        // Non-blocking accept so that the loop notices `stop` without a wake-up connection.
        listener.set_nonblocking(true)?;
        let active = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            while !stop.load(Ordering::SeqCst) {
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(POLL_INTERVAL);
                        continue;
                    }
                    // The peer went away between connect and accept, or a signal arrived.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::Interrupted
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONCURRENT {
                    active.fetch_sub(1, Ordering::SeqCst);
                    // Best effort: the point is to not spend a thread on it.
                    let _ = stream
                        .set_write_timeout(Some(Duration::from_millis(100)))
                        .and_then(|()| {
                            (&stream).write_all(&SpResponse::encode_error(
                                "emulated processor busy: too many concurrent requests",
                            ))
                        });
                    on_event(SpEvent::Busy);
                    continue;
                }
                let active = &active;
                scope.spawn(move || {
                    let event = match self.connection(stream) {
                        Ok(event) => event,
                        Err(e) => SpEvent::Connection(e),
                    };
                    active.fetch_sub(1, Ordering::SeqCst);
                    on_event(event);
                });
            }
            Ok(())
        })
    }

    fn connection(&self, mut stream: UnixStream) -> io::Result<SpEvent> {
        // An accepted socket does not inherit O_NONBLOCK on Linux; say so anyway, since the
        // timeouts below rely on blocking reads.
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut request = [0u8; REQUEST_LEN];
        let mut filled = 0;
        // Reads until the fixed-size request is complete or the peer stops sending; a short
        // request is then refused by `handle` with its length.
        while filled < REQUEST_LEN {
            match stream.read(&mut request[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let (response, event) = self.answer(&request[..filled]);
        stream.write_all(&response)?;
        stream.flush()?;
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use cloister_protocol::emulated_sp::{SpWireError, VERSION};
    use cloister_protocol::{Endorsements, EvidenceBundle, Platform, report_data};

    use super::*;
    use cloister_measurement::{FixedClock, Policy, TrustAnchor, Verifier, VerifyError};

    const MEASUREMENT: [u8; 48] = [0x5a; 48];
    const NOW: u64 = 1_767_225_600;
    const KEY_CONFIG: &[u8] = b"\x01\x00\x20example-ohttp-key-config-bytes";
    const EXPIRES_AT: u64 = NOW + 24 * 3600;

    fn sp() -> &'static EmulatedSp {
        static SP: OnceLock<EmulatedSp> = OnceLock::new();
        SP.get_or_init(|| {
            let signer = EmulatedSnpSigner::from_seed(&[1u8; 32]).expect("emulated processor");
            EmulatedSp::new(signer, MEASUREMENT)
        })
    }

    fn verifier(measurement: [u8; 48]) -> Verifier<FixedClock> {
        let root = sp().signer().insecure_root().expect("root");
        Verifier::new(
            TrustAnchor::InsecureEmulated(root),
            Policy::default().with_snp_measurement(measurement),
            FixedClock(NOW),
        )
    }

    fn bundle(report: SpReport) -> EvidenceBundle {
        EvidenceBundle {
            platform: Platform::EmulatedSevSnp,
            evidence: report.report.clone(),
            endorsements: Endorsements::Snp(report.certificates()),
            key_config: KEY_CONFIG.to_vec(),
            expires_at: EXPIRES_AT,
            image_manifest_digest: [0x11; 32],
            log_proof: None,
        }
    }

    fn report_of(response: &[u8]) -> SpReport {
        match SpResponse::decode(response) {
            Ok(SpResponse::Report(r)) => r,
            other => panic!("expected a report, got {other:?}"),
        }
    }

    fn error_of(response: &[u8]) -> String {
        match SpResponse::decode(response) {
            Ok(SpResponse::Error(m)) => m,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn handled_report_verifies_under_the_emulated_anchor() {
        let rd = report_data(KEY_CONFIG, EXPIRES_AT, b"nonce").expect("binds");
        let report = report_of(&sp().handle(&SpRequest::vmpl0(rd).encode()));
        assert_eq!(report.report.len(), cloister_measurement::SNP_REPORT_LEN);
        assert_eq!(report.ark, sp().signer().ark_der());
        let verified = verifier(MEASUREMENT)
            .verify(&bundle(report), b"nonce")
            .expect("verifies");
        assert_eq!(verified.platform, Platform::EmulatedSevSnp);
    }

    #[test]
    fn another_chip_is_another_machine_under_the_same_root() {
        let rd = report_data(KEY_CONFIG, EXPIRES_AT, b"").expect("binds");
        let first = report_of(&sp().handle(&SpRequest::vmpl0(rd).encode()));
        let second_chip = sp().signer().another_chip(1).expect("chip 1");
        assert_eq!(second_chip.ark_der(), sp().signer().ark_der());
        assert_ne!(second_chip.chip_id(), sp().signer().chip_id());
        let other = EmulatedSp::new(second_chip, MEASUREMENT);
        let second = report_of(&other.handle(&SpRequest::vmpl0(rd).encode()));
        let v = verifier(MEASUREMENT);
        let a = v.verify(&bundle(first), b"").expect("chip 0 verifies");
        let b = v.verify(&bundle(second), b"").expect("chip 1 verifies");
        assert_eq!(
            a.machine,
            cloister_measurement::MachineId::SnpChip(sp().signer().chip_id().to_vec())
        );
        assert_ne!(a.machine, b.machine);
        // Deterministic: the same index gives the same chip.
        let again = sp().signer().another_chip(1).expect("chip 1 again");
        assert_eq!(again.chip_id(), other.signer().chip_id());
    }

    #[test]
    fn handled_report_carries_the_requested_report_data_only() {
        let rd = report_data(KEY_CONFIG, EXPIRES_AT, b"nonce").expect("binds");
        let report = report_of(&sp().handle(&SpRequest::vmpl0(rd).encode()));
        // Bound to "nonce", so presenting it for another nonce must fail at the binding check.
        let err = verifier(MEASUREMENT)
            .verify(&bundle(report.clone()), b"other")
            .expect_err("wrong nonce");
        assert!(matches!(err, VerifyError::ReportDataMismatch), "{err:?}");
        // And a verifier expecting another measurement refuses it.
        let err = verifier([0x11; 48])
            .verify(&bundle(report), b"nonce")
            .expect_err("wrong measurement");
        assert!(
            matches!(err, VerifyError::MeasurementNotAllowed { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_other_vmpls() {
        let req = SpRequest {
            vmpl: 1,
            report_data: [0; 64],
        };
        let message = error_of(&sp().handle(&req.encode()));
        assert!(message.contains("VMPL 1"), "{message}");
    }

    #[test]
    fn refuses_malformed_requests() {
        let good = SpRequest::vmpl0([3; 64]).encode();
        let short = error_of(&sp().handle(&good[..10]));
        assert!(
            short.contains(
                &SpWireError::RequestLength {
                    found: 10,
                    expected: REQUEST_LEN
                }
                .to_string()
            ),
            "{short}"
        );
        let mut magic = good;
        magic[..4].copy_from_slice(b"NOPE");
        assert!(error_of(&sp().handle(&magic)).contains("magic"));
        let mut version = good;
        version[4] = VERSION + 1;
        assert!(error_of(&sp().handle(&version)).contains("version"));
        assert!(error_of(&sp().handle(&[])).contains("0 bytes"));
    }

    #[test]
    fn refusals_never_echo_report_data() {
        // A recognisable report_data in a refused request must not come back in the message.
        let req = SpRequest {
            vmpl: 3,
            report_data: *b"SECRET-REPORT-DATA-SECRET-REPORT-DATA-SECRET-REPORT-DATA-SECRET!",
        };
        let mut bytes = req.encode().to_vec();
        for r in [bytes.clone(), {
            bytes.push(0);
            bytes
        }] {
            let m = error_of(&sp().handle(&r));
            assert!(!m.contains("SECRET"), "{m}");
            assert!(!m.contains("53 45 43"), "{m}");
        }
    }

    fn exchange(path: &std::path::Path, request: &[u8]) -> Vec<u8> {
        let mut s = UnixStream::connect(path).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        s.write_all(request).expect("writes");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("reads");
        out
    }

    #[test]
    fn serves_over_a_unix_socket_until_stopped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("sp.sock");
        let listener = UnixListener::bind(&path).expect("binds");
        let stop = AtomicBool::new(false);
        let sp = sp();
        let events = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            let server = scope.spawn(|| {
                sp.serve_with(listener, &stop, &|e| {
                    events.lock().expect("lock").push(format!("{e:?}"))
                })
            });
            let rd = report_data(KEY_CONFIG, EXPIRES_AT, b"").expect("binds");
            let ok = exchange(&path, &SpRequest::vmpl0(rd).encode());
            verifier(MEASUREMENT)
                .verify(&bundle(report_of(&ok)), b"")
                .expect("verifies");
            let refused = exchange(
                &path,
                &SpRequest {
                    vmpl: 2,
                    report_data: rd,
                }
                .encode(),
            );
            assert!(error_of(&refused).contains("VMPL 2"));
            // A client that sends half a request and closes its side gets a length refusal.
            let mut s = UnixStream::connect(&path).expect("connects");
            s.write_all(&SpRequest::vmpl0(rd).encode()[..30])
                .expect("writes");
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut out = Vec::new();
            s.read_to_end(&mut out).expect("reads");
            assert!(error_of(&out).contains("30 bytes"));
            stop.store(true, Ordering::SeqCst);
            server.join().expect("joins").expect("serve ok");
        });
        let events = events.into_inner().expect("lock");
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(events.iter().any(|e| e == "Served"), "{events:?}");
        // The events the binary logs never carry report_data either.
        for e in &events {
            assert!(!e.contains("report_data"), "{e}");
        }
    }
}
