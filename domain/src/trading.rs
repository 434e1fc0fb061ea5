//! The trading aggregate of one symbol: a [`Strategy`](crate::strategy::Strategy) run over
//! positions, decided from events. The rules below are the machinery every strategy runs in;
//! the figures (where a BUY and a SELL go, when a fall adds a position) are the strategy's, and
//! those named here are the book's naive strategy's ([`Naive`](crate::strategy::Naive)).
//!
//! The state is a fold ([`apply`]) of the symbol's `trading-SYMBOL` stream. Three kinds of input
//! are decided against it, each giving the events to append (empty: nothing to do):
//! - a user's [`Command`] (start, stop, shutdown, new settings) in [`decide_command`];
//! - a market trade in [`decide_trade`]: every position takes one step of the book's strategy;
//! - what a live exchange reports about our orders (fills, cancels, rejections, a halt) in
//!   [`decide_report`].
//!
//! The strategy is the book's final `Formula`, decision for decision. A symbol that starts
//! trading has one fresh position (added by the first trade after the start, so that it carries
//! that trade's time, not a clock's), and each fresh position gets budget / chunks. On each trade
//! every position takes exactly one step, in the order the positions are kept:
//! 1. no BUY yet: place the BUY at the trade's price less `buy_down_interval`, truncated to the
//!    tick, for the position's budget / that price, truncated to the step;
//! 2. BUY filled and no SELL yet: place the SELL at buy x (1 + fee) x (1 + profit_target) x
//!    (1 + fee), truncated to the tick, for what the BUY bought;
//! 3. BUY resting and reached by the trade: the paper exchange fills it (live: the venue will);
//! 4. SELL filled: the position is finished and a fresh position takes its place (when shutting
//!    down it is dropped instead, and when the last one is dropped trading turns off);
//! 5. SELL resting and reached by the trade: the paper exchange fills it (live: the venue will);
//! 6. otherwise a rebuy: when the position has not asked for one yet, the trade is below its BUY
//!    price x (1 - rebuy_interval), the symbol is not shutting down and holds fewer than chunks
//!    positions (counting those added on this trade), a fresh position is added right after it.
//!
//! A position added on a trade takes its first step on the next trade, and a fill is its
//! position's step: what follows comes with the next trade. After each trade the positions are
//! kept in the reverse of the order they stepped in (the book builds its new list by
//! prepending), which [`PositionsOrdered`] records after every trade that decides something;
//! a trade that decides nothing reverses the order too, which [`pass_trade`] does in memory.
//!
//! Decisions are applied to a working copy as they are made, so each later decision in the same
//! batch sees the earlier ones, and the state a worker holds after appending equals the fold of
//! the stored events followed by the trades after them that decided nothing.
//!
//! Rules kept here, beyond the book's:
//! - trades are decided once: every event a trade causes carries its id, and trades at or below
//!   the highest id stepped on (or below the one trading started after) are ignored;
//! - a stop cancels the symbol's open orders and reports what was bought and not sold;
//! - an order the symbol's filters refuse is `OrderRejected`; a refused BUY of a position that
//!   is not a rebuy also stops trading (it would be refused again on every trade), a refused
//!   rebuy drops that position only;
//! - live, fills, cancels and rejections come from the venue's reports; a BUY the venue
//!   cancelled is sold for what it bought (or the position finishes, if it bought nothing), a
//!   SELL it cancelled leaves the position holding what it did not sell.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::events::{
    Commission, Event, OrderCancelled, OrderFilled, OrderFilledAfterCancel, OrderPlaced,
    OrderRejected, PositionClosed, PositionOpened, PositionsOrdered, RebuyTriggered,
    SettingsUpdated, StopReason, TradeReceived, TradingShutdownRequested, TradingStarted,
    TradingStopped, Unsold,
};
use crate::exchange::SymbolRules;
use crate::formula;
use crate::paper_exchange::{client_order_id, Execution, PaperExchange, RestingOrder};
use crate::settings::{InvalidSettings, TradingSettings};
use crate::strategy::{Context, Quote, Strategies, UnknownStrategy};
use crate::types::{FillStatus, OrderType, Side, Symbol, TimeInForce, Timestamp, TradingStatus};

/// An order as the aggregate knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

    /// Executed in full.
    pub fn filled(&self) -> bool {
        self.executed >= self.quantity
    }
}

/// One chunk of the budget: a BUY, then a SELL of what was bought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Position {
    pub position_id: u64,
    /// The settings in force when it was added; later changes do not touch it.
    pub settings: TradingSettings,
    pub rebuy_of: Option<u64>,
    /// A rebuy was already triggered by this position's fall.
    pub rebuy_notified: bool,
    pub buy: Option<Order>,
    pub sell: Option<Order>,
    /// Why its SELL was refused, if it was: the position then holds its inventory.
    pub sell_rejected: Option<String>,
    pub opened_at: Timestamp,
    /// The price a trade must go below to trigger its rebuy, once its BUY is placed (kept, not
    /// computed on every trade).
    pub rebuy_below: Option<Decimal>,
}

impl Position {
    pub fn bought(&self) -> Decimal {
        self.buy.as_ref().map_or(Decimal::ZERO, |o| o.executed)
    }

    pub fn sold(&self) -> Decimal {
        self.sell.as_ref().map_or(Decimal::ZERO, |o| o.executed)
    }

    /// The BUY's limit price, once the BUY is placed.
    pub fn buy_price(&self) -> Option<Decimal> {
        self.buy.as_ref().map(|o| o.price)
    }

    /// Average price of what the BUY executed (its limit price before any fill; zero for a
    /// fresh position).
    pub fn average_buy_price(&self) -> Decimal {
        match &self.buy {
            Some(o) if !o.executed.is_zero() => o.executed_quote / o.executed,
            Some(o) => o.price,
            None => Decimal::ZERO,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub positions_closed: u64,
    pub realized_profit: Decimal,
    pub fees: Decimal,
}

/// Everything the symbol's trading stream says now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TradingState {
    pub status: TradingStatus,
    /// Why trading last went off, if it did.
    pub stop_reason: Option<StopReason>,
    pub settings: TradingSettings,
    /// Open positions by id.
    pub positions: BTreeMap<u64, Position>,
    /// The ids of [`TradingState::positions`] in the order they take their steps.
    pub order: Vec<u64>,
    pub last_position_id: u64,
    pub last_order_id: u64,
    /// The highest trade id already decided on (or that trading started after).
    pub trade_cursor: Option<u64>,
    /// The highest trade id the positions stepped on, whether it decided something or not:
    /// ahead of `trade_cursor` by the trades [`pass_trade`] took since the last decision.
    pub stepped: Option<u64>,
    /// Trading started with no position: the next trade adds the fresh one the symbol starts
    /// with (even in shutdown, as the book's trader has it from its start).
    pub awaiting_first: bool,
    pub totals: Totals,
    /// The positions stops ended while they held inventory or had an order cancelled before it
    /// executed in full, by id: no longer traded, but what they hold is the account's, and a
    /// live venue may still report a fill that raced the cancel
    /// ([`OrderFilledAfterCancel`]). Kept across starts: a venue can answer long after (an
    /// engine down when the stop was recorded cancels at its next start).
    pub left: BTreeMap<u64, Position>,
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
        unsold_of(self.positions.values())
    }

    /// What stops left bought and not sold, late fills included: inventory on the account that
    /// trading no longer manages.
    pub fn left_unsold(&self) -> Vec<Unsold> {
        unsold_of(self.left.values())
    }

    /// The order with `client_order_id` that was cancelled before it executed in full, and its
    /// position: one a stop left, or (in a stop's batch, between its cancels and the
    /// `TradingStopped`) one still among the positions.
    fn cancelled_order(&self, client_order_id: &str) -> Option<(&Position, &Order)> {
        self.left
            .values()
            .chain(self.positions.values())
            .find_map(|p| {
                p.orders()
                    .find(|o| o.client_order_id == client_order_id && !o.open && !o.filled())
                    .map(|o| (p, o))
            })
    }

    /// Whether `trade_id` was already stepped on (decided on, or passed).
    pub fn has_seen(&self, trade_id: u64) -> bool {
        self.last_seen().is_some_and(|c| trade_id <= c)
    }

    /// The highest trade id stepped on (decided on, or passed): where taking trades resumes.
    pub fn last_seen(&self) -> Option<u64> {
        self.trade_cursor.max(self.stepped)
    }

    fn advance_cursor(&mut self, trade_id: Option<u64>) {
        if let Some(id) = trade_id {
            self.trade_cursor = Some(self.trade_cursor.map_or(id, |c| c.max(id)));
            self.stepped = Some(self.stepped.map_or(id, |c| c.max(id)));
        }
    }

    fn remove_position(&mut self, position_id: u64) -> Option<Position> {
        self.order.retain(|&id| id != position_id);
        self.positions.remove(&position_id)
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
    #[error(
        "positions ordered as {ordered:?} after trade {trade_id}, but the open ones are {open:?}"
    )]
    Order {
        trade_id: u64,
        ordered: Vec<u64>,
        open: Vec<u64>,
    },
}

fn unsold_of<'a>(positions: impl Iterator<Item = &'a Position>) -> Vec<Unsold> {
    positions
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
            state.awaiting_first = state.positions.is_empty();
            state.advance_cursor(e.after_trade_id);
        }
        Event::TradingShutdownRequested(_) => state.status = TradingStatus::Shutdown,
        Event::TradingStopped(e) => {
            state.status = TradingStatus::Off;
            state.stop_reason = Some(e.reason);
            // What the stop ends but the account still holds, or may yet (a cancelled order).
            for (id, position) in std::mem::take(&mut state.positions) {
                if position.bought() > position.sold() || position.orders().any(|o| !o.filled()) {
                    state.left.insert(id, position);
                }
            }
            state.order.clear();
            state.awaiting_first = false;
        }
        Event::SettingsUpdated(e) => state.settings = e.settings.clone(),
        Event::PositionOpened(e) => {
            state.awaiting_first = false;
            state.last_position_id = state.last_position_id.max(e.position_id);
            state.advance_cursor(Some(e.trade_id));
            state.order.push(e.position_id);
            state.positions.insert(
                e.position_id,
                Position {
                    position_id: e.position_id,
                    settings: e.settings.clone(),
                    rebuy_of: e.rebuy_of,
                    rebuy_notified: false,
                    buy: None,
                    sell: None,
                    sell_rejected: None,
                    opened_at: e.time,
                    rebuy_below: None,
                },
            );
        }
        Event::OrderPlaced(_)
        | Event::OrderFilled(_)
        | Event::OrderFilledAfterCancel(_)
        | Event::OrderCancelled(_)
        | Event::OrderRejected(_) => apply_order_event(state, event)?,
        Event::RebuyTriggered(e) => {
            state.advance_cursor(Some(e.trade_id));
            state
                .positions
                .get_mut(&e.position_id)
                .ok_or(ApplyError::UnknownPosition(e.position_id))?
                .rebuy_notified = true;
        }
        Event::PositionClosed(e) => {
            state.advance_cursor(e.trade_id);
            state
                .remove_position(e.position_id)
                .ok_or(ApplyError::UnknownPosition(e.position_id))?;
            state.totals.positions_closed += 1;
            state.totals.realized_profit += e.realized_profit;
            state.totals.fees += e.fees;
        }
        Event::PositionsOrdered(e) => {
            let mut ordered = e.positions.clone();
            ordered.sort_unstable();
            let open: Vec<u64> = state.positions.keys().copied().collect();
            if ordered != open {
                return Err(ApplyError::Order {
                    trade_id: e.trade_id,
                    ordered: e.positions.clone(),
                    open,
                });
            }
            state.advance_cursor(Some(e.trade_id));
            state.order.clone_from(&e.positions);
        }
        other @ (Event::TradeReceived(_)
        | Event::StreamingStarted(_)
        | Event::StreamingStopped(_)
        | Event::StoringStarted(_)
        | Event::StoringStopped(_)) => return Err(ApplyError::Foreign(other.event_type())),
    }
    Ok(())
}

/// Folds in an event of an order's life: placed, filled (before or after a cancel),
/// cancelled, rejected.
fn apply_order_event(state: &mut TradingState, event: &Event) -> Result<(), ApplyError> {
    match event {
        Event::OrderPlaced(e) => {
            state.last_order_id = state.last_order_id.max(e.order_id);
            state.advance_cursor(e.trade_id);
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
                Side::Buy => {
                    position.buy = Some(order);
                    position.rebuy_below =
                        formula::rebuy_price(e.price, position.settings.rebuy_interval);
                }
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
        Event::OrderFilledAfterCancel(e) => {
            let order = state
                .left
                .get_mut(&e.position_id)
                .or_else(|| state.positions.get_mut(&e.position_id))
                .and_then(|p| p.order_mut(e.order_id))
                .ok_or(ApplyError::UnknownOrder {
                    position_id: e.position_id,
                    order_id: e.order_id,
                })?;
            order.executed = e.cumulative_quantity;
            order.executed_quote = e.cumulative_quote_quantity;
            order.fees += e.fee;
            order.base_fees += e.base_fee;
        }
        Event::OrderRejected(e) => {
            state.advance_cursor(e.trade_id);
            match e.side {
                // A position whose BUY was refused never held anything: it is gone.
                Side::Buy => {
                    state.remove_position(e.position_id);
                }
                Side::Sell => {
                    let position = state
                        .positions
                        .get_mut(&e.position_id)
                        .ok_or(ApplyError::UnknownPosition(e.position_id))?;
                    position.sell_rejected = Some(e.reason.clone());
                    // Refused by the exchange after it was placed: the order is not on the book.
                    if e.order_id.is_some()
                        && position.sell.as_ref().map(|o| o.order_id) == e.order_id
                    {
                        position.sell = None;
                    }
                }
            }
        }
        _ => {}
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
    #[error(transparent)]
    UnknownStrategy(#[from] UnknownStrategy),
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

/// Decides a user's command. `time` is when it was issued (data, not a clock read);
/// `strategies` are what this program can run: settings naming another are refused.
pub fn decide_command(
    state: &TradingState,
    rules: &SymbolRules,
    strategies: &Strategies,
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
            strategies.get(&state.settings.strategy)?;
            if state.status != TradingStatus::On {
                // The fresh position a symbol starts with is added by the first trade after
                // this, with that trade's id and time (see `Decider::step_all`).
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
                // Nothing to run out (a log written before positions were replaced when they
                // finished): off at once. A fresh start's first position still comes.
                if state.positions.is_empty() && !state.awaiting_first {
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
            strategies.get(&settings.strategy)?;
            if settings != state.settings {
                d.emit(SettingsUpdated { symbol, settings });
            }
        }
    }
    Ok(d.events)
}

/// Decides one market trade: every position's step, with the paper exchange's fills when
/// `paper` is given (live, the venue's reports bring them). Empty when the trade decides
/// nothing: the caller then [`pass_trade`]s it.
pub fn decide_trade<S: crate::strategy::Strategy + ?Sized>(
    strategy: &S,
    state: &TradingState,
    rules: &SymbolRules,
    paper: Option<&PaperExchange>,
    trade: &TradeReceived,
) -> Vec<Event> {
    decider_for_trade(strategy, state, rules, paper, trade).map_or_else(Vec::new, |d| d.events)
}

/// As [`decide_trade`], and moves `state` on to what it decided (or [`pass_trade`]s a trade
/// that decided nothing): the decider's working copy becomes the state, so a caller that keeps
/// no store in between (a backtest) does not fold the same events a second time.
pub fn decide_trade_in_place<S: crate::strategy::Strategy + ?Sized>(
    strategy: &S,
    state: &mut TradingState,
    rules: &SymbolRules,
    paper: Option<&PaperExchange>,
    trade: &TradeReceived,
) -> Vec<Event> {
    match decider_for_trade(strategy, state, rules, paper, trade) {
        Some(d) => {
            *state = d.state;
            d.events
        }
        None => {
            pass_trade(state, rules, trade);
            Vec::new()
        }
    }
}

/// Takes a trade that [`decide_trade`] decided nothing on: every position stepped without
/// acting, so the positions stand in reverse order afterwards, as in the book. Trades of other
/// symbols, non-market trades and trades already stepped on change nothing.
pub fn pass_trade(state: &mut TradingState, rules: &SymbolRules, trade: &TradeReceived) {
    if !steps_on(state, rules, trade) {
        return;
    }
    state.order.reverse();
    state.stepped = Some(trade.trade_id);
}

/// Whether the positions take a step on `trade` at all.
fn steps_on(state: &TradingState, rules: &SymbolRules, trade: &TradeReceived) -> bool {
    trade.symbol == rules.symbol
        && trade.kind.is_market()
        && state.status != TradingStatus::Off
        && !state.has_seen(trade.trade_id)
}

/// Whether `p`'s step on a trade at `price` can decide something (short of the chunks cap and
/// the paper exchange's fills, which the full step checks): the cheap test that lets the common
/// trade pass without copying the state.
fn may_act<S: crate::strategy::Strategy + ?Sized>(
    strategy: &S,
    p: &Position,
    room: bool,
    trade: &TradeReceived,
) -> bool {
    match (&p.buy, &p.sell) {
        (None, _) => true,
        (Some(buy), None) if !buy.open && p.sell_rejected.is_none() => true,
        (Some(_), Some(sell)) if !sell.open && sell.filled() => true,
        _ => room && rebuy_candidate(strategy, p, trade),
    }
}

/// The decisions one trade makes, as a decider holding them and the state after them; `None`
/// when the trade decides nothing (the common case, which clones nothing).
fn decider_for_trade<'a, S: crate::strategy::Strategy + ?Sized>(
    strategy: &S,
    state: &TradingState,
    rules: &'a SymbolRules,
    paper: Option<&PaperExchange>,
    trade: &TradeReceived,
) -> Option<Decider<'a>> {
    if !steps_on(state, rules, trade) {
        return None;
    }
    // The paper exchange's fills, worked out only when the trade reaches a resting order (most
    // trades reach none, and then nothing is allocated).
    let reaches = |exchange: &PaperExchange| {
        state.positions.values().any(|p| {
            p.orders()
                .any(|o| o.open && exchange.reaches(o.side, o.price, trade.price))
        })
    };
    let fills = match paper {
        Some(exchange) if reaches(exchange) => {
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
    // A rebuy needs room under the chunks cap: positions added on a trade only take room, and
    // only a shutdown (which allows no rebuy) drops positions before their replacement.
    let on = state.status == TradingStatus::On;
    let room = on && state.positions.len() < state.settings.chunks as usize;
    let acts = (on || state.awaiting_first) && state.positions.is_empty()
        || state
            .positions
            .values()
            .any(|p| may_act(strategy, p, room, trade));
    if fills.is_empty() && !acts {
        return None;
    }
    let mut d = Decider::new(state, rules);
    d.step_all(strategy, trade, paper, &fills);
    (!d.events.is_empty()).then_some(d)
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
        /// The price in the quote asset of the commission's asset when it is neither the base nor
        /// the quote asset (BNB): looked up by the shell, so the fee counts at what it was worth.
        commission_price: Option<Decimal>,
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

/// Decides what an exchange report means for the symbol: a fill (what follows it comes with
/// the next trade's step), a rejection (which stops trading when it was the BUY of a position
/// that is not a rebuy, as a filter failure does), an external cancel, a halt. A report about an
/// order that is not open (not ours, or already done) decides nothing.
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
            commission_price,
            time,
        } => {
            let reported = Reported {
                venue_trade_id: *trade_id,
                cumulative_quantity: *cumulative_quantity,
                cumulative_quote_quantity: *cumulative_quote_quantity,
                commission: commission.as_ref(),
                last_quantity: *last_quantity,
                commission_price: *commission_price,
                time: *time,
            };
            if let Some((_, order)) = open(client_order_id) {
                if let Some((execution, live)) = reported.beyond(&order, rules) {
                    d.fill(&execution, live);
                }
            } else if let Some((position, order)) = state.cancelled_order(client_order_id) {
                // A fill that raced a stop's cancel: recorded for what it is.
                if let Some((e, live)) = reported.beyond(order, rules) {
                    d.emit(OrderFilledAfterCancel {
                        symbol: rules.symbol.clone(),
                        position_id: position.position_id,
                        order_id: order.order_id,
                        side: order.side,
                        price: e.price,
                        quantity: e.quantity,
                        cumulative_quantity: order.executed + e.quantity,
                        cumulative_quote_quantity: (order.executed_quote + e.price * e.quantity)
                            .normalize(),
                        fee: e.fee,
                        fee_asset: rules.quote_asset.clone(),
                        commission: live.commission,
                        commission_price: live.commission_price,
                        base_fee: live.base_fee,
                        venue_trade_id: live.venue_trade_id,
                        time: e.time,
                    });
                }
            }
        }
        Report::Cancelled {
            client_order_id,
            reason,
            time,
        } => {
            let Some((position, order)) = open(client_order_id) else {
                return Vec::new();
            };
            // What follows (a BUY ended early is sold for what it bought, or the position
            // finishes; a SELL ended early leaves it holding) comes with the next trade's step.
            d.emit(OrderCancelled {
                symbol: rules.symbol.clone(),
                position_id: position.position_id,
                order_id: order.order_id,
                side: order.side,
                executed_quantity: order.executed,
                reason: reason.clone(),
                time: *time,
            });
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
                trade_id: None,
                order_id: Some(order.order_id),
                side: order.side,
                price: order.price,
                quantity: order.quantity,
                reason: reason.clone(),
                time: *time,
            });
            if order.side == Side::Buy {
                d.after_refused_buy(&position, *time);
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

/// Whether `trade` makes `p` ask for the rebuy it has not yet asked for (the strategy says when;
/// the book's is strictly below buy x (1 - rebuy_interval)).
fn rebuy_candidate<S: crate::strategy::Strategy + ?Sized>(
    strategy: &S,
    p: &Position,
    trade: &TradeReceived,
) -> bool {
    !p.rebuy_notified && strategy.rebuys(p, trade)
}

/// What a live exchange adds to a fill.
#[derive(Default)]
struct LiveFill {
    commission: Option<Commission>,
    commission_price: Option<Decimal>,
    base_fee: Decimal,
    venue_trade_id: Option<u64>,
}

/// An execution report's figures ([`Report::Executed`]).
struct Reported<'a> {
    venue_trade_id: Option<u64>,
    cumulative_quantity: Decimal,
    cumulative_quote_quantity: Decimal,
    commission: Option<&'a Commission>,
    last_quantity: Decimal,
    commission_price: Option<Decimal>,
    time: Timestamp,
}

impl Reported<'_> {
    /// What the report says `order` executed beyond what is recorded (cumulative figures, so a
    /// report seen twice adds nothing), with its fee in the quote asset; `None` when nothing.
    fn beyond(&self, order: &Order, rules: &SymbolRules) -> Option<(Execution, LiveFill)> {
        let quantity = self.cumulative_quantity.min(order.quantity) - order.executed;
        if quantity <= Decimal::ZERO {
            return None;
        }
        let quote = self.cumulative_quote_quantity - order.executed_quote;
        let price = (quote / quantity).round_dp(rules.tick_size.scale().max(8));
        // The report's commission is this fill's only when nothing else went unrecorded.
        let commission = self
            .commission
            .cloned()
            .filter(|_| quantity == self.last_quantity);
        let (fee, base_fee, priced_at) = match &commission {
            Some(c) if c.asset == rules.quote_asset => (c.amount, Decimal::ZERO, None),
            Some(c) if c.asset == rules.base_asset => {
                ((c.amount * price).normalize(), c.amount, None)
            }
            // A third asset (BNB): at its price when charged, when the shell found one.
            Some(c) => match self.commission_price {
                Some(p) => ((c.amount * p).normalize(), Decimal::ZERO, Some(p)),
                None => (Decimal::ZERO, Decimal::ZERO, None),
            },
            None => (Decimal::ZERO, Decimal::ZERO, None),
        };
        let commission = commission.filter(|c| c.asset != rules.quote_asset);
        Some((
            Execution {
                order_id: order.order_id,
                trade_id: None,
                price,
                quantity,
                fee,
                charged: None,
                time: self.time,
            },
            LiveFill {
                commission,
                commission_price: priced_at,
                base_fee,
                venue_trade_id: self.venue_trade_id,
            },
        ))
    }
}

/// What one position's step left in its place in the list.
enum Stepped {
    /// The position itself (it acted, or not).
    Kept,
    /// A fresh position, in place of a finished one.
    Replaced(u64),
    /// The position, and right after it the fresh position its rebuy added.
    Rebought(u64),
    /// Nothing: finished while shutting down, or refused.
    Dropped,
}

/// A working copy of the state that every decided event is applied to at once.
struct Decider<'a> {
    state: TradingState,
    rules: &'a SymbolRules,
    events: Vec<Event>,
}

impl<'a> Decider<'a> {
    fn new(state: &TradingState, rules: &'a SymbolRules) -> Self {
        Decider {
            state: state.clone(),
            rules,
            events: Vec::new(),
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

    fn on(&self) -> bool {
        self.state.status == TradingStatus::On
    }

    /// Every position's step on `trade`, in the order they are kept, then their new order.
    fn step_all<S: crate::strategy::Strategy + ?Sized>(
        &mut self,
        strategy: &S,
        trade: &TradeReceived,
        paper: Option<&PaperExchange>,
        fills: &[Execution],
    ) {
        let mut before = self.state.order.clone();
        if before.is_empty() && (self.on() || self.state.awaiting_first) {
            // Trading is on with no position: the first trade since the start adds the fresh
            // position the symbol starts with (as the book's trader does when it starts), and
            // it takes its step on this trade.
            before.push(self.add_fresh(trade, None));
        }
        let mut after = Vec::with_capacity(before.len() + 1);
        let mut added = 0usize;
        let mut dropped = 0usize;
        for id in &before {
            if self.state.status == TradingStatus::Off {
                return; // a refusal stopped trading: nothing more steps
            }
            let Some(position) = self.state.positions.get(id).cloned() else {
                continue;
            };
            let held = before.len() + added - dropped;
            match self.step(strategy, &position, trade, paper, fills, held) {
                Stepped::Kept => after.push(*id),
                Stepped::Replaced(fresh) => after.push(fresh),
                Stepped::Rebought(fresh) => {
                    added += 1;
                    after.push(fresh);
                    after.push(*id);
                }
                Stepped::Dropped => dropped += 1,
            }
        }
        if self.state.status == TradingStatus::Off {
            return;
        }
        if self.state.status == TradingStatus::Shutdown && self.state.positions.is_empty() {
            self.stop(
                StopReason::ShutdownCompleted,
                "shutdown completed",
                None,
                trade.trade_time,
            );
            return;
        }
        after.reverse();
        if after.len() >= 2 && !self.events.is_empty() {
            self.emit(PositionsOrdered {
                symbol: self.symbol(),
                trade_id: trade.trade_id,
                positions: after,
            });
        }
    }

    /// One position's step (the module's rules 1 to 6). `held` is how many positions the
    /// symbol holds at this point of the trade, for the chunks cap.
    fn step<S: crate::strategy::Strategy + ?Sized>(
        &mut self,
        strategy: &S,
        p: &Position,
        trade: &TradeReceived,
        paper: Option<&PaperExchange>,
        fills: &[Execution],
        held: usize,
    ) -> Stepped {
        let time = trade.trade_time;
        let (buy, sell) = (p.buy.as_ref(), p.sell.as_ref());
        let fill = fills
            .iter()
            .find(|f| p.orders().any(|o| o.order_id == f.order_id));
        match (buy, sell) {
            (None, _) => {
                return if self.place_buy(strategy, p, trade) {
                    Stepped::Kept
                } else {
                    Stepped::Dropped
                };
            }
            (Some(buy), None) if !buy.open && p.sell_rejected.is_none() => {
                if p.bought() > Decimal::ZERO {
                    self.place_sell(strategy, p, Some(trade.trade_id), time);
                    return Stepped::Kept;
                }
                // The exchange cancelled the BUY before anything executed.
                return self.finish(p, trade);
            }
            (Some(_), Some(sell)) if !sell.open && sell.filled() => return self.finish(p, trade),
            _ => {}
        }
        if let Some(fill) = fill {
            self.execution(fill);
            return Stepped::Kept;
        }
        // Live, an order the market went through (as `cross` sees it) is the venue's to fill:
        // waiting for its report is the step.
        let resting = sell.or(buy).filter(|o| o.open);
        let through = |o: &Order| PaperExchange::default().reaches(o.side, o.price, trade.price);
        if paper.is_none() && resting.is_some_and(through) {
            return Stepped::Kept;
        }
        let chunks = self.state.settings.chunks as usize;
        if self.on() && rebuy_candidate(strategy, p, trade) && held < chunks {
            self.emit(RebuyTriggered {
                symbol: self.symbol(),
                position_id: p.position_id,
                trade_id: trade.trade_id,
                price: trade.price,
                time,
            });
            let fresh = self.add_fresh(trade, Some(p.position_id));
            return Stepped::Rebought(fresh);
        }
        Stepped::Kept
    }

    /// Adds a fresh position with the settings in force; it steps on the next trade.
    fn add_fresh(&mut self, trade: &TradeReceived, rebuy_of: Option<u64>) -> u64 {
        let position_id = self.state.last_position_id + 1;
        self.emit(PositionOpened {
            symbol: self.symbol(),
            position_id,
            trade_id: trade.trade_id,
            settings: self.state.settings.clone(),
            rebuy_of,
            time: trade.trade_time,
        });
        position_id
    }

    /// A finished position: closed, and replaced by a fresh one (dropped when shutting down).
    fn finish(&mut self, p: &Position, trade: &TradeReceived) -> Stepped {
        self.close(p, Some(trade.trade_id), trade.trade_time);
        if self.on() {
            Stepped::Replaced(self.add_fresh(trade, None))
        } else {
            Stepped::Dropped
        }
    }

    /// Places a fresh position's BUY below `trade` (or records the refusal); whether the
    /// position is still there.
    fn place_buy<S: crate::strategy::Strategy + ?Sized>(
        &mut self,
        strategy: &S,
        p: &Position,
        trade: &TradeReceived,
    ) -> bool {
        let context = Context {
            state: &self.state,
            rules: self.rules,
        };
        let quote = strategy.buy(context, p, trade);
        let refused = match &quote {
            Ok(q) => self
                .rules
                .check_limit_order(q.price, q.quantity)
                .err()
                .map(|f| f.to_string()),
            Err(reason) => Some(reason.clone()),
        };
        let Quote { price, quantity } = quote.unwrap_or(Quote {
            price: Decimal::ZERO,
            quantity: Decimal::ZERO,
        });
        let Some(reason) = refused else {
            self.place(
                p.position_id,
                Some(trade.trade_id),
                Side::Buy,
                price,
                quantity,
                trade.trade_time,
            );
            return true;
        };
        self.emit(OrderRejected {
            symbol: self.symbol(),
            position_id: p.position_id,
            trade_id: Some(trade.trade_id),
            order_id: None,
            side: Side::Buy,
            price,
            quantity,
            reason,
            time: trade.trade_time,
        });
        self.after_refused_buy(p, trade.trade_time);
        false
    }

    /// After a position's BUY was refused (the position is gone): a refused rebuy drops that
    /// position only; any other stops trading, since it would be refused again on every trade.
    fn after_refused_buy(&mut self, p: &Position, time: Timestamp) {
        if p.rebuy_of.is_none() && self.on() {
            self.stop(StopReason::OrderRejected, "order rejected", None, time);
        } else if self.state.status == TradingStatus::Shutdown && self.state.positions.is_empty() {
            self.stop(
                StopReason::ShutdownCompleted,
                "shutdown completed",
                None,
                time,
            );
        }
    }

    fn place(
        &mut self,
        position_id: u64,
        trade_id: Option<u64>,
        side: Side,
        price: Decimal,
        quantity: Decimal,
        time: Timestamp,
    ) {
        let order_id = self.state.last_order_id + 1;
        self.emit(OrderPlaced {
            symbol: self.symbol(),
            position_id,
            trade_id,
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

    /// Records a paper fill, with its commission as charged when that was another asset.
    fn execution(&mut self, e: &Execution) {
        let charged = e.charged.as_ref().map(|c| {
            (
                Commission {
                    amount: c.amount,
                    asset: c.asset.clone(),
                },
                c.price,
            )
        });
        let (commission, commission_price) = charged.unzip();
        self.fill(
            e,
            LiveFill {
                commission,
                commission_price,
                ..LiveFill::default()
            },
        )
    }

    /// Records a fill, with what a live exchange charged when that was not the quote asset.
    /// What follows it (the SELL after a full BUY, the close after a full SELL) is the
    /// position's next step.
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
            commission_price: live.commission_price,
            base_fee: live.base_fee,
            venue_trade_id: live.venue_trade_id,
            status,
            time: e.time,
        });
    }

    fn place_sell<S: crate::strategy::Strategy + ?Sized>(
        &mut self,
        strategy: &S,
        position: &Position,
        trade_id: Option<u64>,
        time: Timestamp,
    ) {
        // What a live exchange took as commission out of the base asset is not there to sell.
        let base_fees = position.buy.as_ref().map_or(Decimal::ZERO, |o| o.base_fees);
        let quantity = if base_fees.is_zero() {
            position.bought()
        } else {
            formula::truncate(position.bought() - base_fees, self.rules.step_size)
                .unwrap_or_default()
        };
        let context = Context {
            state: &self.state,
            rules: self.rules,
        };
        let price = strategy.sell_price(context, position);
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
            None => self.place(
                position.position_id,
                trade_id,
                Side::Sell,
                price,
                quantity,
                time,
            ),
            Some(reason) => self.emit(OrderRejected {
                symbol: self.symbol(),
                position_id: position.position_id,
                trade_id,
                order_id: None,
                side: Side::Sell,
                price,
                quantity,
                reason,
                time,
            }),
        }
    }

    /// Closes a finished position: normally after its SELL filled, or with nothing sold when
    /// an exchange cancelled its BUY before anything executed.
    fn close(&mut self, position: &Position, trade_id: Option<u64>, time: Timestamp) {
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
            trade_id,
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
