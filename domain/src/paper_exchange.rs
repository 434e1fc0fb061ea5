//! The paper exchange: fills resting limit orders from the market's trades (the book's
//! BinanceMock, done properly).
//!
//! It is a pure function of the open orders and one trade, so live paper trading and a backtest
//! run the very same code and a replay gives the same fills. Two fill rules:
//! - `cross` (the default, conservative): a BUY fills when a trade prints *below* its price, a
//!   SELL when a trade prints *above* it: the market went through the order.
//! - `touch` (the book's second edition): a trade *at* the price fills too. Optimistic: on a grid
//!   strategy it can flip results, since at that price the order may well be behind the queue.
//!
//! Full fills by default; with `partial_fills` a trade fills at most its own quantity, shared by
//! the orders it reaches in price-time priority. A fill is at the order's limit price (a resting
//! order is the maker) and is charged the order's fee rate on its quote value.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::events::TradeReceived;
use crate::types::{Side, Symbol, Timestamp};

/// When a trade's price fills a resting limit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillModel {
    /// The trade must go through the order's price.
    #[default]
    Cross,
    /// A trade at the order's price fills it too.
    Touch,
}

impl fmt::Display for FillModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FillModel::Cross => "cross",
            FillModel::Touch => "touch",
        })
    }
}

/// How the paper exchange fills; part of a backtest's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PaperExchange {
    pub fill: FillModel,
    /// Cap each fill at the trade's quantity instead of filling the whole order.
    pub partial_fills: bool,
    /// Charge commissions in this asset instead of the quote asset (Binance's BNB discount).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_asset: Option<FeeAsset>,
}

/// An asset commissions are charged in, with its price in the quote asset as of now (the shell
/// moves it along with the market: time enters as data).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FeeAsset {
    pub asset: String,
    /// Quote asset per unit of `asset`; `None` until a price is known.
    pub price: Option<Decimal>,
}

impl FeeAsset {
    /// `asset` (any case: assets are upper-case on Binance) at `price`.
    pub fn new(asset: &str, price: Option<Decimal>) -> FeeAsset {
        FeeAsset {
            asset: asset.to_ascii_uppercase(),
            price,
        }
    }
}

/// A commission charged in an asset other than the quote asset, as charged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    pub amount: Decimal,
    pub asset: String,
    /// Its price in the quote asset when it was charged.
    pub price: Decimal,
}

/// Binance charges commissions to 8 decimals.
const COMMISSION_DP: u32 = 8;

/// What the paper exchange needs to know of an open order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestingOrder {
    pub order_id: u64,
    pub side: Side,
    pub price: Decimal,
    /// Quantity not yet executed.
    pub remaining: Decimal,
    /// Commission rate charged on each fill's quote value.
    pub fee_rate: Decimal,
}

/// One fill reported by an exchange (the paper one here, Binance's `executionReport` later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub order_id: u64,
    /// The market trade that filled it, when known.
    pub trade_id: Option<u64>,
    pub price: Decimal,
    pub quantity: Decimal,
    /// Commission for this fill, in the quote asset (its quote value when `charged` says it
    /// was taken in another asset).
    pub fee: Decimal,
    /// The commission as charged in another asset, if it was.
    pub charged: Option<Charged>,
    pub time: Timestamp,
}

impl PaperExchange {
    /// Whether a trade at `trade_price` reaches an order on `side` at `order_price`.
    pub fn reaches(&self, side: Side, order_price: Decimal, trade_price: Decimal) -> bool {
        match (side, self.fill) {
            (Side::Buy, FillModel::Cross) => trade_price < order_price,
            (Side::Buy, FillModel::Touch) => trade_price <= order_price,
            (Side::Sell, FillModel::Cross) => trade_price > order_price,
            (Side::Sell, FillModel::Touch) => trade_price >= order_price,
        }
    }

    /// The fills one trade gives the resting orders, in the order they happen.
    pub fn match_trade(&self, orders: &[RestingOrder], trade: &TradeReceived) -> Vec<Execution> {
        if !trade.kind.is_market() {
            return Vec::new();
        }
        let mut reached: Vec<&RestingOrder> = orders
            .iter()
            .filter(|o| o.remaining > Decimal::ZERO && self.reaches(o.side, o.price, trade.price))
            .collect();
        // Price-time priority: best price first (highest bid, lowest ask), then the older order.
        reached.sort_by(|a, b| {
            match a.side {
                Side::Buy => b.price.cmp(&a.price),
                Side::Sell => a.price.cmp(&b.price),
            }
            .then(a.order_id.cmp(&b.order_id))
        });
        // A trade prints on one side of the book; each side gets the trade's full liquidity.
        let mut liquidity = [trade.quantity, trade.quantity];
        let mut out = Vec::new();
        for order in reached {
            let left = &mut liquidity[usize::from(order.side == Side::Sell)];
            let quantity = if self.partial_fills {
                order.remaining.min(*left)
            } else {
                order.remaining
            };
            if quantity <= Decimal::ZERO {
                continue;
            }
            *left -= quantity.min(*left);
            // Exact, without the trailing zeros a product of scaled decimals carries.
            let mut fee = (order.price * quantity * order.fee_rate).normalize();
            let charged = self.fee_asset.as_ref().and_then(|a| {
                let price = a.price.filter(|p| *p > Decimal::ZERO)?;
                let amount = (fee / price).round_dp(COMMISSION_DP).normalize();
                fee = (amount * price).normalize();
                Some(Charged {
                    amount,
                    asset: a.asset.clone(),
                    price,
                })
            });
            out.push(Execution {
                order_id: order.order_id,
                trade_id: Some(trade.trade_id),
                price: order.price,
                quantity,
                fee,
                charged,
                time: trade.trade_time,
            });
        }
        out
    }
}

/// A client order id in Binance's shape (22 letters and digits), derived from the symbol and
/// the order id so that a replay gives the same ids and no two orders of a symbol share one.
pub fn client_order_id(symbol: &Symbol, order_id: u64) -> String {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6865_6467_6568_6f67_2d6f_7264_6572_7331);
    const DIGITS: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let id = Uuid::new_v5(&NAMESPACE, format!("{symbol}:{order_id}").as_bytes());
    let mut n = id.as_u128();
    let mut out = [b'0'; 22];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::TradeKind;
    use rust_decimal_macros::dec;

    fn trade(price: Decimal, quantity: Decimal) -> TradeReceived {
        TradeReceived {
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            trade_id: 42,
            price,
            quantity,
            trade_time: Timestamp(1000),
            event_time: Timestamp(1001),
            buyer_is_maker: true,
            buyer_order_id: None,
            seller_order_id: None,
            first_trade_id: None,
            kind: TradeKind::Market,
        }
    }

    fn order(order_id: u64, side: Side, price: Decimal, remaining: Decimal) -> RestingOrder {
        RestingOrder {
            order_id,
            side,
            price,
            remaining,
            fee_rate: dec!(0.001),
        }
    }

    #[test]
    fn cross_needs_the_price_to_go_through_touch_does_not() {
        let cross = PaperExchange::default();
        let touch = PaperExchange {
            fill: FillModel::Touch,
            ..Default::default()
        };
        let buy = [order(1, Side::Buy, dec!(100), dec!(1))];
        let sell = [order(2, Side::Sell, dec!(101), dec!(1))];
        assert!(cross
            .match_trade(&buy, &trade(dec!(100), dec!(5)))
            .is_empty());
        assert_eq!(
            cross.match_trade(&buy, &trade(dec!(99.99), dec!(5))).len(),
            1
        );
        assert_eq!(touch.match_trade(&buy, &trade(dec!(100), dec!(5))).len(), 1);
        assert!(touch
            .match_trade(&buy, &trade(dec!(100.01), dec!(5)))
            .is_empty());
        assert!(cross
            .match_trade(&sell, &trade(dec!(101), dec!(5)))
            .is_empty());
        assert_eq!(
            cross
                .match_trade(&sell, &trade(dec!(101.01), dec!(5)))
                .len(),
            1
        );
        assert_eq!(
            touch.match_trade(&sell, &trade(dec!(101), dec!(5))).len(),
            1
        );
    }

    #[test]
    fn fills_at_the_limit_price_with_the_fee() {
        let fills = PaperExchange::default().match_trade(
            &[order(1, Side::Buy, dec!(100), dec!(2))],
            &trade(dec!(90), dec!(0.5)),
        );
        assert_eq!(
            fills,
            [Execution {
                order_id: 1,
                trade_id: Some(42),
                price: dec!(100),
                quantity: dec!(2),
                fee: dec!(0.2),
                charged: None,
                time: Timestamp(1000),
            }]
        );
    }

    #[test]
    fn partial_fills_share_the_trade_in_price_time_priority() {
        let partial = PaperExchange {
            partial_fills: true,
            ..Default::default()
        };
        let orders = [
            order(1, Side::Buy, dec!(100), dec!(1)),
            order(2, Side::Buy, dec!(101), dec!(1)),
            order(3, Side::Buy, dec!(101), dec!(1)),
        ];
        let fills = partial.match_trade(&orders, &trade(dec!(99), dec!(1.5)));
        let got: Vec<_> = fills.iter().map(|f| (f.order_id, f.quantity)).collect();
        assert_eq!(got, [(2, dec!(1)), (3, dec!(0.5))]);
    }

    #[test]
    fn non_market_trades_fill_nothing() {
        let mut t = trade(dec!(1), dec!(1));
        t.kind = TradeKind::InsuranceFund;
        let orders = [order(1, Side::Buy, dec!(100), dec!(1))];
        assert!(PaperExchange::default().match_trade(&orders, &t).is_empty());
    }

    #[test]
    fn client_order_ids_look_like_binances_and_are_stable() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let a = client_order_id(&sym, 1);
        assert_eq!(a.len(), 22);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(a, client_order_id(&sym, 1));
        assert_ne!(a, client_order_id(&sym, 2));
        assert_ne!(a, client_order_id(&Symbol::parse("ETHUSDT").unwrap(), 1));
    }
}
