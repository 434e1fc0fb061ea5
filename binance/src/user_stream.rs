//! The live connection to Binance's user data stream, over the WebSocket API.
//!
//! One connection serves the whole engine: it subscribes with
//! `userDataStream.subscribe.signature` (an HMAC-signed request, so ordinary API keys work; the
//! plain `userDataStream.subscribe` needs an Ed25519 session logon) and publishes every
//! execution report to the symbols' traders.
//!
//! Invariants:
//! - After every (re)subscription it publishes [`Feed::Subscribed`] *before* any report of that
//!   connection: whatever happened while no stream was up is then read over REST by each trader
//!   (reconciliation), and nothing falls between the REST read and the stream, because the
//!   stream was already up when the read began. A report seen by both is decided once: reports
//!   carry cumulative quantities.
//! - Connection problems are retried forever with capped, jittered backoff; they never stop the
//!   engine. The API key goes on the wire only: it is never logged.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hedgehog_domain::trading::Report;
use hedgehog_domain::Symbol;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::Message;

use super::rest::{Credentials, RestClient, RECV_WINDOW_MS};
use super::user_data::{parse, UserEvent};

/// Binance's WebSocket API.
pub const SPOT_WS_API_URL: &str = "wss://ws-api.binance.com:443/ws-api/v3";
/// The spot testnet's WebSocket API.
pub const SPOT_TESTNET_WS_API_URL: &str = "wss://ws-api.testnet.binance.vision/ws-api/v3";

/// What the user data stream tells the traders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feed {
    /// The stream is (again) subscribed: reconcile with REST now.
    Subscribed,
    /// An execution report about an order of `symbol`.
    Report { symbol: Symbol, report: Report },
}

/// A channel for the feed: enough room for bursts; a trader that lags reconciles instead.
pub fn channel() -> broadcast::Sender<Feed> {
    broadcast::channel(1024).0
}

/// The `userDataStream.subscribe.signature` request: its parameters signed as a query string
/// in alphabetical order, as Binance's WebSocket API requires.
pub fn subscribe_request(credentials: &Credentials, timestamp: i64, id: &str) -> String {
    let payload = format!(
        "apiKey={}&recvWindow={RECV_WINDOW_MS}&timestamp={timestamp}",
        credentials.api_key()
    );
    serde_json::json!({
        "id": id,
        "method": "userDataStream.subscribe.signature",
        "params": {
            "apiKey": credentials.api_key(),
            "recvWindow": RECV_WINDOW_MS,
            "timestamp": timestamp,
            "signature": credentials.sign(&payload),
        }
    })
    .to_string()
}

#[derive(Debug, thiserror::Error)]
enum Dropped {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("Binance refused the subscription: {0}")]
    Refused(String),
    #[error("the connection dropped: {0}")]
    Lost(String),
    #[error(
        "nothing came for {0:?}, not even a pong to our pings: the connection is taken as dead"
    )]
    Silent(Duration),
}

/// Binance closes a WebSocket API connection after 24 hours: one this old is made again first
/// (the new subscription makes every trader reconcile, so no report is lost in between).
const MAX_AGE: Duration = Duration::from_secs(23 * 3600);

/// Follows the user data stream until `shutdown` turns true.
pub async fn follow(
    url: String,
    rest: Arc<RestClient>,
    credentials: Credentials,
    feed: broadcast::Sender<Feed>,
    idle: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(500);
    let mut attempt: u64 = 0;
    while !*shutdown.borrow() {
        attempt += 1;
        let outcome = tokio::select! {
            outcome = session(&url, &rest, &credentials, &feed, attempt, idle) => outcome,
            _ = shutdown.changed() => return,
        };
        match outcome {
            Ok(()) => {
                tracing::info!(url, "user data stream closed by the server; reconnecting");
                backoff = Duration::from_millis(500);
            }
            Err(e) => tracing::warn!(url, error = %e, "user data stream: reconnecting"),
        }
        hedgehog_runtime::backoff::wait(&mut backoff, Duration::from_secs(60), &mut shutdown).await;
    }
}

/// What ended a wait on the connection.
enum Next {
    Message(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Ping,
    Silent,
    Old,
}

/// One connection: subscribe, then relay reports until it ends. It pings every third of `idle`
/// and takes `idle` without any frame (a half-open connection never ends by itself) as dead.
async fn session(
    url: &str,
    rest: &RestClient,
    credentials: &Credentials,
    feed: &broadcast::Sender<Feed>,
    attempt: u64,
    idle: Duration,
) -> Result<(), Dropped> {
    let opened = tokio::time::Instant::now();
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| Dropped::Connect("timed out".into()))?
    .map_err(|e| Dropped::Connect(e.to_string()))?;
    let id = format!("hh-subscribe-{attempt}");
    ws.send(Message::text(subscribe_request(
        credentials,
        rest.server_now(),
        &id,
    )))
    .await
    .map_err(|e| Dropped::Lost(e.to_string()))?;
    let mut subscribed = false;
    let every = (idle / 3).max(Duration::from_millis(10));
    let mut pings = tokio::time::interval_at(opened + every, every);
    let mut heard = tokio::time::Instant::now();
    loop {
        let next = tokio::select! {
            message = ws.next() => Next::Message(message),
            _ = pings.tick() => Next::Ping,
            _ = tokio::time::sleep_until(heard + idle) => Next::Silent,
            _ = tokio::time::sleep_until(opened + MAX_AGE) => Next::Old,
        };
        let message = match next {
            Next::Message(Some(message)) => message,
            Next::Message(None) => return Ok(()),
            Next::Ping => {
                ws.send(Message::Ping(Vec::new().into()))
                    .await
                    .map_err(|e| Dropped::Lost(e.to_string()))?;
                continue;
            }
            Next::Silent => return Err(Dropped::Silent(idle)),
            Next::Old => {
                tracing::info!(url, age = ?opened.elapsed(), "user data stream connection near Binance's 24 hours; making it again");
                return Ok(());
            }
        };
        heard = tokio::time::Instant::now();
        let text = match message.map_err(|e| Dropped::Lost(e.to_string()))? {
            Message::Text(text) => text,
            Message::Close(_) => return Ok(()),
            _ => continue, // pings are answered by tungstenite
        };
        match parse(text.as_str()) {
            Ok(UserEvent::Response(answer)) => {
                if answer.get("id").and_then(|v| v.as_str()) != Some(id.as_str()) {
                    continue;
                }
                if answer.get("status").and_then(|s| s.as_u64()) != Some(200) {
                    let error = answer.get("error").cloned().unwrap_or(answer);
                    return Err(Dropped::Refused(error.to_string()));
                }
                subscribed = true;
                tracing::info!(url, "user data stream subscribed");
                let _ = feed.send(Feed::Subscribed);
            }
            Ok(UserEvent::Execution(report)) if subscribed => {
                let Ok(symbol) = Symbol::parse(&report.symbol) else {
                    tracing::warn!(
                        symbol = report.symbol,
                        "execution report for a symbol Hedgehog cannot name; ignored"
                    );
                    continue;
                };
                if let Some(report) = report.report() {
                    let _ = feed.send(Feed::Report { symbol, report });
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "user data stream: unreadable message skipped"),
        }
    }
}
