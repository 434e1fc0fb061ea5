//! PostgreSQL's reads of the log: pages that merge `events` and `market_trades` by position
//! (or version, or trade id), as SQLite's reader does (`crate::reader`, whose column layout
//! this shares).

use std::collections::HashMap;
use std::sync::RwLock;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;
use uuid::Uuid;

use crate::market_trade::{self, TradeRow};
use crate::{decode_event, decode_metadata, RecordedEvent, StoreError, StreamEvent, StreamId};

/// The slim columns of both tables, in one layout: 0 position, 1 stream name (events) or 2 its
/// number (trades), 3 version, 4-6 type, schema and JSON (events), 7 trade id (both), 8-15 the
/// trade's columns (trades). Full pages add 16 event id, 17 recorded time, 18-20 correlation,
/// causation, metadata.
const EVENTS_SLIM: &str = "SELECT position, stream_id, NULL::int4, stream_version, event_type, \
     schema_version, payload, trade_id, NULL::int8, NULL::int8, NULL::int4, NULL::int8, \
     NULL::int8, NULL::int8, NULL::int8, NULL::int8";
const TRADES_SLIM: &str = "SELECT position, NULL::text, stream, version, NULL::text, NULL::int4, \
     NULL::text, trade_id, price, quantity, form, trade_time, event_lag, buyer_order_id, \
     seller_order_id, first_trade_id";
const EVENTS_FULL: &str =
    ", event_id, recorded_at, correlation_id, causation_id, metadata FROM events";
const TRADES_FULL: &str = ", event_id, trade_time + recorded_lag, NULL::uuid, NULL::uuid, \
     NULL::text FROM market_trades";

/// `$3`'s number in `market_trades`' filters.
const NUMBER: &str = "(SELECT number FROM trade_streams WHERE stream_id = $3)";

/// A page over both tables, each filtered and ordered by the `order`th column (1-based) and
/// limited to `$2` rows, merged in that order (the planner's Merge Append over two ordered
/// index scans).
fn page_sql(full: bool, events: &str, trades: &str, order: &str) -> String {
    let (e, t) = if full {
        (EVENTS_FULL, TRADES_FULL)
    } else {
        (" FROM events", " FROM market_trades")
    };
    let (events_order, trades_order) = match order {
        "position" => ("position", "position"),
        "version" => ("stream_version", "version"),
        _ => ("trade_id", "trade_id"),
    };
    let column = match order {
        "position" => 1,
        "version" => 4,
        _ => 8,
    };
    format!(
        "({EVENTS_SLIM}{e} WHERE {events} ORDER BY {events_order} LIMIT $2) UNION ALL \
         ({TRADES_SLIM}{t} WHERE {trades} ORDER BY {trades_order} LIMIT $2) \
         ORDER BY {column} LIMIT $2"
    )
}

/// What a page is read for: a [`RecordedEvent`] or a [`StreamEvent`].
pub(super) trait Page: Sized {
    const FULL: bool;
    fn decode(row: &PgRow, names: &Names<'_>) -> Result<Self, StoreError>;
}

/// The names of `trade_streams`' numbers, as met (committed before any row that uses them).
pub(super) struct Names<'a> {
    pub known: &'a RwLock<HashMap<i32, StreamId>>,
}

/// A row's place and event, common to both pages.
fn event_of(
    row: &PgRow,
    names: &Names<'_>,
) -> Result<(i64, StreamId, i64, hedgehog_domain::Event, bool), StoreError> {
    let position: i64 = row.try_get(0)?;
    let version: i64 = row.try_get(3)?;
    match row.try_get::<Option<String>, _>(1)? {
        Some(stream) => {
            let event_type: String = row.try_get(4)?;
            let schema: i32 = row.try_get(5)?;
            let payload: String = row.try_get(6)?;
            let event = decode_event(position, &event_type, schema, &payload)?;
            Ok((position, StreamId(stream.into()), version, event, false))
        }
        None => {
            let number: i32 = row.try_get(2)?;
            let stream = names
                .known
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&number)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt {
                    position,
                    column: "stream",
                    value: number.to_string(),
                })?;
            let trade = TradeRow {
                trade_id: row.try_get(7)?,
                price: row.try_get(8)?,
                quantity: row.try_get(9)?,
                form: i64::from(row.try_get::<i32, _>(10)?),
                trade_time: row.try_get(11)?,
                event_lag: row.try_get(12)?,
                buyer_order_id: row.try_get(13)?,
                seller_order_id: row.try_get(14)?,
                first_trade_id: row.try_get(15)?,
                event_id: None,
            };
            let symbol = market_trade::symbol_of(&stream).ok_or_else(|| StoreError::Corrupt {
                position,
                column: "stream",
                value: stream.to_string(),
            })?;
            let event = hedgehog_domain::Event::TradeReceived(trade.trade(symbol, position)?);
            Ok((position, stream, version, event, true))
        }
    }
}

impl Page for StreamEvent {
    const FULL: bool = false;
    fn decode(row: &PgRow, names: &Names<'_>) -> Result<Self, StoreError> {
        let (position, stream_id, stream_version, event, _) = event_of(row, names)?;
        Ok(StreamEvent {
            position,
            stream_id,
            stream_version,
            event,
        })
    }
}

impl Page for RecordedEvent {
    const FULL: bool = true;
    fn decode(row: &PgRow, names: &Names<'_>) -> Result<Self, StoreError> {
        let (position, stream_id, stream_version, event, is_row) = event_of(row, names)?;
        let event_id = match (row.try_get::<Option<Uuid>, _>(16)?, &event) {
            (Some(id), _) => id,
            (None, hedgehog_domain::Event::TradeReceived(trade)) if is_row => {
                crate::trade_event_id(&stream_id, trade)
            }
            (None, _) => {
                return Err(StoreError::Corrupt {
                    position,
                    column: "event_id",
                    value: "NULL".into(),
                })
            }
        };
        let metadata: Option<String> = row.try_get(20)?;
        Ok(RecordedEvent {
            position,
            event_id,
            stream_id,
            stream_version,
            recorded_at: row.try_get(17)?,
            correlation_id: row.try_get(18)?,
            causation_id: row.try_get(19)?,
            metadata: decode_metadata(position, metadata.as_deref())?,
            event,
        })
    }
}

/// Reads one page: `after` is `$1`, `limit` `$2`, the stream's name (if any) `$3`.
async fn page<T: Page>(
    pool: &PgPool,
    known: &RwLock<HashMap<i32, StreamId>>,
    sql: &str,
    from: i64,
    limit: i64,
    stream: Option<&StreamId>,
) -> Result<Vec<T>, StoreError> {
    let mut query = sqlx::query(sql).bind(from).bind(limit);
    if let Some(stream) = stream {
        query = query.bind(stream.as_str());
    }
    let rows = query.fetch_all(pool).await?;
    // Numbers the map has not met yet: read them before decoding.
    let missing: Vec<i32> = {
        let map = known.read().unwrap_or_else(|e| e.into_inner());
        let mut missing = Vec::new();
        for row in &rows {
            if let Some(n) = row.try_get::<Option<i32>, _>(2)? {
                if !map.contains_key(&n) && !missing.contains(&n) {
                    missing.push(n);
                }
            }
        }
        missing
    };
    if !missing.is_empty() {
        let found: Vec<(i32, String)> =
            sqlx::query_as("SELECT number, stream_id FROM trade_streams WHERE number = ANY($1)")
                .bind(&missing)
                .fetch_all(pool)
                .await?;
        let mut map = known.write().unwrap_or_else(|e| e.into_inner());
        for (number, name) in found {
            map.insert(number, StreamId(name.into()));
        }
    }
    let names = Names { known };
    rows.iter().map(|row| T::decode(row, &names)).collect()
}

/// `$all` from `from`, at most `limit`.
pub(super) async fn all<T: Page>(
    pool: &PgPool,
    known: &RwLock<HashMap<i32, StreamId>>,
    from: i64,
    limit: i64,
) -> Result<Vec<T>, StoreError> {
    let sql = page_sql(T::FULL, "position >= $1", "position >= $1", "position");
    page(pool, known, &sql, from, limit, None).await
}

/// A stream from version `from`, at most `limit`.
pub(super) async fn stream<T: Page>(
    pool: &PgPool,
    known: &RwLock<HashMap<i32, StreamId>>,
    stream: &StreamId,
    from: i64,
    limit: i64,
) -> Result<Vec<T>, StoreError> {
    // Versions are contiguous, so the page is a closed range: with the upper bound the
    // planner walks each (stream, version) index for `limit` rows even when its statistics
    // are stale (right after a bulk import it chose a bitmap scan of the whole stream's tail
    // and an on-disk sort, 200 ms a page).
    let sql = page_sql(
        T::FULL,
        "stream_id = $3 AND stream_version >= $1 AND stream_version < $1 + $2",
        &format!("stream = {NUMBER} AND version >= $1 AND version < $1 + $2"),
        "version",
    );
    page(pool, known, &sql, from, limit, Some(stream)).await
}

/// A market stream's trades with ids above `after`, in trade-id order, at most `limit`.
pub(super) async fn trades(
    pool: &PgPool,
    known: &RwLock<HashMap<i32, StreamId>>,
    stream: &StreamId,
    after: i64,
    limit: i64,
) -> Result<Vec<StreamEvent>, StoreError> {
    // Along each table's trade key, as closed ranges of ids: an open range `trade_id > $1
    // ORDER BY trade_id` made the planner, with statistics gone stale after a bulk import,
    // sort the whole stream on disk for every page (570 ms a page). The first id above
    // `after` comes from the indexes (a MIN is one index probe); ids are unique, so the range
    // holds at most `limit` rows, and a page may be short before the end: the end is an
    // empty page.
    let first: Option<i64> = sqlx::query_scalar(
        "SELECT LEAST((SELECT MIN(trade_id) FROM events WHERE stream_id = $1 AND trade_id > $2), \
                      (SELECT MIN(trade_id) FROM market_trades WHERE stream = \
                           (SELECT number FROM trade_streams WHERE stream_id = $1) \
                         AND trade_id > $2))",
    )
    .bind(stream.as_str())
    .bind(after)
    .fetch_one(pool)
    .await?;
    let Some(first) = first else {
        return Ok(Vec::new());
    };
    // `$1` is `first` here: the range starts at it, inclusive.
    let sql = page_sql(
        false,
        "stream_id = $3 AND trade_id >= $1 AND trade_id < $1 + $2",
        &format!("stream = {NUMBER} AND trade_id >= $1 AND trade_id < $1 + $2"),
        "trade_id",
    );
    page(pool, known, &sql, first, limit, Some(stream)).await
}
