//! The one account: balances, orders and their fills.
//!
//! The fill model (what the README's `exchange serve` section explains):
//! - A resting order (LIMIT GTC, LIMIT_MAKER) is the maker and fills with the paper exchange's
//!   rules, the code paper trading and backtests use: a BUY fills when a trade prints below
//!   its price, a SELL above; at the order's own price.
//! - A taker (MARKET, and LIMIT IOC or FOK) meets the trades that follow it: each trade fills
//!   it by at most the trade's quantity, at the trade's price, so a large order walks across
//!   several trades and pays their prices (its slippage). A MARKET order fills until its
//!   quantity (or `quoteOrderQty`) is done. An IOC order takes what the next trade of its
//!   symbol gives if that trade is at its price or better, and the rest expires; a FOK order
//!   fills whole from that trade or expires.
//! - LIMIT_MAKER is refused when it would take: a BUY at or above the ask, a SELL at or below
//!   the bid, as the market data knows them.
//! - Commission is charged at the one rate for maker and taker, in the asset received.
//!
//! Funds: a LIMIT order locks its price × quantity (BUY) or quantity (SELL); a MARKET order
//! locks what it is known to spend (its `quoteOrderQty` on a BUY, its quantity on a SELL); a
//! MARKET order whose cost is not known in advance is checked against the last price and paid
//! from free funds as it fills, expiring if they run out.

use std::collections::{BTreeMap, BTreeSet};

use hedgehog_binance::exchange_info::{OrderFilters, VenueRules};
use hedgehog_binance::rest::Refusal;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::{check_lot, ExchangeRules, SymbolRules};
use hedgehog_domain::paper_exchange::{PaperExchange, RestingOrder};
use hedgehog_domain::{Side, Symbol};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};

use super::market::MarketData;
use super::params::{self, decimal, mandatory, number, optional_decimal, refuse, Answer, Params};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Limit,
    LimitMaker,
    Market,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Limit => "LIMIT",
            Kind::LimitMaker => "LIMIT_MAKER",
            Kind::Market => "MARKET",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

impl TimeInForce {
    fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Gtc => "GTC",
            TimeInForce::Ioc => "IOC",
            TimeInForce::Fok => "FOK",
        }
    }
}

/// How much a new order's answer says: Binance's `newOrderRespType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Ack,
    Result,
    Full,
}

/// One execution of an order.
#[derive(Debug, Clone)]
struct Fill {
    trade_id: u64,
    quantity: Decimal,
    price: Decimal,
    commission: Decimal,
    commission_asset: String,
    maker: bool,
}

/// An order as the exchange keeps it.
#[derive(Debug, Clone)]
struct Order {
    symbol: Symbol,
    order_id: u64,
    client_order_id: String,
    side: Side,
    kind: Kind,
    time_in_force: TimeInForce,
    /// Zero for a MARKET order.
    price: Decimal,
    /// Zero for a MARKET order by `quoteOrderQty`.
    quantity: Decimal,
    quote_order_qty: Option<Decimal>,
    executed: Decimal,
    executed_quote: Decimal,
    status: &'static str,
    time: i64,
    update_time: i64,
    /// What the order holds locked, in the asset it spends.
    locked: Decimal,
    fills: Vec<Fill>,
}

impl Order {
    fn is_open(&self) -> bool {
        matches!(self.status, "NEW" | "PARTIALLY_FILLED")
    }

    /// Whether it takes from the trades that follow, rather than resting.
    fn is_taker(&self) -> bool {
        self.kind == Kind::Market || self.time_in_force != TimeInForce::Gtc
    }

    fn json(&self) -> Value {
        json!({
            "symbol": self.symbol.as_str(),
            "orderId": self.order_id,
            "orderListId": -1,
            "clientOrderId": self.client_order_id,
            "price": self.price.to_string(),
            "origQty": self.quantity.to_string(),
            "executedQty": self.executed.to_string(),
            "cummulativeQuoteQty": self.executed_quote.to_string(),
            "status": self.status,
            "timeInForce": self.time_in_force.as_str(),
            "type": self.kind.as_str(),
            "side": self.side.to_string(),
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": true,
            "workingTime": self.time,
            "origQuoteOrderQty": self.quote_order_qty.unwrap_or_default().to_string(),
            "selfTradePreventionMode": "NONE",
        })
    }

    /// The answer to the request that placed it, as much as `response` asks for.
    fn placed(&self, response: Response, now: i64) -> Value {
        let mut answer = match response {
            Response::Ack => json!({
                "symbol": self.symbol.as_str(),
                "orderId": self.order_id,
                "orderListId": -1,
                "clientOrderId": self.client_order_id,
            }),
            Response::Result | Response::Full => {
                let mut all = self.json();
                if let Some(all) = all.as_object_mut() {
                    for field in ["stopPrice", "icebergQty", "time", "updateTime", "isWorking"] {
                        all.remove(field);
                    }
                }
                all
            }
        };
        answer["transactTime"] = json!(now);
        if response == Response::Full {
            answer["fills"] = self
                .fills
                .iter()
                .map(|f| {
                    json!({
                        "price": f.price.to_string(),
                        "qty": f.quantity.to_string(),
                        "commission": f.commission.to_string(),
                        "commissionAsset": f.commission_asset,
                        "tradeId": f.trade_id,
                    })
                })
                .collect();
        }
        answer
    }
}

/// Rounds down to a multiple of `step` (a zero step: unchanged).
fn floor_to(value: Decimal, step: Decimal) -> Decimal {
    if step.is_zero() {
        value
    } else {
        (value / step).round_dp_with_strategy(0, RoundingStrategy::ToZero) * step
    }
}

fn filter_failure(filter: &str) -> Refusal {
    refuse(-1013, format!("Filter failure: {filter}"))
}

fn insufficient() -> Refusal {
    refuse(
        -2010,
        "Account has insufficient balance for requested action.",
    )
}

fn not_required(name: &str) -> Refusal {
    refuse(-1106, format!("Parameter '{name}' sent when not required."))
}

/// The account and everything its orders did.
pub struct Account {
    commission: Decimal,
    /// Free and locked per asset.
    balances: BTreeMap<String, (Decimal, Decimal)>,
    orders: BTreeMap<u64, Order>,
    /// The ids of the open orders: what every trade and most requests look at, so that their
    /// cost does not grow with the orders of the past.
    open: BTreeSet<u64>,
    trades: Vec<Value>,
    next_order_id: u64,
    next_trade_id: u64,
}

/// A new order, checked, before it is kept.
struct Placing {
    symbol: Symbol,
    side: Side,
    kind: Kind,
    time_in_force: TimeInForce,
    price: Decimal,
    quantity: Decimal,
    quote_order_qty: Option<Decimal>,
}

impl Account {
    /// An account holding `balances` (all free), with no orders yet.
    pub fn new(commission: Decimal, balances: &[(String, Decimal)]) -> Account {
        Account {
            commission,
            balances: balances
                .iter()
                .map(|(asset, amount)| (asset.clone(), (*amount, Decimal::ZERO)))
                .collect(),
            orders: BTreeMap::new(),
            open: BTreeSet::new(),
            trades: Vec::new(),
            next_order_id: 1,
            next_trade_id: 1,
        }
    }

    /// The open orders, oldest first.
    fn open_orders_iter(&self) -> impl DoubleEndedIterator<Item = &Order> {
        self.open.iter().filter_map(|id| self.orders.get(id))
    }

    /// Keeps [`Account::open`] in step with an order's status after a change.
    fn track(&mut self, id: u64) {
        if self.orders.get(&id).is_some_and(Order::is_open) {
            self.open.insert(id);
        } else {
            self.open.remove(&id);
        }
    }

    fn balance(&mut self, asset: &str) -> &mut (Decimal, Decimal) {
        self.balances
            .entry(asset.to_owned())
            .or_insert((Decimal::ZERO, Decimal::ZERO))
    }

    fn free(&self, asset: &str) -> Decimal {
        self.balances.get(asset).map_or(Decimal::ZERO, |b| b.0)
    }

    /// Reads and checks a new order's parameters.
    fn read_order(
        &self,
        rules: &ExchangeRules,
        venue: &VenueRules,
        market: &MarketData,
        query: &Params,
    ) -> Result<(Placing, Response), Refusal> {
        let symbol = params::symbol(rules, query)?;
        let side = match mandatory(query, "side")? {
            "BUY" => Side::Buy,
            "SELL" => Side::Sell,
            _ => return Err(refuse(-1117, "Invalid side.")),
        };
        let kind = match mandatory(query, "type")? {
            "LIMIT" => Kind::Limit,
            "LIMIT_MAKER" => Kind::LimitMaker,
            "MARKET" => Kind::Market,
            other => {
                return Err(refuse(
                    -1116,
                    format!("Invalid orderType: Hedgehog's paper exchange takes LIMIT, LIMIT_MAKER and MARKET orders, not {other}."),
                ))
            }
        };
        let filters = venue.symbols.get(&symbol).cloned().unwrap_or_default();
        if !filters.order_types.is_empty()
            && !filters.order_types.iter().any(|t| t == kind.as_str())
        {
            return Err(refuse(-1116, "Order type not supported for this symbol."));
        }
        let time_in_force = match (kind, query.get("timeInForce").map(String::as_str)) {
            (Kind::Limit, Some("GTC")) => TimeInForce::Gtc,
            (Kind::Limit, Some("IOC")) => TimeInForce::Ioc,
            (Kind::Limit, Some("FOK")) => TimeInForce::Fok,
            (Kind::Limit, Some(_)) => return Err(refuse(-1115, "Invalid timeInForce.")),
            (Kind::Limit, None) => {
                mandatory(query, "timeInForce")?;
                TimeInForce::Gtc
            }
            (_, Some(_)) => return Err(not_required("timeInForce")),
            (_, None) => TimeInForce::Gtc,
        };
        let response = match query.get("newOrderRespType").map(String::as_str) {
            Some("ACK") => Response::Ack,
            Some("RESULT") => Response::Result,
            Some("FULL") => Response::Full,
            Some(_) => return Err(refuse(-1100, "Illegal characters found in parameter 'newOrderRespType'; legal values are ACK, RESULT and FULL.")),
            None if kind == Kind::LimitMaker => Response::Ack,
            None => Response::Full,
        };
        let Some(symbol_rules) = rules.get(&symbol) else {
            return Err(refuse(-1121, "Invalid symbol."));
        };
        let placing = if kind == Kind::Market {
            if query.contains_key("price") {
                return Err(not_required("price"));
            }
            let quantity = optional_decimal(query, "quantity")?;
            let quote = optional_decimal(query, "quoteOrderQty")?;
            let (quantity, quote_order_qty) = match (quantity, quote) {
                (Some(q), None) => (q, None),
                (None, Some(q)) if q > Decimal::ZERO => (Decimal::ZERO, Some(q)),
                (None, Some(_)) => return Err(refuse(-1013, "Invalid quoteOrderQty.")),
                (Some(_), Some(_)) => return Err(not_required("quoteOrderQty")),
                (None, None) => return Err(refuse(
                    -1102,
                    "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!",
                )),
            };
            let placing = Placing {
                symbol,
                side,
                kind,
                time_in_force,
                price: Decimal::ZERO,
                quantity,
                quote_order_qty,
            };
            check_market(&placing, symbol_rules, &filters, market)?;
            placing
        } else {
            let placing = Placing {
                symbol,
                side,
                kind,
                time_in_force,
                price: decimal(query, "price")?,
                quantity: decimal(query, "quantity")?,
                quote_order_qty: None,
            };
            symbol_rules
                .check_limit_order(placing.price, placing.quantity)
                .map_err(|f| filter_failure(f.filter))?;
            check_percent_price(&placing, &filters, market)?;
            placing
        };
        if let Some(max) = filters.max_num_orders {
            let open = self
                .open_orders_iter()
                .filter(|o| o.symbol == placing.symbol)
                .count();
            if open >= max as usize {
                return Err(filter_failure("MAX_NUM_ORDERS"));
            }
        }
        if kind == Kind::LimitMaker {
            if let Some((bid, ask)) = market.quote(&placing.symbol) {
                let takes = match side {
                    Side::Buy => placing.price >= ask,
                    Side::Sell => placing.price <= bid,
                };
                if takes {
                    return Err(refuse(-2010, "Order would immediately match and take."));
                }
            }
        }
        Ok((placing, response))
    }

    /// `POST /api/v3/order`: the order's id and its NEW report, or Binance's refusal. The
    /// answer is made by [`Account::placed`] once the caller has let a taker meet the trades.
    pub fn place(
        &mut self,
        rules: &ExchangeRules,
        venue: &VenueRules,
        market: &MarketData,
        query: &Params,
        now: i64,
    ) -> Result<(u64, Response, Vec<Value>), Refusal> {
        let (p, response) = self.read_order(rules, venue, market, query)?;
        let order_id = self.next_order_id;
        let client_order_id = query
            .get("newClientOrderId")
            .cloned()
            .unwrap_or_else(|| format!("hhpaper{order_id}"));
        if self
            .open_orders_iter()
            .any(|o| o.symbol == p.symbol && o.client_order_id == client_order_id)
        {
            return Err(refuse(-2010, "Duplicate order sent."));
        }
        let Some(symbol_rules) = rules.get(&p.symbol) else {
            return Err(refuse(-1121, "Invalid symbol."));
        };
        let (asset, lock, needed) = funds(&p, symbol_rules, market);
        if self.free(&asset) < needed.max(lock) {
            return Err(insufficient());
        }
        let balance = self.balance(&asset);
        balance.0 -= lock;
        balance.1 += lock;
        self.next_order_id += 1;
        let order = Order {
            symbol: p.symbol,
            order_id,
            client_order_id,
            side: p.side,
            kind: p.kind,
            time_in_force: p.time_in_force,
            price: p.price,
            quantity: p.quantity,
            quote_order_qty: p.quote_order_qty,
            executed: Decimal::ZERO,
            executed_quote: Decimal::ZERO,
            status: "NEW",
            time: now,
            update_time: now,
            locked: lock,
            fills: Vec::new(),
        };
        let report = execution_report(&order, "NEW", None, now);
        self.orders.insert(order_id, order);
        self.track(order_id);
        Ok((order_id, response, vec![report]))
    }

    fn is_open(&self, order_id: u64) -> bool {
        self.orders.get(&order_id).is_some_and(Order::is_open)
    }

    /// Whether the order is a taker still waiting for the trades that fill it.
    pub fn waits(&self, order_id: u64) -> bool {
        self.orders
            .get(&order_id)
            .is_some_and(|o| o.is_open() && o.is_taker())
    }

    /// The answer to the request that placed the order.
    pub fn placed(&self, order_id: u64, response: Response, now: i64) -> Value {
        self.orders
            .get(&order_id)
            .map_or(Value::Null, |o| o.placed(response, now))
    }

    /// The order a query or cancel names, by `orderId` or `origClientOrderId`.
    fn find(
        &self,
        rules: &ExchangeRules,
        query: &Params,
        code: i64,
        msg: &str,
    ) -> Result<u64, Refusal> {
        let symbol = params::symbol(rules, query)?;
        let found = match (query.get("orderId"), query.get("origClientOrderId")) {
            (Some(id), _) => id
                .parse::<u64>()
                .ok()
                .filter(|id| self.orders.get(id).is_some_and(|o| o.symbol == symbol)),
            (None, Some(client)) => self
                .orders
                .values()
                .rev()
                .find(|o| o.symbol == symbol && &o.client_order_id == client)
                .map(|o| o.order_id),
            (None, None) => return Err(refuse(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )),
        };
        found.ok_or_else(|| refuse(code, msg))
    }

    /// `GET /api/v3/order`.
    pub fn query(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let id = self.find(rules, query, -2013, "Order does not exist.")?;
        Ok((self.orders[&id].json(), Vec::new()))
    }

    /// `DELETE /api/v3/order`.
    pub fn cancel(&mut self, rules: &ExchangeRules, query: &Params, now: i64) -> Answer {
        let id = self.find(rules, query, -2011, "Unknown order sent.")?;
        if !self.is_open(id) {
            return Err(refuse(-2011, "Unknown order sent."));
        }
        let (answer, report) = self.cancel_one(rules, id, now);
        Ok((answer, vec![report]))
    }

    /// `DELETE /api/v3/openOrders`: every open order of the symbol.
    pub fn cancel_all(&mut self, rules: &ExchangeRules, query: &Params, now: i64) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let open: Vec<u64> = self
            .open_orders_iter()
            .filter(|o| o.symbol == symbol)
            .map(|o| o.order_id)
            .collect();
        if open.is_empty() {
            return Err(refuse(-2011, "Unknown order sent."));
        }
        let (answers, reports): (Vec<Value>, Vec<Value>) = open
            .into_iter()
            .map(|id| self.cancel_one(rules, id, now))
            .unzip();
        Ok((json!(answers), reports))
    }

    fn cancel_one(&mut self, rules: &ExchangeRules, id: u64, now: i64) -> (Value, Value) {
        self.end(rules, id, "CANCELED", now);
        let order = &self.orders[&id];
        let mut answer = order.json();
        // As Binance: the order's client id is `origClientOrderId`, and `clientOrderId` names
        // the cancel request itself.
        answer["origClientOrderId"] = json!(order.client_order_id);
        answer["clientOrderId"] = json!(format!("cancel-{}", order.order_id));
        answer["transactTime"] = json!(now);
        for field in [
            "time",
            "updateTime",
            "isWorking",
            "workingTime",
            "stopPrice",
            "icebergQty",
        ] {
            if let Some(a) = answer.as_object_mut() {
                a.remove(field);
            }
        }
        (answer, execution_report(order, "CANCELED", None, now))
    }

    /// Ends an open order with `status`, giving back what it still holds locked.
    fn end(&mut self, rules: &ExchangeRules, id: u64, status: &'static str, now: i64) {
        let Some(order) = self.orders.get_mut(&id) else {
            return;
        };
        order.status = status;
        order.update_time = now;
        let locked = std::mem::take(&mut order.locked);
        let (symbol, side) = (order.symbol.clone(), order.side);
        self.track(id);
        if let Some(r) = rules.get(&symbol) {
            let asset = match side {
                Side::Buy => r.quote_asset.clone(),
                Side::Sell => r.base_asset.clone(),
            };
            let balance = self.balance(&asset);
            balance.1 -= locked;
            balance.0 += locked;
        }
    }

    /// `GET /api/v3/openOrders`: of the symbol, or of all.
    pub fn open_orders(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = match query.get("symbol") {
            Some(_) => Some(params::symbol(rules, query)?),
            None => None,
        };
        let open: Vec<Value> = self
            .open_orders_iter()
            .filter(|o| symbol.as_ref().is_none_or(|s| *s == o.symbol))
            .map(Order::json)
            .collect();
        Ok((json!(open), Vec::new()))
    }

    /// `GET /api/v3/allOrders`: the symbol's orders from `orderId` on, or within
    /// `startTime` .. `endTime`, at most `limit`.
    pub fn all_orders(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let limit = params::limit(query, 500, 1000)?;
        let from = number(query, "orderId")?;
        let start = number(query, "startTime")?;
        let end = number(query, "endTime")?;
        let chosen: Vec<&Order> = self
            .orders
            .values()
            .filter(|o| o.symbol == symbol)
            .filter(|o| from.is_none_or(|f| o.order_id as i64 >= f))
            .filter(|o| start.is_none_or(|s| o.time >= s) && end.is_none_or(|e| o.time <= e))
            .collect();
        // From an id or a start: the first `limit`; otherwise the latest.
        let skip = if from.is_some() || start.is_some() {
            0
        } else {
            chosen.len().saturating_sub(limit)
        };
        let orders: Vec<Value> = chosen
            .into_iter()
            .skip(skip)
            .take(limit)
            .map(Order::json)
            .collect();
        Ok((json!(orders), Vec::new()))
    }

    /// Every order, as `allOrders` gives them, oldest first.
    pub fn every_order(&self) -> Vec<Value> {
        self.orders.values().map(Order::json).collect()
    }

    /// The open order `client_order_id` executes `quantity` for `quote` (at their ratio), its
    /// funds moving as a fill's do, with the report thrown away. False if no open order has
    /// that id.
    pub fn execute_unreported(
        &mut self,
        rules: &ExchangeRules,
        client_order_id: &str,
        quantity: Decimal,
        quote: Decimal,
        now: i64,
    ) -> bool {
        let found = self
            .open_orders_iter()
            .rev()
            .find(|o| o.client_order_id == client_order_id)
            .map(|o| (o.order_id, o.symbol.clone()));
        let Some((id, symbol)) = found else {
            return false;
        };
        let Some(symbol_rules) = rules.get(&symbol) else {
            return false;
        };
        if quantity <= Decimal::ZERO {
            return false;
        }
        let _unreported = self.execute(
            symbol_rules,
            id,
            (quantity, quote / quantity, true),
            None,
            now,
        );
        true
    }

    /// `GET /api/v3/account`.
    pub fn account(&self, query: &Params, now: i64) -> Value {
        let omit_zero = query.get("omitZeroBalances").is_some_and(|v| v == "true");
        let balances: Vec<Value> = self
            .balances
            .iter()
            .filter(|(_, (free, locked))| !(omit_zero && free.is_zero() && locked.is_zero()))
            .map(|(asset, (free, locked))| {
                json!({ "asset": asset, "free": free.to_string(), "locked": locked.to_string() })
            })
            .collect();
        let bps = (self.commission * Decimal::from(10_000)).trunc();
        let rate = self.commission.to_string();
        json!({
            "makerCommission": bps,
            "takerCommission": bps,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": { "maker": rate, "taker": rate, "buyer": "0", "seller": "0" },
            "canTrade": true,
            "canWithdraw": false,
            "canDeposit": false,
            "brokered": false,
            "requireSelfTradePrevention": false,
            "preventSor": false,
            "updateTime": now,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        })
    }

    /// `GET /api/v3/account/commission`: the one rate, no tax, no BNB discount.
    pub fn commission(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let rate = format!("{:.8}", self.commission);
        let zero = "0.00000000";
        let answer = json!({
            "symbol": symbol.as_str(),
            "standardCommission": { "maker": rate, "taker": rate, "buyer": zero, "seller": zero },
            "specialCommission": { "maker": zero, "taker": zero, "buyer": zero, "seller": zero },
            "taxCommission": { "maker": zero, "taker": zero, "buyer": zero, "seller": zero },
            "discount": {
                "enabledForAccount": false,
                "enabledForSymbol": false,
                "discountAsset": "BNB",
                "discount": zero,
            },
        });
        Ok((answer, Vec::new()))
    }

    /// `GET /api/v3/myTrades`.
    pub fn my_trades(&self, rules: &ExchangeRules, query: &Params) -> Answer {
        let symbol = params::symbol(rules, query)?;
        let order_id = number(query, "orderId")?;
        let trades: Vec<Value> = self
            .trades
            .iter()
            .filter(|t| t["symbol"] == symbol.as_str())
            .filter(|t| order_id.is_none_or(|id| t["orderId"] == id))
            .cloned()
            .collect();
        Ok((json!(trades), Vec::new()))
    }

    /// Fills what a market trade reaches: the resting orders by the paper exchange's rules,
    /// then the takers waiting for it. The execution reports.
    pub fn fill(
        &mut self,
        rules: &ExchangeRules,
        paper: &PaperExchange,
        trade: &TradeReceived,
        now: i64,
    ) -> Vec<Value> {
        let Some(symbol_rules) = rules.get(&trade.symbol) else {
            return Vec::new();
        };
        if !trade.kind.is_market() {
            return Vec::new();
        }
        let mut reports = Vec::new();
        let resting: Vec<RestingOrder> = self
            .open_orders_iter()
            .filter(|o| !o.is_taker() && o.symbol == trade.symbol)
            .map(|o| RestingOrder {
                order_id: o.order_id,
                side: o.side,
                price: o.price,
                remaining: o.quantity - o.executed,
                fee_rate: self.commission,
            })
            .collect();
        for execution in paper.match_trade(&resting, trade) {
            let price = self.orders.get(&execution.order_id).map(|o| o.price);
            if let Some(price) = price {
                let fill = (execution.quantity, price, true);
                reports.push(self.execute(symbol_rules, execution.order_id, fill, None, now));
            }
        }
        let takers: Vec<u64> = self
            .open_orders_iter()
            .filter(|o| o.is_taker() && o.symbol == trade.symbol)
            .map(|o| o.order_id)
            .collect();
        // Each side of the trade's quantity is there once for our takers.
        let mut liquidity = [trade.quantity, trade.quantity];
        for id in takers {
            let Some(order) = self.orders.get(&id) else {
                continue;
            };
            let left = &mut liquidity[usize::from(order.side == Side::Sell)];
            let (quantity, then) = self.take(symbol_rules, order, trade.price, *left);
            *left -= quantity;
            if quantity > Decimal::ZERO {
                let fill = (quantity, trade.price, false);
                reports.push(self.execute(symbol_rules, id, fill, then, now));
            }
            if let Some(status) = then {
                // Whatever it ends as, what it still holds locked goes back.
                self.end(rules, id, status, now);
                if status == "EXPIRED" {
                    if let Some(o) = self.orders.get(&id) {
                        reports.push(execution_report(o, "EXPIRED", None, now));
                    }
                }
            }
        }
        reports
    }

    /// What a taker takes of a trade at `price` with `liquidity` left, and how it ends after
    /// (`None`: it goes on).
    fn take(
        &self,
        rules: &SymbolRules,
        order: &Order,
        price: Decimal,
        liquidity: Decimal,
    ) -> (Decimal, Option<&'static str>) {
        let step = rules.step_size;
        // What the funds allow: the order's lock, then free funds.
        let spend_asset = match order.side {
            Side::Buy => &rules.quote_asset,
            Side::Sell => &rules.base_asset,
        };
        let available = order.locked + self.free(spend_asset);
        let affordable = match order.side {
            Side::Buy => floor_to(available / price, step),
            Side::Sell => available,
        };
        match (order.kind, order.time_in_force) {
            (Kind::Market, _) => {
                let wanted = match order.quote_order_qty {
                    Some(quote) => floor_to((quote - order.executed_quote) / price, step),
                    None => order.quantity - order.executed,
                };
                let quantity = wanted.min(liquidity).min(affordable).max(Decimal::ZERO);
                let left = wanted - quantity;
                if left.is_zero() {
                    (quantity, Some("FILLED"))
                } else if quantity < wanted.min(liquidity) {
                    // Out of funds: what is left expires.
                    (quantity, Some("EXPIRED"))
                } else {
                    (quantity, None)
                }
            }
            (_, tif) => {
                let reaches = match order.side {
                    Side::Buy => price <= order.price,
                    Side::Sell => price >= order.price,
                };
                let remaining = order.quantity - order.executed;
                let quantity = if !reaches {
                    Decimal::ZERO
                } else if tif == TimeInForce::Fok {
                    if liquidity >= remaining && affordable >= remaining {
                        remaining
                    } else {
                        Decimal::ZERO
                    }
                } else {
                    remaining.min(liquidity).min(affordable)
                };
                let status = if quantity == remaining {
                    "FILLED"
                } else {
                    "EXPIRED"
                };
                (quantity, Some(status))
            }
        }
    }

    /// One execution of `quantity` at `price` (as the maker or not): funds move, the
    /// commission is charged in what is received, the trade is kept; its report, which says
    /// FILLED when the taker `ends` so.
    fn execute(
        &mut self,
        rules: &SymbolRules,
        id: u64,
        (quantity, price, maker): (Decimal, Decimal, bool),
        ends: Option<&'static str>,
        now: i64,
    ) -> Value {
        let quote = quantity * price;
        let rate = self.commission;
        let (spend, spent, receive, received) = match self.orders.get(&id).map(|o| o.side) {
            Some(Side::Sell) => (&rules.base_asset, quantity, &rules.quote_asset, quote),
            _ => (&rules.quote_asset, quote, &rules.base_asset, quantity),
        };
        let commission = (received * rate).normalize();
        let Some(order) = self.orders.get_mut(&id) else {
            return Value::Null;
        };
        let from_lock = order.locked.min(spent);
        order.locked -= from_lock;
        order.executed += quantity;
        order.executed_quote += quote;
        order.update_time = now;
        let whole = ends == Some("FILLED")
            || (order.quote_order_qty.is_none() && order.executed >= order.quantity);
        order.status = if whole { "FILLED" } else { "PARTIALLY_FILLED" };
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        let fill = Fill {
            trade_id,
            quantity,
            price,
            commission,
            commission_asset: receive.clone(),
            maker,
        };
        order.fills.push(fill.clone());
        let order = order.clone();
        self.track(id);
        let (spend, receive) = (spend.clone(), receive.clone());
        let balance = self.balance(&spend);
        balance.1 -= from_lock;
        balance.0 -= spent - from_lock;
        self.balance(&receive).0 += received - commission;
        self.trades.push(json!({
            "symbol": order.symbol.as_str(),
            "id": trade_id,
            "orderId": order.order_id,
            "orderListId": -1,
            "price": price.to_string(),
            "qty": quantity.to_string(),
            "quoteQty": quote.to_string(),
            "commission": commission.to_string(),
            "commissionAsset": receive,
            "time": now,
            "isBuyer": order.side == Side::Buy,
            "isMaker": maker,
            "isBestMatch": true,
        }));
        execution_report(&order, "TRADE", Some(&fill), now)
    }
}

/// What an order spends from: the asset, what it locks, and what it must have free to start.
fn funds(p: &Placing, rules: &SymbolRules, market: &MarketData) -> (String, Decimal, Decimal) {
    let last = market.last_price(&p.symbol);
    match (p.side, p.kind, p.quote_order_qty) {
        (Side::Buy, Kind::Market, Some(quote)) => (rules.quote_asset.clone(), quote, quote),
        (Side::Buy, Kind::Market, None) => (
            rules.quote_asset.clone(),
            Decimal::ZERO,
            last.map_or(Decimal::ZERO, |price| price * p.quantity),
        ),
        (Side::Buy, _, _) => (
            rules.quote_asset.clone(),
            p.price * p.quantity,
            p.price * p.quantity,
        ),
        (Side::Sell, Kind::Market, Some(quote)) => (
            rules.base_asset.clone(),
            Decimal::ZERO,
            last.filter(|p| !p.is_zero())
                .map_or(Decimal::ZERO, |price| quote / price),
        ),
        (Side::Sell, _, _) => (rules.base_asset.clone(), p.quantity, p.quantity),
    }
}

/// A MARKET order against LOT_SIZE, MARKET_LOT_SIZE and NOTIONAL (at the average price).
fn check_market(
    p: &Placing,
    rules: &SymbolRules,
    filters: &OrderFilters,
    market: &MarketData,
) -> Result<(), Refusal> {
    if p.quote_order_qty.is_none() {
        rules
            .check_quantity(p.quantity)
            .map_err(|f| filter_failure(f.filter))?;
        if let Some((min, max, step)) = filters.market_lot {
            check_lot("MARKET_LOT_SIZE", p.quantity, min, max, step)
                .map_err(|f| filter_failure(f.filter))?;
        }
    }
    let average = market.average(&p.symbol, filters.notional_avg_price_mins.max(1));
    let notional = match (p.quote_order_qty, average) {
        (Some(quote), _) => Some(quote),
        (None, Some(price)) => Some(price * p.quantity),
        (None, None) => None,
    };
    if let Some(notional) = notional {
        if filters.min_notional_to_market && notional < rules.min_notional {
            return Err(filter_failure("NOTIONAL"));
        }
        let max = rules.max_notional.filter(|m| !m.is_zero());
        if filters.max_notional_to_market && max.is_some_and(|m| notional > m) {
            return Err(filter_failure("NOTIONAL"));
        }
    }
    Ok(())
}

/// PERCENT_PRICE_BY_SIDE: a limit price within the side's multipliers of the average price
/// (unchecked while no trade of the symbol has been played: there is no average).
fn check_percent_price(
    p: &Placing,
    filters: &OrderFilters,
    market: &MarketData,
) -> Result<(), Refusal> {
    let Some(side) = &filters.percent_price_by_side else {
        return Ok(());
    };
    let Some(average) = market.average(&p.symbol, side.avg_price_mins.max(1)) else {
        return Ok(());
    };
    let (up, down) = match p.side {
        Side::Buy => (side.bid_up, side.bid_down),
        Side::Sell => (side.ask_up, side.ask_down),
    };
    if p.price > average * up || p.price < average * down {
        return Err(filter_failure("PERCENT_PRICE_BY_SIDE"));
    }
    Ok(())
}

/// Binance's `executionReport` for an order after an execution of type `execution`.
fn execution_report(order: &Order, execution: &str, fill: Option<&Fill>, now: i64) -> Value {
    json!({
        "e": "executionReport",
        "E": now,
        "s": order.symbol.as_str(),
        "c": order.client_order_id,
        "S": order.side.to_string(),
        "o": order.kind.as_str(),
        "f": order.time_in_force.as_str(),
        "q": order.quantity.to_string(),
        "p": order.price.to_string(),
        "P": "0.00000000",
        "F": "0.00000000",
        "g": -1,
        "C": if execution == "CANCELED" { order.client_order_id.as_str() } else { "" },
        "x": execution,
        "X": order.status,
        "r": "NONE",
        "i": order.order_id,
        "l": fill.map_or(Decimal::ZERO, |f| f.quantity).to_string(),
        "z": order.executed.to_string(),
        "L": fill.map_or(Decimal::ZERO, |f| f.price).to_string(),
        "n": fill.map_or(Decimal::ZERO, |f| f.commission).to_string(),
        "N": fill.map(|f| f.commission_asset.clone()),
        "T": now,
        "t": fill.map_or(-1, |f| f.trade_id as i64),
        "v": 0,
        "I": 0,
        "w": order.is_open() && !order.is_taker(),
        "m": fill.is_some_and(|f| f.maker),
        "M": false,
        "O": order.time,
        "Z": order.executed_quote.to_string(),
        "Y": fill.map_or(Decimal::ZERO, |f| f.quantity * f.price).to_string(),
        "Q": order.quote_order_qty.unwrap_or_default().to_string(),
        "W": order.time,
        "V": "NONE",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    /// The bundled exchange info's rules and filters, an account with 1,000 USDT, and a
    /// market that has seen ADAUSDT at 0.5.
    struct Given {
        rules: ExchangeRules,
        venue: VenueRules,
        market: MarketData,
        account: Account,
    }

    fn given() -> Given {
        let json = hedgehog_binance::exchange_info::bundled_json().unwrap();
        let (rules, venue) =
            hedgehog_binance::exchange_info::parse_with_venue(&json, "bundled").unwrap();
        let mut market = MarketData::default();
        market.record(&trade(0, dec!(0.5), dec!(1000), true));
        Given {
            rules,
            venue,
            market,
            account: Account::new(dec!(0.001), &[("USDT".to_owned(), dec!(1000))]),
        }
    }

    impl Given {
        fn place(&mut self, pairs: &[(&str, &str)]) -> Result<u64, Refusal> {
            let mut query = params(&[("symbol", "ADAUSDT")]);
            query.extend(params(pairs));
            let (id, _, _) =
                self.account
                    .place(&self.rules, &self.venue, &self.market, &query, 0)?;
            Ok(id)
        }

        fn trade(&mut self, id: u64, price: Decimal, quantity: Decimal) -> Vec<Value> {
            let t = trade(id, price, quantity, true);
            self.market.record(&t);
            self.account
                .fill(&self.rules, &PaperExchange::default(), &t, id as i64)
        }

        fn order(&self, id: u64) -> &Order {
            &self.account.orders[&id]
        }

        fn balance(&self, asset: &str) -> (Decimal, Decimal) {
            self.account
                .balances
                .get(asset)
                .copied()
                .unwrap_or_default()
        }
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn limit(side: &str, tif: &str, price: &str, quantity: &str) -> Vec<(&'static str, String)> {
        vec![
            ("side", side.to_owned()),
            ("type", "LIMIT".to_owned()),
            ("timeInForce", tif.to_owned()),
            ("price", price.to_owned()),
            ("quantity", quantity.to_owned()),
        ]
    }

    fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    fn trade(id: u64, price: Decimal, quantity: Decimal, maker: bool) -> TradeReceived {
        hedgehog_domain::testkit::printed("ADAUSDT", id, id as i64, price, quantity, maker)
    }

    #[test]
    fn a_resting_order_locks_its_funds_fills_from_a_trade_through_it_and_pays_in_what_it_gets() {
        let mut g = given();
        let id = g.place(&pairs(&limit("BUY", "GTC", "0.5", "100"))).unwrap();
        assert_eq!(g.order(id).status, "NEW");
        assert_eq!(g.balance("USDT"), (dec!(950), dec!(50)));
        assert!(
            g.trade(1, dec!(0.5), dec!(1000)).is_empty(),
            "at the price: not through it"
        );
        let reports = g.trade(2, dec!(0.49), dec!(1000));
        assert_eq!(
            (reports[0]["x"].as_str(), reports[0]["X"].as_str()),
            (Some("TRADE"), Some("FILLED"))
        );
        assert_eq!(
            (reports[0]["N"].as_str(), reports[0]["m"].as_bool()),
            (Some("ADA"), Some(true))
        );
        assert_eq!(g.balance("USDT"), (dec!(950), dec!(0)));
        assert_eq!(g.balance("ADA").0, dec!(99.9), "commission 0.1 % in ADA");
        let (trades, _) = g
            .account
            .my_trades(&g.rules, &params(&[("symbol", "ADAUSDT")]))
            .unwrap();
        assert_eq!(trades[0]["isMaker"], true);
    }

    #[test]
    fn a_market_order_walks_across_the_trades_that_follow_at_their_prices() {
        let mut g = given();
        let id = g
            .place(&[("side", "BUY"), ("type", "MARKET"), ("quantity", "300")])
            .unwrap();
        assert!(g.account.waits(id));
        assert_eq!(
            g.balance("USDT"),
            (dec!(1000), dec!(0)),
            "its cost is not known: nothing locked"
        );
        // 100 at 0.50, then 200 of 250 at 0.51: slippage.
        let first = g.trade(1, dec!(0.50), dec!(100));
        assert_eq!(
            (first[0]["X"].as_str(), first[0]["m"].as_bool()),
            (Some("PARTIALLY_FILLED"), Some(false))
        );
        let second = g.trade(2, dec!(0.51), dec!(250));
        assert_eq!(second[0]["X"], "FILLED");
        let order = g.order(id);
        assert_eq!(
            (order.executed, order.executed_quote),
            (dec!(300), dec!(152))
        );
        assert!(!g.account.waits(id));
        assert_eq!(g.balance("USDT"), (dec!(848), dec!(0)));
        assert_eq!(g.balance("ADA").0, dec!(299.7));
        let answer = g.account.placed(id, Response::Full, 3);
        assert_eq!(answer["fills"].as_array().unwrap().len(), 2);
        assert_eq!(answer["fills"][1]["price"], "0.51");
    }

    #[test]
    fn a_market_order_by_quote_spends_what_it_locked_and_gives_back_the_rest() {
        let mut g = given();
        let id = g
            .place(&[
                ("side", "BUY"),
                ("type", "MARKET"),
                ("quoteOrderQty", "100.05"),
            ])
            .unwrap();
        assert_eq!(g.balance("USDT"), (dec!(899.95), dec!(100.05)));
        // 0.3 a unit: 333.5 units, rounded down to the step of 0.1 ADA.
        let reports = g.trade(1, dec!(0.3), dec!(100000));
        assert_eq!(reports[0]["X"], "FILLED");
        assert_eq!(g.order(id).executed, dec!(333.5));
        assert_eq!(g.balance("USDT"), (dec!(899.95), dec!(0)));
        let refused = g.place(&[
            ("side", "BUY"),
            ("type", "MARKET"),
            ("quantity", "10"),
            ("quoteOrderQty", "5"),
        ]);
        assert_eq!(refused.unwrap_err().code, -1106);
    }

    #[test]
    fn ioc_takes_what_the_next_trade_gives_and_expires_fok_fills_whole_or_not_at_all() {
        let mut g = given();
        let ioc = g.place(&pairs(&limit("BUY", "IOC", "0.5", "300"))).unwrap();
        let reports = g.trade(1, dec!(0.49), dec!(120));
        assert_eq!(
            reports
                .iter()
                .map(|r| (r["x"].as_str().unwrap(), r["X"].as_str().unwrap()))
                .collect::<Vec<_>>(),
            [("TRADE", "PARTIALLY_FILLED"), ("EXPIRED", "EXPIRED")]
        );
        assert_eq!(g.order(ioc).executed, dec!(120));
        assert_eq!(
            g.order(ioc).executed_quote,
            dec!(58.80),
            "at the trade's price"
        );
        assert_eq!(
            g.balance("USDT"),
            (dec!(941.2), dec!(0)),
            "the rest of the lock is back"
        );
        let fok = g.place(&pairs(&limit("BUY", "FOK", "0.5", "300"))).unwrap();
        let reports = g.trade(2, dec!(0.49), dec!(120));
        assert_eq!(reports[0]["x"], "EXPIRED");
        assert_eq!(g.order(fok).executed, dec!(0));
        let whole = g.place(&pairs(&limit("BUY", "FOK", "0.5", "100"))).unwrap();
        g.trade(3, dec!(0.5), dec!(120));
        assert_eq!(
            g.order(whole).status,
            "FILLED",
            "a taker at its price fills"
        );
        // An IOC the next trade does not reach expires whole.
        let missed = g.place(&pairs(&limit("BUY", "IOC", "0.4", "100"))).unwrap();
        g.trade(4, dec!(0.45), dec!(1000));
        assert_eq!(
            (g.order(missed).status, g.order(missed).executed),
            ("EXPIRED", dec!(0))
        );
    }

    #[test]
    fn refusals_speak_binances_codes() {
        let mut g = given();
        let code = |g: &mut Given, p: &[(&str, &str)]| g.place(p).unwrap_err();
        assert_eq!(
            code(&mut g, &pairs(&limit("BUY", "GTC", "0.5", "10000"))).code,
            -2010,
            "balance"
        );
        let filter = code(&mut g, &pairs(&limit("BUY", "GTC", "0.50000001", "100")));
        assert_eq!(
            (filter.code, filter.msg.as_str()),
            (-1013, "Filter failure: PRICE_FILTER")
        );
        let far = code(&mut g, &pairs(&limit("BUY", "GTC", "3", "10")));
        assert_eq!(
            far.msg, "Filter failure: PERCENT_PRICE_BY_SIDE",
            "5 x the average at most"
        );
        assert_eq!(
            code(&mut g, &pairs(&limit("BUY", "DAY", "0.5", "100"))).code,
            -1115
        );
        assert_eq!(
            code(
                &mut g,
                &[("side", "BUY"), ("type", "STOP_LOSS"), ("quantity", "1")]
            )
            .code,
            -1116
        );
        assert_eq!(
            code(
                &mut g,
                &[
                    ("side", "BUY"),
                    ("type", "MARKET"),
                    ("quantity", "1"),
                    ("timeInForce", "GTC")
                ]
            )
            .code,
            -1106
        );
        let market_lot = code(
            &mut g,
            &[("side", "SELL"), ("type", "MARKET"), ("quantity", "1")],
        );
        assert_eq!(
            market_lot.msg, "Filter failure: NOTIONAL",
            "1 ADA at 0.5 is below 5 USDT"
        );
        // The last trade hit the bid at 0.5: a maker BUY at 0.5 would take.
        let maker_order = limit("BUY", "GTC", "0.5", "100");
        let mut maker = pairs(&maker_order);
        maker.retain(|(k, _)| *k != "timeInForce");
        maker[1] = ("type", "LIMIT_MAKER");
        g.market.record(&trade(9, dec!(0.5), dec!(1), false));
        assert_eq!(
            code(&mut g, &maker).msg,
            "Order would immediately match and take."
        );
        maker[2] = ("price", "0.49");
        g.place(&maker).unwrap();
        let placed_order = limit("BUY", "GTC", "0.4", "20");
        let mut placed = pairs(&placed_order);
        placed.push(("newClientOrderId", "a"));
        g.place(&placed).unwrap();
        assert_eq!(code(&mut g, &placed).msg, "Duplicate order sent.");
        let cancel = params(&[("symbol", "ADAUSDT"), ("origClientOrderId", "a")]);
        let (answer, reports) = g.account.cancel(&g.rules, &cancel, 1).unwrap();
        assert_eq!(
            (answer["status"].as_str(), reports[0]["x"].as_str()),
            (Some("CANCELED"), Some("CANCELED"))
        );
        assert_eq!(
            g.account.cancel(&g.rules, &cancel, 1).unwrap_err().code,
            -2011
        );
        let missing = params(&[("symbol", "ADAUSDT"), ("origClientOrderId", "zz")]);
        assert_eq!(g.account.query(&g.rules, &missing).unwrap_err().code, -2013);
    }

    #[test]
    fn max_num_orders_counts_the_open_orders_of_the_symbol_and_cancel_all_frees_them() {
        let mut g = given();
        g.account = Account::new(dec!(0.001), &[("USDT".to_owned(), dec!(1000000))]);
        let max = g.venue.symbols[&Symbol::parse("ADAUSDT").unwrap()]
            .max_num_orders
            .unwrap();
        for _ in 0..max {
            g.place(&pairs(&limit("BUY", "GTC", "0.4", "20"))).unwrap();
        }
        let refused = g
            .place(&pairs(&limit("BUY", "GTC", "0.4", "20")))
            .unwrap_err();
        assert_eq!(refused.msg, "Filter failure: MAX_NUM_ORDERS");
        let symbol = params(&[("symbol", "ADAUSDT")]);
        let (cancelled, reports) = g.account.cancel_all(&g.rules, &symbol, 1).unwrap();
        assert_eq!(
            (cancelled.as_array().unwrap().len(), reports.len()),
            (max as usize, max as usize)
        );
        assert_eq!(g.balance("USDT"), (dec!(1000000), dec!(0)));
        assert_eq!(
            g.account.cancel_all(&g.rules, &symbol, 1).unwrap_err().code,
            -2011
        );
        g.place(&pairs(&limit("BUY", "GTC", "0.4", "20"))).unwrap();
        let (all, _) = g
            .account
            .all_orders(&g.rules, &params(&[("symbol", "ADAUSDT"), ("limit", "5")]))
            .unwrap();
        let ids: Vec<u64> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["orderId"].as_u64().unwrap())
            .collect();
        assert_eq!(
            ids,
            (u64::from(max) - 3..=u64::from(max) + 1).collect::<Vec<_>>()
        );
    }
}
