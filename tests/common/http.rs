//! Driving `hedgehog run` over HTTP: starting it, reading its answers and its Server-Sent
//! Events.

use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::processes::{Printed, Running};
use super::TestDb;

pub const TOKEN: &str = "s3cret-token-for-tests";

/// `hedgehog run` with the API on a free port and the token set, streaming from `ws_url`, and
/// its base URL.
pub fn start_engine(db: &TestDb, ws_url: &str) -> (Running, String) {
    let (engine, url, _) = launch_engine(db, ws_url, &[("HEDGEHOG_API_TOKEN", TOKEN)], &[]);
    (engine, url)
}

/// `hedgehog run` on a free port with `env` set and further `args`: its base URL and what it
/// prints. The allowed host and origin of the tests are configured.
pub fn launch_engine(
    db: &TestDb,
    ws_url: &str,
    env: &[(&str, &str)],
    args: &[&str],
) -> (Running, String, Printed) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "run", "--http", "127.0.0.1:0"])
        .args(["--binance-ws-url", ws_url])
        .args(args)
        .env_remove("HEDGEHOG_API_TOKEN")
        .envs(env.iter().copied())
        .env("HEDGEHOG_HTTP_ALLOWED_HOSTS", "[\"hedgehog.lan\"]")
        .env(
            "HEDGEHOG_HTTP_ALLOWED_ORIGINS",
            "[\"https://desk.example\"]",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the engine");
    let printed = Printed::follow(&mut child);
    let running = Running::new(child);
    let url = printed.address("http API on", "http://");
    (running, url, printed)
}

/// A Server-Sent Events connection, read frame by frame (`id`, `event`, JSON `data`).
pub struct Sse {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    buffer: String,
}

impl Sse {
    pub async fn open(request: reqwest::RequestBuilder) -> Sse {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"));
        use futures::StreamExt;
        Sse {
            body: Box::pin(
                response
                    .bytes_stream()
                    .map(|chunk| chunk.map(|b| b.to_vec())),
            ),
            buffer: String::new(),
        }
    }

    /// The next frame with data (keep-alive comments skipped), within 30 s.
    pub async fn next(&mut self) -> (i64, String, Value) {
        use futures::StreamExt;
        // One deadline for the call: keep-alive comments must not extend it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (-1, String::new(), String::new());
                for line in frame.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap_or(-1);
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    }
                }
                if !data.is_empty() {
                    let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    return (id, event, value);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .expect("an event within 30 s")
                .expect("the stream stays open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

/// Status and JSON body of a response; a body that is not JSON fails the test.
pub async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

pub fn error_message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("an error body: {body}"))
}

/// A client that sends the token on every request, as a script would.
pub fn client_with_token(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// The API of one engine, with the token on every request.
pub struct Api {
    pub client: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api {
            client: client_with_token(TOKEN),
            url: url.to_owned(),
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Sends `request`; the status and JSON answer.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        answer(request.send().await.unwrap()).await
    }

    /// GET `path`; the status and JSON answer, whatever the status.
    pub async fn fetch(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    /// GET `path`, which must answer 200 with JSON.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.fetch(path).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// POST `path` with the token; the status and JSON answer.
    pub async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path))).await
    }

    /// PUT `body` to `path` with the token; the status and JSON answer.
    pub async fn put(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.put_raw(path, body.to_string()).await
    }

    /// PUT `body`, as given, as JSON to `path` with the token: for malformed and oversized
    /// bodies.
    pub async fn put_raw(&self, path: &str, body: String) -> (StatusCode, Value) {
        self.send(
            self.client
                .put(self.url(path))
                .header("content-type", "application/json")
                .body(body),
        )
        .await
    }

    /// A subscription to `path` (`/api/events?...` or `/api/updates`).
    pub async fn subscribe(&self, path: &str) -> Sse {
        Sse::open(self.client.get(self.url(path))).await
    }
}

/// BTCUSDT settings tight enough for a few minutes of the recordings to place, fill and close
/// positions.
pub fn tight_btc_settings() -> Value {
    json!({
        "budget": "100",
        "buy_down_interval": "0.00002",
        "profit_target": "0.00001",
        "fee": "0.0001",
    })
}

/// Over HTTP: BTCUSDT gets [`tight_btc_settings`], then its trading and streaming are switched on.
pub async fn trade_btcusdt(api: &Api) {
    let (status, body) = api
        .put("/api/symbols/BTCUSDT/settings", &tight_btc_settings())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for command in ["trading/start", "streaming/start"] {
        let (status, body) = api.post(&format!("/api/symbols/BTCUSDT/{command}")).await;
        assert_eq!(status, StatusCode::OK, "{command}: {body}");
        assert_eq!(body["changed"], true, "{command}: {body}");
    }
}
