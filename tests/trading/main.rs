//! Trading: the book's strategy order for order, the trading commands, backtests and
//! strategies, live trading against the simulated Binance, Binance's REST client, python-binance and ccxt against
//! `exchange serve`.
//!
//! One test binary per area: each module is one former test file.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

mod backtest;
mod binance_rest;
mod exchange_serve;
mod live;
mod python_binance;
mod trading;
mod trading_cli;
