//! Binance's user data stream: the `executionReport`s that tell a live engine what happened to
//! its orders, and how they become domain events.
//!
//! Since 2026-02-20 the stream comes through the WebSocket API's `userDataStream.subscribe`,
//! which wraps each event as `{"subscriptionId": N, "event": {...}}`; the older listen-key
//! stream sent the bare event. Both parse. Events other than execution reports
//! (`outboundAccountPosition`, `balanceUpdate`, ...) and the API's own responses are recognised
//! and left to the caller, never errors.
//!
//! The mapping is pure: the same report and the same order give the same event, so a report
//! delivered twice (after a reconnect, or by REST reconciliation) gives the same event, whose id
//! the caller derives from the Binance trade id, and the store keeps it once.

use hedgehog_domain::events::{OrderCancelled, OrderFilled};
use hedgehog_domain::types::FillStatus;
use hedgehog_domain::{Side, Symbol, Timestamp};
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

/// The order of ours a report is about: what the domain knows and Binance does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OurOrder {
    pub symbol: Symbol,
    pub position_id: u64,
    pub order_id: u64,
    pub side: Side,
}

impl ExecutionReport {
    /// The report's fill, if it reports a trade.
    pub fn fill(&self, order: &OurOrder) -> Option<OrderFilled> {
        if self.execution_type != "TRADE" {
            return None;
        }
        Some(OrderFilled {
            symbol: order.symbol.clone(),
            position_id: order.position_id,
            order_id: order.order_id,
            side: order.side,
            trade_id: u64::try_from(self.trade_id).ok(),
            price: self.last_price,
            quantity: self.last_quantity,
            cumulative_quantity: self.cumulative_quantity,
            cumulative_quote_quantity: self.cumulative_quote_quantity,
            fee: self.commission,
            fee_asset: self.commission_asset.clone().unwrap_or_default(),
            status: if self.status == OrderStatus::Filled {
                FillStatus::Filled
            } else {
                FillStatus::PartiallyFilled
            },
            time: Timestamp(self.transaction_time),
        })
    }

    /// The report's cancel (by us, by Binance, or an expiry), if it reports one.
    pub fn cancel(&self, order: &OurOrder) -> Option<OrderCancelled> {
        let reason = match self.execution_type.as_str() {
            "CANCELED" => "cancelled on Binance".to_owned(),
            "EXPIRED" => "expired on Binance".to_owned(),
            "TRADE_PREVENTION" => "expired by Binance's self-trade prevention".to_owned(),
            "REJECTED" => format!("rejected by Binance: {}", self.reject_reason),
            _ => return None,
        };
        Some(OrderCancelled {
            symbol: order.symbol.clone(),
            position_id: order.position_id,
            order_id: order.order_id,
            side: order.side,
            executed_quantity: self.cumulative_quantity,
            reason,
            time: Timestamp(self.transaction_time),
        })
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
            "{}/tests/fixtures/binance-rest/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(path).unwrap()
    }

    fn ours() -> OurOrder {
        OurOrder {
            symbol: Symbol::parse("ETHUSDT").unwrap(),
            position_id: 3,
            order_id: 7,
            side: Side::Buy,
        }
    }

    fn report(name: &str) -> ExecutionReport {
        match parse(&fixture(name)).unwrap() {
            UserEvent::Execution(r) => *r,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn a_trade_report_is_a_fill() {
        let r = report("execution_report_trade.json");
        let fill = r.fill(&ours()).unwrap();
        assert_eq!(
            (fill.price, fill.quantity, fill.cumulative_quantity),
            (dec!(2500), dec!(1), dec!(1))
        );
        assert_eq!(fill.cumulative_quote_quantity, dec!(2500));
        assert_eq!((fill.fee, fill.fee_asset.as_str()), (dec!(0.001), "ETH"));
        assert_eq!(fill.status, FillStatus::Filled);
        assert_eq!(fill.trade_id, Some(98_765_432));
        assert_eq!(fill.time, Timestamp(1_709_654_401_000));
        assert_eq!((fill.order_id, fill.position_id), (7, 3));
        assert!(r.cancel(&ours()).is_none());
    }

    #[test]
    fn the_websocket_api_wrapping_and_the_bare_event_both_parse() {
        let wrapped = report("execution_report_wrapped.json");
        assert_eq!(wrapped.execution_type, "NEW");
        assert_eq!(wrapped.status, OrderStatus::New);
        assert!(
            wrapped.fill(&ours()).is_none(),
            "a NEW report fills nothing"
        );
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
        let cancel = r.cancel(&ours()).unwrap();
        assert_eq!(cancel.reason, "cancelled on Binance");
        assert_eq!(cancel.order_id, 7);
        assert!(r.fill(&ours()).is_none());
        assert!(!r.order_client_id().is_empty());
    }
}
