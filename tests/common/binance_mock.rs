//! A mock of Binance's spot REST API on 127.0.0.1, for the adapter's tests.
//!
//! It answers with Binance's own payloads (`tests/fixtures/binance-rest/`, copied from
//! `../shared/data/binance-rest`), with the fields a request decides filled in, and it checks
//! what a real server checks: the API key header, the signature and timestamp of signed
//! requests (with the library's `verify_signed_query`, which `hedgehog exchange serve` shares),
//! the mandatory parameters, and BTCUSDT's filters. Every answer carries the weight and order
//! counts used, as Binance's headers do. A test can script the next answer of an endpoint
//! (a 429, a 418, an error code, or a lost answer) and read back every request it received.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hedgehog_binance::rest::{verify_signed_query, Endpoint, MarketTrade, Security};
use hedgehog_domain::events::TradeReceived;
use rust_decimal::Decimal;
use serde_json::{json, Value};

pub const API_KEY: &str = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A";
pub const SECRET: &str = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/binance-rest/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// What the next request to an endpoint gets instead of the normal answer.
#[derive(Debug, Clone)]
pub enum Scripted {
    /// 429 with `Retry-After` (seconds).
    TooMany(u64),
    /// 418 with `Retry-After` (seconds).
    Teapot(u64),
    /// A Binance error body with this HTTP status.
    Error(u16, i64, &'static str),
    /// The request takes effect, but the answer comes too late for the client.
    LoseAnswer(Duration),
    /// Nothing happens and the answer comes too late.
    Hang(Duration),
}

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub params: BTreeMap<String, String>,
    pub api_key: Option<String>,
    /// The mock's clock when it arrived (ms).
    pub at: i64,
}

#[derive(Default)]
struct Inner {
    seen: Vec<Seen>,
    script: HashMap<(String, String), VecDeque<Scripted>>,
    orders: Vec<Value>,
    next_order_id: u64,
    /// Market trades `historicalTrades` serves, by (symbol, trade id).
    market: BTreeMap<(String, u64), Value>,
    /// (window start, used) per counted window.
    weight_1m: (i64, u32),
    orders_10s: (i64, u32),
    orders_1d: (i64, u32),
}

/// The mock's state, shared with the test.
#[derive(Clone)]
pub struct Mock {
    inner: Arc<Mutex<Inner>>,
    /// The mock's clock runs this far ahead of the machine's (ms).
    pub skew_ms: i64,
    pub url: String,
}

impl Mock {
    /// Starts the mock on 127.0.0.1, its clock `skew_ms` ahead of the machine's.
    pub async fn start(skew_ms: i64) -> Mock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mock = Mock {
            inner: Arc::new(Mutex::new(Inner {
                next_order_id: 1,
                ..Inner::default()
            })),
            skew_ms,
            url,
        };
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(mock.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        mock
    }

    /// The next request to `method path` gets `what`.
    pub fn script(&self, method: &str, path: &str, what: Scripted) {
        self.lock()
            .script
            .entry((method.to_owned(), path.to_owned()))
            .or_default()
            .push_back(what);
    }

    /// `historicalTrades` serves these trades from now on, as Binance would: the answer's
    /// fields made from each trade's.
    pub fn serve_trades<'a>(&self, trades: impl IntoIterator<Item = &'a TradeReceived>) {
        let mut inner = self.lock();
        for t in trades {
            inner.market.insert(
                (t.symbol.as_str().to_owned(), t.trade_id),
                MarketTrade::answer(t),
            );
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.lock().seen.clone()
    }

    /// The order `client_order_id` executes `quantity` for `quote` in all, with no report sent
    /// (one the user data stream has not delivered yet): what a cancel then answers.
    pub fn execute(&self, client_order_id: &str, quantity: &str, quote: &str) {
        let mut inner = self.lock();
        let order = inner
            .orders
            .iter_mut()
            .find(|o| o["clientOrderId"] == client_order_id)
            .expect("an order with that client order id");
        order["executedQty"] = json!(quantity);
        order["cummulativeQuoteQty"] = json!(quote);
        order["status"] = json!("PARTIALLY_FILLED");
    }

    pub fn orders(&self) -> Vec<Value> {
        self.lock().orders.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn now(&self) -> i64 {
        let local = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        local + self.skew_ms
    }
}

fn error(status: u16, code: i64, msg: &str) -> (StatusCode, Value) {
    (
        StatusCode::from_u16(status).unwrap(),
        json!({"code": code, "msg": msg}),
    )
}

/// (endpoint weight, counts as an order, signed), from the client's own table of Binance's
/// endpoints.
fn cost(method: &Method, path: &str) -> Option<(u32, bool, bool)> {
    let endpoint = Endpoint::find(method, path)?;
    Some((
        endpoint.weight,
        endpoint.order,
        endpoint.security == Security::Signed,
    ))
}

async fn handle(
    State(mock): State<Mock>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let path = uri.path().to_owned();
    let query = query.unwrap_or_default();
    let now = mock.now();
    let api_key = headers
        .get("x-mbx-apikey")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some((weight, is_order, signed)) = cost(&method, &path) else {
        return (StatusCode::NOT_FOUND, "not a Binance endpoint").into_response();
    };
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let scripted = {
        let mut inner = mock.lock();
        inner.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            params: params.clone(),
            api_key: api_key.clone(),
            at: now,
        });
        count(&mut inner.weight_1m, now, 60_000, weight);
        if is_order {
            count(&mut inner.orders_10s, now, 10_000, 1);
            count(&mut inner.orders_1d, now, 86_400_000, 1);
        }
        inner
            .script
            .get_mut(&(method.to_string(), path.clone()))
            .and_then(VecDeque::pop_front)
    };
    let (status, body, retry_after) = match scripted {
        Some(Scripted::TooMany(secs)) => {
            let (s, b) = error(
                429,
                -1003,
                "Too many requests; current limit is 1200 request weight per 1 MINUTE.",
            );
            (s, b, Some(secs))
        }
        Some(Scripted::Teapot(secs)) => {
            let (s, b) = error(418, -1003, "Way too many requests; IP banned until later.");
            (s, b, Some(secs))
        }
        Some(Scripted::Error(status, code, msg)) => {
            let (s, b) = error(status, code, msg);
            (s, b, None)
        }
        Some(Scripted::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            let (s, b) = error(
                503,
                -1001,
                "Internal error; unable to process your request.",
            );
            (s, b, None)
        }
        Some(Scripted::LoseAnswer(_)) | None => {
            let (s, b) = answer(
                &mock,
                &method,
                &path,
                &params,
                &query,
                api_key.as_deref(),
                signed,
                now,
            );
            if let Some(Scripted::LoseAnswer(delay)) = scripted {
                tokio::time::sleep(delay).await;
            }
            (s, b, None)
        }
    };
    let mut response = (status, axum::Json(body)).into_response();
    let inner = mock.lock();
    let h = response.headers_mut();
    h.insert("x-mbx-used-weight-1m", inner.weight_1m.1.into());
    if is_order {
        h.insert("x-mbx-order-count-10s", inner.orders_10s.1.into());
        h.insert("x-mbx-order-count-1d", inner.orders_1d.1.into());
    }
    if let Some(secs) = retry_after {
        h.insert("retry-after", secs.into());
    }
    response
}

fn count(window: &mut (i64, u32), now: i64, size: i64, n: u32) {
    let start = now - now.rem_euclid(size);
    if start != window.0 {
        *window = (start, 0);
    }
    window.1 += n;
}

#[allow(clippy::too_many_arguments)]
fn answer(
    mock: &Mock,
    method: &Method,
    path: &str,
    params: &BTreeMap<String, String>,
    raw_query: &str,
    api_key: Option<&str>,
    signed: bool,
    now: i64,
) -> (StatusCode, Value) {
    if signed {
        if api_key != Some(API_KEY) {
            return error(
                401,
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            );
        }
        if let Err(refusal) = verify_signed_query(raw_query, SECRET, now) {
            return error(400, refusal.code, &refusal.msg);
        }
    }
    let mandatory = |names: &[&str]| {
        names.iter().find(|n| !params.contains_key(**n)).map(|n| {
            error(
                400,
                -1102,
                &format!("Mandatory parameter '{n}' was not sent, was empty/null, or malformed."),
            )
        })
    };
    let mut inner = mock.lock();
    match (method.as_str(), path) {
        ("GET", "/api/v3/ping") => (StatusCode::OK, json!({})),
        ("GET", "/api/v3/time") => (StatusCode::OK, json!({"serverTime": now})),
        ("GET", "/api/v3/historicalTrades") => {
            if let Some(refusal) = mandatory(&["symbol"]) {
                return refusal;
            }
            let symbol = params["symbol"].clone();
            let number = |name: &str, default: u64| {
                params.get(name).map_or(Ok(default), |v| v.parse::<u64>())
            };
            let (Ok(from), Ok(limit)) = (number("fromId", 0), number("limit", 500)) else {
                return error(400, -1100, "Illegal characters found in a parameter.");
            };
            if !(1..=1000).contains(&limit) {
                return error(400, -1130, "Invalid data sent for a parameter.");
            }
            let page: Vec<Value> = inner
                .market
                .range((symbol.clone(), from)..)
                .take_while(|((s, _), _)| *s == symbol)
                .take(limit as usize)
                .map(|(_, t)| t.clone())
                .collect();
            (StatusCode::OK, Value::Array(page))
        }
        ("GET", "/api/v3/klines") => {
            if let Some(refusal) = mandatory(&["symbol", "interval"]) {
                return refusal;
            }
            if params["interval"] != "1m" {
                return error(400, -1120, "Invalid interval.");
            }
            let symbol = params["symbol"].clone();
            let end = params.get("endTime").map_or(Ok(now), |v| v.parse::<i64>());
            let limit = params.get("limit").map_or(Ok(500), |v| v.parse::<usize>());
            let (Ok(end), Ok(limit)) = (end, limit) else {
                return error(400, -1100, "Illegal characters found in a parameter.");
            };
            // Binance's 1-minute klines of the served trades: one per minute that has trades,
            // the last `limit` of those opening at or before `endTime`.
            let mut minutes: BTreeMap<i64, Vec<rust_decimal::Decimal>> = BTreeMap::new();
            for (_, t) in inner
                .market
                .range((symbol.clone(), 0)..)
                .take_while(|((s, _), _)| *s == symbol)
            {
                let time = t["time"].as_i64().unwrap_or(0);
                let price = t["price"]
                    .as_str()
                    .and_then(|p| p.parse::<rust_decimal::Decimal>().ok());
                minutes
                    .entry(time - time.rem_euclid(60_000))
                    .or_default()
                    .extend(price);
            }
            let mut last: Vec<(&i64, &Vec<rust_decimal::Decimal>)> =
                minutes.range(..=end).rev().take(limit).collect();
            last.reverse();
            let klines: Vec<Value> = last
                .into_iter()
                .filter(|(_, prices)| !prices.is_empty())
                .map(|(open, prices)| {
                    let (high, low) = (prices.iter().max(), prices.iter().min());
                    let text = |p: Option<&rust_decimal::Decimal>| p.map(|p| p.to_string());
                    json!([
                        open,
                        text(prices.first()),
                        text(high),
                        text(low),
                        text(prices.last()),
                        "0",
                        open + 59_999,
                        "0",
                        prices.len(),
                        "0",
                        "0",
                        "0"
                    ])
                })
                .collect();
            (StatusCode::OK, Value::Array(klines))
        }
        ("GET", "/api/v3/exchangeInfo") => {
            let mut info = fixture("http_spot_market_exchange_info.json");
            info["serverTime"] = json!(now);
            (StatusCode::OK, info)
        }
        ("POST", "/api/v3/order") => {
            let required = [
                "symbol",
                "side",
                "type",
                "timeInForce",
                "quantity",
                "price",
                "newClientOrderId",
            ];
            if let Some(e) = mandatory(&required) {
                return e;
            }
            if let Some(e) = check_filters(params) {
                return e;
            }
            let client_id = &params["newClientOrderId"];
            let open = inner
                .orders
                .iter()
                .any(|o| o["clientOrderId"] == client_id.as_str() && o["status"] == "NEW");
            if open {
                return error(400, -2010, "Duplicate order sent.");
            }
            let id = inner.next_order_id;
            inner.next_order_id += 1;
            let mut order = fixture("order_response.json");
            for (key, value) in [
                ("symbol", json!(params["symbol"])),
                ("orderId", json!(id)),
                ("clientOrderId", json!(client_id)),
                ("price", json!(params["price"])),
                ("origQty", json!(params["quantity"])),
                ("executedQty", json!("0")),
                ("cummulativeQuoteQty", json!("0")),
                ("status", json!("NEW")),
                ("side", json!(params["side"])),
                ("time", json!(now)),
                ("updateTime", json!(now)),
                ("workingTime", json!(now)),
            ] {
                order[key] = value;
            }
            inner.orders.push(order.clone());
            let mut full = fixture("new_order_full_response.json");
            for key in [
                "symbol",
                "orderId",
                "clientOrderId",
                "price",
                "origQty",
                "executedQty",
                "cummulativeQuoteQty",
                "status",
                "timeInForce",
                "type",
                "side",
            ] {
                full[key] = order[key].clone();
            }
            full["transactTime"] = json!(now);
            full["workingTime"] = json!(now);
            full["fills"] = json!([]);
            (StatusCode::OK, full)
        }
        ("GET", "/api/v3/order") | ("DELETE", "/api/v3/order") => {
            if let Some(e) = mandatory(&["symbol"]) {
                return e;
            }
            let found = inner.orders.iter_mut().find(|o| {
                o["symbol"] == params["symbol"].as_str()
                    && (params
                        .get("orderId")
                        .is_some_and(|id| id.parse::<u64>().ok() == o["orderId"].as_u64())
                        || params
                            .get("origClientOrderId")
                            .is_some_and(|id| o["clientOrderId"] == id.as_str()))
            });
            match (method.as_str(), found) {
                ("GET", Some(order)) => (StatusCode::OK, order.clone()),
                ("GET", None) => error(400, -2013, "Order does not exist."),
                (_, Some(order))
                    if order["status"] == "NEW" || order["status"] == "PARTIALLY_FILLED" =>
                {
                    order["status"] = json!("CANCELED");
                    order["updateTime"] = json!(now);
                    let mut cancel = fixture("cancel_order_response.json");
                    for key in [
                        "symbol",
                        "orderId",
                        "price",
                        "origQty",
                        "executedQty",
                        "cummulativeQuoteQty",
                        "status",
                        "side",
                    ] {
                        cancel[key] = order[key].clone();
                    }
                    cancel["origClientOrderId"] = order["clientOrderId"].clone();
                    cancel["transactTime"] = json!(now);
                    (StatusCode::OK, cancel)
                }
                _ => error(400, -2011, "Unknown order sent."),
            }
        }
        ("GET", "/api/v3/openOrders") => {
            let open: Vec<Value> = inner
                .orders
                .iter()
                .filter(|o| {
                    (o["status"] == "NEW" || o["status"] == "PARTIALLY_FILLED")
                        && params
                            .get("symbol")
                            .is_none_or(|s| o["symbol"] == s.as_str())
                })
                .cloned()
                .collect();
            (StatusCode::OK, Value::Array(open))
        }
        ("GET", "/api/v3/account") => (StatusCode::OK, fixture("account_response.json")),
        _ => error(404, -1000, "unknown endpoint"),
    }
}

/// BTCUSDT's PRICE_FILTER and LOT_SIZE from the fixture's exchangeInfo.
fn check_filters(params: &BTreeMap<String, String>) -> Option<(StatusCode, Value)> {
    let info = fixture("http_spot_market_exchange_info.json");
    let symbol = info["symbols"]
        .as_array()?
        .iter()
        .find(|s| s["symbol"] == params["symbol"].as_str());
    let Some(symbol) = symbol else {
        return Some(error(400, -1121, "Invalid symbol."));
    };
    let filter = |name: &str| {
        symbol["filters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["filterType"] == name)
            .cloned()
            .unwrap()
    };
    let dec = |v: &Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    let Ok(price) = params["price"].parse::<Decimal>() else {
        return Some(error(
            400,
            -1100,
            "Illegal characters found in parameter 'price'.",
        ));
    };
    let Ok(quantity) = params["quantity"].parse::<Decimal>() else {
        return Some(error(
            400,
            -1100,
            "Illegal characters found in parameter 'quantity'.",
        ));
    };
    let p = filter("PRICE_FILTER");
    if price < dec(&p["minPrice"]) || !(price % dec(&p["tickSize"])).is_zero() {
        return Some(error(400, -1013, "Filter failure: PRICE_FILTER"));
    }
    let l = filter("LOT_SIZE");
    if quantity < dec(&l["minQty"]) || !(quantity % dec(&l["stepSize"])).is_zero() {
        return Some(error(400, -1013, "Filter failure: LOT_SIZE"));
    }
    None
}
