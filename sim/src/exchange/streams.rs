//! The trade stream, as Binance's combined (`/stream?streams=`) and raw (`/ws/<stream>`)
//! endpoints: every frame the tape or the followed market plays goes to the connections that
//! asked for its stream.
//!
//! Two ways to treat a slow or cut connection:
//! - as Binance does (`exchange serve`): the market does not wait; a connection that falls
//!   more than [`BACKLOG`] frames behind misses some, and a cut one misses what is played while
//!   it is away;
//! - with [`Cuts`] (`replay-server`, for testing clients): playback waits for the slowest
//!   connection (at most [`IN_FLIGHT`] frames ahead) and pauses while none is there; each connection can be cut after
//!   `drop_every` frames, without a close frame, as a network failure would; and a new
//!   connection first gets the `resume_overlap` frames before the last one delivered, so a
//!   client meets trades it has already received, as a real reconnect may make it.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::{Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use hedgehog_binance::market_stream;
use tokio::sync::{mpsc, watch};

use super::Exchange;

/// How far behind a connection may fall before it misses frames, without [`Cuts`].
const BACKLOG: usize = 4096;

/// How far playback may run ahead of a connection, with [`Cuts`]: frames still in flight when
/// a connection is cut are kept for the next one (see `delivered`).
const IN_FLIGHT: usize = 256;

/// How many frames past the overlap are kept for a new connection at most, with [`Cuts`].
const RECENT_BOUND: usize = 100_000;

/// How many frames a new connection repeats from before the last one delivered, by default.
pub const RESUME_OVERLAP: usize = 25;

/// Connections cut and resumed the way a client's reconnects are tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cuts {
    /// Cut each connection after this many frames (0: never).
    pub drop_every: u64,
    /// How many frames a new connection repeats from before the last one delivered. Binance
    /// repeats none; a large overlap lets a test check that a client killed with trades in
    /// flight stores every one exactly once when they come again.
    pub resume_overlap: usize,
}

/// One frame: its place in the playback, its stream and its text (shared, not copied, by
/// every connection that sends it).
type Frame = (u64, Arc<str>, Utf8Bytes);

struct Listener {
    id: u64,
    streams: HashSet<String>,
    frames: mpsc::Sender<Frame>,
}

#[derive(Default)]
struct State_ {
    listeners: Vec<Listener>,
    next_id: u64,
    /// Frames played so far.
    played: u64,
    /// The last frames played, for a new connection to resume with (with [`Cuts`] only).
    recent: VecDeque<Frame>,
}

/// Every trade-stream connection, and the playback's place.
pub struct Streams {
    cuts: Option<Cuts>,
    state: Mutex<State_>,
    /// How many connections there are.
    listening: watch::Sender<usize>,
    /// One past the last frame a connection delivered.
    delivered: AtomicU64,
}

impl Streams {
    pub fn new(cuts: Option<Cuts>) -> Streams {
        Streams {
            cuts,
            state: Mutex::default(),
            listening: watch::channel(0).0,
            delivered: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Plays one frame of `stream` to the connections that asked for it; with [`Cuts`], first
    /// waits until a connection is there, then until each has taken it.
    pub async fn publish(&self, stream: String, text: String) {
        if self.cuts.is_some() && *self.listening.borrow() == 0 {
            let mut listening = self.listening.subscribe();
            let _ = listening.wait_for(|n| *n > 0).await;
        }
        let (frame, targets) = {
            let mut state = self.state();
            let frame: Frame = (state.played, Arc::from(stream), Utf8Bytes::from(text));
            state.played += 1;
            if let Some(cuts) = self.cuts {
                state.recent.push_back(frame.clone());
                // Keep what a new connection may need: from the overlap before the last frame
                // delivered on (frames still in flight included), within a bound.
                let delivered = self.delivered.load(Ordering::Acquire);
                let keep_from = delivered.saturating_sub(cuts.resume_overlap as u64);
                while state.recent.front().is_some_and(|(i, _, _)| {
                    *i < keep_from || state.recent.len() > cuts.resume_overlap + RECENT_BOUND
                }) {
                    state.recent.pop_front();
                }
            }
            let targets: Vec<(u64, mpsc::Sender<Frame>)> = state
                .listeners
                .iter()
                .filter(|l| l.streams.contains(&*frame.1))
                .map(|l| (l.id, l.frames.clone()))
                .collect();
            (frame, targets)
        };
        for (id, frames) in targets {
            let sent = if self.cuts.is_some() {
                frames.send(frame.clone()).await.is_ok()
            } else {
                match frames.try_send(frame.clone()) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(
                            connection = id,
                            "a trade-stream client is {BACKLOG} frames behind; a trade skipped for it"
                        );
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                }
            };
            if !sent {
                self.leave(id);
            }
        }
    }

    /// A new connection for `streams`: its id, its frames to come, and the frames it gets
    /// first (with [`Cuts`]: the overlap before the last one delivered, and those in flight).
    fn join(&self, streams: HashSet<String>) -> (u64, mpsc::Receiver<Frame>, Vec<Frame>) {
        let capacity = if self.cuts.is_some() {
            IN_FLIGHT
        } else {
            BACKLOG
        };
        let (frames, receiver) = mpsc::channel(capacity);
        let mut state = self.state();
        let id = state.next_id;
        state.next_id += 1;
        let backlog = match self.cuts {
            Some(cuts) => {
                let delivered = self.delivered.load(Ordering::Acquire);
                let from = delivered.saturating_sub(cuts.resume_overlap as u64);
                state
                    .recent
                    .iter()
                    .filter(|(i, stream, _)| *i >= from && streams.contains(&**stream))
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        state.listeners.push(Listener {
            id,
            streams,
            frames,
        });
        let count = state.listeners.len();
        drop(state);
        self.listening.send_replace(count);
        (id, receiver, backlog)
    }

    fn delivered(&self, index: u64) {
        self.delivered.fetch_max(index + 1, Ordering::AcqRel);
    }

    fn leave(&self, id: u64) {
        let mut state = self.state();
        state.listeners.retain(|l| l.id != id);
        let count = state.listeners.len();
        drop(state);
        self.listening.send_replace(count);
    }
}

/// The trade stream's endpoint: `/stream?streams=a@trade/b@trade` or `/ws/a@trade`.
pub async fn market_stream(
    State(exchange): State<Arc<Exchange>>,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let streams = market_stream::requested_streams(&path);
    upgrade.on_upgrade(move |socket| async move {
        let (id, frames, backlog) = exchange.streams.join(streams);
        exchange.start.notify_one();
        serve(&exchange, socket, frames, backlog).await;
        exchange.streams.leave(id);
    })
}

/// Sends a connection its frames until it goes, or until it is cut.
async fn serve(
    exchange: &Exchange,
    mut socket: WebSocket,
    mut frames: mpsc::Receiver<Frame>,
    backlog: Vec<Frame>,
) {
    let streams = &exchange.streams;
    let drop_every = streams.cuts.map_or(0, |c| c.drop_every);
    let mut sent = 0u64;
    let mut send = async |socket: &mut WebSocket, (index, _, text): Frame| -> bool {
        if socket.send(WsMessage::Text(text)).await.is_err() {
            return false;
        }
        streams.delivered(index);
        sent += 1;
        // Cut like a network failure: no close frame.
        !(drop_every > 0 && sent >= drop_every)
    };
    for frame in backlog {
        if !send(&mut socket, frame).await {
            return;
        }
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => {
                    if !send(&mut socket, frame).await {
                        return;
                    }
                }
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> HashSet<String> {
        ["btcusdt@trade".to_owned()].into()
    }

    /// With cuts, playback waits for a connection, and a new one resumes `resume_overlap`
    /// frames of the tape before the last delivered: nothing lost, the overlap repeated.
    #[tokio::test]
    async fn a_cut_connection_resumes_before_its_last_frame_and_nothing_is_lost() {
        // More than can be in flight, so that playback has to wait.
        const TRADES: usize = IN_FLIGHT + 50;
        let streams = Arc::new(Streams::new(Some(Cuts {
            drop_every: 0,
            resume_overlap: 2,
        })));
        let tape = {
            let streams = Arc::clone(&streams);
            tokio::spawn(async move {
                for n in 0..TRADES {
                    streams
                        .publish("btcusdt@trade".into(), format!("trade {n}"))
                        .await;
                    // A stream nobody asked for is played past.
                    streams
                        .publish("ethusdt@trade".into(), "other".into())
                        .await;
                }
            })
        };
        let (first, mut frames, backlog) = streams.join(wanted());
        assert!(backlog.is_empty());
        let mut got = Vec::new();
        for _ in 0..4 {
            let (index, _, text) = frames.recv().await.unwrap();
            streams.delivered(index);
            got.push(text.to_string());
        }
        streams.leave(first);
        drop(frames);
        // The tape waits while nobody listens.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!tape.is_finished(), "playback paused without a connection");
        let (_, mut frames, backlog) = streams.join(wanted());
        let mut again: Vec<String> = backlog.iter().map(|(_, _, t)| t.to_string()).collect();
        while let Some((index, _, text)) = frames.recv().await {
            streams.delivered(index);
            again.push(text.to_string());
            if text.as_str() == format!("trade {}", TRADES - 1) {
                break;
            }
        }
        // The overlap counts the tape's frames (ETHUSDT's too): here the last one of ours.
        let repeated = again.iter().take_while(|f| got.contains(f)).count();
        assert_eq!(repeated, 1, "{again:?}");
        assert_eq!(again[0], got[3]);
        let all: Vec<String> = got.iter().chain(&again[repeated..]).cloned().collect();
        let expected: Vec<String> = (0..TRADES).map(|n| format!("trade {n}")).collect();
        assert_eq!(all, expected, "every trade, once past the overlap");
        tape.await.unwrap();
    }
}
