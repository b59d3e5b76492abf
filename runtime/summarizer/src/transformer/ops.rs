//! The element-wise parts of a llama-family layer, on plain `f32` rows.

use cloister_kernels::dot;

/// `out = x / rms(x) * weight`, row by row (`x` and `out` hold whole rows of `weight.len()`).
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean_sq = dot(row, row) / n as f32;
        let scale = 1.0 / (mean_sq + eps).sqrt();
        for ((d, s), w) in dst.iter_mut().zip(row).zip(weight) {
            *d = s * scale * w;
        }
    }
}

/// `x += y`.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Adds `bias` to every row of `x`.
pub fn add_bias(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        add_assign(row, bias);
    }
}

/// `gate = silu(gate) * up` (SwiGLU).
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = *g / (1.0 + (-*g).exp()) * u;
    }
}

/// How a head's dimensions are paired for rotary position embedding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimension `i` with `i + 1` (GGUF llama: the converter permuted Q and K for it).
    Interleaved,
    /// Dimension `i` with `i + head_dim / 2` (GPT-NeoX style: qwen2).
    Halves,
}

/// Rotary tables: for each position, `head_dim / 2` (cos, sin) pairs.
#[derive(Debug, Clone)]
pub struct Rope {
    style: RopeStyle,
    inv_freq: Vec<f32>,
}

impl Rope {
    /// Tables for heads of `head_dim` with frequency base `base`.
    pub fn new(style: RopeStyle, head_dim: usize, base: f32) -> Self {
        let inv_freq = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        Rope { style, inv_freq }
    }

    /// (cos, sin) for positions `pos0 ..` `pos0 + n`, position-major.
    pub fn table(&self, pos0: usize, n: usize) -> Vec<(f32, f32)> {
        let mut t = Vec::with_capacity(n * self.inv_freq.len());
        for p in pos0..pos0 + n {
            for f in &self.inv_freq {
                let (sin, cos) = (p as f32 * f).sin_cos();
                t.push((cos, sin));
            }
        }
        t
    }

    /// Rotates `x` (`n` rows of `heads` heads of `head_dim`) with `table` from [`Self::table`].
    pub fn apply(&self, x: &mut [f32], heads: usize, table: &[(f32, f32)]) {
        let half = self.inv_freq.len();
        let head_dim = 2 * half;
        for (row, cs) in x
            .chunks_exact_mut(heads * head_dim)
            .zip(table.chunks_exact(half))
        {
            for head in row.chunks_exact_mut(head_dim) {
                match self.style {
                    RopeStyle::Halves => {
                        let (a, b) = head.split_at_mut(half);
                        for ((x0, x1), &(c, s)) in a.iter_mut().zip(b.iter_mut()).zip(cs) {
                            let (u, v) = (*x0, *x1);
                            *x0 = u * c - v * s;
                            *x1 = u * s + v * c;
                        }
                    }
                    RopeStyle::Interleaved => {
                        for (pair, &(c, s)) in head.chunks_exact_mut(2).zip(cs) {
                            let (u, v) = (pair[0], pair[1]);
                            pair[0] = u * c - v * s;
                            pair[1] = u * s + v * c;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_gives_unit_rms_before_the_weight() {
        let x = [3.0, -4.0, 0.0, 5.0, 1.0, 1.0, 1.0, 1.0];
        let mut out = [0.0; 8];
        rms_norm(&x, &[1.0, 1.0, 2.0, 1.0], 0.0, &mut out);
        let rms = 12.5f32.sqrt();
        for (got, want) in out[..4].iter().zip([3.0 / rms, -4.0 / rms, 0.0, 5.0 / rms]) {
            assert!((got - want).abs() < 1e-6, "{got} != {want}");
        }
        assert_eq!(&out[4..], &[1.0, 1.0, 2.0, 1.0]);
    }

    #[test]
    fn rope_at_position_zero_is_the_identity_and_keeps_norms_elsewhere() {
        for style in [RopeStyle::Halves, RopeStyle::Interleaved] {
            let rope = Rope::new(style, 8, 10_000.0);
            let x: Vec<f32> = (0..16).map(|i| i as f32 - 7.5).collect();
            let mut y = x.clone();
            rope.apply(&mut y, 2, &rope.table(0, 1));
            assert_eq!(x, y);
            rope.apply(&mut y, 2, &rope.table(37, 1));
            assert_ne!(x, y);
            for (a, b) in x.chunks(8).zip(y.chunks(8)) {
                assert!((dot(a, a) - dot(b, b)).abs() < 1e-3);
            }
        }
    }

    #[test]
    fn rope_pairs_follow_the_style() {
        // A vector with only dimension 0 set rotates into dimension half (Halves) or 1
        // (Interleaved) at the first frequency, which is 1 rad per position.
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        let halves = Rope::new(RopeStyle::Halves, 4, 10_000.0);
        halves.apply(&mut x, 1, &halves.table(1, 1));
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[2] - 1f32.sin()).abs() < 1e-6);
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        let inter = Rope::new(RopeStyle::Interleaved, 4, 10_000.0);
        inter.apply(&mut x, 1, &inter.table(1, 1));
        assert!((x[0] - 1f32.cos()).abs() < 1e-6 && (x[1] - 1f32.sin()).abs() < 1e-6);
    }
}
