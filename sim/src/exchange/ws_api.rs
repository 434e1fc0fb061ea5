//! The WebSocket API: `userDataStream.subscribe.signature` (signed with the account's key),
//! `ping` and `time`; a subscribed session gets every execution report.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use hedgehog_binance::rest::sign;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::Exchange;

/// The WebSocket API: `userDataStream.subscribe.signature`, `ping` and `time`.
pub async fn ws_api(State(exchange): State<Arc<Exchange>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| user_session(exchange, socket))
}

async fn user_session(exchange: Arc<Exchange>, mut socket: WebSocket) {
    let mut reports: Option<broadcast::Receiver<Value>> = None;
    loop {
        let out = tokio::select! {
            report = next_report(&mut reports) => match report {
                Some(event) => json!({ "subscriptionId": 0, "event": event }),
                None => return,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Text(text))) => {
                    let answer = ws_request(&exchange, text.as_str());
                    if answer.get("status") == Some(&json!(200))
                        && answer["result"].get("subscriptionId").is_some()
                    {
                        reports = Some(exchange.user.subscribe());
                    }
                    answer
                }
                Some(Ok(_)) => continue,
                _ => return,
            },
        };
        if socket.send(WsMessage::text(out.to_string())).await.is_err() {
            return;
        }
    }
}

async fn next_report(reports: &mut Option<broadcast::Receiver<Value>>) -> Option<Value> {
    match reports {
        Some(r) => loop {
            match r.recv().await {
                Ok(v) => return Some(v),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        },
        None => std::future::pending().await,
    }
}

/// Answers one WebSocket API request.
fn ws_request(exchange: &Exchange, text: &str) -> Value {
    let request: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let fail = |status: u16, code: i64, msg: &str| json!({ "id": id, "status": status, "error": { "code": code, "msg": msg } });
    let ok = |result: Value| json!({ "id": id, "status": 200, "result": result });
    match request.get("method").and_then(Value::as_str) {
        Some("ping") => ok(json!({})),
        Some("time") => ok(json!({ "serverTime": exchange.now() })),
        Some("userDataStream.subscribe.signature") => {
            let Some(params) = request.get("params").and_then(Value::as_object) else {
                return fail(400, -1102, "Mandatory parameter 'params' was not sent.");
            };
            let mut payload: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| k.as_str() != "signature")
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                    (k.clone(), v)
                })
                .collect();
            payload.sort();
            let query: String = payload
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            let key: HashMap<_, _> = payload.iter().cloned().collect();
            if key.get("apiKey").map(String::as_str) != Some(exchange.api_key.as_str()) {
                return fail(401, -2015, "Invalid API-key, IP, or permissions for action.");
            }
            let signature = params.get("signature").and_then(Value::as_str);
            if signature != Some(sign(exchange.secret.as_bytes(), &query).as_str()) {
                return fail(400, -1022, "Signature for this request is not valid.");
            }
            let timestamp = key.get("timestamp").and_then(|t| t.parse::<i64>().ok());
            let window = key
                .get("recvWindow")
                .and_then(|w| w.parse::<i64>().ok())
                .unwrap_or(5_000);
            let now = exchange.now();
            match timestamp {
                Some(t) if t <= now + 1_000 && now - t <= window => ok(json!({ "subscriptionId": 0 })),
                _ => fail(400, -1021, "Timestamp for this request is outside of the recvWindow."),
            }
        }
        Some(other) => fail(400, -1000, &format!("Unknown method {other}: Hedgehog's paper exchange serves ping, time and userDataStream.subscribe.signature.")),
        None => fail(400, -1000, "Malformed request: expected {\"id\", \"method\", \"params\"}."),
    }
}
