//! `--chart FILE.html|FILE.png`: price with the buy and sell fills marked, and equity below it,
//! as one self-contained HTML page (inline SVG, no script, no network: readable offline and
//! years on) or as a PNG of the same drawing (rendered by resvg with the system's fonts).
//!
//! Coordinates are floating point: they are pixels, not money. The price line is the equity
//! curve's samples (the last trade of each time bucket); fills are drawn where they happened,
//! at most [`MAX_MARKERS`] of them (every n-th beyond that, said on the page).

use std::io::{self, Write};

use hedgehog_domain::backtest::OrderRecord;
use hedgehog_domain::Side;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::report::Report;
use super::Orders;
use hedgehog_runtime::time::format_time;

/// Fill markers drawn at most.
pub const MAX_MARKERS: usize = 5000;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 20.0;
const PRICE_TOP: f64 = 60.0;
const PRICE_HEIGHT: f64 = 340.0;
const EQUITY_TOP: f64 = 450.0;
const EQUITY_HEIGHT: f64 = 180.0;
const HEIGHT: f64 = 680.0;

struct Marker {
    time: i64,
    price: f64,
    side: Side,
    label: String,
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A linear map from a value range onto a pixel range (a flat range maps to its middle).
struct Scale {
    from: (f64, f64),
    to: (f64, f64),
}

impl Scale {
    fn new(min: f64, max: f64, to: (f64, f64)) -> Scale {
        Scale {
            from: (min, max),
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let span = self.from.1 - self.from.0;
        if span.abs() < f64::EPSILON {
            return (self.to.0 + self.to.1) / 2.0;
        }
        self.to.0 + (v - self.from.0) / span * (self.to.1 - self.to.0)
    }
}

/// Writes the chart as an HTML page.
pub fn write_html(out: &mut impl Write, report: &Report, orders: &mut Orders) -> io::Result<()> {
    let svg = svg(report, orders)?;
    let s = &report.summary;
    writeln!(
        out,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>body{{font:14px system-ui,sans-serif;margin:24px;color:#222}} code{{font-size:12px}}</style>
</head><body>
<p>{trades} trades, {from} .. {to}; orders placed {placed}, filled {filled}; positions closed {closed}; realized profit {profit} {q}; fees {fees} {q}.<br>
fingerprint <code>{fp}</code>; trades sha256 <code>{ts}</code></p>
{svg}</body></html>"#,
        t = escape(&title(report)),
        trades = s.trades,
        from = s.first_trade_time.map_or("-".into(), |t| format_time(t.0)),
        to = s.last_trade_time.map_or("-".into(), |t| format_time(t.0)),
        placed = s.orders_placed,
        filled = s.orders_filled,
        closed = s.positions_closed,
        profit = s.realized_profit,
        fees = s.fees,
        q = escape(&report.quote_asset),
        fp = report.fingerprint,
        ts = report.inputs.trades_sha256,
    )
}

/// Why a PNG could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    #[error("cannot draw the chart: {0}")]
    Svg(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Writes the chart as a PNG.
pub fn write_png(
    out: &mut impl Write,
    report: &Report,
    orders: &mut Orders,
) -> Result<(), PngError> {
    use resvg::{tiny_skia, usvg};
    let svg = svg(report, orders)?;
    let mut fonts = usvg::fontdb::Database::new();
    fonts.load_system_fonts();
    if fonts.is_empty() {
        tracing::warn!("no system fonts found: the PNG chart is drawn without its labels");
    }
    let options = usvg::Options {
        fontdb: std::sync::Arc::new(fonts),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(&svg, &options).map_err(|e| PngError::Svg(e.to_string()))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| PngError::Svg("the image has no area".into()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    let png = pixmap
        .encode_png()
        .map_err(|e| PngError::Svg(e.to_string()))?;
    out.write_all(&png)?;
    Ok(())
}

fn title(report: &Report) -> String {
    let s = &report.summary;
    format!(
        "{} {} backtest: return {}, max drawdown {} {}",
        report.symbol,
        report.market,
        s.return_on_budget.map_or("-".into(), |r| format!(
            "{} %",
            (r * Decimal::ONE_HUNDRED).round_dp(2)
        )),
        s.max_drawdown,
        report.quote_asset
    )
}

/// The drawing itself, as a standalone SVG document.
fn svg(report: &Report, orders: &mut Orders) -> io::Result<String> {
    let mut out = Vec::new();
    draw(&mut out, report, orders)?;
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn draw(out: &mut impl Write, report: &Report, orders: &mut Orders) -> io::Result<()> {
    let mut fills = 0usize;
    orders.for_each(|o| {
        fills += o.fills.len();
        Ok(())
    })?;
    let every = fills.div_ceil(MAX_MARKERS).max(1);
    let mut markers = Vec::new();
    let mut seen = 0usize;
    orders.for_each(|o: OrderRecord| {
        for fill in &o.fills {
            if seen % every == 0 {
                markers.push(Marker {
                    time: fill.time.0,
                    price: f(fill.price),
                    side: o.side,
                    label: format!(
                        "{} {} @ {} (order {}, position {}{}) {}",
                        o.side,
                        fill.quantity,
                        fill.price,
                        o.order_id,
                        o.position_id,
                        fill.trade_id
                            .map_or(String::new(), |t| format!(", trade {t}")),
                        format_time(fill.time.0)
                    ),
                });
            }
            seen += 1;
        }
        Ok(())
    })?;

    let curve = &report.equity_curve;
    let s = &report.summary;
    let t0 = s.first_trade_time.map_or(0, |t| t.0);
    let t1 = s.last_trade_time.map_or(t0 + 1, |t| t.0).max(t0 + 1);
    let x = Scale::new(t0 as f64, t1 as f64, (LEFT, WIDTH - RIGHT));
    let prices = curve
        .iter()
        .map(|p| f(p.price))
        .chain(markers.iter().map(|m| m.price));
    let (pmin, pmax) = bounds(prices);
    let (emin, emax) = bounds(curve.iter().map(|p| f(p.equity)).chain([f(s.budget)]));
    let py = Scale::new(pmin, pmax, (PRICE_TOP + PRICE_HEIGHT, PRICE_TOP));
    let ey = Scale::new(emin, emax, (EQUITY_TOP + EQUITY_HEIGHT, EQUITY_TOP));

    writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12" fill="#444">
<rect width="{w}" height="{h}" fill="#fff"/>
<text x="{LEFT}" y="24" font-size="15" fill="#222">{t}</text>{stride}"##,
        t = escape(&title(report)),
        stride = if every > 1 {
            format!(r#"<text x="{LEFT}" y="42">{fills} fills, every {every}th drawn</text>"#)
        } else {
            String::new()
        },
        w = WIDTH,
        h = HEIGHT,
    )?;
    panel(out, "price", PRICE_TOP, PRICE_HEIGHT, pmin, pmax)?;
    panel(out, "equity", EQUITY_TOP, EQUITY_HEIGHT, emin, emax)?;
    polyline(
        out,
        curve
            .iter()
            .map(|p| (x.at(p.time.0 as f64), py.at(f(p.price)))),
        "#4a6fa5",
    )?;
    // The budget as a baseline under the equity.
    let base = ey.at(f(s.budget));
    writeln!(
        out,
        r##"<line x1="{LEFT}" x2="{}" y1="{base:.1}" y2="{base:.1}" stroke="#bbb" stroke-dasharray="4 3"/>"##,
        WIDTH - RIGHT
    )?;
    polyline(
        out,
        curve
            .iter()
            .map(|p| (x.at(p.time.0 as f64), ey.at(f(p.equity)))),
        "#2e7d32",
    )?;
    for m in &markers {
        let (cx, cy) = (x.at(m.time as f64), py.at(m.price));
        let (shape, color) = match m.side {
            Side::Buy => (
                format!(
                    "{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                    cx,
                    cy - 5.0,
                    cx - 4.5,
                    cy + 3.5,
                    cx + 4.5,
                    cy + 3.5
                ),
                "#1b9e3e",
            ),
            Side::Sell => (
                format!(
                    "{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}",
                    cx,
                    cy + 5.0,
                    cx - 4.5,
                    cy - 3.5,
                    cx + 4.5,
                    cy - 3.5
                ),
                "#d62728",
            ),
        };
        writeln!(
            out,
            r#"<polygon points="{shape}" fill="{color}"><title>{}</title></polygon>"#,
            escape(&m.label)
        )?;
    }
    for (t, anchor) in [(t0, "start"), (t1, "end")] {
        writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x.at(t as f64),
            EQUITY_TOP + EQUITY_HEIGHT + 20.0,
            format_time(t)
        )?;
    }
    writeln!(
        out,
        r##"<text x="{LEFT}" y="{:.1}">▲ buy fill  ▼ sell fill  — price (last trade per sample)   — equity ({}; dashed: the budget)</text>"##,
        HEIGHT - 8.0,
        escape(&report.quote_asset)
    )?;
    writeln!(out, "</svg>")
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (min, max) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if min.is_finite() {
        let pad = (max - min) * 0.05;
        (min - pad, max + pad)
    } else {
        (0.0, 1.0)
    }
}

fn panel(
    out: &mut impl Write,
    name: &str,
    top: f64,
    height: f64,
    min: f64,
    max: f64,
) -> io::Result<()> {
    writeln!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{}" height="{height}" fill="#fafafa" stroke="#ddd"/>"##,
        WIDTH - LEFT - RIGHT
    )?;
    writeln!(
        out,
        r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text><text x="{}" y="{:.1}" text-anchor="end">{}</text><text x="{LEFT}" y="{:.1}">{name}</text>"#,
        LEFT - 6.0,
        top + 12.0,
        significant(max),
        LEFT - 6.0,
        top + height,
        significant(min),
        top - 6.0
    )
}

fn significant(v: f64) -> String {
    let digits = if v.abs() >= 1000.0 {
        2
    } else if v.abs() >= 1.0 {
        4
    } else {
        6
    };
    format!("{v:.digits$}")
}

fn polyline(
    out: &mut impl Write,
    points: impl Iterator<Item = (f64, f64)>,
    color: &str,
) -> io::Result<()> {
    write!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.3" points=""#
    )?;
    for (px, py) in points {
        write!(out, "{px:.1},{py:.1} ")?;
    }
    writeln!(out, r#""/>"#)
}
