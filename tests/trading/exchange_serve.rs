//! `hedgehog exchange serve` as Binance clients meet it: ccxt set up as the README says, klines
//! that are `hedgehog ohlc`'s candles, and the rate limits answered with 429s.

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::Value;

use crate::common::python;

/// The pinned client version: what this test was written against.
const CCXT: &str = "ccxt==4.5.90";

const BTC_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz"
);

use crate::common::processes::exchange_serve as serve;

#[test]
fn ccxt_trades_against_the_paper_exchange() {
    let python = python::venv(CCXT);
    let (key, secret) = ("ccxt-key", "ccxt-secret");
    let (_exchange, base) = serve(
        &[],
        &[
            "--api-key",
            key,
            "--api-secret",
            secret,
            "--balance",
            "USDT=100000",
            "--speed",
            "10",
            "--start",
            "now",
            "--symbol",
            "BTCUSDT",
            BTC_FILE,
        ],
    );
    python::run(&python, "ccxt_client.py", &[&base, key, secret]);
}

async fn get(url: &str) -> (reqwest::StatusCode, reqwest::header::HeaderMap, Value) {
    let response = reqwest::get(url).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.json().await.unwrap())
}

pub mod cases {
    use super::*;
    use crate::common::processes::{hedgehog, ok};
    use crate::common::TestDb;

    /// The same trades, imported and played: every kline of every interval `hedgehog ohlc`
    /// keeps is its candle, field for field.
    pub async fn klines_are_the_candles_hedgehog_ohlc_makes(db: &TestDb) {
        ok(hedgehog(
            db,
            &["import", "trades", BTC_FILE, "--symbol", "BTCUSDT"],
        ));
        let (_exchange, base) = serve(
            &[],
            &[
                "--speed", "0", "--start", "now", "--symbol", "BTCUSDT", BTC_FILE,
            ],
        );
        let ticker = format!("{base}/api/v3/ticker/24hr?symbol=BTCUSDT");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, _, t) = get(&ticker).await;
            if t["count"] == 3_144 {
                break;
            }
            assert!(Instant::now() < deadline, "not every trade played: {t}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for interval in ["1m", "5m", "15m", "1h", "4h", "1d"] {
            let csv = ok(hedgehog(
                db,
                &["ohlc", "BTCUSDT", "--interval", interval, "--format", "csv"],
            ));
            let candles: Vec<Vec<String>> = csv
                .lines()
                .skip(1)
                .map(|l| l.split(',').map(str::to_owned).collect())
                .collect();
            let url = format!("{base}/api/v3/klines?symbol=BTCUSDT&interval={interval}");
            let (_, _, klines) = get(&url).await;
            let klines = klines.as_array().unwrap();
            assert_eq!(klines.len(), candles.len(), "{interval}");
            assert!(!klines.is_empty());
            for (kline, candle) in klines.iter().zip(&candles) {
                for (field, (k, c)) in kline.as_array().unwrap().iter().zip(candle).enumerate() {
                    let k = k.as_str().map_or_else(|| k.to_string(), str::to_owned);
                    let same = match (k.parse::<Decimal>(), c.parse::<Decimal>()) {
                        (Ok(k), Ok(c)) => k == c,
                        _ => k == *c,
                    };
                    assert!(same, "{interval} field {field}: kline {k}, candle {c}");
                }
            }
        }
    }
}

on_both_backends!(klines_are_the_candles_hedgehog_ohlc_makes);

/// Waits until `now % window` is below `before` ms, so that a test's requests fall in one
/// rate-limit window.
async fn early_in_window(window: u128, before: u128) {
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        if now % window < before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn past_its_rate_limits_the_exchange_answers_429() {
    // The exchange info's own limits are the ones kept: here 50 weight a minute and 2 orders
    // in 10 seconds.
    let dir = tempfile::tempdir().unwrap();
    let info = dir.path().join("exchangeInfo.json");
    let json = r#"{"timezone":"UTC","serverTime":1725817008719,
        "rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":50},
                      {"rateLimitType":"ORDERS","interval":"SECOND","intervalNum":10,"limit":2}],
        "symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","quoteAsset":"USDT",
          "orderTypes":["LIMIT","LIMIT_MAKER","MARKET"],
          "filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01","maxPrice":"1000000","tickSize":"0.01"},
                     {"filterType":"LOT_SIZE","minQty":"0.00001","maxQty":"9000","stepSize":"0.00001"}]}]}"#;
    std::fs::write(&info, json).unwrap();
    let (key, secret) = ("limit-key", "limit-secret");
    let (_exchange, base) = serve(
        &["--exchange-info", info.to_str().unwrap()],
        &["--api-key", key, "--api-secret", secret],
    );
    let client = reqwest::Client::new();
    let order = |n: u32| {
        let query = format!(
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=20000&newClientOrderId=o{n}&timestamp={}",
            hedgehog_runtime::time::now().millis()
        );
        let signature = hedgehog_binance::rest::sign(secret.as_bytes(), &query);
        client
            .post(format!("{base}/api/v3/order?{query}&signature={signature}"))
            .header("X-MBX-APIKEY", key)
            .send()
    };
    early_in_window(10_000, 6_000).await;
    for n in 1..=2 {
        let placed = order(n).await.unwrap();
        assert_eq!(placed.status(), 200);
        assert_eq!(
            placed.headers()["x-mbx-order-count-10s"],
            n.to_string().as_str()
        );
    }
    let refused = order(3).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], -1015, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("2 per 10 SECOND"),
        "{body}"
    );

    // Weight: exchangeInfo weighs 20; three orders weighed 3. Past 50, a 429 until the minute
    // turns.
    early_in_window(60_000, 50_000).await;
    let info = format!("{base}/api/v3/exchangeInfo");
    let mut used = Vec::new();
    let refusal = loop {
        let (status, headers, body) = get(&info).await;
        used.push(headers["x-mbx-used-weight-1m"].to_str().unwrap().to_owned());
        if status == 429 {
            assert!(headers.contains_key("retry-after"));
            break body;
        }
        assert!(used.len() < 4, "no 429 past the weight limit: {used:?}");
    };
    assert_eq!(refusal["code"], -1003, "{refusal}");
    assert!(
        refusal["msg"].as_str().unwrap().contains("50 per 1 MINUTE"),
        "{refusal}"
    );
}

/// A stand-in for Binance's partial depth stream: every 100 ms, the best 20 levels of a real
/// BTCUSDT book (the REST snapshot recorded on 2024-08-08), until the client goes. Its URL, and
/// the streams the client asked for.
// tungstenite's handshake callback returns its own (large) error type: not ours to shrink.
#[allow(clippy::result_large_err)]
async fn depth_stream(book: Value) -> (String, tokio::sync::oneshot::Receiver<String>) {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (asked, heard) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut path = String::new();
        let mut ws =
            tokio_tungstenite::accept_hdr_async(socket, |r: &Request, response: Response| {
                path = r.uri().to_string();
                Ok(response)
            })
            .await
            .unwrap();
        let _ = asked.send(path);
        let frame = serde_json::json!({ "stream": "btcusdt@depth20@100ms", "data": book });
        while ws
            .send(tokio_tungstenite::tungstenite::Message::text(
                frame.to_string(),
            ))
            .await
            .is_ok()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (url, heard)
}

#[tokio::test]
async fn a_followed_book_is_served_as_depth() {
    use std::io::BufRead;
    let recording = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/binance-ws/spot_btcusdt_20240808.head300.gz"
    );
    let lines = std::io::BufReader::new(flate2::read::GzDecoder::new(
        std::fs::File::open(recording).unwrap(),
    ));
    let snapshot: Value = lines
        .lines()
        .map(Result::unwrap)
        .find_map(|l| {
            let json = l.split_once(' ')?.1.to_owned();
            json.contains("lastUpdateId")
                .then(|| serde_json::from_str(&json).unwrap())
        })
        .expect("the recording starts with a REST depth snapshot");
    let top =
        |side: &str| -> Value { Value::from(snapshot[side].as_array().unwrap()[..20].to_vec()) };
    let book = serde_json::json!({
        "lastUpdateId": snapshot["lastUpdateId"],
        "bids": top("bids"),
        "asks": top("asks"),
    });
    let (url, asked) = depth_stream(book.clone()).await;
    let (_exchange, base) = serve(
        &[],
        &[
            "--follow",
            &url,
            "--follow-symbol",
            "BTCUSDT",
            "--follow-depth",
        ],
    );
    assert_eq!(
        asked.await.unwrap(),
        "/stream?streams=btcusdt@trade/btcusdt@depth20@100ms"
    );
    let depth_url = format!("{base}/api/v3/depth?symbol=BTCUSDT&limit=5");
    let deadline = Instant::now() + Duration::from_secs(20);
    let depth = loop {
        let (status, headers, body) = get(&depth_url).await;
        if status == 200 {
            assert_eq!(
                headers["x-mbx-used-weight-1m"]
                    .to_str()
                    .unwrap()
                    .parse::<u32>()
                    .unwrap()
                    % 5,
                0
            );
            break body;
        }
        assert!(
            body["msg"]
                .as_str()
                .unwrap()
                .contains("No book of BTCUSDT has come"),
            "{body}"
        );
        assert!(Instant::now() < deadline, "no book served: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(depth["lastUpdateId"], book["lastUpdateId"]);
    for side in ["bids", "asks"] {
        assert_eq!(depth[side].as_array().unwrap().len(), 5);
        for (served, recorded) in depth[side]
            .as_array()
            .unwrap()
            .iter()
            .zip(book[side].as_array().unwrap())
        {
            assert_eq!(
                served, recorded,
                "{side}: prices and quantities as Binance sent them"
            );
        }
    }
    let (_, _, unfollowed) = get(&format!("{base}/api/v3/depth?symbol=ETHUSDT")).await;
    assert!(
        unfollowed["msg"]
            .as_str()
            .unwrap()
            .contains("--follow-depth"),
        "{unfollowed}"
    );
}
