//! The trading command API through the real binary, with `hedgehog run` as a separate process:
//! refusals exit non-zero and say what was wrong; commands issued while the engine runs reach
//! it through the store; a restart decides nothing twice.

use crate::common;

use std::time::{Duration, Instant};

use common::processes::{hedgehog, ok, refused, spawn, terminate, Running};
use common::{symbol, TestDb};
use hedgehog_store::StreamId;

on_both_backends!(commands_drive_a_running_engine);

/// The engine without HTTP. Nothing listens at its feed's address; no symbol streams, so
/// nothing connects.
fn start_engine(db: &TestDb) -> Running {
    spawn(
        db,
        &["run", "--no-http", "--binance-ws-url", "ws://127.0.0.1:9"],
    )
}

mod cases {
    use super::*;

    pub async fn commands_drive_a_running_engine(db: &TestDb) {
        // Refusals name what is wrong and exit non-zero, writing nothing.
        let err = refused(hedgehog(
            db,
            &["settings", "set", "ADAUSDT", "--chunks", "0"],
        ));
        assert!(
            err.contains("chunks") && err.contains("at least 1"),
            "{err}"
        );
        let err = refused(hedgehog(
            db,
            &["settings", "set", "ADAUSDT", "--budget", "-5"],
        ));
        assert!(err.contains("budget") && err.contains("-5"), "{err}");
        let err = refused(hedgehog(
            db,
            &["settings", "set", "ADAUSDT", "--budget", "20"],
        ));
        assert!(
            err.contains("20 / 5 = 4 USDT") && err.contains("minimum order value (5 USDT)"),
            "{err}"
        );
        let err = refused(hedgehog(db, &["trading", "start", "NOPEUSDT"]));
        assert!(err.contains("unknown symbol NOPEUSDT"), "{err}");
        let err = refused(hedgehog(db, &["settings", "set", "ADAUSDT"]));
        assert!(err.contains("nothing to set"), "{err}");
        let err = refused(hedgehog(
            db,
            &["settings", "set", "ADAUSDT", "--strategy", "grid"],
        ));
        assert!(
            err.contains("unknown strategy `grid`") && err.contains("knows naive"),
            "{err}"
        );
        let err = refused(hedgehog(
            db,
            &["settings", "set", "ADAUSDT", "--strategy", "Grid Bot"],
        ));
        assert!(err.contains("invalid setting `strategy`"), "{err}");
        let store = db.open().await;
        assert_eq!(
            store.head_position().await.unwrap(),
            0,
            "refusals write nothing"
        );

        // Defaults are the book's.
        let shown = ok(hedgehog(db, &["settings", "show", "ADAUSDT"]));
        assert!(
            shown.contains("strategy           naive")
                && shown.contains("chunks             5")
                && shown.contains("budget             1000"),
            "{shown}"
        );

        // The engine runs first, with nothing to trade; what follows reaches it via the store.
        let engine = start_engine(db);
        let out = ok(hedgehog(
            db,
            &[
                "settings",
                "set",
                "ADAUSDT",
                "--chunks",
                "5",
                "--budget",
                "100",
                "--buy-down-interval",
                "0.0001",
                "--profit-target",
                "0.0001",
                "--fee",
                "0.0002",
            ],
        ));
        assert!(
            out.contains("positions opened from now on use these settings"),
            "{out}"
        );
        let out = ok(hedgehog(db, &["trading", "start", "ADAUSDT"]));
        assert!(out.contains("trading of ADAUSDT is now on"), "{out}");
        let out = ok(hedgehog(db, &["trading", "start", "ADAUSDT"]));
        assert!(out.contains("already on; nothing changed"), "{out}");
        let file = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ADAUSDT-2019-06-03.head2000.csv.gz"
        );
        ok(hedgehog(
            db,
            &["import", "trades", file, "--symbol", "ADAUSDT"],
        ));

        // The engine decides on the imported trades: positions open, orders fill.
        let trading = StreamId::trading(&symbol("ADAUSDT"));
        let started = Instant::now();
        loop {
            let events = store.read_stream_to_end(&trading).await.unwrap();
            if events
                .iter()
                .any(|e| e.event.event_type() == "PositionClosed")
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the engine decided nothing: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Wait until it has gone through every trade (nothing new for a while).
        let mut version = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(700)).await;
            let now = store.stream_version(&trading).await.unwrap();
            if now == version {
                break;
            }
            version = now;
        }
        let status = ok(hedgehog(db, &["trading", "status", "ADAUSDT"]));
        assert!(status.contains("ADAUSDT      on"), "{status}");

        // A restart while trading is on resumes the symbol (autostart) and decides nothing
        // twice: every trade already decided stays decided.
        terminate(engine);
        let engine = start_engine(db);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(store.stream_version(&trading).await.unwrap(), version);

        // Stop cancels the open orders and reports what was bought and not sold.
        let (state, _) = hedgehog_engine::trading::state(&store, &symbol("ADAUSDT"))
            .await
            .unwrap();
        let open_orders = state.open_orders().count();
        assert!(
            open_orders > 0,
            "the scenario leaves orders open: {state:?}"
        );
        let out = ok(hedgehog(db, &["trading", "stop", "ADAUSDT"]));
        assert_eq!(out.matches("cancelled ").count(), open_orders, "{out}");
        assert_eq!(
            out.matches("left unsold: position").count(),
            state.unsold().len(),
            "{out}"
        );
        assert!(out.contains("trading of ADAUSDT is now off"), "{out}");
        let out = ok(hedgehog(db, &["trading", "stop", "ADAUSDT"]));
        assert!(out.contains("already off; nothing changed"), "{out}");
        let out = ok(hedgehog(db, &["trading", "shutdown", "ADAUSDT"]));
        assert!(out.contains("off; nothing to shut down"), "{out}");
        terminate(engine);

        // And after the stop, a restart finds everything as it was.
        let before = store.stream_version(&trading).await.unwrap();
        let engine = start_engine(db);
        tokio::time::sleep(Duration::from_secs(2)).await;
        terminate(engine);
        assert_eq!(store.stream_version(&trading).await.unwrap(), before);
        let status = ok(hedgehog(db, &["trading", "status"]));
        assert!(status.contains("ADAUSDT      off"), "{status}");
    }
}
