//! The live path offline: the replay server plays real recordings with forced disconnects and
//! the streamer stores every trade exactly once. Both are the real binary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::processes::{number, start_streamer, stop, wait_for, Replay, WS};
use common::{symbol, TestDb};
use hedgehog::store::StreamId;

on_both_backends!(
    streams_every_trade_once_across_forced_disconnects,
    a_gap_after_what_is_stored_is_reported,
);

mod cases {
    use super::*;

    pub async fn streams_every_trade_once_across_forced_disconnects(db: &TestDb) {
        let mut replay = Replay::start(
            &["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"],
            3_000,
        );
        let mut streamer = start_streamer(db, &replay.url);
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        wait_for(db, &stream, 19_904, &mut replay, &mut streamer).await;
        // Give a wrongly repeated trade the time to show up before stopping.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let summary = stop(streamer);

        let store = db.open().await;
        let events = store.read_stream_to_end(&stream).await.unwrap();
        assert_eq!(events.len(), 19_904, "{summary}");
        let ids: Vec<u64> = events.iter().map(|e| e.event.trade_id().unwrap()).collect();
        let first = ids[0];
        assert_eq!(
            ids,
            (first..first + 19_904).collect::<Vec<_>>(),
            "each trade once, in id order"
        );
        assert!(
            number(&summary, "connections") >= 6,
            "the connection was cut and resumed: {summary}"
        );
        assert!(
            number(&summary, "duplicates") > 0,
            "resumed streams repeat trades: {summary}"
        );
        assert_eq!(number(&summary, "gaps"), 0, "{summary}");
        assert_eq!(number(&summary, "stored"), 19_904, "{summary}");
    }

    pub async fn a_gap_after_what_is_stored_is_reported(db: &TestDb) {
        // What is stored ends early in the 2024-08-08 recording...
        let out = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .args([
                "--database-url",
                &db.url,
                "import",
                "trades",
                &format!("{WS}/spot_btcusdt_20240808.head300.gz"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        let stored = store.read_stream_to_end(&stream).await.unwrap();
        let last = stored.last().unwrap().event.trade_id().unwrap();

        // ...and the stream resumes with the 2024-08-09 one: everything between is missing.
        let mut replay = Replay::start(&["spot_btcusdt_20240809.gz"], 0);
        let mut streamer = start_streamer(db, &replay.url);
        wait_for(
            db,
            &stream,
            stored.len() as i64 + 10_147,
            &mut replay,
            &mut streamer,
        )
        .await;
        let summary = stop(streamer);
        let next = store
            .read_stream(&stream, stored.len() as i64 + 1, 1)
            .await
            .unwrap()[0]
            .event
            .trade_id()
            .unwrap();
        assert!(next > last + 1);
        assert_eq!(number(&summary, "gaps"), 1, "{summary}");
        assert_eq!(
            number(&summary, "gaps 1"),
            next - last - 1,
            "the hole's size is reported: {summary}"
        );
    }
}

/// Binance pings every 20 s and drops a client that does not answer within a minute: the
/// streamer must echo the ping's payload in a pong while it waits for trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamer_answers_pings() {
    use futures::{SinkExt, StreamExt};
    use hedgehog::streamer::{self, StreamerOptions, StreamerStats};
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
        ws.send(Message::Ping(b"binance-ping-1"[..].into()))
            .await
            .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(Message::Pong(payload))) => return payload.to_vec(),
                Some(Ok(_)) => continue,
                other => panic!("no pong: {other:?}"),
            }
        }
    });

    let db = TestDb::sqlite();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = StreamerOptions::new(url, vec![symbol("BTCUSDT")]);
    let stats = std::sync::Arc::new(StreamerStats::default());
    let running = tokio::spawn(streamer::run(db.open().await, options, stats, stopped));
    let pong = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("a pong within 10 s")
        .unwrap();
    assert_eq!(pong, b"binance-ping-1");
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}
