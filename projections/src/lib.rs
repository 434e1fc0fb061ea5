//! `hedgehog-projections`: the read models users query, built from the event log.
//!
//! - [`trade_events::TradeEvents`]: one row per stored market trade.
//! - [`orders::Orders`]: one row per order, upserted by every event about it.
//! - [`settings::TradingSettingsModel`], [`settings::StreamingSettingsModel`]: the current
//!   status and settings of each symbol.
//! - [`candles::Candles`]: OHLC candles for 1m ... 1d with Binance's kline fields.
//!
//! Each implements `eventually`'s [`Projection`](eventually::Projection) (the per-event fold)
//! and our thin [`ReadModel`] over it (a name, its tables, and how to write a batch). The
//! [`Projector`] runs them over `$all` and commits each batch's changes together with the new
//! checkpoints in one transaction: a crash at any point neither loses nor double-applies an
//! event, and several projectors (an engine and an import, say) can run at once: the checkpoint
//! is compare-and-set, and the loser of a race reloads.

pub mod candles;
mod db;
pub mod orders;
pub mod projector;
pub mod query;
pub mod settings;
mod storing;
pub mod trade_events;

use std::fmt;

use futures::future::BoxFuture;
use hedgehog_domain::Event;
use hedgehog_store::{StoreError, StreamId};
use serde::Serialize;

pub use db::{Checkpoint, Tx};
pub use projector::{follow, updates_as_stream, ProjectionStatus, Projector, Published, Updates};

/// Where an event sits: its stream and its place in the log.
///
/// It is the `SourceId` of the `eventually` view of a projection, which carries the i64 position
/// that `eventually`'s u32 sequence numbers could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub stream: StreamId,
    pub position: i64,
}

/// The market of a trade stream: the domain's.
pub use hedgehog_domain::Market;

/// A change to a read model, as subscribers receive it, after its transaction committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Update {
    /// A new or updated candle (the open one changes with every batch of trades).
    Candle(candles::Candle),
    Order(orders::OrderRow),
    TradingSettings(settings::TradingSettingsRow),
    StreamingSettings(settings::StreamingSettingsRow),
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("read-model database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the stored value {table}.{column} = {value:?} is corrupt; `hedgehog projections rebuild` rebuilds the table from the log")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        value: String,
    },
    #[error("unknown projection {0:?}: the projections are trade_events, orders, backtest_orders, trading_settings, streaming_settings and candles")]
    UnknownProjection(String),
}

/// A read model: `eventually`'s per-event fold plus what a projector needs to store it.
///
/// `apply` (and `eventually`'s `project`, which calls it) only accumulates in memory; `flush`
/// writes what accumulated inside the projector's transaction and says what changed. If that
/// transaction does not commit, the projector calls `forget`, and the next `flush` starts from
/// what is stored.
pub trait ReadModel:
    eventually::Projection<SourceId = Origin, Event = Event, Error = ProjectionError>
    + Send
    + fmt::Debug
    + 'static
{
    /// The name of its checkpoint and of `hedgehog projections rebuild NAME`.
    fn name(&self) -> &'static str;

    /// The tables it owns: emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];

    /// Folds one event into the pending changes (by reference: the projector shares each
    /// event between all the read models).
    fn apply(&mut self, origin: &Origin, event: &Event);

    /// Writes the pending changes in `tx` and returns them as updates for subscribers.
    fn flush<'a>(
        &'a mut self,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<Vec<Update>, ProjectionError>>;

    /// Drops pending changes and anything cached from the database.
    fn forget(&mut self);
}

/// Implements `eventually::Projection` for a [`ReadModel`] by way of its `apply`.
macro_rules! eventually_projection {
    ($model:ty) => {
        impl eventually::Projection for $model {
            type SourceId = $crate::Origin;
            type Event = hedgehog_domain::Event;
            type Error = $crate::ProjectionError;

            fn project<'a>(
                &'a mut self,
                event: eventually::store::Persisted<$crate::Origin, hedgehog_domain::Event>,
            ) -> futures::future::BoxFuture<'a, Result<(), $crate::ProjectionError>> {
                $crate::ReadModel::apply(self, event.source_id(), &event);
                Box::pin(futures::future::ready(Ok(())))
            }
        }
    };
}
pub(crate) use eventually_projection;

/// Every read model, in the order a projector applies them.
pub fn all() -> Vec<Box<dyn ReadModel>> {
    vec![
        Box::new(trade_events::TradeEvents::new()),
        Box::new(orders::Orders::new()),
        Box::new(orders::Orders::backtests()),
        Box::new(settings::TradingSettingsModel::new()),
        Box::new(settings::StreamingSettingsModel::new()),
        Box::new(candles::Candles::new()),
    ]
}

/// The names of [`all`], in order.
pub const NAMES: &[&str] = &[
    "trade_events",
    "orders",
    "backtest_orders",
    "trading_settings",
    "streaming_settings",
    "candles",
];

/// The read models named (all of them for an empty list), or the first unknown name.
pub fn named(names: &[String]) -> Result<Vec<Box<dyn ReadModel>>, ProjectionError> {
    if let Some(unknown) = names.iter().find(|n| !NAMES.contains(&n.as_str())) {
        return Err(ProjectionError::UnknownProjection(unknown.clone()));
    }
    Ok(all()
        .into_iter()
        .filter(|m| names.is_empty() || names.iter().any(|n| n == m.name()))
        .collect())
}
