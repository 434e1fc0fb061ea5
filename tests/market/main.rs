//! Market data in: file imports, the live trade stream and its switches, Binance's recorded
//! frames.
//!
//! One test binary per area: each module is one former test file.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod binance_recordings;
mod import;
mod streamer;
mod streaming;
