//! The embedded backend: one SQLite file in WAL mode, zero set-up.
//!
//! SQLite has a single writer at a time. Appends open their transaction with `BEGIN IMMEDIATE`
//! (taking the write lock up front, so two writers never deadlock upgrading a read lock) and
//! assign positions as max + 1 inside it: the global order is gap-free by construction. Within
//! one process a mutex queues writers, so they wait in line instead of spinning on `SQLITE_BUSY`;
//! across processes `busy_timeout` does the waiting. `synchronous = FULL` makes every commit
//! durable before `append` returns, which is what lets an acknowledged event survive `kill -9`
//! and a power cut alike.
//!
//! Appends run on a rusqlite connection of their own ([`crate::appender`]), reads on read-only
//! ones ([`crate::reader`]); migrations, the read models and the checkpointer use sqlx's pool.
//! The appender's commits are synced by [`crate::durability`], off the write lock: the append
//! returns once its commit is synced, but the next writer need not wait for the disk.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::appender::Appender;
use super::checkpoint::WriteQueue;
use super::durability::Durability;
use super::reader::Reader;
use super::sealed::{self, Along, Sealed, Segment};
use super::{
    AppendOutcome, Backend, Part, Place, RecordedEvent, StoreError, StreamEvent, StreamHead,
    StreamId, Wakes,
};

/// How long a connection waits for another process's lock before `SQLITE_BUSY`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings of every connection to the file, sqlx's and rusqlite's alike ([`configure`]):
/// one list, so that no connection misses one (the appender's first version lacked
/// `temp_store`, and spilled its statement journals to a file).
const PRAGMAS: [(&str, &str); 4] = [
    // Every commit durable before it returns (see the module's docs). The appender alone
    // commits with NORMAL and syncs the WAL itself (`durability`).
    ("synchronous", "FULL"),
    // 8 MiB a connection: the B-trees' inner pages fit, and a long scan (a backtest, a
    // rebuild) does not grow every connection's cache to a large, cold copy of the file; 64 MiB
    // measured no faster and quadrupled the RSS of such scans.
    ("cache_size", "-8192"),
    // Temporary storage (statement journals, sorts) in memory, never in a file.
    ("temp_store", "MEMORY"),
    // Checkpoints run beside the writers, not in their commits: see `checkpoint`.
    ("wal_autocheckpoint", "0"),
];

/// Applies [`BUSY_TIMEOUT`] and [`PRAGMAS`] to a rusqlite connection, as the pool's have them.
pub(crate) fn configure(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    for (name, value) in PRAGMAS {
        conn.pragma_update(None, name, value)?;
    }
    Ok(())
}

pub(crate) struct SqliteBackend {
    pool: SqlitePool,
    /// Shared with read-model writers ([`crate::Database`]): one queue for every writer in the
    /// process.
    writer: WriteQueue,
    /// Appends to the log, on a connection of its own.
    appender: Arc<Appender>,
    /// Reads of the log, on connections of their own.
    reader: Arc<Reader>,
    /// Syncs the appender's commits.
    durability: Arc<Durability>,
}

/// Runs a read or an append of the log on the blocking pool: a page or a batch is
/// milliseconds of SQLite's work, too long to hold an async worker.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    crate::joined(tokio::task::spawn_blocking(work).await)
}

impl SqliteBackend {
    /// Opens (creating and migrating if need be) the store at `url`.
    ///
    /// Several processes opening a fresh file at once contend for it while it is created and
    /// switched to WAL, and SQLite answers some of those moments "database is locked" at once,
    /// without waiting in its busy handler (a journal-mode change, a WAL recovery). So an open
    /// that meets a busy database starts again after a short pause, until [`BUSY_TIMEOUT`].
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            match Self::try_open(url).await {
                Err(e) if e.is_busy() && started.elapsed() < BUSY_TIMEOUT => {
                    tracing::debug!(error = %e, "the store is busy being opened; trying again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(250));
                }
                opened => return opened,
            }
        }
    }

    async fn try_open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        let options = PRAGMAS.iter().fold(options, |options, &(name, value)| {
            options.pragma(name, value)
        });
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // sqlx's migrator takes no lock on SQLite, so two processes opening a fresh file at once
        // would both apply the first migration and one would fail. Holding the write lock
        // (BEGIN IMMEDIATE) across the whole check-and-apply makes the second wait, then find
        // the migrations applied. sqlx runs each migration as a savepoint inside it.
        let migrator = sqlx::migrate!("../migrations/sqlite");
        // A database already at this build's schema (every open but the first after an
        // upgrade) is checked with a read, without the write lock: a command that only reads
        // (`status`, `cluster status`) never queues behind busy engines' writes.
        if !up_to_date(&pool, &migrator).await {
            let mut conn = pool.acquire().await?;
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            migrator
                .run_direct(&mut *tx)
                .await
                .map_err(|e| crate::migration_failed(e, &migrator))?;
            tx.commit().await?;
        }
        let (_, _, file): (i64, String, String) = sqlx::query_as("PRAGMA database_list")
            .fetch_one(&pool)
            .await?;
        if file.is_empty() {
            return Err(StoreError::InMemory);
        }
        let file = std::path::PathBuf::from(file);
        let durability = Arc::new(Durability::start(&file)?);
        Ok(SqliteBackend {
            appender: Arc::new(Appender::open(&file, Arc::clone(&durability))?),
            reader: Arc::new(Reader::new(file, Arc::clone(&durability))),
            durability,
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

    fn stores_trade_rows(&self) -> bool {
        true
    }

    fn database(&self) -> crate::Database {
        crate::Database::Sqlite {
            pool: self.pool.clone(),
            writer: self.writer.clone(),
        }
    }

    async fn try_append(
        &self,
        parts: &mut [Part],
        recorded_at: i64,
        look_up: bool,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let _turn = self.writer.turn().await;
        let appender = Arc::clone(&self.appender);
        let mut owned: Vec<Part> = parts
            .iter_mut()
            .map(|p| Part {
                stream: p.stream.clone(),
                expected: p.expected,
                batch: std::mem::take(&mut p.batch),
            })
            .collect();
        let (back, outcome) = off_runtime(move || {
            let outcome = appender.append(&mut owned, recorded_at, look_up);
            Ok((owned, outcome))
        })
        .await?;
        for (part, back) in parts.iter_mut().zip(back) {
            part.batch = back.batch;
        }
        outcome
    }

    async fn close(&self) -> Result<(), StoreError> {
        // This process's own readers first: an idle connection holds no snapshot, but the
        // checkpointer or a page still being read may, for a moment.
        self.reader.close_idle();
        for _ in 0..20 {
            if crate::checkpoint::truncate(&self.pool, &self.writer.lock).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::debug!("the WAL is left as it is at exit: another reader is on it");
        Ok(())
    }

    async fn durable(&self, last: i64) -> Result<(), StoreError> {
        self.durability.wait(last).await
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

    async fn read_trades(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        let (reader, stream) = (Arc::clone(&self.reader), stream.clone());
        off_runtime(move || reader.trades(&stream, after, limit)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = ?")
                .bind(stream.as_str())
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    async fn first_trade_after(
        &self,
        stream: &StreamId,
        after: i64,
    ) -> Result<Option<Place>, StoreError> {
        // The earliest *stored* of them, not the lowest id: a file may hold trades out of id
        // order. Ranges over the (stream_id, trade_id) index, short when the cursor is recent.
        // MIN over no rows is one row holding NULLs: decoded as Options, it is "none". Versions
        // rise with positions along a stream, so both minima are the same row's.
        // Both tables hold trades: the earlier of their minima.
        let (position, version) = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
            "SELECT MIN(position), MIN(version) FROM ( \
                 SELECT MIN(position) AS position, MIN(stream_version) AS version FROM events \
                 WHERE stream_id = ?1 AND trade_id > ?2 \
                 UNION ALL \
                 SELECT MIN(position), MIN(version) FROM market_trades \
                 WHERE stream = (SELECT number FROM trade_streams WHERE stream_id = ?1) \
                   AND trade_id > ?2)",
        )
        .bind(stream.as_str())
        .bind(after)
        .fetch_one(&self.pool)
        .await?;
        Ok(position
            .zip(version)
            .map(|(position, version)| Place { position, version }))
    }

    async fn head_position(&self) -> Result<i64, StoreError> {
        let head: i64 = sqlx::query_scalar(
            "SELECT MAX(COALESCE((SELECT MAX(position) FROM events), 0), \
                        COALESCE((SELECT MAX(position) FROM market_trades), 0))",
        )
        .fetch_one(&self.pool)
        .await?;
        // As a reader's page: not beyond what is synced (asked after the read).
        Ok(self.durability.visible().map_or(head, |cap| head.min(cap)))
    }

    async fn stream_heads(&self, prefix: &str) -> Result<Vec<StreamHead>, StoreError> {
        let (low, high) = crate::prefix_range(prefix);
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, version, last_position FROM streams \
             WHERE stream_id >= ? AND stream_id < ? ORDER BY stream_id",
        )
        .bind(low)
        .bind(high)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StreamHead::from_row).collect())
    }

    async fn watch_foreign_appends(&self, _wakes: Wakes) -> Result<(), StoreError> {
        // SQLite has no cross-process notification: this process's appends wake subscribers
        // directly, and the poll below catches appends made by other processes.
        Ok(())
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(200)
    }

    async fn segments(
        &self,
        along: &Along,
        from: i64,
        to: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<Segment>, StoreError> {
        sealed::segments_from!(&self.pool, '?', along, from, to, after, limit)
    }

    async fn segment_block(&self, id: i64) -> Result<(Vec<u8>, i64), StoreError> {
        Ok(
            sqlx::query_as("SELECT block, checksum FROM trade_segments WHERE id = ?")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn seal_window(
        &self,
        from: i64,
        before: i64,
    ) -> Result<Option<(i64, Sealed)>, StoreError> {
        let _turn = self.writer.turn().await;
        // Only what is on disk is sealed: a reader must not find in a segment a trade its
        // page of the tables stops before, for not being synced yet ([`Durability::visible`]).
        // No commit can come between: this holds the writers' turn.
        self.durability.wait(i64::MAX).await?;
        let appender = Arc::clone(&self.appender);
        off_runtime(move || appender.seal_window(from, before)).await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        let _turn = self.writer.turn().await;
        self.reader.close_idle();
        sqlx::query("VACUUM").execute(&self.pool).await?;
        Ok(())
    }

    async fn sealed(&self) -> Result<Sealed, StoreError> {
        let row = sqlx::query_as(&sealed::totals_sql("length"))
            .fetch_one(&self.pool)
            .await?;
        Ok(Sealed::from_row(row))
    }
}

/// Whether the database holds exactly the migrations `migrator` knows, each with its checksum
/// (a read; any doubt, such as no migrations table yet, answers false and the caller migrates
/// under the write lock, which also names a newer schema).
async fn up_to_date(pool: &SqlitePool, migrator: &sqlx::migrate::Migrator) -> bool {
    let applied: Result<Vec<(i64, Vec<u8>, bool)>, _> =
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await;
    let Ok(applied) = applied else {
        return false;
    };
    let known: Vec<(i64, &[u8])> = migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| (m.version, &*m.checksum))
        .collect();
    applied.len() == known.len()
        && applied
            .iter()
            .zip(&known)
            .all(|((v, sum, ok), (kv, ksum))| *ok && v == kv && sum.as_slice() == *ksum)
}
