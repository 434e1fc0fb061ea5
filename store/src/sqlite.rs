//! The embedded backend: one SQLite file in WAL mode, zero set-up.
//!
//! SQLite has a single writer at a time. Appends open their transaction with `BEGIN IMMEDIATE`
//! (taking the write lock up front, so two writers never deadlock upgrading a read lock) and
//! assign positions as max + 1 inside it: the global order is gap-free by construction. Within
//! one process a mutex queues writers, so they wait in line instead of spinning on `SQLITE_BUSY`;
//! across processes `busy_timeout` does the waiting. `synchronous = FULL` makes every commit
//! durable before `append` returns, which is what lets an acknowledged event survive `kill -9`
//! and a power cut alike.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Arguments, QueryBuilder, Sqlite};
use tokio::sync::watch;
use uuid::Uuid;

use super::checkpoint::WriteQueue;
use super::reader::Reader;
use super::{
    check_expected, AppendOutcome, Backend, ExpectedVersion, PreparedBatch, PreparedEvent,
    RecordedEvent, StoreError, StreamEvent, StreamId,
};

/// Rows per INSERT statement: 7 parameters each, far below SQLite's 32,766 limit.
// Statements of a full chunk are cached (sqlx prepares them once per connection); those of
// a partial chunk, whose SQL differs with every row count, are not: a cache of a hundred
// multi-row statements of assorted sizes per connection grew `run` by hundreds of MiB under load
// (BENCHMARKS.md, "Load").
const INSERT_ROWS: usize = 1_000;
/// The values bound per row of an INSERT chunk ([`insert_sql`]).
const ROW_VALUES: usize = 7;

/// The INSERT of a chunk of `rows` events.
///
/// Why this shape: everything bound per row (id, type, schema version, payload, correlation,
/// causation, trade id) is known before the write transaction, so [`chunk_rows`] binds it on
/// the producer's thread, ahead ([`crate::Store::prepare`]); only the four values that depend on
/// the log (the first position and version, less one, the stream and the time) are bound in the
/// transaction, after the rows, as numbered parameters. The rows come first in the text, in a
/// CTE, so that SQLite numbers their `?`s 1, 2, ... exactly as sqlx binds them; each row's
/// ordinal is a literal. Before this, building and copying 11 values a row on the writer's
/// path took a sixth of an append's time.
fn insert_sql(rows: usize) -> String {
    use std::fmt::Write;
    let mut sql = String::with_capacity(rows * 28 + 400);
    sql.push_str(
        "WITH r(o, event_id, event_type, schema_version, payload, correlation_id, causation_id, \
         trade_id) AS (VALUES ",
    );
    for i in 1..=rows {
        let sep = if i == 1 { "" } else { ", " };
        let _ = write!(sql, "{sep}({i}, ?, ?, ?, ?, ?, ?, ?)");
    }
    let c = rows * ROW_VALUES;
    let _ = write!(
        sql,
        ") INSERT INTO events (position, event_id, stream_id, stream_version, event_type, \
         schema_version, payload, recorded_at, correlation_id, causation_id, trade_id) \
         SELECT ?{} + o, event_id, ?{}, ?{} + o, event_type, schema_version, payload, ?{}, \
         correlation_id, causation_id, trade_id FROM r",
        c + 1,
        c + 2,
        c + 3,
        c + 4
    );
    sql
}

/// [`insert_sql`] of a full chunk, built once.
static FULL_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_sql(INSERT_ROWS));

/// A value sqlx could not bind.
fn encode(e: sqlx::error::BoxDynError) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(e))
}

/// The per-row values of every INSERT chunk of `events` ([`insert_sql`]).
fn chunk_rows(events: &[PreparedEvent]) -> Result<Vec<SqliteArguments<'static>>, StoreError> {
    events
        .chunks(INSERT_ROWS)
        .map(|chunk| {
            let mut args = SqliteArguments::default();
            args.reserve(chunk.len() * ROW_VALUES + 4, 0);
            for e in chunk {
                args.add(e.event_id).map_err(encode)?;
                args.add(e.event_type).map_err(encode)?;
                args.add(e.schema_version).map_err(encode)?;
                args.add(e.payload.clone()).map_err(encode)?;
                args.add(e.correlation_id).map_err(encode)?;
                args.add(e.causation_id).map_err(encode)?;
                args.add(e.trade_id).map_err(encode)?;
            }
            Ok(args)
        })
        .collect()
}

/// How long a connection waits for another process's lock before `SQLITE_BUSY`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Keys per `IN (...)` look-up.
const LOOKUP_KEYS: usize = 1_000;

pub(crate) struct SqliteBackend {
    pool: SqlitePool,
    /// Shared with read-model writers ([`crate::Database`]): one queue for every writer in the
    /// process.
    writer: WriteQueue,
    /// Reads of the log, on connections of their own.
    reader: Arc<Reader>,
}

/// Runs a read of the log on the blocking pool: a page is milliseconds of stepping and
/// decoding, too long to hold an async worker.
async fn off_runtime<T: Send + 'static>(
    read: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    crate::joined(tokio::task::spawn_blocking(read).await)
}

impl SqliteBackend {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            // 8 MiB a connection: the B-trees' inner pages fit, and a long scan (a backtest,
            // a rebuild) does not grow every pooled connection's cache to a large, cold copy
            // of the file; 64 MiB measured no faster and quadrupled the RSS of such scans.
            .pragma("cache_size", "-8192")
            .pragma("temp_store", "memory")
            // Checkpoints run beside the writers, not in their commits: see `checkpoint`.
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // sqlx's migrator takes no lock on SQLite, so two processes opening a fresh file at once
        // would both apply the first migration and one would fail. Holding the write lock
        // (BEGIN IMMEDIATE) across the whole check-and-apply makes the second wait, then find
        // the migrations applied. sqlx runs each migration as a savepoint inside it.
        {
            let mut conn = pool.acquire().await?;
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            sqlx::migrate!("../migrations/sqlite")
                .run_direct(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        let (_, _, file): (i64, String, String) = sqlx::query_as("PRAGMA database_list")
            .fetch_one(&pool)
            .await?;
        if file.is_empty() {
            return Err(StoreError::InMemory);
        }
        Ok(SqliteBackend {
            reader: Arc::new(Reader::new(file.into())),
            writer: WriteQueue::start(pool.clone()),
            pool,
        })
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn prepare(&self, batch: &mut PreparedBatch) -> Result<(), StoreError> {
        batch.sqlite_rows = chunk_rows(&batch.events)?;
        Ok(())
    }

    fn database(&self) -> crate::Database {
        crate::Database::Sqlite {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
        }
    }

    async fn try_append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &mut PreparedBatch,
        recorded_at: i64,
        look_up: bool,
    ) -> Result<AppendOutcome, StoreError> {
        let _turn = self.writer.turn().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut duplicates = 0;
        if look_up {
            let mut stored_ids = HashSet::new();
            for chunk in batch.events.chunks(LOOKUP_KEYS) {
                let mut q =
                    QueryBuilder::<Sqlite>::new("SELECT event_id FROM events WHERE event_id IN (");
                let mut list = q.separated(", ");
                for e in chunk {
                    list.push_bind(e.event_id);
                }
                q.push(")");
                stored_ids.extend(
                    q.build_query_scalar::<Uuid>()
                        .persistent(chunk.len() == LOOKUP_KEYS)
                        .fetch_all(&mut *tx)
                        .await?,
                );
            }
            let trade_ids: Vec<i64> = batch.events.iter().filter_map(|e| e.trade_id).collect();
            let mut stored_trades = HashSet::new();
            for chunk in trade_ids.chunks(LOOKUP_KEYS) {
                let mut q =
                    QueryBuilder::<Sqlite>::new("SELECT trade_id FROM events WHERE stream_id = ");
                q.push_bind(stream.as_str());
                q.push(" AND trade_id IN (");
                let mut list = q.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                q.push(")");
                stored_trades.extend(
                    q.build_query_scalar::<i64>()
                        .persistent(chunk.len() == LOOKUP_KEYS)
                        .fetch_all(&mut *tx)
                        .await?,
                );
            }
            duplicates = batch.drop_stored(&stored_ids, &stored_trades);
        }

        let actual: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?",
        )
        .bind(stream.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if batch.events.is_empty() {
            // Everything was stored already: a retry, which succeeds without writing.
            return Ok(AppendOutcome {
                appended: 0,
                duplicates,
                stream_version: actual,
                last_position: None,
            });
        }
        check_expected(stream, expected, actual)?;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&mut *tx)
            .await?;

        // The rows built ahead, unless this is the careful path (which may have dropped some)
        // or the batch came without them.
        let mut rows = std::mem::take(&mut batch.sqlite_rows);
        if look_up || rows.len() != batch.events.len().div_ceil(INSERT_ROWS) {
            rows = chunk_rows(&batch.events)?;
        }
        let mut offset = 0_i64;
        for (chunk, mut args) in batch.events.chunks(INSERT_ROWS).zip(rows) {
            args.add(head + offset).map_err(encode)?;
            args.add(stream.as_str().to_owned()).map_err(encode)?;
            args.add(actual + offset).map_err(encode)?;
            args.add(recorded_at).map_err(encode)?;
            let full = chunk.len() == INSERT_ROWS;
            let partial;
            let sql = if full {
                FULL_INSERT.as_str()
            } else {
                partial = insert_sql(chunk.len());
                partial.as_str()
            };
            sqlx::query_with(sql, args)
                .persistent(full)
                .execute(&mut *tx)
                .await?;
            offset += chunk.len() as i64;
        }
        tx.commit().await?;
        Ok(AppendOutcome {
            appended: batch.events.len(),
            duplicates,
            stream_version: actual + offset,
            last_position: Some(head + offset),
        })
    }

    async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let reader = Arc::clone(&self.reader);
        off_runtime(move || reader.all(from, limit)).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let (reader, stream) = (Arc::clone(&self.reader), stream.clone());
        off_runtime(move || reader.stream(&stream, from, limit)).await
    }

    async fn read_all_events(&self, from: i64, limit: i64) -> Result<Vec<StreamEvent>, StoreError> {
        let reader = Arc::clone(&self.reader);
        off_runtime(move || reader.all(from, limit)).await
    }

    async fn read_stream_events(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let (reader, stream) = (Arc::clone(&self.reader), stream.clone());
        off_runtime(move || reader.stream(&stream, from, limit)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?",
        )
        .bind(stream.as_str())
        .fetch_one(&self.pool)
        .await?)
    }

    async fn first_trade_after(
        &self,
        stream: &StreamId,
        after: i64,
    ) -> Result<Option<i64>, StoreError> {
        // The earliest *stored* of them, not the lowest id: a file may hold trades out of id
        // order. Ranges over the (stream_id, trade_id) index, short when the cursor is recent.
        // MIN over no rows is one row holding NULL: decoded as an Option, it is "none".
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT MIN(position) FROM events WHERE stream_id = ? AND trade_id > ?",
        )
        .bind(stream.as_str())
        .bind(after)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn streams(&self) -> Result<Vec<(StreamId, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT stream_id, MAX(stream_version) FROM events GROUP BY stream_id ORDER BY stream_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(s, v)| (StreamId(s.into()), v))
            .collect())
    }

    async fn watch_foreign_appends(&self, _head: watch::Sender<i64>) -> Result<(), StoreError> {
        // SQLite has no cross-process notification: this process's appends wake subscribers
        // directly, and the poll below catches appends made by other processes.
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(200)
    }
}
