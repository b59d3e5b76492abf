//! Tokens fetched ahead of use (issue 24, attack 3).
//!
//! An issuer and a gateway run by one operator could join an issuance to the redemption that
//! follows it at once. So the device keeps tokens fetched ahead — by `cloister tokens fill`
//! from a timer at random times ([`refill_delay`]), or a batch when the store runs dry — and
//! spends from the store: most redemptions then follow no issuance of their own. Tokens are
//! bearer credentials, so at rest the store is sealed (XChaCha20-Poly1305 under a key the
//! platform keeps apart from the sealed file: the CLI keeps it in the per-user runtime
//! directory, which is memory, never disk); a token is removed from the store when it is taken.
//! Sans-IO: the caller reads and writes the bytes.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{Rng, RngExt as _};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::secret::SecretString;

/// Bound into every sealed store (AEAD associated data): the format and its version.
const AAD: &[u8] = b"cloister/token-store/v1";
/// Most tokens a store holds.
pub const MAX_TOKENS: usize = 256;

/// Why a sealed store could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenStoreError {
    /// Too short to hold a nonce and a tag.
    #[error("the sealed token store is truncated")]
    Truncated,
    /// The key does not open it, or it was altered.
    #[error("the sealed token store does not open with this key (another key, or altered)")]
    Unsealing,
    /// It opened but does not hold a store.
    #[error("the token store's contents are malformed")]
    Malformed,
    /// The store could not be encoded or sealed.
    #[error("the token store could not be sealed")]
    Sealing,
}

/// The key a store is sealed under (never printed).
pub struct SealKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl SealKey {
    /// A fresh key.
    pub fn generate<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut k[..]);
        SealKey(k)
    }

    /// The key's bytes, for the platform to keep.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SealKey(Zeroizing::new(bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&(*self.0).into())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    /// The challenge (base64url) the token was made for.
    challenge: String,
    /// The `Authorization` value.
    token: String,
}

/// Tokens held for later requests, each with the challenge it was made for.
#[derive(Default)]
pub struct TokenStore {
    tokens: Vec<(String, SecretString)>,
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl TokenStore {
    /// Tokens held.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Tokens held for `challenge`.
    pub fn count(&self, challenge: &str) -> usize {
        self.tokens.iter().filter(|(c, _)| c == challenge).count()
    }

    /// Adds a token made for `challenge` (beyond [`MAX_TOKENS`], the oldest goes).
    pub fn add(&mut self, challenge: &str, token: SecretString) {
        self.tokens.push((challenge.to_owned(), token));
        if self.tokens.len() > MAX_TOKENS {
            self.tokens.remove(0);
        }
    }

    /// Takes (removes) a token for `challenge`, if one is held. Tokens for other challenges
    /// (another gateway or issuer key) are dropped: they can never be spent here.
    pub fn take(&mut self, challenge: &str) -> Option<SecretString> {
        self.tokens.retain(|(c, _)| c == challenge);
        self.tokens.pop().map(|(_, t)| t)
    }

    /// The store sealed under `key`: a random 24-byte nonce, then the ciphertext and tag.
    pub fn seal<R: Rng + ?Sized>(
        &self,
        key: &SealKey,
        rng: &mut R,
    ) -> Result<Vec<u8>, TokenStoreError> {
        let stored: Vec<Stored> = self
            .tokens
            .iter()
            .map(|(c, t)| Stored {
                challenge: c.clone(),
                token: t.expose().to_owned(),
            })
            .collect();
        let encoded = serde_json::to_vec(&stored).map(Zeroizing::new);
        // The copies of the tokens are zeroized here, field by field.
        for s in stored {
            drop(Zeroizing::new(s.token));
        }
        let plain = encoded.map_err(|_| TokenStoreError::Sealing)?;
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let sealed = key
            .cipher()
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .map_err(|_| TokenStoreError::Sealing)?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(out)
    }

    /// Opens a store sealed under `key`.
    pub fn open(sealed: &[u8], key: &SealKey) -> Result<Self, TokenStoreError> {
        if sealed.len() < 24 + 16 {
            return Err(TokenStoreError::Truncated);
        }
        let (nonce, body) = sealed.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| TokenStoreError::Truncated)?;
        let plain = Zeroizing::new(
            key.cipher()
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: body,
                        aad: AAD,
                    },
                )
                .map_err(|_| TokenStoreError::Unsealing)?,
        );
        let stored: Vec<Stored> =
            serde_json::from_slice(&plain).map_err(|_| TokenStoreError::Malformed)?;
        Ok(TokenStore {
            tokens: stored
                .into_iter()
                .map(|s| (s.challenge, SecretString::new(s.token)))
                .collect(),
        })
    }
}

/// A random wait before the next refill: exponential with mean `mean` (a Poisson process, so
/// that refills carry no rhythm an issuer could match to requests), capped at 4 × `mean`.
pub fn refill_delay<R: Rng + ?Sized>(
    rng: &mut R,
    mean: std::time::Duration,
) -> std::time::Duration {
    let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
    mean.mul_f64((-u.ln()).min(4.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choose::os_rng;

    fn store() -> TokenStore {
        let mut s = TokenStore::default();
        s.add(
            "challenge-a",
            SecretString::new("PrivateToken token=\"AAAA\"".into()),
        );
        s.add(
            "challenge-a",
            SecretString::new("PrivateToken token=\"BBBB\"".into()),
        );
        s.add(
            "challenge-b",
            SecretString::new("PrivateToken token=\"CCCC\"".into()),
        );
        s
    }

    #[test]
    fn a_sealed_store_opens_only_with_its_key_and_shows_no_token() {
        let mut rng = os_rng().expect("rng");
        let key = SealKey::generate(&mut rng);
        let sealed = store().seal(&key, &mut rng).expect("sealed");
        for needle in [&b"PrivateToken"[..], b"AAAA", b"challenge-a"] {
            assert!(!sealed.windows(needle.len()).any(|w| w == needle));
        }
        let opened = TokenStore::open(&sealed, &key).expect("opens");
        assert_eq!(opened.len(), 3);
        assert_eq!(opened.count("challenge-a"), 2);
        let other = SealKey::generate(&mut rng);
        assert_eq!(
            TokenStore::open(&sealed, &other).err(),
            Some(TokenStoreError::Unsealing)
        );
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert_eq!(
            TokenStore::open(&altered, &key).err(),
            Some(TokenStoreError::Unsealing)
        );
        assert_eq!(
            TokenStore::open(&sealed[..30], &key).err(),
            Some(TokenStoreError::Truncated)
        );
        // Two seals of one store differ (a fresh nonce each time).
        assert_ne!(
            store().seal(&key, &mut rng).expect("sealed"),
            store().seal(&key, &mut rng).expect("sealed")
        );
        assert_eq!(format!("{key:?}"), "SealKey([redacted])");
        assert_eq!(format!("{opened:?}"), "TokenStore { tokens: 3 }");
    }

    #[test]
    fn a_token_is_taken_once_and_only_for_its_challenge() {
        let mut s = store();
        let a = s.take("challenge-a").expect("one for a");
        assert!(a.expose().starts_with("PrivateToken"));
        // The tokens for another challenge went with the first take for this one.
        assert_eq!(s.len(), 1);
        assert!(s.take("challenge-a").is_some());
        assert!(s.take("challenge-a").is_none());
        assert!(s.take("challenge-b").is_none());
    }

    #[test]
    fn refills_wait_an_exponential_time_around_the_mean() {
        let mut rng = os_rng().expect("rng");
        let mean = std::time::Duration::from_secs(3600);
        let waits: Vec<f64> = (0..4000)
            .map(|_| refill_delay(&mut rng, mean).as_secs_f64() / 3600.0)
            .collect();
        let avg = waits.iter().sum::<f64>() / waits.len() as f64;
        // Exponential(1) capped at 4: mean 1 - e^-4 = 0.982, sd about 0.95; 4,000 draws put the
        // sample mean within ±0.1 of it far beyond six sd.
        assert!((0.88..1.08).contains(&avg), "mean {avg}");
        assert!(waits.iter().all(|w| (0.0..=4.0).contains(w)));
        let short = waits.iter().filter(|w| **w < 0.5).count() as f64 / 4000.0;
        assert!((0.35..0.44).contains(&short), "{short}"); // 1 - e^-0.5 = 0.393
    }
}
