//! `run`: the engine, its HTTP API and dashboard, on paper or live.

use std::io::{self, IsTerminal, Write};

use anyhow::Context;
use std::sync::Arc;

use hedgehog::config::{self, ExchangeMode};
use hedgehog_domain::events::StoringTopic;
use hedgehog_domain::paper_exchange::{FeeAsset, PaperExchange};
use hedgehog_domain::strategy::Strategies;
use hedgehog_domain::streaming::StreamingCommand;
use hedgehog_domain::Symbol;
use hedgehog_engine::trading::{self, Request};
use hedgehog_engine::{self as engine, EngineOptions, LiveOptions};
use hedgehog_ingest::streamer::StreamerStats;
use hedgehog_projections::Projector;
use hedgehog_runtime::time::now;
use hedgehog_store::{Store, StreamId};

use super::*;

/// `run`: trades every symbol whose trading is on until SIGINT or SIGTERM.
pub async fn run(
    out: &mut impl Write,
    store: &Store,
    config: &config::Config,
    live: bool,
    no_http: bool,
) -> anyhow::Result<()> {
    let signals = StopSignal::listen();
    let exchange = config.exchange.mode;
    let binance_ws_url = config.exchange.stream_url.clone();
    let http = config.http.bind;
    let live = live_venue(
        exchange,
        live,
        config.exchange.api_url.clone(),
        config.exchange.ws_api_url.clone(),
    )
    .await?;
    let (rules, rules_from) = match &live {
        Some((_, rules)) => (rules.clone(), format!("{} (live)", exchange.name())),
        None => exchange_rules(config.exchange.info.as_deref())?,
    };
    let live = live.map(|(live, _)| live);
    let by_config = hedgehog_engine::actor::Actor::config().on(store);
    first_start(&by_config, config, &rules, &rules_from).await?;
    let rules = Arc::new(rules);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let updates = Projector::channel();
    let readiness = hedgehog_engine::readiness::Readiness::new();
    let server = if no_http {
        None
    } else {
        let (auth, access) = api_auth(config)?;
        hedgehog_http::check_bind(http, &auth)?;
        let listener = tokio::net::TcpListener::bind(http)
            .await
            .with_context(|| format!("cannot serve the HTTP API on {http} (--http)"))?;
        let bound = listener.local_addr()?;
        writeln!(out, "http API on http://{bound}")?;
        print_access(out, bound, &access)?;
        out.flush()?;
        let api = hedgehog_http::Api {
            store: store.clone(),
            rules: Arc::clone(&rules),
            rules_from,
            auth,
            strategy: config.strategy.settings(),
            strategies: Strategies::default(),
            clock: now,
            tail: hedgehog_http::tail::Tail::start(store.clone(), stop.subscribe()).await?,
            updates: updates.clone(),
            stopping: stop.subscribe(),
            allowed: hedgehog_http::Allowed {
                hosts: config.http.allowed_hosts.clone(),
                origins: config.http.allowed_origins.clone(),
                bound: None,
            },
            readiness: Some(readiness.clone()),
        };
        let mut stopping = stop.subscribe();
        let shutdown = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        Some(tokio::spawn(hedgehog_http::serve(listener, api, shutdown)))
    };
    let options = EngineOptions {
        strategies: Default::default(),
        binance_ws_url,
        backfill: config.exchange.backfill(),
        idle_timeout: config.exchange.idle_timeout(),
        paper: PaperExchange {
            fill: config.exchange.fill,
            partial_fills: config.exchange.partial_fills,
            fee_asset: config
                .exchange
                .fee_asset
                .as_deref()
                .map(|asset| FeeAsset::new(asset, config.exchange.fee_asset_price)),
        },
        rules,
        updates: Some(updates),
        live,
        readiness,
        snapshot_every: config.engine.snapshot_every,
        probe: None,
        cluster: engine::cluster::ClusterOptions::for_this_process(
            config.cluster.node.as_deref(),
            Some(std::time::Duration::from_secs(
                config.cluster.lease_ttl_secs,
            )),
        ),
    };
    if let Some(days) = config.archive.older_than_days {
        tokio::spawn(archive_every_hour(store.clone(), days, stop.subscribe()));
    }
    let stats = Arc::new(StreamerStats::default());
    let run = engine::run(store.clone(), options, Arc::clone(&stats), stopped);
    let task = tokio::spawn(async move { run.await.map_err(anyhow::Error::from) });
    let ran = until_signal(task, stop.clone(), signals).await;
    let _ = stop.send(true);
    if let Some(server) = server {
        server.await?.context("the HTTP API failed")?;
    }
    ran?;
    writeln!(out, "{}", stats.summary())?;
    Ok(())
}

/// `archive.older_than_days`: seals the market trades older than that at the start and every
/// hour until the engine stops. A seal that fails is logged and tried again the next hour:
/// nothing is lost, the trades stay rows.
async fn archive_every_hour(
    store: hedgehog_store::Store,
    days: u32,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = hourly.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        match store.seal(super::log::cut_of(days), |_| {}).await {
            Ok(sealed) if sealed.trades > 0 => tracing::info!(
                trades = sealed.trades,
                segments = sealed.segments,
                bytes = sealed.bytes,
                "sealed market trades older than {days} days"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot seal old market trades; trying again in an hour")
            }
        }
    }
}

/// The configuration's `[symbols]`: each is switched on once, by the first start that finds it
/// never switched (a later `streaming stop` or `trading stop` is not undone at the next start).
/// How the API's users get in, for the lines `run` prints.
pub enum Access {
    Off,
    Configured,
    /// The token `run` keeps in a file (made now when `made`).
    File {
        path: std::path::PathBuf,
        token: String,
        made: bool,
    },
}

/// The API's authentication from the configuration: its tokens, or off.
pub fn api_auth(config: &config::Config) -> anyhow::Result<(hedgehog_http::auth::Auth, Access)> {
    use hedgehog_http::auth::{self, Auth, DEFAULT_TOKEN_NAME};
    let http = &config.http;
    if http.auth == config::AuthMode::Off {
        tracing::warn!(
            "HTTP API authentication is off (http.auth = \"off\"): any program on this machine \
             can read positions and trade"
        );
        return Ok((Auth::off(), Access::Off));
    }
    let (token, access) = match http.token.as_ref().filter(|t| !t.is_empty()) {
        Some(token) => (token.clone(), Access::Configured),
        None => {
            let path = http
                .token_file
                .clone()
                .or_else(|| auth::default_token_file(&config.database_url))
                .context("no place for the API token: set http.token, or http.token_file")?;
            let (token, made) = auth::load_or_create_token(&path)?;
            (token.clone(), Access::File { path, token, made })
        }
    };
    let mut tokens = vec![(DEFAULT_TOKEN_NAME.to_owned(), token)];
    for (name, token) in &http.tokens {
        anyhow::ensure!(
            name != DEFAULT_TOKEN_NAME,
            "http.tokens: the name {DEFAULT_TOKEN_NAME:?} is http.token's; give this token another"
        );
        tokens.push((name.clone(), token.clone()));
    }
    Ok((
        Auth::with_tokens(tokens).context("http.token / http.tokens")?,
        access,
    ))
}

/// Where the dashboard is, and how to get in: the link with the made token when a person is
/// watching (as Jupyter does; only the owner can read the file anyway), else where the token is.
/// The token never goes to a log.
pub fn print_access(
    out: &mut impl Write,
    bound: std::net::SocketAddr,
    access: &Access,
) -> io::Result<()> {
    let host = if bound.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], bound.port()))
    } else {
        bound
    };
    match access {
        Access::Off => writeln!(
            out,
            "dashboard on http://{host}/ (authentication off: anyone on this machine can trade)"
        ),
        Access::Configured => writeln!(
            out,
            "dashboard on http://{host}/ (sign in with the configured API token)"
        ),
        Access::File { path, token, made } => {
            let made = if *made { "made now, " } else { "" };
            if io::stdout().is_terminal() {
                writeln!(out, "dashboard on http://{host}/#token={token}")?;
            } else {
                writeln!(out, "dashboard on http://{host}/")?;
            }
            writeln!(
                out,
                "API token ({made}readable by you only) in {}; scripts send `Authorization: Bearer TOKEN`",
                path.display()
            )
        }
    }
}

pub async fn first_start(
    store: &Store,
    config: &config::Config,
    rules: &hedgehog_domain::exchange::ExchangeRules,
    rules_from: &str,
) -> anyhow::Result<()> {
    for symbol in &config.symbols.stream {
        if store.stream_version(&StreamId::streaming(symbol)).await? == 0 {
            hedgehog_engine::streaming::command(
                store,
                rules,
                rules_from,
                symbol,
                StreamingCommand::Start,
            )
            .await
            .with_context(|| format!("symbols.stream: {symbol}"))?;
            tracing::info!(%symbol, "streaming switched on (configuration: symbols.stream)");
        }
    }
    let storing = [
        (StoringTopic::TradeEvents, config.storing.trade_events),
        (StoringTopic::Orders, config.storing.orders),
    ];
    let symbols: std::collections::BTreeSet<&Symbol> = config
        .symbols
        .stream
        .iter()
        .chain(&config.symbols.trade)
        .collect();
    for symbol in symbols {
        if store.stream_version(&StreamId::storing(symbol)).await? > 0 {
            continue;
        }
        for (topic, on) in storing {
            if !on {
                hedgehog_engine::storing::command(
                    store,
                    symbol,
                    topic,
                    hedgehog_domain::storing::StoringCommand::Stop,
                )
                .await?;
                tracing::info!(%symbol, %topic, "not stored (configuration: storing)");
            }
        }
    }
    for symbol in &config.symbols.trade {
        if store.stream_version(&StreamId::trading(symbol)).await? == 0 {
            let symbol_rules = trading::rules_for(rules, rules_from, symbol)
                .with_context(|| format!("symbols.trade: {symbol}"))?;
            trading::apply_default_settings(
                store,
                symbol_rules,
                &Strategies::default(),
                &config.strategy.settings(),
                now(),
            )
            .await?;
            trading::command(store, symbol_rules, Request::Start, now())
                .await
                .with_context(|| format!("symbols.trade: {symbol}"))?;
            tracing::info!(%symbol, "trading switched on (configuration: symbols.trade)");
        }
    }
    Ok(())
}

/// Live trading's set-up, or why it is refused: it needs a Binance exchange, `--live`, and both
/// keys. Then it checks the venue before anything trades: the clock offset, the symbols'
/// filters (which replace the bundled ones), and that the key may trade.
pub async fn live_venue(
    exchange: ExchangeMode,
    live: bool,
    api_url: Option<String>,
    ws_api_url: Option<String>,
) -> anyhow::Result<Option<(LiveOptions, hedgehog_domain::exchange::ExchangeRules)>> {
    use hedgehog_binance::rest::{Credentials, RestClient, SPOT_TESTNET_URL, SPOT_URL};
    use hedgehog_binance::user_stream::{SPOT_TESTNET_WS_API_URL, SPOT_WS_API_URL};
    let (rest_default, ws_default) = match exchange {
        ExchangeMode::Paper => {
            anyhow::ensure!(
                !live,
                "--live sends real orders, but --exchange is paper: add --exchange binance (or binance-testnet) to trade live, or drop --live"
            );
            return Ok(None);
        }
        ExchangeMode::Binance => (SPOT_URL, SPOT_WS_API_URL),
        ExchangeMode::BinanceTestnet => (SPOT_TESTNET_URL, SPOT_TESTNET_WS_API_URL),
    };
    let name = exchange.name();
    anyhow::ensure!(
        live,
        "refusing to trade on {name} without --live: its orders are real (on the testnet, with test funds); add --live to confirm, or use --exchange paper"
    );
    let credentials = Credentials::from_env()?.ok_or_else(|| {
        anyhow::anyhow!(
            "refusing to trade on {name}: BINANCE_API_KEY and BINANCE_API_SECRET are not set; export both (they are read from the environment only, never logged or stored)"
        )
    })?;
    let api_url = api_url.unwrap_or_else(|| rest_default.to_owned());
    let rest = RestClient::new(
        &api_url,
        Some(credentials.clone()),
        hedgehog_binance::rest::TIMEOUT,
    );
    let offset = rest
        .sync_time()
        .await
        .with_context(|| format!("cannot reach {name} at {api_url}"))?;
    let (rules, limits) = rest
        .exchange_info()
        .await
        .with_context(|| format!("cannot read {name}'s exchange info at {api_url}"))?;
    let account = rest
        .account()
        .await
        .with_context(|| format!("cannot read the account on {name}"))?;
    anyhow::ensure!(
        account.can_trade,
        "the API key's account cannot trade on {name}: enable spot trading for the key"
    );
    tracing::info!(
        exchange = name,
        api_url,
        clock_offset_ms = offset,
        symbols = rules.symbols.len(),
        rate_limits = limits.len(),
        "trading live"
    );
    let live = LiveOptions {
        venue: hedgehog_binance::live::Venue::new(rest, rules.clone()),
        ws_api_url: ws_api_url.unwrap_or_else(|| ws_default.to_owned()),
        credentials,
    };
    Ok(Some((live, rules)))
}

/// Waits for a long-running task: on SIGINT or SIGTERM it asks the task to stop (it stops taking
/// input, flushes what is pending) and waits for it; a task that ends by itself (only on an
/// error) ends the wait with its result.
pub async fn until_signal(
    mut task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
    signals: StopSignal,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = signals.recv() => {
            let _ = stop.send(true);
            (&mut task).await?
        }
        finished = &mut task => finished?,
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, heard from the moment it is made: a long-running command makes
/// it first, so a signal that comes while it is still starting (applying its configuration,
/// binding its port) stops it cleanly once it runs instead of killing it half-way.
pub struct StopSignal {
    term: Option<tokio::signal::unix::Signal>,
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignal {
    pub fn listen() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignal {
            term: signal(SignalKind::terminate()).ok(),
            interrupt: signal(SignalKind::interrupt()).ok(),
        }
    }

    /// Resolves on the first SIGINT or SIGTERM since [`StopSignal::listen`].
    pub async fn recv(mut self) {
        if self.term.is_none() && self.interrupt.is_none() {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
        tokio::select! {
            () = heard(self.term.as_mut()) => {}
            () = heard(self.interrupt.as_mut()) => {}
        }
    }
}

/// One signal's next delivery; never, without its listener.
async fn heard(signal: Option<&mut tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}
