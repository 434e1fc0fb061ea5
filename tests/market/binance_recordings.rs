//! Every line of real Binance websocket recordings (excerpts in tests/fixtures/binance-ws)
//! parses, with all three payload shapes, skipped streams and a REST snapshot among them.

use std::io::{BufRead, BufReader};

use flate2::read::GzDecoder;
use hedgehog_binance::{parse_recorded_line, Frame};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::TradeKind;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/binance-ws");

struct Parsed {
    trades: Vec<TradeReceived>,
    futures: usize,
    other: usize,
    not_stream: usize,
    /// Lines with a trade event, counted by plain string search: the independent check.
    trade_lines: usize,
}

fn parse_file(name: &str) -> Parsed {
    let path = format!("{DIR}/{name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut parsed = Parsed {
        trades: Vec::new(),
        futures: 0,
        other: 0,
        not_stream: 0,
        trade_lines: 0,
    };
    for (i, line) in BufReader::new(GzDecoder::new(file)).lines().enumerate() {
        let line = line.unwrap();
        if line.contains(r#""e":"trade""#) {
            parsed.trade_lines += 1;
        }
        match parse_recorded_line(&line) {
            Ok((_, Frame::Trade(t))) => parsed.trades.push(t),
            Ok((_, Frame::FuturesTrade(t))) => {
                parsed.futures += 1;
                parsed.trades.push(t);
            }
            Ok((_, Frame::OtherStream(_))) => parsed.other += 1,
            Ok((_, Frame::NotAStreamMessage)) => parsed.not_stream += 1,
            Err(e) => panic!("{path}:{}: {e}", i + 1),
        }
    }
    parsed
}

fn assert_contiguous(trades: &[TradeReceived]) {
    for pair in trades.windows(2) {
        assert_eq!(
            pair[1].trade_id,
            pair[0].trade_id + 1,
            "trade ids are contiguous"
        );
    }
}

#[test]
fn spot_2023_with_order_ids() {
    let p = parse_file("spot_btcusdt_20230405.head300.gz");
    assert_eq!(p.trades.len(), p.trade_lines);
    assert_eq!(p.trades.len(), 104);
    assert_eq!(p.futures, 0, "spot frames are spot trades");
    assert_eq!(p.trades.len() + p.other + p.not_stream, 300);
    assert!(p
        .trades
        .iter()
        .all(|t| t.buyer_order_id.is_some() && t.seller_order_id.is_some()));
    assert_eq!(p.trades[0].trade_id, 3071245454);
    assert_contiguous(&p.trades);
}

#[test]
fn spot_2024_without_order_ids_and_a_snapshot() {
    let p = parse_file("spot_btcusdt_20240808.head300.gz");
    assert_eq!(p.trades.len(), p.trade_lines);
    assert_eq!(p.trades.len(), 56);
    assert_eq!(
        p.not_stream, 1,
        "the REST depth snapshot is recognised and skipped"
    );
    assert!(p.other > 0, "depth and bookTicker frames are skipped");
    assert!(p.trades.iter().all(|t| t.buyer_order_id.is_none()));
    assert!(p.trades.iter().all(|t| t.kind == TradeKind::Market));
    assert_contiguous(&p.trades);
}

#[test]
fn usdm_futures_with_trade_kinds() {
    let p = parse_file("usdm_btcusdt_20230405.head300_plus_insurance_fund.gz");
    assert_eq!(p.trades.len(), p.trade_lines);
    assert_eq!(
        p.futures,
        p.trades.len(),
        "every futures frame is a futures trade"
    );
    let (market, other): (Vec<&TradeReceived>, Vec<&TradeReceived>) =
        p.trades.iter().partition(|t| t.kind.is_market());
    assert_eq!(other.len(), 1);
    assert_eq!(other[0].kind, TradeKind::InsuranceFund);
    assert_eq!(other[0].trade_id, 3535191080);
    assert_eq!(other[0].price.to_string(), "28722.50");
    assert_eq!(market.len(), 194);
    let market: Vec<TradeReceived> = market.into_iter().cloned().collect();
    assert_contiguous(&market);
}

/// Every recording of `../shared/data/binance-ws`, with its trade count from SOURCES.md. The two
/// spot BTCUSDT 2024 files are fixtures whole; the others as their `@trade` lines only (the
/// depth and bookTicker frames make up most of their size), byte for byte as recorded.
const RECORDINGS: [(&str, usize, bool); 10] = [
    ("spot_btcusdt_20230405.trades.gz", 3144, false),
    ("spot_btcusdt_20240808.gz", 9757, false),
    ("spot_btcusdt_20240809.gz", 10147, false),
    ("spot_ethusdt_20240808.trades.gz", 6106, false),
    ("spot_ethusdt_20240809.trades.gz", 8409, false),
    ("usdm_btcusdt_20230404.trades.gz", 2197, true),
    ("usdm_btcusdt_20230405.trades.gz", 10738, true),
    ("usdm_btcusdt_20240718.trades.gz", 974, true),
    ("usdm_btcusdt_20240719.trades.gz", 9727, true),
    ("usdm_btcusdt_20240808.trades.gz", 21313, true),
];

#[test]
fn every_recording_parses_to_the_trade_counts_of_sources_md() {
    let mut previous: Option<(&str, u64)> = None;
    let mut joined = 0;
    for (name, count, futures) in RECORDINGS {
        let p = parse_file(name);
        assert_eq!(
            p.trades.len(),
            p.trade_lines,
            "{name}: every trade line parses"
        );
        assert_eq!(p.trades.len(), count, "{name}: the count in SOURCES.md");
        assert_eq!(p.futures, if futures { count } else { 0 }, "{name}: market");
        // Ids are contiguous within each file (insurance-fund trades share the id sequence).
        let market = &p.trades;
        assert_contiguous(market);
        // ... and across each pair of consecutive files of one symbol and market.
        let prefix = &name[..name.find('_').unwrap() + 8];
        let first = market[0].trade_id;
        if let Some((prev, last)) = previous.filter(|(p, _)| p.starts_with(prefix)) {
            let consecutive = matches!(
                (prev, name),
                ("spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz")
                    | (
                        "spot_ethusdt_20240808.trades.gz",
                        "spot_ethusdt_20240809.trades.gz"
                    )
                    | (
                        "usdm_btcusdt_20230404.trades.gz",
                        "usdm_btcusdt_20230405.trades.gz"
                    )
                    | (
                        "usdm_btcusdt_20240718.trades.gz",
                        "usdm_btcusdt_20240719.trades.gz"
                    )
            );
            if consecutive {
                joined += 1;
                assert_eq!(
                    first,
                    last + 1,
                    "{prev} then {name}: no gap between the files"
                );
            }
        }
        previous = Some((name, market[market.len() - 1].trade_id));
    }
    assert_eq!(joined, 4, "the four consecutive pairs were checked");
}
