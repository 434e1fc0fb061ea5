//! The dashboard in headless Chromium: without the token it shows nothing but a sign-in form;
//! opened with the link `run` prints (`#token=...`), it trades the token for its session cookie
//! and drops it from the address. Then the page is loaded while the replay server feeds trades
//! to `hedgehog run`; candles and orders appear on it, and keep coming from the subscription
//! (the page does not reload them); its Stop button stops trading through the API with the
//! session, recorded as the dashboard's. A screenshot is saved under `target/tmp/dashboard.png`.
//!
//! It needs Debian's `chromium` (`.ci/run` installs it). Without a browser the test fails,
//! saying so, unless `HEDGEHOG_SKIP_BROWSER=1` asks to skip it (CI never sets it).

use crate::common;

use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::Page;
use common::http::{start_engine, trade_btcusdt, Api, TOKEN};
use common::processes::{hedgehog, ok};
use common::processes::{terminate, Replay};
use common::TestDb;
use futures::StreamExt;
use serde_json::Value;

/// The browser the test drives: `HEDGEHOG_CHROMIUM`, or Chromium/Chrome found on the PATH.
async fn launch(profile: &std::path::Path) -> Option<(Browser, tokio::task::JoinHandle<()>)> {
    if std::env::var("HEDGEHOG_SKIP_BROWSER").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: browser test skipped because HEDGEHOG_SKIP_BROWSER=1");
        return None;
    }
    let executable = match std::env::var("HEDGEHOG_CHROMIUM") {
        Ok(path) => path.into(),
        Err(_) => {
            chromiumoxide::detection::default_executable(Default::default()).unwrap_or_else(|e| {
                panic!(
                    "no Chromium to test the dashboard with ({e}): install Debian's `chromium` \
                 package, set HEDGEHOG_CHROMIUM to a Chrome binary, or skip with \
                 HEDGEHOG_SKIP_BROWSER=1"
                )
            })
        }
    };
    let config = BrowserConfig::builder()
        .chrome_executable(executable)
        .no_sandbox()
        .user_data_dir(profile)
        .window_size(1400, 900)
        .viewport(None)
        .build()
        .unwrap();
    let (browser, mut handler) = Browser::launch(config).await.expect("launch Chromium");
    // The handler drives the DevTools connection; messages it cannot parse (a newer browser's
    // events) come out as errors and are not fatal.
    let driver = tokio::spawn(async move { while handler.next().await.is_some() {} });
    Some((browser, driver))
}

async fn eval(page: &Page, script: &str) -> Value {
    page.evaluate(script)
        .await
        .unwrap_or_else(|e| panic!("{script}: {e}"))
        .into_value()
        .unwrap_or(Value::Null)
}

/// What the page shows, as the test reads it.
const READ_PAGE: &str = r##"(() => ({
    loaded: document.body.dataset.loaded || null,
    candles: Number(document.getElementById("chart").dataset.candles),
    fills: Number(document.getElementById("chart").dataset.fills),
    orders: document.querySelectorAll("#orders tr.order").length,
    trading: document.getElementById("trading").textContent,
    live: document.getElementById("live").textContent,
    message: document.getElementById("message").textContent,
    signin: !document.getElementById("signin").hidden,
    signin_message: document.getElementById("signin-message").textContent,
    who: document.getElementById("who").textContent,
    hash: location.hash,
    cookies: document.cookie,
}))()"##;

/// Reads the page until `done` holds (up to 60 s).
async fn until(page: &Page, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let seen = eval(page, READ_PAGE).await;
        if done(&seen) {
            return seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the page never showed {what}: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_candles_and_orders_and_drives_trading() {
    let profile = tempfile::tempdir().unwrap();
    let Some((mut browser, driver)) = launch(profile.path()).await else {
        return;
    };
    let db = TestDb::sqlite();
    // About six minutes of BTCUSDT at 15 times real pace: the page loads while trades come.
    let replay = Replay::launch(&["spot_btcusdt_20240808.gz"], &["--speed", "15"]);
    let (engine, url) = start_engine(&db, &replay.url);
    let api = Api::new(&url);
    trade_btcusdt(&api).await;

    // A blank page first: navigating a fresh target straight to a URL can wait forever on
    // newer Chromium builds.
    let page = browser.new_page("about:blank").await.unwrap();

    // Without the token: a sign-in form, no data; a wrong token is refused on the form.
    page.goto(format!("{url}/")).await.unwrap();
    let anonymous = until(&page, "the sign-in form", |p| p["signin"] == true).await;
    assert_eq!(anonymous["candles"], 0, "{anonymous}");
    eval(
        &page,
        r##"(() => {
            document.getElementById("token").value = "not-the-token-at-all";
            document.querySelector("#signin button").click();
            return true;
        })()"##,
    )
    .await;
    let refused = until(&page, "the token refused", |p| {
        p["signin_message"]
            .as_str()
            .is_some_and(|m| m.contains("401"))
    })
    .await;
    assert_eq!(refused["signin"], true);

    // The link `run` prints: the page signs in and drops the token from its address; the
    // session cookie is out of the page's reach (HttpOnly).
    page.goto(format!("{url}/?symbol=BTCUSDT&interval=1m#token={TOKEN}"))
        .await
        .unwrap();
    let first = until(&page, "a candle", |p| {
        p["loaded"].is_string() && p["live"] == "live" && p["candles"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(first["signin"], false, "{first}");
    assert_eq!(first["hash"], "", "the token left the address: {first}");
    assert_eq!(first["who"], "signed in as default", "{first}");
    assert!(
        !first["cookies"]
            .as_str()
            .unwrap()
            .contains("hedgehog_session"),
        "the session cookie is HttpOnly: {first}"
    );
    // More candles and an order arrive without the page loading anything again.
    let later = until(&page, "new candles, an order and a fill", |p| {
        p["candles"].as_u64() > first["candles"].as_u64().max(Some(2))
            && p["orders"] != 0
            && p["fills"] != 0
    })
    .await;
    assert_eq!(
        later["loaded"], first["loaded"],
        "updates came from the subscription, not a reload"
    );
    assert_eq!(later["trading"], "on");

    // The page agrees with the API.
    let orders = api.get("/api/orders?symbol=BTCUSDT").await;
    assert!(orders.as_array().unwrap().len() as u64 >= later["orders"].as_u64().unwrap());

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    page.save_screenshot(ScreenshotParams::builder().build(), &shot)
        .await
        .unwrap();
    eprintln!("dashboard screenshot: {}", shot.display());

    // Its Stop button stops trading through the API, with the session alone.
    eval(
        &page,
        r#"(() => {
            document.querySelector('button[data-command="trading/stop"]').click();
            return true;
        })()"#,
    )
    .await;
    let stopped = until(&page, "trading stopped", |p| p["trading"] == "off").await;
    assert!(
        stopped["message"].as_str().unwrap().contains("done"),
        "{stopped}"
    );
    let status = api.get("/api/symbols/BTCUSDT").await;
    assert_eq!(status["status"], "off");

    // The audit trail says it was the dashboard, signed in with the default token.
    let out = ok(hedgehog(
        &db,
        &["events", "--stream", "trading-BTCUSDT", "--format", "json"],
    ));
    let stop = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["event"]["type"] == "TradingStopped")
        .expect("a TradingStopped event");
    assert_eq!(stop["metadata"]["by"], "default", "{stop}");
    assert_eq!(stop["metadata"]["via"], "dashboard", "{stop}");
    assert!(
        stop["metadata"]["client"]
            .as_str()
            .is_some_and(|c| c.starts_with("127.0.0.1:")),
        "{stop}"
    );

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    driver.abort();
    terminate(engine);
}
