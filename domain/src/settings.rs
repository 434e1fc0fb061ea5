//! Per-symbol trading settings of the naive strategy, with the book's defaults.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Settings that shape every position a symbol opens.
///
/// A position copies the settings in force when it opens, so changing them later never
/// alters a position already running (the book's rule, kept explicit here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingSettings {
    /// How many positions may be open at once; the budget is split evenly across them.
    pub chunks: u32,
    /// Quote-asset budget for the symbol (e.g. USDT).
    pub budget: Decimal,
    /// How far below the trigger price the BUY is placed (0.0001 = 0.01 %).
    pub buy_down_interval: Decimal,
    /// Profit wanted on top of both fees.
    pub profit_target: Decimal,
    /// How far below the buy price a trade must go to open one more position.
    pub rebuy_interval: Decimal,
    /// Fee rate charged per side (0.001 = 0.1 %, Binance's regular rate).
    pub fee: Decimal,
}

impl Default for TradingSettings {
    fn default() -> Self {
        TradingSettings {
            chunks: 5,
            budget: Decimal::new(1000, 0),
            buy_down_interval: Decimal::new(1, 4),
            profit_target: Decimal::new(1, 3),
            rebuy_interval: Decimal::new(1, 3),
            fee: Decimal::new(1, 3),
        }
    }
}

/// A setting that cannot be used, named so a user can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{field}` = {value}: {reason}")]
pub struct InvalidSettings {
    pub field: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl TradingSettings {
    /// Checks the values that make no sense whatever the symbol (exchange filters, such as a
    /// chunk below the minimum notional, are checked where the filters are known).
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        if self.chunks == 0 {
            return Err(InvalidSettings {
                field: "chunks",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        let positive = [("budget", self.budget)];
        for (field, value) in positive {
            if value <= Decimal::ZERO {
                return Err(InvalidSettings {
                    field,
                    value: value.to_string(),
                    reason: "must be greater than 0",
                });
            }
        }
        let rates = [
            ("buy_down_interval", self.buy_down_interval),
            ("profit_target", self.profit_target),
            ("rebuy_interval", self.rebuy_interval),
            ("fee", self.fee),
        ];
        for (field, value) in rates {
            if value < Decimal::ZERO || value >= Decimal::ONE {
                return Err(InvalidSettings {
                    field,
                    value: value.to_string(),
                    reason: "must be a fraction in [0, 1)",
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn defaults_are_the_books() {
        let s = TradingSettings::default();
        assert_eq!(s.chunks, 5);
        assert_eq!(s.budget, dec!(1000));
        assert_eq!(s.buy_down_interval, dec!(0.0001));
        assert_eq!(s.profit_target, dec!(0.001));
        assert_eq!(s.rebuy_interval, dec!(0.001));
        assert_eq!(s.fee, dec!(0.001));
        s.validate().unwrap();
    }

    #[test]
    fn invalid_values_name_the_field() {
        let s = TradingSettings {
            chunks: 0,
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "chunks");
        let s = TradingSettings {
            budget: dec!(-1),
            ..Default::default()
        };
        let err = s.validate().unwrap_err();
        assert_eq!(err.field, "budget");
        assert!(err.to_string().contains("-1"));
        let s = TradingSettings {
            fee: dec!(1.5),
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "fee");
    }
}
