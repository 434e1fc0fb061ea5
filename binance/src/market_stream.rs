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
    format!(
        "{}/stream?streams={}",
        base.trim_end_matches('/'),
        streams.join("/")
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
