//! `hedgehog-bench`: throughput of the event store, for BENCHMARKS.md.
//!
//! `append` appends synthetic `TradeReceived` events in batches to a fresh database and then
//! reads `$all` back, printing events/s for each. With `--ack-log` it prints one line per
//! acknowledged batch (`ack STREAM_VERSION LAST_POSITION`) and flushes it, which is what the
//! crash test reads before it kills the process.

mod failover;
mod latency;
mod load;
mod restart;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::{Symbol, Timestamp, TradeKind};
use hedgehog_store::{redact_url, AppendOutcome, ExpectedVersion, NewEvent, Store, StreamId};
use indicatif::{ProgressBar, ProgressStyle};
use rust_decimal::Decimal;
use sqlx::Connection;

#[derive(Debug, Parser)]
#[command(name = "hedgehog-bench", about = "Measure Hedgehog's event store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Append N trades in batches to a fresh store, then read $all back.
    Append {
        #[arg(long, value_enum)]
        backend: BackendKind,
        /// Database to use. SQLite default: a file in a temporary directory. PostgreSQL default:
        /// DATABASE_URL or postgres://postgres@127.0.0.1:5432/test, in a fresh schema.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 1_000)]
        batch: u64,
        /// Print `ack STREAM_VERSION LAST_POSITION` after every committed batch.
        #[arg(long)]
        ack_log: bool,
        /// Skip reading $all back.
        #[arg(long)]
        no_read: bool,
    },
    /// Write a synthetic trade file (gzipped Binance trade CSV, one symbol) for backtest runs
    /// of any length: `hedgehog backtest --symbol BTCUSDT --data FILE`.
    Synth {
        #[arg(long, default_value_t = 10_000_000)]
        trades: u64,
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Project stored trades into `trade_events` and the six candle intervals from position 0
    /// (a rebuild), appending synthetic trades first if the store holds fewer than --events.
    Project {
        #[arg(long, value_enum)]
        backend: BackendKind,
        /// As for `append`; name a file to reuse its trades across runs.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
    },
    /// Seal a store's market trades (`hedgehog archive`) and read them back: bytes a trade
    /// sealed, and trades/s read along the trade key and through `$all` before and after.
    /// Sealing changes the database: name a copy. Without --database-url, a fresh store of
    /// --events synthetic trades.
    Seal {
        #[arg(long, value_enum)]
        backend: BackendKind,
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// The market stream to read back.
        #[arg(long, default_value = "trades-ADAUSDT")]
        stream: String,
    },
    /// Load-test `hedgehog run`: SYMBOLS symbols replayed at full speed while CLIENTS
    /// Server-Sent-Events clients listen for SECONDS; reports errors, lost events and the
    /// engine's memory over time.
    Load(load::LoadOptions),
    /// The time from a trade frame received to the OrderPlaced it caused being durable, with
    /// SYMBOLS symbols streamed and traded.
    Latency(latency::LatencyOptions),
    /// Restart the engine on a store of TRADES trades whose symbol has a SELL resting since
    /// the start: time to ready and to the first decision on the next trade.
    Restart(restart::RestartOptions),
    /// NODES engines share SYMBOLS symbols; the busiest is SIGKILLed: the time until the
    /// others own its symbols and decide on them.
    Failover(failover::FailoverOptions),
}

/// A deterministic pseudo-random walk (xorshift64*): the same seed gives the same file.
struct Walk(u64);

impl Walk {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Writes `trades` synthetic trades as a gzipped Binance trade CSV: a random walk in steps of
/// up to 30 cents around 30,000, one trade every 1 to 100 ms.
fn synth(trades: u64, out: &std::path::Path, seed: u64) -> anyhow::Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("{}", out.display()))?;
    let mut w = std::io::BufWriter::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    let mut walk = Walk(seed.max(1));
    let mut cents: i64 = 3_000_000;
    let mut time: i64 = 1_700_000_000_000;
    for id in 1..=trades {
        let r = walk.next();
        // Steps of -30..=+30 cents, nudged back towards 30,000 so the walk stays in range.
        let step = (r % 61) as i64 - 30 - (cents - 3_000_000).signum() * i64::from(r % 7 == 0);
        cents = (cents + step).max(100);
        time += 1 + (r >> 32) as i64 % 100;
        let qty = 1 + (r >> 16) % 50_000;
        let price = Decimal::new(cents, 2);
        let quantity = Decimal::new(qty as i64, 5);
        writeln!(
            w,
            "{id},{price:.8},{quantity:.8},{:.8},{time},{},true",
            price * quantity,
            if r & 1 == 0 { "True" } else { "False" }
        )?;
    }
    w.into_inner()
        .map_err(|e| e.into_error())?
        .finish()?
        .sync_all()?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    Sqlite,
    Postgres,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A database made for one run, removed afterwards unless the caller named it.
struct BenchDb {
    url: String,
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    Schema { base: String, schema: String },
}

impl BenchDb {
    async fn new(backend: BackendKind, url: Option<String>) -> anyhow::Result<Self> {
        if let Some(url) = url {
            return Ok(BenchDb { url, cleanup: None });
        }
        match backend {
            BackendKind::Sqlite => {
                let dir = tempfile::tempdir().context("temporary directory")?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                Ok(BenchDb {
                    url,
                    cleanup: Some(Cleanup::Dir(dir)),
                })
            }
            BackendKind::Postgres => {
                let base = std::env::var("DATABASE_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                let schema = format!("hh_bench_{}", uuid::Uuid::now_v7().simple());
                let mut conn = sqlx::PgConnection::connect(&base)
                    .await
                    .with_context(|| format!("connect to {}", redact_url(&base)))?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut conn)
                    .await?;
                let sep = if base.contains('?') { '&' } else { '?' };
                let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
                Ok(BenchDb {
                    url,
                    cleanup: Some(Cleanup::Schema { base, schema }),
                })
            }
        }
    }

    async fn drop_schema(&mut self) -> anyhow::Result<()> {
        if let Some(Cleanup::Schema { base, schema }) = &self.cleanup {
            let mut conn = sqlx::PgConnection::connect(base).await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut conn)
                .await?;
        }
        Ok(())
    }
}

fn trade(symbol: &Symbol, id: u64) -> TradeReceived {
    // Prices and quantities in the shape of real ADAUSDT trades (8 decimal places).
    TradeReceived {
        symbol: symbol.clone(),
        trade_id: id,
        price: Decimal::new(9_643_000 + (id % 5_000) as i64, 8),
        quantity: Decimal::new(161_750_000_000 + (id % 977) as i64 * 100_000_000, 8),
        trade_time: Timestamp(1_559_520_022_517 + (id as i64) * 7),
        event_time: Timestamp(1_559_520_022_520 + (id as i64) * 7),
        buyer_is_maker: id % 3 == 0,
        buyer_order_id: Some(71_181_005 + id * 2),
        seller_order_id: Some(71_180_991 + id * 2),
        first_trade_id: None,
        kind: TradeKind::Market,
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    // indicatif draws only when stderr is a terminal: quiet when piped.
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Append {
            backend,
            database_url,
            events,
            batch,
            ack_log,
            no_read,
        } => append(backend, database_url, events, batch, ack_log, no_read).await,
        Command::Synth { trades, out, seed } => {
            let started = Instant::now();
            synth(trades, &out, seed)?;
            println!(
                "wrote {trades} trades to {} in {:.1} s",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Project {
            backend,
            database_url,
            events,
        } => project(backend, database_url, events).await,
        Command::Seal {
            backend,
            database_url,
            events,
            stream,
        } => seal(backend, database_url, events, &stream).await,
        Command::Load(options) => load::run(options).await,
        Command::Restart(options) => restart::run(options).await,
        Command::Latency(options) => latency::run(options).await,
        Command::Failover(options) => failover::run(options).await,
    }
}

async fn project(
    backend: BackendKind,
    database_url: Option<String>,
    events: u64,
) -> anyhow::Result<()> {
    let mut db = BenchDb::new(backend, database_url).await?;
    let store = Store::open(&db.url)
        .await
        .with_context(|| format!("open {}", redact_url(&db.url)))?;
    let stream = StreamId::trades(&Symbol::parse("ADAUSDT")?);
    let stored = store.stream_version(&stream).await? as u64;
    if stored < events {
        fill(&store, &stream, events - stored, 1_000, false).await?;
    }
    let trades = store.stream_version(&stream).await? as u64;
    let models = hedgehog_projections::named(&["trade_events".into(), "candles".into()])?;
    let mut projector = hedgehog_projections::Projector::with(store.clone(), models);
    let head = store.head_position().await?;
    let bar = progress(head as u64, "project");
    let started = Instant::now();
    projector
        .rebuild(|done, _| bar.set_position(done as u64))
        .await?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    println!(
        "project {:>10} trades in {:>7.2} s = {:>10.0} trades/s  ({}, trade_events + candles 1m..1d, from position 0)",
        trades,
        elapsed.as_secs_f64(),
        rate(trades, elapsed),
        store.backend_name()
    );
    drop(store);
    db.drop_schema().await?;
    Ok(())
}

/// Reads `stream`'s trades along the trade key and `$all`'s events, a page at a time as a
/// backtest and a projection rebuild do: (trades, time) and (events, time).
async fn read_back(store: &Store, stream: &StreamId) -> anyhow::Result<[(u64, Duration); 2]> {
    let started = Instant::now();
    let (mut trades, mut after) = (0_u64, None);
    loop {
        let page = store.read_trades(stream, after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.event.trade_id();
        trades += page.len() as u64;
    }
    let along_key = (trades, started.elapsed());
    let started = Instant::now();
    let mut events = 0_u64;
    let mut all = store.subscribe_all_events_batches(0);
    let head = store.head_position().await?;
    while let Some(page) = all.next().await {
        let page = page?;
        events += page.len() as u64;
        if page.last().is_some_and(|e| e.position >= head) {
            break;
        }
    }
    Ok([along_key, (events, started.elapsed())])
}

async fn seal(
    backend: BackendKind,
    database_url: Option<String>,
    events: u64,
    stream: &str,
) -> anyhow::Result<()> {
    let mut db = BenchDb::new(backend, database_url).await?;
    let store = Store::open(&db.url)
        .await
        .with_context(|| format!("open {}", redact_url(&db.url)))?;
    let stream = StreamId::new(stream)?;
    if store.stream_version(&stream).await? == 0 {
        fill(&store, &stream, events, 1_000, false).await?;
    }
    let report = |when: &str, [(trades, by_key), (all, through_all)]: [(u64, Duration); 2]| {
        println!(
            "read {when:<7} {trades:>10} trades by trade id in {:>6.2} s = {:>10.0} trades/s; {all:>10} events of $all in {:>6.2} s = {:>10.0} events/s  ({})",
            by_key.as_secs_f64(),
            rate(trades, by_key),
            through_all.as_secs_f64(),
            rate(all, through_all),
            store.backend_name()
        );
    };
    report("rows", read_back(&store, &stream).await?);
    let started = Instant::now();
    let sealed = store.seal(i64::MAX, |_| {}).await?;
    let elapsed = started.elapsed();
    println!(
        "seal    {:>10} trades in {:>7.2} s = {:>10.0} trades/s; {} segments, {} bytes = {:.2} bytes a trade  ({})",
        sealed.trades,
        elapsed.as_secs_f64(),
        rate(sealed.trades, elapsed),
        sealed.segments,
        sealed.bytes,
        sealed.bytes as f64 / sealed.trades.max(1) as f64,
        store.backend_name()
    );
    report("sealed", read_back(&store, &stream).await?);
    store.close().await?;
    drop(store);
    db.drop_schema().await?;
    Ok(())
}

async fn append(
    backend: BackendKind,
    database_url: Option<String>,
    events: u64,
    batch: u64,
    ack_log: bool,
    no_read: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(batch > 0, "--batch must be at least 1");
    let mut db = BenchDb::new(backend, database_url).await?;
    let store = Store::open(&db.url)
        .await
        .with_context(|| format!("open {}", redact_url(&db.url)))?;
    let symbol = Symbol::parse("ADAUSDT")?;
    let stream = StreamId::trades(&symbol);
    let filled = fill(&store, &stream, events, batch, ack_log).await?;
    if !ack_log {
        println!(
            "append  {:>10} events in {:>7.2} s = {:>10.0} events/s  ({}, batches of {batch})",
            events,
            filled.total.as_secs_f64(),
            rate(events, filled.total),
            store.backend_name()
        );
        if let Some((first, last)) = filled.first_and_last_million() {
            println!(
                "growth  first million {:>10.0} events/s, last million {:>10.0} events/s: the last at {:.0} % of the first",
                rate(MILLION, first),
                rate(MILLION, last),
                100.0 * first.as_secs_f64() / last.as_secs_f64()
            );
        }
    }
    if !no_read {
        let head = store.head_position().await?;
        let bar = progress(head as u64, "read");
        let started = Instant::now();
        let mut all = store.subscribe_all(0);
        let mut read = 0u64;
        while read < head as u64 {
            let event = all.next().await.context("the subscription ended")??;
            read += 1;
            if event.position % 10_000 == 0 {
                bar.set_position(read);
            }
        }
        let read_time = started.elapsed();
        bar.finish_and_clear();
        anyhow::ensure!(
            read == head as u64,
            "read {read} events but the head is {head}"
        );
        println!(
            "read    {:>10} events in {:>7.2} s = {:>10.0} events/s  ({}, subscribe_all from 0, decoded)",
            read,
            read_time.as_secs_f64(),
            rate(read, read_time),
            store.backend_name()
        );
    }
    drop(store);
    db.drop_schema().await?;
    Ok(())
}

const MILLION: u64 = 1_000_000;

/// How long a [`fill`] took, and when its acknowledgements passed the first million events and
/// entered the last million (for the growth figure: does appending slow as the log grows?).
struct Filled {
    total: Duration,
    first_million: Option<Duration>,
    last_million_from: Option<Duration>,
}

impl Filled {
    /// The time the first million events took and the time the last million did, when the run
    /// held two millions at least.
    fn first_and_last_million(&self) -> Option<(Duration, Duration)> {
        let first = self.first_million?;
        let from = self.last_million_from?;
        Some((first, self.total.saturating_sub(from)))
    }
}

/// Appends `events` synthetic trades after those in `stream`, in batches, encoding one batch
/// ahead on another thread as an importer does; says how long it took.
async fn fill(
    store: &Store,
    stream: &StreamId,
    events: u64,
    batch: u64,
    ack_log: bool,
) -> anyhow::Result<Filled> {
    let symbol = stream
        .symbol_of("trades")
        .context("a trades-SYMBOL stream")?;
    let first_id = store.stream_version(stream).await? as u64 + 1;
    let bar = progress(events, "append");
    let mut stdout = std::io::stdout().lock();
    let started = Instant::now();
    let end = first_id + events;
    // Build and encode batch N + 1 on a blocking thread while batch N commits, as an importer
    // does: the producer stays one batch ahead through a channel of one.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let producer_symbol = symbol.clone();
    let producer_stream = stream.clone();
    let preparer = store.clone();
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut next = first_id;
        while next < end {
            let upto = (next + batch).min(end);
            // Ids derived from the trades, as the streamer and the importer make them (so the
            // store keeps no id column or index for them).
            let events: Vec<NewEvent> = (next..upto)
                .map(|id| {
                    let trade = trade(&producer_symbol, id);
                    let event_id = hedgehog_store::trade_event_id(&producer_stream, &trade);
                    NewEvent::new(trade).with_id(event_id)
                })
                .collect();
            let prepared = preparer.prepare(events)?;
            if tx.blocking_send(prepared).is_err() {
                break;
            }
            next = upto;
        }
        Ok(())
    });
    // One batch in line, as an importer does: batch N + 1 commits while batch N is synced to
    // disk; an event counts (and is logged as acknowledged) only once it is durable.
    let (mut acked, mut first_million, mut last_million_from) = (0u64, None, None);
    let last_million_at = events.saturating_sub(MILLION);
    let mut acknowledge = |out: AppendOutcome| -> anyhow::Result<()> {
        // Batches are timed as a whole: the million boundaries fall on their ends.
        if events >= 2 * MILLION {
            if acked < last_million_at && acked + out.appended as u64 >= last_million_at {
                last_million_from = Some(started.elapsed());
            }
            acked += out.appended as u64;
            if first_million.is_none() && acked >= MILLION {
                first_million = Some(started.elapsed());
            }
        }
        if ack_log {
            writeln!(
                stdout,
                "ack {} {}",
                out.stream_version,
                out.last_position.unwrap_or(0)
            )?;
            stdout.flush()?;
        }
        bar.inc(out.appended as u64);
        Ok(())
    };
    let mut appends = store.appends_in_line();
    while let Some(prepared) = rx.recv().await {
        let out = appends.append(stream, ExpectedVersion::Any, prepared);
        if let Some(out) = out.await.context("append")? {
            acknowledge(out)?;
        }
    }
    if let Some(out) = appends.finish().await.context("append")? {
        acknowledge(out)?;
    }
    producer.await??;
    bar.finish_and_clear();
    Ok(Filled {
        total: started.elapsed(),
        first_million,
        last_million_from,
    })
}
