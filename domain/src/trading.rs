//! The trading aggregate of one symbol: the book's naive strategy, decided from events.
//!
//! The state is a fold ([`apply`]) of the symbol's `trading-SYMBOL` stream. Three kinds of input
//! are decided against it, each giving the events to append (empty: nothing to do):
//! - a user's [`Command`] (start, stop, shutdown, new settings) in [`decide_command`];
//! - a market trade in [`decide_trade`]: the paper exchange's fills first (when trading on
//!   paper), then the strategy: open a position when there is none, rebuy on a fall;
//! - what a live exchange reports about our orders (fills, cancels, rejections, a halt) in
//!   [`decide_report`].
//!
//! Decisions are applied to a working copy as they are made, so each later decision in the same
//! batch sees the earlier ones (a BUY filled by a trade gets its SELL placed by that same trade),
//! and the state a worker holds after appending equals the fold of the stored events.
//!
//! Rules kept here, beyond the book's:
//! - trades are decided once: every event a trade causes carries its id, and trades at or below
//!   the highest recorded id (or below the one trading started after) are ignored;
//! - a stop cancels the symbol's open orders and reports what was bought and not sold;
//! - an order the symbol's filters refuse is `OrderRejected`; a refused fresh BUY also stops
//!   trading (it would be refused again on every trade), a refused rebuy does not.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::events::{
    Commission, Event, OrderCancelled, OrderFilled, OrderPlaced, OrderRejected, PositionClosed,
    PositionOpened, RebuyTriggered, SettingsUpdated, StopReason, TradeReceived,
    TradingShutdownRequested, TradingStarted, TradingStopped, Unsold,
};
use crate::exchange::SymbolRules;
use crate::formula;
use crate::paper_exchange::{client_order_id, Execution, PaperExchange, RestingOrder};
use crate::settings::{InvalidSettings, TradingSettings};
use crate::types::{FillStatus, OrderType, Side, Symbol, TimeInForce, Timestamp, TradingStatus};

/// An order as the aggregate knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: u64,
    pub client_order_id: String,
    pub side: Side,
    pub price: Decimal,
    pub quantity: Decimal,
    pub executed: Decimal,
    pub executed_quote: Decimal,
    /// Fees in the quote asset (see `OrderFilled::fee`).
    pub fees: Decimal,
    /// The part of the fees a live exchange took out of the bought base asset.
    pub base_fees: Decimal,
    /// Still on the book: neither fully filled nor cancelled.
    pub open: bool,
}

impl Order {
    pub fn remaining(&self) -> Decimal {
        self.quantity - self.executed
    }
}

/// One chunk of the budget: a BUY, then a SELL of what was bought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub position_id: u64,
    pub trigger_price: Decimal,
    pub buy_price: Decimal,
    pub quantity: Decimal,
    /// The settings in force when it opened; later changes do not touch it.
    pub settings: TradingSettings,
    pub rebuy_of: Option<u64>,
    /// A rebuy was already triggered by this position's fall.
    pub rebuy_notified: bool,
    pub buy: Option<Order>,
    pub sell: Option<Order>,
    /// Why its SELL was refused, if it was: the position then holds its inventory.
    pub sell_rejected: Option<String>,
    pub opened_at: Timestamp,
}

impl Position {
    pub fn bought(&self) -> Decimal {
        self.buy.as_ref().map_or(Decimal::ZERO, |o| o.executed)
    }

    pub fn sold(&self) -> Decimal {
        self.sell.as_ref().map_or(Decimal::ZERO, |o| o.executed)
    }

    /// Average price of what the BUY executed (its limit price before any fill).
    pub fn average_buy_price(&self) -> Decimal {
        match &self.buy {
            Some(o) if !o.executed.is_zero() => o.executed_quote / o.executed,
            _ => self.buy_price,
        }
    }

    fn orders(&self) -> impl Iterator<Item = &Order> {
        self.buy.iter().chain(self.sell.iter())
    }

    fn order_mut(&mut self, order_id: u64) -> Option<&mut Order> {
        [self.buy.as_mut(), self.sell.as_mut()]
            .into_iter()
            .flatten()
            .find(|o| o.order_id == order_id)
    }
}

/// What closed positions added up to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub positions_closed: u64,
    pub realized_profit: Decimal,
    pub fees: Decimal,
}

/// Everything the symbol's trading stream says now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradingState {
    pub status: TradingStatus,
    /// Why trading last went off, if it did.
    pub stop_reason: Option<StopReason>,
    pub settings: TradingSettings,
    /// Open positions by id.
    pub positions: BTreeMap<u64, Position>,
    pub last_position_id: u64,
    pub last_order_id: u64,
    /// The highest trade id already decided on (or that trading started after).
    pub trade_cursor: Option<u64>,
    pub totals: Totals,
}

impl TradingState {
    /// Every order still on the book, in order id order.
    pub fn open_orders(&self) -> impl Iterator<Item = (&Position, &Order)> {
        let mut orders: Vec<_> = self
            .positions
            .values()
            .flat_map(|p| p.orders().filter(|o| o.open).map(move |o| (p, o)))
            .collect();
        orders.sort_by_key(|(_, o)| o.order_id);
        orders.into_iter()
    }

    /// The open order with `order_id`, and its position.
    pub fn open_order(&self, order_id: u64) -> Option<(&Position, &Order)> {
        self.positions.values().find_map(|p| {
            p.orders()
                .find(|o| o.open && o.order_id == order_id)
                .map(|o| (p, o))
        })
    }

    /// What the open positions bought and have not sold.
    pub fn unsold(&self) -> Vec<Unsold> {
        self.positions
            .values()
            .filter_map(|p| {
                let quantity = p.bought() - p.sold();
                (quantity > Decimal::ZERO).then(|| Unsold {
                    position_id: p.position_id,
                    quantity,
                    buy_price: p.average_buy_price().normalize(),
                })
            })
            .collect()
    }

    /// Whether `trade_id` was already decided on.
    pub fn has_seen(&self, trade_id: u64) -> bool {
        self.trade_cursor.is_some_and(|c| trade_id <= c)
    }

    fn advance_cursor(&mut self, trade_id: Option<u64>) {
        if let Some(id) = trade_id {
            self.trade_cursor = Some(self.trade_cursor.map_or(id, |c| c.max(id)));
        }
    }

    fn find_order_mut(
        &mut self,
        position_id: u64,
        order_id: u64,
    ) -> Result<&mut Order, ApplyError> {
        self.positions
            .get_mut(&position_id)
            .and_then(|p| p.order_mut(order_id))
            .ok_or(ApplyError::UnknownOrder {
                position_id,
                order_id,
            })
    }
}

/// A stored event the trading state cannot take: the stream is not a trading stream, or it
/// contradicts itself (which only a bug or a hand-edited log can cause).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("event {0} does not belong in a trading stream")]
    Foreign(&'static str),
    #[error("event refers to position {0}, which is not open")]
    UnknownPosition(u64),
    #[error("event refers to order {order_id} of position {position_id}, which is not known")]
    UnknownOrder { position_id: u64, order_id: u64 },
}

/// Folds one event into the state.
pub fn apply(mut state: TradingState, event: &Event) -> Result<TradingState, ApplyError> {
    apply_mut(&mut state, event)?;
    Ok(state)
}

/// Folds one event into the state in place (the hot path of a backtest: no state moves).
pub fn apply_in_place(state: &mut TradingState, event: &Event) -> Result<(), ApplyError> {
    apply_mut(state, event)
}

fn apply_mut(state: &mut TradingState, event: &Event) -> Result<(), ApplyError> {
    match event {
        Event::TradingStarted(e) => {
            state.status = TradingStatus::On;
            state.stop_reason = None;
            state.advance_cursor(e.after_trade_id);
        }
        Event::TradingShutdownRequested(_) => state.status = TradingStatus::Shutdown,
        Event::TradingStopped(e) => {
            state.status = TradingStatus::Off;
            state.stop_reason = Some(e.reason);
            state.positions.clear();
        }
        Event::SettingsUpdated(e) => state.settings = e.settings.clone(),
        Event::PositionOpened(e) => {
            state.last_position_id = state.last_position_id.max(e.position_id);
            state.advance_cursor(Some(e.trade_id));
            state.positions.insert(
                e.position_id,
                Position {
                    position_id: e.position_id,
                    trigger_price: e.trigger_price,
                    buy_price: e.buy_price,
                    quantity: e.quantity,
                    settings: e.settings.clone(),
                    rebuy_of: e.rebuy_of,
                    rebuy_notified: false,
                    buy: None,
                    sell: None,
                    sell_rejected: None,
                    opened_at: e.time,
                },
            );
        }
        Event::OrderPlaced(e) => {
            state.last_order_id = state.last_order_id.max(e.order_id);
            let position = state
                .positions
                .get_mut(&e.position_id)
                .ok_or(ApplyError::UnknownPosition(e.position_id))?;
            let order = Order {
                order_id: e.order_id,
                client_order_id: e.client_order_id.clone(),
                side: e.side,
                price: e.price,
                quantity: e.quantity,
                executed: Decimal::ZERO,
                executed_quote: Decimal::ZERO,
                fees: Decimal::ZERO,
                base_fees: Decimal::ZERO,
                open: true,
            };
            match e.side {
                Side::Buy => position.buy = Some(order),
                Side::Sell => {
                    position.sell = Some(order);
                    position.sell_rejected = None;
                }
            }
        }
        Event::OrderFilled(e) => {
            state.advance_cursor(e.trade_id);
            let order = state.find_order_mut(e.position_id, e.order_id)?;
            order.executed = e.cumulative_quantity;
            order.executed_quote = e.cumulative_quote_quantity;
            order.fees += e.fee;
            order.base_fees += e.base_fee;
            order.open = e.status != FillStatus::Filled;
        }
        Event::OrderCancelled(e) => {
            state.find_order_mut(e.position_id, e.order_id)?.open = false;
        }
        Event::OrderRejected(e) => match e.side {
            // A position whose BUY was refused never held anything: it is gone.
            Side::Buy => {
                state.positions.remove(&e.position_id);
            }
            Side::Sell => {
                let position = state
                    .positions
                    .get_mut(&e.position_id)
                    .ok_or(ApplyError::UnknownPosition(e.position_id))?;
                position.sell_rejected = Some(e.reason.clone());
                // Refused by the exchange after it was placed: the order is not on the book.
                if e.order_id.is_some() && position.sell.as_ref().map(|o| o.order_id) == e.order_id
                {
                    position.sell = None;
                }
            }
        },
        Event::RebuyTriggered(e) => {
            state.advance_cursor(Some(e.trade_id));
            state
                .positions
                .get_mut(&e.position_id)
                .ok_or(ApplyError::UnknownPosition(e.position_id))?
                .rebuy_notified = true;
        }
        Event::PositionClosed(e) => {
            state
                .positions
                .remove(&e.position_id)
                .ok_or(ApplyError::UnknownPosition(e.position_id))?;
            state.totals.positions_closed += 1;
            state.totals.realized_profit += e.realized_profit;
            state.totals.fees += e.fees;
        }
        other @ (Event::TradeReceived(_)
        | Event::StreamingStarted(_)
        | Event::StreamingStopped(_)
        | Event::StoringStarted(_)
        | Event::StoringStopped(_)) => return Err(ApplyError::Foreign(other.event_type())),
    }
    Ok(())
}

/// What a user can ask of a symbol's trading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Switch trading on; `after_trade_id` is the last trade already in the market stream.
    Start { after_trade_id: Option<u64> },
    /// Switch off at once, cancelling every open order.
    Stop,
    /// No new positions; switch off when the open ones have run out.
    Shutdown,
    /// Use these settings for positions opened from now on.
    UpdateSettings(TradingSettings),
}

/// Why a command was refused. Nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    InvalidSettings(#[from] InvalidSettings),
    #[error("invalid settings for {symbol}: a chunk of the budget ({budget} / {chunks} = {chunk} {quote}) is below the symbol's minimum order value ({min_notional} {quote}); raise --budget or lower --chunks")]
    ChunkBelowMinNotional {
        symbol: Symbol,
        budget: Decimal,
        chunks: u32,
        chunk: Decimal,
        min_notional: Decimal,
        quote: String,
    },
    #[error("{symbol} is not trading on the exchange (status {status})")]
    SymbolNotTrading { symbol: Symbol, status: String },
}

/// Checks settings against what makes sense at all and against the symbol's filters.
pub fn check_settings(settings: &TradingSettings, rules: &SymbolRules) -> Result<(), Refusal> {
    settings.validate()?;
    let chunk = settings.budget / Decimal::from(settings.chunks);
    if chunk < rules.min_notional {
        return Err(Refusal::ChunkBelowMinNotional {
            symbol: rules.symbol.clone(),
            budget: settings.budget,
            chunks: settings.chunks,
            chunk: chunk.normalize(),
            min_notional: rules.min_notional.normalize(),
            quote: rules.quote_asset.clone(),
        });
    }
    Ok(())
}

/// Decides a user's command. `time` is when it was issued (data, not a clock read).
pub fn decide_command(
    state: &TradingState,
    rules: &SymbolRules,
    command: Command,
    time: Timestamp,
) -> Result<Vec<Event>, Refusal> {
    let symbol = rules.symbol.clone();
    let mut d = Decider::new(state, rules);
    match command {
        Command::Start { after_trade_id } => {
            if !rules.is_trading() {
                return Err(Refusal::SymbolNotTrading {
                    symbol,
                    status: rules.status.clone(),
                });
            }
            check_settings(&state.settings, rules)?;
            if state.status != TradingStatus::On {
                d.emit(TradingStarted {
                    symbol,
                    after_trade_id,
                });
            }
        }
        Command::Stop => {
            if state.status != TradingStatus::Off {
                d.stop(StopReason::Command, "trading stopped", None, time);
            }
        }
        Command::Shutdown => {
            if state.status == TradingStatus::On {
                d.emit(TradingShutdownRequested {
                    symbol: symbol.clone(),
                });
                if state.positions.is_empty() {
                    d.stop(
                        StopReason::ShutdownCompleted,
                        "shutdown completed",
                        None,
                        time,
                    );
                }
            }
        }
        Command::UpdateSettings(settings) => {
            check_settings(&settings, rules)?;
            if settings != state.settings {
                d.emit(SettingsUpdated { symbol, settings });
            }
        }
    }
    Ok(d.events)
}

/// Decides one market trade: paper fills (when `paper` is given), then the strategy.
pub fn decide_trade(
    state: &TradingState,
    rules: &SymbolRules,
    paper: Option<&PaperExchange>,
    trade: &TradeReceived,
) -> Vec<Event> {
    decider_for_trade(state, rules, paper, trade).map_or_else(Vec::new, |d| d.events)
}

/// As [`decide_trade`], and moves `state` on to what it decided: the decider's working copy
/// becomes the state, so a caller that keeps no store in between (a backtest) does not fold the
/// same events a second time.
pub fn decide_trade_in_place(
    state: &mut TradingState,
    rules: &SymbolRules,
    paper: Option<&PaperExchange>,
    trade: &TradeReceived,
) -> Vec<Event> {
    match decider_for_trade(state, rules, paper, trade) {
        Some(d) => {
            *state = d.state;
            d.events
        }
        None => Vec::new(),
    }
}

/// The decisions one trade makes, as a decider holding them and the state after them; `None`
/// when the trade decides nothing (the common case, which clones nothing).
fn decider_for_trade<'a>(
    state: &TradingState,
    rules: &'a SymbolRules,
    paper: Option<&PaperExchange>,
    trade: &TradeReceived,
) -> Option<Decider<'a>> {
    if trade.symbol != rules.symbol || !trade.kind.is_market() || state.has_seen(trade.trade_id) {
        return None;
    }
    let fills = match paper {
        Some(exchange) if state.positions.values().any(|p| p.orders().any(|o| o.open)) => {
            let resting: Vec<RestingOrder> = state
                .open_orders()
                .map(|(p, o)| RestingOrder {
                    order_id: o.order_id,
                    side: o.side,
                    price: o.price,
                    remaining: o.remaining(),
                    fee_rate: p.settings.fee,
                })
                .collect();
            exchange.match_trade(&resting, trade)
        }
        _ => Vec::new(),
    };
    let on = state.status == TradingStatus::On;
    let opens = on && state.positions.is_empty();
    let rebuys = on
        && state
            .positions
            .values()
            .any(|p| rebuy_candidate(p, trade.price));
    if fills.is_empty() && !opens && !rebuys {
        return None;
    }

    let mut d = Decider::new(state, rules);
    for fill in &fills {
        d.execution(fill);
    }
    if d.state.status == TradingStatus::On {
        if d.state.positions.is_empty() {
            // After a close the *next* trade opens the fresh position, as in the book.
            if !d.closed_any {
                d.open(trade, None);
            }
        } else {
            let ids: Vec<u64> = d.state.positions.keys().copied().collect();
            for id in ids {
                let candidate = d
                    .state
                    .positions
                    .get(&id)
                    .is_some_and(|p| rebuy_candidate(p, trade.price));
                let room = d.state.positions.len() < d.state.settings.chunks as usize;
                if candidate && room && d.state.status == TradingStatus::On {
                    d.emit(RebuyTriggered {
                        symbol: rules.symbol.clone(),
                        position_id: id,
                        trade_id: trade.trade_id,
                        price: trade.price,
                        time: trade.trade_time,
                    });
                    d.open(trade, Some(id));
                }
            }
        }
    }
    Some(d)
}

/// What a live exchange says happened to one of our orders (Binance's execution reports, or
/// what a REST query found after a reconnect). Orders are named by client order id, the one id
/// both sides know before the exchange answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The order has executed `cumulative_quantity` so far, for `cumulative_quote_quantity`.
    /// Cumulative, not incremental, so a report delivered twice, or one REST already
    /// accounted for, adds nothing: only what goes beyond the recorded fills is a new fill.
    Executed {
        client_order_id: String,
        /// The exchange's trade id of the last execution, when known.
        trade_id: Option<u64>,
        cumulative_quantity: Decimal,
        cumulative_quote_quantity: Decimal,
        /// The commission of the last execution, when it is the only one not yet recorded.
        commission: Option<Commission>,
        /// Quantity of the last execution (to know whether `commission` covers all that is new).
        last_quantity: Decimal,
        time: Timestamp,
    },
    /// The exchange cancelled or expired the order (not at our request).
    Cancelled {
        client_order_id: String,
        reason: String,
        time: Timestamp,
    },
    /// The exchange refused the order we sent.
    Rejected {
        client_order_id: String,
        reason: String,
        time: Timestamp,
    },
    /// The exchange will not serve us (an IP ban): trading stops with the reason.
    Halted { reason: String, time: Timestamp },
}

/// Decides what an exchange report means for the symbol: fills and what follows them (the
/// SELL after a BUY, the close after a SELL), a rejection (which stops trading when it was a
/// fresh position's BUY, as a filter failure does), an external cancel, a halt. A report about
/// an order that is not open (not ours, or already done) decides nothing.
pub fn decide_report(state: &TradingState, rules: &SymbolRules, report: &Report) -> Vec<Event> {
    let mut d = Decider::new(state, rules);
    let open = |client_order_id: &str| {
        state
            .open_orders()
            .find(|(_, o)| o.client_order_id == client_order_id)
            .map(|(p, o)| (p.clone(), o.clone()))
    };
    match report {
        Report::Executed {
            client_order_id,
            trade_id,
            cumulative_quantity,
            cumulative_quote_quantity,
            commission,
            last_quantity,
            time,
        } => {
            let Some((_, order)) = open(client_order_id) else {
                return Vec::new();
            };
            let quantity = cumulative_quantity.min(&order.quantity) - order.executed;
            if quantity <= Decimal::ZERO {
                return Vec::new();
            }
            let quote = *cumulative_quote_quantity - order.executed_quote;
            let price = (quote / quantity).round_dp(rules.tick_size.scale().max(8));
            // The report's commission is this fill's only when nothing else went unrecorded.
            let commission = commission.clone().filter(|_| quantity == *last_quantity);
            let (fee, base_fee) = match &commission {
                Some(c) if c.asset == rules.quote_asset => (c.amount, Decimal::ZERO),
                Some(c) if c.asset == rules.base_asset => {
                    ((c.amount * price).normalize(), c.amount)
                }
                _ => (Decimal::ZERO, Decimal::ZERO),
            };
            let commission = commission.filter(|c| c.asset != rules.quote_asset);
            d.fill(
                &Execution {
                    order_id: order.order_id,
                    trade_id: None,
                    price,
                    quantity,
                    fee,
                    time: *time,
                },
                LiveFill {
                    commission,
                    base_fee,
                    venue_trade_id: *trade_id,
                },
            );
        }
        Report::Cancelled {
            client_order_id,
            reason,
            time,
        } => {
            let Some((position, order)) = open(client_order_id) else {
                return Vec::new();
            };
            d.emit(OrderCancelled {
                symbol: rules.symbol.clone(),
                position_id: position.position_id,
                order_id: order.order_id,
                side: order.side,
                executed_quantity: order.executed,
                reason: reason.clone(),
                time: *time,
            });
            // A BUY ended early: sell what it bought, or let the position go if it bought
            // nothing. A SELL ended early leaves the position holding what it did not sell.
            if order.side == Side::Buy {
                let Some(position) = d.state.positions.get(&position.position_id).cloned() else {
                    return d.events;
                };
                if order.executed > Decimal::ZERO {
                    d.place_sell(&position, *time);
                } else {
                    d.close(&position, *time);
                }
            }
        }
        Report::Rejected {
            client_order_id,
            reason,
            time,
        } => {
            let Some((position, order)) = open(client_order_id) else {
                return Vec::new();
            };
            d.emit(OrderRejected {
                symbol: rules.symbol.clone(),
                position_id: position.position_id,
                order_id: Some(order.order_id),
                side: order.side,
                price: order.price,
                quantity: order.quantity,
                reason: reason.clone(),
                time: *time,
            });
            if order.side == Side::Buy
                && position.rebuy_of.is_none()
                && d.state.status == TradingStatus::On
            {
                d.stop(StopReason::OrderRejected, "order rejected", None, *time);
            }
        }
        Report::Halted { reason, time } => {
            if state.status != TradingStatus::Off {
                d.stop(
                    StopReason::ExchangeHalted,
                    "the exchange halted trading",
                    Some(reason.clone()),
                    *time,
                );
            }
        }
    }
    d.events
}

fn rebuy_candidate(p: &Position, price: Decimal) -> bool {
    !p.rebuy_notified
        && p.buy.is_some()
        && formula::triggers_rebuy(price, p.buy_price, p.settings.rebuy_interval)
}

/// What a live exchange adds to a fill.
#[derive(Default)]
struct LiveFill {
    commission: Option<Commission>,
    base_fee: Decimal,
    venue_trade_id: Option<u64>,
}

/// A working copy of the state that every decided event is applied to at once.
struct Decider<'a> {
    state: TradingState,
    rules: &'a SymbolRules,
    events: Vec<Event>,
    closed_any: bool,
}

impl<'a> Decider<'a> {
    fn new(state: &TradingState, rules: &'a SymbolRules) -> Self {
        Decider {
            state: state.clone(),
            rules,
            events: Vec::new(),
            closed_any: false,
        }
    }

    fn emit(&mut self, event: impl Into<Event>) {
        let event = event.into();
        // The decider only emits events that fit the state it keeps; failing here is a bug in
        // this module, never bad input.
        if let Err(e) = apply_mut(&mut self.state, &event) {
            panic!("trading decided an event its own state refuses: {e} ({event:?})");
        }
        self.events.push(event);
    }

    fn symbol(&self) -> Symbol {
        self.rules.symbol.clone()
    }

    /// Opens a position triggered by `trade` and places its BUY (or records the refusal).
    fn open(&mut self, trade: &TradeReceived, rebuy_of: Option<u64>) {
        let settings = self.state.settings.clone();
        let position_id = self.state.last_position_id + 1;
        let price = formula::buy_price(
            trade.price,
            settings.buy_down_interval,
            self.rules.tick_size,
        );
        let quantity = price.and_then(|p| {
            formula::quantity(settings.budget, settings.chunks, p, self.rules.step_size)
        });
        let (price, quantity, computed) = match (price, quantity) {
            (Some(p), Some(q)) => (p, q, true),
            (p, q) => (p.unwrap_or_default(), q.unwrap_or_default(), false),
        };
        self.emit(PositionOpened {
            symbol: self.symbol(),
            position_id,
            trade_id: trade.trade_id,
            trigger_price: trade.price,
            buy_price: price,
            quantity,
            settings,
            rebuy_of,
            time: trade.trade_time,
        });
        let refused = if computed {
            self.rules
                .check_limit_order(price, quantity)
                .err()
                .map(|f| f.to_string())
        } else {
            Some("the order's price or quantity overflows".to_owned())
        };
        match refused {
            None => self.place(position_id, Side::Buy, price, quantity, trade.trade_time),
            Some(reason) => {
                self.emit(OrderRejected {
                    symbol: self.symbol(),
                    position_id,
                    order_id: None,
                    side: Side::Buy,
                    price,
                    quantity,
                    reason,
                    time: trade.trade_time,
                });
                if rebuy_of.is_none() {
                    self.stop(
                        StopReason::OrderRejected,
                        "order rejected",
                        None,
                        trade.trade_time,
                    );
                }
            }
        }
    }

    fn place(
        &mut self,
        position_id: u64,
        side: Side,
        price: Decimal,
        quantity: Decimal,
        time: Timestamp,
    ) {
        let order_id = self.state.last_order_id + 1;
        self.emit(OrderPlaced {
            symbol: self.symbol(),
            position_id,
            order_id,
            client_order_id: client_order_id(&self.rules.symbol, order_id),
            side,
            order_type: OrderType::Limit,
            time_in_force: TimeInForce::Gtc,
            price,
            quantity,
            time,
        });
    }

    /// Records a fill and what follows from it: the SELL after a full BUY, the close after a
    /// full SELL, and the end of a shutdown after the last close.
    fn execution(&mut self, e: &Execution) {
        self.fill(e, LiveFill::default())
    }

    /// As [`Decider::execution`], with what a live exchange charged when that was not the
    /// quote asset.
    fn fill(&mut self, e: &Execution, live: LiveFill) {
        let Some((position_id, order)) = self
            .state
            .open_order(e.order_id)
            .map(|(p, o)| (p.position_id, o.clone()))
        else {
            return; // not an open order of ours (a late report for a cancelled one)
        };
        let quantity = e.quantity.min(order.remaining());
        if quantity <= Decimal::ZERO {
            return;
        }
        let cumulative_quantity = order.executed + quantity;
        let status = if cumulative_quantity >= order.quantity {
            FillStatus::Filled
        } else {
            FillStatus::PartiallyFilled
        };
        self.emit(OrderFilled {
            symbol: self.symbol(),
            position_id,
            order_id: order.order_id,
            side: order.side,
            trade_id: e.trade_id,
            price: e.price,
            quantity,
            cumulative_quantity,
            cumulative_quote_quantity: (order.executed_quote + e.price * quantity).normalize(),
            fee: e.fee,
            fee_asset: self.rules.quote_asset.clone(),
            commission: live.commission,
            base_fee: live.base_fee,
            venue_trade_id: live.venue_trade_id,
            status,
            time: e.time,
        });
        if status != FillStatus::Filled {
            return;
        }
        let Some(position) = self.state.positions.get(&position_id).cloned() else {
            return;
        };
        match order.side {
            Side::Buy => self.place_sell(&position, e.time),
            Side::Sell => self.close(&position, e.time),
        }
    }

    fn place_sell(&mut self, position: &Position, time: Timestamp) {
        let s = &position.settings;
        let buy = position
            .buy
            .as_ref()
            .map_or(position.buy_price, |o| o.price);
        // What a live exchange took as commission out of the base asset is not there to sell.
        let base_fees = position.buy.as_ref().map_or(Decimal::ZERO, |o| o.base_fees);
        let quantity = if base_fees.is_zero() {
            position.bought()
        } else {
            formula::truncate(position.bought() - base_fees, self.rules.step_size)
                .unwrap_or_default()
        };
        let price = formula::sell_price(buy, s.fee, s.profit_target, self.rules.tick_size);
        let refused = match price {
            Some(p) => self
                .rules
                .check_limit_order(p, quantity)
                .err()
                .map(|f| f.to_string()),
            None => Some("the order's price overflows".to_owned()),
        };
        let price = price.unwrap_or_default();
        match refused {
            None => self.place(position.position_id, Side::Sell, price, quantity, time),
            Some(reason) => self.emit(OrderRejected {
                symbol: self.symbol(),
                position_id: position.position_id,
                order_id: None,
                side: Side::Sell,
                price,
                quantity,
                reason,
                time,
            }),
        }
    }

    /// Closes a position whose orders are done: normally after its SELL filled, or with
    /// nothing sold when an exchange cancelled its BUY before anything executed.
    fn close(&mut self, position: &Position, time: Timestamp) {
        let Some(buy) = &position.buy else {
            return;
        };
        let (sold, sold_quote, sell_fees) = position
            .sell
            .as_ref()
            .map_or((Decimal::ZERO, Decimal::ZERO, Decimal::ZERO), |s| {
                (s.executed, s.executed_quote, s.fees)
            });
        let fees = buy.fees + sell_fees;
        self.emit(PositionClosed {
            symbol: self.symbol(),
            position_id: position.position_id,
            quantity: sold,
            buy_price: position.average_buy_price().normalize(),
            sell_price: if sold.is_zero() {
                Decimal::ZERO
            } else {
                (sold_quote / sold).normalize()
            },
            fees: fees.normalize(),
            realized_profit: (sold_quote - buy.executed_quote - fees).normalize(),
            time,
        });
        self.closed_any = true;
        if self.state.status == TradingStatus::Shutdown && self.state.positions.is_empty() {
            self.stop(
                StopReason::ShutdownCompleted,
                "shutdown completed",
                None,
                time,
            );
        }
    }

    /// Cancels every open order, then switches off, reporting what was left unsold.
    fn stop(&mut self, reason: StopReason, why: &str, detail: Option<String>, time: Timestamp) {
        let open: Vec<(u64, Order)> = self
            .state
            .open_orders()
            .map(|(p, o)| (p.position_id, o.clone()))
            .collect();
        for (position_id, order) in open {
            self.emit(OrderCancelled {
                symbol: self.symbol(),
                position_id,
                order_id: order.order_id,
                side: order.side,
                executed_quantity: order.executed,
                reason: why.to_owned(),
                time,
            });
        }
        let unsold = self.state.unsold();
        self.emit(TradingStopped {
            symbol: self.symbol(),
            reason,
            detail,
            unsold,
        });
    }
}

#[cfg(test)]
mod tests;
