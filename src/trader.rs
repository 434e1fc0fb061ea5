//! The trading worker of one symbol: feeds the symbol's trades to its trading aggregate and
//! appends what it decides.
//!
//! It follows the store, not in-memory flags: it reads `$all` and keeps two streams, the
//! symbol's market trades (`trades-SYMBOL`) and its trading stream (`trading-SYMBOL`), whose
//! events (a `trading stop` from another process, say) it applies as they commit.
//!
//! Invariants:
//! - Its state is always the fold of `trading-SYMBOL` up to `version`, and every append names
//!   that version, so a command racing with a decision makes one of them retry, never both win.
//!   On a conflict it reads what it missed and decides the same trade again.
//! - A trade is decided once: every event it causes carries its id (see the domain's trading
//!   module), so after a crash or restart the worker resumes at the first trade above the
//!   highest id recorded, and a re-delivered trade decides nothing.
//! - Decided events get ids derived from their stream, version and content: a retried append
//!   of the same decision is recognised by the store as the same events.

use futures::StreamExt;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::trading::{self, TradingState};
use hedgehog_domain::{Event, Symbol, TradingStatus};
use tokio::sync::watch;
use uuid::Uuid;

use crate::aggregate::{AggregateError, TradingAggregate};
use crate::store::{ExpectedVersion, NewEvent, RecordedEvent, Store, StoreError, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum TraderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("trading of {symbol}: {source}")]
    Aggregate {
        symbol: Symbol,
        #[source]
        source: Box<AggregateError>,
    },
}

/// Namespace of the ids of decided events (UUID v5 over stream, version and payload).
const DECISION_NAMESPACE: Uuid = Uuid::from_u128(0x6865_6467_6568_6f67_2d64_6563_6964_6531);

/// One symbol's trading worker.
pub struct Trader {
    store: Store,
    aggregate: TradingAggregate,
    trading: StreamId,
    trades: StreamId,
    state: TradingState,
    version: i64,
}

impl Trader {
    /// Loads the symbol's trading state from the store.
    pub async fn load(store: Store, aggregate: TradingAggregate) -> Result<Self, TraderError> {
        let symbol = aggregate.rules.symbol.clone();
        let mut trader = Trader {
            trading: StreamId::trading(&symbol),
            trades: StreamId::trades(&symbol),
            store,
            aggregate,
            state: TradingState::default(),
            version: 0,
        };
        trader.catch_up().await?;
        Ok(trader)
    }

    pub fn state(&self) -> &TradingState {
        &self.state
    }

    pub fn symbol(&self) -> &Symbol {
        &self.aggregate.rules.symbol
    }

    /// Trades and commands until `shutdown` turns true (or the log ends).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), TraderError> {
        // Read the head before the stream, so nothing committed in between is missed.
        let head = self.store.head_position().await?;
        self.catch_up().await?;
        let after = if self.state.status == TradingStatus::Off {
            head
        } else {
            match self
                .store
                .first_trade_after(&self.trades, self.state.trade_cursor)
                .await?
            {
                Some(position) => (position - 1).min(head),
                None => head,
            }
        };
        tracing::info!(symbol = %self.symbol(), status = %self.state.status, after, "trader started");
        let mut log = self.store.subscribe_all(after);
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => None,
                next = log.next() => next,
            };
            if *shutdown.borrow() {
                return Ok(());
            }
            let Some(recorded) = next else {
                return Ok(());
            };
            self.handle(&recorded?).await?;
        }
    }

    /// Takes one event of the global log.
    pub async fn handle(&mut self, recorded: &RecordedEvent) -> Result<(), TraderError> {
        if recorded.stream_id == self.trading {
            if recorded.stream_version > self.version {
                self.apply(&recorded.event)?;
                self.version = recorded.stream_version;
            }
            return Ok(());
        }
        if recorded.stream_id != self.trades {
            return Ok(());
        }
        if let Event::TradeReceived(trade) = &recorded.event {
            self.trade(trade, recorded.event_id).await?;
        }
        Ok(())
    }

    /// Decides one trade and appends the decision, retrying on a lost race.
    async fn trade(&mut self, trade: &TradeReceived, cause: Uuid) -> Result<(), TraderError> {
        loop {
            let decided = self.aggregate.decide_trade(&self.state, trade);
            if decided.is_empty() {
                return Ok(());
            }
            let batch = decided
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let version = self.version + 1 + i as i64;
                    NewEvent::new(event.clone())
                        .with_id(decision_id(&self.trading, version, event))
                        .caused_by(cause, cause)
                })
                .collect();
            match self
                .store
                .append(&self.trading, ExpectedVersion::Exact(self.version), batch)
                .await
            {
                Ok(outcome) => {
                    for event in &decided {
                        self.apply(event)?;
                    }
                    self.version = outcome.stream_version;
                    tracing::debug!(symbol = %self.symbol(), trade = trade.trade_id, events = decided.len(), "decided");
                    return Ok(());
                }
                Err(e) if e.is_conflict() => {
                    tracing::debug!(symbol = %self.symbol(), "trading stream moved; deciding again");
                    self.catch_up().await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Applies whatever the trading stream holds beyond `version`.
    async fn catch_up(&mut self) -> Result<(), TraderError> {
        loop {
            let page = self
                .store
                .read_stream(&self.trading, self.version + 1, crate::store::PAGE_SIZE)
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            for e in &page {
                self.apply(&e.event)?;
                self.version = e.stream_version;
            }
        }
    }

    fn apply(&mut self, event: &Event) -> Result<(), TraderError> {
        let state = std::mem::take(&mut self.state);
        self.state = trading::apply(state, event).map_err(|e| self.error(e.into()))?;
        Ok(())
    }

    fn error(&self, source: AggregateError) -> TraderError {
        TraderError::Aggregate {
            symbol: self.symbol().clone(),
            source: Box::new(source),
        }
    }
}

/// The id of a decided event: the same decision at the same place always gets the same id.
pub(crate) fn decision_id(stream: &StreamId, version: i64, event: &Event) -> Uuid {
    let payload = event.encode().unwrap_or_default();
    Uuid::new_v5(
        &DECISION_NAMESPACE,
        format!("{stream}:{version}:{payload}").as_bytes(),
    )
}
