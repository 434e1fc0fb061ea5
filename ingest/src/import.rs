//! `hedgehog import trades`: trades from files into the event store.
//!
//! Formats (detected from the content, or named with `--format`):
//! - `binance-trades`: Binance public data trade CSVs (`id,price,qty,quote_qty,time,
//!   is_buyer_maker[,is_best_match]`), with or without a header. They carry no symbol.
//! - `binance-agg-trades`: Binance public data aggTrades CSVs (`agg_trade_id,price,quantity,
//!   first_trade_id,last_trade_id,transact_time,is_buyer_maker[,is_best_match]`), with or
//!   without a header, no symbol either. Each row is stored as one `TradeReceived` keyed by its
//!   last trade id, with `first_trade_id` set: it stands for trades first..=last at one price,
//!   so candles count them all. Import a range as trades or as aggTrades, not both: the keys
//!   would collide and the second import would store nothing of that range.
//! - `book-dump`: the book's `trade_events` table dump, `;`-separated, 13 columns.
//! - `ws-recording`: raw websocket recordings, `<timestamp> <json>` per line.
//!
//! Any of them plain, `.gz` or `.zip` (the archive's first file). Files are read in the order of
//! their first trades' times, and each market stream is appended in trade-id order across all of
//! them (the book's dumps are not: see [`crate::sequencer`]): a row out of place by fewer than
//! 100,000 rows is put back, one further out is stored late and counted. A file is streamed:
//! memory stays flat whatever its size. Parsing and encoding run on a blocking thread one batch ahead of
//! the appends. A bad row stops the import with `file:line: what is wrong`; the whole batches
//! appended before it stay, the partial batch it was in is dropped. With `skip_bad_rows` each bad
//! row is reported and skipped. Importing the same trades again stores nothing new: the store
//! keys trades by (market stream, trade id), and event ids are derived from that key too, so a
//! re-import is byte-for-byte the same events.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use hedgehog_domain::events::TradeReceived;
use hedgehog_domain::{Symbol, Timestamp, TradeKind};
use rust_decimal::Decimal;
use tokio::sync::mpsc;

use crate::sequencer::{Reordering, Sequencer};
use hedgehog_binance::parse_recorded_line;
pub use hedgehog_binance::Market;
use hedgehog_store::{
    AppendOutcome, ExpectedVersion, NewEvent, PreparedBatch, Store, StoreError, StreamId,
};

/// The formats `import trades` reads, named on the command line in kebab case
/// (`binance-trades`, ...: [`Format::VARIANTS`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumString, strum::Display, strum::VariantNames,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Format {
    BinanceTrades,
    BinanceAggTrades,
    BookDump,
    WsRecording,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The symbol for formats whose rows carry none; must agree with rows that do.
    pub symbol: Option<Symbol>,
    /// Skip detection.
    pub format: Option<Format>,
    /// The market of the trades. Unset: recordings say it themselves (futures frames carry
    /// `X`) and files that do not (CSVs, book dumps) are spot. Set: CSVs and dumps are on it, and
    /// a recorded trade of another market is a bad row.
    pub market: Option<Market>,
    /// Report bad rows and go on instead of stopping at the first.
    pub skip_bad_rows: bool,
    /// Trades per append (per market).
    pub batch_size: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            symbol: None,
            format: None,
            market: None,
            skip_bad_rows: false,
            batch_size: 10_000,
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// Trades read from the files (bad rows not included).
    pub read: u64,
    /// Trades stored by this import.
    pub imported: u64,
    /// Trades that were already in the store (or repeated in the files).
    pub already_present: u64,
    /// Bad rows skipped (with `skip_bad_rows`).
    pub rejected: u64,
    /// Lines that hold no trade (other streams, snapshots, headers).
    pub skipped: u64,
    /// Trades that came after a higher trade id of their stream and were put back in place.
    pub reordered: u64,
    /// Trades more than [`crate::sequencer::WINDOW`] rows out of place: stored after higher ids.
    pub late: u64,
}

/// Why an import stopped. Every variant names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: cannot read the zip archive: {source}")]
    Zip {
        file: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{file}:{line}: {reason}")]
    BadRow {
        file: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(
        "{file}: cannot tell the format from its first line ({first_line}); name it with --format"
    )]
    UnknownFormat { file: PathBuf, first_line: String },
    #[error("{file}: {format} rows carry no symbol; name it with --symbol")]
    NoSymbol { file: PathBuf, format: Format },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the import stopped before the end of its input")]
    Stopped,
}

/// A batch ready to append, or the end of the input with the parse's verdict.
enum Message {
    Batch(StreamId, PreparedBatch),
    Done(Result<ParseCounts, ImportError>),
}

#[derive(Default)]
struct ParseCounts {
    read: u64,
    rejected: u64,
    skipped: u64,
    reordering: Reordering,
}

/// Imports `files` into `store`. `progress` is told how many input bytes were consumed, so a
/// caller can draw a bar (and draw nothing when not on a terminal).
pub async fn import_trades(
    store: &Store,
    files: &[PathBuf],
    options: &ImportOptions,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<ImportSummary, ImportError> {
    let (tx, mut rx) = mpsc::channel(2);
    let files = files.to_vec();
    let opts = options.clone();
    let preparer = store.clone();
    let producer = tokio::task::spawn_blocking(move || {
        let result = parse_files(&files, &opts, &preparer, &tx, &progress);
        let _ = tx.blocking_send(Message::Done(result));
    });
    let mut summary = ImportSummary::default();
    let mut count = |out: AppendOutcome| {
        summary.imported += out.appended as u64;
        summary.already_present += out.duplicates as u64;
    };
    let mut verdict = None;
    // A batch commits while the one before it is synced, and counts once acknowledged.
    let mut appends = store.appends_in_line();
    while let Some(message) = rx.recv().await {
        match message {
            Message::Batch(stream, batch) => {
                if let Some(out) = appends.append(&stream, ExpectedVersion::Any, batch).await? {
                    count(out);
                }
            }
            Message::Done(result) => verdict = Some(result),
        }
    }
    if let Some(out) = appends.finish().await? {
        count(out);
    }
    hedgehog_runtime::rejoin(producer.await).ok_or(ImportError::Stopped)?;
    let counts = verdict.unwrap_or_else(|| Ok(ParseCounts::default()))?;
    summary.read = counts.read;
    summary.rejected = counts.rejected;
    summary.skipped = counts.skipped;
    summary.reordered = counts.reordering.reordered;
    summary.late = counts.reordering.late;
    Ok(summary)
}

/// Buffers trades per market and hands full batches to the appender.
struct Batcher<'a> {
    /// Prepares the batches for its backend, on this (the parsing) thread.
    store: &'a Store,
    tx: &'a mpsc::Sender<Message>,
    size: usize,
    buffers: HashMap<StreamId, Vec<NewEvent>>,
}

impl Batcher<'_> {
    fn push(&mut self, stream: &StreamId, trade: TradeReceived) -> Result<(), ImportError> {
        let id = crate::ids::trade_event_id(stream, &trade);
        let buffer = self.buffers.entry(stream.clone()).or_default();
        buffer.push(NewEvent::new(trade).with_id(id));
        if buffer.len() >= self.size {
            let events = std::mem::take(buffer);
            self.send(stream.clone(), events)?;
        }
        Ok(())
    }

    fn send(&mut self, stream: StreamId, events: Vec<NewEvent>) -> Result<(), ImportError> {
        let batch = self.store.prepare(events)?;
        // The receiver only goes away when the appender failed: stop parsing; the appender's
        // error is the one reported.
        self.tx
            .blocking_send(Message::Batch(stream, batch))
            .map_err(|_| ImportError::Stopped)
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        let mut streams: Vec<StreamId> = self.buffers.keys().cloned().collect();
        streams.sort();
        for stream in streams {
            if let Some(events) = self.buffers.remove(&stream) {
                if !events.is_empty() {
                    self.send(stream, events)?;
                }
            }
        }
        Ok(())
    }
}

/// Parses `files` in the order of their first trades' times and appends each market stream in
/// trade-id order (see [`crate::sequencer`]) across all of them.
fn parse_files(
    files: &[PathBuf],
    options: &ImportOptions,
    store: &Store,
    tx: &mpsc::Sender<Message>,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<ParseCounts, ImportError> {
    let mut counts = ParseCounts::default();
    let mut batcher = Batcher {
        store,
        tx,
        size: options.batch_size.max(1),
        buffers: HashMap::new(),
    };
    let mut sequencer: Sequencer<StreamId, TradeReceived> = Sequencer::default();
    let mut out = |stream: &StreamId, trade| batcher.push(stream, trade);
    for file in in_time_order(files, options) {
        with_reader(file, progress, |reader| {
            parse_one(file, reader, options, &mut counts, &mut |market, trade| {
                let stream = hedgehog_store::StreamId::market_trades(market, &trade.symbol);
                sequencer.push(&stream, trade.trade_id, trade, &mut out)
            })
        })??;
    }
    // Only an input read to its end lets out what is held and flushes the partial batches: a
    // stop drops them.
    sequencer.finish(&mut out)?;
    batcher.flush()?;
    counts.reordering = sequencer.counts();
    Ok(counts)
}

/// `files` in the order of their first trade's time (files given as day 2, day 1 are read as
/// day 1, day 2); a file whose first trade cannot be read comes first, to fail early.
pub fn in_time_order<'f>(files: &'f [PathBuf], options: &ImportOptions) -> Vec<&'f PathBuf> {
    let mut keyed: Vec<(Option<i64>, &PathBuf)> = files
        .iter()
        .map(|file| (first_trade_time(file, options), file))
        .collect();
    keyed.sort_by_key(|(time, _)| *time);
    keyed.into_iter().map(|(_, file)| file).collect()
}

/// The time of a file's first trade, read without reading the rest.
fn first_trade_time(file: &Path, options: &ImportOptions) -> Option<i64> {
    let mut first = None;
    let _ = for_each_trade(file, options, &|_| {}, &mut |_, trade| {
        first = Some(trade.trade_time.0);
        Err(ImportError::Stopped)
    });
    first
}

/// Opens `path`, decompressing by its extension, counting consumed bytes into `progress`.
fn with_reader<T>(
    path: &Path,
    progress: &(dyn Fn(u64) + Send + Sync),
    body: impl FnOnce(&mut dyn BufRead) -> T,
) -> Result<T, ImportError> {
    let io = |source| ImportError::Io {
        file: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let counted = Counted {
        inner: file,
        progress,
    };
    let name = path.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".zip") {
        let mut archive = zip::ZipArchive::new(counted).map_err(|source| ImportError::Zip {
            file: path.to_owned(),
            source,
        })?;
        let entry = archive.by_index(0).map_err(|source| ImportError::Zip {
            file: path.to_owned(),
            source,
        })?;
        let result = body(&mut BufReader::with_capacity(1 << 16, entry));
        Ok(result)
    } else if name.ends_with(".gz") {
        Ok(body(&mut BufReader::with_capacity(
            1 << 16,
            MultiGzDecoder::new(counted),
        )))
    } else {
        Ok(body(&mut BufReader::with_capacity(1 << 16, counted)))
    }
}

/// A reader that reports the bytes it delivers.
struct Counted<'a, R> {
    inner: R,
    progress: &'a (dyn Fn(u64) + Send + Sync),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for Counted<'_, R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// Guesses the format from the first line.
pub fn detect(first_line: &str) -> Option<Format> {
    let line = first_line.trim_end();
    if let Some((stamp, rest)) = line.split_once(' ') {
        if stamp.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('{') {
            return Some(Format::WsRecording);
        }
    }
    if line.split(';').count() == 13 {
        return Some(Format::BookDump);
    }
    let fields: Vec<&str> = line.split(',').collect();
    match fields.first().map(|f| f.trim()) {
        Some("id") => return Some(Format::BinanceTrades),
        Some("agg_trade_id") => return Some(Format::BinanceAggTrades),
        _ => {}
    }
    let integer = |i: usize| fields.get(i).is_some_and(|f| f.parse::<u64>().is_ok());
    // The fourth field tells them apart: a trade's quote quantity, an aggregate's first id.
    if matches!(fields.len(), 6 | 7) && integer(0) && fields[3].contains('.') {
        return Some(Format::BinanceTrades);
    }
    if matches!(fields.len(), 7 | 8) && integer(0) && integer(3) && integer(4) {
        return Some(Format::BinanceAggTrades);
    }
    None
}

/// Reads every trade of `files` into memory, in file order (for the replay server, whose inputs
/// are recordings of minutes or hours, not the warehouse's years).
pub fn read_trades(
    files: &[PathBuf],
    options: &ImportOptions,
) -> Result<Vec<(Market, TradeReceived)>, ImportError> {
    let mut trades = Vec::new();
    for file in files {
        for_each_trade(file, options, &|_| {}, &mut |market, trade| {
            trades.push((market, trade));
            Ok(())
        })?;
    }
    Ok(trades)
}

/// Streams the trades of one file to `sink` in file order, as the importer reads them (same
/// formats, same errors); `progress` hears the input bytes consumed. Returns how many trades
/// were read. A sink's error stops the reading and is returned.
pub fn for_each_trade(
    file: &Path,
    options: &ImportOptions,
    progress: &(dyn Fn(u64) + Send + Sync),
    sink: &mut Sink,
) -> Result<u64, ImportError> {
    let mut counts = ParseCounts::default();
    with_reader(file, progress, |reader| {
        parse_one(file, reader, options, &mut counts, sink)
    })??;
    Ok(counts.read)
}

/// Where parsed trades go, one by one.
pub type Sink<'a> = dyn FnMut(Market, TradeReceived) -> Result<(), ImportError> + 'a;

fn parse_one(
    file: &Path,
    reader: &mut dyn BufRead,
    options: &ImportOptions,
    counts: &mut ParseCounts,
    sink: &mut Sink,
) -> Result<(), ImportError> {
    let mut line = String::new();
    let mut number = 0u64;
    let mut format = options.format;
    let mut symbols = SymbolCache::default();
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|source| ImportError::Io {
                file: file.to_owned(),
                source,
            })?;
        if n == 0 {
            return Ok(());
        }
        number += 1;
        let text = line.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            counts.skipped += 1;
            continue;
        }
        let format = match format {
            Some(f) => f,
            None => {
                let detected = detect(text).ok_or_else(|| ImportError::UnknownFormat {
                    file: file.to_owned(),
                    first_line: text.chars().take(120).collect(),
                })?;
                format = Some(detected);
                detected
            }
        };
        let row = match format {
            // The rows carry no symbol: one is needed before the first row, header included.
            Format::BinanceTrades | Format::BinanceAggTrades => match &options.symbol {
                Some(symbol) => on_market(
                    options.market.unwrap_or_default(),
                    if format == Format::BinanceTrades {
                        binance_trade_row(text, symbol)
                    } else {
                        binance_agg_trade_row(text, symbol)
                    },
                ),
                None => {
                    return Err(ImportError::NoSymbol {
                        file: file.to_owned(),
                        format,
                    })
                }
            },
            Format::BookDump => on_market(
                options.market.unwrap_or_default(),
                book_dump_row(text, &mut symbols),
            ),
            Format::WsRecording => {
                recording_row(text).and_then(|row| match (row, options.market) {
                    (Some((found, _)), Some(wanted)) if found != wanted => Err(RowError::Bad(
                        format!("a {found} trade in an import for the {wanted} market (--market)"),
                    )),
                    (row, _) => Ok(row),
                })
            }
        };
        match row {
            Ok(Some((market, trade))) => {
                if let Some(expected) = &options.symbol {
                    if &trade.symbol != expected {
                        let reason = format!(
                            "the row's symbol {} is not --symbol {expected}",
                            trade.symbol
                        );
                        reject(file, number, reason, options, counts)?;
                        continue;
                    }
                }
                counts.read += 1;
                sink(market, trade)?;
            }
            Ok(None) => counts.skipped += 1,
            Err(RowError::Bad(reason)) => reject(file, number, reason, options, counts)?,
        }
    }
}

fn reject(
    file: &Path,
    line: u64,
    reason: String,
    options: &ImportOptions,
    counts: &mut ParseCounts,
) -> Result<(), ImportError> {
    let error = ImportError::BadRow {
        file: file.to_owned(),
        line,
        reason,
    };
    if options.skip_bad_rows {
        tracing::warn!("skipped: {error}");
        counts.rejected += 1;
        Ok(())
    } else {
        Err(error)
    }
}

enum RowError {
    Bad(String),
}

fn field<T: std::str::FromStr>(value: Option<&str>, name: &str) -> Result<T, RowError> {
    let value = value.ok_or_else(|| RowError::Bad(format!("missing field `{name}`")))?;
    value
        .trim()
        .parse()
        .map_err(|_| RowError::Bad(format!("field `{name}` = {value:?} is not valid")))
}

fn positive(value: Decimal, name: &str) -> Result<Decimal, RowError> {
    if value > Decimal::ZERO {
        Ok(value)
    } else {
        Err(RowError::Bad(format!(
            "field `{name}` = {value} is not positive"
        )))
    }
}

fn flag(value: Option<&str>, name: &str) -> Result<bool, RowError> {
    match value.map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("true") || v == "t" => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") || v == "f" => Ok(false),
        Some(v) => Err(RowError::Bad(format!(
            "field `{name}` = {v:?} is not true or false"
        ))),
        None => Err(RowError::Bad(format!("missing field `{name}`"))),
    }
}

/// Binance writes trade times in ms, and in µs in spot files since 2025: both are accepted and
/// stored as ms (the domain's unit).
fn millis(value: i64) -> Timestamp {
    if value >= 100_000_000_000_000 {
        Timestamp(value / 1_000)
    } else {
        Timestamp(value)
    }
}

/// `id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match]`; a header row is skipped.
fn binance_trade_row(text: &str, symbol: &Symbol) -> Result<Option<TradeReceived>, RowError> {
    let mut f = text.split(',');
    let first = f.next().unwrap_or_default();
    if first.trim() == "id" {
        return Ok(None);
    }
    let symbol = symbol.clone();
    let trade_id = field(Some(first), "id")?;
    let price = positive(field(f.next(), "price")?, "price")?;
    let quantity = positive(field(f.next(), "qty")?, "qty")?;
    let _quote: Decimal = field(f.next(), "quote_qty")?;
    let time = millis(field(f.next(), "time")?);
    let buyer_is_maker = flag(f.next(), "is_buyer_maker")?;
    Ok(Some(TradeReceived {
        symbol,
        trade_id,
        price,
        quantity,
        trade_time: time,
        event_time: time,
        buyer_is_maker,
        buyer_order_id: None,
        seller_order_id: None,
        first_trade_id: None,
        kind: TradeKind::Market,
    }))
}

/// `agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker
/// [,is_best_match]`; a header row is skipped.
fn binance_agg_trade_row(text: &str, symbol: &Symbol) -> Result<Option<TradeReceived>, RowError> {
    let mut f = text.split(',');
    let first = f.next().unwrap_or_default();
    if first.trim() == "agg_trade_id" {
        return Ok(None);
    }
    let _aggregate: u64 = field(Some(first), "agg_trade_id")?;
    let price = positive(field(f.next(), "price")?, "price")?;
    let quantity = positive(field(f.next(), "quantity")?, "quantity")?;
    let first_id: u64 = field(f.next(), "first_trade_id")?;
    let last_id: u64 = field(f.next(), "last_trade_id")?;
    if last_id < first_id {
        return Err(RowError::Bad(format!(
            "last_trade_id {last_id} is below first_trade_id {first_id}"
        )));
    }
    let time = millis(field(f.next(), "transact_time")?);
    let buyer_is_maker = flag(f.next(), "is_buyer_maker")?;
    Ok(Some(TradeReceived {
        symbol: symbol.clone(),
        trade_id: last_id,
        price,
        quantity,
        trade_time: time,
        event_time: time,
        buyer_is_maker,
        buyer_order_id: None,
        seller_order_id: None,
        first_trade_id: (first_id != last_id).then_some(first_id),
        kind: TradeKind::Market,
    }))
}

/// `id;event_type;event_time;symbol;trade_id;price;quantity;buyer_order_id;seller_order_id;
/// trade_time;buyer_market_maker;inserted_at;updated_at`
fn book_dump_row(text: &str, symbols: &mut SymbolCache) -> Result<Option<TradeReceived>, RowError> {
    let mut f = [""; 13];
    let mut n = 0;
    for value in text.split(';') {
        if n < f.len() {
            f[n] = value;
        }
        n += 1;
    }
    if n != 13 {
        return Err(RowError::Bad(format!(
            "expected 13 `;`-separated fields, found {n}"
        )));
    }
    if f[1] != "trade" {
        return Err(RowError::Bad(format!(
            "event_type {:?} is not \"trade\"",
            f[1]
        )));
    }
    let symbol = symbols.get(f[3])?;
    let optional = |v: &str, name: &str| -> Result<Option<u64>, RowError> {
        if v.is_empty() {
            Ok(None)
        } else {
            field(Some(v), name).map(Some)
        }
    };
    Ok(Some(TradeReceived {
        symbol,
        trade_id: field(Some(f[4]), "trade_id")?,
        price: positive(field(Some(f[5]), "price")?, "price")?,
        quantity: positive(field(Some(f[6]), "quantity")?, "quantity")?,
        trade_time: millis(field(Some(f[9]), "trade_time")?),
        event_time: millis(field(Some(f[2]), "event_time")?),
        buyer_is_maker: flag(Some(f[10]), "buyer_market_maker")?,
        buyer_order_id: optional(f[7], "buyer_order_id")?,
        seller_order_id: optional(f[8], "seller_order_id")?,
        first_trade_id: None,
        kind: TradeKind::Market,
    }))
}

/// The symbol of the previous row: a file is almost always one symbol, parsed once.
#[derive(Default)]
struct SymbolCache(Option<Symbol>);

impl SymbolCache {
    fn get(&mut self, text: &str) -> Result<Symbol, RowError> {
        match &self.0 {
            Some(s) if s.as_str() == text => Ok(s.clone()),
            _ => {
                let symbol = Symbol::parse(text).map_err(|e| RowError::Bad(e.to_string()))?;
                self.0 = Some(symbol.clone());
                Ok(symbol)
            }
        }
    }
}

type Row = Option<(Market, TradeReceived)>;

fn on_market(
    market: Market,
    row: Result<Option<TradeReceived>, RowError>,
) -> Result<Row, RowError> {
    row.map(|t| t.map(|t| (market, t)))
}

fn recording_row(text: &str) -> Result<Row, RowError> {
    parse_recorded_line(text)
        .map(|(_, frame)| frame.into_trade())
        .map_err(|e| RowError::Bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_detected_from_the_first_line() {
        assert_eq!(
            detect("3071245454,28165.47000000,0.00056000,15.77266320,1680652799999,True,True"),
            Some(Format::BinanceTrades)
        );
        assert_eq!(
            detect("id,price,qty,quote_qty,time,is_buyer_maker"),
            Some(Format::BinanceTrades)
        );
        assert_eq!(
            detect("797b185e-9d6a-4f6b-8a3c-6f1d1d1f1e1a;trade;1559520022520;ADAUSDT;14364025;0.09643000;1617.50000000;71181005;71180991;1559520022517;f;2019-06-03 00:00:22;2019-06-03 00:00:22"),
            Some(Format::BookDump)
        );
        assert_eq!(
            detect(r#"1680652800004107 {"stream":"btcusdt@trade","data":{}}"#),
            Some(Format::WsRecording)
        );
        assert_eq!(
            detect("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker"),
            Some(Format::BinanceAggTrades)
        );
        assert_eq!(
            detect("966492862,60759.60000000,0.00841000,1111480471,1111480473,1634944096633,False,True"),
            Some(Format::BinanceAggTrades)
        );
        assert_eq!(
            detect("966492862,60759.60000000,0.00841000,1111480471,1111480473,1634944096633,false"),
            Some(Format::BinanceAggTrades),
            "futures aggTrades have no is_best_match"
        );
        assert_eq!(detect("hello,world"), None);
    }

    #[test]
    fn book_rows_keep_every_field() {
        let row = "797b185e-9d6a-4f6b-8a3c-6f1d1d1f1e1a;trade;1559520022520;ADAUSDT;14364025;0.09643000;1617.50000000;71181005;71180991;1559520022517;f;2019-06-03 00:00:22;2019-06-03 00:00:22";
        let Ok(Some(t)) = book_dump_row(row, &mut SymbolCache::default()) else {
            panic!("row refused")
        };
        assert_eq!(t.symbol.as_str(), "ADAUSDT");
        assert_eq!(t.trade_id, 14364025);
        assert_eq!(t.price.to_string(), "0.09643000");
        assert_eq!(t.quantity.to_string(), "1617.50000000");
        assert_eq!(t.trade_time, Timestamp(1559520022517));
        assert_eq!(t.event_time, Timestamp(1559520022520));
        assert!(!t.buyer_is_maker);
        assert_eq!(
            (t.buyer_order_id, t.seller_order_id),
            (Some(71181005), Some(71180991))
        );
    }

    #[test]
    fn bad_rows_say_which_field() {
        let bad = |row| match book_dump_row(row, &mut SymbolCache::default()) {
            Err(RowError::Bad(reason)) => reason,
            _ => panic!("accepted {row}"),
        };
        assert!(bad("a;trade;1;ADAUSDT;1;abc;1;;;1;f;x;y").contains("`price`"));
        assert!(bad("a;trade;1;ADAUSDT;1;0;1;;;1;f;x;y").contains("not positive"));
        assert!(bad("a;trade;1;ADAUSDT;1;1;1;;;1;maybe;x;y").contains("buyer_market_maker"));
        assert!(bad("a;trade;1").contains("13"));
    }

    #[test]
    fn an_aggregate_is_its_last_trade_with_the_first_beside_it() {
        let sym = Symbol::parse("BTCUSDT").unwrap();
        // The first row of Binance's documented REST aggTrades capture, as a CSV row.
        let row =
            "966492862,60759.60000000,0.00841000,1111480471,1111480471,1634944096633,false,true";
        let Ok(Some(t)) = binance_agg_trade_row(row, &sym) else {
            panic!("row refused")
        };
        assert_eq!(
            (t.trade_id, t.first_trade_id, t.trade_count()),
            (1111480471, None, 1)
        );
        assert_eq!(t.price.to_string(), "60759.60000000");
        assert_eq!(t.quantity.to_string(), "0.00841000");
        assert_eq!(t.trade_time, Timestamp(1634944096633));
        assert!(!t.buyer_is_maker);
        let row = "1,60759.6,0.5,1111480471,1111480475,1634944096633,true,true";
        let Ok(Some(t)) = binance_agg_trade_row(row, &sym) else {
            panic!("row refused")
        };
        assert_eq!(
            (t.trade_id, t.first_trade_id, t.trade_count()),
            (1111480475, Some(1111480471), 5)
        );
        assert!(matches!(
            binance_agg_trade_row("agg_trade_id,price", &sym),
            Ok(None)
        ));
        let bad = |row| match binance_agg_trade_row(row, &sym) {
            Err(RowError::Bad(reason)) => reason,
            _ => panic!("accepted {row}"),
        };
        assert!(bad("1,60759.6,0.5,9,8,1634944096633,true").contains("below first_trade_id"));
        assert!(bad("1,60759.6,0.5,x,8,1634944096633,true").contains("`first_trade_id`"));
        assert!(bad("1,60759.6,0,1,1,1634944096633,true").contains("not positive"));
    }

    #[test]
    fn microsecond_times_become_milliseconds() {
        assert_eq!(millis(1_680_652_799_999), Timestamp(1_680_652_799_999));
        assert_eq!(millis(1_735_689_600_123_456), Timestamp(1_735_689_600_123));
    }
}
