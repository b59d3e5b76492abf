//! The way in, as the device, the relay, the gateway and the issuer see it: paths, media types,
//! the node directory and the issuer directory. Sans-IO: the servers and the client share these
//! definitions so that each side names the same thing the same way.
//!
//! ```text
//! device ── GET  /ohttp-keys ─────────────► relay ──► gateway   application/ohttp-keys
//! device ── POST /gateway (ohttp-req) ────► relay ──► gateway   outer OHTTP (RFC 9458)
//!              inside the outer layer, a Binary HTTP request (RFC 9292):
//!                GET  /v1/nodes                 → the node directory (JSON)
//!                POST /v1/nodes/<id>/ohttp      → the inner OHTTP bytes, forwarded to node <id>
//!                     authorization: PrivateToken token=…   (RFC 9577, spent once)
//! device ── GET  /.well-known/private-token-issuer-directory ──► issuer
//! device ── POST /token-request (private-token-request, Bearer account) ──► issuer
//! ```

use serde::{Deserialize, Serialize};

use crate::wire::{BundleError, clip, json_error};

/// The gateway's key configuration list (RFC 9540 `application/ohttp-keys`), served to anyone.
pub const OHTTP_KEYS_PATH: &str = "/ohttp-keys";
/// Media type of [`OHTTP_KEYS_PATH`].
pub const OHTTP_KEYS_MEDIA: &str = "application/ohttp-keys";
/// The relay's OHTTP resource (RFC 9458 §4: devices `POST` their requests here).
pub const RELAY_PATH: &str = "/";
/// The gateway's OHTTP resource (the relay forwards here).
pub const GATEWAY_PATH: &str = "/gateway";
/// RFC 9458 request media type.
pub const OHTTP_REQ_MEDIA: &str = "message/ohttp-req";
/// RFC 9458 response media type.
pub const OHTTP_RES_MEDIA: &str = "message/ohttp-res";
/// Health endpoint of every server.
pub const HEALTH_PATH: &str = "/healthz";
/// Authority the outer Binary HTTP requests name.
pub const GATEWAY_AUTHORITY: &str = "cloister-gateway";
/// Inside the outer layer: the node directory.
pub const NODES_PATH: &str = "/v1/nodes";
/// Inside the outer layer: a hash tile or entry bundle of the log, fetched through the gateway
/// (`/v1/log/` and the C2SP tlog-tiles path `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>…`, the
/// log's own bytes passed on). A device fetches every tile (and, to send, every bundle) of the
/// newest tree, never a proof from its own old size.
pub const LOG_TILE_PREFIX: &str = "/v1/log/tile/";
/// RFC 9578 issuer directory.
pub const ISSUER_DIRECTORY_PATH: &str = "/.well-known/private-token-issuer-directory";
/// RFC 9578 issuer directory media type.
pub const ISSUER_DIRECTORY_MEDIA: &str = "application/private-token-issuer-directory";
/// RFC 9578 token request resource.
pub const TOKEN_REQUEST_PATH: &str = "/token-request";
/// RFC 9578 token request media type.
pub const TOKEN_REQUEST_MEDIA: &str = "application/private-token-request";
/// RFC 9578 token response media type.
pub const TOKEN_RESPONSE_MEDIA: &str = "application/private-token-response";
/// RFC 9578 token type of publicly verifiable tokens (blind RSA 2048).
pub const TOKEN_TYPE_BLIND_RSA: u16 = 0x0002;
/// Largest node directory a device reads.
pub const MAX_DIRECTORY: usize = 4 << 20;
/// Most nodes a directory may list.
pub const MAX_NODES: usize = 1024;
/// Directory format version.
pub const DIRECTORY_VERSION: u32 = 1;
/// Nodes a device asks one directory fetch for unless its policy says otherwise: the gateway
/// answers a uniformly random sample of that many of its verified nodes (all of them when it
/// has fewer), so a directory stays small in a fleet of thousands. A sample of `k` distinct
/// nodes spans at least `k / (nodes per machine)` machines (rounded up), which a device's
/// minimum of distinct machines must not exceed.
pub const DEFAULT_DIRECTORY_SAMPLE: u16 = 8;
/// The query naming a directory fetch's sample size.
const SAMPLE_QUERY: &str = "?sample=";

/// The path, inside the outer layer, of a directory fetch for a sample of `k` nodes. Every
/// device with the same policy sends the same bytes: the gateway cannot tell one device's
/// fetch from another's, so it cannot give one device a sample of its own choosing.
pub fn nodes_path(k: std::num::NonZeroU16) -> String {
    format!("{NODES_PATH}{SAMPLE_QUERY}{k}")
}

/// Parses a directory fetch's path: `Some(Ok(None))` for [`NODES_PATH`] alone (every node, up
/// to the gateway's cap), `Some(Ok(Some(k)))` for a sample of `k` (1 to [`MAX_NODES`]),
/// `Some(Err)` for a sample size that is not one, `None` for another path.
pub fn parse_nodes_path(path: &str) -> Option<Result<Option<usize>, BundleError>> {
    let rest = path.strip_prefix(NODES_PATH)?;
    if rest.is_empty() {
        return Some(Ok(None));
    }
    let k = rest.strip_prefix(SAMPLE_QUERY)?;
    // Digits only, no sign, no leading zero: one spelling per size.
    let canonical = |n: usize| n.to_string() == k;
    Some(match k.parse::<usize>() {
        Ok(n) if canonical(n) && (1..=MAX_NODES).contains(&n) => Ok(Some(n)),
        _ => Err(BundleError::Json(format!(
            "directory sample {:?} is not 1 to {MAX_NODES}",
            clip(k)
        ))),
    })
}

/// Media type of every error body (RFC 9457).
pub const PROBLEM_MEDIA: &str = "application/problem+json";
/// Prefix of every problem `type`; the rest is the error's short name (its `kind`).
pub const PROBLEM_TYPE_PREFIX: &str = "https://cloister.invalid/problems/";

/// An RFC 9457 problem document: `kind` is a short stable name (`token-spent`, `node-unknown`,
/// ...) that a client matches on; `detail` is for people and never carries request content.
pub fn problem_json(status: u16, kind: &str, detail: &str) -> Vec<u8> {
    serde_json::json!({
        "type": format!("{PROBLEM_TYPE_PREFIX}{kind}"),
        "title": kind,
        "status": status,
        "detail": detail,
    })
    .to_string()
    .into_bytes()
}

/// The `kind` and `detail` of a problem document made by [`problem_json`] (clipped); `None`
/// when the body is not one.
pub fn parse_problem(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(&body[..body.len().min(64 << 10)]).ok()?;
    let kind = v.get("type")?.as_str()?.strip_prefix(PROBLEM_TYPE_PREFIX)?;
    let detail = v.get("detail").and_then(|d| d.as_str()).unwrap_or_default();
    Some((clip(kind), detail.chars().take(200).collect()))
}

/// The path, inside the outer layer, that forwards an inner request to node `id`.
pub fn node_ohttp_path(id: &NodeId) -> String {
    format!("{NODES_PATH}/{}/ohttp", id.as_str())
}

/// The path, inside the outer layer, of the log's hash tile at C2SP path `tile` (`tile/…`).
pub fn log_tile_path(tile: &str) -> String {
    format!("/v1/log/{}", tile.trim_start_matches('/'))
}

/// Parses a path made by [`node_ohttp_path`].
pub fn parse_node_ohttp_path(path: &str) -> Option<Result<NodeId, BundleError>> {
    let rest = path.strip_prefix(NODES_PATH)?.strip_prefix('/')?;
    let id = rest.strip_suffix("/ohttp")?;
    Some(NodeId::new(id))
}

/// A node's name in a directory: 1–32 of `a-z`, `0-9`, `-`; what the device names and the
/// gateway routes by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    /// Checks the form.
    pub fn new(s: &str) -> Result<Self, BundleError> {
        let ok = !s.is_empty()
            && s.len() <= 32
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(NodeId(s.to_owned()))
        } else {
            Err(BundleError::Json(format!(
                "node id {:?} is not 1-32 of a-z, 0-9, -",
                clip(s)
            )))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeId::new(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One node of the directory: its id and its evidence bundle (as the node served it, with the
/// operator's transparency-log proof attached). The device verifies the bundle itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// The node's id.
    pub id: NodeId,
    /// The evidence bundle (JSON object, [`crate::EvidenceBundle`]).
    pub evidence: serde_json::Value,
}

/// The node directory the gateway serves inside the outer layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDirectory {
    /// [`DIRECTORY_VERSION`].
    pub version: u32,
    /// The Privacy Pass token challenge the gateway redeems tokens for (RFC 9577
    /// `TokenChallenge`, padded base64url as the `privacypass` crate writes it); the same for
    /// every device (no redemption context), so a token says nothing of who asked.
    pub token_challenge: String,
    /// The nodes, in no meaningful order.
    pub nodes: Vec<NodeEntry>,
}

impl NodeDirectory {
    /// Decodes a directory, refusing oversize input, other versions, too many nodes and
    /// repeated ids.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        if bytes.len() > MAX_DIRECTORY {
            return Err(BundleError::TooLarge {
                found: bytes.len(),
                max: MAX_DIRECTORY,
            });
        }
        let d: NodeDirectory = serde_json::from_slice(bytes).map_err(json_error)?;
        if d.version != DIRECTORY_VERSION {
            return Err(BundleError::UnsupportedVersion {
                found: d.version,
                supported: DIRECTORY_VERSION,
            });
        }
        if d.nodes.len() > MAX_NODES {
            return Err(BundleError::TooManyItems {
                field: "nodes",
                found: d.nodes.len(),
                max: MAX_NODES,
            });
        }
        let mut ids: Vec<&NodeId> = d.nodes.iter().map(|n| &n.id).collect();
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(BundleError::Json(format!("node id {} appears twice", w[0])));
        }
        Ok(d)
    }

    /// Encodes the directory.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A `token-key` as RFC 9578 §4 writes it: the SPKI in base64url **with** padding.
pub fn encode_token_key(spki: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(spki)
}

/// The SPKI of a `token-key`, read with or without padding (some encoders drop it).
pub fn decode_token_key(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
    let text = text.trim();
    URL_SAFE
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text))
        .ok()
}

/// One key of the RFC 9578 issuer directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuerTokenKey {
    /// Token type ([`TOKEN_TYPE_BLIND_RSA`]).
    #[serde(rename = "token-type")]
    pub token_type: u16,
    /// The public key: SPKI (RSASSA-PSS parameters), base64url with padding
    /// ([`encode_token_key`], [`decode_token_key`]).
    #[serde(rename = "token-key")]
    pub token_key: String,
    /// Unix seconds from which the key is used.
    #[serde(
        rename = "not-before",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub not_before: Option<u64>,
}

/// The RFC 9578 §4 issuer directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuerDirectory {
    /// Where token requests go (a path on the issuer, or an absolute URL).
    #[serde(rename = "issuer-request-uri")]
    pub issuer_request_uri: String,
    /// Current keys, newest first.
    #[serde(rename = "token-keys")]
    pub token_keys: Vec<IssuerTokenKey>,
}

impl IssuerDirectory {
    /// Decodes a directory (at most 64 KiB; unknown fields are ignored as RFC 9578 asks).
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        const MAX: usize = 64 << 10;
        if bytes.len() > MAX {
            return Err(BundleError::TooLarge {
                found: bytes.len(),
                max: MAX,
            });
        }
        serde_json::from_slice(bytes).map_err(json_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_paths_name_one_sample_size_one_way() {
        let k = std::num::NonZeroU16::new(DEFAULT_DIRECTORY_SAMPLE).expect("nonzero");
        assert_eq!(nodes_path(k), "/v1/nodes?sample=8");
        assert!(matches!(
            parse_nodes_path("/v1/nodes?sample=8"),
            Some(Ok(Some(8)))
        ));
        assert!(matches!(parse_nodes_path("/v1/nodes"), Some(Ok(None))));
        assert!(matches!(
            parse_nodes_path("/v1/nodes?sample=1024"),
            Some(Ok(Some(1024)))
        ));
        for bad in ["0", "08", "+8", "-1", "1025", "99999", "", "8&x=1", "eight"] {
            let path = format!("/v1/nodes?sample={bad}");
            assert!(matches!(parse_nodes_path(&path), Some(Err(_))), "{path}");
        }
        for other in [
            "/v1/nodes/n1/ohttp",
            "/v1/nodesx",
            "/v1/nodes?other=1",
            "/v1/log/tile/0/000",
        ] {
            assert!(parse_nodes_path(other).is_none(), "{other}");
        }
    }

    #[test]
    fn a_token_key_is_written_padded_and_read_either_way() {
        // 293 bytes: base64 needs one `=`. (An RSA-2048 PSS SPKI is 294 bytes and needs none,
        // so the two forms coincide there.)
        let spki: Vec<u8> = (0..293u16).map(|i| (i % 256) as u8).collect();
        let text = encode_token_key(&spki);
        assert!(text.ends_with('='), "{text}");
        assert_eq!(decode_token_key(&text), Some(spki.clone()));
        assert_eq!(decode_token_key(text.trim_end_matches('=')), Some(spki));
        assert_eq!(decode_token_key("not base64url!"), None);
    }

    #[test]
    fn node_ids_and_paths() {
        let id = NodeId::new("node-7").expect("id");
        assert_eq!(node_ohttp_path(&id), "/v1/nodes/node-7/ohttp");
        assert_eq!(
            parse_node_ohttp_path("/v1/nodes/node-7/ohttp")
                .expect("a node path")
                .expect("valid id"),
            id
        );
        for bad in ["", "Node", "a/b", "..", &"a".repeat(33), "n\u{e9}"] {
            assert!(NodeId::new(bad).is_err(), "{bad:?}");
        }
        assert!(
            parse_node_ohttp_path("/v1/nodes/../ohttp")
                .expect("shape")
                .is_err()
        );
        assert!(parse_node_ohttp_path("/v1/nodes").is_none());
        assert!(parse_node_ohttp_path("/v1/other/x/ohttp").is_none());
    }

    #[test]
    fn problems_round_trip() {
        let body = problem_json(401, "token-spent", "this token was spent before");
        assert_eq!(
            parse_problem(&body),
            Some(("token-spent".into(), "this token was spent before".into()))
        );
        assert_eq!(parse_problem(b"{}"), None);
        assert_eq!(parse_problem(b"not json"), None);
    }

    #[test]
    fn directory_round_trip_and_refusals() {
        let d = NodeDirectory {
            version: DIRECTORY_VERSION,
            token_challenge: "AAIA".into(),
            nodes: vec![NodeEntry {
                id: NodeId::new("a").expect("id"),
                evidence: serde_json::json!({"version": 1}),
            }],
        };
        assert_eq!(NodeDirectory::from_json(&d.to_json()).expect("decodes"), d);
        let mut twice = d.clone();
        twice.nodes.push(twice.nodes[0].clone());
        assert!(matches!(
            NodeDirectory::from_json(&twice.to_json()),
            Err(BundleError::Json(m)) if m.contains("twice")
        ));
        let mut v2 = d.clone();
        v2.version = 2;
        assert!(matches!(
            NodeDirectory::from_json(&v2.to_json()),
            Err(BundleError::UnsupportedVersion { found: 2, .. })
        ));
        assert!(matches!(
            NodeDirectory::from_json(br#"{"version":1,"token_challenge":"","nodes":[],"x":1}"#),
            Err(BundleError::Json(_))
        ));
        assert!(matches!(
            NodeDirectory::from_json(
                br#"{"version":1,"token_challenge":"","nodes":[{"id":"A","evidence":{}}]}"#
            ),
            Err(BundleError::Json(_))
        ));
    }

    #[test]
    fn issuer_directory_is_rfc_9578_shaped() {
        let j = br#"{"issuer-request-uri":"/token-request","token-keys":[{"token-type":2,"token-key":"MIIB","not-before":1},{"token-type":2,"token-key":"x"}],"extra":true}"#;
        let d = IssuerDirectory::from_json(j).expect("decodes");
        assert_eq!(d.token_keys.len(), 2);
        assert_eq!(d.token_keys[0].not_before, Some(1));
        assert_eq!(d.token_keys[1].token_type, TOKEN_TYPE_BLIND_RSA);
    }
}
