//! Candles' arithmetic: Binance's kline intervals and the bar a set of trades makes.
//!
//! Pure, so that the candles projection (`hedgehog ohlc`) and the simulated exchange's
//! `klines` compute a candle with the very same code. A [`Bar`] aggregates any set of trades,
//! and two bars over disjoint sets of trades [`merge`](Bar::merge) into the bar over their
//! union. The merge is associative and commutative (open and close are decided by trade id, not
//! by arrival), which is what lets the projection build only 1-minute bars per trade and derive
//! 5m ... 1d from them, and fold a batch's bars into the stored ones in any order with the same
//! result.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, NaiveDate};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use crate::events::TradeReceived;

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// 1970-01-05, the first Monday after the epoch: Binance's weeks start on Mondays.
const FIRST_MONDAY: i64 = 4 * DAY;

/// A kline interval: every one Binance serves. Boundaries are in UTC, like Binance's: fixed
/// lengths are aligned to the Unix epoch, weeks start on Monday, months on their first day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Interval {
    S1,
    M1,
    M3,
    M5,
    M15,
    M30,
    H1,
    H2,
    H4,
    H6,
    H8,
    H12,
    D1,
    D3,
    W1,
    /// A calendar month.
    Mo1,
}

impl Interval {
    pub const ALL: [Interval; 16] = [
        Interval::S1,
        Interval::M1,
        Interval::M3,
        Interval::M5,
        Interval::M15,
        Interval::M30,
        Interval::H1,
        Interval::H2,
        Interval::H4,
        Interval::H6,
        Interval::H8,
        Interval::H12,
        Interval::D1,
        Interval::D3,
        Interval::W1,
        Interval::Mo1,
    ];

    /// Binance's name: `1s`, `1m`, `3m`, ... `1w`, `1M`.
    pub fn as_str(self) -> &'static str {
        match self {
            Interval::S1 => "1s",
            Interval::M1 => "1m",
            Interval::M3 => "3m",
            Interval::M5 => "5m",
            Interval::M15 => "15m",
            Interval::M30 => "30m",
            Interval::H1 => "1h",
            Interval::H2 => "2h",
            Interval::H4 => "4h",
            Interval::H6 => "6h",
            Interval::H8 => "8h",
            Interval::H12 => "12h",
            Interval::D1 => "1d",
            Interval::D3 => "3d",
            Interval::W1 => "1w",
            Interval::Mo1 => "1M",
        }
    }

    /// The length in ms; `None` for a month, whose length varies.
    pub fn millis(self) -> Option<i64> {
        Some(match self {
            Interval::S1 => SECOND,
            Interval::M1 => MINUTE,
            Interval::M3 => 3 * MINUTE,
            Interval::M5 => 5 * MINUTE,
            Interval::M15 => 15 * MINUTE,
            Interval::M30 => 30 * MINUTE,
            Interval::H1 => HOUR,
            Interval::H2 => 2 * HOUR,
            Interval::H4 => 4 * HOUR,
            Interval::H6 => 6 * HOUR,
            Interval::H8 => 8 * HOUR,
            Interval::H12 => 12 * HOUR,
            Interval::D1 => DAY,
            Interval::D3 => 3 * DAY,
            Interval::W1 => 7 * DAY,
            Interval::Mo1 => return None,
        })
    }

    /// The open time of the candle holding `time` (ms), negative times too.
    pub fn open_time(self, time: i64) -> i64 {
        match self {
            Interval::W1 => time - (time - FIRST_MONDAY).rem_euclid(7 * DAY),
            Interval::Mo1 => month_start(time, 0),
            fixed => {
                let length = fixed.millis().unwrap_or(DAY);
                time - time.rem_euclid(length)
            }
        }
    }

    /// Binance's close time: the next candle's open time - 1 ms.
    pub fn close_time(self, open_time: i64) -> i64 {
        match self.millis() {
            Some(length) => open_time + length - 1,
            None => month_start(open_time, 1) - 1,
        }
    }
}

/// The first millisecond of the month holding `time`, `later` months on. Times outside
/// chrono's range (±262,000 years) are clamped to it.
fn month_start(time: i64, later: u32) -> i64 {
    let date = DateTime::from_timestamp_millis(time)
        .unwrap_or(if time < 0 {
            DateTime::<chrono::Utc>::MIN_UTC
        } else {
            DateTime::<chrono::Utc>::MAX_UTC
        })
        .date_naive();
    NaiveDate::from_ymd_opt(date.year(), date.month(), 1)
        .and_then(|first| first.checked_add_months(Months::new(later)))
        .and_then(|first| first.and_hms_opt(0, 0, 0))
        .map_or(time, |t| t.and_utc().timestamp_millis())
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval {0:?}: use one of 1s, 1m, 3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1M")]
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
    /// The bar of one trade. (`#[inline]`: the candles projection calls these per trade from
    /// another crate.)
    #[inline]
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
    #[inline]
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
    #[inline]
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
#[inline]
fn quote(trade: &TradeReceived) -> Decimal {
    (trade.price * trade.quantity).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn trade(id: u64, time: i64, price: Decimal, qty: Decimal, maker: bool) -> TradeReceived {
        crate::testkit::printed("BTCUSDT", id, time, price, qty, maker)
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

    #[test]
    fn boundaries_are_binances() {
        // 2023-04-05 00:06:54.123 UTC, a Wednesday.
        let t = 1_680_653_214_123;
        assert_eq!(Interval::S1.open_time(t), 1_680_653_214_000);
        assert_eq!(Interval::M1.open_time(t), 1_680_653_160_000);
        assert_eq!(Interval::M5.open_time(t), 1_680_653_100_000);
        assert_eq!(Interval::H4.open_time(t), 1_680_652_800_000);
        assert_eq!(Interval::D1.open_time(t), 1_680_652_800_000);
        // Monday 2023-04-03 and Saturday 2023-04-01.
        assert_eq!(Interval::W1.open_time(t), 1_680_480_000_000);
        assert_eq!(Interval::Mo1.open_time(t), 1_680_307_200_000);
        assert_eq!(
            Interval::M1.close_time(1_680_653_160_000),
            1_680_653_219_999
        );
        // April has 30 days; February 2024 29.
        assert_eq!(
            Interval::Mo1.close_time(1_680_307_200_000),
            1_682_899_199_999
        );
        let feb_2024 = 1_706_745_600_000;
        assert_eq!(Interval::Mo1.open_time(feb_2024 + 5 * DAY), feb_2024);
        assert_eq!(Interval::Mo1.close_time(feb_2024), feb_2024 + 29 * DAY - 1);
        assert_eq!(Interval::M1.open_time(-1), -60_000);
        assert_eq!(Interval::W1.open_time(FIRST_MONDAY), FIRST_MONDAY);
        assert_eq!(
            Interval::W1.open_time(FIRST_MONDAY - 1),
            FIRST_MONDAY - 7 * DAY
        );
        for interval in Interval::ALL {
            assert_eq!(interval.as_str().parse::<Interval>(), Ok(interval));
            let open = interval.open_time(t);
            assert!(open <= t && t <= interval.close_time(open), "{interval}");
            assert_eq!(
                interval.open_time(interval.close_time(open) + 1),
                interval.close_time(open) + 1
            );
        }
        let err = "2m".parse::<Interval>().unwrap_err().to_string();
        assert!(err.contains("1s, 1m, 3m"), "{err}");
    }
}
