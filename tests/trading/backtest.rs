//! `hedgehog backtest` through the real binary: the book's scenario order by order, determinism
//! (two runs, and a run split across files), runs from the store equal to runs from the files,
//! isolation of kept runs, and parity with live paper trading fed by the replay server.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::processes::{hedgehog, ok, refused, spawn, stop, Replay, WS};
use common::{symbol, TestDb};
use hedgehog_domain::Event;
use hedgehog_store::{Store, StreamId};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;

on_both_backends!(
    a_run_from_the_store_equals_a_run_from_its_files_and_stays_apart,
    live_paper_trading_and_the_backtest_decide_the_same_events,
);

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A database URL no run over files may touch: its directory does not exist.
const NO_STORE: &str = "sqlite:///nonexistent-hedgehog-dir/never.db";

fn run(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", database_url, "backtest"])
        .args(args)
        .output()
        .expect("run hedgehog backtest")
}

fn succeeded(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("a decimal string, not {v}"))
        .parse()
        .unwrap()
}

/// The book's settings for the XRPUSDT scenario: chunks 5 of a 100 USDT budget, buy 0.25 %
/// down, 0.1 % profit, rebuy 0.1 % down, 0.1 % fee per side.
const BOOK_SETTINGS: [&str; 12] = [
    "--chunks",
    "5",
    "--budget",
    "100",
    "--buy-down-interval",
    "0.0025",
    "--profit-target",
    "0.001",
    "--rebuy-interval",
    "0.001",
    "--fee",
    "0.001",
];

/// Settings tight enough for one day of 2019 ADAUSDT to run many positions through.
const ADA_SETTINGS: [&str; 12] = [
    "--chunks",
    "5",
    "--budget",
    "100",
    "--buy-down-interval",
    "0.0005",
    "--profit-target",
    "0.0001",
    "--rebuy-interval",
    "0.001",
    "--fee",
    "0.0001",
];

/// The book's ADAUSDT dump of 2019-06-03, decompressed: its lines.
fn ada_day_lines() -> Vec<String> {
    let file = std::fs::File::open(fixture("ADAUSDT-2019-06-03.csv.gz")).unwrap();
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .map(Result::unwrap)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::fs::File::create(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// Realized profit recomputed from the report's own orders: for every position whose SELL
/// filled, what the SELL's fills brought less what the BUY's fills cost, less both fees.
fn profit_from_orders(report: &Value) -> Decimal {
    let orders = report["orders"].as_array().unwrap();
    let quote = |o: &Value| -> Decimal {
        o["fills"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| dec_of(&f["price"]) * dec_of(&f["quantity"]))
            .sum()
    };
    let mut profit = Decimal::ZERO;
    for sell in orders
        .iter()
        .filter(|o| o["side"] == "SELL" && o["status"] == "FILLED")
    {
        let buy = orders
            .iter()
            .find(|o| o["side"] == "BUY" && o["position_id"] == sell["position_id"])
            .expect("the sold position's BUY");
        profit += quote(sell) - quote(buy) - dec_of(&sell["fees"]) - dec_of(&buy["fees"]);
    }
    profit
}

/// An order as the scenario checks it: id, position, side, price, quantity, status, the
/// trades that filled it.
type OrderLine = (u64, u64, String, Decimal, Decimal, String, Vec<u64>);

#[test]
fn the_book_scenario_places_exactly_the_orders_worked_out_by_hand() {
    // XRPUSDT (tick 0.0001, step 1, min notional 5), the book's settings: chunks 5 of a 100
    // USDT budget, buy 0.25 % down, 0.1 % profit, rebuy 0.1 % down, 0.1 % fee per side.
    let dir = tempfile::tempdir().unwrap();
    let data = xrp_file(dir.path());
    let report = dir.path().join("report.json");
    let out = succeeded(run(
        NO_STORE,
        &[
            &["--symbol", "XRPUSDT", "--data", data.to_str().unwrap()][..],
            &BOOK_SETTINGS,
            &["--report", report.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(out.contains("backtest of XRPUSDT (spot)"), "{out}");
    let r = read_json(&report);
    // Worked out by hand from the book's rules (20 USDT a chunk; prices truncated to the tick,
    // quantities to the step; one step per position per trade):
    // #1 @ 0.43 adds P1, which places its BUY 46 @ 0.4289 (0.43 × 0.9975 = 0.428925; 20 /
    //    0.4289 = 46.6)
    // #2 @ 0.4295: nothing (not through the BUY, not far enough below it for a rebuy)
    // #3 @ 0.4288 goes through the BUY: filled
    // #4 @ 0.4280: P1's step is its SELL 46 @ 0.4301 (0.4289 × 1.001³ = 0.430188)
    // #5 @ 0.4302 goes through the SELL: filled
    // #6 @ 0.4260: P1 is finished: closed, and P2 takes its place
    // #7 @ 0.4290: P2 places its BUY 46 @ 0.4279 (0.4290 × 0.9975 = 0.4279275), left open
    let orders: Vec<OrderLine> = r["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["order_id"].as_u64().unwrap(),
                o["position_id"].as_u64().unwrap(),
                o["side"].as_str().unwrap().to_owned(),
                dec_of(&o["price"]),
                dec_of(&o["quantity"]),
                o["status"].as_str().unwrap().to_owned(),
                o["fills"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["trade_id"].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect();
    assert!(
        orders.windows(2).all(|w| w[0].0 < w[1].0),
        "listed in the order they were placed"
    );
    let o = |id, pos, side: &str, price, qty, status: &str, fills: &[u64]| {
        (
            id,
            pos,
            side.to_owned(),
            price,
            qty,
            status.to_owned(),
            fills.to_vec(),
        )
    };
    assert_eq!(
        orders,
        vec![
            o(1, 1, "BUY", dec!(0.4289), dec!(46), "FILLED", &[3]),
            o(2, 1, "SELL", dec!(0.4301), dec!(46), "FILLED", &[5]),
            o(3, 2, "BUY", dec!(0.4279), dec!(46), "NEW", &[]),
        ]
    );
    let s = &r["summary"];
    // P1: 46 × (0.4301 − 0.4289) − 0.0197294 − 0.0197846.
    assert_eq!(dec_of(&s["realized_profit"]), dec!(0.015686));
    assert_eq!(dec_of(&s["fees"]), dec!(0.039514));
    assert_eq!(dec_of(&s["equity"]), dec!(100.015686));
    assert_eq!(dec_of(&s["return_on_budget"]), dec!(0.00015686));
    // The deepest point: after trade 4, 46 ADA bought for 19.7491294 worth 46 × 0.428.
    assert_eq!(dec_of(&s["max_drawdown"]), dec!(0.0611294));
    assert_eq!(
        (
            s["positions_opened"].as_u64(),
            s["positions_closed"].as_u64(),
            s["positions_open"].as_u64(),
            s["orders_placed"].as_u64(),
            s["orders_filled"].as_u64(),
            s["orders_open"].as_u64(),
            s["trades"].as_u64(),
        ),
        (
            Some(2),
            Some(1),
            Some(1),
            Some(3),
            Some(2),
            Some(1),
            Some(7)
        )
    );
    assert_eq!(dec_of(&s["win_rate"]), dec!(1));
    assert_eq!(r["decisions"].as_u64(), Some(10));
    assert_eq!(profit_from_orders(&r), dec!(0.015686));
    assert_eq!(r["inputs"]["files"][0]["trades"].as_u64(), Some(7));
}

#[test]
fn runs_are_deterministic_and_splitting_the_files_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = ada_day_lines();
    assert_eq!(lines.len(), 57_018);
    let whole = dir.path().join("whole.csv");
    let (a, b) = (dir.path().join("a.csv"), dir.path().join("b.csv"));
    write_lines(&whole, &lines);
    write_lines(&a, &lines[..20_000]);
    write_lines(&b, &lines[20_000..]);
    let backtest = |files: &[&Path], extra: &[&str], name: &str| -> Value {
        let report = dir.path().join(name);
        let mut args = vec!["--symbol", "ADAUSDT"];
        for f in files {
            args.extend(["--data", f.to_str().unwrap()]);
        }
        args.extend(ADA_SETTINGS);
        args.extend(extra);
        args.extend(["--report", report.to_str().unwrap()]);
        succeeded(run(NO_STORE, &args));
        read_json(&report)
    };
    let one = backtest(&[&whole], &[], "one.json");
    let again = backtest(&[&whole], &[], "again.json");
    let split = backtest(&[&a, &b], &[], "split.json");
    let s = &one["summary"];
    assert_eq!(s["trades"].as_u64(), Some(57_018));
    assert!(
        s["positions_closed"].as_u64().unwrap() >= 10,
        "the settings trade: {s}"
    );
    // Byte for byte: the same decisions, the same figures, the same orders.
    for other in [&again, &split] {
        assert_eq!(other["fingerprint"], one["fingerprint"]);
        assert_eq!(other["decisions"], one["decisions"]);
        assert_eq!(
            other["inputs"]["trades_sha256"],
            one["inputs"]["trades_sha256"]
        );
        assert_eq!(other["summary"], one["summary"]);
        assert_eq!(other["equity_curve"], one["equity_curve"]);
        assert_eq!(other["orders"], one["orders"]);
    }
    // The files themselves are told apart by their hashes.
    assert_eq!(split["inputs"]["files"].as_array().unwrap().len(), 2);
    assert_ne!(
        split["inputs"]["files"][0]["sha256"],
        one["inputs"]["files"][0]["sha256"]
    );
    assert_eq!(
        split["inputs"]["files"][0]["trades"].as_u64().unwrap()
            + split["inputs"]["files"][1]["trades"].as_u64().unwrap(),
        57_018
    );
    // The report agrees with its own orders.
    assert_eq!(profit_from_orders(&one), dec_of(&s["realized_profit"]));
    assert_eq!(
        one["orders"].as_array().unwrap().len() as u64,
        s["orders_placed"].as_u64().unwrap()
    );
    let curve = one["equity_curve"].as_array().unwrap();
    assert!(curve.len() > 100 && curve.len() <= 1000, "{}", curve.len());
    // Another fill model decides otherwise, and the fingerprint says so.
    let touch = backtest(
        &[&whole],
        &["--fill", "touch", "--partial-fills"],
        "touch.json",
    );
    assert_ne!(touch["fingerprint"], one["fingerprint"]);
    assert_eq!(
        touch["inputs"]["trades_sha256"],
        one["inputs"]["trades_sha256"]
    );
    assert_eq!(touch["inputs"]["paper"]["fill"], "touch");
}

#[test]
fn the_table_and_chart_are_written_and_bad_input_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture("ADAUSDT-2019-06-03.head2000.csv.gz");
    let data = data.to_str().unwrap();
    let html = dir.path().join("chart.html");
    let png = dir.path().join("chart.png");
    let mut args = vec!["--symbol", "ADAUSDT", "--data", data];
    args.extend(ADA_SETTINGS);
    args.push("--chart");
    let out = succeeded(run(
        NO_STORE,
        &[&args[..], &[html.to_str().unwrap()]].concat(),
    ));
    for label in [
        "trades           2000 replayed",
        "realized profit",
        "max drawdown",
        "fingerprint",
        "open inventory",
    ] {
        assert!(out.contains(label), "{label} in {out}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg"));
    assert!(
        page.contains("<polyline") && page.contains("<polygon"),
        "fills are marked"
    );
    assert!(
        !page.contains("http://") || page.matches("http://").count() == 1,
        "only the svg namespace"
    );
    succeeded(run(
        NO_STORE,
        &[&args[..], &[png.to_str().unwrap()]].concat(),
    ));
    let image = std::fs::read(&png).unwrap();
    assert_eq!(&image[..8], b"\x89PNG\r\n\x1a\n");
    // JSON to stdout instead of the table.
    let json = succeeded(run(
        NO_STORE,
        &["--symbol", "ADAUSDT", "--data", data, "--report", "-"],
    ));
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["summary"]["trades"].as_u64(), Some(2000));

    // What was wrong, and where.
    let err = refused(run(NO_STORE, &["--symbol", "NOPEUSDT", "--data", data]));
    assert!(err.contains("unknown symbol NOPEUSDT"), "{err}");
    let err = refused(run(
        NO_STORE,
        &["--symbol", "ADAUSDT", "--data", "/nonexistent/trades.csv"],
    ));
    assert!(err.contains("/nonexistent/trades.csv"), "{err}");
    let bad = dir.path().join("bad.csv");
    let mut lines: Vec<String> = ada_day_lines().into_iter().take(3).collect();
    lines[1] = lines[1].replace(";0.0", ";zero.0");
    write_lines(&bad, &lines);
    let err = refused(run(
        NO_STORE,
        &["--symbol", "ADAUSDT", "--data", bad.to_str().unwrap()],
    ));
    assert!(
        err.contains(&format!("{}:2:", bad.display())) && err.contains("price"),
        "{err}"
    );
    let err = refused(run(
        NO_STORE,
        &[
            "--symbol", "ADAUSDT", "--data", data, "--budget", "10", "--chunks", "5",
        ],
    ));
    assert!(err.contains("minimum order value"), "{err}");
    let err = refused(run(
        NO_STORE,
        &["--symbol", "ADAUSDT", "--data", data, "--chart", "c.svg"],
    ));
    assert!(
        err.contains("FILE.html") && err.contains("FILE.png"),
        "{err}"
    );
    let err = refused(run(NO_STORE, &["--symbol", "BTCUSDT", "--data", data]));
    assert!(err.contains("BTCUSDT"), "a file of another symbol: {err}");
    let err = refused(run(
        NO_STORE,
        &[
            "--symbol",
            "ADAUSDT",
            "--data",
            data,
            "--from",
            "2030-01-01",
        ],
    ));
    assert!(err.contains("no spot trades of ADAUSDT"), "{err}");
    assert!(!Path::new("/nonexistent-hedgehog-dir").exists());
}

/// The book scenario's file: XRPUSDT trades one second apart.
fn xrp_file(dir: &Path) -> PathBuf {
    let data = dir.join("xrp.csv");
    let prices = [
        "0.4300", "0.4295", "0.4288", "0.4280", "0.4302", "0.4260", "0.4290",
    ];
    let rows: Vec<String> = prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "{},{p},1000,430.00000000,{},false",
                i + 1,
                1_560_000_000_000 + i * 1000
            )
        })
        .collect();
    write_lines(&data, &rows);
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speed_paces_a_kept_run_so_it_can_be_watched_as_it_goes() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let data = xrp_file(dir.path());
    let started = Instant::now();
    // Six seconds of trades at four times their pace: a second and a half at least.
    let mut running = spawn(
        &db,
        &[
            &[
                "backtest",
                "--symbol",
                "XRPUSDT",
                "--data",
                data.to_str().unwrap(),
            ][..],
            &BOOK_SETTINGS,
            &["--keep", "--speed", "4"],
        ]
        .concat(),
    );
    let store = db.open().await;
    let mut seen = Vec::new();
    while running.child().try_wait().unwrap().is_none() {
        let kept = store.streams().await.unwrap();
        if let Some((_, version)) = kept
            .iter()
            .find(|(s, _)| s.as_str().starts_with("backtest-"))
        {
            if seen.last() != Some(version) {
                seen.push(*version);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run ends");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running.child().wait().unwrap().success());
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "paced by the trades' clock: {:?}",
        started.elapsed()
    );
    // Watched from another handle, the kept stream grew trade by trade, to all 10 decisions.
    let (_, last) = store
        .streams()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| s.as_str().starts_with("backtest-"))
        .unwrap();
    assert_eq!(last, 10);
    assert!(seen.len() >= 3, "intermediate states seen: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

async fn events_of(store: &Store, stream: &StreamId) -> Vec<Event> {
    store
        .read_stream_to_end(stream)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect()
}

mod cases {
    use super::*;

    pub async fn a_run_from_the_store_equals_a_run_from_its_files_and_stays_apart(db: &TestDb) {
        let day = fixture("ADAUSDT-2019-06-03.csv.gz");
        let day = day.to_str().unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Nothing stored yet: the store has no trades to replay, and says what to do.
        let err = refused(hedgehog(db, &["backtest", "--symbol", "ADAUSDT"]));
        assert!(
            err.contains("no spot trades of ADAUSDT in the store") && err.contains("--data"),
            "{err}"
        );
        // Imported as a user might: the later half of the day first, then the earlier half,
        // in two runs, so the log holds the day out of trade-id order.
        let id = |line: &String| -> u64 { line.split(';').nth(4).unwrap().parse().unwrap() };
        let lines = ada_day_lines();
        let mut ids: Vec<u64> = lines.iter().map(id).collect();
        ids.sort_unstable();
        let middle = ids[ids.len() / 2];
        let (later, earlier) = (dir.path().join("later.csv"), dir.path().join("earlier.csv"));
        let part = |upper: bool| -> Vec<String> {
            lines
                .iter()
                .filter(|l| (id(l) >= middle) == upper)
                .cloned()
                .collect()
        };
        write_lines(&later, &part(true));
        write_lines(&earlier, &part(false));
        ok(hedgehog(db, &["import", "trades", later.to_str().unwrap()]));
        ok(hedgehog(
            db,
            &["import", "trades", earlier.to_str().unwrap()],
        ));
        let from_files = dir.path().join("files.json");
        let from_store = dir.path().join("store.json");
        let mut files_args = vec!["backtest", "--symbol", "ADAUSDT", "--data", day];
        files_args.extend(ADA_SETTINGS);
        files_args.extend(["--report", from_files.to_str().unwrap()]);
        ok(hedgehog(db, &files_args));
        let mut store_args = vec!["backtest", "--symbol", "ADAUSDT", "--keep"];
        store_args.extend(ADA_SETTINGS);
        store_args.extend(["--report", from_store.to_str().unwrap()]);
        let table = ok(hedgehog(db, &store_args));
        assert!(table.contains("kept in          backtest-"), "{table}");
        let (files, store_run) = (read_json(&from_files), read_json(&from_store));
        assert_eq!(store_run["fingerprint"], files["fingerprint"]);
        assert_eq!(
            store_run["inputs"]["trades_sha256"],
            files["inputs"]["trades_sha256"]
        );
        assert_eq!(store_run["summary"], files["summary"]);
        assert_eq!(store_run["inputs"]["source"], "store");
        assert_eq!(store_run["inputs"]["stream"], "trades-ADAUSDT");

        // The kept run: its decisions in a stream of its own, and nothing live touched.
        let store = db.open().await;
        let kept = StreamId::new(store_run["stream"].as_str().unwrap()).unwrap();
        assert!(kept.as_str().starts_with("backtest-") && kept.as_str().ends_with("-ADAUSDT"));
        let events = events_of(&store, &kept).await;
        assert_eq!(
            events.len() as u64,
            store_run["decisions"].as_u64().unwrap()
        );
        assert!(matches!(events[0], Event::SettingsUpdated(_)));
        assert!(matches!(events[1], Event::TradingStarted(_)));
        let closed = events
            .iter()
            .filter(|e| matches!(e, Event::PositionClosed(_)))
            .count() as u64;
        assert_eq!(
            closed,
            store_run["summary"]["positions_closed"].as_u64().unwrap()
        );
        assert_eq!(
            store
                .stream_version(&StreamId::trading(&symbol("ADAUSDT")))
                .await
                .unwrap(),
            0,
            "no live trading stream"
        );
        let orders = ok(hedgehog(db, &["orders", "--format", "json"]));
        assert_eq!(
            orders.trim(),
            "[]",
            "the live orders read model ignores runs"
        );
        // The run's own orders are projected into `backtest_orders`, as the report has them.
        let run = store_run["run_id"].as_str().unwrap();
        assert!(
            table.contains(&format!("hedgehog orders --run {run}")),
            "{table}"
        );
        let projected: Value = serde_json::from_str(&ok(hedgehog(
            db,
            &["orders", "--run", run, "--format", "json"],
        )))
        .unwrap();
        let mut projected: Vec<(u64, String, String, Decimal)> = projected
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                assert_eq!(o["run_id"], run);
                (
                    o["order_id"].as_u64().unwrap(),
                    o["status"].as_str().unwrap().to_owned(),
                    o["side"].as_str().unwrap().to_owned(),
                    dec_of(&o["executed_quantity"]),
                )
            })
            .collect();
        let mut reported: Vec<(u64, String, String, Decimal)> = store_run["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                (
                    o["order_id"].as_u64().unwrap(),
                    o["status"].as_str().unwrap().to_owned(),
                    o["side"].as_str().unwrap().to_owned(),
                    dec_of(&o["executed"]),
                )
            })
            .collect();
        projected.sort();
        reported.sort();
        assert!(!reported.is_empty());
        assert_eq!(projected, reported);
        let none = ok(hedgehog(
            db,
            &["orders", "--run", "nosuchrun", "--format", "json"],
        ));
        assert_eq!(none.trim(), "[]");
        let status = ok(hedgehog(db, &["trading", "status", "ADAUSDT"]));
        assert!(status.contains("off"), "{status}");

        // A window replays only its trades (counted here from the raw file).
        let (from, to) = (1_559_530_000_000i64, 1_559_540_000_000i64);
        let in_window = ada_day_lines()
            .iter()
            .filter(|l| {
                let t: i64 = l.split(';').nth(9).unwrap().parse().unwrap();
                (from..=to).contains(&t)
            })
            .count();
        let windowed = dir.path().join("window.json");
        ok(hedgehog(
            db,
            &[
                "backtest",
                "--symbol",
                "ADAUSDT",
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
                "--report",
                windowed.to_str().unwrap(),
            ],
        ));
        let w = read_json(&windowed);
        assert_eq!(w["summary"]["trades"].as_u64(), Some(in_window as u64));
        assert!(in_window > 1000 && in_window < 57_018);
    }

    pub async fn live_paper_trading_and_the_backtest_decide_the_same_events(db: &TestDb) {
        // BTCUSDT at 2024 prices: 20 USDT chunks, intervals a few ticks wide.
        let settings = [
            "--chunks",
            "5",
            "--budget",
            "100",
            "--buy-down-interval",
            "0.00002",
            "--profit-target",
            "0.00001",
            "--rebuy-interval",
            "0.00005",
            "--fee",
            "0.0001",
        ];
        let files = ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"];
        let paths: Vec<String> = files.iter().map(|f| format!("{WS}/{f}")).collect();

        // The backtest over the recordings, kept so its events can be compared one by one.
        let mut args = vec!["backtest", "--symbol", "BTCUSDT", "--keep", "--report", "-"];
        for p in &paths {
            args.extend(["--data", p.as_str()]);
        }
        args.extend(settings);
        let report: Value = serde_json::from_str(&ok(hedgehog(db, &args))).unwrap();
        let decisions = report["decisions"].as_u64().unwrap() as usize;
        assert!(
            report["summary"]["positions_closed"].as_u64().unwrap() >= 3,
            "the settings trade: {}",
            report["summary"]
        );
        let store = db.open().await;
        let backtested = events_of(
            &store,
            &StreamId::new(report["stream"].as_str().unwrap()).unwrap(),
        )
        .await;
        assert_eq!(backtested.len(), decisions);

        // Live: the same settings, trading and streaming on, the engine fed by the replay server.
        let mut set = vec!["settings", "set", "BTCUSDT"];
        set.extend(settings);
        ok(hedgehog(db, &set));
        ok(hedgehog(db, &["trading", "start", "BTCUSDT"]));
        ok(hedgehog(db, &["streaming", "start", "BTCUSDT"]));
        let replay = Replay::start(&files, 0);
        let engine = spawn(db, &["run", "--no-http", "--binance-ws-url", &replay.url]);
        let trading = StreamId::trading(&symbol("BTCUSDT"));
        let trades = StreamId::trades(&symbol("BTCUSDT"));
        let started = Instant::now();
        // Every trade in, and the worker done with them (its last decision is the backtest's).
        let last = backtested.last().cloned();
        loop {
            let stored = store.stream_version(&trades).await.unwrap();
            let decided = events_of(&store, &trading).await;
            if stored == 19_904 && decided.len() >= decisions && decided.last() == last.as_ref() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "live: {stored} trades stored, {} of {decisions} events decided",
                decided.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop(engine);
        let live = events_of(&store, &trading).await;
        assert_eq!(live.len(), decisions);
        for (i, (l, b)) in live.iter().zip(&backtested).enumerate() {
            assert_eq!(l, b, "decision {i} differs");
        }
        assert_eq!(live, backtested);
        // And the stored trades replay to the very same fingerprint.
        let mut args = vec!["backtest", "--symbol", "BTCUSDT", "--report", "-"];
        args.extend(settings);
        let from_store: Value = serde_json::from_str(&ok(hedgehog(db, &args))).unwrap();
        assert_eq!(from_store["fingerprint"], report["fingerprint"]);
    }
}

/// Commissions charged in another asset follow that asset's own market: BTCUSDT traded,
/// commissions in ETH priced by ETHUSDT's trades of the same minutes (real recordings). Each
/// fill records the ETH charged and the ETH price it counts at: the last ETHUSDT trade at or
/// before the fill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fees_in_another_asset_count_at_its_market_price_when_charged() {
    let db = TestDb::sqlite();
    let rec = |name: &str| fixture(&format!("binance-ws/{name}"));
    let (btc8, btc9) = (
        rec("spot_btcusdt_20240808.gz"),
        rec("spot_btcusdt_20240809.gz"),
    );
    let (eth8, eth9) = (
        rec("spot_ethusdt_20240808.trades.gz"),
        rec("spot_ethusdt_20240809.trades.gz"),
    );
    let arg = |p: &PathBuf| p.to_str().unwrap().to_owned();
    let args = [
        "backtest",
        "--symbol",
        "BTCUSDT",
        "--data",
        &arg(&btc8),
        &arg(&btc9),
        "--budget",
        "100",
        "--buy-down-interval",
        "0.00002",
        "--profit-target",
        "0.00001",
        "--fee",
        "0.00075",
        "--fee-asset",
        "ETH",
        "--fee-asset-data",
        &arg(&eth9),
        &arg(&eth8),
        "--keep",
    ];
    let out = ok(hedgehog(&db, &args));
    assert!(out.contains("fees in ETH at its market's price"), "{out}");
    let mut eth: Vec<(u64, i64, Decimal)> = hedgehog_ingest::import::read_trades(
        &[eth8, eth9],
        &hedgehog_ingest::import::ImportOptions::default(),
    )
    .unwrap()
    .into_iter()
    .map(|(_, t)| (t.trade_id, t.trade_time.0, t.price))
    .collect();
    eth.sort();
    let store = db.open().await;
    let kept = store
        .streams()
        .await
        .unwrap()
        .into_iter()
        .find(|(s, _)| s.as_str().starts_with("backtest-"))
        .unwrap()
        .0;
    let fills: Vec<_> = events_of(&store, &kept)
        .await
        .into_iter()
        .filter_map(|e| match e {
            Event::OrderFilled(f) => Some(f),
            _ => None,
        })
        .collect();
    assert!(fills.len() >= 2, "the run fills orders: {out}");
    for f in &fills {
        let price = eth
            .iter()
            .take_while(|(_, time, _)| *time <= f.time.0)
            .last()
            .map(|(_, _, p)| *p)
            .expect("an ETH trade before the fill");
        let charged = f.commission.as_ref().expect("charged in ETH");
        assert_eq!(charged.asset, "ETH");
        assert_eq!(f.commission_price, Some(price), "ETH's price at the fill");
        let quote_fee = f.price * f.quantity * dec!(0.00075);
        assert_eq!(charged.amount, (quote_fee / price).round_dp(8).normalize());
        assert_eq!(f.fee, (charged.amount * price).normalize());
    }
    // Without a price the run is refused, saying what to give.
    let err = refused(hedgehog(
        &db,
        &[
            "backtest",
            "--symbol",
            "BTCUSDT",
            "--data",
            &arg(&btc8),
            "--fee-asset",
            "BNB",
        ],
    ));
    assert!(
        err.contains("--fee-asset BNB needs its price in USDT"),
        "{err}"
    );
}

/// The example's fixed grid, a strategy written outside the library against its trait.
#[path = "../../examples/grid_strategy.rs"]
mod grid_strategy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_written_outside_the_library_is_backtested_by_it() {
    use grid_strategy::{ada_grid, backtest, FIXTURE};
    use hedgehog_domain::backtest::OrderRecord;
    use hedgehog_domain::Side;

    let grid = ada_grid();
    let levels: Vec<Decimal> = grid.levels().collect();
    let mut outcome = backtest(vec![FIXTURE.into()], "grid", grid.clone())
        .await
        .unwrap();
    let mut orders: Vec<OrderRecord> = Vec::new();
    outcome
        .orders
        .for_each(|o| {
            orders.push(o);
            Ok(())
        })
        .unwrap();
    let s = &outcome.report.summary;
    assert_eq!(s.trades, 57_018);
    assert!(s.positions_closed >= 10, "{s:?}");
    assert!(
        s.positions_opened - s.positions_closed <= u64::from(grid.levels),
        "{s:?}"
    );
    // Every BUY sits on a level, every SELL one level above its position's BUY.
    let mut buys = std::collections::BTreeMap::new();
    for o in &orders {
        match o.side {
            Side::Buy => {
                assert!(levels.contains(&o.price), "BUY off the grid: {o:?}");
                buys.insert(o.position_id, o.price);
            }
            Side::Sell => assert_eq!(o.price, buys[&o.position_id] + grid.spacing, "{o:?}"),
        }
    }
    // Deterministic, and not the naive strategy under another name.
    let again = backtest(vec![FIXTURE.into()], "grid", grid.clone())
        .await
        .unwrap();
    assert_eq!(again.report.fingerprint, outcome.report.fingerprint);
    let naive = backtest(vec![FIXTURE.into()], "naive", grid.clone())
        .await
        .unwrap();
    assert_ne!(naive.report.fingerprint, outcome.report.fingerprint);
    // A name nobody registered is refused, naming what is known.
    let err = backtest(vec![FIXTURE.into()], "martingale", grid)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unknown strategy `martingale`"), "{err}");
    assert!(err.contains("grid, naive"), "{err}");
}
