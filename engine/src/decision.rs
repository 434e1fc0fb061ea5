//! The one way a decision is made and stored, for a user's command and a worker's trade alike.
//!
//! A [`Held`] stream is what one writer holds of an aggregate's stream: the fold of its events
//! through the `eventually::Aggregate` contract (`A::apply`), and the version that fold is at.
//! [`Held::decide_and_append`] decides on that state and appends what it decided with that
//! version:
//! - decided events get ids derived from their stream, version and content
//!   ([`crate::ids::decision_id`]), so an append retried after a lost acknowledgement is
//!   recognised by the store as the same events;
//! - of two writers deciding on the same version (a command and the symbol's worker, two
//!   commands) one wins; the other reads what it missed and decides again on the new state, up
//!   to the [`Retries`] it was given, so a command is never decided on a stale state and never
//!   lost to a race it could simply retry;
//! - what was appended is folded into the state at once, so the next decision sees it.
//!
//! Backtests decide with the same domain functions and keep no store in between (see
//! `hedgehog_backtest`); everything that decides against the store comes through here.

use hedgehog_domain::Event;
use hedgehog_store::{
    ExpectedVersion, NewEvent, RecordedEvent, Snapshot, Store, StoreError, StreamId,
};
use serde::{de::DeserializeOwned, Serialize};
use uuid::Uuid;

/// Why a decision was not stored.
#[derive(Debug, thiserror::Error)]
pub enum DecisionError<E: std::error::Error + 'static> {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The aggregate refused the input, or could not fold its stream.
    #[error(transparent)]
    Aggregate(E),
    /// The stream kept moving under the decision longer than the retries allowed.
    #[error("{stream} kept changing while deciding ({tries} tries); nothing was written")]
    Conflict { stream: StreamId, tries: u32 },
}

/// How often a decision is made again after a lost race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Until it is stored: a worker deciding its trades.
    Always,
    /// At most this many times more: a command, which reports a stream that keeps moving.
    AtMost(u32),
}

/// How many times a command is decided again when the stream moved under it (a worker
/// deciding a trade at that moment), before it reports the conflict.
pub const COMMAND_RETRIES: u32 = 8;

/// A user's command: decides on `stream` as stored, appends what it decided (deciding again
/// after a lost race, up to [`COMMAND_RETRIES`] times) and gives that and the state after.
pub async fn command<A>(
    store: &Store,
    stream: StreamId,
    aggregate: A,
    decide: impl Fn(&A, &A::State) -> Result<Vec<Event>, A::Error>,
) -> Result<(Vec<Event>, A::State), DecisionError<A::Error>>
where
    A: Snapshotted,
    A::State: Default + Serialize + DeserializeOwned,
    A::Error: std::error::Error + 'static,
{
    let mut held = Held::load(store.clone(), stream, aggregate).await?;
    let events = held
        .decide_and_append(decide, None, Retries::AtMost(COMMAND_RETRIES))
        .await?;
    Ok((events, held.fold.into_state()))
}

/// An aggregate whose state can be saved as a [`Snapshot`] (its state's serde encoding).
pub trait Snapshotted: eventually::Aggregate<Id = StreamId, Event = Event> {
    /// What the snapshots hold (`trading`, ...).
    const KIND: &'static str;
    /// The version of the state's encoding: raise it whenever the state's fields change, and
    /// older snapshots are ignored. (The encoding also refuses unknown fields, and a missing
    /// one fails to decode: either way the stream is folded from its start.)
    const SCHEMA: i64;
}

/// How many events a start may fold beyond its snapshot (or from the stream's start, without
/// one) before it saves a new one.
pub const SNAPSHOT_AFTER: i64 = 1_000;
/// A stream's state as stored: the fold of its events (from its snapshot, when one is usable)
/// and the version it is at. What [`Held`] decides on, and what a reader that only looks
/// (a status, an HTTP query) gets from [`Fold::load`].
pub struct Fold<A: eventually::Aggregate<Id = StreamId, Event = Event>> {
    store: Store,
    stream: StreamId,
    state: A::State,
    version: i64,
    /// The id of the event at `version`, which a snapshot of this state names.
    last_event_id: Option<Uuid>,
    /// The version the last snapshot loaded or saved is at (0: none).
    snapshot_version: i64,
}

impl<A> Fold<A>
where
    A: Snapshotted,
    A::State: Default + Serialize + DeserializeOwned,
    A::Error: std::error::Error + 'static,
{
    fn empty(store: Store, stream: StreamId) -> Self {
        Fold {
            store,
            stream,
            state: A::State::default(),
            version: 0,
            last_event_id: None,
            snapshot_version: 0,
        }
    }

    /// The stream's state as stored: its snapshot, if a usable one is saved, and the events
    /// after it. A snapshot that cannot be used (another encoding, a stream that moved under
    /// it, a state that does not decode) is named in the log and the stream folded from its
    /// start; a load that folded many events saves a new snapshot.
    pub async fn load(store: Store, stream: StreamId) -> Result<Self, DecisionError<A::Error>> {
        let mut fold = Fold::empty(store, stream);
        fold.restore().await?;
        fold.catch_up().await?;
        if fold.version - fold.snapshot_version >= SNAPSHOT_AFTER {
            fold.save_snapshot().await?;
        }
        Ok(fold)
    }

    /// The stream's state folded from its first event, whatever snapshot is saved: what a
    /// snapshot and the events after it must equal.
    pub async fn from_events(
        store: Store,
        stream: StreamId,
    ) -> Result<Self, DecisionError<A::Error>> {
        let mut fold = Fold::empty(store, stream);
        fold.catch_up().await?;
        Ok(fold)
    }

    /// Takes the stream's snapshot as the state, if it is usable.
    async fn restore(&mut self) -> Result<(), StoreError> {
        let saved = self
            .store
            .load_snapshot(&self.stream, A::KIND, A::SCHEMA)
            .await?;
        let snapshot = match saved {
            None => return Ok(()),
            Some(Err(why)) => {
                tracing::info!(stream = %self.stream, %why, "snapshot not used; folding the stream from its start");
                return Ok(());
            }
            Some(Ok(snapshot)) => snapshot,
        };
        match serde_json::from_str(&snapshot.state) {
            Ok(state) => {
                self.state = state;
                self.version = snapshot.version;
                self.last_event_id = Some(snapshot.last_event_id);
                self.snapshot_version = snapshot.version;
            }
            Err(error) => {
                tracing::warn!(stream = %self.stream, %error, "snapshot does not decode; folding the stream from its start")
            }
        }
        Ok(())
    }

    /// Saves the state held as the stream's snapshot (nothing, for a stream with no event).
    pub async fn save_snapshot(&mut self) -> Result<(), StoreError> {
        let Some(last_event_id) = self.last_event_id else {
            return Ok(());
        };
        let state = serde_json::to_string(&self.state).map_err(|source| StoreError::Encode {
            event_type: A::KIND,
            source,
        })?;
        let snapshot = Snapshot {
            kind: A::KIND.to_owned(),
            schema: A::SCHEMA,
            version: self.version,
            last_event_id,
            state,
        };
        self.store.save_snapshot(&self.stream, &snapshot).await?;
        self.snapshot_version = self.version;
        tracing::debug!(stream = %self.stream, version = self.version, "snapshot saved");
        Ok(())
    }
    pub fn state(&self) -> &A::State {
        &self.state
    }

    /// The state, for what moves it without an event (a trade that decided nothing).
    pub fn state_mut(&mut self) -> &mut A::State {
        &mut self.state
    }

    /// The state, given up.
    pub fn into_state(self) -> A::State {
        self.state
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Folds whatever the stream holds beyond the version held.
    pub async fn catch_up(&mut self) -> Result<(), DecisionError<A::Error>> {
        loop {
            let page = self
                .store
                .read_stream(&self.stream, self.version + 1, hedgehog_store::PAGE_SIZE)
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            for e in page {
                self.version = e.stream_version;
                self.last_event_id = Some(e.event_id);
                self.apply(e.event)?;
            }
        }
    }

    /// Folds one recorded event of the stream, if it is beyond the version held (another
    /// writer's, read from the log); true when it was.
    pub fn follow(&mut self, recorded: &RecordedEvent) -> Result<bool, DecisionError<A::Error>> {
        if recorded.stream_id != self.stream || recorded.stream_version <= self.version {
            return Ok(false);
        }
        self.apply(recorded.event.clone())?;
        self.version = recorded.stream_version;
        self.last_event_id = Some(recorded.event_id);
        Ok(true)
    }

    fn apply(&mut self, event: Event) -> Result<(), DecisionError<A::Error>> {
        let state = std::mem::take(&mut self.state);
        self.state = A::apply(state, event).map_err(DecisionError::Aggregate)?;
        Ok(())
    }
}

/// One writer's hold on an aggregate's stream: see the [module](self). Derefs to the [`Fold`]
/// it decides on.
pub struct Held<A: eventually::Aggregate<Id = StreamId, Event = Event>> {
    fold: Fold<A>,
    aggregate: A,
}

impl<A: eventually::Aggregate<Id = StreamId, Event = Event>> std::ops::Deref for Held<A> {
    type Target = Fold<A>;
    fn deref(&self) -> &Fold<A> {
        &self.fold
    }
}

impl<A: eventually::Aggregate<Id = StreamId, Event = Event>> std::ops::DerefMut for Held<A> {
    fn deref_mut(&mut self) -> &mut Fold<A> {
        &mut self.fold
    }
}

impl<A> Held<A>
where
    A: Snapshotted,
    A::State: Default + Serialize + DeserializeOwned,
    A::Error: std::error::Error + 'static,
{
    /// Holds `stream` as stored ([`Fold::load`]: its snapshot and the events after it).
    pub async fn load(
        store: Store,
        stream: StreamId,
        aggregate: A,
    ) -> Result<Self, DecisionError<A::Error>> {
        Ok(Held {
            fold: Fold::load(store, stream).await?,
            aggregate,
        })
    }

    /// Holds `stream` folded from its first event ([`Fold::from_events`]).
    pub async fn fold(
        store: Store,
        stream: StreamId,
        aggregate: A,
    ) -> Result<Self, DecisionError<A::Error>> {
        Ok(Held {
            fold: Fold::from_events(store, stream).await?,
            aggregate,
        })
    }

    pub fn aggregate(&self) -> &A {
        &self.aggregate
    }

    /// The aggregate, for what it decides by and may change (a symbol's current filters).
    pub fn aggregate_mut(&mut self) -> &mut A {
        &mut self.aggregate
    }

    /// Decides on the state held and appends what was decided with the version held, deciding
    /// again after a lost race as `retries` allow; returns what was appended (empty: nothing
    /// to do). `cause`, when given, is the event that caused the decision (a trade's id).
    pub async fn decide_and_append(
        &mut self,
        decide: impl Fn(&A, &A::State) -> Result<Vec<Event>, A::Error>,
        cause: Option<Uuid>,
        retries: Retries,
    ) -> Result<Vec<Event>, DecisionError<A::Error>> {
        let mut tries = 0u32;
        loop {
            tries += 1;
            let decided =
                decide(&self.aggregate, &self.fold.state).map_err(DecisionError::Aggregate)?;
            if decided.is_empty() {
                return Ok(decided);
            }
            let batch: Vec<NewEvent> = decided
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let version = self.fold.version + 1 + i as i64;
                    let id = crate::ids::decision_id(&self.fold.stream, version, event);
                    // A command's handle records who sent it ([`Store::acting_for`]).
                    let new = NewEvent::new(event.clone())
                        .with_id(id)
                        .with_metadata(self.fold.store.acting().clone());
                    match cause {
                        Some(cause) => new.caused_by(cause, cause),
                        None => new,
                    }
                })
                .collect();
            let expected = ExpectedVersion::Exact(self.fold.version);
            let last_id = batch.last().map(|e| e.event_id);
            match self
                .fold
                .store
                .append(&self.fold.stream, expected, batch)
                .await
            {
                Ok(outcome)
                    if outcome.stream_version == self.fold.version + decided.len() as i64 =>
                {
                    for event in &decided {
                        self.fold.apply(event.clone())?;
                    }
                    self.fold.version = outcome.stream_version;
                    self.fold.last_event_id = last_id;
                    return Ok(decided);
                }
                Ok(_) => {
                    // The same decision was stored at this place already (an append retried
                    // after a lost acknowledgement, or another writer that decided exactly
                    // this): the store recognised it by its ids, and may hold more after it.
                    self.fold.catch_up().await?;
                    return Ok(decided);
                }
                Err(e) if e.is_conflict() => {
                    // Read what the winner wrote either way: the state held stays current.
                    self.fold.catch_up().await?;
                    if let Retries::AtMost(more) = retries {
                        if tries > more {
                            return Err(DecisionError::Conflict {
                                stream: self.fold.stream.clone(),
                                tries,
                            });
                        }
                    }
                    tracing::debug!(stream = %self.fold.stream, "stream moved; deciding again");
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::{AggregateError, StoringAggregate};
    use hedgehog_domain::events::StoringTopic;
    use hedgehog_domain::storing::{self, StoringCommand, StoringState};
    use hedgehog_domain::Symbol;

    fn switch(
        topic: StoringTopic,
        command: StoringCommand,
    ) -> impl Fn(&StoringAggregate, &StoringState) -> Result<Vec<Event>, AggregateError> {
        move |_, state| {
            let symbol = Symbol::parse("ADAUSDT").unwrap();
            Ok(storing::decide(state, &symbol, topic, command))
        }
    }

    #[tokio::test]
    async fn a_lost_race_writes_nothing_and_is_decided_again_on_the_winners_state() {
        use StoringCommand::{Start, Stop};
        use StoringTopic::{Orders, TradeEvents};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("d.db").display());
        let store = Store::open(&url).await.unwrap();
        let stream = StreamId::storing(&Symbol::parse("ADAUSDT").unwrap());
        let load = || Held::load(store.clone(), stream.clone(), StoringAggregate);
        let (mut first, mut second) = (load().await.unwrap(), load().await.unwrap());
        let version = || async { store.stream_version(&stream).await.unwrap() };

        let stopped = first
            .decide_and_append(switch(TradeEvents, Stop), None, Retries::AtMost(0))
            .await
            .unwrap();
        assert_eq!((stopped.len(), first.version()), (1, 1));

        // `second` still holds version 0: without a retry it reports the conflict, unwritten,
        // and holds what the winner wrote.
        let lost = second
            .decide_and_append(switch(Orders, Stop), None, Retries::AtMost(0))
            .await;
        assert!(matches!(
            lost,
            Err(DecisionError::Conflict { tries: 1, .. })
        ));
        assert_eq!(version().await, 1);
        assert!(!second.state().is_on(TradeEvents));
        assert_eq!(second.version(), 1);
        let stopped = second
            .decide_and_append(switch(Orders, Stop), None, Retries::AtMost(0))
            .await
            .unwrap();
        assert_eq!((stopped.len(), version().await), (1, 2));

        // The same decision at the same place is the same event (its id comes from its
        // content): `first` deciding exactly what `second` stored is recognised, not doubled.
        let same = first
            .decide_and_append(switch(Orders, Stop), None, Retries::AtMost(0))
            .await
            .unwrap();
        assert_eq!((same.len(), first.version(), version().await), (1, 2, 2));
        assert!(!first.state().is_on(Orders));

        // With a retry, a stale holder decides again on what the winner wrote.
        first
            .decide_and_append(
                switch(TradeEvents, Start { backfill: false }),
                None,
                Retries::AtMost(0),
            )
            .await
            .unwrap();
        let started = second
            .decide_and_append(
                switch(Orders, Start { backfill: true }),
                None,
                Retries::AtMost(1),
            )
            .await
            .unwrap();
        assert_eq!(
            (started.len(), second.version(), version().await),
            (1, 4, 4)
        );
        assert!(second.state().is_on(TradeEvents) && second.state().is_on(Orders));
        let stored = store.read_stream_to_end(&stream).await.unwrap();
        assert_eq!(
            stored[3].event_id,
            crate::ids::decision_id(&stream, 4, &stored[3].event)
        );
    }
}
