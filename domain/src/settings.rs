//! Per-symbol trading settings: the strategy a symbol runs and the figures that shape its
//! positions, with the book's defaults.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Settings that shape every position a symbol opens.
///
/// A position copies the settings in force when it opens, so changing them later never
/// alters a position already running (the book's rule, kept explicit here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingSettings {
    /// The strategy, by the name a program's [`Strategies`](crate::strategy::Strategies) know
    /// it by. Left out of the encoding when it is the naive strategy, so the events of the
    /// logs written before strategies had names encode as they always did.
    #[serde(default = "naive", skip_serializing_if = "is_naive")]
    pub strategy: String,
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

fn naive() -> String {
    crate::strategy::Naive::NAME.to_owned()
}

fn is_naive(name: &String) -> bool {
    name == crate::strategy::Naive::NAME
}

impl Default for TradingSettings {
    fn default() -> Self {
        TradingSettings {
            strategy: naive(),
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
        let name_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if self.strategy.is_empty()
            || self.strategy.len() > 64
            || !self.strategy.chars().all(name_char)
        {
            return Err(InvalidSettings {
                field: "strategy",
                value: format!("{:?}", self.strategy),
                reason: "must be a name of 1 to 64 characters among a-z, 0-9, - and _",
            });
        }
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
        let s = TradingSettings {
            strategy: "Grid Bot".into(),
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().field, "strategy");
    }

    #[test]
    fn the_naive_strategy_is_left_out_of_the_encoding_and_others_are_kept() {
        let naive = TradingSettings::default();
        let text = serde_json::to_string(&naive).unwrap();
        assert!(!text.contains("strategy"), "{text}");
        assert_eq!(
            serde_json::from_str::<TradingSettings>(&text).unwrap(),
            naive
        );
        let grid = TradingSettings {
            strategy: "grid".into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&grid).unwrap();
        assert!(text.contains(r#""strategy":"grid""#), "{text}");
        assert_eq!(
            serde_json::from_str::<TradingSettings>(&text).unwrap(),
            grid
        );
    }
}
