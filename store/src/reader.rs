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

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use uuid::Uuid;

use super::durability::Durability;
use super::sqlite::configure;
use super::{decode_event, RecordedEvent, StoreError, StreamEvent, StreamId};

/// Rows stepped before their chunk is handed to the decoders.
const CHUNK: usize = 1_000;
/// Idle connections kept for the next read.
const KEEP: usize = 4;

const FULL_COLUMNS: &str =
    "SELECT position, stream_id, stream_version, event_type, schema_version, \
     payload, event_id, recorded_at, correlation_id, causation_id, metadata FROM events";
const SLIM_COLUMNS: &str =
    "SELECT position, stream_id, stream_version, event_type, schema_version, payload FROM events";
const ALL_PAGE: &str = "WHERE position >= ?1 ORDER BY position LIMIT ?2";
const STREAM_PAGE: &str =
    "WHERE stream_id = ?3 AND stream_version >= ?1 ORDER BY stream_version LIMIT ?2";
/// Along the (stream_id, trade_id) key: `trade_id > ?1` implies its `trade_id IS NOT NULL`.
const TRADES_PAGE: &str = "WHERE stream_id = ?3 AND trade_id > ?1 ORDER BY trade_id LIMIT ?2";

pub(crate) struct Reader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// What the appender has synced: pages stop before the rest.
    durability: Arc<Durability>,
}

/// What is read of an event: the metadata of a [`RecordedEvent`] or none of it.
pub(crate) trait Page: Sized + Send + 'static {
    const COLUMNS: &'static str;
    /// Whether [`Page::COLUMNS`] include the metadata (ids, time, correlation).
    const FULL: bool;
    fn position(&self) -> i64;
    fn decode(row: &RawRow, arena: &[u8], stream: StreamId) -> Result<Self, StoreError>;
}

/// One row as stepped: numbers inline, text as ranges of the chunk's arena.
pub(crate) struct RawRow {
    position: i64,
    stream: Range<usize>,
    version: i64,
    event_type: Range<usize>,
    schema: i64,
    payload: Range<usize>,
    event_id: [u8; 16],
    recorded_at: i64,
    correlation: Option<[u8; 16]>,
    causation: Option<[u8; 16]>,
    /// The metadata column's JSON, in the arena; `None` when NULL.
    metadata: Option<Range<usize>>,
}

impl Page for RecordedEvent {
    const COLUMNS: &'static str = FULL_COLUMNS;
    const FULL: bool = true;
    fn position(&self) -> i64 {
        self.position
    }
    fn decode(row: &RawRow, arena: &[u8], stream: StreamId) -> Result<Self, StoreError> {
        Ok(RecordedEvent {
            position: row.position,
            event_id: Uuid::from_bytes(row.event_id),
            stream_id: stream,
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
            event: event(row, arena)?,
        })
    }
}

impl Page for StreamEvent {
    const COLUMNS: &'static str = SLIM_COLUMNS;
    const FULL: bool = false;
    fn position(&self) -> i64 {
        self.position
    }
    fn decode(row: &RawRow, arena: &[u8], stream: StreamId) -> Result<Self, StoreError> {
        Ok(StreamEvent {
            position: row.position,
            stream_id: stream,
            stream_version: row.version,
            event: event(row, arena)?,
        })
    }
}

fn event(row: &RawRow, arena: &[u8]) -> Result<hedgehog_domain::Event, StoreError> {
    let schema = i32::try_from(row.schema).map_err(|_| StoreError::Corrupt {
        position: row.position,
        column: "schema_version",
        value: row.schema.to_string(),
    })?;
    decode_event(
        row.position,
        text(arena, &row.event_type, row.position, "event_type")?,
        schema,
        text(arena, &row.payload, row.position, "payload")?,
    )
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
            durability,
        }
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
    pub(crate) fn all<T: Page>(&self, from: i64, limit: i64) -> Result<Vec<T>, StoreError> {
        self.read(&format!("{} {ALL_PAGE}", T::COLUMNS), from, limit, None)
    }

    /// A stream from version `from` (inclusive), at most `limit` events. Blocking.
    pub(crate) fn stream<T: Page>(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<T>, StoreError> {
        self.read(
            &format!("{} {STREAM_PAGE}", T::COLUMNS),
            from,
            limit,
            Some(stream),
        )
    }

    /// A market stream's trades with ids above `after`, in trade-id order. Blocking.
    pub(crate) fn trades<T: Page>(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<T>, StoreError> {
        self.read(
            &format!("{} {TRADES_PAGE}", T::COLUMNS),
            after,
            limit,
            Some(stream),
        )
    }

    fn read<T: Page>(
        &self,
        sql: &str,
        from: i64,
        limit: i64,
        stream: Option<&StreamId>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = match self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            Some(conn) => conn,
            None => self.open()?,
        };
        let mut out = read_page::<T>(&conn, sql, from, limit, stream);
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

/// Steps the page's rows a chunk at a time and decodes each chunk on the rayon pool meanwhile.
fn read_page<T: Page>(
    conn: &Connection,
    sql: &str,
    from: i64,
    limit: i64,
    stream: Option<&StreamId>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut rows = match stream {
        Some(s) => statement.query(rusqlite::params![from, limit, s.as_str()])?,
        None => statement.query(rusqlite::params![from, limit])?,
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
            raw.push(step::<T>(row, &mut arena)?);
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
    let mut last: Option<(Range<usize>, StreamId)> = None;
    raw.iter()
        .map(|row| {
            let stream = match &last {
                Some((range, id)) if arena[range.clone()] == arena[row.stream.clone()] => {
                    id.clone()
                }
                _ => {
                    let name = text(arena, &row.stream, row.position, "stream_id")?;
                    let id = StreamId(name.into());
                    last = Some((row.stream.clone(), id.clone()));
                    id
                }
            };
            T::decode(row, arena, stream)
        })
        .collect()
}

/// Copies one row's values into the arena (text) and the row (numbers and ids).
fn step<T: Page>(row: &rusqlite::Row<'_>, arena: &mut Vec<u8>) -> Result<RawRow, StoreError> {
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
    let stream = put(1, "stream_id")?;
    let event_type = put(3, "event_type")?;
    let payload = put(5, "payload")?;
    let full = T::FULL;
    Ok(RawRow {
        position,
        stream,
        version: integer(row, 2, position, "stream_version")?,
        event_type,
        schema: integer(row, 4, position, "schema_version")?,
        payload,
        event_id: if full {
            uuid(row, 6, position, "event_id")?.ok_or_else(|| StoreError::Corrupt {
                position,
                column: "event_id",
                value: "NULL".into(),
            })?
        } else {
            [0; 16]
        },
        recorded_at: if full {
            integer(row, 7, position, "recorded_at")?
        } else {
            0
        },
        correlation: if full {
            uuid(row, 8, position, "correlation_id")?
        } else {
            None
        },
        causation: if full {
            uuid(row, 9, position, "causation_id")?
        } else {
            None
        },
        metadata: if full {
            match row.get_ref(10)? {
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
