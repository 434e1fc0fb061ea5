//! The HTTP command API of `hedgehog run`, through the real binary on both backends: commands
//! go through the store like the CLI's and record who sent them, errors are 4xx with a JSON
//! body, the token (or the dashboard's session) guards every request but the health check and
//! the dashboard's files, and authentication is off on loopback only.

use crate::common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{
    client_with_token, error_message, launch_engine, start_engine, Api, Sse, TOKEN,
};
use common::processes::{hedgehog, ok, terminate};
use common::TestDb;
use reqwest::StatusCode;
use serde_json::{json, Value};

on_both_backends!(
    commands_over_http_reach_the_store_and_errors_are_json,
    commands_record_who_sent_them,
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
fn authentication_is_off_on_loopback_only() {
    let db = TestDb::sqlite();
    let out = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "run", "--http", "0.0.0.0:0"])
        .arg("--no-auth")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0:0") && err.contains("http.auth"),
        "{err}"
    );
}

/// Every request but `/api/health` and the dashboard's files needs the token: reads, writes
/// and subscriptions, answered 401 with a JSON body and `WWW-Authenticate` without it or with
/// a wrong one, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_writes_and_subscriptions_need_the_token() {
    let db = TestDb::sqlite();
    let (engine, base) = start_engine(&db, "ws://127.0.0.1:9");
    let api = Api::new(&base);
    let anonymous = reqwest::Client::new();
    let wrong = client_with_token("s3cret-token-for-tests-but-wrong");
    for path in [
        "/api/health",
        "/",
        "/assets/dashboard.js",
        "/assets/dashboard.css",
    ] {
        let response = anonymous.get(api.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path} is public");
    }
    let reads = [
        "/api/symbols",
        "/api/symbols/ADAUSDT",
        "/api/symbols/ADAUSDT/settings",
        "/api/orders",
        "/api/trades?symbol=ADAUSDT",
        "/api/ohlc?symbol=ADAUSDT",
        "/api/openapi.json",
        "/api/session",
        "/api/events",
        "/api/updates",
        "/api/no-such-thing",
    ];
    for client in [&anonymous, &wrong] {
        for path in reads {
            let response = client.get(api.url(path)).send().await.unwrap();
            assert_eq!(
                response.headers()["www-authenticate"],
                "Bearer realm=\"hedgehog\"",
                "{path}"
            );
            let (status, body) = common::http::answer(response).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
            assert!(error_message(&body).contains("token"), "{body}");
        }
        let writes = [
            client.post(api.url("/api/symbols/ADAUSDT/trading/start")),
            client.post(api.url("/api/symbols/ADAUSDT/streaming/start")),
            client
                .put(api.url("/api/symbols/ADAUSDT/settings"))
                .header("content-type", "application/json")
                .body(r#"{"budget":"999"}"#),
            client.post(api.url("/api/session")),
            client.delete(api.url("/api/session")),
        ];
        for request in writes {
            let (status, body) = api.send(request).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        }
    }
    // The token's owner sees and changes what the others could not.
    let glance = api.get("/api/symbols/ADAUSDT").await;
    assert_eq!(glance["status"], "off", "{glance}");
    assert_ne!(glance["settings"]["budget"], "999", "{glance}");
    assert_eq!(
        api.get("/api/session").await,
        json!({"name": "default", "via": "http", "auth": "token"})
    );
    let mut events = api.subscribe("/api/events?after=0").await;
    let (status, _) = api.post("/api/symbols/ADAUSDT/trading/start").await;
    assert_eq!(status, StatusCode::OK);
    let (_, kind, _) = events.next().await;
    assert_eq!(kind, "TradingStarted");
    terminate(engine);
}

/// The dashboard's session: opened with the token only, an HttpOnly, SameSite=Strict cookie
/// named for the port, good for reads, subscriptions and (from the page's own origin) changes;
/// a forged or altered cookie, one without Origin on a change, and one after sign-out are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_session_is_a_signed_http_only_strict_cookie() {
    let db = TestDb::sqlite();
    let (engine, base) = start_engine(&db, "ws://127.0.0.1:9");
    let api = Api::new(&base);
    let port = base.rsplit(':').next().unwrap().trim_end_matches('/');
    let name = format!("hedgehog_session_{port}");
    let open = api
        .client
        .post(api.url("/api/session"))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::OK);
    let set_cookie = open.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let pair = set_cookie.split(';').next().unwrap().to_owned();
    assert!(pair.starts_with(&format!("{name}=")), "{pair}");
    assert!(!pair.contains(TOKEN), "the cookie is not the token: {pair}");

    let browser = reqwest::Client::new();
    let with_cookie = |request: reqwest::RequestBuilder, cookie: &str| {
        request.header("cookie", cookie.to_owned())
    };
    let (status, body) = api
        .send(with_cookie(browser.get(api.url("/api/session")), &pair))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["via"], "dashboard");
    let sse = with_cookie(browser.get(api.url("/api/updates")), &pair);
    assert_eq!(sse.send().await.unwrap().status(), StatusCode::OK);

    // A change with the session needs the page's own Origin.
    let start = api.url("/api/symbols/ADAUSDT/trading/start");
    let (status, body) = api.send(with_cookie(browser.post(&start), &pair)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(error_message(&body).contains("Origin"), "{body}");
    let foreign = with_cookie(browser.post(&start), &pair).header("origin", "https://evil.example");
    assert_eq!(api.send(foreign).await.0, StatusCode::FORBIDDEN);
    assert_eq!(api.get("/api/symbols/ADAUSDT").await["status"], "off");
    let own = with_cookie(browser.post(&start), &pair).header("origin", base.trim_end_matches('/'));
    let (status, body) = api.send(own).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A session cannot open another, and cookies not signed by this server are refused: an
    // altered one (another token's name), one made up, one for another port.
    let (status, _) = api
        .send(
            with_cookie(browser.post(api.url("/api/session")), &pair)
                .header("origin", base.trim_end_matches('/')),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let value = pair.split_once('=').unwrap().1;
    let altered = format!("{name}={}", value.replace("default", "desk00"));
    let made_up =
        format!("{name}=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA4102444800000.default");
    let other_port = format!("hedgehog_session_1={value}");
    for cookie in [altered, made_up, other_port] {
        let (status, body) = api
            .send(with_cookie(browser.get(api.url("/api/symbols")), &cookie))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{cookie}: {body}");
    }

    // Signing out clears the cookie.
    let out = with_cookie(browser.delete(api.url("/api/session")), &pair)
        .header("origin", base.trim_end_matches('/'))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    let cleared = out.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cleared.starts_with(&format!("{name}=;")) || cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    terminate(engine);
}

/// Without a configured token, `run` makes one at first start, keeps it beside the database
/// readable by its owner only, says where (never printing it when nobody watches), and uses
/// the same one after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_makes_a_token_for_its_owner_and_keeps_it() {
    let db = TestDb::sqlite();
    let file =
        std::path::Path::new(db.url.strip_prefix("sqlite://").unwrap()).with_extension("api-token");
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (engine, base, printed) = launch_engine(&db, "ws://127.0.0.1:9", &[], &[]);
        let line = printed.wait_for("API token");
        assert!(line.contains(&file.display().to_string()), "{line}");
        let token = std::fs::read_to_string(&file).unwrap().trim().to_owned();
        assert_eq!(token.len(), 64, "{token}");
        assert!(
            !printed.all().contains(&token),
            "the token is not printed to a pipe: {}",
            printed.all()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let client = client_with_token(&token);
        let answer = client
            .get(format!("{base}/api/symbols"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        let answer = reqwest::Client::new()
            .get(format!("{base}/api/symbols"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        tokens.push((token, line));
        terminate(engine);
    }
    assert_eq!(tokens[0].0, tokens[1].0, "the same token after a restart");
    assert!(tokens[0].1.contains("made now"), "{}", tokens[0].1);
    assert!(!tokens[1].1.contains("made now"), "{}", tokens[1].1);
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
            .read_stream_to_end(&hedgehog_store::StreamId::trading(&common::symbol(
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

    /// Who sent each command is recorded beside its events and shown by `hedgehog events`: the
    /// CLI's user and host, the HTTP token's name and the client's address, `anonymous` with
    /// authentication off.
    pub async fn commands_record_who_sent_them(db: &TestDb) {
        ok(hedgehog(db, &["trading", "start", "ADAUSDT"]));
        let desk = "desk-token-0123456789";
        let (engine, base, _) = launch_engine(
            db,
            "ws://127.0.0.1:9",
            &[
                ("HEDGEHOG_API_TOKEN", TOKEN),
                ("HEDGEHOG_HTTP_TOKENS", &format!("{{desk = \"{desk}\"}}")),
            ],
            &[],
        );
        let client = client_with_token(desk);
        let stop = client
            .post(format!("{base}/api/symbols/ADAUSDT/trading/stop"))
            .send()
            .await
            .unwrap();
        assert_eq!(stop.status(), StatusCode::OK);
        terminate(engine);
        let (engine, base, _) = launch_engine(db, "ws://127.0.0.1:9", &[], &["--no-auth"]);
        let start = reqwest::Client::new()
            .post(format!("{base}/api/symbols/ADAUSDT/trading/start"))
            .send()
            .await
            .unwrap();
        assert_eq!(start.status(), StatusCode::OK);
        terminate(engine);

        let out = ok(hedgehog(
            db,
            &["events", "--stream", "trading-ADAUSDT", "--format", "json"],
        ));
        let events: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let who: Vec<(&str, &str, bool)> = events
            .iter()
            .map(|e| {
                (
                    e["metadata"]["by"].as_str().unwrap_or(""),
                    e["metadata"]["via"].as_str().unwrap_or(""),
                    e["metadata"]["client"]
                        .as_str()
                        .is_some_and(|c| c.starts_with("127.0.0.1:")),
                )
            })
            .collect();
        let user = who[0].0;
        assert!(user.contains('@'), "{who:?}");
        assert_eq!(
            who,
            [
                (user, "cli", false),
                ("desk", "http", true),
                ("anonymous", "http", true)
            ],
            "{out}"
        );
        let table = ok(hedgehog(db, &["events", "--stream", "trading-ADAUSDT"]));
        assert!(table.lines().next().unwrap().contains("BY"), "{table}");
        assert!(table.contains(&format!("{user} (cli)")), "{table}");
        assert!(table.contains("desk (http 127.0.0.1:"), "{table}");
    }

    pub async fn commands_over_http_reach_the_store_and_errors_are_json(db: &TestDb) {
        let (engine, base) = start_engine(db, "ws://127.0.0.1:9");
        let api = Api::new(&base);

        let health = api.get("/api/health").await;
        assert_eq!(health["status"], "ok");

        // Without the token, nothing changes.
        let start = "/api/symbols/ADAUSDT/trading/start";
        let (status, body) = api.send(reqwest::Client::new().post(api.url(start))).await;
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
        let (status, body) = api.put(settings, &json!({"strategy": "grid"})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            error_message(&body).contains("unknown strategy `grid`"),
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
        let post = api.client.post(&start);
        let (status, body) = api.send(with(post, "origin", origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert!(
            error_message(&body).contains("http.allowed_origins"),
            "{body}"
        );
        let put = api
            .client
            .put(&settings)
            .header("content-type", "application/json")
            .body(r#"{"budget":"999"}"#);
        let (status, _) = api.send(with(put, "origin", origin)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}");
        let delete = api.client.delete(api.url("/api/session"));
        let (status, _) = api.send(with(delete, "origin", origin)).await;
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
        let post = api.client.post(&start);
        let (status, body) = api.send(with(post, "origin", origin)).await;
        assert_eq!(status, StatusCode::OK, "{origin}: {body}");
        let (status, _) = api.post("/api/symbols/ADAUSDT/trading/stop").await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(api.get("/api/symbols/ADAUSDT").await["status"], "off");
    terminate(engine);
}
