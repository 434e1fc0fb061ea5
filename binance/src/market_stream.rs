//! Binance's market data over WebSocket: the combined trade stream's address, and one
//! connection to it read frame by frame.
//!
//! What arrives is Binance's business (text frames, pings, a close after 24 hours); what to do
//! with the trades (batching, order, gaps, storing) is the caller's (`hedgehog_ingest::streamer`,
//! `hedgehog_sim`'s follower).

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use hedgehog_domain::Symbol;
use rust_decimal::Decimal;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
pub use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Binance's public spot endpoint.
pub const BINANCE_WS_URL: &str = "wss://stream.binance.com:9443";

/// How long opening a connection may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The combined-stream URL carrying the trades of `symbols` on the endpoint `base`
/// (`wss://stream.binance.com:9443`, or a stand-in's `ws://127.0.0.1:PORT`).
pub fn trades_url(base: &str, symbols: &[Symbol]) -> String {
    let streams: Vec<String> = symbols
        .iter()
        .map(|s| format!("{}@trade", s.as_str().to_ascii_lowercase()))
        .collect();
    streams_url(base, &streams)
}

/// The combined-stream URL carrying `streams` on the endpoint `base`.
pub fn streams_url(base: &str, streams: &[String]) -> String {
    format!(
        "{}/stream?streams={}",
        base.trim_end_matches('/'),
        streams.join("/")
    )
}

/// A symbol's partial book depth stream: its best 20 levels a side, every 100 ms. Whole
/// snapshots, so a follower needs no REST snapshot and no diff sequencing.
pub fn depth_stream(symbol: &Symbol) -> String {
    format!("{}{DEPTH_SUFFIX}", symbol.as_str().to_ascii_lowercase())
}

const DEPTH_SUFFIX: &str = "@depth20@100ms";

/// A book as Binance's partial depth stream and `GET /api/v3/depth` give it: price levels,
/// best first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookDepth {
    pub last_update_id: u64,
    pub bids: Vec<(Decimal, Decimal)>,
    pub asks: Vec<(Decimal, Decimal)>,
}

#[derive(serde::Deserialize)]
struct DepthEnvelope<'a> {
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    data: BookDepth,
}

/// A partial depth frame of the combined stream: its symbol and book. `None` for a frame of
/// another stream; an error names what is wrong with one that claims to be depth.
pub fn parse_depth_frame(text: &str) -> Option<Result<(Symbol, BookDepth), String>> {
    // Cheap test first: most frames are trades.
    if !text.contains(DEPTH_SUFFIX) {
        return None;
    }
    let envelope: DepthEnvelope = match serde_json::from_str(text) {
        Ok(e) => e,
        Err(e) => return Some(Err(format!("malformed depth frame ({e})"))),
    };
    let name = envelope.stream.strip_suffix(DEPTH_SUFFIX)?;
    Some(
        Symbol::parse(&name.to_ascii_uppercase())
            .map(|symbol| (symbol, envelope.data))
            .map_err(|e| format!("depth stream {}: {e}", envelope.stream)),
    )
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {url}: {source}")]
    Refused {
        url: String,
        #[source]
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    #[error("connecting to {url} timed out after {:?}", CONNECT_TIMEOUT)]
    TimedOut { url: String },
}

/// What one read of the connection gave.
#[derive(Debug)]
pub enum Heard {
    /// A text frame: a trade, another stream's message, or anything Binance sends as text
    /// (borrowed from the frame, never copied: it derefs to `str`).
    Text(Utf8Bytes),
    /// A ping, a pong or a binary frame: the connection is alive (pings are answered).
    Alive,
    /// The server closed the connection (Binance does after 24 hours).
    Closed,
    /// The connection broke.
    Dropped(String),
}

/// One open market-data connection.
pub struct MarketStream {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl MarketStream {
    /// Opens `url`, within [`CONNECT_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<MarketStream, ConnectError> {
        let connecting = tokio_tungstenite::connect_async(url);
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok((ws, _))) => Ok(MarketStream { ws }),
            Ok(Err(source)) => Err(ConnectError::Refused {
                url: url.to_owned(),
                source: Box::new(source),
            }),
            Err(_) => Err(ConnectError::TimedOut {
                url: url.to_owned(),
            }),
        }
    }

    /// The next thing the connection says; cancel-safe (a `select!` may drop it).
    pub async fn next(&mut self) -> Heard {
        match self.ws.next().await {
            Some(Ok(Message::Text(text))) => Heard::Text(text),
            Some(Ok(Message::Close(_))) | None => Heard::Closed,
            Some(Ok(_)) => Heard::Alive,
            Some(Err(error)) => Heard::Dropped(error.to_string()),
        }
    }
}

/// The streams a request to a stand-in asks for (the server side of [`trades_url`]): `/stream?streams=a@trade/b@trade` or `/ws/a@trade`.
pub fn requested_streams(path: &str) -> HashSet<String> {
    let list = if let Some(query) = path.split_once('?').map(|(_, q)| q) {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("streams="))
            .unwrap_or_default()
            .to_owned()
    } else {
        path.strip_prefix("/ws/").unwrap_or_default().to_owned()
    };
    list.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_depth_frame_gives_its_symbol_and_book() {
        let frame = r#"{"stream":"btcusdt@depth20@100ms","data":{"lastUpdateId":160,"bids":[["61837.63000000","3.78826000"]],"asks":[["61837.64000000","1.54698000"]]}}"#;
        let (symbol, book) = parse_depth_frame(frame).unwrap().unwrap();
        assert_eq!(symbol.as_str(), "BTCUSDT");
        assert_eq!(book.last_update_id, 160);
        assert_eq!(book.bids[0].0.to_string(), "61837.63000000");
        assert!(parse_depth_frame(r#"{"stream":"btcusdt@trade","data":{}}"#).is_none());
        let broken = parse_depth_frame(r#"{"stream":"btcusdt@depth20@100ms","data":{"bids":[]}}"#);
        assert!(broken
            .unwrap()
            .unwrap_err()
            .contains("malformed depth frame"));
        assert_eq!(depth_stream(&symbol), "btcusdt@depth20@100ms");
    }

    #[test]
    fn one_connection_carries_every_symbol() {
        let symbols = [
            Symbol::parse("BTCUSDT").unwrap(),
            Symbol::parse("ETHUSDT").unwrap(),
        ];
        assert_eq!(
            trades_url("wss://stream.binance.com:9443/", &symbols),
            "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
        );
    }

    #[test]
    fn streams_come_from_either_endpoint() {
        let s = requested_streams("/stream?streams=btcusdt@trade/ETHUSDT@trade");
        assert!(s.contains("btcusdt@trade") && s.contains("ethusdt@trade"));
        assert_eq!(s.len(), 2);
        let s = requested_streams("/ws/btcusdt@trade");
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["btcusdt@trade"]);
    }
}
