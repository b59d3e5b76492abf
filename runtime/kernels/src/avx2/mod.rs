//! AVX2+FMA versions. The public wrappers are safe: each is only reached after
//! [`crate::has_avx2`] returned true, and every load reads from a fixed-size array reference.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

mod quant;

pub(crate) use quant::{q4k_rows, q6k_rows};

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

pub(crate) fn dot_many(qs: &[f32], k: &[f32], out: &mut [f32; crate::MANY]) {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    unsafe { dot_many_avx2(qs, k, out) }
}

pub(crate) fn dot_blocks(qs: &[f32], keys: &[f32], out: &mut [[f32; crate::MANY]]) {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    unsafe { dot_blocks_avx2(qs, keys, out) }
}

/// [`dot_many_avx2`] for each row of `keys` (`out.len()` rows of equal width).
#[target_feature(enable = "avx2,fma")]
fn dot_blocks_avx2(qs: &[f32], keys: &[f32], out: &mut [[f32; crate::MANY]]) {
    let d = keys.len() / out.len().max(1);
    for (o, k) in out.iter_mut().zip(keys.chunks_exact(d.max(1))) {
        dot_many_avx2(qs, k, o);
    }
}

/// `out[r] = qs[r] · k` for the [`crate::MANY`] rows of `qs` (`qs` holds `rows` of them; the
/// rest come out 0): each eight values of `k` are loaded once for all the rows, and the eight
/// sums fold into one vector.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_many_avx2(qs: &[f32], k: &[f32], out: &mut [f32; crate::MANY]) {
    let d = k.len();
    let rows = (qs.len() / d).min(crate::MANY);
    let (k8, k_rest) = k.as_chunks::<8>();
    let mut acc = [_mm256_setzero_ps(); crate::MANY];
    for (c, kc) in k8.iter().enumerate() {
        let kv = load_f32(kc);
        for (r, a) in acc.iter_mut().enumerate().take(rows) {
            let q = chunk::<8, f32>(qs, r * d + 8 * c);
            *a = _mm256_fmadd_ps(load_f32(q), kv, *a);
        }
    }
    let h01 = _mm256_hadd_ps(acc[0], acc[1]);
    let h23 = _mm256_hadd_ps(acc[2], acc[3]);
    let h45 = _mm256_hadd_ps(acc[4], acc[5]);
    let h67 = _mm256_hadd_ps(acc[6], acc[7]);
    let lo = _mm256_hadd_ps(h01, h23);
    let hi = _mm256_hadd_ps(h45, h67);
    let sums = _mm256_add_ps(
        _mm256_permute2f128_ps::<0x20>(lo, hi),
        _mm256_permute2f128_ps::<0x31>(lo, hi),
    );
    store_f32(out, sums);
    if !k_rest.is_empty() {
        for (r, o) in out.iter_mut().enumerate().take(rows) {
            let tail = &qs[r * d + 8 * k8.len()..(r + 1) * d];
            *o += tail.iter().zip(k_rest).map(|(a, b)| a * b).sum::<f32>();
        }
    }
}

pub(crate) fn weighted_rows(weights: &[[f32; crate::MANY]], values: &[f32], out: &mut [f32]) {
    // SAFETY: reached only when `has_avx2()` found AVX2 and FMA on this CPU.
    unsafe { weighted_rows_avx2(weights, values, out) }
}

/// `out[r] = Σ_j weights[j][r] · values[j]` for the [`crate::MANY`] rows of `out` (`d` values
/// each): eight columns at a time, the eight rows' sums stay in registers over every `j`.
#[target_feature(enable = "avx2,fma")]
fn weighted_rows_avx2(weights: &[[f32; crate::MANY]], values: &[f32], out: &mut [f32]) {
    let d = out.len() / crate::MANY;
    for c in 0..d / 8 {
        let mut acc = [_mm256_setzero_ps(); crate::MANY];
        for (w, v) in weights.iter().zip(values.chunks_exact(d)) {
            let x = load_f32(chunk::<8, f32>(v, 8 * c));
            for (a, &wr) in acc.iter_mut().zip(w) {
                *a = _mm256_fmadd_ps(_mm256_set1_ps(wr), x, *a);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let o = <&mut [f32; 8]>::try_from(&mut out[r * d + 8 * c..r * d + 8 * c + 8])
                .expect("eight values");
            store_f32(o, *a);
        }
    }
    for c in d / 8 * 8..d {
        for r in 0..crate::MANY {
            out[r * d + c] = weights
                .iter()
                .zip(values.chunks_exact(d))
                .map(|(w, v)| w[r] * v[c])
                .sum();
        }
    }
}
