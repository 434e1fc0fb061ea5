//! Market data in: `stream` from Binance (or a replay) and `import trades` from files.

use std::io::Write;

use std::sync::Arc;
use std::time::Instant;

use hedgehog::config::{self};
use hedgehog_domain::Symbol;
use hedgehog_ingest::import::{self, ImportOptions};
use hedgehog_ingest::streamer::{self, StreamerOptions, StreamerStats};
use hedgehog_store::Store;
use indicatif::{ProgressBar, ProgressStyle};

use super::args::*;
use super::log::catch_up;
use super::run::{until_signal, StopSignal};

/// `stream`: trades of some symbols, or of those the streaming switches name.
pub async fn stream(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    symbols: Vec<Symbol>,
) -> anyhow::Result<()> {
    let signals = StopSignal::listen();
    let binance_ws_url = config.exchange.stream_url.clone();
    let stats = Arc::new(StreamerStats::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = if symbols.is_empty() {
        // Follow the streaming switches: autostart, and react to start / stop.
        let source = StreamerOptions {
            idle_timeout: config.exchange.idle_timeout(),
            ..StreamerOptions::new(binance_ws_url, Vec::new())
        }
        .with_backfill(config.exchange.backfill());
        let follow = hedgehog_engine::streaming::follow(
            store.clone(),
            source,
            Arc::clone(&stats),
            None,
            stopped,
        );
        tokio::spawn(async move { follow.await.map_err(anyhow::Error::from) })
    } else {
        let options = StreamerOptions {
            idle_timeout: config.exchange.idle_timeout(),
            ..StreamerOptions::new(binance_ws_url, symbols)
        }
        .with_backfill(config.exchange.backfill());
        let run = streamer::run(store.clone(), options, Arc::clone(&stats), stopped);
        tokio::spawn(async move { run.await.map_err(anyhow::Error::from) })
    };
    until_signal(task, stop, signals).await?;
    writeln!(out, "{}", stats.summary())?;
    Ok(())
}

/// `import trades`: files into the log, in trade-id order.
pub async fn import(
    out: &mut impl Write,
    store: &Store,
    what: ImportCommand,
) -> anyhow::Result<()> {
    let ImportCommand::Trades {
        files,
        symbol,
        format,
        market,
        skip_bad_rows,
        batch_size,
    } = what;
    let started = Instant::now();
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    // Drawn on stderr only when it is a terminal: quiet when piped.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "importing [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        )?
        .progress_chars("=> "),
    );
    let options = ImportOptions {
        symbol,
        format,
        market,
        skip_bad_rows,
        batch_size: usize::try_from(batch_size)?,
    };
    let progress = bar.clone();
    let result = import::import_trades(store, &files, &options, move |n| progress.inc(n)).await;
    bar.finish_and_clear();
    let summary = result?;
    // Queries answer from the read models: bring them up to date before leaving, and count
    // that in the time: the total is the whole command's.
    catch_up(store).await?;
    let secs = started.elapsed().as_secs_f64();
    writeln!(
        out,
        "read {}, imported {}, already present {}, rejected {}, other lines skipped {} \
         ({} file{}, {:.2} s, {:.0} trades/s)",
        summary.read,
        summary.imported,
        summary.already_present,
        summary.rejected,
        summary.skipped,
        files.len(),
        if files.len() == 1 { "" } else { "s" },
        secs,
        summary.read as f64 / secs.max(1e-9),
    )?;
    if summary.reordered > 0 {
        writeln!(
            out,
            "{} trades came after a higher trade id and were stored in trade-id order",
            summary.reordered
        )?;
    }
    if summary.late > 0 {
        writeln!(
            out,
            "warning: {} trades came more than {} rows after their place and were stored \
             after higher trade ids; reads by trade id (backtests, `trades`) still see them \
             in order, a running engine does not act on them",
            summary.late,
            hedgehog_ingest::sequencer::WINDOW,
        )?;
    }
    Ok(())
}
