//! Small value types shared by every event: symbols, timestamps, sides.
//!
//! They validate on construction *and* on deserialisation, so a malformed value can never
//! get into an event, whether it comes from a CLI flag, a CSV row or an old log.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A Binance-style market symbol such as `BTCUSDT`: 1 to 20 ASCII letters or digits, upper case.
///
/// Lower-case input (as used in Binance stream names, `btcusdt@trade`) is accepted and
/// upper-cased, so the same market always has one spelling in the log. Cloning is cheap (a
/// shared string): every event of a symbol carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

/// Written as its text, without an intermediate `String`.
impl Serialize for Symbol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Read from borrowed text when the input allows, and shared with the symbol read just before
/// on the same thread: decoding a page of one market's trades allocates no symbol at all.
impl<'de> Deserialize<'de> for Symbol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Symbol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a symbol such as BTCUSDT")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Symbol, E> {
                Symbol::shared(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Text)
    }
}

/// Why a symbol was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid symbol {input:?}: {reason}")]
pub struct InvalidSymbol {
    pub input: String,
    pub reason: &'static str,
}

impl Symbol {
    pub const MAX_LEN: usize = 20;

    pub fn parse(input: &str) -> Result<Self, InvalidSymbol> {
        let err = |reason| InvalidSymbol {
            input: input.to_owned(),
            reason,
        };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        if input.len() > Self::MAX_LEN {
            return Err(err("it is longer than 20 characters"));
        }
        if !input.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err("only letters A-Z and digits 0-9 are allowed"));
        }
        if input.bytes().any(|b| b.is_ascii_lowercase()) {
            Ok(Symbol(input.to_ascii_uppercase().into()))
        } else {
            Ok(Symbol(input.into()))
        }
    }

    /// As [`Symbol::parse`], sharing the text with the last symbol this thread read when it is
    /// the same (a memo of one: no clock, no I/O, the same result).
    pub fn shared(input: &str) -> Result<Self, InvalidSymbol> {
        thread_local! {
            static LAST: std::cell::RefCell<Option<Symbol>> = const { std::cell::RefCell::new(None) };
        }
        let hit = LAST.with(|last| last.borrow().as_ref().filter(|s| &*s.0 == input).cloned());
        if let Some(symbol) = hit {
            return Ok(symbol);
        }
        let symbol = Symbol::parse(input)?;
        LAST.with(|last| *last.borrow_mut() = Some(symbol.clone()));
        Ok(symbol)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// An equal symbol that shares nothing with this one. Clones of one symbol share a counter;
    /// a reader that clones it into every trade of a page while another thread drops the trades
    /// of the page before makes the two cores fight over that counter's cache line (a backtest
    /// spent a tenth of its time there). A copy per page keeps each page's clones to itself.
    pub fn unshared(&self) -> Symbol {
        Symbol(Arc::from(&*self.0))
    }
}

impl TryFrom<String> for Symbol {
    type Error = InvalidSymbol;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Symbol::parse(&value)
    }
}

impl From<Symbol> for String {
    fn from(value: Symbol) -> Self {
        value.0.to_string()
    }
}

impl std::str::FromStr for Symbol {
    type Err = InvalidSymbol;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Symbol::parse(s)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// A point in time as milliseconds since the Unix epoch (UTC), Binance's unit.
///
/// The domain never reads a clock: every timestamp arrives as data (from the exchange, or from
/// the shell that handles a command), which is what makes replays byte-for-byte reproducible.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn millis(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Order side, spelled as Binance spells it on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Buy,
    Sell,
}

/// Order type. The naive strategy only places limit orders; the others exist so that orders
/// imported from or reported by a real exchange can still be recorded faithfully.
impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    Limit,
    Market,
    LimitMaker,
}

impl OrderType {
    /// Binance's spelling, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "LIMIT",
            OrderType::Market => "MARKET",
            OrderType::LimitMaker => "LIMIT_MAKER",
        }
    }
}

/// Time in force, as Binance spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

impl TimeInForce {
    /// Binance's spelling, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "GTC",
            TimeInForce::Ioc => "IOC",
            TimeInForce::Fok => "FOK",
        }
    }
}

/// Status of an order after a fill: partially or completely filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FillStatus {
    PartiallyFilled,
    Filled,
}

impl FillStatus {
    /// Binance's spelling, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            FillStatus::PartiallyFilled => "PARTIALLY_FILLED",
            FillStatus::Filled => "FILLED",
        }
    }
}

/// Trading status of a symbol (the book's `on` / `off` / `shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TradingStatus {
    #[default]
    Off,
    On,
    Shutdown,
}

impl fmt::Display for TradingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TradingStatus::Off => "off",
            TradingStatus::On => "on",
            TradingStatus::Shutdown => "shutdown",
        })
    }
}

/// What kind of trade the exchange reported.
///
/// Spot trades are always `MARKET`; USD-M futures tag each trade with `X`, where non-market
/// trades (`INSURANCE_FUND`, `ADL`, ...) are left out of Binance's own klines. Unknown tags
/// are kept verbatim rather than refused, so a new Binance value never stops the streamer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TradeKind {
    #[default]
    Market,
    InsuranceFund,
    Adl,
    Other(String),
}

/// Written as its tag, without an intermediate `String`.
impl Serialize for TradeKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Read from borrowed text: the known tags allocate nothing.
impl<'de> Deserialize<'de> for TradeKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Tag;
        impl serde::de::Visitor<'_> for Tag {
            type Value = TradeKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a trade kind such as MARKET")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TradeKind, E> {
                Ok(match v {
                    "MARKET" => TradeKind::Market,
                    "INSURANCE_FUND" => TradeKind::InsuranceFund,
                    "ADL" => TradeKind::Adl,
                    other => TradeKind::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_str(Tag)
    }
}

impl TradeKind {
    pub fn as_str(&self) -> &str {
        match self {
            TradeKind::Market => "MARKET",
            TradeKind::InsuranceFund => "INSURANCE_FUND",
            TradeKind::Adl => "ADL",
            TradeKind::Other(s) => s,
        }
    }

    /// Only market trades make candles, as in Binance's klines.
    pub fn is_market(&self) -> bool {
        matches!(self, TradeKind::Market)
    }
}

impl From<String> for TradeKind {
    fn from(value: String) -> Self {
        match value.as_str() {
            "MARKET" => TradeKind::Market,
            "INSURANCE_FUND" => TradeKind::InsuranceFund,
            "ADL" => TradeKind::Adl,
            _ => TradeKind::Other(value),
        }
    }
}

impl From<TradeKind> for String {
    fn from(value: TradeKind) -> Self {
        value.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_are_upper_cased_and_validated() {
        assert_eq!(Symbol::parse("btcusdt").unwrap().as_str(), "BTCUSDT");
        assert!(Symbol::parse("").is_err());
        assert!(Symbol::parse("BTC-USDT").is_err());
        assert!(Symbol::parse(&"A".repeat(21)).is_err());
        let err = serde_json::from_str::<Symbol>("\"btc/usdt\"").unwrap_err();
        assert!(err.to_string().contains("btc/usdt"), "{err}");
    }

    #[test]
    fn decoded_symbols_share_their_text_and_read_like_parsed_ones() {
        let a: Symbol = serde_json::from_str("\"ADAUSDT\"").unwrap();
        let b: Symbol = serde_json::from_str("\"ADAUSDT\"").unwrap();
        assert!(
            Arc::ptr_eq(&a.0, &b.0),
            "the second read shares the first's text"
        );
        let lower: Symbol = serde_json::from_str("\"adausdt\"").unwrap();
        assert_eq!(lower, a);
        let other: Symbol = serde_json::from_str("\"BTCUSDT\"").unwrap();
        assert_eq!(other.as_str(), "BTCUSDT");
        assert_eq!(serde_json::to_string(&other).unwrap(), "\"BTCUSDT\"");
        let keyed: std::collections::BTreeMap<Symbol, u8> =
            serde_json::from_str("{\"ethusdt\":1}").unwrap();
        assert_eq!(keyed.keys().next().unwrap().as_str(), "ETHUSDT");
    }

    #[test]
    fn trade_kinds_round_trip_including_unknown_ones() {
        for raw in ["MARKET", "INSURANCE_FUND", "ADL", "SOMETHING_NEW"] {
            let kind = TradeKind::from(raw.to_owned());
            assert_eq!(kind.as_str(), raw);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(serde_json::from_str::<TradeKind>(&json).unwrap(), kind);
        }
        assert!(TradeKind::Market.is_market());
        assert!(!TradeKind::InsuranceFund.is_market());
    }
}

/// The market a trade is from: the same symbol on spot and on Binance USD-M futures are
/// different markets, whose trade ids and prices differ, so their trades are kept apart (each
/// its own stream, its own rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Market {
    #[default]
    Spot,
    /// Binance USD-M futures.
    Usdm,
}

impl Market {
    pub fn as_str(self) -> &'static str {
        match self {
            Market::Spot => "spot",
            Market::Usdm => "usdm",
        }
    }
}

impl fmt::Display for Market {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A market name that is not `spot` or `usdm`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown market {0:?}: use spot or usdm")]
pub struct UnknownMarket(pub String);

impl FromStr for Market {
    type Err = UnknownMarket;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "spot" => Ok(Market::Spot),
            "usdm" => Ok(Market::Usdm),
            other => Err(UnknownMarket(other.to_owned())),
        }
    }
}

impl Serialize for Market {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
