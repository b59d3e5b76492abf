//! What length hiding costs a device per request: a chat's inner request written as Binary
//! HTTP and sealed (HPKE) to a node's key, without and with padding to its bucket, for a short
//! chat (30 messages) and a long one (1,000). The bytes on the wire are printed first; the
//! times are criterion's (`cargo bench -p cloister-protocol --bench padding`).
use bhttp::{Message, Mode};
use cloister_protocol::padding::{self, Layer};
use criterion::{Criterion, criterion_group, criterion_main};

fn chat(n: usize) -> Vec<u8> {
    let messages: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let from = ["Maya", "Jonas", "Aiko"][i % 3];
            serde_json::json!({
                "from": from,
                "at": "2026-03-01T10:02",
                "text": format!("message {i}: can we move the dinner to Friday at 7.30pm?"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "messages": messages })).expect("json")
}

fn request(body: &[u8]) -> Message {
    let mut m = Message::request(
        b"POST".to_vec(),
        b"https".to_vec(),
        b"cloister-guest".to_vec(),
        cloister_protocol::workload::SUMMARIZE_PATH
            .as_bytes()
            .to_vec(),
    );
    m.put_header("content-type", cloister_protocol::media::JSON);
    m.write_content(body);
    m
}

fn unpadded(m: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    m.write_bhttp(Mode::KnownLength, &mut out).expect("bhttp");
    out
}

fn bench(c: &mut Criterion) {
    let config = cloister_protocol::node::key_config(1).expect("key config");
    let server = ohttp::Server::new(config).expect("server");
    let encoded = server.config().encode().expect("encoded config");
    let seal = |plain: &[u8]| {
        ohttp::ClientRequest::from_encoded_config(&encoded)
            .expect("client")
            .encapsulate(plain)
            .expect("sealed")
            .0
    };
    for n in [30, 1000] {
        let m = request(&chat(n));
        let bare = seal(&unpadded(&m)).len();
        let padded = seal(&padding::write_padded(&m, Layer::Inner).expect("padded")).len();
        eprintln!(
            "chat of {n} messages: {bare} bytes sealed as it is, {padded} padded (+{:.0} %)",
            (padded as f64 / bare as f64 - 1.0) * 100.0
        );
        c.bench_function(&format!("seal_{n}_messages_unpadded"), |b| {
            b.iter(|| seal(&unpadded(std::hint::black_box(&m))))
        });
        c.bench_function(&format!("seal_{n}_messages_padded"), |b| {
            b.iter(|| {
                seal(&padding::write_padded(std::hint::black_box(&m), Layer::Inner).expect("pad"))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
