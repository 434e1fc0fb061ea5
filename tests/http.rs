//! The HTTP command API of `hedgehog run`, through the real binary on both backends: commands
//! go through the store like the CLI's, errors are 4xx with a JSON body, the token guards every
//! mutating request, and a non-loopback bind without a token is refused.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{answer, error_message, start_engine, Sse, TOKEN};
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
        let http = reqwest::Client::new();
        let get = |path: String| {
            let http = http.clone();
            let url = format!("{base}{path}");
            async move { answer(http.get(url).send().await.unwrap()).await }
        };
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
            let (_, orders) = get("/api/orders?symbol=ADAUSDT".into()).await;
            let expected = cli(&["orders", "ADAUSDT", "--format", "json"]);
            let settled = orders.as_array().is_some_and(|o| o.len() >= 4)
                && orders == expected
                && get("/api/orders?symbol=ADAUSDT".into()).await.1 == orders;
            if settled {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "orders: {orders}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (status, candles) = get("/api/ohlc?symbol=ADAUSDT&interval=5m".into()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            candles,
            cli(&["ohlc", "ADAUSDT", "--interval", "5m", "--format", "json"])
        );
        assert!(candles.as_array().unwrap().len() > 3);
        let (status, page) = get("/api/trades?symbol=ADAUSDT&limit=5&from=2019-06-03".into()).await;
        assert_eq!(status, StatusCode::OK);
        let ids: Vec<u64> = page
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trade_id"].as_u64().unwrap())
            .collect();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let after = ids[4];
        let (_, next) = get(format!("/api/trades?symbol=ADAUSDT&limit=1&after={after}")).await;
        assert!(next[0]["trade_id"].as_u64().unwrap() > after);
        let (status, filled) = get("/api/orders?status=filled".into()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(filled
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "FILLED"));
        let (status, glance) = get("/api/symbols/ADAUSDT".into()).await;
        assert_eq!(status, StatusCode::OK);
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
            let (status, body) = get(path.into()).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert!(error_message(&body).contains(names), "{path}: {body}");
        }
        let (status, _) = get("/api/symbols/NOPEUSDT".into()).await;
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
        let url = format!("{base}/api/events?after=0&symbol=ADAUSDT&type=OrderPlaced");
        let mut first = Sse::open(http.get(&url)).await;
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
            http.get(&url)
                .header("Last-Event-ID", placed[1].to_string()),
        )
        .await;
        assert_eq!(resumed.next().await.0, placed[2]);
        // Live: a settings change arrives on the log and as a read-model update.
        let mut live = Sse::open(http.get(format!("{base}/api/events?type=SettingsUpdated"))).await;
        let mut updates = Sse::open(http.get(format!("{base}/api/updates"))).await;
        let changed = http
            .put(format!("{base}/api/symbols/ADAUSDT/settings"))
            .bearer_auth(TOKEN)
            .json(&json!({"fee": "0.0003"}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), StatusCode::OK);
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
        let http = reqwest::Client::new();
        let api = |path: &str| format!("{base}{path}");
        let authed = |r: reqwest::RequestBuilder| r.bearer_auth(TOKEN);

        let (status, body) = answer(http.get(api("/api/health")).send().await.unwrap()).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );

        // Without the token, nothing changes.
        let start = api("/api/symbols/ADAUSDT/trading/start");
        let (status, body) = answer(http.post(&start).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(error_message(&body).contains("Authorization: Bearer"));
        let wrong = http.post(&start).bearer_auth("guess").send().await.unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

        // Settings: refused with the CLI's reasons, then set.
        let settings = api("/api/symbols/ADAUSDT/settings");
        let put = |body: String| {
            authed(http.put(&settings))
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let (status, body) = answer(put(json!({"chunks": 0}).to_string()).await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error_message(&body).contains("chunks"), "{body}");
        let (status, body) = answer(
            put(json!({"budget": "10", "chunks": 5}).to_string())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error_message(&body).contains("minimum order value"),
            "{body}"
        );
        let (status, body) = answer(put("{".to_owned()).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, body) = answer(put(json!({"budgte": "100"}).to_string()).await.unwrap()).await;
        assert!(status.is_client_error(), "{status}");
        assert!(error_message(&body).contains("budgte"), "{body}");
        let (status, _) = answer(
            put(format!("{{\"fee\": \"{}\"}}", "1".repeat(70_000)))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let (status, body) = answer(
            put(json!({"budget": "100", "chunks": 1}).to_string())
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["changed"], true);
        assert_eq!(body["events"][0]["type"], "SettingsUpdated");
        let (status, body) = answer(http.get(&settings).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (body["chunks"].as_u64(), body["budget"].as_str()),
            (Some(1), Some("100"))
        );

        // Trading and streaming switches, each through the store.
        let (status, body) = answer(authed(http.post(&start)).send().await.unwrap()).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("on"))
        );
        assert_eq!(body["events"][0]["type"], "TradingStarted");
        let (_, again) = answer(authed(http.post(&start)).send().await.unwrap()).await;
        assert_eq!(again["changed"], false);
        let stream = api("/api/symbols/ADAUSDT/streaming/start");
        let (status, body) = answer(authed(http.post(&stream)).send().await.unwrap()).await;
        assert_eq!(
            (status, body["changed"].as_bool()),
            (StatusCode::OK, Some(true))
        );
        let cli = ok(hedgehog(db, &["trading", "status", "ADAUSDT"]));
        assert!(cli.contains("ADAUSDT") && cli.contains(" on "), "{cli}");
        let cli = ok(hedgehog(db, &["streaming", "status"]));
        assert!(cli.contains("ADAUSDT") && cli.contains("on"), "{cli}");
        let shutdown = api("/api/symbols/ADAUSDT/trading/shutdown");
        let (_, body) = answer(authed(http.post(&shutdown)).send().await.unwrap()).await;
        assert_eq!(
            body["status"], "off",
            "no open positions: shutdown completes: {body}"
        );

        // What does not exist is a 404 with a JSON body.
        let (status, body) = answer(
            authed(http.post(api("/api/symbols/NOPEUSDT/trading/start")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            error_message(&body).contains("unknown symbol NOPEUSDT"),
            "{body}"
        );
        let (status, body) = answer(
            authed(http.post(api("/api/symbols/ADAUSDT/trading/pause")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            error_message(&body).contains("start, stop or shutdown"),
            "{body}"
        );
        let (status, _) = answer(http.get(api("/api/nothing")).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        terminate(engine);
    }
}
