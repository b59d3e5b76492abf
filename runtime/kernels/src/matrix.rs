//! Quantised weight matrices held once, in candle's own storage, and their products with
//! several activation rows per pass over each weight block.

use candle_core::quantized::{GgmlDType, QuantizedType};

use crate::acts::Row;
use crate::{Activations, KernelError, q4k, q6k};

/// Activation rows multiplied per pass over a weight block.
pub const ROWS_PER_PASS: usize = 8;
/// Weight rows kept hot in L2 while the passes of activation rows go by (64 rows of Qwen2.5's
/// widest matrix, 8960 Q4_K values, are 315 KiB).
const WEIGHT_TILE: usize = 64;

/// A block format the multi-row kernels read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// ggml's Q4_K.
    Q4K,
    /// ggml's Q6_K.
    Q6K,
}

impl Format {
    /// The format of a candle type, if the kernels have it.
    pub fn of(dtype: GgmlDType) -> Option<Self> {
        match dtype {
            GgmlDType::Q4K => Some(Format::Q4K),
            GgmlDType::Q6K => Some(Format::Q6K),
            _ => None,
        }
    }

    /// Bytes per block of 256 weights.
    pub fn block_bytes(self) -> usize {
        match self {
            Format::Q4K => q4k::BLOCK_BYTES,
            Format::Q6K => q6k::BLOCK_BYTES,
        }
    }

    /// The candle type of this format.
    pub fn dtype(self) -> GgmlDType {
        match self {
            Format::Q4K => GgmlDType::Q4K,
            Format::Q6K => GgmlDType::Q6K,
        }
    }
}

/// A matrix held once, in candle's storage: [`Self::storage`] for candle's kernels
/// (single-row products, embedding rows), [`Self::bytes`] for [`matmul`].
pub struct Matrix {
    format: Format,
    storage: Box<dyn QuantizedType>,
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("format", &self.format)
            .field("bytes", &self.storage.storage_size_in_bytes())
            .finish()
    }
}

impl Matrix {
    /// Copies `bytes` (whole blocks of `format`) into candle's storage.
    pub fn new(format: Format, bytes: &[u8]) -> Result<Self, KernelError> {
        let block = format.block_bytes();
        if bytes.is_empty() || !bytes.len().is_multiple_of(block) {
            return Err(KernelError::Ragged {
                what: "the matrix",
                len: bytes.len(),
                row: block,
            });
        }
        let storage = format.dtype().from_data(std::borrow::Cow::Borrowed(bytes));
        if storage.storage_size_in_bytes() != bytes.len() {
            return Err(KernelError::Layout {
                format,
                len: storage.storage_size_in_bytes(),
                want: bytes.len(),
            });
        }
        Ok(Matrix { format, storage })
    }

    /// The block format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The storage, for candle's kernels.
    pub fn storage(&self) -> &dyn QuantizedType {
        &*self.storage
    }

    /// The blocks, as read from the file.
    #[allow(unsafe_code)]
    pub fn bytes(&self) -> &[u8] {
        let len = self.storage.storage_size_in_bytes();
        // SAFETY: `storage` was made by candle's `from_data` for Q4_K or Q6_K, which returns a
        // `Vec<BlockQ4K>` or `Vec<BlockQ6K>` (`repr(C)`, 144 or 210 bytes of integer fields
        // and no padding; `new` checked that the size in bytes equals what was copied in);
        // its `as_ptr` is that vector's buffer and `storage_size_in_bytes` its length in bytes.
        // The box is owned by `self` and never handed out mutably, so the buffer is
        // initialised, unchanged and alive for as long as `&self` is borrowed.
        unsafe { std::slice::from_raw_parts(self.storage.as_ptr(), len) }
    }
}

/// `out = acts · Wᵀ` where `weights` holds whole rows of `format` blocks, `acts.width()`
/// values each; `out` is `acts.rows()` rows of one value per weight row.
pub fn matmul(
    format: Format,
    weights: &[u8],
    acts: &Activations,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let row_bytes = acts.blocks() * format.block_bytes();
    if !weights.len().is_multiple_of(row_bytes) {
        return Err(KernelError::Ragged {
            what: "the weights",
            len: weights.len(),
            row: row_bytes,
        });
    }
    let cols = weights.len() / row_bytes;
    if out.len() != acts.rows() * cols {
        return Err(KernelError::Output {
            len: out.len(),
            rows: acts.rows(),
            cols,
        });
    }
    match format {
        Format::Q4K => tiles(
            weights,
            acts,
            out,
            row_bytes,
            q4k::BLOCK_BYTES,
            q4k::header,
            rows_q4k,
        ),
        Format::Q6K => tiles(
            weights,
            acts,
            out,
            row_bytes,
            q6k::BLOCK_BYTES,
            q6k::header,
            rows_q6k,
        ),
    }
    Ok(())
}

/// One weight row against a pass of activation rows (and their scales per block, transposed).
type Rows<H> = fn(&[u8], &[H], &Pass, &[[f32; ROWS_PER_PASS]], &mut [f32; ROWS_PER_PASS]);
type Pass<'a> = [Row<'a>; ROWS_PER_PASS];

fn rows_q4k(w: &[u8], h: &[q4k::Header], rows: &Pass, dx: &[[f32; 8]], out: &mut [f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        return crate::avx2::q4k_rows(w, h, rows, dx, out);
    }
    let _ = dx;
    q4k::rows_scalar(w, h, rows, out)
}

fn rows_q6k(w: &[u8], h: &[q6k::Header], rows: &Pass, dx: &[[f32; 8]], out: &mut [f32; 8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::has_avx2() {
        return crate::avx2::q6k_rows(w, h, rows, dx, out);
    }
    let _ = dx;
    q6k::rows_scalar(w, h, rows, out)
}

/// The weights in tiles of [`WEIGHT_TILE`] rows (kept in L2, block headers unpacked once per
/// tile); each pass of [`ROWS_PER_PASS`] activation rows (a few KiB, kept in L1) meets every
/// row of the tile.
fn tiles<H>(
    weights: &[u8],
    acts: &Activations,
    out: &mut [f32],
    row_bytes: usize,
    block_bytes: usize,
    header: fn(&[u8]) -> H,
    rows: Rows<H>,
) {
    let cols = weights.len() / row_bytes;
    let mut headers = Vec::with_capacity(WEIGHT_TILE * acts.blocks());
    let mut dx = vec![[0f32; ROWS_PER_PASS]; acts.blocks()];
    for (t, tile) in weights.chunks(WEIGHT_TILE * row_bytes).enumerate() {
        headers.clear();
        headers.extend(tile.chunks_exact(block_bytes).map(header));
        let mut r = 0;
        while r < acts.rows() {
            let n = ROWS_PER_PASS.min(acts.rows() - r);
            // A short pass repeats its last row; the extra products are dropped.
            let pass: Pass = std::array::from_fn(|i| acts.row((r + i).min(r + n - 1)));
            for (b, d) in dx.iter_mut().enumerate() {
                *d = std::array::from_fn(|i| pass[i].d[b]);
            }
            for (c, (w, h)) in tile
                .chunks_exact(row_bytes)
                .zip(headers.chunks_exact(acts.blocks()))
                .enumerate()
            {
                let mut dots = [0f32; ROWS_PER_PASS];
                rows(w, h, &pass, &dx, &mut dots);
                let col = t * WEIGHT_TILE + c;
                for (i, v) in dots[..n].iter().enumerate() {
                    out[(r + i) * cols + col] = *v;
                }
            }
            r += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::{QStorage, QTensor};
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

    /// A matrix quantised by candle, its bytes, and candle's own product with `x`.
    fn candle_case(
        format: Format,
        rows: usize,
        k: usize,
        m: usize,
        seed: u64,
    ) -> (Vec<u8>, Vec<f32>, Vec<f32>) {
        let w = Tensor::from_vec(values(rows * k, seed, 0.5), (rows, k), &Device::Cpu)
            .expect("test value");
        let q = QTensor::quantize(&w, format.dtype()).expect("test value");
        let bytes = q.data().expect("test value").to_vec();
        let x = values(m * k, seed + 1, 2.0);
        let QStorage::Cpu(st) =
            QStorage::from_data(q.data().expect("test value"), &Device::Cpu, format.dtype())
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
        for format in [Format::Q4K, Format::Q6K] {
            for m in [1, 2, 3, 4, 5, 7, 33, 40] {
                let (rows, k) = (24, 512);
                let (bytes, x, want) = candle_case(format, rows, k, m, 7 + m as u64);
                let acts = Activations::quantize(&x, k).expect("test value");
                let mut got = vec![0f32; m * rows];
                matmul(format, &bytes, &acts, &mut got).expect("test value");
                let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    // Both quantise activations to Q8_K the same way; the float sums differ in
                    // order only.
                    assert!(
                        (g - w).abs() <= 1e-3 * scale,
                        "{format:?}, m {m}, output {i}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_simd_and_scalar_kernels_agree() {
        let (rows, k, m) = (8, 768, 6);
        for format in [Format::Q4K, Format::Q6K] {
            let (bytes, x, _) = candle_case(format, rows, k, m, 99);
            let acts = Activations::quantize(&x, k).expect("test value");
            let mut simd = vec![0f32; m * rows];
            matmul(format, &bytes, &acts, &mut simd).expect("test value");
            let row_bytes = k / crate::QK_K * format.block_bytes();
            let views: Vec<Row> = (0..m).map(|r| acts.row(r)).collect();
            for (c, w) in bytes.chunks_exact(row_bytes).enumerate() {
                let mut scalar = vec![0f32; m];
                let blocks = w.chunks_exact(format.block_bytes());
                match format {
                    Format::Q4K => {
                        let h: Vec<_> = blocks.map(q4k::header).collect();
                        q4k::rows_scalar(w, &h, &views, &mut scalar);
                    }
                    Format::Q6K => {
                        let h: Vec<_> = blocks.map(q6k::header).collect();
                        q6k::rows_scalar(w, &h, &views, &mut scalar);
                    }
                }
                for r in 0..m {
                    let s = simd[r * rows + c];
                    assert!(
                        (s - scalar[r]).abs() <= 1e-4 * (1.0 + s.abs()),
                        "{format:?}: {s} vs {}",
                        scalar[r]
                    );
                }
            }
        }
    }

    #[test]
    fn a_matrix_gives_back_its_bytes_and_serves_both_kernels() {
        for format in [Format::Q4K, Format::Q6K] {
            let (bytes, x, want) = candle_case(format, 16, 256, 1, 11);
            let m = Matrix::new(format, &bytes).expect("test value");
            assert_eq!(m.bytes(), &bytes[..]);
            assert_eq!(m.format(), format);
            let mut got = vec![0f32; 16];
            m.storage()
                .matmul_t((1, 256, 16), &x, &mut got)
                .expect("test value");
            assert_eq!(got, want);
            assert!(Matrix::new(format, &bytes[..100]).is_err());
            assert!(Matrix::new(format, &[]).is_err());
        }
    }

    #[test]
    fn bad_shapes_are_named_errors() {
        let acts = Activations::quantize(&[1.0; 512], 256).expect("test value");
        assert!(matches!(
            matmul(Format::Q4K, &[0u8; 100], &acts, &mut [0.0; 2]),
            Err(KernelError::Ragged { .. })
        ));
        assert!(matches!(
            matmul(Format::Q4K, &[0u8; 288], &acts, &mut [0.0; 3]),
            Err(KernelError::Output { .. })
        ));
        assert!(matches!(
            matmul(Format::Q6K, &[0u8; 420], &acts, &mut [0.0; 2]),
            Err(KernelError::Output { .. })
        ));
        assert_eq!(Format::of(GgmlDType::Q8_0), None);
        assert_eq!(Format::of(GgmlDType::Q6K), Some(Format::Q6K));
    }
}
