//! The device's core, with no I/O: everything a phone, a browser or the `cloister` CLI does to
//! trust a node and talk to it, as functions of bytes and values. Sockets, files and clocks are
//! the caller's (`cloister-client` drives this over HTTP; a browser or an app can drive it over
//! its own).
//!
//! * [`nodes`] — the node directory checked node by node against the verifier ([`NodeReport`]);
//! * [`trust`] — the verifier, and the seen log checkpoint (no rollback, no fork) over a
//!   [`SeenStore`] the platform provides;
//! * [`report`] — one bundle inspected step by step (`cargo xtask verify`, the web page);
//! * [`choose`] — uniform choice of the node;
//! * [`tokens`] — Privacy Pass issuance (token type 0x0002), sans-IO;
//! * [`envelope`] — the two OHTTP/Binary HTTP layers, sans-IO;
//! * [`chat`], [`workload`] — the request bodies of the summariser and the rewriter;
//! * [`secret`] — wrappers that keep tokens and plaintext out of logs;
//! * [`url`] — where the relay and the issuer are;
//! * [`error`] — one named error per reason ([`ClientError`]).
//!
//! Builds for `wasm32-unknown-unknown` (the OS random source is the browser's there).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chat;
pub mod choose;
pub mod envelope;
pub mod error;
pub mod nodes;
pub mod report;
pub mod secret;
pub mod token_store;
pub mod tokens;
pub mod trust;
pub mod url;
pub mod workload;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use chat::{ChatInput, ChatMessage, InputError, SummarizeRequest};
pub use error::{ClientError, Layer, NodeFailure, Stage};
pub use nodes::{CheckpointInfo, NodeReport};
pub use secret::{SecretBytes, SecretString};
pub use trust::{LogKeys, MemoryStore, SeenStore, Trust};
pub use url::BaseUrl;
pub use workload::Tone;
