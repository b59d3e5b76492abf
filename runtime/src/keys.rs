//! Ephemeral OHTTP keys: created in guest memory at boot from the kernel RNG, never written
//! anywhere, rotated before they expire.
//!
//! Each epoch has a key id, an X25519 HPKE key pair (OHTTP key config, RFC 9458 §3: KEM
//! X25519-HKDF-SHA256, KDF HKDF-SHA256, AEADs AES-128-GCM and ChaCha20-Poly1305) and an expiry.
//! A new epoch starts when the current one has less than `overlap` left; the previous one keeps
//! decapsulating until it expires, so clients that fetched its evidence just before the rotation
//! still finish. Private keys live inside `ohttp::Server` (rust-hpke keys, zeroized on drop).

use std::sync::Arc;
use std::time::Duration;

use ohttp::Server;

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The kernel RNG failed (getrandom).
    #[error("kernel RNG unavailable: {0}")]
    Entropy(String),
    /// The OHTTP key config could not be built.
    #[error("OHTTP key config: {0}")]
    Config(String),
}

/// One key epoch.
pub struct KeyEpoch {
    key_id: u8,
    server: Server,
    config: Vec<u8>,
    expires_at: u64,
}

impl std::fmt::Debug for KeyEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key is never formatted.
        f.debug_struct("KeyEpoch")
            .field("key_id", &self.key_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl KeyEpoch {
    fn new(key_id: u8, expires_at: u64) -> Result<Self, KeyError> {
        let config = cloister_protocol::node::key_config(key_id)
            .map_err(|e| KeyError::Config(e.to_string()))?;
        let server = Server::new(config).map_err(|e| KeyError::Config(e.to_string()))?;
        let encoded = server
            .config()
            .encode()
            .map_err(|e| KeyError::Config(e.to_string()))?;
        Ok(KeyEpoch {
            key_id,
            server,
            config: encoded,
            expires_at,
        })
    }

    /// The key id (first byte of every request encapsulated to this key).
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The public key config (RFC 9458 §3), as bound into the evidence.
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// Expiry, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The decapsulating server.
    pub fn server(&self) -> &Server {
        &self.server
    }
}

/// Blocks until the kernel's RNG is initialised (getrandom(2) without GRND_NONBLOCK), so no
/// key is ever made from an unseeded pool early in boot.
pub fn wait_for_entropy() -> Result<(), KeyError> {
    let mut probe = [0u8; 16];
    getrandom::fill(&mut probe).map_err(|e| KeyError::Entropy(e.to_string()))
}

/// The current and (during the overlap) previous key epochs.
#[derive(Debug)]
pub struct KeyRing {
    epochs: Vec<Arc<KeyEpoch>>,
    lifetime: Duration,
    overlap: Duration,
    next_id: u8,
}

impl KeyRing {
    /// A ring with a fresh key valid for `lifetime` from `now` (Unix seconds); rotation starts
    /// a new key when less than `overlap` is left.
    pub fn new(lifetime: Duration, overlap: Duration, now: u64) -> Result<Self, KeyError> {
        wait_for_entropy()?;
        // The first id is random: a restarted guest must not reuse the id its previous key
        // had, or a device still holding that key's evidence would get an ambiguous
        // decapsulation failure (400) instead of "unknown key id" (422), which tells it and
        // the gateway to fetch fresh evidence. Ids run 1..=255 (one in 255 restarts still
        // draws the old id; the gateway refreshes on either answer).
        let mut first = [0u8; 1];
        getrandom::fill(&mut first).map_err(|e| KeyError::Entropy(e.to_string()))?;
        let mut ring = KeyRing {
            epochs: Vec::new(),
            lifetime,
            overlap: overlap.min(lifetime / 2),
            next_id: first[0].max(1),
        };
        ring.push(now)?;
        Ok(ring)
    }

    fn push(&mut self, now: u64) -> Result<(), KeyError> {
        let epoch = KeyEpoch::new(self.next_id, now + self.lifetime.as_secs())?;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.epochs.insert(0, Arc::new(epoch));
        Ok(())
    }

    /// The key new clients should use.
    pub fn current(&self) -> Arc<KeyEpoch> {
        // The ring always holds at least one epoch (constructor and rotate keep one).
        Arc::clone(&self.epochs[0])
    }

    /// The unexpired epoch with this key id.
    pub fn find(&self, key_id: u8, now: u64) -> Option<Arc<KeyEpoch>> {
        self.epochs
            .iter()
            .find(|e| e.key_id == key_id && now < e.expires_at)
            .cloned()
    }

    /// Starts a new epoch when the current one is within `overlap` of expiry, and forgets
    /// expired ones. Returns whether a new key was made.
    pub fn rotate_if_due(&mut self, now: u64) -> Result<bool, KeyError> {
        let due = self.current().expires_at <= now + self.overlap.as_secs();
        if due {
            self.push(now)?;
        }
        let newest = self.current();
        self.epochs
            .retain(|e| Arc::ptr_eq(e, &newest) || now < e.expires_at);
        Ok(due)
    }

    /// Forces a rotation now (operator-triggered or after a suspected compromise); the previous
    /// key stays usable until its own expiry unless `revoke_previous`.
    pub fn rotate_now(&mut self, now: u64, revoke_previous: bool) -> Result<(), KeyError> {
        self.push(now)?;
        if revoke_previous {
            self.epochs.truncate(1);
        }
        Ok(())
    }

    /// Key ids currently accepted.
    pub fn key_ids(&self) -> Vec<u8> {
        self.epochs.iter().map(|e| e.key_id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600;

    #[test]
    fn rotates_with_overlap_and_forgets_expired_keys() {
        let mut ring =
            KeyRing::new(Duration::from_secs(24 * H), Duration::from_secs(H), 1000).expect("ring");
        let first = ring.current();
        assert_eq!(first.expires_at(), 1000 + 24 * H);
        assert!(!ring.rotate_if_due(1000 + 22 * H).expect("rotate"));
        assert!(ring.rotate_if_due(1000 + 23 * H).expect("rotate"));
        let second = ring.current();
        assert_ne!(first.key_id(), second.key_id());
        assert_ne!(first.config(), second.config());
        // During the overlap both decapsulate.
        assert!(ring.find(first.key_id(), 1000 + 23 * H + 1).is_some());
        assert!(ring.find(second.key_id(), 1000 + 23 * H + 1).is_some());
        // After the first expires, only the second.
        ring.rotate_if_due(1000 + 24 * H).expect("rotate");
        assert!(ring.find(first.key_id(), 1000 + 24 * H).is_none());
        assert_eq!(ring.key_ids(), vec![second.key_id()]);
    }

    #[test]
    fn forced_rotation_can_revoke() {
        let mut ring =
            KeyRing::new(Duration::from_secs(24 * H), Duration::from_secs(H), 0).expect("ring");
        let old = ring.current().key_id();
        ring.rotate_now(10, true).expect("rotate");
        assert!(ring.find(old, 11).is_none());
        assert_eq!(ring.key_ids().len(), 1);
    }

    #[test]
    fn a_new_ring_starts_at_a_random_key_id() {
        let ids: std::collections::BTreeSet<u8> = (0..16)
            .map(|_| {
                let ring =
                    KeyRing::new(Duration::from_secs(H), Duration::from_secs(60), 0).expect("ring");
                ring.current().key_id()
            })
            .collect();
        assert!(!ids.contains(&0));
        // Sixteen rings on one id: one chance in 255^15.
        assert!(ids.len() > 1, "{ids:?}");
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let ring = KeyRing::new(Duration::from_secs(H), Duration::from_secs(60), 0).expect("ring");
        let text = format!("{ring:?}");
        assert!(!text.contains("private") && !text.contains("sk"), "{text}");
    }
}
