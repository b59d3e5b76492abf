//! The Privacy Pass issuer (RFC 9578 §6, token type 0x0002: blind RSA-2048, SHA-384, PSS,
//! deterministic message preparation), run by the operator.
//!
//! `GET /.well-known/private-token-issuer-directory` names the token-request resource and the
//! public key (SPKI, base64url). `POST /token-request` with `Authorization: Bearer <account>`
//! and an `application/private-token-request` body charges the account's daily quota and
//! answers the blind signature (`application/private-token-response`). The issuer sees the
//! account and a blinded message; it never sees the token that is later redeemed, so its
//! records cannot be joined with redemptions. Nothing of a request is stored or logged.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod shared;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use blind_rsa_signatures::{DefaultRng, Deterministic, KeyPair, PSS, SecretKey, Sha384};
use hyper::Method;
use hyper::body::Incoming;
use privacypass::public_tokens::server::{IssuerKeyStore, IssuerServer};
use privacypass::public_tokens::{PublicKey, TokenRequest};
use privacypass::{Deserialize as _, Serialize as _, TruncatedTokenKeyId};
use zeroize::Zeroizing;

use cloister_http::{Options, Reply, now_unix, problem, read_body, reply};
use cloister_protocol::access::{
    HEALTH_PATH, ISSUER_DIRECTORY_MEDIA, ISSUER_DIRECTORY_PATH, IssuerDirectory, IssuerTokenKey,
    TOKEN_REQUEST_MEDIA, TOKEN_REQUEST_PATH, TOKEN_RESPONSE_MEDIA, TOKEN_TYPE_BLIND_RSA,
    encode_token_key,
};

use cloister_protocol::media;

use crate::accounts::{AccountError, AccountStore, utc_day};

type RsaKeyPair = KeyPair<Sha384, PSS, Deterministic>;

/// Why the issuer's key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IssuerKeyError {
    /// The key file could not be read or written.
    #[error("issuer key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable RSA key.
    #[error("issuer key file {0} holds no RSA private key")]
    Parse(String),
    /// Key generation or encoding failed.
    #[error("issuer key: {0}")]
    Crypto(String),
}

/// The issuer's signing key.
#[derive(Clone)]
pub struct IssuerKey {
    pair: RsaKeyPair,
    spki: Vec<u8>,
    truncated_id: TruncatedTokenKeyId,
}

impl std::fmt::Debug for IssuerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKey")
            .field("truncated_id", &self.truncated_id)
            .finish_non_exhaustive()
    }
}

impl IssuerKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<Self, IssuerKeyError> {
        let pair = RsaKeyPair::generate(&mut DefaultRng, 2048)
            .map_err(|e| IssuerKeyError::Crypto(e.to_string()))?;
        Self::from_pair(pair)
    }

    fn from_pair(pair: RsaKeyPair) -> Result<Self, IssuerKeyError> {
        let spki = pair
            .pk
            .to_spki()
            .map_err(|e| IssuerKeyError::Crypto(e.to_string()))?;
        let truncated_id =
            privacypass::public_tokens::public_key_to_truncated_token_key_id(&pair.pk)
                .map_err(|e| IssuerKeyError::Crypto(e.to_string()))?;
        Ok(IssuerKey {
            pair,
            spki,
            truncated_id,
        })
    }

    /// Writes the private key (PKCS#8 PEM, mode 0600) to `path`, refusing to overwrite.
    pub fn save(&self, path: &Path) -> Result<(), IssuerKeyError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let io = |source| IssuerKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let pem = Zeroizing::new(
            self.pair
                .sk
                .to_pem()
                .map_err(|e| IssuerKeyError::Crypto(e.to_string()))?,
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        f.write_all(pem.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads a key written by [`IssuerKey::save`].
    pub fn load(path: &Path) -> Result<Self, IssuerKeyError> {
        let pem =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| IssuerKeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        let sk = SecretKey::<Sha384, PSS, Deterministic>::from_pem(&pem)
            .map_err(|_| IssuerKeyError::Parse(path.display().to_string()))?;
        let pk = sk
            .public_key()
            .map_err(|e| IssuerKeyError::Crypto(e.to_string()))?;
        Self::from_pair(RsaKeyPair { pk, sk })
    }

    /// The public key (SPKI with RSASSA-PSS parameters, as RFC 9578 publishes it).
    pub fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.pair.pk.clone()
    }

    /// The RFC 9578 issuer directory for this key.
    pub fn directory(&self) -> IssuerDirectory {
        IssuerDirectory {
            issuer_request_uri: TOKEN_REQUEST_PATH.into(),
            token_keys: vec![IssuerTokenKey {
                token_type: TOKEN_TYPE_BLIND_RSA,
                token_key: encode_token_key(&self.spki),
                not_before: None,
            }],
        }
    }
}

/// Why a token request is not signed. RFC 9578 §6.2: a request of another token type, for a
/// key the issuer does not hold, or with a blinded message of the wrong size MUST get 422
/// (Unprocessable Content); so does a blinded message that cannot be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestError {
    /// `token_type` is not 0x0002 (or the body is too short to carry one).
    #[error("token type {0:#06x} is not supported (this issuer signs type 0x0002)")]
    UnsupportedType(u16),
    /// `truncated_token_key_id` names no key of this issuer.
    #[error("the request names key id {0:#04x}, not this issuer's key")]
    OtherKey(u8),
    /// `blinded_msg` is not the key's 256 bytes.
    #[error("the blinded message is {0} bytes, not 256")]
    WrongSize(usize),
    /// The blinded message cannot be signed (e.g. not below the modulus).
    #[error("the blinded message could not be signed")]
    Unsignable,
}

impl TokenRequestError {
    /// The problem document's kind.
    pub fn kind(&self) -> &'static str {
        match self {
            TokenRequestError::UnsupportedType(_) => "token-type-unsupported",
            TokenRequestError::OtherKey(_) => "token-key-unknown",
            TokenRequestError::WrongSize(_) => "token-request-size",
            TokenRequestError::Unsignable => "token-request-unsignable",
        }
    }
}

/// Bytes of a type-0x0002 `blinded_msg` (RSA-2048).
const BLINDED_MSG_LEN: usize = 256;

impl IssuerKey {
    /// Reads a `TokenRequest` for this key (RFC 9578 §6.1: `token_type`, the truncated key
    /// id, `blinded_msg`), checking the three conditions of §6.2 in order. Nothing is charged
    /// or signed.
    pub fn parse_request(&self, body: &[u8]) -> Result<TokenRequest, TokenRequestError> {
        let token_type = match body {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => return Err(TokenRequestError::UnsupportedType(0)),
        };
        if token_type != TOKEN_TYPE_BLIND_RSA {
            return Err(TokenRequestError::UnsupportedType(token_type));
        }
        match body.get(2) {
            Some(&id) if id == self.truncated_id => {}
            Some(&id) => return Err(TokenRequestError::OtherKey(id)),
            None => return Err(TokenRequestError::WrongSize(0)),
        }
        if body.len() - 3 != BLINDED_MSG_LEN {
            return Err(TokenRequestError::WrongSize(body.len() - 3));
        }
        TokenRequest::tls_deserialize_exact(body)
            .map_err(|_| TokenRequestError::WrongSize(body.len() - 3))
    }

    /// The serialized `TokenResponse` (the blind signature) for `request`.
    pub async fn sign(&self, request: TokenRequest) -> Result<Vec<u8>, TokenRequestError> {
        IssuerServer::new()
            .issue_token_response(self, request)
            .await
            .ok()
            .and_then(|r| r.tls_serialize_detached().ok())
            .ok_or(TokenRequestError::Unsignable)
    }
}

#[async_trait::async_trait]
impl IssuerKeyStore for IssuerKey {
    async fn insert(&self, _id: TruncatedTokenKeyId, _pair: RsaKeyPair) -> bool {
        false
    }
    async fn get(&self, id: &TruncatedTokenKeyId) -> Option<RsaKeyPair> {
        (*id == self.truncated_id).then(|| self.pair.clone())
    }
    async fn remove(&self, _id: &TruncatedTokenKeyId) -> bool {
        false
    }
}

/// The issuer's settings.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// The signing key.
    pub key: IssuerKey,
    /// The accounts.
    pub accounts: AccountStore,
}

/// Serves the issuer on `listener` until the task is dropped.
pub async fn serve(config: IssuerConfig, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    serve_until(config, listener, std::future::pending(), Duration::ZERO).await
}

/// Serves the issuer until `shutdown`, then lets requests in flight finish for up to `drain`.
pub async fn serve_until(
    config: IssuerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    serve_over(config, listener, None, shutdown, drain).await
}

/// [`serve_until`] over TLS (see `cloister_http::tls`).
pub async fn serve_tls_until(
    config: IssuerConfig,
    listener: tokio::net::TcpListener,
    tls: cloister_http::tls::TlsAcceptor,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    serve_over(config, listener, Some(tls), shutdown, drain).await
}

async fn serve_over(
    config: IssuerConfig,
    listener: tokio::net::TcpListener,
    tls: Option<cloister_http::tls::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let handler = move |req| {
        let config = config.clone();
        async move { handle(&config, req).await }
    };
    let options = Options::default();
    match tls {
        Some(tls) => {
            cloister_http::serve_tls(listener, tls, handler, options, shutdown, drain).await
        }
        None => cloister_http::serve(listener, handler, options, shutdown, drain).await,
    }
}

async fn handle(config: &IssuerConfig, req: hyper::Request<Incoming>) -> Reply {
    let started = std::time::Instant::now();
    let (route, reply) = match (req.method(), req.uri().path()) {
        (&Method::GET, HEALTH_PATH) => ("health", reply(200, media::TEXT, &b"ok\n"[..])),
        (&Method::GET, ISSUER_DIRECTORY_PATH) => {
            let body = serde_json::to_vec(&config.key.directory()).unwrap_or_default();
            let mut r = reply(200, ISSUER_DIRECTORY_MEDIA, body);
            r.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("max-age=3600"),
            );
            ("directory", r)
        }
        (&Method::POST, TOKEN_REQUEST_PATH) => ("token-request", issue(config, req).await),
        _ => ("other", problem(404, "not-found", "no such route")),
    };
    tracing::info!(
        route,
        status = reply.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "issuer"
    );
    reply
}

fn bearer(req: &hyper::Request<Incoming>) -> Option<Zeroizing<String>> {
    let v = req
        .headers()
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Zeroizing::new(token.trim().to_owned()))
}

async fn issue(config: &IssuerConfig, req: hyper::Request<Incoming>) -> Reply {
    let Some(account) = bearer(&req) else {
        return problem(
            401,
            "account-unknown",
            "send Authorization: Bearer <account token>",
        );
    };
    let typed = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(TOKEN_REQUEST_MEDIA));
    if !typed {
        return problem(
            415,
            "unsupported-media-type",
            "expected application/private-token-request",
        );
    }
    let body = match read_body(req.into_body(), 1024).await {
        Ok(b) => b,
        Err(_) => return problem(413, "too-large", "a token request is 259 bytes"),
    };
    // The request must parse and name this key before the account is charged.
    let request = match config.key.parse_request(&body) {
        Ok(r) => r,
        Err(e) => return problem(422, e.kind(), &e.to_string()),
    };
    let day = utc_day(now_unix());
    let charged = config.accounts.charge(&account, day).await;
    match charged {
        Ok(_left) => {}
        Err(AccountError::Unknown) => {
            return problem(401, "account-unknown", "no account has this bearer token");
        }
        Err(e @ AccountError::QuotaExhausted { .. }) => {
            let mut r = problem(429, "quota-exhausted", &e.to_string());
            r.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                hyper::header::HeaderValue::from_static("3600"),
            );
            return r;
        }
        Err(e) => return problem(503, "account-store-unavailable", &e.to_string()),
    }
    match config.key.sign(request).await {
        Ok(bytes) => reply(200, TOKEN_RESPONSE_MEDIA, bytes),
        Err(e) => problem(422, e.kind(), &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_protocol::access::decode_token_key;

    #[test]
    fn key_round_trips_through_its_file_and_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("issuer.pem");
        let key = IssuerKey::generate().expect("generate");
        key.save(&path).expect("save");
        assert!(key.save(&path).is_err(), "never overwrites a key");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let loaded = IssuerKey::load(&path).expect("load");
        assert_eq!(loaded.spki(), key.spki());
        let d = loaded.directory();
        assert_eq!(d.token_keys[0].token_type, TOKEN_TYPE_BLIND_RSA);
        assert_eq!(d.token_keys[0].token_key, encode_token_key(key.spki()));
        let spki = decode_token_key(&d.token_keys[0].token_key).expect("base64url");
        assert_eq!(
            PublicKey::from_spki(&spki)
                .expect("spki")
                .to_spki()
                .expect("spki"),
            key.spki()
        );
        std::fs::write(dir.path().join("junk.pem"), "not a key").expect("write");
        assert!(matches!(
            IssuerKey::load(&dir.path().join("junk.pem")),
            Err(IssuerKeyError::Parse(_))
        ));
    }
}
