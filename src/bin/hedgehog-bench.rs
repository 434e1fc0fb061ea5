//! `hedgehog-bench`: throughput of the event store, for BENCHMARKS.md.
//!
//! `append` appends synthetic `TradeReceived` events in batches to a fresh database and then
//! reads `$all` back, printing events/s for each. With `--ack-log` it prints one line per
//! acknowledged batch (`ack STREAM_VERSION LAST_POSITION`) and flushes it, which is what the
//! crash test reads before it kills the process.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use hedgehog::domain::events::TradeReceived;
use hedgehog::domain::{Symbol, Timestamp, TradeKind};
use hedgehog::store::{redact_url, ExpectedVersion, NewEvent, Store, StreamId};
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
        Command::Project {
            backend,
            database_url,
            events,
        } => project(backend, database_url, events).await,
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
    let models = hedgehog::projections::named(&["trade_events".into(), "candles".into()])?;
    let mut projector = hedgehog::projections::Projector::with(store.clone(), models);
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
    let append_time = fill(&store, &stream, events, batch, ack_log).await?;
    if !ack_log {
        println!(
            "append  {:>10} events in {:>7.2} s = {:>10.0} events/s  ({}, batches of {batch})",
            events,
            append_time.as_secs_f64(),
            rate(events, append_time),
            store.backend_name()
        );
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

/// Appends `events` synthetic trades after those in `stream`, in batches, encoding one batch
/// ahead on another thread as an importer does; returns the time it took.
async fn fill(
    store: &Store,
    stream: &StreamId,
    events: u64,
    batch: u64,
    ack_log: bool,
) -> anyhow::Result<Duration> {
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
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut next = first_id;
        while next < end {
            let upto = (next + batch).min(end);
            let events: Vec<NewEvent> = (next..upto)
                .map(|id| NewEvent::new(trade(&producer_symbol, id)))
                .collect();
            let prepared = Store::prepare(events)?;
            if tx.blocking_send(prepared).is_err() {
                break;
            }
            next = upto;
        }
        Ok(())
    });
    while let Some(prepared) = rx.recv().await {
        let n = prepared.len() as u64;
        let out = store
            .append_prepared(stream, ExpectedVersion::Any, prepared)
            .await
            .context("append")?;
        if ack_log {
            writeln!(
                stdout,
                "ack {} {}",
                out.stream_version,
                out.last_position.unwrap_or(0)
            )?;
            stdout.flush()?;
        }
        bar.inc(n);
    }
    producer.await??;
    bar.finish_and_clear();
    Ok(started.elapsed())
}
