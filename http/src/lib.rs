//! `hedgehog-http`: the HTTP API of `hedgehog run` (`auth`, the `tail` of the log its event
//! subscribers share, the `dashboard`'s files).
//!
//! The HTTP command API of `hedgehog run`: the CLI's trading, streaming and settings commands
//! as JSON over HTTP, through the very same command path (`trading::command`,
//! `streaming::command`), so validation, races and events are the CLI's.
//!
//! Every answer is JSON; every error is `{"error": {"status": N, "message": "..."}}` with the
//! CLI's message: 404 for an unknown symbol, 409 for a lost race, 422 for settings refused, 400
//! for a malformed body, 401 without the token, 413 for a body over 64 KiB, 421 for a foreign
//! Host, 403 for a foreign Origin.
//!
//! Security, in the order a request meets it: [`Allowed`] refuses a request addressed to
//! another Host (421: DNS rebinding) and a state change from another site's page (403: a
//! cross-site "simple" POST needs no preflight, so a browser would send it from any page);
//! then [`auth`] wants the token (`Authorization: Bearer`) or the dashboard's session cookie on
//! every request but `/api/health` and the dashboard's static files, reads and subscriptions
//! included, and hands the handlers who sent it: every command records it (the audit trail).
//! `run` binds 127.0.0.1 by default; authentication can be off on loopback only.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hedgehog_domain::exchange::ExchangeRules;
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::streaming::StreamingCommand;
use hedgehog_domain::{Event, Symbol, Timestamp, TradingSettings};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::{broadcast, watch};

pub mod auth;
pub mod dashboard;
pub mod tail;

use crate::tail::{Frame, Tail};
use hedgehog_engine::actor::Actor;
use hedgehog_engine::streaming::{self, StreamingError};
use hedgehog_engine::trading::{self, Request, SettingsChange, TradingError};
use hedgehog_projections::candles::{Candle, Interval};
use hedgehog_projections::orders::OrderRow;
use hedgehog_projections::query::{self, UpdateFilter, UpdateKind, Window};
use hedgehog_projections::trade_events::TradeRow;
use hedgehog_projections::{Market, ProjectionError};
use hedgehog_projections::{Published, Update};
use hedgehog_store::Store;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub store: Store,
    pub rules: Arc<ExchangeRules>,
    /// Where the rules came from, for error messages.
    pub rules_from: String,
    /// The tokens every request but the public ones needs.
    pub auth: auth::Auth,
    /// The configured strategy: a symbol started for the first time trades with it.
    pub strategy: hedgehog_domain::TradingSettings,
    /// The strategies settings may name.
    pub strategies: Strategies,
    /// The wall clock, read at the edge: commands carry their time as data.
    pub clock: fn() -> Timestamp,
    /// The log's live end, shared by `/api/events` subscribers.
    pub tail: Tail,
    /// The projector's read-model updates, for `/api/updates`.
    pub updates: broadcast::Sender<Arc<Published>>,
    /// Turns true when the server stops: subscriptions end then, so shutdown never waits on
    /// a client that keeps listening.
    pub stopping: watch::Receiver<bool>,
    /// Which Host names the server answers for and which Origins may change things.
    pub allowed: Allowed,
    /// The engine's workers' hydration, for `/api/health`; `None` when no engine runs here.
    pub readiness: Option<hedgehog_engine::readiness::Readiness>,
}

/// Who may address the API, against DNS rebinding and cross-site requests: a request whose
/// `Host` is not the bound address, `localhost`, `127.0.0.1`, `[::1]` or a listed name is
/// refused (421), and a state-changing request whose `Origin` is not the server's own (one of
/// those names on the bound port) or a listed origin is refused (403). A request without
/// `Origin` (curl, scripts) is judged by the token alone.
#[derive(Debug, Clone, Default)]
pub struct Allowed {
    /// More Host names to answer for (`http.allowed_hosts`): a name behind a reverse proxy.
    pub hosts: Vec<String>,
    /// More origins that may change things (`http.allowed_origins`), as `scheme://host[:port]`.
    pub origins: Vec<String>,
    /// The address the server is bound to (set by [`serve`]).
    pub bound: Option<SocketAddr>,
}

impl Allowed {
    /// Whether `host` (a Host header: `name[:port]`) names this server.
    fn host(&self, host: &str) -> bool {
        let name = host_name(host);
        ["localhost", "127.0.0.1", "::1"].contains(&name.as_str())
            || self
                .bound
                .is_some_and(|b| !b.ip().is_unspecified() && b.ip().to_string() == name)
            || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&name))
    }

    /// Whether a page of `origin` may change things here.
    fn origin(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/');
        if self
            .origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Ok(url) = url::Url::parse(origin) else {
            return false; // `null` (a sandboxed or local page) and anything unparsable
        };
        let port = url.port_or_known_default();
        url.scheme() == "http"
            && url.host_str().is_some_and(|h| self.host(h))
            && self.bound.is_none_or(|b| port == Some(b.port()))
    }
}

/// The name part of a Host header, lower-cased, without its port or IPv6 brackets.
fn host_name(host: &str) -> String {
    let host = host.trim();
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.to_ascii_lowercase()
}

/// Whether a request of `method` may change something (all but GET, HEAD and OPTIONS): what
/// the Origin checks apply to.
fn changes_state(method: &axum::http::Method) -> bool {
    use axum::http::Method;
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Refuses requests addressed to another host, and state changes from another site's pages.
async fn guard(
    State(api): State<Api>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !api.allowed.host(&host) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this server does not answer for Host {host:?}: address it as localhost or \
                 127.0.0.1, or list the name in http.allowed_hosts"
            ),
        )
        .into_response();
    }
    if changes_state(request.method()) {
        if let Some(origin) = request.headers().get(axum::http::header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("(not text)");
            if !api.allowed.origin(origin) {
                tracing::warn!(%origin, path = %request.uri().path(), "refused a request from another site");
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "a page of {origin} may not change anything here; list the origin in \
                         http.allowed_origins to allow it"
                    ),
                )
                .into_response();
            }
        }
    }
    next.run(request).await
}

/// Why `run` will not serve on an address.
#[derive(Debug, thiserror::Error)]
#[error("refusing to serve the HTTP API on {0} with authentication off (http.auth = \"off\"): anyone who can reach the address could trade; bind 127.0.0.1, or turn authentication on")]
pub struct InsecureBind(pub SocketAddr);

/// Checks that authentication is off on a loopback address only.
pub fn check_bind(addr: SocketAddr, auth: &auth::Auth) -> Result<(), InsecureBind> {
    if addr.ip().is_loopback() || !auth.is_off() {
        Ok(())
    } else {
        Err(InsecureBind(addr))
    }
}

/// The API's routes.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route(
            "/api/symbols/{symbol}/trading/{action}",
            post(trading_action),
        )
        .route(
            "/api/symbols/{symbol}/streaming/{action}",
            post(streaming_action),
        )
        .route(
            "/api/symbols/{symbol}/settings",
            get(get_settings).put(put_settings),
        )
        .route("/api/symbols", get(symbols))
        .route("/api/symbols/{symbol}", get(symbol_status))
        .route("/api/orders", get(orders))
        .route("/api/trades", get(trades))
        .route("/api/ohlc", get(ohlc))
        .route("/api/events", get(events))
        .route("/api/updates", get(updates))
        .route("/api/openapi.json", get(openapi))
        .route(
            "/api/session",
            get(auth::session)
                .post(auth::open_session)
                .delete(auth::close_session),
        )
        .merge(crate::dashboard::router())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Layers run from the last added: the guard, then authentication.
        .layer(axum::middleware::from_fn_with_state(
            api.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(api.clone(), guard))
        .with_state(api)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"status": self.status.as_u16(), "message": self.message}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"hedgehog\""),
            );
        }
        response
    }
}

impl From<TradingError> for ApiError {
    fn from(e: TradingError) -> Self {
        let status = match &e {
            TradingError::UnknownSymbol { .. } => StatusCode::NOT_FOUND,
            TradingError::Conflict(_) => StatusCode::CONFLICT,
            TradingError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TradingError::Store(_) | TradingError::Aggregate(_) => {
                tracing::error!("trading command failed: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StreamingError> for ApiError {
    fn from(e: StreamingError) -> Self {
        let status = match &e {
            StreamingError::UnknownSymbol { .. } => StatusCode::NOT_FOUND,
            StreamingError::Conflict(_) => StatusCode::CONFLICT,
            StreamingError::Store(_) | StreamingError::Aggregate(_) => {
                tracing::error!("streaming command failed: {e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::UnknownProjection(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
            }
            e => {
                tracing::error!("query failed: {e}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, e.body_text())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::new(e.status(), e.body_text())
    }
}

impl Api {
    fn symbol_rules(
        &self,
        symbol: &str,
    ) -> Result<&hedgehog_domain::exchange::SymbolRules, ApiError> {
        let symbol = parse_symbol(symbol)?;
        Ok(trading::rules_for(&self.rules, &self.rules_from, &symbol)?)
    }
}

fn parse_symbol(text: &str) -> Result<Symbol, ApiError> {
    Symbol::parse(text).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e.to_string()))
}

async fn health(State(api): State<Api>) -> Result<Json<serde_json::Value>, ApiError> {
    let head = api.store.head_position().await.map_err(|e| {
        tracing::error!("health: {e}");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    })?;
    let mut answer = json!({"status": "ok", "head": head, "ready": true});
    if let Some(readiness) = &api.readiness {
        let report = readiness.report();
        answer["ready"] = json!(report.ready);
        answer["engine"] = json!(report);
    }
    Ok(Json(answer))
}

/// The answer to a command: what it appended (nothing: it was so already) and where it left
/// the symbol.
#[derive(Debug, Serialize)]
struct CommandAnswer {
    symbol: Symbol,
    changed: bool,
    status: String,
    events: Vec<Event>,
}

impl CommandAnswer {
    fn of(symbol: &Symbol, outcome: trading::Outcome) -> Self {
        CommandAnswer {
            symbol: symbol.clone(),
            changed: !outcome.events.is_empty(),
            status: outcome.state.status.to_string(),
            events: outcome.events,
        }
    }
}

async fn trading_action(
    State(api): State<Api>,
    Path((symbol, action)): Path<(String, String)>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<CommandAnswer>, ApiError> {
    let store = actor.on(&api.store);
    let request = match action.as_str() {
        "start" => Request::Start,
        "stop" => Request::Stop,
        "shutdown" => Request::Shutdown,
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no trading action {other:?}: use start, stop or shutdown"),
            ))
        }
    };
    let rules = api.symbol_rules(&symbol)?;
    if matches!(request, Request::Start) {
        trading::apply_default_settings(
            &store,
            rules,
            &api.strategies,
            &api.strategy,
            (api.clock)(),
        )
        .await?;
    }
    let outcome =
        trading::command_with(&store, rules, &api.strategies, request, (api.clock)()).await?;
    Ok(Json(CommandAnswer::of(&rules.symbol, outcome)))
}

async fn streaming_action(
    State(api): State<Api>,
    Path((symbol, action)): Path<(String, String)>,
    Extension(actor): Extension<Actor>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (command, state) = match action.as_str() {
        "start" => (StreamingCommand::Start, "on"),
        "stop" => (StreamingCommand::Stop, "off"),
        other => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no streaming action {other:?}: use start or stop"),
            ))
        }
    };
    let symbol = parse_symbol(&symbol)?;
    let outcome = streaming::command(
        &actor.on(&api.store),
        &api.rules,
        &api.rules_from,
        &symbol,
        command,
    )
    .await?;
    Ok(Json(json!({
        "symbol": symbol,
        "changed": outcome == streaming::Outcome::Changed,
        "streaming": state,
    })))
}

async fn get_settings(
    State(api): State<Api>,
    Path(symbol): Path<String>,
) -> Result<Json<TradingSettings>, ApiError> {
    let rules = api.symbol_rules(&symbol)?;
    let (state, _) = trading::state(&api.store, &rules.symbol).await?;
    Ok(Json(state.settings))
}

/// A change to some settings; fields left out keep their values. Unknown fields are refused,
/// so a misspelt setting is an error, not a silent no-op.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    strategy: Option<String>,
    chunks: Option<u32>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    budget: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    buy_down_interval: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    profit_target: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    rebuy_interval: Option<Decimal>,
    #[serde(default, with = "rust_decimal::serde::str_option")]
    fee: Option<Decimal>,
}

async fn put_settings(
    State(api): State<Api>,
    Path(symbol): Path<String>,
    Extension(actor): Extension<Actor>,
    body: Result<Json<SettingsBody>, JsonRejection>,
) -> Result<Json<CommandAnswer>, ApiError> {
    let Json(body) = body?;
    let change = SettingsChange {
        strategy: body.strategy,
        chunks: body.chunks,
        budget: body.budget,
        buy_down_interval: body.buy_down_interval,
        profit_target: body.profit_target,
        rebuy_interval: body.rebuy_interval,
        fee: body.fee,
    };
    if change == SettingsChange::default() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "nothing to set: give at least one of strategy, chunks, budget, buy_down_interval, profit_target, rebuy_interval, fee",
        ));
    }
    let rules = api.symbol_rules(&symbol)?;
    let outcome = trading::command_with(
        &actor.on(&api.store),
        rules,
        &api.strategies,
        Request::Settings(change),
        (api.clock)(),
    )
    .await?;
    Ok(Json(CommandAnswer::of(&rules.symbol, outcome)))
}

fn bad_request(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("query parameter `{field}`: {why}"),
    )
}

fn symbol_param(value: &str) -> Result<Symbol, ApiError> {
    Symbol::parse(value).map_err(|e| bad_request("symbol", e))
}

fn time_param(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    value
        .map(|v| hedgehog_runtime::time::parse_time(v).map_err(|e| bad_request(field, e)))
        .transpose()
}

fn market_param(value: Option<&str>) -> Result<Market, ApiError> {
    value
        .unwrap_or("spot")
        .parse()
        .map_err(|e| bad_request("market", e))
}

/// `?symbol=&status=&run=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersQuery {
    symbol: Option<String>,
    status: Option<String>,
    run: Option<String>,
}

async fn orders(
    State(api): State<Api>,
    query: Result<Query<OrdersQuery>, QueryRejection>,
) -> Result<Json<Vec<OrderRow>>, ApiError> {
    let Query(q) = query?;
    let symbol = q.symbol.as_deref().map(symbol_param).transpose()?;
    let status = q.status.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &status {
        if !["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED"].contains(&s.as_str()) {
            return Err(bad_request(
                "status",
                format!("{s:?} is not NEW, PARTIALLY_FILLED, FILLED or CANCELED"),
            ));
        }
    }
    let db = api.store.database();
    Ok(Json(
        query::orders(&db, q.run.as_deref(), symbol.as_ref(), status.as_deref()).await?,
    ))
}

/// `?symbol=&market=&from=&to=&after=&limit=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TradesQuery {
    symbol: String,
    market: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<u64>,
    limit: Option<i64>,
}

/// Most trades one `/api/trades` page holds.
const TRADES_PAGE: i64 = 10_000;

async fn trades(
    State(api): State<Api>,
    query: Result<Query<TradesQuery>, QueryRejection>,
) -> Result<Json<Vec<TradeRow>>, ApiError> {
    let Query(q) = query?;
    let symbol = symbol_param(&q.symbol)?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=TRADES_PAGE).contains(&limit) {
        return Err(bad_request(
            "limit",
            format!("{limit} is not within 1..={TRADES_PAGE}"),
        ));
    }
    let window = Window {
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
    };
    let market = market_param(q.market.as_deref())?;
    Ok(Json(
        query::trades(&api.store, market, &symbol, window, q.after, limit).await?,
    ))
}

/// `?symbol=&interval=&market=&from=&to=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OhlcQuery {
    symbol: String,
    interval: Option<String>,
    market: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn ohlc(
    State(api): State<Api>,
    query: Result<Query<OhlcQuery>, QueryRejection>,
) -> Result<Json<Vec<Candle>>, ApiError> {
    let Query(q) = query?;
    let symbol = symbol_param(&q.symbol)?;
    let interval: Interval =
        hedgehog_projections::candles::stored_interval(q.interval.as_deref().unwrap_or("1m"))
            .map_err(|e| bad_request("interval", e))?;
    let window = Window {
        from: time_param("from", q.from.as_deref())?,
        to: time_param("to", q.to.as_deref())?,
    };
    let market = market_param(q.market.as_deref())?;
    let db = api.store.database();
    Ok(Json(
        query::candles(&db, market, &symbol, interval, window).await?,
    ))
}

/// Every symbol with settings: its trading and streaming status, from the read models.
async fn symbols(State(api): State<Api>) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let db = api.store.database();
    let mut all = std::collections::BTreeMap::new();
    for row in query::trading_settings(&db).await? {
        all.insert(row.symbol.to_string(), (row.status, "off".to_owned()));
    }
    for row in query::streaming_settings(&db).await? {
        all.entry(row.symbol.to_string())
            .or_insert_with(|| ("off".to_owned(), String::new()))
            .1 = row.status;
    }
    Ok(Json(
        all.into_iter()
            .map(|(symbol, (trading, streaming))| {
                json!({"symbol": symbol, "trading": trading, "streaming": streaming})
            })
            .collect(),
    ))
}

/// A symbol at a glance: trading status and settings, open positions, profit so far, streaming.
async fn symbol_status(
    State(api): State<Api>,
    Path(symbol): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rules = api.symbol_rules(&symbol)?;
    let (state, version) = trading::state(&api.store, &rules.symbol).await?;
    let streaming = streaming::is_on(&api.store, &rules.symbol).await?;
    let order = |o: &hedgehog_domain::trading::Order| {
        json!({
            "order_id": o.order_id,
            "side": o.side,
            "price": o.price,
            "quantity": o.quantity,
            "executed": o.executed,
            "open": o.open,
        })
    };
    let positions: Vec<serde_json::Value> = state
        .positions
        .values()
        .map(|p| {
            json!({
                "position_id": p.position_id,
                "buy_price": p.buy_price(),
                "quantity": p.buy.as_ref().map(|o| o.quantity),
                "bought": p.bought(),
                "sold": p.sold(),
                "buy": p.buy.as_ref().map(order),
                "sell": p.sell.as_ref().map(order),
                "sell_rejected": p.sell_rejected,
                "opened_at": p.opened_at,
            })
        })
        .collect();
    Ok(Json(json!({
        "symbol": rules.symbol,
        "status": state.status.to_string(),
        "streaming": if streaming { "on" } else { "off" },
        "settings": state.settings,
        "positions": positions,
        "left_unsold": state.left_unsold(),
        "positions_closed": state.totals.positions_closed,
        "realized_profit": state.totals.realized_profit,
        "fees": state.totals.fees,
        "version": version,
    })))
}

/// `?after=&symbol=&type=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    after: Option<i64>,
    symbol: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

type SseStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send>,
>;

/// Ends `stream` when the server stops.
fn until_stopping(api: &Api, stream: SseStream) -> SseStream {
    use futures::StreamExt;
    let mut stopping = api.stopping.clone();
    let stopped = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    Box::pin(stream.take_until(Box::pin(stopped)))
}

/// The log as Server-Sent Events: every stored event after `after` (or after the
/// `Last-Event-ID` a reconnecting client sends, or from now), then live, optionally only one
/// symbol's and one type's. Each event's SSE id is its log position, so a client that reconnects
/// with its last id resumes without a gap or a repeat.
async fn events(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    use futures::StreamExt;
    let Query(q) = query?;
    let symbol = q.symbol.as_deref().map(symbol_param).transpose()?;
    let after = match last_event_id(&headers)?.or(q.after) {
        Some(after) => after,
        None => api
            .store
            .head_position()
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
    };
    let wanted = move |f: &Frame| {
        symbol.as_ref().is_none_or(|s| &f.symbol == s)
            && q.event_type.as_deref().is_none_or(|t| f.event_type == t)
    };
    let stream = api.tail.follow(after).filter_map(move |r| {
        let out = match r {
            Ok(f) if !wanted(&f) => None,
            Ok(f) => Some(
                SseEvent::default()
                    .id(f.position.to_string())
                    .event(f.event_type)
                    .data(&*f.data),
            ),
            Err(e) => {
                tracing::error!("event subscription failed: {e}");
                Some(SseEvent::default().event("error").data(e.to_string()))
            }
        };
        std::future::ready(out.map(Ok))
    });
    Ok(Sse::new(until_stopping(&api, Box::pin(stream)))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `?symbol=&kind=&interval=&after=`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdatesQuery {
    symbol: Option<String>,
    kind: Option<String>,
    interval: Option<String>,
    after: Option<i64>,
}

/// Rows per page when catching a subscriber up.
const CATCH_UP_PAGE: i64 = 1_000;

/// The `Last-Event-ID` a reconnecting client sends, if any.
fn last_event_id(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| bad_request("Last-Event-ID", format!("{v:?} is not a position")))
        })
        .transpose()
}

/// An update as an SSE event named after its kind.
fn update_event(update: &Update) -> Option<SseEvent> {
    SseEvent::default()
        .event(UpdateKind::of(update).as_str())
        .json_data(update)
        .ok()
}

/// Read-model updates (candles, orders, settings) as Server-Sent Events, as the projector
/// commits them, optionally only one symbol's, one kind's, and candles of one interval.
///
/// The last event of each committed batch a client receives carries the batch's log position
/// as its SSE id. A client that reconnects with it (`Last-Event-ID`, as browsers do), or that
/// asks for `?after=P`, first gets every row changed after that position, in its current
/// state, then a `caught_up` event whose id is the position the rows reflect, then the live
/// batches after it: nothing is missed, and a row is at worst sent again in a newer state. A
/// subscriber that falls behind the live batches is caught up the same way, from its last
/// batch.
async fn updates(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<UpdatesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let filter = UpdateFilter {
        symbol: q.symbol.as_deref().map(symbol_param).transpose()?,
        kind: q
            .kind
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| bad_request("kind", e))?,
        interval: q
            .interval
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| bad_request("interval", e))?,
    };
    let resume = last_event_id(&headers)?.or(q.after);
    // Subscribe before reading where the read models stand, so no batch falls between.
    let mut rx = api.updates.subscribe();
    let db = api.store.database();
    let unavailable =
        |e: ProjectionError| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    // What the client has: everything up to `seen` (where a catch-up after a lag starts). Live
    // batches at or before `skip_through` are already in what a catch-up sent; a live-only
    // client skips none, so a batch committed while it connected still reaches it.
    let mut skip_through = i64::MIN;
    let (mut seen, mut behind) = match resume {
        Some(after) => (after, true),
        None => (
            query::projected_position(&db, &filter)
                .await
                .map_err(unavailable)?,
            false,
        ),
    };
    let stream = async_stream::stream! {
        loop {
            if behind {
                behind = false;
                let position = match query::projected_position(&db, &filter).await {
                    Ok(position) => position,
                    Err(e) => {
                        yield Ok(failed(e));
                        break;
                    }
                };
                for kind in filter.kinds() {
                    let mut cursor = seen;
                    loop {
                        match query::changed_after(&db, kind, &filter, cursor, CATCH_UP_PAGE).await {
                            Ok(page) => {
                                for event in page.updates.iter().filter_map(update_event) {
                                    yield Ok(event);
                                }
                                cursor = page.next;
                                if !page.more {
                                    break;
                                }
                            }
                            Err(e) => {
                                yield Ok(failed(e));
                                return;
                            }
                        }
                    }
                }
                seen = seen.max(position);
                skip_through = seen;
                yield Ok(SseEvent::default()
                    .id(seen.to_string())
                    .event("caught_up")
                    .data(format!("{{\"position\":{seen}}}")));
            }
            match rx.recv().await {
                // Projected by another process: the rows say what changed.
                Ok(batch) if batch.elsewhere => behind = true,
                Ok(batch) if batch.position <= skip_through => {}
                Ok(batch) => {
                    let wanted: Vec<&Update> =
                        batch.updates.iter().filter(|u| filter.wants(u)).collect();
                    for (i, update) in wanted.iter().enumerate() {
                        let Some(mut event) = update_event(update) else { continue };
                        if i + 1 == wanted.len() {
                            event = event.id(batch.position.to_string());
                        }
                        yield Ok(event);
                    }
                    seen = seen.max(batch.position);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => behind = true,
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    };
    Ok(Sse::new(until_stopping(&api, Box::pin(stream)))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// An `error` event for a subscription that cannot go on.
fn failed(e: ProjectionError) -> SseEvent {
    tracing::error!("update subscription failed to catch up: {e}");
    SseEvent::default().event("error").data(e.to_string())
}

/// The API's description (OpenAPI 3.1), kept at the repository's root.
const OPENAPI: &str = include_str!("../../openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// Serves the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut api: Api,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    api.allowed.bound = Some(listener.local_addr()?);
    axum::serve(
        listener,
        router(api).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authentication_is_off_on_loopback_only() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let open: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let off = auth::Auth::off();
        let on = auth::Auth::with_tokens(vec![("default".into(), "0123456789abcdef0123".into())])
            .unwrap();
        assert!(check_bind(local, &off).is_ok());
        assert!(check_bind(local, &on).is_ok());
        assert!(check_bind(open, &on).is_ok());
        let message = check_bind(open, &off).unwrap_err().to_string();
        assert!(message.contains("http.auth"), "{message}");
    }

    /// Every route the router serves is described in openapi.json, and every path described
    /// there is routed: the document cannot drift from the code unnoticed.
    #[test]
    fn openapi_describes_every_route() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json parses");
        let documented: std::collections::BTreeSet<&str> = spec["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let sources = [include_str!("lib.rs"), include_str!("dashboard/mod.rs")];
        let routed: std::collections::BTreeSet<&str> = sources
            .iter()
            .flat_map(|source| source.split(".route(").skip(1))
            .filter_map(|call| call.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|path| path.starts_with('/') && !path.starts_with("/assets/"))
            .collect();
        assert_eq!(documented, routed);
    }

    #[test]
    fn hosts_and_origins_are_this_servers_or_listed() {
        let allowed = Allowed {
            hosts: vec!["hedgehog.lan".into()],
            origins: vec!["https://desk.example".into()],
            bound: Some("127.0.0.1:8080".parse().unwrap()),
        };
        for host in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "LOCALHOST",
            "hedgehog.lan:80",
        ] {
            assert!(allowed.host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.2:8080",
            "",
            "localhost.evil.example",
        ] {
            assert!(!allowed.host(host), "{host}");
        }
        for origin in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "https://desk.example/",
        ] {
            assert!(allowed.origin(origin), "{origin}");
        }
        for origin in [
            "https://evil.example",
            "http://localhost:9999",
            "https://localhost:8080",
            "null",
            "http://hedgehog.lan.evil.example:8080",
        ] {
            assert!(!allowed.origin(origin), "{origin}");
        }
    }
}
