//! The two OHTTP layers, sans-IO: a Binary HTTP request (RFC 9292, known-length) sealed to a
//! key configuration (RFC 9458), and the context that opens the answer.
//!
//! * Outer: to the gateway's key (the `application/ohttp-keys` list fetched through the
//!   relay), authority [`GATEWAY_AUTHORITY`].
//! * Inner: to the node's attested key config (`Verified::key_config`), authority
//!   [`GUEST_AUTHORITY`].
//!
//! Both layers pad their Binary HTTP to the buckets of [`cloister_protocol::padding`], so the
//! relay and the gateway see a bucket, never the length of the chat; an inner request longer
//! than the largest bucket is refused here rather than sent with its length showing.
//!
//! Plaintext buffers are zeroized after use; the `bhttp` message type keeps its own copy,
//! which is dropped (not zeroized) when the call returns.

use bhttp::Message;
use cloister_protocol::access::GATEWAY_AUTHORITY;
use cloister_protocol::padding;
use zeroize::Zeroizing;

use crate::error::{ClientError, Layer};
use crate::url::media_type;

/// Authority the inner Binary HTTP requests name.
pub const GUEST_AUTHORITY: &str = "cloister-guest";

/// A decoded Binary HTTP response.
pub struct Decoded {
    /// The status code.
    pub status: u16,
    /// Media type, lower-case, without parameters.
    pub content_type: Option<String>,
    /// The body.
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Decoded {
    /// Whether the media type is `media`.
    pub fn is(&self, media: &str) -> bool {
        self.content_type.as_deref() == Some(media)
    }
}

/// A request sealed to one layer's key, and the context that opens its answer.
pub struct Sealed {
    /// The `message/ohttp-req` bytes.
    pub bytes: Vec<u8>,
    context: ohttp::ClientResponse,
    layer: Layer,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("layer", &self.layer)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A request for the gateway, sealed to the first usable key of its RFC 9540 key list.
pub fn gateway_request(
    outer_keys: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<Sealed, ClientError> {
    let client = ohttp::ClientRequest::from_encoded_config_list(outer_keys)
        .map_err(|e| ClientError::OuterKey(e.to_string()))?;
    let plain = encode(Layer::Outer, method, GATEWAY_AUTHORITY, path, headers, body)?;
    seal(client, &plain, Layer::Outer)
}

/// A `POST` for the node, sealed to its attested key config.
pub fn node_request(
    key_config: &[u8],
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Sealed, ClientError> {
    let client =
        ohttp::ClientRequest::from_encoded_config(key_config).map_err(|e| ClientError::Ohttp {
            layer: Layer::Inner,
            operation: "encapsulation",
            reason: e.to_string(),
        })?;
    let headers = [("content-type", content_type.as_bytes())];
    let plain = encode(Layer::Inner, "POST", GUEST_AUTHORITY, path, &headers, body)?;
    seal(client, &plain, Layer::Inner)
}

/// Checks that `outer_keys` holds a usable key configuration.
pub fn check_outer_keys(outer_keys: &[u8]) -> Result<(), ClientError> {
    ohttp::ClientRequest::from_encoded_config_list(outer_keys)
        .map(|_| ())
        .map_err(|e| ClientError::OuterKey(e.to_string()))
}

/// The configurations of the gateway's key list (`application/ohttp-keys`, RFC 9540) that are
/// among `logged` (encoded configurations found current in the log), as a list to seal to.
/// None: refused — whoever served the list (the relay, anyone on the path) is not the logged
/// gateway.
pub fn logged_outer_keys(outer_keys: &[u8], logged: &[Vec<u8>]) -> Result<Vec<u8>, ClientError> {
    let configs = ohttp::KeyConfig::decode_list(outer_keys)
        .map_err(|e| ClientError::OuterKey(e.to_string()))?;
    let found: Vec<&ohttp::KeyConfig> = configs
        .iter()
        .filter(|c| c.encode().is_ok_and(|b| logged.contains(&b)))
        .collect();
    if found.is_empty() {
        return Err(ClientError::OuterKeyNotLogged);
    }
    ohttp::KeyConfig::encode_list(&found).map_err(|e| ClientError::OuterKey(e.to_string()))
}

fn encode(
    layer: Layer,
    method: &str,
    authority: &str,
    path: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, ClientError> {
    let mut m = Message::request(
        method.as_bytes().to_vec(),
        b"https".to_vec(),
        authority.as_bytes().to_vec(),
        path.as_bytes().to_vec(),
    );
    for (name, value) in headers {
        m.put_header(*name, *value);
    }
    m.write_content(body);
    let padding_layer = match layer {
        Layer::Inner => padding::Layer::Inner,
        Layer::Outer => padding::Layer::Outer,
    };
    let out = padding::write_padded(&m, padding_layer).map_err(|e| ClientError::Bhttp {
        layer,
        reason: e.to_string(),
    })?;
    if !padding::fits_one_bucket(out.len(), padding_layer) {
        return Err(ClientError::RequestTooLarge {
            len: out.len(),
            max: padding_layer.largest(),
        });
    }
    Ok(out)
}

fn seal(client: ohttp::ClientRequest, plain: &[u8], layer: Layer) -> Result<Sealed, ClientError> {
    let (bytes, context) = client.encapsulate(plain).map_err(|e| ClientError::Ohttp {
        layer,
        operation: "encapsulation",
        reason: e.to_string(),
    })?;
    Ok(Sealed {
        bytes,
        context,
        layer,
    })
}

impl Sealed {
    /// Opens the `message/ohttp-res` answer into its Binary HTTP response.
    pub fn open(self, answer: &[u8]) -> Result<Decoded, ClientError> {
        let layer = self.layer;
        let plain =
            Zeroizing::new(
                self.context
                    .decapsulate(answer)
                    .map_err(|e| ClientError::Ohttp {
                        layer,
                        operation: "decapsulation",
                        reason: e.to_string(),
                    })?,
            );
        let bhttp = |reason: String| ClientError::Bhttp { layer, reason };
        let m = padding::read_padded(&plain).map_err(|e| bhttp(e.to_string()))?;
        let status = m
            .control()
            .status()
            .map(|s| s.code())
            .ok_or_else(|| bhttp("a request where a response was expected".to_owned()))?;
        Ok(Decoded {
            status,
            content_type: m.header().get(b"content-type").and_then(media_type),
            body: Zeroizing::new(m.content().to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::testkit::{bhttp_response as response, ohttp_server as server};
    use cloister_protocol::access::NODES_PATH;
    use cloister_protocol::media;
    use cloister_protocol::workload::{ECHO_PATH, SUMMARIZE_PATH};
    use ohttp::KeyConfig;

    #[test]
    fn outer_request_carries_exactly_path_token_type_and_body() {
        let gateway = server(3);
        let list = KeyConfig::encode_list(&[gateway.config()]).expect("list");
        let auth = b"PrivateToken token=AAIA";
        let sealed = gateway_request(
            &list,
            "POST",
            &format!("{NODES_PATH}/node-1/ohttp"),
            &[
                ("authorization", &auth[..]),
                ("content-type", b"message/ohttp-req"),
            ],
            b"inner-ciphertext",
        )
        .expect("sealed");
        assert_eq!(sealed.bytes[0], 3, "key id first (RFC 9458 section 4.3)");

        let (plain, ctx) = gateway
            .decapsulate(&sealed.bytes)
            .expect("gateway opens it");
        let m = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp request");
        let c = m.control();
        assert_eq!(c.method(), Some(&b"POST"[..]));
        assert_eq!(c.scheme(), Some(&b"https"[..]));
        assert_eq!(c.authority(), Some(GATEWAY_AUTHORITY.as_bytes()));
        assert_eq!(
            c.path(),
            Some(format!("{NODES_PATH}/node-1/ohttp").as_bytes())
        );
        assert_eq!(m.header().get(b"authorization"), Some(&auth[..]));
        assert_eq!(
            m.header().get(b"content-type"),
            Some(&b"message/ohttp-req"[..])
        );
        assert_eq!(m.header().len(), 2, "no other header");
        assert_eq!(m.content(), b"inner-ciphertext");

        let answer = ctx
            .encapsulate(&response(200, "message/ohttp-res", b"node-answer"))
            .expect("encapsulate");
        let d = sealed.open(&answer).expect("opens");
        assert_eq!(d.status, 200);
        assert!(d.is("message/ohttp-res"));
        assert_eq!(&d.body[..], b"node-answer");
    }

    #[test]
    fn inner_request_is_a_post_to_the_guest() {
        let node = server(1);
        let config = node.config().encode().expect("config");
        let sealed = node_request(&config, SUMMARIZE_PATH, media::JSON, b"{}").expect("sealed");
        let (plain, ctx) = node.decapsulate(&sealed.bytes).expect("node opens it");
        let m = Message::read_bhttp(&mut Cursor::new(&plain[..])).expect("bhttp");
        assert_eq!(m.control().method(), Some(&b"POST"[..]));
        assert_eq!(m.control().authority(), Some(GUEST_AUTHORITY.as_bytes()));
        assert_eq!(m.control().path(), Some(SUMMARIZE_PATH.as_bytes()));
        assert_eq!(
            m.header().get(b"content-type"),
            Some(&b"application/json"[..])
        );
        assert_eq!(m.content(), b"{}");
        let answer = ctx
            .encapsulate(&response(422, "application/problem+json", b"{}"))
            .expect("encapsulate");
        let d = sealed.open(&answer).expect("opens");
        assert_eq!(d.status, 422);
    }

    #[test]
    fn refusals_are_named() {
        assert!(matches!(
            gateway_request(b"\x00\x01", "GET", NODES_PATH, &[], b""),
            Err(ClientError::OuterKey(_))
        ));
        assert!(matches!(
            check_outer_keys(b""),
            Err(ClientError::OuterKey(_))
        ));
        assert!(matches!(
            node_request(b"junk", ECHO_PATH, media::TEXT, b""),
            Err(ClientError::Ohttp {
                layer: Layer::Inner,
                ..
            })
        ));
        let gateway = server(3);
        let list = KeyConfig::encode_list(&[gateway.config()]).expect("list");
        let sealed = gateway_request(&list, "GET", NODES_PATH, &[], b"").expect("sealed");
        let (_, ctx) = gateway.decapsulate(&sealed.bytes).expect("opens");
        let mut answer = ctx
            .encapsulate(&response(200, "application/json", b"{}"))
            .expect("encapsulate");
        let last = answer.len() - 1;
        answer[last] ^= 1;
        assert!(matches!(
            sealed.open(&answer),
            Err(ClientError::Ohttp {
                layer: Layer::Outer,
                operation: "decapsulation",
                ..
            })
        ));
    }
}
