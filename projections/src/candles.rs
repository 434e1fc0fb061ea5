//! OHLC candles with exactly the fields of Binance's klines.
//!
//! The arithmetic is pure and lives in [`Bar`]: a bar aggregates any set of trades, and two bars
//! over disjoint sets of trades [`merge`](Bar::merge) into the bar over their union. The merge
//! is associative and commutative (open and close are decided by trade id, not by arrival), which
//! is what lets the projection build only 1-minute bars per trade and derive 5m ... 1d from them,
//! and fold a batch's bars into the stored ones in any order with the same result.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use futures::future::BoxFuture;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::{Event, Symbol};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use crate::db::{on_tx, Tx};
use crate::{Market, Origin, ProjectionError, ReadModel, Update};

/// A kline interval. Boundaries are aligned to the Unix epoch in UTC, like Binance's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    M1,
    M5,
    M15,
    H1,
    H4,
    D1,
}

impl Interval {
    pub const ALL: [Interval; 6] = [
        Interval::M1,
        Interval::M5,
        Interval::M15,
        Interval::H1,
        Interval::H4,
        Interval::D1,
    ];

    /// Binance's name: `1m`, `5m`, `15m`, `1h`, `4h`, `1d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::M1 => "1m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::H1 => "1h",
            Interval::H4 => "4h",
            Interval::D1 => "1d",
        }
    }

    pub fn millis(self) -> i64 {
        const MINUTE: i64 = 60_000;
        match self {
            Interval::M1 => MINUTE,
            Interval::M5 => 5 * MINUTE,
            Interval::M15 => 15 * MINUTE,
            Interval::H1 => 60 * MINUTE,
            Interval::H4 => 240 * MINUTE,
            Interval::D1 => 1_440 * MINUTE,
        }
    }

    /// The open time of the candle holding `time` (ms): floor to the interval, negative times too.
    pub fn open_time(self, time: i64) -> i64 {
        time - time.rem_euclid(self.millis())
    }

    /// Binance's close time: open time + interval - 1 ms.
    pub fn close_time(self, open_time: i64) -> i64 {
        open_time + self.millis() - 1
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval {0:?}: use one of 1m, 5m, 15m, 1h, 4h, 1d")]
pub struct UnknownInterval(pub String);

impl FromStr for Interval {
    type Err = UnknownInterval;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Interval::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| UnknownInterval(s.to_owned()))
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The aggregate of a set of market trades: everything a kline says except its place in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bar {
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub close: Decimal,
    /// Base asset volume.
    pub volume: Decimal,
    /// Quote asset volume: the sum of price × quantity.
    pub quote_volume: Decimal,
    pub trade_count: u64,
    /// Volume of the trades whose buyer was the taker (the seller was the maker).
    pub taker_buy_base_volume: Decimal,
    pub taker_buy_quote_volume: Decimal,
    /// The trade whose price is `open`: the lowest trade id in the bar.
    pub first_trade_id: u64,
    /// The trade whose price is `close`: the highest trade id in the bar.
    pub last_trade_id: u64,
}

impl Bar {
    /// The bar of one trade.
    pub fn of(trade: &TradeReceived) -> Bar {
        let quote = quote(trade);
        let taker_buy = !trade.buyer_is_maker;
        Bar {
            open: trade.price,
            high: trade.price,
            low: trade.price,
            close: trade.price,
            volume: trade.quantity,
            quote_volume: quote,
            trade_count: trade.trade_count(),
            taker_buy_base_volume: if taker_buy {
                trade.quantity
            } else {
                Decimal::ZERO
            },
            taker_buy_quote_volume: if taker_buy { quote } else { Decimal::ZERO },
            first_trade_id: trade.first_id(),
            last_trade_id: trade.trade_id,
        }
    }

    /// Adds one trade: the same as `merge(&Bar::of(trade))`, without building the bar.
    pub fn add(&mut self, trade: &TradeReceived) {
        let quote = quote(trade);
        if trade.first_id() < self.first_trade_id {
            self.first_trade_id = trade.first_id();
            self.open = trade.price;
        }
        if trade.trade_id > self.last_trade_id {
            self.last_trade_id = trade.trade_id;
            self.close = trade.price;
        }
        self.high = self.high.max(trade.price);
        self.low = self.low.min(trade.price);
        self.volume += trade.quantity;
        self.quote_volume += quote;
        self.trade_count += trade.trade_count();
        if !trade.buyer_is_maker {
            self.taker_buy_base_volume += trade.quantity;
            self.taker_buy_quote_volume += quote;
        }
    }

    /// The bar over the trades of both (which must be disjoint sets).
    pub fn merge(&mut self, other: &Bar) {
        if other.first_trade_id < self.first_trade_id {
            self.first_trade_id = other.first_trade_id;
            self.open = other.open;
        }
        if other.last_trade_id > self.last_trade_id {
            self.last_trade_id = other.last_trade_id;
            self.close = other.close;
        }
        self.high = self.high.max(other.high);
        self.low = self.low.min(other.low);
        self.volume += other.volume;
        self.quote_volume += other.quote_volume;
        self.trade_count += other.trade_count;
        self.taker_buy_base_volume += other.taker_buy_base_volume;
        self.taker_buy_quote_volume += other.taker_buy_quote_volume;
    }
}

/// A trade's quote amount, exact, without the trailing zeros the product of two 8-decimal
/// numbers would carry.
fn quote(trade: &TradeReceived) -> Decimal {
    (trade.price * trade.quantity).normalize()
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

/// The `candles` read model.
#[derive(Debug, Default)]
pub struct Candles {
    /// The minute being added to (trades arrive in order, so most trades land here), then the
    /// other minutes of the batch.
    current: Option<(MinuteKey, Bar)>,
    minutes: HashMap<MinuteKey, Bar>,
    /// The latest stored candle of each series (`None`: the series has none), as committed.
    latest: HashMap<Series, Option<Candle>>,
}

impl Candles {
    pub fn new() -> Self {
        Self::default()
    }

    fn add(&mut self, market: Market, trade: &TradeReceived) {
        let open_time = Interval::M1.open_time(trade.trade_time.millis());
        if let Some(((m, s, t), bar)) = &mut self.current {
            if *m == market && *t == open_time && *s == trade.symbol {
                bar.add(trade);
                return;
            }
        }
        self.close_current_minute();
        self.current = Some(((market, trade.symbol.clone(), open_time), Bar::of(trade)));
    }

    /// The batch's bars for every interval, in a stable order.
    fn close_current_minute(&mut self) {
        if let Some((key, bar)) = self.current.take() {
            self.minutes
                .entry(key)
                .and_modify(|b| b.merge(&bar))
                .or_insert(bar);
        }
    }

    fn batch_bars(&mut self) -> BTreeMap<(Series, i64), Bar> {
        self.close_current_minute();
        let mut minutes: Vec<(MinuteKey, Bar)> = self.minutes.drain().collect();
        minutes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = BTreeMap::new();
        for ((market, symbol, minute), bar) in minutes {
            for interval in Interval::ALL {
                let series = Series {
                    market,
                    symbol: symbol.clone(),
                    interval,
                };
                out.entry((series, interval.open_time(minute)))
                    .and_modify(|b: &mut Bar| b.merge(&bar))
                    .or_insert_with(|| bar.clone());
            }
        }
        out
    }
}

/// The stored candles a batch's bars fold into, and which of them are closed.
///
/// Pure: `stored` gives the stored candle at a (series, open time) the batch touches, or `None`.
/// Returns the rows to write, the latest of every touched series included.
pub fn fold_batch(
    bars: BTreeMap<(Series, i64), Bar>,
    latest: &HashMap<Series, Option<Candle>>,
    mut stored: impl FnMut(&Series, i64) -> Option<Candle>,
) -> Vec<Candle> {
    let mut rows: BTreeMap<(Series, i64), Candle> = BTreeMap::new();
    for ((series, open_time), bar) in bars {
        let candle = match stored(&series, open_time) {
            Some(mut candle) => {
                candle.bar.merge(&bar);
                candle
            }
            None => Candle {
                market: series.market,
                symbol: series.symbol.clone(),
                interval: series.interval,
                open_time,
                close_time: series.interval.close_time(open_time),
                bar,
                closed: false,
            },
        };
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
    rows.into_iter()
        .map(|((series, open_time), mut candle)| {
            candle.closed = open_time < newest[&series];
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
            if let Some(market) = Market::of_stream(&origin.stream) {
                // Binance's klines count market trades only (not insurance fund or ADL ones).
                if trade.kind.is_market() {
                    self.add(market, trade);
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
     taker_buy_quote_volume, first_trade_id, last_trade_id, closed";

/// Rows per INSERT: 17 parameters each, below SQLite's 32,766.
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
                    .push_bind(c.closed);
            });
            q.push(
                " ON CONFLICT (market, symbol, interval, open_time) DO UPDATE SET \
                 open = excluded.open, high = excluded.high, low = excluded.low, \
                 close = excluded.close, volume = excluded.volume, \
                 quote_volume = excluded.quote_volume, trade_count = excluded.trade_count, \
                 taker_buy_base_volume = excluded.taker_buy_base_volume, \
                 taker_buy_quote_volume = excluded.taker_buy_quote_volume, \
                 first_trade_id = excluded.first_trade_id, \
                 last_trade_id = excluded.last_trade_id, closed = excluded.closed",
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
    use hedgehog_domain::types::{Timestamp, TradeKind};
    use rust_decimal_macros::dec;

    fn trade(id: u64, time: i64, price: Decimal, qty: Decimal, maker: bool) -> TradeReceived {
        TradeReceived {
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            trade_id: id,
            price,
            quantity: qty,
            trade_time: Timestamp(time),
            event_time: Timestamp(time),
            buyer_is_maker: maker,
            buyer_order_id: None,
            seller_order_id: None,
            first_trade_id: None,
            kind: TradeKind::Market,
        }
    }

    #[test]
    fn intervals_align_to_the_epoch_in_utc() {
        // 2023-04-05 00:06:54.321 UTC
        let t = 1_680_653_214_321;
        assert_eq!(Interval::M1.open_time(t), 1_680_653_160_000);
        assert_eq!(Interval::M5.open_time(t), 1_680_653_100_000);
        assert_eq!(Interval::H4.open_time(t), 1_680_652_800_000);
        assert_eq!(Interval::D1.open_time(t), 1_680_652_800_000);
        assert_eq!(
            Interval::M1.close_time(1_680_653_160_000),
            1_680_653_219_999
        );
        assert_eq!(Interval::M1.open_time(-1), -60_000);
        assert_eq!("15m".parse::<Interval>().unwrap(), Interval::M15);
        assert!("2m"
            .parse::<Interval>()
            .unwrap_err()
            .to_string()
            .contains("1m, 5m"));
    }

    #[test]
    fn a_bar_follows_binance_kline_fields() {
        let mut bar = Bar::of(&trade(10, 0, dec!(100.0), dec!(1), false));
        bar.add(&trade(11, 1, dec!(101.5), dec!(2), true));
        bar.add(&trade(12, 2, dec!(99.0), dec!(0.5), false));
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (dec!(100.0), dec!(101.5), dec!(99.0), dec!(99.0))
        );
        assert_eq!(bar.volume, dec!(3.5));
        assert_eq!(bar.quote_volume, dec!(352.50));
        assert_eq!(bar.trade_count, 3);
        // Buyer was the taker (not the maker) in trades 10 and 12.
        assert_eq!(bar.taker_buy_base_volume, dec!(1.5));
        assert_eq!(bar.taker_buy_quote_volume, dec!(149.50));
    }

    #[test]
    fn merge_decides_open_and_close_by_trade_id_not_arrival() {
        let trades = [
            trade(5, 0, dec!(10), dec!(1), false),
            trade(3, 0, dec!(12), dec!(1), true),
            trade(9, 0, dec!(11), dec!(2), false),
            trade(7, 0, dec!(8), dec!(1), true),
        ];
        let mut whole = Bar::of(&trades[0]);
        trades[1..].iter().for_each(|t| whole.add(t));
        let mut a = Bar::of(&trades[2]);
        a.add(&trades[0]);
        let mut b = Bar::of(&trades[3]);
        b.add(&trades[1]);
        b.merge(&a);
        assert_eq!(b, whole);
        assert_eq!((whole.open, whole.close), (dec!(12), dec!(11)));
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
        };
        let latest = HashMap::from([(s.clone(), Some(prev))]);
        let bars = BTreeMap::from([(
            (s.clone(), 120_000),
            Bar::of(&trade(2, 120_001, dec!(2), dec!(1), false)),
        )]);
        let rows = fold_batch(bars, &latest, |_, _| None);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].open_time, rows[0].closed), (0, true));
        assert_eq!((rows[1].open_time, rows[1].closed), (120_000, false));
    }
}
