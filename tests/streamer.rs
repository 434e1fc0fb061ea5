//! The live path offline: the replay server plays real recordings with forced disconnects and
//! the streamer stores every trade exactly once. Both are the real binary.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{symbol, TestDb};
use hedgehog::store::StreamId;

const WS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/binance-ws");

on_both_backends!(
    streams_every_trade_once_across_forced_disconnects,
    a_gap_after_what_is_stored_is_reported,
);

struct Replay {
    child: Child,
    url: String,
}

impl Replay {
    fn start(files: &[&str], drop_every: u64) -> Replay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .arg("replay-server")
            .args(files.iter().map(|f| format!("{WS}/{f}")))
            .args([
                "--port",
                "0",
                "--speed",
                "0",
                "--drop-every",
                &drop_every.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the replay server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Replay { child, url: addr }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_streamer(db: &TestDb, url: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "stream", "--symbol", "BTCUSDT"])
        .args(["--binance-ws-url", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the streamer")
}

/// SIGTERM, then the summary line the streamer prints after flushing.
fn stop(child: Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the streamer exits 0 on SIGTERM");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn number(summary: &str, label: &str) -> u64 {
    let rest = summary
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("{label} in {summary}"));
    rest.trim_start_matches([' ', '('])
        .split([',', ' ', ')'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until the stream holds `version` events, failing at once if either process died.
async fn wait_for(
    db: &TestDb,
    stream: &StreamId,
    version: i64,
    replay: &mut Replay,
    streamer: &mut Child,
) {
    let store = db.open().await;
    let started = Instant::now();
    while store.stream_version(stream).await.unwrap() < version {
        if let Some(status) = replay.child.try_wait().unwrap() {
            panic!("the replay server exited early: {status}");
        }
        if let Some(status) = streamer.try_wait().unwrap() {
            panic!("the streamer exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {version} trades"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
