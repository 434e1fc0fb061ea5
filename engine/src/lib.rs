//! `hedgehog-engine`: where decisions run. Commands (`trading`, `streaming`, `storing`) and the
//! trading worker of each symbol (`worker`) decide through the domain's pure functions and append
//! what they decide to the store the one way there is (`decision`); `supervisor` runs the streamer, the projector and one worker per
//! traded symbol, restarting what fails.

pub mod actor;
pub mod aggregate;
pub mod cluster;
pub mod decision;
pub mod ids;
pub mod readiness;
pub mod storing;
pub mod streaming;
pub mod supervisor;
pub mod trading;
pub mod worker;

pub use supervisor::{run, EngineError, EngineOptions, LiveOptions};
