//! A tour of the event store on real data: appends the 3,144 BTCUSDT spot trades of
//! 2023-04-04 23:59:59 .. 2023-04-05 00:06:54 (Binance public data, shipped as a fixture) to
//! the store, twice, to show idempotency, then follows `$all` with a subscription.
//!
//! `cargo run --release --example store_tour` (store: `DATABASE_URL`, default sqlite://hedgehog.db)

use std::time::Duration;

use anyhow::Context;
use flate2::read::GzDecoder;
use futures::StreamExt;
use hedgehog::domain::events::TradeReceived;
use hedgehog::domain::{Symbol, Timestamp, TradeKind};
use hedgehog::store::{ExpectedVersion, NewEvent, Store, StreamId, DEFAULT_DATABASE_URL};
use rust_decimal::Decimal;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz"
);

/// One row of Binance's public spot trade files (no header). Decimals are read from their
/// text: csv would otherwise hand them over as f64 and lose digits.
#[derive(serde::Deserialize)]
struct Row(
    u64,
    #[serde(with = "rust_decimal::serde::str")] Decimal,
    #[serde(with = "rust_decimal::serde::str")] Decimal,
    String,
    i64,
    String,
    String,
);

fn read_trades(symbol: &Symbol) -> anyhow::Result<Vec<TradeReceived>> {
    let file = std::fs::File::open(FIXTURE).with_context(|| format!("open {FIXTURE}"))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(GzDecoder::new(file));
    let mut trades = Vec::new();
    for (i, row) in reader.deserialize::<Row>().enumerate() {
        let Row(id, price, quantity, _quote, time, maker, _best) =
            row.with_context(|| format!("{FIXTURE}:{}", i + 1))?;
        trades.push(TradeReceived {
            symbol: symbol.clone(),
            trade_id: id,
            price,
            quantity,
            trade_time: Timestamp(time),
            event_time: Timestamp(time),
            buyer_is_maker: maker.eq_ignore_ascii_case("true"),
            buyer_order_id: None,
            seller_order_id: None,
            kind: TradeKind::Market,
        });
    }
    Ok(trades)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let store = Store::open(&url).await?;
    let symbol = Symbol::parse("BTCUSDT")?;
    let stream = StreamId::trades(&symbol);
    let trades = read_trades(&symbol)?;
    println!("read {} trades from the fixture", trades.len());

    for attempt in ["first append", "same trades again"] {
        let (mut appended, mut duplicates) = (0, 0);
        for chunk in trades.chunks(1_000) {
            let batch = chunk.iter().cloned().map(NewEvent::new).collect();
            let out = store.append(&stream, ExpectedVersion::Any, batch).await?;
            appended += out.appended;
            duplicates += out.duplicates;
        }
        println!("{attempt:>18}: {appended} stored, {duplicates} already present");
    }

    let head = store.head_position().await?;
    let mut all = store.subscribe_all(0);
    let mut seen = 0;
    let mut last = None;
    while seen < head {
        let event = tokio::time::timeout(Duration::from_secs(10), all.next())
            .await?
            .context("subscription ended")??;
        seen = event.position;
        last = Some(event);
    }
    if let Some(e) = last {
        println!(
            "subscription caught up: {} events in $all; last #{} {} v{}: {}",
            head,
            e.position,
            e.stream_id,
            e.stream_version,
            e.event.encode()?
        );
    }
    println!(
        "store: {} ({})",
        hedgehog::store::redact_url(&url),
        store.backend_name()
    );
    Ok(())
}
