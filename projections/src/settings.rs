//! `trading_settings` and `streaming_settings`: the current status and settings of each symbol,
//! as the book's `settings` table kept them.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use hedgehog_domain::settings::TradingSettings;
use hedgehog_domain::{Event, Symbol};
use serde::Serialize;

use crate::db::{decimal, on_tx, Tx};
use crate::{Origin, ProjectionError, ReadModel, Update};

/// A row of `trading_settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradingSettingsRow {
    pub symbol: Symbol,
    /// off, on or shutdown.
    pub status: String,
    #[serde(flatten)]
    pub settings: TradingSettings,
    pub position: i64,
}

/// A row of `streaming_settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamingSettingsRow {
    pub symbol: Symbol,
    /// on or off.
    pub status: String,
    pub position: i64,
}

/// The row a trading event leaves behind (`None` before the symbol's first such event).
pub fn apply_trading_event(
    row: Option<TradingSettingsRow>,
    position: i64,
    event: &Event,
) -> Option<TradingSettingsRow> {
    let status = event.trading_status().map(|s| s.to_string());
    let settings = match event {
        Event::SettingsUpdated(e) => Some(e.settings.clone()),
        _ => None,
    };
    if status.is_none() && settings.is_none() {
        return row;
    }
    let mut row = row.unwrap_or_else(|| TradingSettingsRow {
        symbol: event.symbol().clone(),
        status: "off".to_owned(),
        settings: TradingSettings::default(),
        position,
    });
    if let Some(status) = status {
        row.status = status;
    }
    if let Some(settings) = settings {
        row.settings = settings;
    }
    row.position = position;
    Some(row)
}

/// The `trading_settings` read model.
#[derive(Debug, Default)]
pub struct TradingSettingsModel {
    pending: BTreeMap<Symbol, Vec<(i64, Event)>>,
}

/// The `streaming_settings` read model.
#[derive(Debug, Default)]
pub struct StreamingSettingsModel {
    pending: BTreeMap<Symbol, (i64, bool)>,
}

impl TradingSettingsModel {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StreamingSettingsModel {
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) const TRADING_COLUMNS: &str = "symbol, status, chunks, budget, buy_down_interval, \
     profit_target, rebuy_interval, fee, position, strategy";

pub(crate) type TradingRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
);

pub(crate) fn trading_from_row(row: TradingRow) -> Result<TradingSettingsRow, ProjectionError> {
    let (s, status, chunks, budget, buy_down, profit, rebuy, fee, position, strategy) = row;
    let t = "trading_settings";
    Ok(TradingSettingsRow {
        symbol: Symbol::parse(&s).map_err(|_| ProjectionError::Corrupt {
            table: t,
            column: "symbol",
            value: s.clone(),
        })?,
        status,
        settings: TradingSettings {
            strategy,
            chunks: u32::try_from(chunks).map_err(|_| ProjectionError::Corrupt {
                table: t,
                column: "chunks",
                value: chunks.to_string(),
            })?,
            budget: decimal(t, "budget", &budget)?,
            buy_down_interval: decimal(t, "buy_down_interval", &buy_down)?,
            profit_target: decimal(t, "profit_target", &profit)?,
            rebuy_interval: decimal(t, "rebuy_interval", &rebuy)?,
            fee: decimal(t, "fee", &fee)?,
        },
        position,
    })
}

impl ReadModel for TradingSettingsModel {
    fn name(&self) -> &'static str {
        "trading_settings"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["trading_settings"]
    }

    fn apply(&mut self, origin: &Origin, event: &Event) {
        if origin.stream.symbol_of("trading").is_none() {
            return;
        }
        if event.trading_status().is_some() || matches!(event, Event::SettingsUpdated(_)) {
            self.pending
                .entry(event.symbol().clone())
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
            let select =
                format!("SELECT {TRADING_COLUMNS} FROM trading_settings WHERE symbol = $1");
            for (symbol, events) in std::mem::take(&mut self.pending) {
                let stored: Option<TradingRow> = on_tx!(tx, conn => {
                    sqlx::query_as(&select)
                        .bind(symbol.as_str())
                        .fetch_optional(&mut *conn)
                        .await?
                });
                let mut row = stored.map(trading_from_row).transpose()?;
                for (position, event) in &events {
                    row = apply_trading_event(row, *position, event);
                }
                let Some(row) = row else { continue };
                let sql = format!(
                    "INSERT INTO trading_settings ({TRADING_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (symbol) DO UPDATE SET status = excluded.status, \
                     chunks = excluded.chunks, budget = excluded.budget, \
                     buy_down_interval = excluded.buy_down_interval, \
                     profit_target = excluded.profit_target, \
                     rebuy_interval = excluded.rebuy_interval, fee = excluded.fee, \
                     position = excluded.position, strategy = excluded.strategy"
                );
                let s = &row.settings;
                on_tx!(tx, conn => {
                    sqlx::query(&sql)
                        .bind(row.symbol.as_str())
                        .bind(row.status.as_str())
                        .bind(i64::from(s.chunks))
                        .bind(s.budget.to_string())
                        .bind(s.buy_down_interval.to_string())
                        .bind(s.profit_target.to_string())
                        .bind(s.rebuy_interval.to_string())
                        .bind(s.fee.to_string())
                        .bind(row.position)
                        .bind(s.strategy.as_str())
                        .execute(&mut *conn)
                        .await?;
                });
                updates.push(Update::TradingSettings(row));
            }
            Ok(updates)
        })
    }

    fn forget(&mut self) {
        self.pending.clear();
    }
}

impl ReadModel for StreamingSettingsModel {
    fn name(&self) -> &'static str {
        "streaming_settings"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["streaming_settings"]
    }

    fn apply(&mut self, origin: &Origin, event: &Event) {
        if origin.stream.symbol_of("streaming").is_none() {
            return;
        }
        let on = match event {
            Event::StreamingStarted(_) => true,
            Event::StreamingStopped(_) => false,
            _ => return,
        };
        self.pending
            .insert(event.symbol().clone(), (origin.position, on));
    }

    fn flush<'a>(
        &'a mut self,
        tx: &'a mut Tx,
    ) -> BoxFuture<'a, Result<Vec<Update>, ProjectionError>> {
        Box::pin(async move {
            let mut updates = Vec::new();
            for (symbol, (position, on)) in std::mem::take(&mut self.pending) {
                let row = StreamingSettingsRow {
                    symbol,
                    status: if on { "on" } else { "off" }.to_owned(),
                    position,
                };
                on_tx!(tx, conn => {
                    sqlx::query(
                        "INSERT INTO streaming_settings (symbol, status, position) \
                         VALUES ($1, $2, $3) ON CONFLICT (symbol) DO UPDATE SET \
                         status = excluded.status, position = excluded.position",
                    )
                    .bind(row.symbol.as_str())
                    .bind(row.status.as_str())
                    .bind(row.position)
                    .execute(&mut *conn)
                    .await?;
                });
                updates.push(Update::StreamingSettings(row));
            }
            Ok(updates)
        })
    }

    fn forget(&mut self) {
        self.pending.clear();
    }
}

crate::eventually_projection!(TradingSettingsModel);
crate::eventually_projection!(StreamingSettingsModel);
