//! `hedgehog run` end to end, on both backends, against the real recordings: streaming and
//! trading are switched on over HTTP, orders and candles are seen over HTTP and SSE, the engine
//! shuts down gracefully and restarts with everything intact, then is killed with SIGKILL in the
//! middle of the next day's trades and resumes where it was: no trade lost or stored twice, no
//! order placed twice, no acknowledged command lost.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::http::{start_engine, tight_btc_settings, trade_btcusdt, Api, Sse};
use common::processes::{terminate, Replay, Running};
use common::{symbol, TestDb};
use hedgehog_domain::Event;
use hedgehog_store::StreamId;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(run_trades_over_http_and_resumes_after_shutdown_and_sigkill);

/// Trades in each day's recording (tests/market/binance_recordings.rs checks them against SOURCES.md).
const DAY_ONE: (&str, u64) = ("spot_btcusdt_20240808.gz", 9757);
const DAY_TWO: (&str, u64) = ("spot_btcusdt_20240809.gz", 10147);

/// Trades counted by the 1d candles of BTCUSDT: what the projector has stored.
async fn projected_trades(api: &Api) -> u64 {
    let candles = api.get("/api/ohlc?symbol=BTCUSDT&interval=1d").await;
    candles
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["trade_count"].as_u64().unwrap())
        .sum()
}

/// Waits (up to 120 s) until `count` trades are projected, failing at once if the engine died.
async fn until_projected(api: &Api, engine: &mut Running, count: u64) {
    let started = Instant::now();
    loop {
        let seen = projected_trades(api).await;
        assert!(
            seen <= count,
            "{seen} trades projected, more than the {count} played"
        );
        if seen == count {
            return;
        }
        if let Some(status) = engine.child().try_wait().unwrap() {
            panic!("the engine exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out with {seen} of {count} trades projected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// [`snapshot`] once the engine has settled: the trader decides on the last trades after
/// they are projected, and the projector then projects those decisions, so a snapshot taken
/// the moment the trades are in may miss orders. Settled: the log's head and the snapshot
/// stay the same across a pause.
async fn settled_snapshot(api: &Api) -> (Value, Value, Value) {
    let started = Instant::now();
    loop {
        let head = api.get("/api/health").await["head"].clone();
        let first = snapshot(api).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let again = snapshot(api).await;
        if api.get("/api/health").await["head"] == head && again == first {
            return again;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the engine never settled"
        );
    }
}

/// Everything a user would check after a restart.
async fn snapshot(api: &Api) -> (Value, Value, Value) {
    let orders = api.get("/api/orders?symbol=BTCUSDT").await;
    let candles = api.get("/api/ohlc?symbol=BTCUSDT&interval=1m").await;
    let status = api.get("/api/symbols/BTCUSDT").await;
    (orders, candles, status)
}

/// The order ids of every OrderPlaced in the trading stream, in log order.
async fn placed_in_log(db: &TestDb) -> Vec<u64> {
    let store = db.open().await;
    let events = store
        .read_stream_to_end(&StreamId::trading(&symbol("BTCUSDT")))
        .await
        .unwrap();
    events
        .iter()
        .filter_map(|e| match &e.event {
            Event::OrderPlaced(o) => Some(o.order_id),
            _ => None,
        })
        .collect()
}

fn order_ids(orders: &Value) -> BTreeSet<u64> {
    orders
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_u64().unwrap())
        .collect()
}

mod cases {
    use super::*;

    pub async fn run_trades_over_http_and_resumes_after_shutdown_and_sigkill(db: &TestDb) {
        // Day one, at full speed.
        let replay = Replay::start(&[DAY_ONE.0], 0);
        let (mut engine, url) = start_engine(db, &replay.url);
        let api = Api::new(&url);
        let mut placed = api
            .subscribe("/api/events?symbol=BTCUSDT&type=OrderPlaced&after=0")
            .await;
        let mut updates = api.subscribe("/api/updates").await;
        let mut five_minute = api
            .subscribe("/api/updates?symbol=BTCUSDT&kind=candle&interval=5m")
            .await;

        trade_btcusdt(&api).await;
        until_projected(&api, &mut engine, DAY_ONE.1).await;

        // Orders and candles over HTTP.
        let (orders, candles, status) = settled_snapshot(&api).await;
        let ids = order_ids(&orders);
        assert!(ids.len() >= 2, "orders were placed: {orders}");
        assert!(
            orders
                .as_array()
                .unwrap()
                .iter()
                .any(|o| o["status"] == "FILLED"),
            "an order filled: {orders}"
        );
        assert!(candles.as_array().unwrap().len() >= 5, "{candles}");
        assert_eq!(status["status"], "on");
        assert_eq!(status["streaming"], "on");

        // The same orders over SSE, each placement once, in log order.
        let mut last = 0;
        let mut seen = BTreeSet::new();
        for _ in 0..ids.len() {
            let (position, event, data) = placed.next().await;
            assert_eq!(event, "OrderPlaced");
            assert!(position > last, "positions rise: {position} after {last}");
            last = position;
            assert!(seen.insert(data["event"]["order_id"].as_u64().unwrap()));
        }
        assert_eq!(seen, ids);

        // Candle and order updates as the projector committed them.
        let (mut candle_updates, mut order_updates) = (0, 0);
        while candle_updates == 0 || order_updates == 0 {
            let (_, kind, data) = updates.next().await;
            match kind.as_str() {
                "candle" if data["symbol"] == "BTCUSDT" => candle_updates += 1,
                "order" if data["symbol"] == "BTCUSDT" => order_updates += 1,
                _ => {}
            }
        }
        // A filtered subscription gets only what it asked for.
        for _ in 0..3 {
            let (_, kind, data) = five_minute.next().await;
            assert_eq!(kind, "candle", "{data}");
            assert_eq!(
                (&data["symbol"], &data["interval"]),
                (&json!("BTCUSDT"), &json!("5m"))
            );
        }
        let bad = api
            .client
            .get(format!("{url}/api/updates?kind=trade"))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        drop((placed, updates, five_minute));

        // A graceful shutdown, then a restart with no market feed: everything is as it was.
        terminate(engine);
        let head = db.open().await.head_position().await.unwrap();
        let (engine, url) = start_engine(db, "ws://127.0.0.1:9");
        let api = Api::new(&url);
        assert_eq!(snapshot(&api).await, (orders.clone(), candles, status));
        let health = api.get("/api/health").await;
        assert_eq!(health["head"], head, "a restart appends nothing by itself");
        // Ready once the symbol's worker has hydrated (from the snapshot its clean stop saved).
        let started = Instant::now();
        let health = loop {
            let health = api.get("/api/health").await;
            if health["ready"] == true {
                break health;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never ready: {health}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(health["engine"]["workers"], 1, "{health}");
        assert_eq!(health["engine"]["hydrated"], 1, "{health}");
        assert!(health["engine"]["ready_after_ms"].is_u64(), "{health}");
        terminate(engine);

        // Day two, paced so the engine is killed in the middle of it.
        // It repeats what it sent since the cut, as a backfill would: a killed engine may have
        // had a batch of trades in flight, and Binance itself would not send them again.
        let replay = Replay::launch(
            &[DAY_TWO.0],
            &["--speed", "30", "--resume-overlap", "100000"],
        );
        let (mut engine, url) = start_engine(db, &replay.url);
        let api = Api::new(&url);
        let started = Instant::now();
        while projected_trades(&api).await <= DAY_ONE.1 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no day-two trade"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut acknowledged = tight_btc_settings();
        acknowledged["budget"] = json!("150");
        let (status, body) = api
            .put("/api/symbols/BTCUSDT/settings", &acknowledged)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        engine.child().kill().unwrap(); // SIGKILL
        engine.child().wait().unwrap();

        // The next start resumes the feed where it was and finishes the day.
        let (mut engine, url) = start_engine(db, &replay.url);
        let api = Api::new(&url);
        until_projected(&api, &mut engine, DAY_ONE.1 + DAY_TWO.1).await;
        let settings_now = api.get("/api/symbols/BTCUSDT/settings").await;
        assert_eq!(
            settings_now["budget"], "150",
            "the acknowledged change survived SIGKILL: {settings_now}"
        );
        let (orders_now, _, _) = snapshot(&api).await;
        let now = order_ids(&orders_now);
        assert!(
            now.is_superset(&ids),
            "day one's orders are all still there"
        );
        for before in orders.as_array().unwrap() {
            let after = orders_now
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["order_id"] == before["order_id"])
                .unwrap();
            for field in [
                "side",
                "price",
                "original_quantity",
                "time",
                "client_order_id",
            ] {
                assert_eq!(after[field], before[field], "{field} of {before}");
            }
        }
        // No decision was executed twice: every order was placed once, numbered without a gap.
        let log = placed_in_log(db).await;
        let distinct: BTreeSet<u64> = log.iter().copied().collect();
        assert_eq!(distinct.len(), log.len(), "an order placed twice: {log:?}");
        assert_eq!(log, (1..=log.len() as u64).collect::<Vec<_>>());
        assert_eq!(distinct, now);

        // A client that saw the log up to `last` before the shutdown resumes right after it:
        // day two's placements, none of day one's again.
        let mut resumed = Sse::open(
            api.client
                .get(api.url("/api/events?symbol=BTCUSDT&type=OrderPlaced"))
                .header("Last-Event-ID", last.to_string()),
        )
        .await;
        let mut day_two = BTreeSet::new();
        for _ in ids.len()..now.len() {
            let (position, _, data) = resumed.next().await;
            assert!(position > last);
            last = position;
            assert!(day_two.insert(data["event"]["order_id"].as_u64().unwrap()));
        }
        assert_eq!(day_two, &now - &ids);
        terminate(engine);
    }
}
