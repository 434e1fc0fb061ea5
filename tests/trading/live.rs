//! Live trading end to end, offline: `hedgehog run --exchange binance --live` against
//! `hedgehog exchange serve` (the paper exchange behind Binance's API, playing a real
//! recording), on both backends. The order goes out after it is recorded, its fill comes back
//! over the user data stream with the commission Binance would charge, the SELL goes out for
//! what is left after that commission; a stop recorded while the engine is down (killed with
//! SIGKILL) is carried out on the exchange by the next engine's reconciliation.
//!
//! Also: live trading is refused without `--live` or without keys, saying why; and
//! python-binance, a client nobody here wrote, trades against the same exchange.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::processes::{hedgehog, ok, refused, Running};
use common::{symbol, TestDb};
use hedgehog_binance::rest::{Credentials, OrderStatus, RestClient};
use hedgehog_domain::{Event, Side};
use hedgehog_store::{Store, StreamId};
use rust_decimal::Decimal;

on_both_backends!(
    a_live_engine_trades_on_the_paper_exchange_and_reconciles_after_sigkill,
    fills_missed_by_the_stream_are_read_back_with_their_commissions,
);

const KEY: &str = "hedgehog-test-key";
const SECRET: &str = "hedgehog-test-secret";
const WS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/binance-ws");

/// A `hedgehog exchange serve` on a free port, killed when dropped.
pub struct Exchange {
    _running: Running,
    pub addr: String,
}

impl Exchange {
    pub fn start(files: &[&str], args: &[&str]) -> Exchange {
        let files: Vec<String> = files.iter().map(|f| format!("{WS}/{f}")).collect();
        let mut all = vec!["--api-key", KEY, "--api-secret", SECRET];
        all.extend(files.iter().map(String::as_str));
        all.extend(args);
        let (running, url) = crate::common::processes::exchange_serve(&[], &all);
        let addr = url.trim_start_matches("http://").to_owned();
        Exchange {
            _running: running,
            addr,
        }
    }

    pub fn rest(&self) -> RestClient {
        RestClient::new(
            &format!("http://{}", self.addr),
            Some(Credentials::new(KEY, SECRET)),
            Duration::from_secs(5),
        )
    }
}

/// `hedgehog run --exchange binance --live` against `exchange`, keys in the environment.
fn live_engine(db: &TestDb, exchange: &Exchange) -> Running {
    live_engine_with(db, exchange, &format!("ws://{}/ws-api/v3", exchange.addr))
}

/// The same, with the user data stream at `ws_api_url`.
fn live_engine_with(db: &TestDb, exchange: &Exchange, ws_api_url: &str) -> Running {
    let addr = &exchange.addr;
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "run", "--no-http"])
        .args(["--exchange", "binance", "--live"])
        .args(["--binance-api-url", &format!("http://{addr}")])
        .args(["--binance-ws-api-url", ws_api_url])
        .args(["--binance-ws-url", &format!("ws://{addr}")])
        .env("BINANCE_API_KEY", KEY)
        .env("BINANCE_API_SECRET", SECRET)
        .stdout(Stdio::null())
        .spawn()
        .map(Running::new)
        .expect("start the live engine")
}

async fn trading_events(store: &Store) -> Vec<Event> {
    store
        .read_stream_to_end(&StreamId::trading(&symbol("BTCUSDT")))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

/// Waits (up to 60 s) until `done` holds of the trading stream, failing if the engine died.
async fn until(
    store: &Store,
    engine: &mut Running,
    what: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let started = Instant::now();
    loop {
        let events = trading_events(store).await;
        if done(&events) {
            return events;
        }
        if let Some(status) = engine.child().try_wait().unwrap() {
            panic!("the engine exited ({status}) before {what}: {events:#?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// BTCUSDT's settings for these tests: a tight BUY that the day's first dips fill, and a profit
/// target the recording does not reach soon, so the SELL rests.
fn tight_buy(db: &TestDb) {
    ok(hedgehog(
        db,
        &[
            "settings",
            "set",
            "BTCUSDT",
            "--budget",
            "100",
            "--chunks",
            "1",
            "--buy-down-interval",
            "0.00005",
            "--profit-target",
            "0.05",
        ],
    ));
    ok(hedgehog(db, &["streaming", "start", "BTCUSDT"]));
    ok(hedgehog(db, &["trading", "start", "BTCUSDT"]));
}

fn placed(events: &[Event], side: Side) -> Option<hedgehog_domain::events::OrderPlaced> {
    events.iter().find_map(|e| match e {
        Event::OrderPlaced(p) if p.side == side => Some(p.clone()),
        _ => None,
    })
}

mod cases {
    use super::*;

    pub async fn fills_missed_by_the_stream_are_read_back_with_their_commissions(db: &TestDb) {
        tight_buy(db);
        let exchange = Exchange::start(
            &["spot_btcusdt_20240808.gz"],
            &["--speed", "20", "--balance", "USDT=1000"],
        );
        let rest = exchange.rest();
        let store = db.open().await;
        // No user data stream: the engine learns of fills only by reconciling.
        let deaf = "ws://127.0.0.1:9/ws-api/v3";
        let mut engine = live_engine_with(db, &exchange, deaf);
        let events = until(&store, &mut engine, "the BUY", |e| {
            placed(e, Side::Buy).is_some()
        })
        .await;
        let buy = placed(&events, Side::Buy).unwrap();
        let by_id = hedgehog_binance::rest::OrderRef::ClientId(buy.client_order_id.clone());
        let started = Instant::now();
        loop {
            // The BUY is stored before it is sent: the exchange may not know it yet.
            match rest.query_order(&symbol("BTCUSDT"), &by_id).await {
                Ok(order) if order.status == OrderStatus::Filled => break,
                Ok(_) | Err(hedgehog_binance::rest::RestError::UnknownOrder { .. }) => {}
                Err(e) => panic!("querying the BUY: {e}"),
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the BUY never filled"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        engine.child().kill().unwrap();
        engine.child().wait().unwrap();
        assert!(
            !trading_events(&store)
                .await
                .iter()
                .any(|e| matches!(e, Event::OrderFilled(_))),
            "the fill was missed: no stream, and no reconciliation yet"
        );
        // The next engine reconciles at start: the fill comes back from myTrades.
        let mut engine = live_engine_with(db, &exchange, deaf);
        let events = until(&store, &mut engine, "the SELL", |e| {
            placed(e, Side::Sell).is_some()
        })
        .await;
        let fill = events
            .iter()
            .find_map(|e| match e {
                Event::OrderFilled(f) => Some(f.clone()),
                _ => None,
            })
            .unwrap();
        let commission = fill
            .commission
            .clone()
            .expect("the commission, from myTrades");
        assert_eq!(commission.asset, "BTC");
        assert_eq!(fill.base_fee, commission.amount);
        assert!(fill.venue_trade_id.is_some());
        let sell = placed(&events, Side::Sell).unwrap();
        assert!(
            sell.quantity <= buy.quantity - fill.base_fee,
            "the SELL leaves the commission out: {} of {}",
            sell.quantity,
            buy.quantity
        );
        // Sent once stored: wait for the exchange to show it.
        let open = open_orders_until(&rest, &mut engine, "the SELL", |o| !o.is_empty()).await;
        assert_eq!(
            open.len(),
            1,
            "the SELL is on the exchange, not refused: {open:?}"
        );
        // What the exchange played is served back as Binance's historical trades: the very
        // trades the engine stored from the exchange's stream (once it has stored 60: the
        // SELL may be on the exchange after fewer).
        let market = StreamId::trades(&symbol("BTCUSDT"));
        let started = std::time::Instant::now();
        while store.stream_version(&market).await.unwrap() < 60 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the engine stored fewer than 60 trades in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let stored = store.read_stream_to_end(&market).await.unwrap();
        // Every one of them the exchange served back as it stored it (the trades played while
        // the first engine was down are a gap the engine never saw: no backfill here).
        let first = stored[0].event.trade_id().unwrap();
        let served = rest
            .historical_trades(&symbol("BTCUSDT"), first, 1000)
            .await
            .unwrap();
        assert_eq!(served[0].id, first);
        let last_served = served.last().unwrap().id;
        let mut matched = 0;
        for e in &stored {
            let Event::TradeReceived(t) = &e.event else {
                continue;
            };
            if t.trade_id > last_served {
                continue;
            }
            let s = served
                .iter()
                .find(|s| s.id == t.trade_id)
                .unwrap_or_else(|| panic!("trade {} was stored, never played", t.trade_id));
            assert_eq!(
                (s.price, s.qty, s.time),
                (t.price, t.quantity, t.trade_time.0)
            );
            matched += 1;
        }
        assert!(matched >= 50, "only {matched} stored trades compared");
        common::processes::terminate(engine);
    }

    pub async fn a_live_engine_trades_on_the_paper_exchange_and_reconciles_after_sigkill(
        db: &TestDb,
    ) {
        tight_buy(db);
        let exchange = Exchange::start(
            &["spot_btcusdt_20240808.gz"],
            &["--speed", "20", "--balance", "USDT=1000"],
        );
        let rest = exchange.rest();
        let store = db.open().await;
        let mut engine = live_engine(db, &exchange);

        let events = until(&store, &mut engine, "the SELL after the BUY's fill", |e| {
            placed(e, Side::Sell).is_some()
        })
        .await;
        let (buy, sell) = (
            &placed(&events, Side::Buy).unwrap(),
            &placed(&events, Side::Sell).unwrap(),
        );
        let fills: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                Event::OrderFilled(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        assert!(fills.iter().all(|f| f.order_id == buy.order_id));
        let fill = fills.last().unwrap();
        assert_eq!(
            fill.cumulative_quantity, buy.quantity,
            "the BUY filled in full"
        );
        assert!(
            fill.venue_trade_id.is_some() && fill.trade_id.is_none(),
            "the exchange's trade id, kept apart from market trade ids: {fill:?}"
        );
        let commission = fill.commission.clone().expect("charged in BTC");
        assert_eq!(commission.asset, "BTC");
        assert_eq!(fill.base_fee, commission.amount);
        let base_fees: Decimal = fills.iter().map(|f| f.base_fee).sum();
        assert!(
            // BTCUSDT's step size is 0.00001: the SELL takes the most on the grid that is there.
            sell.quantity <= buy.quantity - base_fees
                && sell.quantity > buy.quantity - base_fees - rust_decimal_macros::dec!(0.00001),
            "the SELL sells what is left after the commission: {} of {}",
            sell.quantity,
            buy.quantity
        );

        // The exchange agrees: the BUY filled, the SELL rests under our client order id, and
        // the SELL's BTC is locked. The engine sends the SELL once its OrderPlaced is stored,
        // so the log can show it a moment before the exchange does: wait for the exchange.
        let on_exchange =
            open_orders_until(&rest, &mut engine, "the recorded SELL", |o| !o.is_empty()).await;
        assert_eq!(on_exchange.len(), 1, "{on_exchange:?}");
        assert_eq!(on_exchange[0].client_order_id, sell.client_order_id);
        let (_, locked) = rest.account().await.unwrap().balance("BTC");
        assert_eq!(locked, sell.quantity);
        let bought = rest
            .query_order(
                &symbol("BTCUSDT"),
                &hedgehog_binance::rest::OrderRef::ClientId(buy.client_order_id.clone()),
            )
            .await
            .unwrap();
        assert_eq!(bought.status, OrderStatus::Filled);

        // Killed, then stopped while no engine runs: the stop is recorded, not yet carried out.
        engine.child().kill().unwrap();
        engine.child().wait().unwrap();
        ok(hedgehog(db, &["trading", "stop", "BTCUSDT"]));
        assert_eq!(rest.open_orders(&symbol("BTCUSDT")).await.unwrap().len(), 1);
        let mut engine = live_engine(db, &exchange);
        open_orders_until(
            &rest,
            &mut engine,
            "the cancel of the SELL the log had cancelled",
            |o| o.is_empty(),
        )
        .await;
        let (free, locked) = rest.account().await.unwrap().balance("BTC");
        assert_eq!(
            (free, locked),
            (buy.quantity - base_fees, Decimal::ZERO),
            "the SELL's BTC is free again"
        );
        // Nothing was placed twice: one BUY and one SELL on the exchange, ever.
        let trades = trading_events(&store).await;
        let placed_count = trades
            .iter()
            .filter(|e| matches!(e, Event::OrderPlaced(_)))
            .count();
        assert_eq!(placed_count, 2, "{trades:#?}");
        common::processes::terminate(engine);
    }
}

#[test]
fn live_trading_is_refused_without_live_or_without_keys() {
    let db = TestDb::sqlite();
    let run = |args: &[&str], keys: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hedgehog"));
        command
            .args(["--database-url", &db.url, "run", "--no-http"])
            .args(args)
            .env_remove("BINANCE_API_KEY")
            .env_remove("BINANCE_API_SECRET");
        if keys {
            command
                .env("BINANCE_API_KEY", KEY)
                .env("BINANCE_API_SECRET", SECRET);
        }
        command.output().unwrap()
    };
    let why = refused(run(&["--exchange", "binance"], true));
    assert!(why.contains("without --live"), "{why}");
    let why = refused(run(&["--exchange", "binance-testnet", "--live"], false));
    assert!(
        why.contains("BINANCE_API_KEY and BINANCE_API_SECRET are not set"),
        "{why}"
    );
    let why = refused(run(&["--live"], true));
    assert!(why.contains("--exchange is paper"), "{why}");
    let mut half = Command::new(env!("CARGO_BIN_EXE_hedgehog"));
    let why = refused(
        half.args(["--database-url", &db.url, "run", "--no-http"])
            .args(["--exchange", "binance", "--live"])
            .env("BINANCE_API_KEY", KEY)
            .env_remove("BINANCE_API_SECRET")
            .output()
            .unwrap(),
    );
    assert!(why.contains("BINANCE_API_SECRET is not"), "{why}");
    assert!(!why.contains(KEY), "the key is never printed: {why}");
}

/// `exchange serve --follow` fills from a live trade stream (here a replay server standing in
/// for Binance's): an order placed over REST fills from the next trade through its price, and
/// `myTrades` and the balances say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paper_exchange_fills_from_a_live_trade_stream() {
    let replay =
        common::processes::Replay::launch(&["spot_btcusdt_20240808.gz"], &["--speed", "1"]);
    let exchange = Exchange::start(
        &[],
        &[
            "--follow",
            &replay.url,
            "--follow-symbol",
            "BTCUSDT",
            "--balance",
            "USDT=1000",
        ],
    );
    let rest = exchange.rest();
    // Above the market (about 61,800): the next trade prints below it and fills it.
    let order = hedgehog_binance::rest::NewOrder {
        symbol: symbol("BTCUSDT"),
        side: Side::Buy,
        price: rust_decimal_macros::dec!(70000),
        quantity: rust_decimal_macros::dec!(0.001),
        client_order_id: "follow-1".into(),
    };
    rest.place_limit_order(&order).await.unwrap();
    let by_id = hedgehog_binance::rest::OrderRef::ClientId("follow-1".into());
    let started = Instant::now();
    while rest
        .query_order(&symbol("BTCUSDT"), &by_id)
        .await
        .unwrap()
        .status
        != OrderStatus::Filled
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no fill from the live stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let account = rest.account().await.unwrap();
    assert_eq!(account.balance("USDT"), (Decimal::from(930), Decimal::ZERO));
    assert_eq!(
        account.balance("BTC").0,
        rust_decimal_macros::dec!(0.000999),
        "0.001 less the 0.1 % commission in BTC"
    );
    drop(replay);
}

/// BTCUSDT's open orders on the exchange once `done` holds of them: an effect of the engine, in
/// another process, waited for (failing if the engine dies or 30 s pass).
async fn open_orders_until(
    rest: &RestClient,
    engine: &mut Running,
    what: &str,
    done: impl Fn(&[hedgehog_binance::rest::Order]) -> bool,
) -> Vec<hedgehog_binance::rest::Order> {
    let started = Instant::now();
    loop {
        let open = rest.open_orders(&symbol("BTCUSDT")).await.unwrap();
        if done(&open) {
            return open;
        }
        assert!(
            engine.child().try_wait().unwrap().is_none(),
            "the engine died waiting for {what}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the exchange never showed {what}: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
