//! SQLite's appends to the log, on one read-write connection of their own (rusqlite).
//!
//! Why: through sqlx, every statement of an append was a round trip to the connection's worker
//! thread (acquire, `BEGIN`, two `SELECT`s, the INSERT chunks, `COMMIT`), each a thread wake-up
//! that a busy two-core machine served late: `BEGIN IMMEDIATE` alone averaged a millisecond of a
//! 1,000-event append's eight. Here the whole transaction runs on one blocking thread, with
//! statements prepared once and kept, so an append costs one hop off the runtime and back
//! (BENCHMARKS.md, session 9: a third faster on a RAM disk, where only CPU counts).
//!
//! Only appends use it; the process's [`crate::checkpoint::WriteQueue`] still orders it with the
//! read-model writers (on sqlx), and `busy_timeout` with other processes.
//!
//! It commits with `synchronous = NORMAL`: the commit writes the WAL without syncing it, and
//! [`Durability`] syncs it beside the writers; appends are acknowledged only after that.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, Statement, TransactionBehavior};

use super::durability::Durability;
use super::sqlite::configure;
use super::{before_insert, AppendOutcome, Part, PreparedEvent, StoreError};

/// Values bound once per statement: the position and version before its first row, the stream,
/// the time ([`bind_statement`]).
const SHARED_VALUES: usize = 4;
/// Values bound per row: id, type, schema version, payload, correlation, causation, trade id,
/// metadata ([`bind_event`]).
const ROW_VALUES: usize = 8;
/// Rows per multi-row INSERT: 4,004 values, within SQLite's 32,766. One statement inserting 500
/// rows spent a third less time than 500 runs of a one-row statement (each run opens cursors on
/// the table and its three indexes and seeks them from the root again).
const CHUNK_ROWS: usize = 500;

/// The INSERT of `rows` events. Row k (from 1) takes position `?1 + k` and version `?3 + k`,
/// and shares the stream `?2` and time `?4`: binding those once, not per row, spares SQLite a
/// copy of the stream's name per event.
///
/// `OR ROLLBACK`: a UNIQUE violation (a duplicate, for the careful path to sort out) ends the
/// whole transaction, which is what the append does with it anyway; so SQLite keeps no
/// statement journal to undo the statement alone (a copy of every page it touches).
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR ROLLBACK INTO events (position, event_id, stream_id, stream_version, event_type, \
         schema_version, payload, recorded_at, correlation_id, causation_id, trade_id, metadata) \
         VALUES ",
    );
    for k in 1..=rows {
        let p = SHARED_VALUES + (k - 1) * ROW_VALUES;
        if k > 1 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(?1 + {k}, ?{}, ?2, ?3 + {k}, ?{}, ?{}, ?{}, ?4, ?{}, ?{}, ?{}, ?{})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8
        ));
    }
    sql
}

/// Keeps the stream's row of `streams` (its version and last position) with the append, in its
/// transaction: one statement a batch, not a trigger a row.
pub(crate) const UPSERT_STREAM: &str =
    "INSERT INTO streams (stream_id, version, last_position) VALUES (?1, ?2, ?3) \
     ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
     last_position = excluded.last_position";

/// The INSERT of [`CHUNK_ROWS`] events, built once; a batch's remainder uses the one-row form.
static CHUNK_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| insert_sql(CHUNK_ROWS));
static ROW_INSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| insert_sql(1));

/// Binds what a statement's rows share: the log's position and the stream's version before the
/// first row, the stream and the time.
fn bind_statement(
    insert: &mut Statement<'_>,
    (position, version): (i64, i64),
    stream: &str,
    recorded_at: i64,
) -> rusqlite::Result<()> {
    insert.raw_bind_parameter(1, position)?;
    insert.raw_bind_parameter(2, stream)?;
    insert.raw_bind_parameter(3, version)?;
    insert.raw_bind_parameter(4, recorded_at)
}

fn blob(id: &Option<uuid::Uuid>) -> Option<&[u8]> {
    id.as_ref().map(|id| &id.as_bytes()[..])
}

/// Binds the `row`th (from 0) event of a statement.
fn bind_event(insert: &mut Statement<'_>, row: usize, e: &PreparedEvent) -> rusqlite::Result<()> {
    let first = SHARED_VALUES + row * ROW_VALUES + 1;
    insert.raw_bind_parameter(first, &e.event_id.as_bytes()[..])?;
    insert.raw_bind_parameter(first + 1, e.event_type)?;
    insert.raw_bind_parameter(first + 2, e.schema_version)?;
    insert.raw_bind_parameter(first + 3, &e.payload)?;
    insert.raw_bind_parameter(first + 4, blob(&e.correlation_id))?;
    insert.raw_bind_parameter(first + 5, blob(&e.causation_id))?;
    insert.raw_bind_parameter(first + 6, e.trade_id)?;
    insert.raw_bind_parameter(first + 7, e.metadata.as_deref())
}

pub(crate) struct Appender {
    /// Never contended: appends hold the writer queue's turn. (A rusqlite connection is not
    /// `Sync`; the mutex makes the backend so.)
    conn: Mutex<Connection>,
    /// Syncs the WAL this connection's commits write.
    durability: Arc<Durability>,
}

impl Appender {
    /// Opens the writer's connection to the (migrated) database file at `path`, whose WAL
    /// `durability` syncs.
    pub(crate) fn open(path: &Path, durability: Arc<Durability>) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        // Commits write the WAL; `durability` syncs it (see the module's docs).
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Appender {
            conn: Mutex::new(conn),
            durability,
        })
    }

    /// One attempt at an atomic append of several streams' batches ([`crate::Backend::try_append`]):
    /// one transaction, committed, not yet durable ([`Durability::wait`] for the last
    /// position). Blocking: call it off the runtime, holding the writer queue's turn.
    pub(crate) fn append(
        &self,
        parts: &mut [Part],
        recorded_at: i64,
        look_up: bool,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut head: i64 = tx
            .prepare_cached("SELECT MAX(position) FROM events")?
            .query_row([], |row| row.get::<_, Option<i64>>(0))?
            .unwrap_or(0);
        let mut outcomes = Vec::with_capacity(parts.len());
        for part in parts.iter_mut() {
            let outcome = append_part(&tx, part, head, recorded_at, look_up)?;
            head = outcome.last_position.unwrap_or(head);
            outcomes.push(outcome);
        }
        self.durability.committing(head)?;
        let committed = tx.commit();
        self.durability.committed(committed.is_ok());
        committed?;
        Ok(outcomes)
    }
}

/// Inserts one part after position `head`, inside the append's transaction.
fn append_part(
    tx: &rusqlite::Transaction<'_>,
    part: &mut Part,
    head: i64,
    recorded_at: i64,
    look_up: bool,
) -> Result<AppendOutcome, StoreError> {
    let Part {
        stream,
        expected,
        batch,
    } = part;
    let mut duplicates = 0;
    if look_up {
        let mut stored_ids = HashSet::new();
        let mut stored_trades = HashSet::new();
        {
            let mut by_id = tx.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?;
            let mut by_trade =
                tx.prepare_cached("SELECT 1 FROM events WHERE stream_id = ?1 AND trade_id = ?2")?;
            for e in &batch.events {
                if by_id.exists(params![&e.event_id.as_bytes()[..]])? {
                    stored_ids.insert(e.event_id);
                }
                if let Some(trade) = e.trade_id {
                    if by_trade.exists(params![stream.as_str(), trade])? {
                        stored_trades.insert(trade);
                    }
                }
            }
        }
        duplicates = batch.drop_stored(&stored_ids, &stored_trades);
    }

    let actual: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = ?1")?
        .query_row(params![stream.as_str()], |row| row.get(0))?;
    if let Some(retried) = before_insert(stream, *expected, batch, actual, duplicates)? {
        return Ok(retried);
    }

    // Full chunks of CHUNK_ROWS, then the rest one row a statement: two statements to keep.
    let (full, rest) = batch
        .events
        .split_at(batch.events.len() - batch.events.len() % CHUNK_ROWS);
    let mut offset = 0_i64;
    let mut insert = |statement: &mut Statement<'_>, rows: &[PreparedEvent]| {
        let before = (head + offset, actual + offset);
        bind_statement(statement, before, stream.as_str(), recorded_at)?;
        for (row, e) in rows.iter().enumerate() {
            bind_event(statement, row, e)?;
        }
        statement.raw_execute()?;
        offset += rows.len() as i64;
        Ok::<_, rusqlite::Error>(())
    };
    if !full.is_empty() {
        let mut statement = tx.prepare_cached(&CHUNK_INSERT)?;
        for rows in full.chunks(CHUNK_ROWS) {
            insert(&mut statement, rows)?;
        }
    }
    if !rest.is_empty() {
        let mut statement = tx.prepare_cached(&ROW_INSERT)?;
        for row in rest.chunks(1) {
            insert(&mut statement, row)?;
        }
    }
    let appended = batch.events.len();
    tx.prepare_cached(UPSERT_STREAM)?.execute(params![
        stream.as_str(),
        actual + appended as i64,
        head + appended as i64
    ])?;
    Ok(AppendOutcome {
        appended,
        duplicates,
        stream_version: actual + appended as i64,
        last_position: Some(head + appended as i64),
    })
}
