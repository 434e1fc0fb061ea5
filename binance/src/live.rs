//! Live trading: what a trader does on Binance after it records a decision, and how it learns
//! what happened to its orders.
//!
//! The store stays the source of truth. A trader records `OrderPlaced` first and sends the
//! order after; Binance's answers (a refusal, an immediate fill) and its execution reports
//! come back as the domain's [`Report`]s, which the trader decides like any input. So a crash
//! between recording and sending loses nothing: the next [`reconcile`] finds the recorded
//! order unknown to Binance and sends it then.
//!
//! Invariants:
//! - An order is sent under its client order id, derived from the symbol and our order id, and
//!   is only ever re-sent after Binance said it does not know that id: never placed twice.
//! - Everything that changes the trading stream goes through the domain's `decide_report`,
//!   which takes cumulative quantities: reports seen twice (the stream and REST, or a stream
//!   redelivery) decide nothing the second time.
//! - A ban (HTTP 418) halts the symbol's trading with the ban's words in `TradingStopped`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hedgehog_domain::events::Commission;
use hedgehog_domain::exchange::{ExchangeRules, SymbolRules};
use hedgehog_domain::paper_exchange::client_order_id;
use hedgehog_domain::trading::{Report, TradingState};
use hedgehog_domain::{Event, Symbol, Timestamp};
use rust_decimal::Decimal;
use tokio::sync::{broadcast, watch};

use crate::rest::{MyTrade, NewOrder, Order, OrderRef, OrderStatus, RestClient, RestError};
use crate::user_stream::Feed;

/// Where a live trader's orders go and where their reports come from.
#[derive(Clone)]
pub struct Venue {
    pub rest: Arc<RestClient>,
    /// The user data stream's reports (see [`crate::user_stream`]).
    pub feed: broadcast::Sender<Feed>,
    /// The venue's symbol filters as last read ([`refresh_rules`] keeps them current); a
    /// trader takes its symbol's at every reconciliation.
    pub rules: Arc<watch::Sender<Arc<ExchangeRules>>>,
}

impl Venue {
    pub fn new(rest: RestClient, rules: ExchangeRules) -> Venue {
        Venue {
            rest: Arc::new(rest),
            feed: crate::user_stream::channel(),
            rules: Arc::new(watch::channel(Arc::new(rules)).0),
        }
    }

    /// The symbol's filters as last read from the venue.
    pub fn symbol_rules(&self, symbol: &Symbol) -> Option<SymbolRules> {
        self.rules.borrow().get(symbol).cloned()
    }
}

/// How often a live engine reads the exchange info again: Binance changes filters (tick sizes,
/// minimum notionals) and symbol status from time to time.
pub const RULES_EVERY: Duration = Duration::from_secs(3600);

/// Reads the venue's exchange info every `every` until `shutdown`, publishing the filters and
/// applying its rate limits. A failed read keeps the last filters and is logged.
pub async fn refresh_rules(venue: Venue, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        match venue.rest.exchange_info().await {
            Ok((rules, limits)) => {
                venue.rest.set_rate_limits(&limits);
                tracing::info!(symbols = rules.symbols.len(), "exchange info refreshed");
                venue.rules.send_replace(Arc::new(rules));
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the exchange info failed; keeping the last filters")
            }
        }
    }
}

/// Sends to Binance what newly recorded events ask for, and returns what Binance's answers
/// mean: an order placed is sent, an order cancelled (by a stop, from any process) is
/// cancelled there too.
pub async fn send(rest: &RestClient, events: &[Event]) -> Vec<Report> {
    let mut reports = Vec::new();
    for event in events {
        match event {
            Event::OrderPlaced(placed) => {
                let order = NewOrder {
                    symbol: placed.symbol.clone(),
                    side: placed.side,
                    price: placed.price,
                    quantity: placed.quantity,
                    client_order_id: placed.client_order_id.clone(),
                };
                match rest.place_limit_order(&order).await {
                    Ok(answer) => {
                        tracing::info!(symbol = %placed.symbol, client_order_id = %placed.client_order_id, binance_order_id = answer.order_id, side = %placed.side, price = %placed.price, quantity = %placed.quantity, "order placed on Binance");
                        reports.extend(reports_of(&answer, rest.server_now()));
                    }
                    Err(e) => reports.extend(refused(&e, &placed.client_order_id, rest)),
                }
            }
            Event::OrderCancelled(cancelled) => {
                let id = client_order_id(&cancelled.symbol, cancelled.order_id);
                match rest
                    .cancel_order(&cancelled.symbol, &OrderRef::ClientId(id.clone()))
                    .await
                {
                    Ok(answer) => {
                        tracing::info!(symbol = %cancelled.symbol, client_order_id = %id, "order cancelled on Binance");
                        // It may have filled a little more before the cancel reached it: the
                        // answer's cumulative figures say so, and deciding them records it (as
                        // a fill while the order is open in the log, as a fill after the
                        // cancel once a stop has closed it).
                        if answer.executed_qty > cancelled.executed_quantity {
                            tracing::warn!(
                                symbol = %cancelled.symbol,
                                client_order_id = %id,
                                recorded = %cancelled.executed_quantity,
                                on_binance = %answer.executed_qty,
                                "the order filled more on Binance before the cancel reached it; recording the fill"
                            );
                        }
                        reports.extend(reports_of(&answer, rest.server_now()));
                    }
                    // Already gone there (cancelled by Binance, which is how we may have learnt it).
                    Err(RestError::UnknownOrder { .. }) => {}
                    Err(RestError::Banned { until_ms, .. }) => reports.push(halted(until_ms, rest)),
                    Err(e) => {
                        tracing::warn!(symbol = %cancelled.symbol, client_order_id = %id, error = %e, "cancelling on Binance failed; the next reconciliation retries")
                    }
                }
            }
            _ => {}
        }
    }
    reports
}

/// What a failed placement means: a refusal becomes a rejection; a ban halts; an unknown
/// outcome or a rate limit is left for the next reconciliation, which looks the order up.
fn refused(e: &RestError, client_order_id: &str, rest: &RestClient) -> Option<Report> {
    match e {
        RestError::Banned { until_ms, .. } => Some(halted(*until_ms, rest)),
        e if e.outcome_unknown() || matches!(e, RestError::RateLimited { .. }) => {
            tracing::warn!(client_order_id, error = %e, "placement unresolved; the next reconciliation settles it");
            None
        }
        e => {
            tracing::warn!(client_order_id, error = %e, "Binance refused the order");
            Some(Report::Rejected {
                client_order_id: client_order_id.to_owned(),
                reason: e.to_string(),
                time: Timestamp(rest.server_now()),
            })
        }
    }
}

fn halted(until_ms: i64, rest: &RestClient) -> Report {
    tracing::error!(
        until_ms,
        "Binance banned this IP (HTTP 418): trading halts; start it again once the ban has lifted"
    );
    Report::Halted {
        reason: format!("Binance banned this IP (HTTP 418) until {until_ms} ms since the epoch"),
        time: Timestamp(rest.server_now()),
    }
}

/// What an order as Binance reports it (a new-order, query or cancel answer) says happened:
/// what it executed, then how it ended if it did.
pub fn reports_of(order: &Order, now: i64) -> Vec<Report> {
    let time = Timestamp(
        order
            .transact_time
            .or(order.update_time)
            .or(order.time)
            .unwrap_or(now),
    );
    let client_order_id = order.client_id().to_owned();
    let mut reports = Vec::new();
    if order.executed_qty > Decimal::ZERO {
        // The answer's fills, when it lists them, say what was charged (in one asset).
        let commission = match order.fills.first() {
            Some(first)
                if order
                    .fills
                    .iter()
                    .all(|f| f.commission_asset == first.commission_asset) =>
            {
                Some(Commission {
                    amount: order.fills.iter().map(|f| f.commission).sum(),
                    asset: first.commission_asset.clone(),
                })
            }
            _ => None,
        };
        reports.push(Report::Executed {
            client_order_id: client_order_id.clone(),
            trade_id: order.fills.last().map(|f| f.trade_id),
            cumulative_quantity: order.executed_qty,
            cumulative_quote_quantity: order.cummulative_quote_qty,
            last_quantity: if commission.is_some() {
                order.executed_qty
            } else {
                Decimal::ZERO
            },
            commission,
            commission_price: None,
            time,
        });
    }
    reports.extend(ending(order, time));
    reports
}

/// How an order ended, if it did: cancelled, expired or rejected on Binance.
fn ending(order: &Order, time: Timestamp) -> Option<Report> {
    let client_order_id = order.client_id().to_owned();
    match order.status {
        OrderStatus::Canceled => Some(Report::Cancelled {
            client_order_id,
            reason: "cancelled on Binance".into(),
            time,
        }),
        OrderStatus::Expired | OrderStatus::ExpiredInMatch => Some(Report::Cancelled {
            client_order_id,
            reason: "expired on Binance".into(),
            time,
        }),
        OrderStatus::Rejected => Some(Report::Rejected {
            client_order_id,
            reason: "rejected by Binance".into(),
            time,
        }),
        _ => None,
    }
}

/// What an order's executions (`myTrades`) say, one report per execution in trade order, each
/// with the cumulative quantities up to it and its own commission: the same reports the user
/// data stream would have sent, so that what reconciliation finds is charged exactly (a
/// commission taken in the base asset is then not sold). Then how the order ended, if it did.
pub fn reports_of_trades(order: &Order, trades: &[MyTrade]) -> Vec<Report> {
    let mut trades: Vec<&MyTrade> = trades.iter().collect();
    trades.sort_by_key(|t| t.id);
    let (mut quantity, mut quote) = (Decimal::ZERO, Decimal::ZERO);
    let mut reports: Vec<Report> = trades
        .iter()
        .map(|t| {
            quantity += t.qty;
            quote += t.quote_qty;
            Report::Executed {
                client_order_id: order.client_id().to_owned(),
                trade_id: Some(t.id),
                cumulative_quantity: quantity,
                cumulative_quote_quantity: quote,
                commission: Some(Commission {
                    amount: t.commission,
                    asset: t.commission_asset.clone(),
                }),
                last_quantity: t.qty,
                commission_price: None,
                time: Timestamp(t.time),
            }
        })
        .collect();
    let end = trades.last().map_or(0, |t| t.time);
    reports.extend(ending(order, Timestamp(order.update_time.unwrap_or(end))));
    reports
}

/// Brings the recorded state and Binance's together: each order open in the state is looked
/// up (sent now if Binance never got it), and each order of ours still open on Binance that
/// the state has closed (a stop recorded while the engine was down) is cancelled there.
pub async fn reconcile(
    rest: &RestClient,
    symbol: &Symbol,
    state: &TradingState,
) -> Result<Vec<Report>, RestError> {
    let mut reports = Vec::new();
    let open: Vec<_> = state
        .open_orders()
        .map(|(_, o)| (o.client_order_id.clone(), o.executed))
        .collect();
    for (id, recorded) in &open {
        match rest
            .query_order(symbol, &OrderRef::ClientId(id.clone()))
            .await
        {
            // Executions the log lacks: read them one by one, with their commissions.
            Ok(order) if order.executed_qty > *recorded => {
                match rest.my_trades(symbol, order.order_id).await {
                    Ok(trades)
                        if trades.iter().map(|t| t.qty).sum::<Decimal>() == order.executed_qty =>
                    {
                        reports.extend(reports_of_trades(&order, &trades));
                    }
                    Ok(_) | Err(_) => reports.extend(reports_of(&order, rest.server_now())),
                }
            }
            Ok(order) => reports.extend(reports_of(&order, rest.server_now())),
            Err(RestError::UnknownOrder { .. }) => {
                // Recorded, never sent (a crash in between, or an unresolved placement).
                let Some((_, order)) = state.open_orders().find(|(_, o)| &o.client_order_id == id)
                else {
                    continue;
                };
                let new = NewOrder {
                    symbol: symbol.clone(),
                    side: order.side,
                    price: order.price,
                    quantity: order.quantity,
                    client_order_id: id.clone(),
                };
                tracing::info!(%symbol, client_order_id = %id, "recorded order unknown to Binance; sending it");
                match rest.place_limit_order(&new).await {
                    Ok(answer) => reports.extend(reports_of(&answer, rest.server_now())),
                    Err(e) => reports.extend(refused(&e, id, rest)),
                }
            }
            Err(RestError::Banned { until_ms, .. }) => {
                reports.push(halted(until_ms, rest));
                return Ok(reports);
            }
            Err(e) => return Err(e),
        }
    }
    let ours: HashSet<String> = (1..=state.last_order_id)
        .map(|n| client_order_id(symbol, n))
        .collect();
    let open: HashSet<&String> = open.iter().map(|(id, _)| id).collect();
    for order in rest.open_orders(symbol).await? {
        if ours.contains(&order.client_order_id) && !open.contains(&order.client_order_id) {
            tracing::info!(%symbol, client_order_id = %order.client_order_id, "open on Binance, closed in the log; cancelling it there");
            match rest
                .cancel_order(symbol, &OrderRef::ClientId(order.client_order_id.clone()))
                .await
            {
                // What it executed before the cancel is recorded (a fill after the cancel).
                Ok(answer) => reports.extend(reports_of(&answer, rest.server_now())),
                Err(RestError::UnknownOrder { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(reports)
}
