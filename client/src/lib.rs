//! Cloister's device side.
#![forbid(unsafe_code)]
