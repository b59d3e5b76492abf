//! Q4_K (ggml's `block_q4_K`, as stored in GGUF): 256 weights in 144 bytes — `d` and `dmin`
//! (f16), twelve bytes packing eight 6-bit scales and eight 6-bit mins (one pair per 32
//! weights), then 128 bytes of 4-bit values: in each 32-byte group the low nibbles are weights
//! `64j .. 64j+32` and the high nibbles `64j+32 .. 64j+64`. Weight `i` is
//! `d·scale·q − dmin·min`.

use crate::acts::Row;

/// Bytes per block.
pub(crate) const BLOCK_BYTES: usize = 144;

/// One block's scales and mins, unpacked, and its two f32 factors.
#[derive(Clone, Copy)]
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

/// The dot products of one weight row with each of `rows`.
pub(crate) fn rows_scalar(w: &[u8], headers: &[Header], rows: &[Row], out: &mut [f32]) {
    out.fill(0.0);
    for (b, (block, h)) in w.chunks_exact(BLOCK_BYTES).zip(headers).enumerate() {
        let qs = &block[16..];
        for (o, row) in out.iter_mut().zip(rows) {
            let (a, dx, sums) = (&row.qs[b], row.d[b], &row.sums[b]);
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
                min += h.mins[s] as i32 * (sums[2 * s] as i32 + sums[2 * s + 1] as i32);
            }
            *o += h.d * dx * dot as f32 - h.dmin * dx * min as f32;
        }
    }
}
