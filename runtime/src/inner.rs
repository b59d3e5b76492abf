//! The inner OHTTP layer, sans-IO: `message/ohttp-req` bytes in, `message/ohttp-res` bytes out.
//!
//! Decapsulate with the epoch whose key id the request names (RFC 9458 §4.3: the first byte),
//! decode the Binary HTTP request (RFC 9292; its zero padding stripped, any other refused),
//! route it, encode the response padded to its bucket (`cloister_protocol::padding`: the
//! gateway and the relay see the bucket, not the summary's length), encapsulate it to the same
//! context. Errors name the step; none carries plaintext.

use bhttp::{Message, StatusCode};
use cloister_protocol::padding::{self, Layer};

use std::sync::Arc;
use std::time::Instant;

use crate::keys::{Admission, KeyEpoch, KeyRing};
use crate::workload::{Request, Response, Router};

/// Why an inner request could not be answered inside the encrypted channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// Shorter than an OHTTP header.
    #[error("request is too short to be an OHTTP message")]
    Truncated,
    /// The key id names no current key (expired, rotated away, or never ours): the client must
    /// fetch fresh evidence.
    #[error("key id {0} is not a current key")]
    UnknownKeyId(u8),
    /// HPKE decapsulation failed (wrong key, tampered or truncated ciphertext, bad suite).
    #[error("OHTTP decapsulation failed")]
    Decapsulation,
    /// This key has opened a request with the same encapsulated key before: a replay (the
    /// device seals every request afresh). The workload does not run.
    #[error("this request was opened before (replay)")]
    Replayed,
    /// The key has opened all the requests it may; a new one is being made.
    #[error("key id {0} takes no more requests")]
    KeyExhausted(u8),
    /// The decrypted content is not a Binary HTTP request.
    #[error("decrypted content is not a valid Binary HTTP request")]
    BinaryHttp,
    /// The response could not be encoded or encapsulated.
    #[error("response encapsulation failed")]
    Encapsulation,
}

impl GatewayError {
    /// The HTTP status the outer (plaintext) response carries for this error.
    pub fn status(&self) -> u16 {
        match self {
            // RFC 9458 §5.2: a request that cannot be decapsulated is a client error.
            GatewayError::Truncated
            | GatewayError::Decapsulation
            | GatewayError::BinaryHttp
            | GatewayError::Replayed => 400,
            // Distinct from 400 so that a client knows to refetch the key and evidence.
            GatewayError::UnknownKeyId(_) | GatewayError::KeyExhausted(_) => 422,
            GatewayError::Encapsulation => 500,
        }
    }

    /// Short machine-readable name, for problem documents and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Truncated => "ohttp-truncated",
            GatewayError::UnknownKeyId(_) => "ohttp-unknown-key-id",
            GatewayError::Decapsulation => "ohttp-decapsulation",
            GatewayError::Replayed => "ohttp-replayed",
            GatewayError::KeyExhausted(_) => "ohttp-unknown-key-id",
            GatewayError::BinaryHttp => "bhttp-malformed",
            GatewayError::Encapsulation => "ohttp-encapsulation",
        }
    }
}

/// What a handled request reports to the server's log: sizes and status only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Key id used.
    pub key_id: u8,
    /// Inner status returned to the client (encrypted).
    pub inner_status: u16,
}

fn decode_request(plain: &[u8]) -> Result<Request, GatewayError> {
    let msg = padding::read_padded(plain).map_err(|_| GatewayError::BinaryHttp)?;
    let control = msg.control();
    let text = |b: Option<&[u8]>| {
        b.and_then(|b| std::str::from_utf8(b).ok())
            .map(str::to_owned)
            .ok_or(GatewayError::BinaryHttp)
    };
    let method = text(control.method())?;
    let path = text(control.path())?;
    let content_type = msg
        .header()
        .get(b"content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned);
    Ok(Request {
        method,
        path,
        content_type,
        body: msg.content().to_vec(),
        deadline: None,
    })
}

fn encode_response(r: &Response) -> Result<zeroize::Zeroizing<Vec<u8>>, GatewayError> {
    let status = StatusCode::try_from(r.status).map_err(|_| GatewayError::Encapsulation)?;
    let mut msg = Message::response(status);
    msg.put_header("content-type", r.content_type);
    msg.write_content(&r.body);
    padding::write_padded(&msg, Layer::Inner).map_err(|_| GatewayError::Encapsulation)
}

/// Handles one `message/ohttp-req` at `now` on the monotonic clock.
pub fn handle(
    ring: &KeyRing,
    router: &Router,
    body: &[u8],
    now: Instant,
) -> Result<(Vec<u8>, Outcome), GatewayError> {
    handle_with(|key_id| ring.find(key_id, now), router, body, None)
}

/// Handles one `message/ohttp-req`, looking its key up with `find` (which may take a lock:
/// it is called once, before decapsulation, and nothing is held while the workload runs).
/// The workload is told `deadline`.
pub fn handle_with(
    find: impl FnOnce(u8) -> Option<Arc<KeyEpoch>>,
    router: &Router,
    body: &[u8],
    deadline: Option<Instant>,
) -> Result<(Vec<u8>, Outcome), GatewayError> {
    let key_id = *body.first().ok_or(GatewayError::Truncated)?;
    let epoch = find(key_id).ok_or(GatewayError::UnknownKeyId(key_id))?;
    let (mut plain, server_response) = epoch
        .server()
        .decapsulate(body)
        .map_err(|_| GatewayError::Decapsulation)?;
    match epoch.admit(body) {
        Admission::Fresh => {}
        Admission::Replayed => {
            zeroize::Zeroize::zeroize(&mut plain);
            return Err(GatewayError::Replayed);
        }
        Admission::Exhausted => {
            zeroize::Zeroize::zeroize(&mut plain);
            return Err(GatewayError::KeyExhausted(key_id));
        }
    }
    let request = decode_request(&plain);
    zeroize::Zeroize::zeroize(&mut plain);
    let mut request = request?;
    request.deadline = deadline;
    let response = router.dispatch(&request);
    drop(request);
    let encoded = encode_response(&response)?;
    let sealed = server_response.encapsulate(&encoded);
    drop(encoded);
    let sealed = sealed.map_err(|_| GatewayError::Encapsulation)?;
    Ok((
        sealed,
        Outcome {
            key_id,
            inner_status: response.status,
        },
    ))
}
