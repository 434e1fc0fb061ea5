//! The read models' queries: `ohlc`, `orders`, `trades`.

use std::io::Write;

use hedgehog_domain::{Market, Symbol};
use hedgehog_projections::candles::Interval;
use hedgehog_projections::query::{self, Window};
use hedgehog_runtime::time::format_time;
use hedgehog_store::Store;

use super::args::*;
use super::log::catch_up;

/// `ohlc`: candles of a symbol.
pub async fn ohlc(
    out: &mut impl Write,
    store: &Store,
    symbol: Symbol,
    interval: Interval,
    window: WindowArgs,
) -> anyhow::Result<()> {
    catch_up(store).await?;
    let candles = query::candles(
        &store.database(),
        window.market,
        &symbol,
        interval,
        window.window(),
    )
    .await?;
    print_candles(out, &candles, window.format)?;
    Ok(())
}

/// `orders`: the orders read model, or a kept backtest run's.
pub async fn orders(
    out: &mut impl Write,
    store: &Store,
    symbol: Option<Symbol>,
    status: Option<OrderStatusArg>,
    run: Option<String>,
    format: QueryFormat,
) -> anyhow::Result<()> {
    catch_up(store).await?;
    let orders = query::orders(
        &store.database(),
        run.as_deref(),
        symbol.as_ref(),
        status.map(OrderStatusArg::as_str),
    )
    .await?;
    print_orders(out, &orders, format)?;
    Ok(())
}

/// `trades`: stored trades of a symbol, a page at a time.
pub async fn trades(
    out: &mut impl Write,
    store: &Store,
    symbol: Symbol,
    window: WindowArgs,
) -> anyhow::Result<()> {
    catch_up(store).await?;
    print_trades(
        out,
        store,
        window.market,
        &symbol,
        window.window(),
        window.format,
    )
    .await?;
    Ok(())
}

pub fn print_candles(
    out: &mut impl Write,
    candles: &[hedgehog_projections::candles::Candle],
    format: QueryFormat,
) -> anyhow::Result<()> {
    match format {
        QueryFormat::Table => {
            writeln!(
                out,
                "{:<24} {:>14} {:>14} {:>14} {:>14} {:>18} {:>8}  STATE",
                "OPEN TIME (UTC)", "OPEN", "HIGH", "LOW", "CLOSE", "VOLUME", "TRADES"
            )?;
            for c in candles {
                writeln!(
                    out,
                    "{:<24} {:>14} {:>14} {:>14} {:>14} {:>18} {:>8}  {}",
                    format_time(c.open_time),
                    c.bar.open,
                    c.bar.high,
                    c.bar.low,
                    c.bar.close,
                    c.bar.volume,
                    c.bar.trade_count,
                    if c.closed { "closed" } else { "open" }
                )?;
            }
        }
        QueryFormat::Csv => {
            // Binance's kline columns, in its order (its last column is unused and always 0).
            let mut w = csv::Writer::from_writer(out);
            w.write_record([
                "open_time",
                "open",
                "high",
                "low",
                "close",
                "volume",
                "close_time",
                "quote_volume",
                "count",
                "taker_buy_volume",
                "taker_buy_quote_volume",
                "ignore",
            ])?;
            for c in candles {
                let b = &c.bar;
                w.write_record([
                    c.open_time.to_string(),
                    b.open.to_string(),
                    b.high.to_string(),
                    b.low.to_string(),
                    b.close.to_string(),
                    b.volume.to_string(),
                    c.close_time.to_string(),
                    b.quote_volume.to_string(),
                    b.trade_count.to_string(),
                    b.taker_buy_base_volume.to_string(),
                    b.taker_buy_quote_volume.to_string(),
                    "0".to_owned(),
                ])?;
            }
            w.flush()?;
        }
        QueryFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, candles)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

pub fn print_orders(
    out: &mut impl Write,
    orders: &[hedgehog_projections::orders::OrderRow],
    format: QueryFormat,
) -> anyhow::Result<()> {
    match format {
        QueryFormat::Table => {
            writeln!(
                out,
                "{:<12} {:>8} {:>8} {:<4} {:>14} {:>16} {:>16} {:<16} {:>14}  UPDATED (UTC)",
                "SYMBOL",
                "ORDER",
                "POSITION",
                "SIDE",
                "PRICE",
                "QUANTITY",
                "EXECUTED",
                "STATUS",
                "FEES"
            )?;
            for o in orders {
                writeln!(
                    out,
                    "{:<12} {:>8} {:>8} {:<4} {:>14} {:>16} {:>16} {:<16} {:>14}  {}",
                    o.symbol,
                    o.order_id,
                    o.position_id,
                    o.side,
                    o.price,
                    o.original_quantity,
                    o.executed_quantity,
                    o.status,
                    o.fees,
                    format_time(o.update_time)
                )?;
            }
        }
        QueryFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            for o in orders {
                w.serialize(o)?;
            }
            w.flush()?;
        }
        QueryFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, orders)?;
            writeln!(out)?;
        }
    }
    Ok(())
}

/// Prints trades a page at a time: a year of trades never sits in memory.
pub async fn print_trades(
    out: &mut impl Write,
    store: &Store,
    market: Market,
    symbol: &Symbol,
    window: Window,
    format: QueryFormat,
) -> anyhow::Result<()> {
    let mut pages = query::TradePages::new(store.clone(), market, symbol.clone(), window);
    match format {
        QueryFormat::Table => {
            writeln!(
                out,
                "{:>12} {:<24} {:>16} {:>18}  MAKER   KIND",
                "TRADE ID", "TIME (UTC)", "PRICE", "QUANTITY"
            )?;
            while let Some(page) = pages.next_page().await? {
                for t in &page {
                    writeln!(
                        out,
                        "{:>12} {:<24} {:>16} {:>18}  {:<6}  {}",
                        t.trade_id,
                        format_time(t.trade_time),
                        t.price,
                        t.quantity,
                        if t.buyer_market_maker {
                            "buyer"
                        } else {
                            "seller"
                        },
                        t.kind
                    )?;
                }
            }
        }
        QueryFormat::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            while let Some(page) = pages.next_page().await? {
                for t in &page {
                    w.serialize(t)?;
                }
            }
            w.flush()?;
        }
        QueryFormat::Json => {
            let mut first = true;
            write!(out, "[")?;
            while let Some(page) = pages.next_page().await? {
                for t in &page {
                    write!(out, "{}\n  ", if first { "" } else { "," })?;
                    serde_json::to_writer(&mut *out, t)?;
                    first = false;
                }
            }
            writeln!(out, "{}]", if first { "" } else { "\n" })?;
        }
    }
    Ok(())
}
