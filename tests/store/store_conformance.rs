//! The event store's conformance suite: every case runs on SQLite and on PostgreSQL.

use crate::common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::{symbol, trade, trades, Bind, TestDb};
use futures::StreamExt;
use hedgehog_domain::events::{StreamingStarted, TradingStarted};
use hedgehog_store::{
    ExpectedVersion, NewEvent, Place, RecordedEvent, Store, StoreError, StreamHead, StreamId,
};
use uuid::Uuid;

on_both_backends!(
    append_then_read_back_with_metadata,
    expected_version_conflicts_write_nothing,
    reappending_is_idempotent,
    failing_batch_leaves_nothing,
    global_order_is_gap_free_and_respects_streams,
    subscription_catches_up_then_follows_live_appends,
    subscription_sees_appends_from_another_store_instance,
    concurrent_writers_never_make_a_subscriber_skip,
    appends_in_line_are_acknowledged_durable_and_seen_once,
    eventually_repository_round_trip,
    eventually_store_views_map_versions_and_positions,
    append_only_at_the_database_level,
    many_processes_can_open_a_fresh_store_at_once,
    first_trade_after_finds_where_a_worker_resumes,
    trades_read_in_trade_id_order_whatever_order_they_were_stored_in,
    stream_events_read_without_metadata_match_the_full_read,
    trades_stored_by_schema_version_1_still_read,
    payloads_with_escapes_and_control_characters_round_trip,
    stream_subscriptions_follow_a_few_streams_in_the_logs_order,
    every_append_keeps_its_streams_row,
    an_append_of_several_streams_is_one_transaction,
    events_handed_to_subscribers_equal_those_read_back,
    positions_beyond_u32_work,
    trades_as_rows_read_back_exactly_as_written,
    trade_events_shows_rows_as_it_shows_json,
    long_pages_merge_both_tables_in_order,
    a_stream_of_rows_keeps_its_version_for_another_process,
    sealing_moves_trades_and_changes_no_event,
    a_damaged_segment_is_named_never_skipped,
    long_pages_read_through_segments_between_rows,
    a_decision_under_a_lost_lease_is_refused,
);

const WAIT: Duration = Duration::from_secs(30);

/// Collects exactly `n` events from a subscription, failing after `WAIT`.
async fn take(
    sub: &mut (impl futures::Stream<Item = Result<RecordedEvent, StoreError>> + Unpin),
    n: usize,
) -> Vec<RecordedEvent> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(Ok(e))) => out.push(e),
            Ok(Some(Err(e))) => panic!("subscription failed after {} events: {e}", out.len()),
            Ok(None) => panic!("subscription ended after {} events", out.len()),
            Err(_) => panic!("timed out with {} of {n} events", out.len()),
        }
    }
    out
}

/// Inserts trade 7 as schema version 1 wrote it straight into `events` at `position`, version
/// 1, past the store: what an older writer, or a log carried over from elsewhere, left there.
async fn insert_raw_trade(
    db: &TestDb,
    position: i64,
    event_id: Uuid,
    stream: &StreamId,
    payload: &str,
) {
    db.execute_with(
        "INSERT INTO events (position, event_id, stream_id, stream_version, event_type, \
         schema_version, payload, recorded_at, trade_id) \
         VALUES ($1, $2, $3, 1, 'TradeReceived', 1, $4, 1700000000000, 7)",
        &[
            Bind::Int(position),
            Bind::Id(event_id),
            Bind::Text(stream.as_str()),
            Bind::Text(payload),
        ],
    )
    .await;
}

mod cases {
    use super::*;

    /// A log whose positions start above 2^32 (that long, or carried over from an older
    /// store): appends, reads, subscriptions, the streams table, the read models and
    /// `eventually`'s repository work; only `eventually`'s views of `$all`, whose u32 sequence
    /// numbers cannot hold such a position, refuse, naming it.
    pub async fn positions_beyond_u32_work(db: &TestDb) {
        use eventually::store::Select;
        use eventually::{AggregateRootBuilder, EventStore, Repository, Versioned};
        use futures::TryStreamExt;
        use hedgehog_domain::streaming::StreamingCommand;
        use hedgehog_domain::types::Market;
        use hedgehog_engine::aggregate::StreamingAggregate;
        use hedgehog_projections::query::{TradePages, Window};

        drop(db.open().await);
        let seed: i64 = (1 << 32) + 10;
        let market = StreamId::trades(&symbol("BTCUSDT"));
        let payload = hedgehog_domain::Event::TradeReceived(trade("BTCUSDT", 7))
            .encode()
            .unwrap();
        insert_raw_trade(db, seed, Uuid::now_v7(), &market, &payload).await;

        let store = db.open().await;
        assert_eq!(store.head_position().await.unwrap(), seed);
        let mut all = store.subscribe_all(seed);
        let mut streams = store.subscribe_streams(vec![(market.clone(), 0)]);
        let out = store
            .append(&market, ExpectedVersion::Any, trades("BTCUSDT", 8..10))
            .await
            .unwrap();
        assert_eq!((out.stream_version, out.last_position), (3, Some(seed + 2)));
        let read = store.read_all(seed, 10).await.unwrap();
        assert_eq!(
            read.iter().map(|e| e.position).collect::<Vec<_>>(),
            [seed, seed + 1, seed + 2]
        );
        assert_eq!(take(&mut streams, 3).await, read);

        // A command through `eventually`'s repository, folding a stream at such positions.
        let mut repo = Repository::new(
            AggregateRootBuilder::from(StreamingAggregate),
            store.clone(),
        );
        let switch = StreamId::streaming(&symbol("BTCUSDT"));
        let mut root = repo.get(switch.clone()).await.unwrap();
        root.handle(StreamingCommand::Start).await.unwrap();
        assert_eq!(repo.add(root).await.unwrap().version(), 1);
        let root = repo.get(switch.clone()).await.unwrap();
        assert!(root.state().streaming, "folded from position {}", seed + 3);
        let read_back: Vec<_> = EventStore::stream(&store, switch.clone(), Select::All)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            (read_back[0].version(), read_back[0].sequence_number()),
            (1, u32::MAX)
        );
        let err = EventStore::stream_all(&store, Select::All)
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!("global position {seed}")),
            "{err}"
        );

        let live = take(&mut all, 3).await;
        assert_eq!(
            live.iter().map(|e| e.position).collect::<Vec<_>>(),
            [seed + 1, seed + 2, seed + 3]
        );
        let heads = store.stream_heads("streaming-").await.unwrap();
        assert_eq!(
            heads
                .iter()
                .map(|h| (h.version, h.last_position))
                .collect::<Vec<_>>(),
            [(1, seed + 3)]
        );
        let mut projector = hedgehog_projections::Projector::new(store.clone());
        assert_eq!(projector.catch_up().await.unwrap(), seed + 3);
        let mut pages = TradePages::new(
            store.clone(),
            Market::Spot,
            symbol("BTCUSDT"),
            Window::default(),
        );
        let mut ids = Vec::new();
        while let Some(page) = pages.next_page().await.unwrap() {
            ids.extend(page.iter().map(|t| t.trade_id));
        }
        assert_eq!(ids, [7, 8, 9]);
    }

    /// A stream subscriber is handed this process's appends instead of reading them back:
    /// what it gets is what a reader of the same streams gets, field for field, whatever the
    /// appends (several streams at once, with metadata, a retry partly stored, another
    /// process's appends between this one's, one too big to hand over).
    pub async fn events_handed_to_subscribers_equal_those_read_back(db: &TestDb) {
        let store = db.open().await;
        let elsewhere = db.open().await;
        let (ada, btc) = (symbol("ADAUSDT"), symbol("BTCUSDT"));
        let (market, trading) = (StreamId::trades(&ada), StreamId::trading(&ada));
        let other = StreamId::trades(&btc);
        let mut live = store.subscribe_streams(vec![(market.clone(), 0), (trading.clone(), 0)]);
        store
            .append(&market, ExpectedVersion::Any, trades("ADAUSDT", 1..11))
            .await
            .unwrap();
        assert_eq!(take(&mut live, 10).await.len(), 10);

        let who: hedgehog_store::Metadata = [("by".to_owned(), "ada@desk".to_owned())].into();
        let started = |after| {
            NewEvent::new(TradingStarted {
                symbol: ada.clone(),
                after_trade_id: Some(after),
            })
        };
        // One append of three streams: another symbol's trades, ours, our decision.
        let three = |by: &Store, btc, ada_ids, version, decision: NewEvent| {
            let parts = vec![
                (
                    other.clone(),
                    ExpectedVersion::Any,
                    by.prepare(trades("BTCUSDT", btc)).unwrap(),
                ),
                (
                    market.clone(),
                    ExpectedVersion::Any,
                    by.prepare(trades("ADAUSDT", ada_ids)).unwrap(),
                ),
                (
                    trading.clone(),
                    ExpectedVersion::Exact(version),
                    by.prepare(vec![decision]).unwrap(),
                ),
            ];
            let by = by.clone();
            async move {
                by.begin_append_streams(parts)
                    .await
                    .unwrap()
                    .acknowledged_all()
                    .await
                    .unwrap()
            }
        };
        let decision = started(13)
            .with_metadata(who)
            .caused_by(Uuid::now_v7(), Uuid::now_v7());
        three(&store, 1..4, 11..14, 0, decision).await;
        // 12 and 13 are stored: 14 and 15 are.
        let retry = store
            .append(&market, ExpectedVersion::Any, trades("ADAUSDT", 12..16))
            .await
            .unwrap();
        assert_eq!((retry.appended, retry.duplicates), (2, 2));
        // Another process's appends between this one's, one too big to hand over.
        let any = ExpectedVersion::Any;
        let script = [
            (&elsewhere, &market, any, trades("ADAUSDT", 16..19)),
            (&store, &market, any, trades("ADAUSDT", 19..21)),
            (&elsewhere, &other, any, trades("BTCUSDT", 4..6)),
            (
                &store,
                &trading,
                ExpectedVersion::Exact(1),
                vec![started(20)],
            ),
            (&store, &market, any, trades("ADAUSDT", 21..2_021)),
            (
                &store,
                &trading,
                ExpectedVersion::Exact(2),
                vec![started(2_020)],
            ),
        ];
        for (by, stream, expected, events) in script {
            by.append(stream, expected, events).await.unwrap();
        }

        let n = 3 + 1 + 2 + 3 + 2 + 1 + 2_000 + 1;
        let got = take(&mut live, n).await;
        let mut reader = store.subscribe_streams(vec![(market.clone(), 10), (trading.clone(), 0)]);
        assert_eq!(got, take(&mut reader, n).await);
        assert!(got.windows(2).all(|w| w[0].position < w[1].position));
        let versions = |stream: &StreamId| -> Vec<i64> {
            got.iter()
                .filter(|e| e.stream_id == *stream)
                .map(|e| e.stream_version)
                .collect()
        };
        assert_eq!(versions(&market), (11..=2_020).collect::<Vec<_>>());
        assert_eq!(versions(&trading), [1, 2, 3]);
        assert_eq!(
            got[3].metadata.get("by").map(String::as_str),
            Some("ada@desk")
        );

        // An append whose acknowledgement is given up (its task cancelled) is committed all
        // the same, never announced: the subscriber finds it by polling.
        let batch = store.prepare(trades("ADAUSDT", 2_021..2_024)).unwrap();
        let pending = store
            .begin_append(&market, ExpectedVersion::Any, batch)
            .await
            .unwrap();
        drop(pending);
        let found = take(&mut live, 3).await;
        assert_eq!(
            found.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
            [2_021, 2_022, 2_023]
        );

        // Another process's append of several streams at once: heard part by part, in order.
        three(&elsewhere, 6..8, 2_024..2_026, 3, started(2_025)).await;
        let heard = take(&mut live, 3).await;
        assert_eq!(
            heard
                .iter()
                .map(|e| (e.stream_id.clone(), e.stream_version))
                .collect::<Vec<_>>(),
            [
                (market.clone(), 2_024),
                (market.clone(), 2_025),
                (trading.clone(), 4)
            ]
        );
    }

    /// A symbol's worker follows two streams of a log that holds many: it gets theirs, in the
    /// log's order, across catch-up pages, then live appends by this process and by another
    /// one, and nothing of the others.
    pub async fn stream_subscriptions_follow_a_few_streams_in_the_logs_order(db: &TestDb) {
        let store = db.open().await;
        let (ada, btc) = (symbol("ADAUSDT"), symbol("BTCUSDT"));
        let market = StreamId::trades(&ada);
        let trading = StreamId::trading(&ada);
        let other = StreamId::trades(&btc);
        // Interleaved: a market page more than PAGE_SIZE long, the trading stream's events
        // between its trades, another symbol's trades between both.
        let mut next_trade = 1;
        for round in 0..6u64 {
            let batch = trades("ADAUSDT", next_trade..next_trade + 2_500);
            next_trade += 2_500;
            store
                .append(&market, ExpectedVersion::Any, batch)
                .await
                .unwrap();
            store
                .append(
                    &other,
                    ExpectedVersion::Any,
                    trades("BTCUSDT", round * 10 + 1..round * 10 + 11),
                )
                .await
                .unwrap();
            let started = TradingStarted {
                symbol: ada.clone(),
                after_trade_id: Some(round),
            };
            store
                .append(
                    &trading,
                    ExpectedVersion::Exact(round as i64),
                    vec![NewEvent::new(started)],
                )
                .await
                .unwrap();
        }
        let followed = |e: &RecordedEvent| e.stream_id == market || e.stream_id == trading;
        let expected: Vec<RecordedEvent> = {
            let mut all = Vec::new();
            let mut from = 1;
            loop {
                let page = store.read_all(from, 10_000).await.unwrap();
                let Some(last) = page.last() else { break };
                from = last.position + 1;
                all.extend(page.into_iter().filter(followed));
            }
            all
        };
        assert_eq!(expected.len(), 15_006);

        // From the start of both.
        let mut sub = store.subscribe_streams(vec![(market.clone(), 0), (trading.clone(), 0)]);
        assert_eq!(take(&mut sub, expected.len()).await, expected);
        // From the middle of each: exactly what follows those versions.
        let mut mid = store.subscribe_streams(vec![(market.clone(), 12_000), (trading.clone(), 4)]);
        let tail: Vec<RecordedEvent> = expected
            .iter()
            .filter(|e| {
                (e.stream_id == market && e.stream_version > 12_000)
                    || (e.stream_id == trading && e.stream_version > 4)
            })
            .cloned()
            .collect();
        assert_eq!(take(&mut mid, tail.len()).await, tail);

        // Live: another process's append (found by NOTIFY, or by the poll on SQLite), then
        // this one's, then an append to a stream not followed, which wakes nobody here.
        let elsewhere = db.open().await;
        elsewhere
            .append(
                &market,
                ExpectedVersion::Any,
                trades("ADAUSDT", 20_001..20_004),
            )
            .await
            .unwrap();
        store
            .append(
                &trading,
                ExpectedVersion::Exact(6),
                vec![NewEvent::new(TradingStarted {
                    symbol: ada.clone(),
                    after_trade_id: Some(9),
                })],
            )
            .await
            .unwrap();
        store
            .append(&other, ExpectedVersion::Any, trades("BTCUSDT", 900..905))
            .await
            .unwrap();
        let live = take(&mut sub, 4).await;
        assert_eq!(
            live.iter()
                .map(|e| (e.stream_id.clone(), e.stream_version))
                .collect::<Vec<_>>(),
            [
                (market.clone(), 15_001),
                (market.clone(), 15_002),
                (market.clone(), 15_003),
                (trading.clone(), 7),
            ]
        );
        assert!(live.windows(2).all(|w| w[0].position < w[1].position));
        assert_eq!(take(&mut mid, 4).await, live);
        let nothing_more = tokio::time::timeout(Duration::from_millis(1_500), sub.next()).await;
        assert!(nothing_more.is_err(), "{nothing_more:?}");
    }

    /// A multi-stream append (the streamer's, one market stream per symbol) commits every
    /// stream's batch or none: a conflict in one part writes nothing of the others; a retry
    /// of the whole is recognised part by part; the streams' rows and a subscriber see each
    /// part as its own append.
    pub async fn an_append_of_several_streams_is_one_transaction(db: &TestDb) {
        let store = db.open().await;
        let (ada, btc) = (symbol("ADAUSDT"), symbol("BTCUSDT"));
        let (ada_trades, btc_trades) = (StreamId::trades(&ada), StreamId::trades(&btc));
        let trading = StreamId::trading(&ada);
        let mut sub =
            store.subscribe_streams(vec![(ada_trades.clone(), 0), (btc_trades.clone(), 0)]);
        let batches = |store: &Store| {
            vec![
                (
                    ada_trades.clone(),
                    ExpectedVersion::Any,
                    store.prepare(trades("ADAUSDT", 1..4)).unwrap(),
                ),
                (
                    btc_trades.clone(),
                    ExpectedVersion::Any,
                    store.prepare(trades("BTCUSDT", 1..3)).unwrap(),
                ),
            ]
        };
        let append_both = || async {
            store
                .begin_append_streams(batches(&store))
                .await
                .unwrap()
                .acknowledged_all()
                .await
                .unwrap()
        };
        let outcomes = append_both().await;
        assert_eq!(
            outcomes
                .iter()
                .map(|o| (o.appended, o.stream_version, o.last_position))
                .collect::<Vec<_>>(),
            [(3, 3, Some(3)), (2, 2, Some(5))]
        );
        let got = take(&mut sub, 5).await;
        assert_eq!(
            got.iter().map(|e| e.position).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        // The same again: a retry, stored already, part by part.
        let again = append_both().await;
        assert_eq!(
            again
                .iter()
                .map(|o| (o.appended, o.duplicates, o.stream_version))
                .collect::<Vec<_>>(),
            [(0, 3, 3), (0, 2, 2)]
        );
        // One part expecting a version its stream is not at: nothing of the other is written.
        let started = NewEvent::new(TradingStarted {
            symbol: ada.clone(),
            after_trade_id: None,
        });
        let refused = store
            .begin_append_streams(vec![
                (
                    btc_trades.clone(),
                    ExpectedVersion::Any,
                    store.prepare(trades("BTCUSDT", 10..12)).unwrap(),
                ),
                (
                    trading.clone(),
                    ExpectedVersion::Exact(4),
                    store.prepare(vec![started]).unwrap(),
                ),
            ])
            .await;
        assert!(matches!(refused, Err(StoreError::Conflict { .. })));
        assert_eq!(store.head_position().await.unwrap(), 5);
        assert_eq!(store.stream_version(&btc_trades).await.unwrap(), 2);
        assert_eq!(
            store.stream_heads("").await.unwrap(),
            [
                StreamHead {
                    stream: ada_trades.clone(),
                    version: 3,
                    last_position: 3
                },
                StreamHead {
                    stream: btc_trades.clone(),
                    version: 2,
                    last_position: 5
                },
            ]
        );
    }

    /// `streams` is kept by every append, in its transaction: versions and last positions as
    /// the events say, retries changing nothing, and listing by prefix.
    pub async fn every_append_keeps_its_streams_row(db: &TestDb) {
        let store = db.open().await;
        assert!(store.stream_heads("").await.unwrap().is_empty());
        let (ada, btc) = (symbol("ADAUSDT"), symbol("BTCUSDT"));
        let batch = trades("ADAUSDT", 1..4);
        store
            .append(&StreamId::trades(&ada), ExpectedVersion::Any, batch.clone())
            .await
            .unwrap();
        store
            .append(
                &StreamId::trades(&btc),
                ExpectedVersion::Any,
                trades("BTCUSDT", 1..3),
            )
            .await
            .unwrap();
        // A retry of the first batch, and a batch half new.
        store
            .append(&StreamId::trades(&ada), ExpectedVersion::Any, batch)
            .await
            .unwrap();
        store
            .append(
                &StreamId::trades(&ada),
                ExpectedVersion::Any,
                trades("ADAUSDT", 3..5),
            )
            .await
            .unwrap();
        let started = TradingStarted {
            symbol: btc.clone(),
            after_trade_id: Some(1),
        };
        store
            .append(
                &StreamId::trading(&btc),
                ExpectedVersion::Exact(0),
                vec![NewEvent::new(started)],
            )
            .await
            .unwrap();
        // Refused appends leave the row as it was.
        let conflict = store
            .append(
                &StreamId::trading(&btc),
                ExpectedVersion::Exact(0),
                vec![NewEvent::new(TradingStarted {
                    symbol: btc.clone(),
                    after_trade_id: Some(2),
                })],
            )
            .await;
        assert!(conflict.unwrap_err().is_conflict());

        let head = |stream: StreamId, version, last_position| StreamHead {
            stream,
            version,
            last_position,
        };
        assert_eq!(
            store.stream_heads("").await.unwrap(),
            [
                head(StreamId::trades(&ada), 4, 6),
                head(StreamId::trades(&btc), 2, 5),
                head(StreamId::trading(&btc), 1, 7),
            ]
        );
        assert_eq!(
            store.stream_heads("trades-").await.unwrap().len(),
            2,
            "by prefix"
        );
        assert_eq!(store.symbols_with("trading").await.unwrap(), [btc]);
        assert_eq!(
            store.stream_version(&StreamId::trades(&ada)).await.unwrap(),
            4
        );
        assert_eq!(
            store
                .stream_version(&StreamId::trading(&ada))
                .await
                .unwrap(),
            0
        );
        // What the events say, stream by stream.
        for (stream, version) in store.streams().await.unwrap() {
            let events = store.read_stream_to_end(&stream).await.unwrap();
            assert_eq!(events.last().unwrap().stream_version, version, "{stream}");
        }
    }

    pub async fn stream_events_read_without_metadata_match_the_full_read(db: &TestDb) {
        let store = db.open().await;
        let ada = StreamId::trades(&symbol("ADAUSDT"));
        let eth = StreamId::trades(&symbol("ETHUSDT"));
        // Two streams interleaved in the global log, a page boundary inside each.
        for chunk in 0..3u64 {
            for (stream, sym) in [(&ada, "ADAUSDT"), (&eth, "ETHUSDT")] {
                store
                    .append(
                        stream,
                        ExpectedVersion::Any,
                        common::trades(sym, chunk * 700..(chunk + 1) * 700),
                    )
                    .await
                    .unwrap();
            }
        }
        for (from, limit) in [(1, 2100), (1, 1000), (1001, 1000), (2001, 1000), (2101, 10)] {
            let full = store.read_stream(&ada, from, limit).await.unwrap();
            let slim = store.read_stream_events(&ada, from, limit).await.unwrap();
            assert_eq!(slim.len(), full.len(), "from {from}");
            for (s, f) in slim.iter().zip(&full) {
                assert_eq!(
                    (s.position, s.stream_version, &s.event),
                    (f.position, f.stream_version, &f.event)
                );
            }
        }
        assert_eq!(
            store.read_stream_events(&ada, 1, 5000).await.unwrap().len(),
            2100
        );
        assert!(store
            .read_stream_events(&ada, 2101, 10)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn first_trade_after_finds_where_a_worker_resumes(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        // Nothing stored: nowhere to resume (not an error, not position 0).
        assert_eq!(store.first_trade_after(&stream, None).await.unwrap(), None);
        assert_eq!(
            store.first_trade_after(&stream, Some(5)).await.unwrap(),
            None
        );
        // Stored out of id order: the earliest *stored* trade above the cursor.
        let ids = [10u64, 12, 11, 13];
        let events = ids
            .iter()
            .map(|id| NewEvent::new(common::trade("ADAUSDT", *id)))
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
        let position = |id: u64| {
            let store = store.clone();
            let stream = stream.clone();
            async move {
                store
                    .read_stream_to_end(&stream)
                    .await
                    .unwrap()
                    .into_iter()
                    .find(|e| e.event.trade_id() == Some(id))
                    .map(|e| Place {
                        position: e.position,
                        version: e.stream_version,
                    })
            }
        };
        assert_eq!(
            store.first_trade_after(&stream, None).await.unwrap(),
            position(10).await
        );
        assert_eq!(
            store.first_trade_after(&stream, Some(10)).await.unwrap(),
            position(12).await
        );
        assert_eq!(
            store.first_trade_after(&stream, Some(12)).await.unwrap(),
            position(13).await
        );
        assert_eq!(
            store.first_trade_after(&stream, Some(13)).await.unwrap(),
            None
        );
    }

    pub async fn trades_read_in_trade_id_order_whatever_order_they_were_stored_in(db: &TestDb) {
        let store = db.open().await;
        let ada = StreamId::trades(&symbol("ADAUSDT"));
        let eth = StreamId::trades(&symbol("ETHUSDT"));
        assert!(store.read_trades(&ada, None, 10).await.unwrap().is_empty());
        // A newer range first, then an older one, another stream in between.
        for (stream, sym, ids) in [
            (&ada, "ADAUSDT", vec![50u64, 52, 51]),
            (&eth, "ETHUSDT", vec![1, 2]),
            (&ada, "ADAUSDT", vec![20, 10, 30]),
        ] {
            let events = ids
                .iter()
                .map(|id| NewEvent::new(common::trade(sym, *id)))
                .collect();
            store
                .append(stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
        let mut read = Vec::new();
        let mut after = None;
        loop {
            let page = store.read_trades(&ada, after, 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            assert!(page.iter().all(|e| e.stream_id == ada));
            after = page.last().and_then(|e| e.event.trade_id());
            read.extend(page.iter().filter_map(|e| e.event.trade_id()));
        }
        assert_eq!(read, [10, 20, 30, 50, 51, 52]);
        let above = store.read_trades(&ada, Some(30), 100).await.unwrap();
        let ids: Vec<u64> = above.iter().filter_map(|e| e.event.trade_id()).collect();
        assert_eq!(ids, [50, 51, 52]);
        assert!(store
            .read_trades(&ada, Some(u64::MAX), 10)
            .await
            .unwrap()
            .is_empty());
    }

    pub async fn append_then_read_back_with_metadata(db: &TestDb) {
        let store = db.open().await;
        let sym = symbol("BTCUSDT");
        let trading = StreamId::trading(&sym);
        let correlation = Uuid::now_v7();
        let cause = Uuid::now_v7();
        // Who sent it, with the characters COPY and JSON treat specially.
        let who: hedgehog_store::Metadata = [
            ("by", "ada@desk\\1"),
            ("via", "cli\t\"quoted\"\n"),
            ("client", "[::1]:5050"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let started = NewEvent::new(TradingStarted {
            symbol: sym.clone(),
            after_trade_id: None,
        })
        .caused_by(correlation, cause)
        .with_metadata(who.clone());
        let out = store
            .append(&trading, ExpectedVersion::Exact(0), vec![started.clone()])
            .await
            .unwrap();
        assert_eq!(
            (out.appended, out.duplicates, out.stream_version),
            (1, 0, 1)
        );
        assert_eq!(out.last_position, Some(1));

        let market = StreamId::trades(&sym);
        let batch = trades("BTCUSDT", 100..103);
        let out = store
            .append(&market, ExpectedVersion::Any, batch.clone())
            .await
            .unwrap();
        assert_eq!(
            (out.appended, out.stream_version, out.last_position),
            (3, 3, Some(4))
        );

        let read = store.read_stream_to_end(&market).await.unwrap();
        assert_eq!(read.len(), 3);
        for (i, (got, sent)) in read.iter().zip(&batch).enumerate() {
            assert_eq!(got.stream_version, i as i64 + 1);
            assert_eq!(got.position, i as i64 + 2);
            assert_eq!(got.event_id, sent.event_id);
            assert_eq!(
                got.event, sent.event,
                "payload survives the round trip exactly"
            );
            assert!(
                got.recorded_at > 1_700_000_000_000,
                "recorded_at is a real ms time"
            );
        }
        let all = store.read_all(1, 100).await.unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].correlation_id, Some(correlation));
        assert_eq!(all[0].causation_id, Some(cause));
        assert_eq!(all[0].event, started.event);
        assert_eq!(
            all[0].metadata, who,
            "metadata survives the round trip exactly"
        );
        assert_eq!(all[1].correlation_id, None);
        assert!(all[1].metadata.is_empty(), "no metadata reads as none");

        assert_eq!(store.head_position().await.unwrap(), 4);
        assert_eq!(store.stream_version(&trading).await.unwrap(), 1);
        assert_eq!(
            store
                .stream_version(&StreamId::new("nothing").unwrap())
                .await
                .unwrap(),
            0
        );
        let streams = store.streams().await.unwrap();
        assert_eq!(streams, vec![(market.clone(), 3), (trading, 1)]);
        // Reads from a version or position in the middle.
        let tail = store.read_stream(&market, 2, 10).await.unwrap();
        assert_eq!(
            tail.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(store.read_all(3, 1).await.unwrap()[0].position, 3);
        // A second instance on the same database sees the same log.
        let again = db.open().await;
        assert_eq!(again.read_all(1, 100).await.unwrap(), all);
    }

    pub async fn expected_version_conflicts_write_nothing(db: &TestDb) {
        let store = db.open().await;
        let sym = symbol("ETHUSDT");
        let stream = StreamId::trading(&sym);
        let ev = || {
            NewEvent::new(TradingStarted {
                symbol: sym.clone(),
                after_trade_id: None,
            })
        };
        store
            .append(&stream, ExpectedVersion::Exact(0), vec![ev()])
            .await
            .unwrap();

        let err = store
            .append(&stream, ExpectedVersion::Exact(0), vec![ev(), ev()])
            .await
            .unwrap_err();
        match &err {
            StoreError::Conflict {
                actual, expected, ..
            } => {
                assert_eq!(*actual, 1);
                assert_eq!(*expected, ExpectedVersion::Exact(0));
            }
            other => panic!("expected a conflict, got {other}"),
        }
        assert!(err.is_conflict());
        assert!(err.to_string().contains("trading-ETHUSDT"), "{err}");
        assert_eq!(
            store.head_position().await.unwrap(),
            1,
            "a conflict writes nothing"
        );

        let err = store
            .append(&stream, ExpectedVersion::Exact(5), vec![ev()])
            .await
            .unwrap_err();
        assert!(err.is_conflict());
        // An empty append still checks the version.
        assert!(store
            .append(&stream, ExpectedVersion::Exact(3), vec![])
            .await
            .unwrap_err()
            .is_conflict());

        let out = store
            .append(&stream, ExpectedVersion::Exact(1), vec![ev()])
            .await
            .unwrap();
        assert_eq!(out.stream_version, 2);
        let out = store
            .append(&stream, ExpectedVersion::Any, vec![ev()])
            .await
            .unwrap();
        assert_eq!(out.stream_version, 3);
        assert_eq!(store.head_position().await.unwrap(), 3);
    }

    pub async fn reappending_is_idempotent(db: &TestDb) {
        let store = db.open().await;
        let btc = StreamId::trades(&symbol("BTCUSDT"));
        let batch = trades("BTCUSDT", 1..501);
        let out = store
            .append(&btc, ExpectedVersion::Exact(0), batch.clone())
            .await
            .unwrap();
        assert_eq!((out.appended, out.duplicates), (500, 0));

        // The same events again (a retry): nothing new, even with a now-stale expected version.
        let out = store
            .append(&btc, ExpectedVersion::Exact(0), batch.clone())
            .await
            .unwrap();
        assert_eq!(
            (out.appended, out.duplicates, out.stream_version),
            (0, 500, 500)
        );
        assert_eq!(out.last_position, None);

        // The same trades under new event ids (a re-import): the (stream, trade id) key catches them.
        let out = store
            .append(&btc, ExpectedVersion::Any, trades("BTCUSDT", 1..501))
            .await
            .unwrap();
        assert_eq!((out.appended, out.duplicates), (0, 500));

        // Overlap: 251..750 holds 250 old and 250 new trades; the new get contiguous versions.
        let out = store
            .append(&btc, ExpectedVersion::Any, trades("BTCUSDT", 251..751))
            .await
            .unwrap();
        assert_eq!(
            (out.appended, out.duplicates, out.stream_version),
            (250, 250, 750)
        );

        // Repeats inside one batch count as duplicates too.
        let mut repeated = trades("BTCUSDT", 751..761);
        repeated.push(repeated[0].clone());
        repeated.push(NewEvent::new(trade("BTCUSDT", 755)));
        let out = store
            .append(&btc, ExpectedVersion::Any, repeated)
            .await
            .unwrap();
        assert_eq!((out.appended, out.duplicates), (10, 2));

        // The same trade id on another market is another trade.
        let eth = StreamId::trades(&symbol("ETHUSDT"));
        let out = store
            .append(&eth, ExpectedVersion::Any, trades("ETHUSDT", 1..11))
            .await
            .unwrap();
        assert_eq!(out.appended, 10);

        let stored = store.read_stream_to_end(&btc).await.unwrap();
        assert_eq!(stored.len(), 760);
        let ids: Vec<u64> = stored.iter().map(|e| e.event.trade_id().unwrap()).collect();
        assert_eq!(
            ids,
            (1..761).collect::<Vec<u64>>(),
            "each trade once, in order"
        );
        let versions: Vec<i64> = stored.iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (1..761).collect::<Vec<i64>>());
        assert_eq!(store.head_position().await.unwrap(), 770);
    }

    pub async fn failing_batch_leaves_nothing(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        store
            .append(&stream, ExpectedVersion::Any, trades("ADAUSDT", 1..11))
            .await
            .unwrap();
        // Fault injection: the database refuses one particular event, deep inside a large
        // batch (past the first INSERT statement), so part of the batch was already written
        // inside the transaction when it fails.
        // Both tables of the log: a trade is a row of `market_trades` unless kept as JSON.
        match db.backend {
            common::Backend::Sqlite => db.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.trade_id = 2500 \
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END; \
                 CREATE TRIGGER poison_row BEFORE INSERT ON market_trades \
                 WHEN NEW.trade_id = 2500 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
            ).await,
            common::Backend::Postgres => db.execute(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.trade_id = 2500 THEN RAISE EXCEPTION 'poisoned row'; END IF; \
                 RETURN NEW; END; $$; \
                 CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison(); \
                 CREATE TRIGGER poison BEFORE INSERT ON market_trades FOR EACH ROW EXECUTE FUNCTION poison();",
            ).await,
        }
        let err = store
            .append(&stream, ExpectedVersion::Any, trades("ADAUSDT", 11..3011))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("poisoned row"), "{err}");
        assert_eq!(
            store.head_position().await.unwrap(),
            10,
            "nothing of the batch is stored"
        );
        assert_eq!(store.stream_version(&stream).await.unwrap(), 10);
        assert_eq!(store.read_all(1, 10_000).await.unwrap().len(), 10);

        // The store is still usable and positions continue without a hole.
        let out = store
            .append(
                &stream,
                ExpectedVersion::Exact(10),
                trades("ADAUSDT", 11..2011),
            )
            .await
            .unwrap();
        assert_eq!((out.appended, out.last_position), (2000, Some(2010)));
    }

    pub async fn global_order_is_gap_free_and_respects_streams(db: &TestDb) {
        let store = db.open().await;
        let names = ["trades-AAA", "trades-BBB", "trading-AAA"];
        let mut sent: Vec<(StreamId, Uuid)> = Vec::new();
        for round in 0..20u64 {
            for (i, name) in names.iter().enumerate() {
                let stream = StreamId::new(name).unwrap();
                let n = 1 + (round as usize + i) % 4;
                let batch: Vec<NewEvent> = (0..n)
                    .map(|k| NewEvent::new(trade("AAA", round * 100 + i as u64 * 10 + k as u64)))
                    .collect();
                sent.extend(batch.iter().map(|e| (stream.clone(), e.event_id)));
                store
                    .append(&stream, ExpectedVersion::Any, batch)
                    .await
                    .unwrap();
            }
        }
        let all = store.read_all(1, 1_000_000).await.unwrap();
        assert_eq!(all.len(), sent.len());
        for (i, (e, (stream, id))) in all.iter().zip(&sent).enumerate() {
            assert_eq!(
                e.position,
                i as i64 + 1,
                "positions are 1, 2, 3, ... with no gap"
            );
            assert_eq!(
                (&e.stream_id, &e.event_id),
                (stream, id),
                "$all is the append order"
            );
        }
        let mut last: HashMap<&StreamId, i64> = HashMap::new();
        for e in &all {
            let prev = last.insert(&e.stream_id, e.stream_version).unwrap_or(0);
            assert_eq!(
                e.stream_version,
                prev + 1,
                "each stream's versions appear in order"
            );
        }
        // Paging through $all gives the same sequence.
        let mut paged = Vec::new();
        let mut from = 1;
        loop {
            let page = store.read_all(from, 7).await.unwrap();
            if page.is_empty() {
                break;
            }
            from = page.last().unwrap().position + 1;
            paged.extend(page);
        }
        assert_eq!(paged, all);
    }

    pub async fn subscription_catches_up_then_follows_live_appends(db: &TestDb) {
        // Exactly two catch-up pages (10,000 events each): the page boundary and the empty page
        // after it are the cases a pager gets wrong.
        const N: u64 = 20_000;
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        for start in (1..=N).step_by(5_000) {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    trades("BTCUSDT", start..start + 5_000),
                )
                .await
                .unwrap();
        }

        let mut sub = store.subscribe_all(0);
        let caught_up = take(&mut sub, N as usize).await;
        for (i, e) in caught_up.iter().enumerate() {
            assert_eq!(e.position, i as i64 + 1);
        }

        let writer = store.clone();
        let s = stream.clone();
        let started = std::time::Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer
                .append(&s, ExpectedVersion::Any, trades("BTCUSDT", N + 1..N + 6))
                .await
                .unwrap();
        });
        let live = take(&mut sub, 5).await;
        assert_eq!(
            live.iter().map(|e| e.position).collect::<Vec<_>>(),
            [20_001, 20_002, 20_003, 20_004, 20_005],
            "the next events after the catch-up, none repeated"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "woken promptly, not by a slow poll"
        );

        // Starting in the middle gives exactly what follows.
        let mut mid = store.subscribe_all(19_998);
        let got = take(&mut mid, 7).await;
        assert_eq!(got.first().unwrap().position, 19_999);
        assert_eq!(got.last().unwrap().position, 20_005);
    }

    pub async fn subscription_sees_appends_from_another_store_instance(db: &TestDb) {
        let reader = db.open().await;
        let writer = db.open().await; // another pool: stands for another process
        let mut sub = reader.subscribe_all(0);
        let stream = StreamId::streaming(&symbol("BTCUSDT"));
        let w = writer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            w.append(
                &stream,
                ExpectedVersion::Exact(0),
                vec![NewEvent::new(StreamingStarted {
                    symbol: symbol("BTCUSDT"),
                })],
            )
            .await
            .unwrap();
        });
        let started = std::time::Instant::now();
        let got = take(&mut sub, 1).await;
        assert_eq!(got[0].event.event_type(), "StreamingStarted");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "foreign appends arrive within the poll interval"
        );
    }

    pub async fn concurrent_writers_never_make_a_subscriber_skip(db: &TestDb) {
        const WRITERS: u64 = 8;
        const BATCHES: u64 = 40;
        const PER_BATCH: u64 = 25;
        let total = (WRITERS * BATCHES * PER_BATCH) as usize;

        let subscriber = db.open().await;
        let mut sub = subscriber.subscribe_all(0);
        let collector = tokio::spawn(async move { take(&mut sub, total).await });

        let mut writers = Vec::new();
        for w in 0..WRITERS {
            // Each writer has its own store (its own pool), as separate processes would.
            let store = db.open().await;
            writers.push(tokio::spawn(async move {
                let stream = StreamId::new(&format!("trades-W{w}")).unwrap();
                let mut ids = Vec::new();
                for b in 0..BATCHES {
                    let first = b * PER_BATCH;
                    let batch = trades(&format!("W{w}"), first..first + PER_BATCH);
                    ids.extend(batch.iter().map(|e| e.event_id));
                    let out = store
                        .append(&stream, ExpectedVersion::Any, batch)
                        .await
                        .unwrap();
                    assert_eq!(out.appended, PER_BATCH as usize);
                }
                ids
            }));
        }
        let mut written = HashSet::new();
        for w in writers {
            written.extend(w.await.unwrap());
        }
        let seen = collector.await.unwrap();
        assert_eq!(seen.len(), total);
        let mut ids = HashSet::new();
        for (i, e) in seen.iter().enumerate() {
            assert_eq!(e.position, i as i64 + 1, "every position, once, in order");
            assert!(ids.insert(e.event_id), "event {} seen twice", e.event_id);
        }
        assert_eq!(
            ids, written,
            "the subscriber saw exactly the acknowledged events"
        );
        // Per stream, trades arrive in the order each writer appended them.
        let mut last: HashMap<&StreamId, u64> = HashMap::new();
        for e in &seen {
            let t = e.event.trade_id().unwrap();
            if let Some(prev) = last.insert(&e.stream_id, t) {
                assert_eq!(t, prev + 1);
            }
        }
    }

    /// Writers in one process, each keeping a batch in line (`begin_append`, acknowledged after
    /// the next one commits), as an import does: on SQLite their commits are synced beside the
    /// writers and shared, and this process's subscriber is held back until they are. Every
    /// acknowledged batch reads back whole, and the subscriber sees each event once, in order.
    pub async fn appends_in_line_are_acknowledged_durable_and_seen_once(db: &TestDb) {
        const WRITERS: u64 = 4;
        const BATCHES: u64 = 30;
        const PER_BATCH: u64 = 50;
        let total = (WRITERS * BATCHES * PER_BATCH) as usize;
        let store = db.open().await;
        let mut sub = store.subscribe_all(0);
        let collector = tokio::spawn(async move { take(&mut sub, total).await });

        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let stream = StreamId::new(&format!("trades-L{w}")).unwrap();
                let mut acknowledged = Vec::new();
                let mut appends = store.appends_in_line();
                for b in 0..=BATCHES {
                    let out = if b < BATCHES {
                        let first = b * PER_BATCH;
                        let batch = trades(&format!("L{w}"), first..first + PER_BATCH);
                        let prepared = store.prepare(batch).unwrap();
                        appends
                            .append(&stream, ExpectedVersion::Any, prepared)
                            .await
                    } else {
                        appends.finish().await
                    };
                    let Some(out) = out.unwrap() else { continue };
                    assert_eq!(out.appended, PER_BATCH as usize);
                    // Acknowledged: it reads back at once, whole, at the positions it was given.
                    let last = out.last_position.unwrap();
                    let first = last - PER_BATCH as i64 + 1;
                    let read = store.read_all(first, PER_BATCH as i64).await.unwrap();
                    assert_eq!(read.len(), PER_BATCH as usize);
                    assert!(read.iter().all(|e| e.stream_id == stream));
                    acknowledged.push(out.stream_version);
                }
                assert_eq!(
                    acknowledged,
                    (1..=BATCHES)
                        .map(|b| (b * PER_BATCH) as i64)
                        .collect::<Vec<_>>(),
                    "acknowledged in the order appended"
                );
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let seen = collector.await.unwrap();
        let mut ids = HashSet::new();
        for (i, e) in seen.iter().enumerate() {
            assert_eq!(e.position, i as i64 + 1, "every position, once, in order");
            assert!(ids.insert(e.event_id), "event {} seen twice", e.event_id);
        }
        assert_eq!(store.head_position().await.unwrap(), total as i64);
    }

    pub async fn eventually_repository_round_trip(db: &TestDb) {
        use eventually::{AggregateRootBuilder, Repository, Versioned};
        use hedgehog_domain::streaming::StreamingCommand;
        use hedgehog_engine::aggregate::StreamingAggregate;

        let store = db.open().await;
        let mut repo = Repository::new(
            AggregateRootBuilder::from(StreamingAggregate),
            store.clone(),
        );
        let id = StreamId::streaming(&symbol("BTCUSDT"));

        let mut root = repo.get(id.clone()).await.unwrap();
        assert_eq!(root.version(), 0);
        assert!(!root.state().streaming);
        root.handle(StreamingCommand::Start).await.unwrap();
        let root = repo.add(root).await.unwrap();
        assert_eq!(root.version(), 1);

        let mut root = repo.get(id.clone()).await.unwrap();
        assert_eq!(root.version(), 1);
        assert!(
            root.state().streaming,
            "state rebuilt from the stored events"
        );
        // Starting what is started decides nothing and appends nothing.
        root.handle(StreamingCommand::Start).await.unwrap();
        let root = repo.add(root).await.unwrap();
        assert_eq!(root.version(), 1);
        assert_eq!(store.stream_version(&id).await.unwrap(), 1);

        // Two commands racing from the same version: the second loses with a conflict.
        let mut first = repo.get(id.clone()).await.unwrap();
        let mut second = repo.get(id.clone()).await.unwrap();
        first.handle(StreamingCommand::Stop).await.unwrap();
        second.handle(StreamingCommand::Stop).await.unwrap();
        repo.add(first).await.unwrap();
        match repo.add(second).await {
            Err(eventually::repository::Error::Store(e)) => {
                use eventually::store::AppendError;
                assert!(e.is_conflict_error(), "{e}");
            }
            Err(other) => panic!("expected a store conflict, got {other}"),
            Ok(_) => panic!("a lost race must not append"),
        }
        let root = repo.get(id.clone()).await.unwrap();
        assert_eq!((root.version(), root.state().streaming), (2, false));

        // A repository over `acting_for` records who sent the command beside each event.
        let who: hedgehog_store::Metadata = [("by".to_owned(), "ada@desk".to_owned())].into();
        let mut repo = Repository::new(
            AggregateRootBuilder::from(StreamingAggregate),
            store.acting_for(who.clone()),
        );
        let mut root = repo.get(id.clone()).await.unwrap();
        root.handle(StreamingCommand::Start).await.unwrap();
        repo.add(root).await.unwrap();
        let stored = store.read_stream_to_end(&id).await.unwrap();
        assert_eq!(stored.len(), 3);
        assert!(stored[..2].iter().all(|e| e.metadata.is_empty()));
        assert_eq!(stored[2].metadata, who);

        // Removing a stream is refused: the log is append-only.
        let err = repo.remove(id.clone()).await.unwrap_err();
        assert!(err.to_string().contains("permanent"), "{err}");
    }

    pub async fn eventually_store_views_map_versions_and_positions(db: &TestDb) {
        use eventually::store::{Expected, Select};
        use eventually::{EventStore, EventSubscriber};
        use futures::TryStreamExt;

        let mut store: Store = db.open().await;
        let a = StreamId::new("trades-AAA").unwrap();
        let b = StreamId::new("trades-BBB").unwrap();
        let ev = |id| hedgehog_domain::Event::from(trade("AAA", id));
        assert_eq!(
            EventStore::append(
                &mut store,
                a.clone(),
                Expected::Exact(0),
                vec![ev(1), ev(2)]
            )
            .await
            .unwrap(),
            2
        );
        assert_eq!(
            EventStore::append(&mut store, b.clone(), Expected::Any, vec![ev(1)])
                .await
                .unwrap(),
            1
        );
        let err = EventStore::append(&mut store, a.clone(), Expected::Exact(0), vec![ev(3)])
            .await
            .unwrap_err();
        assert!(err.is_conflict());

        let stream: Vec<_> = store
            .stream(a.clone(), Select::From(2))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(stream.len(), 1);
        assert_eq!((stream[0].version(), stream[0].sequence_number()), (2, 2));
        let all: Vec<_> = store
            .stream_all(Select::From(2))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(|p| p.sequence_number()).collect::<Vec<_>>(),
            [2, 3]
        );
        assert_eq!(all[1].source_id(), &b);

        // eventually's subscription delivers what is appended after it starts.
        let mut live = EventSubscriber::subscribe_all(&store).await.unwrap();
        let mut writer = store.clone();
        EventStore::append(&mut writer, b.clone(), Expected::Exact(1), vec![ev(2)])
            .await
            .unwrap();
        let next = tokio::time::timeout(WAIT, live.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((next.version(), next.sequence_number()), (2, 4));
        use eventually::Versioned;
    }

    pub async fn append_only_at_the_database_level(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        // Trades 1 and 2 are rows of `market_trades`; 3, with metadata, is JSON in `events`.
        let mut batch = trades("BTCUSDT", 1..3);
        batch.push(
            NewEvent::new(trade("BTCUSDT", 3))
                .with_metadata([("by".to_owned(), "test".to_owned())].into_iter().collect()),
        );
        store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .unwrap();
        let before = store.read_all(1, 10).await.unwrap();
        assert_eq!(before.len(), 3);
        for sql in [
            "UPDATE events SET payload = '{}'",
            "DELETE FROM events",
            "UPDATE market_trades SET price = 0",
            "DELETE FROM market_trades",
        ] {
            let err = db.try_execute(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(store.read_all(1, 10).await.unwrap(), before);
    }

    /// A log written before trades were stored positionally (schema version 2) holds them as
    /// keyed JSON objects, version 1: they read back as before, beside new ones, and a trade
    /// stored either way is still never stored twice.
    pub async fn trades_stored_by_schema_version_1_still_read(db: &TestDb) {
        let store = db.open().await;
        let market = StreamId::trades(&symbol("BTCUSDT"));
        let old = trade("BTCUSDT", 7);
        let old_id = Uuid::now_v7();
        let payload = hedgehog_domain::Event::TradeReceived(old.clone())
            .encode()
            .unwrap();
        assert!(payload.starts_with(r#"{"type":"TradeReceived","symbol":"BTCUSDT""#));
        insert_raw_trade(db, 1, old_id, &market, &payload).await;
        let out = store
            .append(&market, ExpectedVersion::Any, trades("BTCUSDT", 6..9))
            .await
            .unwrap();
        assert_eq!(
            (out.appended, out.duplicates, out.stream_version),
            (2, 1, 3),
            "trade 7, stored by version 1, is not stored again"
        );
        let read = store.read_stream_to_end(&market).await.unwrap();
        assert_eq!(read[0].event_id, old_id);
        assert_eq!(read[0].event, hedgehog_domain::Event::TradeReceived(old));
        assert_eq!(
            read.iter()
                .map(|e| e.event.trade_id().unwrap())
                .collect::<Vec<_>>(),
            [7, 6, 8]
        );
        let slim = store.read_stream_events(&market, 1, 10).await.unwrap();
        assert_eq!(
            slim.iter().map(|e| &e.event).collect::<Vec<_>>(),
            read.iter().map(|e| &e.event).collect::<Vec<_>>()
        );
        let mut sub = store.subscribe_all(0);
        assert_eq!(take(&mut sub, 3).await, read);
    }

    /// Free text in an event (an exchange's words) reaches the payload with JSON's escapes:
    /// backslashes, quotes, tabs and newlines must come back as they went in, whatever the
    /// backend's bulk path does with such characters.
    pub async fn payloads_with_escapes_and_control_characters_round_trip(db: &TestDb) {
        use hedgehog_domain::events::{StopReason, TradingStopped};
        let store = db.open().await;
        let sym = symbol("BTCUSDT");
        let detail = "-1013 \"Filter failure\": C:\\path\\N\ttab\nline\r\u{1}\u{7f} \\N \\. end";
        let stopped = NewEvent::new(TradingStopped {
            symbol: sym.clone(),
            reason: StopReason::Command,
            detail: Some(detail.to_owned()),
            unsold: Vec::new(),
        });
        let stream = StreamId::trading(&sym);
        store
            .append(&stream, ExpectedVersion::Exact(0), vec![stopped.clone()])
            .await
            .unwrap();
        let read = store.read_stream_to_end(&stream).await.unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].event, stopped.event);
        let hedgehog_domain::Event::TradingStopped(back) = &read[0].event else {
            panic!("wrong variant")
        };
        assert_eq!(back.detail.as_deref(), Some(detail));
    }

    /// Opening a fresh store migrates it; several openers at once (several processes starting
    /// together) must all succeed, not race to create the same tables.
    pub async fn many_processes_can_open_a_fresh_store_at_once(db: &TestDb) {
        let opens: Vec<_> = (0..8)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { Store::open(&url).await })
            })
            .collect();
        for open in opens {
            let store = open.await.unwrap().expect("every concurrent open succeeds");
            assert_eq!(store.head_position().await.unwrap(), 0);
        }
    }

    /// Market trades are rows of `market_trades` unless they cannot be (metadata, another
    /// symbol than their stream's, a kind with no code); either way they read back as
    /// written (ids, times, metadata), in the log's order on every read path, and a trade
    /// stored in one table is never stored again through the other.
    pub async fn trades_as_rows_read_back_exactly_as_written(db: &TestDb) {
        use hedgehog_domain::TradeKind;
        use hedgehog_store::trade_event_id;
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        let derived = |t: hedgehog_domain::events::TradeReceived| {
            let id = trade_event_id(&stream, &t);
            NewEvent::new(t).with_id(id)
        };
        let who: hedgehog_store::Metadata =
            [("by".to_owned(), "test".to_owned())].into_iter().collect();
        let mut block = trade("ADAUSDT", 4);
        block.kind = TradeKind::Other("BLOCK".into());
        let mut odd = trade("ADAUSDT", 5);
        odd.price = "26000.1000".parse().unwrap();
        odd.quantity = "0".parse().unwrap();
        odd.kind = TradeKind::InsuranceFund;
        odd.buyer_order_id = None;
        odd.first_trade_id = Some(1);
        let batch = vec![
            derived(trade("ADAUSDT", 1)),       // a row, its id derived
            NewEvent::new(trade("ADAUSDT", 2)), // a row keeping its own id
            NewEvent::new(trade("ADAUSDT", 3)).with_metadata(who.clone()), // JSON
            derived(block),                     // JSON: no code for its kind
            derived(odd),                       // a row
            NewEvent::new(trade("BTCUSDT", 6)), // JSON: not the stream's symbol
            derived(trade("ADAUSDT", 7)),       // a row
        ];
        let outcome = store
            .append(&stream, ExpectedVersion::Any, batch.clone())
            .await
            .unwrap();
        assert_eq!((outcome.appended, outcome.stream_version), (7, 7));
        let read = store.read_all(1, 100).await.unwrap();
        assert_eq!(read.len(), 7);
        for (i, (e, new)) in read.iter().zip(&batch).enumerate() {
            assert_eq!(e.position, i as i64 + 1);
            assert_eq!(e.stream_version, i as i64 + 1);
            assert_eq!(e.event_id, new.event_id, "trade {}", i + 1);
            assert_eq!(e.event, new.event, "trade {}", i + 1);
            assert_eq!(e.metadata, new.metadata, "trade {}", i + 1);
            assert_eq!(e.recorded_at, read[0].recorded_at);
            assert_eq!(
                e.event.encode_stored().unwrap(),
                new.event.encode_stored().unwrap()
            );
        }
        let ids = |table: &str| {
            format!("SELECT CAST(trade_id AS TEXT) FROM {table} WHERE trade_id IS NOT NULL ORDER BY position")
        };
        assert_eq!(
            db.text_rows(&ids("market_trades")).await,
            ["1", "2", "5", "7"]
        );
        assert_eq!(db.text_rows(&ids("events")).await, ["3", "4", "6"]);

        // Every read path merges both tables alike.
        assert_eq!(store.read_stream(&stream, 1, 100).await.unwrap(), read);
        assert_eq!(store.read_stream(&stream, 4, 2).await.unwrap(), read[3..5]);
        assert_eq!(store.read_all(3, 3).await.unwrap(), read[2..5]);
        let slim = store.read_stream_events(&stream, 2, 100).await.unwrap();
        assert_eq!(slim.len(), 6);
        for (s, r) in slim.iter().zip(&read[1..]) {
            assert_eq!((s.position, &s.event), (r.position, &r.event));
        }
        let by_id: Vec<u64> = store
            .read_trades(&stream, Some(2), 3)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| e.event.trade_id())
            .collect();
        assert_eq!(by_id, [3, 4, 5]);
        let place = |position| {
            Some(Place {
                position,
                version: position,
            })
        };
        assert_eq!(
            store.first_trade_after(&stream, Some(2)).await.unwrap(),
            place(3)
        );
        assert_eq!(
            store.first_trade_after(&stream, Some(4)).await.unwrap(),
            place(5)
        );
        assert_eq!(store.head_position().await.unwrap(), 7);

        // Stored either way, a trade is not stored again the other way, on the fast path
        // (trade 8 is new) or the careful one.
        let again = vec![
            derived(trade("ADAUSDT", 3)), // JSON before, a row now
            NewEvent::new(trade("ADAUSDT", 1)).with_metadata(who.clone()), // a row before, JSON now
            derived(trade("ADAUSDT", 8)),
        ];
        let outcome = store
            .append(&stream, ExpectedVersion::Any, again)
            .await
            .unwrap();
        assert_eq!((outcome.appended, outcome.duplicates), (1, 2));
        assert_eq!(store.read_all(1, 100).await.unwrap().len(), 8);
        let retry = store
            .append(&stream, ExpectedVersion::Exact(0), batch)
            .await
            .unwrap();
        assert_eq!(
            (retry.appended, retry.duplicates),
            (0, 7),
            "a retry of the batch"
        );
    }

    /// `trade_events` shows a trade stored as a row with the very values it shows for the
    /// same trade stored as JSON: decimals as the JSON's text, kind, flags, times.
    pub async fn trade_events_shows_rows_as_it_shows_json(db: &TestDb) {
        use hedgehog_domain::TradeKind;
        let store = db.open().await;
        let who: hedgehog_store::Metadata =
            [("by".to_owned(), "test".to_owned())].into_iter().collect();
        let samples = |sym: &str| {
            let mut out = Vec::new();
            for (i, (price, quantity)) in [
                ("0.09643000", "1617.50000000"),
                ("26000.10", "0.00100000"),
                ("100", "0"),
                ("0.00000001", "12345678.90"),
            ]
            .into_iter()
            .enumerate()
            {
                let mut t = trade(sym, i as u64 + 1);
                t.price = price.parse().unwrap();
                t.quantity = quantity.parse().unwrap();
                if i == 2 {
                    t.kind = TradeKind::Adl;
                    t.first_trade_id = Some(1);
                    t.seller_order_id = Some(99);
                }
                out.push(t);
            }
            out
        };
        let rows: Vec<NewEvent> = samples("ADAUSDT").into_iter().map(NewEvent::new).collect();
        let json: Vec<NewEvent> = samples("ETHUSDT")
            .into_iter()
            .map(|t| NewEvent::new(t).with_metadata(who.clone()))
            .collect();
        for (sym, batch) in [("ADAUSDT", rows), ("ETHUSDT", json)] {
            store
                .append(&StreamId::trades(&symbol(sym)), ExpectedVersion::Any, batch)
                .await
                .unwrap();
        }
        db.execute(
            "INSERT INTO projection_checkpoints (name, position, generation, updated_at) \
             VALUES ('trade_events', 100, 1, 0)",
        )
        .await;
        let shown = |sym: &str| {
            format!(
                "SELECT market || ' ' || trade_id || ' ' || price || ' ' || quantity || ' ' || \
                 COALESCE(CAST(buyer_order_id AS TEXT), '-') || ' ' || \
                 COALESCE(CAST(seller_order_id AS TEXT), '-') || ' ' || trade_time || ' ' || \
                 event_time || ' ' || CAST(buyer_market_maker AS TEXT) || ' ' || kind || ' ' || \
                 COALESCE(CAST(first_trade_id AS TEXT), '-') \
                 FROM trade_events WHERE symbol = '{sym}' ORDER BY trade_id"
            )
        };
        let as_rows = db.text_rows(&shown("ADAUSDT")).await;
        assert_eq!(as_rows.len(), 4);
        assert_eq!(as_rows, db.text_rows(&shown("ETHUSDT")).await);
        assert!(
            as_rows[0].contains(" 0.09643000 1617.50000000 "),
            "{}",
            as_rows[0]
        );
        assert!(as_rows[2].contains(" 100 0 "), "{}", as_rows[2]);
        assert!(as_rows[2].contains(" ADL 1"), "{}", as_rows[2]);
        let in_rows = db
            .text_rows("SELECT CAST(COUNT(*) AS TEXT) FROM market_trades")
            .await;
        assert_eq!(in_rows, ["4"]);
    }

    /// A long page of `$all` (read in parts at once on SQLite) over runs of trade rows and of
    /// JSON events is the log in order: every position once, each event as appended.
    pub async fn long_pages_merge_both_tables_in_order(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        let who: hedgehog_store::Metadata =
            [("by".to_owned(), "test".to_owned())].into_iter().collect();
        // Runs of rows, single JSON events, and a run of JSON events at the end.
        let batch: Vec<NewEvent> = (1..=12_000_u64)
            .map(|id| {
                let e = NewEvent::new(trade("ADAUSDT", id));
                if id % 7 == 0 || id > 11_500 {
                    e.with_metadata(who.clone())
                } else {
                    e
                }
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, batch.clone())
            .await
            .unwrap();
        for (from, limit) in [
            (1_i64, 10_000_i64),
            (3, 9_999),
            (2_001, 10_000),
            (11_990, 50),
        ] {
            let page = store.read_all(from, limit).await.unwrap();
            let expected = (limit as usize).min(12_001 - from as usize);
            assert_eq!(page.len(), expected, "from {from}, {limit}");
            for (k, e) in page.iter().enumerate() {
                let at = from + k as i64;
                assert_eq!(e.position, at);
                let new = &batch[at as usize - 1];
                assert_eq!(
                    (e.event_id, &e.event),
                    (new.event_id, &new.event),
                    "at {at}"
                );
            }
        }
        // The slim pages projections read, from a position inside a run of rows.
        let mut slim = store.subscribe_all_events_batches(2_000);
        let mut at = 2_001_i64;
        while at <= 12_000 {
            let page = tokio::time::timeout(WAIT, slim.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            for e in page {
                assert_eq!(e.position, at);
                assert_eq!(e.event, batch[at as usize - 1].event, "at {at}");
                at += 1;
            }
        }
    }

    /// Another process, which has not met a market stream's number, appends an event that is
    /// not a trade to it: the stream's version is the one its rows reached.
    pub async fn a_stream_of_rows_keeps_its_version_for_another_process(db: &TestDb) {
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        db.open()
            .await
            .append(&stream, ExpectedVersion::Any, trades("ADAUSDT", 1..4))
            .await
            .unwrap();
        let other = db.open().await;
        let started = || {
            vec![NewEvent::new(TradingStarted {
                symbol: symbol("ADAUSDT"),
                after_trade_id: Some(3),
            })]
        };
        // With another stream's batch: one transaction of two parts (on PostgreSQL, not the
        // one-statement append).
        let outcomes = other
            .begin_append_streams(vec![
                (
                    stream.clone(),
                    ExpectedVersion::Exact(3),
                    other.prepare(started()).unwrap(),
                ),
                (
                    StreamId::trading(&symbol("ADAUSDT")),
                    ExpectedVersion::Any,
                    other.prepare(started()).unwrap(),
                ),
            ])
            .await
            .unwrap()
            .acknowledged_all()
            .await
            .unwrap();
        assert_eq!(
            (outcomes[0].stream_version, outcomes[0].last_position),
            (4, Some(4))
        );
        let err = other
            .append(&stream, ExpectedVersion::Exact(3), trades("ADAUSDT", 9..10))
            .await
            .unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert_eq!(other.read_stream(&stream, 1, 10).await.unwrap().len(), 4);
    }

    /// Sealing moves a log's older market trades into segments and changes no event: every
    /// read path, at every page size, answers the same before and after, appends go on as
    /// before (a sealed trade is still a duplicate), and each stream's newest trade stays a row.
    pub async fn sealing_moves_trades_and_changes_no_event(db: &TestDb) {
        use hedgehog_store::trade_event_id;
        let store = db.open().await;
        let (ada, btc) = (symbol("ADAUSDT"), symbol("BTCUSDT"));
        let streams = [
            StreamId::trades(&ada),
            StreamId::trades(&btc),
            StreamId::trading(&ada),
        ];
        let derived = |stream: &StreamId, t: hedgehog_domain::events::TradeReceived| {
            let id = trade_event_id(stream, &t);
            NewEvent::new(t).with_id(id)
        };
        let who: hedgehog_store::Metadata =
            [("by".to_owned(), "test".to_owned())].into_iter().collect();
        // Two market streams interleaved, a decision between them, a trade kept as JSON, one
        // with its own id, and trade ids out of order within a batch.
        for round in 0..4_u64 {
            let base = round * 10;
            let mut ada_batch: Vec<NewEvent> = (base + 1..base + 8)
                .map(|id| derived(&streams[0], trade("ADAUSDT", id)))
                .collect();
            ada_batch.push(NewEvent::new(trade("ADAUSDT", base + 9)));
            ada_batch.push(derived(&streams[0], trade("ADAUSDT", base + 8)));
            if round == 1 {
                ada_batch
                    .push(NewEvent::new(trade("ADAUSDT", base + 10)).with_metadata(who.clone()));
            }
            store
                .append(&streams[0], ExpectedVersion::Any, ada_batch)
                .await
                .unwrap();
            let btc_batch = (base + 1..base + 6)
                .map(|id| derived(&streams[1], trade("BTCUSDT", id)))
                .collect();
            store
                .append(&streams[1], ExpectedVersion::Any, btc_batch)
                .await
                .unwrap();
            let version = store.stream_version(&streams[2]).await.unwrap();
            store
                .append(
                    &streams[2],
                    ExpectedVersion::Exact(version),
                    vec![NewEvent::new(TradingStarted {
                        symbol: ada.clone(),
                        after_trade_id: None,
                    })],
                )
                .await
                .unwrap();
        }
        let before = sealing::everything(&store, &streams, 100_000).await;
        assert_eq!(before.all.len(), 4 * 9 + 1 + 4 * 5 + 4);
        for page in [1, 3, 7] {
            assert_eq!(
                sealing::everything(&store, &streams, page).await,
                before,
                "pages of {page}"
            );
        }
        let rows = db
            .text_rows("SELECT CAST(COUNT(*) AS TEXT) FROM market_trades")
            .await;

        // Trades up to id 24 are older than the cut (`trade` times them by id).
        let cut = 1_559_520_022_517 + 25;
        let mut seen = Vec::new();
        let sealed = store.seal(cut, |so_far| seen.push(so_far)).await.unwrap();
        assert!(sealed.segments >= 2, "{sealed:?}");
        assert_eq!(seen.last(), Some(&sealed));
        let left = db
            .text_rows("SELECT CAST(COUNT(*) AS TEXT) FROM market_trades")
            .await;
        assert_eq!(
            left[0].parse::<u64>().unwrap() + sealed.trades,
            rows[0].parse::<u64>().unwrap()
        );
        // ADAUSDT's 1..=9, 11..=19 and 21..=24 (20 is JSON, and there is no 10); BTCUSDT's
        // 1..=5, 11..=15 and 21..=24.
        assert_eq!(sealed.trades, 22 + 14);
        assert_eq!(
            db.text_rows("SELECT CAST(SUM(trades) AS TEXT) FROM trade_segments")
                .await,
            [sealed.trades.to_string()]
        );

        // The same log through every reader, in pages of every size, in a fresh process too.
        for page in [100_000, 1, 3, 7] {
            assert_eq!(
                sealing::everything(&store, &streams, page).await,
                before,
                "pages of {page}"
            );
        }
        let other = db.open().await;
        assert_eq!(sealing::everything(&other, &streams, 4).await, before);
        let mut all = other.subscribe_all(0);
        assert_eq!(take(&mut all, before.all.len()).await, before.all);

        // Sealing again seals nothing new; a later cut seals what has aged since, but never a
        // stream's newest trade.
        assert_eq!(store.seal(cut, |_| {}).await.unwrap().trades, 0);
        store.seal(i64::MAX, |_| {}).await.unwrap();
        assert_eq!(sealing::everything(&store, &streams, 5).await, before);
        assert_eq!(
            db.text_rows(
                "SELECT CAST(m.trade_id AS TEXT) FROM market_trades m ORDER BY m.position"
            )
            .await,
            ["38", "35"]
        );

        // A sealed trade is still stored: appended again (whole, or under another id), it is a
        // duplicate, and the stream goes on from its version.
        let again = store
            .append(
                &streams[0],
                ExpectedVersion::Any,
                vec![
                    derived(&streams[0], trade("ADAUSDT", 3)),
                    NewEvent::new(trade("ADAUSDT", 4)),
                    derived(&streams[0], trade("ADAUSDT", 41)),
                ],
            )
            .await
            .unwrap();
        assert_eq!((again.appended, again.duplicates), (1, 2));
        assert_eq!(again.stream_version, before.versions[0] + 1);
        assert_eq!(again.last_position, Some(before.head + 1));
        let retried = store
            .append(
                &streams[1],
                ExpectedVersion::Exact(0),
                (1..6)
                    .map(|id| derived(&streams[1], trade("BTCUSDT", id)))
                    .collect(),
            )
            .await
            .unwrap();
        assert_eq!((retried.appended, retried.duplicates), (0, 5));

        // Segments are as permanent as rows, and a row leaves only for a segment.
        for sql in [
            "UPDATE trade_segments SET trades = trades + 1",
            "DELETE FROM trade_segments",
            "DELETE FROM market_trades",
        ] {
            let err = db.try_execute(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
    }

    /// A segment whose block no longer matches its checksum is an error naming it, on every
    /// read path that needs it; it is never read as a gap.
    pub async fn a_damaged_segment_is_named_never_skipped(db: &TestDb) {
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("ADAUSDT"));
        store
            .append(&stream, ExpectedVersion::Any, trades("ADAUSDT", 1..50))
            .await
            .unwrap();
        let sealed = store.seal(i64::MAX, |_| {}).await.unwrap();
        assert_eq!((sealed.segments, sealed.trades), (1, 48));
        drop(store);
        // Past the triggers, as a bad disk or a careless hand would.
        match db.backend {
            common::Backend::Sqlite => {
                db.execute("DROP TRIGGER trade_segments_are_immutable")
                    .await;
            }
            common::Backend::Postgres => {
                db.execute("ALTER TABLE trade_segments DISABLE TRIGGER trade_segments_append_only")
                    .await;
            }
        }
        db.execute("UPDATE trade_segments SET checksum = checksum + 1")
            .await;
        let store = db.open().await;
        let named = |e: StoreError| {
            let text = e.to_string();
            assert!(
                text.contains("sealed segment")
                    && text.contains("trades-ADAUSDT")
                    && text.contains("checksum"),
                "{text}"
            );
        };
        named(store.read_all(1, 10).await.unwrap_err());
        named(store.read_stream_events(&stream, 1, 100).await.unwrap_err());
        named(store.read_trades(&stream, None, 100).await.unwrap_err());
        // What is not sealed still reads: the newest trade.
        assert_eq!(store.read_all(49, 10).await.unwrap().len(), 1);
    }

    /// Pages of 10,000 (read in two halves at once on SQLite) over a log whose sealed trades
    /// lie between rows that stay: every page is whole, and the log reads as before.
    pub async fn long_pages_read_through_segments_between_rows(db: &TestDb) {
        let store = db.open().await;
        let (old, new) = (
            StreamId::trades(&symbol("ADAUSDT")),
            StreamId::trades(&symbol("BTCUSDT")),
        );
        // Rounds of 300 old trades, then 700 new: sealed runs and rows in every page.
        for round in 0..12_u64 {
            let ids = round * 300 + 1..round * 300 + 301;
            store
                .append(&old, ExpectedVersion::Any, trades("ADAUSDT", ids))
                .await
                .unwrap();
            // Trades timed long after the cut: they stay rows.
            let later = round * 700 + 10_000_001..round * 700 + 10_000_701;
            store
                .append(&new, ExpectedVersion::Any, trades("BTCUSDT", later))
                .await
                .unwrap();
        }
        let read_all = |store: Store| async move {
            let mut all = Vec::new();
            loop {
                let from = all.last().map_or(1, |e: &RecordedEvent| e.position + 1);
                let page = store.read_all(from, 10_000).await.unwrap();
                let short = page.len() < 10_000;
                all.extend(page);
                if short {
                    return all;
                }
            }
        };
        let before = read_all(store.clone()).await;
        assert_eq!(before.len(), 12_000);
        let sealed = store
            .seal(1_559_520_022_517 + 1_000_000, |_| {})
            .await
            .unwrap();
        assert_eq!(sealed.trades, 3_599);
        assert_eq!(read_all(store.clone()).await, before);
        assert_eq!(read_all(db.open().await).await, before);
        assert_eq!(
            store.read_stream_to_end(&old).await.unwrap(),
            before
                .iter()
                .filter(|e| e.stream_id == old)
                .cloned()
                .collect::<Vec<_>>()
        );
    }
    /// Leases and fencing: a lease has one holder, is taken only once it expired or was
    /// released, its epoch only rises, and a decision carrying a node's fence is stored only
    /// while that node holds that lease at that epoch; a command (no fence) is not checked.
    pub async fn a_decision_under_a_lost_lease_is_refused(db: &TestDb) {
        use hedgehog_store::{Acquired, Fence, NodeInfo};
        let store = db.open().await;
        let ada = symbol("ADAUSDT");
        let stream = StreamId::trading(&ada);
        let node = |name: &str| NodeInfo {
            node: name.to_owned(),
            pid: 1,
            host: "test".to_owned(),
        };
        let (a, b) = (node("node-a"), node("node-b"));
        let ttl = 300;
        let decision = |fence: &Fence, after: u64| {
            NewEvent::new(TradingStarted {
                symbol: ada.clone(),
                after_trade_id: Some(after),
            })
            .with_metadata(fence.metadata())
        };
        let fence = |node: &NodeInfo, epoch| Fence {
            resource: "ADAUSDT".to_owned(),
            node: node.node.clone(),
            epoch,
        };
        let append = |event: NewEvent| {
            let (store, stream) = (store.clone(), stream.clone());
            async move {
                let version = store.stream_version(&stream).await.unwrap();
                store
                    .append(&stream, ExpectedVersion::Exact(version), vec![event])
                    .await
            }
        };

        assert!(store.join(&a, ttl, None).await.unwrap());
        assert!(store.join(&b, ttl, None).await.unwrap());
        // A live node's name is its own: another process cannot claim it, unless it is the
        // same host's process that named it and has died.
        let impostor = NodeInfo {
            pid: 2,
            ..a.clone()
        };
        assert!(!store.join(&impostor, ttl, None).await.unwrap());
        assert!(store.beat(&impostor, ttl).await.unwrap().is_none());
        let Acquired::Held(first) = store.acquire("ADAUSDT", &a, ttl).await.unwrap() else {
            panic!("a free lease is taken");
        };
        assert_eq!((first.node.as_str(), first.epoch), ("node-a", 1));
        match store.acquire("ADAUSDT", &b, ttl).await.unwrap() {
            Acquired::Taken(held) => assert_eq!((held.node.as_str(), held.epoch), ("node-a", 1)),
            other => panic!("a live lease has one holder: {other:?}"),
        }
        append(decision(&fence(&a, 1), 1)).await.unwrap();
        for wrong in [fence(&a, 2), fence(&b, 1)] {
            let refused = append(decision(&wrong, 2)).await.unwrap_err();
            assert!(refused.is_stale_lease(), "{refused}");
        }
        assert_eq!(store.stream_version(&stream).await.unwrap(), 1);

        // a stops renewing (paused): once its lease expired b takes it, at a higher epoch,
        // and a's decisions are refused, naming who holds it.
        tokio::time::sleep(Duration::from_millis(ttl as u64 + 100)).await;
        let Acquired::Held(second) = store.acquire("ADAUSDT", &b, ttl).await.unwrap() else {
            panic!("an expired lease is taken");
        };
        assert_eq!((second.node.as_str(), second.epoch), ("node-b", 2));
        match append(decision(&fence(&a, 1), 3)).await {
            Err(e @ StoreError::StaleLease { .. }) => {
                let said = e.to_string();
                assert!(said.contains("node-b holds at epoch 2"), "{said}");
                assert!(said.contains("trading-ADAUSDT"), "{said}");
            }
            other => panic!("a decision under a lost lease is refused: {other:?}"),
        }
        assert_eq!(store.stream_version(&stream).await.unwrap(), 1);
        assert!(
            store.beat(&a, ttl).await.unwrap().unwrap().is_empty(),
            "a lost it"
        );
        let held = store.beat(&b, ttl).await.unwrap().unwrap();
        assert_eq!(held.len(), 1);
        append(decision(&fence(&b, 2), 4)).await.unwrap();
        // A user's command carries no fence: it is decided against the version, not a lease.
        append(NewEvent::new(TradingStarted {
            symbol: ada.clone(),
            after_trade_id: None,
        }))
        .await
        .unwrap();

        // Released, it is refused at once, and the next holder's epoch is higher still.
        store.release("ADAUSDT", "node-b").await.unwrap();
        let refused = append(decision(&fence(&b, 2), 5)).await.unwrap_err();
        assert!(refused.to_string().contains("node-b released"), "{refused}");
        let Acquired::Held(third) = store.acquire("ADAUSDT", &a, ttl).await.unwrap() else {
            panic!("a released lease is taken");
        };
        assert_eq!(third.epoch, 3);
        assert_eq!(store.stream_version(&stream).await.unwrap(), 3);

        // A restarted node (same name and host, its previous process dead) takes its name and
        // its leases back at once, at a higher epoch.
        let restarted = NodeInfo {
            pid: 3,
            ..a.clone()
        };
        assert!(store.join(&restarted, ttl, Some(1)).await.unwrap());
        assert!(
            store.beat(&a, ttl).await.unwrap().is_none(),
            "the old process is out"
        );
        let Acquired::Held(fourth) = store.acquire("ADAUSDT", &restarted, ttl).await.unwrap()
        else {
            panic!("a node's own lease is taken back");
        };
        assert_eq!(fourth.epoch, 4);
        let refused = append(decision(&fence(&a, 3), 6)).await.unwrap_err();
        assert!(refused.is_stale_lease(), "{refused}");

        let cluster = store.cluster().await.unwrap();
        let names: Vec<&str> = cluster.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(names, ["node-a", "node-b"]);
        assert_eq!(cluster.held().get("node-a").map(Vec::len), Some(1));
        store.leave("node-a").await.unwrap();
        let cluster = store.cluster().await.unwrap();
        assert_eq!(cluster.nodes.len(), 1);
        assert!(cluster.held().is_empty(), "leaving releases: {cluster:?}");
    }
}

mod sealing {
    use super::*;

    /// Everything a reader can ask of the log, read in pages of `page` events.
    #[derive(Debug, PartialEq)]
    pub struct Everything {
        pub all: Vec<RecordedEvent>,
        all_paged: Vec<RecordedEvent>,
        streams: Vec<Vec<RecordedEvent>>,
        streams_paged: Vec<Vec<hedgehog_store::StreamEvent>>,
        trades: Vec<Vec<hedgehog_store::StreamEvent>>,
        resumes: Vec<Option<Place>>,
        pub head: i64,
        pub versions: Vec<i64>,
        heads: Vec<StreamHead>,
    }

    pub async fn everything(store: &Store, streams: &[StreamId], page: i64) -> Everything {
        let all = store.read_all(1, 100_000).await.unwrap();
        let mut all_paged = Vec::new();
        loop {
            let from = all_paged
                .last()
                .map_or(1, |e: &RecordedEvent| e.position + 1);
            let next = store.read_all(from, page).await.unwrap();
            if next.is_empty() {
                break;
            }
            all_paged.extend(next);
        }
        let mut out = Everything {
            all,
            all_paged,
            streams: Vec::new(),
            streams_paged: Vec::new(),
            trades: Vec::new(),
            resumes: Vec::new(),
            head: store.head_position().await.unwrap(),
            versions: Vec::new(),
            heads: store.stream_heads("").await.unwrap(),
        };
        for stream in streams {
            out.streams
                .push(store.read_stream(stream, 1, 100_000).await.unwrap());
            let mut paged = Vec::new();
            loop {
                let from = paged
                    .last()
                    .map_or(1, |e: &hedgehog_store::StreamEvent| e.stream_version + 1);
                let next = store.read_stream_events(stream, from, page).await.unwrap();
                if next.is_empty() {
                    break;
                }
                paged.extend(next);
            }
            out.streams_paged.push(paged);
            let mut trades = Vec::new();
            let mut after = None;
            loop {
                let next = store.read_trades(stream, after, page).await.unwrap();
                let Some(last) = next.last() else { break };
                after = last.event.trade_id();
                trades.extend(next);
            }
            // The lean read along the same key holds the same trades in the same places.
            let mut placed = Vec::new();
            let mut after = None;
            loop {
                let next = store.read_placed_trades(stream, after, page).await.unwrap();
                let Some(last) = next.last() else { break };
                after = Some(last.trade.trade_id);
                placed.extend(next);
            }
            let expected: Vec<hedgehog_store::PlacedTrade> = trades
                .iter()
                .filter_map(|e| match &e.event {
                    hedgehog_domain::Event::TradeReceived(t) => Some(hedgehog_store::PlacedTrade {
                        position: e.position,
                        stream_version: e.stream_version,
                        trade: t.clone(),
                    }),
                    _ => None,
                })
                .collect();
            assert_eq!(placed, expected, "{stream}: placed trades by {page}");
            out.trades.push(trades);
            for after in [None, Some(0), Some(3), Some(10), Some(25), Some(1_000)] {
                out.resumes
                    .push(store.first_trade_after(stream, after).await.unwrap());
            }
            out.versions
                .push(store.stream_version(stream).await.unwrap());
        }
        out
    }
}
