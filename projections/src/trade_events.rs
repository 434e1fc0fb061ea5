//! `trade_events`: one row per stored market trade, the book's data warehouse table.

use futures::future::BoxFuture;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::types::{Timestamp, TradeKind};
use hedgehog_domain::{Event, Symbol};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::db::{decimal, on_tx, to_i64, unsigned, Tx};
use crate::storing::{switch_of, LogPages, Switch, Switches};
use crate::{Market, Origin, ProjectionError, ReadModel, Update};
use hedgehog_domain::events::StoringTopic;
use hedgehog_store::StreamId;

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

/// The `trade_events` read model.
#[derive(Debug)]
pub struct TradeEvents {
    pending: Vec<TradeRow>,
    /// Storing switches met in the batch, with how many rows came before each.
    switches_at: Vec<(usize, Switch)>,
    switches: Switches,
}

impl Default for TradeEvents {
    fn default() -> Self {
        TradeEvents {
            pending: Vec::new(),
            switches_at: Vec::new(),
            switches: Switches::new("trade_events"),
        }
    }
}

impl TradeEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores the symbol's trades the log holds before `position` (a backfill): both markets,
    /// a page at a time, keeping rows already there.
    async fn backfill(tx: &mut Tx, symbol: &Symbol, position: i64) -> Result<(), ProjectionError> {
        for stream in [StreamId::trades(symbol), StreamId::usdm_trades(symbol)] {
            let Some(market) = stream.market() else {
                continue;
            };
            let mut pages = LogPages::new(stream, position);
            while let Some(page) = pages.next(tx).await? {
                let rows: Vec<TradeRow> = page
                    .iter()
                    .filter_map(|(position, event)| match event {
                        Event::TradeReceived(t) => Some(TradeRow::of(market, *position, t)),
                        _ => None,
                    })
                    .collect();
                insert(tx, &rows, true).await?;
            }
        }
        Ok(())
    }
}

/// Rows per INSERT: 12 parameters each, below SQLite's 32,766.
const INSERT_ROWS: usize = 2_000;

pub(crate) const TRADE_COLUMNS: &str = "market, symbol, trade_id, price, quantity, \
     buyer_order_id, seller_order_id, trade_time, event_time, buyer_market_maker, kind, position, \
     first_trade_id";

impl ReadModel for TradeEvents {
    fn name(&self) -> &'static str {
        "trade_events"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["trade_events"]
    }

    fn apply(&mut self, origin: &Origin, event: &Event) {
        match event {
            Event::TradeReceived(trade) => {
                if let Some(market) = origin.stream.market() {
                    self.pending
                        .push(TradeRow::of(market, origin.position, trade));
                }
            }
            other => {
                if let Some(switch) = switch_of(StoringTopic::TradeEvents, origin.position, other) {
                    self.switches_at.push((self.pending.len(), switch));
                }
            }
        }
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<Vec<Update>, ProjectionError>> {
        Box::pin(async move {
            let rows = std::mem::take(&mut self.pending);
            let switches = std::mem::take(&mut self.switches_at);
            self.switches.load(tx).await?;
            if switches.is_empty() && !self.switches.any_off() {
                // The common case: every symbol stored.
                insert(tx, &rows, false).await?;
                return Ok(Vec::new());
            }
            let mut kept = Vec::with_capacity(rows.len());
            let mut from = 0;
            let ends = switches
                .into_iter()
                .map(|(at, switch)| (at, Some(switch)))
                .chain(std::iter::once((rows.len(), None)));
            for (at, switch) in ends {
                kept.extend(
                    rows[from..at]
                        .iter()
                        .filter(|r| self.switches.is_on(&r.symbol))
                        .cloned(),
                );
                from = at;
                if let Some(switch) = switch {
                    self.switches.set(&switch.symbol, switch.on);
                    if switch.on && switch.backfill {
                        // What came before stays in order: rows kept so far go in first.
                        insert(tx, &std::mem::take(&mut kept), false).await?;
                        Self::backfill(tx, &switch.symbol, switch.position).await?;
                    }
                }
            }
            insert(tx, &kept, false).await?;
            self.switches.save(tx).await?;
            // Trades are not published one by one: the candles they make are.
            Ok(Vec::new())
        })
    }

    fn forget(&mut self) {
        self.pending.clear();
        self.switches_at.clear();
        self.switches.forget();
    }
}

/// Inserts rows in chunks; `keep_existing` skips those already there (a backfill).
async fn insert(
    tx: &mut Tx,
    rows: &[TradeRow],
    keep_existing: bool,
) -> Result<(), ProjectionError> {
    for chunk in rows.chunks(INSERT_ROWS) {
        on_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new(format!(
                "INSERT INTO trade_events ({TRADE_COLUMNS}) "
            ));
            q.push_values(chunk, |mut row, t| {
                row.push_bind(t.market.as_str())
                    .push_bind(t.symbol.as_str())
                    .push_bind(to_i64(t.trade_id))
                    .push_bind(t.price.to_string())
                    .push_bind(t.quantity.to_string())
                    .push_bind(t.buyer_order_id.map(to_i64))
                    .push_bind(t.seller_order_id.map(to_i64))
                    .push_bind(t.trade_time)
                    .push_bind(t.event_time)
                    .push_bind(t.buyer_market_maker)
                    .push_bind(t.kind.as_str())
                    .push_bind(t.position)
                    .push_bind(t.first_trade_id.map(to_i64));
            });
            if keep_existing {
                q.push(" ON CONFLICT (market, symbol, trade_id) DO NOTHING");
            }
            q.build().persistent(chunk.len() == INSERT_ROWS).execute(&mut *conn).await?;
        });
    }
    Ok(())
}

crate::eventually_projection!(TradeEvents);

/// A `trade_events` row as selected with [`TRADE_COLUMNS`].
pub(crate) type Row = (
    String,
    String,
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    i64,
    i64,
    bool,
    String,
    i64,
    Option<i64>,
);

pub(crate) fn from_row(row: Row) -> Result<TradeRow, ProjectionError> {
    let (m, s, id, p, q, b, a, tt, et, maker, kind, position, first) = row;
    let corrupt = |column, value: &str| ProjectionError::Corrupt {
        table: "trade_events",
        column,
        value: value.to_owned(),
    };
    Ok(TradeRow {
        market: m.parse().map_err(|_| corrupt("market", &m))?,
        symbol: Symbol::parse(&s).map_err(|_| corrupt("symbol", &s))?,
        trade_id: unsigned("trade_events", "trade_id", id)?,
        price: decimal("trade_events", "price", &p)?,
        quantity: decimal("trade_events", "quantity", &q)?,
        buyer_order_id: b
            .map(|v| unsigned("trade_events", "buyer_order_id", v))
            .transpose()?,
        seller_order_id: a
            .map(|v| unsigned("trade_events", "seller_order_id", v))
            .transpose()?,
        first_trade_id: first
            .map(|v| unsigned("trade_events", "first_trade_id", v))
            .transpose()?,
        trade_time: tt,
        event_time: et,
        buyer_market_maker: maker,
        kind,
        position,
    })
}
