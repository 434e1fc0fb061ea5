//! `orders`: one row per order, upserted by every event about it (the book's `orders` table,
//! plus the position it belongs to and the fees paid). `backtest_orders`: the same for kept
//! backtest runs (`backtest-RUN-SYMBOL` streams), keyed by run as well.

use std::collections::{BTreeMap, HashMap};

use futures::future::BoxFuture;
use hedgehog_domain::{Event, Symbol};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::db::{decimal, on_tx, to_i64, unsigned, Tx};
use crate::storing::{switch_of, LogPages, Switch, Switches};
use crate::{Origin, ProjectionError, ReadModel, Update};
use hedgehog_domain::events::StoringTopic;
use hedgehog_store::StreamId;

/// A row of `orders`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderRow {
    pub symbol: Symbol,
    pub order_id: u64,
    pub client_order_id: String,
    pub position_id: u64,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub time_in_force: String,
    pub price: Decimal,
    pub original_quantity: Decimal,
    pub executed_quantity: Decimal,
    pub cumulative_quote_quantity: Decimal,
    /// NEW, PARTIALLY_FILLED, FILLED or CANCELED, as Binance spells them.
    pub status: String,
    pub fees: Decimal,
    pub fee_asset: Option<String>,
    pub time: i64,
    pub update_time: i64,
    /// Log position of the last event applied to the row.
    pub position: i64,
    /// The kept backtest run it belongs to; none for live orders.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// Applies an order event to the order's row (`None`: not placed yet).
///
/// Pure. Returns false for an event about an order the row does not know (a fill before its
/// placement): a broken log, left for the caller to report; the row is not touched.
pub fn apply_order_event(row: &mut Option<OrderRow>, position: i64, event: &Event) -> bool {
    match (row.as_mut(), event) {
        (_, Event::OrderPlaced(e)) => {
            *row = Some(OrderRow {
                symbol: e.symbol.clone(),
                order_id: e.order_id,
                client_order_id: e.client_order_id.clone(),
                position_id: e.position_id,
                side: e.side.to_string(),
                order_type: e.order_type.as_str().to_owned(),
                time_in_force: e.time_in_force.as_str().to_owned(),
                price: e.price,
                original_quantity: e.quantity,
                executed_quantity: Decimal::ZERO,
                cumulative_quote_quantity: Decimal::ZERO,
                status: "NEW".to_owned(),
                fees: Decimal::ZERO,
                fee_asset: None,
                time: e.time.millis(),
                update_time: e.time.millis(),
                position,
                run_id: None,
            });
            true
        }
        (Some(row), Event::OrderFilled(e)) => {
            row.executed_quantity = e.cumulative_quantity;
            row.cumulative_quote_quantity = e.cumulative_quote_quantity;
            row.status = e.status.as_str().to_owned();
            row.fees += e.fee;
            row.fee_asset = Some(e.fee_asset.clone());
            row.update_time = e.time.millis();
            row.position = position;
            true
        }
        (Some(row), Event::OrderCancelled(e)) => {
            row.executed_quantity = e.executed_quantity;
            row.status = "CANCELED".to_owned();
            row.update_time = e.time.millis();
            row.position = position;
            true
        }
        // A fill that raced a stop's cancel: the order stays cancelled, having executed more.
        (Some(row), Event::OrderFilledAfterCancel(e)) => {
            row.executed_quantity = e.cumulative_quantity;
            row.cumulative_quote_quantity = e.cumulative_quote_quantity;
            row.fees += e.fee;
            row.fee_asset = Some(e.fee_asset.clone());
            row.update_time = e.time.millis();
            row.position = position;
            true
        }
        (
            None,
            Event::OrderFilled(_) | Event::OrderCancelled(_) | Event::OrderFilledAfterCancel(_),
        ) => false,
        _ => true,
    }
}

/// The run id of a kept backtest run's stream, `backtest-RUN-SYMBOL`.
pub fn run_of(stream: &str) -> Option<&str> {
    let (run, symbol) = stream.strip_prefix("backtest-")?.split_once('-')?;
    (!run.is_empty() && !symbol.is_empty()).then_some(run)
}

fn order_key(event: &Event) -> Option<(Symbol, u64)> {
    match event {
        Event::OrderPlaced(e) => Some((e.symbol.clone(), e.order_id)),
        Event::OrderFilled(e) => Some((e.symbol.clone(), e.order_id)),
        Event::OrderCancelled(e) => Some((e.symbol.clone(), e.order_id)),
        Event::OrderFilledAfterCancel(e) => Some((e.symbol.clone(), e.order_id)),
        _ => None,
    }
}

/// The `orders` read model (or, scoped to backtests, `backtest_orders`). Orders are few next to
/// trades, so each batch reads the rows it touches instead of caching them: nothing to go stale.
#[derive(Debug)]
pub struct Orders {
    /// Keyed by run ("" for live orders), symbol and order id.
    pending: BTreeMap<(String, Symbol, u64), Vec<(i64, Event)>>,
    backtests: bool,
    /// Live orders only: the storing switches of the `orders` topic met in the batch, in log
    /// order, and as applied so far.
    switches_met: Vec<Switch>,
    switches: Switches,
}

impl Default for Orders {
    fn default() -> Self {
        Orders {
            pending: BTreeMap::new(),
            backtests: false,
            switches_met: Vec::new(),
            switches: Switches::new("orders"),
        }
    }
}

impl Orders {
    /// Live orders, from `trading-SYMBOL` streams.
    pub fn new() -> Self {
        Self::default()
    }

    /// Orders of kept backtest runs, from `backtest-RUN-SYMBOL` streams.
    pub fn backtests() -> Self {
        Orders {
            backtests: true,
            ..Self::default()
        }
    }

    /// Rebuilds the symbol's rows from its trading stream up to `position` (a backfill): its
    /// rows are deleted, then every order event before `position` is folded again.
    async fn backfill(
        &self,
        tx: &mut Tx,
        symbol: &Symbol,
        position: i64,
    ) -> Result<Vec<OrderRow>, ProjectionError> {
        on_tx!(tx, conn => {
            sqlx::query("DELETE FROM orders WHERE symbol = $1")
                .bind(symbol.as_str())
                .execute(&mut *conn)
                .await?;
        });
        let mut rows: BTreeMap<u64, Option<OrderRow>> = BTreeMap::new();
        let mut pages = LogPages::new(StreamId::trading(symbol), position);
        while let Some(page) = pages.next(tx).await? {
            for (position, event) in &page {
                if let Some((_, order_id)) = order_key(event) {
                    apply_order_event(rows.entry(order_id).or_default(), *position, event);
                }
            }
        }
        let rows: Vec<OrderRow> = rows.into_values().flatten().collect();
        for row in &rows {
            write_order(tx, "orders", row).await?;
        }
        Ok(rows)
    }

    fn table(&self) -> &'static str {
        if self.backtests {
            "backtest_orders"
        } else {
            "orders"
        }
    }
}

pub(crate) const ORDER_COLUMNS: &str = "symbol, order_id, client_order_id, position_id, side, \
     type, time_in_force, price, original_quantity, executed_quantity, \
     cumulative_quote_quantity, status, fees, fee_asset, time, update_time, position";

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    symbol: String,
    order_id: i64,
    client_order_id: String,
    position_id: i64,
    side: String,
    #[sqlx(rename = "type")]
    order_type: String,
    time_in_force: String,
    price: String,
    original_quantity: String,
    executed_quantity: String,
    cumulative_quote_quantity: String,
    status: String,
    fees: String,
    fee_asset: Option<String>,
    time: i64,
    update_time: i64,
    position: i64,
}

pub(crate) fn from_row(row: Row) -> Result<OrderRow, ProjectionError> {
    let Row {
        symbol: s,
        order_id: id,
        client_order_id: client,
        position_id: pos_id,
        side,
        order_type: ty,
        time_in_force: tif,
        price: p,
        original_quantity: oq,
        executed_quantity: eq,
        cumulative_quote_quantity: cq,
        status,
        fees,
        fee_asset: asset,
        time: t,
        update_time: ut,
        position: pos,
    } = row;
    Ok(OrderRow {
        symbol: Symbol::parse(&s).map_err(|_| ProjectionError::Corrupt {
            table: "orders",
            column: "symbol",
            value: s.clone(),
        })?,
        order_id: unsigned("orders", "order_id", id)?,
        client_order_id: client,
        position_id: unsigned("orders", "position_id", pos_id)?,
        side,
        order_type: ty,
        time_in_force: tif,
        price: decimal("orders", "price", &p)?,
        original_quantity: decimal("orders", "original_quantity", &oq)?,
        executed_quantity: decimal("orders", "executed_quantity", &eq)?,
        cumulative_quote_quantity: decimal("orders", "cumulative_quote_quantity", &cq)?,
        status,
        fees: decimal("orders", "fees", &fees)?,
        fee_asset: asset,
        time: t,
        update_time: ut,
        position: pos,
        run_id: None,
    })
}

impl ReadModel for Orders {
    fn name(&self) -> &'static str {
        self.table()
    }

    fn tables(&self) -> &'static [&'static str] {
        if self.backtests {
            &["backtest_orders"]
        } else {
            &["orders"]
        }
    }

    fn apply(&mut self, origin: &Origin, event: &Event) {
        // Live orders come from trading streams only, a kept run's from its own stream.
        let run = if self.backtests {
            match run_of(origin.stream.as_str()) {
                Some(run) => run.to_owned(),
                None => return,
            }
        } else if origin.stream.symbol_of("trading").is_some() {
            String::new()
        } else {
            // The storing switches of live orders come from storing streams.
            if let Some(switch) = switch_of(StoringTopic::Orders, origin.position, event) {
                self.switches_met.push(switch);
            }
            return;
        };
        if let Some((symbol, order_id)) = order_key(event) {
            self.pending
                .entry((run, symbol, order_id))
                .or_default()
                .push((origin.position, event.clone()));
        }
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<Vec<Update>, ProjectionError>> {
        Box::pin(async move {
            let mut updates = Vec::new();
            let table = self.table();
            let sql = format!(
                "SELECT {ORDER_COLUMNS} FROM {table} WHERE symbol = $1 AND order_id = $2{}",
                if self.backtests {
                    " AND run_id = $3"
                } else {
                    ""
                }
            );
            // Live orders are stored while their symbol's topic is on: each event is judged by
            // the switch in force at its position, and after a backfill at P only events
            // past P still apply (the backfill folded those before).
            let switches = std::mem::take(&mut self.switches_met);
            let mut before: HashMap<Symbol, bool> = HashMap::new();
            if !self.backtests {
                self.switches.load(tx).await?;
                for switch in &switches {
                    before
                        .entry(switch.symbol.clone())
                        .or_insert_with(|| self.switches.is_on(&switch.symbol));
                    self.switches.set(&switch.symbol, switch.on);
                    if switch.on && switch.backfill {
                        for row in self.backfill(tx, &switch.symbol, switch.position).await? {
                            updates.push(Update::Order(row));
                        }
                    }
                }
            }
            let filtering = !switches.is_empty() || self.switches.any_off();
            let switches_ref = &self.switches;
            let stored_at = |symbol: &Symbol, position: i64| -> bool {
                let backfilled = switches
                    .iter()
                    .any(|s| &s.symbol == symbol && s.on && s.backfill && position < s.position);
                if backfilled {
                    return false;
                }
                switches
                    .iter()
                    .rev()
                    .find(|s| &s.symbol == symbol && s.position < position)
                    .map(|s| s.on)
                    .or_else(|| before.get(symbol).copied())
                    .unwrap_or_else(|| switches_ref.is_on(symbol))
            };
            for ((run, symbol, order_id), events) in std::mem::take(&mut self.pending) {
                let events: Vec<(i64, Event)> = if filtering && run.is_empty() {
                    events
                        .into_iter()
                        .filter(|(position, _)| stored_at(&symbol, *position))
                        .collect()
                } else {
                    events
                };
                if events.is_empty() {
                    continue;
                }
                let run = (!run.is_empty()).then_some(run);
                let stored: Option<Row> = on_tx!(tx, conn => {
                    let query = sqlx::query_as(&sql)
                        .bind(symbol.as_str())
                        .bind(to_i64(order_id));
                    let query = match &run {
                        Some(run) => query.bind(run.as_str()),
                        None => query,
                    };
                    query.fetch_optional(&mut *conn).await?
                });
                let mut row = stored.map(from_row).transpose()?;
                for (position, event) in &events {
                    if !apply_order_event(&mut row, *position, event) {
                        tracing::warn!(
                            %symbol, order_id, position,
                            "{} for an order that was never placed: skipped",
                            event.event_type()
                        );
                    }
                }
                if let Some(mut row) = row {
                    row.run_id = run;
                    write_order(tx, table, &row).await?;
                    updates.push(Update::Order(row));
                }
            }
            if !self.backtests {
                self.switches.save(tx).await?;
            }
            Ok(updates)
        })
    }

    fn forget(&mut self) {
        self.pending.clear();
        self.switches_met.clear();
        self.switches.forget();
    }
}

crate::eventually_projection!(Orders);

async fn write_order(tx: &mut Tx, table: &str, o: &OrderRow) -> Result<(), ProjectionError> {
    let (run_column, run_value, run_key) = match o.run_id {
        Some(_) => (", run_id", ", $18", "run_id, "),
        None => ("", "", ""),
    };
    let sql = format!(
        "INSERT INTO {table} ({ORDER_COLUMNS}{run_column}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17{run_value}) \
         ON CONFLICT ({run_key}symbol, order_id) DO UPDATE SET \
         executed_quantity = excluded.executed_quantity, \
         cumulative_quote_quantity = excluded.cumulative_quote_quantity, \
         status = excluded.status, fees = excluded.fees, fee_asset = excluded.fee_asset, \
         update_time = excluded.update_time, position = excluded.position"
    );
    on_tx!(tx, conn => {
        let query = sqlx::query(&sql)
            .bind(o.symbol.as_str())
            .bind(to_i64(o.order_id))
            .bind(o.client_order_id.as_str())
            .bind(to_i64(o.position_id))
            .bind(o.side.as_str())
            .bind(o.order_type.as_str())
            .bind(o.time_in_force.as_str())
            .bind(o.price.to_string())
            .bind(o.original_quantity.to_string())
            .bind(o.executed_quantity.to_string())
            .bind(o.cumulative_quote_quantity.to_string())
            .bind(o.status.as_str())
            .bind(o.fees.to_string())
            .bind(o.fee_asset.as_deref())
            .bind(o.time)
            .bind(o.update_time)
            .bind(o.position);
        let query = match &o.run_id {
            Some(run) => query.bind(run.as_str()),
            None => query,
        };
        query.execute(&mut *conn).await?;
    });
    Ok(())
}
