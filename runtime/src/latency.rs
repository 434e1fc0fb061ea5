//! Latency probes: the time from a trade frame received to the decision it caused being
//! durable, measured inside one process (`hedgehog-bench latency`).
//!
//! The streamer stamps each trade as its frame is taken ([`Probe::received`]); the symbol's
//! worker, once an append holding an `OrderPlaced` caused by that trade is acknowledged (so on
//! disk), records the time since ([`Probe::decided`]). Off unless a probe is given: the engine
//! pays nothing for it otherwise.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hedgehog_domain::Symbol;

/// Stamps kept per symbol: a worker further behind than this many trades records nothing for
/// the older ones (and the report says how many it missed).
const KEPT: usize = 200_000;

#[derive(Clone, Debug, Default)]
pub struct Probe(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    /// Per symbol, (trade id, when its frame was taken), in the order taken.
    received: HashMap<Symbol, VecDeque<(u64, Instant)>>,
    samples: Vec<Duration>,
    /// Decisions whose trade's stamp was no longer (or never) kept.
    unmatched: u64,
}

/// What a probe measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latencies {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub unmatched: u64,
}

impl Probe {
    pub fn new() -> Self {
        Probe::default()
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The frame of `symbol`'s trade `trade_id` was taken at `at`.
    pub fn received(&self, symbol: &Symbol, trade_id: u64, at: Instant) {
        let mut inner = self.inner();
        let kept = inner.received.entry(symbol.clone()).or_default();
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((trade_id, at));
    }

    /// A decision caused by `symbol`'s trade `trade_id` is durable now.
    pub fn decided(&self, symbol: &Symbol, trade_id: u64) {
        let now = Instant::now();
        let mut inner = self.inner();
        let at = inner.received.get(symbol).and_then(|kept| {
            // Trade ids rise along a stream, and the stamps are kept in the order taken.
            let i = kept.partition_point(|(id, _)| *id < trade_id);
            kept.get(i)
                .filter(|(id, _)| *id == trade_id)
                .map(|(_, at)| *at)
        });
        match at {
            Some(at) => inner.samples.push(now.saturating_duration_since(at)),
            None => inner.unmatched += 1,
        }
    }

    /// The percentiles of what was measured so far (`None`: nothing yet).
    pub fn latencies(&self) -> Option<Latencies> {
        let inner = self.inner();
        let mut samples = inner.samples.clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Some(Latencies {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
            unmatched: inner.unmatched,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_timed_from_its_trades_frame() {
        let probe = Probe::new();
        let ada = Symbol::parse("ADAUSDT").unwrap();
        let start = Instant::now();
        for id in 1..=100 {
            probe.received(&ada, id, start);
        }
        std::thread::sleep(Duration::from_millis(5));
        probe.decided(&ada, 40);
        probe.decided(&ada, 1_000);
        let measured = probe.latencies().unwrap();
        assert_eq!((measured.count, measured.unmatched), (1, 1));
        assert!(measured.p50 >= Duration::from_millis(5), "{measured:?}");
        assert_eq!(measured.p50, measured.max);
    }
}
