//! `eventually::Aggregate` adapters over the pure decisions in `hedgehog-domain`.
//!
//! The domain decides with plain functions (`apply`, `decide`); this module only wires them into
//! `eventually`'s contract so that its `Repository` can load, decide and append with an expected
//! version. No decision lives here.

use futures::future::BoxFuture;
use hedgehog_domain::streaming::{self, ForeignEvent, StreamingCommand, StreamingState};
use hedgehog_domain::{Event, Symbol};

use crate::store::StreamId;

/// Why an aggregate could not decide or rebuild.
#[derive(Debug, thiserror::Error)]
pub enum AggregateError {
    #[error("stream {0} is not a streaming stream (expected streaming-SYMBOL)")]
    WrongStream(StreamId),
    #[error(transparent)]
    Foreign(#[from] ForeignEvent),
}

/// Extracts the symbol from a stream named `{prefix}-{SYMBOL}`.
fn symbol_of(id: &StreamId, prefix: &str) -> Option<Symbol> {
    let rest = id.as_str().strip_prefix(prefix)?.strip_prefix('-')?;
    Symbol::parse(rest).ok()
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
            let symbol = symbol_of(id, "streaming")
                .ok_or_else(|| AggregateError::WrongStream(id.clone()))?;
            let events = streaming::decide(state, &symbol, command);
            Ok((!events.is_empty()).then_some(events))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_come_from_stream_names() {
        let id = StreamId::new("streaming-BTCUSDT").unwrap();
        assert_eq!(symbol_of(&id, "streaming").unwrap().as_str(), "BTCUSDT");
        assert!(symbol_of(&id, "trading").is_none());
        assert!(symbol_of(&StreamId::new("streaming-").unwrap(), "streaming").is_none());
    }
}
