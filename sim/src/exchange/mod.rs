//! `hedgehog exchange serve`: the paper exchange behind Binance's spot API, on 127.0.0.1, so
//! that any Binance client (Hedgehog's own live adapter, python-binance, ccxt, ...) can trade
//! against recorded or live markets.
//!
//! On one port it answers, over HTTP, `/api/v3/`: `ping`, `time`, `exchangeInfo`; market data
//! from the trades it plays ([`market`]: `trades`, `historicalTrades`, `aggTrades`, `klines`,
//! `uiKlines`, `ticker/24hr`, `ticker/price`, `ticker/bookTicker`, `avgPrice`; `depth` from a
//! followed book); and the
//! account ([`account`]: `order` POST, GET and DELETE, `openOrders` GET and DELETE,
//! `allOrders`, `account`, `account/commission`, `myTrades`). Over websockets: the trade
//! stream (`/stream?streams=` and `/ws/<stream>`) and the WebSocket API's user data stream
//! (`/ws-api/v3`, [`ws_api`]).
//!
//! What it keeps, like Binance:
//! - signed requests carry the configured API key and a valid HMAC signature and timestamp
//!   (checked by the same [`verify_signed_query`] the tests' mock uses), else `-2015` /
//!   `-1022` / `-1021`;
//! - orders meet the symbol's filters (`-1013 Filter failure: ...`, PERCENT_PRICE_BY_SIDE and
//!   MAX_NUM_ORDERS included) and the account's free balance (`-2010`);
//! - the rate limits of the exchange info ([`limits`]): usage headers on every answer, 429s
//!   past a limit;
//! - every change is reported on the user data stream as an `executionReport`.
//!
//! Playback of the trades starts when the first trade-stream client connects (so it sees the
//! market from its start), or at once with [`Start::Now`] (for clients that only poll), and
//! plays once, at `speed` times real pace (0: as fast as possible).

mod account;
mod control;
mod limits;
mod market;
mod params;
mod streams;
mod ws_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hedgehog_binance::exchange_info::{self, ExchangeInfoError, VenueRules};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::Symbol;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch, Notify};

use hedgehog_binance::combined_frame;
use hedgehog_binance::market_stream::{self, Heard, MarketStream};
use hedgehog_binance::rest::{verify_signed_query, Endpoint, Refusal, Security};
use hedgehog_binance::Market;
use hedgehog_ingest::import::{ImportError, ImportOptions};

pub use control::{Control, Fault, Seen};
pub use streams::{Cuts, RESUME_OVERLAP};

use account::Account;
use control::Faults;
use limits::Limits;
use market::MarketData;
use params::{Answer, Params};
use streams::Streams;

/// How long a new taker order's answer waits for the trades that fill it (a MARKET, IOC or
/// FOK order, answered with RESULT or FULL), before it answers with the order as it stands.
const TAKER_WAIT: Duration = Duration::from_secs(5);

/// When playback starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Start {
    /// When the first trade-stream client connects, so that it sees every trade.
    #[default]
    FirstStreamClient,
    /// As soon as the exchange serves, for clients that only poll (ccxt, ...).
    Now,
}

/// What the exchange serves and with what.
#[derive(Debug, Clone)]
pub struct ExchangeOptions {
    /// Recorded trades to play (any format the importer reads); none: orders just rest.
    pub files: Vec<PathBuf>,
    /// 1.0 is real pace; 0 is as fast as possible.
    pub speed: f64,
    pub start: Start,
    pub import: ImportOptions,
    /// The one account's API key and secret.
    pub api_key: String,
    pub secret: String,
    /// What the account holds at start.
    pub balances: Vec<(String, Decimal)>,
    /// Commission rate per fill (Binance's default is 0.001).
    pub commission: Decimal,
    /// The exchangeInfo answer, as Binance sends it: its symbols' filters and its rate limits
    /// are the ones kept.
    pub exchange_info_json: String,
    /// Where it comes from, for errors: a file's path, or the bundled snapshot.
    pub exchange_info_origin: String,
    /// A live market to fill from as well.
    pub follow: Option<Follow>,
    /// The exchange's clock runs this far ahead of the machine's (ms); 0 for `exchange serve`.
    pub clock_skew_ms: i64,
    /// Trade-stream connections cut and resumed for testing clients (`replay-server`): playback
    /// then waits for them, and every market's trades are played (orders still fill from spot
    /// ones only). `None`: the market does not wait, and spot trades only are played.
    pub cuts: Option<Cuts>,
}

/// A live market followed: Binance's combined stream (or a replay server's).
#[derive(Debug, Clone)]
pub struct Follow {
    /// The stream's base URL, e.g. `wss://stream.binance.com:9443`.
    pub url: String,
    /// The symbols whose trades fill orders and feed the market data.
    pub symbols: Vec<Symbol>,
    /// Also follow their partial book depth (the best 20 levels a side, every 100 ms): `depth`,
    /// `ticker/bookTicker` and LIMIT_MAKER then see the real book.
    pub depth: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeServerError {
    #[error(transparent)]
    Trades(#[from] ImportError),
    #[error(transparent)]
    ExchangeInfo(#[from] ExchangeInfoError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Everything a request or a trade changes, under one lock.
struct Venue {
    rules: ExchangeRules,
    venue: VenueRules,
    account: Account,
    market: MarketData,
    limits: Limits,
}

/// Shared by every connection.
struct Exchange {
    venue: Mutex<Venue>,
    api_key: String,
    secret: String,
    exchange_info_json: String,
    /// The trade-stream connections.
    streams: Streams,
    /// Execution reports (the bare event objects).
    user: broadcast::Sender<Value>,
    /// Wakes the tape when the first trade-stream client arrives.
    start: Notify,
    /// Counts the trades played, for the orders waiting on them.
    traded: watch::Sender<u64>,
    /// Scripted faults and the requests seen ([`Control`]).
    faults: Mutex<Faults>,
    clock_skew_ms: i64,
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
    trades: Vec<(Market, TradeReceived)>,
    speed: f64,
    start: Start,
    follow: Option<Follow>,
}

impl ExchangeServer {
    /// Loads the trades and binds `addr` (port 0 picks a free port).
    pub async fn bind(
        addr: SocketAddr,
        options: ExchangeOptions,
    ) -> Result<Self, ExchangeServerError> {
        let (rules, venue) = exchange_info::parse_with_venue(
            &options.exchange_info_json,
            &options.exchange_info_origin,
        )?;
        let mut trades = crate::tape::load(options.files.clone(), options.import.clone()).await?;
        if options.cuts.is_none() {
            trades.retain(|(market, _)| *market == Market::Spot);
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ExchangeServerError::Bind { addr, source })?;
        let exchange = Exchange {
            venue: Mutex::new(Venue {
                rules,
                limits: Limits::new(&venue.rate_limits),
                venue,
                account: Account::new(options.commission, &options.balances),
                market: MarketData::new(
                    options
                        .follow
                        .as_ref()
                        .filter(|f| f.depth)
                        .map(|f| f.symbols.clone()),
                ),
            }),
            api_key: options.api_key,
            secret: options.secret,
            exchange_info_json: options.exchange_info_json,
            streams: Streams::new(options.cuts),
            user: broadcast::channel(1024).0,
            start: Notify::new(),
            traded: watch::channel(0).0,
            faults: Mutex::new(Faults::default()),
            clock_skew_ms: options.clock_skew_ms,
        };
        Ok(ExchangeServer {
            listener,
            exchange: Arc::new(exchange),
            trades,
            speed: options.speed,
            start: options.start,
            follow: options.follow,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The hold its tests and demos have on it: faults, requests seen, hidden executions.
    pub fn control(&self) -> Control {
        self.exchange.faults().watched = true;
        Control(Arc::clone(&self.exchange))
    }

    /// How many trades it plays.
    pub fn trades(&self) -> usize {
        self.trades.len()
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) {
        let exchange = Arc::clone(&self.exchange);
        if self.start == Start::Now {
            exchange.start.notify_one();
        }
        let tape = tokio::spawn(play(Arc::clone(&exchange), self.trades, self.speed));
        let live = self
            .follow
            .map(|f| tokio::spawn(follow(Arc::clone(&exchange), f)));
        let app = axum::Router::new()
            .route("/ws-api/v3", axum::routing::get(ws_api::ws_api))
            .route("/stream", axum::routing::get(streams::market_stream))
            .route("/ws/{stream}", axum::routing::get(streams::market_stream))
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
async fn play(exchange: Arc<Exchange>, trades: Vec<(Market, TradeReceived)>, speed: f64) {
    exchange.start.notified().await;
    let paper = PaperExchange::default();
    let mut pace = crate::tape::Pace::new(speed);
    for (market, trade) in &trades {
        pace.wait(trade.trade_time.millis()).await;
        exchange.trade(&paper, *market, trade).await;
    }
    tracing::info!(trades = trades.len(), "every recorded trade played");
}

/// Fills from a live trade stream: every trade of the followed symbols fills what it reaches
/// and goes out on this exchange's own trade stream; their books, when followed, replace the
/// last ones. Reconnects forever, with backoff.
async fn follow(exchange: Arc<Exchange>, follow: Follow) {
    let mut streams: Vec<String> = follow
        .symbols
        .iter()
        .map(|s| format!("{}@trade", s.as_str().to_ascii_lowercase()))
        .collect();
    if follow.depth {
        streams.extend(follow.symbols.iter().map(market_stream::depth_stream));
    }
    let stream_url = market_stream::streams_url(&follow.url, &streams);
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
                    match market_stream::parse_depth_frame(&text) {
                        Some(Ok((symbol, book))) => {
                            exchange.venue().market.set_book(symbol, book);
                            continue;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = e, "a depth frame skipped");
                            continue;
                        }
                        None => {}
                    }
                    let trade = hedgehog_binance::parse_frame(&text)
                        .ok()
                        .and_then(hedgehog_binance::Frame::into_trade);
                    if let Some((Market::Spot, trade)) = trade {
                        exchange.trade(&paper, Market::Spot, &trade).await;
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
    /// One market trade: a spot one is kept for market data and fills what it reaches; then it
    /// goes out on the trade stream.
    async fn trade(&self, paper: &PaperExchange, market: Market, trade: &TradeReceived) {
        if market != Market::Spot {
            let (stream, frame) = combined_frame(market, trade);
            self.streams.publish(stream, frame).await;
            return;
        }
        let reports = {
            let mut venue = self.venue();
            let Venue {
                rules,
                account,
                market,
                ..
            } = &mut *venue;
            market.record(trade);
            account.fill(rules, paper, trade, self.now())
        };
        for report in reports {
            let _ = self.user.send(report);
        }
        self.traded.send_modify(|n| *n += 1);
        let (stream, frame) = combined_frame(Market::Spot, trade);
        self.streams.publish(stream, frame).await;
    }

    /// The exchange's clock (ms): the machine's, `clock_skew_ms` ahead.
    fn now(&self) -> i64 {
        hedgehog_runtime::time::now().millis() + self.clock_skew_ms
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn venue(&self) -> MutexGuard<'_, Venue> {
        // A panic while holding the lock leaves a consistent venue (every change is one
        // assignment after its checks), so a poisoned lock is still usable.
        self.venue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report(&self, reports: Vec<Value>) {
        for report in reports {
            let _ = self.user.send(report);
        }
    }

    /// Checks the API key and the signature of a signed request; its parameters.
    fn verify(&self, headers: &HeaderMap, query: &str, body: &str) -> Result<Params, Refusal> {
        let key = headers
            .get("x-mbx-apikey")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if key != self.api_key {
            return Err(params::refuse(
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
        verify_signed_query(signed, &self.secret, self.now())
    }

    /// `POST /api/v3/order`: places it, lets a taker meet the trades that follow (up to
    /// [`TAKER_WAIT`]), and answers as `newOrderRespType` asks.
    async fn place(&self, query: &Params) -> Response {
        let mut traded = self.traded.subscribe();
        let placed = {
            let mut venue = self.venue();
            let Venue {
                rules,
                venue,
                account,
                market,
                ..
            } = &mut *venue;
            account.place(rules, venue, market, query, self.now())
        };
        let (id, response, reports) = match placed {
            Ok(placed) => placed,
            Err(r) => return refusal(r),
        };
        self.report(reports);
        if response != account::Response::Ack {
            let deadline = tokio::time::Instant::now() + TAKER_WAIT;
            while self.venue().account.waits(id) {
                let changed = tokio::time::timeout_at(deadline, traded.changed()).await;
                if !matches!(changed, Ok(Ok(()))) {
                    break;
                }
            }
        }
        axum::Json(self.venue().account.placed(id, response, self.now())).into_response()
    }

    /// Every other endpoint, answered under the lock.
    fn answer(&self, method: &Method, path: &str, query: &Params) -> Answer {
        let now = self.now();
        let mut venue = self.venue();
        let Venue {
            rules,
            account,
            market,
            ..
        } = &mut *venue;
        let rules = &*rules;
        match (method.as_str(), path.trim_start_matches("/api/v3/")) {
            ("GET", "order") => account.query(rules, query),
            ("DELETE", "order") => account.cancel(rules, query, now),
            ("GET", "openOrders") => account.open_orders(rules, query),
            ("DELETE", "openOrders") => account.cancel_all(rules, query, now),
            ("GET", "allOrders") => account.all_orders(rules, query),
            ("GET", "account") => Ok((account.account(query, now), Vec::new())),
            ("GET", "account/commission") => account.commission(rules, query),
            ("GET", "myTrades") => account.my_trades(rules, query),
            ("GET", "trades") => market.trades(rules, query, false),
            ("GET", "historicalTrades") => market.trades(rules, query, true),
            ("GET", "aggTrades") => market.aggregated_trades(rules, query),
            ("GET", "klines" | "uiKlines") => market.klines(rules, query),
            ("GET", "ticker/price") => market.ticker_price(rules, query),
            ("GET", "ticker/24hr") => market.ticker_24hr(rules, query),
            ("GET", "ticker/bookTicker") => market.book_ticker(rules, query),
            ("GET", "avgPrice") => market.average_price(rules, query),
            ("GET", "depth") => market.depth(rules, query),
            _ => Err(params::refuse(
                -1020,
                format!("{method} {path} is not served by Hedgehog's paper exchange"),
            )),
        }
    }
}

/// Every REST endpoint: one handler, so that weights, keys, limits and errors are kept in one
/// place.
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
    // Binance's own table of endpoints and their weights.
    let Some(endpoint) = Endpoint::find(&method, &path) else {
        return error(
            StatusCode::NOT_FOUND,
            -1020,
            &format!("{method} {path} is not served by Hedgehog's paper exchange"),
        );
    };
    let fault = exchange.faults().arrive(|| Seen {
        method: method.to_string(),
        path: path.clone(),
        params: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .chain(url::form_urlencoded::parse(body.as_bytes()).into_owned())
            .collect(),
        api_key: headers
            .get("x-mbx-apikey")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        at: exchange.now(),
    });
    let late = match fault {
        None => None,
        Some(Fault::LoseAnswer(delay)) => Some(delay),
        Some(Fault::TooMany(secs)) => {
            let msg = "Too many requests; current limit of request weight per 1 MINUTE exceeded.";
            return with_retry_after(error(StatusCode::TOO_MANY_REQUESTS, -1003, msg), secs);
        }
        Some(Fault::Teapot(secs)) => {
            let msg = "Way too many requests; IP banned until later.";
            return with_retry_after(error(StatusCode::IM_A_TEAPOT, -1003, msg), secs);
        }
        Some(Fault::Error(status, code, msg)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, code, &msg);
        }
        Some(Fault::Hang(delay)) => {
            tokio::time::sleep(delay).await;
            let msg = "Internal error; unable to process your request. Please try again.";
            return error(StatusCode::SERVICE_UNAVAILABLE, -1001, msg);
        }
    };
    let params = if endpoint.security == Security::Signed {
        match exchange.verify(&headers, &query, &body) {
            Ok(params) => params,
            Err(r) => return refusal(r),
        }
    } else {
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    };
    let weight = endpoint.weight_of(|name| params.get(name).cloned());
    let admitted = exchange
        .venue()
        .limits
        .admit(exchange.now(), weight, endpoint.order);
    let (mut response, usage) = match admitted {
        Err(too_many) => {
            let response = error(
                StatusCode::TOO_MANY_REQUESTS,
                too_many.refusal.code,
                &too_many.refusal.msg,
            );
            let secs = too_many.retry_after_secs.max(0) as u64;
            (with_retry_after(response, secs), too_many.headers)
        }
        Ok(usage) => {
            let response = match (&method, path.as_str()) {
                (&Method::GET, "/api/v3/ping") => axum::Json(json!({})).into_response(),
                (&Method::GET, "/api/v3/time") => {
                    axum::Json(json!({ "serverTime": exchange.now() })).into_response()
                }
                (&Method::GET, "/api/v3/exchangeInfo") => (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    exchange.exchange_info_json.clone(),
                )
                    .into_response(),
                (&Method::POST, _) => exchange.place(&params).await,
                _ => match exchange.answer(&method, &path, &params) {
                    Ok((body, reports)) => {
                        exchange.report(reports);
                        axum::Json(body).into_response()
                    }
                    Err(r) => refusal(r),
                },
            };
            (response, usage)
        }
    };
    for (name, used) in usage {
        if let Ok(name) = HeaderName::try_from(name) {
            response.headers_mut().insert(name, HeaderValue::from(used));
        }
    }
    if let Some(delay) = late {
        tokio::time::sleep(delay).await;
    }
    response
}

fn with_retry_after(mut response: Response, secs: u64) -> Response {
    response.headers_mut().insert("retry-after", secs.into());
    response
}
