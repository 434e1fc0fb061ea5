//! `hedgehog-binance`: the only code that speaks Binance. This root holds the market data's
//! wire formats; `market_stream` the connection that carries them; `rest` the signed spot REST
//! client, `user_data` and `user_stream` the account's
//! execution reports, `exchange_info` the symbols' filters, `live` what a live trader does on
//! the venue after it records a decision.
//!
//! Binance's market-data wire formats, parsed into domain events.
//!
//! One parser serves every way a trade arrives: the live combined stream
//! (`{"stream":"btcusdt@trade","data":{...}}`), the raw stream (the bare trade object), and
//! recordings of either (`<local timestamp> <json>` per line). It accepts every payload shape
//! Binance has sent: spot before 2024-06-18 (with buyer/seller order ids `b`/`a`), spot after
//! (without them), and USD-M futures (with the trade kind `X`). Frames of other streams
//! (`bookTicker`, `depth`, `markPrice`) and REST snapshots are recognised and skipped, not errors.

pub mod exchange_info;
pub mod live;
pub mod market_stream;
pub mod rest;
pub mod user_data;
pub mod user_stream;

use std::borrow::Cow;

use hedgehog_domain::events::TradeReceived;
pub use hedgehog_domain::Market;
use hedgehog_domain::{Symbol, Timestamp, TradeKind};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What one frame turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A spot trade.
    Trade(TradeReceived),
    /// A USD-M futures trade (its frame carries the kind `X`, which spot frames never do). The
    /// same symbol on another market: its trades must not mix with spot ones.
    FuturesTrade(TradeReceived),
    /// A frame of another stream, such as `btcusdt@depth@100ms`: not for us.
    OtherStream(String),
    /// A message with no `stream` and no trade in it, e.g. a REST depth snapshot in a recording.
    NotAStreamMessage,
}

impl Frame {
    /// The trade a frame carries, with its market; `None` for frames that carry none.
    pub fn into_trade(self) -> Option<(Market, TradeReceived)> {
        match self {
            Frame::Trade(t) => Some((Market::Spot, t)),
            Frame::FuturesTrade(t) => Some((Market::Usdm, t)),
            Frame::OtherStream(_) | Frame::NotAStreamMessage => None,
        }
    }
}

/// A frame that claims to be a trade but cannot be one. The message carries the frame's start,
/// so a log line shows what arrived.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("not valid JSON ({source}): {excerpt}")]
    Json {
        excerpt: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("malformed trade ({reason}): {excerpt}")]
    Trade { reason: String, excerpt: String },
    #[error("recording line has no `<timestamp> <json>` shape: {excerpt}")]
    Recording { excerpt: String },
}

/// The first 200 characters of a frame, for error messages.
fn excerpt(text: &str) -> String {
    let mut end = text.len().min(200);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = text[..end].to_owned();
    if end < text.len() {
        s.push('…');
    }
    s
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    /// Present when the frame is a bare event (the raw stream endpoint).
    #[serde(borrow, default)]
    e: Option<Cow<'a, str>>,
}

/// A trade event as Binance sends it. Decimals are read from their text, never via f64.
#[derive(Deserialize)]
struct WireTrade {
    #[serde(rename = "e")]
    event_type: String,
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(rename = "s")]
    symbol: String,
    #[serde(rename = "t")]
    trade_id: u64,
    #[serde(rename = "p", with = "rust_decimal::serde::str")]
    price: Decimal,
    #[serde(rename = "q", with = "rust_decimal::serde::str")]
    quantity: Decimal,
    #[serde(rename = "T")]
    trade_time: i64,
    #[serde(rename = "m")]
    buyer_is_maker: bool,
    #[serde(rename = "b", default)]
    buyer_order_id: Option<u64>,
    #[serde(rename = "a", default)]
    seller_order_id: Option<u64>,
    #[serde(rename = "X", default)]
    kind: Option<String>,
}

/// Parses one websocket text frame.
pub fn parse_frame(text: &str) -> Result<Frame, FrameError> {
    let json_error = |source| FrameError::Json {
        excerpt: excerpt(text),
        source,
    };
    let envelope: Envelope = serde_json::from_str(text).map_err(json_error)?;
    match (envelope.stream, envelope.data, envelope.e) {
        (Some(stream), Some(data), _) => {
            if !stream.ends_with("@trade") {
                return Ok(Frame::OtherStream(stream.into_owned()));
            }
            let trade = trade(data.get(), text)?;
            let (Frame::Trade(t) | Frame::FuturesTrade(t)) = &trade else {
                unreachable!("trade() returns trades")
            };
            // `btcusdt@trade` must carry BTCUSDT: anything else is a corrupted frame.
            let expected = stream.trim_end_matches("@trade");
            if !expected.eq_ignore_ascii_case(t.symbol.as_str()) {
                return Err(FrameError::Trade {
                    reason: format!("stream {stream} carries symbol {}", t.symbol),
                    excerpt: excerpt(text),
                });
            }
            Ok(trade)
        }
        (None, None, Some(e)) if e == "trade" => trade(text, text),
        (Some(stream), None, _) => Err(FrameError::Trade {
            reason: format!("stream {stream} frame without data"),
            excerpt: excerpt(text),
        }),
        _ => Ok(Frame::NotAStreamMessage),
    }
}

fn trade(json: &str, frame: &str) -> Result<Frame, FrameError> {
    let bad = |reason: String| FrameError::Trade {
        reason,
        excerpt: excerpt(frame),
    };
    let wire: WireTrade = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
    if wire.event_type != "trade" {
        return Err(bad(format!(
            "event type {:?} in a trade stream",
            wire.event_type
        )));
    }
    let symbol = Symbol::parse(&wire.symbol).map_err(|e| bad(e.to_string()))?;
    if wire.price <= Decimal::ZERO {
        return Err(bad(format!("price {} is not positive", wire.price)));
    }
    if wire.quantity <= Decimal::ZERO {
        return Err(bad(format!("quantity {} is not positive", wire.quantity)));
    }
    let futures = wire.kind.is_some();
    let trade = TradeReceived {
        symbol,
        trade_id: wire.trade_id,
        price: wire.price,
        quantity: wire.quantity,
        trade_time: Timestamp(wire.trade_time),
        event_time: Timestamp(wire.event_time),
        buyer_is_maker: wire.buyer_is_maker,
        buyer_order_id: wire.buyer_order_id,
        seller_order_id: wire.seller_order_id,
        first_trade_id: None,
        kind: wire.kind.map(TradeKind::from).unwrap_or_default(),
    };
    Ok(if futures {
        Frame::FuturesTrade(trade)
    } else {
        Frame::Trade(trade)
    })
}

/// Parses one line of a recording: `<local receive timestamp> <frame>`. The timestamp's unit
/// varies between recordings (µs or ns) and is returned as written.
pub fn parse_recorded_line(line: &str) -> Result<(u64, Frame), FrameError> {
    let malformed = || FrameError::Recording {
        excerpt: excerpt(line),
    };
    let (stamp, json) = line.split_once(' ').ok_or_else(malformed)?;
    let stamp = stamp.parse().map_err(|_| malformed())?;
    Ok((stamp, parse_frame(json)?))
}

/// The frame Binance sends for a trade on the combined stream: its stream name and its text.
/// (Keys in the order `serde_json` would sort them, as the frames were written before.)
pub fn combined_frame(market: Market, t: &TradeReceived) -> (String, String) {
    #[derive(serde::Serialize)]
    struct Data<'a> {
        #[serde(rename = "E")]
        event_time: i64,
        #[serde(rename = "M", skip_serializing_if = "Option::is_none")]
        best_match: Option<bool>,
        #[serde(rename = "T")]
        trade_time: i64,
        #[serde(rename = "X", skip_serializing_if = "Option::is_none")]
        kind: Option<&'a str>,
        #[serde(rename = "a", skip_serializing_if = "Option::is_none")]
        seller_order_id: Option<u64>,
        #[serde(rename = "b", skip_serializing_if = "Option::is_none")]
        buyer_order_id: Option<u64>,
        e: &'static str,
        m: bool,
        #[serde(with = "rust_decimal::serde::str")]
        p: rust_decimal::Decimal,
        #[serde(with = "rust_decimal::serde::str")]
        q: rust_decimal::Decimal,
        s: &'a str,
        t: u64,
    }
    #[derive(serde::Serialize)]
    struct Combined<'a> {
        data: Data<'a>,
        stream: &'a str,
    }
    let stream = format!("{}@trade", t.symbol.as_str().to_ascii_lowercase());
    let (best_match, kind) = match market {
        Market::Spot => (Some(true), None),
        Market::Usdm => (None, Some(t.kind.as_str())),
    };
    let combined = Combined {
        data: Data {
            event_time: t.event_time.millis(),
            best_match,
            trade_time: t.trade_time.millis(),
            kind,
            seller_order_id: t.seller_order_id,
            buyer_order_id: t.buyer_order_id,
            e: "trade",
            m: t.buyer_is_maker,
            p: t.price,
            q: t.quantity,
            s: t.symbol.as_str(),
            t: t.trade_id,
        },
        stream: &stream,
    };
    // Serialising plain fields into a String cannot fail.
    let frame = serde_json::to_string(&combined).unwrap_or_default();
    (stream, frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn spot_2023_trades_keep_order_ids() {
        let line = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1680652800000,"s":"BTCUSDT","t":3071245454,"p":"28165.47000000","q":"0.00056000","b":20720542158,"a":20720542592,"T":1680652799999,"m":true,"M":true}}"#;
        let Frame::Trade(t) = parse_frame(line).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(t.symbol.as_str(), "BTCUSDT");
        assert_eq!(t.trade_id, 3071245454);
        assert_eq!(t.price, dec!(28165.47000000));
        assert_eq!(t.price.to_string(), "28165.47000000", "scale kept");
        assert_eq!(t.quantity, dec!(0.00056));
        assert_eq!(t.trade_time, Timestamp(1680652799999));
        assert_eq!(t.event_time, Timestamp(1680652800000));
        assert!(t.buyer_is_maker);
        assert_eq!(t.buyer_order_id, Some(20720542158));
        assert_eq!(t.seller_order_id, Some(20720542592));
        assert_eq!(t.kind, TradeKind::Market);
    }

    #[test]
    fn futures_trades_carry_their_kind_and_raw_frames_parse() {
        let line = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1680652874406,"T":1680652874400,"s":"BTCUSDT","t":3535191080,"p":"28722.50","q":"0.001","X":"INSURANCE_FUND","m":true}}"#;
        let Frame::FuturesTrade(t) = parse_frame(line).unwrap() else {
            panic!("not a futures trade")
        };
        assert_eq!(t.kind, TradeKind::InsuranceFund);
        assert_eq!(t.buyer_order_id, None);
        let raw = r#"{"e":"trade","E":1,"s":"ETHUSDT","t":7,"p":"2683.80","q":"0.5","T":1,"m":false,"M":true}"#;
        assert!(matches!(parse_frame(raw).unwrap(), Frame::Trade(t) if t.trade_id == 7));
    }

    #[test]
    fn other_streams_and_snapshots_are_skipped() {
        let depth = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}}"#;
        assert_eq!(
            parse_frame(depth).unwrap(),
            Frame::OtherStream("btcusdt@depth@100ms".into())
        );
        let snapshot =
            r#"{"lastUpdateId":35346513512,"bids":[["2683.80000000","3.02920000"]],"asks":[]}"#;
        assert_eq!(parse_frame(snapshot).unwrap(), Frame::NotAStreamMessage);
    }

    #[test]
    fn malformed_trades_are_errors_that_show_the_frame() {
        let cases = [
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}}"#,
                "abc",
            ),
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}}"#,
                "not positive",
            ),
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"ETHUSDT","t":1,"p":"1","q":"1","T":1,"m":true}}"#,
                "carries symbol ETHUSDT",
            ),
            (
                r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","p":"1","q":"1","T":1,"m":true}}"#,
                "missing field `t`",
            ),
            (r#"{"stream":"btcusdt@trade""#, "not valid JSON"),
        ];
        for (frame, needle) in cases {
            let err = parse_frame(frame).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
            assert!(err.contains("btcusdt@trade"), "the frame is shown: {err}");
        }
    }

    #[test]
    fn recording_lines_split_stamp_and_frame() {
        let (stamp, frame) =
            parse_recorded_line(r#"1723161254152322667 {"lastUpdateId":1,"bids":[],"asks":[]}"#)
                .unwrap();
        assert_eq!(stamp, 1723161254152322667);
        assert_eq!(frame, Frame::NotAStreamMessage);
        assert!(parse_recorded_line("garbage").is_err());
        assert!(parse_recorded_line("x {}").is_err());
    }

    #[test]
    fn frames_parse_back_to_the_same_trade() {
        let t = TradeReceived {
            symbol: hedgehog_domain::Symbol::parse("BTCUSDT").unwrap(),
            trade_id: 3735683259,
            price: "61837.63000000".parse().unwrap(),
            quantity: "0.02000000".parse().unwrap(),
            trade_time: hedgehog_domain::Timestamp(1723161255342),
            event_time: hedgehog_domain::Timestamp(1723161255343),
            buyer_is_maker: true,
            buyer_order_id: None,
            seller_order_id: None,
            first_trade_id: None,
            kind: hedgehog_domain::TradeKind::Market,
        };
        let (stream, frame) = combined_frame(Market::Spot, &t);
        assert_eq!(stream, "btcusdt@trade");
        assert_eq!(parse_frame(&frame).unwrap(), Frame::Trade(t.clone()));
        // Byte for byte what the frames were (keys sorted, as serde_json's maps wrote them).
        assert_eq!(
            frame,
            format!(
                r#"{{"data":{{"E":1723161255343,"M":true,"T":1723161255342,"e":"trade","m":true,"p":"61837.63000000","q":"0.02000000","s":"BTCUSDT","t":{}}},"stream":"btcusdt@trade"}}"#,
                t.trade_id
            )
        );
        let (_, futures) = combined_frame(Market::Usdm, &t);
        assert!(
            futures.contains(r#""T":1723161255342,"X":"MARKET","e""#),
            "{futures}"
        );
        assert_eq!(parse_frame(&futures).unwrap(), Frame::FuturesTrade(t));
    }
}
