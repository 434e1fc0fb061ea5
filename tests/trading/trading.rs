//! Trading end to end through the public API, on both backends: real ADAUSDT trades imported
//! into the store, trading started by command, a trading worker feeding the trades through the
//! paper exchange, and the decided events checked one by one against an independent,
//! deliberately simple re-computation of the book's rules.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use common::book::{self, BookOrder, BookSettings};
use common::{symbol, TestDb};
use hedgehog_domain::events::{StopReason, TradeReceived};
use hedgehog_domain::exchange::SymbolRules;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::types::FillStatus;
use hedgehog_domain::{Event, Side, Timestamp, TradingStatus};
use hedgehog_engine::aggregate::TradingAggregate;
use hedgehog_engine::trading::{self, Request, SettingsChange};
use hedgehog_engine::worker::Trader;
use hedgehog_ingest::import::{self, ImportOptions};
use hedgehog_store::{RecordedEvent, Store, StreamId};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

on_both_backends!(
    decides_order_for_order_as_the_book_on_a_real_day,
    a_shutdown_drains_as_in_the_book,
    stop_cancels_open_orders_and_reports_unsold,
    shutdown_runs_positions_out_then_turns_off,
    a_running_worker_follows_commands_from_another_store_handle,
    the_engine_resumes_symbols_trading_at_start_up,
    racing_commands_cannot_both_win,
    a_snapshot_and_the_events_after_it_equal_the_full_fold,
    an_engine_killed_at_any_moment_resumes_from_its_snapshots_exactly,
);

/// The book's ADAUSDT dump: its first 2,000 rows, or the whole day (57,018 trades).
fn fixture(whole_day: bool) -> PathBuf {
    let name = if whole_day {
        "ADAUSDT-2019-06-03.csv.gz"
    } else {
        "ADAUSDT-2019-06-03.head2000.csv.gz"
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn ada_rules() -> SymbolRules {
    hedgehog_binance::exchange_info::bundled()
        .unwrap()
        .get(&symbol("ADAUSDT"))
        .unwrap()
        .clone()
}

/// One chunk of 100 USDT, intervals tight enough for these 2,000 trades to run positions
/// through (ADAUSDT's 0.0001 tick is 0.1 % of its 2019 price).
fn one_chunk() -> SettingsChange {
    SettingsChange {
        chunks: Some(1),
        budget: Some(dec!(100)),
        buy_down_interval: Some(dec!(0.0001)),
        profit_target: Some(dec!(0.0001)),
        fee: Some(dec!(0.0002)),
        ..SettingsChange::default()
    }
}

async fn command(store: &Store, request: Request) -> trading::Outcome {
    trading::command(store, &ada_rules(), request, Timestamp(1_559_520_000_000))
        .await
        .unwrap()
}

/// Sets the settings, starts trading, imports the trades; returns the imported trades' events.
async fn prepared(
    db: &TestDb,
    settings: SettingsChange,
    whole_day: bool,
) -> (Store, Vec<RecordedEvent>) {
    let store = db.open().await;
    command(&store, Request::Settings(settings)).await;
    let started = command(&store, Request::Start).await;
    assert_eq!(started.state.status, TradingStatus::On);
    let options = ImportOptions {
        symbol: Some(symbol("ADAUSDT")),
        ..ImportOptions::default()
    };
    import::import_trades(&store, &[fixture(whole_day)], &options, |_| {})
        .await
        .unwrap();
    let trades = trades_of(&store).await;
    assert_eq!(trades.len(), if whole_day { 57_018 } else { 2000 });
    (store, trades)
}

async fn trader(store: &Store) -> Trader {
    let aggregate = TradingAggregate {
        rules: ada_rules(),
        strategies: Default::default(),
        paper: Some(PaperExchange::default()),
    };
    Trader::load(store.clone(), aggregate).await.unwrap()
}

fn ada_trading() -> TradingAggregate {
    TradingAggregate {
        rules: ada_rules(),
        strategies: Default::default(),
        paper: Some(PaperExchange::default()),
    }
}

async fn trading_events(store: &Store) -> Vec<Event> {
    store
        .read_stream_to_end(&StreamId::trading(&symbol("ADAUSDT")))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

fn trade_of(e: &RecordedEvent) -> &TradeReceived {
    match &e.event {
        Event::TradeReceived(t) => t,
        other => panic!("not a trade: {other:?}"),
    }
}

/// The issue's day: chunks 5, budget 100, buy_down 0.0025, profit 0.001, rebuy 0.001, fee 0.001.
fn book_day() -> SettingsChange {
    SettingsChange {
        chunks: Some(5),
        budget: Some(dec!(100)),
        buy_down_interval: Some(dec!(0.0025)),
        profit_target: Some(dec!(0.001)),
        rebuy_interval: Some(dec!(0.001)),
        fee: Some(dec!(0.001)),
        ..Default::default()
    }
}

fn book_settings(change: &SettingsChange) -> BookSettings {
    let s = change.applied_to(&Default::default());
    let rules = ada_rules();
    BookSettings {
        chunks: s.chunks as usize,
        budget: s.budget,
        buy_down_interval: s.buy_down_interval,
        profit_interval: s.profit_target,
        rebuy_interval: s.rebuy_interval,
        fee: s.fee,
        tick_size: rules.tick_size,
        step_size: rules.step_size,
    }
}

/// Hedgehog's orders in the book's terms, in the order they were placed.
fn orders_of(events: &[Event]) -> Vec<BookOrder> {
    let mut orders: Vec<(u64, BookOrder)> = Vec::new();
    for e in events {
        match e {
            Event::OrderPlaced(o) => orders.push((
                o.order_id,
                BookOrder {
                    side: if o.side == Side::Buy { "BUY" } else { "SELL" },
                    price: o.price,
                    quantity: o.quantity,
                    placed_on_trade: o.trade_id.expect("placed on a trade's step"),
                    filled: false,
                },
            )),
            Event::OrderFilled(f) if f.status == FillStatus::Filled => {
                let order = orders.iter_mut().find(|(id, _)| *id == f.order_id).unwrap();
                order.1.filled = true;
            }
            _ => {}
        }
    }
    orders.into_iter().map(|(_, o)| o).collect()
}

mod cases {
    pub use super::more_cases::*;
    use super::*;

    pub async fn decides_order_for_order_as_the_book_on_a_real_day(db: &TestDb) {
        let (store, trades) = prepared(db, book_day(), true).await;
        let mut worker = trader(&store).await;
        for e in &trades {
            worker.handle(e).await.unwrap();
        }
        let events = trading_events(&store).await;
        assert!(matches!(
            events[..3],
            [
                Event::SettingsUpdated(_),
                Event::TradingStarted(_),
                Event::PositionOpened(_)
            ]
        ));
        let Event::PositionOpened(first) = &events[2] else {
            unreachable!()
        };
        assert_eq!(first.trade_id, trade_of(&trades[0]).trade_id);
        let market: Vec<(u64, Decimal)> = trades
            .iter()
            .map(trade_of)
            .map(|t| (t.trade_id, t.price))
            .collect();
        let expected = book::run(&market, &book_settings(&book_day()), None);
        // The book's own count on this day, sorted by trade id (see the issue).
        assert_eq!(expected.len(), 136);
        assert_eq!(orders_of(&events), expected);
        // Every fill was charged the fee rate on its quote value; closes add both sides up.
        for e in &events {
            match e {
                Event::OrderFilled(f) => assert_eq!(f.fee, f.price * f.quantity * dec!(0.001)),
                Event::PositionClosed(c) => assert_eq!(
                    c.realized_profit,
                    c.quantity * (c.sell_price - c.buy_price) - c.fees
                ),
                _ => {}
            }
        }
        // A restarted worker given the same trades again decides nothing new, and ends in the
        // state the first one holds (the trades that decided nothing pass the same way).
        let mut again = trader(&store).await;
        for e in &trades_of(&store).await {
            again.handle(e).await.unwrap();
        }
        assert_eq!(trading_events(&store).await.len(), events.len());
        assert_eq!(again.state(), worker.state());
    }

    /// A worker's snapshot, taken between two decisions (with the trades that decided nothing
    /// since the last one), and the trading events appended after it give the state the whole
    /// stream's fold gives once both have taken the same trades, and the state of the worker
    /// that never stopped.
    pub async fn a_snapshot_and_the_events_after_it_equal_the_full_fold(db: &TestDb) {
        let (store, trades) = prepared(db, book_day(), true).await;
        let (head, tail) = trades.split_at(30_000);
        let mut worker = trader(&store).await;
        for e in head {
            worker.handle(e).await.unwrap();
        }
        worker.save_snapshot().await.unwrap();
        let at_snapshot = worker.state().clone();
        assert!(
            at_snapshot.stepped > at_snapshot.trade_cursor,
            "saved after trades that decided nothing"
        );
        // The snapshot alone is the state, with no trade read again.
        let restarted = trader(&store).await;
        assert_eq!(restarted.state(), &at_snapshot);
        // The full fold, given the same trades, comes to it too.
        let mut folded = Trader::load_from_events(store.clone(), ada_trading())
            .await
            .unwrap();
        assert!(folded.state().stepped < at_snapshot.stepped);
        for e in head {
            folded.handle(e).await.unwrap();
        }
        assert_eq!(folded.state(), &at_snapshot);

        // The worker goes on deciding; a restart from the snapshot folds the decisions after
        // it, and both ways end where the worker does.
        for e in tail {
            worker.handle(e).await.unwrap();
        }
        let decided = trading_events(&store).await.len();
        let mut from_snapshot = trader(&store).await;
        let mut from_events = Trader::load_from_events(store.clone(), ada_trading())
            .await
            .unwrap();
        for e in &trades {
            from_snapshot.handle(e).await.unwrap();
            from_events.handle(e).await.unwrap();
        }
        assert_eq!(from_snapshot.state(), worker.state());
        assert_eq!(from_events.state(), worker.state());
        assert_eq!(
            trading_events(&store).await.len(),
            decided,
            "nothing decided twice"
        );

        // A snapshot that no longer fits is ignored, and the stream folded: another encoding,
        // another stream's last event, a state that does not decode.
        let stream = StreamId::trading(&symbol("ADAUSDT"));
        let saved = store
            .load_snapshot(&stream, "trading", 1)
            .await
            .unwrap()
            .expect("saved")
            .expect("usable");
        use hedgehog_store::{Snapshot, Unusable};
        let bad = [
            Snapshot {
                schema: 0,
                ..saved.clone()
            },
            Snapshot {
                last_event_id: uuid::Uuid::nil(),
                ..saved.clone()
            },
            Snapshot {
                state: r#"{"status":"on"}"#.into(),
                ..saved.clone()
            },
        ];
        for snapshot in bad {
            store.save_snapshot(&stream, &snapshot).await.unwrap();
            let why = store.load_snapshot(&stream, "trading", 1).await.unwrap();
            match why {
                Some(Err(Unusable::Schema {
                    found: 0,
                    wanted: 1,
                })) => {}
                Some(Err(Unusable::Moved { version, .. })) => assert_eq!(version, saved.version),
                Some(Ok(undecodable)) => assert_eq!(undecodable.state, r#"{"status":"on"}"#),
                other => panic!("{other:?}"),
            }
            let mut loaded = trader(&store).await;
            for e in &trades {
                loaded.handle(e).await.unwrap();
            }
            assert_eq!(loaded.state(), worker.state(), "{snapshot:?}");
        }
    }

    /// `hedgehog run` saving a snapshot every 50 trades is killed (SIGKILL) at moments spread
    /// over its catch-up of the book's day, five times, so that kills land before, between and
    /// inside snapshot writes; each start resumes from whatever was saved last. The decisions
    /// are exactly those of a worker that never stopped, and the last snapshot and the events
    /// after it give its state, as the full fold does.
    pub async fn an_engine_killed_at_any_moment_resumes_from_its_snapshots_exactly(db: &TestDb) {
        use common::processes::{spawn_with_env, terminate};
        // The worker that never stopped, on a store of its own.
        let reference_db = TestDb::sqlite();
        let (reference_store, trades) = prepared(&reference_db, book_day(), true).await;
        let mut reference = trader(&reference_store).await;
        for e in &trades {
            reference.handle(e).await.unwrap();
        }
        let decided: Vec<(uuid::Uuid, Event)> = reference_store
            .read_stream_to_end(&StreamId::trading(&symbol("ADAUSDT")))
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event_id, e.event))
            .collect();

        let (store, _) = prepared(db, book_day(), true).await;
        let killed = ["run", "--no-http", "--binance-ws-url", "ws://127.0.0.1:9"];
        let env = [
            ("HEDGEHOG_ENGINE_SNAPSHOT_EVERY", "50"),
            ("RUST_LOG", "warn"),
        ];
        let stream = StreamId::trading(&symbol("ADAUSDT"));
        let mut versions = Vec::new();
        for life in 0..5u64 {
            let mut engine = spawn_with_env(db, &killed, &env);
            // 0.4 s to 2 s: a debug build takes several seconds over the day.
            tokio::time::sleep(Duration::from_millis(400 + life * 397 % 1600)).await;
            engine.child().kill().unwrap();
            engine.child().wait().unwrap();
            versions.push(store.stream_version(&stream).await.unwrap());
        }
        // The last life runs to the end of the day and stops cleanly, once it is ready (a
        // SIGTERM before its signal handler is in place would end it as a kill does).
        let last = [
            "run",
            "--http",
            "127.0.0.1:0",
            "--binance-ws-url",
            "ws://127.0.0.1:9",
        ];
        let mut engine = spawn_with_env(db, &last, &env);
        let http = common::processes::Printed::follow(engine.child()).address("http://", "http://");
        wait_until(|| async {
            let health: serde_json::Value = reqwest::get(format!("{http}/api/health"))
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            health["ready"] == true
                && store.stream_version(&stream).await.unwrap() >= decided.len() as i64
        })
        .await;
        terminate(engine);
        let stored: Vec<(uuid::Uuid, Event)> = store
            .read_stream_to_end(&stream)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.event_id, e.event))
            .collect();
        assert_eq!(stored, decided, "killed at versions {versions:?}");
        let saved = store.load_snapshot(&stream, "trading", 1).await.unwrap();
        assert!(matches!(saved, Some(Ok(_))), "{saved:?}");
        let mut from_snapshot = trader(&store).await;
        let mut from_events = Trader::load_from_events(store.clone(), ada_trading())
            .await
            .unwrap();
        for e in &trades_of(&store).await {
            from_snapshot.handle(e).await.unwrap();
            from_events.handle(e).await.unwrap();
        }
        assert_eq!(from_snapshot.state(), reference.state());
        assert_eq!(from_events.state(), reference.state());
    }

    pub async fn a_shutdown_drains_as_in_the_book(db: &TestDb) {
        let (store, trades) = prepared(db, book_day(), false).await;
        let mut worker = trader(&store).await;
        let half = trades.len() / 2;
        for e in &trades[..half] {
            worker.handle(e).await.unwrap();
        }
        let last = trade_of(&trades[half - 1]).trade_id;
        command(&store, Request::Shutdown).await;
        for e in store.read_all(1, 100_000).await.unwrap() {
            worker.handle(&e).await.unwrap();
        }
        for e in &trades[half..] {
            worker.handle(e).await.unwrap();
        }
        let market: Vec<(u64, Decimal)> = trades
            .iter()
            .map(trade_of)
            .map(|t| (t.trade_id, t.price))
            .collect();
        let expected = book::run(&market, &book_settings(&book_day()), Some(last));
        assert_eq!(orders_of(&trading_events(&store).await), expected);
    }

    pub async fn stop_cancels_open_orders_and_reports_unsold(db: &TestDb) {
        let settings = SettingsChange {
            chunks: Some(5),
            ..one_chunk()
        };
        let (store, trades) = prepared(db, settings, false).await;
        let mut worker = trader(&store).await;
        // Trade until some position holds inventory and orders are open.
        let mut fed = 0;
        while worker.state().unsold().is_empty() || worker.state().open_orders().count() < 2 {
            worker.handle(&trades[fed]).await.unwrap();
            fed += 1;
        }
        let open: Vec<u64> = worker
            .state()
            .open_orders()
            .map(|(_, o)| o.order_id)
            .collect();
        let unsold = worker.state().unsold();
        let outcome = command(&store, Request::Stop).await;
        let cancelled: Vec<u64> = outcome
            .events
            .iter()
            .filter_map(|e| match e {
                Event::OrderCancelled(c) => Some(c.order_id),
                _ => None,
            })
            .collect();
        assert_eq!(cancelled, open, "every open order is cancelled");
        let Some(Event::TradingStopped(stopped)) = outcome.events.last() else {
            panic!("ends with TradingStopped: {:?}", outcome.events)
        };
        assert_eq!(stopped.reason, StopReason::Command);
        assert_eq!(stopped.unsold, unsold);
        // The worker takes the stop from the log and decides nothing on the later trades.
        let before = trading_events(&store).await.len();
        for e in store.read_all(1, 100_000).await.unwrap() {
            worker.handle(&e).await.unwrap();
        }
        for e in &trades[fed..] {
            worker.handle(e).await.unwrap();
        }
        assert_eq!(trading_events(&store).await.len(), before);
        assert_eq!(worker.state().status, TradingStatus::Off);
        // Stopping what is stopped changes nothing.
        assert!(command(&store, Request::Stop).await.events.is_empty());
    }

    pub async fn shutdown_runs_positions_out_then_turns_off(db: &TestDb) {
        let (store, trades) = prepared(db, one_chunk(), true).await;
        let mut worker = trader(&store).await;
        // Trade until the position's SELL is on the book.
        let mut fed = 0;
        while !worker
            .state()
            .open_orders()
            .any(|(_, o)| o.side == Side::Sell)
        {
            worker.handle(&trades[fed]).await.unwrap();
            fed += 1;
        }
        let outcome = command(&store, Request::Shutdown).await;
        assert!(matches!(
            outcome.events[..],
            [Event::TradingShutdownRequested(_)]
        ));
        let at_shutdown = trading_events(&store).await.len();
        for e in store.read_all(1, 100_000).await.unwrap() {
            worker.handle(&e).await.unwrap();
        }
        for e in &trades[fed..] {
            worker.handle(e).await.unwrap();
        }
        let after: Vec<&'static str> = trading_events(&store).await[at_shutdown..]
            .iter()
            .map(Event::event_type)
            .collect();
        assert_eq!(after, ["OrderFilled", "PositionClosed", "TradingStopped"]);
        let events = trading_events(&store).await;
        let Some(Event::TradingStopped(stopped)) = events.last() else {
            unreachable!()
        };
        assert_eq!(stopped.reason, StopReason::ShutdownCompleted);
        assert!(stopped.unsold.is_empty());
        assert_eq!(worker.state().status, TradingStatus::Off);
    }

    pub async fn a_running_worker_follows_commands_from_another_store_handle(db: &TestDb) {
        let (store, _) = prepared(db, one_chunk(), true).await;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let running = tokio::spawn(trader(&store).await.run(stopped));
        // It decides on the imported trades by itself...
        let other = db.open().await;
        wait_until(|| async {
            trading_events(&other)
                .await
                .iter()
                .any(|e| matches!(e, Event::PositionClosed(_)))
        })
        .await;
        // ...and a stop issued through another handle (another process, as far as the store
        // knows) reaches it: what it holds is cancelled, and it decides nothing afterwards. The
        // worker is still trading the day, so the stop may lose a race to one of its decisions
        // and be refused; a user tries again, as the error says.
        loop {
            let stop = trading::command(
                &other,
                &ada_rules(),
                Request::Stop,
                Timestamp(1_559_520_000_000),
            )
            .await;
            match stop {
                Ok(_) => break,
                Err(trading::TradingError::Conflict(_)) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        let stopped_at = trading_events(&other).await.len();
        let more: Vec<_> = (1..=50u64)
            .map(|i| {
                let mut t = common::trade("ADAUSDT", 20_000_000 + i);
                t.price = dec!(0.0001) * Decimal::from(900 + i % 7);
                hedgehog_store::NewEvent::new(t)
            })
            .collect();
        other
            .append(
                &StreamId::trades(&symbol("ADAUSDT")),
                hedgehog_store::ExpectedVersion::Any,
                more,
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(trading_events(&other).await.len(), stopped_at);
        stop.send(true).unwrap();
        running.await.unwrap().unwrap();
    }
}

mod more_cases {
    use super::*;
    use eventually::{AggregateRootBuilder, Repository};
    use hedgehog_domain::trading::Command;
    use hedgehog_engine::aggregate::TradingInput;
    use hedgehog_engine::{self as engine, EngineOptions};
    use std::sync::Arc;

    pub async fn the_engine_resumes_symbols_trading_at_start_up(db: &TestDb) {
        // Trading is on and the trades are stored before any engine runs.
        let (store, _) = prepared(db, one_chunk(), true).await;
        assert_eq!(trading_events(&store).await.len(), 2);
        let options = EngineOptions {
            strategies: Default::default(),
            binance_ws_url: "ws://127.0.0.1:9".into(),
            backfill: None,
            idle_timeout: hedgehog_ingest::streamer::IDLE_TIMEOUT,
            paper: PaperExchange::default(),
            rules: Arc::new(hedgehog_binance::exchange_info::bundled().unwrap()),
            updates: None,
            live: None,
            readiness: Default::default(),
            snapshot_every: hedgehog_engine::worker::TRADES_PER_SNAPSHOT,
            probe: None,
            cluster: hedgehog_engine::cluster::ClusterOptions::for_this_process(None, None),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stats = Arc::new(hedgehog_ingest::streamer::StreamerStats::default());
        let engine = tokio::spawn(engine::run(store.clone(), options, stats, stopped));
        wait_until(|| async {
            trading_events(&store)
                .await
                .iter()
                .any(|e| matches!(e, Event::PositionClosed(_)))
        })
        .await;
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), engine)
            .await
            .expect("the engine stops within seconds")
            .unwrap()
            .unwrap();
    }

    pub async fn racing_commands_cannot_both_win(db: &TestDb) {
        let store = db.open().await;
        let aggregate = TradingAggregate {
            rules: ada_rules(),
            strategies: Default::default(),
            paper: None,
        };
        let id = StreamId::trading(&symbol("ADAUSDT"));
        // Two deciders load the same version and both decide...
        let mut repository = Repository::new(AggregateRootBuilder::from(aggregate), store.clone());
        let mut first = repository.get(id.clone()).await.unwrap();
        let mut second = repository.get(id.clone()).await.unwrap();
        let start = || TradingInput::Command {
            command: Command::Start {
                after_trade_id: None,
            },
            time: Timestamp(1),
        };
        first.handle(start()).await.unwrap();
        second
            .handle(TradingInput::Command {
                command: Command::UpdateSettings(one_chunk().applied_to(&Default::default())),
                time: Timestamp(2),
            })
            .await
            .unwrap();
        // ...the first to append wins, the second is refused and writes nothing.
        repository.add(first).await.unwrap();
        let err = repository.add(second).await.unwrap_err();
        assert!(
            matches!(err, eventually::repository::Error::Store(ref e) if e.is_conflict()),
            "{err:?}"
        );
        assert_eq!(store.stream_version(&id).await.unwrap(), 1);

        // Through the command API, concurrent commands each either win at a version of their
        // own or report the conflict; the stream holds exactly the winners.
        let budgets = [100, 200, 300, 400, 500, 600, 700, 800];
        let results = futures::future::join_all(budgets.map(|budget| {
            let store = store.clone();
            async move {
                let change = SettingsChange {
                    budget: Some(Decimal::from(budget)),
                    ..SettingsChange::default()
                };
                trading::command(
                    &store,
                    &ada_rules(),
                    Request::Settings(change),
                    Timestamp(3),
                )
                .await
            }
        }))
        .await;
        let mut won = 0;
        for r in &results {
            match r {
                Ok(outcome) => {
                    assert_eq!(outcome.events.len(), 1);
                    won += 1;
                }
                Err(e) => assert!(
                    e.to_string()
                        .contains("at the same moment; nothing was written"),
                    "{e}"
                ),
            }
        }
        assert!(won >= 1);
        assert_eq!(store.stream_version(&id).await.unwrap(), 1 + won);
    }
}

async fn trades_of(store: &Store) -> Vec<RecordedEvent> {
    store
        .read_stream_to_end(&StreamId::trades(&symbol("ADAUSDT")))
        .await
        .unwrap()
}

async fn wait_until<F, Fut>(mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !done().await {
        assert!(started.elapsed() < Duration::from_secs(30), "timed out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
