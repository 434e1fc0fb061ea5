//! Queries over the read models, for the CLI, reports and the HTTP layer.
//!
//! They read what is committed; call [`crate::Projector::catch_up`] first to include the
//! latest appends.

use hedgehog_domain::Symbol;
use hedgehog_store::Database;

use crate::candles::{candle_from_row, select_candles, Candle, CandleRow, Interval};
use crate::db::{on_pool, to_i64};
use crate::orders::{OrderRow, ORDER_COLUMNS};
use crate::settings::{
    trading_from_row, StreamingSettingsRow, TradingRow, TradingSettingsRow, TRADING_COLUMNS,
};
use crate::trade_events::{TradeRow, TRADE_COLUMNS};
use crate::{Market, ProjectionError};

/// A time window in ms since the epoch, both ends inclusive, either open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    /// Whether `time` (ms) falls in the window.
    pub fn contains(self, time: i64) -> bool {
        let (from, to) = self.bounds();
        (from..=to).contains(&time)
    }

    fn bounds(self) -> (i64, i64) {
        (self.from.unwrap_or(i64::MIN), self.to.unwrap_or(i64::MAX))
    }
}

/// Candles of a series whose open time is in `window`, oldest first.
pub async fn candles(
    db: &Database,
    market: Market,
    symbol: &Symbol,
    interval: Interval,
    window: Window,
) -> Result<Vec<Candle>, ProjectionError> {
    let (from, to) = window.bounds();
    let sql = select_candles(
        "WHERE market = $1 AND symbol = $2 AND interval = $3 \
         AND open_time >= $4 AND open_time <= $5 ORDER BY open_time",
    );
    let rows: Vec<CandleRow> = on_pool!(db, pool => {
        sqlx::query_as(&sql)
            .bind(market.as_str())
            .bind(symbol.as_str())
            .bind(interval.as_str())
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
    });
    rows.into_iter().map(candle_from_row).collect()
}

/// Orders, optionally of one symbol and one status, in the order they were placed.
///
/// `run`: the orders of that kept backtest run (`backtest_orders`) instead of the live ones.
pub async fn orders(
    db: &Database,
    run: Option<&str>,
    symbol: Option<&Symbol>,
    status: Option<&str>,
) -> Result<Vec<OrderRow>, ProjectionError> {
    let (table, by_run) = match run {
        Some(_) => ("backtest_orders", " AND run_id = $3"),
        None => ("orders", ""),
    };
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM {table} \
         WHERE ($1 IS NULL OR symbol = $1) AND ($2 IS NULL OR status = $2){by_run} \
         ORDER BY time, symbol, order_id"
    );
    let rows: Vec<crate::orders::Row> = on_pool!(db, pool => {
        let query = sqlx::query_as(&sql)
            .bind(symbol.map(Symbol::as_str))
            .bind(status);
        let query = match run {
            Some(run) => query.bind(run),
            None => query,
        };
        query.fetch_all(pool).await?
    });
    rows.into_iter()
        .map(|row| {
            crate::orders::from_row(row).map(|mut o| {
                o.run_id = run.map(str::to_owned);
                o
            })
        })
        .collect()
}

/// One page of a symbol's trades in `window` (by trade time), in trade-id order (the exchange's
/// order), starting after trade id `after` (the last of the previous page). Page until it comes
/// back short.
pub async fn trades(
    db: &Database,
    market: Market,
    symbol: &Symbol,
    window: Window,
    after: Option<u64>,
    limit: i64,
) -> Result<Vec<TradeRow>, ProjectionError> {
    let (from, to) = window.bounds();
    let after = after.map_or(-1, to_i64);
    let sql = format!(
        "SELECT {TRADE_COLUMNS} FROM trade_events \
         WHERE market = $1 AND symbol = $2 AND trade_id > $3 \
         AND trade_time >= $4 AND trade_time <= $5 \
         ORDER BY market, symbol, trade_id LIMIT $6"
    );
    let rows: Vec<crate::trade_events::Row> = on_pool!(db, pool => {
        sqlx::query_as(&sql)
            .bind(market.as_str())
            .bind(symbol.as_str())
            .bind(after)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(crate::trade_events::from_row)
        .collect()
}

/// The trading status and settings of every symbol that has any, by symbol.
pub async fn trading_settings(db: &Database) -> Result<Vec<TradingSettingsRow>, ProjectionError> {
    let sql = format!("SELECT {TRADING_COLUMNS} FROM trading_settings ORDER BY symbol");
    let rows: Vec<TradingRow> = on_pool!(db, pool => {
        sqlx::query_as(&sql).fetch_all(pool).await?
    });
    rows.into_iter().map(trading_from_row).collect()
}

/// The streaming status of every symbol that has one, by symbol.
pub async fn streaming_settings(
    db: &Database,
) -> Result<Vec<StreamingSettingsRow>, ProjectionError> {
    let rows: Vec<(String, String, i64)> = on_pool!(db, pool => {
        sqlx::query_as("SELECT symbol, status, position FROM streaming_settings ORDER BY symbol")
            .fetch_all(pool)
            .await?
    });
    rows.into_iter()
        .map(|(s, status, position)| {
            Ok(StreamingSettingsRow {
                symbol: Symbol::parse(&s).map_err(|_| ProjectionError::Corrupt {
                    table: "streaming_settings",
                    column: "symbol",
                    value: s.clone(),
                })?,
                status,
                position,
            })
        })
        .collect()
}

/// A symbol's trades in a window, a page at a time (see [`trades`]): for reading a year of
/// trades without holding it in memory.
pub struct TradePages {
    db: Database,
    market: Market,
    symbol: Symbol,
    window: Window,
    page_size: i64,
    after: Option<u64>,
    done: bool,
}

impl TradePages {
    pub fn new(db: Database, market: Market, symbol: Symbol, window: Window) -> Self {
        TradePages {
            db,
            market,
            symbol,
            window,
            page_size: 10_000,
            after: None,
            done: false,
        }
    }

    /// The next page, or `None` after the last.
    pub async fn next_page(&mut self) -> Result<Option<Vec<TradeRow>>, ProjectionError> {
        if self.done {
            return Ok(None);
        }
        let page = trades(
            &self.db,
            self.market,
            &self.symbol,
            self.window,
            self.after,
            self.page_size,
        )
        .await?;
        self.done = (page.len() as i64) < self.page_size;
        self.after = page.last().map(|t| t.trade_id);
        Ok((!page.is_empty()).then_some(page))
    }
}
