//! `cargo xtask run`'s request path: the way a device reaches the booted guest. The operator's
//! issuer and gateway and a third party's relay run in this process on loopback; the gateway
//! reaches the guest through vhost-device-vsock (`CONNECT <port>`); the device is the
//! `cloister-client` library, trusting the emulated root (announced), the local log and its
//! witness.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cloister_client::secret::SecretString;
use cloister_client::trust::{LogKeys, Trust};
use cloister_client::{Client, ClientConfig, InnerResponse, IssuerAccount};
use cloister_gateway::gateway::{Gateway, GatewayConfig, LogTiles};
use cloister_gateway::nodes::NodeAddress;
use cloister_gateway::redeem::AcceptedKey;
use cloister_gateway::spent::SpentStore;
use cloister_issuer::accounts::Accounts;
use cloister_issuer::{IssuerConfig, IssuerKey};
use cloister_measurement::{InsecureEmulatedRoot, Policy};
use cloister_protocol::LogProof;
use cloister_protocol::access::GATEWAY_AUTHORITY;
use cloister_protocol::access::NodeId;
use cloister_relay::RelayConfig;
use privacypass::TokenType;
use privacypass::auth::authenticate::TokenChallenge;

use crate::guest_http::GuestEndpoint;
use crate::release::ReleaseError;

/// Why the way in could not start, or the device's request failed.
#[derive(Debug, thiserror::Error)]
pub enum WayInError {
    /// A loopback listener or a scratch file failed.
    #[error("local I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The issuer's key could not be made.
    #[error("issuer key: {0}")]
    IssuerKey(#[from] cloister_issuer::IssuerKeyError),
    /// The issuer's account store failed.
    #[error("issuer accounts: {0}")]
    Accounts(#[from] cloister_issuer::accounts::AccountError),
    /// The gateway's spent-token store failed.
    #[error("spent-token store: {0}")]
    Spent(#[from] cloister_gateway::spent::StoreError),
    /// The gateway refused its configuration.
    #[error("gateway: {0}")]
    Gateway(#[from] cloister_gateway::gateway::GatewayError),
    /// The gateway could not fetch the guest's evidence.
    #[error("the gateway could not fetch the guest's evidence over vhost-device-vsock")]
    NoEvidence,
    /// A name or address of the way in is not valid.
    #[error("configuration: {0}")]
    Config(String),
    /// The local log's or witness's keys.
    #[error(transparent)]
    Release(#[from] ReleaseError),
    /// The device refused or failed.
    #[error("device: {0}")]
    Device(#[from] cloister_client::ClientError),
}

type Result<T, E = WayInError> = std::result::Result<T, E>;

/// The issuer's name in the gateway's token challenge and in the log's key record.
const ISSUER_NAME: &str = "cloister-issuer";

/// What the device needs to trust the release.
#[derive(Debug)]
pub struct Release<'a> {
    /// The log proof the operator attaches to the guest's evidence.
    pub proof: LogProof,
    /// The local log's directory (its verifier key and witness beside it).
    pub log_dir: &'a Path,
    /// The emulated root the guest's processor chains to.
    pub root: InsecureEmulatedRoot,
}

async fn listen() -> Result<(tokio::net::TcpListener, String)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?.to_string();
    Ok((l, a))
}

/// Issuer, gateway (one node, `guest-1`: the guest) and relay, served in-process on loopback,
/// and a device's client that trusts the log and its witness. Stopped on drop.
#[derive(Debug)]
pub struct WayIn {
    /// The device (shared: a soak's requests run as concurrent tasks).
    pub client: Arc<Client>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for WayIn {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts issuer, gateway (one node: the guest) and relay; sends `body` to `path` as a device
/// would; returns the node's answer.
pub async fn ask(
    guest: &GuestEndpoint,
    release: Release<'_>,
    scratch: &Path,
    path: &str,
    body: &[u8],
    deadline: Duration,
) -> Result<InnerResponse> {
    let way_in = WayIn::start(guest, release, scratch, deadline, 10).await?;
    for r in way_in.client.nodes().await? {
        match &r.result {
            Ok(_) => println!(
                "device            node {} verified: {} measurement {}, log tree of {}",
                r.id,
                r.platform.map_or("?", |p| p.as_str()),
                r.measurement.as_deref().unwrap_or("?"),
                r.checkpoint.as_ref().map_or(0, |c| c.size)
            ),
            Err(f) => println!("device            node {} refused: {f}", r.id),
        }
    }
    Ok(way_in
        .client
        .send(path, cloister_protocol::media::JSON, body)
        .await?)
}

impl WayIn {
    /// Starts the operator's side in front of `guest` and the device's client; `deadline`
    /// bounds the gateway's exchange with the node and each device operation; the device's
    /// account may be issued `tokens` tokens.
    pub async fn start(
        guest: &GuestEndpoint,
        release: Release<'_>,
        scratch: &Path,
        deadline: Duration,
        tokens: u32,
    ) -> Result<WayIn> {
        // The operator: an issuer with one account (its key published in the log), a gateway
        // in front of the guest.
        let (key_path, appended) = crate::release::logged_issuer_key(
            release.log_dir,
            ISSUER_NAME,
            |p| {
                IssuerKey::load(p)
                    .ok()
                    .map(|k| cloister_protocol::access::encode_token_key(k.spki()))
            },
            |p| {
                let k = IssuerKey::generate().map_err(|e| {
                    ReleaseError::Log(cloister_transparency::LogError::Record(e.to_string()))
                })?;
                k.save(p).map_err(|e| {
                    ReleaseError::Log(cloister_transparency::LogError::Record(e.to_string()))
                })?;
                Ok(cloister_protocol::access::encode_token_key(k.spki()))
            },
        )?;
        let issuer_key = IssuerKey::load(&key_path)?;
        let spki = cloister_protocol::access::encode_token_key(issuer_key.spki());
        let epoch_end = crate::release::logged_until(release.log_dir, ISSUER_NAME, &spki)?
            .ok_or_else(|| WayInError::Config("the issuer key is not in the log".into()))?;
        let (outer_seed, gateway_appended) =
            crate::release::logged_gateway_key(release.log_dir, GATEWAY_AUTHORITY)?;
        // The release's proof, under the checkpoint that holds both keys.
        let proof = match gateway_appended.as_ref().or(appended.as_ref()) {
            Some(w) => w.proof(release.proof.leaf_index)?,
            None => release.proof,
        };
        let accounts = Accounts::open(&scratch.join("issuer-accounts.redb"))?;
        let account = accounts.add("xtask-run", tokens)?;
        let (issuer_listener, issuer_addr) = listen().await?;
        let challenge = TokenChallenge::new(
            TokenType::Public,
            ISSUER_NAME,
            None,
            &["cloister-gateway".to_owned()],
        );
        let mut nodes = BTreeMap::new();
        nodes.insert(
            NodeId::new("guest-1").map_err(|e| WayInError::Config(e.to_string()))?,
            NodeAddress::VhostUser {
                uds: guest.uds.clone(),
                port: guest.port,
            },
        );
        let spent = scratch.join("gateway-spent.redb");
        let _ = std::fs::remove_file(&spent);
        let gateway = Gateway::new(GatewayConfig {
            nodes,
            log_proofs: vec![proof],
            log: Some(LogTiles::Directory(release.log_dir.to_path_buf())),
            challenge,
            issuer_keys: vec![AcceptedKey::logged(issuer_key.public_key(), epoch_end)],
            spent: SpentStore::open_redb(&spent)?,
            node_timeout: deadline,
            max_body: 1 << 20,
            max_in_flight: 64,
            refresh: Duration::from_secs(300),
            evidence_timeout: deadline.min(Duration::from_secs(120)),
            body_pace: cloister_http::BodyPace::default(),
            snp_crls: Vec::new(),
            registry: None,
            registry_interval: Duration::from_secs(5),
            connector: cloister_gateway::nodes::Connector::local(),
            directory_max: cloister_gateway::directory::DEFAULT_DIRECTORY_MAX,
            outer_seeds: vec![outer_seed],
        })?;
        if gateway.refresh().await != 1 {
            return Err(WayInError::NoEvidence);
        }
        let (gw_listener, gw_addr) = listen().await?;
        let (relay_listener, relay_addr) = listen().await?;
        let relay =
            RelayConfig {
                upstreams: vec![format!("http://{gw_addr}/gateway").parse().map_err(
                    |e: cloister_http::UpstreamError| WayInError::Config(e.to_string()),
                )?],
                max_body: 1 << 20,
                timeout: deadline,
                max_in_flight: 64,
                body_pace: cloister_http::BodyPace::default(),
            };
        let tasks = vec![
            tokio::spawn(async move {
                let _ = cloister_issuer::serve(
                    IssuerConfig {
                        key: issuer_key,
                        accounts: accounts.into(),
                    },
                    issuer_listener,
                )
                .await;
            }),
            tokio::spawn(async move {
                let _ = cloister_gateway::gateway::serve(gateway, gw_listener).await;
            }),
            tokio::spawn(async move {
                let _ = cloister_relay::serve(relay, relay_listener).await;
            }),
        ];
        println!(
            "way in            relay {relay_addr} -> gateway {gw_addr} -> vhost-user {}:{}; issuer {issuer_addr}",
            guest.uds.display(),
            guest.port
        );

        // The device: trusts the log and its witness, never the allow-list.
        let log_key = std::fs::read_to_string(release.log_dir.with_extension("pub"))?;
        let keys = LogKeys {
            log_key: log_key.trim().to_owned(),
            witness_keys: vec![crate::release::witness_key(release.log_dir)?],
            quorum: cloister_client::trust::Quorum::ONE,
        };
        let state = scratch.join("device-state");
        let _ = std::fs::remove_dir_all(&state);
        let trust = Trust::insecure_emulated(
            release.root,
            Policy::default(),
            Some(keys),
            Box::new(cloister_client::FileStore::new(&state)),
        )?
        // One guest on one machine: the main job's way in has no second machine to span.
        .with_min_machines(std::num::NonZeroUsize::MIN);
        let client = Client::new(ClientConfig {
            relay: format!("http://{relay_addr}").parse()?,
            issuer: Some(IssuerAccount {
                url: format!("http://{issuer_addr}").parse()?,
                account_token: SecretString::new(account.0.to_string()),
            }),
            trust,
            deadline,
            // Plain HTTP on loopback inside one process (tests/tests/hostile.rs runs the
            // servers over TLS).
            tls_roots: Default::default(),
        })?;
        Ok(WayIn {
            client: Arc::new(client),
            tasks,
        })
    }
}
