//! The streaming switches drive a running streamer: `hedgehog stream` without `--symbol`
//! follows `hedgehog streaming start|stop` issued from other processes, and resumes the symbols
//! switched on when it starts (the book's autostart).

use crate::common;

use std::time::Duration;

use common::processes::{hedgehog, number, ok, start_stream, stop, wait_for, Replay};
use common::{symbol, TestDb};
use hedgehog_store::StreamId;

on_both_backends!(
    switches_drive_a_running_streamer,
    a_switch_that_changes_nothing_here_keeps_the_connection
);

mod cases {
    use super::*;

    pub async fn switches_drive_a_running_streamer(db: &TestDb) {
        // Unknown symbols are refused, naming the symbol and where the list came from.
        let out = hedgehog(db, &["streaming", "start", "NOPEUSDT"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("unknown symbol NOPEUSDT") && err.contains("exchange info"),
            "{err}"
        );

        let mut replay =
            Replay::start(&["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"], 0);
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        let store = db.open().await;

        // Nothing is switched on: the streamer waits and stores nothing.
        let mut streamer = start_stream(db, &replay.url, &[]);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(store.stream_version(&stream).await.unwrap(), 0);

        // Switched on from another process: it reacts and streams everything.
        let said = ok(hedgehog(db, &["streaming", "start", "btcusdt"]));
        assert_eq!(said.trim(), "streaming of BTCUSDT is now on");
        let said = ok(hedgehog(db, &["streaming", "start", "BTCUSDT"]));
        assert_eq!(
            said.trim(),
            "streaming of BTCUSDT was already on; nothing changed"
        );
        wait_for(db, &stream, 19_904, &mut replay, &mut streamer).await;
        let summary = stop(streamer);
        assert_eq!(number(&summary, "stored"), 19_904, "{summary}");

        // Restarted, it resumes the symbol by itself and stores nothing twice.
        let streamer = start_stream(db, &replay.url, &[]);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let summary = stop(streamer);
        assert_eq!(number(&summary, "connections"), 1, "autostarted: {summary}");
        assert_eq!(number(&summary, "stored"), 0, "{summary}");
        assert_eq!(store.stream_version(&stream).await.unwrap(), 19_904);

        let status = ok(hedgehog(db, &["streaming", "status"]));
        assert!(status.contains("BTCUSDT              on"), "{status}");
        let said = ok(hedgehog(db, &["streaming", "stop", "BTCUSDT"]));
        assert_eq!(said.trim(), "streaming of BTCUSDT is now off");

        // Switched off: a new streamer does not connect at all.
        let streamer = start_stream(db, &replay.url, &[]);
        tokio::time::sleep(Duration::from_millis(800)).await;
        let summary = stop(streamer);
        assert_eq!(number(&summary, "connections"), 0, "{summary}");
    }

    pub async fn a_switch_that_changes_nothing_here_keeps_the_connection(db: &TestDb) {
        use std::collections::BTreeSet;
        use std::sync::atomic::Ordering;
        use std::sync::Arc;

        use hedgehog_ingest::streamer::{StreamerOptions, StreamerStats};
        use tokio::sync::watch;

        ok(hedgehog(db, &["streaming", "start", "BTCUSDT"]));
        // At the recording's pace: the connection stays open for the whole case.
        let replay = Replay::launch(&["spot_btcusdt_20240808.gz"], &["--speed", "1"]);
        let store = db.open().await;
        let stats = Arc::new(StreamerStats::default());
        // A node of a cluster owning BTCUSDT only.
        let (_owned_tx, owned) = watch::channel(BTreeSet::from([symbol("BTCUSDT")]));
        let (shutdown_tx, shutdown) = watch::channel(false);
        let follower = tokio::spawn(hedgehog_engine::streaming::follow(
            store.clone(),
            StreamerOptions::new(replay.url.clone(), Vec::new()),
            Arc::clone(&stats),
            Some(owned),
            shutdown,
        ));
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        let started = std::time::Instant::now();
        while store.stream_version(&stream).await.unwrap() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "nothing streamed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(stats.connections.load(Ordering::Relaxed), 1);

        // Another node's symbol switched on: the switches moved, what this node streams did
        // not. The follower re-plans (it cannot tell before reading) and keeps its connection.
        ok(hedgehog(db, &["streaming", "start", "ETHUSDT"]));
        let before = store.stream_version(&stream).await.unwrap();
        let started = std::time::Instant::now();
        while store.stream_version(&stream).await.unwrap() == before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "streaming stopped"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Long enough for the follower to have heard of the switch on either backend (a
        // subscriber's poll is the safety net: 1 s on PostgreSQL).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            stats.connections.load(Ordering::Relaxed),
            1,
            "a re-plan that streams the same symbols reconnected"
        );
        assert_eq!(stats.missing.load(Ordering::Relaxed), 0);

        shutdown_tx.send(true).unwrap();
        follower.await.unwrap().unwrap();
    }
}
