//! Binance's user data stream: the `executionReport`s that tell a live engine what happened to
//! its orders, and how they become domain events.
//!
//! Since 2026-02-20 the stream comes through the WebSocket API's `userDataStream.subscribe`,
//! which wraps each event as `{"subscriptionId": N, "event": {...}}`; the older listen-key
//! stream sent the bare event. Both parse. Events other than execution reports
//! (`outboundAccountPosition`, `balanceUpdate`, ...) and the API's own responses are recognised
//! and left to the caller, never errors.
//!
//! The mapping is pure and gives the domain's [`Report`], which carries cumulative quantities:
//! a report delivered twice (after a reconnect, or already accounted for by REST
//! reconciliation) decides nothing the second time.

use hedgehog_domain::events::Commission;
use hedgehog_domain::trading::Report;
use hedgehog_domain::{Side, Timestamp};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::rest::OrderStatus;

/// One `executionReport`, with Binance's one-letter fields named.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExecutionReport {
    #[serde(rename = "E")]
    pub event_time: i64,
    #[serde(rename = "s")]
    pub symbol: String,
    #[serde(rename = "c")]
    pub client_order_id: String,
    #[serde(rename = "S")]
    pub side: Side,
    #[serde(rename = "o")]
    pub order_type: String,
    #[serde(rename = "q")]
    pub quantity: Decimal,
    #[serde(rename = "p")]
    pub price: Decimal,
    /// NEW, CANCELED, REPLACED, REJECTED, TRADE, EXPIRED or TRADE_PREVENTION.
    #[serde(rename = "x")]
    pub execution_type: String,
    #[serde(rename = "X")]
    pub status: OrderStatus,
    #[serde(rename = "r")]
    pub reject_reason: String,
    #[serde(rename = "i")]
    pub order_id: u64,
    /// Quantity of this execution.
    #[serde(rename = "l")]
    pub last_quantity: Decimal,
    /// Quantity executed so far.
    #[serde(rename = "z")]
    pub cumulative_quantity: Decimal,
    #[serde(rename = "L")]
    pub last_price: Decimal,
    #[serde(rename = "n")]
    pub commission: Decimal,
    #[serde(rename = "N")]
    pub commission_asset: Option<String>,
    #[serde(rename = "T")]
    pub transaction_time: i64,
    /// The trade's id, -1 for executions that are not trades.
    #[serde(rename = "t")]
    pub trade_id: i64,
    #[serde(rename = "Z")]
    pub cumulative_quote_quantity: Decimal,
    /// For a cancel: the client order id of the order cancelled (`c` is then the cancel's).
    #[serde(rename = "C", default)]
    pub original_client_order_id: String,
}

/// What one user data message turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    Execution(Box<ExecutionReport>),
    /// Another event type (`outboundAccountPosition`, `balanceUpdate`, ...).
    Other(String),
    /// A response of the WebSocket API (to `userDataStream.subscribe`, say), not an event.
    Response(serde_json::Value),
}

#[derive(Debug, thiserror::Error)]
#[error("not a Binance user data message ({source}): {text}")]
pub struct UserDataError {
    text: String,
    #[source]
    source: serde_json::Error,
}

/// Parses one message of the user data stream, wrapped or bare.
pub fn parse(text: &str) -> Result<UserEvent, UserDataError> {
    let error = |source| UserDataError {
        text: text.chars().take(300).collect(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(error)?;
    let event = match value.get("event") {
        Some(event) => event.clone(),
        None if value.get("e").is_some() => value,
        None => return Ok(UserEvent::Response(value)),
    };
    match event.get("e").and_then(|e| e.as_str()) {
        Some("executionReport") => serde_json::from_value(event)
            .map(|r| UserEvent::Execution(Box::new(r)))
            .map_err(error),
        Some(other) => Ok(UserEvent::Other(other.to_owned())),
        None => Ok(UserEvent::Response(event)),
    }
}

impl ExecutionReport {
    /// What the report means for our order, if anything: an execution (cumulative, so a
    /// report seen twice adds nothing), a cancel or expiry, a rejection. `NEW` reports (the
    /// acknowledgement of a placement) mean nothing new.
    pub fn report(&self) -> Option<Report> {
        let time = Timestamp(self.transaction_time);
        let client_order_id = self.order_client_id().to_owned();
        let cancelled = |reason: String| {
            Some(Report::Cancelled {
                client_order_id: client_order_id.clone(),
                reason,
                time,
            })
        };
        match self.execution_type.as_str() {
            "TRADE" => Some(Report::Executed {
                client_order_id: client_order_id.clone(),
                trade_id: u64::try_from(self.trade_id).ok(),
                cumulative_quantity: self.cumulative_quantity,
                cumulative_quote_quantity: self.cumulative_quote_quantity,
                commission: self.commission_asset.as_ref().map(|asset| Commission {
                    amount: self.commission,
                    asset: asset.clone(),
                }),
                last_quantity: self.last_quantity,
                // Priced by the trader (see `live::price_commission`).
                commission_price: None,
                time,
            }),
            "CANCELED" => cancelled("cancelled on Binance".to_owned()),
            "EXPIRED" => cancelled("expired on Binance".to_owned()),
            "TRADE_PREVENTION" => {
                cancelled("expired by Binance's self-trade prevention".to_owned())
            }
            "REJECTED" => Some(Report::Rejected {
                client_order_id: client_order_id.clone(),
                reason: format!("rejected by Binance: {}", self.reject_reason),
                time,
            }),
            _ => None,
        }
    }

    /// The client order id of the order this report is about (a cancel report carries the
    /// cancel request's own id in `c` and the order's in `C`).
    pub fn order_client_id(&self) -> &str {
        if self.execution_type == "CANCELED" && !self.original_client_order_id.is_empty() {
            &self.original_client_order_id
        } else {
            &self.client_order_id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/../tests/fixtures/binance-rest/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    fn report(name: &str) -> ExecutionReport {
        match parse(&fixture(name)).unwrap() {
            UserEvent::Execution(r) => *r,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_trade_report_is_an_execution() {
        let r = report("execution_report_trade.json");
        let Some(Report::Executed {
            client_order_id,
            trade_id,
            cumulative_quantity,
            cumulative_quote_quantity,
            commission,
            last_quantity,
            commission_price,
            time,
        }) = r.report()
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            commission_price, None,
            "priced by the trader, not the parser"
        );
        assert_eq!(client_order_id, r.client_order_id);
        assert_eq!(
            (
                cumulative_quantity,
                cumulative_quote_quantity,
                last_quantity
            ),
            (dec!(1), dec!(2500), dec!(1))
        );
        assert_eq!(
            commission,
            Some(Commission {
                amount: dec!(0.001),
                asset: "ETH".into()
            })
        );
        assert_eq!(trade_id, Some(98_765_432));
        assert_eq!(time, Timestamp(1_709_654_401_000));
    }

    #[test]
    fn the_websocket_api_wrapping_and_the_bare_event_both_parse() {
        let wrapped = report("execution_report_wrapped.json");
        assert_eq!(wrapped.execution_type, "NEW");
        assert_eq!(wrapped.status, OrderStatus::New);
        assert!(wrapped.report().is_none(), "a NEW report means nothing new");
        assert_eq!(wrapped.commission_asset, None);
        let new = report("execution_report_new.json");
        assert_eq!(new.status, OrderStatus::New);
        assert!(matches!(
            parse(r#"{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1}}"#).unwrap(),
            UserEvent::Other(e) if e == "outboundAccountPosition"
        ));
        assert!(matches!(
            parse(r#"{"id":"1","status":200,"result":{"subscriptionId":0}}"#).unwrap(),
            UserEvent::Response(_)
        ));
        assert!(parse("not json")
            .unwrap_err()
            .to_string()
            .contains("not json"));
    }

    #[test]
    fn a_cancel_report_is_a_cancel_of_the_original_order() {
        let r = report("execution_report_canceled.json");
        let Some(Report::Cancelled {
            client_order_id,
            reason,
            ..
        }) = r.report()
        else {
            panic!("{r:?}")
        };
        assert_eq!(reason, "cancelled on Binance");
        assert!(!client_order_id.is_empty());
        assert_eq!(client_order_id, r.order_client_id());
    }
}
