//! Whether the engine is ready to trade: every trading worker has hydrated its state (its
//! snapshot and the trading events after it) and knows the trade it resumes at.
//!
//! `/api/health` answers from it and `run` logs the moment it turns ready. Not ready again
//! while a worker restarts after a failure or a symbol traded for the first time hydrates.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hedgehog_domain::Symbol;
use serde::Serialize;

/// Shared between the engine and whoever reports on it; cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness(Arc<Mutex<Inner>>);

#[derive(Debug)]
struct Inner {
    started: Instant,
    /// The workers started, and how long each took to hydrate (`None`: not yet).
    workers: BTreeMap<Symbol, Option<Duration>>,
    /// Every symbol with a trading stream at start-up has a worker.
    planned: bool,
    /// When the engine first became ready, from its start.
    ready_after: Option<Duration>,
}

/// What `/api/health` says of the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub ready: bool,
    pub workers: usize,
    pub hydrated: usize,
    /// From the engine's start to the moment every worker had first hydrated.
    pub ready_after_ms: Option<u64>,
    /// The slowest worker's hydration.
    pub slowest_hydration_ms: Option<u64>,
    /// The workers still hydrating.
    pub waiting: Vec<Symbol>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new()
    }
}

impl Readiness {
    /// An engine starting now.
    pub fn new() -> Self {
        Readiness(Arc::new(Mutex::new(Inner {
            started: Instant::now(),
            workers: BTreeMap::new(),
            planned: false,
            ready_after: None,
        })))
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A worker for `symbol` is (re)starting: not hydrated until it says so.
    pub(crate) fn starting(&self, symbol: &Symbol) {
        self.inner().workers.insert(symbol.clone(), None);
    }

    /// `symbol`'s worker stopped for good here (its symbol handed over to another node).
    pub(crate) fn stopped(&self, symbol: &Symbol) {
        self.inner().workers.remove(symbol);
        self.check();
    }

    /// Every symbol traded at start-up has its worker.
    pub(crate) fn planned(&self) {
        self.inner().planned = true;
        self.check();
    }

    /// `symbol`'s worker hydrated in `took`.
    pub(crate) fn hydrated(&self, symbol: &Symbol, took: Duration) {
        self.inner().workers.insert(symbol.clone(), Some(took));
        self.check();
    }

    fn check(&self) {
        let mut inner = self.inner();
        if inner.ready_after.is_some() || !inner.planned {
            return;
        }
        if inner.workers.values().all(Option::is_some) {
            let after = inner.started.elapsed();
            inner.ready_after = Some(after);
            let slowest = inner.workers.values().flatten().max().copied();
            tracing::info!(
                workers = inner.workers.len(),
                ready_after_ms = after.as_millis() as u64,
                slowest_hydration_ms = slowest.map(|d| d.as_millis() as u64),
                "engine ready: every trading worker hydrated"
            );
        }
    }

    /// Where the engine stands now.
    pub fn report(&self) -> Report {
        let inner = self.inner();
        let waiting: Vec<Symbol> = inner
            .workers
            .iter()
            .filter(|(_, took)| took.is_none())
            .map(|(symbol, _)| symbol.clone())
            .collect();
        let ms = |d: Duration| d.as_millis() as u64;
        Report {
            ready: inner.planned && waiting.is_empty(),
            workers: inner.workers.len(),
            hydrated: inner.workers.len() - waiting.len(),
            ready_after_ms: inner.ready_after.map(ms),
            slowest_hydration_ms: inner.workers.values().flatten().max().copied().map(ms),
            waiting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_every_planned_worker_hydrated_and_not_while_one_restarts() {
        let readiness = Readiness::new();
        let (ada, btc) = (
            Symbol::parse("ADAUSDT").unwrap(),
            Symbol::parse("BTCUSDT").unwrap(),
        );
        assert!(!readiness.report().ready, "nothing planned yet");
        readiness.starting(&ada);
        readiness.starting(&btc);
        readiness.planned();
        readiness.hydrated(&ada, Duration::from_millis(5));
        let report = readiness.report();
        assert!(!report.ready);
        assert_eq!(
            (report.hydrated, report.waiting.clone()),
            (1, vec![btc.clone()])
        );
        readiness.hydrated(&btc, Duration::from_millis(7));
        let report = readiness.report();
        assert!(report.ready);
        assert_eq!(report.slowest_hydration_ms, Some(7));
        let first = report.ready_after_ms;
        assert!(first.is_some());
        readiness.starting(&btc);
        assert!(!readiness.report().ready, "a restarting worker");
        readiness.hydrated(&btc, Duration::from_millis(1));
        let report = readiness.report();
        assert!(report.ready);
        assert_eq!(report.ready_after_ms, first, "the first time it was ready");
    }

    #[test]
    fn an_engine_with_nothing_to_trade_is_ready_at_once() {
        let readiness = Readiness::new();
        readiness.planned();
        assert!(readiness.report().ready);
    }
}
