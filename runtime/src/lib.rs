//! `hedgehog-runtime`: what every crate with effects shares, so that none reaches sideways into
//! another for it: the wall clock and times as people write them (`time`), the reconnect wait
//! (`backoff`) and joining spawned tasks (`rejoin`).
//!
//! Nothing here decides anything; the domain never sees this crate.

pub mod backoff;
pub mod latency;
pub mod time;

/// What a spawned task returned, as if it had run inline: a panic in it unwinds on here (a bug
/// stays a bug, with its own message); `None` when the runtime cancelled it while shutting down
/// (where `JoinError::into_panic` would itself panic).
pub fn rejoin<T>(joined: Result<T, tokio::task::JoinError>) -> Option<T> {
    match joined {
        Ok(value) => Some(value),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => None,
    }
}
