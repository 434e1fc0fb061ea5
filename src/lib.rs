//! `hedgehog`: the imperative shell around `hedgehog-domain`: the event store, the runtime and
//! the command line. See ARCHITECTURE.md for the map.

pub mod actor;
pub mod aggregate;
pub mod backoff;
pub mod backtest;
pub mod binance;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod exchange_info;
pub mod exchange_server;
pub mod http;
pub mod ids;
pub mod import;
pub mod live;
pub mod replay_server;
pub mod sequencer;
pub use hedgehog_projections as projections;
pub use hedgehog_store as store;
pub mod storing;
pub mod streamer;
pub mod streaming;
pub mod tail;
pub mod time;
pub mod trader;
pub mod trading;

pub use hedgehog_domain as domain;

/// What a spawned task returned, as if it had run inline: a panic in it unwinds on here (a bug
/// stays a bug, with its own message); `None` when the runtime cancelled it while shutting down
/// (where `JoinError::into_panic` would itself panic).
pub(crate) fn rejoin<T>(joined: Result<T, tokio::task::JoinError>) -> Option<T> {
    match joined {
        Ok(value) => Some(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}
