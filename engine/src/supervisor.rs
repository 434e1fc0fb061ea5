//! The engine behind `hedgehog run`: the streamer, the projector and one trading worker per
//! symbol, each supervised, all following the store.
//!
//! Autostart is the store's doing: at start-up every symbol with a trading stream gets a worker
//! (idle while its trading is off, so a later `trading start` from any process wakes it), and a
//! symbol started for the first time while the engine runs gets one as soon as its
//! `TradingStarted` commits. A worker that fails (an error or a panic) is logged and restarted
//! from its stream with capped exponential backoff; the others keep trading. A restart never
//! re-executes a decision: decisions are in the store and the worker resumes after them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::Symbol;
use hedgehog_projections::{ProjectionError, Projector, Published};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::aggregate::TradingAggregate;
use crate::readiness::Readiness;
use crate::trading::TradingError;
use crate::worker::Trader;
use hedgehog_binance::live::Venue;
use hedgehog_binance::rest::Credentials;
use hedgehog_binance::user_stream;
use hedgehog_ingest::streamer::{Backfill, StreamerStats};
use hedgehog_runtime::latency::Probe;
use hedgehog_store::{Store, StoreError, StreamId};

/// What the engine runs with.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Binance's websocket base URL, or a replay server's.
    pub binance_ws_url: String,
    /// Where the streamer fills gaps in the trade stream from; none: they are reported only.
    pub backfill: Option<Backfill>,
    /// How long a silent trade stream is trusted (see `StreamerOptions::idle_timeout`).
    pub idle_timeout: std::time::Duration,
    /// The paper exchange that fills the orders.
    pub paper: PaperExchange,
    /// The strategies the symbols' settings may name (`Strategies::default()`: the book's).
    pub strategies: Strategies,
    pub rules: Arc<ExchangeRules>,
    /// Where the projector publishes read-model updates (candles, orders, settings); `None`:
    /// a channel nobody listens to.
    pub updates: Option<broadcast::Sender<std::sync::Arc<Published>>>,
    /// Trade on Binance instead of on paper: orders go there, fills come from its user data
    /// stream, and `paper` is not used.
    pub live: Option<LiveOptions>,
    /// Where the engine says whether every worker has hydrated (`/api/health`).
    pub readiness: Readiness,
    /// Trades a worker takes between two snapshots of its state.
    pub snapshot_every: u64,
    /// Times trades from their frame to the decisions they cause (`hedgehog-bench latency`);
    /// none: no cost.
    pub probe: Option<Probe>,
}

/// What live trading needs.
#[derive(Clone)]
pub struct LiveOptions {
    pub venue: Venue,
    /// The WebSocket API that carries the user data stream.
    pub ws_api_url: String,
    pub credentials: Credentials,
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("ws_api_url", &self.ws_api_url)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Trading(#[from] TradingError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

/// The longest wait between two restarts of a failing task.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Runs until `shutdown` turns true, then lets every task finish its batch and returns.
pub async fn run(
    store: Store,
    options: EngineOptions,
    stats: Arc<StreamerStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), EngineError> {
    let mut tasks = Vec::new();
    {
        let source = hedgehog_ingest::streamer::StreamerOptions {
            idle_timeout: options.idle_timeout,
            probe: options.probe.clone(),
            ..hedgehog_ingest::streamer::StreamerOptions::new(
                options.binance_ws_url.clone(),
                Vec::new(),
            )
        }
        .with_backfill(options.backfill.clone());
        let (store, stats) = (store.clone(), stats);
        tasks.push(supervise(
            "streamer".to_owned(),
            shutdown.clone(),
            move |stop| {
                let (store, source, stats) = (store.clone(), source.clone(), Arc::clone(&stats));
                async move { crate::streaming::follow(store, source, stats, stop).await }
            },
        ));
    }
    {
        let store = store.clone();
        let updates = options.updates.clone().unwrap_or_else(Projector::channel);
        tasks.push(supervise(
            "projector".to_owned(),
            shutdown.clone(),
            move |mut stop| {
                let projector = Projector::new(store.clone()).publishing_to(updates.clone());
                async move {
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    projector_run(projector, stopped).await
                }
            },
        ));
    }
    if let Some(live) = &options.live {
        let live = live.clone();
        tasks.push(tokio::spawn(hedgehog_binance::live::refresh_rules(
            live.venue.clone(),
            hedgehog_binance::live::RULES_EVERY,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(user_stream::follow(
            live.ws_api_url,
            Arc::clone(&live.venue.rest),
            live.credentials,
            live.venue.feed,
            options.idle_timeout,
            shutdown.clone(),
        )));
    }
    {
        let store = store.clone();
        tasks.push(supervise(
            "status".to_owned(),
            shutdown.clone(),
            move |stop| report_status(store.clone(), STATUS_EVERY, stop),
        ));
    }
    let mut traders: BTreeMap<Symbol, JoinHandle<()>> = BTreeMap::new();
    // Only the names, from the streams' metadata: each worker rebuilds its own state when it
    // starts. A symbol traded for the first time while the engine runs has a trading stream
    // from its first `TradingStarted` on, whichever process appended it.
    let mut trading = store.watch_streams("trading-").await?;
    let mut watch_shutdown = shutdown.clone();
    loop {
        for symbol in store.symbols_with("trading").await? {
            start_trader(&store, &options, &symbol, &shutdown, &mut traders);
            // Its decisions (every order placed and filled) need not wake this loop.
            trading.ignore(StreamId::trading(&symbol));
        }
        options.readiness.planned();
        tokio::select! {
            _ = watch_shutdown.changed() => break,
            _ = trading.changed() => {}
        }
        if *shutdown.borrow() {
            break;
        }
    }
    for task in tasks.into_iter().chain(traders.into_values()) {
        let _ = task.await;
    }
    Ok(())
}

/// How often the engine logs a status line per traded symbol.
const STATUS_EVERY: Duration = Duration::from_secs(60);

/// Logs one line per symbol with a trading stream every `every`: status, open positions and
/// orders, profit and fees so far. Read from the store, so it says what is recorded.
async fn report_status(
    store: Store,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<(), TradingError> {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = tick.tick() => {}
        }
        for (symbol, state) in crate::trading::status(&store).await? {
            tracing::info!(
                %symbol,
                status = %state.status,
                positions = state.positions.len(),
                open_orders = state.open_orders().count(),
                closed = state.totals.positions_closed,
                realized_profit = %state.totals.realized_profit,
                fees = %state.totals.fees,
                "status"
            );
        }
    }
}

async fn projector_run(
    mut projector: Projector,
    stopped: impl Future<Output = ()>,
) -> Result<(), ProjectionError> {
    projector.run(stopped).await
}

fn start_trader(
    store: &Store,
    options: &EngineOptions,
    symbol: &Symbol,
    shutdown: &watch::Receiver<bool>,
    traders: &mut BTreeMap<Symbol, JoinHandle<()>>,
) {
    if traders.contains_key(symbol) {
        return;
    }
    let Some(rules) = options.rules.get(symbol) else {
        tracing::error!(%symbol, "not trading {symbol}: the exchange info does not list it");
        return;
    };
    let aggregate = TradingAggregate {
        rules: rules.clone(),
        strategies: options.strategies.clone(),
        // Live, the exchange fills the orders: trades only drive the strategy.
        paper: options.live.is_none().then_some(options.paper.clone()),
    };
    let store = store.clone();
    let venue = options.live.as_ref().map(|l| l.venue.clone());
    let readiness = options.readiness.clone();
    let snapshot_every = options.snapshot_every;
    let probe = options.probe.clone();
    let task = supervise(format!("trader {symbol}"), shutdown.clone(), move |stop| {
        let (store, aggregate, venue) = (store.clone(), aggregate.clone(), venue.clone());
        let (readiness, probe) = (readiness.clone(), probe.clone());
        readiness.starting(&aggregate.rules.symbol);
        async move {
            let began = Instant::now();
            let trader = Trader::load(store, aggregate)
                .await?
                .reporting_to(readiness, began)
                .snapshot_every(snapshot_every)
                .probed_by(probe);
            match venue {
                Some(venue) => trader.on_venue(venue).run(stop).await,
                None => trader.run(stop).await,
            }
        }
    });
    traders.insert(symbol.clone(), task);
}

/// Runs `make(shutdown)` until it returns `Ok` (it does on shutdown), restarting it with
/// backoff when it fails or panics.
fn supervise<F, Fut, E>(name: String, shutdown: watch::Receiver<bool>, make: F) -> JoinHandle<()>
where
    F: Fn(watch::Receiver<bool>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let mut shutdown = shutdown;
        loop {
            let started = Instant::now();
            match tokio::spawn(make(shutdown.clone())).await {
                Ok(Ok(())) => return,
                Ok(Err(e)) => {
                    tracing::error!(task = %name, error = %e, "failed; restarting in {backoff:?}")
                }
                Err(e) if e.is_panic() => {
                    tracing::error!(task = %name, "panicked; restarting in {backoff:?}")
                }
                Err(_) => return,
            }
            if started.elapsed() > MAX_BACKOFF {
                backoff = Duration::from_secs(1);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use tracing::instrument::WithSubscriber;

    /// A log sink the test can read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_status_line_per_traded_symbol_each_period() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&url).await.unwrap();
        let rules = hedgehog_binance::exchange_info::bundled().unwrap();
        let ada = rules.get(&Symbol::parse("ADAUSDT").unwrap()).unwrap();
        crate::trading::command(
            &store,
            ada,
            crate::trading::Request::Start,
            hedgehog_domain::Timestamp(1),
        )
        .await
        .unwrap();
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(
            report_status(store.clone(), Duration::from_millis(30), stopped)
                .with_subscriber(subscriber),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.send(true).unwrap();
        task.await.unwrap().unwrap();
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("status")).collect();
        assert!(lines.len() >= 3, "one line a period: {log}");
        assert!(
            lines.iter().all(|l| l.contains("symbol=ADAUSDT")
                && l.contains("status=on")
                && l.contains("realized_profit=0")),
            "{log}"
        );
    }
}
