//! The data warehouse's switches, on both backends: `storing stop` keeps a symbol's rows out of
//! `trade_events` / `orders` from its place in the log, `storing start` brings them back from
//! there, `storing start --backfill` fills what the log holds; the events are never touched,
//! other symbols never change, and a rebuild from position 0 gives the very same tables.

use crate::common;

use common::{symbol, trades, TestDb};
use hedgehog_domain::events::{OrderFilled, OrderPlaced, StoringTopic};
use hedgehog_domain::storing::StoringCommand;
use hedgehog_domain::types::{FillStatus, OrderType, TimeInForce};
use hedgehog_domain::{Event, Side, Timestamp};
use hedgehog_engine::streaming::Outcome;
use hedgehog_projections::query::{self, Window};
use hedgehog_projections::{Market, Projector};
use hedgehog_store::{ExpectedVersion, NewEvent, Store, StreamId};
use rust_decimal_macros::dec;

on_both_backends!(storing_switches_change_exactly_their_rows);

async fn trade_ids(store: &Store, sym: &str) -> Vec<u64> {
    query::trades(
        store,
        Market::Spot,
        &symbol(sym),
        Window::default(),
        None,
        100_000,
    )
    .await
    .unwrap()
    .iter()
    .map(|t| t.trade_id)
    .collect()
}

/// `(order id, status)` of the symbol's order rows.
async fn order_rows(store: &Store, sym: &str) -> Vec<(u64, String)> {
    let mut rows: Vec<_> = query::orders(&store.database(), None, Some(&symbol(sym)), None)
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.order_id, o.status))
        .collect();
    rows.sort();
    rows
}

async fn append_trades(store: &Store, ids: std::ops::Range<u64>) {
    store
        .append(
            &StreamId::trades(&symbol("ADAUSDT")),
            ExpectedVersion::Any,
            trades("ADAUSDT", ids),
        )
        .await
        .unwrap();
}

async fn append_order(store: &Store, event: Event) {
    store
        .append(
            &StreamId::trading(&symbol("ADAUSDT")),
            ExpectedVersion::Any,
            vec![NewEvent::new(event)],
        )
        .await
        .unwrap();
}

fn placed(order_id: u64) -> Event {
    OrderPlaced {
        symbol: symbol("ADAUSDT"),
        position_id: order_id,
        trade_id: None,
        order_id,
        client_order_id: format!("c{order_id}"),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: TimeInForce::Gtc,
        price: dec!(0.09),
        quantity: dec!(100),
        time: Timestamp(order_id as i64),
    }
    .into()
}

fn filled(order_id: u64) -> Event {
    OrderFilled {
        symbol: symbol("ADAUSDT"),
        position_id: order_id,
        order_id,
        side: Side::Buy,
        trade_id: None,
        price: dec!(0.09),
        quantity: dec!(100),
        cumulative_quantity: dec!(100),
        cumulative_quote_quantity: dec!(9),
        fee: dec!(0.009),
        fee_asset: "USDT".into(),
        commission: None,
        commission_price: None,
        base_fee: dec!(0),
        venue_trade_id: None,
        status: FillStatus::Filled,
        time: Timestamp(100 + order_id as i64),
    }
    .into()
}

async fn switch(store: &Store, topic: StoringTopic, command: StoringCommand) {
    let outcome = hedgehog_engine::storing::command(store, &symbol("ADAUSDT"), topic, command)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Changed);
}

mod cases {
    use super::*;

    pub async fn storing_switches_change_exactly_their_rows(db: &TestDb) {
        let store = db.open().await;
        let mut projector = Projector::new(store.clone());
        store
            .append(
                &StreamId::trades(&symbol("BTCUSDT")),
                ExpectedVersion::Any,
                trades("BTCUSDT", 1..6),
            )
            .await
            .unwrap();
        append_trades(&store, 1..11).await;
        append_order(&store, placed(1)).await;
        projector.catch_up().await.unwrap();
        // Off: trades 11..20 and order 2 (and order 1's fill) are in the log, not in the tables.
        switch(&store, StoringTopic::TradeEvents, StoringCommand::Stop).await;
        switch(&store, StoringTopic::Orders, StoringCommand::Stop).await;
        append_trades(&store, 11..21).await;
        append_order(&store, placed(2)).await;
        append_order(&store, filled(1)).await;
        projector.catch_up().await.unwrap();
        assert_eq!(
            trade_ids(&store, "ADAUSDT").await,
            (1..11).collect::<Vec<_>>()
        );
        assert_eq!(order_rows(&store, "ADAUSDT").await, [(1, "NEW".into())]);
        // On again, from here: 21..30 and order 3 are stored, what came while off is not.
        switch(
            &store,
            StoringTopic::TradeEvents,
            StoringCommand::Start { backfill: false },
        )
        .await;
        switch(
            &store,
            StoringTopic::Orders,
            StoringCommand::Start { backfill: false },
        )
        .await;
        append_trades(&store, 21..31).await;
        append_order(&store, placed(3)).await;
        projector.catch_up().await.unwrap();
        let mut expected: Vec<u64> = (1..11).chain(21..31).collect();
        assert_eq!(trade_ids(&store, "ADAUSDT").await, expected);
        assert_eq!(
            order_rows(&store, "ADAUSDT").await,
            [(1, "NEW".into()), (3, "NEW".into())]
        );
        assert_eq!(
            trade_ids(&store, "BTCUSDT").await,
            [1, 2, 3, 4, 5],
            "untouched"
        );
        // The same switches seen by a rebuild from 0 give the same tables.
        Projector::new(store.clone())
            .rebuild(|_, _| {})
            .await
            .unwrap();
        assert_eq!(trade_ids(&store, "ADAUSDT").await, expected);
        assert_eq!(
            order_rows(&store, "ADAUSDT").await,
            [(1, "NEW".into()), (3, "NEW".into())]
        );
        // Off, then on with a backfill: everything the log holds, fills included.
        let mut projector = Projector::new(store.clone());
        switch(&store, StoringTopic::TradeEvents, StoringCommand::Stop).await;
        switch(&store, StoringTopic::Orders, StoringCommand::Stop).await;
        append_trades(&store, 31..36).await;
        switch(
            &store,
            StoringTopic::TradeEvents,
            StoringCommand::Start { backfill: true },
        )
        .await;
        switch(
            &store,
            StoringTopic::Orders,
            StoringCommand::Start { backfill: true },
        )
        .await;
        append_trades(&store, 36..41).await;
        append_order(&store, placed(4)).await;
        projector.catch_up().await.unwrap();
        expected = (1..41).collect();
        assert_eq!(trade_ids(&store, "ADAUSDT").await, expected);
        let all_orders = vec![
            (1, "FILLED".to_owned()),
            (2, "NEW".to_owned()),
            (3, "NEW".to_owned()),
            (4, "NEW".to_owned()),
        ];
        assert_eq!(order_rows(&store, "ADAUSDT").await, all_orders);
        Projector::new(store.clone())
            .rebuild(|_, _| {})
            .await
            .unwrap();
        assert_eq!(trade_ids(&store, "ADAUSDT").await, expected);
        assert_eq!(order_rows(&store, "ADAUSDT").await, all_orders);
        assert_eq!(trade_ids(&store, "BTCUSDT").await, [1, 2, 3, 4, 5]);
        // Stopping deletes nothing, and the log kept every event.
        switch(&store, StoringTopic::TradeEvents, StoringCommand::Stop).await;
        projector.catch_up().await.unwrap();
        assert_eq!(trade_ids(&store, "ADAUSDT").await, expected);
        assert_eq!(
            store
                .stream_version(&StreamId::trades(&symbol("ADAUSDT")))
                .await
                .unwrap(),
            40
        );
        // Saying it twice changes nothing.
        let again = hedgehog_engine::storing::command(
            &store,
            &symbol("ADAUSDT"),
            StoringTopic::TradeEvents,
            StoringCommand::Stop,
        )
        .await
        .unwrap();
        assert_eq!(again, Outcome::AlreadySo);
    }
}

#[test]
fn the_cli_switches_and_lists_topics_case_insensitively() {
    let db = TestDb::sqlite();
    let run = |args: &[&str]| common::processes::hedgehog(&db, args);
    let out = common::processes::ok(run(&["storing", "stop", "TRADE_EVENTS", "ADAUSDT"]));
    assert!(
        out.contains("storing trade_events of ADAUSDT is now off"),
        "{out}"
    );
    let out = common::processes::ok(run(&["storing", "status"]));
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ADAUSDT", "off", "on"]),
        "{out}"
    );
    let out = common::processes::ok(run(&[
        "storing",
        "start",
        "trade_events",
        "ADAUSDT",
        "--backfill",
    ]));
    assert!(out.contains("is now on"), "{out}");
    let why = common::processes::refused(run(&["storing", "stop", "candles", "ADAUSDT"]));
    assert!(why.contains("use trade_events or orders"), "{why}");
    let why = common::processes::refused(run(&["storing", "stop", "orders", "NOPEUSDT"]));
    assert!(why.contains("NOPEUSDT"), "{why}");
}
