//! Trading commands (start, stop, shutdown, settings) and trading status, per symbol.
//!
//! A command loads the symbol's trading aggregate from `trading-SYMBOL`, decides against it and
//! appends with the version it loaded, the way the symbol's worker does ([`crate::decision`]):
//! of two writers racing on one symbol one wins, and a command that lost decides again on what
//! the winner wrote (up to [`decision::COMMAND_RETRIES`] times, then it reports the conflict, having
//! written nothing). A running engine follows the store, so it picks the resulting events up
//! whichever process wrote them.

use hedgehog_domain::exchange::{ExchangeRules, SymbolRules};
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::trading::{self, Command, TradingState};
use hedgehog_domain::{Event, Symbol, Timestamp, TradingSettings};
use rust_decimal::Decimal;

use crate::aggregate::{AggregateError, TradingAggregate, TradingInput};
use crate::decision::{self, DecisionError, Fold};
use hedgehog_store::{Store, StoreError, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum TradingError {
    #[error("unknown symbol {symbol}: it is not in the exchange info ({rules_from}); check the spelling, or pass --exchange-info FILE with a newer list")]
    UnknownSymbol { symbol: Symbol, rules_from: String },
    #[error("other writers kept changing the trading of {0} at the same moment; nothing was written, try again")]
    Conflict(Symbol),
    #[error(transparent)]
    Refused(#[from] trading::Refusal),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Aggregate(AggregateError),
}

impl From<AggregateError> for TradingError {
    fn from(e: AggregateError) -> Self {
        match e {
            AggregateError::Refused(r) => TradingError::Refused(r),
            other => TradingError::Aggregate(other),
        }
    }
}

/// A change to some of a symbol's settings; what is `None` keeps its current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    pub strategy: Option<String>,
    pub chunks: Option<u32>,
    pub budget: Option<Decimal>,
    pub buy_down_interval: Option<Decimal>,
    pub profit_target: Option<Decimal>,
    pub rebuy_interval: Option<Decimal>,
    pub fee: Option<Decimal>,
}

impl SettingsChange {
    pub fn applied_to(&self, current: &TradingSettings) -> TradingSettings {
        TradingSettings {
            strategy: self
                .strategy
                .clone()
                .unwrap_or_else(|| current.strategy.clone()),
            chunks: self.chunks.unwrap_or(current.chunks),
            budget: self.budget.unwrap_or(current.budget),
            buy_down_interval: self.buy_down_interval.unwrap_or(current.buy_down_interval),
            profit_target: self.profit_target.unwrap_or(current.profit_target),
            rebuy_interval: self.rebuy_interval.unwrap_or(current.rebuy_interval),
            fee: self.fee.unwrap_or(current.fee),
        }
    }
}

/// What a user asks of a symbol's trading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Start,
    Stop,
    Shutdown,
    Settings(SettingsChange),
}

/// What a command did: the events it appended (none: it was so already) and the state after.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub events: Vec<Event>,
    pub state: TradingState,
}

/// Looks up a symbol's filters, refusing a symbol the exchange does not list.
pub fn rules_for<'a>(
    rules: &'a ExchangeRules,
    rules_from: &str,
    symbol: &Symbol,
) -> Result<&'a SymbolRules, TradingError> {
    rules
        .get(symbol)
        .ok_or_else(|| TradingError::UnknownSymbol {
            symbol: symbol.clone(),
            rules_from: rules_from.to_owned(),
        })
}

/// Carries out `request` on `symbol`'s trading; `time` is when the user issued it.
/// Records `defaults` (the configuration's `[strategy]`) as the symbol's settings when it has
/// never had settings recorded, so that a symbol trades with the configured strategy from its
/// first start on; a symbol whose settings were ever set keeps them. True when it recorded.
pub async fn apply_default_settings(
    store: &Store,
    rules: &SymbolRules,
    strategies: &Strategies,
    defaults: &TradingSettings,
    time: Timestamp,
) -> Result<bool, TradingError> {
    if *defaults == TradingSettings::default() {
        return Ok(false);
    }
    let recorded = store
        .read_stream_to_end(&StreamId::trading(&rules.symbol))
        .await?;
    if recorded
        .iter()
        .any(|e| matches!(e.event, Event::SettingsUpdated(_)))
    {
        return Ok(false);
    }
    let change = SettingsChange {
        strategy: Some(defaults.strategy.clone()),
        chunks: Some(defaults.chunks),
        budget: Some(defaults.budget),
        buy_down_interval: Some(defaults.buy_down_interval),
        profit_target: Some(defaults.profit_target),
        rebuy_interval: Some(defaults.rebuy_interval),
        fee: Some(defaults.fee),
    };
    command_with(store, rules, strategies, Request::Settings(change), time).await?;
    Ok(true)
}

pub async fn command(
    store: &Store,
    rules: &SymbolRules,
    request: Request,
    time: Timestamp,
) -> Result<Outcome, TradingError> {
    command_with(store, rules, &Strategies::default(), request, time).await
}

/// As [`command`], in a program that knows `strategies` (settings naming another are refused).
pub async fn command_with(
    store: &Store,
    rules: &SymbolRules,
    strategies: &Strategies,
    request: Request,
    time: Timestamp,
) -> Result<Outcome, TradingError> {
    let symbol = rules.symbol.clone();
    let aggregate = TradingAggregate {
        rules: rules.clone(),
        strategies: strategies.clone(),
        paper: None,
    };
    let after_trade_id = match request {
        Request::Start => last_trade_id(store, &symbol).await?,
        _ => None,
    };
    // Decided on the state as stored: a lost race decides again on the state after it (a
    // settings change applies to the settings then in force, a stop cancels what is open then).
    let decide = |aggregate: &TradingAggregate, state: &TradingState| {
        let command = match &request {
            Request::Start => Command::Start { after_trade_id },
            Request::Stop => Command::Stop,
            Request::Shutdown => Command::Shutdown,
            Request::Settings(change) => {
                Command::UpdateSettings(change.applied_to(&state.settings))
            }
        };
        Ok(aggregate.decide(state, TradingInput::Command { command, time })?)
    };
    let stream = StreamId::trading(&symbol);
    let (events, state) = decision::command(store, stream, aggregate, decide)
        .await
        .map_err(|e| decision_error(&symbol, e))?;
    Ok(Outcome { events, state })
}

fn decision_error(symbol: &Symbol, e: DecisionError<AggregateError>) -> TradingError {
    match e {
        DecisionError::Store(e) => TradingError::Store(e),
        DecisionError::Aggregate(e) => e.into(),
        DecisionError::Conflict { .. } => TradingError::Conflict(symbol.clone()),
    }
}

/// The trade id of the last trade stored for `symbol`, if any.
pub async fn last_trade_id(store: &Store, symbol: &Symbol) -> Result<Option<u64>, StoreError> {
    let stream = StreamId::trades(symbol);
    let version = store.stream_version(&stream).await?;
    if version == 0 {
        return Ok(None);
    }
    Ok(store
        .read_stream(&stream, version, 1)
        .await?
        .first()
        .and_then(|e| e.event.trade_id()))
}

/// The trading state of one symbol, and the version of its stream: its snapshot and the
/// events after it, so that asking costs the same after a year of trading as after a day.
pub async fn state(store: &Store, symbol: &Symbol) -> Result<(TradingState, i64), TradingError> {
    let fold = Fold::<TradingAggregate>::load(store.clone(), StreamId::trading(symbol)).await;
    let fold = fold.map_err(|e| decision_error(symbol, e))?;
    let version = fold.version();
    Ok((fold.into_state(), version))
}

/// Every symbol with a trading stream, with its state.
pub async fn status(store: &Store) -> Result<Vec<(Symbol, TradingState)>, TradingError> {
    let mut out = Vec::new();
    for symbol in store.symbols_with("trading").await? {
        let (state, _) = state(store, &symbol).await?;
        out.push((symbol, state));
    }
    Ok(out)
}
