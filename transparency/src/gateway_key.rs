//! The gateway's outer OHTTP key, in the log beside the releases and the issuer's keys
//! (issue 24, attack 4).
//!
//! The device gets the gateway's key configuration through the relay; a relay (or anyone on
//! the path) that substituted its own would read the token, the chosen node and the
//! directory. So the configuration is published in the witnessed log with an epoch, and the
//! device seals its token and its request only to a configuration it found there — current,
//! and one of at most [`MAX_ACTIVE_KEYS`] open at once. (What it fetches before that check —
//! the directory and the log's tiles — is public and self-verifying.)

use serde::{Deserialize, Serialize};

use crate::LogError;
use crate::issuer_key::{MAX_ACTIVE_KEYS, check_epoch};

/// The record format of a gateway key.
pub const GATEWAY_KEY_SCHEMA: &str = "cloister-gateway-key/v1";

/// One OHTTP key configuration of one gateway, for one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayKeyRecord {
    /// Always [`GATEWAY_KEY_SCHEMA`].
    pub schema: String,
    /// The gateway's name (the authority devices address inside the outer layer).
    pub gateway: String,
    /// The key configuration (RFC 9458 §3), lower-case hex.
    pub key_config: String,
    /// The epoch's start (Unix seconds).
    pub not_before: u64,
    /// The epoch's end (Unix seconds).
    pub not_after: u64,
}

impl GatewayKeyRecord {
    /// The canonical encoding (fields in declaration order, compact).
    pub fn to_bytes(&self) -> Result<Vec<u8>, LogError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|e| LogError::Record(e.to_string()))
    }

    /// Parses a record, refusing any encoding but the canonical one.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LogError> {
        crate::record::from_canonical(bytes, GatewayKeyRecord::to_bytes)
    }

    /// Whether `now` is in the key's epoch.
    pub fn is_active(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    fn check(&self) -> Result<(), LogError> {
        let refuse = |why: String| Err(LogError::Record(why));
        if self.schema != GATEWAY_KEY_SCHEMA {
            return refuse(format!(
                "schema {:?}, not {GATEWAY_KEY_SCHEMA:?}",
                self.schema
            ));
        }
        if self.gateway.is_empty() || self.gateway.len() > 255 {
            return refuse("a gateway name of 1 to 255 bytes".into());
        }
        let hex_ok = !self.key_config.is_empty()
            && self.key_config.len() <= 2048
            && self.key_config.len().is_multiple_of(2)
            && self
                .key_config
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return refuse("key_config is not lower-case hex".into());
        }
        check_epoch(self.not_before, self.not_after)
    }
}

/// What a device concluded from the log about the gateway's keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayKeysError {
    /// The log holds no key of the gateway whose epoch covers the present.
    #[error("the log holds no current key of gateway {0:?}")]
    NoCurrentKey(String),
    /// More epochs open at once than a rotation needs.
    #[error("gateway {gateway:?} has {active} keys open at once in the log; at most {max}")]
    TooManyActive {
        /// The gateway.
        gateway: String,
        /// Keys whose epoch covers the present.
        active: usize,
        /// [`MAX_ACTIVE_KEYS`].
        max: usize,
    },
}

/// The key configurations (bytes) of `gateway` whose epoch covers `now`, among `entries`;
/// refused: none, or more than [`MAX_ACTIVE_KEYS`].
pub fn current_gateway_keys(
    entries: &[Vec<u8>],
    gateway: &str,
    now: u64,
) -> Result<Vec<Vec<u8>>, GatewayKeysError> {
    let mut active: Vec<Vec<u8>> = entries
        .iter()
        .filter_map(|e| GatewayKeyRecord::from_bytes(e).ok())
        .filter(|r| r.gateway == gateway && r.is_active(now))
        .filter_map(|r| hex::decode(&r.key_config).ok())
        .collect();
    active.sort();
    active.dedup();
    match active.len() {
        0 => Err(GatewayKeysError::NoCurrentKey(gateway.to_owned())),
        n if n > MAX_ACTIVE_KEYS => Err(GatewayKeysError::TooManyActive {
            gateway: gateway.to_owned(),
            active: n,
            max: MAX_ACTIVE_KEYS,
        }),
        _ => Ok(active),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600;

    fn key(gateway: &str, config: &[u8], from: u64) -> GatewayKeyRecord {
        GatewayKeyRecord {
            schema: GATEWAY_KEY_SCHEMA.into(),
            gateway: gateway.into(),
            key_config: hex::encode(config),
            not_before: from,
            not_after: from + 30 * DAY,
        }
    }

    #[test]
    fn records_round_trip_and_only_current_few_keys_are_used() {
        let r = key("cloister-gateway", b"\x01\x00\x20config", 0);
        let bytes = r.to_bytes().expect("valid");
        assert_eq!(GatewayKeyRecord::from_bytes(&bytes).expect("parses"), r);
        let mut bad = r.clone();
        bad.key_config = "ABCD".into();
        assert!(bad.to_bytes().is_err());
        let now = 100 * DAY;
        let log: Vec<Vec<u8>> = [
            key("cloister-gateway", b"old", 40 * DAY),
            key("cloister-gateway", b"current", 80 * DAY),
            key("another", b"theirs", 90 * DAY),
        ]
        .iter()
        .map(|r| r.to_bytes().expect("valid"))
        .collect();
        assert_eq!(
            current_gateway_keys(&log, "cloister-gateway", now),
            Ok(vec![b"current".to_vec()])
        );
        let mut many = log.clone();
        for c in [&b"a"[..], b"b"] {
            many.push(
                key("cloister-gateway", c, 90 * DAY)
                    .to_bytes()
                    .expect("valid"),
            );
        }
        assert!(matches!(
            current_gateway_keys(&many, "cloister-gateway", now),
            Err(GatewayKeysError::TooManyActive { active: 3, .. })
        ));
        assert_eq!(
            current_gateway_keys(&log, "cloister-gateway", 10 * DAY),
            Err(GatewayKeysError::NoCurrentKey("cloister-gateway".into()))
        );
    }
}
