//! The dashboard: one page served at `/`, its script and style, and the charting library, all
//! compiled into the binary so `run` needs no CDN, no network and no files beside it.
//!
//! The page draws what the API serves (`/api/ohlc`, `/api/orders`, `/api/symbols/{s}`) and then
//! follows `/api/updates` (Server-Sent Events): candles and orders change on the page as the
//! projector commits them, never by polling. Its buttons post the same commands as the CLI,
//! with the token the user typed (kept in the browser's local storage, never in the page).
//!
//! The chart is TradingView's Lightweight Charts (Apache-2.0, `vendor/`), vendored as its
//! standalone build: `npm pack lightweight-charts@5.2.1`, `dist/*.standalone.production.js`.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");
const CHARTS: &str = include_str!("vendor/lightweight-charts.standalone.production.js");

/// Scripts and styles come from this server only; the page talks to this server only.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse + Clone {
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        body,
    )
}

/// `/` and `/assets/*`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/assets/dashboard.js",
            get(asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/assets/dashboard.css",
            get(asset("text/css; charset=utf-8", STYLE)),
        )
        .route(
            "/assets/lightweight-charts.js",
            get(asset("text/javascript; charset=utf-8", CHARTS)),
        )
}
