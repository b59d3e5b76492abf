//! The guest's inner layer (`runtime::inner`), which only the holder of the attested key
//! can open — and which anyone who fetched that key can send to:
//! * mode 0 — raw `message/ohttp-req` bytes;
//! * mode 1 — the fuzzer's bytes sealed to the guest's real key: the Binary HTTP request
//!   inside, routed to the echo workload, and the sealed answer opened again;
//! * mode 2 — the fuzzer's bytes as the plaintext of the guest's answer, opened by the client.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cloister_device_core::envelope;
use cloister_fuzz::{bhttp_request, bhttp_response, tagged, write_seeds};
use cloister_runtime::inner;
use cloister_runtime::keys::{KeyRing, Now};
use cloister_runtime::workload::Router;
use libfuzzer_sys::fuzz_target;


struct Fixture {
    ring: KeyRing,
    router: Router,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        ring: KeyRing::new(Duration::from_secs(3600), Duration::from_secs(600), Now::read()).expect("keys"),
        router: Router::with_echo(),
    })
}

fn seeds() -> Vec<cloister_fuzz::Seed> {
    let config = fixture().ring.current().config().to_vec();
    let raw = envelope::node_request(&config, "/v1/echo", "text/plain", b"hello").expect("seals");
    let req = bhttp_request(
        "POST",
        "cloister-guest",
        "/v1/echo",
        &[("content-type", "text/plain")],
        b"hello",
    );
    let res = bhttp_response(200, "text/plain", b"hello");
    vec![
        ("raw", tagged(0, &raw.bytes)),
        ("request", tagged(1, &req)),
        ("response", tagged(2, &res)),
    ]
}

fuzz_target!(init: write_seeds(seeds), |data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let epoch = f.ring.current();
    match mode % 3 {
        0 => {
            let _ = inner::handle(&f.ring, &f.router, body, Instant::now());
        }
        1 => {
            let client = ohttp::ClientRequest::from_encoded_config(epoch.config()).expect("config");
            let (sealed, ctx) = client.encapsulate(body).expect("seals");
            if let Ok((answer, _)) = inner::handle(&f.ring, &f.router, &sealed, Instant::now()) {
                let plain = ctx.decapsulate(&answer).expect("the guest's answer opens");
                bhttp::Message::read_bhttp(&mut std::io::Cursor::new(&plain[..]))
                    .expect("the guest answers in Binary HTTP");
            }
        }
        _ => {
            let sealed =
                envelope::node_request(epoch.config(), "/v1/echo", "text/plain", b"x").expect("seals");
            let (_, server_ctx) = epoch.server().decapsulate(&sealed.bytes).expect("opens");
            let answer = server_ctx.encapsulate(body).expect("seals the answer");
            let _ = sealed.open(&answer);
        }
    }
});
