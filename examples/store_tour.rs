//! A tour of the event store on real data: imports the 3,144 BTCUSDT spot trades of
//! 2023-04-04 23:59:59 .. 2023-04-05 00:06:54 (Binance public data, shipped as a fixture) into
//! the store, twice, to show idempotency, then follows `$all` with a subscription.
//!
//! `cargo run --release --example store_tour` (store: `DATABASE_URL`, default sqlite://hedgehog.db)

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use hedgehog_domain::Symbol;
use hedgehog_ingest::import::{import_trades, ImportOptions};
use hedgehog_store::{redact_url, Store, DEFAULT_DATABASE_URL};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz"
);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let store = Store::open(&url).await?;
    let options = ImportOptions {
        symbol: Some(Symbol::parse("BTCUSDT")?),
        ..ImportOptions::default()
    };
    let files = [PathBuf::from(FIXTURE)];
    for attempt in ["first import", "same file again"] {
        let s = import_trades(&store, &files, &options, |_| {}).await?;
        println!(
            "{attempt:>16}: read {}, stored {}, already present {}",
            s.read, s.imported, s.already_present
        );
    }

    let head = store.head_position().await?;
    let mut all = store.subscribe_all(0);
    let mut last = None;
    // Until the subscription has delivered the last event (none to wait for in an empty log).
    while head > 0
        && last
            .as_ref()
            .is_none_or(|e: &hedgehog_store::RecordedEvent| e.position < head)
    {
        let event = tokio::time::timeout(Duration::from_secs(10), all.next())
            .await?
            .context("subscription ended")??;
        last = Some(event);
    }
    if let Some(e) = last {
        println!(
            "subscription caught up: {head} events in $all; last #{} {} v{}: {}",
            e.position,
            e.stream_id,
            e.stream_version,
            e.event.encode()?
        );
    }
    println!("store: {} ({})", redact_url(&url), store.backend_name());
    Ok(())
}
