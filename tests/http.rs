//! The HTTP command API of `hedgehog run`, through the real binary on both backends: commands
//! go through the store like the CLI's, errors are 4xx with a JSON body, the token guards every
//! mutating request, and a non-loopback bind without a token is refused.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{error_message, start_engine, Api, Sse, TOKEN};
use common::processes::{hedgehog, ok, terminate};
use common::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    commands_over_http_reach_the_store_and_errors_are_json,
    queries_answer_what_the_cli_answers,
    updates_resume_after_a_reconnect_without_a_gap,
);

const ADA_DAY_HEAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ADAUSDT-2019-06-03.head2000.csv.gz"
);

const ADA_DAY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ADAUSDT-2019-06-03.csv.gz"
);

/// ADAUSDT trading with one chunk and tight intervals, so a few thousand trades run positions
/// through.
fn trade_adausdt(db: &TestDb) {
    ok(hedgehog(
        db,
        &[
            "settings",
            "set",
            "ADAUSDT",
            "--chunks",
            "1",
            "--budget",
            "100",
            "--buy-down-interval",
            "0.0001",
            "--profit-target",
            "0.0001",
            "--fee",
            "0.0002",
        ],
    ));
    ok(hedgehog(db, &["trading", "start", "ADAUSDT"]));
}

/// What a subscriber to `/api/updates` holds: each row by its key, in its latest state.
#[derive(Default)]
struct Mirror {
    candles: std::collections::BTreeMap<(String, i64), Value>,
    orders: std::collections::BTreeMap<u64, Value>,
    trading: Option<Value>,
}

impl Mirror {
    fn apply(&mut self, kind: &str, data: Value) {
        match kind {
            "candle" => {
                let key = (
                    data["interval"].as_str().unwrap().to_owned(),
                    data["open_time"].as_i64().unwrap(),
                );
                self.candles.insert(key, data);
            }
            "order" => {
                self.orders.insert(data["order_id"].as_u64().unwrap(), data);
            }
            "trading_settings" => self.trading = Some(data),
            _ => {}
        }
    }
}

/// The row of `/api/updates` data as the queries show it (updates carry their kind).
fn without_kind(mut row: Value) -> Value {
    row.as_object_mut().unwrap().remove("kind");
    row
}

#[test]
fn a_public_bind_without_a_token_is_refused() {
    let db = TestDb::sqlite();
    let out = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "run", "--http", "0.0.0.0:0"])
        .env_remove("HEDGEHOG_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:0") && err.contains("HEDGEHOG_API_TOKEN"),
        "{err}"
    );
}

mod cases {
    use super::*;

    /// A client of `/api/updates` that drops off and reconnects with its `Last-Event-ID` ends
    /// with exactly what the queries show: the rows changed while it was away come first, then
    /// the live batches. `?after=0` serves the whole read model, then live.
    pub async fn updates_resume_after_a_reconnect_without_a_gap(db: &TestDb) {
        let (engine, base) = start_engine(db, "ws://127.0.0.1:9");
        let api = Api::new(&base);
        trade_adausdt(db);
        let mut mirror = Mirror::default();
        let mut live = api.subscribe("/api/updates?symbol=ADAUSDT").await;
        ok(hedgehog(db, &["import", "trades", ADA_DAY_HEAD]));
        // Read up to the end of a committed batch (its last frame carries the id), and go.
        let last_id = loop {
            let (id, kind, data) = live.next().await;
            mirror.apply(&kind, data);
            if id >= 0 && !mirror.candles.is_empty() {
                break id;
            }
        };
        drop(live);

        // While it is away: the rest of the day, and the trades' orders.
        ok(hedgehog(db, &["import", "trades", ADA_DAY]));
        let projected = |db: &TestDb| {
            let status: Value = serde_json::from_str(&ok(hedgehog(
                db,
                &["projections", "status", "--format", "json"],
            )))
            .unwrap();
            status.as_array().unwrap().iter().all(|p| p["behind"] == 0)
        };
        let started = Instant::now();
        while !projected(db) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "projections lag"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        let mut resumed = Sse::open(
            api.client
                .get(api.url("/api/updates?symbol=ADAUSDT"))
                .header("Last-Event-ID", last_id.to_string()),
        )
        .await;
        let caught_up = loop {
            let (id, kind, data) = resumed.next().await;
            if kind == "caught_up" {
                assert_eq!(data["position"].as_i64(), Some(id));
                break id;
            }
            assert!(
                data["position"].as_i64().unwrap() > last_id,
                "only rows changed after {last_id}: {data}"
            );
            mirror.apply(&kind, data);
        };
        assert!(caught_up > last_id);

        // Exactly what the queries show, every interval.
        for interval in ["1m", "5m", "15m", "1h", "4h", "1d"] {
            let candles = api
                .get(&format!("/api/ohlc?symbol=ADAUSDT&interval={interval}"))
                .await;
            let mirrored: Vec<Value> = mirror
                .candles
                .iter()
                .filter(|((i, _), _)| i == interval)
                .map(|(_, c)| without_kind(c.clone()))
                .collect();
            assert_eq!(Value::Array(mirrored), candles, "{interval} candles");
        }
        // The engine may still be deciding on the day (its orders are projected after the
        // trades): take its updates until the mirror holds what the query shows.
        let by_id = |o: &Value| o["order_id"].as_u64().unwrap();
        let started = Instant::now();
        let orders = loop {
            let orders = api.get("/api/orders?symbol=ADAUSDT").await;
            let mut mirrored: Vec<Value> =
                mirror.orders.values().cloned().map(without_kind).collect();
            let mut queried = orders.as_array().unwrap().clone();
            mirrored.sort_by_key(by_id);
            queried.sort_by_key(by_id);
            if mirrored == queried {
                break orders;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the updates never showed the orders the query shows: {mirrored:?} / {queried:?}"
            );
            let (_, kind, data) = tokio::time::timeout(Duration::from_secs(10), resumed.next())
                .await
                .expect("an update for the orders the query shows");
            mirror.apply(&kind, data);
        };
        assert!(orders.as_array().unwrap().len() >= 4, "{orders}");

        // Then live: a command's change arrives with an id past the catch-up.
        let (status, _) = api.post("/api/symbols/ADAUSDT/trading/stop").await;
        assert_eq!(status, StatusCode::OK);
        loop {
            let (id, kind, data) = resumed.next().await;
            if kind == "trading_settings" {
                assert_eq!(data["status"], "off", "{data}");
                assert!(id > caught_up, "a live batch after the catch-up: {id}");
                break;
            }
        }

        // A snapshot from the start, then live: the 1h candles whole.
        let mut snapshot = api
            .subscribe("/api/updates?symbol=ADAUSDT&kind=candle&interval=1h&after=0")
            .await;
        let mut hours = Vec::new();
        loop {
            let (_, kind, data) = snapshot.next().await;
            match kind.as_str() {
                "caught_up" => break,
                "candle" => hours.push(without_kind(data)),
                other => panic!("only 1h candles asked for, got {other}"),
            }
        }
        hours.sort_by_key(|c| c["open_time"].as_i64().unwrap());
        assert_eq!(
            Value::Array(hours),
            api.get("/api/ohlc?symbol=ADAUSDT&interval=1h").await
        );
        terminate(engine);
    }

    pub async fn queries_answer_what_the_cli_answers(db: &TestDb) {
        let (engine, base) = start_engine(db, "ws://127.0.0.1:9");
        let api = Api::new(&base);
        trade_adausdt(db);
        ok(hedgehog(db, &["import", "trades", ADA_DAY]));

        // The engine trades them and projects live; the API answers from the same read models
        // as the CLI, once the engine is done.
        let cli =
            |args: &[&str]| -> Value { serde_json::from_str(&ok(hedgehog(db, args))).unwrap() };
        let started = Instant::now();
        loop {
            let (_, orders) = api.fetch("/api/orders?symbol=ADAUSDT").await;
            let expected = cli(&["orders", "ADAUSDT", "--format", "json"]);
            let settled = orders.as_array().is_some_and(|o| o.len() >= 4)
                && orders == expected
                && api.fetch("/api/orders?symbol=ADAUSDT").await.1 == orders;
            if settled {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "orders: {orders}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let candles = api.get("/api/ohlc?symbol=ADAUSDT&interval=5m").await;
        assert_eq!(
            candles,
            cli(&["ohlc", "ADAUSDT", "--interval", "5m", "--format", "json"])
        );
        assert!(candles.as_array().unwrap().len() > 3);
        let page = api
            .get("/api/trades?symbol=ADAUSDT&limit=5&from=2019-06-03")
            .await;
        let ids: Vec<u64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trade_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let after = ids[4];
        let next = api
            .get(&format!("/api/trades?symbol=ADAUSDT&limit=1&after={after}"))
            .await;
        assert!(next[0]["trade_id"].as_u64().unwrap() > after);
        let filled = api.get("/api/orders?status=filled").await;
        assert!(filled
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "FILLED"));
        let glance = api.get("/api/symbols/ADAUSDT").await;
        assert_eq!(glance["status"], "on");
        assert_eq!(glance["settings"]["chunks"], 1);
        assert!(
            glance["positions_closed"].as_u64().unwrap() >= 1,
            "{glance}"
        );
        assert!(glance["realized_profit"].as_str().is_some(), "{glance}");

        // Bad parameters are 400s naming the parameter.
        for (path, names) in [
            ("/api/ohlc?symbol=ADAUSDT&interval=7m", "interval"),
            ("/api/ohlc?symbol=ADAUSDT&from=yesterday", "from"),
            ("/api/trades?symbol=ADAUSDT&limit=0", "limit"),
            ("/api/trades?symbol=ADAUSDT&market=moon", "market"),
            ("/api/orders?status=maybe", "status"),
            ("/api/orders?colour=red", "colour"),
            ("/api/trades", "symbol"),
        ] {
            let (status, body) = api.fetch(path).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(error_message(&body).contains(names), "{path}: {body}");
        }
        let (status, _) = api.fetch("/api/symbols/NOPEUSDT").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // The log as SSE: the stored OrderPlaced events of ADAUSDT, each with its position as id.
        let store = db.open().await;
        let placed: Vec<i64> = store
            .read_stream_to_end(&hedgehog::store::StreamId::trading(&common::symbol(
                "ADAUSDT",
            )))
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event.event_type() == "OrderPlaced")
            .map(|e| e.position)
            .collect();
        assert!(placed.len() >= 4);
        let events = "/api/events?after=0&symbol=ADAUSDT&type=OrderPlaced";
        let mut first = api.subscribe(events).await;
        let mut seen = Vec::new();
        for _ in 0..placed.len() {
            let (id, event, data) = first.next().await;
            assert_eq!(event, "OrderPlaced");
            assert_eq!(data["event"]["type"], "OrderPlaced");
            assert_eq!(data["position"].as_i64(), Some(id));
            seen.push(id);
        }
        assert_eq!(seen, placed);
        // A client reconnecting with its last id resumes right after it.
        let mut resumed = Sse::open(
            api.client
                .get(api.url(events))
                .header("Last-Event-ID", placed[1].to_string()),
        )
        .await;
        assert_eq!(resumed.next().await.0, placed[2]);
        // Live: a settings change arrives on the log and as a read-model update.
        let mut live = api.subscribe("/api/events?type=SettingsUpdated").await;
        let mut updates = api.subscribe("/api/updates").await;
        let (status, _) = api
            .put("/api/symbols/ADAUSDT/settings", &json!({"fee": "0.0003"}))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, event, data) = live.next().await;
        assert_eq!(
            (event.as_str(), data["event"]["settings"]["fee"].as_str()),
            ("SettingsUpdated", Some("0.0003"))
        );
        loop {
            let (_, kind, data) = updates.next().await;
            if kind == "trading_settings" {
                assert_eq!(data["symbol"], "ADAUSDT");
                break;
            }
        }
        // Open subscriptions do not hold the shutdown up.
        terminate(engine);
    }

    pub async fn commands_over_http_reach_the_store_and_errors_are_json(db: &TestDb) {
        let (engine, base) = start_engine(db, "ws://127.0.0.1:9");
        let api = Api::new(&base);

        let health = api.get("/api/health").await;
        assert_eq!(health["status"], "ok");

        // Without the token, nothing changes.
        let start = "/api/symbols/ADAUSDT/trading/start";
        let (status, body) = api.send(api.client.post(api.url(start))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(error_message(&body).contains("Authorization: Bearer"));
        let (status, _) = api
            .send(api.client.post(api.url(start)).bearer_auth("guess"))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Settings: refused with the CLI's reasons, then set.
        let settings = "/api/symbols/ADAUSDT/settings";
        let (status, body) = api.put(settings, &json!({"chunks": 0})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error_message(&body).contains("chunks"), "{body}");
        let (status, body) = api
            .put(settings, &json!({"budget": "10", "chunks": 5}))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error_message(&body).contains("minimum order value"),
            "{body}"
        );
        let (status, body) = api.put_raw(settings, "{".to_owned()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = api.put(settings, &json!({"budgte": "100"})).await;
        assert!(status.is_client_error(), "{status}");
        assert!(error_message(&body).contains("budgte"), "{body}");
        let (status, _) = api
            .put_raw(settings, format!("{{\"fee\": \"{}\"}}", "1".repeat(70_000)))
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, body) = api
            .put(settings, &json!({"budget": "100", "chunks": 1}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["changed"], true);
        assert_eq!(body["events"][0]["type"], "SettingsUpdated");
        let body = api.get(settings).await;
        assert_eq!(
            (body["chunks"].as_u64(), body["budget"].as_str()),
            (Some(1), Some("100"))
        );

        // Trading and streaming switches, each through the store.
        let (status, body) = api.post(start).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("on"))
        );
        assert_eq!(body["events"][0]["type"], "TradingStarted");
        let (_, again) = api.post(start).await;
        assert_eq!(again["changed"], false);
        let (status, body) = api.post("/api/symbols/ADAUSDT/streaming/start").await;
        assert_eq!(
            (status, body["changed"].as_bool()),
            (StatusCode::OK, Some(true))
        );
        let cli = ok(hedgehog(db, &["trading", "status", "ADAUSDT"]));
        assert!(cli.contains("ADAUSDT") && cli.contains(" on "), "{cli}");
        let cli = ok(hedgehog(db, &["streaming", "status"]));
        assert!(cli.contains("ADAUSDT") && cli.contains("on"), "{cli}");
        let (_, body) = api.post("/api/symbols/ADAUSDT/trading/shutdown").await;
        assert_eq!(
            body["status"], "shutdown",
            "the book's shutdown: the fresh position trading started with still runs out: {body}"
        );
        let (_, body) = api.post("/api/symbols/ADAUSDT/trading/stop").await;
        assert_eq!(body["status"], "off", "stop ends it at once: {body}");

        // What does not exist is a 404 with a JSON body.
        let (status, body) = api.post("/api/symbols/NOPEUSDT/trading/start").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            error_message(&body).contains("unknown symbol NOPEUSDT"),
            "{body}"
        );
        let (status, body) = api.post("/api/symbols/ADAUSDT/trading/pause").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            error_message(&body).contains("start, stop or shutdown"),
            "{body}"
        );
        let (status, _) = api.fetch("/api/nothing").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        terminate(engine);
    }
}

/// DNS rebinding and cross-site requests: a foreign Host is answered with nothing but a 421, and
/// a foreign Origin changes nothing (403), whatever the token; the server's own origin, listed
/// hosts and origins, and requests without Origin (scripts) go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_or_origin_is_refused_and_changes_nothing() {
    let db = TestDb::sqlite();
    let (engine, base) = start_engine(&db, "ws://127.0.0.1:9");
    let api = Api::new(&base);
    let with = |request: reqwest::RequestBuilder, name: &str, value: &str| {
        request.header(name, value.to_owned())
    };
    for path in ["/api/health", "/api/symbols/ADAUSDT", "/api/orders", "/"] {
        let (status, body) = api
            .send(with(api.client.get(api.url(path)), "host", "evil.example"))
            .await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path}: {body}");
        assert!(
            error_message(&body).contains("http.allowed_hosts"),
            "{body}"
        );
    }
    let (status, _) = api
        .send(with(
            api.client.get(api.url("/api/health")),
            "host",
            "hedgehog.lan:8080",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "a listed host");

    let start = api.url("/api/symbols/ADAUSDT/trading/start");
    let settings = api.url("/api/symbols/ADAUSDT/settings");
    for origin in ["https://evil.example", "null", "http://localhost:1"] {
        let post = api.client.post(&start).bearer_auth(TOKEN);
        let (status, body) = api.send(with(post, "origin", origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert!(
            error_message(&body).contains("http.allowed_origins"),
            "{body}"
        );
        let put = api
            .client
            .put(&settings)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(r#"{"budget":"999"}"#);
        let (status, _) = api.send(with(put, "origin", origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
    }
    let glance = api.get("/api/symbols/ADAUSDT").await;
    assert_eq!(glance["status"], "off", "nothing was switched: {glance}");
    assert_ne!(
        glance["settings"]["budget"], "999",
        "nothing was set: {glance}"
    );

    // The server's own pages, a listed origin and scripts without Origin do change things.
    let own = base.trim_end_matches('/').to_owned();
    for origin in [own.as_str(), "https://desk.example"] {
        let post = api.client.post(&start).bearer_auth(TOKEN);
        let (status, body) = api.send(with(post, "origin", origin)).await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
        let (status, _) = api.post("/api/symbols/ADAUSDT/trading/stop").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(api.get("/api/symbols/ADAUSDT").await["status"], "off");
    terminate(engine);
}
