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
