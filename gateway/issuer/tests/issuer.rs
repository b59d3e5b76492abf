//! The issuer on loopback: its RFC 9578 directory, tokens for an account up to its daily quota,
//! and a named refusal for everything else. The tokens it signs finalise and verify.

use std::time::Duration;

use blind_rsa_signatures::DefaultRng;
use bytes::Bytes;
use cloister_http::exchange_tcp;
use cloister_issuer::accounts::Accounts;
use cloister_issuer::{IssuerConfig, IssuerKey, serve};
use cloister_protocol::access::{
    IssuerDirectory, decode_token_key, encode_token_key, parse_problem,
};
use hyper::Method;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::{PublicKey, TokenRequest, TokenResponse};
use privacypass::{Deserialize as _, Serialize as _, TokenType};

mod common;
use common::post;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_up_to_the_quota_then_429_and_named_refusals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts = Accounts::open(&dir.path().join("a.redb")).expect("accounts");
    let bearer = accounts.add("device", 2).expect("account");
    let key = IssuerKey::generate().expect("key");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve(
        IssuerConfig {
            key,
            accounts: accounts.into(),
        },
        listener,
    ));

    let d = exchange_tcp(
        &addr,
        Method::GET,
        "/.well-known/private-token-issuer-directory",
        None,
        Bytes::new(),
        Duration::from_secs(5),
        1 << 16,
    )
    .await
    .expect("directory");
    assert_eq!(d.status, 200);
    let d = IssuerDirectory::from_json(&d.body).expect("RFC 9578 directory");
    assert_eq!(d.issuer_request_uri, "/token-request");
    // RFC 9578 §4: base64url with padding.
    let spki = decode_token_key(&d.token_keys[0].token_key).expect("base64url");
    assert_eq!(d.token_keys[0].token_key, encode_token_key(&spki));
    let pk = PublicKey::from_spki(&spki).expect("key");

    let challenge = TokenChallenge::new(TokenType::Public, "issuer", None, &["gw".into()]);
    let ct = "application/private-token-request";
    for _ in 0..2 {
        let (req, state) = TokenRequest::new(&mut DefaultRng, pk.clone(), &challenge).expect("req");
        let bytes = req.tls_serialize_detached().expect("encode");
        let (status, body) = post(&addr, Some(&bearer.0), ct, bytes).await;
        assert_eq!(status, 200);
        let resp = TokenResponse::tls_deserialize_exact(body.as_ref()).expect("response");
        resp.issue_token(&state)
            .expect("the signature finalises into a valid token");
    }
    let (req, _) = TokenRequest::new(&mut DefaultRng, pk.clone(), &challenge).expect("req");
    let bytes = req.tls_serialize_detached().expect("encode");
    let kind = |b: &Bytes| parse_problem(b).map(|p| p.0).unwrap_or_default();
    let (status, body) = post(&addr, Some(&bearer.0), ct, bytes.clone()).await;
    assert_eq!((status, kind(&body).as_str()), (429, "quota-exhausted"));
    let (status, body) = post(&addr, Some("nobody"), ct, bytes.clone()).await;
    assert_eq!((status, kind(&body).as_str()), (401, "account-unknown"));
    let (status, body) = post(&addr, None, ct, bytes.clone()).await;
    assert_eq!((status, kind(&body).as_str()), (401, "account-unknown"));
    let (status, body) = post(&addr, Some(&bearer.0), "text/plain", bytes.clone()).await;
    assert_eq!(
        (status, kind(&body).as_str()),
        (415, "unsupported-media-type")
    );
    // RFC 9578 §6.2: another token type, a key this issuer does not hold, and a blinded
    // message of the wrong size each MUST be 422 (Unprocessable Content) — checked before the
    // account is looked at (this one's quota is spent: a charge would be 429).
    let good = bytes.to_vec();
    assert_eq!(good.len(), 2 + 1 + 256, "RFC 9578 §6.1 TokenRequest");
    let mut other_type = good.clone();
    other_type[..2].copy_from_slice(&[0x00, 0x01]);
    let mut other_key = good.clone();
    other_key[2] = good[2].wrapping_add(1);
    for (body, expected) in [
        (other_type, "token-type-unsupported"),
        (vec![0x00], "token-type-unsupported"),
        (other_key, "token-key-unknown"),
        (good[..good.len() - 1].to_vec(), "token-request-size"),
        ([&good[..], &[0]].concat(), "token-request-size"),
        (good[..3].to_vec(), "token-request-size"),
    ] {
        let (status, body) = post(&addr, Some(&bearer.0), ct, body).await;
        assert_eq!((status, kind(&body).as_str()), (422, expected), "{body:?}");
    }
}
