//! Queries over the read models, for the CLI, reports and the HTTP layer.
//!
//! They read what is committed; call [`crate::Projector::catch_up`] first to include the
//! latest appends.

use hedgehog_domain::{Event, Symbol};
use hedgehog_store::{Database, Store, StreamEvent, StreamId};

use crate::candles::{candle_from_row, select_candles, Candle, CandleRow, Interval};
use crate::db::on_pool;
use crate::orders::{OrderRow, ORDER_COLUMNS};
use crate::settings::{
    trading_from_row, StreamingSettingsRow, TradingRow, TradingSettingsRow, TRADING_COLUMNS,
};
use crate::trade_events::{Shown, TradeRow};
use crate::{Market, ProjectionError, Update};

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
///
/// Read from the log along the market stream's trade key (`Store::read_trades`), showing what
/// the `trade_events` view shows: trades the projection has reached, outside the stretches the
/// symbol's storing was off. Like the table before it, there is no time index: a window is
/// read along the key from `after`.
pub async fn trades(
    store: &Store,
    market: Market,
    symbol: &Symbol,
    window: Window,
    after: Option<u64>,
    limit: i64,
) -> Result<Vec<TradeRow>, ProjectionError> {
    let shown = Shown::load(&store.database(), symbol).await?;
    let stream = StreamId::market_trades(market, symbol);
    let wanted = usize::try_from(limit).unwrap_or(0);
    let mut out = Vec::with_capacity(wanted.min(TRADE_READ));
    let mut after = after;
    // As many as are wanted; once trades are left out (hidden, outside the window), pages of
    // the most, so a sparse window is not read a few trades at a time.
    let mut read = wanted.min(TRADE_READ);
    while out.len() < wanted {
        let page = store.read_trades(&stream, after, read as i64).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            let Event::TradeReceived(t) = &e.event else {
                return Err(not_a_trade(e));
            };
            after = Some(t.trade_id);
            if shown.contains(e.position) && window.contains(t.trade_time.millis()) {
                out.push(TradeRow::of(market, e.position, t));
                if out.len() == wanted {
                    break;
                }
            } else {
                read = TRADE_READ;
            }
        }
    }
    Ok(out)
}

/// How many trades [`trades`] reads from the log at a time.
const TRADE_READ: usize = 10_000;

/// Only trades carry a trade id, so only trades come back along the trade key.
fn not_a_trade(e: &StreamEvent) -> ProjectionError {
    ProjectionError::Corrupt {
        table: "events",
        column: "trade_id",
        value: format!(
            "position {} of {} is a {}, not a trade",
            e.position,
            e.stream_id,
            e.event.event_type()
        ),
    }
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
                symbol: streaming_symbol(s)?,
                status,
                position,
            })
        })
        .collect()
}

/// A symbol's trades in a window, a page at a time (see [`trades`]): for reading a year of
/// trades without holding it in memory.
pub struct TradePages {
    store: Store,
    market: Market,
    symbol: Symbol,
    window: Window,
    page_size: i64,
    after: Option<u64>,
    done: bool,
}

impl TradePages {
    pub fn new(store: Store, market: Market, symbol: Symbol, window: Window) -> Self {
        TradePages {
            store,
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
            &self.store,
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

/// A kind of read-model row, as `/api/updates` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpdateKind {
    Candle,
    Order,
    TradingSettings,
    StreamingSettings,
}

impl UpdateKind {
    pub const ALL: [UpdateKind; 4] = [
        UpdateKind::TradingSettings,
        UpdateKind::StreamingSettings,
        UpdateKind::Order,
        UpdateKind::Candle,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Candle => "candle",
            UpdateKind::Order => "order",
            UpdateKind::TradingSettings => "trading_settings",
            UpdateKind::StreamingSettings => "streaming_settings",
        }
    }

    pub fn of(update: &Update) -> UpdateKind {
        match update {
            Update::Candle(_) => UpdateKind::Candle,
            Update::Order(_) => UpdateKind::Order,
            Update::TradingSettings(_) => UpdateKind::TradingSettings,
            Update::StreamingSettings(_) => UpdateKind::StreamingSettings,
        }
    }

    /// The projection whose checkpoint says how far rows of this kind are.
    fn projection(self) -> &'static str {
        match self {
            UpdateKind::Candle => "candles",
            UpdateKind::Order => "orders",
            UpdateKind::TradingSettings => "trading_settings",
            UpdateKind::StreamingSettings => "streaming_settings",
        }
    }
}

impl std::str::FromStr for UpdateKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        UpdateKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not candle, order, trading_settings or streaming_settings")
            })
    }
}

/// Which updates a subscriber wants: one symbol's, one kind's, candles of one interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateFilter {
    pub symbol: Option<Symbol>,
    pub kind: Option<UpdateKind>,
    pub interval: Option<Interval>,
}

impl UpdateFilter {
    pub fn wants(&self, update: &Update) -> bool {
        let (symbol, interval) = match update {
            Update::Candle(c) => (&c.symbol, Some(c.interval)),
            Update::Order(o) => (&o.symbol, None),
            Update::TradingSettings(t) => (&t.symbol, None),
            Update::StreamingSettings(t) => (&t.symbol, None),
        };
        self.symbol.as_ref().is_none_or(|s| s == symbol)
            && self.kind.is_none_or(|k| k == UpdateKind::of(update))
            && self
                .interval
                .is_none_or(|i| interval.is_none_or(|c| c == i))
    }

    pub fn kinds(&self) -> impl Iterator<Item = UpdateKind> + '_ {
        UpdateKind::ALL
            .into_iter()
            .filter(|k| self.kind.is_none_or(|want| want == *k))
    }
}

/// How far the read models a filter reads are projected: the lowest of their checkpoints (0
/// for one never run). Rows read after this say at least as much as every update published up
/// to it. A plain read: it never waits on the writers.
pub async fn projected_position(
    db: &Database,
    filter: &UpdateFilter,
) -> Result<i64, ProjectionError> {
    let rows: Vec<(String, i64)> = on_pool!(db, pool => {
        sqlx::query_as("SELECT name, position FROM projection_checkpoints")
            .fetch_all(pool)
            .await?
    });
    Ok(filter
        .kinds()
        .map(|kind| {
            rows.iter()
                .find(|(name, _)| name == kind.projection())
                .map_or(0, |(_, position)| *position)
        })
        .min()
        .unwrap_or(0))
}

/// One page of [`changed_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedPage {
    /// The rows, in position order, as updates.
    pub updates: Vec<Update>,
    /// Where the next page starts (pass it as `after`).
    pub next: i64,
    /// Whether there may be more.
    pub more: bool,
}

/// A page of the rows of one kind that changed after log position `after` and pass `filter`,
/// in position order, as updates. Page with `next` until `more` is false; rows changed while
/// paging move to a later page (a position only grows), so none is missed. A full page ends
/// before its last position, whose rows the next page starts with (unless the whole page shares
/// it, which no batch comes near: a trade changes at most twelve candles).
pub async fn changed_after(
    db: &Database,
    kind: UpdateKind,
    filter: &UpdateFilter,
    after: i64,
    limit: i64,
) -> Result<ChangedPage, ProjectionError> {
    let mut updates = changed_rows(db, kind, filter, after, limit).await?;
    let more = updates.len() as i64 == limit;
    if let (true, Some(last)) = (more, updates.last().map(update_position)) {
        let keep = updates
            .iter()
            .position(|u| update_position(u) == last)
            .unwrap_or(updates.len());
        if keep > 0 {
            updates.truncate(keep);
        }
    }
    let next = updates.last().map_or(after, update_position);
    Ok(ChangedPage {
        updates,
        next,
        more,
    })
}

async fn changed_rows(
    db: &Database,
    kind: UpdateKind,
    filter: &UpdateFilter,
    after: i64,
    limit: i64,
) -> Result<Vec<Update>, ProjectionError> {
    let symbol = filter.symbol.as_ref().map(Symbol::as_str);
    let by_symbol = "($2 IS NULL OR symbol = $2)";
    let tail = "ORDER BY position LIMIT $3";
    match kind {
        UpdateKind::Candle => {
            let sql = select_candles(&format!(
                "WHERE position > $1 AND {by_symbol} AND ($4 IS NULL OR interval = $4) {tail}"
            ));
            let interval = filter.interval.map(Interval::as_str);
            let rows: Vec<CandleRow> = on_pool!(db, pool => {
                sqlx::query_as(&sql)
                    .bind(after)
                    .bind(symbol)
                    .bind(limit)
                    .bind(interval)
                    .fetch_all(pool)
                    .await?
            });
            rows.into_iter()
                .map(|r| candle_from_row(r).map(Update::Candle))
                .collect()
        }
        UpdateKind::Order => {
            let sql = format!(
                "SELECT {ORDER_COLUMNS} FROM orders WHERE position > $1 AND {by_symbol} {tail}"
            );
            let rows: Vec<crate::orders::Row> = on_pool!(db, pool => {
                sqlx::query_as(&sql).bind(after).bind(symbol).bind(limit).fetch_all(pool).await?
            });
            rows.into_iter()
                .map(|r| crate::orders::from_row(r).map(Update::Order))
                .collect()
        }
        UpdateKind::TradingSettings => {
            let sql = format!(
                "SELECT {TRADING_COLUMNS} FROM trading_settings \
                 WHERE position > $1 AND {by_symbol} {tail}"
            );
            let rows: Vec<TradingRow> = on_pool!(db, pool => {
                sqlx::query_as(&sql).bind(after).bind(symbol).bind(limit).fetch_all(pool).await?
            });
            rows.into_iter()
                .map(|r| trading_from_row(r).map(Update::TradingSettings))
                .collect()
        }
        UpdateKind::StreamingSettings => {
            let rows: Vec<(String, String, i64)> = on_pool!(db, pool => {
                sqlx::query_as(
                    "SELECT symbol, status, position FROM streaming_settings \
                     WHERE position > $1 AND ($2 IS NULL OR symbol = $2) \
                     ORDER BY position LIMIT $3",
                )
                .bind(after)
                .bind(symbol)
                .bind(limit)
                .fetch_all(pool)
                .await?
            });
            rows.into_iter()
                .map(|(s, status, position)| {
                    Ok(Update::StreamingSettings(StreamingSettingsRow {
                        symbol: streaming_symbol(s)?,
                        status,
                        position,
                    }))
                })
                .collect()
        }
    }
}

fn streaming_symbol(s: String) -> Result<Symbol, ProjectionError> {
    Symbol::parse(&s).map_err(|_| ProjectionError::Corrupt {
        table: "streaming_settings",
        column: "symbol",
        value: s,
    })
}

/// The log position of the last change to the row an update carries.
pub fn update_position(update: &Update) -> i64 {
    match update {
        Update::Candle(c) => c.position,
        Update::Order(o) => o.position,
        Update::TradingSettings(t) => t.position,
        Update::StreamingSettings(s) => s.position,
    }
}
