//! The key/value cache, allocated once per generation for every position it will hold, and
//! causal attention with grouped key/value heads, split across candle's worker pool.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use zeroize::Zeroizing;

use cloister_kernels::{MANY, dot_blocks, weighted_rows};

/// Keys and values of every layer, `[kv_head][position][head_dim]` per layer, zeroized when
/// dropped (they are derived from the request's text).
pub struct KvCache {
    k: Vec<Zeroizing<Vec<f32>>>,
    v: Vec<Zeroizing<Vec<f32>>>,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache")
            .field("layers", &self.k.len())
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl KvCache {
    /// Room for `capacity` positions in each of `layers` layers.
    pub fn new(layers: usize, kv_heads: usize, head_dim: usize, capacity: usize) -> Self {
        let size = kv_heads * capacity * head_dim;
        let buf = || Zeroizing::new(vec![0f32; size]);
        KvCache {
            k: (0..layers).map(|_| buf()).collect(),
            v: (0..layers).map(|_| buf()).collect(),
            kv_heads,
            head_dim,
            capacity,
            len: 0,
        }
    }

    /// Positions filled (and attended over by the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes the keys and values of `rows` new positions (each row `kv_heads * head_dim`,
    /// heads in order) at positions `len ..` of `layer`.
    pub fn store(&mut self, layer: usize, keys: &[f32], values: &[f32]) {
        let (d, cap, pos0) = (self.head_dim, self.capacity, self.len);
        for (src, dst) in [(keys, &mut self.k[layer]), (values, &mut self.v[layer])] {
            for (i, row) in src.chunks_exact(self.kv_heads * d).enumerate() {
                for (h, head) in row.chunks_exact(d).enumerate() {
                    let at = (h * cap + pos0 + i) * d;
                    dst[at..at + d].copy_from_slice(head);
                }
            }
        }
    }

    /// Marks `rows` more positions as filled (after every layer has stored them).
    pub fn advance(&mut self, rows: usize) {
        self.len += rows;
    }

    /// Where the first `positions` positions of `kv_head` lie in a layer's buffer.
    fn head(&self, kv_head: usize, positions: usize) -> std::ops::Range<usize> {
        let start = kv_head * self.capacity * self.head_dim;
        start..start + positions * self.head_dim
    }

    /// Causal attention of `q` (`rows` rows of `heads * head_dim`, at positions `len ..`,
    /// already stored for `layer`) over positions `0 ..= its own`; the result, laid out like `q`,
    /// goes to `out`.
    ///
    /// Work items are (key/value head, run of [`ITEM_ROWS`] query rows), taken from a shared
    /// cursor by candle's workers. Within an item, the queries of every head sharing that key
    /// head, in blocks of [`MANY`], meet each key and value once (they stream from L2): a
    /// single token's grouped heads read the cache once, not once per head.
    pub fn attend(&self, layer: usize, q: &[f32], heads: usize, out: &mut [f32]) {
        let d = self.head_dim;
        let rows = q.len() / (heads * d);
        let group = heads / self.kv_heads;
        let pos0 = self.len;
        let width = pos0 + rows;
        let scale = 1.0 / (d as f32).sqrt();
        let (keys, values) = (&self.k[layer][..], &self.v[layer][..]);
        let runs = rows.div_ceil(ITEM_ROWS);
        let items = self.kv_heads * runs;
        let out = Mutex::new(out);
        let cursor = AtomicUsize::new(0);
        candle_core::utils::barrier_pool().execute_chunked(items, |_| {
            // Per key: the block's eight scores, side by side (the value pass reads them so).
            let mut scores = Zeroizing::new(vec![[0f32; MANY]; width]);
            let mut qb = Zeroizing::new(vec![0f32; MANY * d]);
            let mut acc = Zeroizing::new(vec![0f32; MANY * d]);
            loop {
                let item = cursor.fetch_add(1, Ordering::Relaxed);
                if item >= items {
                    break;
                }
                let (kv, run) = (item / runs, item % runs);
                let span = self.head(kv, width);
                let (k, v) = (&keys[span.clone()], &values[span]);
                // The item's queries: (row, head) for its rows and the heads of this group.
                let first = run * ITEM_ROWS;
                let last = rows.min(first + ITEM_ROWS);
                let queries: Vec<(usize, usize)> = (first..last)
                    .flat_map(|i| (kv * group..(kv + 1) * group).map(move |h| (i, h)))
                    .collect();
                for block in queries.chunks(MANY) {
                    let n = block.len();
                    for (r, &(i, h)) in block.iter().enumerate() {
                        let at = (i * heads + h) * d;
                        qb[r * d..(r + 1) * d].copy_from_slice(&q[at..at + d]);
                    }
                    // Query row i sees keys 0 ..= pos0 + i; the block computes up to its last
                    // row's and masks the rest after the products.
                    let seen = pos0 + block.iter().map(|&(i, _)| i).max().unwrap_or(0) + 1;
                    let s = &mut scores[..seen];
                    dot_blocks(&qb[..n * d], &k[..seen * d], s);
                    for r in 0..MANY {
                        let own = block.get(r).map_or(0, |&(i, _)| pos0 + i + 1);
                        softmax_column(s, r, own, scale);
                    }
                    weighted_rows(s, &v[..seen * d], &mut acc);
                    let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                    for (r, &(i, h)) in block.iter().enumerate() {
                        out[(i * heads + h) * d..][..d].copy_from_slice(&acc[r * d..(r + 1) * d]);
                    }
                }
            }
        });
    }
}

/// Softmax of `scale ·` column `r` over rows `..own`; the rest of the column becomes 0.
fn softmax_column(s: &mut [[f32; MANY]], r: usize, own: usize, scale: f32) {
    let own = own.min(s.len());
    let max = s[..own]
        .iter()
        .fold(f32::NEG_INFINITY, |m, x| m.max(x[r] * scale));
    let mut sum = 0.0;
    for x in &mut s[..own] {
        x[r] = (x[r] * scale - max).exp();
        sum += x[r];
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    for x in &mut s[..own] {
        x[r] *= inv;
    }
    for x in &mut s[own..] {
        x[r] = 0.0;
    }
}

/// Query rows per work item of [`KvCache::attend`].
const ITEM_ROWS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    /// Attention written the obvious way: every head against its own copy of the keys.
    fn reference(
        q: &[f32],
        ks: &[Vec<f32>],
        vs: &[Vec<f32>],
        heads: usize,
        kv_heads: usize,
        d: usize,
        pos0: usize,
    ) -> Vec<f32> {
        let rows = q.len() / (heads * d);
        let mut out = vec![0f32; q.len()];
        for i in 0..rows {
            for h in 0..heads {
                let kvh = h / (heads / kv_heads);
                let qi = &q[(i * heads + h) * d..][..d];
                let n = pos0 + i + 1;
                let mut s: Vec<f32> = (0..n)
                    .map(|j| {
                        let kj = &ks[j][kvh * d..][..d];
                        qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt()
                    })
                    .collect();
                let max = s.iter().copied().fold(f32::MIN, f32::max);
                let total: f32 = s
                    .iter_mut()
                    .map(|x| {
                        *x = (*x - max).exp();
                        *x
                    })
                    .sum();
                for j in 0..n {
                    for c in 0..d {
                        out[(i * heads + h) * d + c] += s[j] / total * vs[j][kvh * d + c];
                    }
                }
            }
        }
        out
    }

    #[test]
    fn a_column_softmax_sums_to_one_keeps_order_and_masks_the_rest() {
        let mut s = vec![[0f32; MANY]; 5];
        for (j, v) in [1.0, 3.0, 2.0, -50.0, 9.0].into_iter().enumerate() {
            s[j][2] = v;
            s[j][0] = 4.0;
        }
        softmax_column(&mut s, 2, 4, 1.0);
        let col: Vec<f32> = s.iter().map(|x| x[2]).collect();
        assert!((col.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(col[1] > col[2] && col[2] > col[0] && col[0] > col[3]);
        assert_eq!(col[4], 0.0, "past its own position");
        assert!(s.iter().all(|x| x[0] == 4.0), "other columns untouched");
    }

    #[test]
    fn matches_the_reference_for_a_prompt_and_the_next_token() {
        let (heads, kv_heads, d) = (4, 2, 8);
        let value =
            |seed: usize, i: usize| ((seed * 7919 + i * 104_729) % 1000) as f32 / 500.0 - 1.0;
        let row = |seed: usize, n: usize| (0..n).map(|i| value(seed, i)).collect::<Vec<_>>();
        let mut cache = KvCache::new(1, kv_heads, d, 16);
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        // An 11-token prompt (a full block of query rows and a partial one), one token, three.
        for (step, rows) in [(0usize, 11usize), (1, 1), (2, 3)] {
            let k: Vec<f32> = (0..rows)
                .flat_map(|i| row(100 + step * 10 + i, kv_heads * d))
                .collect();
            let v: Vec<f32> = (0..rows)
                .flat_map(|i| row(200 + step * 10 + i, kv_heads * d))
                .collect();
            let q: Vec<f32> = (0..rows)
                .flat_map(|i| row(300 + step * 10 + i, heads * d))
                .collect();
            ks.extend(k.chunks(kv_heads * d).map(<[f32]>::to_vec));
            vs.extend(v.chunks(kv_heads * d).map(<[f32]>::to_vec));
            let pos0 = cache.len();
            cache.store(0, &k, &v);
            let mut out = vec![0f32; q.len()];
            cache.attend(0, &q, heads, &mut out);
            cache.advance(rows);
            let want = reference(&q, &ks, &vs, heads, kv_heads, d, pos0);
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{a} != {b}");
            }
        }
        assert_eq!(cache.len(), 15);
    }
}
