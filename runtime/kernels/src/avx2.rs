//! AVX2+FMA versions. The public wrappers are safe: each is only reached after
//! [`crate::has_avx2`] returned true, and every load reads from a fixed-size array reference.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::q4k::{Activations, BLOCK_BYTES, Header, QK_K, ROWS_PER_PASS};

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
fn load_i32(v: &[i32; 8]) -> __m256i {
    // SAFETY: `v` is 32 readable bytes; the unaligned load has no alignment requirement.
    unsafe { _mm256_loadu_si256(v.as_ptr().cast()) }
}

#[target_feature(enable = "avx2")]
fn widen_u8(v: &[u8; 8]) -> __m256i {
    // SAFETY: `v` is 8 readable bytes, exactly what the 64-bit load reads.
    _mm256_cvtepu8_epi32(unsafe { _mm_loadl_epi64(v.as_ptr().cast()) })
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

/// The dot products of one Q4_K weight row `w` with activation rows `r0 ..` `r0 + out.len()`
/// (at most [`ROWS_PER_PASS`]).
pub(crate) fn q4k_rows(w: &[u8], h: &[Header], acts: &Activations, r0: usize, out: &mut [f32]) {
    let dots: &[f32] = match out.len() {
        // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
        4 => &unsafe { q4k_rows_avx2::<4>(w, h, acts, r0) },
        // SAFETY: as above.
        3 => &unsafe { q4k_rows_avx2::<3>(w, h, acts, r0) },
        // SAFETY: as above.
        2 => &unsafe { q4k_rows_avx2::<2>(w, h, acts, r0) },
        // SAFETY: as above.
        1 => &unsafe { q4k_rows_avx2::<1>(w, h, acts, r0) },
        _ => return debug_assert!(out.is_empty() || out.len() > ROWS_PER_PASS),
    };
    out.copy_from_slice(dots);
}

/// Per block: the 4-bit values are unpacked once (two 32-byte registers per 64 values) and
/// multiplied with each of the `R` activation rows: `maddubs` (u4 × i8 pairs into i16: at most
/// 2·15·127, no saturation), `madd` with the 6-bit scale into i32, summed; then one FMA per row
/// with `d·dx`, and one for the mins (eight 6-bit mins times the activations' 32-value sums,
/// times `dmin·dx`) into the same accumulator.
#[target_feature(enable = "avx2,fma")]
fn q4k_rows_avx2<const R: usize>(
    w: &[u8],
    headers: &[Header],
    acts: &Activations,
    r0: usize,
) -> [f32; R] {
    let low = _mm256_set1_epi8(0x0F);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, (block, h)) in w.chunks_exact(BLOCK_BYTES).zip(headers).enumerate() {
        let mut sumi = [_mm256_setzero_si256(); R];
        for j in 0..QK_K / 64 {
            let q4 = load_u8(chunk::<32, u8>(block, 16 + 32 * j));
            let lo = _mm256_and_si256(q4, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q4), low);
            let s_lo = _mm256_set1_epi16(h.scales[2 * j] as i16);
            let s_hi = _mm256_set1_epi16(h.scales[2 * j + 1] as i16);
            for (r, s) in sumi.iter_mut().enumerate() {
                let a = acts.block(r0 + r, b);
                let a_lo = load_i8(chunk::<32, i8>(a, 64 * j));
                let a_hi = load_i8(chunk::<32, i8>(a, 64 * j + 32));
                let p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a_lo), s_lo);
                let p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a_hi), s_hi);
                *s = _mm256_add_epi32(*s, _mm256_add_epi32(p_lo, p_hi));
            }
        }
        let mins = widen_u8(&h.mins);
        for r in 0..R {
            let (dx, sums) = acts.scale(r0 + r, b);
            let m = _mm256_mullo_epi32(mins, load_i32(chunk::<8, i32>(sums, 0)));
            acc[r] = _mm256_fmadd_ps(
                _mm256_set1_ps(h.d * dx),
                _mm256_cvtepi32_ps(sumi[r]),
                acc[r],
            );
            acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(h.dmin * dx), _mm256_cvtepi32_ps(m), acc[r]);
        }
    }
    let mut out = [0f32; R];
    for r in 0..R {
        out[r] = hsum(acc[r]);
    }
    out
}
