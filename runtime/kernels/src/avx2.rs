//! AVX2+FMA versions. The public wrappers are safe: each is only reached after
//! [`crate::has_avx2`] returned true, and every load reads from a fixed-size array reference.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::acts::Row;
use crate::matrix::ROWS_PER_PASS;
use crate::{Activations, QK_K, q4k, q6k};

#[target_feature(enable = "avx2")]
fn load_u8(v: &[u8; 32]) -> __m256i {
    // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn load_i8(v: &[i8; 32]) -> __m256i {
    // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn load_i16(v: &[i16; 16]) -> __m256i {
    // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn load_8(v: &[u8; 8]) -> __m128i {
    // SAFETY: `v` is 8 readable bytes, exactly what the 64-bit load reads.
    unsafe { _mm_loadl_epi64(v.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn load_16(v: &[u8; 16]) -> __m128i {
    // SAFETY: `v` is 16 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm_loadu_si128(v.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn load_f32(v: &[f32; 8]) -> __m256 {
    // SAFETY: `v` is 8 readable f32s; the unaligned load has no alignment requirement.
    unsafe { _mm256_loadu_ps(v.as_ptr()) }
}

#[target_feature(enable = "avx2")]
fn store_f32(v: &mut [f32; 8], x: __m256) {
    // SAFETY: `v` is 8 writable f32s, borrowed exclusively; no alignment requirement.
    unsafe { _mm256_storeu_ps(v.as_mut_ptr(), x) }
}

#[target_feature(enable = "avx2")]
fn hsum(x: __m256) -> f32 {
    let mut lanes = [0f32; 8];
    store_f32(&mut lanes, x);
    lanes.iter().sum()
}

fn chunk<const N: usize, T>(s: &[T], at: usize) -> &[T; N] {
    <&[T; N]>::try_from(&s[at..at + N]).expect("the range is N long")
}

pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    unsafe { dot_f32_avx2(a, b) }
}

#[target_feature(enable = "avx2,fma")]
fn dot_f32_avx2(a: &[f32], b: &[f32]) -> f32 {
    let (a8, a_rest) = a.as_chunks::<8>();
    let (b8, b_rest) = b.as_chunks::<8>();
    let mut acc = [_mm256_setzero_ps(); 4];
    for (i, (x, y)) in a8.iter().zip(b8).enumerate() {
        acc[i % 4] = _mm256_fmadd_ps(load_f32(x), load_f32(y), acc[i % 4]);
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut total = hsum(sum);
    for (x, y) in a_rest.iter().zip(b_rest) {
        total += x * y;
    }
    total
}

pub(crate) fn axpy_f32(out: &mut [f32], w: f32, v: &[f32]) {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    unsafe { axpy_f32_avx2(out, w, v) }
}

#[target_feature(enable = "avx2,fma")]
fn axpy_f32_avx2(out: &mut [f32], w: f32, v: &[f32]) {
    let wv = _mm256_set1_ps(w);
    let (o8, o_rest) = out.as_chunks_mut::<8>();
    let (v8, v_rest) = v.as_chunks::<8>();
    for (o, x) in o8.iter_mut().zip(v8) {
        let r = _mm256_fmadd_ps(wv, load_f32(x), load_f32(o));
        store_f32(o, r);
    }
    for (o, x) in o_rest.iter_mut().zip(v_rest) {
        *o += w * x;
    }
}

/// Calls `kernel::<R>` for `R = out.len()` (1 to [`ROWS_PER_PASS`]) and stores its sums.
macro_rules! by_rows {
    ($kernel:ident, $out:expr, $($arg:expr),*) => {{
        let out: &mut [f32] = $out;
        let dots: &[f32] = match out.len() {
            // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
            4 => &unsafe { $kernel::<4>($($arg),*) },
            // SAFETY: as above.
            3 => &unsafe { $kernel::<3>($($arg),*) },
            // SAFETY: as above.
            2 => &unsafe { $kernel::<2>($($arg),*) },
            // SAFETY: as above.
            1 => &unsafe { $kernel::<1>($($arg),*) },
            _ => return debug_assert!(out.is_empty() || out.len() > ROWS_PER_PASS),
        };
        out.copy_from_slice(dots);
    }};
}

/// The dot products of one Q4_K weight row `w` with activation rows `r0 ..` `r0 + out.len()`
/// (at most [`ROWS_PER_PASS`]).
pub(crate) fn q4k_rows(
    w: &[u8],
    h: &[q4k::Header],
    acts: &Activations,
    r0: usize,
    out: &mut [f32],
) {
    by_rows!(q4k_rows_avx2, out, w, h, acts, r0)
}

/// The dot products of one Q6_K weight row `w` with activation rows `r0 ..` `r0 + out.len()`
/// (at most [`ROWS_PER_PASS`]).
pub(crate) fn q6k_rows(
    w: &[u8],
    h: &[q6k::Header],
    acts: &Activations,
    r0: usize,
    out: &mut [f32],
) {
    by_rows!(q6k_rows_avx2, out, w, h, acts, r0)
}

/// Per block: the 4-bit values are unpacked once (two 32-byte registers per 64 values) and
/// multiplied with each of the `R` activation rows: `maddubs` (u4 × i8 pairs into i16: at most
/// 2·15·127, no saturation), `madd` with the 6-bit scale into i32, summed; the mins (each
/// repeated over its two 16-value sums) `madd` with the activations' 16-value sums; then one
/// FMA per row with `d·dx` and one with `−dmin·dx`.
#[target_feature(enable = "avx2,fma")]
fn q4k_rows_avx2<const R: usize>(
    w: &[u8],
    headers: &[q4k::Header],
    acts: &Activations,
    r0: usize,
) -> [f32; R] {
    let n = headers.len();
    let rows: [Row; R] = std::array::from_fn(|r| acts.row(r0 + r));
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, (block, h)) in w
        .chunks_exact(q4k::BLOCK_BYTES)
        .zip(headers)
        .enumerate()
        .take(n)
    {
        let mut sumi = [_mm256_setzero_si256(); R];
        for j in 0..QK_K / 64 {
            let q4 = load_u8(chunk::<32, u8>(block, 16 + 32 * j));
            let lo = _mm256_and_si256(q4, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), low);
            let s_lo = _mm256_set1_epi16(h.scales[2 * j] as i16);
            let s_hi = _mm256_set1_epi16(h.scales[2 * j + 1] as i16);
            for (s, row) in sumi.iter_mut().zip(&rows) {
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
        let (d, dmin) = (_mm256_set1_ps(h.d), _mm256_set1_ps(h.dmin));
        for ((a, s), row) in acc.iter_mut().zip(&sumi).zip(&rows) {
            let m = _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, load_i16(&row.sums[b])));
            let v = _mm256_fmsub_ps(_mm256_cvtepi32_ps(*s), d, _mm256_mul_ps(m, dmin));
            *a = _mm256_fmadd_ps(_mm256_set1_ps(row.d[b]), v, *a);
        }
    }
    acc.map(|a| hsum(a))
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
fn q6k_rows_avx2<const R: usize>(
    w: &[u8],
    headers: &[q6k::Header],
    acts: &Activations,
    r0: usize,
) -> [f32; R] {
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x30);
    let spread = Q6K_SCALE_SPREAD.map(|t| load_u8(&t));
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, (block, h)) in w.chunks_exact(q6k::BLOCK_BYTES).zip(headers).enumerate() {
        let scales = h.scales.map(|s| s as u8);
        let mut sumi = [_mm256_setzero_si256(); R];
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
                for (r, sum) in sumi.iter_mut().enumerate() {
                    let a = load_i8(chunk::<32, i8>(acts.block(r0 + r, b), 128 * half + 32 * k));
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(*qk, a), s);
                    *sum = _mm256_add_epi32(*sum, p);
                }
            }
        }
        let all = _mm256_cvtepi8_epi16(load_16(&scales));
        for r in 0..R {
            let (dx, sums) = acts.scale(r0 + r, b);
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(all, load_i16(sums)));
            acc[r] = _mm256_fmadd_ps(
                _mm256_set1_ps(h.d * dx),
                _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[r], offset)),
                acc[r],
            );
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum(acc[r]);
    }
    out
}
