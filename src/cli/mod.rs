//! The subcommands, one module each; this module dispatches to them and holds what they share
//! (opening the store, the exchange rules, the broken-pipe test).
//!
//! Each subcommand's module does its work through the library and prints what it did: the
//! library never prints.

use std::io::{self, Write};

use anyhow::Context;
use hedgehog::config;
use hedgehog_binance::exchange_info;
use hedgehog_store::{redact_url, Store};

pub mod args;
mod backtest;
mod cluster;
mod exchange;
mod log;
mod market;
mod query;
mod run;
mod trading;

use args::*;

/// Carries out `cli.command` with the loaded configuration.
pub async fn dispatch(cli: Cli, loaded: config::Loaded) -> anyhow::Result<()> {
    let config = loaded.config.clone();
    let mut out = io::stdout().lock();
    // What needs no store (or opens it only when it must).
    match cli.command {
        Command::Run {
            print_config: true, ..
        } => return print_config_json(&mut out, &loaded),
        Command::Config { what } => return config_show(&mut out, &loaded, what),
        Command::ReplayServer(args) => {
            drop(out);
            return exchange::replay_server(&config, args).await;
        }
        Command::Exchange { what } => {
            drop(out);
            return exchange::exchange(&config, what).await;
        }
        Command::Backtest(args) => {
            drop(out);
            // A run over files that keeps nothing never opens (or creates) a store.
            let store = if args.data.is_empty() || args.keep {
                Some(open_store(&config.database_url).await?)
            } else {
                None
            };
            backtest::backtest(store.as_ref(), config.exchange.info.as_deref(), *args).await?;
            if let Some(store) = store {
                store.close().await?;
            }
            return Ok(());
        }
        command => {
            let store = open_store(&config.database_url).await?;
            // Commands record who sent them; `run` records the configuration it applies as
            // the user's, and its engine's own decisions as no one's.
            let store = match command {
                Command::Run { .. } => store,
                _ => hedgehog_engine::actor::Actor::cli().on(&store),
            };
            with_store(&mut out, &store, &config, command).await?;
            store.close().await?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The subcommands that work on the store.
async fn with_store(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    command: Command,
) -> anyhow::Result<()> {
    match command {
        Command::Status => log::status(out, store, config).await,
        Command::Streams => log::streams(out, store).await,
        Command::Cluster {
            what: ClusterCommandArg::Status { format },
        } => cluster::status(out, store, format).await,
        Command::Events {
            stream,
            from,
            limit,
            format,
        } => log::events(out, store, stream, from, limit, format).await,
        Command::Projections { what } => log::projections(out, store, what).await,
        Command::Archive {
            before,
            older_than_days,
            compact,
        } => log::archive(out, store, config, before, older_than_days, compact).await,
        Command::Trading { what } => trading::trading(out, store, config, what).await,
        Command::Settings { what } => trading::settings(out, store, config, what).await,
        Command::Storing { what } => trading::storing(out, store, config, what).await,
        Command::Streaming { what } => trading::streaming(out, store, config, what).await,
        Command::Run { live, no_http, .. } => run::run(out, store, config, live, no_http).await,
        Command::Stream { symbols, .. } => market::stream(out, store, config, symbols).await,
        Command::Import { what } => market::import(out, store, what).await,
        Command::Ohlc {
            symbol,
            interval,
            window,
        } => query::ohlc(out, store, symbol, interval, window).await,
        Command::Orders {
            symbol,
            status,
            run,
            format,
        } => query::orders(out, store, symbol, status, run, format).await,
        Command::Trades { symbol, window } => query::trades(out, store, symbol, window).await,
        Command::ReplayServer(_)
        | Command::Exchange { .. }
        | Command::Backtest(_)
        | Command::Config { .. } => unreachable!("dispatched before the store is opened"),
    }
}

/// `config show`.
fn config_show(
    out: &mut impl Write,
    loaded: &config::Loaded,
    what: ConfigCommandArg,
) -> anyhow::Result<()> {
    match what {
        ConfigCommandArg::Show { format } => {
            let rows = loaded.show();
            match format {
                Format::Json => print_config_json(out, loaded)?,
                _ => {
                    match &loaded.file {
                        Some(file) => writeln!(out, "# file: {}", file.display())?,
                        None => writeln!(out, "# no configuration file")?,
                    }
                    writeln!(out, "{:<32} {:<40} FROM", "KEY", "VALUE")?;
                    for (key, value, origin) in rows {
                        writeln!(out, "{key:<32} {value:<40} {origin}")?;
                    }
                }
            }
        }
        ConfigCommandArg::Init => unreachable!("handled before the configuration is read"),
    }
    Ok(())
}

/// Every key, its value and where it came from, as JSON.
pub fn print_config_json(out: &mut impl Write, loaded: &config::Loaded) -> anyhow::Result<()> {
    let rows: Vec<_> = loaded
        .show()
        .iter()
        .map(|(key, value, origin)| serde_json::json!({ "key": key, "value": value, "from": origin }))
        .collect();
    writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    Ok(())
}

pub async fn open_store(url: &str) -> anyhow::Result<Store> {
    Store::open(url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(url)))
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io = cause.downcast_ref::<io::Error>().or_else(|| {
            cause
                .downcast_ref::<csv::Error>()
                .and_then(|c| match c.kind() {
                    csv::ErrorKind::Io(io) => Some(io),
                    _ => None,
                })
        });
        io.is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The exchange's symbols and filters, and where they came from (for error messages).
pub fn exchange_rules(
    file: Option<&std::path::Path>,
) -> anyhow::Result<(hedgehog_domain::exchange::ExchangeRules, String)> {
    Ok(match file {
        Some(path) => (exchange_info::load(path)?, path.display().to_string()),
        None => (
            exchange_info::bundled()?,
            "the bundled snapshot of 2024-09-08".to_owned(),
        ),
    })
}
