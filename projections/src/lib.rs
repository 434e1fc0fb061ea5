//! `hedgehog-projections`: the read models users query (`trade_events`, `orders`, settings and
//! OHLC candles), built from the event log by checkpointed subscriptions.
//!
//! This crate is the home of the projections; they arrive with the Projections issue. Until then
//! it only names the read models the migrations will create, so the workspace layout is final.

/// The read models this crate will maintain, in the order a projector applies them.
pub const READ_MODELS: &[&str] = &[
    "trade_events",
    "orders",
    "trading_settings",
    "streaming_settings",
    "candles",
];
