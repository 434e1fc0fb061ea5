//! `trade_events`: one row per stored market trade, the book's data warehouse table, served
//! from the log.

use futures::future::BoxFuture;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::types::{Timestamp, TradeKind};
use hedgehog_domain::{Event, Symbol};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::db::{on_pool, on_tx, Tx};
use crate::storing::{switch_of, Switch, Switches};
use crate::{Market, Origin, ProjectionError, ReadModel, Update};
use hedgehog_domain::events::StoringTopic;
use hedgehog_store::Database;

/// A row of `trade_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradeRow {
    pub market: Market,
    pub symbol: Symbol,
    pub trade_id: u64,
    pub price: Decimal,
    pub quantity: Decimal,
    pub buyer_order_id: Option<u64>,
    pub seller_order_id: Option<u64>,
    /// The first trade id of an aggregate trade (`trade_id` is its last); none for a trade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_trade_id: Option<u64>,
    pub trade_time: i64,
    pub event_time: i64,
    pub buyer_market_maker: bool,
    pub kind: String,
    /// The event's position in the log.
    pub position: i64,
}

impl TradeRow {
    pub fn of(market: Market, position: i64, t: &TradeReceived) -> Self {
        TradeRow {
            market,
            symbol: t.symbol.clone(),
            trade_id: t.trade_id,
            price: t.price,
            quantity: t.quantity,
            buyer_order_id: t.buyer_order_id,
            seller_order_id: t.seller_order_id,
            first_trade_id: t.first_trade_id,
            trade_time: t.trade_time.millis(),
            event_time: t.event_time.millis(),
            buyer_market_maker: t.buyer_is_maker,
            kind: t.kind.as_str().to_owned(),
            position,
        }
    }

    /// The trade back as the event that made the row (for replays from the read model).
    pub fn to_trade(&self) -> TradeReceived {
        TradeReceived {
            symbol: self.symbol.clone(),
            trade_id: self.trade_id,
            price: self.price,
            quantity: self.quantity,
            trade_time: Timestamp(self.trade_time),
            event_time: Timestamp(self.event_time),
            buyer_is_maker: self.buyer_market_maker,
            buyer_order_id: self.buyer_order_id,
            seller_order_id: self.seller_order_id,
            first_trade_id: self.first_trade_id,
            kind: TradeKind::from(self.kind.clone()),
        }
    }
}

/// The `trade_events` read model: where each symbol's trades are not shown.
///
/// The trades themselves are the log's: `trade_events` is a view over `events` (see
/// `migrations/*/0011_trade_events_from_the_log.sql`), and [`crate::query::trades`] reads the
/// market stream along its trade key. Copying each trade into a table of its own cost about 90
/// bytes a trade and a fifth of the projector's time. What this model keeps is the stretches
/// of the log in which a symbol's storing was off (`trade_events_off`), as it meets the
/// switches in log order, with its checkpoint: a trade is shown when it is at or before the
/// checkpoint and in no such stretch, which is what the table held.
#[derive(Debug)]
pub struct TradeEvents {
    /// Storing switches met in the batch, in log order.
    pending: Vec<Switch>,
    switches: Switches,
}

impl Default for TradeEvents {
    fn default() -> Self {
        TradeEvents {
            pending: Vec::new(),
            switches: Switches::new("trade_events"),
        }
    }
}

impl TradeEvents {
    pub fn new() -> Self {
        Self::default()
    }
}

impl ReadModel for TradeEvents {
    fn name(&self) -> &'static str {
        "trade_events"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["trade_events_off"]
    }

    fn apply(&mut self, origin: &Origin, event: &Event) {
        if let Some(switch) = switch_of(StoringTopic::TradeEvents, origin.position, event) {
            self.pending.push(switch);
        }
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<Vec<Update>, ProjectionError>> {
        Box::pin(async move {
            let switches = std::mem::take(&mut self.pending);
            if switches.is_empty() {
                return Ok(Vec::new());
            }
            self.switches.load(tx).await?;
            for switch in switches {
                let was_on = self.switches.is_on(&switch.symbol);
                if switch.on && switch.backfill {
                    // Every earlier trade is shown: no stretch before it is left.
                    off_stretches(
                        tx,
                        "DELETE FROM trade_events_off WHERE symbol = $1 AND from_position < $2",
                        &switch,
                    )
                    .await?;
                } else if switch.on && !was_on {
                    off_stretches(
                        tx,
                        "UPDATE trade_events_off SET until_position = $2 \
                         WHERE symbol = $1 AND until_position IS NULL",
                        &switch,
                    )
                    .await?;
                } else if !switch.on && was_on {
                    off_stretches(
                        tx,
                        "INSERT INTO trade_events_off (symbol, from_position) VALUES ($1, $2)",
                        &switch,
                    )
                    .await?;
                }
                self.switches.set(&switch.symbol, switch.on);
            }
            self.switches.save(tx).await?;
            // Trades are not published one by one: the candles they make are.
            Ok(Vec::new())
        })
    }

    fn forget(&mut self) {
        self.pending.clear();
        self.switches.forget();
    }
}

/// Runs one change of `trade_events_off` for a switch (`$1` its symbol, `$2` its position).
async fn off_stretches(tx: &mut Tx, sql: &str, switch: &Switch) -> Result<(), ProjectionError> {
    on_tx!(tx, conn => {
        sqlx::query(sql)
            .bind(switch.symbol.as_str())
            .bind(switch.position)
            .execute(&mut *conn)
            .await?;
    });
    Ok(())
}

/// Which of a symbol's trades `trade_events` shows: those at or before its checkpoint and in
/// none of the stretches its storing was off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shown {
    checkpoint: i64,
    /// `(from, until)`: positions strictly between are hidden (`until` none: all after).
    off: Vec<(i64, Option<i64>)>,
}

impl Shown {
    pub async fn load(db: &Database, symbol: &Symbol) -> Result<Self, ProjectionError> {
        let (checkpoint, off) = on_pool!(db, pool => {
            let checkpoint: Option<i64> = sqlx::query_scalar(
                "SELECT position FROM projection_checkpoints WHERE name = 'trade_events'",
            )
            .fetch_optional(pool)
            .await?;
            let off: Vec<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT from_position, until_position FROM trade_events_off WHERE symbol = $1",
            )
            .bind(symbol.as_str())
            .fetch_all(pool)
            .await?;
            (checkpoint, off)
        });
        Ok(Shown {
            checkpoint: checkpoint.unwrap_or(0),
            off,
        })
    }

    pub fn contains(&self, position: i64) -> bool {
        position <= self.checkpoint
            && !self
                .off
                .iter()
                .any(|&(from, until)| from < position && until.is_none_or(|u| position < u))
    }
}

crate::eventually_projection!(TradeEvents);
