//! Whether a symbol's trades are streamed: the smallest aggregate, decided from its events.
//!
//! The state is a fold of the symbol's `streaming-SYMBOL` stream; a command is decided against it.
//! Starting what is started (or stopping what is stopped) decides nothing, so a repeated command
//! leaves the log unchanged and says so.

use crate::events::{Event, StreamingStarted, StreamingStopped};
use crate::types::Symbol;
use serde::{Deserialize, Serialize};

/// What the streaming stream of one symbol says now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingState {
    pub streaming: bool,
}

/// A user's wish about a symbol's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingCommand {
    Start,
    Stop,
}

/// An event that does not belong in a streaming stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event {0} does not belong in a streaming stream")]
pub struct ForeignEvent(pub &'static str);

/// Folds one event into the state.
pub fn apply(_state: StreamingState, event: &Event) -> Result<StreamingState, ForeignEvent> {
    match event {
        Event::StreamingStarted(_) => Ok(StreamingState { streaming: true }),
        Event::StreamingStopped(_) => Ok(StreamingState { streaming: false }),
        other => Err(ForeignEvent(other.event_type())),
    }
}

/// Decides the events a command produces; empty when it changes nothing.
pub fn decide(state: &StreamingState, symbol: &Symbol, command: StreamingCommand) -> Vec<Event> {
    match (command, state.streaming) {
        (StreamingCommand::Start, false) => vec![StreamingStarted {
            symbol: symbol.clone(),
        }
        .into()],
        (StreamingCommand::Stop, true) => vec![StreamingStopped {
            symbol: symbol.clone(),
        }
        .into()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_then_start_again_decides_once() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let state = StreamingState::default();
        let events = decide(&state, &sym, StreamingCommand::Start);
        assert_eq!(events.len(), 1);
        let state = events.iter().try_fold(state, apply).unwrap();
        assert!(state.streaming);
        assert!(decide(&state, &sym, StreamingCommand::Start).is_empty());
        let events = decide(&state, &sym, StreamingCommand::Stop);
        assert!(matches!(events[..], [Event::StreamingStopped(_)]));
        assert!(!events.iter().try_fold(state, apply).unwrap().streaming);
    }

    #[test]
    fn foreign_events_are_refused() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let ev: Event = crate::events::TradingStarted {
            symbol: sym,
            after_trade_id: None,
        }
        .into();
        assert_eq!(
            apply(StreamingState::default(), &ev).unwrap_err(),
            ForeignEvent("TradingStarted")
        );
    }
}
