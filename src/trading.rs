//! Trading commands (start, stop, shutdown, settings) and trading status, per symbol.
//!
//! A command loads the symbol's trading aggregate from `trading-SYMBOL`, decides against it and
//! appends with the version it loaded (through `eventually`'s `Repository`), so two commands
//! racing on one symbol cannot both win: the loser writes nothing and is told to retry. A running
//! engine follows the store, so it picks the resulting events up whichever process wrote them.

use eventually::{AggregateRootBuilder, Repository};
use hedgehog_domain::exchange::{ExchangeRules, SymbolRules};
use hedgehog_domain::trading::{self, Command, TradingState};
use hedgehog_domain::{Event, Symbol, Timestamp, TradingSettings};
use rust_decimal::Decimal;

use crate::aggregate::{AggregateError, TradingAggregate, TradingInput};
use crate::store::{Store, StoreError, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum TradingError {
    #[error("unknown symbol {symbol}: it is not in the exchange info ({rules_from}); check the spelling, or pass --exchange-info FILE with a newer list")]
    UnknownSymbol { symbol: Symbol, rules_from: String },
    #[error("another command changed the trading of {0} at the same moment; nothing was written, try again")]
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
        chunks: Some(defaults.chunks),
        budget: Some(defaults.budget),
        buy_down_interval: Some(defaults.buy_down_interval),
        profit_target: Some(defaults.profit_target),
        rebuy_interval: Some(defaults.rebuy_interval),
        fee: Some(defaults.fee),
    };
    command(store, rules, Request::Settings(change), time).await?;
    Ok(true)
}

pub async fn command(
    store: &Store,
    rules: &SymbolRules,
    request: Request,
    time: Timestamp,
) -> Result<Outcome, TradingError> {
    let symbol = rules.symbol.clone();
    let aggregate = TradingAggregate {
        rules: rules.clone(),
        paper: None,
    };
    let mut repository =
        Repository::new(AggregateRootBuilder::from(aggregate.clone()), store.clone());
    let mut root = repository
        .get(StreamId::trading(&symbol))
        .await
        .map_err(repository_error)?;
    let command = match request {
        Request::Start => Command::Start {
            after_trade_id: last_trade_id(store, &symbol).await?,
        },
        Request::Stop => Command::Stop,
        Request::Shutdown => Command::Shutdown,
        Request::Settings(change) => {
            Command::UpdateSettings(change.applied_to(&root.state().settings))
        }
    };
    let input = TradingInput::Command { command, time };
    // The decision is pure: computing it here gives exactly the events `handle` records in
    // the root (which `eventually` keeps private) so that they can be reported.
    let events = aggregate.decide(root.state(), input.clone())?;
    if events.is_empty() {
        return Ok(Outcome {
            events,
            state: root.state().clone(),
        });
    }
    root.handle(input).await?;
    let state = root.state().clone();
    match repository.add(root).await {
        Ok(_) => Ok(Outcome { events, state }),
        Err(eventually::repository::Error::Store(e)) if e.is_conflict() => {
            Err(TradingError::Conflict(symbol))
        }
        Err(e) => Err(repository_error(e)),
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

/// The trading state of one symbol, and the version of its stream.
pub async fn state(store: &Store, symbol: &Symbol) -> Result<(TradingState, i64), TradingError> {
    let events = store.read_stream_to_end(&StreamId::trading(symbol)).await?;
    let version = events.last().map_or(0, |e| e.stream_version);
    let state = events
        .iter()
        .try_fold(TradingState::default(), |s, e| trading::apply(s, &e.event))
        .map_err(AggregateError::from)?;
    Ok((state, version))
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

fn repository_error(e: eventually::repository::Error<AggregateError, StoreError>) -> TradingError {
    match e {
        eventually::repository::Error::Aggregate(a) => a.into(),
        eventually::repository::Error::Store(s) => TradingError::Store(s),
    }
}
