//! The library behind `cargo xtask`: what its commands share.
//!
//! * [`score`] — scoring summaries against the evaluation set (`cargo xtask eval`).
//! * [`setup`] — the one set-up step every command runs first (`cargo xtask setup`).
//! * [`web`] — the browser verifier's page (`cargo xtask web`).
//!
//! The image and launch recipe is `cloister-guest-image`'s, which the end-to-end tests use
//! directly; it is re-exported here for the commands.
#![forbid(unsafe_code)]

pub mod score;
pub mod setup;
pub mod web;

pub use cloister_guest_image::{guest_http, image, launch, release, stage, way_in};
