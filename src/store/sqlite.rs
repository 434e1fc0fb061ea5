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
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Sqlite};
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use super::{
    check_expected, decode_row, AppendOutcome, Backend, ExpectedVersion, PreparedBatch,
    RecordedEvent, StoreError, StreamId,
};

/// Rows per INSERT statement: 11 parameters each, far below SQLite's 32,766 limit.
const INSERT_ROWS: usize = 1_000;
/// Keys per `IN (...)` look-up.
const LOOKUP_KEYS: usize = 1_000;

const SELECT_COLUMNS: &str = "SELECT position, event_id, stream_id, stream_version, event_type, \
     schema_version, payload, recorded_at, correlation_id, causation_id FROM events";

type Row = (
    i64,
    Uuid,
    String,
    i64,
    String,
    i32,
    String,
    i64,
    Option<Uuid>,
    Option<Uuid>,
);

pub(crate) struct SqliteBackend {
    pool: SqlitePool,
    write_lock: Mutex<()>,
}

impl SqliteBackend {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory")
            // Rows cross from sqlx's worker thread in a channel; a deep one lets the worker run
            // ahead instead of handing over (and context-switching) every few rows.
            .row_buffer_size(8_192);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(SqliteBackend {
            pool,
            write_lock: Mutex::new(()),
        })
    }

    /// One attempt at an append in one write transaction; with `look_up`, events already
    /// stored are found and dropped first.
    async fn try_append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        batch: &mut PreparedBatch,
        look_up: bool,
    ) -> Result<AppendOutcome, StoreError> {
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
                stored_ids.extend(q.build_query_scalar::<Uuid>().fetch_all(&mut *tx).await?);
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
                stored_trades.extend(q.build_query_scalar::<i64>().fetch_all(&mut *tx).await?);
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

        let recorded_at = batch.recorded_at;
        let mut offset = 0_i64;
        for chunk in batch.events.chunks(INSERT_ROWS) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (position, event_id, stream_id, stream_version, event_type, \
                 schema_version, payload, recorded_at, correlation_id, causation_id, trade_id) ",
            );
            q.push_values(chunk, |mut row, e| {
                offset += 1;
                row.push_bind(head + offset)
                    .push_bind(e.event_id)
                    .push_bind(stream.as_str())
                    .push_bind(actual + offset)
                    .push_bind(e.event_type)
                    .push_bind(e.schema_version)
                    .push_bind(e.payload.as_str())
                    .push_bind(recorded_at)
                    .push_bind(e.correlation_id)
                    .push_bind(e.causation_id)
                    .push_bind(e.trade_id);
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(AppendOutcome {
            appended: batch.events.len(),
            duplicates,
            stream_version: actual + offset,
            last_position: Some(head + offset),
        })
    }
}

fn decode(row: Row) -> Result<RecordedEvent, StoreError> {
    let (pos, id, stream, version, ty, schema, payload, at, corr, cause) = row;
    decode_row(
        pos, id, &stream, version, &ty, schema, &payload, at, corr, cause,
    )
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn append(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut batch: PreparedBatch,
    ) -> Result<AppendOutcome, StoreError> {
        let _writer = self.write_lock.lock().await;
        // Fast path: assume every event is new and let the UNIQUE indexes do the probing.
        // A duplicate (or a version mismatch, which may be a retry of a stored batch) sends us
        // to the careful path, which looks the keys up first.
        match self.try_append(stream, expected, &mut batch, false).await {
            Err(e) if e.is_conflict() || e.is_unique_violation() => {}
            done => return done,
        }
        self.try_append(stream, expected, &mut batch, true).await
    }

    async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!("{SELECT_COLUMNS} WHERE position >= ? ORDER BY position LIMIT ?");
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(from)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(decode).collect()
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "{SELECT_COLUMNS} WHERE stream_id = ? AND stream_version >= ? \
             ORDER BY stream_version LIMIT ?"
        );
        let rows: Vec<Row> = sqlx::query_as(&sql)
            .bind(stream.as_str())
            .bind(from)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(decode).collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?",
        )
        .bind(stream.as_str())
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
