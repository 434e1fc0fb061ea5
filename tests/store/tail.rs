//! The shared live tail behind `/api/events`: subscribers starting anywhere, fast or too slow
//! for its buffer, each see every event after their start exactly once, in order, while
//! appends go on.

use crate::common;

use std::time::Duration;

use common::{trades, TestDb};
use futures::StreamExt;
use hedgehog_http::tail::Tail;
use hedgehog_store::{ExpectedVersion, StreamId};

on_both_backends!(every_subscriber_sees_every_event_once_in_order);

mod cases {
    use super::*;

    pub async fn every_subscriber_sees_every_event_once_in_order(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&common::symbol("BTCUSDT"));
        store
            .append(&stream, ExpectedVersion::Any, trades("BTCUSDT", 1..301))
            .await
            .unwrap();
        let (_stop, stopping) = tokio::sync::watch::channel(false);
        // A buffer of two batches: a subscriber that pauses is sure to lag.
        let tail = Tail::with_buffer(store.clone(), stopping, 2).await.unwrap();

        const BATCHES: u64 = 40;
        let total = 300 + BATCHES * 50;
        let follow = |after: i64, pause: Option<Duration>| {
            let mut frames = tail.follow(after);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while (seen.len() as i64) < total as i64 - after {
                    let frame = tokio::time::timeout(Duration::from_secs(30), frames.next())
                        .await
                        .expect("the next event within 30 s")
                        .unwrap()
                        .unwrap();
                    seen.push(frame.position);
                    if let Some(pause) = pause {
                        if seen.len() % 100 == 0 {
                            tokio::time::sleep(pause).await;
                        }
                    }
                }
                seen
            })
        };
        let from_start = follow(0, None);
        let from_middle = follow(150, None);
        let slow = follow(300, Some(Duration::from_millis(150)));
        // Let them catch up and wait on the live end before the burst.
        tokio::time::sleep(Duration::from_millis(300)).await;

        for b in 0..BATCHES {
            let first = 301 + b * 50;
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    trades("BTCUSDT", first..first + 50),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (after, task) in [(0, from_start), (150, from_middle), (300, slow)] {
            let seen = task.await.unwrap();
            let expected: Vec<i64> = (after + 1..=total as i64).collect();
            assert_eq!(seen, expected, "from {after}");
        }
    }
}
