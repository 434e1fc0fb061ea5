//! SQLite's reads of the log, on read-only connections of their own (rusqlite).
//!
//! Why: sqlx's SQLite driver copies every column of every row on its worker thread and hands rows
//! over one by one, ten times SQLite's own work for a log read in pages of thousands. The reads
//! packed a page in SQL (`group_concat`) to dodge that, but then SQLite spent most of a read
//! building, growing and copying the page's text (half the samples were `memmove`, hex and
//! number formatting). Here a page is stepped through rusqlite, which borrows each value from
//! SQLite's own memory: the few bytes of a row are copied once into an arena, in chunks, and
//! each chunk is decoded on the rayon pool while the next one is stepped, so stepping and
//! decoding run on both cores at once.
//!
//! Appends have a connection of their own (`appender`), everything else stays on sqlx; these
//! connections only `SELECT`, each one in its own snapshot (WAL mode), and see every commit made
//! before the statement starts, which is all a subscriber woken by a commit needs. A page stops
//! before any event this process has committed but not yet synced ([`Durability::visible`]).

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use uuid::Uuid;

use super::durability::Durability;
use super::market_trade::{self, TradeRow};
use super::sqlite::configure;
use super::{decode_event, RecordedEvent, StoreError, StreamEvent, StreamId};

/// Rows stepped before their chunk is handed to the decoders.
const CHUNK: usize = 1_000;
/// Pages of `$all` of at least twice this many rows are read in two halves at once.
const SPLIT_ROWS: i64 = 4 * CHUNK as i64;
/// Idle connections kept for the next read.
const KEEP: usize = 4;

/// The columns every page reads, of `events` and of `market_trades` (store/src/market_trade.rs),
/// in one layout so that a page merges both: 0 position, 1 stream name (events) or 2 its
/// number (trades), 3 version, 4-6 type, schema and JSON (events), 7 trade id (both), 8-15
/// the trade's columns (trades). [`Page::FULL`] pages add 16 event id, 17 recorded time,
/// 18-20 correlation, causation, metadata.
const EVENTS_SLIM: &str = "SELECT position, stream_id, NULL, stream_version, event_type, \
     schema_version, payload, trade_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL";
const TRADES_SLIM: &str = "SELECT position, NULL, stream, version, NULL, NULL, NULL, \
     trade_id, price, quantity, form, trade_time, event_lag, buyer_order_id, seller_order_id, \
     first_trade_id";
const EVENTS_FULL: &str =
    ", event_id, recorded_at, correlation_id, causation_id, metadata FROM events";
const TRADES_FULL: &str =
    ", event_id, trade_time + recorded_lag, NULL, NULL, NULL FROM market_trades";

/// A page's merge of both tables: `filter` on `events`, `trades` on `market_trades` (?3, the
/// stream's name, is numbered there), ordered by the `order`th column.
fn page_sql<T: Page>(events: &str, trades: &str, order: usize) -> String {
    let (e, t) = if T::FULL {
        (EVENTS_FULL, TRADES_FULL)
    } else {
        (" FROM events", " FROM market_trades")
    };
    format!(
        "{EVENTS_SLIM}{e} WHERE {events} UNION ALL {TRADES_SLIM}{t} WHERE {trades} \
         ORDER BY {order} LIMIT ?2"
    )
}

/// `stream`'s number in `market_trades`' filters.
const NUMBER: &str = "(SELECT number FROM trade_streams WHERE stream_id = ?3)";

pub(crate) struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// The names of `trade_streams`' numbers, as pages have met them ([`Names`]).
    names: RwLock<HashMap<i64, Arc<str>>>,
    /// What the appender has synced: pages stop before the rest.
    durability: Arc<Durability>,
}

/// What is read of an event: the metadata of a [`RecordedEvent`] or none of it.
pub(crate) trait Page: Sized + Send + 'static {
    /// Whether the page reads the metadata (ids, time, correlation).
    const FULL: bool;
    fn position(&self) -> i64;
    fn decode(row: &RawRow, arena: &[u8], stream: &Stream) -> Result<Self, StoreError>;
}

/// A row's stream, shared by the rows of a chunk that have it, with the symbol of its trades
/// when it is a market stream.
pub(crate) struct Stream {
    id: StreamId,
    symbol: Option<hedgehog_domain::Symbol>,
}

/// What a row holds: an event of `events` (its type, schema and JSON in the arena) or a trade
/// of `market_trades`.
enum Body {
    Json {
        event_type: Range<usize>,
        schema: i64,
        payload: Range<usize>,
    },
    Trade(TradeRow),
}

/// One row as stepped: numbers inline, text as ranges of the chunk's arena.
pub(crate) struct RawRow {
    position: i64,
    stream: Range<usize>,
    version: i64,
    body: Body,
    /// A trade's own id when it is not the derived one; every other event's id.
    event_id: Option<[u8; 16]>,
    recorded_at: i64,
    correlation: Option<[u8; 16]>,
    causation: Option<[u8; 16]>,
    /// The metadata column's JSON, in the arena; `None` when NULL.
    metadata: Option<Range<usize>>,
}

impl Page for RecordedEvent {
    const FULL: bool = true;
    fn position(&self) -> i64 {
        self.position
    }
    fn decode(row: &RawRow, arena: &[u8], stream: &Stream) -> Result<Self, StoreError> {
        let event = event(row, arena, stream)?;
        let event_id = match (&row.event_id, &event) {
            (Some(id), _) => Uuid::from_bytes(*id),
            (None, hedgehog_domain::Event::TradeReceived(trade)) => {
                crate::trade_event_id(&stream.id, trade)
            }
            (None, _) => {
                return Err(StoreError::Corrupt {
                    position: row.position,
                    column: "event_id",
                    value: "NULL".into(),
                })
            }
        };
        Ok(RecordedEvent {
            position: row.position,
            event_id,
            stream_id: stream.id.clone(),
            stream_version: row.version,
            recorded_at: row.recorded_at,
            correlation_id: row.correlation.map(Uuid::from_bytes),
            causation_id: row.causation.map(Uuid::from_bytes),
            metadata: match &row.metadata {
                None => crate::Metadata::new(),
                Some(range) => crate::decode_metadata(
                    row.position,
                    Some(text(arena, range, row.position, "metadata")?),
                )?,
            },
            event,
        })
    }
}

impl Page for StreamEvent {
    const FULL: bool = false;
    fn position(&self) -> i64 {
        self.position
    }
    fn decode(row: &RawRow, arena: &[u8], stream: &Stream) -> Result<Self, StoreError> {
        Ok(StreamEvent {
            position: row.position,
            stream_id: stream.id.clone(),
            stream_version: row.version,
            event: event(row, arena, stream)?,
        })
    }
}

fn event(
    row: &RawRow,
    arena: &[u8],
    stream: &Stream,
) -> Result<hedgehog_domain::Event, StoreError> {
    match &row.body {
        Body::Json {
            event_type,
            schema,
            payload,
        } => {
            let schema = i32::try_from(*schema).map_err(|_| StoreError::Corrupt {
                position: row.position,
                column: "schema_version",
                value: schema.to_string(),
            })?;
            decode_event(
                row.position,
                text(arena, event_type, row.position, "event_type")?,
                schema,
                text(arena, payload, row.position, "payload")?,
            )
        }
        Body::Trade(trade) => {
            let symbol = stream.symbol.clone().ok_or_else(|| StoreError::Corrupt {
                position: row.position,
                column: "stream",
                value: stream.id.to_string(),
            })?;
            Ok(hedgehog_domain::Event::TradeReceived(
                trade.trade(symbol, row.position)?,
            ))
        }
    }
}

fn text<'a>(
    arena: &'a [u8],
    range: &Range<usize>,
    position: i64,
    column: &'static str,
) -> Result<&'a str, StoreError> {
    let bytes = &arena[range.clone()];
    std::str::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
        position,
        column,
        value: String::from_utf8_lossy(bytes).chars().take(80).collect(),
    })
}

impl Reader {
    pub(crate) fn new(path: PathBuf, durability: Arc<Durability>) -> Self {
        Reader {
            path,
            idle: Mutex::new(Vec::new()),
            names: RwLock::new(HashMap::new()),
            durability,
        }
    }

    /// Closes the idle connections (a process about to exit).
    pub(crate) fn close_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        configure(&conn)?;
        Ok(conn)
    }

    /// `$all` from `from` (inclusive), at most `limit` events. Blocking: call off the runtime.
    ///
    /// A run of the log with no row of `events` (an import, a busy market between two
    /// decisions) is read from `market_trades` alone: the merge of both tables steps each row
    /// through a coroutine, and copies it, at a third of a page's cost. Both statements read
    /// in one transaction, one snapshot: an event committed between them cannot be skipped.
    pub(crate) fn all<T: Page>(&self, from: i64, limit: i64) -> Result<Vec<T>, StoreError> {
        // A long page is read as two halves at once, on two connections: stepping rows is
        // most of a page's cost, on one core. Positions are gap-free but for sealed trades,
        // so the first half is [from, mid) or, with gaps, what follows `from`; if it is short
        // (the head is in it), the second half, read in a later snapshot perhaps, is dropped
        // rather than risk a gap.
        if limit >= 2 * SPLIT_ROWS {
            let mid = from + limit / 2;
            let (first, second) = rayon::join(
                || self.all_run::<T>(from, mid - from),
                || self.all_run::<T>(mid, limit - (mid - from)),
            );
            let mut page = first?;
            // A full first half goes on with the second; a short one holds the head. Past
            // `mid`, when sealed trades left gaps in the tables before it, the rest is read
            // after it instead: a page is short only at the head.
            if page.len() as i64 == mid - from {
                match page.last().map(Page::position) {
                    Some(last) if last == mid - 1 => page.extend(second?),
                    Some(last) => {
                        let rest = limit - page.len() as i64;
                        page.extend(self.all_run::<T>(last + 1, rest)?);
                    }
                    None => {}
                }
            }
            return Ok(page);
        }
        self.all_run(from, limit)
    }

    /// [`Reader::all`] on one connection.
    fn all_run<T: Page>(&self, from: i64, limit: i64) -> Result<Vec<T>, StoreError> {
        self.with_connection(|conn| {
            let tx = conn.unchecked_transaction()?;
            let next_event: Option<i64> = tx
                .prepare_cached("SELECT MIN(position) FROM events WHERE position >= ?1")?
                .query_row([from], |row| row.get(0))?;
            let mut page = Vec::new();
            if next_event.is_none_or(|next| next > from) {
                let sql = trades_only_sql::<T>();
                let until = Bound::Int(next_event.unwrap_or(i64::MAX));
                page = read_page::<T>(&tx, &sql, from, limit, until, &self.names)?;
            }
            let left = limit - page.len() as i64;
            if let (Some(next), true) = (next_event, left > 0) {
                let sql = page_sql::<T>("position >= ?1", "position >= ?1", 1);
                page.extend(read_page::<T>(
                    &tx,
                    &sql,
                    next,
                    left,
                    Bound::None,
                    &self.names,
                )?);
            }
            tx.finish()?;
            Ok(page)
        })
    }

    /// A stream from version `from` (inclusive), at most `limit` events. Blocking.
    pub(crate) fn stream<T: Page>(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<T>, StoreError> {
        let sql = page_sql::<T>(
            "stream_id = ?3 AND stream_version >= ?1",
            &format!("stream = {NUMBER} AND version >= ?1"),
            4,
        );
        self.read(&sql, from, limit, Some(stream))
    }

    /// A market stream's trades with ids above `after`, in trade-id order. Blocking.
    pub(crate) fn trades<T: Page>(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<T>, StoreError> {
        // Along each table's trade key: `trade_id > ?1` implies `trade_id IS NOT NULL`.
        let sql = page_sql::<T>(
            "stream_id = ?3 AND trade_id > ?1",
            &format!("stream = {NUMBER} AND trade_id > ?1"),
            8,
        );
        self.read(&sql, after, limit, Some(stream))
    }

    fn read<T: Page>(
        &self,
        sql: &str,
        from: i64,
        limit: i64,
        stream: Option<&StreamId>,
    ) -> Result<Vec<T>, StoreError> {
        let third = match stream {
            Some(s) => Bound::Text(s.as_str()),
            None => Bound::None,
        };
        self.with_connection(|conn| read_page::<T>(conn, sql, from, limit, third, &self.names))
    }

    /// Runs `read` on an idle connection (or a new one) and caps what it read at what is synced.
    fn with_connection<T: Page>(
        &self,
        read: impl FnOnce(&Connection) -> Result<Vec<T>, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = match self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let mut out = read(&conn);
        // Asked after the read, so any commit whose rows it saw shows here if still unsynced.
        // The page ends before its first hidden row (positions rise along a page of $all or of
        // one stream's versions; along trade ids they need not, and a reader paging on from
        // the last trade it got must not skip one).
        if let (Ok(page), Some(cap)) = (&mut out, self.durability.visible()) {
            let keep = page
                .iter()
                .position(|e| e.position() > cap)
                .unwrap_or(page.len());
            page.truncate(keep);
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < KEEP {
            idle.push(conn);
        }
        out
    }
}

/// The names of `trade_streams`' numbers a page's rows need: found in the reader's map, or
/// read on the page's connection (in its snapshot, which holds every number its rows use).
struct Names<'a> {
    conn: &'a Connection,
    shared: &'a RwLock<HashMap<i64, Arc<str>>>,
    local: HashMap<i64, Arc<str>>,
}

impl Names<'_> {
    fn get(&mut self, number: i64, position: i64) -> Result<Arc<str>, StoreError> {
        if let Some(name) = self.local.get(&number) {
            return Ok(Arc::clone(name));
        }
        let known = self
            .shared
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&number)
            .cloned();
        let name = match known {
            Some(name) => name,
            None => {
                let name: Option<String> = self
                    .conn
                    .prepare_cached("SELECT stream_id FROM trade_streams WHERE number = ?1")?
                    .query_row([number], |row| row.get(0))
                    .optional()?;
                let name: Arc<str> = name
                    .ok_or_else(|| StoreError::Corrupt {
                        position,
                        column: "stream",
                        value: number.to_string(),
                    })?
                    .into();
                self.shared
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(number, Arc::clone(&name));
                name
            }
        };
        self.local.insert(number, Arc::clone(&name));
        Ok(name)
    }
}

/// A page statement's third value, if it has one: a stream's name, or where a run ends.
#[derive(Clone, Copy)]
enum Bound<'a> {
    None,
    Text(&'a str),
    Int(i64),
}

/// `$all` from `?1` below `?3`, `?2` rows at most, from `market_trades` alone.
fn trades_only_sql<T: Page>() -> String {
    let t = if T::FULL {
        TRADES_FULL
    } else {
        " FROM market_trades"
    };
    format!("{TRADES_SLIM}{t} WHERE position >= ?1 AND position < ?3 ORDER BY position LIMIT ?2")
}

/// Steps the page's rows a chunk at a time and decodes each chunk on the rayon pool meanwhile.
fn read_page<T: Page>(
    conn: &Connection,
    sql: &str,
    from: i64,
    limit: i64,
    third: Bound<'_>,
    names: &RwLock<HashMap<i64, Arc<str>>>,
) -> Result<Vec<T>, StoreError> {
    let mut names = Names {
        conn,
        shared: names,
        local: HashMap::new(),
    };
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = match third {
        Bound::Text(s) => statement.query(rusqlite::params![from, limit, s])?,
        Bound::Int(i) => statement.query(rusqlite::params![from, limit, i])?,
        Bound::None => statement.query(rusqlite::params![from, limit])?,
    };
    let (done, results) = std::sync::mpsc::channel();
    let mut chunks = 0;
    // The last, short chunk (the whole of a live tail's small page) is decoded here: nothing is
    // left to step meanwhile, so a hop to the pool would only add latency.
    let mut tail = None;
    let stepped: Result<(), StoreError> = rayon::in_place_scope(|scope| loop {
        let mut arena = Vec::with_capacity(CHUNK * 160);
        let mut raw = Vec::with_capacity(CHUNK);
        while raw.len() < CHUNK {
            let Some(row) = rows.next()? else { break };
            raw.push(step::<T>(row, &mut arena, &mut names)?);
        }
        if raw.len() < CHUNK {
            if !raw.is_empty() {
                tail = Some((chunks, decode_chunk::<T>(&raw, &arena)));
            }
            return Ok(());
        }
        let done = done.clone();
        let index = chunks;
        chunks += 1;
        scope.spawn(move |_| {
            let _ = done.send((index, decode_chunk::<T>(&raw, &arena)));
        });
    });
    stepped?;
    drop(done);
    let mut decoded: Vec<(usize, Result<Vec<T>, StoreError>)> =
        results.into_iter().chain(tail).collect();
    decoded.sort_by_key(|(index, _)| *index);
    let mut out = Vec::with_capacity(
        decoded
            .iter()
            .map(|(_, c)| c.as_ref().map_or(0, Vec::len))
            .sum(),
    );
    for (_, chunk) in decoded {
        out.extend(chunk?);
    }
    Ok(out)
}

fn decode_chunk<T: Page>(raw: &[RawRow], arena: &[u8]) -> Result<Vec<T>, StoreError> {
    // A chunk is mostly one stream: its id is shared, not allocated per event.
    let mut last: Option<(Range<usize>, Stream)> = None;
    raw.iter()
        .map(|row| {
            let same = matches!(&last, Some((range, _)) if arena[range.clone()] == arena[row.stream.clone()]);
            if !same {
                let name = text(arena, &row.stream, row.position, "stream_id")?;
                let id = StreamId(name.into());
                let symbol = market_trade::symbol_of(&id);
                last = Some((row.stream.clone(), Stream { id, symbol }));
            }
            let (_, stream) = last.as_ref().expect("set above");
            T::decode(row, arena, stream)
        })
        .collect()
}

/// Copies one row's values into the arena (text) and the row (numbers and ids).
fn step<T: Page>(
    row: &rusqlite::Row<'_>,
    arena: &mut Vec<u8>,
    names: &mut Names<'_>,
) -> Result<RawRow, StoreError> {
    let position = integer(row, 0, 0, "position")?;
    let mut put = |i: usize, column: &'static str| -> Result<Range<usize>, StoreError> {
        match row.get_ref(i)? {
            ValueRef::Text(bytes) => {
                let start = arena.len();
                arena.extend_from_slice(bytes);
                Ok(start..arena.len())
            }
            other => Err(corrupt(position, column, other)),
        }
    };
    let (stream, body) = match row.get_ref(1)? {
        ValueRef::Null => {
            let number = integer(row, 2, position, "stream")?;
            let name = names.get(number, position)?;
            let start = arena.len();
            arena.extend_from_slice(name.as_bytes());
            let stream = start..arena.len();
            let trade = TradeRow {
                trade_id: integer(row, 7, position, "trade_id")?,
                price: integer(row, 8, position, "price")?,
                quantity: integer(row, 9, position, "quantity")?,
                form: integer(row, 10, position, "form")?,
                trade_time: integer(row, 11, position, "trade_time")?,
                event_lag: integer(row, 12, position, "event_lag")?,
                buyer_order_id: optional_integer(row, 13, position, "buyer_order_id")?,
                seller_order_id: optional_integer(row, 14, position, "seller_order_id")?,
                first_trade_id: optional_integer(row, 15, position, "first_trade_id")?,
                event_id: None,
            };
            (stream, Body::Trade(trade))
        }
        _ => {
            let stream = put(1, "stream_id")?;
            let event_type = put(4, "event_type")?;
            let payload = put(6, "payload")?;
            let body = Body::Json {
                event_type,
                schema: integer(row, 5, position, "schema_version")?,
                payload,
            };
            (stream, body)
        }
    };
    let full = T::FULL;
    Ok(RawRow {
        position,
        stream,
        version: integer(row, 3, position, "stream_version")?,
        event_id: if full && matches!(body, Body::Json { .. }) {
            Some(
                uuid(row, 16, position, "event_id")?.ok_or_else(|| StoreError::Corrupt {
                    position,
                    column: "event_id",
                    value: "NULL".into(),
                })?,
            )
        } else if full {
            uuid(row, 16, position, "event_id")?
        } else {
            None
        },
        body,
        recorded_at: if full {
            integer(row, 17, position, "recorded_at")?
        } else {
            0
        },
        correlation: if full {
            uuid(row, 18, position, "correlation_id")?
        } else {
            None
        },
        causation: if full {
            uuid(row, 19, position, "causation_id")?
        } else {
            None
        },
        metadata: if full {
            match row.get_ref(20)? {
                ValueRef::Null => None,
                ValueRef::Text(bytes) => {
                    let start = arena.len();
                    arena.extend_from_slice(bytes);
                    Some(start..arena.len())
                }
                other => return Err(corrupt(position, "metadata", other)),
            }
        } else {
            None
        },
    })
}

fn optional_integer(
    row: &rusqlite::Row<'_>,
    i: usize,
    position: i64,
    column: &'static str,
) -> Result<Option<i64>, StoreError> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        _ => integer(row, i, position, column).map(Some),
    }
}

fn integer(
    row: &rusqlite::Row<'_>,
    i: usize,
    position: i64,
    column: &'static str,
) -> Result<i64, StoreError> {
    match row.get_ref(i)? {
        ValueRef::Integer(v) => Ok(v),
        other => Err(corrupt(position, column, other)),
    }
}

fn uuid(
    row: &rusqlite::Row<'_>,
    i: usize,
    position: i64,
    column: &'static str,
) -> Result<Option<[u8; 16]>, StoreError> {
    match row.get_ref(i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(bytes) if bytes.len() == 16 => {
            let mut id = [0; 16];
            id.copy_from_slice(bytes);
            Ok(Some(id))
        }
        other => Err(corrupt(position, column, other)),
    }
}

fn corrupt(position: i64, column: &'static str, value: ValueRef<'_>) -> StoreError {
    StoreError::Corrupt {
        position,
        column,
        value: format!("{value:?}").chars().take(80).collect(),
    }
}
