//! Builders for tests, examples and benchmarks: one way to write a market trade, instead of a
//! struct literal of eleven fields in every test file.
//!
//! Compiled for the crate's own tests and with the `testkit` feature (the other crates enable
//! it for their tests only): nothing here is on an input path.

use rust_decimal::Decimal;

use crate::events::TradeReceived;
use crate::types::{Symbol, Timestamp, TradeKind};
use crate::Event;

/// A market trade of `symbol` with `trade_id`: price 1, quantity 1, at time 0, the seller the
/// maker, no order ids. Change what matters to the test:
/// `trade("BTCUSDT", 7).price(dec!(60000)).at(1_700_000_000_000).build()`.
///
/// # Panics
/// When `symbol` is not a symbol (a test's typo).
pub fn trade(symbol: &str, trade_id: u64) -> TradeBuilder {
    let symbol = Symbol::parse(symbol)
        .unwrap_or_else(|e| panic!("testkit::trade: {symbol:?} is not a symbol: {e}"));
    TradeBuilder(TradeReceived {
        symbol,
        trade_id,
        price: Decimal::ONE,
        quantity: Decimal::ONE,
        trade_time: Timestamp(0),
        event_time: Timestamp(0),
        buyer_is_maker: false,
        buyer_order_id: None,
        seller_order_id: None,
        first_trade_id: None,
        kind: TradeKind::Market,
    })
}

/// A market trade of `symbol` printed at `time` (ms) for `quantity` at `price`, its buyer the
/// maker or not: the fields candles and tickers read, in one call.
pub fn printed(
    symbol: &str,
    trade_id: u64,
    time: i64,
    price: Decimal,
    quantity: Decimal,
    buyer_is_maker: bool,
) -> TradeReceived {
    trade(symbol, trade_id)
        .price(price)
        .quantity(quantity)
        .at(time)
        .buyer_is_maker(buyer_is_maker)
        .build()
}

/// A trade being built; see [`trade`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TradeBuilder(TradeReceived);

impl TradeBuilder {
    pub fn price(mut self, price: Decimal) -> Self {
        self.0.price = price;
        self
    }

    pub fn quantity(mut self, quantity: Decimal) -> Self {
        self.0.quantity = quantity;
        self
    }

    /// Trade and event time, ms since the epoch.
    pub fn at(mut self, ms: i64) -> Self {
        self.0.trade_time = Timestamp(ms);
        self.0.event_time = Timestamp(ms);
        self
    }

    /// The event time alone (the stream's, a little after the trade's).
    pub fn event_time(mut self, ms: i64) -> Self {
        self.0.event_time = Timestamp(ms);
        self
    }

    pub fn buyer_is_maker(mut self, maker: bool) -> Self {
        self.0.buyer_is_maker = maker;
        self
    }

    pub fn order_ids(mut self, buyer: Option<u64>, seller: Option<u64>) -> Self {
        self.0.buyer_order_id = buyer;
        self.0.seller_order_id = seller;
        self
    }

    pub fn build(self) -> TradeReceived {
        self.0
    }
}

impl From<TradeBuilder> for TradeReceived {
    fn from(b: TradeBuilder) -> Self {
        b.0
    }
}

impl From<TradeBuilder> for Event {
    fn from(b: TradeBuilder) -> Self {
        Event::TradeReceived(b.0)
    }
}
