//! The gateway's node set: the nodes its flags name, and — in a fleet — the nodes host agents
//! have registered (`cloister-registry`), read again at every registry interval. The set a
//! request is forwarded by is the set the last directory was made from: a new node is
//! reachable as soon as its evidence is in the directory, and a node that left (its host died
//! or drained) is refused as `node-departed` with the token refunded — the device chose it from
//! a directory that was true when it was read, and no node did any work — for
//! [`DEPARTED_MEMORY`]; after that an unknown id is `node-unknown`, and the token stays spent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cloister_protocol::access::NodeId;
use cloister_registry::Registry;

use crate::nodes::{Connector, NodeAddress};

/// How long a node that left the set is still answered as departed (a directory's useful life
/// on a device is shorter).
pub const DEPARTED_MEMORY: Duration = Duration::from_secs(600);

/// Nodes by id.
pub type Nodes = BTreeMap<NodeId, NodeAddress>;

/// The fixed nodes, the registry's, and the set in force.
#[derive(Debug)]
pub struct NodeSet {
    fixed: Nodes,
    registry: Option<Registry>,
    connector: Connector,
    /// The registry's nodes at the last listing that succeeded: kept while Redis is away, so
    /// an outage of the registry alone takes no node out (each node still has to give its
    /// evidence at every refresh).
    registered: Mutex<Nodes>,
    current: RwLock<Arc<Nodes>>,
    departed: Mutex<BTreeMap<NodeId, Instant>>,
}

impl NodeSet {
    /// A set of `fixed` nodes, and `registry`'s when there is one.
    pub fn new(fixed: Nodes, registry: Option<Registry>, connector: Connector) -> NodeSet {
        let current = RwLock::new(Arc::new(fixed.clone()));
        NodeSet {
            fixed,
            registry,
            connector,
            registered: Mutex::new(Nodes::new()),
            current,
            departed: Mutex::new(BTreeMap::new()),
        }
    }

    /// How nodes are reached.
    pub fn connector(&self) -> &Connector {
        &self.connector
    }

    /// Whether the set can change (a registry is configured).
    pub fn has_registry(&self) -> bool {
        self.registry.is_some()
    }

    /// The set in force.
    pub fn current(&self) -> Arc<Nodes> {
        self.current
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|p| Arc::clone(&p.into_inner()))
    }

    /// The node `id` of the set in force.
    pub fn get(&self, id: &NodeId) -> Option<NodeAddress> {
        self.current().get(id).cloned()
    }

    /// The fixed nodes and the registry's as it is now (or as it last was, when it cannot be
    /// read). Records that cannot be used are logged and left out: an id a flag already
    /// names, an address that does not parse, a `tcp://` node without the host TLS.
    pub async fn listed(&self) -> Nodes {
        let mut all = self.fixed.clone();
        let Some(registry) = &self.registry else {
            return all;
        };
        let registered = match registry.nodes().await {
            Ok((records, skipped)) => {
                for why in skipped {
                    tracing::warn!(%why, "registry record left out");
                }
                let mut fresh = Nodes::new();
                for r in records {
                    match r.address.parse::<NodeAddress>() {
                        Ok(a @ NodeAddress::Tcp { .. }) if !self.connector.has_host_tls() => {
                            tracing::warn!(
                                node = %r.id,
                                address = %a,
                                "registered node left out: this gateway has no host TLS"
                            );
                        }
                        Ok(a) => {
                            fresh.insert(r.id, a);
                        }
                        Err(why) => {
                            tracing::warn!(node = %r.id, %why, "registered node left out");
                        }
                    }
                }
                if let Ok(mut slot) = self.registered.lock() {
                    slot.clone_from(&fresh);
                }
                fresh
            }
            Err(why) => {
                tracing::warn!(%why, "registry unreadable: its last listing stays in force");
                self.registered
                    .lock()
                    .map(|s| s.clone())
                    .unwrap_or_default()
            }
        };
        for (id, address) in registered {
            if all.contains_key(&id) {
                tracing::warn!(node = %id, "registered id is also a --node: the flag's stays");
                continue;
            }
            all.insert(id, address);
        }
        all
    }

    /// Puts `nodes` in force; the ids it drops are remembered as departed.
    pub fn set(&self, nodes: Nodes) {
        let before = self.current();
        if let Ok(mut departed) = self.departed.lock() {
            let now = Instant::now();
            departed.retain(|id, at| {
                !nodes.contains_key(id) && now.duration_since(*at) < DEPARTED_MEMORY
            });
            for id in before.keys().filter(|id| !nodes.contains_key(*id)) {
                tracing::info!(node = %id, "node left the set");
                departed.insert(id.clone(), now);
            }
        }
        if let Ok(mut slot) = self.current.write() {
            *slot = Arc::new(nodes);
        }
    }

    /// Whether `id` left the set within [`DEPARTED_MEMORY`].
    pub fn departed(&self, id: &NodeId) -> bool {
        self.departed
            .lock()
            .is_ok_and(|d| d.get(id).is_some_and(|at| at.elapsed() < DEPARTED_MEMORY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(ids: &[&str]) -> Nodes {
        ids.iter()
            .map(|id| {
                let a = NodeAddress::Unix(format!("/run/{id}.sock").into());
                (NodeId::new(id).expect("id"), a)
            })
            .collect()
    }

    #[tokio::test]
    async fn fixed_nodes_stay_and_departures_are_remembered() {
        let set = NodeSet::new(nodes(&["a"]), None, Connector::local());
        assert_eq!(set.listed().await, nodes(&["a"]));
        set.set(nodes(&["a", "b", "c"]));
        let id = |s: &str| NodeId::new(s).expect("id");
        assert!(set.get(&id("b")).is_some());
        set.set(nodes(&["a", "c"]));
        assert!(set.get(&id("b")).is_none());
        assert!(set.departed(&id("b")));
        assert!(!set.departed(&id("a")) && !set.departed(&id("z")));
        // Back in the set: no longer departed.
        set.set(nodes(&["a", "b"]));
        assert!(!set.departed(&id("b")) && set.departed(&id("c")));
    }

    #[tokio::test]
    async fn an_unreadable_registry_keeps_the_fixed_nodes() {
        let registry = Registry::connect("redis://127.0.0.1:1/").expect("lazy");
        let set = NodeSet::new(nodes(&["a"]), Some(registry), Connector::local());
        assert_eq!(set.listed().await, nodes(&["a"]));
    }
}
