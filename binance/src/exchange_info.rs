//! Binance's `GET /api/v3/exchangeInfo`, parsed into the domain's [`ExchangeRules`].
//!
//! A snapshot (2024-09-08, 1,248 spot symbols) is bundled in the binary so that Hedgehog works
//! offline with no set-up; `--exchange-info FILE` (plain or `.gz`) uses another, e.g. a fresher
//! download, and live trading will refresh it from Binance.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;
use hedgehog_domain::exchange::{ExchangeRules, SymbolRules};
use hedgehog_domain::Symbol;

use crate::rest::RateLimit;
use rust_decimal::Decimal;
use serde::Deserialize;

/// The bundled snapshot, gzip-compressed.
const BUNDLED: &[u8] = include_bytes!("../assets/spot_exchangeInfo_20240908.json.gz");

#[derive(Debug, thiserror::Error)]
pub enum ExchangeInfoError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not a Binance exchangeInfo response: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{file}: symbol {symbol}: {reason}")]
    Symbol {
        file: String,
        symbol: String,
        reason: String,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    #[serde(default)]
    server_time: i64,
    #[serde(default)]
    rate_limits: Vec<RateLimit>,
    symbols: Vec<WireSymbol>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireSymbol {
    symbol: String,
    status: String,
    base_asset: String,
    quote_asset: String,
    #[serde(default)]
    order_types: Vec<String>,
    filters: Vec<WireFilter>,
}

/// LOT_SIZE's and MARKET_LOT_SIZE's bounds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Lot {
    #[serde(with = "rust_decimal::serde::str")]
    min_qty: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    max_qty: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    step_size: Decimal,
}

#[derive(Deserialize)]
#[serde(tag = "filterType", rename_all = "SCREAMING_SNAKE_CASE")]
enum WireFilter {
    #[serde(rename_all = "camelCase")]
    PriceFilter {
        #[serde(with = "rust_decimal::serde::str")]
        min_price: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        max_price: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        tick_size: Decimal,
    },
    LotSize(Lot),
    #[serde(rename_all = "camelCase")]
    Notional {
        #[serde(with = "rust_decimal::serde::str")]
        min_notional: Decimal,
        #[serde(default, with = "rust_decimal::serde::str_option")]
        max_notional: Option<Decimal>,
        #[serde(default)]
        apply_min_to_market: bool,
        #[serde(default)]
        apply_max_to_market: bool,
        #[serde(default)]
        avg_price_mins: u32,
    },
    #[serde(rename_all = "camelCase")]
    MinNotional {
        #[serde(with = "rust_decimal::serde::str")]
        min_notional: Decimal,
        #[serde(default)]
        apply_to_market: bool,
        #[serde(default)]
        avg_price_mins: u32,
    },
    MarketLotSize(Lot),
    #[serde(rename_all = "camelCase")]
    PercentPriceBySide {
        #[serde(with = "rust_decimal::serde::str")]
        bid_multiplier_up: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        bid_multiplier_down: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        ask_multiplier_up: Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        ask_multiplier_down: Decimal,
        #[serde(default)]
        avg_price_mins: u32,
    },
    #[serde(rename_all = "camelCase")]
    MaxNumOrders {
        max_num_orders: u32,
    },
    #[serde(other)]
    Other,
}

/// The bundled snapshot.
pub fn bundled() -> Result<ExchangeRules, ExchangeInfoError> {
    parse(&bundled_json()?, "bundled exchange info")
}

/// The bundled snapshot as Binance sent it (what `hedgehog exchange serve` answers).
pub fn bundled_json() -> Result<String, ExchangeInfoError> {
    let mut json = String::new();
    GzDecoder::new(BUNDLED)
        .read_to_string(&mut json)
        .map_err(|source| ExchangeInfoError::Io {
            file: "bundled exchange info".into(),
            source,
        })?;
    Ok(json)
}

/// Reads an exchangeInfo response from a file, plain or gzip-compressed.
pub fn load(path: &Path) -> Result<ExchangeRules, ExchangeInfoError> {
    parse(&load_json(path)?, &path.display().to_string())
}

/// The text of an exchangeInfo file, plain or gzip-compressed.
pub fn load_json(path: &Path) -> Result<String, ExchangeInfoError> {
    let file = path.display().to_string();
    let io = |source| ExchangeInfoError::Io {
        file: file.clone(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let mut json = String::new();
    if raw.starts_with(&[0x1f, 0x8b]) {
        GzDecoder::new(&raw[..])
            .read_to_string(&mut json)
            .map_err(io)?;
    } else {
        json = String::from_utf8(raw)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    }
    Ok(json)
}

fn read_wire(json: &str, origin: &str) -> Result<Wire, ExchangeInfoError> {
    serde_json::from_str(json).map_err(|source| ExchangeInfoError::Json {
        file: origin.to_owned(),
        source,
    })
}

/// Parses an exchangeInfo response; `origin` names it in errors.
pub fn parse(json: &str, origin: &str) -> Result<ExchangeRules, ExchangeInfoError> {
    parse_with_venue(json, origin).map(|(rules, _)| rules)
}

/// Parses an exchangeInfo response once into the rules every order meets and the venue's
/// side (rate limits, the other filters); `origin` names it in errors.
pub fn parse_with_venue(
    json: &str,
    origin: &str,
) -> Result<(ExchangeRules, VenueRules), ExchangeInfoError> {
    let wire = read_wire(json, origin)?;
    let mut rules = ExchangeRules {
        server_time: wire.server_time,
        ..Default::default()
    };
    let mut venue = VenueRules {
        rate_limits: wire.rate_limits,
        ..Default::default()
    };
    for s in wire.symbols {
        let bad = |reason: &str| ExchangeInfoError::Symbol {
            file: origin.to_owned(),
            symbol: s.symbol.clone(),
            reason: reason.to_owned(),
        };
        let symbol = Symbol::parse(&s.symbol).map_err(|e| bad(&e.to_string()))?;
        let (mut price, mut lot, mut notional) = (None, None, None);
        let mut filters = OrderFilters {
            order_types: s.order_types,
            ..Default::default()
        };
        for filter in s.filters {
            match filter {
                WireFilter::PriceFilter {
                    min_price,
                    max_price,
                    tick_size,
                } => price = Some((min_price, max_price, tick_size)),
                WireFilter::LotSize(l) => lot = Some((l.min_qty, l.max_qty, l.step_size)),
                WireFilter::MarketLotSize(l) => {
                    filters.market_lot = Some((l.min_qty, l.max_qty, l.step_size))
                }
                WireFilter::Notional {
                    min_notional,
                    max_notional,
                    apply_min_to_market,
                    apply_max_to_market,
                    avg_price_mins,
                } => {
                    notional = Some((min_notional, max_notional));
                    filters.min_notional_to_market = apply_min_to_market;
                    filters.max_notional_to_market = apply_max_to_market;
                    filters.notional_avg_price_mins = avg_price_mins;
                }
                WireFilter::MinNotional {
                    min_notional,
                    apply_to_market,
                    avg_price_mins,
                } => {
                    notional = notional.or(Some((min_notional, None)));
                    filters.min_notional_to_market |= apply_to_market;
                    filters.notional_avg_price_mins = avg_price_mins;
                }
                WireFilter::PercentPriceBySide {
                    bid_multiplier_up,
                    bid_multiplier_down,
                    ask_multiplier_up,
                    ask_multiplier_down,
                    avg_price_mins,
                } => {
                    filters.percent_price_by_side = Some(PercentPriceBySide {
                        bid_up: bid_multiplier_up,
                        bid_down: bid_multiplier_down,
                        ask_up: ask_multiplier_up,
                        ask_down: ask_multiplier_down,
                        avg_price_mins,
                    })
                }
                WireFilter::MaxNumOrders { max_num_orders } => {
                    filters.max_num_orders = Some(max_num_orders)
                }
                WireFilter::Other => {}
            }
        }
        let (min_price, max_price, tick_size) = price.ok_or_else(|| bad("no PRICE_FILTER"))?;
        let (min_qty, max_qty, step_size) = lot.ok_or_else(|| bad("no LOT_SIZE filter"))?;
        let (min_notional, max_notional) = notional.unwrap_or((Decimal::ZERO, None));
        venue.symbols.insert(symbol.clone(), filters);
        rules.symbols.insert(
            symbol.clone(),
            SymbolRules {
                symbol,
                status: s.status,
                base_asset: s.base_asset,
                quote_asset: s.quote_asset,
                tick_size,
                min_price,
                max_price,
                step_size,
                min_qty,
                max_qty,
                min_notional,
                max_notional,
            },
        );
    }
    Ok((rules, venue))
}

/// What else Binance checks of an order, beyond the [`SymbolRules`] every order of Hedgehog's
/// meets: what a venue needs (the simulated one, `exchange serve`), the engine does not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OrderFilters {
    /// `orderTypes`: LIMIT, LIMIT_MAKER, MARKET, ...
    pub order_types: Vec<String>,
    /// MARKET_LOT_SIZE: (minQty, maxQty, stepSize) for MARKET orders; zeros disable a bound.
    pub market_lot: Option<(Decimal, Decimal, Decimal)>,
    /// NOTIONAL's `applyMinToMarket` / `applyMaxToMarket`, and its `avgPriceMins`.
    pub min_notional_to_market: bool,
    pub max_notional_to_market: bool,
    pub notional_avg_price_mins: u32,
    /// PERCENT_PRICE_BY_SIDE: a BUY's price within [avg × bid_down, avg × bid_up], a SELL's
    /// within [avg × ask_down, avg × ask_up], avg over `avg_price_mins`.
    pub percent_price_by_side: Option<PercentPriceBySide>,
    /// MAX_NUM_ORDERS: open orders on the symbol at most.
    pub max_num_orders: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PercentPriceBySide {
    pub bid_up: Decimal,
    pub bid_down: Decimal,
    pub ask_up: Decimal,
    pub ask_down: Decimal,
    pub avg_price_mins: u32,
}

/// The venue's side of an exchangeInfo: rate limits and the filters of every symbol.
#[derive(Debug, Clone, Default)]
pub struct VenueRules {
    pub rate_limits: Vec<RateLimit>,
    pub symbols: std::collections::BTreeMap<Symbol, OrderFilters>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn the_bundled_snapshot_has_binances_btcusdt_filters() {
        let rules = bundled().unwrap();
        assert_eq!(rules.symbols.len(), 1248);
        let btc = rules.get(&Symbol::parse("BTCUSDT").unwrap()).unwrap();
        assert_eq!(btc.tick_size, dec!(0.01));
        assert_eq!(btc.step_size, dec!(0.00001));
        assert_eq!(btc.min_notional, dec!(5));
        assert_eq!(
            (btc.base_asset.as_str(), btc.quote_asset.as_str()),
            ("BTC", "USDT")
        );
        assert!(btc.is_trading());
        assert!(rules.get(&Symbol::parse("NOPEUSDT").unwrap()).is_none());
    }

    #[test]
    fn the_venue_side_has_binances_limits_and_order_filters() {
        let (_, venue) = parse_with_venue(&bundled_json().unwrap(), "bundled").unwrap();
        let weight = &venue.rate_limits[0];
        assert_eq!(
            (weight.rate_limit_type, weight.limit, weight.window_ms()),
            (
                crate::rest::RateLimitType::RequestWeight,
                6000,
                Some(60_000)
            )
        );
        assert_eq!(venue.rate_limits[1].window_ms(), Some(10_000));
        let btc = &venue.symbols[&Symbol::parse("BTCUSDT").unwrap()];
        assert!(btc.order_types.iter().any(|t| t == "LIMIT_MAKER"));
        assert_eq!(btc.market_lot, Some((dec!(0), dec!(129.84957276), dec!(0))));
        assert!(btc.min_notional_to_market && !btc.max_notional_to_market);
        assert_eq!(btc.notional_avg_price_mins, 5);
        let side = btc.percent_price_by_side.as_ref().unwrap();
        assert_eq!((side.bid_up, side.ask_down), (dec!(5), dec!(0.2)));
        assert_eq!(btc.max_num_orders, Some(200));
    }

    #[test]
    fn older_min_notional_filters_are_read_and_errors_name_the_symbol() {
        let old = r#"{"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT","filters":[
            {"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000","tickSize":"0.01"},
            {"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000","stepSize":"0.00001"},
            {"filterType":"MIN_NOTIONAL","minNotional":"10.0","applyToMarket":true,"avgPriceMins":5}]}]}"#;
        let rules = parse(old, "old.json").unwrap();
        assert_eq!(
            rules
                .get(&Symbol::parse("BTCUSDT").unwrap())
                .unwrap()
                .min_notional,
            dec!(10)
        );
        let broken = old.replace("LOT_SIZE", "LOT_SIZ");
        let err = parse(&broken, "old.json").unwrap_err().to_string();
        assert!(
            err.contains("old.json") && err.contains("BTCUSDT") && err.contains("LOT_SIZE"),
            "{err}"
        );
    }
}
