//! The projector: runs read models over `$all` from their checkpoints.
//!
//! One reader feeds every read model (each event is decoded once), and each batch of the log is
//! one transaction holding every model's changes and every advanced checkpoint. A checkpoint
//! moves by compare-and-set on (position, generation): if another projector got there first, or
//! a rebuild reset it, the transaction rolls back, the models forget what they cached, and the
//! projector resumes from what is stored. That is what makes it safe to run one in the engine
//! and one in an import at the same time, and to rebuild under a running engine.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use hedgehog_store::{Database, Store, StreamEvent};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::db::{self, Checkpoint, Tx};
use crate::{Origin, ProjectionError, ReadModel, Update};

/// How many committed batches a slow subscriber may fall behind before it is told it lagged.
const UPDATES_CAPACITY: usize = 1_024;

struct Slot {
    model: Box<dyn ReadModel>,
    /// As last read or committed; `None` until read.
    checkpoint: Option<Checkpoint>,
}

/// Runs read models over the log. See the module docs.
pub struct Projector {
    store: Store,
    db: Database,
    slots: Vec<Slot>,
    updates: broadcast::Sender<Arc<Published>>,
}

/// The read-model changes of one projector transaction, as subscribers receive them after it
/// committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The log position the batch ended at: every change it holds came from an event at or
    /// before it, and every row changed by a later event has a greater `position`. A subscriber
    /// that saw this batch whole can resume after it with [`crate::query::changed_after`].
    pub position: i64,
    pub updates: Vec<Update>,
    /// Another process (an import, a CLI command, another engine) projected the log up to
    /// `position` first, so this projector has no updates for it: a subscriber should re-read
    /// the rows changed after the last batch it saw.
    pub elsewhere: bool,
}

/// A subscription to read-model updates; see [`Projector::updates`].
pub type Updates = broadcast::Receiver<Arc<Published>>;

/// One projection's place, for `hedgehog projections status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectionStatus {
    pub name: &'static str,
    /// The last log position applied.
    pub position: i64,
    /// The log's head when asked.
    pub head: i64,
    /// Events not applied yet.
    pub behind: i64,
    /// How many times it was rebuilt.
    pub generation: i64,
    /// When it last advanced (ms since the epoch, the projector's clock; 0: never).
    pub updated_at: i64,
}

/// What happened to one batch.
enum Batch {
    Committed,
    /// Another projector (or a rebuild) moved a checkpoint first: nothing was written.
    Lost,
}

/// A receiver of [`Published`] batches as an async stream of their updates (see
/// [`Projector::update_stream`]). `Err(missed)` says the subscriber missed updates (`missed`
/// batches, or 0 when another process projected them) and should re-read what it shows.
pub fn updates_as_stream(
    receiver: Updates,
) -> impl futures::Stream<Item = Result<Update, u64>> + Send + 'static {
    futures::stream::unfold(receiver, |mut rx| async move {
        let items: Vec<Result<Update, u64>> = match rx.recv().await {
            Ok(batch) if batch.elsewhere => vec![Err(0)],
            Ok(batch) => batch.updates.iter().cloned().map(Ok).collect(),
            Err(broadcast::error::RecvError::Lagged(missed)) => vec![Err(missed)],
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((futures::stream::iter(items), rx))
    })
    .flatten()
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// How long a live projector, once caught up, lets the log grow before it reads on: the read
/// models and `/api/updates` lag the log by at most this much more.
pub const LIVE_BATCHING: std::time::Duration = std::time::Duration::from_millis(20);

impl Projector {
    /// A projector for every read model.
    pub fn new(store: Store) -> Self {
        Self::with(store, crate::all())
    }

    /// A projector for the given read models.
    pub fn with(store: Store, models: Vec<Box<dyn ReadModel>>) -> Self {
        let (updates, _) = broadcast::channel(UPDATES_CAPACITY);
        Projector {
            db: store.database(),
            store,
            slots: models
                .into_iter()
                .map(|model| Slot {
                    model,
                    checkpoint: None,
                })
                .collect(),
            updates,
        }
    }

    /// [`Projector::updates`] as an async stream of single updates. A subscriber that fell too far
    /// behind gets one `Err(missed)` with the number of batches it missed, then the stream goes
    /// on; it should re-query what it shows.
    pub fn update_stream(
        &self,
    ) -> impl futures::Stream<Item = Result<Update, u64>> + Send + 'static {
        updates_as_stream(self.updates.subscribe())
    }

    /// Publishes to `updates` instead of a channel of its own: a projector restarted by a
    /// supervisor keeps its subscribers.
    pub fn publishing_to(mut self, updates: broadcast::Sender<Arc<Published>>) -> Self {
        self.updates = updates;
        self
    }

    /// A channel for [`Projector::publishing_to`].
    pub fn channel() -> broadcast::Sender<Arc<Published>> {
        broadcast::channel(UPDATES_CAPACITY).0
    }

    /// Every batch of changes this projector commits from now on, in commit order. A receiver
    /// that falls more than 1,024 batches behind gets `RecvError::Lagged` and should re-query,
    /// or resume with [`crate::query::changed_after`] from the last batch it saw.
    pub fn updates(&self) -> Updates {
        self.updates.subscribe()
    }

    /// Projects everything appended up to now, then returns the position reached.
    pub async fn catch_up(&mut self) -> Result<i64, ProjectionError> {
        self.catch_up_with(|_, _| {}).await
    }

    /// [`Projector::catch_up`], reporting (position reached, target) after every batch.
    pub async fn catch_up_with(
        &mut self,
        mut progress: impl FnMut(i64, i64) + Send,
    ) -> Result<i64, ProjectionError> {
        let target = self.store.head_position().await?;
        self.project(Some(target), std::future::pending(), &mut progress)
            .await?;
        Ok(target)
    }

    /// Projects the log and then follows it until `shutdown` completes.
    pub async fn run(&mut self, shutdown: impl Future<Output = ()>) -> Result<(), ProjectionError> {
        self.project(None, shutdown, &mut |_, _| {}).await
    }

    /// Empties the named read models (all when `names` is empty) and projects them again from
    /// position 0. Each batch commits on its own, so the store stays usable throughout.
    pub async fn rebuild(
        &mut self,
        mut progress: impl FnMut(i64, i64) + Send,
    ) -> Result<i64, ProjectionError> {
        let mut tx = Tx::begin(&self.db).await?;
        let now = now_millis();
        for slot in &self.slots {
            db::reset(&mut tx, slot.model.name(), slot.model.tables(), now).await?;
        }
        tx.commit().await?;
        self.forget();
        let target = self.store.head_position().await?;
        self.project(Some(target), std::future::pending(), &mut progress)
            .await?;
        Ok(target)
    }

    /// Where each read model stands. A plain read: it never waits on the writers, so it can
    /// be asked while an import or an engine projects.
    pub async fn status(store: &Store) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let head = store.head_position().await?;
        let db = store.database();
        let rows: Vec<(String, i64, i64, i64)> = crate::db::on_pool!(&db, pool => {
            sqlx::query_as(
                "SELECT name, position, generation, updated_at FROM projection_checkpoints",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(crate::NAMES
            .iter()
            .map(|name| {
                let (position, generation, updated_at) = rows
                    .iter()
                    .find(|r| r.0 == *name)
                    .map_or((0, 0, 0), |r| (r.1, r.2, r.3));
                ProjectionStatus {
                    name,
                    position,
                    head,
                    behind: head - position,
                    generation,
                    updated_at,
                }
            })
            .collect())
    }

    fn forget(&mut self) {
        for slot in &mut self.slots {
            slot.model.forget();
            slot.checkpoint = None;
        }
    }

    async fn load(&mut self) -> Result<i64, ProjectionError> {
        if self.slots.iter().any(|s| s.checkpoint.is_none()) {
            let mut tx = Tx::begin(&self.db).await?;
            for slot in &mut self.slots {
                slot.checkpoint = Some(db::checkpoint(&mut tx, slot.model.name()).await?);
            }
            tx.commit().await?;
        }
        Ok(self
            .slots
            .iter()
            .filter_map(|s| s.checkpoint.map(|c| c.position))
            .min()
            .unwrap_or(0))
    }

    async fn project(
        &mut self,
        until: Option<i64>,
        shutdown: impl Future<Output = ()>,
        progress: &mut (dyn FnMut(i64, i64) + Send),
    ) -> Result<(), ProjectionError> {
        let mut shutdown = pin!(shutdown);
        let mut lost = false;
        'resume: loop {
            let from = self.load().await?;
            if std::mem::take(&mut lost) {
                let _ = self.updates.send(Arc::new(Published {
                    position: from,
                    updates: Vec::new(),
                    elsewhere: true,
                }));
            }
            if until.is_some_and(|target| from >= target) {
                return Ok(());
            }
            let mut batches = self.store.subscribe_all_events_batches(from);
            loop {
                let batch = tokio::select! {
                    batch = batches.next() => batch,
                    () = &mut shutdown => return Ok(()),
                };
                let Some(batch) = batch else { return Ok(()) };
                let batch = batch?;
                let last = batch.last().map_or(from, |e| e.position);
                let caught_up = (batch.len() as i64) < hedgehog_store::PAGE_SIZE;
                match self.apply(&batch).await {
                    Ok(Batch::Committed) => {}
                    Ok(Batch::Lost) => {
                        tracing::debug!("another projector advanced first; resuming from the stored checkpoints");
                        self.forget();
                        lost = true;
                        continue 'resume;
                    }
                    Err(e) => {
                        self.forget();
                        return Err(e);
                    }
                }
                if let Some(target) = until {
                    progress(last.min(target), target);
                    if last >= target {
                        return Ok(());
                    }
                } else if caught_up {
                    // Live and caught up: let what comes meanwhile make one larger batch (one
                    // transaction, one update per candle) instead of one per commit of the log,
                    // which under load was most of the projector's work.
                    tokio::select! {
                        () = tokio::time::sleep(LIVE_BATCHING) => {}
                        () = &mut shutdown => return Ok(()),
                    }
                }
            }
        }
    }

    async fn apply(&mut self, batch: &[StreamEvent]) -> Result<Batch, ProjectionError> {
        let Some(last) = batch.last().map(|e| e.position) else {
            return Ok(Batch::Committed);
        };
        for event in batch {
            let origin = Origin {
                stream: event.stream_id.clone(),
                position: event.position,
            };
            for slot in &mut self.slots {
                if slot.checkpoint.is_some_and(|c| event.position > c.position) {
                    slot.model.apply(&origin, &event.event);
                }
            }
        }
        let mut tx = Tx::begin(&self.db).await?;
        let now = now_millis();
        let mut updates = Vec::new();
        for slot in &mut self.slots {
            let Some(cp) = slot.checkpoint.filter(|c| c.position < last) else {
                continue;
            };
            // The checkpoint first: it is the row two racing projectors meet on (PostgreSQL
            // makes the second wait for the first's commit, then finds the position moved), so
            // the loser stops before writing rows the winner already wrote.
            if !db::advance(&mut tx, slot.model.name(), cp, last, now).await? {
                return Ok(Batch::Lost);
            }
            updates.extend(slot.model.flush(&mut tx).await?);
        }
        tx.commit().await?;
        for slot in &mut self.slots {
            if let Some(cp) = &mut slot.checkpoint {
                if cp.position < last {
                    cp.position = last;
                    cp.updated_at = now;
                }
            }
        }
        if !updates.is_empty() {
            // No receiver is fine: nobody is listening.
            let _ = self.updates.send(Arc::new(Published {
                position: last,
                updates,
                elsewhere: false,
            }));
        }
        Ok(Batch::Committed)
    }
}

/// How often a node that does not project looks whether the read models moved.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// For a node of a cluster that does not hold the projector's lease: tells `updates`'
/// subscribers each time another process's projector moves the read models (the stored
/// checkpoints advance), as a batch projected `elsewhere`, so they re-read the rows changed
/// ([`crate::query::changed_after`]). Reads one small table every [`FOLLOW_EVERY`]; returns
/// when `shutdown` resolves.
pub async fn follow(
    store: Store,
    updates: broadcast::Sender<Arc<Published>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProjectionError> {
    let db = store.database();
    let every = crate::query::UpdateFilter::default();
    let mut seen = crate::query::projected_position(&db, &every).await?;
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
        let at = crate::query::projected_position(&db, &every).await?;
        if at > seen {
            seen = at;
            let _ = updates.send(Arc::new(Published {
                position: at,
                updates: Vec::new(),
                elsewhere: true,
            }));
        }
    }
}
