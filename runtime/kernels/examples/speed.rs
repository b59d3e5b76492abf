//! Single-thread speed of the multi-row kernels on random matrices of Qwen2.5-1.5B's shapes,
//! against candle's `matmul_t` on the same bytes and activations, alternating; prints the best
//! rates and the median of the back-to-back ratios (this machine's speed drifts):
//! `cargo run -p cloister-kernels --example speed`.

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use cloister_kernels::{Activations, Format, Matrix, matmul};

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let m = 64;
    for (format, dtype) in [(Format::Q4K, GgmlDType::Q4K), (Format::Q6K, GgmlDType::Q6K)] {
        for (rows, k) in [(8960, 1536), (1536, 8960)] {
            let w = Tensor::from_vec(values(rows * k, 3), (rows, k), &Device::Cpu)?;
            let matrix = Matrix::new(format, &QTensor::quantize(&w, dtype)?.data()?)?;
            let x = values(m * k, 5);
            let macs = (m * rows * k) as f64;
            let mut out = vec![0f32; m * rows];
            let row_bytes = matrix.bytes().len() / rows;
            let (mut ours, mut candle, mut ratios) = (0f64, 0f64, Vec::new());
            for _ in 0..15 {
                let t = Instant::now();
                let acts = Activations::quantize(&x, k)?;
                // As the summariser: 64 weight rows at a time.
                for (g, w) in matrix.bytes().chunks(64 * row_bytes).enumerate() {
                    let n = w.len() / row_bytes;
                    matmul(format, w, &acts, &mut out[g * 64 * m..(g * 64 + n) * m])?;
                }
                let a = macs / t.elapsed().as_secs_f64() / 1e9;
                let t = Instant::now();
                matrix.storage().matmul_t((m, k, rows), &x, &mut out)?;
                let b = macs / t.elapsed().as_secs_f64() / 1e9;
                (ours, candle) = (ours.max(a), candle.max(b));
                ratios.push(a / b);
            }
            ratios.sort_by(f64::total_cmp);
            println!(
                "{format:?} {rows}x{k}, {m} rows: cloister {ours:.1} GMAC/s, candle {candle:.1} GMAC/s, median ratio {:.2}",
                ratios[ratios.len() / 2]
            );
        }
    }
    Ok(())
}
