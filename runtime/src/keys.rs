//! Ephemeral OHTTP keys: created in guest memory at boot from the kernel RNG, never written
//! anywhere, rotated before they expire.
//!
//! Each epoch has a key id, an X25519 HPKE key pair (OHTTP key config, RFC 9458 §3: KEM
//! X25519-HKDF-SHA256, KDF HKDF-SHA256, AEADs AES-128-GCM and ChaCha20-Poly1305) and an expiry.
//! A new epoch starts when the current one has less than `overlap` left; the previous one keeps
//! decapsulating until it expires, so clients that fetched its evidence just before the rotation
//! still finish. Private keys live inside `ohttp::Server` (rust-hpke keys, zeroized on drop).
//!
//! Expiry is decided on the guest's monotonic clock (`Instant`, CLOCK_MONOTONIC), which
//! `settimeofday` and the host's RTC cannot move: a host that sets the guest's wall clock back
//! does not stretch a key's life. The wall-clock expiry is only what the evidence announces.
//!
//! Each epoch remembers the encapsulated keys (RFC 9458 §4.3, `enc`) of the requests it has
//! opened: a host replaying a sealed request to time the workload again, or to watch its
//! memory accesses again, gets a refusal before the workload runs. The set is bounded; when it
//! is full the epoch stops taking requests (devices fetch fresh evidence) and the ring rotates.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// Requests one key epoch opens at most: the seen-set's bound (32 bytes each, about 8 MiB
/// with the table's overhead). A guest answering 100 requests a second for a day's key
/// lifetime would need 8.6 million: a busier epoch ends early instead, by rotation.
pub const MAX_REQUESTS_PER_KEY: usize = 1 << 18;

/// Bytes of the OHTTP header before `enc` (key id, KEM, KDF, AEAD: RFC 9458 §4.3).
const HEADER_LEN: usize = 7;
/// Length of `enc` for DHKEM(X25519, HKDF-SHA256) (RFC 9180 §7.1: Nenc = 32).
const ENC_LEN: usize = 32;

/// What an epoch says about a request's encapsulated key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Not seen before: now remembered.
    Fresh,
    /// Opened before under this key: a replay.
    Replayed,
    /// The epoch has opened as many requests as it may.
    Exhausted,
}

/// One key epoch.
pub struct KeyEpoch {
    key_id: u8,
    server: Server,
    config: Vec<u8>,
    expires_at: u64,
    deadline: Instant,
    seen: Mutex<HashSet<[u8; ENC_LEN]>>,
    capacity: usize,
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
    fn new(
        key_id: u8,
        expires_at: u64,
        deadline: Instant,
        capacity: usize,
    ) -> Result<Self, KeyError> {
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
            deadline,
            seen: Mutex::new(HashSet::new()),
            capacity,
        })
    }

    /// Remembers the encapsulated key of a request this epoch has just opened (`request` is
    /// the whole `message/ohttp-req`), and says whether it was new. Call it after
    /// decapsulation succeeded (so garbage fills nothing) and before the workload runs.
    pub fn admit(&self, request: &[u8]) -> Admission {
        let Some(enc) = request
            .get(HEADER_LEN..HEADER_LEN + ENC_LEN)
            .and_then(|e| <[u8; ENC_LEN]>::try_from(e).ok())
        else {
            // Decapsulation succeeded, so the header and enc were there; be strict anyway.
            return Admission::Replayed;
        };
        let Ok(mut seen) = self.seen.lock() else {
            return Admission::Exhausted;
        };
        if seen.contains(&enc) {
            Admission::Replayed
        } else if seen.len() >= self.capacity {
            Admission::Exhausted
        } else {
            seen.insert(enc);
            Admission::Fresh
        }
    }

    /// Whether the epoch has opened as many requests as it may.
    pub fn exhausted(&self) -> bool {
        self.seen
            .lock()
            .map(|s| s.len() >= self.capacity)
            .unwrap_or(true)
    }

    /// The key id (first byte of every request encapsulated to this key).
    pub fn key_id(&self) -> u8 {
        self.key_id
    }

    /// The public key config (RFC 9458 §3), as bound into the evidence.
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    /// Expiry announced in the evidence, Unix seconds.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// Whether the key has expired at `now` on the monotonic clock.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
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
    capacity: usize,
}

/// A moment on both clocks: the monotonic one decides, the wall one is announced.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// The monotonic clock.
    pub mono: Instant,
    /// Unix seconds, as the guest's wall clock says (the host can set it).
    pub wall: u64,
}

impl Now {
    /// The present.
    pub fn read() -> Self {
        Now {
            mono: Instant::now(),
            wall: cloister_http::now_unix(),
        }
    }
}

impl KeyRing {
    /// A ring with a fresh key valid for `lifetime` from `now`; rotation starts a new key when
    /// less than `overlap` is left.
    pub fn new(lifetime: Duration, overlap: Duration, now: Now) -> Result<Self, KeyError> {
        Self::with_capacity(lifetime, overlap, now, MAX_REQUESTS_PER_KEY)
    }

    /// As [`KeyRing::new`], each epoch opening at most `capacity` requests.
    pub fn with_capacity(
        lifetime: Duration,
        overlap: Duration,
        now: Now,
        capacity: usize,
    ) -> Result<Self, KeyError> {
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
            capacity: capacity.max(1),
        };
        ring.push(now)?;
        Ok(ring)
    }

    fn push(&mut self, now: Now) -> Result<(), KeyError> {
        let epoch = KeyEpoch::new(
            self.next_id,
            now.wall + self.lifetime.as_secs(),
            now.mono + self.lifetime,
            self.capacity,
        )?;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.epochs.insert(0, Arc::new(epoch));
        Ok(())
    }

    /// The key new clients should use.
    pub fn current(&self) -> Arc<KeyEpoch> {
        // The ring always holds at least one epoch (constructor and rotate keep one).
        Arc::clone(&self.epochs[0])
    }

    /// The unexpired epoch with this key id, at `now` on the monotonic clock.
    pub fn find(&self, key_id: u8, now: Instant) -> Option<Arc<KeyEpoch>> {
        self.epochs
            .iter()
            .find(|e| e.key_id == key_id && !e.expired(now))
            .cloned()
    }

    /// Starts a new epoch when the current one is within `overlap` of expiry (monotonic) or has
    /// opened all the requests it may, and forgets expired ones. Returns whether a new key was
    /// made.
    pub fn rotate_if_due(&mut self, now: Now) -> Result<bool, KeyError> {
        let current = self.current();
        let due = current.deadline <= now.mono + self.overlap || current.exhausted();
        if due {
            self.push(now)?;
        }
        let newest = self.current();
        self.epochs
            .retain(|e| Arc::ptr_eq(e, &newest) || !e.expired(now.mono));
        Ok(due)
    }

    /// Forces a rotation now (operator-triggered or after a suspected compromise); the previous
    /// key stays usable until its own expiry unless `revoke_previous`.
    pub fn rotate_now(&mut self, now: Now, revoke_previous: bool) -> Result<(), KeyError> {
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

    fn at(origin: Instant, wall0: u64, secs: u64) -> Now {
        Now {
            mono: origin + Duration::from_secs(secs),
            wall: wall0 + secs,
        }
    }

    fn ring(lifetime: u64, overlap: u64, now: Now) -> KeyRing {
        KeyRing::new(
            Duration::from_secs(lifetime),
            Duration::from_secs(overlap),
            now,
        )
        .expect("ring")
    }

    #[test]
    fn rotates_with_overlap_and_forgets_expired_keys() {
        let o = Instant::now();
        let t = |s| at(o, 1000, s);
        let mut ring = ring(24 * H, H, t(0));
        let first = ring.current();
        assert_eq!(first.expires_at(), 1000 + 24 * H);
        assert!(!ring.rotate_if_due(t(22 * H)).expect("rotate"));
        assert!(ring.rotate_if_due(t(23 * H)).expect("rotate"));
        let second = ring.current();
        assert_ne!(first.key_id(), second.key_id());
        assert_ne!(first.config(), second.config());
        // During the overlap both decapsulate.
        assert!(ring.find(first.key_id(), t(23 * H + 1).mono).is_some());
        assert!(ring.find(second.key_id(), t(23 * H + 1).mono).is_some());
        // After the first expires, only the second.
        ring.rotate_if_due(t(24 * H)).expect("rotate");
        assert!(ring.find(first.key_id(), t(24 * H).mono).is_none());
        assert_eq!(ring.key_ids(), vec![second.key_id()]);
    }

    #[test]
    fn the_hosts_wall_clock_does_not_stretch_a_keys_life() {
        let o = Instant::now();
        let mut ring = ring(24 * H, H, at(o, 1_000_000, 0));
        let first = ring.current();
        // A day and a second later on the monotonic clock, while the host has set the guest's
        // wall clock back to the start: the key is gone all the same.
        let later = Now {
            mono: o + Duration::from_secs(24 * H + 1),
            wall: 1_000_000,
        };
        assert!(ring.find(first.key_id(), later.mono).is_none());
        assert!(ring.rotate_if_due(later).expect("rotate"));
        assert_eq!(ring.key_ids(), vec![ring.current().key_id()]);
        // And a wall clock moved a week forward does not end it early.
        let soon = o + Duration::from_secs(60);
        assert!(ring.find(ring.current().key_id(), soon).is_some());
    }

    #[test]
    fn forced_rotation_can_revoke() {
        let o = Instant::now();
        let mut ring = ring(24 * H, H, at(o, 0, 0));
        let old = ring.current().key_id();
        ring.rotate_now(at(o, 0, 10), true).expect("rotate");
        assert!(ring.find(old, at(o, 0, 11).mono).is_none());
        assert_eq!(ring.key_ids().len(), 1);
    }

    fn request(enc: u8) -> Vec<u8> {
        let mut r = vec![1, 0, 0x20, 0, 1, 0, 1];
        r.extend([enc; ENC_LEN]);
        r.extend([0u8; 40]);
        r
    }

    #[test]
    fn an_epoch_admits_each_encapsulated_key_once_and_fills_up() {
        let o = Instant::now();
        let ring = KeyRing::with_capacity(
            Duration::from_secs(H),
            Duration::from_secs(60),
            at(o, 0, 0),
            2,
        )
        .expect("ring");
        let epoch = ring.current();
        assert_eq!(epoch.admit(&request(1)), Admission::Fresh);
        assert_eq!(epoch.admit(&request(1)), Admission::Replayed);
        assert_eq!(epoch.admit(&request(2)), Admission::Fresh);
        assert!(epoch.exhausted());
        assert_eq!(epoch.admit(&request(3)), Admission::Exhausted);
        // A replay is still called a replay when the epoch is full.
        assert_eq!(epoch.admit(&request(2)), Admission::Replayed);
        assert_eq!(epoch.admit(&[1, 0, 0x20]), Admission::Replayed);
    }

    #[test]
    fn a_full_epoch_rotates() {
        let o = Instant::now();
        let mut ring = KeyRing::with_capacity(
            Duration::from_secs(H),
            Duration::from_secs(60),
            at(o, 0, 0),
            1,
        )
        .expect("ring");
        let first = ring.current();
        assert_eq!(first.admit(&request(9)), Admission::Fresh);
        assert!(ring.rotate_if_due(at(o, 0, 1)).expect("rotate"));
        assert_ne!(ring.current().key_id(), first.key_id());
        // The full one still decapsulates (and refuses) until it expires.
        assert!(ring.find(first.key_id(), at(o, 0, 2).mono).is_some());
    }

    #[test]
    fn a_new_ring_starts_at_a_random_key_id() {
        let now = Now::read();
        let ids: std::collections::BTreeSet<u8> = (0..16)
            .map(|_| ring(H, 60, now).current().key_id())
            .collect();
        assert!(!ids.contains(&0));
        // Sixteen rings on one id: one chance in 255^15.
        assert!(ids.len() > 1, "{ids:?}");
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let ring = ring(H, 60, Now::read());
        let text = format!("{ring:?}");
        assert!(!text.contains("private") && !text.contains("sk"), "{text}");
    }
}
