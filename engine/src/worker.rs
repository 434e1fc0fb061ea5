//! The trading worker of one symbol: feeds the symbol's trades to its trading aggregate and
//! appends what it decides.
//!
//! It follows the store, not in-memory flags: it subscribes to two streams, in the log's order,
//! the symbol's market trades (`trades-SYMBOL`) and its trading stream (`trading-SYMBOL`), whose
//! events (a `trading stop` from another process, say) it applies as they commit. It reads
//! nothing of other symbols: its cost is its symbol's, however many others the log holds.
//!
//! Invariants:
//! - Its state is always the fold of `trading-SYMBOL` up to `version` followed by the trades
//!   after it that decided nothing ([`trading::pass_trade`]), and every append names that version, so a command racing with a decision makes one of them retry, never both win.
//!   On a conflict it reads what it missed and decides the same trade again.
//! - A trade is decided once: every event it causes carries its id (see the domain's trading
//!   module), so after a crash or restart the worker resumes at the first trade above the
//!   highest id recorded, and a re-delivered trade decides nothing.
//! - Decided events get ids derived from their stream, version and content: a retried append
//!   of the same decision is recognised by the store as the same events.
//! - Live (with a [`Venue`]), it records first and acts after: an order is sent to Binance
//!   once its `OrderPlaced` is stored, and what Binance answers or reports comes back as a
//!   domain `Report` decided like a trade. It reconciles with REST at start, after every
//!   (re)subscription of the user data stream, when it lagged on the feed, and every minute.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::trading::{self, Report, TradingState};
use hedgehog_domain::{Event, Symbol, TradingStatus};
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::aggregate::{AggregateError, TradingAggregate};
use crate::cluster::LeaseClock;
use crate::decision::{DecisionError, Held, Retries};
use crate::readiness::Readiness;
use hedgehog_binance::live::{self, Venue};
use hedgehog_binance::user_stream::Feed;
use hedgehog_runtime::latency::Probe;
use hedgehog_store::{RecordedEvent, Store, StoreError, StreamId};

#[derive(Debug, thiserror::Error)]
pub enum TraderError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("trading of {symbol}: {source}")]
    Aggregate {
        symbol: Symbol,
        #[source]
        source: Box<AggregateError>,
    },
    #[error("{stream} kept changing while deciding ({tries} tries)")]
    Conflict { stream: StreamId, tries: u32 },
}

/// One symbol's trading worker.
pub struct Trader {
    /// The symbol's trading stream, decided on and appended to the one way there is.
    held: Held<TradingAggregate>,
    trades: StreamId,
    venue: Option<Venue>,
    /// Trades taken since the last snapshot was saved.
    since_snapshot: u64,
    /// Trades taken between two snapshots.
    snapshot_every: u64,
    /// Told when the worker has hydrated, with when its loading began.
    readiness: Option<(Readiness, Instant)>,
    /// Told when an order a trade caused is durable.
    probe: Option<Probe>,
    /// The lease this worker trades under, in a cluster: nothing is sent to the venue unless
    /// it has time left ([`LeaseClock::sendable`]).
    lease: Option<LeaseClock>,
}

/// How many trades a worker takes between two snapshots of its state (and at a clean stop):
/// at most this many are read again after a crash.
pub const TRADES_PER_SNAPSHOT: u64 = 10_000;

/// How often a live trader reconciles with REST even when the stream says nothing: the slow
/// safety net under the user data stream.
const RECONCILE_EVERY: Duration = Duration::from_secs(60);

impl Trader {
    /// Loads the symbol's trading state from the store: its snapshot, if one is usable, and
    /// the trading stream's events after it.
    pub async fn load(store: Store, aggregate: TradingAggregate) -> Result<Self, TraderError> {
        let symbol = aggregate.rules.symbol.clone();
        Trader::holding(
            &symbol,
            Held::load(store, StreamId::trading(&symbol), aggregate).await,
        )
    }

    /// Loads the symbol's trading state by folding its whole trading stream, ignoring any
    /// snapshot: what [`Trader::load`] must equal once both have taken the same trades.
    pub async fn load_from_events(
        store: Store,
        aggregate: TradingAggregate,
    ) -> Result<Self, TraderError> {
        let symbol = aggregate.rules.symbol.clone();
        Trader::holding(
            &symbol,
            Held::fold(store, StreamId::trading(&symbol), aggregate).await,
        )
    }

    fn holding(
        symbol: &Symbol,
        held: Result<Held<TradingAggregate>, DecisionError<AggregateError>>,
    ) -> Result<Self, TraderError> {
        Ok(Trader {
            held: held.map_err(|e| decision_error(symbol, e))?,
            trades: StreamId::trades(symbol),
            venue: None,
            since_snapshot: 0,
            snapshot_every: TRADES_PER_SNAPSHOT,
            readiness: None,
            probe: None,
            lease: None,
        })
    }

    /// Saves a snapshot every `trades` trades taken (at least 1) instead of
    /// [`TRADES_PER_SNAPSHOT`].
    pub fn snapshot_every(mut self, trades: u64) -> Self {
        self.snapshot_every = trades.max(1);
        self
    }

    /// Tells `probe` when an order a trade caused is durable (`None`: nothing to tell).
    pub fn probed_by(mut self, probe: Option<Probe>) -> Self {
        self.probe = probe;
        self
    }

    /// Tells `readiness` when it has hydrated (its loading began at `began`).
    pub fn reporting_to(mut self, readiness: Readiness, began: Instant) -> Self {
        self.readiness = Some((readiness, began));
        self
    }

    /// Trades under a lease: orders go to the venue only while `lease` has time left. (Its
    /// decisions carry the lease's fence through the store they were loaded with,
    /// [`hedgehog_store::Store::acting_for`].)
    pub fn under_lease(mut self, lease: LeaseClock) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Trades live: orders go to `venue`, and its reports come back as decisions.
    pub fn on_venue(mut self, venue: Venue) -> Self {
        self.venue = Some(venue);
        self
    }

    pub fn state(&self) -> &TradingState {
        self.held.state()
    }

    pub fn symbol(&self) -> &Symbol {
        &self.held.aggregate().rules.symbol
    }

    /// Trades and commands until `shutdown` turns true (or the log ends).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), TraderError> {
        // Listen to the venue before reconciling, so no report falls in between.
        let mut feed = self.venue.as_ref().map(|v| v.feed.subscribe());
        // Read the market stream's version before the trading stream, so that no trade
        // committed in between is missed.
        let market_version = self.held.store().stream_version(&self.trades).await?;
        self.catch_up().await?;
        self.reconcile().await?;
        let mut reconcile_tick = tokio::time::interval_at(
            tokio::time::Instant::now() + RECONCILE_EVERY,
            RECONCILE_EVERY,
        );
        // Off, it only follows: trades before now are none of its business. On, it resumes at
        // the first stored trade above the last one it stepped on (decided on, or passed before
        // its snapshot was saved).
        let trades_after = if self.state().status == TradingStatus::Off {
            market_version
        } else {
            match self
                .held
                .store()
                .first_trade_after(&self.trades, self.state().last_seen())
                .await?
            {
                Some(place) => (place.version - 1).min(market_version),
                None => market_version,
            }
        };
        if let Some((readiness, began)) = &self.readiness {
            readiness.hydrated(self.symbol(), began.elapsed());
        }
        tracing::info!(symbol = %self.symbol(), status = %self.state().status, trades_after, "trader started");
        let mut log = self.held.store().subscribe_streams(vec![
            (self.trades.clone(), trades_after),
            (self.held.stream().clone(), self.held.version()),
        ]);
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.changed() => None,
                report = next_feed(&mut feed) => {
                    match report {
                        Ok(Feed::Report { symbol, report }) if symbol == *self.symbol() => {
                            self.report(report).await?;
                        }
                        Ok(Feed::Report { .. }) => {}
                        Ok(Feed::Subscribed) => self.reconcile().await?,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(symbol = %self.symbol(), missed, "trader lagged on the user data stream; reconciling");
                            self.reconcile().await?;
                        }
                        Err(broadcast::error::RecvError::Closed) => feed = None,
                    }
                    continue;
                }
                _ = reconcile_tick.tick(), if self.venue.is_some() => {
                    self.reconcile().await?;
                    continue;
                }
                next = log.next() => next,
            };
            if *shutdown.borrow() {
                return self.stopping().await;
            }
            let Some(recorded) = next else {
                return self.stopping().await;
            };
            self.handle(&recorded?).await?;
            if self.since_snapshot >= self.snapshot_every {
                self.save_snapshot().await?;
            }
        }
    }

    /// A clean stop saves the state, so the next start reads nothing again.
    async fn stopping(&mut self) -> Result<(), TraderError> {
        if self.since_snapshot > 0 {
            self.save_snapshot().await?;
        }
        Ok(())
    }

    /// Saves the state held (with the trades passed since the last decision) as the trading
    /// stream's snapshot.
    pub async fn save_snapshot(&mut self) -> Result<(), TraderError> {
        self.held.save_snapshot().await?;
        self.since_snapshot = 0;
        Ok(())
    }

    /// Takes one event of the streams it follows.
    pub async fn handle(&mut self, recorded: &RecordedEvent) -> Result<(), TraderError> {
        if recorded.stream_id == *self.held.stream() {
            let followed = self.held.follow(recorded);
            if followed.map_err(|e| decision_error(self.symbol(), e))? {
                // Recorded by another process (a `trading stop`, say): act on it too.
                self.act(vec![recorded.event.clone()]).await?;
            }
            return Ok(());
        }
        if recorded.stream_id != self.trades {
            return Ok(());
        }
        if let Event::TradeReceived(trade) = &recorded.event {
            self.trade(trade, recorded.event_id).await?;
            self.since_snapshot += 1;
        }
        Ok(())
    }

    /// Decides one trade, appends the decision and acts on it.
    async fn trade(&mut self, trade: &TradeReceived, cause: Uuid) -> Result<(), TraderError> {
        let decided = self
            .commit(
                |aggregate, state| Ok(aggregate.decide_trade(state, trade)?),
                Some(cause),
            )
            .await?;
        tracing::trace!(symbol = %self.symbol(), trade = trade.trade_id, events = decided.len(), "decided");
        if let Some(probe) = &self.probe {
            if decided.iter().any(|e| matches!(e, Event::OrderPlaced(_))) {
                probe.decided(self.symbol(), trade.trade_id);
            }
        }
        if decided.is_empty() {
            // The positions stepped without acting, which still reverses their order.
            let rules = self.held.aggregate().rules.clone();
            trading::pass_trade(self.held.state_mut(), &rules, trade);
        }
        self.act(decided).await
    }

    /// Decides one report of the venue, appends the decision and acts on it.
    async fn report(&mut self, report: Report) -> Result<(), TraderError> {
        let decided = self.decide_report(report).await?;
        self.act(decided).await
    }

    /// Decides one report of the venue (its commission priced) and appends the decision.
    async fn decide_report(&mut self, report: Report) -> Result<Vec<Event>, TraderError> {
        let report = self.priced(report).await;
        self.commit(
            |aggregate, state| Ok(aggregate.decide_report(state, &report)),
            None,
        )
        .await
    }

    /// Live: sends what `events` ask of the venue, and decides what it answers, until nothing
    /// more follows. On paper there is nothing to do.
    async fn act(&mut self, mut events: Vec<Event>) -> Result<(), TraderError> {
        let Some(venue) = self.venue.clone() else {
            return Ok(());
        };
        while !events.is_empty() {
            if self.lease_in_doubt("sending") {
                // Recorded, not sent: whoever holds the lease next reconciles and sends it.
                return Ok(());
            }
            let reports = live::send(&venue.rest, &events).await;
            events.clear();
            for report in reports {
                events.extend(self.decide_report(report).await?);
            }
        }
        Ok(())
    }

    /// Whether this worker trades under a lease too close to its expiry to act on the venue
    /// (its renewal is late: another node may take it), saying it is not `doing` so.
    fn lease_in_doubt(&self, doing: &str) -> bool {
        let doubt = self.lease.as_ref().is_some_and(|l| !l.sendable());
        if doubt {
            tracing::warn!(symbol = %self.symbol(), "not {doing}: the lease of the symbol may be lost (its renewal is late); what is recorded stays for its next holder");
        }
        doubt
    }

    /// Live: a commission charged in a third asset (BNB) is priced in the quote asset at the
    /// time it was charged ([`hedgehog_binance::rest::RestClient::price_at`]), so that fees and
    /// profit count it. Unpriced (the request failed), it is recorded as charged and counted as
    /// nothing, with a warning.
    async fn priced(&self, mut report: Report) -> Report {
        let Some(venue) = &self.venue else {
            return report;
        };
        let rules = &self.held.aggregate().rules;
        let Report::Executed {
            commission: Some(commission),
            commission_price,
            time,
            ..
        } = &mut report
        else {
            return report;
        };
        if commission_price.is_some()
            || commission.asset == rules.base_asset
            || commission.asset == rules.quote_asset
        {
            return report;
        }
        let pair = format!("{}{}", commission.asset, rules.quote_asset);
        let price = match Symbol::parse(&pair) {
            Ok(pair) => venue
                .rest
                .price_at(&pair, time.0)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match price {
            Ok(Some(price)) => *commission_price = Some(price),
            Ok(None) => {
                tracing::warn!(symbol = %self.symbol(), %pair, "no price for the commission's asset; its fee counts as 0")
            }
            Err(error) => {
                tracing::warn!(symbol = %self.symbol(), %pair, %error, "pricing the commission's asset failed; its fee counts as 0")
            }
        }
        report
    }

    /// Live: brings the log and Binance together (see [`live::reconcile`]). A failure is
    /// logged and left to the next reconciliation.
    async fn reconcile(&mut self) -> Result<(), TraderError> {
        let Some(venue) = self.venue.clone() else {
            return Ok(());
        };
        // Decide by the venue's current filters (they are re-read every hour).
        if let Some(rules) = venue.symbol_rules(self.symbol()) {
            if rules != self.held.aggregate().rules {
                tracing::info!(symbol = %self.symbol(), "the exchange's filters for the symbol changed; deciding by the new ones");
                self.held.aggregate_mut().rules = rules;
            }
        }
        if self.lease_in_doubt("reconciling") {
            return Ok(());
        }
        match live::reconcile(&venue.rest, self.symbol(), self.state()).await {
            Ok(reports) => {
                for report in reports {
                    self.report(report).await?;
                }
            }
            Err(e) => {
                tracing::warn!(symbol = %self.symbol(), error = %e, "reconciling with Binance failed; retrying later")
            }
        }
        Ok(())
    }

    /// Decides on the current state and appends what was decided, deciding again on a lost
    /// race ([`Held::decide_and_append`]); returns what was appended (empty: nothing to do).
    async fn commit(
        &mut self,
        decide: impl Fn(&TradingAggregate, &TradingState) -> Result<Vec<Event>, AggregateError>,
        cause: Option<Uuid>,
    ) -> Result<Vec<Event>, TraderError> {
        let decided = self
            .held
            .decide_and_append(decide, cause, Retries::Always)
            .await;
        decided.map_err(|e| decision_error(self.symbol(), e))
    }

    /// Applies whatever the trading stream holds beyond the version held.
    async fn catch_up(&mut self) -> Result<(), TraderError> {
        let caught_up = self.held.catch_up().await;
        caught_up.map_err(|e| decision_error(self.symbol(), e))
    }
}

fn decision_error(symbol: &Symbol, e: DecisionError<AggregateError>) -> TraderError {
    match e {
        DecisionError::Store(e) => TraderError::Store(e),
        DecisionError::Aggregate(source) => TraderError::Aggregate {
            symbol: symbol.clone(),
            source: Box::new(source),
        },
        // The worker retries until it is stored; kept apart all the same.
        DecisionError::Conflict { stream, tries } => TraderError::Conflict { stream, tries },
    }
}

/// The next message of the venue's feed; never, on paper.
async fn next_feed(
    feed: &mut Option<broadcast::Receiver<Feed>>,
) -> Result<Feed, broadcast::error::RecvError> {
    match feed {
        Some(feed) => feed.recv().await,
        None => std::future::pending().await,
    }
}
