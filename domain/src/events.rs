//! The event vocabulary of the whole system: every state change Hedgehog records.
//!
//! An event's canonical form ([`Event::encode`]) is a JSON object whose first key is its `type`
//! tag: what fingerprints, decided-event ids and every JSON output use. On disk it is stored
//! beside its type and an explicit schema version ([`Event::encode_stored`],
//! [`Event::schema_version`]), so that a log written today stays readable after an event's shape
//! changes: [`Event::decode`] dispatches on the pair and is where an upcaster for an old version
//! goes. Field order is the declaration order below and never depends on a map's iteration, so
//! the same event always serialises to the same bytes.
//!
//! One event is stored in another shape than its canonical one: `TradeReceived`, by far the most
//! numerous (a busy symbol makes millions a day), is stored from schema version 2 on as a
//! positional JSON array (see [`TradeReceived`]'s stored form): 106 bytes instead of 250 for a
//! typical trade, and decoded in about half the time, which is what the store's append, read and
//! projection rates rest on. Version 1 (the keyed object) still reads.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::settings::TradingSettings;
use crate::types::{
    FillStatus, OrderType, Side, Symbol, TimeInForce, Timestamp, TradeKind, TradingStatus,
};

// ---------------------------------------------------------------------------------------------
// market
// ---------------------------------------------------------------------------------------------

/// One trade reported by the exchange. Its idempotency key is (market stream, `trade_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeReceived {
    pub symbol: Symbol,
    pub trade_id: u64,
    pub price: Decimal,
    pub quantity: Decimal,
    pub trade_time: Timestamp,
    pub event_time: Timestamp,
    /// `m` on the wire: the buyer was the maker, so the seller was the aggressor.
    pub buyer_is_maker: bool,
    /// Present in spot data before 2024-06-18 and in the book's dumps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_order_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_order_id: Option<u64>,
    /// For an aggregate trade (Binance's aggTrades: trades of one taker order at one price and
    /// time, quantities summed), the first trade id it stands for; `trade_id` is the last.
    /// Absent for a single trade. Optional with a default, so logs written before it existed
    /// read as they are (no schema version change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_trade_id: Option<u64>,
    #[serde(default)]
    pub kind: TradeKind,
}

/// The stored form of a [`TradeReceived`] (schema version 2): its fields in declaration order,
/// positionally, as a JSON array; the type is the column beside it, the keys are implied.
/// `["ADAUSDT",14364025,"0.09643000","1617.50000000",1559520022517,1559520022520,false,71181005,71180991,null,"MARKET"]`
/// Generic over owning: borrowed to encode, owned to decode.
type StoredTrade<S, D, K> = (
    S,
    u64,
    D,
    D,
    Timestamp,
    Timestamp,
    bool,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    K,
);

/// [`StoredTrade`], owned, for decoding.
type StoredTradeOwned = StoredTrade<Symbol, Decimal, TradeKind>;

impl TradeReceived {
    fn stored(&self) -> StoredTrade<&Symbol, &Decimal, &TradeKind> {
        (
            &self.symbol,
            self.trade_id,
            &self.price,
            &self.quantity,
            self.trade_time,
            self.event_time,
            self.buyer_is_maker,
            self.buyer_order_id,
            self.seller_order_id,
            self.first_trade_id,
            &self.kind,
        )
    }

    fn from_stored(t: StoredTradeOwned) -> Self {
        TradeReceived {
            symbol: t.0,
            trade_id: t.1,
            price: t.2,
            quantity: t.3,
            trade_time: t.4,
            event_time: t.5,
            buyer_is_maker: t.6,
            buyer_order_id: t.7,
            seller_order_id: t.8,
            first_trade_id: t.9,
            kind: t.10,
        }
    }

    /// How many exchange trades this one stands for (more than one for an aggregate).
    pub fn trade_count(&self) -> u64 {
        self.first_trade_id
            .map_or(1, |first| self.trade_id.saturating_sub(first) + 1)
    }

    /// The first exchange trade id it covers (its own id unless it is an aggregate).
    pub fn first_id(&self) -> u64 {
        self.first_trade_id.unwrap_or(self.trade_id)
    }
}

// ---------------------------------------------------------------------------------------------
// trading
// ---------------------------------------------------------------------------------------------

/// Trading was switched on (status `on`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStarted {
    pub symbol: Symbol,
    /// The last trade already in the market stream when trading started: trading acts on the
    /// trades after it, never on old ones (so a restart cannot act on history twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_trade_id: Option<u64>,
}

/// Why trading went off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A user asked for it: open orders are cancelled.
    #[default]
    Command,
    /// A shutdown finished: the last open position closed.
    ShutdownCompleted,
    /// The BUY of a fresh position was refused (a filter failure): trading again on the next
    /// trade would only be refused again, so the symbol stops until its settings are fixed.
    OrderRejected,
    /// The exchange refused to serve the account (Binance's 418 IP ban): nothing can be placed
    /// or cancelled until it lifts, so trading stops and says so.
    ExchangeHalted,
}

/// What a position had bought and not yet sold when trading stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unsold {
    pub position_id: u64,
    /// Base quantity bought and not sold.
    pub quantity: Decimal,
    /// Average price it was bought at.
    pub buy_price: Decimal,
}

/// Trading was switched off (status `off`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStopped {
    pub symbol: Symbol,
    #[serde(default)]
    pub reason: StopReason,
    /// What happened, in words, when the reason alone does not say (the exchange's message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Inventory left behind by the positions the stop ended (their orders are cancelled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsold: Vec<Unsold>,
}

/// A graceful stop was asked for (status `shutdown`): no new positions, open ones run out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingShutdownRequested {
    pub symbol: Symbol,
}

/// The symbol's settings changed; positions opened from now on use them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsUpdated {
    pub symbol: Symbol,
    pub settings: TradingSettings,
}

/// A fresh position (one chunk of the budget) was added to the symbol's positions: by the first
/// trade after trading started, in place of a finished position, or by a rebuy. It places its BUY on the next
/// trade (the book's rule: a position added on a trade takes its first step on the next one).
///
/// Schema version 2. Version 1 (written before the book's rules were followed exactly) opened
/// a position and placed its BUY on the same trade, and carried the BUY's trigger price, price
/// and quantity; those are in the `OrderPlaced` that always followed it, so version 1 reads as
/// version 2 without them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionOpened {
    pub symbol: Symbol,
    /// Sequential per symbol, from 1.
    pub position_id: u64,
    /// The trade on which it was added.
    pub trade_id: u64,
    /// The settings in force when it was added, which it keeps until it closes.
    pub settings: TradingSettings,
    /// The position whose fall triggered this one, for a rebuy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuy_of: Option<u64>,
    pub time: Timestamp,
}

/// `PositionOpened` as schema version 1 stored it (see [`PositionOpened`]).
#[derive(Deserialize)]
struct PositionOpenedV1 {
    symbol: Symbol,
    position_id: u64,
    trade_id: u64,
    settings: TradingSettings,
    #[serde(default)]
    rebuy_of: Option<u64>,
    time: Timestamp,
}

impl From<PositionOpenedV1> for PositionOpened {
    fn from(v1: PositionOpenedV1) -> Self {
        PositionOpened {
            symbol: v1.symbol,
            position_id: v1.position_id,
            trade_id: v1.trade_id,
            settings: v1.settings,
            rebuy_of: v1.rebuy_of,
            time: v1.time,
        }
    }
}

/// The order of the symbol's positions after a trade, when more than one is left: the book's
/// strategy steps its positions in this order on the next trade. Recorded because a trade that
/// decides nothing still reverses the order (the book keeps its positions as the reverse of the
/// order they stepped in), which the other events cannot tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionsOrdered {
    pub symbol: Symbol,
    /// The trade after which the positions stand in this order.
    pub trade_id: u64,
    /// Position ids, in the order they step.
    pub positions: Vec<u64>,
}

/// A limit order was sent to the exchange (paper or real).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub symbol: Symbol,
    pub position_id: u64,
    /// The market trade on whose step the strategy placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<u64>,
    pub order_id: u64,
    pub client_order_id: String,
    pub side: Side,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub price: Decimal,
    pub quantity: Decimal,
    pub time: Timestamp,
}

/// An order was filled, partially or fully.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFilled {
    pub symbol: Symbol,
    pub position_id: u64,
    pub order_id: u64,
    pub side: Side,
    /// The market trade that filled it, when the paper exchange filled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<u64>,
    /// Price of this fill.
    pub price: Decimal,
    /// Quantity executed by this fill.
    pub quantity: Decimal,
    /// Quantity executed so far, this fill included.
    pub cumulative_quantity: Decimal,
    /// Quote quantity executed so far, this fill included.
    pub cumulative_quote_quantity: Decimal,
    /// Fee charged on this fill, in `fee_asset`.
    pub fee: Decimal,
    pub fee_asset: String,
    /// What the exchange charged, as it said it, when that was not the quote asset (then
    /// `fee` is its quote value: at the fill price for the base asset, at
    /// `commission_price` for a third asset such as BNB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission: Option<Commission>,
    /// The price in the quote asset of a third commission asset (BNB) when it was charged, which
    /// `fee` counts it at; absent when it could not be priced (`fee` is then 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission_price: Option<Decimal>,
    /// The part of the commission taken out of the bought base asset: that much less is there
    /// to sell.
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub base_fee: Decimal,
    /// A live exchange's id of this execution (Binance's trade id). Kept apart from
    /// `trade_id`: a live fill may be reported before its market trade reaches the symbol's
    /// worker, and must not move the worker's trade cursor past trades it has not decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_trade_id: Option<u64>,
    pub status: FillStatus,
    pub time: Timestamp,
}

/// A live exchange executed more of an order than the log had recorded when a stop cancelled
/// it: the fill raced the cancel, and the cancel's answer (or a later report) says so. The
/// position is no longer traded, but what it bought is real: a BUY's fill adds to the
/// inventory the stop left unsold, a SELL's takes from it (`trading status` shows it), so
/// nothing the venue did is missing from the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFilledAfterCancel {
    pub symbol: Symbol,
    pub position_id: u64,
    pub order_id: u64,
    pub side: Side,
    /// Average price of what executed beyond the recorded fills.
    pub price: Decimal,
    /// Quantity executed beyond the recorded fills.
    pub quantity: Decimal,
    /// Quantity executed in all, as the venue reports it.
    pub cumulative_quantity: Decimal,
    pub cumulative_quote_quantity: Decimal,
    /// Fee of this fill in `fee_asset` (the quote asset), as for [`OrderFilled`]; 0 when the
    /// venue's answer did not say (a cancel's answer carries no commission).
    pub fee: Decimal,
    pub fee_asset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission: Option<Commission>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commission_price: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub base_fee: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_trade_id: Option<u64>,
    pub time: Timestamp,
}

/// A commission as an exchange charged it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commission {
    pub amount: Decimal,
    pub asset: String,
}

/// An order was cancelled (by a stop, or by the exchange).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub symbol: Symbol,
    pub position_id: u64,
    pub order_id: u64,
    pub side: Side,
    /// What had been executed before the cancel.
    pub executed_quantity: Decimal,
    pub reason: String,
    pub time: Timestamp,
}

/// An order could not be placed (a filter failure, insufficient balance, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRejected {
    pub symbol: Symbol,
    pub position_id: u64,
    /// The market trade on whose step the order was refused, when a trade placed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<u64>,
    /// The order the exchange refused after it was placed; `None` when it was refused before
    /// it was sent (the symbol's filters, checked here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<u64>,
    pub side: Side,
    pub price: Decimal,
    pub quantity: Decimal,
    pub reason: String,
    pub time: Timestamp,
}

/// A trade fell far enough below a position's buy price to open one more position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebuyTriggered {
    pub symbol: Symbol,
    pub position_id: u64,
    pub trade_id: u64,
    pub price: Decimal,
    pub time: Timestamp,
}

/// A position is done, with its outcome: the step after its SELL filled (or after a BUY the
/// exchange cancelled unfilled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionClosed {
    pub symbol: Symbol,
    pub position_id: u64,
    /// The market trade on whose step it closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trade_id: Option<u64>,
    pub quantity: Decimal,
    pub buy_price: Decimal,
    pub sell_price: Decimal,
    /// Fees of both sides, in the quote asset.
    pub fees: Decimal,
    /// Sell proceeds minus buy cost minus fees, in the quote asset.
    pub realized_profit: Decimal,
    pub time: Timestamp,
}

// ---------------------------------------------------------------------------------------------
// streaming
// ---------------------------------------------------------------------------------------------

/// Streaming of the symbol's trades was switched on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamingStarted {
    pub symbol: Symbol,
}

/// Streaming of the symbol's trades was switched off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamingStopped {
    pub symbol: Symbol,
}

// ---------------------------------------------------------------------------------------------
// storing (the data warehouse's switches)
// ---------------------------------------------------------------------------------------------

/// A read model a symbol's rows can be stored in or not (the book's collector topics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoringTopic {
    /// `trade_events`: one row per market trade.
    TradeEvents,
    /// `orders`: one row per order.
    Orders,
}

impl StoringTopic {
    pub const ALL: [StoringTopic; 2] = [StoringTopic::TradeEvents, StoringTopic::Orders];

    pub fn as_str(self) -> &'static str {
        match self {
            StoringTopic::TradeEvents => "trade_events",
            StoringTopic::Orders => "orders",
        }
    }
}

impl std::fmt::Display for StoringTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StoringTopic {
    type Err = String;

    /// Case-insensitive, as in the book (`TRADE_EVENTS`, `trade_events`, `orders`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "trade_events" => Ok(StoringTopic::TradeEvents),
            "orders" => Ok(StoringTopic::Orders),
            _ => Err(format!(
                "unknown storing topic {s:?}: use trade_events or orders"
            )),
        }
    }
}

/// The topic's rows of the symbol are stored again from here on; with `backfill`, also every
/// earlier one the log holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoringStarted {
    pub symbol: Symbol,
    pub topic: StoringTopic,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub backfill: bool,
}

/// The topic's rows of the symbol are no longer stored (the events still are).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoringStopped {
    pub symbol: Symbol,
    pub topic: StoringTopic,
}

// ---------------------------------------------------------------------------------------------
// the enum
// ---------------------------------------------------------------------------------------------

/// Declares [`Event`] with one variant per payload type and its current schema version, and
/// derives the tag, the version and the decoder from that single list.
macro_rules! events {
    ($( $(#[$doc:meta])* $name:ident = $version:literal ),+ $(,)?) => {
        /// Every event Hedgehog stores. Serialised with an explicit `type` tag.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum Event {
            $( $(#[$doc])* $name($name), )+
        }

        impl Event {
            /// Every tag this version of Hedgehog writes, with its schema version.
            pub const TYPES: &'static [(&'static str, u16)] = &[ $( (stringify!($name), $version), )+ ];

            /// The `type` tag written on disk.
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$name(_) => stringify!($name), )+ }
            }

            /// The schema version of the stored form this build writes for the event's type
            /// ([`Event::encode_stored`]).
            pub fn schema_version(&self) -> u16 {
                match self { $( Event::$name(_) => $version, )+ }
            }

            /// Decodes a stored payload given its type tag and schema version.
            ///
            /// Dispatches on the tag stored beside the payload instead of re-reading the tag
            /// from the JSON, which is both faster and the hook for upcasting old versions.
            pub fn decode(event_type: &str, schema_version: u16, payload: &str) -> Result<Event, DecodeError> {
                let malformed = |source| DecodeError::Payload { event_type: event_type.to_owned(), source };
                match (event_type, schema_version) {
                    // The stored form of today (first: the log is mostly trades), then the
                    // canonical object that version 1 stored.
                    ("TradeReceived", 2) => {
                        return serde_json::from_str::<StoredTradeOwned>(payload)
                            .map(|t| Event::TradeReceived(TradeReceived::from_stored(t)))
                            .map_err(malformed);
                    }
                    ("TradeReceived", 1) => {
                        return serde_json::from_str::<TradeReceived>(payload)
                            .map(Event::TradeReceived)
                            .map_err(malformed);
                    }
                    ("PositionOpened", 1) => {
                        return serde_json::from_str::<PositionOpenedV1>(payload)
                            .map(|v1| Event::PositionOpened(v1.into()))
                            .map_err(malformed);
                    }
                    _ => {}
                }
                match event_type {
                    $( stringify!($name) => {
                        if schema_version != $version {
                            return Err(DecodeError::UnsupportedVersion {
                                event_type: event_type.to_owned(),
                                found: schema_version,
                                supported: $version,
                            });
                        }
                        serde_json::from_str::<$name>(payload)
                            .map(Event::$name)
                            .map_err(malformed)
                    } )+
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }

        $( impl From<$name> for Event {
            fn from(value: $name) -> Self { Event::$name(value) }
        } )+
    };
}

events! {
    TradeReceived = 2,
    TradingStarted = 1,
    TradingStopped = 1,
    TradingShutdownRequested = 1,
    SettingsUpdated = 1,
    PositionOpened = 2,
    OrderPlaced = 1,
    OrderFilled = 1,
    OrderFilledAfterCancel = 1,
    OrderCancelled = 1,
    OrderRejected = 1,
    RebuyTriggered = 1,
    PositionClosed = 1,
    PositionsOrdered = 1,
    StreamingStarted = 1,
    StreamingStopped = 1,
    StoringStarted = 1,
    StoringStopped = 1,
}

/// A stored event that this build cannot read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?} (written by a newer Hedgehog?)")]
    UnknownType(String),
    #[error(
        "event type {event_type} has schema version {found}, this build reads version {supported}"
    )]
    UnsupportedVersion {
        event_type: String,
        found: u16,
        supported: u16,
    },
    #[error("malformed {event_type} payload: {source}")]
    Payload {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

impl Event {
    /// Serialises the event to its canonical JSON (tag first, fields in declaration order):
    /// the form fingerprints, decided-event ids and JSON outputs are made of.
    pub fn encode(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Serialises the event to the payload the store keeps, in the form of
    /// [`Event::schema_version`]: the canonical JSON, except for `TradeReceived` (a positional
    /// array, see the module's doc). [`Event::decode`] reads it back.
    pub fn encode_stored(&self) -> Result<String, serde_json::Error> {
        match self {
            Event::TradeReceived(t) => serde_json::to_string(&t.stored()),
            other => other.encode(),
        }
    }

    /// The symbol the event is about; every event in the vocabulary has one.
    pub fn symbol(&self) -> &Symbol {
        match self {
            Event::TradeReceived(e) => &e.symbol,
            Event::TradingStarted(e) => &e.symbol,
            Event::TradingStopped(e) => &e.symbol,
            Event::TradingShutdownRequested(e) => &e.symbol,
            Event::SettingsUpdated(e) => &e.symbol,
            Event::PositionOpened(e) => &e.symbol,
            Event::OrderPlaced(e) => &e.symbol,
            Event::OrderFilled(e) => &e.symbol,
            Event::OrderFilledAfterCancel(e) => &e.symbol,
            Event::OrderCancelled(e) => &e.symbol,
            Event::OrderRejected(e) => &e.symbol,
            Event::RebuyTriggered(e) => &e.symbol,
            Event::PositionClosed(e) => &e.symbol,
            Event::PositionsOrdered(e) => &e.symbol,
            Event::StreamingStarted(e) => &e.symbol,
            Event::StreamingStopped(e) => &e.symbol,
            Event::StoringStarted(e) => &e.symbol,
            Event::StoringStopped(e) => &e.symbol,
        }
    }

    /// The exchange trade id for a market trade: half of its idempotency key.
    pub fn trade_id(&self) -> Option<u64> {
        match self {
            Event::TradeReceived(t) => Some(t.trade_id),
            _ => None,
        }
    }

    /// The trading status an event leaves a symbol in, if it changes it.
    pub fn trading_status(&self) -> Option<TradingStatus> {
        match self {
            Event::TradingStarted(_) => Some(TradingStatus::On),
            Event::TradingStopped(_) => Some(TradingStatus::Off),
            Event::TradingShutdownRequested(_) => Some(TradingStatus::Shutdown),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn trade() -> TradeReceived {
        crate::testkit::trade("ADAUSDT", 14364025)
            .price(dec!(0.09643000))
            .quantity(dec!(1617.50000000))
            .at(1559520022517)
            .event_time(1559520022520)
            .order_ids(Some(71181005), Some(71180991))
            .build()
    }

    /// The canonical and the stored forms are contracts: this test fails if a rename or reorder
    /// would change either.
    #[test]
    fn trade_received_has_a_stable_wire_form() {
        let event = Event::from(trade());
        let canonical = r#"{"type":"TradeReceived","symbol":"ADAUSDT","trade_id":14364025,"price":"0.09643000","quantity":"1617.50000000","trade_time":1559520022517,"event_time":1559520022520,"buyer_is_maker":false,"buyer_order_id":71181005,"seller_order_id":71180991,"kind":"MARKET"}"#;
        let stored = r#"["ADAUSDT",14364025,"0.09643000","1617.50000000",1559520022517,1559520022520,false,71181005,71180991,null,"MARKET"]"#;
        assert_eq!(event.encode().unwrap(), canonical);
        assert_eq!(event.schema_version(), 2);
        assert_eq!(event.encode_stored().unwrap(), stored);
        // Both versions read back to the same event: logs written by version 1 stay readable.
        assert_eq!(Event::decode("TradeReceived", 2, stored).unwrap(), event);
        assert_eq!(Event::decode("TradeReceived", 1, canonical).unwrap(), event);
    }

    #[test]
    fn stored_trades_keep_aggregates_kinds_and_absent_ids() {
        let mut t = trade();
        t.buyer_order_id = None;
        t.seller_order_id = None;
        t.first_trade_id = Some(14364001);
        t.kind = TradeKind::InsuranceFund;
        let event = Event::from(t);
        let stored = event.encode_stored().unwrap();
        assert!(
            stored.ends_with(r#",null,null,14364001,"INSURANCE_FUND"]"#),
            "{stored}"
        );
        assert_eq!(Event::decode("TradeReceived", 2, &stored).unwrap(), event);
        let err = Event::decode("TradeReceived", 2, r#"["ADAUSDT",1,"1"]"#).unwrap_err();
        assert!(
            err.to_string().contains("malformed TradeReceived payload"),
            "{err}"
        );
        let err = Event::decode("TradeReceived", 3, &stored).unwrap_err();
        assert!(err.to_string().contains("schema version 3"), "{err}");
    }

    #[test]
    fn decode_round_trips_every_variant_and_keeps_decimal_scale() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        let events: Vec<Event> = vec![
            trade().into(),
            TradingStarted {
                symbol: sym.clone(),
                after_trade_id: Some(41),
            }
            .into(),
            TradingStopped {
                symbol: sym.clone(),
                reason: StopReason::Command,
                detail: None,
                unsold: vec![Unsold {
                    position_id: 3,
                    quantity: dec!(0.00100),
                    buy_price: dec!(60000.01),
                }],
            }
            .into(),
            TradingShutdownRequested {
                symbol: sym.clone(),
            }
            .into(),
            SettingsUpdated {
                symbol: sym.clone(),
                settings: TradingSettings::default(),
            }
            .into(),
            PositionOpened {
                symbol: sym.clone(),
                position_id: 1,
                trade_id: 7,
                settings: TradingSettings::default(),
                rebuy_of: None,
                time: Timestamp(5),
            }
            .into(),
            OrderPlaced {
                symbol: sym.clone(),
                position_id: 1,
                trade_id: Some(8),
                order_id: 1,
                client_order_id: "hh-BTCUSDT-1-B".into(),
                side: Side::Buy,
                order_type: OrderType::Limit,
                time_in_force: TimeInForce::Gtc,
                price: dec!(99.99),
                quantity: dec!(2.00000),
                time: Timestamp(5),
            }
            .into(),
            OrderFilled {
                symbol: sym.clone(),
                position_id: 1,
                order_id: 1,
                side: Side::Buy,
                trade_id: Some(9),
                price: dec!(99.99),
                quantity: dec!(2.00000),
                cumulative_quantity: dec!(2.00000),
                cumulative_quote_quantity: dec!(199.98),
                fee: dec!(0.19998),
                fee_asset: "USDT".into(),
                commission: Some(Commission {
                    amount: dec!(0.00200),
                    asset: "BTC".into(),
                }),
                commission_price: None,
                base_fee: dec!(0.00200),
                venue_trade_id: Some(4242),
                status: FillStatus::Filled,
                time: Timestamp(6),
            }
            .into(),
            OrderCancelled {
                symbol: sym.clone(),
                position_id: 1,
                order_id: 2,
                side: Side::Sell,
                executed_quantity: dec!(0),
                reason: "trading stopped".into(),
                time: Timestamp(7),
            }
            .into(),
            OrderFilledAfterCancel {
                symbol: sym.clone(),
                position_id: 1,
                order_id: 1,
                side: Side::Buy,
                price: dec!(0.09640000),
                quantity: dec!(10.0),
                cumulative_quantity: dec!(1037.2),
                cumulative_quote_quantity: dec!(99.98608000),
                fee: dec!(0),
                fee_asset: "USDT".into(),
                commission: None,
                commission_price: None,
                base_fee: dec!(0.0100),
                venue_trade_id: Some(88),
                time: Timestamp(7),
            }
            .into(),
            OrderRejected {
                symbol: sym.clone(),
                position_id: 2,
                trade_id: None,
                order_id: Some(3),
                side: Side::Buy,
                price: dec!(1),
                quantity: dec!(1),
                reason: "Filter failure: NOTIONAL".into(),
                time: Timestamp(8),
            }
            .into(),
            RebuyTriggered {
                symbol: sym.clone(),
                position_id: 1,
                trade_id: 10,
                price: dec!(98),
                time: Timestamp(9),
            }
            .into(),
            PositionClosed {
                symbol: sym.clone(),
                position_id: 1,
                trade_id: Some(11),
                quantity: dec!(2.00000),
                buy_price: dec!(99.99),
                sell_price: dec!(100.30),
                fees: dec!(0.40058),
                realized_profit: dec!(0.21942),
                time: Timestamp(10),
            }
            .into(),
            PositionsOrdered {
                symbol: sym.clone(),
                trade_id: 12,
                positions: vec![3, 2],
            }
            .into(),
            StreamingStarted {
                symbol: sym.clone(),
            }
            .into(),
            StreamingStopped {
                symbol: sym.clone(),
            }
            .into(),
            StoringStarted {
                symbol: sym.clone(),
                topic: StoringTopic::TradeEvents,
                backfill: true,
            }
            .into(),
            StoringStopped {
                symbol: sym,
                topic: StoringTopic::Orders,
            }
            .into(),
        ];
        assert_eq!(
            events.len(),
            Event::TYPES.len(),
            "every variant is exercised"
        );
        for event in events {
            let json = event.encode().unwrap();
            assert!(json.starts_with(&format!("{{\"type\":\"{}\"", event.event_type())));
            let stored = event.encode_stored().unwrap();
            let back = Event::decode(event.event_type(), event.schema_version(), &stored).unwrap();
            assert_eq!(back, event);
            // Same bytes again: serialisation is deterministic.
            assert_eq!(back.encode().unwrap(), json);
            assert_eq!(back.encode_stored().unwrap(), stored);
        }
    }

    #[test]
    fn decode_refuses_unknown_types_and_versions_with_a_clear_error() {
        let err = Event::decode("Nope", 1, "{}").unwrap_err();
        assert!(err.to_string().contains("Nope"));
        let err = Event::decode("TradingStarted", 2, r#"{"symbol":"BTCUSDT"}"#).unwrap_err();
        assert!(err.to_string().contains("schema version 2"), "{err}");
        let err = Event::decode("TradingStarted", 1, r#"{"symbol":"BTC/USDT"}"#).unwrap_err();
        assert!(err.to_string().contains("BTC/USDT"), "{err}");
    }

    /// Logs written before positions were added fresh carry version 1 of `PositionOpened`,
    /// with the BUY's prices in it; they read as version 2, the BUY being in the `OrderPlaced`
    /// that follows. Orders and closes of those logs carry no trade id.
    #[test]
    fn version_1_positions_and_orders_still_read() {
        let v1 = r#"{"symbol":"ADAUSDT","position_id":3,"trade_id":14364030,"trigger_price":"0.0964","buy_price":"0.0963","quantity":"103.8","settings":{"chunks":5,"budget":"100","buy_down_interval":"0.0001","profit_target":"0.001","rebuy_interval":"0.001","fee":"0.001"},"rebuy_of":2,"time":1559520022517}"#;
        let Event::PositionOpened(p) = Event::decode("PositionOpened", 1, v1).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(
            (p.position_id, p.trade_id, p.rebuy_of, p.time),
            (3, 14364030, Some(2), Timestamp(1559520022517))
        );
        let placed = r#"{"symbol":"ADAUSDT","position_id":3,"order_id":4,"client_order_id":"x","side":"BUY","order_type":"LIMIT","time_in_force":"GTC","price":"0.0963","quantity":"103.8","time":1}"#;
        let Event::OrderPlaced(o) = Event::decode("OrderPlaced", 1, placed).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(o.trade_id, None);
        let err = Event::decode("PositionOpened", 3, v1).unwrap_err();
        assert!(err.to_string().contains("schema version 3"), "{err}");
    }

    #[test]
    fn spot_2024_trades_without_order_ids_decode() {
        let json = r#"{"type":"TradeReceived","symbol":"BTCUSDT","trade_id":1,"price":"60000.01","quantity":"0.001","trade_time":1,"event_time":2,"buyer_is_maker":true}"#;
        let Event::TradeReceived(t) = Event::decode("TradeReceived", 1, json).unwrap() else {
            panic!("wrong variant")
        };
        assert_eq!(t.buyer_order_id, None);
        assert_eq!(t.kind, TradeKind::Market);
    }
}
