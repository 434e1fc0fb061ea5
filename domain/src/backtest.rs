//! A backtest's pure core: one symbol's trading decisions over a sequence of trades, and the
//! tally its report is made of.
//!
//! A [`Backtest`] is the live trading aggregate with nothing around it: the same
//! [`trading::decide_trade`] and paper exchange as `hedgehog run`, fed trade by trade, its state
//! kept by [`trading::apply_in_place`]. The shell decides where trades come from (files, the
//! store) and where decisions go (nowhere, or a kept run's stream); this module only folds.
//!
//! Identity: the run hashes every decided event's on-disk encoding (the *fingerprint*) and every
//! trade it was fed (the trades' identity, independent of the files they came in), so two runs
//! over the same trades with the same settings are told equal at a glance, byte for byte.
//!
//! Memory is flat in the number of trades: the state holds open positions only, the equity curve
//! is a fixed number of samples (halved in resolution when full), and finished orders are handed
//! out through [`Backtest::take_finished`] for the shell to keep or drop.

use std::collections::BTreeMap;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::events::{Event, TradeReceived};
use crate::exchange::SymbolRules;
use crate::paper_exchange::PaperExchange;
use crate::settings::TradingSettings;
use crate::strategy::{SharedStrategy, Strategies};
use crate::trading::{self, Command, Refusal, TradingState};
use crate::types::{FillStatus, Side, Timestamp};

/// How many samples the equity curve keeps at most.
pub const CURVE_POINTS: usize = 1000;

/// One symbol's strategy run over trades, with the tally of what it did.
pub struct Backtest {
    strategy: SharedStrategy,
    rules: SymbolRules,
    paper: PaperExchange,
    state: TradingState,
    tally: Tally,
    decisions: Sha256,
    decided: u64,
    trades: Sha256,
    last: Vec<Event>,
}

impl Backtest {
    /// Starts a run with `settings`: its first decisions are the settings and trading on, as a
    /// user's `settings set` and `trading start` give them live on a fresh symbol. The
    /// settings' strategy is looked up in `strategies`.
    pub fn start(
        strategies: &Strategies,
        rules: SymbolRules,
        paper: PaperExchange,
        settings: TradingSettings,
    ) -> Result<Backtest, Refusal> {
        let budget = settings.budget;
        let strategy = Arc::clone(strategies.get(&settings.strategy)?);
        let mut run = Backtest {
            strategy,
            rules,
            paper,
            state: TradingState::default(),
            tally: Tally::new(budget),
            decisions: Sha256::new(),
            decided: 0,
            trades: Sha256::new(),
            last: Vec::new(),
        };
        let mut first = Vec::new();
        for command in [
            Command::UpdateSettings(settings),
            Command::Start {
                after_trade_id: None,
            },
        ] {
            // Commands carry the time they were issued; these two decide no timed event.
            let events = trading::decide_command(
                &run.state,
                &run.rules,
                strategies,
                command,
                Timestamp::default(),
            )?;
            for event in &events {
                if let Err(e) = trading::apply_in_place(&mut run.state, event) {
                    // `decide_command` decides only what its own state takes.
                    panic!("a backtest decided an event its own state refuses: {e} ({event:?})");
                }
            }
            run.note(&events);
            first.extend(events);
        }
        run.last = first;
        Ok(run)
    }

    /// Feeds one trade: returns what it decided (often nothing).
    pub fn trade(&mut self, trade: &TradeReceived) -> &[Event] {
        self.hash_trade(trade);
        let events = trading::decide_trade_in_place(
            &*self.strategy,
            &mut self.state,
            &self.rules,
            Some(&self.paper),
            trade,
        );
        self.note(&events);
        if trade.symbol == self.rules.symbol && trade.kind.is_market() {
            self.tally.market(trade, &events);
        }
        self.last = events;
        &self.last
    }

    /// The price of the asset commissions are charged in, as of the next trade (when the run
    /// charges them in another asset whose price follows the market).
    pub fn set_fee_asset_price(&mut self, price: Decimal) {
        if let Some(asset) = self.paper.fee_asset.as_mut() {
            asset.price = Some(price);
        }
    }

    /// What the last call decided (after [`Backtest::start`]: the settings and the start).
    pub fn decided(&self) -> &[Event] {
        &self.last
    }

    pub fn state(&self) -> &TradingState {
        &self.state
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Orders that have finished (filled or cancelled) since the last call, in the order they
    /// finished.
    pub fn take_finished(&mut self) -> Vec<OrderRecord> {
        std::mem::take(&mut self.tally.finished)
    }

    /// Ends the run: the summary, the curve, the orders still open, the fingerprints.
    pub fn finish(self) -> Finished {
        let Backtest {
            tally,
            decisions,
            decided,
            trades,
            ..
        } = self;
        let summary = tally.summary();
        Finished {
            summary,
            curve: tally.curve.points.into_iter().map(|(_, s)| s).collect(),
            open_orders: tally.open.into_values().collect(),
            fingerprint: hex(decisions.finalize().as_slice()),
            decisions: decided,
            trades_sha256: hex(trades.finalize().as_slice()),
        }
    }

    /// Takes decided events (already in the state) into the fingerprint and the tally.
    fn note(&mut self, events: &[Event]) {
        for event in events {
            // The on-disk encoding: what a kept run stores, so what the fingerprint vouches for.
            let encoded = event.encode().unwrap_or_default();
            self.decisions.update(encoded.as_bytes());
            self.decisions.update(b"\n");
            self.decided += 1;
            self.tally.event(event);
        }
    }

    /// The trade's identity: every field the decisions can depend on, in a fixed layout.
    fn hash_trade(&mut self, t: &TradeReceived) {
        let h = &mut self.trades;
        h.update(t.symbol.as_str().as_bytes());
        h.update([0, u8::from(t.buyer_is_maker), u8::from(t.kind.is_market())]);
        h.update(t.trade_id.to_le_bytes());
        h.update(t.price.serialize());
        h.update(t.quantity.serialize());
        h.update(t.trade_time.0.to_le_bytes());
    }
}

/// What a run adds up to once its trades have run out.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub summary: Summary,
    pub curve: Vec<Sample>,
    pub open_orders: Vec<OrderRecord>,
    /// SHA-256 of the decided events, each as stored (its JSON encoding) and a newline.
    pub fingerprint: String,
    /// How many events the run decided.
    pub decisions: u64,
    /// SHA-256 of the trades fed, field by field: equal for the same trades however they were
    /// split into files or stored.
    pub trades_sha256: String,
}

/// Where an order ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
}

/// One order of the run, with its fills.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order_id: u64,
    pub position_id: u64,
    pub side: Side,
    pub price: Decimal,
    pub quantity: Decimal,
    pub status: OrderStatus,
    pub placed_at: Timestamp,
    pub executed: Decimal,
    pub fees: Decimal,
    pub fills: Vec<FillRecord>,
}

/// One fill of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    /// The market trade that filled it.
    pub trade_id: Option<u64>,
    pub time: Timestamp,
    pub price: Decimal,
    pub quantity: Decimal,
    pub fee: Decimal,
}

/// One point of the equity curve: the last trade of its time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub time: Timestamp,
    pub price: Decimal,
    pub equity: Decimal,
}

/// The running account of a backtest, folded from its trades and decisions.
#[derive(Debug, Clone)]
pub struct Tally {
    budget: Decimal,
    trades: u64,
    first: Option<(u64, Timestamp)>,
    last: Option<(u64, Timestamp)>,
    last_price: Option<Decimal>,
    placed: u64,
    filled: u64,
    cancelled: u64,
    rejected: u64,
    positions_opened: u64,
    positions_closed: u64,
    realized_profit: Decimal,
    fees: Decimal,
    wins: u64,
    best: Option<Decimal>,
    worst: Option<Decimal>,
    /// Quote asset: the budget, less what buys cost, plus what sells brought, less fees.
    cash: Decimal,
    /// Base asset bought and not sold.
    inventory: Decimal,
    peak: Decimal,
    max_drawdown: Decimal,
    max_drawdown_ratio: Decimal,
    curve: Curve,
    open: BTreeMap<u64, OrderRecord>,
    finished: Vec<OrderRecord>,
}

impl Tally {
    fn new(budget: Decimal) -> Tally {
        Tally {
            budget,
            trades: 0,
            first: None,
            last: None,
            last_price: None,
            placed: 0,
            filled: 0,
            cancelled: 0,
            rejected: 0,
            positions_opened: 0,
            positions_closed: 0,
            realized_profit: Decimal::ZERO,
            fees: Decimal::ZERO,
            wins: 0,
            best: None,
            worst: None,
            cash: budget,
            inventory: Decimal::ZERO,
            peak: budget,
            max_drawdown: Decimal::ZERO,
            max_drawdown_ratio: Decimal::ZERO,
            curve: Curve::new(CURVE_POINTS),
            open: BTreeMap::new(),
            finished: Vec::new(),
        }
    }

    /// Equity now: cash plus inventory at the last price.
    pub fn equity(&self) -> Decimal {
        self.cash + self.inventory * self.last_price.unwrap_or_default()
    }

    fn market(&mut self, trade: &TradeReceived, decided: &[Event]) {
        self.trades += 1;
        let key = (trade.trade_id, trade.trade_time);
        self.first.get_or_insert(key);
        self.last = Some(key);
        self.last_price = Some(trade.price);
        // Equity moves with the price only while something is held, or when a fill moved cash.
        if !self.inventory.is_zero() || !decided.is_empty() || self.curve.points.is_empty() {
            let equity = self.equity();
            if equity > self.peak {
                self.peak = equity;
            }
            let drawdown = self.peak - equity;
            if drawdown > self.max_drawdown {
                self.max_drawdown = drawdown;
                if !self.peak.is_zero() {
                    self.max_drawdown_ratio = drawdown / self.peak;
                }
            }
            self.curve.record(trade.trade_time, trade.price, equity);
        } else {
            self.curve.touch(trade.trade_time, trade.price);
        }
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::PositionOpened(_) => self.positions_opened += 1,
            Event::OrderPlaced(o) => {
                self.placed += 1;
                self.open.insert(
                    o.order_id,
                    OrderRecord {
                        order_id: o.order_id,
                        position_id: o.position_id,
                        side: o.side,
                        price: o.price,
                        quantity: o.quantity,
                        status: OrderStatus::New,
                        placed_at: o.time,
                        executed: Decimal::ZERO,
                        fees: Decimal::ZERO,
                        fills: Vec::new(),
                    },
                );
            }
            Event::OrderFilled(f) => {
                let quote = f.price * f.quantity;
                match f.side {
                    Side::Buy => {
                        self.cash -= quote + f.fee;
                        self.inventory += f.quantity;
                    }
                    Side::Sell => {
                        self.cash += quote - f.fee;
                        self.inventory -= f.quantity;
                    }
                }
                self.fees += f.fee;
                if let Some(order) = self.open.get_mut(&f.order_id) {
                    order.executed = f.cumulative_quantity;
                    order.fees += f.fee;
                    order.fills.push(FillRecord {
                        trade_id: f.trade_id,
                        time: f.time,
                        price: f.price,
                        quantity: f.quantity,
                        fee: f.fee,
                    });
                    order.status = OrderStatus::PartiallyFilled;
                    if f.status == FillStatus::Filled {
                        self.filled += 1;
                        self.finish_order(f.order_id, OrderStatus::Filled);
                    }
                }
            }
            Event::OrderCancelled(c) => {
                self.cancelled += 1;
                self.finish_order(c.order_id, OrderStatus::Canceled);
            }
            Event::OrderRejected(_) => self.rejected += 1,
            Event::PositionClosed(p) => {
                self.positions_closed += 1;
                self.realized_profit += p.realized_profit;
                if p.realized_profit > Decimal::ZERO {
                    self.wins += 1;
                }
                self.best = Some(
                    self.best
                        .map_or(p.realized_profit, |b| b.max(p.realized_profit)),
                );
                self.worst = Some(
                    self.worst
                        .map_or(p.realized_profit, |w| w.min(p.realized_profit)),
                );
            }
            _ => {}
        }
    }

    fn finish_order(&mut self, order_id: u64, status: OrderStatus) {
        if let Some(mut order) = self.open.remove(&order_id) {
            order.status = status;
            self.finished.push(order);
        }
    }

    /// The figures of the report, as of now.
    pub fn summary(&self) -> Summary {
        let ratio =
            |x: Decimal, of: Decimal| (!of.is_zero()).then(|| (x / of).round_dp(8).normalize());
        let closed = Decimal::from(self.positions_closed);
        let equity = self.equity();
        let value = self.inventory * self.last_price.unwrap_or_default();
        Summary {
            trades: self.trades,
            first_trade_id: self.first.map(|f| f.0),
            last_trade_id: self.last.map(|l| l.0),
            first_trade_time: self.first.map(|f| f.1),
            last_trade_time: self.last.map(|l| l.1),
            last_price: self.last_price,
            budget: self.budget,
            orders_placed: self.placed,
            orders_filled: self.filled,
            orders_cancelled: self.cancelled,
            orders_rejected: self.rejected,
            orders_open: self.open.len() as u64,
            orders_partially_filled: self
                .open
                .values()
                .filter(|o| o.status == OrderStatus::PartiallyFilled)
                .count() as u64,
            positions_opened: self.positions_opened,
            positions_closed: self.positions_closed,
            positions_open: self.positions_opened - self.positions_closed,
            realized_profit: self.realized_profit.normalize(),
            fees: self.fees.normalize(),
            inventory: self.inventory.normalize(),
            inventory_value: value.normalize(),
            open_profit: (equity - self.budget - self.realized_profit).normalize(),
            equity: equity.normalize(),
            return_on_budget: ratio(equity - self.budget, self.budget),
            wins: self.wins,
            win_rate: ratio(Decimal::from(self.wins), closed),
            average_outcome: ratio(self.realized_profit, closed),
            best_outcome: self.best.map(|d| d.normalize()),
            worst_outcome: self.worst.map(|d| d.normalize()),
            max_drawdown: self.max_drawdown.normalize(),
            max_drawdown_ratio: self.max_drawdown_ratio.round_dp(8).normalize(),
        }
    }
}

/// The figures of a backtest report. Money is in the quote asset; ratios are fractions
/// (0.01 = 1 %).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub trades: u64,
    pub first_trade_id: Option<u64>,
    pub last_trade_id: Option<u64>,
    pub first_trade_time: Option<Timestamp>,
    pub last_trade_time: Option<Timestamp>,
    pub last_price: Option<Decimal>,
    pub budget: Decimal,
    pub orders_placed: u64,
    pub orders_filled: u64,
    pub orders_cancelled: u64,
    pub orders_rejected: u64,
    pub orders_open: u64,
    /// Open orders with some fills.
    pub orders_partially_filled: u64,
    pub positions_opened: u64,
    pub positions_closed: u64,
    pub positions_open: u64,
    /// Sum over closed positions: sell proceeds less buy cost less both sides' fees.
    pub realized_profit: Decimal,
    /// Every fee paid, closed positions' and open ones'.
    pub fees: Decimal,
    /// Base asset bought and not sold.
    pub inventory: Decimal,
    /// The inventory at the last price.
    pub inventory_value: Decimal,
    /// What the open positions are worth over what they cost (fees included), at the last price.
    pub open_profit: Decimal,
    /// Cash plus inventory value.
    pub equity: Decimal,
    pub return_on_budget: Option<Decimal>,
    /// Closed positions with a positive profit.
    pub wins: u64,
    pub win_rate: Option<Decimal>,
    pub average_outcome: Option<Decimal>,
    pub best_outcome: Option<Decimal>,
    pub worst_outcome: Option<Decimal>,
    /// The deepest fall of equity from a previous peak, exact (from every trade, not the
    /// sampled curve).
    pub max_drawdown: Decimal,
    pub max_drawdown_ratio: Decimal,
}

/// The equity curve, at most `max` samples: each the last trade of a time bucket. When full,
/// buckets double in width and neighbours merge, so any run fits and the samples stay evenly
/// spread in time.
#[derive(Debug, Clone)]
struct Curve {
    max: usize,
    origin: Option<i64>,
    width: i64,
    points: Vec<(i64, Sample)>,
}

impl Curve {
    fn new(max: usize) -> Curve {
        Curve {
            max: max.max(2),
            origin: None,
            width: 60_000,
            points: Vec::new(),
        }
    }

    fn bucket(&mut self, time: Timestamp) -> i64 {
        let origin = *self.origin.get_or_insert(time.0);
        let bucket = (time.0 - origin).max(0) / self.width;
        // Trades a little out of time order stay in the current bucket.
        self.points.last().map_or(bucket, |(b, _)| bucket.max(*b))
    }

    fn record(&mut self, time: Timestamp, price: Decimal, equity: Decimal) {
        let bucket = self.bucket(time);
        // Samples never go back in time, even when a trade prints a little late.
        let time = self.points.last().map_or(time, |(_, s)| time.max(s.time));
        let sample = Sample {
            time,
            price,
            equity,
        };
        match self.points.last_mut() {
            Some((b, last)) if *b == bucket => *last = sample,
            _ => self.points.push((bucket, sample)),
        }
        if self.points.len() > self.max {
            self.width *= 2;
            let mut merged: Vec<(i64, Sample)> = Vec::with_capacity(self.max);
            for (b, s) in self.points.drain(..) {
                let b = b / 2;
                match merged.last_mut() {
                    Some((mb, ms)) if *mb == b => *ms = s,
                    _ => merged.push((b, s)),
                }
            }
            self.points = merged;
        }
    }

    /// A trade that changed no equity: only the price of the bucket's sample moves.
    fn touch(&mut self, time: Timestamp, price: Decimal) {
        let bucket = self.bucket(time);
        match self.points.last_mut() {
            Some((b, last)) if *b == bucket => {
                last.time = time.max(last.time);
                last.price = price;
            }
            Some((_, last)) => {
                let equity = last.equity;
                self.record(time, price, equity);
            }
            None => {}
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Symbol;
    use rust_decimal_macros::dec;

    fn rules() -> SymbolRules {
        SymbolRules {
            symbol: Symbol::parse("XRPUSDT").unwrap(),
            status: "TRADING".into(),
            base_asset: "XRP".into(),
            quote_asset: "USDT".into(),
            tick_size: dec!(0.0001),
            min_price: dec!(0.0001),
            max_price: dec!(10000),
            step_size: dec!(0.1),
            min_qty: dec!(0.1),
            max_qty: dec!(9222449),
            min_notional: dec!(5),
            max_notional: None,
        }
    }

    fn trade(id: u64, price: Decimal) -> TradeReceived {
        crate::testkit::trade("XRPUSDT", id)
            .price(price)
            .quantity(dec!(1000))
            .at(1_560_000_000_000 + id as i64 * 1000)
            .build()
    }

    fn settings() -> TradingSettings {
        TradingSettings {
            chunks: 1,
            budget: dec!(100),
            buy_down_interval: dec!(0.01),
            profit_target: dec!(0.01),
            rebuy_interval: dec!(0.5),
            fee: dec!(0.001),
            ..Default::default()
        }
    }

    #[test]
    fn a_round_trip_is_tallied_in_cash_and_profit() {
        let mut run = Backtest::start(
            &Strategies::default(),
            rules(),
            PaperExchange::default(),
            settings(),
        )
        .unwrap();
        assert_eq!(run.decided().len(), 2, "settings, then start");
        // The fresh position, its BUY at 0.5 x 0.99 = 0.495, 202 XRP (100 / 0.495 = 202.02).
        assert_eq!(run.trade(&trade(1, dec!(0.5))).len(), 2);
        // Through the buy: filled; the SELL comes on the next trade.
        assert_eq!(run.trade(&trade(2, dec!(0.49))).len(), 1);
        let t = run.tally().summary();
        assert_eq!(t.inventory, dec!(202));
        // Bought 202 × 0.495 = 99.99 + fee 0.09999; valued at 0.49.
        assert_eq!(
            t.equity,
            dec!(100) - dec!(99.99) - dec!(0.09999) + dec!(202) * dec!(0.49)
        );
        assert_eq!(t.max_drawdown, dec!(100) - t.equity);
        // SELL at 0.495 × 1.001 × 1.01 × 1.001 → 0.5009.
        assert_eq!(run.trade(&trade(3, dec!(0.49))).len(), 1);
        assert_eq!(run.trade(&trade(4, dec!(0.51))).len(), 1, "sell filled");
        assert_eq!(
            run.trade(&trade(5, dec!(0.51))).len(),
            2,
            "closed, and a fresh position in its place"
        );
        let finished = run.take_finished();
        assert_eq!(finished.len(), 2);
        assert!(finished.iter().all(|o| o.status == OrderStatus::Filled));
        let done = run.finish();
        let s = &done.summary;
        let profit = dec!(202) * dec!(0.5009) - dec!(99.99) - dec!(0.09999) - dec!(0.1011818);
        assert_eq!(s.realized_profit, profit.normalize());
        assert_eq!(s.equity, (dec!(100) + profit).normalize());
        assert_eq!((s.positions_closed, s.wins, s.orders_filled), (1, 1, 2));
        assert_eq!(s.win_rate, Some(dec!(1)));
        assert_eq!(s.inventory, dec!(0));
        assert_eq!(done.decisions, 9);
        assert_eq!(done.fingerprint.len(), 64);
    }

    #[test]
    fn the_same_trades_give_the_same_fingerprints() {
        let prices = [dec!(0.5), dec!(0.49), dec!(0.51), dec!(0.52), dec!(0.45)];
        let go = |prices: &[Decimal]| {
            let mut run = Backtest::start(
                &Strategies::default(),
                rules(),
                PaperExchange::default(),
                settings(),
            )
            .unwrap();
            for (i, p) in prices.iter().enumerate() {
                run.trade(&trade(i as u64 + 1, *p));
            }
            run.finish()
        };
        let (a, b) = (go(&prices), go(&prices));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.trades_sha256, b.trades_sha256);
        let c = go(&prices[..4]);
        assert_ne!(a.trades_sha256, c.trades_sha256);
    }

    #[test]
    fn the_curve_stays_within_its_size_and_spans_the_run() {
        let mut curve = Curve::new(10);
        for i in 0..10_000i64 {
            curve.record(Timestamp(i * 1000), Decimal::from(i), Decimal::from(i));
        }
        assert!(curve.points.len() <= 10);
        assert!(curve.points.len() >= 5);
        let last = &curve.points.last().unwrap().1;
        assert_eq!(
            last.time,
            Timestamp(9_999_000),
            "the last sample is the last trade"
        );
        let times: Vec<i64> = curve.points.iter().map(|(_, s)| s.time.0).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]));
    }
}
