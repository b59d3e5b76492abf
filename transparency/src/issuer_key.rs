//! The issuer's token keys, in the log beside the releases (issue 24, attack 1).
//!
//! An issuer that gave each account its own key would learn, from the key id of every token
//! redeemed, whose request it was. So each key is published in the witnessed log, where every
//! device sees the same set, with its epoch (`not_before`..`not_after`); a device uses only a
//! logged key whose epoch covers the present and refuses an issuer that has more than
//! [`MAX_ACTIVE_KEYS`] epochs open at once or epochs shorter than [`MIN_EPOCH_SECS`] (a
//! key per account, or a key per hour, would show there). The gateway accepts a token only in
//! its key's epoch and keeps each spent nonce until the epoch ends, so a spent token cannot
//! come back once its record expires.

use serde::{Deserialize, Serialize};

use crate::LogError;

/// The record format of an issuer key.
pub const ISSUER_KEY_SCHEMA: &str = "cloister-issuer-key/v1";
/// Keys of one issuer whose epochs may be open at once (the current one and its successor).
pub const MAX_ACTIVE_KEYS: usize = 2;
/// The shortest epoch a device accepts (7 days).
pub const MIN_EPOCH_SECS: u64 = 7 * 24 * 3600;
/// The longest epoch a device accepts (90 days): a key's compromise ends with its epoch.
pub const MAX_EPOCH_SECS: u64 = 90 * 24 * 3600;

/// One token key of one issuer, for one epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerKeyRecord {
    /// Always [`ISSUER_KEY_SCHEMA`].
    pub schema: String,
    /// The issuer's name, as token challenges name it.
    pub issuer: String,
    /// The token type (0x0002, blind RSA).
    pub token_type: u16,
    /// The key, as the RFC 9578 issuer directory writes it (base64url of the SPKI, padded).
    pub token_key: String,
    /// The epoch's start (Unix seconds).
    pub not_before: u64,
    /// The epoch's end (Unix seconds): tokens of this key are refused from then on.
    pub not_after: u64,
}

impl IssuerKeyRecord {
    /// The canonical encoding (fields in declaration order, compact).
    pub fn to_bytes(&self) -> Result<Vec<u8>, LogError> {
        self.check()?;
        serde_json::to_vec(self).map_err(|e| LogError::Record(e.to_string()))
    }

    /// Parses a record, refusing any encoding but the canonical one.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LogError> {
        crate::record::from_canonical(bytes, IssuerKeyRecord::to_bytes)
    }

    /// Whether `now` is in the key's epoch.
    pub fn is_active(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }

    fn check(&self) -> Result<(), LogError> {
        let refuse = |why: String| Err(LogError::Record(why));
        if self.schema != ISSUER_KEY_SCHEMA {
            return refuse(format!(
                "schema {:?}, not {ISSUER_KEY_SCHEMA:?}",
                self.schema
            ));
        }
        if self.issuer.is_empty() || self.issuer.len() > 255 {
            return refuse("an issuer name of 1 to 255 bytes".into());
        }
        if self.token_type != 2 {
            return refuse(format!("token type {}, not 2", self.token_type));
        }
        let key_ok = !self.token_key.is_empty()
            && self.token_key.len() <= 1024
            && self
                .token_key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=');
        if !key_ok {
            return refuse("token_key is not base64url".into());
        }
        check_epoch(self.not_before, self.not_after)
    }
}

/// An operator key's epoch must last [`MIN_EPOCH_SECS`] to [`MAX_EPOCH_SECS`].
pub(crate) fn check_epoch(not_before: u64, not_after: u64) -> Result<(), LogError> {
    let epoch = not_after.saturating_sub(not_before);
    if (MIN_EPOCH_SECS..=MAX_EPOCH_SECS).contains(&epoch) {
        Ok(())
    } else {
        Err(LogError::Record(format!(
            "an epoch of {epoch} s; {MIN_EPOCH_SECS}..={MAX_EPOCH_SECS} s allowed"
        )))
    }
}

/// What a device concluded from the log about one issuer's keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IssuerKeysError {
    /// The log holds no key of the issuer whose epoch covers the present.
    #[error("the log holds no current token key of issuer {0:?}")]
    NoCurrentKey(String),
    /// More epochs open at once than a rotation needs: keys per account, or per time slot.
    #[error("issuer {issuer:?} has {active} keys open at once in the log; at most {max}")]
    TooManyActive {
        /// The issuer.
        issuer: String,
        /// Keys whose epoch covers the present.
        active: usize,
        /// [`MAX_ACTIVE_KEYS`].
        max: usize,
    },
}

/// The keys of `issuer` whose epoch covers `now`, among `entries` (the log's entries, in log
/// order; other kinds of entries are skipped), newest epoch first. Refused: none, or more than
/// [`MAX_ACTIVE_KEYS`].
pub fn current_keys(
    entries: &[Vec<u8>],
    issuer: &str,
    now: u64,
) -> Result<Vec<IssuerKeyRecord>, IssuerKeysError> {
    let mut active: Vec<IssuerKeyRecord> = entries
        .iter()
        .filter_map(|e| IssuerKeyRecord::from_bytes(e).ok())
        .filter(|r| r.issuer == issuer && r.is_active(now))
        .collect();
    active.sort_by_key(|r| std::cmp::Reverse(r.not_before));
    active.dedup_by(|a, b| a.token_key == b.token_key);
    match active.len() {
        0 => Err(IssuerKeysError::NoCurrentKey(issuer.to_owned())),
        n if n > MAX_ACTIVE_KEYS => Err(IssuerKeysError::TooManyActive {
            issuer: issuer.to_owned(),
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

    fn key(issuer: &str, key: &str, from: u64, days: u64) -> IssuerKeyRecord {
        IssuerKeyRecord {
            schema: ISSUER_KEY_SCHEMA.into(),
            issuer: issuer.into(),
            token_type: 2,
            token_key: key.into(),
            not_before: from,
            not_after: from + days * DAY,
        }
    }

    #[test]
    fn canonical_records_round_trip_and_bad_ones_are_refused() {
        let r = key("issuer.example", "MIIBUjA9Bgkq", 1_000, 30);
        let bytes = r.to_bytes().expect("valid");
        assert_eq!(IssuerKeyRecord::from_bytes(&bytes).expect("parses"), r);
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(matches!(
            IssuerKeyRecord::from_bytes(text.replacen(',', ", ", 1).as_bytes()),
            Err(LogError::NonCanonical)
        ));
        for bad in [
            key("issuer.example", "MIIB", 0, 1),
            key("issuer.example", "MIIB", 0, 91),
            key("issuer.example", "MII+/B", 0, 30),
            key("", "MIIB", 0, 30),
            IssuerKeyRecord {
                token_type: 1,
                ..key("issuer.example", "MIIB", 0, 30)
            },
        ] {
            assert!(bad.to_bytes().is_err(), "{bad:?}");
        }
        // A release record is not an issuer key.
        let release = crate::record::tests::record(1).to_bytes().expect("release");
        assert!(IssuerKeyRecord::from_bytes(&release).is_err());
    }

    #[test]
    fn the_current_keys_are_few_and_in_their_epoch() {
        let now = 100 * DAY;
        let bytes = |r: &IssuerKeyRecord| r.to_bytes().expect("valid");
        let old = key("i", "old", 40 * DAY, 30);
        let current = key("i", "current", 80 * DAY, 30);
        let next = key("i", "next", 95 * DAY, 30);
        let other = key("someone-else", "theirs", 90 * DAY, 30);
        let release = crate::record::tests::record(1).to_bytes().expect("release");
        let log = vec![
            bytes(&old),
            release,
            bytes(&current),
            bytes(&next),
            bytes(&other),
        ];
        let got = current_keys(&log, "i", now).expect("two open");
        assert_eq!(got, vec![next.clone(), current.clone()]);
        assert_eq!(
            current_keys(&log, "i", 10 * DAY),
            Err(IssuerKeysError::NoCurrentKey("i".into()))
        );
        // A key per account shows in the log: refused.
        let mut per_account = log.clone();
        per_account.push(bytes(&key("i", "account-7", 90 * DAY, 30)));
        assert_eq!(
            current_keys(&per_account, "i", now),
            Err(IssuerKeysError::TooManyActive {
                issuer: "i".into(),
                active: 3,
                max: MAX_ACTIVE_KEYS
            })
        );
        // The same key logged twice is one key.
        let mut again = log;
        again.push(bytes(&current));
        assert_eq!(current_keys(&again, "i", now).expect("two").len(), 2);
    }
}
