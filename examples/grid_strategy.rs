//! A strategy of your own: a fixed price grid, written outside the library against its
//! `Strategy` trait and backtested through the library on a real day of trades (the book's
//! ADAUSDT dump of 2019-06-03, a fixture), beside the book's naive strategy on the same day.
//!
//! `cargo run --release --example grid_strategy [-- FILE...]` (any trade files `hedgehog
//! backtest --data` reads; default: the fixture).
//!
//! How the grid maps onto the engine's positions (each a BUY, then a SELL of what it bought):
//! - a fresh position's BUY goes on the highest grid level at or below the trade that no other
//!   position holds;
//! - its SELL goes one level up;
//! - when the market falls below a position's level, the position adds a fresh one (which takes
//!   the next level down), up to `chunks` positions: set `chunks` to the number of levels.
//!
//! Everything else (orders, paper fills, fees, filters, stops, the event log, the report) is
//! the library's, exactly as for the built-in strategy.

use std::path::PathBuf;
use std::sync::Arc;

use hedgehog_backtest::{BacktestOptions, Outcome, Source};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::formula;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::strategy::{Context, Quote, Strategies, Strategy};
use hedgehog_domain::trading::Position;
use hedgehog_domain::{Market, Symbol, TradingSettings};
use hedgehog_projections::query::Window;
use rust_decimal::Decimal;

/// The fixture the example runs on when given no files.
pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ADAUSDT-2019-06-03.csv.gz"
);

/// A fixed grid: `levels` prices `spacing` apart from `lowest` up.
#[derive(Debug, Clone)]
pub struct Grid {
    pub lowest: Decimal,
    pub spacing: Decimal,
    pub levels: u32,
}

impl Grid {
    /// The grid's levels, lowest first.
    pub fn levels(&self) -> impl Iterator<Item = Decimal> + '_ {
        (0..self.levels).map(|i| self.lowest + self.spacing * Decimal::from(i))
    }
}

impl Strategy for Grid {
    fn buy(
        &self,
        context: Context<'_>,
        position: &Position,
        trade: &TradeReceived,
    ) -> Result<Quote, String> {
        let held: Vec<Decimal> = context
            .state
            .positions
            .values()
            .filter_map(Position::buy_price)
            .collect();
        let level = self
            .levels()
            .filter(|level| *level <= trade.price && !held.contains(level))
            .last()
            .ok_or_else(|| {
                format!(
                    "no free grid level at or below {} (the grid spans {} to {})",
                    trade.price,
                    self.lowest,
                    self.lowest + self.spacing * Decimal::from(self.levels.saturating_sub(1))
                )
            })?;
        let s = &position.settings;
        let rules = context.rules;
        let price = formula::truncate(level, rules.tick_size).ok_or("the level overflows")?;
        let quantity = formula::quantity(s.budget, s.chunks, price, rules.step_size)
            .ok_or("the quantity overflows")?;
        Ok(Quote { price, quantity })
    }

    fn sell_price(&self, context: Context<'_>, position: &Position) -> Option<Decimal> {
        let buy = position.buy_price()?;
        formula::truncate(buy + self.spacing, context.rules.tick_size)
    }

    fn rebuys(&self, position: &Position, trade: &TradeReceived) -> bool {
        position
            .buy_price()
            .is_some_and(|level| trade.price < level)
    }
}

/// The grid this example trades ADAUSDT's day with: 10 levels 0.001 apart from 0.088 (the day
/// ran from 0.087 to 0.0983).
pub fn ada_grid() -> Grid {
    Grid {
        lowest: Decimal::new(88, 3),
        spacing: Decimal::new(1, 3),
        levels: 10,
    }
}

/// Backtests ADAUSDT on `files` with the strategy named `strategy` among the built-in ones and
/// `grid` (registered as "grid"), a budget of 1,000 USDT in one chunk per level.
pub async fn backtest(files: Vec<PathBuf>, strategy: &str, grid: Grid) -> anyhow::Result<Outcome> {
    let symbol = Symbol::parse("ADAUSDT")?;
    let rules = hedgehog_binance::exchange_info::bundled()?
        .get(&symbol)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("ADAUSDT is not in the bundled exchange info"))?;
    let settings = TradingSettings {
        strategy: strategy.to_owned(),
        chunks: grid.levels,
        budget: Decimal::new(1000, 0),
        ..TradingSettings::default()
    };
    let options = BacktestOptions {
        symbol,
        market: Market::Spot,
        source: Source::Files {
            files,
            format: None,
        },
        window: Window::default(),
        settings,
        strategies: Strategies::default().with("grid", grid),
        paper: PaperExchange::default(),
        rules,
        keep: None,
        speed: None,
        record_orders: true,
        fee_asset_data: Vec::new(),
    };
    let outcome = hedgehog_backtest::run(None, options, Arc::new(|_| {})).await?;
    Ok(outcome)
}

#[allow(dead_code)] // a test includes this file for its strategy, not its `main`
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        files.push(PathBuf::from(FIXTURE));
    }
    let grid = ada_grid();
    println!(
        "grid: {} levels {} apart from {}",
        grid.levels, grid.spacing, grid.lowest
    );
    for strategy in ["grid", "naive"] {
        let outcome = backtest(files.clone(), strategy, grid.clone()).await?;
        let s = &outcome.report.summary;
        println!(
            "{strategy:>5}: {} trades, {} orders placed, {} filled, {} positions closed, \
             realised {} USDT after {} USDT fees, equity {} USDT (fingerprint {}...)",
            s.trades,
            s.orders_placed,
            s.orders_filled,
            s.positions_closed,
            s.realized_profit.round_dp(4).normalize(),
            s.fees.round_dp(4).normalize(),
            s.equity.round_dp(4).normalize(),
            &outcome.report.fingerprint[..12],
        );
    }
    Ok(())
}
