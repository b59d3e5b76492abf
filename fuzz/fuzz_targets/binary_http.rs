//! Binary HTTP (RFC 9292) as the gateway and the guest decode it after decapsulation.
#![no_main]

use cloister_fuzz::{bhttp_response, forward_request, write_seeds};
use libfuzzer_sys::fuzz_target;

fn seeds() -> Vec<cloister_fuzz::Seed> {
    vec![
        ("request", forward_request()),
        (
            "response",
            bhttp_response(200, "application/json", br#"{"summary":"ok"}"#),
        ),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    if let Ok(m) = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(data)) {
        let _ = cloister_gateway::outer::request_parts(&m);
        let _ = cloister_gateway::outer::header(&m, "authorization");
    }
});
