//! An independent re-implementation of the book's final naive strategy (`Naive.Strategy` of the
//! monolith chapter), written the way the book writes it and deliberately sharing no code with
//! Hedgehog's: a list of positions, one decision per position per trade, the new list built by
//! prepending each result. Fills are the book's: a BUY fills when a trade prints strictly below
//! it, a SELL strictly above (the paper exchange's `cross` rule with whole fills).
//!
//! Used to check Hedgehog's decisions order for order on real days.

use rust_decimal::Decimal;

/// The settings the book's positions are made from.
#[derive(Debug, Clone, Copy)]
pub struct BookSettings {
    pub chunks: usize,
    pub budget: Decimal,
    pub buy_down_interval: Decimal,
    pub profit_interval: Decimal,
    pub rebuy_interval: Decimal,
    pub fee: Decimal,
    pub tick_size: Decimal,
    pub step_size: Decimal,
}

/// One order the book places: what, at what, for how much, on which trade, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookOrder {
    pub side: &'static str,
    pub price: Decimal,
    pub quantity: Decimal,
    pub placed_on_trade: u64,
    pub filled: bool,
}

#[derive(Debug, Clone)]
struct Position {
    budget: Decimal,
    /// Index into the orders placed so far.
    buy_order: Option<usize>,
    sell_order: Option<usize>,
    rebuy_notified: bool,
}

enum Decision {
    PlaceBuy,
    PlaceSell,
    FillBuy,
    FillSell,
    Finished,
    Exit,
    Rebuy,
    Skip,
}

fn div_int_mult(value: Decimal, unit: Decimal) -> Decimal {
    (value / unit).trunc() * unit
}

/// Runs the book's strategy over `trades` (trade id, price), in the order given, with trading
/// started before the first one and `shutdown_after` (a trade id) asking for a shutdown.
pub fn run(
    trades: &[(u64, Decimal)],
    s: &BookSettings,
    shutdown_after: Option<u64>,
) -> Vec<BookOrder> {
    let fresh = || Position {
        budget: s.budget / Decimal::from(s.chunks as u64),
        buy_order: None,
        sell_order: None,
        rebuy_notified: false,
    };
    let mut orders: Vec<BookOrder> = Vec::new();
    let mut positions = vec![fresh()];
    let mut shutdown = false;
    for &(trade_id, price) in trades {
        if positions.is_empty() {
            break; // trading turned off
        }
        // generate_decisions: head of `results` is the latest result.
        let mut decisions: Vec<(Decision, Position)> = Vec::new();
        for (i, position) in positions.iter().enumerate() {
            let current = positions.len() - i + decisions.len();
            let buy = position.buy_order.map(|o| &orders[o]);
            let sell = position.sell_order.map(|o| &orders[o]);
            let decision = match (buy, sell) {
                (None, _) => Decision::PlaceBuy,
                (Some(b), None) if b.filled => Decision::PlaceSell,
                (Some(b), None) if price < b.price => Decision::FillBuy,
                (Some(_), Some(s)) if s.filled && !shutdown => Decision::Finished,
                (Some(_), Some(s)) if s.filled => Decision::Exit,
                (Some(_), Some(s)) if price > s.price => Decision::FillSell,
                (Some(b), _)
                    if !position.rebuy_notified
                        && price < b.price - b.price * s.rebuy_interval
                        && !shutdown
                        && current < s.chunks =>
                {
                    Decision::Rebuy
                }
                _ => Decision::Skip,
            };
            match decision {
                Decision::Exit => {}
                Decision::Rebuy => {
                    let mut notified = position.clone();
                    notified.rebuy_notified = true;
                    decisions.insert(0, (Decision::Rebuy, position.clone()));
                    decisions.insert(0, (Decision::Skip, notified));
                }
                other => decisions.insert(0, (other, position.clone())),
            }
        }
        // execute_decision, each result in its decision's place.
        let mut results = Vec::with_capacity(decisions.len());
        for (decision, mut position) in decisions {
            match decision {
                Decision::PlaceBuy => {
                    let exact = price - price * s.buy_down_interval;
                    let buy_price = div_int_mult(exact, s.tick_size);
                    let quantity = div_int_mult(position.budget / buy_price, s.step_size);
                    orders.push(BookOrder {
                        side: "BUY",
                        price: buy_price,
                        quantity,
                        placed_on_trade: trade_id,
                        filled: false,
                    });
                    position.buy_order = Some(orders.len() - 1);
                }
                Decision::PlaceSell => {
                    let buy = &orders[position.buy_order.expect("bought")];
                    let fee = Decimal::ONE + s.fee;
                    let gross = buy.price * fee * (Decimal::ONE + s.profit_interval) * fee;
                    let quantity = buy.quantity;
                    orders.push(BookOrder {
                        side: "SELL",
                        price: div_int_mult(gross, s.tick_size),
                        quantity,
                        placed_on_trade: trade_id,
                        filled: false,
                    });
                    position.sell_order = Some(orders.len() - 1);
                }
                Decision::FillBuy => orders[position.buy_order.expect("buy")].filled = true,
                Decision::FillSell => orders[position.sell_order.expect("sell")].filled = true,
                Decision::Finished | Decision::Rebuy => position = fresh(),
                Decision::Exit | Decision::Skip => {}
            }
            results.push(position);
        }
        positions = results;
        if shutdown_after == Some(trade_id) {
            shutdown = true;
        }
    }
    orders
}
