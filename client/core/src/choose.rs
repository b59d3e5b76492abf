//! The device picks the node, uniformly at random among the verified ones, so that the
//! operator cannot steer one user's request to a machine of its choosing (non-targetability).
//! The randomness is a ChaCha12 CSPRNG (`rand`'s `StdRng`) seeded from the operating system,
//! and the index comes from `rand`'s range sampling (rejection sampling: no modulo bias).

use rand::rngs::{StdRng, SysRng};
use rand::{Rng, RngExt as _, SeedableRng as _};

use crate::error::ClientError;

/// A fresh CSPRNG seeded from the operating system's random source.
pub fn os_rng() -> Result<StdRng, ClientError> {
    StdRng::try_from_rng(&mut SysRng).map_err(|e| ClientError::Random(e.to_string()))
}

/// A uniformly random index below `n`; `None` when `n` is 0.
pub fn choose_index<R: Rng + ?Sized>(rng: &mut R, n: usize) -> Option<usize> {
    (n > 0).then(|| rng.random_range(0..n))
}

/// A uniformly random item of `items`; `None` when it is empty.
pub fn choose<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> Option<&'a T> {
    choose_index(rng, items.len()).and_then(|i| items.get(i))
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

    /// The 0.999 quantile of chi-square with 9 degrees of freedom: a uniform sampler exceeds
    /// it once in a thousand runs.
    const CRITICAL_DF9_P001: f64 = 27.877;
    const DRAWS: usize = 10_000;
    const NODES: usize = 10;

    fn histogram(mut draw: impl FnMut() -> usize) -> Vec<u64> {
        let mut counts = vec![0u64; NODES];
        for _ in 0..DRAWS {
            counts[draw()] += 1;
        }
        counts
    }

    #[test]
    fn the_choice_is_uniform() {
        let mut rng = os_rng().expect("os random source");
        let nodes: Vec<usize> = (0..NODES).collect();
        let counts = histogram(|| *choose(&mut rng, &nodes).expect("non-empty"));
        let stat = chi_square(&counts);
        assert!(
            stat < CRITICAL_DF9_P001,
            "chi-square {stat:.2} over {counts:?}"
        );
    }

    #[test]
    fn the_statistic_rejects_a_biased_sampler() {
        // The classic mistake, made visible: a random nibble reduced modulo the node count
        // (16 = 10 + 6, so nodes 0..=5 come twice as often as 6..=9) — and a stuck sampler.
        let mut rng = os_rng().expect("os random source");
        let modulo_bias = histogram(|| usize::from(rng.random::<u8>() % 16) % NODES);
        let stat = chi_square(&modulo_bias);
        assert!(stat > CRITICAL_DF9_P001, "not rejected: {stat:.2}");
        let stuck = histogram(|| 3);
        assert!(chi_square(&stuck) > CRITICAL_DF9_P001);
    }

    #[test]
    fn nothing_to_choose_from_is_none() {
        let mut rng = os_rng().expect("os random source");
        assert_eq!(choose_index(&mut rng, 0), None);
        assert_eq!(choose::<u8, _>(&mut rng, &[]), None);
        assert_eq!(choose(&mut rng, &[7]), Some(&7));
    }
}
