//! `hedgehog exchange serve`: the paper exchange behind a subset of Binance's spot API, on
//! 127.0.0.1, so that any Binance client (Hedgehog's own live adapter, python-binance, ...)
//! can trade against recorded markets.
//!
//! It answers `/api/v3/ping`, `time`, `exchangeInfo`, `order` (POST, GET, DELETE),
//! `openOrders`, `account` and `myTrades` over HTTP; the trade stream (`/stream?streams=` and
//! `/ws/<stream>`) and the WebSocket API's user data stream (`/ws-api/v3`,
//! `userDataStream.subscribe.signature`) over websockets, all on one port.
//!
//! What it keeps, like Binance:
//! - signed requests carry the configured API key and a valid HMAC signature and timestamp
//!   (checked by the same [`verify_signed_query`] the tests' mock uses), else `-2015` /
//!   `-1022` / `-1021`;
//! - orders meet the symbol's filters (`-1013 Filter failure: ...`) and the account's free
//!   balance (`-2010`), which they lock until they fill or are cancelled; a client order id
//!   already open is a duplicate (`-2010 Duplicate order sent.`);
//! - fills come from the replayed trades with the paper exchange's rules (the same code paper
//!   trading and backtests use): a BUY fills when a trade prints below its price, a SELL
//!   above; at the order's price (it rests: maker), charged the commission rate in the asset
//!   received (the base asset for a BUY, the quote for a SELL), as Binance does without BNB;
//! - every change is reported on the user data stream as an `executionReport`, and every
//!   answer carries `X-MBX-USED-WEIGHT-1M` and `X-MBX-ORDER-COUNT-10S`.
//!
//! Playback of the trades starts when the first trade-stream client connects (so it sees the
//! market from its start) and plays once, at `speed` times real pace (0: as fast as possible).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::paper_exchange::{PaperExchange, RestingOrder};
use hedgehog_domain::{Side, Symbol};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify};

use hedgehog_binance::combined_frame;
use hedgehog_binance::market_stream::{self, Heard, MarketStream};
use hedgehog_binance::rest::{
    self, sign, verify_signed_query, Endpoint, MarketTrade, Refusal, Security,
};
use hedgehog_binance::Market;
use hedgehog_ingest::import::{ImportError, ImportOptions};

/// What the exchange serves and with what.
#[derive(Debug, Clone)]
pub struct ExchangeOptions {
    /// Recorded trades to play (any format the importer reads); none: orders just rest.
    pub files: Vec<PathBuf>,
    /// 1.0 is real pace; 0 is as fast as possible.
    pub speed: f64,
    pub import: ImportOptions,
    /// The one account's API key and secret.
    pub api_key: String,
    pub secret: String,
    /// What the account holds at start.
    pub balances: Vec<(String, Decimal)>,
    /// Commission rate per fill (Binance's default is 0.001).
    pub commission: Decimal,
    /// The exchangeInfo answer, as Binance sends it.
    pub exchange_info_json: String,
    pub rules: ExchangeRules,
    /// A live trade stream to fill from as well (Binance's, or a replay server's), and the
    /// symbols to follow on it.
    pub follow: Option<(String, Vec<Symbol>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeServerError {
    #[error(transparent)]
    Trades(#[from] ImportError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// An order as the exchange keeps it.
#[derive(Debug, Clone)]
struct BookOrder {
    symbol: Symbol,
    order_id: u64,
    client_order_id: String,
    side: Side,
    price: Decimal,
    quantity: Decimal,
    executed: Decimal,
    executed_quote: Decimal,
    status: &'static str,
    time: i64,
    update_time: i64,
}

impl BookOrder {
    fn is_open(&self) -> bool {
        matches!(self.status, "NEW" | "PARTIALLY_FILLED")
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
            "timeInForce": "GTC",
            "type": "LIMIT",
            "side": self.side.to_string(),
            "stopPrice": "0.00000000",
            "icebergQty": "0.00000000",
            "time": self.time,
            "updateTime": self.update_time,
            "isWorking": true,
            "workingTime": self.time,
            "origQuoteOrderQty": "0.00000000",
            "selfTradePreventionMode": "NONE",
        })
    }
}

/// The account, the orders and the fills: everything the API changes.
struct Book {
    rules: ExchangeRules,
    commission: Decimal,
    /// Free and locked per asset.
    balances: BTreeMap<String, (Decimal, Decimal)>,
    orders: BTreeMap<u64, BookOrder>,
    trades: Vec<Value>,
    next_order_id: u64,
    next_trade_id: u64,
    /// Request weight used in the current minute, and order count in the current 10 s.
    weight: (i64, u32),
    orders_10s: (i64, u32),
    /// The last [`PLAYED`] market trades of each symbol, for `trades` and `historicalTrades`.
    played: BTreeMap<Symbol, VecDeque<TradeReceived>>,
}

/// How many market trades of a symbol `trades` and `historicalTrades` can reach back over.
const PLAYED: usize = 100_000;

/// Shared by every connection.
struct Exchange {
    book: Mutex<Book>,
    api_key: String,
    secret: String,
    exchange_info_json: String,
    /// Trade frames of the market: (stream name, frame).
    market: broadcast::Sender<(String, String)>,
    /// Execution reports (the bare event objects).
    user: broadcast::Sender<Value>,
    /// Wakes the tape when the first trade-stream client arrives.
    start: Notify,
}

fn now_ms() -> i64 {
    hedgehog_runtime::time::now().millis()
}

fn error(status: StatusCode, code: i64, msg: &str) -> Response {
    (status, axum::Json(json!({ "code": code, "msg": msg }))).into_response()
}

fn refusal(r: Refusal) -> Response {
    let status = if r.code == -2015 {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::BAD_REQUEST
    };
    error(status, r.code, &r.msg)
}

/// A bound exchange, ready to serve.
pub struct ExchangeServer {
    listener: TcpListener,
    exchange: Arc<Exchange>,
    trades: Vec<TradeReceived>,
    speed: f64,
    follow: Option<(String, Vec<Symbol>)>,
}

impl ExchangeServer {
    /// Loads the trades and binds `addr` (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        options: ExchangeOptions,
    ) -> Result<Self, ExchangeServerError> {
        let mut trades = crate::tape::load(options.files.clone(), options.import.clone()).await?;
        trades.retain(|(market, _)| *market == Market::Spot);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ExchangeServerError::Bind { addr, source })?;
        let exchange = Exchange {
            book: Mutex::new(Book::new(
                options.rules,
                options.commission,
                &options.balances,
            )),
            api_key: options.api_key,
            secret: options.secret,
            exchange_info_json: options.exchange_info_json,
            market: broadcast::channel(4096).0,
            user: broadcast::channel(1024).0,
            start: Notify::new(),
        };
        Ok(ExchangeServer {
            listener,
            exchange: Arc::new(exchange),
            trades: trades.into_iter().map(|(_, t)| t).collect(),
            speed: options.speed,
            follow: options.follow,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// How many trades it plays.
    pub fn trades(&self) -> usize {
        self.trades.len()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let exchange = Arc::clone(&self.exchange);
        let tape = tokio::spawn(play(Arc::clone(&exchange), self.trades, self.speed));
        let live = self
            .follow
            .map(|(url, symbols)| tokio::spawn(follow(Arc::clone(&exchange), url, symbols)));
        let app = axum::Router::new()
            .route("/ws-api/v3", axum::routing::get(ws_api))
            .route("/stream", axum::routing::get(market_stream))
            .route("/ws/{stream}", axum::routing::get(market_stream))
            .fallback(rest)
            .with_state(exchange);
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        tape.abort();
        if let Some(live) = live {
            live.abort();
        }
        if let Err(e) = served {
            tracing::error!(error = %e, "the exchange server failed");
        }
    }
}

/// Plays the trades once the first market client is there: each fills what it reaches, then
/// goes out on the trade stream.
async fn play(exchange: Arc<Exchange>, trades: Vec<TradeReceived>, speed: f64) {
    exchange.start.notified().await;
    let paper = PaperExchange::default();
    let mut pace = crate::tape::Pace::new(speed);
    for trade in &trades {
        pace.wait(trade.trade_time.millis()).await;
        exchange.trade(&paper, trade);
    }
    tracing::info!(trades = trades.len(), "every recorded trade played");
}

/// Fills from a live trade stream: every trade of `symbols` it carries fills what it reaches
/// and goes out on this exchange's own trade stream. Reconnects forever, with backoff.
async fn follow(exchange: Arc<Exchange>, url: String, symbols: Vec<Symbol>) {
    let stream_url = market_stream::trades_url(&url, &symbols);
    let paper = PaperExchange::default();
    let (_keep, mut never) = tokio::sync::watch::channel(false);
    let mut backoff = Duration::from_millis(500);
    loop {
        match MarketStream::connect(&stream_url).await {
            Ok(mut ws) => {
                tracing::info!(url = stream_url, "following the live trade stream");
                backoff = Duration::from_millis(500);
                loop {
                    let text = match ws.next().await {
                        Heard::Text(text) => text,
                        Heard::Alive => continue,
                        Heard::Closed | Heard::Dropped(_) => break,
                    };
                    let trade = hedgehog_binance::parse_frame(&text)
                        .ok()
                        .and_then(hedgehog_binance::Frame::into_trade);
                    if let Some((Market::Spot, trade)) = trade {
                        exchange.trade(&paper, &trade);
                    }
                }
                tracing::warn!(
                    url = stream_url,
                    "the live trade stream dropped; reconnecting"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the live trade stream")
            }
        }
        hedgehog_runtime::backoff::wait(&mut backoff, Duration::from_secs(60), &mut never).await;
    }
}

impl Exchange {
    /// One market trade: it fills what it reaches, then goes out on the trade stream.
    fn trade(&self, paper: &PaperExchange, trade: &TradeReceived) {
        let reports = {
            let mut book = self.book();
            book.record(trade);
            book.fill(paper, trade)
        };
        for report in reports {
            let _ = self.user.send(report);
        }
        let (stream, frame) = combined_frame(Market::Spot, trade);
        let _ = self.market.send((stream, frame));
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock leaves a consistent book (every change is one
        // assignment after its checks), so a poisoned lock is still usable.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the API key and the signature of a signed request; its parameters.
    fn verify(
        &self,
        headers: &HeaderMap,
        query: &str,
        body: &str,
    ) -> Result<BTreeMap<String, String>, Refusal> {
        let key = headers
            .get("x-mbx-apikey")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if key != self.api_key {
            return Err(refuse(
                -2015,
                "Invalid API-key, IP, or permissions for action.",
            ));
        }
        // The signature covers the query string, or the body when the parameters are there.
        let signed = if query.contains("signature=") {
            query
        } else {
            body
        };
        verify_signed_query(signed, &self.secret, now_ms())
    }
}

/// Every REST endpoint: one handler, so that weights, keys and errors are kept in one place.
async fn rest(
    State(exchange): State<Arc<Exchange>>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = query.unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_owned();
    // Binance's own table of endpoints and their weights; klines are not served (yet).
    let served = Endpoint::find(&method, &path).filter(|e| !std::ptr::eq(*e, &rest::KLINES));
    let Some(endpoint) = served else {
        return error(
            StatusCode::NOT_FOUND,
            -1000,
            &format!("{method} {path} is not served by Hedgehog's paper exchange"),
        );
    };
    let order = endpoint.order;
    let signed = endpoint.security == Security::Signed;
    let params = if signed {
        match exchange.verify(&headers, &query, &body) {
            Ok(params) => params,
            Err(r) => return refusal(r),
        }
    } else {
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    };
    let weight = endpoint.weight_of(!params.contains_key("symbol"));
    let (used, orders) = exchange.book().count(weight, order);
    let mut response = match (&method, path.as_str()) {
        (&Method::GET, "/api/v3/ping") => axum::Json(json!({})).into_response(),
        (&Method::GET, "/api/v3/time") => {
            axum::Json(json!({ "serverTime": now_ms() })).into_response()
        }
        (&Method::GET, "/api/v3/exchangeInfo") => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            exchange.exchange_info_json.clone(),
        )
            .into_response(),
        _ => {
            let answer = {
                let mut book = exchange.book();
                match (&method, path.as_str()) {
                    (&Method::POST, _) => book.place(&params),
                    (&Method::GET, "/api/v3/order") => book.query(&params),
                    (&Method::DELETE, _) => book.cancel(&params),
                    (&Method::GET, "/api/v3/openOrders") => book.open_orders(&params),
                    (&Method::GET, "/api/v3/account") => Ok((book.account(&params), Vec::new())),
                    (&Method::GET, "/api/v3/trades") => book.market_trades(&params, false),
                    (&Method::GET, "/api/v3/historicalTrades") => book.market_trades(&params, true),
                    (&Method::GET, "/api/v3/ticker/price") => book.ticker_price(&params),
                    (&Method::GET, "/api/v3/avgPrice") => book.average_price(&params),
                    _ => book.my_trades(&params),
                }
            };
            match answer {
                Ok((body, reports)) => {
                    for report in reports {
                        let _ = exchange.user.send(report);
                    }
                    axum::Json(body).into_response()
                }
                Err(r) => refusal(r),
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert("x-mbx-used-weight-1m", used.into());
    if order {
        headers.insert("x-mbx-order-count-10s", orders.into());
    }
    response
}

type Answer = Result<(Value, Vec<Value>), Refusal>;

fn refuse(code: i64, msg: impl Into<String>) -> Refusal {
    Refusal {
        code,
        msg: msg.into(),
    }
}

/// A price asked of a symbol no trade of which has been played: there is none to give.
fn not_played_yet(symbol: &Symbol) -> Refusal {
    refuse(
        -1121,
        format!("No trade of {symbol} has been played yet: Hedgehog's paper exchange prices a symbol from the trades it plays or follows."),
    )
}

fn mandatory<'a>(params: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, Refusal> {
    params.get(name).map(String::as_str).ok_or_else(|| {
        refuse(
            -1102,
            format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
        )
    })
}

fn decimal(params: &BTreeMap<String, String>, name: &str) -> Result<Decimal, Refusal> {
    mandatory(params, name)?.parse().map_err(|_| {
        refuse(
            -1100,
            format!("Illegal characters found in parameter '{name}'."),
        )
    })
}

impl Book {
    /// An account holding `balances` (all free), with no orders yet.
    fn new(rules: ExchangeRules, commission: Decimal, balances: &[(String, Decimal)]) -> Book {
        Book {
            rules,
            commission,
            balances: balances
                .iter()
                .map(|(asset, amount)| (asset.clone(), (*amount, Decimal::ZERO)))
                .collect(),
            orders: BTreeMap::new(),
            trades: Vec::new(),
            next_order_id: 1,
            next_trade_id: 1,
            weight: (0, 0),
            orders_10s: (0, 0),
            played: BTreeMap::new(),
        }
    }

    /// Keeps a market trade for `trades` and `historicalTrades`.
    fn record(&mut self, trade: &TradeReceived) {
        let played = self.played.entry(trade.symbol.clone()).or_default();
        played.push_back(trade.clone());
        if played.len() > PLAYED {
            played.pop_front();
        }
    }

    /// `GET /api/v3/ticker/price`: the last played trade's price of the symbol, or of every
    /// symbol played.
    fn ticker_price(&self, params: &BTreeMap<String, String>) -> Answer {
        let price_of = |symbol: &Symbol| {
            let last = self.played.get(symbol).and_then(VecDeque::back)?;
            Some(json!({ "symbol": symbol.as_str(), "price": last.price.to_string() }))
        };
        if !params.contains_key("symbol") {
            let prices: Vec<Value> = self.played.keys().filter_map(price_of).collect();
            return Ok((json!(prices), Vec::new()));
        }
        let symbol = self.symbol(params)?;
        let price = price_of(&symbol).ok_or_else(|| not_played_yet(&symbol))?;
        Ok((price, Vec::new()))
    }

    /// `GET /api/v3/avgPrice`: the volume-weighted price of the symbol's played trades in the
    /// 5 minutes up to its last one (the tape's clock, not the machine's), 8 decimals.
    fn average_price(&self, params: &BTreeMap<String, String>) -> Answer {
        let symbol = self.symbol(params)?;
        let played = self.played.get(&symbol);
        let last = played
            .and_then(VecDeque::back)
            .ok_or_else(|| not_played_yet(&symbol))?;
        let since = last.trade_time.millis() - 5 * 60_000;
        let (mut quote, mut base) = (Decimal::ZERO, Decimal::ZERO);
        for t in played.into_iter().flatten().rev() {
            if t.trade_time.millis() <= since {
                break;
            }
            quote += t.price * t.quantity;
            base += t.quantity;
        }
        let price = if base.is_zero() {
            last.price
        } else {
            quote / base
        };
        let answer = json!({
            "mins": 5,
            "price": format!("{:.8}", price.round_dp(8)),
            "closeTime": last.trade_time.millis(),
        });
        Ok((answer, Vec::new()))
    }

    /// `GET /api/v3/trades` (the latest `limit`) and `historicalTrades` (from `fromId` on, or
    /// the latest), from the trades played, in Binance's shape.
    fn market_trades(&self, params: &BTreeMap<String, String>, historical: bool) -> Answer {
        let symbol = self.symbol(params)?;
        let number = |name: &str| match params.get(name) {
            None => Ok(None),
            Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
                refuse(
                    -1100,
                    format!("Illegal characters found in parameter '{name}'."),
                )
            }),
        };
        let limit = number("limit")?.unwrap_or(500);
        if !(1..=1000).contains(&limit) {
            return Err(refuse(
                -1130,
                "Invalid data sent for a parameter: limit is 1 to 1000.",
            ));
        }
        let from = if historical { number("fromId")? } else { None };
        let empty = VecDeque::new();
        let played = self.played.get(&symbol).unwrap_or(&empty);
        let limit = limit as usize;
        let page: Vec<&TradeReceived> = match from {
            Some(from) => played
                .iter()
                .skip_while(|t| t.trade_id < from)
                .take(limit)
                .collect(),
            None => played
                .iter()
                .skip(played.len().saturating_sub(limit))
                .collect(),
        };
        let trades: Vec<Value> = page.into_iter().map(MarketTrade::answer).collect();
        Ok((json!(trades), Vec::new()))
    }

    /// Counts a request's weight in its minute and an order in its 10 seconds.
    fn count(&mut self, weight: u32, order: bool) -> (u32, u32) {
        let now = now_ms();
        let minute = now / 60_000;
        if self.weight.0 != minute {
            self.weight = (minute, 0);
        }
        self.weight.1 += weight;
        let window = now / 10_000;
        if self.orders_10s.0 != window {
            self.orders_10s = (window, 0);
        }
        if order {
            self.orders_10s.1 += 1;
        }
        (self.weight.1, self.orders_10s.1)
    }

    fn symbol(&self, params: &BTreeMap<String, String>) -> Result<Symbol, Refusal> {
        let name = mandatory(params, "symbol")?;
        Symbol::parse(name)
            .ok()
            .filter(|s| self.rules.get(s).is_some())
            .ok_or_else(|| refuse(-1121, "Invalid symbol."))
    }

    fn balance(&mut self, asset: &str) -> &mut (Decimal, Decimal) {
        self.balances
            .entry(asset.to_owned())
            .or_insert((Decimal::ZERO, Decimal::ZERO))
    }

    fn place(&mut self, params: &BTreeMap<String, String>) -> Answer {
        let symbol = self.symbol(params)?;
        let side = match mandatory(params, "side")? {
            "BUY" => Side::Buy,
            "SELL" => Side::Sell,
            _ => return Err(refuse(-1117, "Invalid side.")),
        };
        if mandatory(params, "type")? != "LIMIT" {
            return Err(refuse(
                -1116,
                "Invalid orderType: Hedgehog's paper exchange takes LIMIT orders only.",
            ));
        }
        if mandatory(params, "timeInForce")? != "GTC" {
            return Err(refuse(
                -1115,
                "Invalid timeInForce: Hedgehog's paper exchange takes GTC only.",
            ));
        }
        let quantity = decimal(params, "quantity")?;
        let price = decimal(params, "price")?;
        let Some(rules) = self.rules.get(&symbol).cloned() else {
            return Err(refuse(-1121, "Invalid symbol."));
        };
        rules
            .check_limit_order(price, quantity)
            .map_err(|f| refuse(-1013, format!("Filter failure: {}", f.filter)))?;
        let order_id = self.next_order_id;
        let client_order_id = params
            .get("newClientOrderId")
            .cloned()
            .unwrap_or_else(|| format!("hhpaper{order_id}"));
        if self
            .orders
            .values()
            .any(|o| o.is_open() && o.symbol == symbol && o.client_order_id == client_order_id)
        {
            return Err(refuse(-2010, "Duplicate order sent."));
        }
        let (asset, needed) = match side {
            Side::Buy => (rules.quote_asset.clone(), price * quantity),
            Side::Sell => (rules.base_asset.clone(), quantity),
        };
        let balance = self.balance(&asset);
        if balance.0 < needed {
            return Err(refuse(
                -2010,
                "Account has insufficient balance for requested action.",
            ));
        }
        balance.0 -= needed;
        balance.1 += needed;
        self.next_order_id += 1;
        let now = now_ms();
        let order = BookOrder {
            symbol,
            order_id,
            client_order_id,
            side,
            price,
            quantity,
            executed: Decimal::ZERO,
            executed_quote: Decimal::ZERO,
            status: "NEW",
            time: now,
            update_time: now,
        };
        let mut answer = order.json();
        answer["transactTime"] = json!(now);
        answer["fills"] = json!([]);
        let report = execution_report(&order, "NEW", None, now);
        self.orders.insert(order_id, order);
        Ok((answer, vec![report]))
    }

    /// The order a query or cancel names, by `orderId` or `origClientOrderId`.
    fn find(
        &self,
        params: &BTreeMap<String, String>,
        code: i64,
        msg: &str,
    ) -> Result<u64, Refusal> {
        let symbol = self.symbol(params)?;
        let found = match (params.get("orderId"), params.get("origClientOrderId")) {
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

    fn query(&self, params: &BTreeMap<String, String>) -> Answer {
        let id = self.find(params, -2013, "Order does not exist.")?;
        Ok((self.orders[&id].json(), Vec::new()))
    }

    fn cancel(&mut self, params: &BTreeMap<String, String>) -> Answer {
        let id = self.find(params, -2011, "Unknown order sent.")?;
        let Some(order) = self.orders.get(&id).cloned().filter(BookOrder::is_open) else {
            return Err(refuse(-2011, "Unknown order sent."));
        };
        let Some(rules) = self.rules.get(&order.symbol).cloned() else {
            return Err(refuse(-1121, "Invalid symbol."));
        };
        let remaining = order.quantity - order.executed;
        let (asset, locked) = match order.side {
            Side::Buy => (rules.quote_asset, remaining * order.price),
            Side::Sell => (rules.base_asset, remaining),
        };
        let balance = self.balance(&asset);
        balance.1 -= locked;
        balance.0 += locked;
        let now = now_ms();
        let order = self.orders.get_mut(&id).map(|o| {
            o.status = "CANCELED";
            o.update_time = now;
            o.clone()
        });
        let Some(order) = order else {
            return Err(refuse(-2011, "Unknown order sent."));
        };
        let mut answer = order.json();
        // As Binance: the order's client id is `origClientOrderId`, and `clientOrderId` names
        // the cancel request itself.
        answer["origClientOrderId"] = json!(order.client_order_id);
        answer["clientOrderId"] = json!(format!("cancel-{}", order.order_id));
        answer["transactTime"] = json!(now);
        Ok((
            answer,
            vec![execution_report(&order, "CANCELED", None, now)],
        ))
    }

    fn open_orders(&self, params: &BTreeMap<String, String>) -> Answer {
        let symbol = match params.get("symbol") {
            Some(_) => Some(self.symbol(params)?),
            None => None,
        };
        let open: Vec<Value> = self
            .orders
            .values()
            .filter(|o| o.is_open() && symbol.as_ref().is_none_or(|s| *s == o.symbol))
            .map(BookOrder::json)
            .collect();
        Ok((json!(open), Vec::new()))
    }

    fn account(&self, params: &BTreeMap<String, String>) -> Value {
        let omit_zero = params.get("omitZeroBalances").is_some_and(|v| v == "true");
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
            "updateTime": now_ms(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        })
    }

    fn my_trades(&self, params: &BTreeMap<String, String>) -> Answer {
        let symbol = self.symbol(params)?;
        let order_id = params.get("orderId").and_then(|id| id.parse::<u64>().ok());
        let trades: Vec<Value> = self
            .trades
            .iter()
            .filter(|t| t["symbol"] == symbol.as_str())
            .filter(|t| order_id.is_none_or(|id| t["orderId"] == id))
            .cloned()
            .collect();
        Ok((json!(trades), Vec::new()))
    }

    /// Fills what a market trade reaches; the execution reports.
    fn fill(&mut self, paper: &PaperExchange, trade: &TradeReceived) -> Vec<Value> {
        let Some(rules) = self.rules.get(&trade.symbol).cloned() else {
            return Vec::new();
        };
        let resting: Vec<RestingOrder> = self
            .orders
            .values()
            .filter(|o| o.is_open() && o.symbol == trade.symbol)
            .map(|o| RestingOrder {
                order_id: o.order_id,
                side: o.side,
                price: o.price,
                remaining: o.quantity - o.executed,
                fee_rate: self.commission,
            })
            .collect();
        if resting.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let mut reports = Vec::new();
        for execution in paper.match_trade(&resting, trade) {
            let Some(order) = self.orders.get_mut(&execution.order_id) else {
                continue;
            };
            let (quantity, price) = (execution.quantity, order.price);
            let quote = quantity * price;
            order.executed += quantity;
            order.executed_quote += quote;
            order.status = if order.executed >= order.quantity {
                "FILLED"
            } else {
                "PARTIALLY_FILLED"
            };
            order.update_time = now;
            let order = order.clone();
            // Commission in the asset received, as Binance charges it without BNB.
            let (commission, commission_asset) = match order.side {
                Side::Buy => (quantity * self.commission, rules.base_asset.clone()),
                Side::Sell => (quote * self.commission, rules.quote_asset.clone()),
            };
            match order.side {
                Side::Buy => {
                    self.balance(&rules.quote_asset).1 -= quote;
                    self.balance(&rules.base_asset).0 += quantity - commission;
                }
                Side::Sell => {
                    self.balance(&rules.base_asset).1 -= quantity;
                    self.balance(&rules.quote_asset).0 += quote - commission;
                }
            }
            let trade_id = self.next_trade_id;
            self.next_trade_id += 1;
            let fill = Fill {
                trade_id,
                quantity,
                price,
                commission: commission.normalize(),
                commission_asset,
            };
            self.trades.push(json!({
                "symbol": order.symbol.as_str(),
                "id": trade_id,
                "orderId": order.order_id,
                "orderListId": -1,
                "price": price.to_string(),
                "qty": quantity.to_string(),
                "quoteQty": quote.to_string(),
                "commission": fill.commission.to_string(),
                "commissionAsset": fill.commission_asset,
                "time": now,
                "isBuyer": order.side == Side::Buy,
                "isMaker": true,
                "isBestMatch": true,
            }));
            reports.push(execution_report(&order, "TRADE", Some(&fill), now));
        }
        reports
    }
}

/// One execution of an order, for its report.
struct Fill {
    trade_id: u64,
    quantity: Decimal,
    price: Decimal,
    commission: Decimal,
    commission_asset: String,
}

/// Binance's `executionReport` for an order after an execution of type `execution`.
fn execution_report(order: &BookOrder, execution: &str, fill: Option<&Fill>, now: i64) -> Value {
    json!({
        "e": "executionReport",
        "E": now,
        "s": order.symbol.as_str(),
        "c": order.client_order_id,
        "S": order.side.to_string(),
        "o": "LIMIT",
        "f": "GTC",
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
        "w": order.is_open(),
        "m": fill.is_some(),
        "M": false,
        "O": order.time,
        "Z": order.executed_quote.to_string(),
        "Y": fill.map_or(Decimal::ZERO, |f| f.quantity * f.price).to_string(),
        "Q": "0.00000000",
        "W": order.time,
        "V": "NONE",
    })
}

/// The trade stream, as Binance's combined (`/stream?streams=`) and raw (`/ws/<stream>`)
/// endpoints.
async fn market_stream(
    State(exchange): State<Arc<Exchange>>,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let streams: HashSet<String> = market_stream::requested_streams(&path);
    upgrade.on_upgrade(move |mut socket| async move {
        let mut market = exchange.market.subscribe();
        exchange.start.notify_one();
        loop {
            tokio::select! {
                frame = market.recv() => match frame {
                    Ok((stream, frame)) if streams.contains(&stream) => {
                        if socket.send(WsMessage::text(frame)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a trade-stream client lagged; trades skipped for it");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                incoming = socket.recv() => match incoming {
                    Some(Ok(_)) => {}
                    _ => return,
                },
            }
        }
    })
}

/// The WebSocket API: `userDataStream.subscribe.signature`, `ping` and `time`.
async fn ws_api(State(exchange): State<Arc<Exchange>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| user_session(exchange, socket))
}

async fn user_session(exchange: Arc<Exchange>, mut socket: WebSocket) {
    let mut reports: Option<broadcast::Receiver<Value>> = None;
    loop {
        let out = tokio::select! {
            report = next_report(&mut reports) => match report {
                Some(event) => json!({ "subscriptionId": 0, "event": event }),
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    let answer = ws_request(&exchange, text.as_str());
                    if answer.get("status") == Some(&json!(200))
                        && answer["result"].get("subscriptionId").is_some()
                    {
                        reports = Some(exchange.user.subscribe());
                    }
                    answer
                }
                Some(Ok(_)) => continue,
                _ => return,
            },
        };
        if socket.send(WsMessage::text(out.to_string())).await.is_err() {
            return;
        }
    }
}

async fn next_report(reports: &mut Option<broadcast::Receiver<Value>>) -> Option<Value> {
    match reports {
        Some(r) => loop {
            match r.recv().await {
                Ok(v) => return Some(v),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
        None => std::future::pending().await,
    }
}

/// Answers one WebSocket API request.
fn ws_request(exchange: &Exchange, text: &str) -> Value {
    let request: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let fail = |status: u16, code: i64, msg: &str| json!({ "id": id, "status": status, "error": { "code": code, "msg": msg } });
    let ok = |result: Value| json!({ "id": id, "status": 200, "result": result });
    match request.get("method").and_then(Value::as_str) {
        Some("ping") => ok(json!({})),
        Some("time") => ok(json!({ "serverTime": now_ms() })),
        Some("userDataStream.subscribe.signature") => {
            let Some(params) = request.get("params").and_then(Value::as_object) else {
                return fail(400, -1102, "Mandatory parameter 'params' was not sent.");
            };
            let mut payload: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| k.as_str() != "signature")
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect();
            payload.sort();
            let query: String = payload
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let key: HashMap<_, _> = payload.iter().cloned().collect();
            if key.get("apiKey").map(String::as_str) != Some(exchange.api_key.as_str()) {
                return fail(401, -2015, "Invalid API-key, IP, or permissions for action.");
            }
            let signature = params.get("signature").and_then(Value::as_str);
            if signature != Some(sign(exchange.secret.as_bytes(), &query).as_str()) {
                return fail(400, -1022, "Signature for this request is not valid.");
            }
            let timestamp = key.get("timestamp").and_then(|t| t.parse::<i64>().ok());
            let window = key
                .get("recvWindow")
                .and_then(|w| w.parse::<i64>().ok())
                .unwrap_or(5_000);
            let now = now_ms();
            match timestamp {
                Some(t) if t <= now + 1_000 && now - t <= window => ok(json!({ "subscriptionId": 0 })),
                _ => fail(400, -1021, "Timestamp for this request is outside of the recvWindow."),
            }
        }
        Some(other) => fail(400, -1000, &format!("Unknown method {other}: Hedgehog's paper exchange serves ping, time and userDataStream.subscribe.signature.")),
        None => fail(400, -1000, "Malformed request: expected {\"id\", \"method\", \"params\"}."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn book() -> Book {
        Book::new(
            hedgehog_binance::exchange_info::bundled().unwrap(),
            dec!(0.001),
            &[("USDT".to_owned(), dec!(1000))],
        )
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn buy(price: &str, quantity: &str, client: &str) -> BTreeMap<String, String> {
        params(&[
            ("symbol", "ADAUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("price", price),
            ("quantity", quantity),
            ("newClientOrderId", client),
        ])
    }

    fn trade(id: u64, price: Decimal) -> TradeReceived {
        hedgehog_domain::testkit::trade("ADAUSDT", id)
            .price(price)
            .quantity(dec!(100000))
            .at(id as i64)
            .buyer_is_maker(true)
            .build()
    }

    #[test]
    fn recent_and_historical_trades_come_from_what_was_played() {
        let mut b = book();
        for id in 1..=1200 {
            b.record(&trade(id, dec!(0.5) + Decimal::new(id as i64, 4)));
        }
        let ids = |answer: Value| -> Vec<u64> {
            answer
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_u64().unwrap())
                .collect()
        };
        let (recent, _) = b
            .market_trades(&params(&[("symbol", "ADAUSDT")]), false)
            .unwrap();
        assert_eq!(ids(recent.clone()), (701..=1200).collect::<Vec<_>>());
        assert_eq!(recent[499]["price"], "0.6200");
        assert_eq!(recent[499]["qty"], "100000");
        assert_eq!(recent[499]["quoteQty"], "62000.0000");
        assert_eq!(recent[499]["time"], 1200);
        assert_eq!(recent[499]["isBuyerMaker"], true);
        let from = params(&[("symbol", "ADAUSDT"), ("fromId", "10"), ("limit", "3")]);
        let (page, _) = b.market_trades(&from, true).unwrap();
        assert_eq!(ids(page), [10, 11, 12]);
        let past_the_end = params(&[("symbol", "ADAUSDT"), ("fromId", "5000")]);
        assert_eq!(
            ids(b.market_trades(&past_the_end, true).unwrap().0),
            [] as [u64; 0]
        );
        let refused =
            |pairs: &[(&str, &str)]| b.market_trades(&params(pairs), true).unwrap_err().code;
        assert_eq!(refused(&[("symbol", "ADAUSDT"), ("limit", "1001")]), -1130);
        assert_eq!(refused(&[("symbol", "ADAUSDT"), ("fromId", "x")]), -1100);
        assert_eq!(refused(&[("symbol", "NOPEUSDT")]), -1121);
        assert_eq!(refused(&[]), -1102);
    }

    #[test]
    fn prices_come_from_the_last_trades_played() {
        let mut b = book();
        let ada = params(&[("symbol", "ADAUSDT")]);
        let err = b.ticker_price(&ada).unwrap_err();
        assert!(
            err.msg.contains("No trade of ADAUSDT has been played yet"),
            "{}",
            err.msg
        );
        assert_eq!(b.average_price(&ada).unwrap_err().code, -1121);
        // Three trades 3 minutes apart: the first falls out of the last 5 minutes.
        for (id, price) in [(1, dec!(0.4)), (2, dec!(0.5)), (3, dec!(0.6))] {
            let mut t = trade(id, price);
            t.trade_time = hedgehog_domain::Timestamp(id as i64 * 180_000);
            t.quantity = Decimal::from(id);
            b.record(&t);
        }
        let (price, _) = b.ticker_price(&ada).unwrap();
        assert_eq!(price, json!({"symbol": "ADAUSDT", "price": "0.6"}));
        let (all, _) = b.ticker_price(&params(&[])).unwrap();
        assert_eq!(all, json!([{"symbol": "ADAUSDT", "price": "0.6"}]));
        // (0.5 x 2 + 0.6 x 3) / 5
        let (average, _) = b.average_price(&ada).unwrap();
        assert_eq!(
            average,
            json!({"mins": 5, "price": "0.56000000", "closeTime": 540_000})
        );
    }

    #[test]
    fn an_order_locks_its_funds_fills_from_a_trade_through_it_and_pays_in_what_it_gets() {
        let mut b = book();
        let (answer, reports) = b.place(&buy("0.5", "100", "a")).unwrap();
        assert_eq!(answer["status"], "NEW");
        assert_eq!(reports[0]["x"], "NEW");
        assert_eq!(b.balances["USDT"], (dec!(950), dec!(50)));
        assert!(
            b.fill(&PaperExchange::default(), &trade(1, dec!(0.5)))
                .is_empty(),
            "at the price: not through it"
        );
        let reports = b.fill(&PaperExchange::default(), &trade(2, dec!(0.49)));
        assert_eq!(reports.len(), 1);
        assert_eq!(
            (reports[0]["x"].as_str(), reports[0]["X"].as_str()),
            (Some("TRADE"), Some("FILLED"))
        );
        assert_eq!(reports[0]["N"], "ADA");
        assert_eq!(b.balances["USDT"], (dec!(950), dec!(0)));
        assert_eq!(b.balances["ADA"].0, dec!(99.9), "commission 0.1 % in ADA");
        let (trades, _) = b.my_trades(&params(&[("symbol", "ADAUSDT")])).unwrap();
        assert_eq!(trades.as_array().unwrap().len(), 1);
    }

    #[test]
    fn refusals_speak_binances_codes() {
        let mut b = book();
        assert_eq!(
            b.place(&buy("0.5", "10000", "a")).unwrap_err().code,
            -2010,
            "balance"
        );
        let filter = b.place(&buy("0.50000001", "100", "a")).unwrap_err();
        assert_eq!(
            (filter.code, filter.msg.as_str()),
            (-1013, "Filter failure: PRICE_FILTER")
        );
        b.place(&buy("0.5", "100", "a")).unwrap();
        assert_eq!(
            b.place(&buy("0.5", "100", "a")).unwrap_err().msg,
            "Duplicate order sent."
        );
        let cancel = params(&[("symbol", "ADAUSDT"), ("origClientOrderId", "a")]);
        let (answer, reports) = b.cancel(&cancel).unwrap();
        assert_eq!(
            (answer["status"].as_str(), reports[0]["x"].as_str()),
            (Some("CANCELED"), Some("CANCELED"))
        );
        assert_eq!(
            b.balances["USDT"],
            (dec!(1000), dec!(0)),
            "the lock is released"
        );
        assert_eq!(b.cancel(&cancel).unwrap_err().code, -2011);
        let missing = params(&[("symbol", "ADAUSDT"), ("origClientOrderId", "zz")]);
        assert_eq!(b.query(&missing).unwrap_err().code, -2013);
        assert_eq!(
            b.symbol(&params(&[("symbol", "NOPEUSDT")]))
                .unwrap_err()
                .code,
            -1121
        );
    }
}
