//! The simulated Binance: `exchange serve` and `replay-server`.

use std::io::{self, Write};

use hedgehog::config::{self};
use hedgehog_binance::exchange_info;
use hedgehog_ingest::import::ImportOptions;
use rust_decimal::Decimal;

use super::args::*;
use super::run::StopSignal;

/// `hedgehog exchange serve`: fills in what the options leave open (the exchange info, fresh
/// keys), binds, says where, and serves until a signal.
pub async fn exchange_serve(
    exchange_info_file: Option<&std::path::Path>,
    mut options: hedgehog_sim::exchange::ExchangeOptions,
    port: u16,
) -> anyhow::Result<()> {
    let signals = StopSignal::listen();
    use hedgehog_sim::exchange::ExchangeServer;
    anyhow::ensure!(
        options.speed >= 0.0 && options.speed.is_finite(),
        "--speed must be 0 or more, not {}",
        options.speed
    );
    anyhow::ensure!(
        options.commission >= Decimal::ZERO && options.commission < Decimal::ONE,
        "--commission must be in [0, 1), not {}",
        options.commission
    );
    (options.exchange_info_json, options.exchange_info_origin) = exchange_info(exchange_info_file)?;
    let mut fresh = Vec::new();
    let mut fill = |value: &mut String, what: &'static str| {
        if value.is_empty() {
            *value = fresh_secret();
            fresh.push(what);
        }
    };
    fill(&mut options.api_key, "api key");
    fill(&mut options.secret, "api secret");
    let server = ExchangeServer::bind(([127, 0, 0, 1], port).into(), options.clone()).await?;
    let addr = server.local_addr()?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "paper exchange on http://{addr} ({} trades to play)",
        server.trades()
    )?;
    writeln!(out, "  REST              http://{addr}/api/v3")?;
    writeln!(
        out,
        "  trade stream      ws://{addr}/stream?streams=<symbol>@trade"
    )?;
    writeln!(out, "  user data stream  ws://{addr}/ws-api/v3")?;
    // Keys this exchange issued itself are shown once, to whoever started it.
    if fresh.contains(&"api key") {
        writeln!(out, "  api key           {}", options.api_key)?;
    }
    if fresh.contains(&"api secret") {
        writeln!(out, "  api secret        {}", options.secret)?;
    }
    out.flush()?;
    drop(out);
    server.serve(signals.recv()).await;
    Ok(())
}

/// `replay-server`: the simulated Binance playing recorded trades as Binance's trade stream,
/// with connections cut and resumed for testing clients (`--drop-every`, `--resume-overlap`).
pub async fn replay_server(config: &config::Config, args: ReplayArgs) -> anyhow::Result<()> {
    let signals = StopSignal::listen();
    use hedgehog_sim::exchange::{Cuts, ExchangeOptions, ExchangeServer, Start};
    let ReplayArgs {
        files,
        port,
        speed,
        drop_every,
        resume_overlap,
        symbol,
        format,
    } = args;
    anyhow::ensure!(
        speed >= 0.0 && speed.is_finite(),
        "--speed must be 0 or more, not {speed}"
    );
    let (exchange_info_json, exchange_info_origin) =
        exchange_info(config.exchange.info.as_deref())?;
    let options = ExchangeOptions {
        files,
        speed,
        start: Start::FirstStreamClient,
        import: ImportOptions {
            symbol,
            format,
            ..ImportOptions::default()
        },
        // Nobody trades on a replay: keys nobody knows.
        api_key: fresh_secret(),
        secret: fresh_secret(),
        balances: Vec::new(),
        commission: Decimal::ZERO,
        exchange_info_json,
        exchange_info_origin,
        follow: None,
        clock_skew_ms: 0,
        cuts: Some(Cuts {
            drop_every,
            resume_overlap,
        }),
    };
    let server = ExchangeServer::bind(([127, 0, 0, 1], port).into(), options).await?;
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "listening on ws://{} ({} trades)",
        server.local_addr()?,
        server.trades()
    )?;
    out.flush()?;
    drop(out);
    server.serve(signals.recv()).await;
    Ok(())
}

/// The exchange info a simulated Binance serves: the file given, or the bundled snapshot; its
/// text and where it comes from (the exchange parses it, and names that in its errors).
fn exchange_info(file: Option<&std::path::Path>) -> anyhow::Result<(String, String)> {
    Ok(match file {
        Some(path) => (exchange_info::load_json(path)?, path.display().to_string()),
        None => (
            exchange_info::bundled_json()?,
            "bundled exchange info".to_owned(),
        ),
    })
}

/// 64 random letters and digits.
fn fresh_secret() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 64)
}

/// `exchange serve`.
pub async fn exchange(config: &config::Config, what: ExchangeCommandArg) -> anyhow::Result<()> {
    let ExchangeCommandArg::Serve {
        files,
        port,
        speed,
        start,
        balances,
        commission,
        api_key,
        api_secret,
        symbol,
        format,
        follow,
        follow_symbols,
        follow_depth,
    } = what;
    exchange_serve(
        config.exchange.info.as_deref(),
        hedgehog_sim::exchange::ExchangeOptions {
            files,
            speed,
            start: match start {
                StartArg::Stream => hedgehog_sim::exchange::Start::FirstStreamClient,
                StartArg::Now => hedgehog_sim::exchange::Start::Now,
            },
            import: ImportOptions {
                symbol,
                format,
                ..ImportOptions::default()
            },
            api_key: api_key.unwrap_or_default(),
            secret: api_secret.unwrap_or_default(),
            balances,
            commission,
            exchange_info_json: String::new(),
            exchange_info_origin: String::new(),
            follow: follow.map(|url| hedgehog_sim::exchange::Follow {
                url,
                symbols: follow_symbols,
                depth: follow_depth,
            }),
            clock_skew_ms: 0,
            cuts: None,
        },
        port,
    )
    .await
}
