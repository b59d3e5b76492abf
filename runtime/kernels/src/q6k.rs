//! Q6_K (ggml's `block_q6_K`, as stored in GGUF): 256 weights in 210 bytes — 128 bytes of low
//! nibbles, 64 bytes of high bit pairs, sixteen `i8` scales (one per 16 weights), then `d`
//! (f16). Each half of the block (128 weights) takes 64 low-nibble bytes `ql` and 32 high
//! bytes `qh`; for `l < 32` its weights `l`, `l+32`, `l+64`, `l+96` are the low nibble of
//! `ql[l]`, of `ql[l+32]`, the high nibble of `ql[l]`, of `ql[l+32]`, each with bits
//! `2k .. 2k+2` of `qh[l]` (k = 0..4) on top. Weight `i` is `d·scale·(q − 32)`.

use crate::acts::Row;

/// Bytes per block.
pub(crate) const BLOCK_BYTES: usize = 210;

/// One block's scales and factor.
#[derive(Clone, Copy)]
pub(crate) struct Header {
    pub d: f32,
    pub scales: [i8; 16],
}

/// Reads a block's header (`block` is a whole block).
#[inline]
pub(crate) fn header(block: &[u8]) -> Header {
    let mut scales = [0i8; 16];
    for (s, b) in scales.iter_mut().zip(&block[192..208]) {
        *s = *b as i8;
    }
    Header {
        d: half::f16::from_le_bytes([block[208], block[209]]).to_f32(),
        scales,
    }
}

/// The unsigned 6-bit value of weight `i` (`q`, before the −32 offset).
#[inline]
fn value(block: &[u8], i: usize) -> i32 {
    let (half, pos) = (i / 128, i % 128);
    let (k, l) = (pos / 32, pos % 32);
    let ql = block[64 * half + l + 32 * (k % 2)];
    let low = if k < 2 { ql & 0x0F } else { ql >> 4 };
    let high = (block[128 + 32 * half + l] >> (2 * k)) & 3;
    (low | (high << 4)) as i32
}

/// The dot products of one weight row with each of `rows`.
pub(crate) fn rows_scalar(w: &[u8], headers: &[Header], rows: &[Row], out: &mut [f32]) {
    out.fill(0.0);
    for (b, (block, h)) in w.chunks_exact(BLOCK_BYTES).zip(headers).enumerate() {
        for (o, row) in out.iter_mut().zip(rows) {
            let (a, dx, sums) = (&row.qs[b], row.d[b], &row.sums[b]);
            let mut dot = 0i32;
            for (g, (scale, sum)) in h.scales.iter().zip(sums).enumerate() {
                let part: i32 = (g * 16..g * 16 + 16)
                    .map(|j| value(block, j) * a[j] as i32)
                    .sum();
                dot += *scale as i32 * (part - 32 * *sum as i32);
            }
            *o += h.d * dx * dot as f32;
        }
    }
}
