//! Binary HTTP (RFC 9292) as the gateway and the guest decode it after decapsulation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(data)) {
        let _ = cloister_gateway::outer::request_parts(&m);
        let _ = cloister_gateway::outer::header(&m, "authorization");
    }
});
