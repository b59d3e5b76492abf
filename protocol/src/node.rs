//! The node's side of the wire: what the host (and through it the gateway) asks the guest over
//! vsock, and the OHTTP key configuration the guest attests. HTTP/1.1:
//!
//! ```text
//! GET  /v1/evidence[?nonce=HEX]   → the evidence bundle (application/json)
//! POST /v1/ohttp   (message/ohttp-req) → message/ohttp-res: the inner layer, opened in the guest
//! GET  /healthz                   → ok
//! ```
//!
//! Both OHTTP layers (the gateway's outer key and the guest's inner key) use one suite: KEM
//! X25519-HKDF-SHA256, KDF HKDF-SHA256, AEAD AES-128-GCM or ChaCha20-Poly1305 (RFC 9180 ids
//! 0x0020, 0x0001, 0x0001 / 0x0003), built only by [`key_config`].

use ohttp::hpke::{Aead, Kdf, Kem};
use ohttp::{KeyConfig, SymmetricSuite};

use crate::binding::MAX_NONCE_LEN;

/// The guest's evidence bundle.
pub const EVIDENCE_PATH: &str = "/v1/evidence";
/// The guest's inner OHTTP resource.
pub const OHTTP_PATH: &str = "/v1/ohttp";
/// The query parameter of a fresh bundle's nonce (hex).
pub const NONCE_PARAM: &str = "nonce";

/// The KEM of both layers.
pub const KEM: Kem = Kem::X25519Sha256;
/// The symmetric suites of both layers, preferred first.
pub const SUITES: [(Kdf, Aead); 2] = [
    (Kdf::HkdfSha256, Aead::Aes128Gcm),
    (Kdf::HkdfSha256, Aead::ChaCha20Poly1305),
];

/// A fresh key configuration with id `key_id` (a new X25519 key pair from the OS's random
/// source) offering [`KEM`] and [`SUITES`].
pub fn key_config(key_id: u8) -> Result<KeyConfig, ohttp::Error> {
    KeyConfig::new(
        key_id,
        KEM,
        SUITES
            .iter()
            .map(|(kdf, aead)| SymmetricSuite::new(*kdf, *aead))
            .collect(),
    )
}

/// A key configuration of the contract's suites derived from `ikm` (RFC 9180 `DeriveKeyPair`):
/// the same secret gives the same key, so a gateway's key can be published before it serves.
pub fn derived_key_config(key_id: u8, ikm: &[u8]) -> Result<KeyConfig, ohttp::Error> {
    KeyConfig::derive(
        key_id,
        KEM,
        SUITES
            .iter()
            .map(|(kdf, aead)| SymmetricSuite::new(*kdf, *aead))
            .collect(),
        ikm,
    )
}

/// A gateway's outer key configuration, derived from its 32-byte secret `seed`; the key id is
/// the first byte of SHA-256(seed). What the gateway serves and what its operator logs.
pub fn gateway_key_config(seed: &[u8; 32]) -> Result<KeyConfig, ohttp::Error> {
    derived_key_config(gateway_key_id(seed), seed)
}

/// The key id of the gateway key derived from `seed`.
pub fn gateway_key_id(seed: &[u8; 32]) -> u8 {
    use sha2::Digest as _;
    sha2::Sha256::digest(seed)[0]
}

/// The path of a bundle bound to `nonce` (the cached bundle when it is empty).
pub fn evidence_path(nonce: &[u8]) -> String {
    if nonce.is_empty() {
        EVIDENCE_PATH.to_owned()
    } else {
        format!("{EVIDENCE_PATH}?{NONCE_PARAM}={}", hex::encode(nonce))
    }
}

/// Why an evidence query is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceQueryError {
    /// Another parameter, or the nonce twice.
    #[error("the only query parameter is nonce=HEX, once")]
    Parameters,
    /// Longer than [`MAX_NONCE_LEN`] bytes.
    #[error("nonce is longer than 64 bytes")]
    TooLong,
    /// Not hex.
    #[error("nonce is not hex")]
    NotHex,
}

/// The nonce of an evidence request's query (empty without one).
pub fn parse_nonce_query(query: Option<&str>) -> Result<Vec<u8>, NonceQueryError> {
    let Some(q) = query else {
        return Ok(Vec::new());
    };
    let mut nonce = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((NONCE_PARAM, v)) if nonce.is_none() => nonce = Some(v),
            _ => return Err(NonceQueryError::Parameters),
        }
    }
    match nonce {
        None => Ok(Vec::new()),
        Some(v) if v.len() > 2 * MAX_NONCE_LEN => Err(NonceQueryError::TooLong),
        Some(v) => hex::decode(v).map_err(|_| NonceQueryError::NotHex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_travels_as_hex_and_comes_back() {
        assert_eq!(evidence_path(b""), "/v1/evidence");
        let path = evidence_path(&[0xab, 0x01]);
        assert_eq!(path, "/v1/evidence?nonce=ab01");
        let query = path.split_once('?').map(|(_, q)| q);
        assert_eq!(parse_nonce_query(query), Ok(vec![0xab, 0x01]));
        assert_eq!(parse_nonce_query(None), Ok(Vec::new()));
        assert_eq!(parse_nonce_query(Some("")), Ok(Vec::new()));
    }

    #[test]
    fn a_bad_query_is_named() {
        for (q, e) in [
            ("nonce=zz", NonceQueryError::NotHex),
            ("nonce=00&nonce=01", NonceQueryError::Parameters),
            ("other=1", NonceQueryError::Parameters),
            ("nonce", NonceQueryError::Parameters),
        ] {
            assert_eq!(parse_nonce_query(Some(q)), Err(e), "{q}");
        }
        let long = format!("nonce={}", "00".repeat(MAX_NONCE_LEN + 1));
        assert_eq!(
            parse_nonce_query(Some(&long)),
            Err(NonceQueryError::TooLong)
        );
    }

    #[test]
    fn the_key_config_offers_the_suite_in_order() {
        let config = key_config(7).expect("config");
        let encoded = config.encode().expect("encode");
        // key id, KEM 0x0020, a 32-byte public key, then 2 × (KDF, AEAD) as 8 bytes.
        assert_eq!(encoded[0], 7);
        assert_eq!(&encoded[1..3], &[0x00, 0x20]);
        assert_eq!(&encoded[35..37], &[0x00, 0x08]);
        assert_eq!(&encoded[37..], &[0, 1, 0, 1, 0, 1, 0, 3]);
    }
}
