//! Per-request overhead of the guest's inner OHTTP path for a 4 KiB echo: HPKE decapsulation,
//! Binary HTTP decoding, routing, encoding, encapsulation (`inner::handle`).
use std::time::{Duration, Instant};

use bhttp::{Message, Mode};
use cloister_runtime::inner;
use cloister_runtime::keys::{KeyRing, Now};
use cloister_runtime::workload::Router;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench(c: &mut Criterion) {
    let ring = KeyRing::new(
        Duration::from_secs(3600),
        Duration::from_secs(60),
        Now::read(),
    )
    .expect("keys");
    let router = Router::with_echo();
    let mut m = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"guest".to_vec(),
        cloister_protocol::workload::ECHO_PATH.as_bytes().to_vec(),
    );
    m.write_content(vec![0x61u8; 4096]);
    let mut plain = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut plain).expect("bhttp");
    let seal = || {
        let client =
            ohttp::ClientRequest::from_encoded_config(ring.current().config()).expect("config");
        client.encapsulate(&plain).expect("encapsulate").0
    };
    inner::handle(&ring, &router, &seal(), Instant::now()).expect("handles");
    // The guest refuses a replay, so every iteration opens a freshly sealed request (sealed
    // outside the timed part); the seen-set's check and insert are part of what is timed.
    c.bench_function("ohttp_echo_4k", |b| {
        b.iter_batched(
            seal,
            |enc| {
                inner::handle(&ring, &router, std::hint::black_box(&enc), Instant::now())
                    .expect("handles")
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
