//! PostgreSQL's side of sealed segments ([`crate::sealed`]): their descriptions and blocks,
//! and the seal of a window.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::market_trade::TradeRow;
use crate::sealed::{self, Along, Sealed, Segment};
use crate::segment::SealedTrade;
use crate::{StoreError, StreamId};

pub(super) async fn segments(
    pool: &PgPool,
    along: &Along,
    from: i64,
    to: i64,
    after: (i64, i64),
    limit: i64,
) -> Result<Vec<Segment>, StoreError> {
    sealed::segments_from!(pool, '$', along, from, to, after, limit)
}

pub(super) async fn block(pool: &PgPool, id: i64) -> Result<(Vec<u8>, i64), StoreError> {
    Ok(
        sqlx::query_as("SELECT block, checksum FROM trade_segments WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?,
    )
}

/// The trade ids and event ids of stream `number`'s sealed trades in `low..=high`.
pub(super) async fn keys(
    conn: &mut PgConnection,
    number: Option<i32>,
    range: Option<(i64, i64)>,
) -> Result<(HashSet<i64>, HashSet<Uuid>), StoreError> {
    let (Some(number), Some((low, high))) = (number, range) else {
        return Ok(Default::default());
    };
    type Row = (i64, String, i64, i64, i64, i64, i64, i64, i64, Vec<u8>, i64);
    let rows: Vec<Row> = sqlx::query_as(&sealed::overlapping_sql('$'))
        .bind(number)
        .bind(low)
        .bind(high)
        .fetch_all(&mut *conn)
        .await?;
    let overlapping = rows
        .into_iter()
        .map(|r| {
            let segment = Segment::from_row((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8));
            (segment, r.9, r.10)
        })
        .collect();
    sealed::keys_of(overlapping)
}

type WindowRow = (
    i32,
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    i32,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Uuid>,
);

/// [`crate::Backend::seal_window`]: one transaction, holding the log's append lock so that no
/// append's trade-key probe runs beside it.
pub(super) async fn window(
    pool: &PgPool,
    from: i64,
    before: i64,
) -> Result<Option<(i64, Sealed)>, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('hedgehog.events:' || current_schema()))")
        .execute(&mut *tx)
        .await?;
    let start: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(position) FROM market_trades WHERE position >= $1 AND trade_time < $2",
    )
    .bind(from)
    .bind(before)
    .fetch_one(&mut *tx)
    .await?;
    let Some(start) = start else {
        return Ok(None);
    };
    let end = start.saturating_add(sealed::WINDOW);
    let rows: Vec<WindowRow> = sqlx::query_as(&sealed::window_sql('$'))
        .bind(start)
        .bind(end)
        .fetch_all(&mut *tx)
        .await?;
    let streams: Vec<i32> = rows
        .iter()
        .map(|r| r.0)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let described: Vec<(i32, String, i64)> = sqlx::query_as(
        "SELECT t.number, t.stream_id, \
                (SELECT MAX(version) FROM market_trades m WHERE m.stream = t.number) \
         FROM trade_streams t WHERE t.number = ANY($1)",
    )
    .bind(&streams)
    .fetch_all(&mut *tx)
    .await?;
    let (mut newest, mut names) = (HashMap::new(), HashMap::new());
    for (number, name, version) in described {
        newest.insert(i64::from(number), version);
        names.insert(i64::from(number), StreamId::new(&name)?);
    }
    let rows = rows
        .into_iter()
        .map(|r| {
            let trade = SealedTrade {
                position: r.1,
                version: r.2,
                recorded_at: r.3,
                row: TradeRow {
                    trade_id: r.4,
                    price: r.5,
                    quantity: r.6,
                    form: i64::from(r.7),
                    trade_time: r.8,
                    event_lag: r.9,
                    buyer_order_id: r.10,
                    seller_order_id: r.11,
                    first_trade_id: r.12,
                    event_id: r.13,
                },
            };
            (i64::from(r.0), trade)
        })
        .collect();
    let plan = crate::joined(
        tokio::task::spawn_blocking(move || Ok(sealed::plan(rows, &newest, before, &names))).await,
    )?;
    let mut done = Sealed::default();
    for segment in plan {
        let i = &segment.info;
        let number = i32::try_from(segment.stream).unwrap_or(i32::MAX);
        sqlx::query(&sealed::insert_sql('$'))
            .bind(number)
            .bind(i.first_position)
            .bind(i.last_position)
            .bind(i.first_version)
            .bind(i.last_version)
            .bind(i.min_trade_id)
            .bind(i.max_trade_id)
            .bind(i.trades)
            .bind(i64::from(segment.checksum))
            .bind(&segment.block)
            .execute(&mut *tx)
            .await?;
        let deleted = sqlx::query(
            "DELETE FROM market_trades WHERE stream = $1 AND version BETWEEN $2 AND $3",
        )
        .bind(number)
        .bind(i.first_version)
        .bind(i.last_version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        done += segment.sealed_by(deleted)?;
    }
    tx.commit().await?;
    Ok(Some((end, done)))
}
