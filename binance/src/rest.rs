//! Binance's spot REST API, as a live trading engine needs it: signed requests, the server's
//! clock, rate limits kept rather than discovered, and errors typed by what the caller should do.
//!
//! Why it is built this way:
//! - **Signing.** A signed request carries `timestamp` and `recvWindow`, and `signature`, the
//!   HMAC-SHA256 of the exact query string with the API secret, hex-encoded. The query string is
//!   built once and sent as is, so what is signed is what Binance reads.
//! - **Time.** `timestamp` must fall inside `recvWindow` of Binance's clock, not ours: the client
//!   keeps an offset measured from `GET /api/v3/time` and re-measures it once when Binance
//!   answers -1021 (timestamp outside the window).
//! - **Rate limits.** Every answer carries the weight and order counts used in each window
//!   (`X-MBX-USED-WEIGHT-1M`, `X-MBX-ORDER-COUNT-10S`, ...). The client records them, takes the
//!   limits from `exchangeInfo.rateLimits`, and waits for the next window rather than send a
//!   request that would go over. A 429 pauses every request for its `Retry-After`, then retries;
//!   a 418 (an IP ban) fails every request until it ends, without touching the network.
//! - **Unknown outcomes.** A timeout or a 5xx on `POST /api/v3/order` does not say whether the
//!   order exists. [`RestClient::place_limit_order`] then asks for it by its client order id
//!   before anything is sent again, so one decision never becomes two orders.
//! - **Secrets.** The key and secret live in [`Credentials`], whose `Debug` masks them; they are
//!   never logged, and only the key is ever sent (as `X-MBX-APIKEY`).

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::{Side, Symbol, Timestamp, TradeKind};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// Binance's spot API.
pub const SPOT_URL: &str = "https://api.binance.com";
/// How long a request may take before the client gives up on it.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Binance's spot testnet.
pub const SPOT_TESTNET_URL: &str = "https://testnet.binance.vision";

/// How long Binance accepts a signed request after its `timestamp` (ms); Binance's default.
pub const RECV_WINDOW_MS: i64 = 5_000;

/// How many times a request is retried after a 429 before the error is returned.
const RATE_LIMIT_RETRIES: u32 = 3;

/// How many times an order whose outcome is unknown is looked up before giving up.
const LOOKUPS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    #[error("{endpoint}: Binance refused the order: filter failure ({msg}); the order breaks the symbol's PRICE_FILTER, LOT_SIZE or NOTIONAL rules")]
    FilterFailure { endpoint: String, msg: String },
    #[error("{endpoint}: insufficient balance ({msg})")]
    InsufficientBalance { endpoint: String, msg: String },
    #[error("{endpoint}: an order with this client order id is already open ({msg})")]
    DuplicateOrder { endpoint: String, msg: String },
    #[error("{endpoint}: unknown order ({msg})")]
    UnknownOrder { endpoint: String, msg: String },
    #[error("{endpoint}: Binance rejected the signature ({msg}): check BINANCE_API_SECRET")]
    BadSignature { endpoint: String, msg: String },
    #[error("{endpoint}: Binance rejected the API key ({msg}): check BINANCE_API_KEY, its permissions and its IP whitelist")]
    BadApiKey { endpoint: String, msg: String },
    #[error("{endpoint}: Binance error {code}: {msg} (HTTP {status})")]
    Api {
        endpoint: String,
        status: u16,
        code: i64,
        msg: String,
    },
    #[error("{endpoint}: rate limited by Binance; retry after {retry_after:?}")]
    RateLimited {
        endpoint: String,
        retry_after: Duration,
    },
    #[error("{endpoint}: this IP is banned by Binance (HTTP 418) until {until_ms} ms since the epoch; trading halts until then")]
    Banned { endpoint: String, until_ms: i64 },
    #[error("{endpoint}: no answer within {timeout:?}: the outcome is unknown")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("{endpoint}: Binance answered HTTP {status} ({body}): the outcome is unknown")]
    ServerError {
        endpoint: String,
        status: u16,
        body: String,
    },
    #[error("{endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{endpoint}: unexpected answer ({source}): {body}")]
    Decode {
        endpoint: String,
        body: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{endpoint}: unexpected answer: {reason}")]
    Unexpected { endpoint: String, reason: String },
    #[error("{endpoint} needs API keys: set BINANCE_API_KEY and BINANCE_API_SECRET")]
    NoCredentials { endpoint: String },
    #[error("{0} is set but {1} is not: set both, or neither for paper trading")]
    HalfCredentials(&'static str, &'static str),
    #[error(transparent)]
    ExchangeInfo(#[from] crate::exchange_info::ExchangeInfoError),
}

impl RestError {
    /// Whether a placement that ended this way must be looked up before anything else: its
    /// outcome is unknown, or Binance says an order with its client id is already open.
    fn unresolved(&self) -> bool {
        self.outcome_unknown() || matches!(self, RestError::DuplicateOrder { .. })
    }

    /// Whether the request may have taken effect although no success came back: a timeout, a
    /// dropped connection or a 5xx. An order in that state must be looked up, never re-sent blind.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            RestError::Timeout { .. } | RestError::ServerError { .. } | RestError::Transport { .. }
        )
    }
}

/// An API key and its secret. Never printed: `Debug` shows the key's first four characters.
#[derive(Clone)]
pub struct Credentials {
    api_key: String,
    secret: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.api_key.chars().take(4).collect();
        f.debug_struct("Credentials")
            .field("api_key", &format!("{shown}…"))
            .field("secret", &"***")
            .finish()
    }
}

impl Credentials {
    pub fn new(api_key: impl Into<String>, secret: impl Into<String>) -> Self {
        Credentials {
            api_key: api_key.into(),
            secret: secret.into(),
        }
    }

    /// `BINANCE_API_KEY` and `BINANCE_API_SECRET`: both, or neither (`None`).
    pub fn from_env() -> Result<Option<Credentials>, RestError> {
        let get = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        match (get("BINANCE_API_KEY"), get("BINANCE_API_SECRET")) {
            (Some(key), Some(secret)) => Ok(Some(Credentials::new(key, secret))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(RestError::HalfCredentials(
                "BINANCE_API_KEY",
                "BINANCE_API_SECRET",
            )),
            (None, Some(_)) => Err(RestError::HalfCredentials(
                "BINANCE_API_SECRET",
                "BINANCE_API_KEY",
            )),
        }
    }

    /// The API key (sent as a header or a parameter; never logged).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The hex HMAC-SHA256 of `payload` with the secret: Binance's `signature`.
    pub fn sign(&self, payload: &str) -> String {
        sign(self.secret.as_bytes(), payload)
    }
}

/// The hex HMAC-SHA256 of `payload` under `secret`.
pub fn sign(secret: &[u8], payload: &str) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC accepts any key");
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What a rate limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RateLimitType {
    RequestWeight,
    Orders,
    RawRequests,
}

/// One of `exchangeInfo.rateLimits`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    pub rate_limit_type: RateLimitType,
    /// SECOND, MINUTE, HOUR or DAY.
    pub interval: String,
    pub interval_num: u32,
    pub limit: u32,
}

impl RateLimit {
    /// The window's length in ms; `None` for an interval Binance does not name.
    pub fn window_ms(&self) -> Option<i64> {
        let unit = match self.interval.as_str() {
            "SECOND" => 1_000,
            "MINUTE" => 60_000,
            "HOUR" => 3_600_000,
            "DAY" => 86_400_000,
            _ => return None,
        };
        Some(unit * i64::from(self.interval_num))
    }

    /// The header Binance reports this limit's use in, lower-case, e.g. `x-mbx-used-weight-1m`.
    pub fn header(&self) -> Option<String> {
        let prefix = match self.rate_limit_type {
            RateLimitType::RequestWeight => "x-mbx-used-weight",
            RateLimitType::Orders => "x-mbx-order-count",
            RateLimitType::RawRequests => return None,
        };
        let unit = self.interval.chars().next()?.to_ascii_lowercase();
        Some(format!("{prefix}-{}{unit}", self.interval_num))
    }

    /// Binance's documented spot limits, until `exchangeInfo` says otherwise.
    pub fn spot_defaults() -> Vec<RateLimit> {
        let limit = |rate_limit_type, interval: &str, interval_num, limit| RateLimit {
            rate_limit_type,
            interval: interval.to_owned(),
            interval_num,
            limit,
        };
        vec![
            limit(RateLimitType::RequestWeight, "MINUTE", 1, 6_000),
            limit(RateLimitType::Orders, "SECOND", 10, 50),
            limit(RateLimitType::Orders, "DAY", 1, 160_000),
        ]
    }
}

/// One limit's use in its current window.
#[derive(Debug)]
struct Window {
    limit: RateLimit,
    window_ms: i64,
    header: String,
    start: i64,
    used: u32,
}

#[derive(Debug, Default)]
struct Usage {
    windows: Vec<Window>,
    /// After a 429: no request before this (server ms).
    paused_until: i64,
    /// After a 418: every request fails until this (server ms).
    banned_until: i64,
}

impl Usage {
    fn set_limits(&mut self, limits: &[RateLimit]) {
        self.windows = limits
            .iter()
            .filter_map(|l| {
                Some(Window {
                    window_ms: l.window_ms()?,
                    header: l.header()?,
                    limit: l.clone(),
                    start: 0,
                    used: 0,
                })
            })
            .collect();
    }

    /// How long to wait before a request of `weight` (and one order, if `order`) fits, or
    /// zero after counting it in.
    fn reserve(&mut self, now: i64, weight: u32, order: bool) -> i64 {
        let mut wait = (self.paused_until - now).max(0);
        for w in &mut self.windows {
            let start = now - now.rem_euclid(w.window_ms);
            if start > w.start {
                w.start = start;
                w.used = 0;
            }
            let cost = match w.limit.rate_limit_type {
                RateLimitType::RequestWeight => weight,
                RateLimitType::Orders if order => 1,
                _ => 0,
            };
            if cost > 0 && w.used + cost > w.limit.limit {
                wait = wait.max(w.start + w.window_ms - now);
            }
        }
        if wait == 0 {
            for w in &mut self.windows {
                w.used += match w.limit.rate_limit_type {
                    RateLimitType::RequestWeight => weight,
                    RateLimitType::Orders if order => 1,
                    _ => 0,
                };
            }
        }
        wait
    }

    /// Takes Binance's own count of what was used, from an answer's headers.
    fn record(&mut self, now: i64, headers: &HeaderMap) {
        for w in &mut self.windows {
            let used = headers
                .get(w.header.as_str())
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u32>().ok());
            if let Some(used) = used {
                let start = now - now.rem_euclid(w.window_ms);
                if start >= w.start {
                    w.start = start;
                    w.used = used;
                }
            }
        }
    }
}

/// A snapshot of one limit's use, for status lines and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitUse {
    pub header: String,
    pub used: u32,
    pub limit: u32,
}

/// Which order a query or cancel is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderRef {
    Id(u64),
    ClientId(String),
}

/// A GTC limit order to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    pub symbol: Symbol,
    pub side: Side,
    pub price: Decimal,
    pub quantity: Decimal,
    /// Ours, unique per order (`^[a-zA-Z0-9-_]{1,36}$`): what finds the order again when the
    /// answer to its placement was lost.
    pub client_order_id: String,
}

/// Binance's order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    New,
    PendingNew,
    PartiallyFilled,
    Filled,
    Canceled,
    PendingCancel,
    Rejected,
    Expired,
    ExpiredInMatch,
}

/// One fill in a `FULL` new-order answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fill {
    pub price: Decimal,
    pub qty: Decimal,
    pub commission: Decimal,
    pub commission_asset: String,
    pub trade_id: u64,
}

/// An order as Binance reports it (new, query, cancel, open orders).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub symbol: String,
    pub order_id: u64,
    /// The order's client id, except in a cancel's answer, where it is the cancel request's
    /// own and the order's is `orig_client_order_id`: see [`Order::client_id`].
    pub client_order_id: String,
    /// The cancelled order's client id, in a cancel's answer.
    #[serde(default)]
    pub orig_client_order_id: Option<String>,
    pub price: Decimal,
    pub orig_qty: Decimal,
    pub executed_qty: Decimal,
    pub cummulative_quote_qty: Decimal,
    pub status: OrderStatus,
    pub time_in_force: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub side: Side,
    /// Placement time (query and open orders).
    pub time: Option<i64>,
    pub update_time: Option<i64>,
    /// When this answer's action happened (new order, cancel).
    pub transact_time: Option<i64>,
    #[serde(default)]
    pub fills: Vec<Fill>,
}

impl Order {
    /// The order's own client id, whatever the answer (a cancel's names its own request in
    /// `clientOrderId`).
    pub fn client_id(&self) -> &str {
        self.orig_client_order_id
            .as_deref()
            .unwrap_or(&self.client_order_id)
    }
}

/// One execution of ours, as `myTrades` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MyTrade {
    /// Binance's trade id.
    pub id: u64,
    pub order_id: u64,
    pub price: Decimal,
    pub qty: Decimal,
    pub quote_qty: Decimal,
    pub commission: Decimal,
    pub commission_asset: String,
    pub time: i64,
}

/// One market trade, as `historicalTrades` lists it: the websocket's trade without its event
/// time (and, as spot's stream since 2024-06, without order ids).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketTrade {
    pub id: u64,
    pub price: Decimal,
    pub qty: Decimal,
    pub time: i64,
    pub is_buyer_maker: bool,
}

impl MarketTrade {
    /// The trade as the log stores it. REST gives no event time: the trade's own time stands
    /// in for it, so that the same answer always makes the same event.
    pub fn into_trade(self, symbol: &Symbol) -> TradeReceived {
        TradeReceived {
            symbol: symbol.clone(),
            trade_id: self.id,
            price: self.price,
            quantity: self.qty,
            trade_time: Timestamp(self.time),
            event_time: Timestamp(self.time),
            buyer_is_maker: self.is_buyer_maker,
            buyer_order_id: None,
            seller_order_id: None,
            first_trade_id: None,
            kind: TradeKind::Market,
        }
    }

    /// A market trade as `trades` and `historicalTrades` answer it: the server's side, for the
    /// simulated Binances.
    pub fn answer(t: &TradeReceived) -> serde_json::Value {
        serde_json::json!({
            "id": t.trade_id,
            "price": t.price.to_string(),
            "qty": t.quantity.to_string(),
            "quoteQty": (t.price * t.quantity).to_string(),
            "time": t.trade_time.millis(),
            "isBuyerMaker": t.buyer_is_maker,
            "isBestMatch": true,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub asset: String,
    pub free: Decimal,
    pub locked: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommissionRates {
    pub maker: Decimal,
    pub taker: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub can_trade: bool,
    pub commission_rates: Option<CommissionRates>,
    pub balances: Vec<Balance>,
}

impl Account {
    /// The free and locked amounts of `asset` (zero when the account holds none).
    pub fn balance(&self, asset: &str) -> (Decimal, Decimal) {
        self.balances
            .iter()
            .find(|b| b.asset == asset)
            .map_or((Decimal::ZERO, Decimal::ZERO), |b| (b.free, b.locked))
    }
}

/// Binance's error body.
#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    code: i64,
    msg: String,
}

/// Whether an endpoint wants a key and a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    None,
    Signed,
}

/// One REST endpoint: how it is called and what it costs against the limits. The one table
/// of Binance's endpoints ([`ENDPOINTS`]): the client keeps to it, and the simulated Binances
/// (`exchange serve`, the tests' stand-in) charge by it.
#[derive(Debug)]
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub security: Security,
    /// Request weight, as Binance's documentation gives it.
    pub weight: u32,
    /// Whether it counts against the order limits.
    pub order: bool,
}

impl Endpoint {
    /// `GET /api/v3/order`: how errors name it.
    pub fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The weight of one call with these parameters, as Binance charges it: tickers and open
    /// orders cost more for every symbol (no `symbol`) or many (`symbols`), `depth` by `limit`.
    pub fn weight_of(&self, param: impl Fn(&str) -> Option<String>) -> u32 {
        let is = |other: &Endpoint| std::ptr::eq(self, other);
        let single = param("symbol").is_some();
        // `symbols=["A","B"]`: how many, roughly (commas + 1); Binance's tiers are coarse.
        let many = param("symbols").map(|s| s.matches(',').count() + 1);
        if is(&TICKER_PRICE) || is(&BOOK_TICKER) {
            if single {
                self.weight
            } else {
                2 * self.weight
            }
        } else if is(&TICKER_24HR) {
            match (single, many) {
                (true, _) => self.weight,
                (false, Some(1..=20)) => self.weight,
                (false, Some(21..=100)) => 40,
                _ => 80,
            }
        } else if is(&OPEN_ORDERS) && !single {
            80
        } else if is(&DEPTH) {
            match param("limit")
                .and_then(|l| l.parse::<u32>().ok())
                .unwrap_or(100)
            {
                0..=100 => 5,
                101..=500 => 25,
                501..=1000 => 50,
                _ => 250,
            }
        } else {
            self.weight
        }
    }

    /// The endpoint answering `method path`, if it is one of [`ENDPOINTS`].
    pub fn find(method: &Method, path: &str) -> Option<&'static Endpoint> {
        ENDPOINTS
            .iter()
            .copied()
            .find(|e| e.method == *method && e.path == path)
    }
}

macro_rules! endpoints {
    ($($name:ident = $method:ident $path:literal, $security:ident, weight $weight:literal $(, $order:ident)?;)*) => {
        $(pub static $name: Endpoint = Endpoint {
            method: Method::$method,
            path: $path,
            security: Security::$security,
            weight: $weight,
            order: endpoints!(@order $($order)?),
        };)*
        /// Every endpoint Hedgehog calls or serves.
        pub static ENDPOINTS: &[&Endpoint] = &[$(&$name),*];
    };
    (@order order) => { true };
    (@order) => { false };
}

endpoints! {
    PING = GET "/api/v3/ping", None, weight 1;
    TIME = GET "/api/v3/time", None, weight 1;
    EXCHANGE_INFO = GET "/api/v3/exchangeInfo", None, weight 20;
    NEW_ORDER = POST "/api/v3/order", Signed, weight 1, order;
    QUERY_ORDER = GET "/api/v3/order", Signed, weight 4;
    CANCEL_ORDER = DELETE "/api/v3/order", Signed, weight 1;
    OPEN_ORDERS = GET "/api/v3/openOrders", Signed, weight 6;
    ACCOUNT = GET "/api/v3/account", Signed, weight 20;
    MY_TRADES = GET "/api/v3/myTrades", Signed, weight 20;
    RECENT_TRADES = GET "/api/v3/trades", None, weight 25;
    TICKER_PRICE = GET "/api/v3/ticker/price", None, weight 2;
    AVG_PRICE = GET "/api/v3/avgPrice", None, weight 2;
    HISTORICAL_TRADES = GET "/api/v3/historicalTrades", None, weight 25;
    KLINES = GET "/api/v3/klines", None, weight 2;
    UI_KLINES = GET "/api/v3/uiKlines", None, weight 2;
    AGG_TRADES = GET "/api/v3/aggTrades", None, weight 4;
    TICKER_24HR = GET "/api/v3/ticker/24hr", None, weight 2;
    BOOK_TICKER = GET "/api/v3/ticker/bookTicker", None, weight 2;
    DEPTH = GET "/api/v3/depth", None, weight 5;
    CANCEL_OPEN_ORDERS = DELETE "/api/v3/openOrders", Signed, weight 1;
    ALL_ORDERS = GET "/api/v3/allOrders", Signed, weight 20;
    COMMISSION = GET "/api/v3/account/commission", Signed, weight 20;
}

/// One kline as Binance sends it: an array of open time, open, high, low, close (prices as
/// text), then volumes and counts.
type RawKline = Vec<serde_json::Value>;

/// The close of a kline, or why it has none.
fn kline_close(kline: &RawKline) -> Result<Decimal, String> {
    let close = kline
        .get(4)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("a kline without its close: {kline:?}"))?;
    close
        .parse()
        .map_err(|e| format!("a kline's close {close:?}: {e}"))
}

/// The most trades one `historicalTrades` request returns.
pub const HISTORICAL_TRADES_LIMIT: u16 = 1_000;

/// The local clock in ms: read here, at the edge, and corrected by the server's offset.
fn local_millis() -> i64 {
    hedgehog_runtime::time::now().millis()
}

/// A client of one Binance-compatible REST endpoint (Binance, its testnet, `hedgehog exchange
/// serve`, or a test's mock).
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    credentials: Option<Credentials>,
    timeout: Duration,
    /// Binance's clock minus ours, in ms.
    offset_ms: AtomicI64,
    usage: Mutex<Usage>,
}

impl fmt::Debug for RestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestClient")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl RestClient {
    /// A client of `base` (e.g. [`SPOT_URL`]) answering within `timeout`.
    pub fn new(base: &str, credentials: Option<Credentials>, timeout: Duration) -> Self {
        let mut usage = Usage::default();
        usage.set_limits(&RateLimit::spot_defaults());
        RestClient {
            // Building fails only without a TLS backend, which is compiled in.
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client"),
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            timeout,
            offset_ms: AtomicI64::new(0),
            usage: Mutex::new(usage),
        }
    }

    /// The limits' use (a poisoned lock still holds counts worth keeping).
    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binance's time now, by our clock and the measured offset.
    pub fn server_now(&self) -> i64 {
        local_millis() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// The offset measured last (Binance's clock minus ours, ms).
    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    /// Each limit's use as last counted.
    pub fn limits(&self) -> Vec<LimitUse> {
        let usage = self.usage();
        usage
            .windows
            .iter()
            .map(|w| LimitUse {
                header: w.header.clone(),
                used: w.used,
                limit: w.limit.limit,
            })
            .collect()
    }

    /// Keeps to these limits from now on (from `exchangeInfo.rateLimits`).
    pub fn set_rate_limits(&self, limits: &[RateLimit]) {
        let mut usage = self.usage();
        usage.set_limits(limits);
    }

    /// `GET /api/v3/ping`.
    pub async fn ping(&self) -> Result<(), RestError> {
        let _: serde_json::Value = self.send(&PING, vec![]).await?;
        Ok(())
    }

    /// `GET /api/v3/time`: Binance's clock, in ms. (Sent directly rather than through
    /// `send_raw`, which calls it to re-measure the clock.)
    pub async fn server_time(&self) -> Result<i64, RestError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Time {
            server_time: i64,
        }
        let endpoint = &TIME.name();
        self.wait_for_room(endpoint, TIME.weight, TIME.order)
            .await?;
        let response = self
            .http
            .get(self.url(TIME.path, ""))
            .send()
            .await
            .map_err(|e| self.transport(endpoint, e))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.transport(endpoint, e))?;
        if !status.is_success() {
            return Err(RestError::ServerError {
                endpoint: endpoint.to_owned(),
                status: status.as_u16(),
                body,
            });
        }
        let t: Time = decode(endpoint, &body)?;
        Ok(t.server_time)
    }

    /// Measures the offset of Binance's clock from ours (half the round trip counted in).
    pub async fn sync_time(&self) -> Result<i64, RestError> {
        let before = local_millis();
        let server = self.server_time().await?;
        let after = local_millis();
        let offset = server - (before + after) / 2;
        self.offset_ms.store(offset, Ordering::Relaxed);
        tracing::debug!(offset_ms = offset, "Binance clock offset measured");
        Ok(offset)
    }

    /// `GET /api/v3/exchangeInfo`: the symbols' filters, and the rate limits, which the client
    /// keeps to from now on.
    pub async fn exchange_info(&self) -> Result<(ExchangeRules, Vec<RateLimit>), RestError> {
        let body = self.send_raw(&EXCHANGE_INFO, vec![]).await?;
        let origin = format!("{}{}", self.base, EXCHANGE_INFO.path);
        let (rules, venue) = crate::exchange_info::parse_with_venue(&body, &origin)?;
        if !venue.rate_limits.is_empty() {
            self.set_rate_limits(&venue.rate_limits);
        }
        Ok((rules, venue.rate_limits))
    }

    /// `POST /api/v3/order`: one GTC limit order, answered in full (with any immediate fills).
    /// The outcome may be unknown on error (see [`RestError::outcome_unknown`]); use
    /// [`RestClient::place_limit_order`] to resolve it.
    pub async fn new_limit_order(&self, order: &NewOrder) -> Result<Order, RestError> {
        let params = vec![
            ("symbol", order.symbol.as_str().to_owned()),
            ("side", order.side.to_string()),
            ("type", "LIMIT".to_owned()),
            ("timeInForce", "GTC".to_owned()),
            ("quantity", order.quantity.normalize().to_string()),
            ("price", order.price.normalize().to_string()),
            ("newClientOrderId", order.client_order_id.clone()),
            ("newOrderRespType", "FULL".to_owned()),
        ];
        self.send(&NEW_ORDER, params).await
    }

    /// Places `order` exactly once, whatever the network does: when the answer is lost (a
    /// timeout, a dropped connection, a 5xx), the order is looked up by its client order id;
    /// found, it is returned; reported unknown, it is placed again under the same id (which
    /// Binance refuses as a duplicate if the first one landed meanwhile, and which is then
    /// looked up again).
    pub async fn place_limit_order(&self, order: &NewOrder) -> Result<Order, RestError> {
        let by_client_id = OrderRef::ClientId(order.client_order_id.clone());
        let mut last = match self.new_limit_order(order).await {
            Err(e) if e.unresolved() => e,
            answer => return answer,
        };
        for attempt in 0..LOOKUPS {
            tracing::warn!(
                symbol = %order.symbol,
                client_order_id = %order.client_order_id,
                attempt,
                "placing the order gave no answer ({last}); looking it up before anything else"
            );
            tokio::time::sleep(Duration::from_millis(200 * (1 << attempt))).await;
            match self.query_order(&order.symbol, &by_client_id).await {
                Ok(found) => return Ok(found),
                Err(RestError::UnknownOrder { .. }) => match self.new_limit_order(order).await {
                    Err(e) if e.unresolved() => last = e,
                    answer => return answer,
                },
                Err(e) if e.outcome_unknown() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// `GET /api/v3/order`.
    pub async fn query_order(&self, symbol: &Symbol, order: &OrderRef) -> Result<Order, RestError> {
        let params = order_params(symbol, order);
        self.send(&QUERY_ORDER, params).await
    }

    /// `DELETE /api/v3/order`.
    pub async fn cancel_order(
        &self,
        symbol: &Symbol,
        order: &OrderRef,
    ) -> Result<Order, RestError> {
        let params = order_params(symbol, order);
        self.send(&CANCEL_ORDER, params).await
    }

    /// `GET /api/v3/openOrders` of one symbol.
    pub async fn open_orders(&self, symbol: &Symbol) -> Result<Vec<Order>, RestError> {
        let params = vec![("symbol", symbol.as_str().to_owned())];
        self.send(&OPEN_ORDERS, params).await
    }

    /// `GET /api/v3/myTrades` of one order: its executions, with what each was charged.
    pub async fn my_trades(
        &self,
        symbol: &Symbol,
        order_id: u64,
    ) -> Result<Vec<MyTrade>, RestError> {
        let params = vec![
            ("symbol", symbol.as_str().to_owned()),
            ("orderId", order_id.to_string()),
        ];
        self.send(&MY_TRADES, params).await
    }

    /// `GET /api/v3/historicalTrades`: up to `limit` (at most [`HISTORICAL_TRADES_LIMIT`])
    /// market trades of `symbol` from trade id `from_id` on, in id order. Public market data:
    /// no key needed.
    pub async fn historical_trades(
        &self,
        symbol: &Symbol,
        from_id: u64,
        limit: u16,
    ) -> Result<Vec<MarketTrade>, RestError> {
        let params = vec![
            ("symbol", symbol.as_str().to_owned()),
            ("fromId", from_id.to_string()),
            ("limit", limit.min(HISTORICAL_TRADES_LIMIT).to_string()),
        ];
        self.send(&HISTORICAL_TRADES, params).await
    }

    /// The price of `symbol` at `time` (ms), to the minute: the close of the last 1-minute
    /// kline opening at or before it (`GET /api/v3/klines`, weight 2); `None` when the symbol
    /// had no trade by then. What a commission charged in a third asset (BNB) is counted at.
    pub async fn price_at(&self, symbol: &Symbol, time: i64) -> Result<Option<Decimal>, RestError> {
        let params = vec![
            ("symbol", symbol.as_str().to_owned()),
            ("interval", "1m".to_owned()),
            ("endTime", time.to_string()),
            ("limit", "1".to_owned()),
        ];
        let body = self.send_raw(&KLINES, params).await?;
        let klines: Vec<RawKline> = decode(&KLINES.name(), &body)?;
        klines
            .last()
            .map(|k| {
                kline_close(k).map_err(|reason| RestError::Unexpected {
                    endpoint: KLINES.name(),
                    reason,
                })
            })
            .transpose()
    }

    /// `GET /api/v3/account`: balances (non-zero only) and commission rates.
    pub async fn account(&self) -> Result<Account, RestError> {
        let params = vec![("omitZeroBalances", "true".to_owned())];
        self.send(&ACCOUNT, params).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        endpoint: &Endpoint,
        params: Vec<(&str, String)>,
    ) -> Result<T, RestError> {
        let body = self.send_raw(endpoint, params).await?;
        decode(&endpoint.name(), &body)
    }

    /// Sends one request within the limits and returns the body of a 2xx answer.
    async fn send_raw(
        &self,
        spec: &Endpoint,
        params: Vec<(&str, String)>,
    ) -> Result<String, RestError> {
        let &Endpoint {
            ref method,
            path,
            security,
            weight,
            order,
        } = spec;
        let endpoint = spec.name();
        let mut rate_limited = 0;
        let mut resynced = false;
        loop {
            self.wait_for_room(&endpoint, weight, order).await?;
            // Built apart: the serializer is not `Send`, so it must not live across an await.
            let query = |signed: Option<i64>| {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &params {
                    query.append_pair(k, v);
                }
                if let Some(timestamp) = signed {
                    query.append_pair("timestamp", &timestamp.to_string());
                    query.append_pair("recvWindow", &RECV_WINDOW_MS.to_string());
                }
                query.finish()
            };
            let mut request = match security {
                Security::None => {
                    let query = query(None);
                    self.http.request(method.clone(), self.url(path, &query))
                }
                Security::Signed => {
                    let credentials =
                        self.credentials
                            .as_ref()
                            .ok_or_else(|| RestError::NoCredentials {
                                endpoint: endpoint.clone(),
                            })?;
                    let mut query = query(Some(self.server_now()));
                    let signature = credentials.sign(&query);
                    query.push_str("&signature=");
                    query.push_str(&signature);
                    self.http
                        .request(method.clone(), self.url(path, &query))
                        .header("X-MBX-APIKEY", &credentials.api_key)
                }
            };
            if method == Method::POST || method == Method::DELETE {
                request = request.header("content-length", "0");
            }
            let response = request
                .send()
                .await
                .map_err(|e| self.transport(&endpoint, e))?;
            let status = response.status();
            let headers = response.headers().clone();
            {
                let mut usage = self.usage();
                usage.record(self.server_now(), &headers);
            }
            let body = response
                .text()
                .await
                .map_err(|e| self.transport(&endpoint, e))?;
            if status.is_success() {
                return Ok(body);
            }
            let retry_after = headers
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(Duration::from_secs(1), Duration::from_secs);
            let retry_ms = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
            match status {
                StatusCode::TOO_MANY_REQUESTS => {
                    {
                        let mut usage = self.usage();
                        usage.paused_until = self.server_now().saturating_add(retry_ms);
                    }
                    tracing::warn!(%endpoint, ?retry_after, "rate limited by Binance (429): pausing requests");
                    rate_limited += 1;
                    if rate_limited > RATE_LIMIT_RETRIES {
                        return Err(RestError::RateLimited {
                            endpoint,
                            retry_after,
                        });
                    }
                    continue;
                }
                StatusCode::IM_A_TEAPOT => {
                    let until_ms = self.server_now().saturating_add(retry_ms);
                    {
                        let mut usage = self.usage();
                        usage.banned_until = until_ms;
                    }
                    tracing::error!(%endpoint, ?retry_after, "Binance banned this IP (418): every request fails until the ban ends");
                    return Err(RestError::Banned { endpoint, until_ms });
                }
                s if s.is_server_error() => {
                    return Err(RestError::ServerError {
                        endpoint,
                        status: s.as_u16(),
                        body,
                    })
                }
                _ => {}
            }
            let Ok(error) = serde_json::from_str::<ApiErrorBody>(&body) else {
                return Err(RestError::Api {
                    endpoint,
                    status: status.as_u16(),
                    code: 0,
                    msg: body,
                });
            };
            if error.code == -1021 && !resynced {
                // Our clock drifted from Binance's: measure again and retry once.
                resynced = true;
                tracing::warn!(%endpoint, "timestamp outside recvWindow (-1021): re-measuring Binance's clock");
                self.sync_time().await?;
                continue;
            }
            return Err(api_error(endpoint, status, error));
        }
    }

    fn url(&self, path: &str, query: &str) -> String {
        if query.is_empty() {
            format!("{}{path}", self.base)
        } else {
            format!("{}{path}?{query}", self.base)
        }
    }

    fn transport(&self, endpoint: &str, e: reqwest::Error) -> RestError {
        if e.is_timeout() {
            RestError::Timeout {
                endpoint: endpoint.to_owned(),
                timeout: self.timeout,
            }
        } else {
            RestError::Transport {
                endpoint: endpoint.to_owned(),
                source: e.without_url(),
            }
        }
    }

    /// Waits until the request fits in every window (and any 429 pause is over); fails at once
    /// while an IP ban lasts.
    async fn wait_for_room(
        &self,
        endpoint: &str,
        weight: u32,
        order: bool,
    ) -> Result<(), RestError> {
        loop {
            let now = self.server_now();
            let wait = {
                let mut usage = self.usage();
                if usage.banned_until > now {
                    return Err(RestError::Banned {
                        endpoint: endpoint.to_owned(),
                        until_ms: usage.banned_until,
                    });
                }
                usage.reserve(now, weight, order)
            };
            if wait <= 0 {
                return Ok(());
            }
            tracing::info!(%endpoint, wait_ms = wait, "waiting for room under Binance's rate limits");
            tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
        }
    }
}

fn order_params(symbol: &Symbol, order: &OrderRef) -> Vec<(&'static str, String)> {
    let mut params = vec![("symbol", symbol.as_str().to_owned())];
    match order {
        OrderRef::Id(id) => params.push(("orderId", id.to_string())),
        OrderRef::ClientId(id) => params.push(("origClientOrderId", id.clone())),
    }
    params
}

fn decode<T: DeserializeOwned>(endpoint: &str, body: &str) -> Result<T, RestError> {
    serde_json::from_str(body).map_err(|source| RestError::Decode {
        endpoint: endpoint.to_owned(),
        body: body.chars().take(500).collect(),
        source,
    })
}

/// Binance's error codes, typed by what the caller does about them.
fn api_error(endpoint: String, status: StatusCode, error: ApiErrorBody) -> RestError {
    let ApiErrorBody { code, msg } = error;
    let lower = msg.to_ascii_lowercase();
    match code {
        -1013 => RestError::FilterFailure { endpoint, msg },
        -2010 if lower.contains("insufficient balance") => {
            RestError::InsufficientBalance { endpoint, msg }
        }
        -2010 if lower.contains("duplicate order") => RestError::DuplicateOrder { endpoint, msg },
        -2011 | -2013 => RestError::UnknownOrder { endpoint, msg },
        -1022 => RestError::BadSignature { endpoint, msg },
        -2014 | -2015 => RestError::BadApiKey { endpoint, msg },
        _ => RestError::Api {
            endpoint,
            status: status.as_u16(),
            code,
            msg,
        },
    }
}

/// Why a server refuses a signed request, as Binance words it (`code`, `msg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: i64,
    pub msg: String,
}

/// The server's side of signing, for Binance-compatible servers (`hedgehog exchange serve`,
/// the tests' mock): checks `signature` against the rest of the raw query string, and
/// `timestamp` against `recvWindow` as Binance does (not more than 1 s ahead of the server,
/// not older than the window), and returns the parameters.
pub fn verify_signed_query(
    raw_query: &str,
    secret: &str,
    server_now: i64,
) -> Result<std::collections::BTreeMap<String, String>, Refusal> {
    let refuse = |code, msg: &str| Refusal {
        code,
        msg: msg.to_owned(),
    };
    let (payload, signature) = raw_query.rsplit_once("&signature=").ok_or_else(|| {
        refuse(
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        )
    })?;
    if sign(secret.as_bytes(), payload) != signature.to_ascii_lowercase() {
        return Err(refuse(-1022, "Signature for this request is not valid."));
    }
    let params: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(payload.as_bytes())
            .into_owned()
            .collect();
    let timestamp = params
        .get("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or_else(|| {
            refuse(
                -1102,
                "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
            )
        })?;
    let window = params
        .get("recvWindow")
        .map_or(Ok(RECV_WINDOW_MS), |w| w.parse::<i64>())
        .map_err(|_| refuse(-1100, "Illegal characters found in parameter 'recvWindow'."))?;
    if timestamp > server_now + 1_000 || server_now - timestamp > window {
        return Err(refuse(
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ));
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_names_every_endpoint_with_binances_weights() {
        let cancel = Endpoint::find(&Method::DELETE, "/api/v3/order").unwrap();
        assert_eq!((cancel.weight, cancel.order), (1, false));
        assert_eq!(cancel.security, Security::Signed);
        let place = Endpoint::find(&Method::POST, "/api/v3/order").unwrap();
        assert!(place.order);
        assert_eq!(
            Endpoint::find(&Method::GET, "/api/v3/klines")
                .unwrap()
                .weight,
            2
        );
        assert!(Endpoint::find(&Method::PUT, "/api/v3/order").is_none());
        assert_eq!(ENDPOINTS.len(), 22);
        let with = |pairs: &'static [(&str, &str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let every: &[(&str, &str)] = &[];
        let one: &[(&str, &str)] = &[("symbol", "BTCUSDT")];
        assert_eq!(
            (
                TICKER_PRICE.weight_of(with(one)),
                TICKER_PRICE.weight_of(with(every))
            ),
            (2, 4)
        );
        assert_eq!(TICKER_24HR.weight_of(with(every)), 80);
        assert_eq!(
            TICKER_24HR.weight_of(with(&[("symbols", "[\"A\",\"B\"]")])),
            2
        );
        assert_eq!(OPEN_ORDERS.weight_of(with(every)), 80);
        assert_eq!(DEPTH.weight_of(with(&[("limit", "1000")])), 50);
        assert_eq!(place.weight_of(with(every)), 1);
    }

    /// Binance's documented answers to an order placed (FULL), queried and cancelled, to open
    /// orders and to the account: the client reads Binance's own payloads, not only the
    /// simulated exchange's.
    #[test]
    fn binances_documented_order_and_account_payloads_decode() {
        let fixture = |name: &str| {
            std::fs::read_to_string(format!(
                "{}/../tests/fixtures/binance-rest/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
        };
        let full: Order = decode(
            "POST /api/v3/order",
            &fixture("new_order_full_response.json"),
        )
        .unwrap();
        assert_eq!(
            (full.order_id, full.status, full.side),
            (28, OrderStatus::Filled, Side::Sell)
        );
        assert_eq!(
            (full.executed_qty, full.transact_time),
            (Decimal::from(10), Some(1507725176595))
        );
        assert_eq!(full.fills.len(), 5);
        assert_eq!(
            (
                full.fills[0].price,
                full.fills[0].commission_asset.as_str(),
                full.fills[0].trade_id
            ),
            (Decimal::from(4000), "USDT", 56)
        );
        let queried: Order = decode("GET /api/v3/order", &fixture("order_response.json")).unwrap();
        assert_eq!(
            (queried.symbol.as_str(), queried.client_id()),
            ("LTCBTC", "myOrder1")
        );
        assert_eq!(
            (queried.price, queried.status),
            ("0.1".parse().unwrap(), OrderStatus::New)
        );
        let cancelled: Order = decode(
            "DELETE /api/v3/order",
            &fixture("cancel_order_response.json"),
        )
        .unwrap();
        assert_eq!(cancelled.status, OrderStatus::Canceled);
        assert_eq!(
            (cancelled.client_order_id.as_str(), cancelled.client_id()),
            ("cancelMyOrder1", "myOrder1"),
            "a cancel's clientOrderId names the cancel; the order's is origClientOrderId"
        );
        let open: Vec<Order> = decode(
            "GET /api/v3/openOrders",
            &fixture("open_orders_response.json"),
        )
        .unwrap();
        assert_eq!(open.len(), 1);
        let account: Account =
            decode("GET /api/v3/account", &fixture("account_response.json")).unwrap();
        assert!(account.can_trade);
        assert_eq!(
            account.balance("BTC").0,
            "4723846.89208129".parse().unwrap()
        );
        assert_eq!(
            account.commission_rates.unwrap().maker,
            "0.0015".parse().unwrap()
        );
    }

    /// A `historicalTrades` answer captured from Binance (BTCUSDT, 2021-10-22).
    #[test]
    fn historical_trades_become_trade_events() {
        let body = include_str!(
            "../../tests/fixtures/binance-rest/http_spot_market_historical_trades.json"
        );
        let trades: Vec<MarketTrade> = decode("GET /api/v3/historicalTrades", body).unwrap();
        assert_eq!(trades.len(), 10);
        let ids: Vec<u64> = trades.iter().map(|t| t.id).collect();
        assert_eq!(ids, (1111471896..1111471906).collect::<Vec<_>>());
        let symbol = Symbol::parse("BTCUSDT").unwrap();
        let first = trades[0].clone().into_trade(&symbol);
        assert_eq!(first.trade_id, 1111471896);
        assert_eq!(first.price, "60814.78".parse::<Decimal>().unwrap());
        assert_eq!(first.quantity, "0.00034".parse::<Decimal>().unwrap());
        assert_eq!(first.trade_time, Timestamp(1634943219887));
        assert_eq!(first.event_time, first.trade_time);
        assert!(first.buyer_is_maker);
        assert!(!trades[1].is_buyer_maker);
    }

    /// Binance's documented `klines` answer: the close is the fifth field, as text.
    #[test]
    fn a_klines_close_is_its_fifth_field() {
        let body = include_str!("../../tests/fixtures/binance-rest/klines_response.json");
        let klines: Vec<RawKline> = decode("GET /api/v3/klines", body).unwrap();
        assert_eq!(
            kline_close(&klines[0]).unwrap(),
            "0.01577100".parse::<Decimal>().unwrap()
        );
        let err = kline_close(&vec![serde_json::json!(1)]).unwrap_err();
        assert!(err.contains("without its close"), "{err}");
    }

    /// The example in Binance's documentation of signed endpoints (HMAC SHA256).
    #[test]
    fn signs_as_binance_documents() {
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let query = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(
            sign(secret.as_bytes(), query),
            "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
        );
    }

    #[test]
    fn a_server_checks_signature_and_time() {
        let c = Credentials::new("key", "secret");
        let payload = "symbol=BTCUSDT&timestamp=1000000&recvWindow=5000";
        let query = format!("{payload}&signature={}", c.sign(payload));
        let params = verify_signed_query(&query, "secret", 1_002_000).unwrap();
        assert_eq!(params["symbol"], "BTCUSDT");
        assert_eq!(
            verify_signed_query(&query, "other", 1_002_000)
                .unwrap_err()
                .code,
            -1022
        );
        assert_eq!(
            verify_signed_query(&query, "secret", 1_006_000)
                .unwrap_err()
                .code,
            -1021
        );
        assert_eq!(
            verify_signed_query(&query, "secret", 998_000)
                .unwrap_err()
                .code,
            -1021
        );
        assert_eq!(
            verify_signed_query(payload, "secret", 1_000_000)
                .unwrap_err()
                .code,
            -1102
        );
    }

    #[test]
    fn credentials_never_print_the_secret() {
        let c = Credentials::new(
            "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
            "s3cr3t-value",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(!shown.contains("6mv9SD5"), "{shown}");
        assert!(shown.contains("vmPU"), "{shown}");
    }

    #[test]
    fn limits_wait_for_the_next_window() {
        let mut usage = Usage::default();
        usage.set_limits(&[RateLimit {
            rate_limit_type: RateLimitType::Orders,
            interval: "SECOND".into(),
            interval_num: 10,
            limit: 2,
        }]);
        assert_eq!(usage.reserve(100_000, 1, true), 0);
        assert_eq!(usage.reserve(101_000, 1, true), 0);
        // The third order in the window waits for the next one, at 110,000.
        assert_eq!(usage.reserve(102_500, 1, true), 7_500);
        // Reads do not count against an order limit.
        assert_eq!(usage.reserve(102_500, 5, false), 0);
        assert_eq!(usage.reserve(110_000, 1, true), 0);
        // Binance's count wins over ours.
        let mut headers = HeaderMap::new();
        headers.insert("x-mbx-order-count-10s", "2".parse().unwrap());
        usage.record(110_001, &headers);
        assert_eq!(usage.reserve(110_002, 1, true), 9_998);
    }

    #[test]
    fn error_codes_are_typed() {
        let e = |code, msg: &str| {
            api_error(
                "POST /api/v3/order".into(),
                StatusCode::BAD_REQUEST,
                ApiErrorBody {
                    code,
                    msg: msg.into(),
                },
            )
        };
        assert!(matches!(
            e(-1013, "Filter failure: LOT_SIZE"),
            RestError::FilterFailure { .. }
        ));
        assert!(matches!(
            e(
                -2010,
                "Account has insufficient balance for requested action."
            ),
            RestError::InsufficientBalance { .. }
        ));
        assert!(matches!(
            e(-2010, "Duplicate order sent."),
            RestError::DuplicateOrder { .. }
        ));
        assert!(matches!(
            e(-2011, "Unknown order sent."),
            RestError::UnknownOrder { .. }
        ));
        assert!(matches!(
            e(-2013, "Order does not exist."),
            RestError::UnknownOrder { .. }
        ));
        assert!(matches!(
            e(-1100, "Illegal characters"),
            RestError::Api { code: -1100, .. }
        ));
        let message = e(-1013, "Filter failure: LOT_SIZE").to_string();
        assert!(
            message.contains("LOT_SIZE") && message.contains("POST /api/v3/order"),
            "{message}"
        );
    }
}
