//! The event store: an append-only log of [`Event`]s on SQLite or PostgreSQL.
//!
//! Invariants every backend keeps (the conformance suite in `tests/store/store_conformance.rs` checks
//! each one on both):
//! - **Append-only.** Rows are never updated or deleted (database triggers refuse it), but for
//!   a market trade's row moved into a sealed segment, in the transaction that writes the
//!   segment ([`sealed`]): the event stays, in another table.
//! - **Atomic batches.** An append of any size commits whole or not at all, and so does an
//!   append of several streams' batches ([`Store::begin_append_streams`]).
//! - **Optimistic concurrency.** An append names the version it expects the stream to be at; a
//!   mismatch is [`StoreError::Conflict`] and writes nothing.
//! - **Idempotency.** An event whose id is already stored, or a `TradeReceived` whose
//!   (market stream, trade id) is, is skipped; [`AppendOutcome`] says how many were new. A batch
//!   that is entirely already stored succeeds whatever version it expected: it is a retry.
//! - **A gap-free global order.** Positions start at 1 and commit in order, so a subscriber that
//!   has seen position N has seen everything below it and will see N + 1 next.
//! - **Durability.** An append returns only after the commit is on disk, and subscribers of this
//!   process see no event before it is (SQLite's appender syncs the WAL beside the writers:
//!   `durability`).

mod appender;
mod checkpoint;
mod durability;
mod eventually_impl;
mod lease;
mod market_trade;
mod postgres;
mod reader;
mod sealed;
mod segment;
mod snapshot;
mod sqlite;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use hedgehog_domain::events::{DecodeError, TradeReceived};
use hedgehog_domain::{Event, Market, Symbol};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

pub use checkpoint::{WriteQueue, WriterTurn};
pub use lease::{Acquired, Cluster, Fence, Lease, NodeInfo, NodeRow};
pub use market_trade::trade_event_id;
pub use sealed::Sealed;
pub use snapshot::{Snapshot, Unusable};

/// The default database: an SQLite file in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://hedgehog.db";

/// How many events a subscription reads per query while catching up.
pub const PAGE_SIZE: i64 = 10_000;

/// The name of a stream: `trading-BTCUSDT`, `trades-BTCUSDT`, `streaming-BTCUSDT`, ...
///
/// Names starting with `$` are reserved for the store's own views (`$all`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(Arc<str>);

impl StreamId {
    pub const MAX_LEN: usize = 200;

    pub fn new(name: &str) -> Result<Self, StoreError> {
        let invalid = |reason| StoreError::InvalidStreamId {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid("it is longer than 200 bytes"));
        }
        if name.starts_with('$') {
            return Err(invalid(
                "names starting with `$` are reserved (`$all` is the global log)",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("it contains a control character"));
        }
        Ok(StreamId(name.into()))
    }

    /// The trading aggregate of a symbol.
    pub fn trading(symbol: &Symbol) -> Self {
        StreamId(format!("trading-{symbol}").into())
    }

    /// The market trades of a symbol (spot).
    pub fn trades(symbol: &Symbol) -> Self {
        StreamId(format!("trades-{symbol}").into())
    }

    /// The market trades of a symbol on Binance USD-M futures: another market than spot, whose
    /// trade ids overlap spot's, so another stream.
    pub fn usdm_trades(symbol: &Symbol) -> Self {
        StreamId(format!("usdm-trades-{symbol}").into())
    }

    /// The market trades of `symbol` on `market`: [`StreamId::trades`] or
    /// [`StreamId::usdm_trades`].
    pub fn market_trades(market: Market, symbol: &Symbol) -> Self {
        match market {
            Market::Spot => StreamId::trades(symbol),
            Market::Usdm => StreamId::usdm_trades(symbol),
        }
    }

    /// The market of a market-trade stream (`trades-X`, `usdm-trades-X`); `None` for others.
    pub fn market(&self) -> Option<Market> {
        self.market_symbol().map(|(market, _)| market)
    }

    /// The market and symbol of a market-trade stream; `None` for others.
    pub fn market_symbol(&self) -> Option<(Market, Symbol)> {
        if let Some(symbol) = self.symbol_of("trades") {
            Some((Market::Spot, symbol))
        } else {
            self.symbol_of("usdm-trades")
                .map(|symbol| (Market::Usdm, symbol))
        }
    }

    /// The streaming switch of a symbol.
    pub fn streaming(symbol: &Symbol) -> Self {
        StreamId(format!("streaming-{symbol}").into())
    }

    /// The storing switches (trade_events, orders) of a symbol.
    pub fn storing(symbol: &Symbol) -> Self {
        StreamId(format!("storing-{symbol}").into())
    }

    /// The symbol of a per-symbol stream named `{prefix}-{SYMBOL}` (`trading`, `streaming`, ...).
    pub fn symbol_of(&self, prefix: &str) -> Option<Symbol> {
        let rest = self.0.strip_prefix(prefix)?.strip_prefix('-')?;
        Symbol::parse(rest).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StreamId {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StreamId::new(s)
    }
}

/// The version a writer expects a stream to be at before its append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check: for market streams, where the exchange orders the trades.
    Any,
    /// The stream must be exactly at this version (0: the stream must not exist yet).
    Exact(i64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Who or what caused an event, as `key = value` text: for a user's command, who sent it
/// (`by`), how (`via`: cli, http, dashboard) and from where (`client`). Stored beside the
/// payload, never in it, so a replay's events stay byte for byte the same; empty (stored as
/// NULL) for what the engine decides itself and for market data. A `BTreeMap`, so it is
/// written in one order.
pub type Metadata = std::collections::BTreeMap<String, String>;

/// An event to append, with the metadata its writer chooses.
///
/// The id is chosen by the writer, not the store, so that a retried append is recognised as
/// the same event (idempotency) and a replay produces the same ids.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// Who or what caused it (an audit trail of commands).
    pub metadata: Metadata,
    pub event: Event,
}

impl NewEvent {
    /// An event with a fresh UUID v7 id and no correlation.
    pub fn new(event: impl Into<Event>) -> Self {
        NewEvent {
            event_id: Uuid::now_v7(),
            correlation_id: None,
            causation_id: None,
            metadata: Metadata::new(),
            event: event.into(),
        }
    }

    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    pub fn caused_by(mut self, correlation_id: Uuid, causation_id: Uuid) -> Self {
        self.correlation_id = Some(correlation_id);
        self.causation_id = Some(causation_id);
        self
    }
}

/// An event as stored, with its place in its stream and in the global log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Place in the global log (`$all`), from 1.
    pub position: i64,
    pub event_id: Uuid,
    pub stream_id: StreamId,
    /// Place in its stream, from 1.
    pub stream_version: i64,
    /// When the store recorded it, ms since the Unix epoch.
    pub recorded_at: i64,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// Who or what caused it; empty for the engine's own decisions and market data.
    pub metadata: Metadata,
    pub event: Event,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Events stored by this append.
    pub appended: usize,
    /// Events skipped because they were already stored (or repeated within the batch).
    pub duplicates: usize,
    /// The stream's version after the append.
    pub stream_version: i64,
    /// The global position of the last event stored by this append, if any.
    pub last_position: Option<i64>,
}

/// Everything that can go wrong in the store, each variant naming what a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("wrong expected version for stream {stream}: expected {expected}, but it is at version {actual}; nothing was written")]
    Conflict {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: i64,
    },
    #[error("unsupported database URL scheme {scheme:?}: use sqlite://PATH (the default is {DEFAULT_DATABASE_URL}) or postgres://USER@HOST/DB")]
    UnsupportedUrl { scheme: String },
    #[error("invalid stream id {name:?}: {reason}")]
    InvalidStreamId { name: String, reason: &'static str },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("an in-memory SQLite database is not shared between connections: name a file, sqlite://PATH")]
    InMemory,
    #[error("could not migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("this database's schema is at version {version}, written by a newer Hedgehog: this build knows versions up to {known}. Run the newer hedgehog on it (a database is never migrated back)")]
    NewerSchema { version: i64, known: i64 },
    #[error("could not encode a {event_type} event: {source}")]
    Encode {
        event_type: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the event at position {position} cannot be read: {source}")]
    Decode {
        position: i64,
        #[source]
        source: DecodeError,
    },
    #[error("the stored value {column} = {value:?} at position {position} is corrupt")]
    Corrupt {
        position: i64,
        column: &'static str,
        value: String,
    },
    #[error("sealed segment {id} of {stream} (positions {first_position} to {last_position}) is damaged: {reason}; nothing of it was read. Restore the database from a backup taken after it was sealed")]
    DamagedSegment {
        id: i64,
        stream: StreamId,
        first_position: i64,
        last_position: i64,
        reason: String,
    },
    #[error("{what} {value} does not fit in eventually's u32 (its versions and sequence numbers are u32); use Hedgehog's own i64 API for this store")]
    U32Overflow { what: &'static str, value: i64 },
    #[error("trade id {0} of {1} is beyond what the store can key (i64::MAX)")]
    TradeIdOverflow(u64, Symbol),
    #[error("{stream}: node {} decided under epoch {} of the lease of {}, {holder}; nothing was written (the node no longer owns it)", fence.node, fence.epoch, fence.resource)]
    StaleLease {
        stream: StreamId,
        fence: Fence,
        /// Who holds the lease now, in words.
        holder: String,
    },
    #[error("events are permanent: stream {0} cannot be removed from an append-only log")]
    RemoveRefused(StreamId),
    #[error(
        "cancelled before it ran (nothing was read or written): the async runtime is shutting down"
    )]
    ShuttingDown,
    #[error("cannot open the event log's WAL {} to sync it: {source}", path.display())]
    Wal {
        path: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("cannot start the thread that syncs the event log's WAL beside {}: {source}", database.display())]
    Syncer {
        database: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("the event log's WAL could not be synced to disk ({source}): events after position {durable} may be lost on a power cut, and this process takes no more appends; check the disk, then restart")]
    Unsynced {
        durable: i64,
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// The answer of a task the store spawned. A panic is the task's own and goes on unwinding in
/// the caller; a cancellation only happens while the runtime shuts down (the task never ran), an
/// error for whoever still listens rather than a panic in a worker that is being torn down.
pub(crate) fn joined<T>(
    answer: Result<Result<T, StoreError>, tokio::task::JoinError>,
) -> Result<T, StoreError> {
    match answer {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(StoreError::ShuttingDown),
    }
}

impl StoreError {
    /// SQLite's "database is locked" (`SQLITE_BUSY` or `SQLITE_LOCKED`, any extended code):
    /// another connection holds what this one needs.
    pub fn is_busy(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            _ => false,
        }
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// The database refused an append whose fence is no longer its node's
    /// ([`StoreError::StaleLease`], or the database's raw refusal before it is named).
    pub fn is_stale_lease(&self) -> bool {
        match self {
            StoreError::StaleLease { .. } => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.code().as_deref() == Some("HH001"),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, message)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_TRIGGER
                    && message
                        .as_deref()
                        .is_some_and(|m| m.contains("stale lease"))
            }
            _ => false,
        }
    }

    /// A UNIQUE index refused a row: an event (or trade) that is already stored.
    pub(crate) fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.extended_code,
                rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    | rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            ),
            _ => false,
        }
    }
}

/// An event ready for the database: encoded, keyed, with its metadata.
#[derive(Debug)]
pub(crate) struct PreparedEvent {
    pub event_id: Uuid,
    pub event_type: &'static str,
    pub schema_version: i32,
    /// The stored JSON; empty while `trade` may hold the event instead ([`PreparedBatch::settle`]).
    pub payload: String,
    /// The event as a row of `market_trades`, when it may be one ([`market_trade`]).
    pub trade: Option<market_trade::TradeRow>,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub trade_id: Option<i64>,
    /// The metadata as a JSON object; `None` when there is none.
    pub metadata: Option<String>,
    /// What was encoded, kept to hand the recorded event to this process's subscribers
    /// without reading it back ([`Appended::events`]).
    pub kept: Kept,
}

/// An event's decoded form and metadata, as its writer gave them.
#[derive(Debug)]
pub(crate) struct Kept {
    pub event: Event,
    pub metadata: Metadata,
}

/// A batch encoded outside the write transaction (JSON work never holds the lock), with the
/// events that repeat an earlier one of the same batch already removed.
///
/// Made by [`Store::prepare`], which is pure CPU work: a writer that appends a lot (an importer,
/// a streamer) prepares the next batch on another thread while the current one commits.
#[derive(Debug, Default)]
pub struct PreparedBatch {
    pub(crate) events: Vec<PreparedEvent>,
    pub(crate) repeated_in_batch: usize,
}

impl PreparedBatch {
    /// Events in the batch after removing repeats within it.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    fn new(events: Vec<NewEvent>) -> Result<Self, StoreError> {
        let mut ids = HashSet::with_capacity(events.len());
        let mut trade_ids = HashSet::new();
        let mut prepared = Vec::with_capacity(events.len());
        let mut repeated = 0;
        for new in events {
            let trade_id = match new.event.trade_id() {
                Some(id) => Some(
                    i64::try_from(id)
                        .map_err(|_| StoreError::TradeIdOverflow(id, new.event.symbol().clone()))?,
                ),
                None => None,
            };
            let fresh_trade = trade_id.is_none_or(|t| trade_ids.insert(t));
            if !fresh_trade || !ids.insert(new.event_id) {
                repeated += 1;
                continue;
            }
            let event_type = new.event.event_type();
            // A trade that may become a row of `market_trades` is encoded as JSON only if the
            // stream it is appended to turns out not to take it ([`PreparedBatch::settle`]).
            let trade = match &new.event {
                Event::TradeReceived(t)
                    if new.metadata.is_empty()
                        && new.correlation_id.is_none()
                        && new.causation_id.is_none() =>
                {
                    market_trade::TradeRow::of(t)
                }
                _ => None,
            };
            let payload = if trade.is_some() {
                String::new()
            } else {
                encode(&new.event)?
            };
            let metadata = if new.metadata.is_empty() {
                None
            } else {
                Some(
                    serde_json::to_string(&new.metadata)
                        .map_err(|source| StoreError::Encode { event_type, source })?,
                )
            };
            prepared.push(PreparedEvent {
                event_id: new.event_id,
                event_type,
                schema_version: i32::from(new.event.schema_version()),
                payload,
                trade,
                correlation_id: new.correlation_id,
                causation_id: new.causation_id,
                trade_id,
                metadata,
                kept: Kept {
                    event: new.event,
                    metadata: new.metadata,
                },
            });
        }
        Ok(PreparedBatch {
            events: prepared,
            repeated_in_batch: repeated,
        })
    }

    /// Decides, for the stream the batch is appended to, which of its trades become rows of
    /// `market_trades` (the backend takes them, the stream is a market stream of their
    /// symbol) and encodes the others as JSON. Before the write transaction: no JSON work
    /// holds the lock.
    pub(crate) fn settle(&mut self, stream: &StreamId, rows: bool) -> Result<(), StoreError> {
        for e in &mut self.events {
            let Some(row) = &mut e.trade else { continue };
            let Event::TradeReceived(trade) = &e.kept.event else {
                continue;
            };
            if !(rows && row.settle(stream, trade, e.event_id)) {
                e.trade = None;
                e.payload = encode(&e.kept.event)?;
            }
        }
        Ok(())
    }

    /// Drops the events the database already holds (by id or by trade key) and returns how many.
    pub(crate) fn drop_stored(
        &mut self,
        stored_ids: &HashSet<Uuid>,
        stored_trades: &HashSet<i64>,
    ) -> usize {
        let before = self.events.len();
        self.events.retain(|e| {
            !stored_ids.contains(&e.event_id)
                && e.trade_id.is_none_or(|t| !stored_trades.contains(&t))
        });
        before - self.events.len()
    }
}

/// The lowest and highest trade id among `events`, if any has one.
pub(crate) fn trade_id_range(events: &[PreparedEvent]) -> Option<(i64, i64)> {
    let ids = events.iter().filter_map(|e| e.trade_id);
    ids.clone().min().zip(ids.max())
}

/// An event's stored JSON.
fn encode(event: &Event) -> Result<String, StoreError> {
    event.encode_stored().map_err(|source| StoreError::Encode {
        event_type: event.event_type(),
        source,
    })
}

/// One stream's batch of an append ([`Backend::try_append`]).
#[derive(Debug)]
pub(crate) struct Part {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub batch: PreparedBatch,
}

/// What an append decides before it inserts, once the stored events are dropped: a batch with
/// nothing left is a retry, which succeeds without writing whatever the expected version
/// (`Some`, the outcome); otherwise the expected version must hold (`None`: go on and insert).
pub(crate) fn before_insert(
    stream: &StreamId,
    expected: ExpectedVersion,
    batch: &PreparedBatch,
    actual: i64,
    duplicates: usize,
) -> Result<Option<AppendOutcome>, StoreError> {
    if batch.events.is_empty() {
        return Ok(Some(AppendOutcome {
            appended: 0,
            duplicates,
            stream_version: actual,
            last_position: None,
        }));
    }
    check_expected(stream, expected, actual)?;
    Ok(None)
}

/// A failed migration, told so a user can act on it: a database migrated by a newer build
/// names the version it is at and the one this build knows.
pub(crate) fn migration_failed(
    error: sqlx::migrate::MigrateError,
    migrator: &sqlx::migrate::Migrator,
) -> StoreError {
    match error {
        sqlx::migrate::MigrateError::VersionMissing(version) => StoreError::NewerSchema {
            version,
            known: migrator.iter().map(|m| m.version).max().unwrap_or(0),
        },
        other => StoreError::Migrate(other),
    }
}

/// Checks an expected version against the stream's actual one.
pub(crate) fn check_expected(
    stream: &StreamId,
    expected: ExpectedVersion,
    actual: i64,
) -> Result<(), StoreError> {
    match expected {
        ExpectedVersion::Exact(v) if v != actual => Err(StoreError::Conflict {
            stream: stream.clone(),
            expected,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Turns raw columns into a [`RecordedEvent`], naming the position of anything corrupt.
/// Reads a page of `$all` from a position (for [`Store`]'s subscriptions).
type PageReader<T> =
    fn(Arc<dyn Backend>, i64) -> futures::future::BoxFuture<'static, Result<Vec<T>, StoreError>>;

/// An event with where it is (stream, version, position), without the rest of its metadata:
/// what replays and projections need, at about half the cost of a [`RecordedEvent`] to read.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub position: i64,
    pub stream_id: StreamId,
    pub stream_version: i64,
    pub event: Event,
}

/// A market trade with its place in the log: what a reader along the trade key needs, without
/// an event's envelope (see [`Store::read_placed_trades`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedTrade {
    pub position: i64,
    pub stream_version: i64,
    pub trade: TradeReceived,
}

impl PlacedTrade {
    /// The trade of a stream's event (none for any other event).
    fn of(e: StreamEvent) -> Option<PlacedTrade> {
        match e.event {
            Event::TradeReceived(trade) => Some(PlacedTrade {
                position: e.position,
                stream_version: e.stream_version,
                trade,
            }),
            _ => None,
        }
    }
}

/// A trade-key cursor as the backends take it (-1: from the start); `None` past any id the
/// store can key, so nothing is after it.
fn trade_cursor(after: Option<u64>) -> Option<i64> {
    match after.map(i64::try_from) {
        None => Some(-1),
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => None,
    }
}

/// Decodes a stored event's payload (what every read path ends with).
pub(crate) fn decode_event(
    position: i64,
    event_type: &str,
    schema_version: i32,
    payload: &str,
) -> Result<Event, StoreError> {
    let schema_version = u16::try_from(schema_version).map_err(|_| StoreError::Corrupt {
        position,
        column: "schema_version",
        value: schema_version.to_string(),
    })?;
    Event::decode(event_type, schema_version, payload)
        .map_err(|source| StoreError::Decode { position, source })
}

/// Decodes the `metadata` column: NULL is none.
pub(crate) fn decode_metadata(position: i64, text: Option<&str>) -> Result<Metadata, StoreError> {
    match text {
        None => Ok(Metadata::new()),
        Some(text) => serde_json::from_str(text).map_err(|_| StoreError::Corrupt {
            position,
            column: "metadata",
            value: text.to_owned(),
        }),
    }
}

/// What each database must provide; everything else is shared.
#[async_trait]
pub(crate) trait Backend: Send + Sync + 'static {
    fn name(&self) -> &'static str;

    /// Whether market trades are stored as rows of `market_trades` ([`market_trade`]).
    fn stores_trade_rows(&self) -> bool;

    /// The database behind the log, for read models kept beside it.
    fn database(&self) -> Database;

    /// One attempt at an atomic append of one or more streams' batches: checks each expected
    /// version and assigns positions inside one write transaction that holds the log's write
    /// lock (all of it commits or none). With `look_up`, events already stored (by id or trade
    /// key) are found and dropped first; without, a duplicate surfaces as a UNIQUE violation.
    /// Each batch is already de-duplicated within itself; every event is stamped
    /// `recorded_at`. One outcome per part, in order.
    async fn try_append(
        &self,
        parts: &mut [Part],
        recorded_at: i64,
        look_up: bool,
    ) -> Result<Vec<AppendOutcome>, StoreError>;

    /// Leaves the database tidy for a process that exits (SQLite: its WAL checkpointed and
    /// emptied). Best effort; nothing stored depends on it.
    async fn close(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Waits until the commit that ended at position `last` is durable (`i64::MAX`: every
    /// commit of this process so far). PostgreSQL's commits are durable when they return;
    /// SQLite's appender syncs them off the write lock ([`durability`]).
    async fn durable(&self, _last: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// Events of `$all` with `position >= from`, in order, at most `limit`.
    async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events of a stream with `stream_version >= from`, in order, at most `limit`.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// As `read_all`, without the metadata (ids, times).
    async fn read_all_events(&self, from: i64, limit: i64) -> Result<Vec<StreamEvent>, StoreError>;

    /// As `read_stream`, without the metadata (ids, times): the cheap read for replays.
    async fn read_stream_events(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError>;

    /// A market stream's trades with a trade id above `after`, in trade-id order (the
    /// stream's trade key), at most `limit`.
    async fn read_trades(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError>;

    /// As `read_trades`, each trade with its place but without an event's envelope: the lean
    /// read of a backtest.
    async fn read_placed_trades(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<PlacedTrade>, StoreError> {
        Ok(self
            .read_trades(stream, after, limit)
            .await?
            .into_iter()
            .filter_map(PlacedTrade::of)
            .collect())
    }

    /// The stream's version, from `streams` (0 when it has no events).
    async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError>;

    async fn head_position(&self) -> Result<i64, StoreError>;

    /// The streams whose names start with `prefix` ("" for every one), in name order, from
    /// `streams`: time independent of the log's length.
    async fn stream_heads(&self, prefix: &str) -> Result<Vec<StreamHead>, StoreError>;

    /// Starts whatever tells this process about appends made by others (PostgreSQL: LISTEN).
    /// Idempotent; it feeds `wakes` with what it hears of.
    async fn watch_foreign_appends(&self, wakes: Wakes) -> Result<(), StoreError>;

    /// How often a subscriber re-reads the log when nothing woke it: the safety net.
    fn poll_interval(&self) -> Duration;

    /// Where the earliest stored market trade whose id is above `after` in `stream` is.
    async fn first_trade_after(
        &self,
        stream: &StreamId,
        after: i64,
    ) -> Result<Option<Place>, StoreError>;

    /// The sealed segments along `along` whose range of its key ends at or after `from` and
    /// starts at or before `to`, after `after` (their first key and id), in that order, at
    /// most `limit` ([`sealed`]).
    async fn segments(
        &self,
        along: &sealed::Along,
        from: i64,
        to: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<sealed::Segment>, StoreError>;

    /// A segment's block and the checksum stored beside it.
    async fn segment_block(&self, id: i64) -> Result<(Vec<u8>, i64), StoreError>;

    /// Seals the market trades older than `before` (ms) in the window of
    /// [`sealed::WINDOW`] positions from the first such trade at or after `from`, in one
    /// transaction; `None` when there is none. Answers where the next window starts.
    async fn seal_window(
        &self,
        from: i64,
        before: i64,
    ) -> Result<Option<(i64, Sealed)>, StoreError>;

    /// Gives the space of deleted rows back (SQLite: `VACUUM`, the file rewritten; PostgreSQL:
    /// `VACUUM` of the log's trade tables, the space kept for new rows).
    async fn compact(&self) -> Result<(), StoreError>;

    /// Every segment sealed so far, summed.
    async fn sealed(&self) -> Result<Sealed, StoreError>;
}

/// Where an event is: in the log and in its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub position: i64,
    pub version: i64,
}

/// A stream as `streams` keeps it: its version and where its last event is in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHead {
    pub stream: StreamId,
    pub version: i64,
    pub last_position: i64,
}

impl StreamHead {
    pub(crate) fn from_row((stream, version, last_position): (String, i64, i64)) -> Self {
        StreamHead {
            stream: StreamId(stream.into()),
            version,
            last_position,
        }
    }
}

/// The range of names starting with `prefix`, as `[low, high)` for an index range scan: `high`
/// is `prefix` with its last character raised by one (every stream name is below `"\u{10FFFF}"`
/// for the empty prefix).
pub(crate) fn prefix_range(prefix: &str) -> (String, String) {
    let mut high: Vec<char> = prefix.chars().collect();
    match high.pop() {
        None => (String::new(), char::MAX.to_string()),
        Some(last) => {
            let raised = char::from_u32(last as u32 + 1).unwrap_or(char::MAX);
            high.push(raised);
            (prefix.to_owned(), high.into_iter().collect())
        }
    }
}

/// An append this process heard of: one message per append (several streams' parts in one
/// transaction make one message), so a subscriber wakes once for it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Appended {
    /// The streams it touched; `None`: not known, so every subscriber reads.
    pub streams: Option<Arc<[StreamId]>>,
    /// The positions it took, first and last, when known. One transaction's positions are
    /// contiguous, so a subscriber that has seen everything up to `first - 1` and is handed
    /// the events has seen everything up to `last`.
    pub span: Option<(i64, i64)>,
    /// Its events in position order, when this process appended them: its stream
    /// subscribers take them from here instead of reading them back.
    pub events: Option<Arc<[RecordedEvent]>>,
}

/// How subscribers learn of appends: the highest position known committed (`head`, for `$all`)
/// and each append (`appended`, for stream subscriptions, which read only when one of
/// theirs moved and they were not handed its events). `head` moves before `appended` is
/// sent, so a woken reader finds the append under the head.
#[derive(Clone, Debug)]
pub(crate) struct Wakes {
    pub head: watch::Sender<i64>,
    pub appended: broadcast::Sender<Appended>,
    /// The last position this process's appends committed (announced or not yet): up to it,
    /// every position is this process's (announced with its events) or another's that shows
    /// as a gap between two of them.
    committed: Arc<std::sync::atomic::AtomicI64>,
    /// The log's head as last asked of the database, and when: the subscribers' polls for
    /// other processes' appends share one query a poll interval, not one each.
    probed: Arc<tokio::sync::Mutex<Option<(tokio::time::Instant, i64)>>>,
    /// The last position of the appends committed here whose acknowledgement was given up
    /// ([`PendingAppend`]'s drop): a subscriber that has not seen that far reads at its polls.
    unannounced: Arc<std::sync::atomic::AtomicI64>,
}

/// Appends in line before a slow stream subscriber is told it missed some (and reads all it
/// follows, which is what it would do anyway).
const APPENDED_CAPACITY: usize = 256;

/// The most events an append hands its subscribers ([`Appended::events`]); a bigger one (an
/// import's batch) is read back by those who follow it, a page at a time. The streamer's
/// flushes under load reach a few thousand (13,614 at most over 100 symbols flat out).
const HANDED_EVENTS: usize = 16_384;

/// Appends hand their events only while fewer messages than this wait for a subscriber: what a
/// slow (or stalled) subscriber keeps alive is at most this many appends' events (8 x 16,384
/// events of 376 bytes, under 50 MiB, at the very worst; a few hundred KiB in practice),
/// whatever the run's length. Past it, subscribers read.
const HANDED_QUEUED: usize = 8;

impl Wakes {
    fn new(head: i64) -> Self {
        Wakes {
            head: watch::channel(head).0,
            appended: broadcast::channel(APPENDED_CAPACITY).0,
            committed: Arc::new(std::sync::atomic::AtomicI64::new(head)),
            probed: Arc::default(),
            unannounced: Arc::default(),
        }
    }

    /// The last position this process committed, and the last it committed but never
    /// announced.
    fn committed_here(&self) -> (i64, i64) {
        use std::sync::atomic::Ordering::Acquire;
        (self.committed.load(Acquire), self.unannounced.load(Acquire))
    }

    /// This process committed an append ending at `last`.
    fn committed(&self, last: i64) {
        self.committed
            .fetch_max(last, std::sync::atomic::Ordering::AcqRel);
    }

    /// An append is committed and durable.
    pub(crate) fn appended(&self, append: Appended) {
        if let Some((_, last)) = append.span {
            self.raise_head(last);
        }
        let _ = self.appended.send(append);
    }

    /// Something may have been appended that nobody heard of: every subscriber reads.
    pub(crate) fn everyone(&self) {
        self.head.send_modify(|_| {});
        let _ = self.appended.send(Appended::default());
    }

    fn raise_head(&self, last: i64) {
        self.head.send_if_modified(|h| {
            let newer = last > *h;
            if newer {
                *h = last;
            }
            newer
        });
    }
}

/// The database that holds the log, for the read models kept in the same database (the
/// projections), so that a read-model change and its checkpoint commit in one transaction.
///
/// Writers on SQLite must hold a turn of `writer` for the whole write transaction: it is the
/// queue the store's own appends wait in, so writers in one process never spin on
/// `SQLITE_BUSY`, and the end of each turn wakes the checkpointer, which keeps the WAL short off
/// their path.
#[derive(Clone, Debug)]
pub enum Database {
    Sqlite {
        pool: sqlx::SqlitePool,
        writer: WriteQueue,
    },
    Postgres {
        pool: sqlx::PgPool,
    },
}

/// The event store. Cheap to clone; clones share one connection pool and one notifier.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    /// The highest position this process knows to be committed, and the streams appended to:
    /// what wakes subscribers.
    wakes: Wakes,
    /// What appends through `eventually`'s view record as their metadata ([`Store::acting_for`]).
    acting_for: Arc<Metadata>,
}

/// A committed append that is not yet acknowledged: see [`Store::begin_append`]. Dropping it
/// does not undo the append (the commit stands and is synced all the same); it only gives up
/// waiting, and subscribers then learn of the batch from the next append or poll.
#[must_use = "an append is acknowledged only once `acknowledged` answers"]
pub struct PendingAppend {
    store: Store,
    /// Each stream appended to, with what its batch did, in the order given.
    parts: Vec<(StreamId, AppendOutcome)>,
    /// The events stored, in position order, when this process has stream subscribers to
    /// hand them to.
    recorded: Option<Arc<[RecordedEvent]>>,
    /// Whether subscribers have been told (or there was nothing to tell).
    announced: bool,
}

impl Drop for PendingAppend {
    /// Given up before it was acknowledged: the commit stands, unannounced, so subscribers
    /// must find it by reading at their next poll.
    fn drop(&mut self) {
        if self.announced {
            return;
        }
        if let Some(last) = self.parts.iter().filter_map(|(_, o)| o.last_position).max() {
            self.store
                .wakes
                .unannounced
                .fetch_max(last, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

impl PendingAppend {
    /// Waits until the batch is durable, wakes this process's subscribers, and answers what the
    /// append did (of a multi-stream append, its first stream's part). A batch with nothing new
    /// waits for whatever this process had committed before, so that a retry is not
    /// acknowledged ahead of the original.
    pub async fn acknowledged(self) -> Result<AppendOutcome, StoreError> {
        let mut all = self.acknowledged_all().await?;
        Ok(all.swap_remove(0))
    }

    /// [`PendingAppend::acknowledged`] for every stream of the append, in the order given.
    pub async fn acknowledged_all(mut self) -> Result<Vec<AppendOutcome>, StoreError> {
        let store = self.store.clone();
        let parts = std::mem::take(&mut self.parts);
        let last = parts.iter().filter_map(|(_, o)| o.last_position).max();
        if let Err(e) = store.backend.durable(last.unwrap_or(i64::MAX)).await {
            // Not acknowledged: the drop marks it unannounced.
            self.parts = parts;
            return Err(e);
        }
        let mut outcomes = Vec::with_capacity(parts.len());
        let mut moved = Vec::with_capacity(parts.len());
        let mut first = None;
        for (stream, outcome) in parts {
            if let Some(last) = outcome.last_position {
                moved.push(stream);
                // The parts' positions follow each other: the first part's first is the
                // append's.
                first.get_or_insert(last - outcome.appended as i64 + 1);
            }
            outcomes.push(outcome);
        }
        if let (Some(first), Some(last)) = (first, last) {
            store.wakes.appended(Appended {
                streams: Some(moved.into()),
                span: Some((first, last)),
                events: self.recorded.take(),
            });
        }
        self.announced = true;
        Ok(outcomes)
    }
}

/// A writer's appends with one batch in line, as an import makes them: each [`AppendsInLine::append`]
/// commits its batch, then waits for the one before it to be acknowledged, so that batch N + 1
/// is inserted while batch N is synced to disk. Batches are acknowledged in the order appended.
#[must_use = "the last batch is acknowledged only by `finish`"]
pub struct AppendsInLine {
    store: Store,
    in_line: Option<PendingAppend>,
}

impl AppendsInLine {
    /// Commits `batch` and answers the acknowledged outcome of the batch before it, if any.
    pub async fn append(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: PreparedBatch,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let pending = self.store.begin_append(stream, expected, batch).await?;
        match self.in_line.replace(pending) {
            Some(before) => Ok(Some(before.acknowledged().await?)),
            None => Ok(None),
        }
    }

    /// Acknowledges the last batch, if any; the line is then empty.
    pub async fn finish(&mut self) -> Result<Option<AppendOutcome>, StoreError> {
        match self.in_line.take() {
            Some(last) => Ok(Some(last.acknowledged().await?)),
            None => Ok(None),
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl Store {
    /// The same store, whose appends through `eventually`'s traits (a `Repository` deciding a
    /// user's command) record `metadata`: who sent the command. [`Store::append`] takes each
    /// event's own.
    pub fn acting_for(&self, metadata: Metadata) -> Store {
        Store {
            acting_for: Arc::new(metadata),
            ..self.clone()
        }
    }

    /// Who this handle acts for ([`Store::acting_for`]); empty for the engine's own handle.
    pub fn acting(&self) -> &Metadata {
        &self.acting_for
    }

    /// Opens (and migrates) the store at `url`: `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let scheme = url.split(':').next().unwrap_or_default();
        let backend: Arc<dyn Backend> = match scheme {
            "sqlite" => Arc::new(sqlite::SqliteBackend::open(url).await?),
            "postgres" | "postgresql" => Arc::new(postgres::PgBackend::open(url).await?),
            other => {
                return Err(StoreError::UnsupportedUrl {
                    scheme: other.to_owned(),
                })
            }
        };
        let backend: Arc<dyn Backend> = Arc::new(sealed::Tiered::new(backend));
        let head = backend.head_position().await?;
        tracing::debug!(backend = backend.name(), head, "event store open");
        Ok(Store {
            backend,
            wakes: Wakes::new(head),
            acting_for: Arc::default(),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The database behind the log; see [`Database`].
    pub fn database(&self) -> Database {
        self.backend.database()
    }

    /// Appends `events` to `stream` atomically; see the module's invariants.
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.append_prepared(stream, expected, self.prepare(events)?)
            .await
    }

    /// Encodes and keys a batch for [`Store::append_prepared`]: CPU only, no I/O, any thread.
    pub fn prepare(&self, events: Vec<NewEvent>) -> Result<PreparedBatch, StoreError> {
        PreparedBatch::new(events)
    }

    /// Appends a batch made by [`Store::prepare`]; the same guarantees as [`Store::append`].
    pub async fn append_prepared(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: PreparedBatch,
    ) -> Result<AppendOutcome, StoreError> {
        self.begin_append(stream, expected, batch)
            .await?
            .acknowledged()
            .await
    }

    /// Appends with one batch in line; see [`AppendsInLine`].
    pub fn appends_in_line(&self) -> AppendsInLine {
        AppendsInLine {
            store: self.clone(),
            in_line: None,
        }
    }

    /// Commits a batch made by [`Store::prepare`] and returns before it is durable: the
    /// [`PendingAppend`] answers once it is. For a writer with batches in line (an import):
    /// while one batch is being synced to disk the next one is inserted. Until then the batch
    /// is not acknowledged, to the caller or to this process's subscribers (on SQLite; on
    /// PostgreSQL a commit is durable when it returns).
    pub async fn begin_append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: PreparedBatch,
    ) -> Result<PendingAppend, StoreError> {
        self.begin_append_streams(vec![(stream.clone(), expected, batch)])
            .await
    }

    /// [`Store::begin_append`] of several streams' batches in one transaction: all of them
    /// commit or none, each keeps the guarantees of an append of its own (its expected
    /// version, idempotency), and one sync makes them all durable. What a writer of many
    /// streams at once (the trade streamer, one market stream per symbol) wants: one
    /// transaction, not one per stream.
    pub async fn begin_append_streams(
        &self,
        batches: Vec<(StreamId, ExpectedVersion, PreparedBatch)>,
    ) -> Result<PendingAppend, StoreError> {
        let recorded_at = now_millis();
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; batches.len()];
        let mut streams = Vec::with_capacity(batches.len());
        let mut repeated = Vec::with_capacity(batches.len());
        let mut parts = Vec::new();
        let mut written = Vec::new();
        let mut recorded = None;
        for (i, (stream, expected, batch)) in batches.into_iter().enumerate() {
            streams.push(stream.clone());
            repeated.push(batch.repeated_in_batch);
            if batch.events.is_empty() && batch.repeated_in_batch == 0 {
                // Nothing to write: only the expected version to check.
                let actual = self.backend.stream_version(&stream).await?;
                check_expected(&stream, expected, actual)?;
                outcomes[i] = Some(AppendOutcome {
                    appended: 0,
                    duplicates: 0,
                    stream_version: actual,
                    last_position: None,
                });
            } else {
                let mut batch = batch;
                batch.settle(&stream, self.backend.stores_trade_rows())?;
                parts.push(Part {
                    stream,
                    expected,
                    batch,
                });
                written.push(i);
            }
        }
        if !parts.is_empty() {
            // Fast path: assume every event is new and let the UNIQUE indexes do the probing.
            // A duplicate, or a version mismatch (which may be the retry of a stored batch),
            // takes the careful path, which looks the keys up first.
            let tried = match self
                .backend
                .try_append(&mut parts, recorded_at, false)
                .await
            {
                Err(e) if e.is_conflict() || e.is_unique_violation() => {
                    self.backend.try_append(&mut parts, recorded_at, true).await
                }
                done => done,
            };
            let done = match tried {
                Err(e) if e.is_stale_lease() => return Err(self.stale_lease(&parts, e).await),
                done => done?,
            };
            if let Some(last) = done.iter().filter_map(|o| o.last_position).max() {
                self.wakes.committed(last);
            }
            recorded = self.recorded(&mut parts, &done, recorded_at);
            for (i, outcome) in written.into_iter().zip(done) {
                outcomes[i] = Some(outcome);
            }
        }
        let parts = streams
            .into_iter()
            .zip(outcomes)
            .zip(repeated)
            .map(|((stream, outcome), repeated)| {
                let mut outcome = outcome.unwrap_or(AppendOutcome {
                    appended: 0,
                    duplicates: 0,
                    stream_version: 0,
                    last_position: None,
                });
                outcome.duplicates += repeated;
                (stream, outcome)
            })
            .collect();
        Ok(PendingAppend {
            store: self.clone(),
            parts,
            recorded,
            announced: false,
        })
    }

    /// Names the refusal of an append under a lease its node no longer holds: the stream, the
    /// fence its events carry, and who holds the lease now.
    async fn stale_lease(&self, parts: &[Part], refused: StoreError) -> StoreError {
        let fenced = parts.iter().find_map(|p| {
            p.batch
                .events
                .iter()
                .find_map(|e| Fence::of(&e.kept.metadata))
                .map(|fence| (p.stream.clone(), fence))
        });
        let Some((stream, fence)) = fenced else {
            return refused;
        };
        let holder = match self.lease(&fence.resource).await {
            Ok(None) => "which was never granted".to_owned(),
            Ok(Some(lease)) if lease.expires_at == 0 => {
                format!("which {} released", lease.node)
            }
            Ok(Some(lease)) => format!("which node {} holds at epoch {}", lease.node, lease.epoch),
            Err(e) => format!("whose holder could not be read ({e})"),
        };
        StoreError::StaleLease {
            stream,
            fence,
            holder,
        }
    }

    /// The events an append stored, as its subscribers would read them, if this process has
    /// stream subscribers and the append is small enough to hand them ([`HANDED_EVENTS`]).
    /// Each part's stored events are its batch's (the careful path dropped the rest), at the
    /// positions and versions ending at its outcome's.
    fn recorded(
        &self,
        parts: &mut [Part],
        outcomes: &[AppendOutcome],
        recorded_at: i64,
    ) -> Option<Arc<[RecordedEvent]>> {
        let stored: usize = outcomes.iter().map(|o| o.appended).sum();
        let wakes = &self.wakes.appended;
        if wakes.receiver_count() == 0 || stored > HANDED_EVENTS || wakes.len() >= HANDED_QUEUED {
            return None;
        }
        let mut events = Vec::with_capacity(stored);
        for (part, outcome) in parts.iter_mut().zip(outcomes) {
            let Some(last) = outcome.last_position else {
                continue;
            };
            let n = part.batch.events.len();
            if n != outcome.appended {
                return None;
            }
            let (first, version) = (last - n as i64 + 1, outcome.stream_version - n as i64 + 1);
            for (i, e) in part.batch.events.drain(..).enumerate() {
                events.push(RecordedEvent {
                    position: first + i as i64,
                    event_id: e.event_id,
                    stream_id: part.stream.clone(),
                    stream_version: version + i as i64,
                    recorded_at,
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    metadata: e.kept.metadata,
                    event: e.kept.event,
                });
            }
        }
        Some(events.into())
    }

    /// Called by a command as it exits: waits until every append of this process is durable
    /// and leaves the database in its files alone (SQLite: the WAL copied in and emptied, if
    /// no other process is reading it).
    pub async fn close(&self) -> Result<(), StoreError> {
        self.backend.durable(i64::MAX).await?;
        self.backend.close().await
    }

    /// Seals the market trades older than `before` (ms since the Unix epoch) into segments
    /// ([`sealed`]), a window of positions at a time, each in its own transaction, calling
    /// `progress` with the totals after each. Every reader goes on reading them as before;
    /// each stream's newest trade stays a row. Run it again to seal what has aged since.
    pub async fn seal(
        &self,
        before: i64,
        mut progress: impl FnMut(Sealed),
    ) -> Result<Sealed, StoreError> {
        let mut total = Sealed::default();
        let mut from = 0;
        while let Some((next, sealed)) = self.backend.seal_window(from, before).await? {
            total += sealed;
            progress(total);
            from = next;
        }
        Ok(total)
    }

    /// What the log holds sealed: segments, trades and their blocks' bytes.
    pub async fn sealed(&self) -> Result<Sealed, StoreError> {
        self.backend.sealed().await
    }

    /// Gives the space sealed rows took back ([`Backend::compact`]): after a large
    /// [`Store::seal`]. SQLite rewrites the whole file, which needs as much free disk again
    /// and holds the write lock meanwhile.
    pub async fn compact(&self) -> Result<(), StoreError> {
        self.backend.compact().await
    }

    /// Reads `$all` from `from` (inclusive), at most `limit` events.
    pub async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        self.backend.read_all(from, limit).await
    }

    /// Reads a stream from version `from` (inclusive), at most `limit` events.
    pub async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.backend.read_stream(stream, from, limit).await
    }

    /// Reads a stream's events from version `from` (inclusive), at most `limit`, without their
    /// metadata: about half the work of [`Store::read_stream`], for replaying a market stream.
    pub async fn read_stream_events(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        self.backend.read_stream_events(stream, from, limit).await
    }

    /// Reads a market stream's trades in trade-id order, whatever order they were stored in:
    /// those with an id above `after` (every one when `None`), at most `limit`. Page on with the
    /// last one's id until a page is empty (a page may be short before the end). The market's
    /// own order, for replays and backtests.
    pub async fn read_trades(
        &self,
        stream: &StreamId,
        after: Option<u64>,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let Some(after) = trade_cursor(after) else {
            return Ok(Vec::new());
        };
        self.backend.read_trades(stream, after, limit).await
    }

    /// As [`Store::read_trades`], the trades alone with their places: the same pages (page on
    /// with the last one's trade id) without building an event around each trade.
    pub async fn read_placed_trades(
        &self,
        stream: &StreamId,
        after: Option<u64>,
        limit: i64,
    ) -> Result<Vec<PlacedTrade>, StoreError> {
        let Some(after) = trade_cursor(after) else {
            return Ok(Vec::new());
        };
        self.backend.read_placed_trades(stream, after, limit).await
    }

    /// Reads a whole stream (for rebuilding an aggregate).
    pub async fn read_stream_to_end(
        &self,
        stream: &StreamId,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut out = Vec::new();
        loop {
            let from = out
                .last()
                .map_or(1, |e: &RecordedEvent| e.stream_version + 1);
            let page = self.backend.read_stream(stream, from, PAGE_SIZE).await?;
            let done = (page.len() as i64) < PAGE_SIZE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// The stream's current version (0 when it has no events).
    pub async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        self.backend.stream_version(stream).await
    }

    /// The highest position this process knows to be committed and durable (its own appends,
    /// and others' it heard of), without asking the database: every event at or below it can
    /// be read.
    pub fn known_head(&self) -> i64 {
        *self.wakes.head.borrow()
    }

    /// The log's head for a subscriber's poll: asked of the database at most once every half
    /// poll interval for the whole process, and raised into [`Store::known_head`].
    async fn probe_head(&self, poll: Duration) -> Result<i64, StoreError> {
        let mut probed = self.wakes.probed.lock().await;
        let now = tokio::time::Instant::now();
        let head = match *probed {
            Some((at, head)) if now.duration_since(at) < poll / 2 => head,
            _ => {
                let head = self.backend.head_position().await?;
                *probed = Some((now, head));
                head
            }
        };
        self.wakes.raise_head(head);
        Ok(head)
    }

    /// The position of the last committed event (0 when the log is empty).
    pub async fn head_position(&self) -> Result<i64, StoreError> {
        self.backend.head_position().await
    }

    /// Where the earliest stored trade in market stream `stream` whose id is above `after` is
    /// (every trade when `None`): where a trading worker resumes deciding.
    pub async fn first_trade_after(
        &self,
        stream: &StreamId,
        after: Option<u64>,
    ) -> Result<Option<Place>, StoreError> {
        let after = match after.map(i64::try_from) {
            None => -1,
            Some(Ok(id)) => id,
            // No stored trade id can be above what the store cannot key.
            Some(Err(_)) => return Ok(None),
        };
        self.backend.first_trade_after(stream, after).await
    }

    /// Every symbol that has a `{prefix}-SYMBOL` stream (`trading`, `streaming`, ...), from the
    /// streams' metadata: as fast on a log of billions of events as on an empty one.
    pub async fn symbols_with(&self, prefix: &str) -> Result<Vec<Symbol>, StoreError> {
        Ok(self
            .stream_heads(&format!("{prefix}-"))
            .await?
            .into_iter()
            .filter_map(|head| head.stream.symbol_of(prefix))
            .collect())
    }

    /// Every stream with its version, in name order.
    pub async fn streams(&self) -> Result<Vec<(StreamId, i64)>, StoreError> {
        Ok(self
            .stream_heads("")
            .await?
            .into_iter()
            .map(|head| (head.stream, head.version))
            .collect())
    }

    /// The streams whose names start with `prefix` ("" for all), with their versions and last
    /// positions, in name order.
    pub async fn stream_heads(&self, prefix: &str) -> Result<Vec<StreamHead>, StoreError> {
        self.backend.stream_heads(prefix).await
    }

    /// Wakes its holder when a stream whose name starts with `prefix` may have been appended
    /// to: see [`StreamWatch::changed`].
    pub async fn watch_streams(&self, prefix: &str) -> Result<StreamWatch, StoreError> {
        let appended = self.wakes.appended.subscribe();
        self.backend
            .watch_foreign_appends(self.wakes.clone())
            .await?;
        Ok(StreamWatch {
            prefix: prefix.to_owned(),
            appended,
            poll: self.backend.poll_interval(),
            ignored: HashSet::new(),
        })
    }

    /// The events of a few streams, each after the version given (0: from its start), in the
    /// log's order, then those appended later as they commit, for as long as it is polled.
    ///
    /// What a reader of a few streams wants instead of `$all`: a symbol's trading worker
    /// follows its market trades and its trading stream, and reads nothing of the other
    /// symbols. It reads each stream along its (stream, version) key, and only when an append
    /// touched one of them (or every poll interval, for other processes' appends on SQLite),
    /// so its cost is that of its streams, not of the log.
    ///
    /// Order: every read is bounded by a position the process knows committed, and positions
    /// become visible in order, so the merge of the streams' pages up to that bound is the
    /// log's own order, never an event before one of a lower position in another followed
    /// stream.
    pub fn subscribe_streams(
        &self,
        after: Vec<(StreamId, i64)>,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        let store = self.clone();
        Box::pin(async_stream::try_stream! {
            let mut appended = store.wakes.appended.subscribe();
            store.backend.watch_foreign_appends(store.wakes.clone()).await?;
            let poll = store.backend.poll_interval();
            let mut next: Vec<(StreamId, i64)> =
                after.into_iter().map(|(s, v)| (s, v.saturating_add(1))).collect();
            // Appends of other processes that nothing announced (SQLite) are found by asking.
            let mut ask_head = true;
            loop {
                if ask_head {
                    store.probe_head(poll).await?;
                }
                // Everything up to `bound` is committed; a full page reaches only as far as
                // its last event, beyond which another stream's events may come first.
                let bound = store.known_head();
                let mut merged = Vec::new();
                let mut upto = bound;
                for (stream, from) in &next {
                    let page = store.backend.read_stream(stream, *from, PAGE_SIZE).await?;
                    if page.len() as i64 == PAGE_SIZE {
                        if let Some(last) = page.last() {
                            upto = upto.min(last.position);
                        }
                    }
                    merged.extend(page);
                }
                merged.retain(|e| e.position <= upto);
                merged.sort_unstable_by_key(|e| e.position);
                for event in merged {
                    follow(&mut next, &event);
                    yield event;
                }
                if upto < bound {
                    ask_head = false;
                    continue;
                }
                // Caught up: every event of the streams at or below `seen` has been given.
                // This process's appends that follow on from `seen` hand their events over;
                // anything else (a gap: another process's append, a missed message) is read.
                let mut seen = upto;
                // An append of another process that a message skipped over (not ours, so
                // not read then): the next poll reads.
                let mut gapped = false;
                let timeout = tokio::time::sleep(poll);
                tokio::pin!(timeout);
                ask_head = loop {
                    let heard = tokio::select! {
                        _ = &mut timeout => None,
                        heard = next_append(&mut appended) => Some(heard),
                    };
                    let Some(heard) = heard else {
                        // Another process's appends show as the head beyond what this
                        // process committed, or as a gap; one of this process's that was
                        // never announced, by its position. Without any, nothing to read.
                        let head = store.probe_head(poll).await?;
                        let (ours, unannounced) = store.wakes.committed_here();
                        if !gapped && head <= seen.max(ours) && unannounced <= seen {
                            timeout.as_mut().reset(tokio::time::Instant::now() + poll);
                            continue;
                        }
                        break false;
                    };
                    let Some(append) = heard else { break false };
                    let Some(streams) = &append.streams else { break false };
                    let ours = streams.iter().any(|s| next.iter().any(|(n, _)| n == s));
                    match append.span {
                        Some((_, last)) if last <= seen => {}
                        Some((first, last)) if first <= seen + 1 => {
                            if ours {
                                let Some(events) = &append.events else { break false };
                                let taken: Vec<&RecordedEvent> =
                                    events.iter().filter(|e| e.position > seen).collect();
                                if !continues(&next, &taken) {
                                    break false;
                                }
                                for event in taken {
                                    if follow(&mut next, event) {
                                        yield event.clone();
                                    }
                                }
                            }
                            seen = last;
                        }
                        // A gap: unless the append is ours, what it hides is read with the
                        // next one that is, or at the next poll.
                        _ if !ours => gapped = true,
                        _ => break false,
                    }
                };
            }
        })
    }

    /// Every event after `after` (exclusive; 0 for the beginning) in position order, then every
    /// event appended later, as it commits, for as long as the stream is polled.
    ///
    /// Catch-up reads pages; once caught up it waits for a wake-up (this process's own appends,
    /// PostgreSQL's NOTIFY) or, as a safety net, a slow poll for appends made by other processes.
    /// The global order is gap-free (see the module's invariants), so reading `position > last`
    /// never skips an event that commits late.
    pub fn subscribe_all(
        &self,
        after: i64,
    ) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
        use futures::{stream, StreamExt, TryStreamExt};
        self.subscribe_all_batches(after)
            .map_ok(|batch| stream::iter(batch.into_iter().map(Ok)))
            .try_flatten()
            .boxed()
    }

    /// [`Store::subscribe_all`] a page at a time: what a projector wants, since it writes one
    /// transaction per batch. Batches are never empty and follow each other without gaps.
    pub fn subscribe_all_batches(
        &self,
        after: i64,
    ) -> BoxStream<'static, Result<Vec<RecordedEvent>, StoreError>> {
        self.subscribe_pages(
            after,
            |backend, from| Box::pin(async move { backend.read_all(from, PAGE_SIZE).await }),
            |e| e.position,
        )
    }

    /// As [`Store::subscribe_all_batches`], with [`StreamEvent`]s: no event ids, times or
    /// correlation, for readers that need only what happened where (the projector).
    pub fn subscribe_all_events_batches(
        &self,
        after: i64,
    ) -> BoxStream<'static, Result<Vec<StreamEvent>, StoreError>> {
        self.subscribe_pages(
            after,
            |backend, from| Box::pin(async move { backend.read_all_events(from, PAGE_SIZE).await }),
            |e| e.position,
        )
    }

    /// `$all` after `after`, page by page, then live: `read` fetches a page from a position.
    fn subscribe_pages<T: Send + 'static>(
        &self,
        after: i64,
        read: PageReader<T>,
        position: fn(&T) -> i64,
    ) -> BoxStream<'static, Result<Vec<T>, StoreError>> {
        let store = self.clone();
        Box::pin(async_stream::try_stream! {
            let mut woken = store.wakes.head.subscribe();
            store.backend.watch_foreign_appends(store.wakes.clone()).await?;
            let poll = store.backend.poll_interval();
            let mut next = after.saturating_add(1);
            loop {
                woken.borrow_and_update();
                let mut page = read(Arc::clone(&store.backend), next).await?;
                if page.is_empty() {
                    tokio::select! {
                        changed = woken.changed() => { let _ = changed; }
                        _ = tokio::time::sleep(poll) => {}
                    }
                    continue;
                }
                // Catching up: fetch the next page while this one is consumed.
                while page.len() as i64 == PAGE_SIZE {
                    let from = position(&page[page.len() - 1]) + 1;
                    next = from;
                    let prefetch = tokio::spawn(read(Arc::clone(&store.backend), from));
                    yield page;
                    page = joined(prefetch.await)?;
                }
                if let Some(last) = page.last() {
                    next = position(last) + 1;
                    yield page;
                }
            }
        })
    }
}

/// What [`Store::watch_streams`] gives: a wake-up for appends to the streams of a prefix.
pub struct StreamWatch {
    prefix: String,
    appended: broadcast::Receiver<Appended>,
    poll: Duration,
    /// Streams whose appends do not concern the holder ([`StreamWatch::ignore`]).
    ignored: HashSet<StreamId>,
}

impl StreamWatch {
    /// Returns when a stream under the prefix may have moved: an append to one of them, an
    /// append to a stream not known (another process's, or after missed notifications), or
    /// the poll interval without news (SQLite does not hear other processes). The holder then
    /// reads [`Store::stream_heads`] and compares.
    pub async fn changed(&mut self) {
        let prefix = &self.prefix;
        let ignored = &self.ignored;
        wait_for(&mut self.appended, self.poll, |stream| {
            stream.as_str().starts_with(prefix.as_str()) && !ignored.contains(stream)
        })
        .await;
    }

    /// Appends to `stream` no longer wake the holder: one who only wants to hear of new
    /// streams (the engine, of a symbol traded for the first time) ignores those it knows.
    pub fn ignore(&mut self, stream: StreamId) {
        self.ignored.insert(stream);
    }
}

/// Moves a stream subscription's next version past `event` if it is of a followed stream;
/// true if it was.
fn follow(next: &mut [(StreamId, i64)], event: &RecordedEvent) -> bool {
    match next.iter_mut().find(|(s, _)| *s == event.stream_id) {
        Some((_, from)) => {
            *from = event.stream_version + 1;
            true
        }
        None => false,
    }
}

/// Whether handed events continue each followed stream exactly where it is (versions are
/// contiguous within an append, so its first event of each stream decides).
fn continues(next: &[(StreamId, i64)], events: &[&RecordedEvent]) -> bool {
    next.iter().all(|(stream, from)| {
        events
            .iter()
            .find(|e| e.stream_id == *stream)
            .is_none_or(|e| e.stream_version == *from)
    })
}

/// The next append announced; `None` when some were missed (the receiver lagged). Once the
/// store (which holds the sender) is gone nothing more comes, and it never returns.
async fn next_append(appended: &mut broadcast::Receiver<Appended>) -> Option<Appended> {
    match appended.recv().await {
        Ok(append) => Some(append),
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

/// Waits for an append to a stream `wanted` says yes to (or to one not known, or missed
/// ones); after `poll` without one, gives up. True when the wait timed out: what other
/// processes appended is then to be asked for.
async fn wait_for(
    appended: &mut broadcast::Receiver<Appended>,
    poll: Duration,
    wanted: impl Fn(&StreamId) -> bool,
) -> bool {
    let timeout = tokio::time::sleep(poll);
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            _ = &mut timeout => return true,
            heard = next_append(appended) => match heard {
                Some(Appended { streams: Some(streams), .. }) if !streams.iter().any(&wanted) => {}
                _ => return false,
            },
        }
    }
}

/// The store's clock: ms since the Unix epoch. Only metadata (`recorded_at`) uses it; events
/// carry their own times as data.
fn now_millis() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A database URL with any password replaced by `***`, for logs and messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{userinfo}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_validated() {
        assert!(StreamId::new("trading-BTCUSDT").is_ok());
        assert!(StreamId::new("").is_err());
        let err = StreamId::new("$all").unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        assert!(StreamId::new(&"x".repeat(201)).is_err());
        let sym = Symbol::parse("ethusdt").unwrap();
        assert_eq!(StreamId::trades(&sym).as_str(), "trades-ETHUSDT");
    }

    #[tokio::test]
    async fn an_in_memory_sqlite_store_is_refused_with_the_way_out() {
        let Err(err) = Store::open("sqlite::memory:").await else {
            panic!("an in-memory store opened")
        };
        assert!(matches!(err, StoreError::InMemory), "{err}");
        assert!(err.to_string().contains("sqlite://PATH"), "{err}");
    }

    #[tokio::test]
    async fn a_task_cancelled_by_shutdown_is_an_error_and_a_panic_stays_a_panic() {
        // What a runtime that shuts down does to a read or an append still queued on its
        // blocking pool.
        let queued = tokio::spawn(std::future::pending::<Result<(), StoreError>>());
        queued.abort();
        let err = joined(queued.await).unwrap_err();
        assert!(matches!(err, StoreError::ShuttingDown), "{err}");

        let panicked = tokio::spawn(async { panic!("the read's own bug") }).await;
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| joined::<()>(panicked)))
                .unwrap_err();
        assert_eq!(caught.downcast_ref::<&str>(), Some(&"the read's own bug"));
    }

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact_url("postgres://bob:s3cret@db.local:5432/hh?sslmode=disable"),
            "postgres://bob:***@db.local:5432/hh?sslmode=disable"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(redact_url("sqlite://hedgehog.db"), "sqlite://hedgehog.db");
    }
}
