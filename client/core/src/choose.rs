//! The device picks the node, uniformly at random, so that the operator cannot steer one
//! user's request to a machine of its choosing (non-targetability).
//!
//! A gateway chooses what the directory lists, so the choice is made over what it cannot
//! multiply at will ([`candidates`]): every listed node must verify (a directory that mixes
//! nodes the device cannot verify is refused and reported), no attested key may be listed
//! twice, and nodes are grouped by the machine their hardware signer names (SNP chip ID, TDX
//! PPID). The directory must span at least the policy's minimum of distinct machines
//! ([`DEFAULT_MIN_MACHINES`] unless the device lowers it by name); the device picks a machine
//! uniformly, then a node of it uniformly. A gateway that lists one node a thousand times is
//! refused; one that runs a thousand guests on one chip still gets that chip chosen only as
//! often as any other machine.
//!
//! The randomness is a ChaCha12 CSPRNG (`rand`'s `StdRng`) seeded from the operating system,
//! and the index comes from `rand`'s range sampling (rejection sampling: no modulo bias).

use std::collections::BTreeMap;

use cloister_measurement::{MachineId, Verified};
use cloister_protocol::access::NodeId;
use rand::rngs::{StdRng, SysRng};
use rand::{Rng, RngExt as _, SeedableRng as _};

use crate::error::ClientError;
use crate::nodes::{NodeReport, failures};

/// Distinct machines a directory must span unless the device asks for fewer by name: with one
/// machine, the operator knows where every request goes.
pub const DEFAULT_MIN_MACHINES: usize = 2;

/// The verified nodes of a sound directory, by machine.
#[derive(Debug)]
pub struct Candidates<'a> {
    machines: Vec<(&'a MachineId, Vec<(&'a NodeId, &'a Verified)>)>,
}

impl<'a> Candidates<'a> {
    /// Distinct machines.
    pub fn machines(&self) -> usize {
        self.machines.len()
    }

    /// A machine uniformly, then one of its nodes uniformly.
    pub fn choose<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<(&'a NodeId, &'a Verified)> {
        let (_, nodes) = choose(rng, &self.machines)?;
        choose(rng, nodes).copied()
    }

    /// [`Candidates::choose`] over the machines and nodes left once `except` is set aside
    /// (the nodes a request already failed to reach); `None` when nothing is left.
    pub fn choose_except<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        except: &[NodeId],
    ) -> Option<(&'a NodeId, &'a Verified)> {
        let left: Vec<Vec<(&'a NodeId, &'a Verified)>> = self
            .machines
            .iter()
            .map(|(_, nodes)| {
                nodes
                    .iter()
                    .filter(|(id, _)| !except.contains(id))
                    .copied()
                    .collect::<Vec<_>>()
            })
            .filter(|nodes| !nodes.is_empty())
            .collect();
        let nodes = choose(rng, &left)?;
        choose(rng, nodes).copied()
    }

    /// The node `id`, if it is a candidate.
    pub fn find(&self, id: &NodeId) -> Option<(&'a NodeId, &'a Verified)> {
        self.machines
            .iter()
            .flat_map(|(_, nodes)| nodes.iter())
            .find(|(n, _)| *n == id)
            .copied()
    }
}

/// The directory's verified nodes, if the directory is sound: every node verified, no attested
/// key listed twice, at least `min_machines` distinct machines.
pub fn candidates(
    reports: &[NodeReport],
    min_machines: usize,
) -> Result<Candidates<'_>, ClientError> {
    let verified: Vec<(&NodeId, &Verified)> = reports
        .iter()
        .filter_map(|r| r.verified().map(|v| (&r.id, v)))
        .collect();
    let failed = failures(reports);
    if verified.is_empty() {
        return Err(ClientError::NoVerifiedNode(failed));
    }
    if !failed.is_empty() {
        return Err(ClientError::MixedDirectory {
            verified: verified.len(),
            failures: failed,
        });
    }
    let mut keys: BTreeMap<&[u8], &NodeId> = BTreeMap::new();
    let mut machines: BTreeMap<&MachineId, Vec<(&NodeId, &Verified)>> = BTreeMap::new();
    for (id, v) in verified {
        if let Some(first) = keys.insert(&v.key_config, id) {
            return Err(ClientError::DuplicateNodeKey {
                first: first.clone(),
                second: id.clone(),
            });
        }
        machines.entry(&v.machine).or_default().push((id, v));
    }
    if machines.len() < min_machines {
        return Err(ClientError::TooFewMachines {
            found: machines.len(),
            required: min_machines,
        });
    }
    Ok(Candidates {
        machines: machines.into_iter().collect(),
    })
}

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

    mod directory {
        use cloister_measurement::{Policy, SystemClock, TrustAnchor, Verifier};
        use cloister_protocol::access::{DIRECTORY_VERSION, NodeDirectory, NodeEntry};

        use super::*;
        use crate::nodes::verify_directory;
        use crate::testkit::{MEASUREMENT, bundle_json, bundle_on, chip, emulated_root};

        /// A directory of `(id, chip, key)` nodes (and `(id, None)` for one that fails).
        fn reports(nodes: &[(&str, Option<u32>, &[u8])]) -> Vec<NodeReport> {
            let directory = NodeDirectory {
                version: DIRECTORY_VERSION,
                token_challenge: String::new(),
                nodes: nodes
                    .iter()
                    .map(|(id, c, key)| NodeEntry {
                        id: NodeId::new(id).expect("id"),
                        evidence: bundle_json(&bundle_on(
                            chip(c.unwrap_or(0)),
                            key,
                            MEASUREMENT,
                            c.is_some(),
                        )),
                    })
                    .collect(),
            };
            let verifier = Verifier::new(
                TrustAnchor::InsecureEmulated(emulated_root()),
                Policy::default().with_snp_measurement(MEASUREMENT),
                SystemClock,
            );
            verify_directory(&verifier, &directory)
        }

        #[test]
        fn a_sound_directory_spans_its_machines() {
            let r = reports(&[
                ("a", Some(0), b"key-a"),
                ("b", Some(1), b"key-b"),
                ("c", Some(1), b"key-c"),
            ]);
            let c = candidates(&r, DEFAULT_MIN_MACHINES).expect("sound");
            assert_eq!(c.machines(), 2);
            assert!(c.find(&NodeId::new("c").expect("id")).is_some());
            assert!(c.find(&NodeId::new("zz").expect("id")).is_none());
        }

        #[test]
        fn one_node_listed_again_under_another_id_is_refused() {
            let r = reports(&[
                ("a", Some(0), b"key-a"),
                ("b", Some(1), b"key-b"),
                ("a-again", Some(1), b"key-b"),
            ]);
            let e = candidates(&r, 1).expect_err("the same key twice");
            assert!(
                matches!(&e, ClientError::DuplicateNodeKey { first, second }
                    if first.as_str() == "b" && second.as_str() == "a-again"),
                "{e}"
            );
        }

        #[test]
        fn one_machine_is_not_enough_by_default() {
            let r = reports(&[("a", Some(2), b"key-a"), ("b", Some(2), b"key-b")]);
            assert!(matches!(
                candidates(&r, DEFAULT_MIN_MACHINES),
                Err(ClientError::TooFewMachines {
                    found: 1,
                    required: 2
                })
            ));
            assert_eq!(candidates(&r, 1).expect("asked for by name").machines(), 1);
        }

        #[test]
        fn a_directory_with_a_node_that_fails_is_refused_and_named() {
            let r = reports(&[
                ("a", Some(0), b"key-a"),
                ("b", Some(1), b"key-b"),
                ("unbound", None, b"key-u"),
            ]);
            let e = candidates(&r, 1).expect_err("mixed");
            assert!(
                matches!(&e, ClientError::MixedDirectory { verified: 2, failures }
                    if failures.len() == 1 && failures[0].id.as_str() == "unbound"),
                "{e}"
            );
            assert!(e.to_string().contains("unbound"), "{e}");
            let r = reports(&[("unbound", None, b"key-u")]);
            assert!(matches!(
                candidates(&r, 1),
                Err(ClientError::NoVerifiedNode(f)) if f.len() == 1
            ));
        }

        /// A gateway that runs nine guests on one chip and one on another gets each chip
        /// chosen half the time, not nine times in ten.
        #[test]
        fn the_choice_is_uniform_over_machines() {
            let keys: Vec<Vec<u8>> = (0..10).map(|i| vec![i; 8]).collect();
            let ids: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
            let nodes: Vec<(&str, Option<u32>, &[u8])> = (0..10)
                .map(|i| {
                    let c = if i == 9 { 1 } else { 0 };
                    (ids[i].as_str(), Some(c), keys[i].as_slice())
                })
                .collect();
            let r = reports(&nodes);
            let c = candidates(&r, 2).expect("sound");
            let mut rng = os_rng().expect("os random source");
            let lone = (0..4_000)
                .filter(|_| {
                    c.choose(&mut rng)
                        .is_some_and(|(id, _)| id.as_str() == "n9")
                })
                .count();
            // Binomial(4000, 1/2): mean 2000, sd 31.6; ±200 is over six sd.
            assert!(
                (1_800..=2_200).contains(&lone),
                "lone chip chosen {lone} times"
            );
        }

        /// A retry after an undelivered request never picks a node it already tried while
        /// another is left, and falls back to none when all were tried.
        #[test]
        fn a_retry_sets_the_tried_nodes_aside() {
            let r = reports(&[
                ("a", Some(0), b"key-a"),
                ("b", Some(1), b"key-b"),
                ("c", Some(1), b"key-c"),
            ]);
            let c = candidates(&r, 1).expect("sound");
            let id = |s: &str| NodeId::new(s).expect("id");
            let mut rng = os_rng().expect("os random source");
            let mut seen = BTreeMap::new();
            for _ in 0..300 {
                let (n, _) = c.choose_except(&mut rng, &[id("b")]).expect("left");
                *seen.entry(n.as_str().to_owned()).or_insert(0) += 1;
            }
            assert_eq!(seen.keys().collect::<Vec<_>>(), ["a", "c"], "{seen:?}");
            // Machine 1 has only c left: a and c each about half the time.
            assert!(seen["a"] > 100 && seen["c"] > 100, "{seen:?}");
            let (n, _) = c.choose_except(&mut rng, &[id("a"), id("b")]).expect("c");
            assert_eq!(n.as_str(), "c");
            assert!(
                c.choose_except(&mut rng, &[id("a"), id("b"), id("c")])
                    .is_none()
            );
        }
    }

    #[test]
    fn nothing_to_choose_from_is_none() {
        let mut rng = os_rng().expect("os random source");
        assert_eq!(choose_index(&mut rng, 0), None);
        assert_eq!(choose::<u8, _>(&mut rng, &[]), None);
        assert_eq!(choose(&mut rng, &[7]), Some(&7));
    }
}
