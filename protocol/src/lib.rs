//! Cloister's shared wire types. Sans-IO: bytes in, typed values (or named errors) out.
//!
//! * [`evidence`] — the evidence bundle a guest presents (report or quote, endorsements, key
//!   config, expiry, image manifest digest, optional transparency-log proof).
//! * [`access`] — the way in: paths, media types, node and issuer directories.
//! * [`node`] — the guest's resources on vsock and the OHTTP suite of both layers.
//! * [`padding`] — the bucket sizes both OHTTP layers pad their Binary HTTP messages to.
//! * [`tlog`] — the transparency log's and witnesses' resources.
//! * [`media`] — media types every server answers with.
//! * [`binding`] — the one definition of the `report_data` binding.
//! * [`guest_config`], [`weights`] — the guest's measured kernel command line.
//! * [`workload`] — the workloads' shared vocabulary: chat messages, rewrite tones, limits.
//! * [`console`] — what the guest prints on its console for the host to read (memory figures).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod access;
pub mod binding;
pub mod console;
pub mod emulated_sp;
pub mod evidence;
pub mod guest_config;
pub mod media;
pub mod node;
pub mod padding;
pub mod platform;
pub mod tlog;
pub mod weights;
mod wire;
pub mod workload;

pub use binding::{BindingError, report_data};
pub use evidence::{
    BUNDLE_VERSION, Endorsements, EvidenceBundle, LogProof, Platform, SnpCertificates,
};
pub use guest_config::{AttestMode, ConfigError, GuestConfig};
pub use weights::{VerityWeights, Weights, WeightsError};
pub use wire::BundleError;
