//! The live path offline: the replay server plays real recordings with forced disconnects and
//! the streamer stores every trade exactly once, and fills gaps from a mock of Binance's REST.
//! The replay server and the streamer are the real binary.

use crate::common;
use crate::common::simulated_binance;

use std::path::PathBuf;
use std::time::Duration;

use common::processes::{
    hedgehog, number, ok, spawn_with_env, start_streamer, stop, wait_for, Replay, Running, WS,
};
use common::{symbol, TestDb};
use hedgehog_ingest::import::{read_trades, ImportOptions};
use hedgehog_store::{RecordedEvent, StreamId};
use simulated_binance::{Scripted, SimBinance};

on_both_backends!(
    streams_every_trade_once_across_forced_disconnects,
    a_gap_after_what_is_stored_is_reported,
    a_gap_is_filled_from_rest_in_id_order,
    a_gap_beyond_the_backfill_limit_is_filled_from_its_start,
    a_gap_rest_refuses_to_fill_stays_reported,
);

/// Trades in the 2024-08-08 recording: it and the 2024-08-09 one follow on without a gap.
const DAY_ONE: i64 = 19_904 - DAY_TWO;
/// Trades in the 2024-08-09 recording.
const DAY_TWO: i64 = 10_147;
/// Trades in the first 300 lines of the 2024-08-08 recording (the rest are other streams'
/// frames), imported before streaming.
const HEAD: i64 = 56;

/// Stores the first 300 lines of the 2024-08-08 recording ([`HEAD`] trades); returns them.
async fn import_head(db: &TestDb) -> Vec<RecordedEvent> {
    ok(hedgehog(
        db,
        &[
            "import",
            "trades",
            &format!("{WS}/spot_btcusdt_20240808.head300.gz"),
        ],
    ));
    let stored = db
        .open()
        .await
        .read_stream_to_end(&StreamId::trades(&symbol("BTCUSDT")))
        .await
        .unwrap();
    assert_eq!(stored.len() as i64, HEAD);
    stored
}

/// A mock Binance REST whose `historicalTrades` knows the whole 2024-08-08 recording.
async fn rest_with_day_one() -> SimBinance {
    let file = PathBuf::from(format!("{WS}/spot_btcusdt_20240808.gz"));
    let trades = read_trades(&[file], &ImportOptions::default()).unwrap();
    assert_eq!(trades.len() as i64, DAY_ONE);
    let mock = SimBinance::start(0).await;
    mock.serve_trades(trades.iter().map(|(_, t)| t));
    mock
}

/// After [`import_head`], streams the 2024-08-09 recording (so the rest of 2024-08-08 is a
/// gap) with `env` set and REST at `rest`, until `expect` trades are stored; returns the
/// stream and the streamer's summary.
async fn stream_day_two(
    db: &TestDb,
    rest: &SimBinance,
    env: &[(&str, &str)],
    expect: i64,
) -> (Vec<u64>, String) {
    let mut replay = Replay::start(&["spot_btcusdt_20240809.gz"], 0);
    let mut streamer: Running = spawn_with_env(
        db,
        &[
            "stream",
            "--symbol",
            "BTCUSDT",
            "--binance-ws-url",
            &replay.url,
            "--backfill-url",
            &rest.url,
        ],
        env,
    );
    let stream = StreamId::trades(&symbol("BTCUSDT"));
    wait_for(db, &stream, expect, &mut replay, &mut streamer).await;
    // Give a wrongly repeated trade the time to show up before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let summary = stop(streamer);
    let stored = db.open().await.read_stream_to_end(&stream).await.unwrap();
    let ids = stored.iter().map(|e| e.event.trade_id().unwrap()).collect();
    (ids, summary)
}

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
        let stored = import_head(db).await;
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("BTCUSDT"));
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
        assert_eq!(number(&summary, "backfilled"), 0, "{summary}");
    }

    pub async fn a_gap_is_filled_from_rest_in_id_order(db: &TestDb) {
        let head = import_head(db).await;
        let rest = rest_with_day_one().await;
        let (ids, summary) = stream_day_two(db, &rest, &[], DAY_ONE + DAY_TWO).await;

        let first = ids[0];
        assert_eq!(
            ids,
            (first..first + (DAY_ONE + DAY_TWO) as u64).collect::<Vec<_>>(),
            "every trade once, in id order: {summary}"
        );
        let hole = (DAY_ONE - HEAD) as u64;
        assert_eq!(number(&summary, "gaps"), 1, "{summary}");
        assert_eq!(number(&summary, "gaps 1"), hole, "{summary}");
        assert_eq!(number(&summary, "backfilled"), hole, "{summary}");
        assert_eq!(
            number(&summary, "stored"),
            hole + DAY_TWO as u64,
            "{summary}"
        );
        // Pages of at most 1,000 from the hole's first id, each after the last one's end.
        let asked: Vec<(u64, u64)> = rest
            .seen()
            .iter()
            .filter(|r| r.path == "/api/v3/historicalTrades")
            .map(|r| {
                (
                    r.params["fromId"].parse().unwrap(),
                    r.params["limit"].parse().unwrap(),
                )
            })
            .collect();
        let after_head = head.last().unwrap().event.trade_id().unwrap() + 1;
        assert_eq!(asked[0].0, after_head);
        assert_eq!(asked.len(), (hole as usize).div_ceil(1_000), "{asked:?}");
        assert!(asked.iter().all(|&(_, limit)| limit <= 1_000));
        assert!(asked.windows(2).all(|w| w[1].0 == w[0].0 + w[0].1));

        // A filled trade is the recorded one but for its event time (REST has none).
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        let filled = &store.read_stream(&stream, HEAD + 1, 1).await.unwrap()[0];
        let file = PathBuf::from(format!("{WS}/spot_btcusdt_20240808.gz"));
        let recorded = read_trades(&[file], &ImportOptions::default()).unwrap();
        let hedgehog_domain::Event::TradeReceived(got) = &filled.event else {
            panic!("a trade: {:?}", filled.event)
        };
        let want = &recorded[HEAD as usize].1;
        assert_eq!(got.trade_id, want.trade_id);
        assert_eq!((got.price, got.quantity), (want.price, want.quantity));
        assert_eq!(got.trade_time, want.trade_time);
        assert_eq!(got.buyer_is_maker, want.buyer_is_maker);
    }

    pub async fn a_gap_beyond_the_backfill_limit_is_filled_from_its_start(db: &TestDb) {
        import_head(db).await;
        let rest = rest_with_day_one().await;
        let limit = 2_500;
        let env = [("HEDGEHOG_EXCHANGE_BACKFILL_LIMIT", "2500")];
        let (ids, summary) = stream_day_two(db, &rest, &env, HEAD + limit + DAY_TWO).await;

        assert_eq!(ids.len() as i64, HEAD + limit + DAY_TWO, "{summary}");
        let first = ids[0];
        let filled_to = first + (HEAD + limit) as u64;
        assert_eq!(
            ids[..(HEAD + limit) as usize],
            (first..filled_to).collect::<Vec<_>>(),
            "the gap filled from its start: {summary}"
        );
        let day_two_first = first + DAY_ONE as u64;
        assert_eq!(
            ids[(HEAD + limit) as usize..],
            (day_two_first..day_two_first + DAY_TWO as u64).collect::<Vec<_>>()
        );
        assert_eq!(
            number(&summary, "gaps 1"),
            (DAY_ONE - HEAD) as u64,
            "{summary}"
        );
        assert_eq!(number(&summary, "backfilled"), limit as u64, "{summary}");
    }

    pub async fn a_gap_rest_refuses_to_fill_stays_reported(db: &TestDb) {
        import_head(db).await;
        let rest = rest_with_day_one().await;
        rest.script(
            "GET",
            "/api/v3/historicalTrades",
            Scripted::Error(400, -1121, "Invalid symbol.".into()),
        );
        let (ids, summary) = stream_day_two(db, &rest, &[], HEAD + DAY_TWO).await;

        assert_eq!(ids.len() as i64, HEAD + DAY_TWO, "{summary}");
        assert_eq!(
            number(&summary, "gaps 1"),
            (DAY_ONE - HEAD) as u64,
            "{summary}"
        );
        assert_eq!(number(&summary, "backfilled"), 0, "{summary}");
        assert_eq!(number(&summary, "stored"), DAY_TWO as u64, "{summary}");
    }
}

/// Binance pings every 20 s and drops a client that does not answer within a minute: the
/// streamer must echo the ping's payload in a pong while it waits for trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamer_answers_pings() {
    use futures::{SinkExt, StreamExt};
    use hedgehog_ingest::streamer::{self, StreamerOptions, StreamerStats};
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

/// A connection that goes silent (no data, no ping) is taken as dead and made again: the first
/// server connection sends one trade and then nothing, the next ones accept and say nothing.
/// The trade is stored, and the streamer keeps reconnecting, counting each silent connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_trade_stream_is_dropped_and_reconnected() {
    use futures::SinkExt;
    use hedgehog_ingest::streamer::{self, StreamerOptions, StreamerStats};
    use std::sync::atomic::Ordering;
    use tokio_tungstenite::tungstenite::Message;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        for n in 0..3 {
            let (socket, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
            if n == 0 {
                let frame = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161601001,"s":"BTCUSDT","t":3000000001,"p":"60000.01","q":"0.001","T":1723161601000,"m":false,"M":true}}"#;
                ws.send(Message::Text(frame.into())).await.unwrap();
            }
            held.push(ws); // kept open, and silent: a half-open connection as seen from here
        }
        held
    });
    let db = TestDb::sqlite();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let options = StreamerOptions {
        idle_timeout: Duration::from_millis(400),
        ..StreamerOptions::new(url, vec![symbol("BTCUSDT")])
    };
    let stats = std::sync::Arc::new(StreamerStats::default());
    let running = tokio::spawn(streamer::run(
        db.open().await,
        options,
        std::sync::Arc::clone(&stats),
        stopped,
    ));
    let held = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("the streamer came back twice within 20 s")
        .unwrap();
    assert_eq!(held.len(), 3);
    let started = std::time::Instant::now();
    while stats.silent.load(Ordering::Relaxed) < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "silence counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = db
        .open()
        .await
        .read_stream_to_end(&hedgehog_store::StreamId::trades(&symbol("BTCUSDT")))
        .await
        .unwrap();
    assert_eq!(
        stored.len(),
        1,
        "the trade sent before the silence is stored"
    );
    assert!(stats.summary().contains("silent"), "{}", stats.summary());
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}
