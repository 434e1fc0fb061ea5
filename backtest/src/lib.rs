//! `hedgehog backtest`: the live strategy and paper exchange replayed over stored or downloaded
//! trades, on the trades' own clock, in a run of its own.
//!
//! The decisions are the domain's [`Backtest`], which is the live trading aggregate and nothing
//! else: no second implementation to drift. This module is the shell around it, three stages
//! joined by bounded channels so memory stays flat whatever the number of trades:
//! 1. a *source* reads trades in batches: files, parsed on a blocking thread exactly as the
//!    importer parses them, or the symbol's market stream in the store, page by page in stored
//!    order (the order the live trading worker saw them in);
//! 2. the *decider*, on a blocking thread of its own, feeds them to the run, paces them when
//!    asked (`--speed`), and spills finished orders to a temporary file for the report;
//! 3. with `--keep`, a *keeper* appends the decided events to the run's own stream,
//!    `backtest-RUN-SYMBOL`, which no live worker or read model reads.
//!
//! Isolation: nothing but the keeper writes, and only to that stream.

pub mod chart;
pub mod report;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hedgehog_domain::backtest::{Backtest, OrderRecord};
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::exchange::SymbolRules;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::trading::Refusal;
use hedgehog_domain::{Event, Symbol, TradingSettings};
use hedgehog_projections::query::Window;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use uuid::Uuid;

use hedgehog_engine::ids::decision_id;
use hedgehog_ingest::import::{self, ImportError, ImportOptions, Market};
use hedgehog_ingest::sequencer::Sequencer;
use hedgehog_store::{ExpectedVersion, NewEvent, PlacedTrade, Store, StoreError, StreamId};
pub use report::{FileInput, Inputs, Report};

/// Trades per batch handed from the source to the decider.
const BATCH: usize = 4096;
/// Batches in flight between two stages: what bounds a run's memory. Deep enough for a
/// reader to parse a day's file ahead while the decider is on the one before.
const IN_FLIGHT: usize = 16;

/// What a source hands the decider: trades, and the end of one input.
enum Piece {
    Trades(Vec<TradeReceived>),
    /// A page of the market stream as the store reads it, in trade-id order, already within
    /// the window (handed over as read: no copy into another batch).
    Placed(Vec<PlacedTrade>),
    End,
}
/// Decided events per append of a kept run (without `--speed`).
const KEEP_BATCH: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// Shown whole in its own message (no source), so an error chain says it once.
    #[error("the settings cannot run: {0}")]
    Refused(Refusal),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no {market} trades of {symbol} {found_in}{window}; {hint}")]
    NoTrades {
        market: Market,
        symbol: Symbol,
        found_in: String,
        window: String,
        hint: &'static str,
    },
    #[error("the backtest stopped: {0}")]
    Stopped(String),
    #[error("{0} needs the event store")]
    NoStore(&'static str),
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BacktestError {
    let what = what.into();
    move |source| BacktestError::Io { what, source }
}

/// Where a backtest's trades come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Files in any format the importer reads, in the order given.
    Files {
        files: Vec<PathBuf>,
        format: Option<import::Format>,
    },
    /// The symbol's market stream in the store.
    Store,
}

/// Everything a run depends on.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub symbol: Symbol,
    pub market: Market,
    pub source: Source,
    /// Only trades whose trade time falls in it.
    pub window: Window,
    pub settings: TradingSettings,
    /// The strategies the settings may name (`Strategies::default()`: the book's).
    pub strategies: Strategies,
    pub paper: PaperExchange,
    pub rules: SymbolRules,
    /// Keep the decided events under this run id.
    pub keep: Option<Uuid>,
    /// Pace the replay: 1 is the trades' own pace, 10 ten times faster. None: no pacing.
    pub speed: Option<f64>,
    /// Keep every order for the report (in a temporary file); off, only the counts remain.
    pub record_orders: bool,
    /// Trades of the fee asset's market (BNBUSDT for BNB): its price at each fill is its last
    /// trade at or before the fill. Empty: the fee asset's price is fixed (or there is none).
    pub fee_asset_data: Vec<PathBuf>,
}

impl From<Refusal> for BacktestError {
    fn from(refusal: Refusal) -> Self {
        BacktestError::Refused(refusal)
    }
}

/// The stream a kept run's events go to.
pub fn run_stream(run: Uuid, symbol: &Symbol) -> StreamId {
    StreamId::new(&format!("backtest-{}-{symbol}", run.simple()))
        .expect("a uuid and a symbol make a valid stream name")
}

/// A finished run: its report, and its orders when they were recorded.
pub struct Outcome {
    pub report: Report,
    pub orders: Orders,
}

/// The orders of a run, spilled to a temporary file as they finish (those still open last) and
/// read back one order at a time, in the order they were placed.
pub struct Orders {
    file: Option<File>,
}

impl Orders {
    /// Calls `f` with every order in the order they were placed (order id order). The spill
    /// holds them in the order they finished; an index of 24 bytes an order puts them back, so
    /// the orders themselves are never all held at once.
    pub fn for_each(
        &mut self,
        mut f: impl FnMut(OrderRecord) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        #[derive(serde::Deserialize)]
        struct Id {
            order_id: u64,
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.rewind()?;
        let mut index: Vec<(u64, u64, usize)> = Vec::new();
        let mut reader = BufReader::new(&*file);
        let (mut line, mut offset) = (String::new(), 0u64);
        loop {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                break;
            }
            index.push((serde_json::from_str::<Id>(&line)?.order_id, offset, n));
            offset += n as u64;
        }
        drop(reader);
        index.sort_unstable();
        let mut buffer = Vec::new();
        for (_, offset, len) in index {
            file.seek(std::io::SeekFrom::Start(offset))?;
            buffer.resize(len, 0);
            file.read_exact(&mut buffer)?;
            f(serde_json::from_slice(&buffer)?)?;
        }
        Ok(())
    }
}

/// Runs a backtest. `progress` hears how far the source got: input bytes for files, trades for
/// the store.
pub async fn run(
    store: Option<&Store>,
    options: BacktestOptions,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Outcome, BacktestError> {
    let backtest = Backtest::start(
        &options.strategies,
        options.rules.clone(),
        options.paper.clone(),
        options.settings.clone(),
    )?;
    let mut sources = Vec::new();
    let mut receivers = Vec::new();
    let inputs = match &options.source {
        Source::Files { files, format } => {
            let import = ImportOptions {
                symbol: Some(options.symbol.clone()),
                format: *format,
                market: Some(options.market),
                ..ImportOptions::default()
            };
            // Files are parsed in parallel, file i by reader i % n, and decided in the order of
            // their first trades' times (day 2, day 1 replays day 1 first).
            let files: Vec<PathBuf> = import::in_time_order(files, &import)
                .into_iter()
                .cloned()
                .collect();
            let readers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .clamp(1, files.len().max(1));
            for reader in 0..readers {
                let (tx, rx) = mpsc::channel::<Piece>(IN_FLIGHT);
                receivers.push(rx);
                let mine: Vec<(usize, PathBuf)> = files
                    .iter()
                    .cloned()
                    .enumerate()
                    .skip(reader)
                    .step_by(readers)
                    .collect();
                let import = import.clone();
                let window = options.window;
                let progress = Arc::clone(&progress);
                sources.push(tokio::task::spawn_blocking(move || {
                    read_files(&mine, &import, window, &*progress, &tx)
                }));
            }
            files.len()
        }
        Source::Store => {
            let store = store
                .ok_or(BacktestError::NoStore("a backtest over stored trades"))?
                .clone();
            let stream = hedgehog_store::StreamId::market_trades(options.market, &options.symbol);
            let window = options.window;
            let progress = Arc::clone(&progress);
            let (tx, rx) = mpsc::channel::<Piece>(PAGES_AHEAD);
            receivers.push(rx);
            sources.push(tokio::spawn(async move {
                read_store(&store, &stream, window, &*progress, &tx).await?;
                Ok(Vec::new())
            }));
            1
        }
    };
    let (keep_tx, keeper) = match options.keep {
        Some(run) => {
            let (tx, rx) = mpsc::channel::<Vec<Event>>(IN_FLIGHT);
            let stream = run_stream(run, &options.symbol);
            let store = store
                .ok_or(BacktestError::NoStore("keeping a run"))?
                .clone();
            (Some(tx), Some(tokio::spawn(keep(store, stream, run, rx))))
        }
        None => (None, None),
    };
    let fee_prices = if options.fee_asset_data.is_empty() {
        None
    } else {
        let (tx, rx) = mpsc::channel::<Vec<(i64, Decimal)>>(IN_FLIGHT);
        let files = options.fee_asset_data.clone();
        let import = ImportOptions {
            market: Some(options.market),
            ..ImportOptions::default()
        };
        sources.push(tokio::task::spawn_blocking(move || {
            read_prices(&files, &import, &tx)?;
            Ok(Vec::new())
        }));
        Some(PriceFeed::new(rx))
    };
    let decide_options = options.clone();
    let decider = tokio::task::spawn_blocking(move || {
        decide(
            backtest,
            &decide_options,
            receivers,
            inputs,
            keep_tx.as_ref(),
            fee_prices,
        )
    });
    let decided = decider.await;
    // A source's error explains a decider that ran dry early: report it first.
    let mut files = Vec::new();
    for source in sources {
        files.extend(joined(source.await)??);
    }
    files.sort_by_key(|(i, _)| *i);
    let files = files.into_iter().map(|(_, f)| f).collect();
    let (finished, orders) = joined(decided)??;
    if let Some(keeper) = keeper {
        joined(keeper.await)??;
    }
    if finished.summary.trades == 0 {
        return Err(no_trades(&options));
    }
    let report = Report::new(&options, files, finished);
    Ok(Outcome { report, orders })
}

fn joined<T>(r: Result<T, tokio::task::JoinError>) -> Result<T, BacktestError> {
    r.map_err(|e| BacktestError::Stopped(e.to_string()))
}

fn no_trades(options: &BacktestOptions) -> BacktestError {
    let (found_in, hint) = match &options.source {
        Source::Files { files, .. } => (
            format!(
                "in {}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "check --symbol, --market and the window",
        ),
        Source::Store => (
            format!(
                "in the store ({})",
                hedgehog_store::StreamId::market_trades(options.market, &options.symbol)
            ),
            "import some with `hedgehog import trades`, stream them, or pass --data FILE",
        ),
    };
    let window = match (options.window.from, options.window.to) {
        (None, None) => String::new(),
        (from, to) => format!(
            " between {} and {}",
            from.map_or("the start".to_owned(), |t| format!("{t} ms")),
            to.map_or("the end".to_owned(), |t| format!("{t} ms"))
        ),
    };
    BacktestError::NoTrades {
        market: options.market,
        symbol: options.symbol.clone(),
        found_in,
        window,
        hint,
    }
}

/// Files, hashed and parsed in turn, in batches down `tx`, each closed by an end mark;
/// `files` carries each file's place in the run.
fn read_files(
    files: &[(usize, PathBuf)],
    options: &ImportOptions,
    window: Window,
    progress: &(dyn Fn(u64) + Send + Sync),
    tx: &mpsc::Sender<Piece>,
) -> Result<Vec<(usize, FileInput)>, BacktestError> {
    let mut inputs = Vec::with_capacity(files.len());
    for (index, file) in files {
        let (sha256, bytes) = hash_file(file)?;
        let mut trades = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        let read = import::for_each_trade(file, options, progress, &mut |_, trade| {
            if !window.contains(trade.trade_time.0) {
                return Ok(());
            }
            trades += 1;
            batch.push(trade);
            if batch.len() >= BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                // The decider only goes away when it failed; its error is the one reported.
                tx.blocking_send(Piece::Trades(full))
                    .map_err(|_| ImportError::Stopped)?;
            }
            Ok(())
        });
        match read {
            Ok(_) => {}
            Err(ImportError::Stopped) => return Ok(inputs),
            Err(e) => return Err(e.into()),
        }
        let sent = (batch.is_empty() || tx.blocking_send(Piece::Trades(batch)).is_ok())
            && tx.blocking_send(Piece::End).is_ok();
        inputs.push((
            *index,
            FileInput {
                path: file.display().to_string(),
                sha256,
                bytes,
                trades,
            },
        ));
        if !sent {
            return Ok(inputs);
        }
    }
    Ok(inputs)
}

/// SHA-256 of a file's bytes as stored (compressed or not), and its size.
fn hash_file(path: &Path) -> Result<(String, u64), BacktestError> {
    let what = || format!("{}", path.display());
    let mut file = File::open(path).map_err(io_error(what()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io_error(what()))?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((format!("{:x}", hasher.finalize()), bytes))
}

/// Pages of the market stream read ahead of the decider.
const PAGES_AHEAD: usize = 2;
/// Trades per page read from the store: each page costs two queries and a hop to the
/// database's threads, so long pages keep that small beside the trades (about 5 MB a page).
const STORE_PAGE: i64 = 32_768;

/// The market stream in trade-id order (its trade key, whatever order the trades were stored
/// in), page by page down `tx`. Each page is read while the decider works on the ones before.
async fn read_store(
    store: &Store,
    stream: &StreamId,
    window: Window,
    progress: &(dyn Fn(u64) + Send + Sync),
    tx: &mpsc::Sender<Piece>,
) -> Result<(), BacktestError> {
    let mut after = None;
    loop {
        let mut page = store.read_placed_trades(stream, after, STORE_PAGE).await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.trade.trade_id);
        progress(page.len() as u64);
        page.retain(|p| window.contains(p.trade.trade_time.0));
        if !page.is_empty() && tx.send(Piece::Placed(page)).await.is_err() {
            return Ok(()); // the decider failed; its error is the one reported
        }
    }
    let _ = tx.send(Piece::End).await;
    Ok(())
}

/// The fee asset's trades, as (time, price) in trade-id order, in batches down `tx`.
fn read_prices(
    files: &[PathBuf],
    options: &ImportOptions,
    tx: &mpsc::Sender<Vec<(i64, Decimal)>>,
) -> Result<(), BacktestError> {
    let mut sequencer: Sequencer<(), TradeReceived> = Sequencer::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut out = |_: &(), t: TradeReceived| -> Result<(), ImportError> {
        batch.push((t.trade_time.0, t.price));
        if batch.len() >= BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            tx.blocking_send(full).map_err(|_| ImportError::Stopped)?;
        }
        Ok(())
    };
    for file in import::in_time_order(files, options) {
        let read = import::for_each_trade(file, options, &|_| {}, &mut |_, trade| {
            sequencer.push(&(), trade.trade_id, trade, &mut out)
        });
        match read {
            Ok(_) => {}
            Err(ImportError::Stopped) => return Ok(()), // the decider is gone
            Err(e) => return Err(e.into()),
        }
    }
    match sequencer.finish(&mut out) {
        Ok(()) | Err(ImportError::Stopped) => {}
        Err(e) => return Err(e.into()),
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
    Ok(())
}

/// The fee asset's price over time, read as far as the run has got.
struct PriceFeed {
    rx: mpsc::Receiver<Vec<(i64, Decimal)>>,
    pending: std::collections::VecDeque<(i64, Decimal)>,
    price: Option<Decimal>,
    done: bool,
}

impl PriceFeed {
    fn new(rx: mpsc::Receiver<Vec<(i64, Decimal)>>) -> Self {
        PriceFeed {
            rx,
            pending: Default::default(),
            price: None,
            done: false,
        }
    }

    /// The price of the last trade at or before `time` (none before the first).
    fn at(&mut self, time: i64) -> Option<Decimal> {
        loop {
            while let Some(&(t, p)) = self.pending.front() {
                if t > time {
                    return self.price;
                }
                self.price = Some(p);
                self.pending.pop_front();
            }
            if self.done {
                return self.price;
            }
            match self.rx.blocking_recv() {
                Some(batch) => self.pending.extend(batch),
                None => self.done = true,
            }
        }
    }
}

/// Feeds every trade to the run; returns its end and its orders.
fn decide(
    mut backtest: Backtest,
    options: &BacktestOptions,
    mut sources: Vec<mpsc::Receiver<Piece>>,
    inputs: usize,
    keep: Option<&mpsc::Sender<Vec<Event>>>,
    mut fee_prices: Option<PriceFeed>,
) -> Result<(hedgehog_domain::backtest::Finished, Orders), BacktestError> {
    let mut spill = Spill::new(options.record_orders)?;
    let mut kept: Vec<Event> = backtest.decided().to_vec();
    let mut clock: Option<(Instant, i64)> = None;
    let pace = options.speed.filter(|s| *s > 0.0);
    let mut input = 0;
    // Files are replayed in trade-id order, across all of them (see `hedgehog_ingest::sequencer`).
    let mut sequencer: Sequencer<(), TradeReceived> = Sequencer::default();
    let mut step = |trade: &TradeReceived| -> Result<(), BacktestError> {
        if let Some(speed) = pace {
            let (start, first) = *clock.get_or_insert((Instant::now(), trade.trade_time.0));
            let due = Duration::from_secs_f64(
                (trade.trade_time.0 - first).max(0) as f64 / 1000.0 / speed,
            );
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                // Flush what was decided so far: a paced run is watched as it goes.
                send_kept(keep, &mut kept)?;
                std::thread::sleep(wait);
            }
        }
        if let Some(price) = fee_prices.as_mut().and_then(|f| f.at(trade.trade_time.0)) {
            backtest.set_fee_asset_price(price);
        }
        let decided = backtest.trade(trade);
        if decided.is_empty() {
            return Ok(());
        }
        if keep.is_some() {
            kept.extend_from_slice(decided);
            if kept.len() >= KEEP_BATCH {
                send_kept(keep, &mut kept)?;
            }
        }
        spill.write(&backtest.take_finished())
    };
    while input < inputs {
        let n = sources.len();
        match sources[input % n].blocking_recv() {
            Some(Piece::Trades(batch)) => {
                for trade in batch {
                    sequencer.push(&(), trade.trade_id, trade, &mut |_, t| step(&t))?;
                }
            }
            // The store's market stream comes in trade-id order (its trade key) already.
            Some(Piece::Placed(page)) => {
                for placed in &page {
                    step(&placed.trade)?;
                }
            }
            Some(Piece::End) => input += 1,
            None => break, // its reader failed: the run reports that reader's error
        }
    }
    sequencer.finish(&mut |_, t| step(&t))?;
    send_kept(keep, &mut kept)?;
    let finished = backtest.finish();
    spill.write(&finished.open_orders)?;
    let file = spill.finish()?;
    Ok((finished, Orders { file }))
}

/// Where a run's orders wait for the report: a temporary file of JSON lines, or nowhere.
struct Spill(Option<BufWriter<File>>);

impl Spill {
    const WRITING: &'static str = "writing the orders to a temporary file";

    fn new(record: bool) -> Result<Spill, BacktestError> {
        if !record {
            return Ok(Spill(None));
        }
        let file = tempfile::tempfile().map_err(io_error("a temporary file for the orders"))?;
        Ok(Spill(Some(BufWriter::new(file))))
    }

    fn write(&mut self, orders: &[OrderRecord]) -> Result<(), BacktestError> {
        let Some(w) = self.0.as_mut() else {
            return Ok(());
        };
        for order in orders {
            serde_json::to_writer(&mut *w, order)
                .map_err(std::io::Error::from)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(io_error(Self::WRITING))?;
        }
        Ok(())
    }

    fn finish(self) -> Result<Option<File>, BacktestError> {
        self.0
            .map(|w| {
                w.into_inner()
                    .map_err(|e| io_error(Self::WRITING)(e.into_error()))
            })
            .transpose()
    }
}

fn send_kept(
    keep: Option<&mpsc::Sender<Vec<Event>>>,
    kept: &mut Vec<Event>,
) -> Result<(), BacktestError> {
    if let Some(tx) = keep {
        if !kept.is_empty() {
            tx.blocking_send(std::mem::take(kept))
                .map_err(|_| BacktestError::Stopped("storing the run's events failed".into()))?;
        }
    }
    Ok(())
}

/// Appends a kept run's events to its stream, batch by batch. Ids derive from the stream,
/// version and content, as a live worker's do.
async fn keep(
    store: Store,
    stream: StreamId,
    run: Uuid,
    mut rx: mpsc::Receiver<Vec<Event>>,
) -> Result<(), BacktestError> {
    let mut version = 0i64;
    while let Some(events) = rx.recv().await {
        let batch = events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let id = decision_id(&stream, version + 1 + i as i64, &event);
                NewEvent::new(event).with_id(id).caused_by(run, run)
            })
            .collect();
        let outcome = store
            .append(&stream, ExpectedVersion::Exact(version), batch)
            .await?;
        version = outcome.stream_version;
    }
    Ok(())
}
