//! The read models on both backends: candles against an independent computation over the raw
//! recordings, live following and updates, rebuilds equal to the live tables, concurrent
//! projectors, and a projector killed with SIGKILL mid-way.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::processes::{hedgehog, ok, refused};
use common::{symbol, Backend, TestDb};
use hedgehog_domain::{Event, Timestamp};
use hedgehog_ingest::import::{self, ImportOptions};
use hedgehog_projections::candles::{Candle, Interval};
use hedgehog_projections::query::{self, Window};
use hedgehog_projections::{Market, Projector, Update};
use hedgehog_store::{ExpectedVersion, Store, StreamId};
use rust_decimal::Decimal;

on_both_backends!(
    candles_equal_an_independent_computation_over_the_raw_files,
    a_running_projector_follows_appends_and_publishes_updates,
    orders_and_settings_follow_trading_and_a_rebuild_equals_the_live_tables,
    concurrent_projectors_apply_every_event_once,
    a_projector_killed_mid_way_resumes_to_the_same_tables,
    the_cli_imports_then_answers_queries_in_every_format,
);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A trade as the raw file says it, parsed here without any of Hedgehog's code.
#[derive(Debug, Clone)]
struct RawTrade {
    id: u64,
    time: i64,
    price: Decimal,
    qty: Decimal,
    buyer_maker: bool,
    market_kind: bool,
}

fn lines(name: &str) -> Vec<String> {
    let file = std::fs::File::open(fixture(name)).unwrap();
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(Result::unwrap)
        .collect()
}

/// Binance's public trade CSV: id,price,qty,quote_qty,time,is_buyer_maker,is_best_match.
fn raw_binance_csv(name: &str) -> Vec<RawTrade> {
    lines(name)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            RawTrade {
                id: f[0].parse().unwrap(),
                price: f[1].parse().unwrap(),
                qty: f[2].parse().unwrap(),
                time: f[4].parse().unwrap(),
                buyer_maker: f[5] == "True",
                market_kind: true,
            }
        })
        .collect()
}

/// The book's dump: id;trade;event_time;symbol;trade_id;price;qty;b;a;trade_time;m;...
fn raw_book_dump(name: &str) -> Vec<RawTrade> {
    lines(name)
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(';').collect();
            RawTrade {
                id: f[4].parse().unwrap(),
                price: f[5].parse().unwrap(),
                qty: f[6].parse().unwrap(),
                time: f[9].parse().unwrap(),
                buyer_maker: f[10] == "t",
                market_kind: true,
            }
        })
        .collect()
}

/// A websocket recording: `<ns> {"stream": ..., "data": {...}}`, trade frames only.
fn raw_recording(name: &str) -> Vec<RawTrade> {
    lines(name)
        .iter()
        .filter_map(|l| {
            let json: serde_json::Value = serde_json::from_str(l.split_once(' ')?.1).ok()?;
            let d = &json["data"];
            (d["e"] == "trade").then(|| RawTrade {
                id: d["t"].as_u64().unwrap(),
                price: d["p"].as_str().unwrap().parse().unwrap(),
                qty: d["q"].as_str().unwrap().parse().unwrap(),
                time: d["T"].as_i64().unwrap(),
                buyer_maker: d["m"].as_bool().unwrap(),
                market_kind: d["X"].as_str().is_none_or(|x| x == "MARKET"),
            })
        })
        .collect()
}

/// Klines the obvious way: bucket by floor(time / interval), sort each bucket by trade id,
/// read off the fields. Non-market trades are not in klines.
fn expected_klines(trades: &[RawTrade], interval_ms: i64) -> Vec<[String; 11]> {
    let mut buckets: BTreeMap<i64, Vec<&RawTrade>> = BTreeMap::new();
    for t in trades.iter().filter(|t| t.market_kind) {
        buckets
            .entry(t.time.div_euclid(interval_ms) * interval_ms)
            .or_default()
            .push(t);
    }
    buckets
        .into_iter()
        .map(|(open_time, mut ts)| {
            ts.sort_by_key(|t| t.id);
            let sum = |f: &dyn Fn(&RawTrade) -> Decimal| ts.iter().map(|t| f(t)).sum::<Decimal>();
            let n = |d: Decimal| d.normalize().to_string();
            [
                open_time.to_string(),
                n(ts[0].price),
                n(ts.iter().map(|t| t.price).max().unwrap()),
                n(ts.iter().map(|t| t.price).min().unwrap()),
                n(ts[ts.len() - 1].price),
                n(sum(&|t| t.qty)),
                (open_time + interval_ms - 1).to_string(),
                n(sum(&|t| t.price * t.qty)),
                ts.len().to_string(),
                n(sum(&|t| if t.buyer_maker { Decimal::ZERO } else { t.qty })),
                n(sum(&|t| {
                    if t.buyer_maker {
                        Decimal::ZERO
                    } else {
                        t.price * t.qty
                    }
                })),
            ]
        })
        .collect()
}

fn kline_of(c: &Candle) -> [String; 11] {
    let n = |d: Decimal| d.normalize().to_string();
    let b = &c.bar;
    [
        c.open_time.to_string(),
        n(b.open),
        n(b.high),
        n(b.low),
        n(b.close),
        n(b.volume),
        c.close_time.to_string(),
        n(b.quote_volume),
        b.trade_count.to_string(),
        n(b.taker_buy_base_volume),
        n(b.taker_buy_quote_volume),
    ]
}

async fn import(store: &Store, file: &str, symbol: Option<&str>) {
    let options = ImportOptions {
        symbol: symbol.map(common::symbol),
        ..ImportOptions::default()
    };
    import::import_trades(store, &[fixture(file)], &options, |_| {})
        .await
        .unwrap();
}

async fn catch_up(store: &Store) {
    Projector::new(store.clone()).catch_up().await.unwrap();
}

/// Every read-model table as text rows in key order, for comparing two states.
pub(crate) async fn tables(db: &TestDb) -> BTreeMap<&'static str, Vec<String>> {
    let specs: [(&str, &str, &str); 6] = [
        (
            "trade_events",
            "market, symbol, trade_id, price, quantity, buyer_order_id, seller_order_id, \
             trade_time, event_time, buyer_market_maker, kind, position",
            "market, symbol, trade_id",
        ),
        (
            "orders",
            "symbol, order_id, client_order_id, position_id, side, type, time_in_force, price, \
             original_quantity, executed_quantity, cumulative_quote_quantity, status, fees, \
             fee_asset, time, update_time, position",
            "symbol, order_id",
        ),
        (
            "backtest_orders",
            "run_id, symbol, order_id, client_order_id, position_id, side, type, time_in_force, \
             price, original_quantity, executed_quantity, cumulative_quote_quantity, status, \
             fees, fee_asset, time, update_time, position",
            "run_id, symbol, order_id",
        ),
        (
            "trading_settings",
            "symbol, status, chunks, budget, buy_down_interval, profit_target, rebuy_interval, \
             fee, position, strategy",
            "symbol",
        ),
        ("streaming_settings", "symbol, status, position", "symbol"),
        (
            "candles",
            "market, symbol, interval, open_time, open, high, low, close, volume, close_time, \
             quote_volume, trade_count, taker_buy_base_volume, taker_buy_quote_volume, \
             first_trade_id, last_trade_id, closed",
            "market, symbol, interval, open_time",
        ),
    ];
    let mut out = BTreeMap::new();
    for (table, columns, key) in specs {
        let text = columns
            .split(',')
            .map(|c| format!("COALESCE(CAST({} AS TEXT), '-')", c.trim()))
            .collect::<Vec<_>>()
            .join(" || '|' || ");
        let sql = format!("SELECT {text} FROM {table} ORDER BY {key}");
        let rows: Vec<String> = match db.backend {
            Backend::Sqlite => {
                use sqlx::Connection;
                let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query_scalar(&sql).fetch_all(&mut c).await.unwrap()
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query_scalar(&sql).fetch_all(&mut c).await.unwrap()
            }
        };
        out.insert(table, rows);
    }
    out
}

mod cases {
    use super::*;

    pub async fn candles_equal_an_independent_computation_over_the_raw_files(db: &TestDb) {
        let store = db.open().await;
        // A later day first, then an earlier one: the projector folds trades into candles it
        // stored before (and into ones older than the newest), with a fresh cache each time.
        import(&store, "binance-ws/spot_btcusdt_20240809.gz", None).await;
        catch_up(&store).await;
        import(&store, "binance-ws/spot_btcusdt_20240808.gz", None).await;
        import(
            &store,
            "spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz",
            Some("BTCUSDT"),
        )
        .await;
        catch_up(&store).await;
        import(&store, "ADAUSDT-2019-06-03.csv.gz", None).await;
        import(
            &store,
            "binance-ws/usdm_btcusdt_20230405.head300_plus_insurance_fund.gz",
            None,
        )
        .await;
        catch_up(&store).await;

        let spot_btc: Vec<RawTrade> = [
            raw_recording("binance-ws/spot_btcusdt_20240808.gz"),
            raw_recording("binance-ws/spot_btcusdt_20240809.gz"),
            raw_binance_csv(
                "spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz",
            ),
        ]
        .concat();
        let ada = raw_book_dump("ADAUSDT-2019-06-03.csv.gz");
        let usdm = raw_recording("binance-ws/usdm_btcusdt_20230405.head300_plus_insurance_fund.gz");
        assert_eq!(spot_btc.len(), 19_904 + 3_144);
        assert_eq!(ada.len(), 57_018);
        assert_eq!(usdm.iter().filter(|t| !t.market_kind).count(), 1);

        let database = store.database();
        for (market, sym, raw) in [
            (Market::Spot, "BTCUSDT", &spot_btc),
            (Market::Spot, "ADAUSDT", &ada),
            (Market::Usdm, "BTCUSDT", &usdm),
        ] {
            for interval in hedgehog_projections::candles::STORED {
                let candles =
                    query::candles(&database, market, &symbol(sym), interval, Window::default())
                        .await
                        .unwrap();
                let expected = expected_klines(raw, interval.millis().expect("a fixed length"));
                let got: Vec<[String; 11]> = candles.iter().map(kline_of).collect();
                assert_eq!(got.len(), expected.len(), "{market} {sym} {interval}");
                for (g, e) in got.iter().zip(&expected) {
                    assert_eq!(g, e, "{market} {sym} {interval}");
                }
                // Only the newest candle of a series is still open.
                let open: Vec<bool> = candles.iter().map(|c| !c.closed).collect();
                let mut want = vec![false; candles.len()];
                *want.last_mut().unwrap() = true;
                assert_eq!(open, want, "{market} {sym} {interval}");
            }
            // Every trade is in trade_events, the insurance fund one included.
            let mut pages =
                query::TradePages::new(store.clone(), market, symbol(sym), Window::default());
            let mut n = 0;
            while let Some(page) = pages.next_page().await.unwrap() {
                n += page.len();
            }
            assert_eq!(n, raw.len(), "{market} {sym} trade_events");
        }
        // A window selects by open time, both ends inclusive.
        let day = query::candles(
            &database,
            Market::Spot,
            &symbol("ADAUSDT"),
            Interval::H1,
            Window {
                from: Some(1_559_527_200_000),
                to: Some(1_559_534_400_000),
            },
        )
        .await
        .unwrap();
        let opens: Vec<i64> = day.iter().map(|c| c.open_time).collect();
        assert_eq!(
            opens,
            [1_559_527_200_000, 1_559_530_800_000, 1_559_534_400_000]
        );
    }

    pub async fn a_running_projector_follows_appends_and_publishes_updates(db: &TestDb) {
        let store = db.open().await;
        let mut projector = Projector::new(store.clone());
        let mut updates = projector.updates();
        let mut update_stream = Box::pin(projector.update_stream());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            projector
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        });
        let sym = symbol("ADAUSDT");
        let stream = StreamId::trades(&sym);
        // Minute 0: trades 0..30; then minute 1 opens with trade 100_000 (60 s later).
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                common::trades("ADAUSDT", 0..30),
            )
            .await
            .unwrap();
        let first = next_candles(&mut updates, Interval::M1).await.remove(0);
        assert!(!first.closed);
        assert_eq!(first.position, 30, "its last trade's place in the log");
        let base = first.open_time;
        let mut later = common::trade("ADAUSDT", 100_000);
        later.trade_time = Timestamp(base + 60_000 + 5);
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![hedgehog_store::NewEvent::new(later)],
            )
            .await
            .unwrap();
        // The new minute's candle opens and the previous one is published closed.
        let mut seen = BTreeMap::new();
        while seen.len() < 2 {
            for c in next_candles(&mut updates, Interval::M1).await {
                seen.insert(c.open_time, c);
            }
        }
        assert!(seen[&base].closed, "the earlier minute closed");
        assert_eq!(seen[&base].position, 31, "closed by the trade at 31");
        assert_eq!(seen[&(base + 60_000)].position, 31);
        assert_eq!(seen[&base].bar.trade_count, 30);
        assert!(!seen[&(base + 60_000)].closed);
        // The same updates arrive as an async stream.
        use futures::StreamExt;
        let streamed = tokio::time::timeout(Duration::from_secs(30), update_stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(matches!(
            streamed,
            Update::Candle(_) | Update::StreamingSettings(_)
        ));
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        let status = Projector::status(&store).await.unwrap();
        assert!(
            status.iter().all(|s| s.behind == 0 && s.position == 31),
            "{status:?}"
        );
    }

    pub async fn orders_and_settings_follow_trading_and_a_rebuild_equals_the_live_tables(
        db: &TestDb,
    ) {
        use hedgehog_domain::paper_exchange::PaperExchange;
        use hedgehog_domain::streaming::StreamingCommand;
        use hedgehog_engine::aggregate::TradingAggregate;
        use hedgehog_engine::trading::{Request, SettingsChange};
        use rust_decimal_macros::dec;

        let store = db.open().await;
        let sym = symbol("ADAUSDT");
        let rules = hedgehog_binance::exchange_info::bundled().unwrap();
        let ada = rules.get(&sym).unwrap().clone();
        let at = Timestamp(1_559_520_000_000);
        let settings = SettingsChange {
            chunks: Some(2),
            budget: Some(dec!(100)),
            buy_down_interval: Some(dec!(0.0001)),
            profit_target: Some(dec!(0.0001)),
            fee: Some(dec!(0.0002)),
            ..SettingsChange::default()
        };
        hedgehog_engine::trading::command(&store, &ada, Request::Settings(settings), at)
            .await
            .unwrap();
        hedgehog_engine::trading::command(&store, &ada, Request::Start, at)
            .await
            .unwrap();
        hedgehog_engine::streaming::command(
            &store,
            &rules,
            "bundled",
            &sym,
            StreamingCommand::Start,
        )
        .await
        .unwrap();
        import(&store, "ADAUSDT-2019-06-03.head2000.csv.gz", None).await;
        let aggregate = TradingAggregate {
            rules: ada.clone(),
            strategies: Default::default(),
            paper: Some(PaperExchange::default()),
        };
        let mut trader = hedgehog_engine::worker::Trader::load(store.clone(), aggregate)
            .await
            .unwrap();
        for e in store
            .read_stream_to_end(&StreamId::trades(&sym))
            .await
            .unwrap()
        {
            trader.handle(&e).await.unwrap();
        }
        hedgehog_engine::trading::command(&store, &ada, Request::Stop, at)
            .await
            .unwrap();
        catch_up(&store).await;

        // The orders table against the trading stream, folded here by hand.
        let events = store
            .read_stream_to_end(&StreamId::trading(&sym))
            .await
            .unwrap();
        let mut expected: BTreeMap<u64, (String, Decimal, Decimal)> = BTreeMap::new();
        for e in &events {
            match &e.event {
                Event::OrderPlaced(o) => {
                    expected.insert(o.order_id, ("NEW".into(), Decimal::ZERO, Decimal::ZERO));
                }
                Event::OrderFilled(f) => {
                    let row = expected.get_mut(&f.order_id).unwrap();
                    row.0 = if f.status == hedgehog_domain::types::FillStatus::Filled {
                        "FILLED".into()
                    } else {
                        "PARTIALLY_FILLED".into()
                    };
                    row.1 = f.cumulative_quantity;
                    row.2 += f.fee;
                }
                Event::OrderCancelled(c) => {
                    expected.get_mut(&c.order_id).unwrap().0 = "CANCELED".into();
                }
                _ => {}
            }
        }
        assert!(
            expected.len() >= 4,
            "the trades should run positions through"
        );
        assert!(
            expected.values().any(|o| o.0 == "CANCELED"),
            "the stop cancels"
        );
        let orders = query::orders(&store.database(), None, Some(&sym), None)
            .await
            .unwrap();
        let got: BTreeMap<u64, (String, Decimal, Decimal)> = orders
            .iter()
            .map(|o| (o.order_id, (o.status.clone(), o.executed_quantity, o.fees)))
            .collect();
        assert_eq!(got, expected);
        let filled = query::orders(&store.database(), None, None, Some("FILLED"))
            .await
            .unwrap();
        assert_eq!(
            filled.len(),
            expected.values().filter(|o| o.0 == "FILLED").count()
        );

        let trading = query::trading_settings(&store.database()).await.unwrap();
        assert_eq!(trading.len(), 1);
        assert_eq!(trading[0].status, "off");
        assert_eq!(trading[0].settings.chunks, 2);
        assert_eq!(trading[0].settings.budget, dec!(100));
        let streaming = query::streaming_settings(&store.database()).await.unwrap();
        assert_eq!(
            streaming
                .iter()
                .map(|s| (s.symbol.as_str(), s.status.as_str()))
                .collect::<Vec<_>>(),
            [("ADAUSDT", "on")]
        );

        // The strategy the settings name is a column of its own ("naive" until named).
        assert_eq!(trading[0].settings.strategy, "naive");
        let strategies = hedgehog_domain::strategy::Strategies::default()
            .with("grid", hedgehog_domain::strategy::Naive);
        let named = SettingsChange {
            strategy: Some("grid".into()),
            ..SettingsChange::default()
        };
        hedgehog_engine::trading::command_with(
            &store,
            &ada,
            &strategies,
            Request::Settings(named),
            at,
        )
        .await
        .unwrap();
        catch_up(&store).await;
        let trading = query::trading_settings(&store.database()).await.unwrap();
        assert_eq!(trading[0].settings.strategy, "grid");
        assert_eq!(trading[0].settings.chunks, 2);

        // Rebuilding everything, then one projection alone, gives the same tables.
        let live = tables(db).await;
        assert_eq!(live["trade_events"].len(), 2000);
        Projector::new(store.clone())
            .rebuild(|_, _| {})
            .await
            .unwrap();
        assert_eq!(tables(db).await, live);
        let candles_only = hedgehog_projections::named(&["candles".to_owned()]).unwrap();
        Projector::with(store.clone(), candles_only)
            .rebuild(|_, _| {})
            .await
            .unwrap();
        assert_eq!(tables(db).await, live);
        let status = Projector::status(&store).await.unwrap();
        let generations: Vec<(&str, i64)> = status.iter().map(|s| (s.name, s.generation)).collect();
        assert_eq!(
            generations,
            [
                ("trade_events", 1),
                ("orders", 1),
                ("backtest_orders", 1),
                ("trading_settings", 1),
                ("streaming_settings", 1),
                ("candles", 2)
            ]
        );
        assert!(hedgehog_projections::named(&["nope".to_owned()])
            .unwrap_err()
            .to_string()
            .contains("unknown projection \"nope\""));
    }

    pub async fn concurrent_projectors_apply_every_event_once(db: &TestDb) {
        let store = db.open().await;
        import(&store, "ADAUSDT-2019-06-03.csv.gz", None).await;
        // Two projectors (as an engine and an import would) race over the same 57,018 trades;
        // a third store handle keeps appending meanwhile.
        let a = Projector::new(store.clone());
        let other = db.open().await;
        let b = Projector::new(other.clone());
        let writer = db.open().await;
        let (ra, rb, _) = tokio::join!(
            async move {
                let mut a = a;
                a.catch_up().await
            },
            async move {
                let mut b = b;
                b.catch_up().await
            },
            async {
                for i in 0..5 {
                    writer
                        .append(
                            &StreamId::trades(&symbol("XRPUSDT")),
                            ExpectedVersion::Any,
                            common::trades("XRPUSDT", i * 100..(i + 1) * 100),
                        )
                        .await
                        .unwrap();
                }
            }
        );
        ra.unwrap();
        rb.unwrap();
        catch_up(&store).await;
        let live = tables(db).await;
        assert_eq!(live["trade_events"].len(), 57_018 + 500);
        Projector::new(store.clone())
            .rebuild(|_, _| {})
            .await
            .unwrap();
        assert_eq!(tables(db).await, live);
    }

    pub async fn the_cli_imports_then_answers_queries_in_every_format(db: &TestDb) {
        let file =
            fixture("spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz");
        let file = file.to_str().unwrap();
        ok(hedgehog(
            db,
            &["import", "trades", file, "--symbol", "BTCUSDT"],
        ));
        // The import projected before it exited: nothing is behind.
        let status = Projector::status(&db.open().await).await.unwrap();
        assert!(
            status.iter().all(|s| s.behind == 0 && s.position == 3_144),
            "{status:?}"
        );
        let printed = ok(hedgehog(db, &["projections", "status"]));
        assert!(
            printed.contains("candles") && printed.contains("3144"),
            "{printed}"
        );

        // CSV: Binance's kline columns in its order, times in ms.
        let csv = ok(hedgehog(
            db,
            &["ohlc", "BTCUSDT", "--interval", "1m", "--format", "csv"],
        ));
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(
            rows[0],
            [
                "open_time",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "close_time",
                "quote_volume",
                "count",
                "taker_buy_volume",
                "taker_buy_quote_volume",
                "ignore"
            ]
        );
        assert_eq!(
            rows.len(),
            1 + 8,
            "trades from 23:59:59 to 00:06:54 span 8 minutes"
        );
        let count: u64 = rows[1..].iter().map(|r| r[8].parse::<u64>().unwrap()).sum();
        assert_eq!(count, 3_144);
        assert_eq!(rows[2][0], "1680652800000");
        assert_eq!(rows[2][6], "1680652859999");

        // JSON, with a window (both ends inclusive, dates and times accepted).
        let json = ok(hedgehog(
            db,
            &[
                "ohlc",
                "BTCUSDT",
                "--interval",
                "5m",
                "--from",
                "2023-04-05",
                "--to",
                "2023-04-05T00:05:00Z",
                "--format",
                "json",
            ],
        ));
        let candles: serde_json::Value = serde_json::from_str(&json).unwrap();
        let opens: Vec<i64> = candles
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["open_time"].as_i64().unwrap())
            .collect();
        assert_eq!(opens, [1_680_652_800_000, 1_680_653_100_000]);
        assert_eq!(candles[1]["closed"], false, "the newest candle is open");

        let table = ok(hedgehog(db, &["ohlc", "BTCUSDT", "--interval", "1h"]));
        assert!(
            table.contains("2023-04-05T00:00:00.000Z") && table.contains("open"),
            "{table}"
        );

        // Trades, paged through the read model, in every format.
        let trades = ok(hedgehog(db, &["trades", "BTCUSDT", "--format", "json"]));
        let trades: serde_json::Value = serde_json::from_str(&trades).unwrap();
        assert_eq!(trades.as_array().unwrap().len(), 3_144);
        let window = ok(hedgehog(
            db,
            &[
                "trades",
                "BTCUSDT",
                "--from",
                "1680653210000",
                "--format",
                "csv",
            ],
        ));
        assert!(window.lines().skip(1).all(|l| {
            l.split(',').nth(7).unwrap().parse::<i64>().unwrap() >= 1_680_653_210_000
        }));
        assert!(window.lines().count() > 10);
        let orders = ok(hedgehog(db, &["orders", "--format", "csv"]));
        assert_eq!(orders.trim(), "", "no trading, no orders");

        // Bad input: a clear message and a non-zero exit.
        let err = refused(hedgehog(db, &["ohlc", "BTCUSDT", "--interval", "2m"]));
        assert!(err.contains("unknown interval \"2m\""), "{err}");
        let err = refused(hedgehog(db, &["ohlc", "BTCUSDT", "--interval", "3m"]));
        assert!(err.contains("3m candles are not kept"), "{err}");
        let err = refused(hedgehog(db, &["ohlc", "BTCUSDT", "--from", "yesterday"]));
        assert!(
            err.contains("--from") && err.contains("2024-08-08"),
            "{err}"
        );
        let err = refused(hedgehog(db, &["projections", "rebuild", "candle"]));
        assert!(err.contains("unknown projection \"candle\""), "{err}");
    }

    pub async fn a_projector_killed_mid_way_resumes_to_the_same_tables(db: &TestDb) {
        let store = db.open().await;
        // `hedgehog import` of the whole ADAUSDT day: it stores the 57,018 trades, then projects
        // them before it exits. It is killed with SIGKILL once the projection is part-way.
        let head = 57_018;
        let file = fixture("ADAUSDT-2019-06-03.csv.gz");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .args(["--database-url", &db.url, "import", "trades"])
            .arg(&file)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let killed_at = loop {
            let status = Projector::status(&store).await.unwrap();
            let candles = status.iter().find(|s| s.name == "candles").unwrap();
            if candles.position > 0 && candles.position < head {
                child.kill().unwrap();
                child.wait().unwrap();
                break candles.position;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "the import finished before it could be killed part-way"
            );
            assert!(started.elapsed() < Duration::from_secs(120));
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert_eq!(store.head_position().await.unwrap(), head);
        let after = Projector::status(&store).await.unwrap();
        assert!(
            after.iter().all(|s| s.position < head),
            "{after:?} at {killed_at}"
        );
        // Restarting catches up from the checkpoints; the result equals a rebuild from scratch.
        let out = ok(hedgehog(
            db,
            &["ohlc", "ADAUSDT", "--interval", "1h", "--format", "csv"],
        ));
        assert_eq!(out.lines().count(), 1 + 24);
        let resumed = tables(db).await;
        assert_eq!(resumed["trade_events"].len(), 57_018);
        Projector::new(store.clone())
            .rebuild(|_, _| {})
            .await
            .unwrap();
        assert_eq!(tables(db).await, resumed);
    }
}

/// The candles of `interval` in the next published batch that has any.
async fn next_candles(
    updates: &mut hedgehog_projections::Updates,
    interval: Interval,
) -> Vec<Candle> {
    loop {
        let batch = tokio::time::timeout(Duration::from_secs(30), updates.recv())
            .await
            .expect("an update within 30 s")
            .expect("no lag");
        let mut candles = Vec::new();
        for update in &batch.updates {
            if let Update::Candle(c) = update {
                // Every row of a batch changed at or before the batch's position.
                assert!(c.position <= batch.position, "{c:?} in {}", batch.position);
                if c.interval == interval {
                    candles.push(c.clone());
                }
            }
        }
        if !candles.is_empty() {
            return candles;
        }
    }
}
