//! Cloister's device driver: the device core (`cloister-device-core`, no I/O) driven over
//! HTTP — fetch the nodes' evidence through the relay and the gateway, verify it, choose a node
//! at random, get an anonymous Privacy Pass token, and send the request encrypted twice (to the
//! node's attested key, then to the gateway's key) through the OHTTP relay. The `cloister` CLI
//! (`cloister-cli`) is its command-line face.
//!
//! * [`client`] — the whole exchange under one deadline ([`Client`], [`ClientConfig`]);
//! * [`http`] — the minimal HTTP/1.1 client;
//! * [`state`] — the seen log checkpoint in a state directory ([`FileStore`]).
//!
//! The core's modules are re-exported under their names.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
pub mod http;
pub mod state;
pub mod tls;
pub mod token_file;

pub use client::{Client, ClientConfig, InnerResponse, IssuerAccount, Timings};
pub use cloister_device_core::{
    BaseUrl, ChatInput, ChatMessage, CheckpointInfo, ClientError, InputError, Layer, LogKeys,
    MemoryStore, NodeFailure, NodeReport, SecretBytes, SecretString, SeenStore, Stage,
    SummarizeRequest, Tone, Trust, chat, choose, envelope, error, nodes, secret, token_store,
    tokens, trust, workload,
};
pub use state::FileStore;
