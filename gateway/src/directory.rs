//! What a directory fetch is answered with: a uniformly random sample of the verified nodes,
//! drawn afresh for every fetch (as Apple's Private Cloud Compute load balancer answers a
//! device with a random subset of its nodes). The gateway cannot tell one device's fetch from
//! another's — the relay hides who asks, and every device with the same policy sends the same
//! bytes — so it cannot give one device a sample of its own choosing; over many fetches every
//! node is reached equally often.

use rand::SeedableRng as _;
use rand::rngs::{StdRng, SysRng};

/// The largest number of nodes one fetch gets unless the gateway is told otherwise (about
/// 0.6 MB of evidence: each node's bundle is about 9 KB with its log proof).
pub const DEFAULT_DIRECTORY_MAX: usize = 64;

/// Why no sample could be drawn.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random source failed: {0}")]
pub struct SampleError(String);

/// `k` of `items` chosen uniformly without replacement, in random order (all of them, shuffled,
/// when there are no more than `k`).
pub fn sample<T: Clone>(items: &[T], k: usize) -> Result<Vec<T>, SampleError> {
    let mut rng = StdRng::try_from_rng(&mut SysRng).map_err(|e| SampleError(e.to_string()))?;
    let k = k.min(items.len());
    Ok(rand::seq::index::sample(&mut rng, items.len(), k)
        .into_iter()
        .map(|i| items[i].clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pearson's chi-square statistic of `counts` against a uniform expectation.
    fn chi_square(counts: &[u64]) -> f64 {
        let total: u64 = counts.iter().sum();
        let expected = total as f64 / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum()
    }

    /// Over many fetches of 8 from 40 nodes, every node is in a sample equally often: the
    /// chi-square statistic stays below the 0.999 quantile for 39 degrees of freedom (72.05),
    /// and no sample repeats a node.
    #[test]
    fn every_node_is_reached_equally_often() {
        let nodes: Vec<usize> = (0..40).collect();
        let mut counts = vec![0u64; 40];
        for _ in 0..5_000 {
            let s = sample(&nodes, 8).expect("sample");
            assert_eq!(s.len(), 8);
            let mut distinct = s.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 8, "{s:?}");
            for n in s {
                counts[n] += 1;
            }
        }
        let stat = chi_square(&counts);
        assert!(stat < 72.05, "chi-square {stat:.1} over {counts:?}");
    }

    #[test]
    fn a_small_fleet_is_given_whole() {
        let nodes = ["a", "b", "c"];
        let mut s = sample(&nodes, 8).expect("sample");
        s.sort_unstable();
        assert_eq!(s, nodes);
        assert!(sample::<u8>(&[], 8).expect("empty").is_empty());
    }
}
