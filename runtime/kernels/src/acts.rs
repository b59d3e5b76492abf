//! Activation rows quantised as ggml's Q8_K: per 256 values, `i8` values with one f32 scale and
//! the sums of every 16 values (the quantised formats' offsets and mins multiply those sums).

use zeroize::Zeroizing;

use crate::{KernelError, QK_K};

/// Activation rows quantised to Q8_K, zeroized when dropped (they derive from request text).
pub struct Activations {
    rows: usize,
    blocks: usize,
    qs: Zeroizing<Vec<i8>>,
    d: Zeroizing<Vec<f32>>,
    /// Sum of every 16 quantised values (at most 16 · 127 in magnitude).
    sums: Zeroizing<Vec<i16>>,
}

/// One activation row: per block its values, scale and 16-value sums.
#[derive(Clone, Copy)]
pub(crate) struct Row<'a> {
    pub qs: &'a [[i8; QK_K]],
    pub d: &'a [f32],
    pub sums: &'a [[i16; 16]],
}

impl std::fmt::Debug for Activations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activations")
            .field("rows", &self.rows)
            .field("blocks", &self.blocks)
            .finish_non_exhaustive()
    }
}

impl Activations {
    /// Quantises `x`, rows of `k` values (`k` a multiple of 256).
    pub fn quantize(x: &[f32], k: usize) -> Result<Self, KernelError> {
        if k == 0 || !k.is_multiple_of(QK_K) {
            return Err(KernelError::RowWidth { k });
        }
        if !x.len().is_multiple_of(k) {
            return Err(KernelError::Ragged {
                what: "the activations",
                len: x.len(),
                row: k,
            });
        }
        let n_blocks = x.len() / QK_K;
        let mut qs = Zeroizing::new(vec![0i8; x.len()]);
        let mut d = Zeroizing::new(vec![0f32; n_blocks]);
        let mut sums = Zeroizing::new(vec![0i16; n_blocks * 16]);
        for (b, (src, dst)) in x
            .chunks_exact(QK_K)
            .zip(qs.chunks_exact_mut(QK_K))
            .enumerate()
        {
            let amax = src.iter().fold(0f32, |m, v| m.max(v.abs()));
            if amax == 0.0 || !amax.is_finite() {
                continue;
            }
            // As candle's Q8_K: the scale is the reciprocal of the multiplier, rounding half
            // away from zero.
            let inv = 127.0 / amax;
            d[b] = 1.0 / inv;
            for (q, v) in dst.iter_mut().zip(src) {
                *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
            }
            for (s, group) in sums[b * 16..b * 16 + 16]
                .iter_mut()
                .zip(dst.chunks_exact(16))
            {
                *s = group.iter().map(|&q| q as i16).sum();
            }
        }
        Ok(Activations {
            rows: x.len() / k,
            blocks: k / QK_K,
            qs,
            d,
            sums,
        })
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.blocks * QK_K
    }

    /// Blocks per row.
    pub(crate) fn blocks(&self) -> usize {
        self.blocks
    }

    /// Row `r`'s blocks, scales and sums.
    pub(crate) fn row(&self, r: usize) -> Row<'_> {
        let blocks = r * self.blocks..(r + 1) * self.blocks;
        Row {
            qs: self.qs[blocks.start * QK_K..blocks.end * QK_K]
                .as_chunks()
                .0,
            d: &self.d[blocks.clone()],
            sums: self.sums[blocks.start * 16..blocks.end * 16].as_chunks().0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_shapes_are_named_errors() {
        assert_eq!(
            Activations::quantize(&[0.0; 100], 100).expect_err("not whole blocks"),
            KernelError::RowWidth { k: 100 }
        );
        assert!(matches!(
            Activations::quantize(&[0.0; 300], 256),
            Err(KernelError::Ragged { .. })
        ));
    }

    #[test]
    fn zero_and_non_finite_rows_quantise_to_zero() {
        let mut x = vec![0.0f32; 512];
        x[300] = f32::NAN;
        let acts = Activations::quantize(&x, 256).expect("test value");
        assert!(acts.qs.iter().all(|&q| q == 0) && acts.d.iter().all(|&d| d == 0.0));
        assert!(acts.sums.iter().all(|&s| s == 0));
    }

    #[test]
    fn values_scale_and_sums_agree() {
        let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let acts = Activations::quantize(&x, 512).expect("test value");
        let row = acts.row(0);
        for b in 0..2 {
            let (d, sums, q) = (row.d[b], &row.sums[b], &row.qs[b]);
            for (i, v) in x[b * 256..b * 256 + 256].iter().enumerate() {
                assert!((q[i] as f32 * d - v).abs() <= d * 0.5 + 1e-6, "value {i}");
            }
            for (g, s) in sums.iter().enumerate() {
                let want: i16 = q[g * 16..g * 16 + 16].iter().map(|&v| v as i16).sum();
                assert_eq!(*s, want);
            }
        }
    }
}
