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
    /// Two of the gateway's keys have one id (seeds whose derived ids collide: one in 256).
    #[error("two outer keys have id {0}: use another seed for one of them")]
    DuplicateKeyId(u8),
    /// No key at all.
    #[error("no outer key")]
    NoKey,
}

impl OuterError {
    /// Status and problem kind.
    pub fn status_kind(&self) -> (u16, &'static str) {
        match self {
            OuterError::Truncated => (400, "ohttp-truncated"),
            OuterError::UnknownKeyId(_) => (422, "ohttp-unknown-key-id"),
            OuterError::Decapsulation => (400, "ohttp-decapsulation"),
            OuterError::Config(_) | OuterError::DuplicateKeyId(_) | OuterError::NoKey => {
                (500, "ohttp-config")
            }
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

/// The gateway's outer keys during a rotation: every key opens requests sealed to it; the
/// current one is listed first in `/ohttp-keys` and the others after it, so a device that
/// fetched the list from another gateway of the fleet — or just before the switch — is still
/// served. Which key is current is the fleet's registry's to say, so every gateway switches
/// at the same interval.
#[derive(Debug)]
pub struct OuterKeys {
    keys: Vec<OuterKey>,
    served: std::sync::RwLock<(u8, std::sync::Arc<Vec<u8>>)>,
}

impl OuterKeys {
    /// The set, `keys[0]` current until told otherwise.
    pub fn new(keys: Vec<OuterKey>) -> Result<Self, OuterError> {
        let first = keys.first().ok_or(OuterError::NoKey)?.key_id;
        let mut ids: Vec<u8> = keys.iter().map(|k| k.key_id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(OuterError::DuplicateKeyId(w[0]));
        }
        let set = OuterKeys {
            keys,
            served: std::sync::RwLock::new((first, std::sync::Arc::new(Vec::new()))),
        };
        set.set_current(first)?;
        Ok(set)
    }

    /// The ids held, in the order given.
    pub fn ids(&self) -> Vec<u8> {
        self.keys.iter().map(|k| k.key_id).collect()
    }

    /// The current key's id.
    pub fn current(&self) -> u8 {
        self.served
            .read()
            .map(|s| s.0)
            .unwrap_or_else(|p| p.into_inner().0)
    }

    /// Makes key `id` current: it is listed first from now on. An id the set does not hold is
    /// refused (`UnknownKeyId`) and nothing changes.
    pub fn set_current(&self, id: u8) -> Result<(), OuterError> {
        let current = self
            .keys
            .iter()
            .find(|k| k.key_id == id)
            .ok_or(OuterError::UnknownKeyId(id))?;
        let mut list = current.encoded_list.clone();
        for k in self.keys.iter().filter(|k| k.key_id != id) {
            list.extend_from_slice(&k.encoded_list);
        }
        if let Ok(mut slot) = self.served.write() {
            *slot = (id, std::sync::Arc::new(list));
        }
        Ok(())
    }

    /// The `application/ohttp-keys` body: the current key's configuration, then the others.
    pub fn encoded_list(&self) -> std::sync::Arc<Vec<u8>> {
        self.served
            .read()
            .map(|s| std::sync::Arc::clone(&s.1))
            .unwrap_or_else(|p| std::sync::Arc::clone(&p.into_inner().1))
    }

    /// Opens a request sealed to any key of the set.
    pub fn open(&self, body: &[u8]) -> Result<(Option<Message>, ServerResponse), OuterError> {
        let key_id = *body.first().ok_or(OuterError::Truncated)?;
        self.keys
            .iter()
            .find(|k| k.key_id == key_id)
            .ok_or(OuterError::UnknownKeyId(key_id))?
            .open(body)
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

    /// During a rotation both keys open requests; the current one is listed first, and an id
    /// the set does not hold cannot be made current.
    #[test]
    fn a_key_set_opens_both_keys_and_lists_the_current_one_first() {
        let old = OuterKey::from_seed(&[1; 32]).expect("old");
        let new = OuterKey::from_seed(&[2; 32]).expect("new");
        let (old_id, new_id) = (old.key_id(), new.key_id());
        let (old_list, new_list) = (old.encoded_list().to_vec(), new.encoded_list().to_vec());
        let (to_old, _) = outer_request(&old, NODES_PATH);
        let (to_new, _) = outer_request(&new, NODES_PATH);
        let set = OuterKeys::new(vec![old, new]).expect("set");
        assert_eq!(set.current(), old_id);
        assert_eq!(
            *set.encoded_list(),
            [old_list.clone(), new_list.clone()].concat()
        );
        set.set_current(new_id).expect("switch");
        assert_eq!(*set.encoded_list(), [new_list, old_list].concat());
        assert!(set.open(&to_old).is_ok() && set.open(&to_new).is_ok());
        let unknown = (0..=255u8)
            .find(|i| *i != old_id && *i != new_id)
            .expect("id");
        assert_eq!(
            set.set_current(unknown),
            Err(OuterError::UnknownKeyId(unknown))
        );
        assert_eq!(set.current(), new_id);
        let twin = OuterKey::from_seed(&[1; 32]).expect("same seed");
        let again = OuterKey::from_seed(&[1; 32]).expect("same seed");
        assert_eq!(
            OuterKeys::new(vec![twin, again]).err(),
            Some(OuterError::DuplicateKeyId(old_id))
        );
        assert_eq!(OuterKeys::new(Vec::new()).err(), Some(OuterError::NoKey));
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
