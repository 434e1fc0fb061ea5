//! The store behind `eventually` 0.4's traits, so its `Repository`, `AggregateRoot` and
//! `Subscription` work on top of it.
//!
//! `eventually` counts stream versions and global sequence numbers in `u32`, while the store keeps
//! `i64` positions. Every conversion here is checked, never wrapped. A stream's version past
//! `u32::MAX` (4,294,967,295 events in one stream) fails with [`StoreError::U32Overflow`]. Positions
//! past it (a log that long, or one whose positions were carried over from an older store) are
//! the limit the trait forces: a read of one stream (what a `Repository` folds, by version)
//! carries the sequence number `u32::MAX` for them, which `eventually`'s repository never reads;
//! a read or subscription of `$all`, whose sequence numbers are the point, fails with
//! [`StoreError::U32Overflow`] naming the position. Hedgehog's own i64 API
//! ([`Store::read_all`], [`Store::subscribe_all`]) knows no such limit.
//! Mapping: an `eventually` version is our `stream_version` (from 1) and its sequence number is
//! our global `position` (from 1); `Select::From(n)` is inclusive, as in `eventually`'s own
//! in-memory store. `Persisted` has no room for our metadata, so appends through this view get
//! fresh UUID v7 ids, no correlation and the metadata of [`Store::acting_for`]; use
//! [`Store::append`] to choose them per event.

use eventually::store::{AppendError, EventStream, Expected, Persisted, Select};
use eventually::subscription::EventStream as SubscriberStream;
use eventually::{EventStore, EventSubscriber};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use hedgehog_domain::Event;

use super::{
    ExpectedVersion, Metadata, NewEvent, RecordedEvent, Store, StoreError, StreamId, PAGE_SIZE,
};

impl AppendError for StoreError {
    fn is_conflict_error(&self) -> bool {
        self.is_conflict()
    }
}

/// Converts an i64 counter to `eventually`'s u32, refusing instead of wrapping.
pub fn to_u32(what: &'static str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::U32Overflow { what, value })
}

/// What a [`Persisted`]'s sequence number must be.
#[derive(Debug, Clone, Copy)]
enum Sequence {
    /// The position, or an error past `u32::MAX` (`$all`'s views).
    Exact,
    /// The position, or `u32::MAX` past it (one stream's views, read by version).
    AtMostU32Max,
}

fn persisted(
    event: RecordedEvent,
    sequence: Sequence,
) -> Result<Persisted<StreamId, Event>, StoreError> {
    let version = to_u32("stream version", event.stream_version)?;
    let sequence = match sequence {
        Sequence::Exact => to_u32("global position", event.position)?,
        Sequence::AtMostU32Max => u32::try_from(event.position).unwrap_or(u32::MAX),
    };
    Ok(Persisted::from(event.stream_id, event.event)
        .version(version)
        .sequence_number(sequence))
}

impl EventStore for Store {
    type SourceId = StreamId;
    type Event = Event;
    type Error = StoreError;

    fn append(
        &mut self,
        source_id: StreamId,
        version: Expected,
        events: Vec<Event>,
    ) -> BoxFuture<'_, Result<u32, StoreError>> {
        Box::pin(async move {
            let expected = match version {
                Expected::Any => ExpectedVersion::Any,
                Expected::Exact(v) => ExpectedVersion::Exact(i64::from(v)),
            };
            let metadata = &self.acting_for;
            let events = events
                .into_iter()
                .map(|e| NewEvent::new(e).with_metadata(Metadata::clone(metadata)))
                .collect();
            let outcome = Store::append(self, &source_id, expected, events).await?;
            to_u32("stream version", outcome.stream_version)
        })
    }

    fn stream(
        &self,
        source_id: StreamId,
        select: Select,
    ) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let store = self.clone();
        Box::pin(async move {
            let mut from = match select {
                Select::All => 1,
                Select::From(v) => i64::from(v).max(1),
            };
            let pages = async_stream::try_stream! {
                loop {
                    let page = store.read_stream(&source_id, from, PAGE_SIZE).await?;
                    let done = (page.len() as i64) < PAGE_SIZE;
                    for event in page {
                        from = event.stream_version + 1;
                        yield persisted(event, Sequence::AtMostU32Max)?;
                    }
                    if done { break; }
                }
            };
            Ok(pages.boxed())
        })
    }

    fn stream_all(
        &self,
        select: Select,
    ) -> BoxFuture<'_, Result<EventStream<'_, Self>, StoreError>> {
        let store = self.clone();
        Box::pin(async move {
            let mut from = match select {
                Select::All => 1,
                Select::From(n) => i64::from(n).max(1),
            };
            // A one-off read: up to the head as of now, as `eventually` expects.
            let end = store.head_position().await?;
            let pages = async_stream::try_stream! {
                while from <= end {
                    let page = store.read_all(from, PAGE_SIZE.min(end - from + 1)).await?;
                    if page.is_empty() { break; }
                    for event in page {
                        from = event.position + 1;
                        yield persisted(event, Sequence::Exact)?;
                    }
                }
            };
            Ok(pages.boxed())
        })
    }

    fn remove(&mut self, source_id: StreamId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move { Err(StoreError::RemoveRefused(source_id)) })
    }
}

impl EventSubscriber for Store {
    type SourceId = StreamId;
    type Event = Event;
    type Error = StoreError;

    /// Events committed from now on (`eventually`'s meaning of a subscription).
    fn subscribe_all(&self) -> BoxFuture<'_, Result<SubscriberStream<'_, Self>, StoreError>> {
        Box::pin(async move {
            let head = self.head_position().await?;
            Ok(Store::subscribe_all(self, head)
                .and_then(|e| async move { persisted(e, Sequence::Exact) })
                .boxed())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u32_conversion_refuses_instead_of_wrapping() {
        assert_eq!(to_u32("global position", 4_294_967_295).unwrap(), u32::MAX);
        let err = to_u32("global position", 4_294_967_296).unwrap_err();
        assert!(matches!(
            err,
            StoreError::U32Overflow {
                value: 4_294_967_296,
                ..
            }
        ));
        assert!(err.to_string().contains("4294967296"));
        assert!(to_u32("stream version", -1).is_err());
    }
}
