//! The event store and what reads it: the conformance suite on both backends, crashes,
//! the read models and their storing switches, the shared tail of the log.
//!
//! One test binary per area: each module is one former test file.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod crash;
mod migrations;
mod projections;
mod store_conformance;
mod storing;
mod tail;
