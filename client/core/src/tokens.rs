//! Privacy Pass (RFC 9576–9578), publicly verifiable tokens (type 0x0002, blind RSA 2048),
//! sans-IO: the issuer directory, the token request, and the token response finalised into
//! the `Authorization: PrivateToken token="…"` value the gateway redeems.
//!
//! The issuer knows the account (it authenticates it) but sees only a blinded message; the
//! gateway sees the token but cannot link it to the issuance. One caveat on timing: the client
//! fetches one token right before each request, so an issuer and a gateway that collude can
//! correlate the two by time. A batch fetched ahead of time would avoid that, but tokens are
//! bearer credentials and this client never writes them to disk.

use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use cloister_protocol::access::{IssuerDirectory, TOKEN_TYPE_BLIND_RSA, decode_token_key};
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::{PublicKey, TokenRequest, TokenResponse, TokenState};
use privacypass::{Deserialize as _, Serialize as _};
use rand::CryptoRng;

use crate::error::ClientError;
use crate::secret::SecretString;
use crate::url::BaseUrl;

/// Base64url, padded or not: RFC 9577 and RFC 9578 §4 ask for padding; some encoders drop it.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Base64url with padding, as RFC 9577 §2.2.2 asks a token to be written.
const PADDED_BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_encode_padding(true),
);

/// Bytes of a token type 0x0002 RSA modulus (RSA-2048).
const MODULUS_BYTES: usize = 256;

/// The gateway's token challenge (RFC 9577 `TokenChallenge`, base64url), checked to ask for
/// token type 0x0002.
pub fn parse_challenge(b64: &str) -> Result<TokenChallenge, ClientError> {
    let bytes = BASE64URL
        .decode(b64.trim())
        .map_err(|_| ClientError::Challenge)?;
    let challenge = TokenChallenge::deserialize(&bytes).map_err(|_| ClientError::Challenge)?;
    // Trailing bytes would make the challenge digest ambiguous.
    if challenge.serialize().ok().as_deref() != Some(&bytes[..]) {
        return Err(ClientError::Challenge);
    }
    let found = challenge.token_type() as u16;
    if found != TOKEN_TYPE_BLIND_RSA {
        return Err(ClientError::TokenType { found });
    }
    // A redemption context makes a token usable for one challenge only: a gateway that sent
    // each device its own context would force an issuance right before each redemption and
    // join the two by time (RFC 9577 §2.1.1; issue 24, attack 3). Cloister's gateway sends
    // none; a context is refused.
    if challenge.redemption_context().is_some() {
        return Err(ClientError::RedemptionContext);
    }
    Ok(challenge)
}

/// The issuer's current type-0x0002 key (the first listed whose `not-before` has passed) and
/// its request URI.
pub fn issuer_key(directory: &[u8], now: u64) -> Result<(PublicKey, String), ClientError> {
    let d = IssuerDirectory::from_json(directory).map_err(ClientError::IssuerDirectory)?;
    let key = d
        .token_keys
        .iter()
        .find(|k| k.token_type == TOKEN_TYPE_BLIND_RSA && k.not_before.is_none_or(|t| t <= now))
        .ok_or(ClientError::NoIssuerKey)?;
    let spki = decode_token_key(&key.token_key)
        .ok_or_else(|| ClientError::IssuerKey("not base64url".into()))?;
    let pk = PublicKey::from_spki(&spki).map_err(|e| ClientError::IssuerKey(e.to_string()))?;
    check_modulus(&pk)?;
    Ok((pk, d.issuer_request_uri))
}

/// The issuer key to use: the directory's current key, which must also be one of `logged`
/// (the SPKIs of the issuer's current keys in the log) when that is given. Without a logged
/// match the device refuses: an issuer could otherwise hand this account a key of its own.
pub fn logged_issuer_key(
    directory: &[u8],
    now: u64,
    logged: Option<&[Vec<u8>]>,
) -> Result<(PublicKey, String), ClientError> {
    let (pk, uri) = issuer_key(directory, now)?;
    if let Some(logged) = logged {
        let spki = pk
            .to_spki()
            .map_err(|e| ClientError::IssuerKey(e.to_string()))?;
        if !logged.contains(&spki) {
            return Err(ClientError::IssuerKeyNotLogged);
        }
    }
    Ok((pk, uri))
}

/// The SPKIs of logged issuer-key records, as [`PublicKey::to_spki`] writes them (records
/// whose key does not parse are left out: they match nothing).
pub fn logged_spkis(records: &[cloister_transparency::IssuerKeyRecord]) -> Vec<Vec<u8>> {
    records
        .iter()
        .filter_map(|r| decode_token_key(&r.token_key))
        .filter_map(|der| PublicKey::from_spki(&der).ok())
        .filter_map(|pk| pk.to_spki().ok())
        .collect()
}

/// Type 0x0002 is RSA-2048 (RFC 9578 section 6); the token library assumes 256-byte blinded
/// messages (and would panic on others), so any other size is refused here.
fn check_modulus(pk: &PublicKey) -> Result<(), ClientError> {
    let n = pk.components().n();
    let significant = n.len() - n.iter().take_while(|b| **b == 0).count();
    if significant != MODULUS_BYTES {
        return Err(ClientError::IssuerKey(format!(
            "an RSA modulus of {significant} bytes; token type 0x0002 uses {MODULUS_BYTES}"
        )));
    }
    Ok(())
}

/// Where to send the token request: a path under the issuer's URL, or a URL of the issuer's
/// own scheme, host and port (the bearer token goes nowhere else).
pub fn request_target(issuer: &BaseUrl, uri: &str) -> Result<String, ClientError> {
    let refuse = || ClientError::IssuerRequestUri(uri.chars().take(100).collect());
    if uri.starts_with('/') && !uri.starts_with("//") {
        if uri.contains(['?', '#', ' ', '\r', '\n']) {
            return Err(refuse());
        }
        return Ok(issuer.join(uri));
    }
    let absolute: BaseUrl = uri.parse().map_err(|_| refuse())?;
    // The same host and port, and never from HTTPS down to HTTP.
    if absolute.authority() != issuer.authority() || absolute.is_tls() != issuer.is_tls() {
        return Err(refuse());
    }
    let target = absolute.join("");
    Ok(if target.is_empty() {
        "/".into()
    } else {
        target
    })
}

/// A token request awaiting its response: the blinding state (secret; never printed).
pub struct PendingToken(TokenState);

impl std::fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PendingToken([redacted])")
    }
}

/// A blinded token request for `challenge` under `key`: the `application/private-token-request`
/// body and the state that finalises the answer.
pub fn token_request<R: CryptoRng>(
    rng: &mut R,
    key: PublicKey,
    challenge: &TokenChallenge,
) -> Result<(Vec<u8>, PendingToken), ClientError> {
    check_modulus(&key)?;
    let (request, state) = TokenRequest::new(rng, key, challenge)
        .map_err(|e| ClientError::TokenRequest(e.to_string()))?;
    let bytes = request
        .tls_serialize_detached()
        .map_err(|e| ClientError::TokenRequest(e.to_string()))?;
    Ok((bytes, PendingToken(state)))
}

/// Finalises the issuer's `application/private-token-response` into the `Authorization`
/// value (`PrivateToken token=…`). Fails if the blind signature does not verify.
pub fn finish_token(pending: PendingToken, response: &[u8]) -> Result<SecretString, ClientError> {
    let mut rest = response;
    let response = TokenResponse::tls_deserialize(&mut rest)
        .map_err(|e| ClientError::TokenResponse(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ClientError::TokenResponse(format!(
            "{} bytes after the response",
            rest.len()
        )));
    }
    let token = response
        .issue_token(&pending.0)
        .map_err(|e| ClientError::TokenResponse(e.to_string()))?;
    let bytes = zeroize::Zeroizing::new(
        token
            .tls_serialize_detached()
            .map_err(|e| ClientError::TokenResponse(e.to_string()))?,
    );
    let encoded = zeroize::Zeroizing::new(PADDED_BASE64URL.encode(&*bytes));
    // RFC 9577 §2.2.2: base64url with padding, as a quoted-string (its own example's form; a
    // bare `=` is not a `token` character).
    Ok(SecretString::new(format!(
        "PrivateToken token=\"{}\"",
        encoded.as_str()
    )))
}

#[cfg(test)]
mod tests;
