//! Token redemption (RFC 9577/9578): the `Authorization: PrivateToken token=…` of a forwarded
//! request must carry a type-0x0002 token for this gateway's challenge, signed by a configured
//! issuer key, whose nonce was never spent. Each refusal is its own variant; a spent-token store
//! that cannot answer is [`TokenRefusal::StoreUnavailable`], never a pass.

use privacypass::Deserialize as _;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::server::{OriginKeyStore, OriginServer};
use privacypass::public_tokens::{PublicKey, PublicToken};
use privacypass::{Nonce, TokenType, TruncatedTokenKeyId};
use sha2::{Digest as _, Sha256};

use crate::credentials::private_token;
use crate::spent::{Redemption, SpentStore, StoreError};

/// A type-0x0002 Token: type (2), nonce (32), challenge digest (32), key id (32) and a
/// 256-byte authenticator (RFC 9578 §6.4, RSA-2048).
const PUBLIC_TOKEN_LEN: usize = 2 + 32 + 32 + 32 + 256;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum TokenRefusal {
    /// No `Authorization` header.
    #[error("no PrivateToken authorization")]
    Missing,
    /// Not a `PrivateToken token=…` of type 0x0002 with a 256-byte authenticator.
    #[error("the authorization is not a publicly verifiable Privacy Pass token")]
    Malformed,
    /// Made for another challenge (another gateway, or a per-client challenge).
    #[error("the token was made for another challenge")]
    WrongChallenge,
    /// Signed under a key this gateway does not accept.
    #[error("the token names an issuer key this gateway does not accept")]
    UnknownKey,
    /// The key's logged epoch has ended: its tokens are no longer accepted (and their nonces no
    /// longer kept).
    #[error("the token's issuer key epoch has ended")]
    KeyExpired,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Invalid,
    /// Its nonce was redeemed before.
    #[error("the token was spent before")]
    Spent,
    /// The spent-token store could not answer.
    #[error("the spent-token store is unavailable: {0}")]
    StoreUnavailable(StoreError),
}

struct Keys(Vec<(TruncatedTokenKeyId, PublicKey)>);

#[async_trait::async_trait]
impl OriginKeyStore for Keys {
    async fn insert(&self, _id: TruncatedTokenKeyId, _key: PublicKey) {}
    async fn get(&self, id: &TruncatedTokenKeyId) -> Vec<PublicKey> {
        self.0
            .iter()
            .filter(|(t, _)| t == id)
            .map(|(_, k)| k.clone())
            .collect()
    }
    async fn remove(&self, _id: &TruncatedTokenKeyId) -> bool {
        false
    }
}

/// An issuer key the gateway accepts, and until when.
#[derive(Debug, Clone)]
pub struct AcceptedKey {
    /// The key.
    pub key: PublicKey,
    /// Until when its tokens are accepted.
    pub until: KeyEnd,
}

/// Until when an issuer key's tokens are accepted, which is how long their nonces are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEnd {
    /// The end of the key's epoch in the transparency log (Unix seconds).
    Logged(u64),
    /// A key not in the log: accepted without end, its nonces kept forever (devices that
    /// check issuer keys against the log refuse such a key).
    Unlogged,
}

impl AcceptedKey {
    /// A key with its logged epoch's end.
    pub fn logged(key: PublicKey, not_after: u64) -> Self {
        AcceptedKey {
            key,
            until: KeyEnd::Logged(not_after),
        }
    }

    /// A key not in the log.
    pub fn unlogged(key: PublicKey) -> Self {
        AcceptedKey {
            key,
            until: KeyEnd::Unlogged,
        }
    }
}

/// Redeems tokens for one challenge and a set of issuer keys against a spent-token store.
pub struct Redeemer {
    challenge_digest: [u8; 32],
    key_ids: Vec<([u8; 32], KeyEnd)>,
    keys: Keys,
    spent: SpentStore,
}

impl std::fmt::Debug for Redeemer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redeemer")
            .field("keys", &self.key_ids.len())
            .field("spent", &self.spent)
            .finish_non_exhaustive()
    }
}

impl Redeemer {
    /// For `challenge`, accepting tokens signed by `issuer_keys`.
    pub fn new(
        challenge: &TokenChallenge,
        issuer_keys: &[AcceptedKey],
        spent: SpentStore,
    ) -> Result<Self, String> {
        let challenge_digest = challenge.digest().map_err(|e| e.to_string())?;
        let mut key_ids = Vec::new();
        let mut keys = Vec::new();
        for k in issuer_keys {
            let spki = k.key.to_spki().map_err(|e| e.to_string())?;
            let id: [u8; 32] = Sha256::digest(&spki).into();
            key_ids.push((id, k.until));
            keys.push((id[31], k.key.clone()));
        }
        Ok(Redeemer {
            challenge_digest,
            key_ids,
            keys: Keys(keys),
            spent,
        })
    }

    /// Checks the token in `authorization` and records it spent; returns its nonce (for a
    /// [`Redeemer::refund`]).
    pub async fn redeem(&self, authorization: Option<&[u8]>) -> Result<Nonce, TokenRefusal> {
        let raw = authorization.ok_or(TokenRefusal::Missing)?;
        // The credentials are read here (RFC 9110 §11, RFC 9577 §2.2.2); the crate gets only
        // the Token's bytes.
        let bytes = private_token(raw).map_err(|_| TokenRefusal::Malformed)?;
        if bytes.len() != PUBLIC_TOKEN_LEN {
            return Err(TokenRefusal::Malformed);
        }
        let token =
            PublicToken::tls_deserialize_exact(&bytes).map_err(|_| TokenRefusal::Malformed)?;
        if token.token_type() != TokenType::Public || token.authenticator().len() != 256 {
            return Err(TokenRefusal::Malformed);
        }
        if *token.challenge_digest() != self.challenge_digest {
            return Err(TokenRefusal::WrongChallenge);
        }
        let until = self
            .key_ids
            .iter()
            .find(|(id, _)| id == token.token_key_id())
            .map(|(_, until)| *until)
            .ok_or(TokenRefusal::UnknownKey)?;
        let keep_until = match until {
            KeyEnd::Logged(end) if cloister_http::now_unix() >= end => {
                return Err(TokenRefusal::KeyExpired);
            }
            KeyEnd::Logged(end) => Some(end),
            KeyEnd::Unlogged => None,
        };
        let nonce = token.nonce();
        let redemption = Redemption::new(&self.spent, keep_until);
        match OriginServer::new()
            .redeem_token(&self.keys, &redemption, token)
            .await
        {
            Ok(()) => Ok(nonce),
            Err(privacypass::common::errors::RedeemTokenError::DoubleSpending) => {
                match redemption.take_failure() {
                    Some(e) => Err(TokenRefusal::StoreUnavailable(e)),
                    None => Err(TokenRefusal::Spent),
                }
            }
            Err(privacypass::common::errors::RedeemTokenError::KeyIdNotFound) => {
                Err(TokenRefusal::UnknownKey)
            }
            Err(_) => Err(TokenRefusal::Invalid),
        }
    }
}

impl Redeemer {
    /// Returns a spent token to its holder: only for a request that provably did no work (the
    /// node could not be reached, or shed it with 503 before opening it), so that overload
    /// does not cost a device its token. The same token presented again is linkable to the
    /// refused attempt, by the gateway only, which saw both. Best effort: if the store fails
    /// the token stays spent, which is safe.
    pub async fn refund(&self, nonce: &Nonce) {
        self.spent.unspend(nonce).await;
    }
}
