//! The data warehouse's switches as a read model applies them.
//!
//! `trade_events` and `orders` store a symbol's rows only while its topic is on. Each model
//! follows the `StoringStarted` / `StoringStopped` events of its topic in log order, as it
//! meets them, and keeps what it applied in `storing_switches` (its own rows, keyed by the
//! model's name), written in the same transaction as its checkpoint: a restart, a crash or a
//! rebuild therefore agrees with the log at the checkpoint, and a rebuilt table equals the live
//! one. A backfill (`StoringStarted { backfill }`) is applied at its place in the log by reading
//! the symbol's earlier events from the log, inside the same transaction.

use std::collections::{BTreeMap, HashMap};

use hedgehog_domain::events::StoringTopic;
use hedgehog_domain::{Event, Symbol};
use hedgehog_store::StreamId;

use crate::db::{on_tx, Tx};
use crate::ProjectionError;

/// A change of a switch met in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Switch {
    pub symbol: Symbol,
    pub on: bool,
    pub backfill: bool,
    pub position: i64,
}

/// The switch an event sets for `topic`, if it is one.
pub(crate) fn switch_of(topic: StoringTopic, position: i64, event: &Event) -> Option<Switch> {
    match event {
        Event::StoringStarted(e) if e.topic == topic => Some(Switch {
            symbol: e.symbol.clone(),
            on: true,
            backfill: e.backfill,
            position,
        }),
        Event::StoringStopped(e) if e.topic == topic => Some(Switch {
            symbol: e.symbol.clone(),
            on: false,
            backfill: false,
            position,
        }),
        _ => None,
    }
}

/// One model's switches: loaded from `storing_switches` at its first flush, saved with it.
#[derive(Debug)]
pub(crate) struct Switches {
    model: &'static str,
    loaded: Option<HashMap<Symbol, bool>>,
    changed: BTreeMap<Symbol, bool>,
}

impl Switches {
    pub fn new(model: &'static str) -> Self {
        Switches {
            model,
            loaded: None,
            changed: BTreeMap::new(),
        }
    }

    pub async fn load(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        if self.loaded.is_some() {
            return Ok(());
        }
        let rows: Vec<(String, bool)> = on_tx!(tx, conn => {
            sqlx::query_as("SELECT symbol, stored FROM storing_switches WHERE model = $1")
                .bind(self.model)
                .fetch_all(&mut *conn)
                .await?
        });
        let mut loaded = HashMap::new();
        for (symbol, stored) in rows {
            let symbol = Symbol::parse(&symbol).map_err(|_| ProjectionError::Corrupt {
                table: "storing_switches",
                column: "symbol",
                value: symbol.clone(),
            })?;
            loaded.insert(symbol, stored);
        }
        self.loaded = Some(loaded);
        Ok(())
    }

    /// Whether the symbol's rows are stored (a symbol never switched is).
    pub fn is_on(&self, symbol: &Symbol) -> bool {
        self.loaded
            .as_ref()
            .and_then(|l| l.get(symbol).copied())
            .unwrap_or(true)
    }

    /// Whether any symbol is switched off (the common case: none, and nothing to check).
    pub fn any_off(&self) -> bool {
        self.loaded
            .as_ref()
            .is_some_and(|l| l.values().any(|on| !on))
    }

    pub fn set(&mut self, symbol: &Symbol, on: bool) {
        if let Some(loaded) = &mut self.loaded {
            loaded.insert(symbol.clone(), on);
        }
        self.changed.insert(symbol.clone(), on);
    }

    pub async fn save(&mut self, tx: &mut Tx) -> Result<(), ProjectionError> {
        for (symbol, on) in std::mem::take(&mut self.changed) {
            on_tx!(tx, conn => {
                sqlx::query(
                    "INSERT INTO storing_switches (model, symbol, stored) VALUES ($1, $2, $3) \
                     ON CONFLICT (model, symbol) DO UPDATE SET stored = excluded.stored",
                )
                .bind(self.model)
                .bind(symbol.as_str())
                .bind(on)
                .execute(&mut *conn)
                .await?;
            });
        }
        Ok(())
    }

    pub fn forget(&mut self) {
        self.loaded = None;
        self.changed.clear();
    }
}

/// How many events a backfill reads at a time.
const PAGE: i64 = 5_000;

/// The events of a stream before a position in the log, a page at a time and in order: what
/// a backfill replays, read inside the model's transaction.
pub(crate) struct LogPages {
    stream: StreamId,
    after: i64,
    before: i64,
}

impl LogPages {
    pub fn new(stream: StreamId, before: i64) -> Self {
        LogPages {
            stream,
            after: 0,
            before,
        }
    }

    /// The next page; `None` when the stream holds nothing more before the position.
    pub async fn next(
        &mut self,
        tx: &mut Tx,
    ) -> Result<Option<Vec<(i64, Event)>>, ProjectionError> {
        let rows: Vec<(i64, String, i64, String)> = on_tx!(tx, conn => {
            sqlx::query_as(
                "SELECT position, event_type, CAST(schema_version AS BIGINT), payload FROM events \
                 WHERE stream_id = $1 AND position > $2 AND position < $3 \
                 ORDER BY position LIMIT $4",
            )
            .bind(self.stream.as_str())
            .bind(self.after)
            .bind(self.before)
            .bind(PAGE)
            .fetch_all(&mut *conn)
            .await?
        });
        let Some((last, ..)) = rows.last() else {
            return Ok(None);
        };
        self.after = *last;
        rows.into_iter()
            .map(|(position, event_type, version, payload)| {
                let version = u16::try_from(version).unwrap_or(u16::MAX);
                Event::decode(&event_type, version, &payload)
                    .map(|event| (position, event))
                    .map_err(|e| ProjectionError::Corrupt {
                        table: "events",
                        column: "payload",
                        value: format!("position {position}: {e}"),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }
}
