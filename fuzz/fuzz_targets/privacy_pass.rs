//! Privacy Pass (RFC 9577/9578) as each side receives it:
//! * mode 0 — an `Authorization` value at the gateway: parsed, matched to the challenge and
//!   key, verified, spent (redb). Only a token this issuer signed may pass, and only once.
//! * mode 1 — a `TokenRequest` at the issuer: parsed, checked against its key, signed.
//! * mode 2 — a `TokenResponse` at the client: parsed and finalised against its blinding.
#![no_main]

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use cloister_device_core::{choose, tokens};
use cloister_fuzz::{block_on, tagged, write_seeds};
use cloister_issuer::IssuerKey;
use cloister_gateway::redeem::{AcceptedKey, Redeemer};
use cloister_gateway::spent::SpentStore;
use libfuzzer_sys::fuzz_target;
use privacypass::TokenType;
use privacypass::auth::authenticate::TokenChallenge;

struct Fixture {
    key: IssuerKey,
    challenge: TokenChallenge,
    redeemer: Redeemer,
    _dir: tempfile::TempDir,
    /// Authorization values this issuer signed, and those the gateway accepted.
    issued: Mutex<HashSet<Vec<u8>>>,
    accepted: Mutex<HashSet<Vec<u8>>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = IssuerKey::generate().expect("issuer key");
        let challenge =
            TokenChallenge::new(TokenType::Public, "issuer.fuzz", None, &["gw.fuzz".into()]);
        let dir = tempfile::tempdir().expect("tempdir");
        let spent = SpentStore::open_redb(&dir.path().join("spent.redb")).expect("store");
        let redeemer = Redeemer::new(&challenge, &[AcceptedKey::unlogged(key.public_key())], spent).expect("redeemer");
        Fixture {
            key,
            challenge,
            redeemer,
            _dir: dir,
            issued: Mutex::new(HashSet::new()),
            accepted: Mutex::new(HashSet::new()),
        }
    })
}

/// A real request, the issuer's real response, and the finished `Authorization` value.
fn issue() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let f = fixture();
    let mut rng = choose::os_rng().expect("rng");
    let (request, pending) =
        tokens::token_request(&mut rng, f.key.public_key(), &f.challenge).expect("request");
    let parsed = f.key.parse_request(&request).expect("parses");
    let response = block_on(f.key.sign(parsed)).expect("signs");
    let token = tokens::finish_token(pending, &response).expect("finishes");
    let value = token.expose().as_bytes().to_vec();
    f.issued.lock().expect("lock").insert(value.clone());
    (request, response, value)
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let (request, response, token) = issue();
    vec![
        ("token", tagged(0, &token)),
        ("request", tagged(1, &request)),
        ("response", tagged(2, &response)),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    match mode % 3 {
        0 => {
            if block_on(f.redeemer.redeem(Some(body))).is_ok() {
                assert!(
                    f.issued.lock().expect("lock").contains(body),
                    "a token this issuer never signed was accepted"
                );
                assert!(
                    f.accepted.lock().expect("lock").insert(body.to_vec()),
                    "a token was accepted twice"
                );
            }
        }
        1 => {
            if let Ok(request) = f.key.parse_request(body) {
                let _ = block_on(f.key.sign(request));
            }
        }
        _ => {
            let mut rng = choose::os_rng().expect("rng");
            let (_, pending) =
                tokens::token_request(&mut rng, f.key.public_key(), &f.challenge).expect("request");
            let _ = tokens::finish_token(pending, body);
        }
    }
});
