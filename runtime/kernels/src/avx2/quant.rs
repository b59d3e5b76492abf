//! The quantised-block kernels: one weight row against several activation rows per pass.

use std::arch::x86_64::*;

use super::{chunk, load_8, load_16, load_f32, load_i8, load_i16, load_u8, store_f32};
use crate::acts::Row;
use crate::matrix::ROWS_PER_PASS;
use crate::{QK_K, q4k, q6k};

/// The dot products of one Q4_K weight row `w` with each of the [`ROWS_PER_PASS`] `rows`
/// (`dx[b]`: the rows' scales for block `b`).
pub(crate) fn q4k_rows(
    w: &[u8],
    h: &[q4k::Header],
    rows: &[Row; ROWS_PER_PASS],
    dx: &[[f32; ROWS_PER_PASS]],
    out: &mut [f32; ROWS_PER_PASS],
) {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    *out = unsafe { q4k_rows_avx2(w, h, rows, dx) };
}

/// The dot products of one Q6_K weight row `w` with each of the [`ROWS_PER_PASS`] `rows`
/// (`dx[b]`: the rows' scales for block `b`).
pub(crate) fn q6k_rows(
    w: &[u8],
    h: &[q6k::Header],
    rows: &[Row; ROWS_PER_PASS],
    dx: &[[f32; ROWS_PER_PASS]],
    out: &mut [f32; ROWS_PER_PASS],
) {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    *out = unsafe { q6k_rows_avx2(w, h, rows, dx) };
}

const _: () = assert!(ROWS_PER_PASS == 8, "the reductions below fold eight rows");

/// Eight vectors of eight i32 into one: lane `r` is the sum of `v[r]`'s lanes (six horizontal
/// adds and one cross-lane add).
#[target_feature(enable = "avx2")]
fn reduce8(v: &[__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(v[0], v[1]);
    let h23 = _mm256_hadd_epi32(v[2], v[3]);
    let h45 = _mm256_hadd_epi32(v[4], v[5]);
    let h67 = _mm256_hadd_epi32(v[6], v[7]);
    // Per 128-bit lane: rows 0-3 (then 4-7), partial sums of that lane's half.
    let lo = _mm256_hadd_epi32(h01, h23);
    let hi = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(lo, hi),
        _mm256_permute2x128_si256::<0x31>(lo, hi),
    )
}

/// Per block: the 4-bit values are unpacked once (two 32-byte registers per 64 values) and
/// multiplied with each of the eight activation rows: `maddubs` (u4 × i8 pairs into i16: at
/// most 2·15·127, no saturation), `madd` with the 6-bit scale into i32, summed; the mins (each
/// repeated over its two 16-value sums) `madd` with the activations' 16-value sums. The eight
/// rows' sums fold into one vector (lane = row) for the float step: `d·S − dmin·M`, times the
/// rows' scales, into one accumulator.
#[target_feature(enable = "avx2,fma")]
fn q4k_rows_avx2(
    w: &[u8],
    headers: &[q4k::Header],
    rows: &[Row; ROWS_PER_PASS],
    dx: &[[f32; ROWS_PER_PASS]],
) -> [f32; ROWS_PER_PASS] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    for (b, ((block, h), dx)) in w
        .chunks_exact(q4k::BLOCK_BYTES)
        .zip(headers)
        .zip(dx)
        .enumerate()
    {
        let mut sumi = [_mm256_setzero_si256(); ROWS_PER_PASS];
        for j in 0..QK_K / 64 {
            let q4 = load_u8(chunk::<32, u8>(block, 16 + 32 * j));
            let lo = _mm256_and_si256(q4, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), low);
            let s_lo = _mm256_set1_epi16(h.scales[2 * j] as i16);
            let s_hi = _mm256_set1_epi16(h.scales[2 * j + 1] as i16);
            for (s, row) in sumi.iter_mut().zip(rows) {
                let a = &row.qs[b];
                let a_lo = load_i8(chunk::<32, i8>(a, 64 * j));
                let a_hi = load_i8(chunk::<32, i8>(a, 64 * j + 32));
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi);
                *s = _mm256_add_epi32(*s, _mm256_add_epi32(p_lo, p_hi));
            }
        }
        let mins8 = load_8(&h.mins);
        let mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mins8, mins8));
        let mut m = [_mm256_setzero_si256(); ROWS_PER_PASS];
        for (m, row) in m.iter_mut().zip(rows) {
            *m = _mm256_madd_epi16(mins, load_i16(&row.sums[b]));
        }
        let s = _mm256_cvtepi32_ps(reduce8(&sumi));
        let m = _mm256_cvtepi32_ps(reduce8(&m));
        let v = _mm256_fmsub_ps(
            s,
            _mm256_set1_ps(h.d),
            _mm256_mul_ps(m, _mm256_set1_ps(h.dmin)),
        );
        acc = _mm256_fmadd_ps(v, load_f32(dx), acc);
    }
    let mut out = [0f32; ROWS_PER_PASS];
    store_f32(&mut out, acc);
    out
}

/// Byte shuffles that spread one half-block's eight i16 scales (in both 128-bit lanes) over a
/// 32-value chunk `k`: scale `2k` for its first 16 values, `2k + 1` for the last 16.
const Q6K_SCALE_SPREAD: [[u8; 32]; 4] = {
    let mut t = [[0u8; 32]; 4];
    let mut k = 0;
    while k < 4 {
        let mut i = 0;
        while i < 32 {
            let scale = 2 * k + i / 16;
            // Within each lane: byte 2·(scale mod 8) and the next, the i16 at that index.
            t[k][i] = (2 * (scale % 8) + i % 2) as u8;
            i += 1;
        }
        k += 1;
    }
    t
};

/// Per half block (128 values): the 6-bit values are assembled once from their low nibbles and
/// high bit pairs (four 32-byte registers, unsigned 0..63) and multiplied with each of the `R`
/// activation rows: `maddubs` (at most 2·63·127, no saturation), `madd` with the 16-value
/// scales; the −32 offset is taken once per block as `32 · Σ scale · (16-value sum)`; then one
/// FMA per row with `d·dx`.
#[target_feature(enable = "avx2,fma")]
fn q6k_rows_avx2(
    w: &[u8],
    headers: &[q6k::Header],
    rows: &[Row; ROWS_PER_PASS],
    dx: &[[f32; ROWS_PER_PASS]],
) -> [f32; ROWS_PER_PASS] {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x30);
    let spread = Q6K_SCALE_SPREAD.map(|t| load_u8(&t));
    let mut acc = _mm256_setzero_ps();
    for (b, ((block, h), dx)) in w
        .chunks_exact(q6k::BLOCK_BYTES)
        .zip(headers)
        .zip(dx)
        .enumerate()
    {
        let scales = h.scales.map(|s| s as u8);
        let mut sumi = [_mm256_setzero_si256(); ROWS_PER_PASS];
        for half in 0..2 {
            let ql0 = load_u8(chunk::<32, u8>(block, 64 * half));
            let ql1 = load_u8(chunk::<32, u8>(block, 64 * half + 32));
            let qh = load_u8(chunk::<32, u8>(block, 128 + 32 * half));
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(ql0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(ql1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), m4),
                    _mm256_and_si256(qh, m2),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m2),
                ),
            ];
            let sc = _mm_cvtepi8_epi16(load_8(chunk::<8, u8>(&scales, 8 * half)));
            let sc = _mm256_broadcastsi128_si256(sc);
            for (k, qk) in q.iter().enumerate() {
                let s = _mm256_shuffle_epi8(sc, spread[k]);
                for (sum, row) in sumi.iter_mut().zip(rows) {
                    let a = load_i8(chunk::<32, i8>(&row.qs[b], 128 * half + 32 * k));
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*qk, a), s);
                    *sum = _mm256_add_epi32(*sum, p);
                }
            }
        }
        let all = _mm256_cvtepi8_epi16(load_16(&scales));
        for (s, row) in sumi.iter_mut().zip(rows) {
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(all, load_i16(&row.sums[b])));
            *s = _mm256_sub_epi32(*s, offset);
        }
        let v = _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8(&sumi)), _mm256_set1_ps(h.d));
        acc = _mm256_fmadd_ps(v, load_f32(dx), acc);
    }
    let mut out = [0f32; ROWS_PER_PASS];
    store_f32(&mut out, acc);
    out
}
