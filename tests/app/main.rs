//! The application through its binary: the command line, the configuration, the HTTP API and
//! dashboard, the engine end to end and under load.
//!
//! One test binary per area: each module is one former test file.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod cli;
mod cluster;
mod config;
mod dashboard;
mod http;
mod load;
mod run_end_to_end;
