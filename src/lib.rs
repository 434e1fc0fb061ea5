//! `hedgehog`: the application. The command line (`src/cli`, the `hedgehog` binary) and its one
//! configuration surface (`config`) over the crates that do the work; see ARCHITECTURE.md for
//! the map.

pub mod config;
