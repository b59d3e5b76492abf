//! The fleet's node registry, kept in Redis — a well-kept server the operator already runs for
//! spent tokens — rather than in a cluster protocol of our own.
//!
//! Each host agent registers each of its nodes: a record (`cloister:node:{id}`, JSON) written
//! with a time to live, and the id added to one set (`cloister:nodes`). A heartbeat writes the
//! record again before it expires; a host that dies stops writing and its records expire
//! within the TTL on Redis's own clock (no host's clock is involved); a host that drains
//! deletes its records first. Gateways list the set and read the records in one server-side
//! script that also drops the ids whose records expired, so a listing is one round trip and
//! never returns a dead node.
//!
//! The registry is the operator's, and so is untrusted by devices: it says where nodes are,
//! never what they are. A gateway still fetches each node's evidence and a device still
//! verifies it; a forged record can at worst point the gateway at something that cannot
//! attest.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::Duration;

use cloister_protocol::access::NodeId;
use serde::{Deserialize, Serialize};

/// The set of registered node ids.
const NODES_SET: &str = "cloister:nodes";
/// Each node's record: this prefix, then its id.
const NODE_PREFIX: &str = "cloister:node:";
/// The id of the outer OHTTP key every gateway lists first (a decimal 0-255; not a secret: the
/// keys themselves are derived from seeds each gateway holds).
const OUTER_KEY_CURRENT: &str = "cloister:outer-key:current";
/// How long one Redis command may take before the registry counts as unreachable.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Lists the live records, dropping the ids whose records have expired — atomically, so a node
/// that re-registers concurrently is never dropped.
const LIST_SCRIPT: &str = r"
local ids = redis.call('SMEMBERS', KEYS[1])
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    table.insert(out, v)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
";

/// One node as its host agent registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRecord {
    /// The node's id in the directory (unique across the fleet: the host's name and an index).
    pub id: NodeId,
    /// Where the gateway reaches it (`tcp://HOST:PORT`, the host agent's TLS port for it).
    pub address: String,
    /// The host agent that runs it.
    pub host: String,
}

/// Why the registry could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The URL is not a Redis URL (not repeated here: it may carry a password).
    #[error("registry URL: {0}")]
    Url(String),
    /// Redis could not be reached or refused the command.
    #[error("registry unreachable: {0}")]
    Unreachable(String),
    /// A time to live below one second.
    #[error("a registration's time to live must be at least one second")]
    TtlTooShort,
}

/// A handle on the registry (cheap to clone; reconnects by itself).
#[derive(Clone)]
pub struct Registry {
    conn: redis::aio::ConnectionManager,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects lazily to `url` (`redis://HOST:PORT[/DB]`): a server that starts while Redis is
    /// down gets errors from each call until it is back, never a silent empty fleet.
    pub fn connect(url: &str) -> Result<Registry, RegistryError> {
        if !url.starts_with("redis://") {
            return Err(RegistryError::Url("expected redis://HOST:PORT[/DB]".into()));
        }
        let conn = lazy_connection(url).map_err(RegistryError::Url)?;
        Ok(Registry { conn })
    }

    /// Registers `record` (or renews it) for `ttl`.
    pub async fn register(&self, record: &NodeRecord, ttl: Duration) -> Result<(), RegistryError> {
        let secs = ttl.as_secs();
        if secs == 0 {
            return Err(RegistryError::TtlTooShort);
        }
        let json = serde_json::to_string(record).map_err(|e| unreachable(&e))?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(format!("{NODE_PREFIX}{}", record.id))
            .arg(json)
            .arg("EX")
            .arg(secs)
            .ignore()
            .cmd("SADD")
            .arg(NODES_SET)
            .arg(record.id.as_str())
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| unreachable(&e))
    }

    /// Removes `id` (a draining host's first step).
    pub async fn deregister(&self, id: &NodeId) -> Result<(), RegistryError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("DEL")
            .arg(format!("{NODE_PREFIX}{id}"))
            .ignore()
            .cmd("SREM")
            .arg(NODES_SET)
            .arg(id.as_str())
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| unreachable(&e))
    }

    /// The live nodes, by id. A record that does not parse (written by another version, or
    /// by hand) is skipped and named in the second list.
    pub async fn nodes(&self) -> Result<(Vec<NodeRecord>, Vec<String>), RegistryError> {
        let mut conn = self.conn.clone();
        let raw: Vec<String> = redis::cmd("EVAL")
            .arg(LIST_SCRIPT)
            .arg(1)
            .arg(NODES_SET)
            .arg(NODE_PREFIX)
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(&e))?;
        let mut records = Vec::with_capacity(raw.len());
        let mut skipped = Vec::new();
        for text in raw {
            match serde_json::from_str::<NodeRecord>(&text) {
                Ok(r) => records.push(r),
                Err(e) => skipped.push(format!(
                    "{e}: {}",
                    text.chars().take(120).collect::<String>()
                )),
            }
        }
        records.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
        Ok((records, skipped))
    }
}

impl Registry {
    /// The outer key the fleet's gateways list first, if the operator has named one.
    pub async fn current_outer_key(&self) -> Result<Option<u8>, RegistryError> {
        let mut conn = self.conn.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(OUTER_KEY_CURRENT)
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(&e))?;
        match v {
            None => Ok(None),
            Some(t) => t.trim().parse::<u8>().map(Some).map_err(|_| {
                RegistryError::Unreachable(format!(
                    "{OUTER_KEY_CURRENT} holds {:?}, not a key id 0-255",
                    t.chars().take(20).collect::<String>()
                ))
            }),
        }
    }

    /// Names outer key `id` current for every gateway of the fleet (each switches at its next
    /// registry read; every gateway keeps opening the keys it holds).
    pub async fn set_current_outer_key(&self, id: u8) -> Result<(), RegistryError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(OUTER_KEY_CURRENT)
            .arg(id.to_string())
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| unreachable(&e))
    }
}

/// A connection to Redis at `url` that is made at first use and again after a failure, each
/// command bounded by [`REDIS_TIMEOUT`]: the registry's, and the gateway's spent-token store's.
/// The error never repeats the URL (it may carry a password).
pub fn lazy_connection(url: &str) -> Result<redis::aio::ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(REDIS_TIMEOUT))
        .set_response_timeout(Some(REDIS_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    redis::aio::ConnectionManager::new_lazy_with_config(client, config).map_err(|e| e.to_string())
}

fn unreachable(e: &dyn std::fmt::Display) -> RegistryError {
    RegistryError::Unreachable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, port: u16) -> NodeRecord {
        NodeRecord {
            id: NodeId::new(id).expect("id"),
            address: format!("tcp://10.0.0.1:{port}"),
            host: "host-a".into(),
        }
    }

    #[test]
    fn records_are_strict_json() {
        let r = record("host-a-0", 9001);
        let json = serde_json::to_string(&r).expect("json");
        assert_eq!(
            json,
            r#"{"id":"host-a-0","address":"tcp://10.0.0.1:9001","host":"host-a"}"#
        );
        assert_eq!(serde_json::from_str::<NodeRecord>(&json).expect("back"), r);
        for bad in [
            r#"{"id":"Host A","address":"tcp://x:1","host":"h"}"#,
            r#"{"id":"a","address":"tcp://x:1","host":"h","extra":1}"#,
            r#"{"id":"a","address":"tcp://x:1"}"#,
        ] {
            assert!(serde_json::from_str::<NodeRecord>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_redis_urls_and_real_ttls() {
        assert!(matches!(
            Registry::connect("http://127.0.0.1:6379"),
            Err(RegistryError::Url(_))
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let reg = Registry::connect("redis://127.0.0.1:1/").expect("lazy");
            let e = reg
                .register(&record("a", 1), Duration::from_millis(500))
                .await
                .expect_err("ttl");
            assert!(matches!(e, RegistryError::TtlTooShort), "{e}");
            // Nothing listens on port 1: an error, never an empty fleet.
            let e = reg.nodes().await.expect_err("unreachable");
            assert!(matches!(e, RegistryError::Unreachable(_)), "{e}");
        });
    }
}
