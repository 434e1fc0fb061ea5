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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Statement, TransactionBehavior};

use super::durability::Durability;
use super::market_trade::TradeRow;
use super::sealed::{self, Sealed, Segment};
use super::segment::SealedTrade;
use super::sqlite::configure;
use super::{
    before_insert, trade_id_range, AppendOutcome, Part, PreparedEvent, StoreError, StreamId,
};
use uuid::Uuid;

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

/// Values bound per row of `market_trades`: trade id, price, quantity, form, trade time,
/// event lag, recorded lag, buyer and seller order ids, first trade id, event id
/// ([`bind_trade`]). The position, stream number and version are shared, as in [`insert_sql`].
const TRADE_VALUES: usize = 11;

/// The INSERT of `rows` trades into `market_trades`: [`insert_sql`]'s form for the other table.
fn trade_insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR ROLLBACK INTO market_trades (position, stream, version, trade_id, price, \
         quantity, form, trade_time, event_lag, recorded_lag, buyer_order_id, seller_order_id, \
         first_trade_id, event_id) VALUES ",
    );
    for k in 1..=rows {
        let p = 3 + (k - 1) * TRADE_VALUES;
        if k > 1 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?1 + {k}, ?2, ?3 + {k}"));
        for v in 1..=TRADE_VALUES {
            sql.push_str(&format!(", ?{}", p + v));
        }
        sql.push(')');
    }
    sql
}

static TRADE_CHUNK_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| trade_insert_sql(CHUNK_ROWS));
static TRADE_ROW_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| trade_insert_sql(1));

/// Binds the `row`th (from 0) trade of a `market_trades` statement.
fn bind_trade(
    insert: &mut Statement<'_>,
    index: usize,
    row: &TradeRow,
    recorded_at: i64,
) -> rusqlite::Result<()> {
    let first = 3 + index * TRADE_VALUES + 1;
    insert.raw_bind_parameter(first, row.trade_id)?;
    insert.raw_bind_parameter(first + 1, row.price)?;
    insert.raw_bind_parameter(first + 2, row.quantity)?;
    insert.raw_bind_parameter(first + 3, row.form)?;
    insert.raw_bind_parameter(first + 4, row.trade_time)?;
    insert.raw_bind_parameter(first + 5, row.event_lag)?;
    insert.raw_bind_parameter(first + 6, row.recorded_lag(recorded_at))?;
    insert.raw_bind_parameter(first + 7, row.buyer_order_id)?;
    insert.raw_bind_parameter(first + 8, row.seller_order_id)?;
    insert.raw_bind_parameter(first + 9, row.first_trade_id)?;
    insert.raw_bind_parameter(first + 10, blob(&row.event_id))
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
    conn: Mutex<Writer>,
    /// Syncs the WAL this connection's commits write.
    durability: Arc<Durability>,
}

/// The appender's connection and what it knows of `trade_streams`.
struct Writer {
    conn: Connection,
    /// Market streams' numbers, as committed ([`Numbers`]).
    numbers: HashMap<String, i64>,
}

/// The numbers of `trade_streams` an append uses: those committed before it and those it
/// assigns, which are kept only once it commits (a rolled-back number may be another
/// stream's next time).
struct Numbers<'a> {
    known: &'a HashMap<String, i64>,
    assigned: Vec<(String, i64)>,
}

impl Numbers<'_> {
    /// The stream's number, if it has one.
    fn find(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        stream: &str,
    ) -> rusqlite::Result<Option<i64>> {
        if let Some(n) = self.known.get(stream) {
            return Ok(Some(*n));
        }
        if let Some((_, n)) = self.assigned.iter().find(|(s, _)| s == stream) {
            return Ok(Some(*n));
        }
        let found: Option<i64> = tx
            .prepare_cached("SELECT number FROM trade_streams WHERE stream_id = ?1")?
            .query_row(params![stream], |row| row.get(0))
            .optional()?;
        if let Some(n) = found {
            self.assigned.push((stream.to_owned(), n));
        }
        Ok(found)
    }

    /// The stream's number, assigned if it has none.
    fn get(&mut self, tx: &rusqlite::Transaction<'_>, stream: &str) -> rusqlite::Result<i64> {
        if let Some(n) = self.find(tx, stream)? {
            return Ok(n);
        }
        tx.prepare_cached("INSERT INTO trade_streams (stream_id) VALUES (?1)")?
            .execute(params![stream])?;
        let n = tx.last_insert_rowid();
        self.assigned.push((stream.to_owned(), n));
        Ok(n)
    }
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
            conn: Mutex::new(Writer {
                conn,
                numbers: HashMap::new(),
            }),
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
        let mut writer = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Writer { conn, numbers } = &mut *writer;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut head: i64 = tx
            .prepare_cached(
                "SELECT MAX(COALESCE((SELECT MAX(position) FROM events), 0), \
                            COALESCE((SELECT MAX(position) FROM market_trades), 0))",
            )?
            .query_row([], |row| row.get(0))?;
        let mut assigned = Numbers {
            known: numbers,
            assigned: Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(parts.len());
        for part in parts.iter_mut() {
            let outcome = append_part(&tx, part, head, recorded_at, look_up, &mut assigned)?;
            head = outcome.last_position.unwrap_or(head);
            outcomes.push(outcome);
        }
        let assigned = assigned.assigned;
        self.durability.committing(head)?;
        let committed = tx.commit();
        self.durability.committed(committed.is_ok());
        committed?;
        numbers.extend(assigned);
        Ok(outcomes)
    }

    /// [`crate::Backend::seal_window`] on this connection: one transaction holding the write
    /// lock, which inserts the window's segments and deletes the rows they hold. Blocking:
    /// call it off the runtime, holding the writer queue's turn.
    pub(crate) fn seal_window(
        &self,
        from: i64,
        before: i64,
    ) -> Result<Option<(i64, Sealed)>, StoreError> {
        let mut writer = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = writer
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let start: Option<i64> = tx
            .prepare_cached(
                "SELECT MIN(position) FROM market_trades WHERE position >= ?1 AND trade_time < ?2",
            )?
            .query_row(params![from, before], |row| row.get(0))?;
        let Some(start) = start else {
            return Ok(None);
        };
        let end = start.saturating_add(sealed::WINDOW);
        let mut rows = Vec::new();
        {
            let mut select = tx.prepare_cached(&sealed::window_sql('?'))?;
            let mut stepped = select.query(params![start, end])?;
            while let Some(row) = stepped.next()? {
                let event_id = match row.get::<_, Option<Vec<u8>>>(13)? {
                    None => None,
                    Some(bytes) => {
                        Some(Uuid::from_slice(&bytes).map_err(|_| StoreError::Corrupt {
                            position: row.get(1).unwrap_or_default(),
                            column: "event_id",
                            value: format!("{bytes:?}"),
                        })?)
                    }
                };
                rows.push((
                    row.get::<_, i64>(0)?,
                    SealedTrade {
                        position: row.get(1)?,
                        version: row.get(2)?,
                        recorded_at: row.get(3)?,
                        row: TradeRow {
                            trade_id: row.get(4)?,
                            price: row.get(5)?,
                            quantity: row.get(6)?,
                            form: row.get(7)?,
                            trade_time: row.get(8)?,
                            event_lag: row.get(9)?,
                            buyer_order_id: row.get(10)?,
                            seller_order_id: row.get(11)?,
                            first_trade_id: row.get(12)?,
                            event_id,
                        },
                    },
                ));
            }
        }
        let (mut newest, mut names) = (HashMap::new(), HashMap::new());
        for (stream, _) in &rows {
            if newest.contains_key(stream) {
                continue;
            }
            let version: i64 = tx
                .prepare_cached("SELECT MAX(version) FROM market_trades WHERE stream = ?1")?
                .query_row(params![stream], |row| row.get(0))?;
            let name: String = tx
                .prepare_cached("SELECT stream_id FROM trade_streams WHERE number = ?1")?
                .query_row(params![stream], |row| row.get(0))?;
            newest.insert(*stream, version);
            names.insert(*stream, StreamId::new(&name)?);
        }
        let mut done = Sealed::default();
        for segment in sealed::plan(rows, &newest, before, &names) {
            let i = &segment.info;
            tx.prepare_cached(&sealed::insert_sql('?'))?
                .execute(params![
                    segment.stream,
                    i.first_position,
                    i.last_position,
                    i.first_version,
                    i.last_version,
                    i.min_trade_id,
                    i.max_trade_id,
                    i.trades,
                    i64::from(segment.checksum),
                    segment.block,
                ])?;
            let deleted = tx
                .prepare_cached(
                    "DELETE FROM market_trades WHERE stream = ?1 AND version BETWEEN ?2 AND ?3",
                )?
                .execute(params![segment.stream, i.first_version, i.last_version])?;
            done += segment.sealed_by(deleted as u64)?;
        }
        tx.commit()?;
        Ok(Some((end, done)))
    }
}

/// Inserts one part after position `head`, inside the append's transaction: its trades that
/// are rows ([`PreparedEvent::trade`]) into `market_trades`, the rest into `events`, each at
/// its place in the batch's order.
fn append_part(
    tx: &rusqlite::Transaction<'_>,
    part: &mut Part,
    head: i64,
    recorded_at: i64,
    mut look_up: bool,
    numbers: &mut Numbers<'_>,
) -> Result<AppendOutcome, StoreError> {
    let Part {
        stream,
        expected,
        batch,
    } = part;
    let name = stream.as_str();
    let rows = batch.events.iter().any(|e| e.trade.is_some());
    let number = if rows {
        Some(numbers.get(tx, name)?)
    } else {
        numbers.find(tx, name)?
    };
    // A trade key is unique within each table; across them the fast path checks here that
    // the batch's trades are not in the other one (a log written before trades had rows,
    // or a trade kept as JSON for its metadata), and looks them up if they may be.
    if !look_up {
        look_up = overlaps(tx, name, number, &batch.events)?;
    }
    let mut duplicates = 0;
    if look_up {
        let mut stored_ids = HashSet::new();
        let mut stored_trades = HashSet::new();
        {
            let mut by_id = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events WHERE event_id = ?1) \
                     OR EXISTS (SELECT 1 FROM market_trades WHERE event_id = ?1)",
            )?;
            let mut by_trade = tx.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events WHERE stream_id = ?1 AND trade_id = ?2) \
                     OR EXISTS (SELECT 1 FROM market_trades WHERE stream = ?3 AND trade_id = ?2)",
            )?;
            for e in &batch.events {
                if by_id.query_row(params![&e.event_id.as_bytes()[..]], |row| row.get(0))? {
                    stored_ids.insert(e.event_id);
                }
                if let Some(trade) = e.trade_id {
                    if by_trade.query_row(params![name, trade, number], |row| row.get(0))? {
                        stored_trades.insert(trade);
                    }
                }
            }
        }
        // Then the segments (after the rows: a seal between the two moves rows, not loses them).
        let (sealed_trades, sealed_ids) = sealed_keys(tx, number, &batch.events)?;
        for e in &batch.events {
            if sealed_ids.contains(&e.event_id) {
                stored_ids.insert(e.event_id);
            }
            if let Some(trade) = e.trade_id.filter(|t| sealed_trades.contains(t)) {
                stored_trades.insert(trade);
            }
        }
        duplicates = batch.drop_stored(&stored_ids, &stored_trades);
    }

    let actual: i64 = tx
        .prepare_cached(
            "SELECT MAX(COALESCE((SELECT MAX(stream_version) FROM events WHERE stream_id = ?1), 0), \
                        COALESCE((SELECT MAX(version) FROM market_trades WHERE stream = ?2), 0))",
        )?
        .query_row(params![name, number], |row| row.get(0))?;
    if let Some(retried) = before_insert(stream, *expected, batch, actual, duplicates)? {
        return Ok(retried);
    }

    // Runs of the batch that go to one table, each inserted at its offset in the batch.
    let mut offset = 0;
    for run in batch
        .events
        .chunk_by(|a, b| a.trade.is_some() == b.trade.is_some())
    {
        let before = (head + offset, actual + offset);
        match number.filter(|_| run[0].trade.is_some()) {
            Some(number) => insert_trades(tx, run, before, number, recorded_at)?,
            None => insert_events(tx, run, before, name, recorded_at)?,
        }
        offset += run.len() as i64;
    }
    let appended = batch.events.len();
    tx.prepare_cached(UPSERT_STREAM)?.execute(params![
        name,
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

/// Whether any trade of `events` may be stored already in the table it is not going to: one
/// probe of each table's trade key over the batch's range of trade ids.
fn overlaps(
    tx: &rusqlite::Transaction<'_>,
    stream: &str,
    number: Option<i64>,
    events: &[PreparedEvent],
) -> Result<bool, StoreError> {
    let range = |rows: bool| {
        let ids = events
            .iter()
            .filter(|e| e.trade.is_some() == rows)
            .filter_map(|e| e.trade_id);
        ids.clone().min().zip(ids.max())
    };
    if let Some((low, high)) = range(true) {
        let found: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM events \
                 WHERE stream_id = ?1 AND trade_id BETWEEN ?2 AND ?3)",
            )?
            .query_row(params![stream, low, high], |row| row.get(0))?;
        if found {
            return Ok(true);
        }
    }
    if let (Some((low, high)), Some(number)) = (range(false), number) {
        let found: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM market_trades \
                 WHERE stream = ?1 AND trade_id BETWEEN ?2 AND ?3)",
            )?
            .query_row(params![number, low, high], |row| row.get(0))?;
        if found {
            return Ok(true);
        }
    }
    // And in neither table: sealed.
    if let (Some((low, high)), Some(number)) = (trade_id_range(events), number) {
        let found: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM trade_segments \
                 WHERE stream = ?1 AND max_trade_id >= ?2 AND min_trade_id <= ?3)",
            )?
            .query_row(params![number, low, high], |row| row.get(0))?;
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The trade ids and event ids of the sealed trades of stream `number` whose trade ids meet
/// the range of `events`' ([`sealed::keys_of`]).
fn sealed_keys(
    tx: &rusqlite::Transaction<'_>,
    number: Option<i64>,
    events: &[PreparedEvent],
) -> Result<(HashSet<i64>, HashSet<Uuid>), StoreError> {
    let (Some(number), Some((low, high))) = (number, trade_id_range(events)) else {
        return Ok(Default::default());
    };
    let mut select = tx.prepare_cached(&sealed::overlapping_sql('?'))?;
    let mut rows = select.query(params![number, low, high])?;
    let mut overlapping = Vec::new();
    while let Some(row) = rows.next()? {
        let segment = Segment::from_row((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
            row.get(7)?,
            row.get(8)?,
        ));
        overlapping.push((segment, row.get(9)?, row.get(10)?));
    }
    sealed::keys_of(overlapping)
}

/// Inserts `run` into `events` after `(position, version)`.
fn insert_events(
    tx: &rusqlite::Transaction<'_>,
    run: &[PreparedEvent],
    before: (i64, i64),
    stream: &str,
    recorded_at: i64,
) -> Result<(), StoreError> {
    insert_run(
        tx,
        run,
        before,
        (&CHUNK_INSERT, &ROW_INSERT),
        |statement, before| bind_statement(statement, before, stream, recorded_at),
        bind_event,
    )
}

/// Inserts `run` (every one a trade row) into `market_trades` after `(position, version)`.
fn insert_trades(
    tx: &rusqlite::Transaction<'_>,
    run: &[PreparedEvent],
    before: (i64, i64),
    number: i64,
    recorded_at: i64,
) -> Result<(), StoreError> {
    insert_run(
        tx,
        run,
        before,
        (&TRADE_CHUNK_INSERT, &TRADE_ROW_INSERT),
        |statement, (position, version)| {
            statement.raw_bind_parameter(1, position)?;
            statement.raw_bind_parameter(2, number)?;
            statement.raw_bind_parameter(3, version)
        },
        |statement, index, e| match &e.trade {
            Some(row) => bind_trade(statement, index, row, recorded_at),
            None => Ok(()),
        },
    )
}

/// Inserts `run` after `(position, version)`: full chunks of [`CHUNK_ROWS`] with the first
/// statement of `sql`, then the rest one row a statement with the second (two statements to
/// keep). `shared` binds what a statement's rows share, from the position and version before
/// its first row; `row` binds its `i`th row.
fn insert_run(
    tx: &rusqlite::Transaction<'_>,
    run: &[PreparedEvent],
    (position, version): (i64, i64),
    (chunk_sql, row_sql): (&str, &str),
    shared: impl Fn(&mut Statement<'_>, (i64, i64)) -> rusqlite::Result<()>,
    row: impl Fn(&mut Statement<'_>, usize, &PreparedEvent) -> rusqlite::Result<()>,
) -> Result<(), StoreError> {
    let (full, rest) = run.split_at(run.len() - run.len() % CHUNK_ROWS);
    let mut offset = 0_i64;
    let mut insert = |statement: &mut Statement<'_>, rows: &[PreparedEvent]| {
        shared(statement, (position + offset, version + offset))?;
        for (i, e) in rows.iter().enumerate() {
            row(statement, i, e)?;
        }
        statement.raw_execute()?;
        offset += rows.len() as i64;
        Ok::<_, rusqlite::Error>(())
    };
    if !full.is_empty() {
        let mut statement = tx.prepare_cached(chunk_sql)?;
        for rows in full.chunks(CHUNK_ROWS) {
            insert(&mut statement, rows)?;
        }
    }
    if !rest.is_empty() {
        let mut statement = tx.prepare_cached(row_sql)?;
        for one in rest.chunks(1) {
            insert(&mut statement, one)?;
        }
    }
    Ok(())
}
