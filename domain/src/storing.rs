//! The data warehouse's switches: whether a symbol's rows of a topic (`trade_events`, `orders`)
//! are stored in the read models. Events are always stored; a switch only decides what the
//! read models materialise, from the moment it changes (or, with a backfill, from the start).
//!
//! The state is a fold of the symbol's `storing-SYMBOL` stream. A topic never switched is on:
//! a symbol that is streamed or traded has both topics stored unless told otherwise.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::events::{Event, StoringStarted, StoringStopped, StoringTopic};
use crate::types::Symbol;

/// What the storing stream of one symbol says now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoringState {
    /// Topics switched at least once, and whether they are on; the others are on.
    pub switched: BTreeMap<StoringTopic, bool>,
}

impl StoringState {
    pub fn is_on(&self, topic: StoringTopic) -> bool {
        self.switched.get(&topic).copied().unwrap_or(true)
    }
}

/// A user's wish about a topic of a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoringCommand {
    /// Store the topic's rows from now on; with `backfill`, the earlier ones too.
    Start {
        backfill: bool,
    },
    Stop,
}

/// An event that does not belong in a storing stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {0} does not belong in a storing stream")]
pub struct ForeignEvent(pub &'static str);

/// Folds one event into the state.
pub fn apply(mut state: StoringState, event: &Event) -> Result<StoringState, ForeignEvent> {
    match event {
        Event::StoringStarted(e) => state.switched.insert(e.topic, true),
        Event::StoringStopped(e) => state.switched.insert(e.topic, false),
        other => return Err(ForeignEvent(other.event_type())),
    };
    Ok(state)
}

/// Decides what a command records; empty when it changes nothing. Starting a topic that is on
/// records nothing, even with a backfill: a topic that was never off has every row already.
pub fn decide(
    state: &StoringState,
    symbol: &Symbol,
    topic: StoringTopic,
    command: StoringCommand,
) -> Vec<Event> {
    match (command, state.is_on(topic)) {
        (StoringCommand::Start { backfill }, false) => vec![StoringStarted {
            symbol: symbol.clone(),
            topic,
            backfill,
        }
        .into()],
        (StoringCommand::Stop, true) => vec![StoringStopped {
            symbol: symbol.clone(),
            topic,
        }
        .into()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_start_on_and_switch_once() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let state = StoringState::default();
        assert!(state.is_on(StoringTopic::TradeEvents) && state.is_on(StoringTopic::Orders));
        let start = StoringCommand::Start { backfill: true };
        assert!(decide(&state, &sym, StoringTopic::Orders, start).is_empty());
        let stop = decide(&state, &sym, StoringTopic::Orders, StoringCommand::Stop);
        let state = stop.iter().try_fold(state, apply).unwrap();
        assert!(!state.is_on(StoringTopic::Orders));
        assert!(state.is_on(StoringTopic::TradeEvents), "topics are apart");
        assert!(decide(&state, &sym, StoringTopic::Orders, StoringCommand::Stop).is_empty());
        let events = decide(&state, &sym, StoringTopic::Orders, start);
        assert!(matches!(&events[..], [Event::StoringStarted(e)] if e.backfill));
        assert!("TRADE_EVENTS".parse::<StoringTopic>().unwrap() == StoringTopic::TradeEvents);
        assert!("candles".parse::<StoringTopic>().is_err());
    }
}
