//! What the oblivious token-embedding lookup costs, against the plain one, in the same run, on
//! a table of Qwen2.5-1.5B's shape (151,936 rows of a 1,536-wide Q6_K row: 1,260 bytes; 191 MB):
//! the plain lookup copies each row (what candle reads before it dequantises), the oblivious
//! one sweeps every page of the table per 16 rows ([`cloister_summarizer::oblivious`]). Both
//! leave the dequantisation, which is the same, out.
//!
//! * `embedding_1`: one row, a generated token;
//! * `embedding_512`: 512 rows, a prompt batch.
use cloister_summarizer::oblivious;
use criterion::{Criterion, criterion_group, criterion_main};

const ROWS: usize = 151_936;
const ROW_BYTES: usize = 1_260;

fn plain(table: &[u8], ids: &[u32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * ROW_BYTES);
    for &id in ids {
        out.extend_from_slice(&table[id as usize * ROW_BYTES..][..ROW_BYTES]);
    }
    out
}

fn bench(c: &mut Criterion) {
    let table: Vec<u8> = (0..ROWS * ROW_BYTES).map(|i| (i % 251) as u8).collect();
    for n in [1usize, 512] {
        // Ids spread over the vocabulary as a prompt's are.
        let ids: Vec<u32> = (0..n as u32)
            .map(|i| (i * 7_919 + 13) % ROWS as u32)
            .collect();
        assert_eq!(
            &oblivious::gather(&table, ROW_BYTES, &ids).expect("gathers")[..],
            &plain(&table, &ids)[..]
        );
        let mut g = c.benchmark_group(format!("embedding_{n}"));
        g.sample_size(10);
        g.bench_function("plain", |b| {
            b.iter(|| plain(std::hint::black_box(&table), std::hint::black_box(&ids)))
        });
        g.bench_function("oblivious", |b| {
            b.iter(|| {
                oblivious::gather(std::hint::black_box(&table), ROW_BYTES, &ids).expect("gathers")
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
