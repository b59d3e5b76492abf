//! What the sealed token store costs a device per request: the CLI opens the store, takes a
//! token and seals it again (XChaCha20-Poly1305 over the JSON of the tokens held), so a request
//! pays one open and one seal of a store of the size it holds. Printed first: the sealed bytes
//! for 8 and 64 tokens; then criterion's times
//! (`cargo bench -p cloister-device-core --bench token_store`). The file I/O (a synced write
//! and a rename) is the state file's, already paid for the seen checkpoint.
use cloister_device_core::SecretString;
use cloister_device_core::choose::os_rng;
use cloister_device_core::token_store::{SealKey, TokenStore};
use criterion::{Criterion, criterion_group, criterion_main};

/// An `Authorization` value of a type-0x0002 token: 386 bytes of token in padded base64url.
fn token(i: usize) -> SecretString {
    let body: String = std::iter::repeat_n(char::from(b'A' + (i % 26) as u8), 516).collect();
    SecretString::new(format!("PrivateToken token=\"{body}\""))
}

fn store(n: usize) -> TokenStore {
    let mut s = TokenStore::default();
    for i in 0..n {
        s.add("AAIAD2Nsb2lzdGVyLWlzc3Vlcg", token(i));
    }
    s
}

fn bench(c: &mut Criterion) {
    let mut rng = os_rng().expect("rng");
    let key = SealKey::generate(&mut rng);
    for n in [8, 64] {
        let sealed = store(n).seal(&key, &mut rng).expect("sealed");
        eprintln!(
            "a store of {n} tokens: {} bytes sealed ({} per token)",
            sealed.len(),
            sealed.len() / n
        );
        c.bench_function(&format!("take one token from a sealed store of {n}"), |b| {
            b.iter(|| {
                let mut s = TokenStore::open(&sealed, &key).expect("opens");
                let t = s.take("AAIAD2Nsb2lzdGVyLWlzc3Vlcg");
                let again = s.seal(&key, &mut rng).expect("sealed");
                (t.is_some(), again.len())
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
