//! A backtest's report: what went in (the inputs' identity), what came out (the fingerprint
//! and the figures), as a table for people and as JSON for tools.

use std::io::{self, Write};

use hedgehog_domain::backtest::{Finished, Sample, Summary};
use hedgehog_domain::exchange::SymbolRules;
use hedgehog_domain::paper_exchange::PaperExchange;
use hedgehog_domain::{Symbol, TradingSettings};
use rust_decimal::Decimal;
use serde::Serialize;

use super::{BacktestOptions, Orders, Source};
use hedgehog_runtime::time::format_time;

/// A data file as the run read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileInput {
    pub path: String,
    /// Of the file's bytes as stored (compressed or not).
    pub sha256: String,
    pub bytes: u64,
    /// Trades of the symbol in the window that it held.
    pub trades: u64,
}

/// The filters the orders were checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulesInput {
    pub tick_size: Decimal,
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub min_notional: Decimal,
}

impl From<&SymbolRules> for RulesInput {
    fn from(r: &SymbolRules) -> Self {
        RulesInput {
            tick_size: r.tick_size.normalize(),
            step_size: r.step_size.normalize(),
            min_qty: r.min_qty.normalize(),
            min_notional: r.min_notional.normalize(),
        }
    }
}

/// Everything the decisions depend on. Two runs with equal inputs (file paths aside) decide the
/// same events; the `trades_sha256` is equal however the trades were split into files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inputs {
    /// `files` or `store`.
    pub source: &'static str,
    pub files: Vec<FileInput>,
    /// The market stream read, for a run from the store.
    pub stream: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub trades_sha256: String,
    pub settings: TradingSettings,
    pub paper: PaperExchange,
    /// The fee asset's market trades its price followed, when it was not fixed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fee_asset_data: Vec<String>,
    pub rules: RulesInput,
    /// The Hedgehog version that decided.
    pub version: &'static str,
}

/// A backtest's report; `orders` are written after it (see [`write_json`]).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub symbol: Symbol,
    pub market: String,
    pub base_asset: String,
    pub quote_asset: String,
    /// The run id, when its events were kept.
    pub run_id: Option<String>,
    /// Where the kept events are.
    pub stream: Option<String>,
    /// SHA-256 of every decided event as stored, in order: equal fingerprints, equal decisions.
    pub fingerprint: String,
    pub decisions: u64,
    pub inputs: Inputs,
    pub summary: Summary,
    /// Equity over time, at most a thousand samples evenly spread.
    pub equity_curve: Vec<Sample>,
}

impl Report {
    pub(super) fn new(options: &BacktestOptions, files: Vec<FileInput>, f: Finished) -> Report {
        let (source, stream) = match options.source {
            Source::Files { .. } => ("files", None),
            Source::Store => (
                "store",
                Some(
                    hedgehog_store::StreamId::market_trades(options.market, &options.symbol)
                        .to_string(),
                ),
            ),
        };
        Report {
            symbol: options.symbol.clone(),
            market: options.market.to_string(),
            base_asset: options.rules.base_asset.clone(),
            quote_asset: options.rules.quote_asset.clone(),
            run_id: options.keep.map(|r| r.simple().to_string()),
            stream: options
                .keep
                .map(|r| super::run_stream(r, &options.symbol).to_string()),
            fingerprint: f.fingerprint,
            decisions: f.decisions,
            inputs: Inputs {
                source,
                files,
                stream,
                from: options.window.from,
                to: options.window.to,
                trades_sha256: f.trades_sha256,
                settings: options.settings.clone(),
                paper: options.paper.clone(),
                fee_asset_data: options
                    .fee_asset_data
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect(),
                rules: RulesInput::from(&options.rules),
                version: env!("CARGO_PKG_VERSION"),
            },
            summary: f.summary,
            equity_curve: f.curve,
        }
    }
}

/// The report as one JSON object, with every order (and its fills) under `orders`.
pub fn write_json(out: &mut impl Write, report: &Report, orders: &mut Orders) -> io::Result<()> {
    let mut head = serde_json::to_vec_pretty(report)?;
    // Close the object by hand after the orders, which are streamed from disk, not held.
    while head
        .last()
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b'}')
    {
        head.pop();
    }
    out.write_all(&head)?;
    out.write_all(b",\n  \"orders\": [")?;
    let mut first = true;
    orders.for_each(|order| {
        out.write_all(if first { b"\n    " } else { b",\n    " })?;
        first = false;
        serde_json::to_writer(&mut *out, &order)?;
        Ok(())
    })?;
    out.write_all(if first { b"]\n}\n" } else { b"\n  ]\n}\n" })
}

fn opt(value: Option<Decimal>) -> String {
    value.map_or("-".to_owned(), |v| v.to_string())
}

fn percent(value: Option<Decimal>) -> String {
    value.map_or("-".to_owned(), |v| {
        format!("{} %", (v * Decimal::ONE_HUNDRED).round_dp(2).normalize())
    })
}

/// The report as a table for people.
pub fn print_table(out: &mut impl Write, r: &Report) -> io::Result<()> {
    let s = &r.summary;
    let q = &r.quote_asset;
    let when = |t: Option<hedgehog_domain::Timestamp>| t.map_or("-".into(), |t| format_time(t.0));
    writeln!(out, "backtest of {} ({})", r.symbol, r.market)?;
    let source = match r.inputs.source {
        "files" => format!(
            "{} file{}",
            r.inputs.files.len(),
            if r.inputs.files.len() == 1 { "" } else { "s" }
        ),
        _ => format!(
            "the store ({})",
            r.inputs.stream.as_deref().unwrap_or_default()
        ),
    };
    let rows: Vec<(&str, String)> = vec![
        ("source", source),
        (
            "trades",
            format!(
                "{} replayed, ids {} .. {}",
                s.trades,
                s.first_trade_id.map_or("-".into(), |i| i.to_string()),
                s.last_trade_id.map_or("-".into(), |i| i.to_string())
            ),
        ),
        (
            "time span",
            format!("{} .. {}", when(s.first_trade_time), when(s.last_trade_time)),
        ),
        (
            "settings",
            format!(
                "chunks {}, budget {} {q}, buy_down_interval {}, profit_target {}, rebuy_interval {}, fee {}",
                r.inputs.settings.chunks,
                r.inputs.settings.budget,
                r.inputs.settings.buy_down_interval,
                r.inputs.settings.profit_target,
                r.inputs.settings.rebuy_interval,
                r.inputs.settings.fee
            ),
        ),
        (
            "paper exchange",
            format!(
                "{} fills, {}{}",
                r.inputs.paper.fill,
                if r.inputs.paper.partial_fills {
                    "capped at each trade's quantity"
                } else {
                    "whole orders"
                },
                match &r.inputs.paper.fee_asset {
                    None => String::new(),
                    Some(a) => match a.price {
                        Some(p) if r.inputs.fee_asset_data.is_empty() => format!(
                            ", fees in {} at {} {}",
                            a.asset, p, r.quote_asset
                        ),
                        _ => format!(", fees in {} at its market's price", a.asset),
                    },
                }
            ),
        ),
        (
            "orders",
            format!(
                "placed {}, filled {}, cancelled {}, rejected {}, open {} ({} partially filled)",
                s.orders_placed,
                s.orders_filled,
                s.orders_cancelled,
                s.orders_rejected,
                s.orders_open,
                s.orders_partially_filled
            ),
        ),
        (
            "positions",
            format!(
                "opened {}, closed {}, still open {}",
                s.positions_opened, s.positions_closed, s.positions_open
            ),
        ),
        (
            "realized profit",
            format!(
                "{} {q} (after fees; win rate {}, average {}, best {}, worst {})",
                s.realized_profit,
                percent(s.win_rate),
                opt(s.average_outcome),
                opt(s.best_outcome),
                opt(s.worst_outcome)
            ),
        ),
        ("fees paid", format!("{} {q}", s.fees)),
        (
            "open inventory",
            format!(
                "{} {} worth {} {q} at the last price {} (open profit {} {q})",
                s.inventory,
                r.base_asset,
                s.inventory_value,
                opt(s.last_price),
                s.open_profit
            ),
        ),
        (
            "equity",
            format!(
                "{} {q} on a budget of {} {q}: return {}",
                s.equity,
                s.budget,
                percent(s.return_on_budget)
            ),
        ),
        (
            "max drawdown",
            format!(
                "{} {q} ({} of the peak)",
                s.max_drawdown,
                percent(Some(s.max_drawdown_ratio))
            ),
        ),
        (
            "fingerprint",
            format!("{} ({} decisions)", r.fingerprint, r.decisions),
        ),
        ("trades sha256", r.inputs.trades_sha256.clone()),
    ];
    for (label, value) in rows {
        writeln!(out, "  {label:<16} {value}")?;
    }
    if let (Some(stream), Some(run)) = (&r.stream, &r.run_id) {
        writeln!(out, "  {:<16} {stream}", "kept in")?;
        writeln!(out, "  {:<16} hedgehog orders --run {run}", "its orders")?;
    }
    Ok(())
}
