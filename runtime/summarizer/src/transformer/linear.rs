//! Weight matrices and the projections through them.
//!
//! A prompt's rows are split into chunks of at most [`CHUNK_ROWS`] over candle's worker pool; each
//! worker quantises its rows once to Q8_K and runs them through every matrix that reads the
//! same input (q, k and v; gate and up), writing its own rows of each output in place. A
//! single token goes through candle's one-row kernels.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::borrow::Cow;

use candle_core::quantized::{QStorage, QuantizedType};
use candle_core::{CpuStorage, Device};
use cloister_kernels::{Activations, KernelError};
use zeroize::Zeroizing;

use super::bad;
use crate::error::SummarizeError;

/// Most prompt rows handed to one worker at a time: each weight tile, fetched once per chunk,
/// serves all of its rows (measured on Qwen2.5-1.5B: 16 rows 0.73x llama.cpp's prompt speed,
/// 32 rows 0.82x, 64 rows 0.78–0.84x, within the machine's drift).
const CHUNK_ROWS: usize = 64;

/// Rows per chunk for `m` rows: at most [`CHUNK_ROWS`], a whole number of kernel passes, and
/// chunks in a multiple of the worker count so that no worker is left with the tail alone.
fn chunk_rows(m: usize) -> usize {
    let workers = candle_core::utils::get_num_threads().max(1);
    let chunks = m.div_ceil(CHUNK_ROWS).next_multiple_of(workers);
    m.div_ceil(chunks)
        .next_multiple_of(cloister_kernels::ROWS_PER_PASS)
        .min(CHUNK_ROWS)
}

/// A weight matrix's bytes, in its file's quantisation.
pub(super) enum Matrix {
    /// Q4_K or Q6_K: prompts through [`cloister_kernels::matmul`] (several activation rows per
    /// pass over each weight block), single tokens through candle's kernel, on the same bytes.
    Packed(cloister_kernels::Matrix),
    /// Any other type, multiplied by candle's kernels.
    Candle(Box<dyn QuantizedType>),
}

/// One weight matrix, `rows` outputs by `cols` inputs.
pub(super) struct Linear {
    pub w: Matrix,
    pub rows: usize,
    pub cols: usize,
    /// The matrix's bytes where [`Matrix`] does not expose them (a candle-only type), kept for
    /// the token embedding's oblivious lookup.
    pub raw: Option<Vec<u8>>,
}

impl Linear {
    /// `out = x · Wᵀ` through candle's kernels, for `x` of `x.len() / cols` rows.
    fn forward_candle(&self, x: &[f32], out: &mut [f32]) -> Result<(), SummarizeError> {
        let m = x.len() / self.cols;
        let out = &mut out[..m * self.rows];
        let w = match &self.w {
            Matrix::Candle(w) => &**w,
            Matrix::Packed(w) => w.storage(),
        };
        Ok(w.matmul_t((m, self.cols, self.rows), x, out)?)
    }

    /// Rows `ids` expanded to f32 (the token embedding), read so that the pages of the table
    /// touched do not depend on the ids ([`crate::oblivious`]).
    pub fn rows(&self, ids: &[u32], width: usize) -> Result<Zeroizing<Vec<f32>>, SummarizeError> {
        let (bytes, dtype) = match &self.w {
            Matrix::Packed(w) => (w.bytes(), w.format().dtype()),
            Matrix::Candle(w) => (
                self.raw
                    .as_deref()
                    .ok_or_else(|| bad("the embedding's bytes were not kept"))?,
                w.dtype(),
            ),
        };
        if width != self.cols || !width.is_multiple_of(dtype.block_size()) {
            return Err(bad(format!("an embedding row of {width} values")));
        }
        let row_bytes = width / dtype.block_size() * dtype.type_size();
        let gathered =
            crate::oblivious::gather(bytes, row_bytes, ids).map_err(|e| bad(e.to_string()))?;
        let n = ids.len();
        let QStorage::Cpu(mut rows) =
            QStorage::from_data(Cow::Borrowed(&gathered), &Device::Cpu, dtype)?
        else {
            return Err(bad("the embedding rows did not load to the CPU"));
        };
        let local: Vec<u32> = (0..n as u32).collect();
        let out = rows.embedding(&local, n, width);
        // Candle's copy of the gathered rows is overwritten before it is freed.
        rows.from_float(&vec![0f32; n * width]);
        match out? {
            CpuStorage::F32(v) => Ok(Zeroizing::new(v)),
            _ => Err(bad("the embedding did not expand to f32")),
        }
    }
}

pub(super) fn kernel(e: KernelError) -> SummarizeError {
    bad(e.to_string())
}

/// `outs[i] = x · linears[i]ᵀ` for `x` of `x.len() / cols` rows (every matrix reads `cols`
/// inputs; each output holds at least the rows times that matrix's outputs).
pub(super) fn project(
    linears: &[&Linear],
    x: &[f32],
    outs: &mut [&mut [f32]],
) -> Result<(), SummarizeError> {
    project_then(linears, x, outs, |_| {})
}

/// [`project`], then `then` on each run of rows of the outputs (the same rows of each, in
/// order), by the worker that computed them while they are in its cache.
pub(super) fn project_then(
    linears: &[&Linear],
    x: &[f32],
    outs: &mut [&mut [f32]],
    then: impl Fn(&mut [&mut [f32]]) + Sync,
) -> Result<(), SummarizeError> {
    let Some(first) = linears.first() else {
        return Ok(());
    };
    let cols = first.cols;
    if cols == 0 || linears.len() != outs.len() || linears.iter().any(|l| l.cols != cols) {
        return Err(bad(
            "a projection's matrices read no input or disagree on it",
        ));
    }
    let m = x.len() / cols;
    if let Some(short) = linears
        .iter()
        .zip(outs.iter())
        .find(|(l, o)| o.len() < m * l.rows)
    {
        return Err(bad(format!(
            "an output of {} values cannot hold {m} x {}",
            short.1.len(),
            short.0.rows
        )));
    }
    let packed = linears.iter().all(|l| matches!(l.w, Matrix::Packed(_)));
    if m == 1 || !packed {
        for (l, out) in linears.iter().zip(outs.iter_mut()) {
            l.forward_candle(x, out)?;
        }
        let mut rows: Vec<&mut [f32]> = linears
            .iter()
            .zip(outs.iter_mut())
            .map(|(l, o)| &mut o[..m * l.rows])
            .collect();
        then(&mut rows);
        return Ok(());
    }
    // Each chunk's rows of every output, taken by the worker that computes them.
    let size = chunk_rows(m);
    let mut parts: Vec<Vec<&mut [f32]>> = (0..m.div_ceil(size)).map(|_| Vec::new()).collect();
    for (l, out) in linears.iter().zip(outs.iter_mut()) {
        for (part, rows) in parts
            .iter_mut()
            .zip(out[..m * l.rows].chunks_mut(size * l.rows))
        {
            part.push(rows);
        }
    }
    let slots: Vec<Mutex<Option<Vec<&mut [f32]>>>> =
        parts.into_iter().map(|p| Mutex::new(Some(p))).collect();
    let failure = Mutex::new(None);
    // Chunks are taken one at a time from a shared cursor (candle's pool hands out ranges of
    // about a sixteenth of the work, too coarse here: the last range decides when all finish).
    let cursor = AtomicUsize::new(0);
    candle_core::utils::barrier_pool().execute_chunked(slots.len(), |_| {
        loop {
            let c = cursor.fetch_add(1, Ordering::Relaxed);
            if c >= slots.len() {
                break;
            }
            let taken = slots[c].lock().unwrap_or_else(|p| p.into_inner()).take();
            let Some(mut part) = taken else { continue };
            let rows = &x[c * size * cols..x.len().min((c + 1) * size * cols)];
            match chunk(linears, rows, cols, &mut part) {
                Ok(()) => then(&mut part),
                Err(e) => *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
            }
        }
    });
    match failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(kernel(e)),
        None => Ok(()),
    }
}

/// One worker's rows: quantised once, through every matrix.
fn chunk(
    linears: &[&Linear],
    x: &[f32],
    cols: usize,
    outs: &mut [&mut [f32]],
) -> Result<(), KernelError> {
    let acts = Activations::quantize(x, cols)?;
    for (l, out) in linears.iter().zip(outs.iter_mut()) {
        if let Matrix::Packed(w) = &l.w {
            cloister_kernels::matmul(w.format(), w.bytes(), &acts, out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_whole_passes_and_cover_every_row() {
        for m in [2, 7, 63, 64, 65, 122, 200, 512, 634, 2400] {
            let size = chunk_rows(m);
            assert!(size <= CHUNK_ROWS && size.is_multiple_of(cloister_kernels::ROWS_PER_PASS));
            assert!(m.div_ceil(size) * size >= m, "m {m}");
        }
    }

    /// A `rows` x `cols` matrix of `dtype`, packed for the multi-row kernels where they have
    /// the type and the machine has AVX2, and candle's otherwise (its bytes kept).
    fn matrix(dtype: candle_core::quantized::GgmlDType, rows: usize, cols: usize) -> Linear {
        use candle_core::quantized::QTensor;
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let t = candle_core::Tensor::from_vec(values, (rows, cols), &Device::Cpu).expect("tensor");
        let q = QTensor::quantize(&t, dtype).expect("quantizes");
        let bytes = q.data().expect("bytes").to_vec();
        match cloister_kernels::Format::of(dtype).filter(|_| cloister_kernels::has_avx2()) {
            Some(format) => Linear {
                w: Matrix::Packed(cloister_kernels::Matrix::new(format, &bytes).expect("packs")),
                rows,
                cols,
                raw: None,
            },
            None => match QStorage::from_data(Cow::Owned(bytes.clone()), &Device::Cpu, dtype)
                .expect("loads")
            {
                QStorage::Cpu(w) => Linear {
                    w: Matrix::Candle(w),
                    rows,
                    cols,
                    raw: Some(bytes),
                },
                _ => panic!("not on the CPU"),
            },
        }
    }

    #[test]
    fn the_oblivious_lookup_gives_the_rows_a_plain_lookup_gives() {
        use candle_core::quantized::GgmlDType;
        let ids = [
            0u32, 511, 17, 17, 300, 1, 510, 256, 255, 42, 99, 7, 8, 9, 10, 11, 12, 400,
        ];
        for dtype in [GgmlDType::Q6K, GgmlDType::Q4K, GgmlDType::Q8_0] {
            let l = matrix(dtype, 512, 512);
            let w = match &l.w {
                Matrix::Candle(w) => &**w,
                Matrix::Packed(w) => w.storage(),
            };
            let plain = match w.embedding(&ids, l.rows, l.cols).expect("plain lookup") {
                CpuStorage::F32(v) => v,
                _ => panic!("f32"),
            };
            let oblivious = l.rows(&ids, l.cols).expect("oblivious lookup");
            assert_eq!(&oblivious[..], &plain[..], "{dtype:?}");
        }
    }
}
