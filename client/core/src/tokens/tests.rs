//! Token issuance against an in-process RFC 9578 issuer, at the byte level, and redemption by
//! an in-process origin (what the gateway does).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use privacypass::TokenType;
use privacypass::public_tokens::PublicToken;
use privacypass::public_tokens::server::{IssuerServer, OriginKeyStore as _, OriginServer};

use super::*;
use crate::choose::os_rng;
use crate::testkit::{IssuerKeys, KeyPair, OriginKeys, Spent};

fn challenge_b64(token_type: TokenType) -> String {
    let c = TokenChallenge::new(token_type, "issuer.cloister.invalid", None, &[]);
    URL_SAFE_NO_PAD.encode(c.serialize().expect("serialize"))
}

fn directory(spki: &[u8], not_before: Option<u64>) -> Vec<u8> {
    let mut key = serde_json::json!({"token-type": 2, "token-key": URL_SAFE_NO_PAD.encode(spki)});
    if let Some(t) = not_before {
        key["not-before"] = t.into();
    }
    serde_json::json!({"issuer-request-uri": "/token-request", "token-keys": [key]})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn a_token_is_issued_finalised_and_redeemed_once() {
    let mut rng = os_rng().expect("rng");
    let issuer_keys = IssuerKeys::default();
    let issuer = IssuerServer::new();
    let pk = issuer
        .create_keypair(&mut rng, &issuer_keys)
        .await
        .expect("issuer key");
    let spki = pk.to_spki().expect("spki");

    // Device: directory, challenge, blinded request (bytes on the wire).
    let (key, uri) = issuer_key(&directory(&spki, Some(10)), 100).expect("a current key");
    assert_eq!(uri, "/token-request");
    let challenge = parse_challenge(&challenge_b64(TokenType::Public)).expect("challenge");
    let (request, pending) = token_request(&mut rng, key, &challenge).expect("request");
    assert_eq!(request.len(), 2 + 1 + 256, "RFC 9578 TokenRequest");
    assert_eq!(format!("{pending:?}"), "PendingToken([redacted])");

    // Issuer: blind-sign.
    let parsed = TokenRequest::tls_deserialize(&mut request.as_slice()).expect("issuer parses");
    let response = issuer
        .issue_token_response(&issuer_keys, parsed)
        .await
        .expect("issued")
        .tls_serialize_detached()
        .expect("bytes");

    // Device: finalise into the Authorization value.
    let auth = finish_token(pending, &response).expect("token");
    // RFC 9577 §2.2.2: the token as a quoted-string, base64url with padding (the strict
    // padded decoder below refuses it without).
    let quoted = auth
        .expose()
        .strip_prefix("PrivateToken token=\"")
        .and_then(|v| v.strip_suffix('"'))
        .expect("the RFC's quoted form");
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(quoted)
        .expect("padded base64url");
    assert_eq!(format!("{auth:?}"), "[redacted]");

    // Gateway: redeem against the issuer's public key, once.
    let origin_keys = OriginKeys::default();
    origin_keys
        .insert(
            privacypass::public_tokens::public_key_to_truncated_token_key_id(&pk).expect("id"),
            pk.clone(),
        )
        .await;
    let token = PublicToken::tls_deserialize_exact(&bytes).expect("a type-0x0002 Token");
    assert_eq!(
        token.challenge_digest(),
        &challenge.digest().expect("digest")
    );
    let origin = OriginServer::new();
    let spent = Spent::default();
    origin
        .redeem_token(&origin_keys, &spent, token.clone())
        .await
        .expect("redeems");
    assert!(
        origin
            .redeem_token(&origin_keys, &spent, token)
            .await
            .is_err(),
        "spent once"
    );
}

#[tokio::test]
async fn a_tampered_response_does_not_finalise() {
    let mut rng = os_rng().expect("rng");
    let issuer_keys = IssuerKeys::default();
    let issuer = IssuerServer::new();
    let pk = issuer
        .create_keypair(&mut rng, &issuer_keys)
        .await
        .expect("issuer key");
    let challenge = parse_challenge(&challenge_b64(TokenType::Public)).expect("challenge");
    let (request, pending) = token_request(&mut rng, pk, &challenge).expect("request");
    let parsed = TokenRequest::tls_deserialize(&mut request.as_slice()).expect("parses");
    let mut response = issuer
        .issue_token_response(&issuer_keys, parsed)
        .await
        .expect("issued")
        .tls_serialize_detached()
        .expect("bytes");
    response[10] ^= 1;
    assert!(matches!(
        finish_token(pending, &response),
        Err(ClientError::TokenResponse(_))
    ));
    let (_, pending) =
        token_request(&mut rng, issuer_key_of(&issuer_keys), &challenge).expect("request");
    assert!(matches!(
        finish_token(pending, &[0u8; 10]),
        Err(ClientError::TokenResponse(_))
    ));
}

fn issuer_key_of(keys: &IssuerKeys) -> PublicKey {
    keys.0
        .lock()
        .expect("lock")
        .values()
        .next()
        .expect("a key")
        .pk
        .clone()
}

#[test]
fn challenges_must_be_type_2_and_well_formed() {
    assert!(parse_challenge(&challenge_b64(TokenType::Public)).is_ok());
    // Padded base64url is accepted too.
    let c = TokenChallenge::new(TokenType::Public, "i", None, &[]);
    let padded = base64::engine::general_purpose::URL_SAFE.encode(c.serialize().expect("bytes"));
    assert!(parse_challenge(&padded).is_ok());
    assert!(matches!(
        parse_challenge(&challenge_b64(TokenType::PrivateP384)),
        Err(ClientError::TokenType { found: 1 })
    ));
    assert!(matches!(parse_challenge("!!"), Err(ClientError::Challenge)));
    assert!(matches!(
        parse_challenge("AAIA"),
        Err(ClientError::Challenge)
    ));
    let mut trailing = c.serialize().expect("bytes");
    trailing.push(0);
    assert!(matches!(
        parse_challenge(&URL_SAFE_NO_PAD.encode(trailing)),
        Err(ClientError::Challenge)
    ));
    // A per-request redemption context (32 bytes, RFC 9577 §2.1) is refused.
    let per_request = TokenChallenge::new(TokenType::Public, "i", Some([7u8; 32]), &[]);
    assert!(matches!(
        parse_challenge(&URL_SAFE_NO_PAD.encode(per_request.serialize().expect("bytes"))),
        Err(ClientError::RedemptionContext)
    ));
}

#[test]
fn issuer_directories_are_checked() {
    let kp = KeyPair::generate(&mut blind_rsa_signatures::DefaultRng, 2048).expect("key");
    let spki = kp.pk.to_spki().expect("spki");
    assert!(issuer_key(&directory(&spki, None), 0).is_ok());
    assert!(matches!(
        issuer_key(&directory(&spki, Some(200)), 100),
        Err(ClientError::NoIssuerKey)
    ));
    assert!(matches!(
        issuer_key(&directory(b"not a key", None), 0),
        Err(ClientError::IssuerKey(_))
    ));
    assert!(matches!(
        issuer_key(b"[]", 0),
        Err(ClientError::IssuerDirectory(_))
    ));
    let big = KeyPair::generate(&mut blind_rsa_signatures::DefaultRng, 3072).expect("key");
    let spki = big.pk.to_spki().expect("spki");
    assert!(matches!(
        issuer_key(&directory(&spki, None), 0),
        Err(ClientError::IssuerKey(m)) if m.contains("384 bytes")
    ));
}

#[test]
fn the_bearer_token_goes_only_to_the_issuer() {
    let issuer: BaseUrl = "http://issuer:8443/pp".parse().expect("url");
    assert_eq!(
        request_target(&issuer, "/token-request").expect("path"),
        "/pp/token-request"
    );
    assert_eq!(
        request_target(&issuer, "http://issuer:8443/tr").expect("same host"),
        "/tr"
    );
    for bad in [
        "http://evil:8443/tr",
        "https://issuer:8443/tr",
        "//evil/tr",
        "token-request",
        "/a?b",
    ] {
        assert!(
            matches!(
                request_target(&issuer, bad),
                Err(ClientError::IssuerRequestUri(_))
            ),
            "{bad}"
        );
    }
}
