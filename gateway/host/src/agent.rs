//! The agent: its guests supervised, each guest's TLS port served, each ready guest registered
//! in the fleet's registry and kept there by a heartbeat, and a drain on request.
//!
//! The drain, in order: every node leaves the registry (gateways drop it at their next
//! registry read); the ports keep serving for `drain_grace`, so that requests from gateways
//! that have not read the registry yet still land; the ports close; requests in flight finish
//! (up to `drain_limit`); the guests stop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use cloister_protocol::access::NodeId;
use cloister_registry::{NodeRecord, Registry};
use tokio::sync::watch;

use crate::forward::{InFlight, serve_guest};
use crate::guests::{GuestSpec, supervise};

/// The agent's settings.
pub struct AgentConfig {
    /// The host's name: its nodes are `NAME-0`, `NAME-1`, … in the directory.
    pub name: String,
    /// The name or address gateways dial (its TLS certificate must carry it).
    pub advertise: String,
    /// The address the guests' ports listen on.
    pub listen_ip: IpAddr,
    /// The first guest's port (the others follow); 0: any free ports.
    pub first_port: u16,
    /// Mutual TLS: this host's certificate, and the CA of the gateways it admits.
    pub tls: tokio_rustls::TlsAcceptor,
    /// The fleet's registry.
    pub registry: Registry,
    /// A registration's time to live (the heartbeat renews it at a third of it).
    pub ttl: Duration,
    /// How long the ports keep serving after the nodes left the registry.
    pub drain_grace: Duration,
    /// How long requests in flight may take to finish once the ports are closed.
    pub drain_limit: Duration,
    /// The guests.
    pub guests: Vec<GuestSpec>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("name", &self.name)
            .field("advertise", &self.advertise)
            .field("guests", &self.guests.len())
            .finish_non_exhaustive()
    }
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The host name cannot prefix node ids.
    #[error("host name {0:?}: node ids NAME-N must be 1-32 of a-z, 0-9, -")]
    Name(String),
    /// A guest's port could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No guest to run.
    #[error("no guests to run")]
    NoGuests,
}

/// A node the agent serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// Its id.
    pub id: NodeId,
    /// Its address (`tcp://ADVERTISE:PORT`).
    pub address: String,
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    served: Vec<Served>,
    stop_ports: watch::Sender<bool>,
    stop_guests: watch::Sender<bool>,
    stop_heartbeats: watch::Sender<bool>,
    tasks: tokio::task::JoinSet<()>,
    heartbeats: tokio::task::JoinSet<()>,
    in_flight: Arc<InFlight>,
    registry: Registry,
    drain_grace: Duration,
    drain_limit: Duration,
}

impl Agent {
    /// Binds every guest's port and starts the guests, the ports and the heartbeats.
    pub async fn start(config: AgentConfig) -> Result<Agent, AgentError> {
        if config.guests.is_empty() {
            return Err(AgentError::NoGuests);
        }
        let last = format!("{}-{}", config.name, config.guests.len() - 1);
        if NodeId::new(&last).is_err() || config.name.is_empty() {
            return Err(AgentError::Name(config.name));
        }
        let (stop_ports, ports_stop) = watch::channel(false);
        let (stop_guests, guests_stop) = watch::channel(false);
        let (stop_heartbeats, heartbeats_stop) = watch::channel(false);
        let in_flight = Arc::new(InFlight::default());
        let mut tasks = tokio::task::JoinSet::new();
        let mut heartbeats = tokio::task::JoinSet::new();
        let mut served = Vec::new();
        for (i, spec) in config.guests.into_iter().enumerate() {
            let port = if config.first_port == 0 {
                0
            } else {
                config.first_port.saturating_add(i as u16)
            };
            let addr = SocketAddr::new(config.listen_ip, port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| AgentError::Bind { addr, source })?;
            let port = listener
                .local_addr()
                .map_err(|source| AgentError::Bind { addr, source })?
                .port();
            let id = NodeId::new(&format!("{}-{i}", config.name))
                .map_err(|_| AgentError::Name(config.name.clone()))?;
            let host = if config.advertise.contains(':') {
                format!("[{}]", config.advertise)
            } else {
                config.advertise.clone()
            };
            let address = format!("tcp://{host}:{port}");
            let (endpoint_tx, endpoint_rx) = watch::channel(None);
            tasks.spawn(supervise(
                id.to_string(),
                spec,
                endpoint_tx,
                guests_stop.clone(),
            ));
            tasks.spawn(serve_guest(
                listener,
                config.tls.clone(),
                endpoint_rx.clone(),
                Arc::clone(&in_flight),
                ports_stop.clone(),
            ));
            let record = NodeRecord {
                id: id.clone(),
                address: address.clone(),
                host: config.name.clone(),
            };
            heartbeats.spawn(heartbeat(
                config.registry.clone(),
                record,
                config.ttl,
                endpoint_rx,
                heartbeats_stop.clone(),
            ));
            served.push(Served { id, address });
        }
        Ok(Agent {
            served,
            stop_ports,
            stop_guests,
            stop_heartbeats,
            tasks,
            heartbeats,
            in_flight,
            registry: config.registry,
            drain_grace: config.drain_grace,
            drain_limit: config.drain_limit,
        })
    }

    /// The nodes it serves.
    pub fn served(&self) -> &[Served] {
        &self.served
    }

    /// Drains (see the module's text) and stops; the connections still open when the limit
    /// passed.
    pub async fn drain(mut self) -> usize {
        self.stop_heartbeats.send_replace(true);
        while self.heartbeats.join_next().await.is_some() {}
        for s in &self.served {
            if let Err(why) = self.registry.deregister(&s.id).await {
                tracing::warn!(node = %s.id, %why, "could not leave the registry; it expires");
            }
        }
        tracing::info!(
            grace_ms = self.drain_grace.as_millis() as u64,
            "draining: nodes deregistered"
        );
        tokio::time::sleep(self.drain_grace).await;
        self.stop_ports.send_replace(true);
        let left = self.in_flight.settle(self.drain_limit).await;
        self.stop_guests.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
        tracing::info!(left, "drained");
        left
    }
}

/// Keeps `record` registered while its guest is up: at once when it comes up, then at a third
/// of the TTL; removed at once when it goes down.
async fn heartbeat(
    registry: Registry,
    record: NodeRecord,
    ttl: Duration,
    mut endpoint: watch::Receiver<Option<cloister_gateway::nodes::NodeAddress>>,
    mut stop: watch::Receiver<bool>,
) {
    let period = (ttl / 3).max(Duration::from_millis(300));
    let mut registered = false;
    loop {
        let up = endpoint.borrow_and_update().is_some();
        let result = if up {
            registry.register(&record, ttl).await.map(|()| true)
        } else if registered {
            registry.deregister(&record.id).await.map(|()| false)
        } else {
            Ok(false)
        };
        match result {
            Ok(now) => {
                if now != registered {
                    tracing::info!(node = %record.id, registered = now, "registry");
                }
                registered = now;
            }
            Err(why) => tracing::warn!(node = %record.id, %why, "heartbeat failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            changed = endpoint.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
