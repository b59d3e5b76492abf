//! The wire format between a guest and the emulated AMD secure processor on the host.
//!
//! INSECURE by purpose: the emulated processor exists for CI and local research (see
//! ARCHITECTURE.md, "Platforms"). The format is fixed-size where it can be, so that neither side
//! has to trust a length it did not choose:
//!
//! * Request (exactly [`REQUEST_LEN`] = 70 bytes): magic `CESP`, version [`VERSION`], the VMPL
//!   the guest asks from, then the 64 bytes of `report_data`.
//! * Response: one status byte (0 = ok, 1 = error), the payload length as a big-endian `u32`,
//!   then at most [`MAX_PAYLOAD_LEN`] bytes of payload. An ok payload is the JSON object
//!   `{"report", "vcek", "ask", "ark"}` with standard base64 (padded) values; an error payload
//!   is a UTF-8 message.
//!
//! Sans-IO: this module turns values into bytes and bytes into values (or a named
//! [`SpWireError`]); sockets are the callers' business. A reader first decodes the
//! [`ResponseHeader`] (5 bytes) — which refuses a payload longer than [`MAX_PAYLOAD_LEN`] before
//! anything is allocated — then reads exactly that many bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::evidence::SnpCertificates;

/// The request's first four bytes.
pub const MAGIC: [u8; 4] = *b"CESP";
/// The only protocol version this crate reads and writes.
pub const VERSION: u8 = 1;
/// Length of every request: magic, version, VMPL, `report_data`.
pub const REQUEST_LEN: usize = 4 + 1 + 1 + 64;
/// Length of a response header: status and payload length.
pub const RESPONSE_HEADER_LEN: usize = 1 + 4;
/// Largest response payload accepted or produced.
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;
/// Largest whole response: header and payload.
pub const MAX_RESPONSE_LEN: usize = RESPONSE_HEADER_LEN + MAX_PAYLOAD_LEN;

const STATUS_OK: u8 = 0;
const STATUS_ERROR: u8 = 1;

/// Why bytes on the emulated processor's wire were refused. One variant per reason, so that a
/// caller (and a test) can tell which rule refused them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpWireError {
    /// A request is not exactly [`REQUEST_LEN`] bytes.
    #[error("request is {found} bytes, expected exactly {expected}")]
    RequestLength {
        /// Bytes found.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// A request does not start with `CESP`.
    #[error("request magic is {found:02x?}, expected \"CESP\"")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// A request of a version this crate does not speak.
    #[error("request version {found} is not supported (this build speaks version {supported})")]
    UnsupportedVersion {
        /// Version found.
        found: u8,
        /// Version supported.
        supported: u8,
    },
    /// A response is shorter than its 5-byte header.
    #[error("response is {found} bytes, shorter than its {expected}-byte header")]
    ShortHeader {
        /// Bytes found.
        found: usize,
        /// Header length.
        expected: usize,
    },
    /// A response status other than 0 (ok) or 1 (error).
    #[error("response status {found} is unknown (expected 0 or 1)")]
    UnknownStatus {
        /// Status byte found.
        found: u8,
    },
    /// A payload longer than [`MAX_PAYLOAD_LEN`] (declared by a header, or about to be encoded).
    #[error("response payload is {found} bytes, at most {max} are accepted")]
    Oversize {
        /// Payload bytes declared or produced.
        found: usize,
        /// Bytes allowed.
        max: usize,
    },
    /// The payload is not as long as its header declares.
    #[error("response payload is {found} bytes but its header declares {declared}")]
    PayloadLength {
        /// Bytes after the header.
        found: usize,
        /// Bytes the header declares.
        declared: usize,
    },
    /// An ok payload is not JSON of the expected shape (includes unknown and missing fields).
    #[error("response payload is not JSON of the expected shape: {0}")]
    Json(String),
    /// A field of an ok payload is not valid standard base64.
    #[error("response field {field} is not valid base64")]
    Base64 {
        /// Field name.
        field: &'static str,
    },
    /// A field of an ok payload decodes to nothing.
    #[error("response field {field} is empty")]
    EmptyField {
        /// Field name.
        field: &'static str,
    },
    /// An error payload is not UTF-8.
    #[error("error message is not valid UTF-8")]
    NotUtf8,
}

/// A guest's request for a report.
///
/// `Debug` deliberately omits `report_data`: it is derived from the guest's key and nonce and is
/// never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SpRequest {
    /// The VMPL the request comes from. The emulated processor signs for VMPL 0 only; the field
    /// exists so that it can refuse anything else by name rather than sign a lie.
    pub vmpl: u8,
    /// The 64 bytes the report must carry.
    pub report_data: [u8; 64],
}

impl std::fmt::Debug for SpRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpRequest")
            .field("vmpl", &self.vmpl)
            .finish_non_exhaustive()
    }
}

impl SpRequest {
    /// A request from VMPL 0.
    pub fn vmpl0(report_data: [u8; 64]) -> Self {
        SpRequest {
            vmpl: 0,
            report_data,
        }
    }

    /// The request's wire bytes.
    pub fn encode(&self) -> [u8; REQUEST_LEN] {
        let mut out = [0u8; REQUEST_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5] = self.vmpl;
        out[6..].copy_from_slice(&self.report_data);
        out
    }

    /// Decodes a request, refusing anything that is not exactly one version-1 request.
    pub fn decode(bytes: &[u8]) -> Result<Self, SpWireError> {
        let bytes: &[u8; REQUEST_LEN] =
            bytes.try_into().map_err(|_| SpWireError::RequestLength {
                found: bytes.len(),
                expected: REQUEST_LEN,
            })?;
        let (magic, rest) = bytes.split_at(4);
        if magic != MAGIC {
            let mut found = [0u8; 4];
            found.copy_from_slice(magic);
            return Err(SpWireError::BadMagic { found });
        }
        if rest[0] != VERSION {
            return Err(SpWireError::UnsupportedVersion {
                found: rest[0],
                supported: VERSION,
            });
        }
        let mut report_data = [0u8; 64];
        report_data.copy_from_slice(&rest[2..]);
        Ok(SpRequest {
            vmpl: rest[1],
            report_data,
        })
    }
}

/// A signed report and the certificate chain that endorses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpReport {
    /// The 1184-byte SNP `ATTESTATION_REPORT`, signed.
    pub report: Vec<u8>,
    /// The emulated VCEK (DER).
    pub vcek: Vec<u8>,
    /// The emulated ASK (DER).
    pub ask: Vec<u8>,
    /// The emulated ARK (DER). A verifier never trusts it because it was sent: it must equal
    /// the root the verifier was built with.
    pub ark: Vec<u8>,
}

impl SpReport {
    /// The chain as the evidence bundle carries it.
    pub fn certificates(&self) -> SnpCertificates {
        SnpCertificates {
            vcek: self.vcek.clone(),
            ask: Some(self.ask.clone()),
            ark: Some(self.ark.clone()),
            crl: None,
        }
    }
}

/// What the emulated processor answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpResponse {
    /// A report was signed.
    Report(SpReport),
    /// The processor refused or failed; the message says why.
    Error(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReport {
    report: String,
    vcek: String,
    ask: String,
    ark: String,
}

/// The decoded 5-byte response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHeader {
    /// Whether the payload is a report (`true`) or an error message.
    pub ok: bool,
    /// Payload length in bytes, at most [`MAX_PAYLOAD_LEN`].
    pub payload_len: usize,
}

impl ResponseHeader {
    /// Decodes the header from the first [`RESPONSE_HEADER_LEN`] bytes of `bytes` (the rest is
    /// ignored), refusing an unknown status or an oversize payload length.
    pub fn decode(bytes: &[u8]) -> Result<Self, SpWireError> {
        let Some(header) = bytes.get(..RESPONSE_HEADER_LEN) else {
            return Err(SpWireError::ShortHeader {
                found: bytes.len(),
                expected: RESPONSE_HEADER_LEN,
            });
        };
        let ok = match header[0] {
            STATUS_OK => true,
            STATUS_ERROR => false,
            found => return Err(SpWireError::UnknownStatus { found }),
        };
        let declared = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        // A u32 always fits a usize on the 32- and 64-bit targets Cloister builds for; saturate
        // rather than wrap anywhere else, so the limit check below still refuses it.
        let payload_len = usize::try_from(declared).unwrap_or(usize::MAX);
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(SpWireError::Oversize {
                found: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(ResponseHeader { ok, payload_len })
    }
}

fn frame(status: u8, payload: &[u8]) -> Result<Vec<u8>, SpWireError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(SpWireError::Oversize {
            found: payload.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    // Cannot fail: the length was just bounded by MAX_PAYLOAD_LEN < 2^32.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(RESPONSE_HEADER_LEN + payload.len());
    out.push(status);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn b64(field: &'static str, s: &str) -> Result<Vec<u8>, SpWireError> {
    let raw = STANDARD
        .decode(s.as_bytes())
        .map_err(|_| SpWireError::Base64 { field })?;
    if raw.is_empty() {
        return Err(SpWireError::EmptyField { field });
    }
    Ok(raw)
}

impl SpResponse {
    /// The response's wire bytes; refuses a payload larger than [`MAX_PAYLOAD_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, SpWireError> {
        match self {
            SpResponse::Report(r) => {
                let w = WireReport {
                    report: STANDARD.encode(&r.report),
                    vcek: STANDARD.encode(&r.vcek),
                    ask: STANDARD.encode(&r.ask),
                    ark: STANDARD.encode(&r.ark),
                };
                let json = serde_json::to_vec(&w).map_err(|e| SpWireError::Json(e.to_string()))?;
                frame(STATUS_OK, &json)
            }
            SpResponse::Error(message) => frame(STATUS_ERROR, message.as_bytes()),
        }
    }

    /// An error response's wire bytes. Never fails: a message too long for the wire is cut (at
    /// a character boundary) to [`MAX_PAYLOAD_LEN`] bytes.
    pub fn encode_error(message: &str) -> Vec<u8> {
        let mut end = message.len().min(MAX_PAYLOAD_LEN);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        frame(STATUS_ERROR, &message.as_bytes()[..end]).unwrap_or_default()
    }

    /// Decodes one whole response: header and exactly the payload it declares.
    pub fn decode(bytes: &[u8]) -> Result<Self, SpWireError> {
        let header = ResponseHeader::decode(bytes)?;
        Self::decode_payload(header, &bytes[RESPONSE_HEADER_LEN..])
    }

    /// Decodes the payload that follows an already decoded `header`.
    pub fn decode_payload(header: ResponseHeader, payload: &[u8]) -> Result<Self, SpWireError> {
        if payload.len() != header.payload_len {
            return Err(SpWireError::PayloadLength {
                found: payload.len(),
                declared: header.payload_len,
            });
        }
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(SpWireError::Oversize {
                found: payload.len(),
                max: MAX_PAYLOAD_LEN,
            });
        }
        if !header.ok {
            return std::str::from_utf8(payload)
                .map(|m| SpResponse::Error(m.to_owned()))
                .map_err(|_| SpWireError::NotUtf8);
        }
        let w: WireReport =
            serde_json::from_slice(payload).map_err(|e| SpWireError::Json(e.to_string()))?;
        Ok(SpResponse::Report(SpReport {
            report: b64("report", &w.report)?,
            vcek: b64("vcek", &w.vcek)?,
            ask: b64("ask", &w.ask)?,
            ark: b64("ark", &w.ark)?,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> SpReport {
        SpReport {
            report: vec![0xa5; 1184],
            vcek: b"vcek-der".to_vec(),
            ask: b"ask-der".to_vec(),
            ark: b"ark-der".to_vec(),
        }
    }

    fn ok_frame(json: &[u8]) -> Vec<u8> {
        frame(STATUS_OK, json).expect("small")
    }

    #[test]
    fn request_round_trip() {
        let mut rd = [0u8; 64];
        for (i, b) in rd.iter_mut().enumerate() {
            *b = i as u8;
        }
        let req = SpRequest {
            vmpl: 2,
            report_data: rd,
        };
        let bytes = req.encode();
        assert_eq!(bytes.len(), REQUEST_LEN);
        assert_eq!(&bytes[..6], b"CESP\x01\x02");
        assert_eq!(&bytes[6..], &rd);
        assert_eq!(SpRequest::decode(&bytes), Ok(req));
    }

    #[test]
    fn request_refusals() {
        let good = SpRequest::vmpl0([7; 64]).encode();
        assert_eq!(
            SpRequest::decode(&good[..69]),
            Err(SpWireError::RequestLength {
                found: 69,
                expected: 70
            })
        );
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            SpRequest::decode(&long),
            Err(SpWireError::RequestLength {
                found: 71,
                expected: 70
            })
        );
        assert_eq!(
            SpRequest::decode(&[]),
            Err(SpWireError::RequestLength {
                found: 0,
                expected: 70
            })
        );
        let mut magic = good;
        magic[0] = b'X';
        assert_eq!(
            SpRequest::decode(&magic),
            Err(SpWireError::BadMagic { found: *b"XESP" })
        );
        let mut version = good;
        version[4] = 2;
        assert_eq!(
            SpRequest::decode(&version),
            Err(SpWireError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
    }

    #[test]
    fn request_debug_omits_report_data() {
        let shown = format!("{:?}", SpRequest::vmpl0([0xab; 64]));
        assert!(!shown.contains("171"), "{shown}");
        assert!(!shown.to_lowercase().contains("ab, "), "{shown}");
        assert!(shown.contains("vmpl"));
    }

    #[test]
    fn report_response_round_trip() {
        let resp = SpResponse::Report(report());
        let bytes = resp.encode().expect("encodes");
        assert_eq!(bytes[0], 0);
        let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(len, bytes.len() - RESPONSE_HEADER_LEN);
        let json: serde_json::Value = serde_json::from_slice(&bytes[5..]).expect("json");
        let keys: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys.len(), 4);
        assert_eq!(SpResponse::decode(&bytes), Ok(resp));
        let header = ResponseHeader::decode(&bytes[..5]).expect("header");
        assert_eq!(
            header,
            ResponseHeader {
                ok: true,
                payload_len: len
            }
        );
        assert_eq!(
            SpResponse::decode_payload(header, &bytes[5..]),
            SpResponse::decode(&bytes)
        );
    }

    #[test]
    fn certificates_carry_the_whole_chain() {
        let c = report().certificates();
        assert_eq!(c.vcek, b"vcek-der");
        assert_eq!(c.ask.as_deref(), Some(&b"ask-der"[..]));
        assert_eq!(c.ark.as_deref(), Some(&b"ark-der"[..]));
    }

    #[test]
    fn error_response_round_trip() {
        let resp = SpResponse::Error("VMPL 1 refused".into());
        let bytes = resp.encode().expect("encodes");
        assert_eq!(bytes, SpResponse::encode_error("VMPL 1 refused"));
        assert_eq!(&bytes[..5], &[1, 0, 0, 0, 14]);
        assert_eq!(SpResponse::decode(&bytes), Ok(resp));
        let empty = SpResponse::encode_error("");
        assert_eq!(
            SpResponse::decode(&empty),
            Ok(SpResponse::Error(String::new()))
        );
    }

    #[test]
    fn encode_error_cuts_long_messages_at_a_char_boundary() {
        // 'é' is two bytes: an odd limit would split one.
        let long = "é".repeat(MAX_PAYLOAD_LEN);
        let bytes = SpResponse::encode_error(&long);
        assert_eq!(bytes.len(), MAX_RESPONSE_LEN);
        match SpResponse::decode(&bytes) {
            Ok(SpResponse::Error(m)) => assert_eq!(m.len(), MAX_PAYLOAD_LEN),
            other => panic!("{other:?}"),
        }
        let odd = format!("x{}", "é".repeat(MAX_PAYLOAD_LEN / 2));
        match SpResponse::decode(&SpResponse::encode_error(&odd)) {
            Ok(SpResponse::Error(m)) => assert_eq!(m.len(), MAX_PAYLOAD_LEN - 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn encode_refuses_oversize() {
        let mut big = report();
        big.report = vec![0; MAX_PAYLOAD_LEN];
        assert!(matches!(
            SpResponse::Report(big).encode(),
            Err(SpWireError::Oversize { .. })
        ));
        let long = "x".repeat(MAX_PAYLOAD_LEN + 1);
        assert_eq!(
            SpResponse::Error(long).encode(),
            Err(SpWireError::Oversize {
                found: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn header_refusals() {
        assert_eq!(
            ResponseHeader::decode(&[0, 0, 0]),
            Err(SpWireError::ShortHeader {
                found: 3,
                expected: 5
            })
        );
        assert_eq!(
            ResponseHeader::decode(&[2, 0, 0, 0, 0]),
            Err(SpWireError::UnknownStatus { found: 2 })
        );
        assert_eq!(
            ResponseHeader::decode(&[0, 0, 1, 0, 1]),
            Err(SpWireError::Oversize {
                found: MAX_PAYLOAD_LEN + 1,
                max: MAX_PAYLOAD_LEN
            })
        );
        assert_eq!(
            ResponseHeader::decode(&[1, 0xff, 0xff, 0xff, 0xff]),
            Err(SpWireError::Oversize {
                found: u32::MAX as usize,
                max: MAX_PAYLOAD_LEN
            })
        );
        assert_eq!(
            ResponseHeader::decode(&[1, 0, 1, 0, 0]),
            Ok(ResponseHeader {
                ok: false,
                payload_len: MAX_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn payload_length_must_match_header() {
        let bytes = SpResponse::Report(report()).encode().expect("encodes");
        let short = &bytes[..bytes.len() - 1];
        assert_eq!(
            SpResponse::decode(short),
            Err(SpWireError::PayloadLength {
                found: bytes.len() - 6,
                declared: bytes.len() - 5
            })
        );
        let mut trailing = bytes.clone();
        trailing.push(b' ');
        assert!(matches!(
            SpResponse::decode(&trailing),
            Err(SpWireError::PayloadLength { .. })
        ));
    }

    #[test]
    fn payload_refusals() {
        // Not JSON.
        assert!(matches!(
            SpResponse::decode(&ok_frame(b"not json")),
            Err(SpWireError::Json(_))
        ));
        // Missing field.
        assert!(matches!(
            SpResponse::decode(&ok_frame(
                br#"{"report":"AA==","vcek":"AA==","ask":"AA=="}"#
            )),
            Err(SpWireError::Json(_))
        ));
        // Unknown field.
        assert!(matches!(
            SpResponse::decode(&ok_frame(
                br#"{"report":"AA==","vcek":"AA==","ask":"AA==","ark":"AA==","x":"AA=="}"#
            )),
            Err(SpWireError::Json(_))
        ));
        // Bad base64, named by field.
        assert_eq!(
            SpResponse::decode(&ok_frame(
                br#"{"report":"AA==","vcek":"AA==","ask":"!!!!","ark":"AA=="}"#
            )),
            Err(SpWireError::Base64 { field: "ask" })
        );
        // Unpadded base64 is not the standard encoding.
        assert_eq!(
            SpResponse::decode(&ok_frame(
                br#"{"report":"AA","vcek":"AA==","ask":"AA==","ark":"AA=="}"#
            )),
            Err(SpWireError::Base64 { field: "report" })
        );
        // Empty field.
        assert_eq!(
            SpResponse::decode(&ok_frame(
                br#"{"report":"AA==","vcek":"","ask":"AA==","ark":"AA=="}"#
            )),
            Err(SpWireError::EmptyField { field: "vcek" })
        );
        // Error message that is not UTF-8.
        let bad = frame(STATUS_ERROR, &[0xff, 0xfe]).expect("small");
        assert_eq!(SpResponse::decode(&bad), Err(SpWireError::NotUtf8));
    }
}
