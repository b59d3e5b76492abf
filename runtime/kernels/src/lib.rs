//! The summariser's SIMD inner loops, kept in one small crate because they need `unsafe`
//! (intrinsic loads, and calls into functions compiled for AVX2 once the CPU has been checked).
//! Everything else in the workspace forbids `unsafe`.
//!
//! * [`matmul`]: products of Q4_K or Q6_K weight rows (the GGUF block layouts, read in place,
//!   held once in candle's storage as a [`Matrix`]) with several Q8_K-quantised
//!   [`Activations`] rows at once — the prompt's matrix products. candle's kernels take one
//!   activation row per weight row and unpack each weight block again for every row.
//! * [`dot`], [`dot_many`], [`dot_blocks`] and [`weighted_rows`]: the f32 loops of norms and
//!   attention.
//!
//! Each operation picks AVX2+FMA at run time and otherwise runs a scalar equivalent; the tests
//! check the two against each other and against candle's ggml-derived kernels.
#![deny(unsafe_code)]

mod acts;
mod matrix;
mod q4k;
mod q6k;

pub use acts::Activations;
pub use matrix::{Format, Matrix, ROWS_PER_PASS, matmul};

/// Values per quantised block.
pub const QK_K: usize = 256;

/// A shape that does not fit the layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// The row width is not a whole number of blocks.
    #[error("row width {k} is not a multiple of {QK_K}")]
    RowWidth {
        /// The width given.
        k: usize,
    },
    /// A buffer is not a whole number of rows.
    #[error("{what} has {len} elements, not a whole number of rows of {row}")]
    Ragged {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The row length.
        row: usize,
    },
    /// The output does not hold activation rows × weight rows.
    #[error("the output has {len} elements; {rows} x {cols} are needed")]
    Output {
        /// Its length.
        len: usize,
        /// Activation rows.
        rows: usize,
        /// Weight rows.
        cols: usize,
    },
    /// candle stored the blocks in a size other than the file's (its block layout changed).
    #[error("candle holds {len} bytes of {format:?} for {want} given")]
    Layout {
        /// The block format.
        format: Format,
        /// Bytes candle holds.
        len: usize,
        /// Bytes given.
        want: usize,
    },
}

#[cfg(target_arch = "x86_64")]
mod avx2;

/// Whether this CPU has AVX2 and FMA (checked once).
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `a · b` over the shorter of the two.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return avx2::dot_f32(a, b);
    }
    scalar::dot(a, b)
}

/// Rows taken by one call of [`dot_many`] or [`weighted_rows`].
pub const MANY: usize = 8;

/// `out[r] = q_r · k` for each row `q_r` of `qs` (rows of `k.len()` values, at most [`MANY`]);
/// rows `qs` does not hold come out 0.
pub fn dot_many(qs: &[f32], k: &[f32], out: &mut [f32; MANY]) {
    let d = k.len();
    out.fill(0.0);
    if d == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return avx2::dot_many(qs, k, out);
    }
    for (o, q) in out.iter_mut().zip(qs.chunks_exact(d)) {
        *o = scalar::dot(q, k);
    }
}

/// [`dot_many`] against each of `out.len()` rows of `keys` (rows of `keys.len() / out.len()`
/// values): `out[j][r] = q_r · key_j`.
pub fn dot_blocks(qs: &[f32], keys: &[f32], out: &mut [[f32; MANY]]) {
    if out.is_empty() {
        return;
    }
    let d = keys.len() / out.len();
    let out = &mut out[..keys.len().checked_div(d).unwrap_or(0).min(keys.len())];
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && d > 0 {
        return avx2::dot_blocks(qs, &keys[..out.len() * d], out);
    }
    for (o, k) in out.iter_mut().zip(keys.chunks_exact(d.max(1))) {
        dot_many(qs, k, o);
    }
}

/// `out[r] = Σ_j weights[j][r] · v_j` for the [`MANY`] rows of `out` (`out.len() / MANY`
/// values each, the width of each row `v_j` of `values`; as many `j` as both hold) — the
/// attention-weighted sum of value rows for a block of queries.
pub fn weighted_rows(weights: &[[f32; MANY]], values: &[f32], out: &mut [f32]) {
    let d = out.len() / MANY;
    let out = &mut out[..d * MANY];
    let n = weights.len().min(values.len().checked_div(d).unwrap_or(0));
    let (weights, values) = (&weights[..n], &values[..n * d]);
    #[cfg(target_arch = "x86_64")]
    if has_avx2() && d > 0 {
        return avx2::weighted_rows(weights, values, out);
    }
    out.fill(0.0);
    for (w, v) in weights.iter().zip(values.chunks_exact(d.max(1))) {
        for (r, row) in out.chunks_exact_mut(d.max(1)).enumerate() {
            scalar::axpy(row, w[r], v);
        }
    }
}

/// The portable versions (also the tests' reference).
pub mod scalar {
    /// Lanes of the partial sums: eight independent sums let the compiler vectorise the loop
    /// (it may not reorder one floating-point sum).
    const LANES: usize = 8;

    /// `a · b` (equal lengths).
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let (a8, a_rest) = a.as_chunks::<LANES>();
        let (b8, b_rest) = b.as_chunks::<LANES>();
        let mut acc = [0f32; LANES];
        for (x, y) in a8.iter().zip(b8) {
            for l in 0..LANES {
                acc[l] += x[l] * y[l];
            }
        }
        let mut sum = acc.iter().sum::<f32>();
        for (x, y) in a_rest.iter().zip(b_rest) {
            sum += x * y;
        }
        sum
    }

    /// `out += w · v` (equal lengths).
    pub fn axpy(out: &mut [f32], w: f32, v: &[f32]) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += w * x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    #[test]
    fn dot_agrees_with_the_scalar_version_at_every_length() {
        for n in 0..70 {
            let (a, b) = (values(n, 1), values(n, 2));
            let want = scalar::dot(&a, &b);
            assert!(
                (dot(&a, &b) - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "dot, n = {n}"
            );
        }
    }

    #[test]
    fn many_rows_agree_with_one_row_at_a_time() {
        for d in [1, 8, 13, 64, 128] {
            for rows in 1..=MANY {
                let (qs, k) = (values(rows * d, 5), values(d, 6));
                let mut got = [9f32; MANY];
                dot_many(&qs, &k, &mut got);
                for (r, g) in got.iter().enumerate() {
                    let want = if r < rows {
                        scalar::dot(&qs[r * d..(r + 1) * d], &k)
                    } else {
                        0.0
                    };
                    assert!((g - want).abs() <= 1e-4 * (1.0 + want.abs()), "dot, d {d}");
                }
            }
            for n in [0, 1, 5, 17] {
                let ws: Vec<[f32; MANY]> = (0..n)
                    .map(|j| std::array::from_fn(|r| values(1, (j * MANY + r) as u32)[0]))
                    .collect();
                let vs = values(n * d, 9);
                let mut got = vec![7f32; MANY * d];
                weighted_rows(&ws, &vs, &mut got);
                let mut want = vec![0f32; MANY * d];
                for (w, v) in ws.iter().zip(vs.chunks_exact(d)) {
                    for r in 0..MANY {
                        scalar::axpy(&mut want[r * d..(r + 1) * d], w[r], v);
                    }
                }
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "weighted, d {d}, n {n}"
                    );
                }
            }
        }
        let (qs, keys) = (values(3 * 16, 1), values(5 * 16, 2));
        let mut blocks = [[0f32; MANY]; 5];
        dot_blocks(&qs, &keys, &mut blocks);
        for (j, k) in keys.chunks_exact(16).enumerate() {
            let mut one = [0f32; MANY];
            dot_many(&qs, k, &mut one);
            assert_eq!(blocks[j], one);
        }
        dot_blocks(&qs, &[], &mut blocks);
        // Short buffers bound the work; nothing panics.
        let mut out = [7.0f32; MANY];
        dot_many(&[1.0; 4], &[1.0, 1.0], &mut out);
        assert_eq!(out, [2.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
        dot_many(&[1.0; 4], &[], &mut out);
        assert_eq!(out, [0.0; MANY]);
        let mut outs = [1.0f32; 2 * MANY];
        weighted_rows(&[[1.0; MANY]; 3], &[1.0, 2.0], &mut outs);
        assert_eq!(&outs[..2], &[1.0, 2.0]);
    }

    #[test]
    fn mismatched_lengths_use_the_shorter() {
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[1.0, 1.0]), 3.0);
    }
}
