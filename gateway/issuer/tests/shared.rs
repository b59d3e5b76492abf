//! A fleet of issuers on one PostgreSQL: two issuers (each with its own connection) serving one
//! account at once never issue beyond its daily quota; with the database gone, an issuer
//! answers 503 and issues nothing.

use std::sync::Arc;

use blind_rsa_signatures::DefaultRng;
use cloister_issuer::accounts::AccountStore;
use cloister_issuer::{IssuerConfig, IssuerKey, serve};
use cloister_protocol::access::parse_problem;
use privacypass::auth::authenticate::TokenChallenge;
use privacypass::public_tokens::TokenRequest;
use privacypass::{Serialize as _, TokenType};

mod common;
use common::{Postgres, post};

const QUOTA: u32 = 20;
const REQUESTS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: PostgreSQL (cargo xtask test)"]
async fn two_issuers_never_exceed_one_accounts_quota() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pg = Some(Postgres::start(dir.path()));
    let url = pg.as_ref().map(|p| p.url.clone()).unwrap_or_default();
    let admin = AccountStore::open(&url, None).await.expect("store");
    let bearer = admin.add("device", QUOTA).await.expect("account");
    let key = IssuerKey::generate().expect("key");
    let pk = key.public_key();
    let mut issuers = Vec::new();
    for _ in 0..2 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        issuers.push(listener.local_addr().expect("addr").to_string());
        let config = IssuerConfig {
            key: key.clone(),
            accounts: AccountStore::open(&url, None)
                .await
                .expect("own connection"),
        };
        tokio::spawn(serve(config, listener));
    }

    let challenge = TokenChallenge::new(TokenType::Public, "issuer", None, &["gw".into()]);
    let ct = "application/private-token-request";
    let bearer = Arc::new(bearer.0.to_string());
    let mut asked = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let (req, _) = TokenRequest::new(&mut DefaultRng, pk.clone(), &challenge).expect("req");
        let body = req.tls_serialize_detached().expect("encode");
        let (addr, bearer) = (issuers[i % 2].clone(), Arc::clone(&bearer));
        asked.spawn(async move { post(&addr, Some(&bearer), ct, body).await });
    }
    let (mut issued, mut refused) = (0, 0);
    while let Some(answer) = asked.join_next().await {
        let (status, body) = answer.expect("task");
        match status {
            200 => issued += 1,
            429 => {
                assert_eq!(
                    parse_problem(&body).map(|p| p.0).as_deref(),
                    Some("quota-exhausted")
                );
                refused += 1;
            }
            other => panic!("{other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    assert_eq!(
        (issued, refused),
        (QUOTA as usize, REQUESTS - QUOTA as usize)
    );
    let day = cloister_issuer::accounts::utc_day(cloister_http::now_unix());
    match &admin {
        AccountStore::Shared(s) => assert_eq!(s.used(&bearer, day).await.expect("used"), QUOTA),
        AccountStore::Embedded(_) => panic!("a postgres:// store is the shared one"),
    }

    // The database goes away: no token without a charge.
    drop(pg.take());
    let (req, _) = TokenRequest::new(&mut DefaultRng, pk, &challenge).expect("req");
    let body = req.tls_serialize_detached().expect("encode");
    let (status, body) = post(&issuers[0], Some(&bearer), ct, body).await;
    assert_eq!(
        (status, parse_problem(&body).map(|p| p.0)),
        (503, Some("account-store-unavailable".into()))
    );
}
