//! The data warehouse's switches (the book's collector): `storing start|stop TOPIC SYMBOL`
//! record `StoringStarted` / `StoringStopped` in `storing-SYMBOL` through `eventually`'s
//! `Repository`, with an expected version. The read models follow them from the log (see
//! `hedgehog_projections::storing`), so every process, a running engine and `run`'s start-up
//! honour them without being told.

use eventually::{AggregateRootBuilder, Repository};
use hedgehog_domain::events::StoringTopic;
use hedgehog_domain::storing::{StoringCommand, StoringState};
use hedgehog_domain::Symbol;

use crate::aggregate::{AggregateError, StoringAggregate};
use crate::store::{Store, StoreError, StreamId};
use crate::streaming::Outcome;

#[derive(Debug, thiserror::Error)]
pub enum StoringError {
    #[error("another command changed the storing of {0} at the same moment; nothing was written, try again")]
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
    let mut repository =
        Repository::new(AggregateRootBuilder::from(StoringAggregate), store.clone());
    let mut root = repository
        .get(StreamId::storing(symbol))
        .await
        .map_err(repository_error)?;
    let before = root.state().is_on(topic);
    root.handle((topic, command)).await?;
    if root.state().is_on(topic) == before {
        return Ok(Outcome::AlreadySo);
    }
    match repository.add(root).await {
        Ok(_) => Ok(Outcome::Changed),
        Err(eventually::repository::Error::Store(e)) if e.is_conflict() => {
            Err(StoringError::Conflict(symbol.clone()))
        }
        Err(e) => Err(repository_error(e)),
    }
}

fn repository_error(e: eventually::repository::Error<AggregateError, StoreError>) -> StoringError {
    match e {
        eventually::repository::Error::Aggregate(a) => StoringError::Aggregate(a),
        eventually::repository::Error::Store(s) => StoringError::Store(s),
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
