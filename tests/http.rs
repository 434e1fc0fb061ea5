//! The HTTP command API of `hedgehog run`, through the real binary on both backends: commands
//! go through the store like the CLI's, errors are 4xx with a JSON body, the token guards every
//! mutating request, and a non-loopback bind without a token is refused.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{error_message, start_engine, Api, Sse};
use common::processes::{hedgehog, ok, terminate};
use common::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    commands_over_http_reach_the_store_and_errors_are_json,
    queries_answer_what_the_cli_answers,
);

const ADA_DAY_HEAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ADAUSDT-2019-06-03.head2000.csv.gz"
);

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

    pub async fn queries_answer_what_the_cli_answers(db: &TestDb) {
        let (engine, base) = start_engine(db, "ws://127.0.0.1:9");
        let api = Api::new(&base);
        // One chunk with tight intervals: these 2,000 trades run positions through.
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
        ok(hedgehog(db, &["import", "trades", ADA_DAY_HEAD]));

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
            body["status"], "off",
            "no open positions: shutdown completes: {body}"
        );

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
