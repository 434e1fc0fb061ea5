//! `hedgehog-bench restart`: how long the engine takes, after a restart on a store of TRADES
//! trades, to be ready (every worker hydrated) and to decide on the next trade, when the
//! symbol's last decision is a SELL resting since the start.
//!
//! It stores the trades (a BUY filled at the third, then a SELL at 1.9 times its price that none of
//! the others reaches), lets a worker take them all and stop cleanly (which saves its
//! snapshot), brings the read models up to date, appends one trade through the SELL's price,
//! then starts the engine in this process and times it. `--without-snapshot` removes the
//! snapshots first: the worker then folds its stream and takes every trade again, as every
//! restart did before snapshots.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::types::TradeKind;
use hedgehog_domain::{Symbol, Timestamp, TradingStatus};
use hedgehog_engine::aggregate::TradingAggregate;
use hedgehog_engine::readiness::Readiness;
use hedgehog_engine::supervisor::EngineOptions;
use hedgehog_engine::trading::{self, Request, SettingsChange};
use hedgehog_engine::worker::Trader;
use hedgehog_store::{ExpectedVersion, NewEvent, Store, StreamId};
use rust_decimal::Decimal;

use super::{progress, BackendKind, BenchDb};

#[derive(Debug, clap::Args)]
pub struct RestartOptions {
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendKind,
    /// As for `append`; a named database must be empty.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 5_000_000)]
    trades: u64,
    /// Remove the saved snapshots before the restart (how every restart went before them).
    #[arg(long)]
    without_snapshot: bool,
}

const BATCH: u64 = 10_000;

/// Trade `id` of the run: 1.0000 to 1.0049 USDT, but 0.9000 for the third (it fills the BUY)
/// and `price` for one given.
fn trade(symbol: &Symbol, id: u64, price: Option<Decimal>) -> TradeReceived {
    let price = price.unwrap_or_else(|| match id {
        3 => Decimal::new(9_000, 4),
        _ => Decimal::new(10_000 + (id % 50) as i64, 4),
    });
    let time = Timestamp(1_700_000_000_000 + id as i64 * 10);
    TradeReceived {
        symbol: symbol.clone(),
        trade_id: id,
        price,
        quantity: Decimal::new(1_000 + (id % 997) as i64, 1),
        trade_time: time,
        event_time: time,
        buyer_is_maker: id % 2 == 0,
        buyer_order_id: None,
        seller_order_id: None,
        first_trade_id: None,
        kind: TradeKind::Market,
    }
}

pub async fn run(o: RestartOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut db = BenchDb::new(o.backend, o.database_url.clone()).await?;
    let store = Store::open(&db.url).await?;
    anyhow::ensure!(
        store.head_position().await? == 0,
        "the database must be empty"
    );
    let exchange = hedgehog_binance::exchange_info::bundled()?;
    let symbol = Symbol::parse("ADAUSDT")?;
    let rules = exchange
        .get(&symbol)
        .context("ADAUSDT in the bundled rules")?;
    let settings = SettingsChange {
        chunks: Some(1),
        budget: Some(Decimal::new(100, 0)),
        buy_down_interval: Some(Decimal::new(1, 4)),
        profit_target: Some(Decimal::new(9, 1)),
        rebuy_interval: Some(Decimal::new(5, 1)),
        fee: Some(Decimal::new(1, 3)),
        ..SettingsChange::default()
    };
    let at = Timestamp(1_700_000_000_000);
    trading::command(&store, rules, Request::Settings(settings), at).await?;
    trading::command(&store, rules, Request::Start, at).await?;

    let market = StreamId::trades(&symbol);
    let bar = progress(o.trades, "stored");
    let mut line = store.appends_in_line();
    for first in (1..=o.trades).step_by(BATCH as usize) {
        let last = (first + BATCH - 1).min(o.trades);
        let batch: Vec<NewEvent> = (first..=last)
            .map(|id| NewEvent::new(trade(&symbol, id, None)))
            .collect();
        line.append(&market, ExpectedVersion::Any, store.prepare(batch)?)
            .await?;
        bar.set_position(last);
    }
    line.finish().await?;
    bar.finish_and_clear();

    // The engine's first life: every trade taken, a clean stop.
    let aggregate = TradingAggregate {
        rules: rules.clone(),
        strategies: Default::default(),
        paper: Some(PaperExchange::default()),
    };
    let mut trader = Trader::load(store.clone(), aggregate).await?;
    let bar = progress(o.trades, "traded");
    let mut from = 1;
    loop {
        let page = store
            .read_stream(&market, from, hedgehog_store::PAGE_SIZE)
            .await?;
        let Some(last) = page.last() else { break };
        from = last.stream_version + 1;
        for e in &page {
            trader.handle(e).await?;
        }
        bar.set_position(from as u64 - 1);
    }
    trader.save_snapshot().await?;
    bar.finish_and_clear();
    let state = trader.state();
    let sell_resting = state
        .open_orders()
        .any(|(_, o)| o.side == hedgehog_domain::Side::Sell);
    anyhow::ensure!(
        state.status == TradingStatus::On && sell_resting && state.stepped == Some(o.trades),
        "the scenario went wrong: {state:?}"
    );
    let trading_stream = StreamId::trading(&symbol);
    let decided = store.stream_version(&trading_stream).await?;
    drop(trader);
    let mut projector = hedgehog_projections::Projector::new(store.clone());
    projector.catch_up().await?;
    if o.without_snapshot {
        sqlx_delete_snapshots(&store).await?;
    }
    // The next trade, through the SELL's price, stored while the engine is down.
    let next = NewEvent::new(trade(&symbol, o.trades + 1, Some(Decimal::new(3, 0))));
    store
        .append(&market, ExpectedVersion::Any, vec![next])
        .await?;
    let prepared = started.elapsed();
    drop(store);

    // The restart, timed from the store's opening.
    let restarted = Instant::now();
    let store = Store::open(&db.url).await?;
    let readiness = Readiness::new();
    let options = EngineOptions {
        binance_ws_url: "ws://127.0.0.1:9".into(),
        backfill: None,
        idle_timeout: hedgehog_ingest::streamer::IDLE_TIMEOUT,
        paper: PaperExchange::default(),
        strategies: Default::default(),
        rules: Arc::new(exchange.clone()),
        updates: None,
        live: None,
        readiness: readiness.clone(),
        snapshot_every: hedgehog_engine::worker::TRADES_PER_SNAPSHOT,
        probe: None,
        cluster: hedgehog_engine::cluster::ClusterOptions::for_this_process(None, None),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stats = Arc::new(hedgehog_ingest::streamer::StreamerStats::default());
    let engine = tokio::spawn(hedgehog_engine::supervisor::run(
        store.clone(),
        options,
        stats,
        stopped,
    ));
    let mut ready = None;
    let decision = loop {
        if ready.is_none() && readiness.report().ready {
            ready = Some(restarted.elapsed());
        }
        if store.stream_version(&trading_stream).await? > decided {
            break restarted.elapsed();
        }
        anyhow::ensure!(
            restarted.elapsed() < Duration::from_secs(3_600),
            "no decision within an hour"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let ready = ready.unwrap_or(decision);
    stop.send(true)?;
    engine.await??;
    drop(store);
    db.drop_schema().await?;
    println!(
        "restart on {} trades ({}, {}): ready after {:.3} s, first decision after {:.3} s (store prepared in {:.1} s)",
        o.trades,
        o.backend_name(),
        if o.without_snapshot { "snapshots removed" } else { "with the snapshot its clean stop saved" },
        ready.as_secs_f64(),
        decision.as_secs_f64(),
        prepared.as_secs_f64(),
    );
    Ok(())
}

impl RestartOptions {
    fn backend_name(&self) -> &'static str {
        match self.backend {
            BackendKind::Sqlite => "SQLite",
            BackendKind::Postgres => "PostgreSQL",
        }
    }
}

/// Removes every saved snapshot (a cache: nothing of the log goes with them).
async fn sqlx_delete_snapshots(store: &Store) -> anyhow::Result<()> {
    match store.database() {
        hedgehog_store::Database::Sqlite { pool, writer } => {
            let _turn = writer.turn().await;
            sqlx::query("DELETE FROM snapshots").execute(&pool).await?;
        }
        hedgehog_store::Database::Postgres { pool } => {
            sqlx::query("DELETE FROM snapshots").execute(&pool).await?;
        }
    }
    Ok(())
}
