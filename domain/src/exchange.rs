//! What an exchange allows per symbol: the filters every order must pass.
//!
//! Loaded by the shell from Binance's exchange info (a bundled snapshot, a file, or the live
//! endpoint); the domain only reads it, so decisions stay pure functions of data.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::types::Symbol;

/// The trading rules of one symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolRules {
    pub symbol: Symbol,
    /// `TRADING`, `BREAK`, ...
    pub status: String,
    pub base_asset: String,
    pub quote_asset: String,
    /// PRICE_FILTER: prices are multiples of `tick_size` within [min_price, max_price].
    pub tick_size: Decimal,
    pub min_price: Decimal,
    pub max_price: Decimal,
    /// LOT_SIZE: quantities are multiples of `step_size` within [min_qty, max_qty].
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    /// NOTIONAL (or the older MIN_NOTIONAL): price × quantity must reach this.
    pub min_notional: Decimal,
    pub max_notional: Option<Decimal>,
}

impl SymbolRules {
    pub fn is_trading(&self) -> bool {
        self.status == "TRADING"
    }

    /// Checks a LIMIT order against PRICE_FILTER, LOT_SIZE and NOTIONAL the way Binance does,
    /// so that an order the exchange would refuse is refused here first, with the same words.
    pub fn check_limit_order(
        &self,
        price: Decimal,
        quantity: Decimal,
    ) -> Result<(), FilterFailure> {
        let fail = |filter, detail: String| Err(FilterFailure { filter, detail });
        if price <= Decimal::ZERO {
            return fail("PRICE_FILTER", format!("price {price} is not positive"));
        }
        if !self.min_price.is_zero() && price < self.min_price {
            return fail(
                "PRICE_FILTER",
                format!("price {price} is below minPrice {}", self.min_price),
            );
        }
        if !self.max_price.is_zero() && price > self.max_price {
            return fail(
                "PRICE_FILTER",
                format!("price {price} is above maxPrice {}", self.max_price),
            );
        }
        if !on_grid(price, self.min_price, self.tick_size) {
            return fail(
                "PRICE_FILTER",
                format!(
                    "price {price} is not a multiple of tickSize {}",
                    self.tick_size
                ),
            );
        }
        self.check_quantity(quantity)?;
        let notional = price * quantity;
        if notional < self.min_notional {
            return fail(
                "NOTIONAL",
                format!(
                    "notional {notional} is below minNotional {}",
                    self.min_notional
                ),
            );
        }
        if let Some(max) = self.max_notional.filter(|m| !m.is_zero()) {
            if notional > max {
                return fail(
                    "NOTIONAL",
                    format!("notional {notional} is above maxNotional {max}"),
                );
            }
        }
        Ok(())
    }
}

impl SymbolRules {
    /// Checks a quantity against LOT_SIZE (every order's, MARKET ones included).
    pub fn check_quantity(&self, quantity: Decimal) -> Result<(), FilterFailure> {
        check_lot(
            "LOT_SIZE",
            quantity,
            self.min_qty,
            self.max_qty,
            self.step_size,
        )
    }
}

/// A quantity within [min, max] (a zero max: no bound) on the grid of `step` from `min`, as
/// LOT_SIZE and MARKET_LOT_SIZE check it; `filter` names the one failed.
pub fn check_lot(
    filter: &'static str,
    quantity: Decimal,
    min: Decimal,
    max: Decimal,
    step: Decimal,
) -> Result<(), FilterFailure> {
    let fail = |detail: String| Err(FilterFailure { filter, detail });
    if quantity <= Decimal::ZERO || quantity < min {
        return fail(format!("quantity {quantity} is below minQty {min}"));
    }
    if !max.is_zero() && quantity > max {
        return fail(format!("quantity {quantity} is above maxQty {max}"));
    }
    if !on_grid(quantity, min, step) {
        return fail(format!(
            "quantity {quantity} is not a multiple of stepSize {step}"
        ));
    }
    Ok(())
}

/// `(value - base) % unit == 0`, Binance's grid rule; a zero unit disables it.
fn on_grid(value: Decimal, base: Decimal, unit: Decimal) -> bool {
    unit.is_zero() || ((value - base) % unit).is_zero()
}

/// An order the exchange's filters refuse, in Binance's words (`Filter failure: LOT_SIZE`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Filter failure: {filter} ({detail})")]
pub struct FilterFailure {
    pub filter: &'static str,
    pub detail: String,
}

/// The rules of every symbol an exchange lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExchangeRules {
    /// Exchange time of the snapshot, ms.
    pub server_time: i64,
    pub symbols: BTreeMap<Symbol, SymbolRules>,
}

impl ExchangeRules {
    pub fn get(&self, symbol: &Symbol) -> Option<&SymbolRules> {
        self.symbols.get(symbol)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// BTCUSDT's filters in the bundled 2024-09-08 snapshot.
    pub(crate) fn btcusdt() -> SymbolRules {
        SymbolRules {
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            status: "TRADING".into(),
            base_asset: "BTC".into(),
            quote_asset: "USDT".into(),
            tick_size: dec!(0.01),
            min_price: dec!(0.01),
            max_price: dec!(1000000),
            step_size: dec!(0.00001),
            min_qty: dec!(0.00001),
            max_qty: dec!(9000),
            min_notional: dec!(5),
            max_notional: Some(dec!(9000000)),
        }
    }

    #[test]
    fn filters_refuse_what_binance_refuses() {
        let r = btcusdt();
        r.check_limit_order(dec!(60000.01), dec!(0.001)).unwrap();
        assert_eq!(
            r.check_limit_order(dec!(60000.005), dec!(0.001))
                .unwrap_err()
                .filter,
            "PRICE_FILTER"
        );
        assert_eq!(
            r.check_limit_order(dec!(60000), dec!(0.000015))
                .unwrap_err()
                .filter,
            "LOT_SIZE"
        );
        assert_eq!(
            r.check_limit_order(dec!(60000), dec!(0))
                .unwrap_err()
                .filter,
            "LOT_SIZE"
        );
        let err = r.check_limit_order(dec!(60000), dec!(0.00001)).unwrap_err();
        assert_eq!(err.filter, "NOTIONAL");
        assert!(
            err.to_string().starts_with("Filter failure: NOTIONAL"),
            "{err}"
        );
    }
}
