//! Cloister's device side: fetch the nodes' evidence through the relay and the gateway, verify
//! it, choose a node at random, get an anonymous Privacy Pass token, and send the request
//! encrypted twice (to the node's attested key, then to the gateway's key) through the OHTTP
//! relay. The `cloister` binary is the command-line face of [`Client`].
//!
//! * [`client`] — the whole exchange under one deadline ([`Client`], [`ClientConfig`]);
//! * [`nodes`] — the directory verified node by node ([`NodeReport`]);
//! * [`trust`] — the verifier and the seen log checkpoint (no rollback, no fork);
//! * [`choose`] — uniform choice of the node;
//! * [`tokens`] — Privacy Pass issuance (token type 0x0002);
//! * [`envelope`] — the two OHTTP/Binary HTTP layers, sans-IO;
//! * [`http`] — the minimal HTTP/1.1 client;
//! * [`chat`], [`workload`] — the request bodies of the summariser and the rewriter;
//! * [`secret`] — wrappers that keep tokens and plaintext out of logs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chat;
pub mod choose;
pub mod client;
pub mod envelope;
pub mod error;
pub mod http;
pub mod nodes;
pub mod secret;
pub mod tokens;
pub mod trust;
pub mod workload;

#[cfg(test)]
mod testkit;

pub use chat::{ChatInput, ChatMessage, InputError, SummarizeRequest};
pub use client::{Client, ClientConfig, InnerResponse, IssuerAccount, Timings};
pub use error::{ClientError, Layer, NodeFailure, Stage};
pub use http::BaseUrl;
pub use nodes::{CheckpointInfo, NodeReport};
pub use secret::{SecretBytes, SecretString};
pub use trust::{LogKeys, Trust};
pub use workload::Tone;
