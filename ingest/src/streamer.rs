//! The Binance trade streamer: websocket frames in, `TradeReceived` batches appended.
//!
//! One connection carries every symbol (Binance's combined stream). Trades are appended in
//! batches: every frame the connection already holds is taken, then every stream's batch is
//! committed in one transaction, and the streamer reads on while it is synced; what each stored
//! is counted once it is durable. A commit waits only for the one before it to be synced (group
//! commit): a quiet stream's trade is stored as soon as it comes, and under load the frames
//! that arrive during a sync make the next batch, so latency is low when it can be and
//! throughput high when it must be. Any drop (Binance closes every connection after 24 hours) is followed by a reconnect
//! with capped exponential backoff and jitter. A trade already stored is never stored again: the
//! streamer skips ids it has seen and the store's (stream, trade id) key catches the rest. A gap
//! in trade ids (after a reconnect, or between what is stored and the first trade of a new run)
//! is logged and counted in [`StreamerStats`], never hidden, and, given a [`Backfill`], filled
//! from Binance's REST `historicalTrades` before the trades after it are appended, so the
//! stream stays in id order. Filling happens in the flush, between frames: bounded by
//! [`Backfill::limit`] (1,000 trades a request), it takes seconds, well within the minute
//! Binance waits for a pong. Longer outages are for `hedgehog import trades` and Binance's
//! daily files.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::Symbol;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ids::trade_event_id;
use hedgehog_binance::market_stream::{self, ConnectError, Heard, MarketStream};
use hedgehog_binance::rest::{RestClient, HISTORICAL_TRADES_LIMIT};
use hedgehog_binance::{parse_frame, Frame, Market};
use hedgehog_runtime::latency::Probe;
use hedgehog_store::{AppendOutcome, ExpectedVersion, NewEvent, Store, StoreError, StreamId};

#[derive(Debug, Clone)]
pub struct StreamerOptions {
    /// Base URL: `wss://stream.binance.com:9443`, or a replay server's `ws://127.0.0.1:PORT`.
    pub url: String,
    pub symbols: Vec<Symbol>,
    /// Trades per symbol that trigger a flush.
    pub batch_size: usize,
    /// The longest a trade waits for the frames after it while they keep coming without a
    /// pause (otherwise a batch is flushed as soon as no frame is waiting).
    pub flush_after: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Where gaps are filled from; none: they are reported only.
    pub backfill: Option<Backfill>,
    /// A connection that delivers no frame at all (data, ping or pong) for this long is taken
    /// as dead: a half-open TCP connection never ends by itself, and Binance pings every 20 s.
    pub idle_timeout: Duration,
    /// Stamps each trade as its frame is taken, for latency measurements; none: no cost.
    pub probe: Option<Probe>,
}

/// How long a silent trade stream is trusted by default: three of Binance's pings.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the streamer fills gaps in spot trade ids from, and how much of each.
#[derive(Debug, Clone)]
pub struct Backfill {
    /// Binance's spot REST API (or a stand-in's): `historicalTrades` is public, no key needed.
    pub client: Arc<RestClient>,
    /// The most trades filled in one gap, from its start; the rest of a larger gap stays
    /// missing (and counted).
    pub limit: u64,
}

/// Trades filled in one gap by default: 50 requests of Binance's weight 25, a fifth of a
/// minute's 6,000, and a few seconds away from the websocket.
pub const BACKFILL_LIMIT: u64 = 50_000;

impl StreamerOptions {
    pub fn new(url: impl Into<String>, symbols: Vec<Symbol>) -> Self {
        StreamerOptions {
            url: url.into(),
            symbols,
            batch_size: 1_000,
            flush_after: Duration::from_millis(50),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(60),
            backfill: None,
            idle_timeout: IDLE_TIMEOUT,
            probe: None,
        }
    }

    /// Fills gaps from `backfill` (none: reports them only).
    pub fn with_backfill(mut self, backfill: Option<Backfill>) -> Self {
        self.backfill = backfill;
        self
    }

    /// The combined-stream URL for the symbols.
    pub fn stream_url(&self) -> String {
        market_stream::trades_url(&self.url, &self.symbols)
    }
}

/// What the streamer has done, readable while it runs.
#[derive(Debug, Default)]
pub struct StreamerStats {
    pub received: AtomicU64,
    pub stored: AtomicU64,
    pub duplicates: AtomicU64,
    pub malformed: AtomicU64,
    pub connections: AtomicU64,
    /// Connections dropped because they went silent.
    pub silent: AtomicU64,
    pub gaps: AtomicU64,
    /// Trades missing in the gaps, as found.
    pub missing: AtomicU64,
    /// Of those, the trades filled from REST.
    pub backfilled: AtomicU64,
}

impl StreamerStats {
    pub fn summary(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "received {}, stored {}, duplicates {}, malformed {}, connections {} ({} silent), gaps {} ({} trades missing, backfilled {})",
            get(&self.received),
            get(&self.stored),
            get(&self.duplicates),
            get(&self.malformed),
            get(&self.connections),
            get(&self.silent),
            get(&self.gaps),
            get(&self.missing),
            get(&self.backfilled),
        )
    }
}

/// Trades waiting to be appended, per stream, and what has been seen per stream.
struct Pending {
    batches: HashMap<StreamId, Vec<NewEvent>>,
    last_id: HashMap<StreamId, u64>,
    since: Option<Instant>,
    /// Gaps found since the last flush, to fill before their stream's batch is appended.
    holes: Vec<Hole>,
}

/// Trade ids `from..=to` of `symbol`'s spot stream did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hole {
    stream: StreamId,
    symbol: Symbol,
    from: u64,
    to: u64,
}

/// Streams until `shutdown` turns true, then flushes and returns. Errors only when the store
/// fails; connection problems are retried forever.
pub async fn run(
    store: Store,
    options: StreamerOptions,
    stats: Arc<StreamerStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StoreError> {
    let mut pending = Pending {
        batches: HashMap::new(),
        last_id: HashMap::new(),
        since: None,
        holes: Vec::new(),
    };
    // Resume gap detection from what is stored.
    for symbol in &options.symbols {
        let stream = StreamId::trades(symbol);
        let version = store.stream_version(&stream).await?;
        if version > 0 {
            if let Some(last) = store.read_stream(&stream, version, 1).await?.pop() {
                if let Some(id) = last.event.trade_id() {
                    pending.last_id.insert(stream, id);
                }
            }
        }
    }
    let url = options.stream_url();
    let mut backoff = options.initial_backoff;
    let mut acks = Acks::new();
    while !*shutdown.borrow() {
        let connected = tokio::select! {
            c = MarketStream::connect(&url) => c,
            _ = shutdown.changed() => break,
        };
        let mut ws = match connected {
            Ok(ws) => ws,
            Err(error @ ConnectError::TimedOut { .. }) => {
                tracing::warn!(%error, "connecting to the trade stream timed out");
                hedgehog_runtime::backoff::wait(&mut backoff, options.max_backoff, &mut shutdown)
                    .await;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot connect to the trade stream");
                hedgehog_runtime::backoff::wait(&mut backoff, options.max_backoff, &mut shutdown)
                    .await;
                continue;
            }
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(url, "trade stream connected");
        let mut got_data = false;
        let mut heard = Instant::now();
        loop {
            let deadline = pending.since.map(|t| t + options.flush_after);
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = sleep_until(deadline) => flush(&store, &mut pending, &stats, options.backfill.as_ref(), &mut acks).await?,
                Some(acked) = acks.next(), if !acks.is_empty() => {
                    count(&stats, acked?);
                    // The log is synced: what came meanwhile goes in the next commit now.
                    if acks.is_empty() {
                        flush(&store, &mut pending, &stats, options.backfill.as_ref(), &mut acks).await?;
                    }
                }
                _ = tokio::time::sleep_until(heard + options.idle_timeout) => {
                    stats.silent.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(url, idle = ?options.idle_timeout, "the trade stream sent nothing, not even a ping; taking the connection as dead and reconnecting");
                    break;
                }
                heard_now = ws.next() => {
                    // Take what the connection already holds, then flush: nothing waits for
                    // frames that have not come.
                    let mut next = Some(heard_now);
                    let mut ended = false;
                    while let Some(said) = next.take() {
                        match said {
                            Heard::Text(text) => {
                                heard = Instant::now();
                                got_data = true;
                                let largest = handle(&text, &mut pending, &stats, options.probe.as_ref());
                                let waited = pending.since.is_some_and(|t| t.elapsed() >= options.flush_after);
                                if largest >= options.batch_size || waited {
                                    flush(&store, &mut pending, &stats, options.backfill.as_ref(), &mut acks).await?;
                                }
                                next = ws.next().now_or_never();
                            }
                            Heard::Alive => {
                                heard = Instant::now();
                                next = ws.next().now_or_never();
                            }
                            Heard::Closed => {
                                tracing::info!("trade stream closed by the server; reconnecting");
                                ended = true;
                            }
                            Heard::Dropped(error) => {
                                tracing::warn!(%error, "trade stream dropped; reconnecting");
                                ended = true;
                            }
                        }
                    }
                    // Nothing more waiting: commit now, unless the last commit is still being
                    // synced, in which case what comes meanwhile joins this batch (flushed when
                    // that sync ends, at the size limit, or after `flush_after`).
                    if ended || acks.is_empty() {
                        flush(&store, &mut pending, &stats, options.backfill.as_ref(), &mut acks).await?;
                    }
                    if ended {
                        break;
                    }
                }
            }
        }
        flush_all(&store, &mut pending, &stats, &options, &mut acks).await?;
        if got_data {
            backoff = options.initial_backoff;
        }
        if !*shutdown.borrow() {
            hedgehog_runtime::backoff::wait(&mut backoff, options.max_backoff, &mut shutdown).await;
        }
    }
    flush_all(&store, &mut pending, &stats, &options, &mut acks).await
}

/// Commits what is pending and waits until every commit is durable.
async fn flush_all(
    store: &Store,
    pending: &mut Pending,
    stats: &StreamerStats,
    options: &StreamerOptions,
    acks: &mut Acks,
) -> Result<(), StoreError> {
    flush(store, pending, stats, options.backfill.as_ref(), acks).await?;
    settle(stats, acks, 0).await
}

/// Appends committed and not yet durable, oldest first: the streamer reads on while the log
/// is synced, and counts what each append stored once it is.
type Acks = FuturesOrdered<BoxFuture<'static, Result<Vec<AppendOutcome>, StoreError>>>;

/// Appends the streamer may have committed and not yet seen durable before it waits: enough
/// for the syncs to overlap reading, few enough that a slow disk slows the reading down.
const IN_FLIGHT: usize = 64;

/// Counts an acknowledged append.
fn count(stats: &StreamerStats, outcomes: Vec<AppendOutcome>) {
    for out in outcomes {
        stats
            .stored
            .fetch_add(out.appended as u64, Ordering::Relaxed);
        stats
            .duplicates
            .fetch_add(out.duplicates as u64, Ordering::Relaxed);
    }
}

/// Waits until at most `left` appends are unacknowledged.
async fn settle(stats: &StreamerStats, acks: &mut Acks, left: usize) -> Result<(), StoreError> {
    while acks.len() > left {
        match acks.next().await {
            Some(acked) => count(stats, acked?),
            None => break,
        }
    }
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Takes one frame; returns the size of the largest pending batch.
fn handle(
    text: &str,
    pending: &mut Pending,
    stats: &StreamerStats,
    probe: Option<&Probe>,
) -> usize {
    let (market, trade) = match parse_frame(text).map(Frame::into_trade) {
        Ok(Some(found)) => found,
        Ok(None) => return 0,
        Err(error) => {
            stats.malformed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, "malformed frame skipped");
            return 0;
        }
    };
    let stream = hedgehog_store::StreamId::market_trades(market, &trade.symbol);
    stats.received.fetch_add(1, Ordering::Relaxed);
    let id = trade.trade_id;
    match pending.last_id.get(&stream).copied() {
        Some(last) if id <= last => {
            // Replayed after a reconnect: already stored or pending.
            stats.duplicates.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        Some(last) if id > last + 1 => {
            let missing = id - last - 1;
            stats.gaps.fetch_add(1, Ordering::Relaxed);
            stats.missing.fetch_add(missing, Ordering::Relaxed);
            tracing::warn!(%stream, after = last, next = id, missing, "gap in trade ids");
            // Binance's spot REST serves spot trades only.
            if market == Market::Spot {
                pending.holes.push(Hole {
                    stream: stream.clone(),
                    symbol: trade.symbol.clone(),
                    from: last + 1,
                    to: id - 1,
                });
            }
        }
        _ => {}
    }
    pending.last_id.insert(stream.clone(), id);
    if let Some(probe) = probe {
        probe.received(&trade.symbol, id, std::time::Instant::now());
    }
    let event_id = trade_event_id(&stream, &trade);
    let batch = pending.batches.entry(stream).or_default();
    batch.push(NewEvent::new(trade).with_id(event_id));
    pending.since.get_or_insert_with(Instant::now);
    batch.len()
}

/// Commits every pending batch, one append per stream; their acknowledgements join `acks`.
async fn flush(
    store: &Store,
    pending: &mut Pending,
    stats: &StreamerStats,
    backfill: Option<&Backfill>,
    acks: &mut Acks,
) -> Result<(), StoreError> {
    pending.since = None;
    let holes = std::mem::take(&mut pending.holes);
    let mut streams: Vec<StreamId> = pending.batches.keys().cloned().collect();
    streams.sort();
    let mut parts = Vec::with_capacity(streams.len());
    for stream in streams {
        let Some(mut events) = pending.batches.remove(&stream) else {
            continue;
        };
        if events.is_empty() {
            continue;
        }
        if let Some(backfill) = backfill {
            let came = events.len();
            for hole in holes.iter().filter(|h| h.stream == stream) {
                for trade in fill(backfill, hole).await {
                    let event_id = trade_event_id(&stream, &trade);
                    events.push(NewEvent::new(trade).with_id(event_id));
                }
            }
            if events.len() > came {
                // Into id order, each once: the gap's trades before the ones that came after
                // it. (The batch's own ids rise: repeats were dropped as they came.)
                events.sort_by_key(|e| e.event.trade_id());
                events.dedup_by_key(|e| e.event.trade_id());
                let filled = (events.len() - came) as u64;
                stats.backfilled.fetch_add(filled, Ordering::Relaxed);
                tracing::info!(%stream, filled, "gap filled from REST");
            }
        }
        parts.push((stream, ExpectedVersion::Any, store.prepare(events)?));
    }
    if parts.is_empty() {
        return Ok(());
    }
    // One transaction for every stream's batch, committed now and acknowledged later: the
    // streamer reads on while it is synced.
    let committed = store.begin_append_streams(parts).await?;
    acks.push_back(Box::pin(committed.acknowledged_all()));
    settle(stats, acks, IN_FLIGHT).await
}

/// The trades of `hole`, as far as [`Backfill::limit`] reaches and REST answers. A failed
/// request ends the filling: what it did not bring stays missing, and the stream goes on.
async fn fill(backfill: &Backfill, hole: &Hole) -> Vec<TradeReceived> {
    let Some(span) = backfill.limit.checked_sub(1) else {
        return Vec::new();
    };
    let last = hole.to.min(hole.from.saturating_add(span));
    let mut trades = Vec::new();
    let mut next = hole.from;
    while next <= last {
        let want = (last - next + 1).min(u64::from(HISTORICAL_TRADES_LIMIT)) as u16;
        let page = match backfill
            .client
            .historical_trades(&hole.symbol, next, want)
            .await
        {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, stream = %hole.stream, from = next, to = hole.to,
                    "cannot fill the gap from REST; the rest of it stays missing");
                break;
            }
        };
        let before = trades.len();
        trades.extend(
            page.into_iter()
                .filter(|t| (next..=last).contains(&t.id))
                .map(|t| t.into_trade(&hole.symbol)),
        );
        match trades[before..].iter().map(|t| t.trade_id).max() {
            Some(highest) => next = highest + 1,
            // Nothing in the range: REST has no more of it.
            None => break,
        }
    }
    trades
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_skipped_and_gaps_counted() {
        let stats = StreamerStats::default();
        let mut pending = Pending {
            batches: HashMap::new(),
            last_id: HashMap::new(),
            since: None,
            holes: Vec::new(),
        };
        let frame = |id: u64| {
            format!(
                r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":1,"s":"BTCUSDT","t":{id},"p":"1.0","q":"1.0","T":1,"m":true,"M":true}}}}"#
            )
        };
        for id in [1, 2, 3, 2, 3, 7, 8] {
            handle(&frame(id), &mut pending, &stats, None);
        }
        handle("{not json", &mut pending, &stats, None);
        let batch = &pending.batches[&StreamId::new("trades-BTCUSDT").unwrap()];
        let ids: Vec<u64> = batch.iter().map(|e| e.event.trade_id().unwrap()).collect();
        assert_eq!(ids, [1, 2, 3, 7, 8]);
        assert_eq!(stats.duplicates.load(Ordering::Relaxed), 2);
        assert_eq!(stats.gaps.load(Ordering::Relaxed), 1);
        assert_eq!(stats.missing.load(Ordering::Relaxed), 3);
        assert_eq!(
            pending.holes,
            [Hole {
                stream: StreamId::new("trades-BTCUSDT").unwrap(),
                symbol: Symbol::parse("BTCUSDT").unwrap(),
                from: 4,
                to: 6
            }]
        );
        assert_eq!(stats.malformed.load(Ordering::Relaxed), 1);
    }
}
