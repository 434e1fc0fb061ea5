//! Trading, settings, streaming and storing: the commands of a symbol's switches.

use std::io::{self, Write};

use hedgehog::config::{self};
use hedgehog_domain::exchange::SymbolRules;
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::streaming::StreamingCommand;
use hedgehog_domain::trading::TradingState;
use hedgehog_domain::{Event, Symbol, TradingSettings, TradingStatus};
use hedgehog_engine::streaming::Outcome;
use hedgehog_engine::trading::{self, Request, SettingsChange};
use hedgehog_projections::Projector;
use hedgehog_runtime::time::now;
use hedgehog_store::Store;

use super::args::*;
use super::*;

/// `trading start|stop|shutdown|status`.
pub async fn trading(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    what: TradingCommandArg,
) -> anyhow::Result<()> {
    let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
    let (symbol, request) = match what {
        TradingCommandArg::Start { symbol } => (symbol, Request::Start),
        TradingCommandArg::Stop { symbol } => (symbol, Request::Stop),
        TradingCommandArg::Shutdown { symbol } => (symbol, Request::Shutdown),
        TradingCommandArg::Status { symbol } => {
            let states = match symbol {
                Some(symbol) => {
                    trading::rules_for(&rules, &rules_from, &symbol)?;
                    vec![(symbol.clone(), trading::state(store, &symbol).await?.0)]
                }
                None => trading::status(store).await?,
            };
            print_trading_status(out, &rules, &states)?;
            return Ok(out.flush()?);
        }
    };
    let symbol_rules = trading::rules_for(&rules, &rules_from, &symbol)?;
    if matches!(request, Request::Start) {
        let defaults = config.strategy.settings();
        if trading::apply_default_settings(
            store,
            symbol_rules,
            &Strategies::default(),
            &defaults,
            now(),
        )
        .await?
        {
            writeln!(
                out,
                "{symbol} trades with the configured [strategy] settings"
            )?;
        }
    }
    let outcome = trading::command(store, symbol_rules, request.clone(), now()).await?;
    print_trading_outcome(out, store, symbol_rules, &request, &outcome).await?;
    Ok(())
}

/// `settings show|set`.
pub async fn settings(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    what: SettingsCommandArg,
) -> anyhow::Result<()> {
    let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
    match what {
        SettingsCommandArg::Show { symbol } => {
            trading::rules_for(&rules, &rules_from, &symbol)?;
            let (state, _) = trading::state(store, &symbol).await?;
            print_settings(out, &symbol, &state.settings)?;
        }
        SettingsCommandArg::Set { symbol, settings } => {
            let change = SettingsChange::from(settings);
            anyhow::ensure!(
                change != SettingsChange::default(),
                "nothing to set: give at least one of --strategy, --chunks, --budget, --buy-down-interval, --profit-target, --rebuy-interval, --fee"
            );
            let symbol_rules = trading::rules_for(&rules, &rules_from, &symbol)?;
            let request = Request::Settings(change);
            let outcome = trading::command(store, symbol_rules, request.clone(), now()).await?;
            print_trading_outcome(out, store, symbol_rules, &request, &outcome).await?;
        }
    }
    Ok(())
}

/// `storing start|stop|status`.
pub async fn storing(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    what: StoringCommandArg,
) -> anyhow::Result<()> {
    use hedgehog_domain::storing::StoringCommand;
    let (topic, symbol, command) = match what {
        StoringCommandArg::Start {
            topic,
            symbol,
            backfill,
        } => (topic, symbol, StoringCommand::Start { backfill }),
        StoringCommandArg::Stop { topic, symbol } => (topic, symbol, StoringCommand::Stop),
        StoringCommandArg::Status => {
            writeln!(out, "{:<20} {:<14} ORDERS", "SYMBOL", "TRADE_EVENTS")?;
            for (symbol, state) in hedgehog_engine::storing::status(store).await? {
                let word = |topic| if state.is_on(topic) { "on" } else { "off" };
                writeln!(
                    out,
                    "{:<20} {:<14} {}",
                    symbol,
                    word(hedgehog_domain::events::StoringTopic::TradeEvents),
                    word(hedgehog_domain::events::StoringTopic::Orders)
                )?;
            }
            return Ok(());
        }
    };
    let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
    trading::rules_for(&rules, &rules_from, &symbol)?;
    let outcome = hedgehog_engine::storing::command(store, &symbol, topic, command).await?;
    let state = match command {
        StoringCommand::Start { .. } => "on",
        StoringCommand::Stop => "off",
    };
    match outcome {
        Outcome::Changed => {
            // Queries answer from up-to-date read models: apply the switch now.
            Projector::new(store.clone()).catch_up().await?;
            writeln!(out, "storing {topic} of {symbol} is now {state}")?;
        }
        Outcome::AlreadySo => writeln!(
            out,
            "storing {topic} of {symbol} was already {state}; nothing changed"
        )?,
    }
    Ok(())
}

/// `streaming start|stop|status`.
pub async fn streaming(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    what: StreamingCommandArg,
) -> anyhow::Result<()> {
    let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
    let (symbol, command) = match what {
        StreamingCommandArg::Start { symbol } => (symbol, StreamingCommand::Start),
        StreamingCommandArg::Stop { symbol } => (symbol, StreamingCommand::Stop),
        StreamingCommandArg::Status => {
            writeln!(out, "{:<20} STREAMING", "SYMBOL")?;
            for (symbol, on) in hedgehog_engine::streaming::status(store).await? {
                writeln!(out, "{:<20} {}", symbol, if on { "on" } else { "off" })?;
            }
            return Ok(());
        }
    };
    let outcome =
        hedgehog_engine::streaming::command(store, &rules, &rules_from, &symbol, command).await?;
    let state = match command {
        StreamingCommand::Start => "on",
        StreamingCommand::Stop => "off",
    };
    match outcome {
        Outcome::Changed => writeln!(out, "streaming of {symbol} is now {state}")?,
        Outcome::AlreadySo => writeln!(
            out,
            "streaming of {symbol} was already {state}; nothing changed"
        )?,
    }
    Ok(())
}

pub fn print_settings(
    out: &mut impl Write,
    symbol: &Symbol,
    s: &TradingSettings,
) -> io::Result<()> {
    writeln!(out, "settings of {symbol}:")?;
    writeln!(out, "  strategy           {}", s.strategy)?;
    writeln!(out, "  chunks             {}", s.chunks)?;
    writeln!(out, "  budget             {}", s.budget)?;
    writeln!(out, "  buy_down_interval  {}", s.buy_down_interval)?;
    writeln!(out, "  profit_target      {}", s.profit_target)?;
    writeln!(out, "  rebuy_interval     {}", s.rebuy_interval)?;
    writeln!(out, "  fee                {}", s.fee)
}

pub async fn print_trading_outcome(
    out: &mut impl Write,
    store: &Store,
    rules: &SymbolRules,
    request: &Request,
    outcome: &trading::Outcome,
) -> anyhow::Result<()> {
    let symbol = &rules.symbol;
    let status = outcome.state.status;
    if outcome.events.is_empty() {
        match request {
            Request::Settings(_) => writeln!(
                out,
                "the settings of {symbol} already have these values; nothing changed"
            )?,
            Request::Shutdown if status == TradingStatus::Off => {
                writeln!(out, "trading of {symbol} is off; nothing to shut down")?
            }
            _ => writeln!(
                out,
                "trading of {symbol} was already {status}; nothing changed"
            )?,
        }
        return Ok(());
    }
    for event in &outcome.events {
        match event {
            Event::OrderCancelled(c) => writeln!(
                out,
                "cancelled {} order {} of position {} ({} executed)",
                c.side, c.order_id, c.position_id, c.executed_quantity
            )?,
            Event::TradingStopped(s) => {
                for u in &s.unsold {
                    writeln!(
                        out,
                        "left unsold: position {}: {} {} bought at {} {}",
                        u.position_id, u.quantity, rules.base_asset, u.buy_price, rules.quote_asset
                    )?;
                }
            }
            Event::SettingsUpdated(s) => print_settings(out, symbol, &s.settings)?,
            _ => {}
        }
    }
    match request {
        Request::Settings(_) => writeln!(out, "positions opened from now on use these settings")?,
        _ => writeln!(out, "trading of {symbol} is now {status}")?,
    }
    if matches!(request, Request::Start)
        && !hedgehog_engine::streaming::is_on(store, symbol).await?
    {
        writeln!(
            out,
            "note: streaming of {symbol} is off, so no trades arrive; `hedgehog streaming start {symbol}` switches it on"
        )?;
    }
    Ok(())
}

pub fn print_trading_status(
    out: &mut impl Write,
    rules: &hedgehog_domain::exchange::ExchangeRules,
    states: &[(Symbol, TradingState)],
) -> io::Result<()> {
    writeln!(
        out,
        "{:<12} {:<9} {:>9} {:>11} {:>7} {:>16} {:>14}",
        "SYMBOL", "STATUS", "POSITIONS", "OPEN ORDERS", "CLOSED", "REALIZED PROFIT", "FEES"
    )?;
    for (symbol, state) in states {
        writeln!(
            out,
            "{:<12} {:<9} {:>9} {:>11} {:>7} {:>16} {:>14}",
            symbol,
            state.status.to_string(),
            state.positions.len(),
            state.open_orders().count(),
            state.totals.positions_closed,
            state.totals.realized_profit.round_dp(8).normalize(),
            state.totals.fees.round_dp(8).normalize(),
        )?;
    }
    for (symbol, state) in states {
        let base = rules.get(symbol).map_or("", |r| r.base_asset.as_str());
        for p in state.positions.values() {
            let stage = match (&p.buy, &p.sell) {
                (None, _) => "fresh: places its BUY on the next trade".to_owned(),
                (Some(b), None) if b.open => {
                    format!("BUY {} @ {} ({} filled)", b.quantity, b.price, b.executed)
                }
                (_, Some(s)) => {
                    format!("SELL {} @ {} ({} filled)", s.quantity, s.price, s.executed)
                }
                _ => match &p.sell_rejected {
                    Some(reason) => {
                        format!("holding {} {base}: SELL rejected: {reason}", p.bought())
                    }
                    None => format!("holding {} {base}", p.bought()),
                },
            };
            writeln!(out, "  {symbol} position {}: {stage}", p.position_id)?;
        }
        if let Some(reason) = state
            .stop_reason
            .filter(|_| state.status == TradingStatus::Off)
        {
            writeln!(out, "  {symbol} last stopped: {reason:?}")?;
        }
        let quote = rules.get(symbol).map_or("", |r| r.quote_asset.as_str());
        for u in state.left_unsold() {
            writeln!(
                out,
                "  {symbol} left unsold by a stop: position {}: {} {base} bought at {} {quote}",
                u.position_id, u.quantity, u.buy_price
            )?;
        }
    }
    Ok(())
}
