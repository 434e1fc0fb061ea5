//! Crash safety: a process appending in a loop is killed with SIGKILL; after a restart every
//! acknowledged event is present, the store opens cleanly and appends continue without a hole.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{symbol, Backend, TestDb};
use hedgehog_store::{ExpectedVersion, StreamId};
use tokio::io::{AsyncBufReadExt, BufReader};

on_both_backends!(acknowledged_events_survive_sigkill);

mod cases {
    use super::*;

    pub async fn acknowledged_events_survive_sigkill(db: &TestDb) {
        let backend = match db.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hedgehog-bench"))
            .args(["append", "--backend", backend, "--database-url", &db.url])
            .args([
                "--events",
                "100000000",
                "--batch",
                "250",
                "--ack-log",
                "--no-read",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start hedgehog-bench");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

        // Let it commit a good number of batches, then kill it in the middle of its loop.
        let mut acked = (0_i64, 0_i64);
        let mut acks = 0;
        while acks < 40 {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("the appender acknowledges batches")
                .unwrap()
                .expect("the appender is still running");
            acked = parse_ack(&line);
            acks += 1;
        }
        child.start_kill().expect("SIGKILL");
        // Lines already written before the kill were acknowledged too.
        while let Ok(Some(line)) = lines.next_line().await {
            acked = parse_ack(&line);
        }
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "the appender was killed, not finished");
        let (acked_version, acked_position) = acked;
        assert!(acked_version >= 40 * 250);

        // Restart: the store opens (and migrates) cleanly and holds everything acknowledged.
        let store = db.open().await;
        if db.backend == Backend::Sqlite {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&mut c)
                .await
                .unwrap();
            assert_eq!(check, "ok");
        }
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        let version = store.stream_version(&stream).await.unwrap();
        let head = store.head_position().await.unwrap();
        assert!(
            version >= acked_version,
            "stored {version} < acknowledged {acked_version}"
        );
        assert!(head >= acked_position);
        // Nothing is half-written: what is there is whole batches, contiguous, each trade once.
        assert_eq!(version % 250, 0, "a batch is stored whole or not at all");
        let events = store.read_stream_to_end(&stream).await.unwrap();
        assert_eq!(events.len() as i64, version);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.position, i as i64 + 1);
            assert_eq!(e.event.trade_id(), Some(i as u64 + 1));
        }

        // And it keeps going: the next append continues right after the last stored event.
        let out = store
            .append(
                &stream,
                ExpectedVersion::Exact(version),
                common::trades("ADAUSDT", version as u64 + 1..version as u64 + 11),
            )
            .await
            .unwrap();
        assert_eq!(out.last_position, Some(head + 10));
    }

    fn parse_ack(line: &str) -> (i64, i64) {
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("ack"), "unexpected line {line:?}");
        let version = parts.next().unwrap().parse().unwrap();
        let position = parts.next().unwrap().parse().unwrap();
        (version, position)
    }
}
