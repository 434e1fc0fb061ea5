//! `hedgehog`: the imperative shell around `hedgehog-domain`: the event store, the runtime and
//! the command line. See ARCHITECTURE.md for the map.

pub mod aggregate;
pub mod binance;
pub mod exchange_info;
pub mod import;
pub mod replay_server;
pub mod store;
pub mod streamer;
pub mod streaming;

pub use hedgehog_domain as domain;
