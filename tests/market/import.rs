//! `hedgehog import trades` as a user runs it, on both backends.

use crate::common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{symbol, TestDb};
use hedgehog_store::StreamId;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const CSV: &str = "spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz";

on_both_backends!(
    reimporting_stores_nothing_new,
    a_bad_row_stops_with_its_line_and_stores_nothing_still_held,
    zip_plain_and_header_files_overlap_without_duplicates,
    book_dumps_and_recordings_carry_their_own_symbols,
    whole_real_files_import_exactly,
    futures_files_go_to_their_own_market,
    agg_trades_make_the_candles_their_trades_make,
    each_market_stream_is_stored_in_trade_id_order,
    read_models_do_not_depend_on_the_order_ranges_were_imported_in,
    an_archived_day_answers_every_command_as_before,
    run_seals_what_archive_older_than_days_says,
);

/// Binance's aggTrades of the fixture's trades, built the way Binance builds them: a run of
/// consecutive trades at one time, one price and one side becomes one row
/// `agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,
/// is_best_match`, quantities summed (exactly, as text decimals).
fn aggregate(trades: &[String]) -> Vec<String> {
    use rust_decimal::Decimal;
    let mut rows: Vec<(String, Decimal, u64, u64, String, String)> = Vec::new();
    for line in trades {
        let f: Vec<&str> = line.split(',').collect();
        let (id, price, qty, time, maker) = (f[0], f[1], f[2], f[4], f[5]);
        let id: u64 = id.parse().unwrap();
        let qty: Decimal = qty.parse().unwrap();
        match rows.last_mut() {
            Some(last)
                if last.0 == price && last.3 + 1 == id && last.4 == time && last.5 == maker =>
            {
                last.1 += qty;
                last.3 = id;
            }
            _ => rows.push((
                price.to_owned(),
                qty,
                id,
                id,
                time.to_owned(),
                maker.to_owned(),
            )),
        }
    }
    rows.iter()
        .enumerate()
        .map(|(i, (price, qty, first, last, time, maker))| {
            format!(
                "{},{price},{qty:.8},{first},{last},{time},{maker},True",
                900_000 + i
            )
        })
        .collect()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// The path of a websocket recording fixture, as an argument.
fn recording(name: &str) -> String {
    fixture(&format!("binance-ws/{name}"))
        .to_string_lossy()
        .into_owned()
}

fn import(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url, "import", "trades"])
        .args(args)
        .output()
        .expect("run hedgehog")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn csv_lines() -> Vec<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(fixture(CSV)).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines().map(str::to_owned).collect()
}

fn gzip(path: &Path, lines: &[String]) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    for line in lines {
        writeln!(gz, "{line}").unwrap();
    }
    gz.finish().unwrap();
}

mod cases {
    use super::*;

    pub async fn agg_trades_make_the_candles_their_trades_make(db: &TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let trades = csv_lines();
        let rows = aggregate(&trades);
        assert!(
            rows.len() < trades.len() * 9 / 10,
            "real trades aggregate: {} rows of {} trades",
            rows.len(),
            trades.len()
        );
        // With Binance's header, then without (detected from the rows themselves).
        let with_header = dir.path().join("aggTrades.csv.gz");
        let mut lines = vec![
            "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker,is_best_match"
                .to_owned(),
        ];
        lines.extend(rows.iter().cloned());
        gzip(&with_header, &lines);
        let out = ok(&import(
            db,
            &["--symbol", "BTCUSDT", with_header.to_str().unwrap()],
        ));
        assert!(
            out.contains(&format!("read {}, imported {}", rows.len(), rows.len())),
            "{out}"
        );
        let bare = dir.path().join("bare.csv");
        std::fs::write(&bare, rows.join("\n")).unwrap();
        let again = ok(&import(
            db,
            &["--symbol", "BTCUSDT", bare.to_str().unwrap()],
        ));
        assert!(again.contains("imported 0"), "{again}");

        // The same trades, not aggregated, in a store of their own: the same candles, trade
        // counts, first and last trade ids and volumes included.
        let raw = TestDb::sqlite();
        ok(&import(
            &raw,
            &["--symbol", "BTCUSDT", &fixture(CSV).to_string_lossy()],
        ));
        let candles = |db: &TestDb| {
            let db_url = db.url.clone();
            std::thread::spawn(move || {
                let out = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
                    .args(["--database-url", &db_url, "ohlc", "BTCUSDT", "--interval"])
                    .arg("1m")
                    .args(["--format", "csv"])
                    .output()
                    .unwrap();
                String::from_utf8(out.stdout).unwrap()
            })
            .join()
            .unwrap()
        };
        let (from_aggregates, from_trades) = (candles(db), candles(&raw));
        // A header and eight minutes: 23:59 and 00:00 to 00:06.
        assert_eq!(from_aggregates.lines().count(), 9, "{from_aggregates}");
        assert_eq!(from_aggregates, from_trades);
        let store = db.open().await;
        assert_eq!(
            store
                .stream_version(&StreamId::trades(&symbol("BTCUSDT")))
                .await
                .unwrap(),
            rows.len() as i64
        );

        // A row whose ids run backwards is refused with its line.
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &bad,
            format!("{}\n1,1.0,1.0,20,10,1680652799999,True,True\n", rows[0]),
        )
        .unwrap();
        let out = import(db, &["--symbol", "BTCUSDT", bad.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("bad.csv:2:") && err.contains("below first_trade_id"),
            "{err}"
        );
    }

    pub async fn reimporting_stores_nothing_new(db: &TestDb) {
        let csv = fixture(CSV);
        let csv = csv.to_str().unwrap();
        let out = import(db, &["--symbol", "BTCUSDT", csv]);
        let first = ok(&out);
        // Piped: no progress bar, no noise on stderr.
        assert!(
            out.stderr.is_empty(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            first.starts_with("read 3144, imported 3144, already present 0, rejected 0"),
            "{first}"
        );
        if let Some(file) = db.url.strip_prefix("sqlite://") {
            // A clean exit leaves the database in its one file: the WAL copied in and emptied.
            let wal = std::fs::metadata(format!("{file}-wal")).map_or(0, |m| m.len());
            assert_eq!(wal, 0, "the WAL after the import exited");
        }
        let again = ok(&import(db, &["--symbol", "btcusdt", csv]));
        assert!(
            again.starts_with("read 3144, imported 0, already present 3144"),
            "{again}"
        );

        let store = db.open().await;
        let events = store
            .read_stream_to_end(&StreamId::trades(&symbol("BTCUSDT")))
            .await
            .unwrap();
        assert_eq!(events.len(), 3144);
        let ids: Vec<u64> = events.iter().map(|e| e.event.trade_id().unwrap()).collect();
        assert_eq!(
            ids,
            (3071245454..3071245454 + 3144).collect::<Vec<_>>(),
            "every trade once, in order"
        );
        let hedgehog_domain::Event::TradeReceived(first) = &events[0].event else {
            panic!()
        };
        assert_eq!(
            first.price.to_string(),
            "28165.47000000",
            "decimals keep their scale"
        );
        assert_eq!(first.quantity.to_string(), "0.00056000");
        assert!(first.buyer_is_maker);
    }

    pub async fn a_bad_row_stops_with_its_line_and_stores_nothing_still_held(db: &TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let mut lines = csv_lines();
        lines[2499] = lines[2499].replacen(",28", ",2x8", 1); // line 2500: a price that is no number
        let bad = dir.path().join("corrupt.csv.gz");
        gzip(&bad, &lines);
        let bad = bad.to_str().unwrap();

        let out = import(db, &["--symbol", "BTCUSDT", "--batch-size", "1000", bad]);
        assert!(!out.status.success(), "a bad row fails the import");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("{bad}:2500: field `price`")), "{err}");
        assert!(err.contains("2x8"), "the bad value is shown: {err}");
        let store = db.open().await;
        let stream = StreamId::trades(&symbol("BTCUSDT"));
        assert_eq!(
            store.stream_version(&stream).await.unwrap(),
            0,
            "the rows before the bad one were still held to be put in trade-id order: a stop \
             stores none of them"
        );

        let out = ok(&import(
            db,
            &[
                "--symbol",
                "BTCUSDT",
                "--batch-size",
                "1000",
                "--skip-bad-rows",
                bad,
            ],
        ));
        assert!(
            out.starts_with("read 3143, imported 3143, already present 0, rejected 1"),
            "{out}"
        );
        assert_eq!(store.stream_version(&stream).await.unwrap(), 3143);
    }

    pub async fn zip_plain_and_header_files_overlap_without_duplicates(db: &TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let lines = csv_lines();
        // A plain CSV with Binance's header, holding the first 2,000 trades...
        let plain = dir.path().join("BTCUSDT-trades-part1.csv");
        let mut text = String::from("id,price,qty,quote_qty,time,is_buyer_maker,is_best_match\n");
        for line in &lines[..2000] {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&plain, text).unwrap();
        // ...and a zip holding trades 1,001 to 3,144: they overlap by 1,000.
        let zipped = dir.path().join("BTCUSDT-trades-part2.zip");
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&zipped).unwrap());
        zip.start_file(
            "BTCUSDT-trades-part2.csv",
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        for line in &lines[1000..] {
            writeln!(zip, "{line}").unwrap();
        }
        zip.finish().unwrap();

        let out = ok(&import(
            db,
            &[
                "--symbol",
                "BTCUSDT",
                plain.to_str().unwrap(),
                zipped.to_str().unwrap(),
            ],
        ));
        assert!(
            out.starts_with(
                "read 4144, imported 3144, already present 1000, rejected 0, other lines skipped 1"
            ),
            "{out}"
        );
        let store = db.open().await;
        assert_eq!(
            store
                .stream_version(&StreamId::trades(&symbol("BTCUSDT")))
                .await
                .unwrap(),
            3144
        );
    }

    pub async fn book_dumps_and_recordings_carry_their_own_symbols(db: &TestDb) {
        let book = fixture("ADAUSDT-2019-06-03.head2000.csv.gz");
        let out = ok(&import(db, &[book.to_str().unwrap()]));
        assert!(out.starts_with("read 2000, imported 2000"), "{out}");
        let store = db.open().await;
        let ada = store
            .read_stream_to_end(&StreamId::trades(&symbol("ADAUSDT")))
            .await
            .unwrap();
        assert_eq!(ada.len(), 2000);
        let hedgehog_domain::Event::TradeReceived(t) = &ada[0].event else {
            panic!()
        };
        assert_eq!(
            (t.trade_id, t.buyer_order_id, t.seller_order_id),
            (14364021, Some(71180936), Some(71180955)),
            "the lowest trade id first"
        );
        assert_eq!(t.event_time.millis() - t.trade_time.millis(), 5);

        // A symbol that disagrees with the rows is a bad row, named as such.
        let out = import(db, &["--symbol", "TRXUSDT", book.to_str().unwrap()]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(":1: the row's symbol ADAUSDT is not --symbol TRXUSDT"),
            "{err}"
        );

        // Recordings: spot trades to the spot market, futures trades to their own stream.
        let out = ok(&import(
            db,
            &[
                &recording("spot_btcusdt_20230405.head300.gz"),
                &recording("spot_btcusdt_20240808.head300.gz"),
                &recording("usdm_btcusdt_20230405.head300_plus_insurance_fund.gz"),
            ],
        ));
        assert!(out.starts_with("read 355, imported 355"), "{out}");
        assert_eq!(
            store
                .stream_version(&StreamId::trades(&symbol("BTCUSDT")))
                .await
                .unwrap(),
            160
        );
        let futures = store
            .read_stream_to_end(&StreamId::usdm_trades(&symbol("BTCUSDT")))
            .await
            .unwrap();
        assert_eq!(futures.len(), 195);
        assert_eq!(
            futures.iter().filter(|e| matches!(&e.event, hedgehog_domain::Event::TradeReceived(t) if !t.kind.is_market())).count(),
            1,
            "the insurance fund trade is kept, flagged"
        );
    }

    /// The book's dump is in insertion order; the store holds it in trade-id order, and so it
    /// does two days of recordings given in the wrong order.
    pub async fn each_market_stream_is_stored_in_trade_id_order(db: &TestDb) {
        let ids = |events: Vec<hedgehog_store::RecordedEvent>| -> Vec<u64> {
            events.iter().filter_map(|e| e.event.trade_id()).collect()
        };
        let ada = fixture("ADAUSDT-2019-06-03.csv.gz");
        let out = ok(&import(db, &[ada.to_str().unwrap()]));
        assert!(
            out.contains(
                "50608 trades came after a higher trade id and were stored in trade-id order"
            ),
            "{out}"
        );
        assert!(!out.contains("warning"), "{out}");
        let store = db.open().await;
        let stored = ids(store
            .read_stream_to_end(&StreamId::trades(&symbol("ADAUSDT")))
            .await
            .unwrap());
        assert_eq!(stored.len(), 57_018);
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "stored in trade-id order"
        );

        let day = |d: &str| format!("{FIXTURES}/binance-ws/spot_btcusdt_2024080{d}.gz");
        let out = ok(&import(db, &[&day("9"), &day("8")]));
        assert!(out.starts_with("read 19904, imported 19904"), "{out}");
        let stored = ids(store
            .read_stream_to_end(&StreamId::trades(&symbol("BTCUSDT")))
            .await
            .unwrap());
        assert_eq!(stored.len(), 19_904);
        assert!(
            stored.windows(2).all(|w| w[0] < w[1]),
            "the files were read day 8 first"
        );
    }

    /// A day imported later half first, then earlier half (so the log holds it out of trade-id
    /// order) answers `ohlc` and `trades` as the day imported whole, before and after a rebuild.
    pub async fn read_models_do_not_depend_on_the_order_ranges_were_imported_in(db: &TestDb) {
        let whole = if db.url.starts_with("sqlite") {
            TestDb::sqlite()
        } else {
            TestDb::postgres()
                .await
                .expect("a second PostgreSQL schema")
        };
        let dir = tempfile::tempdir().unwrap();
        let day = fixture("ADAUSDT-2019-06-03.csv.gz");
        let lines: Vec<String> = {
            let file = std::fs::File::open(&day).unwrap();
            std::io::BufRead::lines(std::io::BufReader::new(flate2::read::GzDecoder::new(file)))
                .map(Result::unwrap)
                .collect()
        };
        let id = |l: &String| -> u64 { l.split(';').nth(4).unwrap().parse().unwrap() };
        let (later, earlier) = (dir.path().join("later.csv"), dir.path().join("earlier.csv"));
        for (path, upper) in [(&later, true), (&earlier, false)] {
            let part: Vec<String> = lines
                .iter()
                .filter(|l| (id(l) >= 14_392_000) == upper)
                .cloned()
                .collect();
            std::fs::write(path, part.join("\n") + "\n").unwrap();
        }
        ok(&import(&whole, &[day.to_str().unwrap()]));
        ok(&import(db, &[later.to_str().unwrap()]));
        ok(&import(db, &[earlier.to_str().unwrap()]));
        let run = |db: &TestDb, args: &[&str]| -> String {
            let out = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
                .args(["--database-url", &db.url])
                .args(args)
                .output()
                .unwrap();
            ok(&out)
        };
        // `trades` ends each row with the trade's position in the log, which differs.
        let trades = |db: &TestDb| -> Vec<String> {
            run(db, &["trades", "ADAUSDT", "--format", "csv"])
                .lines()
                .map(|l| l.rsplit_once(',').map_or(l, |(row, _)| row).to_owned())
                .collect()
        };
        let expected = trades(&whole);
        assert_eq!(expected.len(), 57_019, "a header and every trade");
        assert_eq!(trades(db), expected);
        for pass in ["as imported", "after a rebuild"] {
            for interval in ["1m", "1h", "1d"] {
                let ohlc = ["ohlc", "ADAUSDT", "--interval", interval, "--format", "csv"];
                assert_eq!(
                    run(db, &ohlc),
                    run(&whole, &ohlc),
                    "{interval} candles {pass}"
                );
            }
            run(db, &["projections", "rebuild"]);
        }
    }

    /// The counts SOURCES.md gives for whole real files.
    pub async fn whole_real_files_import_exactly(db: &TestDb) {
        let ada = fixture("ADAUSDT-2019-06-03.csv.gz");
        let ada = ada.to_str().unwrap();
        let out = ok(&import(db, &[ada]));
        assert!(
            out.starts_with("read 57018, imported 57018, already present 0"),
            "{out}"
        );
        let out = ok(&import(db, &[ada]));
        assert!(
            out.starts_with("read 57018, imported 0, already present 57018"),
            "{out}"
        );

        let out = ok(&import(
            db,
            &[
                &recording("spot_btcusdt_20240808.gz"),
                &recording("spot_btcusdt_20240809.gz"),
            ],
        ));
        assert!(
            out.starts_with("read 19904, imported 19904, already present 0"),
            "{out}"
        );
        let store = db.open().await;
        let btc = store
            .read_stream_to_end(&StreamId::trades(&symbol("BTCUSDT")))
            .await
            .unwrap();
        let ids: Vec<u64> = btc.iter().map(|e| e.event.trade_id().unwrap()).collect();
        assert_eq!(ids.len(), 19_904);
        assert!(
            ids.windows(2).all(|w| w[1] == w[0] + 1),
            "no gap across the two recordings"
        );
    }

    /// A CSV does not say its market: `--market usdm` puts futures trades in their own stream,
    /// never mixed with spot trades of the same symbol (their trade ids overlap).
    pub async fn futures_files_go_to_their_own_market(db: &TestDb) {
        let csv = fixture(CSV);
        let csv = csv.to_str().unwrap();
        let out = ok(&import(
            db,
            &["--symbol", "BTCUSDT", "--market", "usdm", csv],
        ));
        assert!(out.starts_with("read 3144, imported 3144"), "{out}");
        // The same rows as spot are other trades on another market: all new.
        let out = ok(&import(db, &["--symbol", "BTCUSDT", csv]));
        assert!(out.starts_with("read 3144, imported 3144"), "{out}");
        let store = db.open().await;
        let btc = symbol("BTCUSDT");
        assert_eq!(
            store
                .stream_version(&StreamId::usdm_trades(&btc))
                .await
                .unwrap(),
            3144
        );
        assert_eq!(
            store.stream_version(&StreamId::trades(&btc)).await.unwrap(),
            3144
        );

        // A recording that contradicts --market is refused at its first trade.
        let futures = recording("usdm_btcusdt_20230405.head300_plus_insurance_fund.gz");
        let out = import(db, &["--market", "spot", &futures]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("a usdm trade in an import for the spot market"),
            "{err}"
        );
        assert!(
            err.contains(&format!("{futures}:")),
            "the file and line are named: {err}"
        );
    }

    /// `hedgehog archive` seals a real day's trades, and every command that reads them
    /// answers as it did: trades, candles (read and rebuilt), events, a backtest from the
    /// store, a re-import (all already present). Without a cut it says how to give one.
    pub async fn an_archived_day_answers_every_command_as_before(db: &TestDb) {
        let ada = fixture("ADAUSDT-2019-06-03.csv.gz");
        ok(&import(db, &[ada.to_str().unwrap()]));
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| ok(&common::processes::hedgehog(db, args));
        let answers = |name: &str| {
            let report = dir.path().join(format!("{name}.json"));
            let backtest = run(&[
                "backtest",
                "--symbol",
                "ADAUSDT",
                "--report",
                report.to_str().unwrap(),
            ]);
            assert!(backtest.contains("fingerprint"), "{backtest}");
            let report: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
            vec![
                run(&["trades", "ADAUSDT", "--format", "csv"]),
                run(&["ohlc", "ADAUSDT", "--interval", "1h", "--format", "csv"]),
                run(&[
                    "events", "--from", "20000", "--limit", "50", "--format", "json",
                ]),
                run(&[
                    "events",
                    "--stream",
                    "trades-ADAUSDT",
                    "--from",
                    "57000",
                    "--format",
                    "json",
                ]),
                report["fingerprint"].to_string(),
                report["summary"].to_string(),
            ]
        };
        let before = answers("before");
        assert_eq!(
            before[0].lines().count(),
            57_018 + 1,
            "a header and every trade"
        );

        let refused = common::processes::refused(common::processes::hedgehog(db, &["archive"]));
        assert!(
            refused.contains("--before") && refused.contains("older_than_days"),
            "{refused}"
        );

        let sealed = run(&["archive", "--before", "2019-06-03T12:00:00Z"]);
        assert!(
            sealed.starts_with("sealed ") && !sealed.starts_with("sealed 0 "),
            "{sealed}"
        );
        assert_eq!(answers("half"), before);
        // Everything but the newest trade, then the space given back.
        let sealed = run(&["archive", "--before", "2019-06-04", "--compact"]);
        assert!(sealed.contains("compacted"), "{sealed}");
        let rows = db
            .text_rows("SELECT CAST(COUNT(*) AS TEXT) FROM market_trades")
            .await;
        assert_eq!(rows, ["1"]);
        assert_eq!(answers("all"), before);
        run(&["projections", "rebuild"]);
        assert_eq!(answers("rebuilt"), before);
        let out = ok(&import(db, &[ada.to_str().unwrap()]));
        assert!(
            out.starts_with("read 57018, imported 0, already present 57018"),
            "{out}"
        );
    }

    /// `archive.older_than_days` makes `run` seal at its start (and hourly): a day from 2019
    /// is sealed by a running engine, and reads as before once it has stopped.
    pub async fn run_seals_what_archive_older_than_days_says(db: &TestDb) {
        use common::processes::{hedgehog, spawn_with_env, stop};
        let ada = fixture("ADAUSDT-2019-06-03.csv.gz");
        ok(&import(db, &[ada.to_str().unwrap()]));
        let before = ok(&hedgehog(db, &["trades", "ADAUSDT", "--format", "csv"]));
        let mut engine = spawn_with_env(
            db,
            &["run", "--no-http"],
            &[("HEDGEHOG_ARCHIVE_OLDER_THAN_DAYS", "30")],
        );
        let started = std::time::Instant::now();
        let sealed = loop {
            let sealed = db
                .text_rows("SELECT CAST(COALESCE(SUM(trades), 0) AS TEXT) FROM trade_segments")
                .await;
            // All but the stream's newest trade.
            if sealed == ["57017"] {
                break sealed;
            }
            if let Some(status) = engine.child().try_wait().unwrap() {
                panic!("run exited before sealing: {status}");
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "nothing sealed in 60 s: {sealed:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        assert_eq!(sealed, ["57017"]);
        stop(engine);
        assert_eq!(
            ok(&hedgehog(db, &["trades", "ADAUSDT", "--format", "csv"])),
            before
        );
    }
}
