//! `hedgehog-bench latency`: the time from a trade frame received to the `OrderPlaced` it
//! caused being durable, p50 / p99 / max, with SYMBOLS symbols streamed and traded.
//!
//! The replay server plays a synthetic recording (the `load` benchmark's) at `--speed` (1: as
//! recorded, about 1,000 trades a second in all; 0: as fast as the engine takes them); the
//! engine runs in this process with a latency probe: the streamer stamps each trade as its
//! frame is taken, the symbol's worker records the time since once the append holding an
//! `OrderPlaced` that trade caused is acknowledged (on disk).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::streaming::StreamingCommand;
use hedgehog_domain::Timestamp;
use hedgehog_engine::trading::{self, Request, SettingsChange};
use hedgehog_runtime::latency::Probe;
use hedgehog_store::Store;
use rust_decimal::Decimal;

use super::load::{engine_bench, first_word, traded_symbols, write_recording};

#[derive(Debug, clap::Args)]
pub struct LatencyOptions {
    #[arg(long, default_value_t = 40)]
    symbols: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Trades recorded per symbol.
    #[arg(long, default_value_t = 75_000)]
    trades: u64,
    /// The replay's pace: 1 as recorded, 0 as fast as the engine takes the trades.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Store to run on (default: a SQLite file in a temporary directory). A PostgreSQL
    /// database must be empty.
    #[arg(long)]
    database_url: Option<String>,
}

pub async fn run(o: LatencyOptions) -> anyhow::Result<()> {
    let (dir, url, hedgehog) = engine_bench("latency", o.database_url.clone())?;
    let rules = hedgehog_binance::exchange_info::bundled()?;
    let symbols = traded_symbols(&rules, o.symbols)?;
    let recording = dir.path().join("latency.rec.gz");
    let total = write_recording(&recording, &symbols, o.trades)?;

    let store = Store::open(&url).await?;
    anyhow::ensure!(
        store.head_position().await? == 0,
        "the database must be empty"
    );
    let at = Timestamp(1_700_000_000_000);
    let settings = SettingsChange {
        budget: Some(Decimal::new(1_000, 0)),
        buy_down_interval: Some(Decimal::new(5, 4)),
        profit_target: Some(Decimal::new(5, 4)),
        ..SettingsChange::default()
    };
    for r in &symbols {
        trading::command(&store, r, Request::Settings(settings.clone()), at).await?;
        trading::command(&store, r, Request::Start, at).await?;
        hedgehog_engine::streaming::command(
            &store,
            &rules,
            "bundled exchange info",
            &r.symbol,
            StreamingCommand::Start,
        )
        .await?;
    }

    let mut replay = Command::new(&hedgehog)
        .arg("replay-server")
        .arg(&recording)
        .args(["--port", "0", "--speed", &o.speed.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let ws = first_word(&mut replay, "ws://")?;
    let probe = Probe::new();
    let options = hedgehog_engine::supervisor::EngineOptions {
        binance_ws_url: ws,
        backfill: None,
        idle_timeout: hedgehog_ingest::streamer::IDLE_TIMEOUT,
        paper: PaperExchange::default(),
        strategies: Default::default(),
        rules: Arc::new(rules.clone()),
        updates: None,
        live: None,
        readiness: Default::default(),
        snapshot_every: hedgehog_engine::worker::TRADES_PER_SNAPSHOT,
        probe: Some(probe.clone()),
        cluster: hedgehog_engine::cluster::ClusterOptions::for_this_process(None, None),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stats = Arc::new(hedgehog_ingest::streamer::StreamerStats::default());
    let started = Instant::now();
    let engine = tokio::spawn(hedgehog_engine::supervisor::run(
        store.clone(),
        options,
        Arc::clone(&stats),
        stopped,
    ));
    let bar = super::progress(o.seconds, "s traded");
    for _ in 0..o.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc(1);
    }
    bar.finish_and_clear();
    stop.send(true)?;
    engine.await??;
    let ran = started.elapsed();
    let _ = replay.kill();
    let _ = replay.wait();
    let stored = stats.stored.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "latency: {} symbols, speed {}, {:.0} s, {}: {stored} of {total} recorded trades stored ({:.0}/s)",
        symbols.len(),
        o.speed,
        ran.as_secs_f64(),
        store.backend_name(),
        stored as f64 / ran.as_secs_f64(),
    );
    match probe.latencies() {
        None => println!("  no order was placed: nothing to measure"),
        Some(l) => println!(
            "  trade frame received -> its OrderPlaced durable: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} orders ({} unmatched)",
            l.p50.as_secs_f64() * 1e3,
            l.p99.as_secs_f64() * 1e3,
            l.max.as_secs_f64() * 1e3,
            l.count,
            l.unmatched
        ),
    }
    Ok(())
}
