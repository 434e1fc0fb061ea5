//! Paper trading on a real day of trades: the book's ADAUSDT dump of 2019-06-03 (57,018 trades,
//! shipped as a fixture). Sets the strategy's settings, switches trading on, imports the trades,
//! and runs the symbol's trading worker over them: the same worker and paper exchange
//! `hedgehog run` uses. Prints what happened, event by event in summary, then the status.
//!
//! `cargo run --release --example paper_trading` (store: `DATABASE_URL`, default
//! sqlite://hedgehog.db). Running it again changes nothing: the trades are stored and decided.

use std::path::PathBuf;
use std::time::Instant;

use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::{Event, Symbol, Timestamp};
use hedgehog_engine::aggregate::TradingAggregate;
use hedgehog_engine::trading::{self, Request, SettingsChange};
use hedgehog_engine::worker::Trader;
use hedgehog_ingest::import::{import_trades, ImportOptions};
use hedgehog_store::{redact_url, Store, StreamId, DEFAULT_DATABASE_URL};
use rust_decimal::Decimal;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ADAUSDT-2019-06-03.csv.gz"
);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let store = Store::open(&url).await?;
    let symbol = Symbol::parse("ADAUSDT")?;
    let rules = hedgehog_binance::exchange_info::bundled()?
        .get(&symbol)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("ADAUSDT is not in the bundled exchange info"))?;
    // ADAUSDT's 0.0001 tick is 0.1 % of its 2019 price: the SELL must clear one tick over fees.
    let settings = SettingsChange {
        chunks: Some(5),
        budget: Some(Decimal::new(100, 0)),
        buy_down_interval: Some(Decimal::new(1, 4)),
        profit_target: Some(Decimal::new(1, 3)),
        fee: Some(Decimal::new(2, 4)),
        ..SettingsChange::default()
    };
    let time = Timestamp(1_559_520_000_000);
    trading::command(&store, &rules, Request::Settings(settings), time).await?;
    let started = trading::command(&store, &rules, Request::Start, time).await?;
    println!(
        "trading of {symbol}: {}",
        if started.events.is_empty() {
            "already on"
        } else {
            "switched on"
        }
    );

    let options = ImportOptions {
        symbol: Some(symbol.clone()),
        ..ImportOptions::default()
    };
    let s = import_trades(&store, &[PathBuf::from(FIXTURE)], &options, |_| {}).await?;
    println!(
        "imported {} trades ({} already present)",
        s.imported, s.already_present
    );

    let aggregate = TradingAggregate {
        rules: rules.clone(),
        strategies: Default::default(),
        paper: Some(PaperExchange::default()),
    };
    let mut worker = Trader::load(store.clone(), aggregate).await?;
    let before = store.stream_version(&StreamId::trading(&symbol)).await?;
    let clock = Instant::now();
    let trades = store.read_stream_to_end(&StreamId::trades(&symbol)).await?;
    for trade in &trades {
        worker.handle(trade).await?;
    }
    let events = store
        .read_stream_to_end(&StreamId::trading(&symbol))
        .await?;
    let count = |t: &str| events.iter().filter(|e| e.event.event_type() == t).count();
    println!(
        "decided on {} trades in {:.2} s: {} new events; in all {} positions opened, {} orders placed, {} fills, {} positions closed, {} rebuys",
        trades.len(),
        clock.elapsed().as_secs_f64(),
        events.len() as i64 - before,
        count("PositionOpened"),
        count("OrderPlaced"),
        count("OrderFilled"),
        count("PositionClosed"),
        count("RebuyTriggered"),
    );
    for e in events.iter().rev().take(3).rev() {
        if let Event::PositionClosed(_) | Event::OrderFilled(_) | Event::OrderPlaced(_) = e.event {
            println!("  ... v{} {}", e.stream_version, e.event.encode()?);
        }
    }
    let state = worker.state();
    println!(
        "status {}: {} open positions, {} open orders, realised profit {} USDT after {} USDT fees",
        state.status,
        state.positions.len(),
        state.open_orders().count(),
        state.totals.realized_profit.round_dp(8).normalize(),
        state.totals.fees.round_dp(8).normalize(),
    );
    println!(
        "store: {} ({}); see `cargo run --release -- trading status` and `-- events --stream trading-ADAUSDT`",
        redact_url(&url),
        store.backend_name()
    );
    Ok(())
}
