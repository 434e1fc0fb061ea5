//! `backtest`: stored trades or files through the strategy and paper exchange, with a report.

use std::io::{self, Write};

use anyhow::Context;
use std::sync::Arc;
use std::time::Instant;

use hedgehog_backtest as backtest;
use hedgehog_domain::paper_exchange::{FeeAsset, FillModel, PaperExchange};
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::TradingSettings;
use hedgehog_engine::trading::{self, SettingsChange};
use hedgehog_projections::query::Window;
use hedgehog_store::Store;
use indicatif::{ProgressBar, ProgressStyle};
use rust_decimal::Decimal;

use super::args::*;
use super::*;

pub async fn backtest(
    store: Option<&Store>,
    exchange_info: Option<&std::path::Path>,
    args: BacktestArgs,
) -> anyhow::Result<()> {
    let (rules, rules_from) = exchange_rules(exchange_info)?;
    let rules = trading::rules_for(&rules, &rules_from, &args.symbol)?.clone();
    if let Some(speed) = args.speed {
        anyhow::ensure!(
            speed > 0.0 && speed.is_finite(),
            "--speed must be above 0, not {speed}"
        );
    }
    let png_chart = match &args.chart {
        Some(chart) => {
            let ext = chart
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase());
            match ext.as_deref() {
                Some("html" | "htm") => false,
                Some("png") => true,
                _ => anyhow::bail!(
                    "--chart {}: name the file FILE.html (a web page) or FILE.png (an image)",
                    chart.display()
                ),
            }
        }
        None => false,
    };
    for (flag, files) in [
        ("--data", &args.data),
        ("--fee-asset-data", &args.fee_asset_data),
    ] {
        for file in files {
            anyhow::ensure!(file.is_file(), "{flag} {}: no such file", file.display());
        }
    }
    let fee_asset = fee_asset(&args, &rules.quote_asset)?;
    let settings =
        SettingsChange::from(args.settings.clone()).applied_to(&TradingSettings::default());
    let (source, total) = if args.data.is_empty() {
        let store = store.context("a backtest over stored trades needs the store")?;
        let stream = hedgehog_store::StreamId::market_trades(args.market, &args.symbol);
        (
            backtest::Source::Store,
            u64::try_from(store.stream_version(&stream).await?).unwrap_or(0),
        )
    } else {
        let bytes = args
            .data
            .iter()
            .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
            .sum();
        (
            backtest::Source::Files {
                files: args.data.clone(),
                format: args.format,
            },
            bytes,
        )
    };
    let options = backtest::BacktestOptions {
        symbol: args.symbol.clone(),
        market: args.market,
        source,
        window: Window {
            from: args.from,
            to: args.to,
        },
        settings,
        strategies: Strategies::default(),
        paper: PaperExchange {
            fill: match args.fill {
                FillArg::Cross => FillModel::Cross,
                FillArg::Touch => FillModel::Touch,
            },
            partial_fills: args.partial_fills,
            fee_asset,
        },
        rules,
        fee_asset_data: args.fee_asset_data.clone(),
        // The run id is the one value taken from the clock: it names the kept stream.
        keep: args.keep.then(uuid::Uuid::now_v7),
        speed: args.speed,
        record_orders: args.report.is_some() || args.chart.is_some(),
    };
    let template = if args.data.is_empty() {
        "backtesting [{bar:40}] {pos}/{len} trades ({per_sec}, eta {eta})"
    } else {
        "backtesting [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})"
    };
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(template)?.progress_chars("=> "));
    let progress = bar.clone();
    let started = Instant::now();
    let result = backtest::run(store, options, Arc::new(move |n| progress.inc(n))).await;
    bar.finish_and_clear();
    let mut outcome = result?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        trades = outcome.report.summary.trades,
        secs,
        "backtest finished"
    );
    write_outputs(&args, &mut outcome, secs, png_chart)
}

/// The paper exchange's commission asset (`--fee-asset`), checked against the quote asset and
/// its price's source.
fn fee_asset(args: &BacktestArgs, quote_asset: &str) -> anyhow::Result<Option<FeeAsset>> {
    Ok(match &args.fee_asset {
        None => None,
        Some(asset) => {
            let fee_asset = FeeAsset::new(asset, args.fee_asset_price);
            let asset = &fee_asset.asset;
            anyhow::ensure!(
                *asset != quote_asset,
                "--fee-asset {asset}: commissions are charged in the quote asset already"
            );
            anyhow::ensure!(
                args.fee_asset_price.is_some() || !args.fee_asset_data.is_empty(),
                "--fee-asset {asset} needs its price in {}: --fee-asset-price P, or its \
                 market's trades with --fee-asset-data FILE...",
                quote_asset
            );
            if let Some(price) = args.fee_asset_price {
                anyhow::ensure!(
                    price > Decimal::ZERO,
                    "--fee-asset-price {price}: must be greater than 0"
                );
            }
            Some(fee_asset)
        }
    })
}

/// Writes the chart and the report where `args` ask, and the table unless the report goes to
/// stdout; `secs` is the whole run's time.
fn write_outputs(
    args: &BacktestArgs,
    outcome: &mut backtest::Outcome,
    secs: f64,
    png_chart: bool,
) -> anyhow::Result<()> {
    let json_to_stdout = args.report.as_deref() == Some(std::path::Path::new("-"));
    if let Some(path) = &args.chart {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write the chart to {}", path.display()))?;
        let mut w = io::BufWriter::new(file);
        let context = || format!("cannot write the chart to {}", path.display());
        if png_chart {
            backtest::chart::write_png(&mut w, &outcome.report, &mut outcome.orders)
                .with_context(context)?;
        } else {
            backtest::chart::write_html(&mut w, &outcome.report, &mut outcome.orders)
                .with_context(context)?;
        }
        w.flush().with_context(context)?;
    }
    let mut out = io::stdout().lock();
    match &args.report {
        Some(_) if json_to_stdout => {
            backtest::report::write_json(&mut out, &outcome.report, &mut outcome.orders)?;
        }
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
            let mut w = io::BufWriter::new(file);
            backtest::report::write_json(&mut w, &outcome.report, &mut outcome.orders)
                .and_then(|()| w.flush())
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        None => {}
    }
    if !json_to_stdout {
        backtest::report::print_table(&mut out, &outcome.report)?;
        writeln!(
            out,
            "  {:<16} {:.2} s ({:.0} trades/s)",
            "took",
            secs,
            outcome.report.summary.trades as f64 / secs.max(1e-9)
        )?;
    }
    out.flush()?;
    Ok(())
}
