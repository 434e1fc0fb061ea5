//! The live end of the log, read once and shared by every `/api/events` subscriber.
//!
//! Without it each subscriber would poll the store on every append: two hundred dashboards
//! would mean two hundred queries per batch of trades, and as many JSON encodings of each event.
//! Here one task follows `$all` from where the server started and publishes each batch, already
//! encoded, on a bounded broadcast channel (while nobody subscribes it reads nothing, and only
//! follows the head this process knows). A
//! subscriber first catches up from the store on its own, then takes the shared batches,
//! skipping what it has already sent.
//!
//! Invariant: a subscriber sees every event after its starting position exactly once, in
//! position order. It subscribes to the channel *before* catching up, and the task publishes
//! only what it has read back from the store, so every event the catch-up could not yet see
//! arrives on the channel. A subscriber too slow for the channel (it lagged) catches up from
//! the store again from its last position: it never loses an event, and memory stays bounded.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::StreamExt;
use hedgehog_domain::Symbol;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use hedgehog_store::{RecordedEvent, Store, StoreError};

/// Batches the channel holds for a subscriber that is behind.
const BUFFERED_BATCHES: usize = 32;
/// Events per catch-up read.
const CATCH_UP_PAGE: i64 = 1000;
/// How often a tail nobody listens to looks for a first listener: a subscriber's events after
/// its catch-up wait at most this long more.
const IDLE_CHECK: Duration = Duration::from_millis(50);

/// One stored event as `/api/events` sends it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub position: i64,
    pub symbol: Symbol,
    pub event_type: &'static str,
    /// The JSON the client receives.
    pub data: Arc<str>,
}

impl Frame {
    pub fn of(e: &RecordedEvent) -> Frame {
        let data = json!({
            "position": e.position,
            "stream": e.stream_id.as_str(),
            "version": e.stream_version,
            "recorded_at": e.recorded_at,
            "event": e.event,
        });
        Frame {
            position: e.position,
            symbol: e.event.symbol().clone(),
            event_type: e.event.event_type(),
            data: data.to_string().into(),
        }
    }
}

/// A handle on the shared tail; cheap to clone.
#[derive(Clone)]
pub struct Tail {
    store: Store,
    published: broadcast::Sender<Arc<[Frame]>>,
}

impl Tail {
    /// Starts following the log from its current head until `stopping` turns true.
    pub async fn start(store: Store, stopping: watch::Receiver<bool>) -> Result<Tail, StoreError> {
        Tail::with_buffer(store, stopping, BUFFERED_BATCHES).await
    }

    /// As [`Tail::start`], holding `batches` batches for slow subscribers.
    pub async fn with_buffer(
        store: Store,
        mut stopping: watch::Receiver<bool>,
        batches: usize,
    ) -> Result<Tail, StoreError> {
        let head = store.head_position().await?;
        let (published, _) = broadcast::channel(batches);
        let tail = Tail {
            store: store.clone(),
            published: published.clone(),
        };
        tokio::spawn(async move {
            let mut last = head;
            'follow: loop {
                if published.receiver_count() == 0 {
                    // Nobody listening: nothing is read. A subscriber that comes catches up
                    // from the store to at least the head known now, so the tail may start
                    // again from there (the head is read before the listeners are counted).
                    let known = store.known_head();
                    if published.receiver_count() == 0 {
                        last = last.max(known);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(IDLE_CHECK) => {}
                        _ = stopping.wait_for(|stop| *stop) => break 'follow,
                    }
                    continue 'follow;
                }
                let mut batches = store.subscribe_all_batches(last);
                loop {
                    let next = tokio::select! {
                        next = batches.next() => next,
                        _ = stopping.wait_for(|stop| *stop) => break 'follow,
                    };
                    match next {
                        Some(Ok(batch)) => {
                            if let Some(e) = batch.last() {
                                last = e.position;
                            }
                            // Nobody listening any more: back to following the head.
                            if published.receiver_count() == 0 {
                                continue 'follow;
                            }
                            let _ = published.send(batch.iter().map(Frame::of).collect());
                        }
                        Some(Err(e)) => {
                            tracing::error!(
                                "the log's live tail failed; following again in 1 s: {e}"
                            );
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue 'follow;
                        }
                        None => break 'follow,
                    }
                }
            }
        });
        Ok(tail)
    }

    /// Every event after `after`, in order, then every event appended later.
    pub fn follow(&self, after: i64) -> BoxStream<'static, Result<Frame, StoreError>> {
        let store = self.store.clone();
        let published = self.published.clone();
        Box::pin(async_stream::try_stream! {
            let mut last = after;
            'catch_up: loop {
                let mut live = published.subscribe();
                loop {
                    let page = store.read_all(last + 1, CATCH_UP_PAGE).await?;
                    let Some(end) = page.last().map(|e| e.position) else { break };
                    for e in &page {
                        yield Frame::of(e);
                    }
                    last = end;
                }
                loop {
                    match live.recv().await {
                        Ok(batch) => {
                            for frame in batch.iter() {
                                if frame.position > last {
                                    last = frame.position;
                                    yield frame.clone();
                                }
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                        Err(broadcast::error::RecvError::Closed) => break 'catch_up,
                    }
                }
            }
        })
    }
}
