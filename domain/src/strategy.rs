//! Strategies: the choices a symbol's trading makes, apart from the machinery that carries them
//! out.
//!
//! The trading aggregate ([`crate::trading`]) runs every strategy the same way: a symbol holds
//! positions, each a BUY and then a SELL of what the BUY bought; on each market trade every
//! position takes one step; fills come from the paper exchange or the venue's reports; filters,
//! stops, shutdowns and the event log are the aggregate's. A [`Strategy`] answers the three
//! questions that make a strategy what it is:
//! - where a fresh position's BUY goes ([`Strategy::buy`]);
//! - where its SELL goes once the BUY bought something ([`Strategy::sell_price`]);
//! - whether a trade makes a position add another one beside it ([`Strategy::rebuys`]), up to
//!   the settings' `chunks` positions at once.
//!
//! A symbol's settings name its strategy (`TradingSettings::strategy`); an engine, a backtest or
//! a paper run looks the name up in its [`Strategies`]. [`Naive`], the book's strategy, is the
//! one every engine knows; a program built on the library registers its own with
//! [`Strategies::with`] (see `examples/grid_strategy.rs`).
//!
//! A strategy is pure, like the rest of this crate: the same state and trade give the same
//! answer, so a backtest's decisions are a live run's, byte for byte.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::events::TradeReceived;
use crate::exchange::SymbolRules;
use crate::formula;
use crate::trading::{Position, TradingState};

/// What a strategy sees when it answers: the symbol's state (its positions, settings and
/// status, as of this step) and its filters (tick and step sizes for prices and quantities).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub state: &'a TradingState,
    pub rules: &'a SymbolRules,
}

/// An order's price and quantity, already on the symbol's tick and step grid. The aggregate
/// checks them against the filters (a refusal is recorded as `OrderRejected`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub price: Decimal,
    pub quantity: Decimal,
}

/// A trading strategy: see the [module](self) for how the aggregate asks it.
pub trait Strategy {
    /// The BUY of `position`, which has none yet, placed as `trade` steps it; or why there is
    /// none, recorded as the BUY's rejection (a rebuy's drops that position; any other stops
    /// the symbol's trading, as a filter's refusal does).
    fn buy(
        &self,
        context: Context<'_>,
        position: &Position,
        trade: &TradeReceived,
    ) -> Result<Quote, String>;

    /// The price of `position`'s SELL, once its BUY has bought something; the SELL's quantity
    /// is what the BUY bought (less what the venue took of it as commission). `None` when the
    /// price cannot be expressed (an overflow), recorded as the SELL's rejection.
    fn sell_price(&self, context: Context<'_>, position: &Position) -> Option<Decimal>;

    /// Whether `trade` makes `position` add a fresh position right after it. Asked of positions
    /// that have not asked before, while the symbol trades and holds fewer than `chunks`.
    fn rebuys(&self, position: &Position, trade: &TradeReceived) -> bool;
}

/// The book's naive strategy, its final `Formula`: buy a little below the trade, sell at the
/// profit target over both fees, add a position when the market falls `rebuy_interval` below a
/// BUY. Prices truncate toward zero onto the tick, quantities onto the step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Naive;

impl Naive {
    /// The name settings give it, and the default.
    pub const NAME: &'static str = "naive";
}

impl Strategy for Naive {
    fn buy(
        &self,
        context: Context<'_>,
        position: &Position,
        trade: &TradeReceived,
    ) -> Result<Quote, String> {
        let s = &position.settings;
        let rules = context.rules;
        let price = formula::buy_price(trade.price, s.buy_down_interval, rules.tick_size);
        let quantity =
            price.and_then(|price| formula::quantity(s.budget, s.chunks, price, rules.step_size));
        match (price, quantity) {
            (Some(price), Some(quantity)) => Ok(Quote { price, quantity }),
            _ => Err("the order's price or quantity overflows".to_owned()),
        }
    }

    fn sell_price(&self, context: Context<'_>, position: &Position) -> Option<Decimal> {
        let s = &position.settings;
        let buy = position.buy_price().unwrap_or_default();
        formula::sell_price(buy, s.fee, s.profit_target, context.rules.tick_size)
    }

    /// The book's `trigger_rebuy?`: strictly below buy x (1 - rebuy_interval), a limit the
    /// state keeps from when the BUY was placed ([`Position::rebuy_below`]).
    fn rebuys(&self, position: &Position, trade: &TradeReceived) -> bool {
        position
            .rebuy_below
            .is_some_and(|limit| trade.price < limit)
    }
}

/// A strategy an engine can share between its workers.
pub type SharedStrategy = Arc<dyn Strategy + Send + Sync>;

/// The strategies an engine, a backtest or a paper run knows, by the names settings give them.
/// Every one knows [`Naive`].
#[derive(Clone)]
pub struct Strategies {
    by_name: BTreeMap<String, SharedStrategy>,
}

impl Default for Strategies {
    fn default() -> Self {
        let mut by_name: BTreeMap<String, SharedStrategy> = BTreeMap::new();
        by_name.insert(Naive::NAME.to_owned(), Arc::new(Naive));
        Strategies { by_name }
    }
}

impl fmt::Debug for Strategies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_name.keys()).finish()
    }
}

impl Strategies {
    /// These strategies and `strategy` under `name` (in place of one of that name).
    pub fn with(
        mut self,
        name: impl Into<String>,
        strategy: impl Strategy + Send + Sync + 'static,
    ) -> Self {
        self.by_name.insert(name.into(), Arc::new(strategy));
        self
    }

    /// The strategy named `name`.
    pub fn get(&self, name: &str) -> Result<&SharedStrategy, UnknownStrategy> {
        self.by_name.get(name).ok_or_else(|| UnknownStrategy {
            name: name.to_owned(),
            known: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// The names known, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// Settings name a strategy this program does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy `{name}`: this program knows {known}; a strategy of your own runs in a program that registers it (see examples/grid_strategy.rs)")]
pub struct UnknownStrategy {
    pub name: String,
    pub known: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_program_knows_the_naive_strategy_and_names_what_it_knows() {
        let strategies = Strategies::default();
        assert!(strategies.get("naive").is_ok());
        let err = strategies.get("grid").err().unwrap();
        assert_eq!(err.name, "grid");
        assert_eq!(err.known, "naive");
        let more = strategies.with("grid", Naive);
        assert_eq!(more.names().collect::<Vec<_>>(), ["grid", "naive"]);
    }
}
