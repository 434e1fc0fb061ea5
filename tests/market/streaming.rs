//! The streaming switches drive a running streamer: `hedgehog stream` without `--symbol`
//! follows `hedgehog streaming start|stop` issued from other processes, and resumes the symbols
//! switched on when it starts (the book's autostart).

use crate::common;

use std::time::Duration;

use common::processes::{hedgehog, number, ok, start_stream, stop, wait_for, Replay};
use common::{symbol, TestDb};
use hedgehog_store::StreamId;

on_both_backends!(switches_drive_a_running_streamer);

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
}
