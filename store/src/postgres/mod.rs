//! The server backend: PostgreSQL, for several processes or nodes sharing one log.
//!
//! **Why appends are serialised.** With a sequence, positions are handed out at insert time but
//! transactions commit in any order, so a reader that has seen position 12 can later find 11
//! committed, and a subscriber reading `position > 12` would skip it forever. Here every append
//! takes one transaction-level advisory lock (per schema) and assigns positions as max + 1 while
//! holding it. PostgreSQL makes a commit visible before it releases the transaction's locks, so
//! the next writer can only assign N + 1 once N is visible: positions become visible in order,
//! with no gaps, and subscribers never need to guess about a hole. Batching recovers the
//! throughput the lock costs (one lock per batch, not per event), and a small append is one
//! statement (`hedgehog_append`, migration 0012) so the lock is held for one round trip, not
//! seven: many symbols' decisions queue behind it.
//!
//! **Wake-ups.** Each part of an append sends `NOTIFY` with its positions, its stream and the
//! backend that wrote it (far below the 8000-byte payload cap); subscribers in other processes
//! LISTEN and re-read what they follow, while this process's subscribers are handed its own
//! appends' events (the listener skips them). The payload only wakes a reader: what it reads
//! comes from the table, so a lost notification costs latency (until the safety-net poll),
//! never an event.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::Connection;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::market_trade::TradeRow;
use super::{
    before_insert, AppendOutcome, Backend, ExpectedVersion, Part, Place, PreparedEvent,
    RecordedEvent, StoreError, StreamEvent, StreamHead, StreamId, Wakes,
};

mod reads;
mod seal;

/// The numbers of `trade_streams` this backend has seen committed, both ways.
#[derive(Default)]
struct Numbers {
    of: std::sync::RwLock<HashMap<StreamId, i32>>,
    names: std::sync::RwLock<HashMap<i32, StreamId>>,
}

impl Numbers {
    fn remember(&self, learned: Vec<(i32, StreamId)>) {
        if learned.is_empty() {
            return;
        }
        let mut of = self.of.write().unwrap_or_else(|e| e.into_inner());
        let mut names = self.names.write().unwrap_or_else(|e| e.into_inner());
        for (number, stream) in learned {
            of.insert(stream.clone(), number);
            names.insert(number, stream);
        }
    }
}

pub(crate) struct PgBackend {
    pool: PgPool,
    /// NOTIFY channel, one per schema so that stores sharing a database do not wake each other.
    channel: String,
    /// This backend's mark in its NOTIFY payloads: what it appends it announces itself, with
    /// the events ([`crate::Appended::events`]), so its listener skips its own.
    origin: String,
    listener: Mutex<Option<JoinHandle<()>>>,
    numbers: Numbers,
}

/// How long a connection may sit idle inside a transaction before PostgreSQL ends its session
/// (none of ours does for more than milliseconds).
const IDLE_IN_TRANSACTION: &str = "5s";

impl PgBackend {
    pub(crate) async fn open(url: &str) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)?;
        if !url.contains("idle_in_transaction_session_timeout") {
            // A process frozen inside a transaction (SIGSTOP, a stalled VM) would hold the
            // log's append lock, and every other node's appends, for as long as it is frozen:
            // PostgreSQL ends such a session after this long, and its locks go with it.
            options =
                options.options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION)]);
        }
        // One direct connection first: a wrong host or a refused connection is reported at
        // once, instead of after the pool has retried until its acquire timeout.
        PgConnection::connect_with(&options).await?.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await?;
        let migrator = sqlx::migrate!("../migrations/postgres");
        migrator
            .run(&pool)
            .await
            .map_err(|e| crate::migration_failed(e, &migrator))?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        Ok(PgBackend {
            pool,
            channel: format!("hedgehog_events_{schema}"),
            origin: Uuid::now_v7().simple().to_string(),
            listener: Mutex::new(None),
            numbers: Numbers::default(),
        })
    }
}

/// The text of `COPY ... FROM STDIN` for both tables of the log: a row a line, tab-separated,
/// `\N` for NULL.
///
/// Why COPY: the server parses one stream of rows instead of seven arrays for `UNNEST` and an
/// `INSERT ... SELECT`, which was most of its work per event (BENCHMARKS.md). The positions and
/// versions are known here, inside the transaction that holds the append lock. Only the
/// payload can hold a character COPY treats specially: JSON escapes every control character,
/// so a backslash is the one to double; stream ids refuse control characters
/// (`StreamId::new`) and the other fields are numbers, UUIDs and our own type names.
#[derive(Default)]
struct Copies {
    events: String,
    trades: String,
}

fn or_null(out: &mut String, value: Option<impl std::fmt::Display>) {
    use std::fmt::Write;
    match value {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.push_str("\\N"),
    }
}

impl Copies {
    /// Adds a part's events, the first at `head + 1` and version `actual + 1`: its trade rows
    /// to `market_trades` (of stream `number`), the rest to `events`.
    fn add(
        &mut self,
        stream: &StreamId,
        number: Option<i32>,
        (head, actual): (i64, i64),
        recorded_at: i64,
        events: &[PreparedEvent],
    ) {
        for (k, e) in (1_i64..).zip(events) {
            match (&e.trade, number) {
                (Some(row), Some(number)) => {
                    self.trade(row, (head + k, actual + k), number, recorded_at)
                }
                _ => self.event(e, (head + k, actual + k), stream, recorded_at),
            }
        }
    }

    fn event(
        &mut self,
        e: &PreparedEvent,
        (position, version): (i64, i64),
        stream: &StreamId,
        recorded_at: i64,
    ) {
        use std::fmt::Write;
        let out = &mut self.events;
        let _ = write!(
            out,
            "{position}\t{}\t{}\t{version}\t{}\t{}\t",
            e.event_id,
            stream.as_str(),
            e.event_type,
            e.schema_version
        );
        copy_text(out, &e.payload);
        let _ = write!(out, "\t{recorded_at}\t");
        or_null(out, e.correlation_id);
        out.push('\t');
        or_null(out, e.causation_id);
        out.push('\t');
        or_null(out, e.trade_id);
        out.push('\t');
        match &e.metadata {
            Some(json) => copy_text(out, json),
            None => out.push_str("\\N"),
        }
        out.push('\n');
    }

    fn trade(
        &mut self,
        row: &TradeRow,
        (position, version): (i64, i64),
        number: i32,
        recorded_at: i64,
    ) {
        use std::fmt::Write;
        let out = &mut self.trades;
        let _ = write!(
            out,
            "{position}\t{version}\t{}\t{}\t{}\t{}\t{}\t{}\t",
            row.trade_id,
            row.price,
            row.quantity,
            row.trade_time,
            row.event_lag,
            row.recorded_lag(recorded_at),
        );
        or_null(out, row.buyer_order_id);
        out.push('\t');
        or_null(out, row.seller_order_id);
        out.push('\t');
        or_null(out, row.first_trade_id);
        let _ = write!(out, "\t{number}\t{}\t", row.form);
        or_null(out, row.event_id);
        out.push('\n');
    }

    /// Sends both COPYs (those with rows).
    async fn send(self, conn: &mut PgConnection) -> Result<(), StoreError> {
        if !self.events.is_empty() {
            copy_in(
                conn,
                "COPY events (position, event_id, stream_id, stream_version, event_type, \
                 schema_version, payload, recorded_at, correlation_id, causation_id, trade_id, \
                 metadata) FROM STDIN",
                self.events,
            )
            .await?;
        }
        if !self.trades.is_empty() {
            copy_in(
                conn,
                "COPY market_trades (position, version, trade_id, price, quantity, trade_time, \
                 event_lag, recorded_lag, buyer_order_id, seller_order_id, first_trade_id, \
                 stream, form, event_id) FROM STDIN",
                self.trades,
            )
            .await?;
        }
        Ok(())
    }
}

/// JSON text as a COPY field: JSON escapes every control character, so a backslash is the one
/// character to double.
fn copy_text(out: &mut String, json: &str) {
    for (i, part) in json.split('\\').enumerate() {
        if i > 0 {
            out.push_str("\\\\");
        }
        out.push_str(part);
    }
}

/// Sends `rows` with one COPY statement.
async fn copy_in(conn: &mut PgConnection, statement: &str, rows: String) -> Result<(), StoreError> {
    let mut copy = conn.copy_in_raw(statement).await?;
    match copy.send(rows.into_bytes()).await {
        Ok(_) => {
            copy.finish().await?;
            Ok(())
        }
        Err(e) => {
            let _ = copy.abort("hedgehog: append failed").await;
            Err(e.into())
        }
    }
}

/// The log's head: the last position of either table.
const HEAD: &str = "SELECT GREATEST((SELECT COALESCE(MAX(position), 0) FROM events), \
     (SELECT COALESCE(MAX(position), 0) FROM market_trades))::int8";

/// A stream's version (`s`, its number `n`, if this process knows it) across both tables.
const VERSION_OF: &str = "GREATEST( \
     (SELECT COALESCE(MAX(stream_version), 0) FROM events WHERE stream_id = s), \
     (SELECT COALESCE(MAX(version), 0) FROM market_trades WHERE stream = \
          COALESCE(n, (SELECT number FROM trade_streams WHERE stream_id = s))))::int8";

/// Inserts one part of an append after position `head` (`None`: read it, with the stream's
/// version, in one round trip), inside its transaction; answers the outcome and the head after.
async fn append_part(
    conn: &mut PgConnection,
    part: &mut Part,
    number: Option<i32>,
    head: Option<i64>,
    recorded_at: i64,
    look_up: bool,
    (channel, origin): (&str, &str),
) -> Result<(AppendOutcome, i64), StoreError> {
    let Part {
        stream,
        expected,
        batch,
    } = part;
    let expected = *expected;
    let mut duplicates = 0;
    if look_up {
        let ids: Vec<Uuid> = batch.events.iter().map(|e| e.event_id).collect();
        let trade_ids: Vec<i64> = batch.events.iter().filter_map(|e| e.trade_id).collect();
        let mut stored_ids: HashSet<Uuid> = sqlx::query_scalar(
            "SELECT event_id FROM events WHERE event_id = ANY($1) \
             UNION ALL SELECT event_id FROM market_trades WHERE event_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
        let mut stored_trades: HashSet<i64> = if trade_ids.is_empty() {
            HashSet::new()
        } else {
            sqlx::query_scalar(
                "SELECT trade_id FROM events WHERE stream_id = $1 AND trade_id = ANY($2) \
                 UNION ALL \
                 SELECT trade_id FROM market_trades WHERE stream = $3 AND trade_id = ANY($2)",
            )
            .bind(stream.as_str())
            .bind(&trade_ids)
            .bind(number)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect()
        };
        // Then the segments (after the rows: a seal between the two moves rows, not loses them).
        let range = crate::trade_id_range(&batch.events);
        let (sealed_trades, sealed_ids) = seal::keys(&mut *conn, number, range).await?;
        stored_ids.extend(
            batch
                .events
                .iter()
                .map(|e| e.event_id)
                .filter(|id| sealed_ids.contains(id)),
        );
        stored_trades.extend(
            trade_ids
                .iter()
                .copied()
                .filter(|t| sealed_trades.contains(t)),
        );
        duplicates = batch.drop_stored(&stored_ids, &stored_trades);
    }

    let (actual, read_head): (i64, Option<i64>) = sqlx::query_as(&format!(
        "SELECT {VERSION_OF}, CASE WHEN $3 THEN ({HEAD}) END FROM (SELECT $1 AS s, $2 AS n) AS t"
    ))
    .bind(stream.as_str())
    .bind(number)
    .bind(head.is_none())
    .fetch_one(&mut *conn)
    .await?;
    let head = head.or(read_head).unwrap_or(0);
    if let Some(retried) = before_insert(stream, expected, batch, actual, duplicates)? {
        return Ok((retried, head));
    }

    let n = batch.events.len();
    let count = i64::try_from(n).unwrap_or(i64::MAX);
    let mut copies = Copies::default();
    copies.add(stream, number, (head, actual), recorded_at, &batch.events);
    copies.send(conn).await?;
    let last = head + count;
    sqlx::query(
        "INSERT INTO streams (stream_id, version, last_position) VALUES ($1, $2, $3) \
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
         last_position = excluded.last_position",
    )
    .bind(stream.as_str())
    .bind(actual + count)
    .bind(last)
    .execute(&mut *conn)
    .await?;
    // `last stream first origin`: subscribers of other streams need not read, and one that
    // has seen everything up to `first - 1` has seen everything up to `last` (see `Appended`).
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(format!("{last} {stream} {} {origin}", head + 1))
        .execute(&mut *conn)
        .await?;
    let outcome = AppendOutcome {
        appended: n,
        duplicates,
        stream_version: actual + count,
        last_position: Some(last),
    };
    Ok((outcome, last))
}

/// The numbers of the parts' streams in `trade_streams` (`None`: it has none), assigned to
/// those with trade rows; the newly assigned ones to remember once the transaction commits.
async fn stream_numbers(
    conn: &mut PgConnection,
    known: &Numbers,
    parts: &[Part],
) -> Result<(Vec<Option<i32>>, Vec<(i32, StreamId)>), StoreError> {
    let mut numbers: Vec<Option<i32>> = {
        let of = known.of.read().unwrap_or_else(|e| e.into_inner());
        parts.iter().map(|p| of.get(&p.stream).copied()).collect()
    };
    let wanted: Vec<&str> = parts
        .iter()
        .zip(&numbers)
        .filter(|(p, n)| n.is_none() && p.batch.events.iter().any(|e| e.trade_id.is_some()))
        .map(|(p, _)| p.stream.as_str())
        .collect();
    if wanted.is_empty() {
        return Ok((numbers, Vec::new()));
    }
    let assign: Vec<&str> = parts
        .iter()
        .zip(&numbers)
        .filter(|(p, n)| n.is_none() && p.batch.events.iter().any(|e| e.trade.is_some()))
        .map(|(p, _)| p.stream.as_str())
        .collect();
    if !assign.is_empty() {
        sqlx::query(
            "INSERT INTO trade_streams (stream_id) SELECT UNNEST($1::text[]) \
             ON CONFLICT (stream_id) DO NOTHING",
        )
        .bind(&assign)
        .execute(&mut *conn)
        .await?;
    }
    let found: Vec<(String, i32)> = sqlx::query_as(
        "SELECT stream_id, number FROM trade_streams WHERE stream_id = ANY($1::text[])",
    )
    .bind(&wanted)
    .fetch_all(&mut *conn)
    .await?;
    let mut learned = Vec::with_capacity(found.len());
    for (name, number) in found {
        for (part, slot) in parts.iter().zip(numbers.iter_mut()) {
            if part.stream.as_str() == name {
                *slot = Some(number);
            }
        }
        learned.push((number, StreamId(name.into())));
    }
    Ok((numbers, learned))
}

/// Whether any trade of the parts may be stored already in the table it is not going to (a
/// log written before trades had rows, or a trade kept as JSON for its metadata): one probe
/// of each table's trade key per part, over the part's range of trade ids, in one round trip.
async fn overlaps(
    conn: &mut PgConnection,
    parts: &[Part],
    numbers: &[Option<i32>],
) -> Result<bool, StoreError> {
    let (mut streams, mut lows, mut highs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut row_streams, mut row_lows, mut row_highs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut sealed_streams, mut sealed_lows, mut sealed_highs) =
        (Vec::new(), Vec::new(), Vec::new());
    for (part, number) in parts.iter().zip(numbers) {
        if let (Some((low, high)), Some(number)) =
            (crate::trade_id_range(&part.batch.events), number)
        {
            sealed_streams.push(*number);
            sealed_lows.push(low);
            sealed_highs.push(high);
        }
        let range = |rows: bool| {
            let ids = part
                .batch
                .events
                .iter()
                .filter(|e| e.trade.is_some() == rows)
                .filter_map(|e| e.trade_id);
            ids.clone().min().zip(ids.max())
        };
        if let Some((low, high)) = range(true) {
            streams.push(part.stream.as_str());
            lows.push(low);
            highs.push(high);
        }
        if let (Some((low, high)), Some(number)) = (range(false), number) {
            row_streams.push(*number);
            row_lows.push(low);
            row_highs.push(high);
        }
    }
    if streams.is_empty() && row_streams.is_empty() && sealed_streams.is_empty() {
        return Ok(false);
    }
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM UNNEST($1::text[], $2::int8[], $3::int8[]) AS r(s, lo, hi) \
             WHERE EXISTS (SELECT 1 FROM events \
                           WHERE stream_id = r.s AND trade_id BETWEEN r.lo AND r.hi)) \
             OR EXISTS (SELECT 1 FROM UNNEST($4::int4[], $5::int8[], $6::int8[]) AS r(n, lo, hi) \
             WHERE EXISTS (SELECT 1 FROM market_trades \
                           WHERE stream = r.n AND trade_id BETWEEN r.lo AND r.hi)) \
             OR EXISTS (SELECT 1 FROM UNNEST($7::int4[], $8::int8[], $9::int8[]) AS r(n, lo, hi) \
             WHERE EXISTS (SELECT 1 FROM trade_segments \
                           WHERE stream = r.n AND max_trade_id >= r.lo AND min_trade_id <= r.hi))",
    )
    .bind(&streams)
    .bind(&lows)
    .bind(&highs)
    .bind(&row_streams)
    .bind(&row_lows)
    .bind(&row_highs)
    .bind(&sealed_streams)
    .bind(&sealed_lows)
    .bind(&sealed_highs)
    .fetch_one(&mut *conn)
    .await?)
}

/// The most events an append sends through `hedgehog_append` (one statement, one round trip,
/// migration 0012); bigger batches are cheaper per event through COPY.
const ONE_STATEMENT_EVENTS: usize = 64;

/// A small append of one stream, none of it stored yet, as one statement committing on its
/// own: the log's lock is held for one round trip instead of seven (the decisions of many
/// symbols' workers queued behind it). A version other than `expected` writes nothing and is
/// a conflict; a duplicate is a unique violation; the caller sorts both out as for the other
/// paths.
async fn append_in_one_statement(
    pool: &PgPool,
    part: &Part,
    recorded_at: i64,
    (channel, origin): (&str, &str),
) -> Result<AppendOutcome, StoreError> {
    let events = &part.batch.events;
    let column = |f: fn(&PreparedEvent) -> _| events.iter().map(f).collect::<Vec<_>>();
    let expected = match part.expected {
        ExpectedVersion::Any => None,
        ExpectedVersion::Exact(v) => Some(v),
    };
    let (actual, last): (i64, Option<i64>) = sqlx::query_as(
        "SELECT actual, last_position FROM hedgehog_append($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13)",
    )
    .bind(part.stream.as_str())
    .bind(expected)
    .bind(recorded_at)
    .bind(events.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.event_type).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.schema_version).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.payload.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(column(|e| e.correlation_id))
    .bind(column(|e| e.causation_id))
    .bind(events.iter().map(|e| e.trade_id).collect::<Vec<_>>())
    .bind(
        events
            .iter()
            .map(|e| e.metadata.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(channel)
    .bind(origin)
    .fetch_one(pool)
    .await?;
    let Some(last) = last else {
        return Err(StoreError::Conflict {
            stream: part.stream.clone(),
            expected: part.expected,
            actual,
        });
    };
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    Ok(AppendOutcome {
        appended: events.len(),
        duplicates: 0,
        stream_version: actual + count,
        last_position: Some(last),
    })
}

/// What a NOTIFY payload says of an append, unless `origin` (this backend) made it. Older
/// writers sent `position stream` or the position alone.
fn heard(payload: &str, origin: &str) -> Option<crate::Appended> {
    let mut words = payload.split(' ');
    let last = words.next()?.parse::<i64>().ok()?;
    let stream = words.next().and_then(|s| StreamId::new(s).ok());
    let first = words.next().and_then(|f| f.parse::<i64>().ok());
    if words.next() == Some(origin) {
        return None;
    }
    Some(crate::Appended {
        streams: stream.map(|s| Arc::from([s])),
        span: Some((first.unwrap_or(last), last)),
        events: None,
    })
}

/// The fast path of an append of several streams (none stored yet, each stream once): five
/// round trips whatever the number of streams -- their versions and the log's head, one COPY
/// of every part's rows, one upsert of their `streams` rows, one NOTIFY each in one statement --
/// where [`append_part`] takes four per stream (the streamer's flush over 100 symbols made 400).
/// A duplicate or a version mismatch fails the whole transaction, as on the per-part path, and
/// the careful path sorts it out.
async fn append_parts_at_once(
    conn: &mut PgConnection,
    parts: &mut [Part],
    numbers: &[Option<i32>],
    recorded_at: i64,
    (channel, origin): (&str, &str),
) -> Result<Vec<AppendOutcome>, StoreError> {
    let streams: Vec<&str> = parts.iter().map(|p| p.stream.as_str()).collect();
    let versions: Vec<(i64, i64)> = sqlx::query_as(&format!(
        "SELECT {VERSION_OF}, ({HEAD}) \
         FROM UNNEST($1::text[], $2::int4[]) WITH ORDINALITY AS t(s, n, i) ORDER BY i"
    ))
    .bind(&streams)
    .bind(numbers)
    .fetch_all(&mut *conn)
    .await?;
    let mut head = versions.first().map_or(0, |v| v.1);
    let mut rows = Copies::default();
    let mut outcomes = Vec::with_capacity(parts.len());
    let (mut heads, mut lasts, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for ((part, (actual, _)), number) in parts.iter().zip(versions).zip(numbers) {
        if let Some(retried) = before_insert(&part.stream, part.expected, &part.batch, actual, 0)? {
            outcomes.push(retried);
            continue;
        }
        let count = part.batch.events.len() as i64;
        rows.add(
            &part.stream,
            *number,
            (head, actual),
            recorded_at,
            &part.batch.events,
        );
        let last = head + count;
        heads.push(actual + count);
        lasts.push(last);
        notes.push(format!("{last} {} {} {origin}", part.stream, head + 1));
        outcomes.push(AppendOutcome {
            appended: part.batch.events.len(),
            duplicates: 0,
            stream_version: actual + count,
            last_position: Some(last),
        });
        head = last;
    }
    rows.send(conn).await?;
    let written: Vec<&str> = parts
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.last_position.is_some())
        .map(|(p, _)| p.stream.as_str())
        .collect();
    sqlx::query(
        "INSERT INTO streams (stream_id, version, last_position) \
         SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[]) \
         ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, \
         last_position = excluded.last_position",
    )
    .bind(&written)
    .bind(&heads)
    .bind(&lasts)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, note) FROM UNNEST($2::text[]) AS note")
        .bind(channel)
        .bind(&notes)
        .execute(&mut *conn)
        .await?;
    Ok(outcomes)
}

#[async_trait]
impl Backend for PgBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn stores_trade_rows(&self) -> bool {
        true
    }

    fn database(&self) -> crate::Database {
        crate::Database::Postgres {
            pool: self.pool.clone(),
        }
    }

    async fn try_append(
        &self,
        parts: &mut [Part],
        recorded_at: i64,
        look_up: bool,
    ) -> Result<Vec<AppendOutcome>, StoreError> {
        if let [part] = parts {
            // Decisions and commands: no trades, so nothing for `market_trades`.
            if !look_up
                && (1..=ONE_STATEMENT_EVENTS).contains(&part.batch.events.len())
                && part.batch.events.iter().all(|e| e.trade_id.is_none())
            {
                let outcome = append_in_one_statement(
                    &self.pool,
                    part,
                    recorded_at,
                    (&self.channel, &self.origin),
                )
                .await?;
                return Ok(vec![outcome]);
            }
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtext('hedgehog.events:' || current_schema()))",
        )
        .execute(&mut *tx)
        .await?;
        let distinct = parts
            .iter()
            .map(|p| &p.stream)
            .collect::<HashSet<_>>()
            .len()
            == parts.len();
        let (numbers, learned) = stream_numbers(&mut tx, &self.numbers, parts).await?;
        let look_up = look_up || overlaps(&mut tx, parts, &numbers).await?;
        let outcomes = if !look_up && parts.len() > 1 && distinct {
            let outcomes = append_parts_at_once(
                &mut tx,
                parts,
                &numbers,
                recorded_at,
                (&self.channel, &self.origin),
            )
            .await?;
            tx.commit().await?;
            outcomes
        } else {
            // The log's head is read with the first part's version (one round trip), then
            // carried.
            let mut head = None;
            let mut outcomes = Vec::with_capacity(parts.len());
            let mut wrote = false;
            for (part, number) in parts.iter_mut().zip(&numbers) {
                let (outcome, after) = append_part(
                    &mut tx,
                    part,
                    *number,
                    head,
                    recorded_at,
                    look_up,
                    (&self.channel, &self.origin),
                )
                .await?;
                head = Some(after);
                wrote |= outcome.last_position.is_some();
                outcomes.push(outcome);
            }
            if !wrote {
                // Nothing written: the numbers it may have assigned are rolled back.
                return Ok(outcomes);
            }
            tx.commit().await?;
            outcomes
        };
        self.numbers.remember(learned);
        Ok(outcomes)
    }

    async fn read_all(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        reads::all(&self.pool, &self.numbers.names, from, limit).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        reads::stream(&self.pool, &self.numbers.names, stream, from, limit).await
    }

    async fn read_all_events(&self, from: i64, limit: i64) -> Result<Vec<StreamEvent>, StoreError> {
        reads::all(&self.pool, &self.numbers.names, from, limit).await
    }

    async fn read_stream_events(
        &self,
        stream: &StreamId,
        from: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        reads::stream(&self.pool, &self.numbers.names, stream, from, limit).await
    }

    async fn read_trades(
        &self,
        stream: &StreamId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<StreamEvent>, StoreError> {
        reads::trades(&self.pool, &self.numbers.names, stream, after, limit).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM streams WHERE stream_id = $1")
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
        // MATERIALIZED keeps the range on the trade key: left to itself the planner took the
        // minima along the position and version indexes, filtering every row before the cursor
        // (0.42 s at 1,000,000 trades, 2 s at 5,000,000, for a cursor at the end).
        // Both tables hold trades: the earlier of their minima.
        let (position, version) = sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
            "WITH later AS MATERIALIZED (SELECT position, stream_version FROM events \
             WHERE stream_id = $1 AND trade_id > $2), \
             later_rows AS MATERIALIZED (SELECT position, version FROM market_trades \
             WHERE stream = (SELECT number FROM trade_streams WHERE stream_id = $1) \
               AND trade_id > $2) \
             SELECT LEAST((SELECT MIN(position) FROM later), \
                          (SELECT MIN(position) FROM later_rows)), \
                    LEAST((SELECT MIN(stream_version) FROM later), \
                          (SELECT MIN(version) FROM later_rows))",
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
        Ok(sqlx::query_scalar(HEAD).fetch_one(&self.pool).await?)
    }

    async fn stream_heads(&self, prefix: &str) -> Result<Vec<StreamHead>, StoreError> {
        let (low, high) = crate::prefix_range(prefix);
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, version, last_position FROM streams \
             WHERE stream_id >= $1 AND stream_id < $2 ORDER BY stream_id",
        )
        .bind(low)
        .bind(high)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(StreamHead::from_row).collect())
    }

    async fn watch_foreign_appends(&self, wakes: Wakes) -> Result<(), StoreError> {
        let mut running = self.listener.lock().await;
        if running.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        // LISTEN before returning, so that no NOTIFY sent after the subscriber's first read
        // can be missed.
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(&self.channel).await?;
        *running = Some(tokio::spawn(listen(listener, wakes, self.origin.clone())));
        Ok(())
    }

    async fn segments(
        &self,
        along: &crate::sealed::Along,
        from: i64,
        to: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<crate::sealed::Segment>, StoreError> {
        seal::segments(&self.pool, along, from, to, after, limit).await
    }

    async fn segment_block(&self, id: i64) -> Result<(Vec<u8>, i64), StoreError> {
        seal::block(&self.pool, id).await
    }

    async fn seal_window(
        &self,
        from: i64,
        before: i64,
    ) -> Result<Option<(i64, crate::Sealed)>, StoreError> {
        seal::window(&self.pool, from, before).await
    }

    async fn compact(&self) -> Result<(), StoreError> {
        sqlx::raw_sql("VACUUM market_trades, trade_segments")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sealed(&self) -> Result<crate::Sealed, StoreError> {
        let row = sqlx::query_as(&crate::sealed::totals_sql("octet_length"))
            .fetch_one(&self.pool)
            .await?;
        Ok(crate::Sealed::from_row(row))
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// Forwards NOTIFY payloads (`last stream first origin`) of other processes' appends to the
/// in-process wake-ups until no subscriber is left.
async fn listen(mut listener: PgListener, wakes: Wakes, origin: String) {
    loop {
        tokio::select! {
            _ = wakes.head.closed() => return,
            received = listener.recv() => match received {
                Ok(note) => {
                    if let Some(append) = heard(note.payload(), &origin) {
                        wakes.appended(append);
                    }
                }
                Err(error) => {
                    // The listener reconnects on the next recv; notifications sent meanwhile
                    // may be lost, so wake every subscriber to re-read the log.
                    tracing::warn!(%error, "event notifications interrupted; reconnecting");
                    wakes.everyone();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
