//! The engine behind `hedgehog run`: the streamer, the projector and one trading worker per
//! symbol this node owns, each supervised, all following the store.
//!
//! Autostart is the store's doing: every symbol with a trading stream gets a worker on the node
//! that holds its lease ([`crate::cluster`]; alone on its database, a node holds them all),
//! idle while its trading is off, so a later `trading start` from any process wakes it, and a
//! symbol started for the first time while the engine runs gets one as soon as its
//! `TradingStarted` commits. A worker that fails (an error or a panic) is logged and restarted
//! from its stream with capped exponential backoff; the others keep trading. A restart never
//! re-executes a decision: decisions are in the store and the worker resumes after them.

use std::collections::{BTreeMap, BTreeSet};
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
use crate::cluster::{assign, ClusterOptions, LeaseClock};
use crate::readiness::Readiness;
use crate::trading::TradingError;
use crate::worker::{Trader, TraderError};
use hedgehog_binance::live::Venue;
use hedgehog_binance::rest::Credentials;
use hedgehog_binance::user_stream;
use hedgehog_ingest::streamer::{Backfill, StreamerStats};
use hedgehog_runtime::latency::Probe;
use hedgehog_store::{Acquired, Fence, Lease, NodeInfo, Store, StoreError, StreamId};

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
    /// This engine as a node among those on the same database: which symbols it owns.
    pub cluster: ClusterOptions,
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
    let (owned_tx, owned) = watch::channel(BTreeSet::new());
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
                let owned = Some(owned.clone());
                async move { crate::streaming::follow(store, source, stats, owned, stop).await }
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
    let updates = options.updates.clone().unwrap_or_else(Projector::channel);
    let mut node = Ownership::join(store.clone(), options.clone(), owned_tx, updates).await?;
    // Symbols traded or streamed for the first time while the engine runs have a stream from
    // their first switch on, whichever process appended it: both wake the next round at once.
    let mut trading = store.watch_streams("trading-").await?;
    let mut streaming = store.watch_streams("streaming-").await?;
    let mut tick = tokio::time::interval(options.cluster.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            _ = watch_shutdown.changed() => {}
            _ = trading.changed() => {}
            _ = streaming.changed() => {}
            _ = tick.tick() => {}
        }
        if *shutdown.borrow() {
            break;
        }
        if let Err(e) = node.round().await {
            tracing::warn!(node = %node.me.node, error = %e, "could not renew this node's leases or rebalance; retrying at the next heartbeat");
        }
        for symbol in &node.symbols {
            // Decisions (every order placed and filled, here or on another node) need not
            // wake this loop.
            trading.ignore(StreamId::trading(symbol));
        }
        options.readiness.planned();
    }
    node.leave().await;
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

/// A symbol this node holds the lease of, and its worker.
struct Owned {
    epoch: i64,
    clock: LeaseClock,
    stop: watch::Sender<bool>,
    /// `None`: the symbol is only streamed (it has no trading stream, or no filters).
    worker: Option<JoinHandle<()>>,
}

impl Owned {
    /// Tells the worker to stop (after its current decision, its snapshot saved), without
    /// waiting.
    fn stopping(self, release: bool) -> Stopping {
        let _ = self.stop.send(true);
        Stopping {
            worker: self.worker,
            release,
        }
    }
}

/// A worker told to stop (a symbol handed over or lost), until it has: a live worker may be
/// in the middle of a request to the venue, and the heartbeats go on meanwhile.
struct Stopping {
    worker: Option<JoinHandle<()>>,
    /// Whether the lease is released once it has stopped (handed over) or was lost already.
    release: bool,
}

impl Stopping {
    fn done(&self) -> bool {
        self.worker.as_ref().is_none_or(JoinHandle::is_finished)
    }

    async fn ended(self) {
        if let Some(worker) = self.worker {
            let _ = worker.await;
        }
    }
}

/// This engine's part in the cluster ([`crate::cluster`]): its name, the leases it holds and
/// the workers running under them.
struct Ownership {
    store: Store,
    options: EngineOptions,
    me: NodeInfo,
    owned: BTreeMap<Symbol, Owned>,
    /// Who held each symbol assigned here when it was last asked for, so it is said once.
    told: BTreeMap<Symbol, String>,
    /// The symbols with a trading or streaming stream, as of the last round.
    symbols: Vec<Symbol>,
    /// Workers told to stop, by symbol: the symbol is taken again only once its worker ended.
    stopping: BTreeMap<Symbol, Stopping>,
    /// What the streamer streams.
    owned_tx: watch::Sender<BTreeSet<Symbol>>,
    /// Where the read models' updates go.
    updates: broadcast::Sender<Arc<Published>>,
    /// The projector, while this node holds its lease (its epoch), or the follower that
    /// tells this node's subscribers what another node's projector did.
    projection: Projection,
}

/// The lease of the cluster's one projector: not a symbol's name.
pub const PROJECTOR: &str = "$projector";

/// What this node does for the read models.
struct Projection {
    /// `Some(epoch)`: it projects; `None`: it follows.
    epoch: Option<i64>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Projection {
    /// Projects the log into the read models under the lease's `epoch` (several projectors
    /// would be correct too: checkpoints move by compare-and-set; one is what costs least).
    fn projecting(store: &Store, updates: &broadcast::Sender<Arc<Published>>, epoch: i64) -> Self {
        let (store, updates) = (store.clone(), updates.clone());
        Projection::spawn(Some(epoch), "projector", move |stop| {
            let projector = Projector::new(store.clone()).publishing_to(updates.clone());
            projector_run(projector, stopped(stop))
        })
    }

    /// Follows another node's projector ([`hedgehog_projections::follow`]).
    fn following(store: &Store, updates: &broadcast::Sender<Arc<Published>>) -> Self {
        let (store, updates) = (store.clone(), updates.clone());
        Projection::spawn(None, "projection follower", move |stop| {
            hedgehog_projections::follow(store.clone(), updates.clone(), stopped(stop))
        })
    }

    /// Runs `job` supervised until [`Projection::stop`].
    fn spawn<F, Fut>(epoch: Option<i64>, name: &str, job: F) -> Self
    where
        F: Fn(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), ProjectionError>> + Send + 'static,
    {
        let (stop, stopped) = watch::channel(false);
        let task = supervise(name.to_owned(), stopped, job);
        Projection { epoch, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Ownership {
    /// Claims the node's name, or, when a live process holds it, the name with this process's
    /// id after it. A previous run of this node on this host that died (its process is gone)
    /// gives its name, and the leases under it, over at once.
    async fn join(
        store: Store,
        options: EngineOptions,
        owned_tx: watch::Sender<BTreeSet<Symbol>>,
        updates: broadcast::Sender<Arc<Published>>,
    ) -> Result<Self, StoreError> {
        let me = claim_name(&store, &options.cluster).await?;
        tracing::info!(node = %me.node, pid = me.pid, "joined the cluster of engines on this database");
        let projection = Projection::following(&store, &updates);
        Ok(Ownership {
            updates,
            projection,
            store,
            options,
            me,
            owned: BTreeMap::new(),
            told: BTreeMap::new(),
            symbols: Vec::new(),
            stopping: BTreeMap::new(),
            owned_tx,
        })
    }

    fn ttl_ms(&self) -> i64 {
        self.options.cluster.ttl_ms()
    }

    /// One heartbeat: renews the leases, stops the workers of those lost, and moves toward the
    /// assignment every node computes ([`assign`]): hands over what is another's, takes what
    /// is free and ours.
    async fn round(&mut self) -> Result<(), EngineError> {
        let sent = Instant::now();
        let Some(held) = self.store.beat(&self.me, self.ttl_ms()).await? else {
            tracing::warn!(node = %self.me.node, "another process took this node's name over (it was silent past its lease): stopping its workers and joining again");
            for (symbol, owned) in std::mem::take(&mut self.owned) {
                // Not ours to release: the leases went with the name.
                self.stopping.insert(symbol, owned.stopping(false));
            }
            self.publish();
            self.me = claim_name(&self.store, &self.options.cluster).await?;
            return Ok(());
        };
        let epochs: BTreeMap<&str, i64> = held
            .iter()
            .map(|l| (l.resource.as_str(), l.epoch))
            .collect();
        let gone: Vec<Symbol> = self
            .owned
            .iter()
            .filter(|(symbol, owned)| {
                epochs.get(symbol.as_str()) != Some(&owned.epoch)
                    || owned.worker.as_ref().is_some_and(JoinHandle::is_finished)
            })
            .map(|(symbol, _)| symbol.clone())
            .collect();
        for symbol in gone {
            let Some(owned) = self.owned.remove(&symbol) else {
                continue;
            };
            // Held still: its worker ended on its own (a refused decision), so the lease is
            // given up and taken afresh.
            let still = epochs.get(symbol.as_str()) == Some(&owned.epoch);
            if !still {
                tracing::warn!(%symbol, node = %self.me.node, "lost the lease of {symbol} (it expired and another node took it): its worker stops");
            }
            self.stopping.insert(symbol, owned.stopping(still));
        }
        self.reap().await;
        for owned in self.owned.values() {
            owned.clock.renewed(sent);
        }

        let mut symbols = self.store.symbols_with("trading").await?;
        symbols.extend(self.store.symbols_with("streaming").await?);
        let cluster = self.store.cluster().await?;
        let mut nodes: Vec<&str> = cluster.live_nodes().map(|n| n.node.as_str()).collect();
        nodes.push(&self.me.node);
        let target = assign(&symbols, &nodes);
        self.symbols = symbols.clone();
        let mine = |symbol: &str| {
            Symbol::parse(symbol)
                .ok()
                .and_then(|s| target.get(&s).copied())
                == Some(self.me.node.as_str())
        };

        let handed: Vec<Symbol> = self
            .owned
            .keys()
            .filter(|s| !mine(s.as_str()))
            .cloned()
            .collect();
        for symbol in handed {
            if let Some(owned) = self.owned.remove(&symbol) {
                let to = target.get(&symbol).copied().unwrap_or("nobody");
                tracing::info!(%symbol, node = %self.me.node, to, "handing {symbol} over to node {to}: its worker stops, then the lease is released");
                self.stopping.insert(symbol, owned.stopping(true));
            }
        }
        // Leases under this name that no worker here runs under (a previous run's): released
        // unless they are ours to take again below.
        for lease in held.iter().filter(|l| l.resource != PROJECTOR) {
            let ran = Symbol::parse(&lease.resource)
                .is_ok_and(|s| self.owned.contains_key(&s) || self.stopping.contains_key(&s));
            if !ran && !mine(&lease.resource) {
                self.store.release(&lease.resource, &self.me.node).await?;
            }
        }

        let wanted: Vec<Symbol> = target
            .iter()
            .filter(|(s, node)| {
                **node == self.me.node
                    && !self.owned.contains_key(*s)
                    && !self.stopping.contains_key(*s)
            })
            .map(|(s, _)| s.clone())
            .collect();
        for symbol in wanted {
            let asked = Instant::now();
            match self
                .store
                .acquire(symbol.as_str(), &self.me, self.ttl_ms())
                .await?
            {
                Acquired::Held(lease) => {
                    tracing::info!(%symbol, node = %self.me.node, epoch = lease.epoch, "took the lease of {symbol}");
                    self.told.remove(&symbol);
                    let owned = self.start(&symbol, &lease, asked).await?;
                    self.owned.insert(symbol, owned);
                }
                Acquired::Taken(lease) => {
                    if self.told.get(&symbol) != Some(&lease.node) {
                        let pid = cluster
                            .nodes
                            .iter()
                            .find(|n| n.node == lease.node)
                            .map(|n| n.pid);
                        tracing::info!(%symbol, owner = %lease.node, owner_pid = ?pid, "{symbol} is traded by node {} (pid {}) until its lease is released or expires", lease.node, pid.map_or("unknown".to_owned(), |p| p.to_string()));
                        self.told.insert(symbol, lease.node);
                    }
                }
            }
        }
        self.publish();
        self.project(&epochs, &cluster).await
    }

    /// Keeps the cluster's one projector: this node's while it holds the lease (taken when it
    /// is free), another node's followed otherwise.
    async fn project(
        &mut self,
        epochs: &BTreeMap<&str, i64>,
        cluster: &hedgehog_store::Cluster,
    ) -> Result<(), EngineError> {
        let held = epochs.get(PROJECTOR).copied();
        match self.projection.epoch {
            Some(epoch) if held == Some(epoch) => return Ok(()),
            Some(_) => {
                tracing::warn!(node = %self.me.node, "lost the projector's lease; following the node that holds it");
                let following = Projection::following(&self.store, &self.updates);
                std::mem::replace(&mut self.projection, following)
                    .stop()
                    .await;
                return Ok(());
            }
            None => {}
        }
        let taken = cluster
            .leases
            .iter()
            .any(|l| l.resource == PROJECTOR && l.is_live(cluster.now) && l.node != self.me.node);
        if taken {
            return Ok(());
        }
        if let Acquired::Held(lease) = self
            .store
            .acquire(PROJECTOR, &self.me, self.ttl_ms())
            .await?
        {
            tracing::info!(node = %self.me.node, epoch = lease.epoch, "this node projects the read models for the cluster");
            let projecting = Projection::projecting(&self.store, &self.updates, lease.epoch);
            std::mem::replace(&mut self.projection, projecting)
                .stop()
                .await;
        }
        Ok(())
    }

    /// Forgets the workers that have stopped, releasing the leases of those handed over.
    async fn reap(&mut self) {
        let (done, going): (BTreeMap<_, _>, BTreeMap<_, _>) = std::mem::take(&mut self.stopping)
            .into_iter()
            .partition(|(_, s)| s.done());
        self.stopping = going;
        for (symbol, stopped) in done {
            self.options.readiness.stopped(&symbol);
            if stopped.release {
                if let Err(e) = self.store.release(symbol.as_str(), &self.me.node).await {
                    tracing::warn!(%symbol, error = %e, "could not release the lease of {symbol}; it expires on its own");
                }
            }
        }
    }

    /// Starts `symbol`'s worker under `lease` (taken by a request sent at `asked`), if it
    /// has a trading stream.
    async fn start(
        &self,
        symbol: &Symbol,
        lease: &Lease,
        asked: Instant,
    ) -> Result<Owned, StoreError> {
        let (stop, stopped) = watch::channel(false);
        let clock = LeaseClock::new(asked, self.options.cluster.ttl);
        let fence = Fence {
            resource: lease.resource.clone(),
            node: lease.node.clone(),
            epoch: lease.epoch,
        };
        let traded = self
            .store
            .stream_version(&StreamId::trading(symbol))
            .await?
            > 0;
        let worker = traded
            .then(|| {
                start_trader(
                    &self.store,
                    &self.options,
                    symbol,
                    (fence, clock.clone()),
                    stopped,
                )
            })
            .flatten();
        Ok(Owned {
            epoch: lease.epoch,
            clock,
            stop,
            worker,
        })
    }

    /// Tells the streamer what this node owns now.
    fn publish(&self) {
        let owned: BTreeSet<Symbol> = self.owned.keys().cloned().collect();
        self.owned_tx.send_if_modified(|current| {
            let changed = *current != owned;
            *current = owned;
            changed
        });
    }

    /// A clean stop: every worker stopped, then every lease released and the node's row
    /// removed, so the other nodes take its symbols at their next heartbeat.
    async fn leave(mut self) {
        for (symbol, owned) in std::mem::take(&mut self.owned) {
            self.stopping.insert(symbol, owned.stopping(false));
        }
        for (_, stopping) in std::mem::take(&mut self.stopping) {
            stopping.ended().await;
        }
        self.projection.stop().await;
        match self.store.leave(&self.me.node).await {
            Ok(()) => {
                tracing::info!(node = %self.me.node, "left the cluster; every lease released")
            }
            Err(e) => {
                tracing::warn!(node = %self.me.node, error = %e, "could not release this node's leases; they expire on their own")
            }
        }
    }
}

/// Claims `options.node`'s name (see [`Ownership::join`]).
async fn claim_name(store: &Store, options: &ClusterOptions) -> Result<NodeInfo, StoreError> {
    let wanted = options.node.clone();
    let ttl = options.ttl_ms();
    let cluster = store.cluster().await?;
    let previous = cluster.nodes.iter().find(|n| n.node == wanted.node);
    let dead = previous
        .filter(|n| {
            n.host == wanted.host && n.pid != i64::from(wanted.pid) && !process_alive(n.pid)
        })
        .map(|n| n.pid);
    if store.join(&wanted, ttl, dead).await? {
        return Ok(wanted);
    }
    let alternative = NodeInfo {
        node: format!("{}-{}", wanted.node, wanted.pid),
        ..wanted.clone()
    };
    tracing::info!(
        name = %wanted.node,
        holder_pid = ?previous.map(|n| n.pid),
        "the node name {} is held by a live process; joining as {}",
        wanted.node,
        alternative.node
    );
    if store.join(&alternative, ttl, None).await? {
        Ok(alternative)
    } else {
        Err(StoreError::Corrupt {
            position: 0,
            column: "nodes.node",
            value: alternative.node,
        })
    }
}

/// Whether a process of this host is still running (a zombie is not). Elsewhere than Linux,
/// every process is taken to be running: a restarted node then waits for its old leases to
/// expire.
fn process_alive(pid: i64) -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X')),
    }
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

/// Resolves once `stop` turns true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
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
    (fence, clock): (Fence, LeaseClock),
    stop: watch::Receiver<bool>,
) -> Option<JoinHandle<()>> {
    let Some(rules) = options.rules.get(symbol) else {
        tracing::error!(%symbol, "not trading {symbol}: the exchange info does not list it");
        return None;
    };
    let aggregate = TradingAggregate {
        rules: rules.clone(),
        strategies: options.strategies.clone(),
        // Live, the exchange fills the orders: trades only drive the strategy.
        paper: options.live.is_none().then_some(options.paper.clone()),
    };
    // Every decision it appends carries the lease's fence.
    let store = store.acting_for(fence.metadata());
    let venue = options.live.as_ref().map(|l| l.venue.clone());
    let readiness = options.readiness.clone();
    let snapshot_every = options.snapshot_every;
    let probe = options.probe.clone();
    let task = supervise(format!("trader {symbol}"), stop, move |stop| {
        let (store, aggregate, venue) = (store.clone(), aggregate.clone(), venue.clone());
        let (readiness, probe, clock) = (readiness.clone(), probe.clone(), clock.clone());
        readiness.starting(&aggregate.rules.symbol);
        async move {
            let began = Instant::now();
            let symbol = aggregate.rules.symbol.clone();
            let trader = Trader::load(store, aggregate)
                .await?
                .reporting_to(readiness, began)
                .snapshot_every(snapshot_every)
                .probed_by(probe)
                .under_lease(clock);
            let ran = match venue {
                Some(venue) => trader.on_venue(venue).run(stop).await,
                None => trader.run(stop).await,
            };
            match ran {
                Err(TraderError::Store(e)) if e.is_stale_lease() => {
                    // Not restarted: the node finds the lease lost at its next heartbeat.
                    tracing::warn!(%symbol, error = %e, "the lease of {symbol} is no longer this node's; its worker stops");
                    Ok(())
                }
                ran => ran,
            }
        }
    });
    Some(task)
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
