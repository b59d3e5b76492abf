//! What a device reads from the gateway and the issuer: the node directory, the issuer
//! directory, problem documents.
#![no_main]

use cloister_protocol::access::{IssuerDirectory, NodeDirectory, parse_problem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = NodeDirectory::from_json(data) {
        NodeDirectory::from_json(&d.to_json()).expect("re-encodes");
    }
    let _ = IssuerDirectory::from_json(data);
    let _ = parse_problem(data);
});
