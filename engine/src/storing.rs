//! The data warehouse's switches (the book's collector): `storing start|stop TOPIC SYMBOL`
//! record `StoringStarted` / `StoringStopped` in `storing-SYMBOL`, decided and appended the one
//! way there is ([`crate::decision`]). The read models follow them from the log (see
//! `hedgehog_projections::storing`), so every process, a running engine and `run`'s start-up
//! honour them without being told.

use hedgehog_domain::events::StoringTopic;
use hedgehog_domain::storing::{self, StoringCommand, StoringState};
use hedgehog_domain::Symbol;

use crate::aggregate::{AggregateError, StoringAggregate};
use crate::decision::{self, DecisionError};
use crate::streaming::Outcome;
use hedgehog_store::{Store, StoreError, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum StoringError {
    #[error("other writers kept changing the storing of {0} at the same moment; nothing was written, try again")]
    Conflict(Symbol),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
}

/// Switches `topic` of `symbol` on (with or without a backfill) or off.
pub async fn command(
    store: &Store,
    symbol: &Symbol,
    topic: StoringTopic,
    command: StoringCommand,
) -> Result<Outcome, StoringError> {
    let decide = |_: &StoringAggregate, state: &StoringState| {
        Ok(storing::decide(state, symbol, topic, command))
    };
    let stream = StreamId::storing(symbol);
    let (events, _) = decision::command(store, stream, StoringAggregate, decide)
        .await
        .map_err(|e| decision_error(symbol, e))?;
    Ok(Outcome::of(&events))
}

fn decision_error(symbol: &Symbol, e: DecisionError<AggregateError>) -> StoringError {
    match e {
        DecisionError::Store(e) => StoringError::Store(e),
        DecisionError::Aggregate(e) => StoringError::Aggregate(e),
        DecisionError::Conflict { .. } => StoringError::Conflict(symbol.clone()),
    }
}

/// Every symbol that is streamed, traded or switched, with the state of each topic.
pub async fn status(store: &Store) -> Result<Vec<(Symbol, StoringState)>, StoringError> {
    let mut symbols = std::collections::BTreeSet::new();
    for prefix in ["streaming", "trading", "storing"] {
        symbols.extend(store.symbols_with(prefix).await?);
    }
    let mut out = Vec::new();
    for symbol in symbols {
        let mut state = StoringState::default();
        for e in store
            .read_stream_to_end(&StreamId::storing(&symbol))
            .await?
        {
            state =
                hedgehog_domain::storing::apply(state, &e.event).map_err(AggregateError::from)?;
        }
        out.push((symbol, state));
    }
    Ok(out)
}
