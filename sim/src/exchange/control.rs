//! Fault injection: what a client's error handling must meet, on demand. A test (or a demo)
//! holding the exchange's [`Control`] scripts the next answers of an endpoint (a 429, a 418, an
//! error, an answer lost after the request took effect, a request that never lands), reads back
//! every request the exchange received, executes an order without reporting it (a report the
//! user data stream has not delivered yet), and feeds market trades to the market data without
//! playing them. With `clock_skew_ms` in the options the exchange's clock runs ahead of the
//! machine's, as a venue's may.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use hedgehog_domain::events::TradeReceived;
use rust_decimal::Decimal;
use serde_json::Value;

use super::{Exchange, Venue};

/// What the next request to an endpoint gets instead of its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 429 (`-1003`) with `Retry-After` (seconds); nothing happens.
    TooMany(u64),
    /// HTTP 418, an IP ban, with `Retry-After` (seconds); nothing happens.
    Teapot(u64),
    /// A Binance error body (HTTP status, code, message); nothing happens.
    Error(u16, i64, String),
    /// The request takes effect, but its answer comes only after this long (too late for a
    /// client with a shorter timeout).
    LoseAnswer(Duration),
    /// The request never lands: after this long, a 503 and nothing happened.
    Hang(Duration),
}

/// One request as the exchange received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Its parameters (query string, or form body), the signature included.
    pub params: BTreeMap<String, String>,
    pub api_key: Option<String>,
    /// The exchange's clock when it arrived (ms).
    pub at: i64,
}

/// The scripted faults and the requests seen.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// Whether anyone holds a [`Control`]: only then are requests kept (`exchange serve` runs
    /// for months and keeps none).
    pub(super) watched: bool,
    script: HashMap<(String, String), VecDeque<Fault>>,
    seen: Vec<Seen>,
}

impl Faults {
    /// Records a request (`seen` makes it, only when watched); the fault scripted for it, if
    /// any.
    pub(super) fn arrive(&mut self, seen: impl FnOnce() -> Seen) -> Option<Fault> {
        if !self.watched {
            return None;
        }
        let seen = seen();
        let key = (seen.method.clone(), seen.path.clone());
        self.seen.push(seen);
        self.script.get_mut(&key).and_then(VecDeque::pop_front)
    }
}

/// The hold on a running exchange that its tests and demos have.
#[derive(Clone)]
pub struct Control(pub(super) Arc<Exchange>);

impl Control {
    /// The next request to `method path` gets `fault` (each scripted fault is used once, in
    /// order).
    pub fn script(&self, method: &str, path: &str, fault: Fault) {
        self.0
            .faults()
            .script
            .entry((method.to_owned(), path.to_owned()))
            .or_default()
            .push_back(fault);
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.0.faults().seen.clone()
    }

    /// Every order of the account, as `allOrders` gives them, oldest first.
    pub fn orders(&self) -> Vec<Value> {
        self.0.venue().account.every_order()
    }

    /// The open order `client_order_id` executes `quantity` for `quote` in all, its funds
    /// moving, with no execution report sent. False if no open order has that id.
    pub fn execute_unreported(
        &self,
        client_order_id: &str,
        quantity: Decimal,
        quote: Decimal,
    ) -> bool {
        let mut venue = self.0.venue();
        let Venue { rules, account, .. } = &mut *venue;
        account.execute_unreported(rules, client_order_id, quantity, quote, self.0.now())
    }

    /// Market trades known to the market data (`trades`, `historicalTrades`, `klines`, ...)
    /// without being played: no fills, nothing on the trade stream.
    pub fn record(&self, trades: &[TradeReceived]) {
        let mut sorted: Vec<&TradeReceived> = trades.iter().collect();
        sorted.sort_by_key(|t| (t.trade_time, t.trade_id));
        let mut venue = self.0.venue();
        for trade in sorted {
            venue.market.record(trade);
        }
    }
}
