//! What a device reads from the gateway and the issuer: the node directory, the issuer
//! directory, problem documents.
#![no_main]

use cloister_fuzz::{real_bundles, write_seeds};
use cloister_protocol::access::problem_json;
use cloister_protocol::access::{IssuerDirectory, NodeDirectory, parse_problem};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let evidence: serde_json::Value =
        serde_json::from_slice(&real_bundles()[0].to_json()).expect("bundle JSON");
    let nodes = serde_json::json!({
        "version": 1,
        "token_challenge": "AAIAC2lzc3Vlci50ZXN0AAAAB2d3LnRlc3Q",
        "nodes": [{"id": "node-1", "evidence": evidence}],
    });
    let issuer = br#"{"issuer-request-uri":"/token-request","token-keys":[{"token-type":2,"token-key":"MIIBUjA9BgkqhkiG9w0BAQowMKANMAsGCWCGSAFlAwQCAqEaMBgGCSqGSIb3DQEBCDALBglghkgBZQMEAgKiAwIBMAOCAQ8AMIIBCgKCAQEA"}]}"#;
    vec![
        ("nodes", serde_json::to_vec(&nodes).expect("JSON")),
        ("issuer", issuer.to_vec()),
        ("problem", problem_json(503, "overloaded", "retry")),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(d) = NodeDirectory::from_json(data) {
        NodeDirectory::from_json(&d.to_json()).expect("re-encodes");
    }
    let _ = IssuerDirectory::from_json(data);
    let _ = parse_problem(data);
});
