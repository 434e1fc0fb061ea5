//! The naive strategy's arithmetic, as plain functions (the book's "Formula" chapter).
//!
//! Every value is an exact decimal; "truncate" rounds toward zero to a multiple of the symbol's
//! tick (prices) or step (quantities), which is what Binance's filters accept and what keeps a
//! BUY from ever costing more than its chunk. A result that would overflow is `None`, never a
//! wrapped or rounded number.

use rust_decimal::Decimal;

/// Rounds `value` toward zero to a multiple of `unit`, keeping `unit`'s scale (so a price on a
/// 0.0001 tick prints with four decimals). A `unit` of zero means "no constraint".
pub fn truncate(value: Decimal, unit: Decimal) -> Option<Decimal> {
    if unit.is_zero() {
        return Some(value);
    }
    let steps = value.checked_div(unit)?.trunc();
    let mut out = steps.checked_mul(unit)?;
    if out.scale() < unit.scale() {
        out.rescale(unit.scale());
    }
    Some(out)
}

/// Where the BUY goes: `truncate_tick(p - p * buy_down_interval)`, `p` the trigger price.
pub fn buy_price(
    trigger_price: Decimal,
    buy_down_interval: Decimal,
    tick: Decimal,
) -> Option<Decimal> {
    let down = trigger_price.checked_mul(buy_down_interval)?;
    truncate(trigger_price.checked_sub(down)?, tick)
}

/// How much one chunk buys: `truncate_step((budget / chunks) / buy_price)`.
pub fn quantity(
    budget: Decimal,
    chunks: u32,
    buy_price: Decimal,
    step: Decimal,
) -> Option<Decimal> {
    if chunks == 0 || buy_price <= Decimal::ZERO {
        return None;
    }
    let chunk = budget.checked_div(Decimal::from(chunks))?;
    truncate(chunk.checked_div(buy_price)?, step)
}

/// Where the SELL goes: both fees and the profit target on top of the buy price,
/// `truncate_tick(buy * (1 + fee) * (1 + profit_target) * (1 + fee))`.
pub fn sell_price(
    buy_price: Decimal,
    fee: Decimal,
    profit_target: Decimal,
    tick: Decimal,
) -> Option<Decimal> {
    let fee_factor = Decimal::ONE.checked_add(fee)?;
    let gross = buy_price
        .checked_mul(fee_factor)?
        .checked_mul(Decimal::ONE.checked_add(profit_target)?)?
        .checked_mul(fee_factor)?;
    truncate(gross, tick)
}

/// The price a later trade must go *below* (strictly) to trigger a rebuy:
/// `buy - buy * rebuy_interval`.
pub fn rebuy_price(buy_price: Decimal, rebuy_interval: Decimal) -> Option<Decimal> {
    buy_price.checked_sub(buy_price.checked_mul(rebuy_interval)?)
}

/// Whether `trade_price` triggers a rebuy of a position bought at `buy_price`.
pub fn triggers_rebuy(trade_price: Decimal, buy_price: Decimal, rebuy_interval: Decimal) -> bool {
    rebuy_price(buy_price, rebuy_interval).is_some_and(|limit| trade_price < limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    // The vectors below are the book's own tests (Naive.Strategy / Naive.Formula).

    #[test]
    fn book_buy_price_and_quantity() {
        let buy = buy_price(dec!(1.0), dec!(0.01), dec!(0.0001)).unwrap();
        assert_eq!(buy, dec!(0.99));
        assert_eq!(buy.to_string(), "0.9900", "keeps the tick's scale");
        assert_eq!(quantity(dec!(10), 1, buy, dec!(1)).unwrap(), dec!(10));
    }

    #[test]
    fn book_sell_price() {
        let sell = sell_price(dec!(1.00), dec!(0.001), dec!(0.01), dec!(0.0001)).unwrap();
        assert_eq!(sell.to_string(), "1.0120");
    }

    #[test]
    fn book_chunked_budget() {
        let buy = buy_price(dec!(1.00), dec!(0.2), dec!(0.000001)).unwrap();
        assert_eq!(buy, dec!(0.8));
        let qty = quantity(dec!(200), 5, buy, dec!(0.001)).unwrap();
        assert_eq!(qty.to_string(), "50.000");
    }

    #[test]
    fn book_rebuy_is_strictly_below() {
        assert!(triggers_rebuy(dec!(0.89), dec!(1.00), dec!(0.1)));
        assert!(!triggers_rebuy(dec!(0.9), dec!(1.00), dec!(0.1)));
    }

    #[test]
    fn truncation_goes_toward_zero_on_the_grid() {
        assert_eq!(truncate(dec!(1.23456), dec!(0.01)).unwrap(), dec!(1.23));
        assert_eq!(truncate(dec!(0.00999), dec!(0.01)).unwrap(), dec!(0));
        assert_eq!(truncate(dec!(7.9), dec!(2)).unwrap(), dec!(6));
        assert_eq!(truncate(dec!(1.5), dec!(0)).unwrap(), dec!(1.5));
        assert_eq!(quantity(dec!(10), 0, dec!(1), dec!(1)), None);
    }
}
