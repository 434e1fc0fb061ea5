//! `eventually::Aggregate` adapters over the pure decisions in `hedgehog-domain`.
//!
//! The domain decides with plain functions (`apply`, `decide`); this module only wires them into
//! `eventually`'s contract, the edge every writer goes through: [`crate::decision::Held`] folds
//! a stream with `Aggregate::apply`, and `eventually`'s own `Repository` works on these
//! aggregates too (`Aggregate::handle`). No decision lives here.

use futures::future::BoxFuture;
use hedgehog_domain::events::StoringTopic;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::SymbolRules;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::storing::{self, StoringCommand, StoringState};
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::streaming::{self, ForeignEvent, StreamingCommand, StreamingState};
use hedgehog_domain::trading::{self, ApplyError, Refusal, TradingState};
use hedgehog_domain::{Event, Symbol, Timestamp};

use hedgehog_store::StreamId;

/// Why an aggregate could not decide or rebuild.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("stream {0} is not a streaming or storing stream (expected streaming-SYMBOL or storing-SYMBOL)")]
    WrongStream(StreamId),
    #[error(transparent)]
    Foreign(#[from] ForeignEvent),
    #[error(transparent)]
    ForeignStoring(#[from] storing::ForeignEvent),
    #[error("stream {stream} is not the trading stream of {symbol} (trading-{symbol})")]
    WrongTradingStream { stream: StreamId, symbol: Symbol },
    #[error("the trading stream cannot be rebuilt: {0}")]
    Trading(#[from] ApplyError),
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// The streaming switch of one symbol, stored in `streaming-SYMBOL`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamingAggregate;

impl eventually::Aggregate for StreamingAggregate {
    type Id = StreamId;
    type State = StreamingState;
    type Event = Event;
    type Command = StreamingCommand;
    type Error = AggregateError;

    fn apply(state: StreamingState, event: Event) -> Result<StreamingState, AggregateError> {
        Ok(streaming::apply(state, &event)?)
    }

    fn handle<'a, 's: 'a>(
        &'a self,
        id: &'s StreamId,
        state: &'s StreamingState,
        command: StreamingCommand,
    ) -> BoxFuture<'a, Result<Option<Vec<Event>>, AggregateError>> {
        Box::pin(async move {
            let symbol = id
                .symbol_of("streaming")
                .ok_or_else(|| AggregateError::WrongStream(id.clone()))?;
            let events = streaming::decide(state, &symbol, command);
            Ok((!events.is_empty()).then_some(events))
        })
    }
}

impl crate::decision::Snapshotted for StreamingAggregate {
    const KIND: &'static str = "streaming";
    const SCHEMA: i64 = 1;
}

/// The storing switches of one symbol, stored in `storing-SYMBOL`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoringAggregate;

impl eventually::Aggregate for StoringAggregate {
    type Id = StreamId;
    type State = StoringState;
    type Event = Event;
    type Command = (StoringTopic, StoringCommand);
    type Error = AggregateError;

    fn apply(state: StoringState, event: Event) -> Result<StoringState, AggregateError> {
        Ok(storing::apply(state, &event)?)
    }

    fn handle<'a, 's: 'a>(
        &'a self,
        id: &'s StreamId,
        state: &'s StoringState,
        (topic, command): (StoringTopic, StoringCommand),
    ) -> BoxFuture<'a, Result<Option<Vec<Event>>, AggregateError>> {
        Box::pin(async move {
            let symbol = id
                .symbol_of("storing")
                .ok_or_else(|| AggregateError::WrongStream(id.clone()))?;
            let events = storing::decide(state, &symbol, topic, command);
            Ok((!events.is_empty()).then_some(events))
        })
    }
}

impl crate::decision::Snapshotted for StoringAggregate {
    const KIND: &'static str = "storing";
    const SCHEMA: i64 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_come_from_stream_names() {
        let id = StreamId::new("streaming-BTCUSDT").unwrap();
        assert_eq!(id.symbol_of("streaming").unwrap().as_str(), "BTCUSDT");
        assert!(id.symbol_of("trading").is_none());
        assert!(StreamId::new("streaming-")
            .unwrap()
            .symbol_of("streaming")
            .is_none());
    }
}

/// What goes into a symbol's trading aggregate.
#[derive(Debug, Clone)]
pub enum TradingInput {
    /// A user's command, issued at `time`.
    Command {
        command: trading::Command,
        time: Timestamp,
    },
    /// A market trade of the symbol.
    Trade(TradeReceived),
    /// What a live exchange reported about one of the symbol's orders.
    Report(trading::Report),
}

/// The trading of one symbol, stored in `trading-SYMBOL`, with what it decides by: the
/// symbol's filters, the strategies its settings may name and, when trading on paper, the
/// paper exchange that fills its orders.
#[derive(Debug, Clone)]
pub struct TradingAggregate {
    pub rules: SymbolRules,
    /// What this program can run; the symbol's settings name one of them.
    pub strategies: Strategies,
    /// `Some` for paper trading: trades fill the orders. `None`: a real exchange reports fills.
    pub paper: Option<PaperExchange>,
}

impl TradingAggregate {
    /// The events `input` decides on `state`; empty when it changes nothing.
    pub fn decide(&self, state: &TradingState, input: TradingInput) -> Result<Vec<Event>, Refusal> {
        Ok(match input {
            TradingInput::Command { command, time } => {
                trading::decide_command(state, &self.rules, &self.strategies, command, time)?
            }
            TradingInput::Trade(trade) => self.decide_trade(state, &trade)?,
            TradingInput::Report(report) => self.decide_report(state, &report),
        })
    }
}

impl TradingAggregate {
    /// What one market trade decides, by the strategy the symbol's settings name: the hot path
    /// of live trading, by reference. Refused when this program lacks that strategy (settings
    /// another program recorded): nothing is decided rather than something else.
    pub fn decide_trade(
        &self,
        state: &TradingState,
        trade: &TradeReceived,
    ) -> Result<Vec<Event>, Refusal> {
        let strategy = self.strategies.get(&state.settings.strategy)?;
        Ok(trading::decide_trade(
            &**strategy,
            state,
            &self.rules,
            self.paper.as_ref(),
            trade,
        ))
    }

    /// What a live exchange's report about one of the symbol's orders decides.
    pub fn decide_report(&self, state: &TradingState, report: &trading::Report) -> Vec<Event> {
        trading::decide_report(state, &self.rules, report)
    }
}

/// A trader's snapshot holds more than the fold of its stream: the positions' order and the
/// last trade stepped on after the trades that decided nothing (`pass_trade`), so a restart
/// resumes after them instead of re-reading the market since the last decision.
impl crate::decision::Snapshotted for TradingAggregate {
    const KIND: &'static str = "trading";
    const SCHEMA: i64 = 1;
}

impl eventually::Aggregate for TradingAggregate {
    type Id = StreamId;
    type State = TradingState;
    type Event = Event;
    type Command = TradingInput;
    type Error = AggregateError;

    fn apply(state: TradingState, event: Event) -> Result<TradingState, AggregateError> {
        Ok(trading::apply(state, &event)?)
    }

    fn handle<'a, 's: 'a>(
        &'a self,
        id: &'s StreamId,
        state: &'s TradingState,
        input: TradingInput,
    ) -> BoxFuture<'a, Result<Option<Vec<Event>>, AggregateError>> {
        Box::pin(async move {
            if *id != StreamId::trading(&self.rules.symbol) {
                return Err(AggregateError::WrongTradingStream {
                    stream: id.clone(),
                    symbol: self.rules.symbol.clone(),
                });
            }
            let events = self.decide(state, input)?;
            Ok((!events.is_empty()).then_some(events))
        })
    }
}
