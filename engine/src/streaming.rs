//! The streaming switch of each symbol: commands, and a streamer that follows the switches.
//!
//! `start` / `stop` append `StreamingStarted` / `StreamingStopped` to `streaming-SYMBOL`, decided
//! and appended the one way there is ([`crate::decision`]): two racing commands cannot both win.
//! [`follow`] is the book's autostart done by the store: it streams every symbol whose last
//! streaming event is "started", and re-plans whenever such an event is appended, by this
//! process or any other, because it follows the log rather than in-memory flags.

use std::collections::BTreeSet;
use std::sync::Arc;

use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::streaming::{self, StreamingCommand, StreamingState};
use hedgehog_domain::{Event, Symbol};
use tokio::sync::watch;

use crate::aggregate::{AggregateError, StreamingAggregate};
use crate::decision::{self, DecisionError, Fold};
use hedgehog_ingest::streamer::{self, StreamerOptions, StreamerStats};
use hedgehog_store::{Store, StoreError, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("unknown symbol {symbol}: it is not in the exchange info ({rules_from}); check the spelling, or pass --exchange-info FILE with a newer list")]
    UnknownSymbol { symbol: Symbol, rules_from: String },
    #[error("other writers kept changing the streaming of {0} at the same moment; nothing was written, try again")]
    Conflict(Symbol),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Aggregate(#[from] AggregateError),
}

/// Whether a command changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Changed,
    AlreadySo,
}

impl Outcome {
    /// What a switch that appended `events` did.
    pub fn of(events: &[Event]) -> Outcome {
        if events.is_empty() {
            Outcome::AlreadySo
        } else {
            Outcome::Changed
        }
    }
}

/// Starts or stops the streaming of `symbol`.
pub async fn command(
    store: &Store,
    rules: &ExchangeRules,
    rules_from: &str,
    symbol: &Symbol,
    command: StreamingCommand,
) -> Result<Outcome, StreamingError> {
    if rules.get(symbol).is_none() {
        return Err(StreamingError::UnknownSymbol {
            symbol: symbol.clone(),
            rules_from: rules_from.to_owned(),
        });
    }
    let decide = |_: &StreamingAggregate, state: &StreamingState| {
        Ok(streaming::decide(state, symbol, command))
    };
    let stream = StreamId::streaming(symbol);
    let (events, _) = decision::command(store, stream, StreamingAggregate, decide)
        .await
        .map_err(|e| decision_error(symbol, e))?;
    Ok(Outcome::of(&events))
}

fn decision_error(symbol: &Symbol, e: DecisionError<AggregateError>) -> StreamingError {
    match e {
        DecisionError::Store(e) => StreamingError::Store(e),
        DecisionError::Aggregate(e) => StreamingError::Aggregate(e),
        DecisionError::Conflict { .. } => StreamingError::Conflict(symbol.clone()),
    }
}

/// Whether `symbol`'s trades are streamed.
pub async fn is_on(store: &Store, symbol: &Symbol) -> Result<bool, StreamingError> {
    let fold = Fold::<StreamingAggregate>::load(store.clone(), StreamId::streaming(symbol)).await;
    Ok(fold
        .map_err(|e| decision_error(symbol, e))?
        .state()
        .streaming)
}

/// Every symbol with a streaming stream, and whether it is on.
pub async fn status(store: &Store) -> Result<Vec<(Symbol, bool)>, StreamingError> {
    let mut out = Vec::new();
    for symbol in store.symbols_with("streaming").await? {
        let on = is_on(store, &symbol).await?;
        out.push((symbol, on));
    }
    Ok(out)
}

/// Streams every symbol whose streaming is on and, in an engine, that its node owns (`owned`,
/// see [`crate::cluster`]; `None`: every symbol, for `hedgehog stream`), re-planning on every switch and every change of hands, until
/// `shutdown`. `source` says where from and how (its symbols are replaced by those streamed).
pub async fn follow(
    store: Store,
    source: StreamerOptions,
    stats: Arc<StreamerStats>,
    mut owned: Option<watch::Receiver<BTreeSet<Symbol>>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StreamingError> {
    // What is streamed now: the symbols, and the streamer's stop switch and task.
    let mut streaming: Option<Streaming> = None;
    loop {
        if *shutdown.borrow() {
            return stop(streaming).await;
        }
        // The switches as they are now, with where each stream stands: a switch appended after
        // this changes a version here.
        let switches = store.stream_heads("streaming-").await?;
        let ours = owned.as_mut().map(|o| o.borrow_and_update().clone());
        let symbols: BTreeSet<Symbol> = status(&store)
            .await?
            .into_iter()
            .filter_map(|(s, on)| (on && ours.as_ref().is_none_or(|o| o.contains(&s))).then_some(s))
            .collect();
        // A re-plan that streams the same symbols keeps the connection: reconnecting would
        // lose what the exchange sends meanwhile (a switch of another symbol, or one read
        // between the heads and the statuses above, must not cost this stream trades).
        let unchanged = match &streaming {
            Some(s) => s.symbols == symbols,
            None => symbols.is_empty(),
        };
        if !unchanged {
            stop(streaming.take()).await?;
            if symbols.is_empty() && ours.as_ref().is_some_and(BTreeSet::is_empty) {
                tracing::debug!("this node owns no symbol to stream");
            } else {
                tracing::info!(
                    ?symbols,
                    "streaming the symbols switched on that this node owns"
                );
            }
            if !symbols.is_empty() {
                let (stop, stopped) = watch::channel(false);
                let options = StreamerOptions {
                    symbols: symbols.iter().cloned().collect(),
                    ..source.clone()
                };
                let task = tokio::spawn(streamer::run(
                    store.clone(),
                    options,
                    Arc::clone(&stats),
                    stopped,
                ));
                streaming = Some(Streaming {
                    symbols,
                    stop,
                    task,
                });
            }
        }
        // Wait for a switch appended after what was read, or for the end.
        let mut watch = store.watch_streams("streaming-").await?;
        let quit = loop {
            tokio::select! {
                _ = shutdown.changed() => break true,
                changed = owned_changed(&mut owned) => {
                    if changed.is_err() {
                        break true;
                    }
                    if owned.as_ref().map(|o| o.borrow().clone()) != ours {
                        break false;
                    }
                }
                _ = watch.changed() => {
                    if store.stream_heads("streaming-").await? != switches {
                        break false;
                    }
                }
            }
        };
        if quit {
            return stop(streaming).await;
        }
    }
}

/// A streamer running for `symbols`.
struct Streaming {
    symbols: BTreeSet<Symbol>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// Stops a running streamer and waits for it: its error, if it failed.
async fn stop(streaming: Option<Streaming>) -> Result<(), StreamingError> {
    let Some(s) = streaming else { return Ok(()) };
    let _ = s.stop.send(true);
    // Cancelled: the runtime is shutting down, and so is this.
    if let Some(streamed) = hedgehog_runtime::rejoin(s.task.await) {
        streamed?;
    }
    Ok(())
}

/// The next change of what the node owns; never, without a node.
async fn owned_changed(
    owned: &mut Option<watch::Receiver<BTreeSet<Symbol>>>,
) -> Result<(), watch::error::RecvError> {
    match owned {
        Some(owned) => owned.changed().await,
        None => std::future::pending().await,
    }
}
