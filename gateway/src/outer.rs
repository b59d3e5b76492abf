//! The outer OHTTP layer, sans-IO: the gateway's key, decapsulation of a `message/ohttp-req`
//! into a Binary HTTP request, and encapsulation of the answer to the same client context.
//! What is inside the outer layer is the device's request to the gateway (which node, which
//! token) and the node's still-encrypted inner message: the gateway holds no key for that.
//! Requests are read with their zero padding stripped (any other padding is refused, RFC 9292
//! §3.8); answers are padded to an outer bucket (`cloister_protocol::padding`).

use bhttp::{Message, StatusCode};
use cloister_protocol::padding::{self, Layer};
use ohttp::{KeyConfig, Server, ServerResponse};
use zeroize::Zeroizing;

use cloister_protocol::access::{PROBLEM_MEDIA, problem_json};

/// Why an outer request could not be opened. Answered in plaintext (the gateway cannot
/// encrypt to a client it could not decapsulate).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OuterError {
    /// Shorter than an OHTTP header.
    #[error("request is too short to be an OHTTP message")]
    Truncated,
    /// The key id is not the gateway's current key (the device must refetch `/ohttp-keys`).
    #[error("key id {0} is not the gateway's key")]
    UnknownKeyId(u8),
    /// HPKE decapsulation failed.
    #[error("OHTTP decapsulation failed")]
    Decapsulation,
    /// The gateway's key could not be made.
    #[error("OHTTP key configuration: {0}")]
    Config(String),
}

impl OuterError {
    /// Status and problem kind.
    pub fn status_kind(&self) -> (u16, &'static str) {
        match self {
            OuterError::Truncated => (400, "ohttp-truncated"),
            OuterError::UnknownKeyId(_) => (422, "ohttp-unknown-key-id"),
            OuterError::Decapsulation => (400, "ohttp-decapsulation"),
            OuterError::Config(_) => (500, "ohttp-config"),
        }
    }
}

/// The gateway's outer key (X25519, HKDF-SHA256, AES-128-GCM or ChaCha20-Poly1305).
pub struct OuterKey {
    server: Server,
    key_id: u8,
    encoded_list: Vec<u8>,
}

impl std::fmt::Debug for OuterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OuterKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl OuterKey {
    /// A fresh key from the operating system's random source, with id `key_id`.
    pub fn generate(key_id: u8) -> Result<Self, OuterError> {
        let config = cloister_protocol::node::key_config(key_id)
            .map_err(|e| OuterError::Config(e.to_string()))?;
        Self::from_config(config, key_id)
    }

    fn from_config(config: KeyConfig, key_id: u8) -> Result<Self, OuterError> {
        let encoded_list =
            KeyConfig::encode_list(&[&config]).map_err(|e| OuterError::Config(e.to_string()))?;
        let server = Server::new(config).map_err(|e| OuterError::Config(e.to_string()))?;
        Ok(OuterKey {
            server,
            key_id,
            encoded_list,
        })
    }

    /// The key derived from the secret `seed` (`cloister_protocol::node::gateway_key_config`):
    /// the same seed gives the same key, one its operator can log before serving it.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, OuterError> {
        let config = cloister_protocol::node::gateway_key_config(seed)
            .map_err(|e| OuterError::Config(e.to_string()))?;
        Self::from_config(config, cloister_protocol::node::gateway_key_id(seed))
    }

    /// The `application/ohttp-keys` body (RFC 9540: length-prefixed configs).
    pub fn encoded_list(&self) -> &[u8] {
        &self.encoded_list
    }

    /// The key id.
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// Opens a request: the Binary HTTP request inside (`None` when the content decrypts but
    /// is not Binary HTTP — answered inside the layer), and the context to answer with.
    pub fn open(&self, body: &[u8]) -> Result<(Option<Message>, ServerResponse), OuterError> {
        let key_id = *body.first().ok_or(OuterError::Truncated)?;
        if key_id != self.key_id {
            return Err(OuterError::UnknownKeyId(key_id));
        }
        let (plain, ctx) = self
            .server
            .decapsulate(body)
            .map_err(|_| OuterError::Decapsulation)?;
        let plain = Zeroizing::new(plain);
        Ok((padding::read_padded(&plain).ok(), ctx))
    }
}

/// An answer to put inside the outer layer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

impl Answer {
    /// A problem document.
    pub fn problem(status: u16, kind: &str, detail: &str) -> Self {
        Answer {
            status,
            content_type: PROBLEM_MEDIA.into(),
            body: problem_json(status, kind, detail),
        }
    }

    /// Encodes the answer as Binary HTTP and encapsulates it to `ctx`.
    pub fn seal(&self, ctx: ServerResponse) -> Result<Vec<u8>, OuterError> {
        let status = StatusCode::try_from(self.status)
            .map_err(|_| OuterError::Config(format!("status {} is not valid", self.status)))?;
        let mut m = Message::response(status);
        m.put_header("content-type", self.content_type.as_bytes());
        m.write_content(&self.body);
        let plain = padding::write_padded(&m, Layer::Outer)
            .map_err(|e| OuterError::Config(e.to_string()))?;
        ctx.encapsulate(&plain)
            .map_err(|e| OuterError::Config(e.to_string()))
    }
}

/// Method, path and the named header of a Binary HTTP request (empty when absent).
pub fn request_parts(m: &Message) -> (String, String) {
    let text = |b: Option<&[u8]>| {
        b.and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
            .to_owned()
    };
    (text(m.control().method()), text(m.control().path()))
}

/// A header of a Binary HTTP message.
pub fn header<'a>(m: &'a Message, name: &str) -> Option<&'a [u8]> {
    m.header().get(name.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use bhttp::Mode;

    use super::*;
    use cloister_protocol::access::NODES_PATH;

    fn outer_request(key: &OuterKey, path: &str) -> (Vec<u8>, ohttp::ClientResponse) {
        let mut m = Message::request(
            b"GET".to_vec(),
            b"https".to_vec(),
            b"cloister-gateway".to_vec(),
            path.as_bytes().to_vec(),
        );
        m.put_header("x-probe", "1");
        let mut plain = Vec::new();
        m.write_bhttp(Mode::KnownLength, &mut plain).expect("bhttp");
        ohttp::ClientRequest::from_encoded_config_list(key.encoded_list())
            .expect("config list")
            .encapsulate(&plain)
            .expect("encapsulate")
    }

    #[test]
    fn open_and_seal_round_trip() {
        let key = OuterKey::generate(7).expect("key");
        let (enc, client) = outer_request(&key, NODES_PATH);
        let (m, ctx) = key.open(&enc).expect("opens");
        let m = m.expect("binary http");
        assert_eq!(request_parts(&m), ("GET".into(), NODES_PATH.into()));
        assert_eq!(header(&m, "x-probe"), Some(&b"1"[..]));
        let sealed = Answer::problem(404, "node-unknown", "no such node")
            .seal(ctx)
            .expect("seal");
        let plain = client
            .decapsulate(&sealed)
            .expect("client opens the answer");
        let r = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp");
        assert_eq!(r.control().status().map(|s| s.code()), Some(404));
        assert_eq!(
            cloister_protocol::access::parse_problem(r.content()).map(|p| p.0),
            Some("node-unknown".into())
        );
    }

    #[test]
    fn refusals_are_named() {
        let key = OuterKey::generate(7).expect("key");
        let other = OuterKey::generate(8).expect("key");
        let (enc, _) = outer_request(&other, NODES_PATH);
        assert_eq!(key.open(&enc).err(), Some(OuterError::UnknownKeyId(8)));
        assert_eq!(key.open(&[]).err(), Some(OuterError::Truncated));
        let (mut enc, _) = outer_request(&key, NODES_PATH);
        let last = enc.len() - 1;
        enc[last] ^= 1;
        assert_eq!(key.open(&enc).err(), Some(OuterError::Decapsulation));
        // Same key id, another key: decapsulation fails.
        let twin = OuterKey::generate(7).expect("key");
        let (enc, _) = outer_request(&twin, NODES_PATH);
        assert_eq!(key.open(&enc).err(), Some(OuterError::Decapsulation));
    }
}
