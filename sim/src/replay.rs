//! `hedgehog replay-server`: a local Binance-compatible websocket that plays recorded trades.
//!
//! It is how the live path is demonstrated and tested offline: point the streamer at it with
//! `--binance-ws-url`. It answers Binance's combined-stream endpoint
//! (`/stream?streams=btcusdt@trade/ethusdt@trade`) and the raw one (`/ws/btcusdt@trade`) on
//! 127.0.0.1, with the trades of the files it was given (any format the importer reads), in
//! trade-time order: at real pace, `speed` times faster, or as fast as possible (`speed` 0).
//!
//! To exercise reconnects it can drop the connection every N messages, without a close frame,
//! as a network failure would. Playback position is shared across connections, and a new
//! connection resumes a little *before* where the last one was cut, so a client also sees
//! trades it has already received: what a real reconnect may do, and what it must not store twice.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;

use hedgehog_binance::market_stream;
use hedgehog_ingest::import::{ImportError, ImportOptions};

/// How many messages a resumed connection repeats from before the cut, by default.
pub const RESUME_OVERLAP: usize = 25;

/// What to play and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    /// 1.0 is real pace; 0 is as fast as possible.
    pub speed: f64,
    /// Drop the connection after this many messages (0: never).
    pub drop_every: u64,
    /// How many messages a new connection repeats from before where the last one was cut.
    /// Binance repeats none; a large overlap lets a test check that a client killed with
    /// trades in flight stores every one exactly once when they come again.
    pub resume_overlap: usize,
    pub import: ImportOptions,
}

/// One recorded trade, ready to send.
struct Recorded {
    stream: String,
    time: i64,
    frame: String,
}

/// Counters a test or a user can read.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub connections: AtomicU64,
    pub sent: AtomicU64,
    pub drops: AtomicU64,
}

/// A bound, loaded replay server.
pub struct ReplayServer {
    listener: TcpListener,
    trades: Arc<Vec<Recorded>>,
    cursor: Arc<AtomicUsize>,
    options: ReplayOptions,
    pub stats: Arc<ReplayStats>,
}

impl ReplayServer {
    /// Loads the files and binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, options: ReplayOptions) -> Result<Self, ImportError> {
        let trades = crate::tape::load(options.files.clone(), options.import.clone()).await?;
        let trades = trades
            .iter()
            .map(|(market, t)| {
                let (stream, frame) = hedgehog_binance::combined_frame(*market, t);
                Recorded {
                    stream,
                    time: t.trade_time.millis(),
                    frame,
                }
            })
            .collect();
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ImportError::Io {
                file: PathBuf::from(addr.to_string()),
                source,
            })?;
        Ok(ReplayServer {
            listener,
            trades: Arc::new(trades),
            cursor: Arc::new(AtomicUsize::new(0)),
            options,
            stats: Arc::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// How many trades it plays.
    pub fn len(&self) -> usize {
        self.trades.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trades.is_empty()
    }

    /// Serves connections until the task is dropped.
    pub async fn serve(self) {
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            };
            let trades = Arc::clone(&self.trades);
            let cursor = Arc::clone(&self.cursor);
            let stats = Arc::clone(&self.stats);
            let options = self.options.clone();
            tokio::spawn(async move {
                if let Err(error) = play(socket, trades, cursor, stats, options).await {
                    tracing::debug!(%peer, %error, "replay connection ended");
                }
            });
        }
    }
}

// The handshake callback's `Result<Response, ErrorResponse>` is tungstenite's signature.
#[allow(clippy::result_large_err)]
async fn play(
    socket: tokio::net::TcpStream,
    trades: Arc<Vec<Recorded>>,
    cursor: Arc<AtomicUsize>,
    stats: Arc<ReplayStats>,
    options: ReplayOptions,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(socket, |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    })
    .await?;
    let streams = market_stream::requested_streams(&path);
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut incoming) = ws.split();
    // Answer pings and notice a client that goes away, while playing.
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = incoming.next().await {} });

    let start = cursor
        .load(Ordering::SeqCst)
        .saturating_sub(options.resume_overlap);
    let mut sent_here = 0u64;
    let mut pace = crate::tape::Pace::new(options.speed);
    for (i, trade) in trades.iter().enumerate().skip(start) {
        if !streams.contains(&trade.stream) {
            cursor.fetch_max(i + 1, Ordering::SeqCst);
            continue;
        }
        pace.wait(trade.time).await;
        sink.send(Message::text(trade.frame.clone())).await?;
        cursor.fetch_max(i + 1, Ordering::SeqCst);
        stats.sent.fetch_add(1, Ordering::Relaxed);
        sent_here += 1;
        if options.drop_every > 0 && sent_here >= options.drop_every {
            // Cut the connection like a network failure: no close frame.
            stats.drops.fetch_add(1, Ordering::Relaxed);
            reader.abort();
            return Ok(());
        }
    }
    // Everything played: stay connected like a quiet market until the client leaves.
    let _ = reader.await;
    Ok(())
}
