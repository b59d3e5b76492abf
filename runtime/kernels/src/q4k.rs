//! Q4_K weight rows times Q8_K activation rows, several activation rows per pass over a weight
//! block.
//!
//! A Q4_K block (ggml's `block_q4_K`, as stored in GGUF) holds 256 weights in 144 bytes:
//! `d` and `dmin` (f16), twelve bytes packing eight 6-bit scales and eight 6-bit mins (one
//! pair per 32 weights), then 128 bytes of 4-bit values — in each 32-byte group, the low
//! nibbles are weights `64j .. 64j+32` and the high nibbles `64j+32 .. 64j+64`. Weight `i` is
//! `d·scale·q − dmin·min`. Activations are quantised per 256 values to `i8` with one f32 scale
//! (as ggml's Q8_K), and the sum of every 32 kept for the mins.

use candle_core::quantized::{GgmlDType, QuantizedType};
use zeroize::Zeroizing;

/// Values per block.
pub const QK_K: usize = 256;
/// Bytes per Q4_K block.
pub const BLOCK_BYTES: usize = 144;
/// Activation rows multiplied per pass over a weight block.
pub const ROWS_PER_PASS: usize = 4;
/// Activation rows kept hot in cache while a weight range streams past.
const ROW_TILE: usize = 32;

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
}

/// One block's scales and mins, unpacked, and its two f32 factors.
pub(crate) struct Header {
    pub d: f32,
    pub dmin: f32,
    pub scales: [u8; 8],
    pub mins: [u8; 8],
}

/// Reads a block's header (`block` is at least 16 bytes).
#[inline]
pub(crate) fn header(block: &[u8]) -> Header {
    let f16 = |i: usize| half::f16::from_le_bytes([block[i], block[i + 1]]).to_f32();
    let s = &block[4..16];
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..8 {
        (scales[j], mins[j]) = if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            (
                (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
                (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
            )
        };
    }
    Header {
        d: f16(0),
        dmin: f16(2),
        scales,
        mins,
    }
}

/// A Q4_K matrix held once, in candle's storage: [`Self::storage`] for candle's kernels
/// (single-row products, embedding rows), [`Self::bytes`] for [`matmul`].
pub struct Matrix {
    storage: Box<dyn QuantizedType>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("bytes", &self.storage.storage_size_in_bytes())
            .finish()
    }
}

impl Matrix {
    /// Copies Q4_K `bytes` (whole blocks) into candle's storage.
    pub fn new(bytes: &[u8]) -> Result<Self, KernelError> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(BLOCK_BYTES) {
            return Err(KernelError::Ragged {
                what: "the matrix",
                len: bytes.len(),
                row: BLOCK_BYTES,
            });
        }
        let storage = GgmlDType::Q4K.from_data(std::borrow::Cow::Borrowed(bytes));
        Ok(Matrix { storage })
    }

    /// The storage, for candle's kernels.
    pub fn storage(&self) -> &dyn QuantizedType {
        &*self.storage
    }

    /// The blocks, as read from the file.
    #[allow(unsafe_code)]
    pub fn bytes(&self) -> &[u8] {
        let len = self.storage.storage_size_in_bytes();
        // SAFETY: `storage` was made by candle's `GgmlDType::Q4K.from_data`, which returns a
        // `Vec<BlockQ4K>` (`repr(C)`, 144 bytes, no padding); its `as_ptr` is that vector's
        // buffer and `storage_size_in_bytes` its length in bytes. The box is owned by `self`
        // and never handed out mutably, so the buffer is initialised, unchanged and alive for
        // as long as `&self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.storage.as_ptr(), len) }
    }
}

/// Activation rows quantised to Q8_K, zeroized when dropped (they derive from request text).
pub struct Activations {
    rows: usize,
    blocks: usize,
    pub(crate) qs: Zeroizing<Vec<i8>>,
    pub(crate) d: Zeroizing<Vec<f32>>,
    /// Sum of every 32 quantised values.
    pub(crate) sums: Zeroizing<Vec<i32>>,
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
        let mut sums = Zeroizing::new(vec![0i32; n_blocks * 8]);
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
            for (s, group) in sums[b * 8..b * 8 + 8].iter_mut().zip(dst.chunks_exact(32)) {
                *s = group.iter().map(|&q| q as i32).sum();
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

    /// The quantised values of block `b` of row `r`.
    pub(crate) fn block(&self, r: usize, b: usize) -> &[i8; QK_K] {
        let at = (r * self.blocks + b) * QK_K;
        <&[i8; QK_K]>::try_from(&self.qs[at..at + QK_K]).expect("a block is QK_K values")
    }

    /// The scale and the eight 32-value sums of block `b` of row `r`.
    pub(crate) fn scale(&self, r: usize, b: usize) -> (f32, &[i32]) {
        let i = r * self.blocks + b;
        (self.d[i], &self.sums[i * 8..i * 8 + 8])
    }
}

/// `out = acts · Wᵀ` where `weights` holds whole Q4_K rows of `acts.width()` values; `out`
/// is `acts.rows()` rows of one value per weight row.
pub fn matmul(weights: &[u8], acts: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
    let row_bytes = acts.blocks * BLOCK_BYTES;
    if !weights.len().is_multiple_of(row_bytes) {
        return Err(KernelError::Ragged {
            what: "the weights",
            len: weights.len(),
            row: row_bytes,
        });
    }
    let cols = weights.len() / row_bytes;
    if out.len() != acts.rows * cols {
        return Err(KernelError::Output {
            len: out.len(),
            rows: acts.rows,
            cols,
        });
    }
    let avx2 = crate::has_avx2();
    let mut headers = Vec::with_capacity(acts.blocks);
    for tile in (0..acts.rows).step_by(ROW_TILE) {
        let tile_end = acts.rows.min(tile + ROW_TILE);
        for (c, w) in weights.chunks_exact(row_bytes).enumerate() {
            // Unpacked once per tile of activation rows, not once per pass.
            headers.clear();
            headers.extend(w.chunks_exact(BLOCK_BYTES).map(header));
            let mut r = tile;
            while r < tile_end {
                let n = ROWS_PER_PASS.min(tile_end - r);
                let mut dots = [0f32; ROWS_PER_PASS];
                if avx2 {
                    #[cfg(target_arch = "x86_64")]
                    crate::avx2::q4k_rows(w, &headers, acts, r, &mut dots[..n]);
                } else {
                    rows_scalar(w, &headers, acts, r, &mut dots[..n]);
                }
                for (i, v) in dots[..n].iter().enumerate() {
                    out[(r + i) * cols + c] = *v;
                }
                r += n;
            }
        }
    }
    Ok(())
}

/// The dot products of one weight row with activation rows `r0 ..` `r0 + out.len()`.
pub(crate) fn rows_scalar(
    w: &[u8],
    headers: &[Header],
    acts: &Activations,
    r0: usize,
    out: &mut [f32],
) {
    out.fill(0.0);
    for (b, (block, h)) in w.chunks_exact(BLOCK_BYTES).zip(headers).enumerate() {
        let qs = &block[16..];
        for (i, o) in out.iter_mut().enumerate() {
            let a = acts.block(r0 + i, b);
            let (dx, sums) = acts.scale(r0 + i, b);
            let mut dot = 0i32;
            let mut min = 0i32;
            for s in 0..8 {
                let group = &qs[(s / 2) * 32..(s / 2) * 32 + 32];
                let shift = if s % 2 == 0 { 0 } else { 4 };
                let part: i32 = group
                    .iter()
                    .zip(&a[s * 32..s * 32 + 32])
                    .map(|(&q, &x)| ((q >> shift) & 0x0F) as i32 * x as i32)
                    .sum();
                dot += h.scales[s] as i32 * part;
                min += h.mins[s] as i32 * sums[s];
            }
            *o += h.d * dx * dot as f32 - h.dmin * dx * min as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{GgmlDType, QStorage, QTensor};
    use candle_core::{Device, Tensor};

    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    /// A Q4_K matrix quantised by candle, its bytes, and candle's own product with `x`.
    fn candle_case(rows: usize, k: usize, m: usize, seed: u64) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
        let w = Tensor::from_vec(values(rows * k, seed, 0.5), (rows, k), &Device::Cpu)
            .expect("test value");
        let q = QTensor::quantize(&w, GgmlDType::Q4K).expect("test value");
        let bytes = q.data().expect("test value").to_vec();
        let x = values(m * k, seed + 1, 2.0);
        let QStorage::Cpu(st) =
            QStorage::from_data(q.data().expect("test value"), &Device::Cpu, GgmlDType::Q4K)
                .expect("test value")
        else {
            unreachable!("cpu")
        };
        let mut want = vec![0f32; m * rows];
        st.matmul_t((m, k, rows), &x, &mut want)
            .expect("test value");
        (bytes, x, want)
    }

    #[test]
    fn agrees_with_candle_for_every_row_count() {
        for m in [1, 2, 3, 4, 5, 7, 33, 40] {
            let (rows, k) = (24, 512);
            let (bytes, x, want) = candle_case(rows, k, m, 7 + m as u64);
            let acts = Activations::quantize(&x, k).expect("test value");
            let mut got = vec![0f32; m * rows];
            matmul(&bytes, &acts, &mut got).expect("test value");
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                // Both quantise activations to Q8_K the same way; the float sums differ in
                // order only.
                assert!(
                    (g - w).abs() <= 0.01 * scale,
                    "m {m}, output {i}: {g} vs {w}"
                );
            }
        }
    }

    #[test]
    fn the_simd_and_scalar_kernels_agree_exactly_in_integers() {
        let (rows, k, m) = (8, 768, 6);
        let (bytes, x, _) = candle_case(rows, k, m, 99);
        let acts = Activations::quantize(&x, k).expect("test value");
        let mut simd = vec![0f32; m * rows];
        matmul(&bytes, &acts, &mut simd).expect("test value");
        let row_bytes = k / QK_K * BLOCK_BYTES;
        for (c, w) in bytes.chunks_exact(row_bytes).enumerate() {
            let mut scalar = vec![0f32; m];
            let headers: Vec<Header> = w.chunks_exact(BLOCK_BYTES).map(header).collect();
            rows_scalar(w, &headers, &acts, 0, &mut scalar);
            for r in 0..m {
                let s = simd[r * rows + c];
                assert!(
                    (s - scalar[r]).abs() <= 1e-4 * (1.0 + s.abs()),
                    "{s} vs {}",
                    scalar[r]
                );
            }
        }
    }

    #[test]
    fn a_matrix_gives_back_its_bytes_and_serves_both_kernels() {
        let (bytes, x, want) = candle_case(16, 256, 1, 11);
        let m = Matrix::new(&bytes).expect("test value");
        assert_eq!(m.bytes(), &bytes[..]);
        let mut got = vec![0f32; 16];
        m.storage()
            .matmul_t((1, 256, 16), &x, &mut got)
            .expect("test value");
        assert_eq!(got, want);
        assert!(Matrix::new(&bytes[..100]).is_err());
        assert!(Matrix::new(&[]).is_err());
    }

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
        let acts = Activations::quantize(&[1.0; 512], 256).expect("test value");
        assert!(matches!(
            matmul(&[0u8; 100], &acts, &mut [0.0; 2]),
            Err(KernelError::Ragged { .. })
        ));
        assert!(matches!(
            matmul(&[0u8; 288], &acts, &mut [0.0; 3]),
            Err(KernelError::Output { .. })
        ));
    }

    #[test]
    fn zero_and_non_finite_rows_quantise_to_zero() {
        let mut x = vec![0.0f32; 512];
        x[300] = f32::NAN;
        let acts = Activations::quantize(&x, 256).expect("test value");
        assert!(acts.qs.iter().all(|&q| q == 0) && acts.d.iter().all(|&d| d == 0.0));
    }
}
