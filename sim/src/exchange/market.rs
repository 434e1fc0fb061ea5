//! Market data from the trades the exchange plays (or follows): recent, historical and
//! aggregated trades, prices, 24-hour tickers and klines, in Binance's shapes.
//!
//! Times are the tape's: a symbol's "now" is its last played trade, so a replay of 2019 has
//! 24-hour tickers and 5-minute averages of 2019. What is kept per symbol:
//! - the last [`RECENT`] trades and aggregated trades (`trades`, `historicalTrades`,
//!   `aggTrades`, `avgPrice`);
//! - 1-second bars of the last 24 hours (`ticker/24hr`, 1s klines);
//! - 1-minute bars of everything played (klines of 1m and longer, merged by the same
//!   [`Bar`] arithmetic as `hedgehog ohlc`'s candles, so the two agree).
//!
//! Klines are those of the intervals that saw a trade (like `hedgehog ohlc`; Binance also sends
//! empty ones for quiet intervals).
//!
//! The book: when the exchange follows Binance's partial depth stream, `depth`, the best bid
//! and ask (`ticker/bookTicker`, the 24-hour ticker, LIMIT_MAKER's check) are the last book it
//! carried. Otherwise there is no book: `depth` is refused saying so, and the bid and ask are
//! the prices of the last trade that hit a bid (its buyer was the maker) and the last that
//! lifted an ask, with quantities of 0.

use std::collections::{BTreeMap, VecDeque};

use hedgehog_binance::market_stream::BookDepth;
use hedgehog_binance::rest::{MarketTrade, Refusal};
use hedgehog_domain::candle::{Bar, Interval};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::Symbol;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use super::params::{self, limit, mandatory, number, refuse, Answer, Params};

/// How many trades (and aggregated trades) of a symbol are kept.
const RECENT: usize = 100_000;
const DAY_MS: i64 = 86_400_000;

/// Binance's aggregated trade: consecutive trades of one taker order at one price.
#[derive(Debug, Clone)]
struct Aggregate {
    id: u64,
    price: Decimal,
    quantity: Decimal,
    first_id: u64,
    last_id: u64,
    time: i64,
    buyer_is_maker: bool,
}

/// What is kept of one symbol's played trades.
#[derive(Debug, Default)]
struct Played {
    trades: VecDeque<TradeReceived>,
    aggregates: VecDeque<Aggregate>,
    next_aggregate: u64,
    /// 1-second bars of the last 24 hours, by open time.
    seconds: VecDeque<(i64, Bar)>,
    /// The close of the newest second that left the 24-hour window.
    before_window: Option<Decimal>,
    minutes: BTreeMap<i64, Bar>,
    /// The tape's clock: the newest trade time.
    now: i64,
    /// The last price that hit a bid and the last that lifted an ask.
    bid: Option<Decimal>,
    ask: Option<Decimal>,
}

impl Played {
    fn record(&mut self, trade: &TradeReceived) {
        let time = trade.trade_time.millis();
        self.now = self.now.max(time);
        self.trades.push_back(trade.clone());
        if self.trades.len() > RECENT {
            self.trades.pop_front();
        }
        self.aggregate(trade, time);
        let second = Interval::S1.open_time(time);
        match self.seconds.binary_search_by_key(&second, |(t, _)| *t) {
            Ok(i) => self.seconds[i].1.add(trade),
            Err(i) => self.seconds.insert(i, (second, Bar::of(trade))),
        }
        while let Some((open, bar)) = self.seconds.front() {
            if *open + 1_000 > self.now - DAY_MS {
                break;
            }
            self.before_window = Some(bar.close);
            self.seconds.pop_front();
        }
        self.minutes
            .entry(Interval::M1.open_time(time))
            .and_modify(|bar| bar.add(trade))
            .or_insert_with(|| Bar::of(trade));
        if trade.buyer_is_maker {
            self.bid = Some(trade.price);
        } else {
            self.ask = Some(trade.price);
        }
    }

    fn aggregate(&mut self, trade: &TradeReceived, time: i64) {
        if let Some(last) = self.aggregates.back_mut() {
            if last.price == trade.price
                && last.buyer_is_maker == trade.buyer_is_maker
                && last.time == time
                && last.last_id + 1 == trade.first_id()
            {
                last.quantity += trade.quantity;
                last.last_id = trade.trade_id;
                return;
            }
        }
        self.next_aggregate += 1;
        self.aggregates.push_back(Aggregate {
            id: self.next_aggregate,
            price: trade.price,
            quantity: trade.quantity,
            first_id: trade.first_id(),
            last_id: trade.trade_id,
            time,
            buyer_is_maker: trade.buyer_is_maker,
        });
        if self.aggregates.len() > RECENT {
            self.aggregates.pop_front();
        }
    }

    fn last(&self) -> Option<&TradeReceived> {
        self.trades.back()
    }

    /// The volume-weighted price of the trades in the `mins` minutes up to the last one.
    fn average(&self, mins: u32) -> Option<Decimal> {
        let last = self.last()?;
        let since = last.trade_time.millis() - i64::from(mins) * 60_000;
        let (mut quote, mut base) = (Decimal::ZERO, Decimal::ZERO);
        for t in self.trades.iter().rev() {
            if t.trade_time.millis() <= since {
                break;
            }
            quote += t.price * t.quantity;
            base += t.quantity;
        }
        Some(if base.is_zero() {
            last.price
        } else {
            quote / base
        })
    }
}

/// Binance's decimal text: 8 places.
pub fn fixed8(value: Decimal) -> String {
    format!("{:.8}", value.round_dp(8))
}

/// A price asked of a symbol no trade of which has been played: there is none to give.
fn not_played_yet(symbol: &Symbol) -> Refusal {
    refuse(
        -1121,
        format!("No trade of {symbol} has been played yet: Hedgehog's paper exchange prices a symbol from the trades it plays or follows."),
    )
}

/// The market data of every symbol played.
#[derive(Debug, Default)]
pub struct MarketData {
    symbols: BTreeMap<Symbol, Played>,
    /// The symbols whose books are followed, if any are.
    followed_books: Option<Vec<Symbol>>,
    books: BTreeMap<Symbol, BookDepth>,
}

impl MarketData {
    /// Market data with the books of `followed_books` to come from a depth stream.
    pub fn new(followed_books: Option<Vec<Symbol>>) -> MarketData {
        MarketData {
            followed_books,
            ..MarketData::default()
        }
    }

    /// The symbol's latest book from the followed depth stream.
    pub fn set_book(&mut self, symbol: Symbol, book: BookDepth) {
        self.books.insert(symbol, book);
    }

    /// The best bid and ask with their quantities: the followed book's, else the last trades'
    /// (quantities 0).
    fn top(&self, symbol: &Symbol) -> Option<((Decimal, Decimal), (Decimal, Decimal))> {
        if let Some(book) = self.books.get(symbol) {
            if let (Some(bid), Some(ask)) = (book.bids.first(), book.asks.first()) {
                return Some((*bid, *ask));
            }
        }
        let played = self.symbols.get(symbol)?;
        let last = played.last()?.price;
        let zero = Decimal::ZERO;
        Some((
            (played.bid.unwrap_or(last), zero),
            (played.ask.unwrap_or(last), zero),
        ))
    }

    /// `GET /api/v3/depth`: the followed book, best `limit` levels a side.
    pub fn depth(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let limit = limit(query, 100, 5000)?;
        let followed = self
            .followed_books
            .as_ref()
            .is_some_and(|s| s.contains(&symbol));
        let Some(book) = self.books.get(&symbol) else {
            let why = if followed {
                format!("No book of {symbol} has come from the followed depth stream yet.")
            } else {
                format!("Hedgehog's paper exchange has no order book of {symbol}: it fills orders from trades. Follow Binance's depth stream for one (--follow URL --follow-symbol {symbol} --follow-depth); ticker/bookTicker gives the last prices that hit the bid and lifted the ask.")
            };
            return Err(refuse(-1020, why));
        };
        let levels = |side: &[(Decimal, Decimal)]| -> Vec<Value> {
            side.iter()
                .take(limit)
                .map(|(price, quantity)| json!([fixed8(*price), fixed8(*quantity)]))
                .collect()
        };
        let answer = json!({
            "lastUpdateId": book.last_update_id,
            "bids": levels(&book.bids),
            "asks": levels(&book.asks),
        });
        Ok((answer, Vec::new()))
    }

    /// Keeps a market trade.
    pub fn record(&mut self, trade: &TradeReceived) {
        self.symbols
            .entry(trade.symbol.clone())
            .or_default()
            .record(trade);
    }

    /// The symbol's last played price.
    pub fn last_price(&self, symbol: &Symbol) -> Option<Decimal> {
        Some(self.symbols.get(symbol)?.last()?.price)
    }

    /// The volume-weighted price of the last `mins` minutes of the symbol's tape.
    pub fn average(&self, symbol: &Symbol, mins: u32) -> Option<Decimal> {
        self.symbols.get(symbol)?.average(mins)
    }

    /// The best bid and ask prices (see the module's notes on the book).
    pub fn quote(&self, symbol: &Symbol) -> Option<(Decimal, Decimal)> {
        self.top(symbol).map(|(bid, ask)| (bid.0, ask.0))
    }

    fn played(&self, symbol: &Symbol) -> Result<&Played, Refusal> {
        self.symbols
            .get(symbol)
            .filter(|p| p.last().is_some())
            .ok_or_else(|| not_played_yet(symbol))
    }

    /// The named symbols, or every symbol played; each answered by `one`. A single `symbol`
    /// is answered as an object, a list as an array.
    fn each(
        &self,
        rules: &ExchangeRules,
        query: &Params,
        one: impl Fn(&Symbol, &Played) -> Value,
    ) -> Answer {
        let answer = match params::symbols(rules, query)? {
            None => json!(self
                .symbols
                .iter()
                .filter(|(_, p)| p.last().is_some())
                .map(|(s, p)| one(s, p))
                .collect::<Vec<_>>()),
            Some(symbols) => {
                let answers = symbols
                    .iter()
                    .map(|s| Ok(one(s, self.played(s)?)))
                    .collect::<Result<Vec<_>, Refusal>>()?;
                if query.contains_key("symbol") {
                    answers.into_iter().next().unwrap_or(Value::Null)
                } else {
                    json!(answers)
                }
            }
        };
        Ok((answer, Vec::new()))
    }

    /// `GET /api/v3/ticker/price`.
    pub fn ticker_price(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        self.each(rules, query, |symbol, played| {
            let price = played.last().map_or(Decimal::ZERO, |t| t.price);
            json!({ "symbol": symbol.as_str(), "price": fixed8(price) })
        })
    }

    /// `GET /api/v3/ticker/bookTicker`.
    pub fn book_ticker(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        self.each(rules, query, |symbol, _| {
            let (bid, ask) = self.top(symbol).unwrap_or_default();
            json!({
                "symbol": symbol.as_str(),
                "bidPrice": fixed8(bid.0),
                "bidQty": fixed8(bid.1),
                "askPrice": fixed8(ask.0),
                "askQty": fixed8(ask.1),
            })
        })
    }

    /// `GET /api/v3/ticker/24hr`: the 24 hours up to the symbol's last trade, to the second.
    pub fn ticker_24hr(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let mini =
            match query.get("type").map(String::as_str) {
                None | Some("FULL") => false,
                Some("MINI") => true,
                Some(_) => return Err(refuse(
                    -1100,
                    "Illegal characters found in parameter 'type'; legal values are FULL and MINI.",
                )),
            };
        self.each(rules, query, |symbol, played| {
            ticker_24hr(symbol, played, self.top(symbol), mini)
        })
    }

    /// `GET /api/v3/avgPrice`: over the 5 minutes up to the symbol's last trade.
    pub fn average_price(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let played = self.played(&symbol)?;
        let (price, close) = played
            .average(5)
            .zip(played.last())
            .ok_or_else(|| not_played_yet(&symbol))?;
        let answer = json!({
            "mins": 5,
            "price": fixed8(price),
            "closeTime": close.trade_time.millis(),
        });
        Ok((answer, Vec::new()))
    }

    /// `GET /api/v3/trades` (the latest `limit`) and `historicalTrades` (from `fromId` on, or
    /// the latest).
    pub fn trades(&self, rules: &ExchangeRules, query: &Params, historical: bool) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let limit = limit(query, 500, 1000)?;
        let from = if historical {
            number(query, "fromId")?
        } else {
            None
        };
        let empty = VecDeque::new();
        let played = self.symbols.get(&symbol).map_or(&empty, |p| &p.trades);
        let page: Vec<Value> = match from {
            Some(from) => played
                .iter()
                .skip_while(|t| (t.trade_id as i64) < from)
                .take(limit)
                .map(MarketTrade::answer)
                .collect(),
            None => played
                .iter()
                .skip(played.len().saturating_sub(limit))
                .map(MarketTrade::answer)
                .collect(),
        };
        Ok((json!(page), Vec::new()))
    }

    /// `GET /api/v3/aggTrades`: from `fromId`, or within `startTime` .. `endTime`, or the
    /// latest.
    pub fn aggregated_trades(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let limit = limit(query, 500, 1000)?;
        let from = number(query, "fromId")?;
        let start = number(query, "startTime")?;
        let end = number(query, "endTime")?;
        if from.is_some() && (start.is_some() || end.is_some()) {
            return Err(refuse(
                -1128,
                "Combination of optional parameters invalid: fromId with startTime or endTime.",
            ));
        }
        let empty = VecDeque::new();
        let all = self.symbols.get(&symbol).map_or(&empty, |p| &p.aggregates);
        let chosen: Vec<&Aggregate> = if let Some(from) = from {
            all.iter()
                .skip_while(|a| (a.id as i64) < from)
                .take(limit)
                .collect()
        } else if start.is_some() || end.is_some() {
            all.iter()
                .filter(|a| start.is_none_or(|s| a.time >= s) && end.is_none_or(|e| a.time <= e))
                .take(limit)
                .collect()
        } else {
            all.iter().skip(all.len().saturating_sub(limit)).collect()
        };
        let answer: Vec<Value> = chosen
            .into_iter()
            .map(|a| {
                json!({
                    "a": a.id,
                    "p": fixed8(a.price),
                    "q": fixed8(a.quantity),
                    "f": a.first_id,
                    "l": a.last_id,
                    "T": a.time,
                    "m": a.buyer_is_maker,
                    "M": true,
                })
            })
            .collect();
        Ok((json!(answer), Vec::new()))
    }

    /// `GET /api/v3/klines` and `uiKlines`: the candles of `interval` between `startTime`
    /// and `endTime` (by open time), the first `limit` from `startTime`, else the last
    /// `limit` up to `endTime`.
    pub fn klines(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let interval: Interval = mandatory(query, "interval")?
            .parse()
            .map_err(|_| refuse(-1120, "Invalid interval."))?;
        let limit = limit(query, 500, 1000)?;
        let start = number(query, "startTime")?;
        let end = number(query, "endTime")?;
        if let Some(zone) = query.get("timeZone") {
            if !matches!(zone.as_str(), "0" | "+0" | "00:00" | "+00:00" | "-00:00") {
                return Err(refuse(
                    -1100,
                    format!("Illegal characters found in parameter 'timeZone': Hedgehog's paper exchange gives klines in UTC only, not {zone}."),
                ));
            }
        }
        let Some(played) = self.symbols.get(&symbol) else {
            return Ok((json!([]), Vec::new()));
        };
        let rows: Vec<Value> = candles(played, interval, start, end, limit)
            .iter()
            .map(|(open, bar)| kline(interval, *open, bar))
            .collect();
        Ok((json!(rows), Vec::new()))
    }
}

/// The candles of `interval` whose open time is within [start, end]: the first `limit` from
/// `start`, else the last `limit` up to `end`. Only the minutes (or seconds) those candles hold
/// are read, so a request's cost does not grow with the history played.
fn candles(
    played: &Played,
    interval: Interval,
    start: Option<i64>,
    end: Option<i64>,
    limit: usize,
) -> Vec<(i64, Bar)> {
    let within = |open: i64| start.is_none_or(|s| open >= s) && end.is_none_or(|e| open <= e);
    let bars: Box<dyn DoubleEndedIterator<Item = (i64, &Bar)>> = if interval == Interval::S1 {
        Box::new(played.seconds.iter().map(|(t, b)| (*t, b)))
    } else {
        // From the start of the candle holding `start`, to the end of the one holding `end`.
        let from = start.map_or(i64::MIN, |s| interval.open_time(s));
        let to = end.map_or(i64::MAX, |e| interval.close_time(interval.open_time(e)));
        Box::new(played.minutes.range(from..=to).map(|(t, b)| (*t, b)))
    };
    let mut merged: BTreeMap<i64, Bar> = BTreeMap::new();
    let mut add = |time: i64, bar: &Bar| -> bool {
        let open = interval.open_time(time);
        if !within(open) {
            return true;
        }
        if !merged.contains_key(&open) && merged.len() == limit {
            return false; // `limit` candles, each whole
        }
        merged
            .entry(open)
            .and_modify(|b| b.merge(bar))
            .or_insert_with(|| bar.clone());
        true
    };
    if start.is_some() {
        for (time, bar) in bars {
            if !add(time, bar) {
                break;
            }
        }
    } else {
        for (time, bar) in bars.rev() {
            if !add(time, bar) {
                break;
            }
        }
    }
    merged.into_iter().collect()
}

/// One kline row, as Binance sends it.
fn kline(interval: Interval, open: i64, bar: &Bar) -> Value {
    json!([
        open,
        fixed8(bar.open),
        fixed8(bar.high),
        fixed8(bar.low),
        fixed8(bar.close),
        fixed8(bar.volume),
        interval.close_time(open),
        fixed8(bar.quote_volume),
        bar.trade_count,
        fixed8(bar.taker_buy_base_volume),
        fixed8(bar.taker_buy_quote_volume),
        "0",
    ])
}

fn ticker_24hr(
    symbol: &Symbol,
    played: &Played,
    top: Option<((Decimal, Decimal), (Decimal, Decimal))>,
    mini: bool,
) -> Value {
    let since = played.now - DAY_MS;
    let mut window: Option<Bar> = None;
    for (_, bar) in played
        .seconds
        .iter()
        .filter(|(open, _)| *open + 1_000 > since)
    {
        match &mut window {
            Some(w) => w.merge(bar),
            None => window = Some(bar.clone()),
        }
    }
    let Some(bar) = window else {
        return Value::Null;
    };
    let last = played.last();
    let mut answer = json!({
        "symbol": symbol.as_str(),
        "openPrice": fixed8(bar.open),
        "highPrice": fixed8(bar.high),
        "lowPrice": fixed8(bar.low),
        "lastPrice": fixed8(bar.close),
        "volume": fixed8(bar.volume),
        "quoteVolume": fixed8(bar.quote_volume),
        "openTime": since,
        "closeTime": played.now,
        "firstId": bar.first_trade_id,
        "lastId": bar.last_trade_id,
        "count": bar.trade_count,
    });
    if !mini {
        let change = bar.close - bar.open;
        let percent = if bar.open.is_zero() {
            Decimal::ZERO
        } else {
            change * Decimal::ONE_HUNDRED / bar.open
        };
        let average = if bar.volume.is_zero() {
            bar.close
        } else {
            bar.quote_volume / bar.volume
        };
        let zero = Decimal::ZERO;
        let (bid, ask) = top.unwrap_or(((bar.close, zero), (bar.close, zero)));
        let full = json!({
            "priceChange": fixed8(change),
            "priceChangePercent": format!("{:.3}", percent.round_dp(3)),
            "weightedAvgPrice": fixed8(average),
            "prevClosePrice": fixed8(played.before_window.unwrap_or(bar.open)),
            "lastQty": fixed8(last.map_or(Decimal::ZERO, |t| t.quantity)),
            "bidPrice": fixed8(bid.0),
            "bidQty": fixed8(bid.1),
            "askPrice": fixed8(ask.0),
            "askQty": fixed8(ask.1),
        });
        if let (Some(answer), Some(full)) = (answer.as_object_mut(), full.as_object()) {
            answer.extend(full.clone());
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn rules() -> ExchangeRules {
        hedgehog_binance::exchange_info::bundled().unwrap()
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn trade(id: u64, time: i64, price: Decimal, quantity: Decimal, maker: bool) -> TradeReceived {
        hedgehog_domain::testkit::printed("ADAUSDT", id, time, price, quantity, maker)
    }

    #[test]
    fn recent_and_historical_trades_come_from_what_was_played() {
        let mut m = MarketData::default();
        for id in 1..=1200 {
            m.record(&trade(
                id,
                id as i64,
                dec!(0.5) + Decimal::new(id as i64, 4),
                dec!(100000),
                true,
            ));
        }
        let ids = |answer: Value| -> Vec<u64> {
            answer
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_u64().unwrap())
                .collect()
        };
        let r = rules();
        let (recent, _) = m
            .trades(&r, &params(&[("symbol", "ADAUSDT")]), false)
            .unwrap();
        assert_eq!(ids(recent.clone()), (701..=1200).collect::<Vec<_>>());
        assert_eq!(recent[499]["price"], "0.6200");
        assert_eq!(recent[499]["qty"], "100000");
        assert_eq!(recent[499]["quoteQty"], "62000.0000");
        assert_eq!(recent[499]["time"], 1200);
        assert_eq!(recent[499]["isBuyerMaker"], true);
        let from = params(&[("symbol", "ADAUSDT"), ("fromId", "10"), ("limit", "3")]);
        assert_eq!(ids(m.trades(&r, &from, true).unwrap().0), [10, 11, 12]);
        let past_the_end = params(&[("symbol", "ADAUSDT"), ("fromId", "5000")]);
        assert_eq!(
            ids(m.trades(&r, &past_the_end, true).unwrap().0),
            [] as [u64; 0]
        );
        let refused = |pairs: &[(&str, &str)]| m.trades(&r, &params(pairs), true).unwrap_err().code;
        assert_eq!(refused(&[("symbol", "ADAUSDT"), ("limit", "1001")]), -1130);
        assert_eq!(refused(&[("symbol", "ADAUSDT"), ("fromId", "x")]), -1100);
        assert_eq!(refused(&[("symbol", "NOPEUSDT")]), -1121);
        assert_eq!(refused(&[]), -1102);
    }

    #[test]
    fn prices_come_from_the_last_trades_played() {
        let mut m = MarketData::default();
        let r = rules();
        let ada = params(&[("symbol", "ADAUSDT")]);
        let err = m.ticker_price(&r, &ada).unwrap_err();
        assert!(
            err.msg.contains("No trade of ADAUSDT has been played yet"),
            "{}",
            err.msg
        );
        assert_eq!(m.average_price(&r, &ada).unwrap_err().code, -1121);
        // Three trades 3 minutes apart: the first falls out of the last 5 minutes.
        for (id, price) in [(1, dec!(0.4)), (2, dec!(0.5)), (3, dec!(0.6))] {
            m.record(&trade(
                id,
                id as i64 * 180_000,
                price,
                Decimal::from(id),
                id == 2,
            ));
        }
        let (price, _) = m.ticker_price(&r, &ada).unwrap();
        assert_eq!(price, json!({"symbol": "ADAUSDT", "price": "0.60000000"}));
        let (all, _) = m.ticker_price(&r, &params(&[])).unwrap();
        assert_eq!(all, json!([{"symbol": "ADAUSDT", "price": "0.60000000"}]));
        let (listed, _) = m
            .ticker_price(&r, &params(&[("symbols", "[\"ADAUSDT\"]")]))
            .unwrap();
        assert_eq!(listed, all);
        // (0.5 x 2 + 0.6 x 3) / 5
        let (average, _) = m.average_price(&r, &ada).unwrap();
        assert_eq!(
            average,
            json!({"mins": 5, "price": "0.56000000", "closeTime": 540_000})
        );
        // Trade 2 hit a bid (its buyer was the maker), trade 3 lifted an ask.
        let (book, _) = m.book_ticker(&r, &ada).unwrap();
        assert_eq!(
            (book["bidPrice"].as_str(), book["askPrice"].as_str()),
            (Some("0.50000000"), Some("0.60000000"))
        );
    }

    #[test]
    fn the_book_is_the_followed_one_or_none_said_so() {
        let r = rules();
        let btc = Symbol::parse("BTCUSDT").unwrap();
        let mut m = MarketData::new(Some(vec![btc.clone()]));
        let query = params(&[("symbol", "BTCUSDT"), ("limit", "1")]);
        let err = m.depth(&r, &query).unwrap_err().msg;
        assert!(err.contains("No book of BTCUSDT has come"), "{err}");
        let other = m
            .depth(&r, &params(&[("symbol", "ETHUSDT")]))
            .unwrap_err()
            .msg;
        assert!(other.contains("--follow-depth"), "{other}");
        m.set_book(
            btc,
            BookDepth {
                last_update_id: 7,
                bids: vec![(dec!(100.5), dec!(2)), (dec!(100.4), dec!(1))],
                asks: vec![(dec!(100.6), dec!(3))],
            },
        );
        let (depth, _) = m.depth(&r, &query).unwrap();
        assert_eq!(
            depth,
            json!({"lastUpdateId": 7, "bids": [["100.50000000", "2.00000000"]], "asks": [["100.60000000", "3.00000000"]]})
        );
        assert_eq!(
            m.quote(&Symbol::parse("BTCUSDT").unwrap()),
            Some((dec!(100.5), dec!(100.6)))
        );
        let mut t = trade(1, 0, dec!(100.5), dec!(1), true);
        t.symbol = Symbol::parse("BTCUSDT").unwrap();
        m.record(&t);
        let (top, _) = m
            .book_ticker(&r, &params(&[("symbol", "BTCUSDT")]))
            .unwrap();
        assert_eq!(top["askQty"], "3.00000000");
    }

    #[test]
    fn the_24_hour_ticker_rolls_with_the_tape() {
        let mut m = MarketData::default();
        let r = rules();
        let hour = 3_600_000;
        // 10.0 at 0 h, 12.0 at 1 h, 9.0 at 20 h, 11.0 at 24.5 h: the first leaves the window.
        for (id, time, price) in [
            (1, 0, dec!(10)),
            (2, hour, dec!(12)),
            (3, 20 * hour, dec!(9)),
            (4, 49 * hour / 2, dec!(11)),
        ] {
            m.record(&trade(id, time, price, dec!(2), false));
        }
        let (t, _) = m
            .ticker_24hr(&r, &params(&[("symbol", "ADAUSDT")]))
            .unwrap();
        assert_eq!(t["openPrice"], "12.00000000");
        assert_eq!(t["prevClosePrice"], "10.00000000");
        assert_eq!(
            (t["highPrice"].as_str(), t["lowPrice"].as_str()),
            (Some("12.00000000"), Some("9.00000000"))
        );
        assert_eq!(t["lastPrice"], "11.00000000");
        assert_eq!(t["priceChange"], "-1.00000000");
        assert_eq!(t["priceChangePercent"], "-8.333");
        assert_eq!(t["volume"], "6.00000000");
        assert_eq!(t["weightedAvgPrice"], "10.66666667");
        assert_eq!(
            (
                t["firstId"].as_u64(),
                t["lastId"].as_u64(),
                t["count"].as_u64()
            ),
            (Some(2), Some(4), Some(3))
        );
        assert_eq!(t["closeTime"], 49 * hour / 2);
        let (mini, _) = m.ticker_24hr(&r, &params(&[("type", "MINI")])).unwrap();
        assert!(mini[0].get("priceChange").is_none() && mini[0]["lastPrice"] == "11.00000000");
    }

    #[test]
    fn klines_of_every_interval_and_aggregated_trades() {
        let mut m = MarketData::default();
        let r = rules();
        let minute = 60_000;
        // Two trades at one price and time from one taker, then others.
        for (id, time, price) in [
            (1, 0, dec!(1.0)),
            (2, 0, dec!(1.0)),
            (3, minute + 1, dec!(1.2)),
            (4, 5 * minute, dec!(0.9)),
            (5, 61 * minute, dec!(1.1)),
        ] {
            m.record(&trade(id, time, price, dec!(10), false));
        }
        let ask = |interval: &str, more: &[(&str, &str)]| {
            let mut p = params(&[("symbol", "ADAUSDT"), ("interval", interval)]);
            p.extend(params(more));
            m.klines(&r, &p).unwrap().0
        };
        let five = ask("5m", &[]);
        assert_eq!(five.as_array().unwrap().len(), 3);
        assert_eq!(
            five[0],
            json!([
                0,
                "1.00000000",
                "1.20000000",
                "1.00000000",
                "1.20000000",
                "30.00000000",
                299_999,
                "32.00000000",
                3,
                "30.00000000",
                "32.00000000",
                "0"
            ])
        );
        let hour = ask("1h", &[]);
        assert_eq!(
            (hour[0][8].as_u64(), hour[1][0].as_i64()),
            (Some(4), Some(60 * minute))
        );
        assert_eq!(ask("1M", &[])[0][6], 2_678_399_999i64);
        assert_eq!(ask("1s", &[]).as_array().unwrap().len(), 4);
        let windowed = ask(
            "1m",
            &[
                ("startTime", "60000"),
                ("endTime", "300000"),
                ("limit", "1"),
            ],
        );
        assert_eq!(windowed, json!([ask("1m", &[])[1].clone()]));
        assert_eq!(ask("1m", &[("limit", "1")])[0][0], 61 * minute);
        let bad = m
            .klines(&r, &params(&[("symbol", "ADAUSDT"), ("interval", "2m")]))
            .unwrap_err();
        assert_eq!(bad.code, -1120);
        let (aggregates, _) = m
            .aggregated_trades(&r, &params(&[("symbol", "ADAUSDT")]))
            .unwrap();
        assert_eq!(aggregates.as_array().unwrap().len(), 4);
        assert_eq!(
            aggregates[0],
            json!({"a": 1, "p": "1.00000000", "q": "20.00000000", "f": 1, "l": 2, "T": 0, "m": false, "M": true})
        );
        let (from, _) = m
            .aggregated_trades(
                &r,
                &params(&[("symbol", "ADAUSDT"), ("fromId", "3"), ("limit", "5")]),
            )
            .unwrap();
        assert_eq!(
            from.as_array()
                .unwrap()
                .iter()
                .map(|a| a["a"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            [3, 4]
        );
    }
}
