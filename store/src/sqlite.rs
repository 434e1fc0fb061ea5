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
use tokio::sync::{watch, Mutex};
use uuid::Uuid;

use super::checkpoint::WalCheckpointer;
use super::{
    check_expected, decode_event, decode_row, AppendOutcome, Backend, ExpectedVersion,
    PreparedBatch, PreparedEvent, RecordedEvent, StoreError, StreamEvent, StreamId,
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

/// The per-row values of every INSERT chunk of `events` ([`insert_sql`]).
fn chunk_rows(events: &[PreparedEvent]) -> Result<Vec<SqliteArguments<'static>>, StoreError> {
    let encode = |e| StoreError::Database(sqlx::Error::Encode(e));
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

/// Keys per `IN (...)` look-up.
const LOOKUP_KEYS: usize = 1_000;

/// Separates the fields of one packed event (ASCII unit separator).
const FIELD: char = '\u{1f}';
/// Separates packed events (ASCII record separator).
const RECORD: char = '\u{1e}';

/// A query that returns a whole page of events as one text value.
///
/// Why: sqlx's SQLite driver copies every column of every row on its worker thread and hands
/// rows over one by one; for a log read in pages of thousands, that per-row toll cost ten times
/// SQLite's own work. Packing the page in SQL makes it one value, and the decoding then runs on
/// every core. The separators are control characters, which cannot occur in any packed field:
/// JSON escapes them inside strings, stream ids refuse them (`StreamId::new`), and the other
/// fields are numbers, hex or our own type names. `concat_ws` builds each record in one pass (a
/// chain of `||` copied the growing string nine times); it skips NULLs *and* empty strings,
/// so an absent id is written as `-` to keep the field count fixed.
///
/// The aggregate's order is unspecified in SQL (an `ORDER BY` inside it made SQLite copy every
/// record into a sorter), so [`unpack_page`] sorts by position, which is also version order
/// within a stream: both are assigned increasing under the write lock.
fn packed_page(filter: &str) -> String {
    format!(
        "SELECT group_concat(concat_ws(char(31), \
            position, hex(event_id), stream_id, stream_version, event_type, schema_version, \
            recorded_at, iif(correlation_id IS NULL, '-', hex(correlation_id)), \
            iif(causation_id IS NULL, '-', hex(causation_id)), \
            payload), char(30)) \
         FROM (SELECT * FROM events {filter})"
    )
}

/// The pages of `$all` and of one stream, for [`packed_page`] and [`slim_page`].
const ALL_PAGE: &str = "WHERE position >= ? ORDER BY position LIMIT ?";
const STREAM_PAGE: &str =
    "WHERE stream_id = ? AND stream_version >= ? ORDER BY stream_version LIMIT ?";

impl SqliteBackend {
    /// Runs a packed page query (`stream` binds first when the page is a stream's).
    async fn page(
        &self,
        sql: &str,
        stream: Option<&StreamId>,
        from: i64,
        limit: i64,
    ) -> Result<Option<String>, StoreError> {
        let query = sqlx::query_scalar(sql);
        let query = match stream {
            Some(stream) => query.bind(stream.as_str()),
            None => query,
        };
        Ok(query.bind(from).bind(limit).fetch_one(&self.pool).await?)
    }
}

/// Decodes a page on the blocking pool (a large page is milliseconds of CPU, too long to hold an
/// async worker), small pages in place.
async fn unpack_off_runtime(page: Option<String>) -> Result<Vec<RecordedEvent>, StoreError> {
    match page {
        Some(p) if p.len() >= PARALLEL_DECODE * 64 => {
            tokio::task::spawn_blocking(move || unpack_page(Some(p)))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }
        small => unpack_page(small),
    }
}

/// Pages at least this large are decoded on every core.
const PARALLEL_DECODE: usize = 256;

fn unpack_page(page: Option<String>) -> Result<Vec<RecordedEvent>, StoreError> {
    use rayon::prelude::*;
    let Some(page) = page else {
        return Ok(Vec::new());
    };
    let records: Vec<&str> = page.split(RECORD).collect();
    let mut events: Vec<RecordedEvent> = if records.len() >= PARALLEL_DECODE {
        records
            .into_par_iter()
            .map(unpack)
            .collect::<Result<_, _>>()?
    } else {
        records.into_iter().map(unpack).collect::<Result<_, _>>()?
    };
    events.sort_by_key(|e| e.position);
    Ok(events)
}

/// [`packed_page`] with six columns instead of ten: no ids to hex and parse back, about half
/// of SQLite's work and less of ours.
fn slim_page(filter: &str) -> String {
    format!(
        "SELECT group_concat(concat_ws(char(31), \
            position, stream_id, stream_version, event_type, schema_version, payload), char(30)) \
         FROM (SELECT position, stream_id, stream_version, event_type, schema_version, payload \
               FROM events {filter})"
    )
}

async fn unpack_events_off_runtime(page: Option<String>) -> Result<Vec<StreamEvent>, StoreError> {
    match page {
        Some(p) if p.len() >= PARALLEL_DECODE * 64 => {
            tokio::task::spawn_blocking(move || unpack_events(&p))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }
        Some(p) => unpack_events(&p),
        None => Ok(Vec::new()),
    }
}

/// Decodes a [`slim_page`], in log order.
fn unpack_events(page: &str) -> Result<Vec<StreamEvent>, StoreError> {
    use rayon::prelude::*;
    let records: Vec<&str> = page.split(RECORD).collect();
    let one = |record: &str| -> Result<StreamEvent, StoreError> {
        let mut f = record.splitn(6, FIELD);
        let mut next = |column: &'static str| {
            f.next().ok_or_else(|| StoreError::Corrupt {
                position: 0,
                column,
                value: record.chars().take(80).collect(),
            })
        };
        let (position, stream, version, ty, schema, payload) = (
            next("position")?,
            next("stream_id")?,
            next("stream_version")?,
            next("event_type")?,
            next("schema_version")?,
            next("payload")?,
        );
        let position: i64 = parse(0, "position", position)?;
        Ok(StreamEvent {
            position,
            stream_id: StreamId(stream.into()),
            stream_version: parse(position, "stream_version", version)?,
            event: decode_event(
                position,
                ty,
                parse(position, "schema_version", schema)?,
                payload,
            )?,
        })
    };
    let mut events: Vec<StreamEvent> = if records.len() >= PARALLEL_DECODE {
        records.into_par_iter().map(one).collect::<Result<_, _>>()?
    } else {
        records.into_iter().map(one).collect::<Result<_, _>>()?
    };
    events.sort_by_key(|e| e.position);
    Ok(events)
}

fn unpack(record: &str) -> Result<RecordedEvent, StoreError> {
    let mut f = record.splitn(10, FIELD);
    let mut next = |column: &'static str| {
        f.next().ok_or_else(|| StoreError::Corrupt {
            position: 0,
            column,
            value: record.chars().take(80).collect(),
        })
    };
    let position_text = next("position")?;
    let (id, stream, version, ty, schema, at, corr, cause, payload) = (
        next("event_id")?,
        next("stream_id")?,
        next("stream_version")?,
        next("event_type")?,
        next("schema_version")?,
        next("recorded_at")?,
        next("correlation_id")?,
        next("causation_id")?,
        next("payload")?,
    );
    let position: i64 = parse(0, "position", position_text)?;
    let uuid = |column, text: &str| {
        Uuid::try_parse(text).map_err(|_| StoreError::Corrupt {
            position,
            column,
            value: text.to_owned(),
        })
    };
    let optional = |column, text: &str| {
        if text == "-" {
            Ok(None)
        } else {
            uuid(column, text).map(Some)
        }
    };
    decode_row(
        position,
        uuid("event_id", id)?,
        stream,
        parse(position, "stream_version", version)?,
        ty,
        parse(position, "schema_version", schema)?,
        payload,
        parse(position, "recorded_at", at)?,
        optional("correlation_id", corr)?,
        optional("causation_id", cause)?,
    )
}

fn parse<T: std::str::FromStr>(
    position: i64,
    column: &'static str,
    text: &str,
) -> Result<T, StoreError> {
    text.parse().map_err(|_| StoreError::Corrupt {
        position,
        column,
        value: text.to_owned(),
    })
}

pub(crate) struct SqliteBackend {
    pool: SqlitePool,
    /// Shared with read-model writers ([`crate::Database`]): one queue for every writer in the
    /// process.
    write_lock: Arc<Mutex<()>>,
    checkpointer: WalCheckpointer,
}

impl SqliteBackend {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
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
        let write_lock = Arc::new(Mutex::new(()));
        Ok(SqliteBackend {
            checkpointer: WalCheckpointer::start(pool.clone(), Arc::clone(&write_lock)),
            pool,
            write_lock,
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
            write_lock: Arc::clone(&self.write_lock),
            checkpointer: self.checkpointer.clone(),
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
        let _writer = self.write_lock.lock().await;
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
        let encode = |e| StoreError::Database(sqlx::Error::Encode(e));
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
        self.checkpointer.committed();
        Ok(AppendOutcome {
            appended: batch.events.len(),
            duplicates,
            stream_version: actual + offset,
            last_position: Some(head + offset),
        })
    }

    async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        let page = self.page(&packed_page(ALL_PAGE), None, from, limit).await?;
        unpack_off_runtime(page).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let page = self
            .page(&packed_page(STREAM_PAGE), Some(stream), from, limit)
            .await?;
        unpack_off_runtime(page).await
    }

    async fn read_all_events(&self, from: i64, limit: i64) -> Result<Vec<StreamEvent>, StoreError> {
        let page = self.page(&slim_page(ALL_PAGE), None, from, limit).await?;
        unpack_events_off_runtime(page).await
    }

    async fn read_stream_events(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let page = self
            .page(&slim_page(STREAM_PAGE), Some(stream), from, limit)
            .await?;
        unpack_events_off_runtime(page).await
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
