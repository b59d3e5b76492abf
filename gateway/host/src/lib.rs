//! `cloister-host`, the host agent: one per machine that runs Cloister's guests. It checks
//! that the machine can run the platform asked for ([`preflight`]), supervises its guests
//! ([`guests`]), puts each guest's port on the network behind mutual TLS ([`forward`]), and
//! keeps the fleet's registry told which of its nodes are up ([`agent`]).
//!
//! The agent is the operator's: devices trust none of it. It never holds a key of the inner
//! layer and never sees a request's content; what it could do — stop a guest, point the
//! registry elsewhere, answer 503 — denies service, which the device notices.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod forward;
pub mod guests;
pub mod preflight;
