//! `hedgehog-domain`: Hedgehog's pure core.
//!
//! Everything here is a plain function over values: no I/O, no clock, no randomness, no async
//! runtime. Time and ids enter as data, which is what lets a backtest replay give the same events
//! as live trading, byte for byte. The imperative shell (the `hedgehog` crate) feeds it events
//! read from the store and appends the events it decides.

pub mod backtest;
pub mod candle;
pub mod events;
pub mod exchange;
pub mod formula;
pub mod paper_exchange;
pub mod settings;
pub mod storing;
pub mod strategy;
pub mod streaming;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trading;
pub mod types;

pub use events::Event;
pub use settings::TradingSettings;
pub use types::{Market, Side, Symbol, Timestamp, TradeKind, TradingStatus};
