//! OHLC candles with exactly the fields of Binance's klines, for the [`STORED`] intervals.
//!
//! The arithmetic is pure and lives in the domain ([`Bar`], [`Interval`]), shared with the
//! simulated exchange's `klines`: the projection builds only 1-minute bars per trade, derives
//! 5m ... 1d from them by merging, and folds a batch's bars into the stored ones in any order
//! with the same result.

use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;
pub use hedgehog_domain::candle::{Bar, Interval, UnknownInterval};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::{Event, Symbol};
use serde::Serialize;

use crate::db::{on_tx, Tx};
use crate::{Market, Origin, ProjectionError, ReadModel, Update};

/// The intervals the projection keeps (each derives from 1-minute bars).
pub const STORED: [Interval; 6] = [
    Interval::M1,
    Interval::M5,
    Interval::M15,
    Interval::H1,
    Interval::H4,
    Interval::D1,
];

/// An interval the projection does not keep, or no interval at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStored {
    #[error(transparent)]
    Unknown(#[from] UnknownInterval),
    #[error("{0} candles are not kept by the candles projection: use one of 1m, 5m, 15m, 1h, 4h, 1d (`hedgehog exchange serve` computes every interval from its trades)")]
    Interval(Interval),
}

/// Parses an interval the projection keeps.
pub fn stored_interval(text: &str) -> Result<Interval, NotStored> {
    let interval: Interval = text.parse()?;
    if STORED.contains(&interval) {
        Ok(interval)
    } else {
        Err(NotStored::Interval(interval))
    }
}

/// One candle series: a market's symbol at one interval.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Series {
    pub market: Market,
    pub symbol: Symbol,
    pub interval: Interval,
}

/// A candle as stored in `candles` and as queries and subscribers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candle {
    pub market: Market,
    pub symbol: Symbol,
    pub interval: Interval,
    pub open_time: i64,
    pub close_time: i64,
    #[serde(flatten)]
    pub bar: Bar,
    /// False for the latest candle of its series, which is still being built.
    pub closed: bool,
    /// The log position of the last change to the candle: its newest trade's, or the first
    /// trade of the candle that closed it. It depends on the events only (not on how they were
    /// batched), so a rebuilt table equals the live one, and `/api/updates` can resume after a
    /// position by serving the candles changed since.
    pub position: i64,
}

impl Candle {
    pub fn series(&self) -> Series {
        Series {
            market: self.market,
            symbol: self.symbol.clone(),
            interval: self.interval,
        }
    }
}

/// 1-minute bars of one batch, keyed by (market, symbol, open time).
type MinuteKey = (Market, Symbol, i64);

/// The log positions of the first and the last trade folded into a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: i64,
    pub last: i64,
}

impl Span {
    pub fn at(position: i64) -> Span {
        Span {
            first: position,
            last: position,
        }
    }

    fn merge(&mut self, other: Span) {
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
    }
}

/// The `candles` read model.
#[derive(Debug, Default)]
pub struct Candles {
    /// The minute being added to (trades arrive in order, so most trades land here), then the
    /// other minutes of the batch.
    current: Option<(MinuteKey, Bar, Span)>,
    minutes: HashMap<MinuteKey, (Bar, Span)>,
    /// The latest stored candle of each series (`None`: the series has none), as committed.
    latest: HashMap<Series, Option<Candle>>,
}

impl Candles {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, market: Market, trade: &TradeReceived, position: i64) {
        let open_time = Interval::M1.open_time(trade.trade_time.millis());
        if let Some(((m, s, t), bar, span)) = &mut self.current {
            if *m == market && *t == open_time && *s == trade.symbol {
                bar.add(trade);
                span.merge(Span::at(position));
                return;
            }
        }
        self.close_current_minute();
        self.current = Some((
            (market, trade.symbol.clone(), open_time),
            Bar::of(trade),
            Span::at(position),
        ));
    }

    /// The batch's bars for every interval, in a stable order.
    fn close_current_minute(&mut self) {
        if let Some((key, bar, span)) = self.current.take() {
            self.minutes
                .entry(key)
                .and_modify(|(b, s)| {
                    b.merge(&bar);
                    s.merge(span);
                })
                .or_insert((bar, span));
        }
    }

    fn batch_bars(&mut self) -> BTreeMap<(Series, i64), (Bar, Span)> {
        self.close_current_minute();
        let mut minutes: Vec<(MinuteKey, (Bar, Span))> = self.minutes.drain().collect();
        minutes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = BTreeMap::new();
        for ((market, symbol, minute), (bar, span)) in minutes {
            for interval in STORED {
                let series = Series {
                    market,
                    symbol: symbol.clone(),
                    interval,
                };
                out.entry((series, interval.open_time(minute)))
                    .and_modify(|(b, s): &mut (Bar, Span)| {
                        b.merge(&bar);
                        s.merge(span);
                    })
                    .or_insert_with(|| (bar.clone(), span));
            }
        }
        out
    }
}

/// The stored candles a batch's bars fold into, and which of them are closed.
///
/// Pure: `stored` gives the stored candle at a (series, open time) the batch touches, or `None`.
/// Returns the rows to write, the latest of every touched series included.
///
/// A candle this batch closes takes, as its position, the position of the trade that closed
/// it: the first trade after its own first one to land in a newer candle of its series. A candle
/// born closed (older than one that already exists) keeps its own last trade's. Either way the
/// position depends on the log alone, however it was cut into batches.
pub fn fold_batch(
    bars: BTreeMap<(Series, i64), (Bar, Span)>,
    latest: &HashMap<Series, Option<Candle>>,
    mut stored: impl FnMut(&Series, i64) -> Option<Candle>,
) -> Vec<Candle> {
    let mut rows: BTreeMap<(Series, i64), Candle> = BTreeMap::new();
    // The batch's positions per candle, and which candles were stored closed already.
    let mut spans: BTreeMap<(Series, i64), Span> = BTreeMap::new();
    let mut was_closed: std::collections::BTreeSet<(Series, i64)> = Default::default();
    let mut born: std::collections::BTreeSet<(Series, i64)> = Default::default();
    for ((series, open_time), (bar, span)) in bars {
        let candle = match stored(&series, open_time) {
            Some(mut candle) => {
                candle.bar.merge(&bar);
                candle.position = candle.position.max(span.last);
                if candle.closed {
                    was_closed.insert((series.clone(), open_time));
                }
                candle
            }
            None => {
                born.insert((series.clone(), open_time));
                Candle {
                    market: series.market,
                    symbol: series.symbol.clone(),
                    interval: series.interval,
                    open_time,
                    close_time: series.interval.close_time(open_time),
                    bar,
                    closed: false,
                    position: span.last,
                }
            }
        };
        spans.insert((series.clone(), open_time), span);
        rows.insert((series, open_time), candle);
    }
    // Only the newest candle of a series is open; a newer one closes the previous newest.
    let mut newest: BTreeMap<Series, i64> = BTreeMap::new();
    for (series, open_time) in rows.keys() {
        let n = newest.entry(series.clone()).or_insert(*open_time);
        *n = (*n).max(*open_time);
    }
    for (series, newest_open) in &mut newest {
        if let Some(Some(prev)) = latest.get(series) {
            if prev.open_time > *newest_open {
                *newest_open = prev.open_time;
            } else if prev.open_time < *newest_open {
                rows.entry((series.clone(), prev.open_time))
                    .or_insert_with(|| prev.clone());
            }
        }
    }
    // The first batch position in a newer candle of the series, for each row: walk each series
    // from its newest candle down.
    let mut closed_at: BTreeMap<(Series, i64), i64> = BTreeMap::new();
    let mut first_newer: Option<(Series, i64)> = None;
    for ((series, open_time), _) in rows.iter().rev() {
        let carried = first_newer
            .as_ref()
            .filter(|(s, _)| s == series)
            .map(|(_, p)| *p);
        if let Some(p) = carried {
            closed_at.insert((series.clone(), *open_time), p);
        }
        let own = spans.get(&(series.clone(), *open_time)).map(|s| s.first);
        let first = match (carried, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        first_newer = first.map(|p| (series.clone(), p));
    }
    rows.into_iter()
        .map(|(key, mut candle)| {
            candle.closed = key.1 < newest[&key.0];
            let closer = closed_at.get(&key).copied().filter(|closer| {
                if was_closed.contains(&key) {
                    return false;
                }
                if !born.contains(&key) {
                    return true; // it was the open one
                }
                let older_than_stored = matches!(
                    latest.get(&key.0),
                    Some(Some(l)) if l.open_time > key.1
                );
                let first_own = spans.get(&key).map_or(i64::MAX, |s| s.first);
                !older_than_stored && *closer > first_own
            });
            if let (true, Some(p)) = (candle.closed, closer) {
                candle.position = candle.position.max(p);
            }
            candle
        })
        .collect()
}

impl ReadModel for Candles {
    fn name(&self) -> &'static str {
        "candles"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["candles"]
    }

    fn apply(&mut self, origin: &Origin, event: &Event) {
        if let Event::TradeReceived(trade) = event {
            if let Some(market) = origin.stream.market() {
                // Binance's klines count market trades only (not insurance fund or ADL ones).
                if trade.kind.is_market() {
                    self.add(market, trade, origin.position);
                }
            }
        }
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<Vec<Update>, ProjectionError>> {
        Box::pin(async move {
            let bars = self.batch_bars();
            if bars.is_empty() {
                return Ok(Vec::new());
            }
            // Load what the fold needs: the latest candle of series not seen yet, and stored
            // candles older than the latest (a file of older trades imported after newer ones).
            let mut needed: HashMap<(Series, i64), Option<Candle>> = HashMap::new();
            for (series, open_time) in bars.keys() {
                if !self.latest.contains_key(series) {
                    let latest = load_latest(tx, series).await?;
                    self.latest.insert(series.clone(), latest);
                }
                let latest = self.latest[series].as_ref();
                let stored = match latest {
                    Some(l) if l.open_time == *open_time => Some(l.clone()),
                    Some(l) if l.open_time > *open_time => {
                        load_candle(tx, series, *open_time).await?
                    }
                    _ => None,
                };
                needed.insert((series.clone(), *open_time), stored);
            }
            let rows = fold_batch(bars, &self.latest, |series, open_time| {
                needed.remove(&(series.clone(), open_time)).flatten()
            });
            write_candles(tx, &rows).await?;
            for row in &rows {
                if !row.closed {
                    self.latest.insert(row.series(), Some(row.clone()));
                }
            }
            Ok(rows.into_iter().map(Update::Candle).collect())
        })
    }

    fn forget(&mut self) {
        self.current = None;
        self.minutes.clear();
        self.latest.clear();
    }
}

crate::eventually_projection!(Candles);

const CANDLE_COLUMNS: &str = "market, symbol, interval, open_time, open, high, low, close, \
     volume, close_time, quote_volume, trade_count, taker_buy_base_volume, \
     taker_buy_quote_volume, first_trade_id, last_trade_id, closed, position";

/// Rows per INSERT: 18 parameters each, below SQLite's 32,766.
const INSERT_ROWS: usize = 1_000;

async fn write_candles(tx: &mut Tx, rows: &[Candle]) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(INSERT_ROWS) {
        on_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new(format!("INSERT INTO candles ({CANDLE_COLUMNS}) "));
            q.push_values(chunk, |mut row, c| {
                row.push_bind(c.market.as_str())
                    .push_bind(c.symbol.as_str())
                    .push_bind(c.interval.as_str())
                    .push_bind(c.open_time)
                    .push_bind(c.bar.open.to_string())
                    .push_bind(c.bar.high.to_string())
                    .push_bind(c.bar.low.to_string())
                    .push_bind(c.bar.close.to_string())
                    .push_bind(c.bar.volume.to_string())
                    .push_bind(c.close_time)
                    .push_bind(c.bar.quote_volume.to_string())
                    .push_bind(crate::db::to_i64(c.bar.trade_count))
                    .push_bind(c.bar.taker_buy_base_volume.to_string())
                    .push_bind(c.bar.taker_buy_quote_volume.to_string())
                    .push_bind(crate::db::to_i64(c.bar.first_trade_id))
                    .push_bind(crate::db::to_i64(c.bar.last_trade_id))
                    .push_bind(c.closed)
                    .push_bind(c.position);
            });
            q.push(
                " ON CONFLICT (market, symbol, interval, open_time) DO UPDATE SET \
                 open = excluded.open, high = excluded.high, low = excluded.low, \
                 close = excluded.close, volume = excluded.volume, \
                 quote_volume = excluded.quote_volume, trade_count = excluded.trade_count, \
                 taker_buy_base_volume = excluded.taker_buy_base_volume, \
                 taker_buy_quote_volume = excluded.taker_buy_quote_volume, \
                 first_trade_id = excluded.first_trade_id, \
                 last_trade_id = excluded.last_trade_id, closed = excluded.closed, \
                 position = excluded.position",
            );
            q.build().persistent(chunk.len() == INSERT_ROWS).execute(&mut *conn).await?;
        });
    }
    Ok(())
}

/// A stored candle row, as selected by [`select_candles`].
#[derive(sqlx::FromRow)]
pub(crate) struct CandleRow {
    market: String,
    symbol: String,
    interval: String,
    open_time: i64,
    open: String,
    high: String,
    low: String,
    close: String,
    volume: String,
    close_time: i64,
    quote_volume: String,
    trade_count: i64,
    taker_buy_base_volume: String,
    taker_buy_quote_volume: String,
    first_trade_id: i64,
    last_trade_id: i64,
    closed: bool,
    position: i64,
}

pub(crate) fn select_candles(filter: &str) -> String {
    format!("SELECT {CANDLE_COLUMNS} FROM candles {filter}")
}

pub(crate) fn candle_from_row(row: CandleRow) -> Result<Candle, ProjectionError> {
    use crate::db::{decimal, unsigned};
    let CandleRow {
        market: m,
        symbol: s,
        interval: i,
        open_time,
        open: o,
        high: h,
        low: l,
        close: c,
        volume: v,
        close_time,
        quote_volume: qv,
        trade_count: n,
        taker_buy_base_volume: tb,
        taker_buy_quote_volume: tq,
        first_trade_id: first,
        last_trade_id: last,
        closed,
        position,
    } = row;
    let corrupt = |column: &'static str, value: &str| ProjectionError::Corrupt {
        table: "candles",
        column,
        value: value.to_owned(),
    };
    Ok(Candle {
        market: m.parse().map_err(|_| corrupt("market", &m))?,
        symbol: Symbol::parse(&s).map_err(|_| corrupt("symbol", &s))?,
        interval: i.parse().map_err(|_| corrupt("interval", &i))?,
        open_time,
        close_time,
        bar: Bar {
            open: decimal("candles", "open", &o)?,
            high: decimal("candles", "high", &h)?,
            low: decimal("candles", "low", &l)?,
            close: decimal("candles", "close", &c)?,
            volume: decimal("candles", "volume", &v)?,
            quote_volume: decimal("candles", "quote_volume", &qv)?,
            trade_count: unsigned("candles", "trade_count", n)?,
            taker_buy_base_volume: decimal("candles", "taker_buy_base_volume", &tb)?,
            taker_buy_quote_volume: decimal("candles", "taker_buy_quote_volume", &tq)?,
            first_trade_id: unsigned("candles", "first_trade_id", first)?,
            last_trade_id: unsigned("candles", "last_trade_id", last)?,
        },
        closed,
        position,
    })
}

async fn load_latest(tx: &mut Tx, series: &Series) -> Result<Option<Candle>, ProjectionError> {
    let sql = select_candles(
        "WHERE market = $1 AND symbol = $2 AND interval = $3 ORDER BY open_time DESC LIMIT 1",
    );
    let row: Option<CandleRow> = on_tx!(tx, conn => {
        sqlx::query_as(&sql)
            .bind(series.market.as_str())
            .bind(series.symbol.as_str())
            .bind(series.interval.as_str())
            .fetch_optional(&mut *conn)
            .await?
    });
    row.map(candle_from_row).transpose()
}

async fn load_candle(
    tx: &mut Tx,
    series: &Series,
    open_time: i64,
) -> Result<Option<Candle>, ProjectionError> {
    let sql =
        select_candles("WHERE market = $1 AND symbol = $2 AND interval = $3 AND open_time = $4");
    let row: Option<CandleRow> = on_tx!(tx, conn => {
        sqlx::query_as(&sql)
            .bind(series.market.as_str())
            .bind(series.symbol.as_str())
            .bind(series.interval.as_str())
            .bind(open_time)
            .fetch_optional(&mut *conn)
            .await?
    });
    row.map(candle_from_row).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;

    fn trade(id: u64, time: i64, price: Decimal, qty: Decimal, maker: bool) -> TradeReceived {
        hedgehog_domain::testkit::printed("BTCUSDT", id, time, price, qty, maker)
    }

    fn series(interval: Interval) -> Series {
        Series {
            market: Market::Spot,
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            interval,
        }
    }

    #[test]
    fn a_newer_candle_closes_the_previous_latest() {
        let s = series(Interval::M1);
        let prev = Candle {
            market: Market::Spot,
            symbol: s.symbol.clone(),
            interval: Interval::M1,
            open_time: 0,
            close_time: 59_999,
            bar: Bar::of(&trade(1, 5, dec!(1), dec!(1), false)),
            closed: false,
            position: 7,
        };
        let latest = HashMap::from([(s.clone(), Some(prev))]);
        let bars = BTreeMap::from([(
            (s.clone(), 120_000),
            (
                Bar::of(&trade(2, 120_001, dec!(2), dec!(1), false)),
                Span { first: 9, last: 9 },
            ),
        )]);
        let rows = fold_batch(bars, &latest, |_, _| None);
        assert_eq!(rows.len(), 2);
        // Closed by the trade at 9, which the closed candle's position says.
        assert_eq!((rows[0].open_time, rows[0].closed), (0, true));
        assert_eq!(rows[0].position, 9);
        assert_eq!((rows[1].open_time, rows[1].closed), (120_000, false));
        assert_eq!(rows[1].position, 9);
    }

    /// Folds `trades` (time, position) of one series in batches cut at `cuts`, as the projector
    /// would across flushes, and returns the stored candles.
    fn fold_in_batches(trades: &[(i64, i64)], cuts: &[usize]) -> Vec<Candle> {
        let s = series(Interval::M1);
        let mut stored: BTreeMap<i64, Candle> = BTreeMap::new();
        let mut bounds = vec![0];
        bounds.extend(cuts);
        bounds.push(trades.len());
        for w in bounds.windows(2) {
            let mut bars = BTreeMap::new();
            for &(time, position) in &trades[w[0]..w[1]] {
                let t = trade(position as u64, time, dec!(1), dec!(1), false);
                bars.entry((s.clone(), Interval::M1.open_time(time)))
                    .and_modify(|(b, sp): &mut (Bar, Span)| {
                        b.add(&t);
                        sp.merge(Span::at(position));
                    })
                    .or_insert_with(|| (Bar::of(&t), Span::at(position)));
            }
            let latest = HashMap::from([(s.clone(), stored.values().next_back().cloned())]);
            let rows = fold_batch(bars, &latest, |_, open| stored.get(&open).cloned());
            for row in rows {
                stored.insert(row.open_time, row);
            }
        }
        stored.into_values().collect()
    }

    #[test]
    fn a_candle_position_depends_on_the_log_not_on_the_batches() {
        // Minutes 0, 1, then a late trade in minute 0, then minute 2, an old minute (born
        // closed) and minute 3.
        let trades = [
            (1_000, 1),
            (2_000, 2),
            (61_000, 3),
            (3_000, 4),
            (121_000, 5),
            (-60_000, 6),
            (181_000, 7),
        ];
        let whole = fold_in_batches(&trades, &[]);
        for cuts in [
            vec![1],
            vec![2],
            vec![3, 5],
            vec![1, 2, 3, 4, 5, 6],
            vec![4, 6],
        ] {
            assert_eq!(fold_in_batches(&trades, &cuts), whole, "cut at {cuts:?}");
        }
        let positions: Vec<(i64, i64, bool)> = whole
            .iter()
            .map(|c| (c.open_time, c.position, c.closed))
            .collect();
        assert_eq!(
            positions,
            [
                (-60_000, 6, true),  // born closed: its own trade
                (0, 4, true),        // closed at 3, then a late trade at 4
                (60_000, 5, true),   // closed by the trade at 5
                (120_000, 7, true),  // closed by the trade at 7
                (180_000, 7, false), // open
            ]
        );
    }
}
