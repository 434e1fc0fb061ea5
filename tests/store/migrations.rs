//! Databases written by older versions open with every event and every row they held: a store
//! is built at an earlier migration, filled as that version filled it, then opened by this one.

use std::borrow::Cow;

use crate::common;

use common::{symbol, trade, Backend, Bind, TestDb};
use hedgehog_domain::events::{StoringStarted, StoringStopped, StoringTopic};
use hedgehog_domain::Event;
use hedgehog_projections::query::{self, Window};
use hedgehog_projections::{Market, Projector};
use hedgehog_store::{Store, StreamId};
use uuid::Uuid;

on_both_backends!(
    trade_events_becomes_a_view_showing_what_the_table_held,
    a_database_of_a_newer_build_is_refused_naming_both_versions
);

/// Applies the first `n` migrations, as a build that had only those did.
async fn migrate_to(db: &TestDb, n: usize) {
    macro_rules! run_on {
        ($conn:ty, $migrator:expr) => {{
            use sqlx::Connection;
            let migrator = $migrator;
            let old = sqlx::migrate::Migrator {
                migrations: Cow::Owned(migrator.migrations[..n].to_vec()),
                ..migrator
            };
            let mut c = <$conn>::connect(&db.url).await.unwrap();
            old.run(&mut c).await.unwrap();
        }};
    }
    match db.backend {
        Backend::Sqlite => {
            use sqlx::ConnectOptions;
            use std::str::FromStr;
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)
                .unwrap()
                .create_if_missing(true);
            drop(options.connect().await.unwrap());
            run_on!(sqlx::SqliteConnection, sqlx::migrate!("migrations/sqlite"))
        }
        Backend::Postgres => {
            run_on!(sqlx::PgConnection, sqlx::migrate!("migrations/postgres"))
        }
    }
}

/// Stores an event at `position` as version `version` of `stream`, past the store, as the
/// store of schema version `schema` wrote it.
async fn insert_event(
    db: &TestDb,
    position: i64,
    stream: &StreamId,
    version: i64,
    event: Event,
    schema: i64,
) {
    let payload = if schema == 1 {
        event.encode().unwrap()
    } else {
        event.encode_stored().unwrap()
    };
    let trade_id = event.trade_id().map(|id| id as i64);
    db.execute_with(
        "INSERT INTO events (position, event_id, stream_id, stream_version, event_type, \
         schema_version, payload, recorded_at, trade_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 1700000000000, $8)",
        &[
            Bind::Int(position),
            Bind::Id(Uuid::now_v7()),
            Bind::Text(stream.as_str()),
            Bind::Int(version),
            Bind::Text(event.event_type()),
            Bind::Int(schema),
            Bind::Text(&payload),
            trade_id.map_or(Bind::Null, Bind::Int),
        ],
    )
    .await;
}

fn stopped(sym: &str, topic: StoringTopic) -> Event {
    StoringStopped {
        symbol: symbol(sym),
        topic,
    }
    .into()
}

fn started(sym: &str, backfill: bool) -> Event {
    StoringStarted {
        symbol: symbol(sym),
        topic: StoringTopic::TradeEvents,
        backfill,
    }
    .into()
}

async fn trade_ids(store: &Store, market: Market, sym: &str) -> Vec<u64> {
    query::trades(store, market, &symbol(sym), Window::default(), None, 1_000)
        .await
        .unwrap()
        .iter()
        .map(|t| t.trade_id)
        .collect()
}

mod cases {
    use super::*;

    /// Migration 11 drops the `trade_events` table for a view over the log. A database whose
    /// table was projected up to a checkpoint, with storing switched off, on, off, back on
    /// with a backfill and off again, shows the very rows the table held, and the projection
    /// goes on from its checkpoint as if nothing had changed.
    pub async fn trade_events_becomes_a_view_showing_what_the_table_held(db: &TestDb) {
        migrate_to(db, 10).await;
        let ada = StreamId::trades(&symbol("ADAUSDT"));
        let ada_usdm = StreamId::usdm_trades(&symbol("ADAUSDT"));
        let btc = StreamId::trades(&symbol("BTCUSDT"));
        let storing = StreamId::storing(&symbol("ADAUSDT"));
        let t = |sym: &str, id: u64| Event::from(trade(sym, id));
        // (position, stream, version, event, schema version)
        let log = [
            (1, &ada, 1, t("ADAUSDT", 1), 1),
            (2, &ada, 2, t("ADAUSDT", 2), 2),
            (
                3,
                &storing,
                1,
                stopped("ADAUSDT", StoringTopic::TradeEvents),
                1,
            ),
            (4, &ada, 3, t("ADAUSDT", 3), 2),
            (5, &storing, 2, stopped("ADAUSDT", StoringTopic::Orders), 1),
            (6, &storing, 3, started("ADAUSDT", false), 1),
            (7, &ada, 4, t("ADAUSDT", 4), 2),
            (
                8,
                &storing,
                4,
                stopped("ADAUSDT", StoringTopic::TradeEvents),
                1,
            ),
            (9, &ada, 5, t("ADAUSDT", 5), 2),
            (10, &storing, 5, started("ADAUSDT", true), 1),
            (
                11,
                &storing,
                6,
                stopped("ADAUSDT", StoringTopic::TradeEvents),
                1,
            ),
            (12, &ada, 6, t("ADAUSDT", 6), 2),
            (
                13,
                &storing,
                7,
                stopped("ADAUSDT", StoringTopic::TradeEvents),
                1,
            ),
            (14, &ada, 7, t("ADAUSDT", 7), 2),
            (15, &ada_usdm, 1, t("ADAUSDT", 1), 2),
            (16, &btc, 1, t("BTCUSDT", 1), 2),
            // After the checkpoint: what the projection has not applied yet.
            (17, &storing, 8, started("ADAUSDT", false), 1),
            (18, &ada, 8, t("ADAUSDT", 8), 2),
        ];
        for (position, stream, version, event, schema) in log.iter().cloned() {
            insert_event(db, position, stream, version, event, schema).await;
        }
        db.execute(
            "INSERT INTO streams (stream_id, version, last_position) \
             SELECT stream_id, MAX(stream_version), MAX(position) FROM events GROUP BY stream_id",
        )
        .await;
        // What the table held at checkpoint 16: ADAUSDT's spot trades 1 to 5 (3 and 5 came
        // back with the backfill at 10), none of its later or USD-M ones, and BTCUSDT's.
        for (position, stream, _, event, _) in &log[..16] {
            let Event::TradeReceived(t) = event else {
                continue;
            };
            if **stream == ada_usdm || (**stream == ada && *position > 10) {
                continue;
            }
            db.execute_with(
                "INSERT INTO trade_events (market, symbol, trade_id, price, quantity, \
                 buyer_order_id, seller_order_id, trade_time, event_time, buyer_market_maker, \
                 kind, position, first_trade_id) \
                 VALUES ('spot', $1, $2, $3, $4, $5, NULL, $6, $7, $8 = 1, 'MARKET', $9, NULL)",
                &[
                    Bind::Text(t.symbol.as_str()),
                    Bind::Int(t.trade_id as i64),
                    Bind::Text(&t.price.to_string()),
                    Bind::Text(&t.quantity.to_string()),
                    Bind::Int(t.buyer_order_id.unwrap() as i64),
                    Bind::Int(t.trade_time.millis()),
                    Bind::Int(t.event_time.millis()),
                    Bind::Int(i64::from(t.buyer_is_maker)),
                    Bind::Int(*position),
                ],
            )
            .await;
        }
        db.execute(
            "INSERT INTO projection_checkpoints (name, position, generation, updated_at) \
             VALUES ('trade_events', 16, 0, 0)",
        )
        .await;
        db.execute(
            "INSERT INTO storing_switches (model, symbol, stored) VALUES ('trade_events', 'ADAUSDT', 1 = 0)",
        )
        .await;
        let before = crate::projections::tables(db).await["trade_events"].clone();
        assert_eq!(before.len(), 6, "{before:?}");

        let store = db.open().await;
        let after = crate::projections::tables(db).await["trade_events"].clone();
        assert_eq!(after, before, "the view shows what the table held");
        assert_eq!(
            trade_ids(&store, Market::Spot, "ADAUSDT").await,
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            trade_ids(&store, Market::Usdm, "ADAUSDT").await,
            [] as [u64; 0]
        );
        assert_eq!(trade_ids(&store, Market::Spot, "BTCUSDT").await, [1]);

        // The projection goes on from 16: storing is on again from 17.
        let mut projector = Projector::new(store.clone());
        projector.catch_up().await.unwrap();
        assert_eq!(
            trade_ids(&store, Market::Spot, "ADAUSDT").await,
            [1, 2, 3, 4, 5, 8]
        );
        assert_eq!(
            trade_ids(&store, Market::Usdm, "ADAUSDT").await,
            [] as [u64; 0]
        );
        let live = crate::projections::tables(db).await;
        assert_eq!(live["trade_events"].len(), 7);

        // And a rebuild from position 0 agrees.
        projector.rebuild(|_, _| {}).await.unwrap();
        assert_eq!(crate::projections::tables(db).await, live);
    }

    /// A database a newer build migrated (its `_sqlx_migrations` holds a version this build
    /// lacks) is refused with both versions and what to do, and is left as it was.
    pub async fn a_database_of_a_newer_build_is_refused_naming_both_versions(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        store
            .append(
                &stream,
                hedgehog_store::ExpectedVersion::Any,
                common::trades("ADAUSDT", 1..4),
            )
            .await
            .unwrap();
        drop(store);
        db.execute_with(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (99, 'from a newer build', 1 = 1, $1, 0)",
            &[Bind::Bytes(&[0u8; 48])],
        )
        .await;
        let Err(err) = Store::open(&db.url).await else {
            panic!("a database of a newer build was opened");
        };
        let message = err.to_string();
        assert!(message.contains("at version 99"), "{message}");
        assert!(message.contains("newer Hedgehog"), "{message}");
        let known = match db.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").iter().count(),
            Backend::Postgres => sqlx::migrate!("migrations/postgres").iter().count(),
        };
        assert!(
            message.contains(&format!("versions up to {known}")),
            "{message}"
        );
        assert!(message.contains("Run the newer hedgehog"), "{message}");
        // Nothing was touched: with the newer build's row gone, this build opens it as it was.
        db.execute("DELETE FROM _sqlx_migrations WHERE version = 99")
            .await;
        let store = db.open().await;
        assert_eq!(store.stream_version(&stream).await.unwrap(), 3);
    }
}
