//! The gateway's outer layer, as the relay (or anyone on the path) can reach it:
//! * mode 0 — raw `message/ohttp-req` bytes to decapsulate;
//! * mode 1 — the fuzzer's bytes sealed to the gateway's real key, so what is fuzzed is the
//!   Binary HTTP request inside and the gateway's reading of it (method, path, headers);
//! * mode 2 — an RFC 9540 key list, as the client reads it from the relay;
//! * mode 3 — the fuzzer's bytes as the plaintext of the gateway's sealed answer, opened by
//!   the client (its Binary HTTP response reading).
#![no_main]

use std::sync::OnceLock;

use cloister_device_core::envelope;
use cloister_fuzz::{bhttp_response, forward_request, tagged, write_seeds};
use cloister_gateway::outer::{OuterKey, header, request_parts};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static OuterKey {
    static K: OnceLock<OuterKey> = OnceLock::new();
    K.get_or_init(|| OuterKey::generate(7).expect("outer key"))
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let sealed = envelope::gateway_request(key().encoded_list(), "GET", cloister_protocol::access::NODES_PATH, &[], b"")
        .expect("seals");
    vec![
        ("raw", tagged(0, &sealed.bytes)),
        ("request", tagged(1, &forward_request())),
        ("key-list", tagged(2, key().encoded_list())),
        (
            "response",
            tagged(
                3,
                &bhttp_response(200, "application/json", br#"{"version":1}"#),
            ),
        ),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let key = key();
    match mode % 4 {
        0 => {
            let _ = key.open(body);
        }
        1 => {
            let client = ohttp::ClientRequest::from_encoded_config_list(key.encoded_list())
                .expect("the gateway's own list");
            let (sealed, _) = client.encapsulate(body).expect("seals");
            let (message, _ctx) = key.open(&sealed).expect("its own key opens");
            if let Some(m) = message {
                let _ = request_parts(&m);
                let _ = header(&m, "authorization");
                let _ = header(&m, "content-type");
            }
        }
        2 => {
            let _ = envelope::check_outer_keys(body);
        }
        _ => {
            let sealed = envelope::gateway_request(key.encoded_list(), "GET", cloister_protocol::access::NODES_PATH, &[], b"")
                .expect("seals");
            let (_, ctx) = key.open(&sealed.bytes).expect("opens");
            let answer = ctx.encapsulate(body).expect("seals the answer");
            let _ = sealed.open(&answer);
        }
    }
});
