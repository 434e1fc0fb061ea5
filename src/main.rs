//! The `hedgehog` command line: the binary's edge, where errors become messages and exit codes.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hedgehog::backtest;
use hedgehog::config::{self, ExchangeMode};
use hedgehog::domain::events::StoringTopic;
use hedgehog::domain::exchange::SymbolRules;
use hedgehog::domain::paper_exchange::{FeeAsset, FillModel, PaperExchange};
use hedgehog::domain::streaming::StreamingCommand;
use hedgehog::domain::trading::TradingState;
use hedgehog::domain::{Event, Symbol, TradingSettings, TradingStatus};
use hedgehog::engine::{self, EngineOptions, LiveOptions};
use hedgehog::exchange_info;
use hedgehog::import::{self, ImportOptions};
use hedgehog::replay_server::{ReplayOptions, ReplayServer};
use hedgehog::store::{redact_url, RecordedEvent, Store, StreamId};
use hedgehog::streamer::{self, StreamerOptions, StreamerStats};
use hedgehog::streaming::Outcome;
use hedgehog::time::{format_time, now, parse_time};
use hedgehog::trading::{self, Request, SettingsChange};
use hedgehog_projections::candles::Interval;
use hedgehog_projections::query::{self, Window};
use hedgehog_projections::Projector;
use indicatif::{ProgressBar, ProgressStyle};
use rust_decimal::Decimal;

#[derive(Debug, Parser)]
#[command(
    name = "hedgehog",
    version,
    about = "Event-sourced crypto trading engine"
)]
struct Cli {
    /// The configuration file (default: HEDGEHOG_CONFIG, else ./hedgehog.toml if present).
    /// Flags override the environment, which overrides the file; see `hedgehog config show`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,

    /// Where the event store lives: sqlite://PATH (created if missing) or postgres://USER@HOST/DB
    /// [config: database_url; env: DATABASE_URL; default: sqlite://hedgehog.db].
    #[arg(long, global = true)]
    database_url: Option<String>,

    /// Binance exchangeInfo JSON (plain or .gz) with the symbols and their filters; default: the
    /// bundled snapshot of 2024-09-08 [config: exchange.info].
    #[arg(long, global = true)]
    exchange_info: Option<PathBuf>,

    /// Log filter, e.g. info or warn,hedgehog=debug [config: log.level].
    #[arg(long, global = true)]
    log_level: Option<String>,

    /// Log lines as text or JSON [config: log.format].
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Summarise the store: backend, events, streams, last position.
    Status,
    /// List every stream with its version (number of events).
    Streams,
    /// Print events of the global log, or of one stream, in order.
    Events {
        /// Only this stream (e.g. trades-BTCUSDT); default: the global log ($all).
        #[arg(long)]
        stream: Option<String>,
        /// First position (or stream version, with --stream) to print.
        #[arg(long, default_value_t = 1)]
        from: i64,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Bring market data into the store.
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Stream live trades into the store until SIGINT or SIGTERM: the given symbols, or without
    /// --symbol every symbol whose streaming is on, following `streaming start` / `stop` live.
    Stream {
        /// A symbol to stream (repeatable).
        #[arg(long = "symbol")]
        symbols: Vec<Symbol>,
        #[command(flatten)]
        source: StreamSourceArgs,
    },
    /// Switch the streaming of a symbol's trades on or off (the running streamer follows).
    Streaming {
        #[command(subcommand)]
        what: StreamingCommandArg,
    },
    /// The data warehouse's switches: whether a symbol's trade_events and orders rows are
    /// stored (the events always are).
    Storing {
        #[command(subcommand)]
        what: StoringCommandArg,
    },
    /// Switch a symbol's trading on, off, or into shutdown; show its status. The strategy is the
    /// book's naive one: each trade, every position takes one step (place its BUY, place its
    /// SELL, fill, finish and be replaced, or add a rebuy position), in the book's order.
    Trading {
        #[command(subcommand)]
        what: TradingCommandArg,
    },
    /// Show or change a symbol's strategy settings (they apply to positions added after).
    Settings {
        #[command(subcommand)]
        what: SettingsCommandArg,
    },
    /// Run the engine until SIGINT or SIGTERM: stream every symbol whose streaming is on and
    /// paper-trade every symbol whose trading is on or in shutdown, following commands from any
    /// process.
    Run {
        #[command(flatten)]
        source: StreamSourceArgs,
        /// Where orders go: the paper exchange (filled from the trade stream), Binance, or
        /// Binance's spot testnet. Binance needs --live and BINANCE_API_KEY / BINANCE_API_SECRET
        /// [config: exchange.mode; default: paper].
        #[arg(long, value_enum)]
        exchange: Option<ExchangeArg>,
        /// Confirms that orders go to the exchange for real (with --exchange binance or
        /// binance-testnet).
        #[arg(long)]
        live: bool,
        /// Binance's REST base URL (default: the chosen exchange's), e.g. a `hedgehog exchange
        /// serve` on 127.0.0.1.
        #[arg(long)]
        binance_api_url: Option<String>,
        /// Binance's WebSocket API URL, which carries the user data stream (default: the
        /// chosen exchange's).
        #[arg(long)]
        binance_ws_api_url: Option<String>,
        /// When a trade fills a resting order: cross (price goes through it) or touch (at it)
        /// [config: exchange.fill].
        #[arg(long, value_enum)]
        fill: Option<FillArg>,
        /// Cap each paper fill at the trade's quantity [config: exchange.partial_fills].
        #[arg(long)]
        partial_fills: bool,
        /// Serve the HTTP command API here (port 0: any free port; the address is printed)
        /// [config: http.bind; default: 127.0.0.1:8080].
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// Do not serve the HTTP API.
        #[arg(long, conflicts_with = "http")]
        no_http: bool,
        /// Print the effective configuration with these flags (as `config show --format
        /// json`) and exit without starting.
        #[arg(long)]
        print_config: bool,
        /// The API's token (`Authorization: Bearer`); without one, `run` makes one and keeps
        /// it in http.token_file [config: http.token; env: HEDGEHOG_API_TOKEN, which unlike
        /// this flag no other user can see in the process list].
        #[arg(long)]
        api_token: Option<String>,
        /// Serve the API without authentication: on a loopback address only, and any program
        /// on this machine can then trade [config: http.auth = "off"].
        #[arg(long, conflicts_with = "api_token")]
        no_auth: bool,
    },
    /// The configuration: where each value comes from, and an example file.
    Config {
        #[command(subcommand)]
        what: ConfigCommandArg,
    },
    /// The read models: where each projection stands, and rebuilding them from the log.
    Projections {
        #[command(subcommand)]
        what: ProjectionsCommandArg,
    },
    /// OHLC candles of a symbol, with Binance's kline fields (from the `candles` read model).
    Ohlc {
        symbol: Symbol,
        /// 1m, 5m, 15m, 1h, 4h or 1d.
        #[arg(long, default_value = "1m")]
        interval: Interval,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Orders, from the `orders` read model, in the order they were placed.
    Orders {
        /// Only this symbol's.
        symbol: Option<Symbol>,
        /// Only orders in this status.
        #[arg(long, value_enum)]
        status: Option<OrderStatusArg>,
        /// The orders of this kept backtest run (`backtest --keep` prints its id) instead of the
        /// live ones.
        #[arg(long)]
        run: Option<String>,
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
    /// Stored market trades of a symbol in the exchange's order (trade id), from the
    /// `trade_events` read model.
    Trades {
        symbol: Symbol,
        #[command(flatten)]
        window: WindowArgs,
    },
    /// Replay trades through the strategy and the paper exchange, as live trading would have
    /// decided them, and report: from the store (the symbol's trades in the window), or from
    /// files with --data, in trade-id order either way. Deterministic: the same trades and
    /// settings give the same fingerprint.
    Backtest(Box<BacktestArgs>),
    /// The paper exchange behind Binance's spot API on 127.0.0.1, for any Binance client.
    Exchange {
        #[command(subcommand)]
        what: ExchangeCommandArg,
    },
    /// Serve recorded trades as Binance's combined trade stream on 127.0.0.1.
    ReplayServer {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 9443)]
        port: u16,
        /// 1 plays at real pace, 10 ten times faster, 0 as fast as possible.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Cut the connection after this many messages, to exercise reconnects (0: never).
        #[arg(long, default_value_t = 0)]
        drop_every: u64,
        /// Messages a new connection repeats from before where the last one was cut.
        #[arg(long, default_value_t = hedgehog::replay_server::RESUME_OVERLAP)]
        resume_overlap: usize,
        /// Symbol for files whose rows carry none.
        #[arg(long)]
        symbol: Option<Symbol>,
        #[arg(long, value_enum)]
        format: Option<import::Format>,
    },
}

#[derive(Debug, Subcommand)]
enum ExchangeCommandArg {
    /// Serve REST (/api/v3: ping, time, exchangeInfo, order, openOrders, account, myTrades),
    /// the trade stream (/stream, /ws) and the user data stream (/ws-api/v3) on one port,
    /// filling orders from the recorded trades it plays (once the first trade-stream client
    /// connects).
    Serve {
        /// Recorded trades to play (any format `import trades` reads); none: orders rest.
        files: Vec<PathBuf>,
        /// Port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 9080)]
        port: u16,
        /// 1 plays at real pace, 10 ten times faster, 0 as fast as possible.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// What the account holds at start, as ASSET=AMOUNT (repeatable).
        #[arg(long = "balance", value_parser = parse_balance, default_values = ["USDT=10000"])]
        balances: Vec<(String, Decimal)>,
        /// Commission rate per fill, charged in the asset received.
        #[arg(long, default_value = "0.001")]
        commission: Decimal,
        /// The API key clients must send (default: a fresh one, printed).
        #[arg(long, env = "HEDGEHOG_EXCHANGE_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// The secret they sign with (default: a fresh one, printed).
        #[arg(long, env = "HEDGEHOG_EXCHANGE_API_SECRET", hide_env_values = true)]
        api_secret: Option<String>,
        /// Symbol for files whose rows carry none.
        #[arg(long)]
        symbol: Option<Symbol>,
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// Also fill from a live trade stream (Binance's, e.g. wss://stream.binance.com:9443,
        /// or a replay server's), following the --follow-symbol symbols on it.
        #[arg(long, requires = "follow_symbols")]
        follow: Option<String>,
        /// A symbol to follow on --follow (repeatable).
        #[arg(long = "follow-symbol", requires = "follow")]
        follow_symbols: Vec<Symbol>,
    },
}

/// `ASSET=AMOUNT`, as `--balance` takes it.
fn parse_balance(text: &str) -> Result<(String, Decimal), String> {
    let (asset, amount) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ASSET=AMOUNT (e.g. USDT=10000), got {text:?}"))?;
    let amount: Decimal = amount
        .parse()
        .map_err(|e| format!("the amount of {asset} ({amount:?}) is not a number: {e}"))?;
    if asset.is_empty() || !asset.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("{asset:?} is not an asset name (e.g. USDT)"));
    }
    if amount < Decimal::ZERO {
        return Err(format!(
            "the amount of {asset} must not be negative, got {amount}"
        ));
    }
    Ok((asset.to_ascii_uppercase(), amount))
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommandArg {
    /// Each projection's checkpoint and how far behind the log it is.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Empty the named projections (all without a name) and project them again from position 0.
    /// The store stays usable meanwhile; a running engine's projector follows along.
    Rebuild {
        /// trade_events, orders, backtest_orders, trading_settings, streaming_settings or candles.
        names: Vec<String>,
    },
}

/// Where trades stream from and gaps are filled from: what `stream` and `run` share.
#[derive(Debug, Clone, clap::Args)]
struct StreamSourceArgs {
    /// Binance's websocket base URL, or a replay server's [config: exchange.stream_url].
    #[arg(long)]
    binance_ws_url: Option<String>,
    /// Binance's spot REST URL, whose historicalTrades fill gaps in the stream [config:
    /// exchange.backfill_url; default: Binance's while streaming from Binance].
    #[arg(long)]
    backfill_url: Option<String>,
}

impl StreamSourceArgs {
    /// The configuration keys these flags set, with their values.
    fn keys(&self) -> impl Iterator<Item = (&'static str, serde_json::Value)> + '_ {
        [
            ("exchange.stream_url", &self.binance_ws_url),
            ("exchange.backfill_url", &self.backfill_url),
        ]
        .into_iter()
        .filter_map(|(key, url)| Some((key, url.as_deref()?.into())))
    }
}

/// A time window, a market and an output format: what the queries over time share.
#[derive(Debug, Clone, clap::Args)]
struct WindowArgs {
    /// From this time on (candles by open time), inclusive: ms since the epoch, 2024-08-08 or
    /// 2024-08-08T10:00:00Z (UTC).
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// Up to this time, inclusive (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    #[arg(long, value_enum, default_value_t = import::Market::Spot)]
    market: import::Market,
    /// table, csv (for candles: Binance's kline columns, times in ms) or json.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
}

impl WindowArgs {
    fn window(&self) -> Window {
        Window {
            from: self.from,
            to: self.to,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum QueryFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OrderStatusArg {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
}

impl OrderStatusArg {
    fn as_str(self) -> &'static str {
        match self {
            OrderStatusArg::New => "NEW",
            OrderStatusArg::PartiallyFilled => "PARTIALLY_FILLED",
            OrderStatusArg::Filled => "FILLED",
            OrderStatusArg::Canceled => "CANCELED",
        }
    }
}

#[derive(Debug, Subcommand)]
enum StreamingCommandArg {
    /// Stream SYMBOL's trades (refused for a symbol the exchange does not list).
    Start { symbol: Symbol },
    /// Stop streaming SYMBOL's trades.
    Stop { symbol: Symbol },
    /// Every symbol with a streaming switch, and its state.
    Status,
}

#[derive(Debug, Subcommand)]
enum StoringCommandArg {
    /// Store TOPIC's rows of SYMBOL from now on (TOPIC: trade_events or orders, any case).
    Start {
        topic: hedgehog::domain::events::StoringTopic,
        symbol: Symbol,
        /// Also store the rows of everything the log already holds for it.
        #[arg(long)]
        backfill: bool,
    },
    /// Stop storing TOPIC's rows of SYMBOL (nothing is deleted; its events are still stored).
    Stop {
        topic: hedgehog::domain::events::StoringTopic,
        symbol: Symbol,
    },
    /// Every streamed, traded or switched symbol with the state of each topic.
    Status,
}

#[derive(Debug, Subcommand)]
enum TradingCommandArg {
    /// Trade SYMBOL: the next trade adds its fresh position, which places its BUY.
    Start { symbol: Symbol },
    /// Stop at once: cancel every open order of SYMBOL and report what was left unsold.
    Stop { symbol: Symbol },
    /// The book's shutdown: no rebuys, finished positions are not replaced, and trading turns
    /// off when the last one has finished.
    Shutdown { symbol: Symbol },
    /// Status, open positions and profit of SYMBOL, or of every symbol traded so far.
    Status { symbol: Option<Symbol> },
}

#[derive(Debug, Subcommand)]
enum SettingsCommandArg {
    /// Print SYMBOL's settings (the defaults until set).
    Show { symbol: Symbol },
    /// Change some of SYMBOL's settings; the others keep their values.
    Set {
        symbol: Symbol,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// The strategy's settings as flags; those not given keep their value. Shared by every command
/// that takes settings.
#[derive(Debug, Clone, clap::Args)]
struct SettingsArgs {
    /// How many positions may be open at once; the budget is split evenly across them.
    #[arg(long)]
    chunks: Option<u32>,
    /// Quote-asset budget (e.g. USDT).
    #[arg(long, allow_hyphen_values = true)]
    budget: Option<Decimal>,
    /// How far below the trade price the BUY goes (0.0001 = 0.01 %).
    #[arg(long, allow_hyphen_values = true)]
    buy_down_interval: Option<Decimal>,
    /// Profit wanted on top of both fees.
    #[arg(long, allow_hyphen_values = true)]
    profit_target: Option<Decimal>,
    /// How far below the buy price a trade must go to open one more position.
    #[arg(long, allow_hyphen_values = true)]
    rebuy_interval: Option<Decimal>,
    /// Fee rate per side (0.001 = 0.1 %).
    #[arg(long, allow_hyphen_values = true)]
    fee: Option<Decimal>,
}

impl From<SettingsArgs> for SettingsChange {
    fn from(a: SettingsArgs) -> Self {
        SettingsChange {
            chunks: a.chunks,
            budget: a.budget,
            buy_down_interval: a.buy_down_interval,
            profit_target: a.profit_target,
            rebuy_interval: a.rebuy_interval,
            fee: a.fee,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExchangeArg {
    /// Hedgehog's paper exchange, filling orders from the trade stream.
    Paper,
    /// Binance spot: real orders, real money.
    Binance,
    /// Binance's spot testnet: real orders with test funds.
    BinanceTestnet,
}

impl ExchangeArg {
    fn name(self) -> &'static str {
        match self {
            ExchangeArg::Paper => "paper",
            ExchangeArg::Binance => "binance",
            ExchangeArg::BinanceTestnet => "binance-testnet",
        }
    }
}

/// Every key, its value and where it came from, as JSON.
fn print_config_json(out: &mut impl Write, loaded: &config::Loaded) -> anyhow::Result<()> {
    let rows: Vec<_> = loaded
        .show()
        .iter()
        .map(|(key, value, origin)| serde_json::json!({ "key": key, "value": value, "from": origin }))
        .collect();
    writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
    Ok(())
}

/// The configuration's `[symbols]`: each is switched on once, by the first start that finds it
/// never switched (a later `streaming stop` or `trading stop` is not undone at the next start).
/// How the API's users get in, for the lines `run` prints.
enum Access {
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
fn api_auth(config: &config::Config) -> anyhow::Result<(hedgehog::http::auth::Auth, Access)> {
    use hedgehog::http::auth::{self, Auth, DEFAULT_TOKEN_NAME};
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
fn print_access(
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

async fn first_start(
    store: &Store,
    config: &config::Config,
    rules: &hedgehog::domain::exchange::ExchangeRules,
    rules_from: &str,
) -> anyhow::Result<()> {
    for symbol in &config.symbols.stream {
        if store.stream_version(&StreamId::streaming(symbol)).await? == 0 {
            hedgehog::streaming::command(store, rules, rules_from, symbol, StreamingCommand::Start)
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
                hedgehog::storing::command(
                    store,
                    symbol,
                    topic,
                    hedgehog::domain::storing::StoringCommand::Stop,
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

/// `hedgehog exchange serve`: fills in what the options leave open (the exchange info, fresh
/// keys), binds, says where, and serves until a signal.
async fn exchange_serve(
    exchange_info_file: Option<&std::path::Path>,
    mut options: hedgehog::exchange_server::ExchangeOptions,
    port: u16,
) -> anyhow::Result<()> {
    use hedgehog::exchange_server::ExchangeServer;
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
    let (json, origin) = match exchange_info_file {
        Some(path) => (exchange_info::load_json(path)?, path.display().to_string()),
        None => (
            exchange_info::bundled_json()?,
            "bundled exchange info".to_owned(),
        ),
    };
    options.rules = exchange_info::parse(&json, &origin)?;
    options.exchange_info_json = json;
    let mut fresh = Vec::new();
    let mut fresh_secret = |value: &mut String, what: &'static str| {
        if value.is_empty() {
            use rand::distr::{Alphanumeric, SampleString};
            *value = Alphanumeric.sample_string(&mut rand::rng(), 64);
            fresh.push(what);
        }
    };
    fresh_secret(&mut options.api_key, "api key");
    fresh_secret(&mut options.secret, "api secret");
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
    server.serve(stop_signal()).await;
    Ok(())
}

/// Live trading's set-up, or why it is refused: it needs a Binance exchange, `--live`, and both
/// keys. Then it checks the venue before anything trades: the clock offset, the symbols'
/// filters (which replace the bundled ones), and that the key may trade.
async fn live_venue(
    exchange: ExchangeMode,
    live: bool,
    api_url: Option<String>,
    ws_api_url: Option<String>,
) -> anyhow::Result<Option<(LiveOptions, hedgehog_domain::exchange::ExchangeRules)>> {
    use hedgehog::binance::rest::{Credentials, RestClient, SPOT_TESTNET_URL, SPOT_URL};
    use hedgehog::binance::user_stream::{SPOT_TESTNET_WS_API_URL, SPOT_WS_API_URL};
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
        hedgehog::binance::rest::TIMEOUT,
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
        venue: hedgehog::live::Venue::new(rest, rules.clone()),
        ws_api_url: ws_api_url.unwrap_or_else(|| ws_default.to_owned()),
        credentials,
    };
    Ok(Some((live, rules)))
}

#[derive(Debug, clap::Args)]
struct BacktestArgs {
    /// The symbol to trade (e.g. ADAUSDT); its filters come from the exchange info.
    #[arg(long)]
    symbol: Symbol,
    /// Only trades from this time on: ms since the epoch, 2019-06-03 or 2019-06-03T10:00:00Z.
    #[arg(long, value_parser = parse_time)]
    from: Option<i64>,
    /// Only trades up to this time, inclusive (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Replay these files (any format `import trades` reads) instead of the store's trades: all
    /// of them as one market stream, in trade-id order. Takes several files (a shell glob) and
    /// is repeatable.
    #[arg(long = "data", num_args = 1..)]
    data: Vec<PathBuf>,
    /// The files' format; detected from their first line when not given.
    #[arg(long, value_enum, requires = "data")]
    format: Option<import::Format>,
    /// The market of the trades: its stream in the store, and what files must hold.
    #[arg(long, value_enum, default_value_t = import::Market::Spot)]
    market: import::Market,
    /// The strategy's settings: the defaults (see `hedgehog settings show`) with these changed.
    #[command(flatten)]
    settings: SettingsArgs,
    /// When a trade fills a resting order: cross (price goes through it) or touch (at it).
    #[arg(long, value_enum, default_value_t = FillArg::Cross)]
    fill: FillArg,
    /// Cap each paper fill at the trade's quantity.
    #[arg(long)]
    partial_fills: bool,
    /// Charge commissions in this asset (BNB: Binance's discount, with a lower --fee) instead of
    /// the quote asset, counted in fees and profit at its price when charged: a fixed
    /// --fee-asset-price, or its market's trades in --fee-asset-data.
    #[arg(long)]
    fee_asset: Option<String>,
    /// The fee asset's price in the quote asset (e.g. 600 for BNB in USDT).
    #[arg(long, requires = "fee_asset", conflicts_with = "fee_asset_data")]
    fee_asset_price: Option<Decimal>,
    /// The fee asset's market trades (e.g. BNBUSDT), any format `import` reads: its price at a
    /// fill is its last trade at or before it.
    #[arg(long, requires = "fee_asset", num_args = 1..)]
    fee_asset_data: Vec<PathBuf>,
    /// Write the report as JSON, with every order and its fills (`-`: to stdout, instead of
    /// the table).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Draw price, fills and equity: FILE.html (a self-contained page) or FILE.png.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Store the run's decided events in the store, in a stream of their own
    /// (backtest-RUN-SYMBOL), for inspection with `hedgehog events --stream`.
    #[arg(long)]
    keep: bool,
    /// Pace the replay by the trades' times: 1 is real time, 60 a minute per second (watch a
    /// kept run live with `hedgehog events`). Default: as fast as possible.
    #[arg(long)]
    speed: Option<f64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FillArg {
    Cross,
    Touch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum ConfigCommandArg {
    /// Every key's effective value (secrets masked) and where it came from: default, file,
    /// environment or flag.
    Show {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Write a commented example file with every key at its default (to --config, else
    /// ./hedgehog.toml); never over an existing file.
    Init,
}

/// The flags given on the command line, as configuration keys: the top layer.
fn flag_layer(cli: &Cli) -> serde_json::Value {
    let mut flags = serde_json::Map::new();
    let mut set = |key: &str, value: serde_json::Value| {
        let (section, leaf) = match key.split_once('.') {
            Some((section, leaf)) => (Some(section), leaf),
            None => (None, key),
        };
        let target = match section {
            Some(section) => flags
                .entry(section.to_owned())
                .or_insert_with(|| serde_json::json!({}))
                .as_object_mut()
                .expect("sections are objects"),
            None => &mut flags,
        };
        target.insert(leaf.to_owned(), value);
    };
    if let Some(url) = &cli.database_url {
        set("database_url", url.as_str().into());
    }
    if let Some(info) = &cli.exchange_info {
        set("exchange.info", info.display().to_string().into());
    }
    if let Some(level) = &cli.log_level {
        set("log.level", level.as_str().into());
    }
    if let Some(format) = cli.log_format {
        let name = match format {
            LogFormatArg::Text => "text",
            LogFormatArg::Json => "json",
        };
        set("log.format", name.into());
    }
    match &cli.command {
        Command::Run {
            source,
            exchange,
            binance_api_url,
            binance_ws_api_url,
            fill,
            partial_fills,
            http,
            api_token,
            no_auth,
            ..
        } => {
            for (key, value) in source.keys() {
                set(key, value);
            }
            if let Some(exchange) = exchange {
                set("exchange.mode", exchange.name().into());
            }
            if let Some(url) = binance_api_url {
                set("exchange.api_url", url.as_str().into());
            }
            if let Some(url) = binance_ws_api_url {
                set("exchange.ws_api_url", url.as_str().into());
            }
            if let Some(fill) = fill {
                let name = match fill {
                    FillArg::Cross => "cross",
                    FillArg::Touch => "touch",
                };
                set("exchange.fill", name.into());
            }
            if *partial_fills {
                set("exchange.partial_fills", true.into());
            }
            if let Some(http) = http {
                set("http.bind", http.to_string().into());
            }
            if let Some(token) = api_token {
                set("http.token", token.as_str().into());
            }
            if *no_auth {
                set("http.auth", "off".into());
            }
        }
        Command::Stream { source, .. } => {
            for (key, value) in source.keys() {
                set(key, value);
            }
        }
        _ => {}
    }
    serde_json::Value::Object(flags)
}

#[derive(Debug, Subcommand)]
enum ImportCommand {
    /// Import trades from files: Binance trade CSVs, the book's trade_events dumps, websocket
    /// recordings; plain, .gz or .zip. Each market stream is stored in trade-id order across
    /// the files (rows up to 100,000 out of place are put back). Importing the same trades
    /// again stores nothing new.
    Trades {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Symbol of the trades, for formats whose rows carry none (Binance trade CSVs).
        #[arg(long)]
        symbol: Option<Symbol>,
        /// The files' format; detected from the first line when not given.
        #[arg(long, value_enum)]
        format: Option<import::Format>,
        /// The market of the trades: spot, or usdm for Binance USD-M futures (their own stream).
        /// Default: recordings say it themselves; CSVs and book dumps are spot.
        #[arg(long, value_enum)]
        market: Option<import::Market>,
        /// Report each bad row and go on, instead of stopping at the first.
        #[arg(long)]
        skip_bad_rows: bool,
        /// Trades per atomic append.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch_size: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Config {
        what: ConfigCommandArg::Init,
    } = &cli.command
    {
        // Writes the file --config names, so it must not read it first.
        let path = cli
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_FILE));
        return match config::init(&path) {
            Ok(()) => {
                println!("wrote {}", path.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Nothing starts half-configured: a bad file, variable or flag stops here.
    let loaded = match config::load(cli.config.as_deref(), flag_layer(&cli)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The engine is a service: its own info lines (start-up, the minute's status) show by
    // default; one-shot commands say only what went wrong. RUST_LOG overrides both.
    let default_filter = if matches!(cli.command, Command::Run { .. }) {
        "warn,hedgehog=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            loaded.config.log.level.as_deref().unwrap_or(default_filter),
        )
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    match loaded.config.log.format {
        config::LogFormat::Text => logs.init(),
        config::LogFormat::Json => logs.json().init(),
    }
    match run(cli, loaded).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if is_broken_pipe(&e) {
                // The reader went away (`| head`): not an error of ours.
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, loaded: config::Loaded) -> anyhow::Result<()> {
    let config = loaded.config.clone();
    if let Command::Run {
        print_config: true, ..
    } = &cli.command
    {
        let mut out = io::stdout().lock();
        return print_config_json(&mut out, &loaded);
    }
    if let Command::Config { what } = &cli.command {
        let mut out = io::stdout().lock();
        match what {
            ConfigCommandArg::Show { format } => {
                let rows = loaded.show();
                match format {
                    Format::Json => print_config_json(&mut out, &loaded)?,
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
        return Ok(());
    }
    if let Command::ReplayServer {
        files,
        port,
        speed,
        drop_every,
        resume_overlap,
        symbol,
        format,
    } = cli.command
    {
        anyhow::ensure!(
            speed >= 0.0 && speed.is_finite(),
            "--speed must be 0 or more, not {speed}"
        );
        let options = ReplayOptions {
            files,
            speed,
            drop_every,
            resume_overlap,
            import: ImportOptions {
                symbol,
                format,
                ..ImportOptions::default()
            },
        };
        let server = ReplayServer::bind(([127, 0, 0, 1], port).into(), options).await?;
        let mut out = io::stdout().lock();
        writeln!(
            out,
            "listening on ws://{} ({} trades)",
            server.local_addr()?,
            server.len()
        )?;
        out.flush()?;
        drop(out);
        tokio::select! {
            _ = server.serve() => {}
            _ = stop_signal() => {}
        }
        return Ok(());
    }
    if let Command::Exchange {
        what:
            ExchangeCommandArg::Serve {
                files,
                port,
                speed,
                balances,
                commission,
                api_key,
                api_secret,
                symbol,
                format,
                follow,
                follow_symbols,
            },
    } = cli.command
    {
        return exchange_serve(
            config.exchange.info.as_deref(),
            hedgehog::exchange_server::ExchangeOptions {
                files,
                speed,
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
                rules: Default::default(),
                follow: follow.map(|url| (url, follow_symbols)),
            },
            port,
        )
        .await;
    }
    if let Command::Backtest(args) = cli.command {
        // A run over files that keeps nothing never opens (or creates) a store.
        let store = if args.data.is_empty() || args.keep {
            Some(open_store(&config.database_url).await?)
        } else {
            None
        };
        return backtest(store.as_ref(), config.exchange.info.as_deref(), *args).await;
    }
    let store = open_store(&config.database_url).await?;
    // Commands record who sent them; `run` records the configuration it applies as the
    // user's, and its engine's own decisions as no one's.
    let store = match cli.command {
        Command::Run { .. } => store,
        _ => hedgehog::actor::Actor::cli().on(&store),
    };
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Status => {
            let head = store.head_position().await?;
            let streams = store.streams().await?;
            writeln!(
                out,
                "store:     {} ({})",
                redact_url(&config.database_url),
                store.backend_name()
            )?;
            writeln!(out, "events:    {head}")?;
            writeln!(out, "streams:   {}", streams.len())?;
            if head > 0 {
                let last = store.read_all(head, 1).await?;
                if let Some(e) = last.first() {
                    writeln!(
                        out,
                        "last:      #{} {} on {} (recorded at {} ms)",
                        e.position,
                        e.event.event_type(),
                        e.stream_id,
                        e.recorded_at
                    )?;
                }
            }
        }
        Command::Streams => {
            writeln!(out, "{:<40} {:>12}", "STREAM", "VERSION")?;
            for (stream, version) in store.streams().await? {
                writeln!(out, "{:<40} {:>12}", stream.as_str(), version)?;
            }
        }
        Command::Events {
            stream,
            from,
            limit,
            format,
        } => {
            let events = match &stream {
                Some(name) => {
                    let id = StreamId::new(name).context("--stream")?;
                    store.read_stream(&id, from, limit).await?
                }
                None => store.read_all(from, limit).await?,
            };
            if matches!(format, Format::Table) {
                writeln!(
                    out,
                    "{:>10}  {:<24} {:>8}  {:<24} {:<32} PAYLOAD",
                    "POSITION", "STREAM", "VERSION", "TYPE", "BY"
                )?;
            }
            for e in &events {
                print_event(&mut out, e, format)?;
            }
        }
        Command::ReplayServer { .. }
        | Command::Exchange { .. }
        | Command::Backtest(_)
        | Command::Config { .. } => {
            unreachable!("handled before opening the store")
        }
        Command::Trading { what } => {
            let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
            let (symbol, request) = match what {
                TradingCommandArg::Start { symbol } => (symbol, Request::Start),
                TradingCommandArg::Stop { symbol } => (symbol, Request::Stop),
                TradingCommandArg::Shutdown { symbol } => (symbol, Request::Shutdown),
                TradingCommandArg::Status { symbol } => {
                    let states = match symbol {
                        Some(symbol) => {
                            trading::rules_for(&rules, &rules_from, &symbol)?;
                            vec![(symbol.clone(), trading::state(&store, &symbol).await?.0)]
                        }
                        None => trading::status(&store).await?,
                    };
                    print_trading_status(&mut out, &rules, &states)?;
                    return Ok(out.flush()?);
                }
            };
            let symbol_rules = trading::rules_for(&rules, &rules_from, &symbol)?;
            if matches!(request, Request::Start) {
                let defaults = config.strategy.settings();
                if trading::apply_default_settings(&store, symbol_rules, &defaults, now()).await? {
                    writeln!(
                        out,
                        "{symbol} trades with the configured [strategy] settings"
                    )?;
                }
            }
            let outcome = trading::command(&store, symbol_rules, request.clone(), now()).await?;
            print_trading_outcome(&mut out, &store, symbol_rules, &request, &outcome).await?;
        }
        Command::Settings { what } => {
            let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
            match what {
                SettingsCommandArg::Show { symbol } => {
                    trading::rules_for(&rules, &rules_from, &symbol)?;
                    let (state, _) = trading::state(&store, &symbol).await?;
                    print_settings(&mut out, &symbol, &state.settings)?;
                }
                SettingsCommandArg::Set { symbol, settings } => {
                    let change = SettingsChange::from(settings);
                    anyhow::ensure!(
                        change != SettingsChange::default(),
                        "nothing to set: give at least one of --chunks, --budget, --buy-down-interval, --profit-target, --rebuy-interval, --fee"
                    );
                    let symbol_rules = trading::rules_for(&rules, &rules_from, &symbol)?;
                    let request = Request::Settings(change);
                    let outcome =
                        trading::command(&store, symbol_rules, request.clone(), now()).await?;
                    print_trading_outcome(&mut out, &store, symbol_rules, &request, &outcome)
                        .await?;
                }
            }
        }
        Command::Run { live, no_http, .. } => {
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
            let by_config = hedgehog::actor::Actor::config().on(&store);
            first_start(&by_config, &config, &rules, &rules_from).await?;
            let rules = Arc::new(rules);
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let updates = Projector::channel();
            let server = if no_http {
                None
            } else {
                let (auth, access) = api_auth(&config)?;
                hedgehog::http::check_bind(http, &auth)?;
                let listener = tokio::net::TcpListener::bind(http)
                    .await
                    .with_context(|| format!("cannot serve the HTTP API on {http} (--http)"))?;
                let bound = listener.local_addr()?;
                writeln!(out, "http API on http://{bound}")?;
                print_access(&mut out, bound, &access)?;
                out.flush()?;
                let api = hedgehog::http::Api {
                    store: store.clone(),
                    rules: Arc::clone(&rules),
                    rules_from,
                    auth,
                    strategy: config.strategy.settings(),
                    clock: now,
                    tail: hedgehog::tail::Tail::start(store.clone(), stop.subscribe()).await?,
                    updates: updates.clone(),
                    stopping: stop.subscribe(),
                    allowed: hedgehog::http::Allowed {
                        hosts: config.http.allowed_hosts.clone(),
                        origins: config.http.allowed_origins.clone(),
                        bound: None,
                    },
                };
                let mut stopping = stop.subscribe();
                let shutdown = async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                };
                Some(tokio::spawn(hedgehog::http::serve(listener, api, shutdown)))
            };
            let options = EngineOptions {
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
            };
            let stats = Arc::new(StreamerStats::default());
            let run = engine::run(store.clone(), options, Arc::clone(&stats), stopped);
            let task = tokio::spawn(async move { run.await.map_err(anyhow::Error::from) });
            let ran = until_signal(task, stop.clone()).await;
            let _ = stop.send(true);
            if let Some(server) = server {
                server.await?.context("the HTTP API failed")?;
            }
            ran?;
            writeln!(out, "{}", stats.summary())?;
        }
        Command::Storing { what } => {
            use hedgehog::domain::storing::StoringCommand;
            let (topic, symbol, command) = match what {
                StoringCommandArg::Start {
                    topic,
                    symbol,
                    backfill,
                } => (topic, symbol, StoringCommand::Start { backfill }),
                StoringCommandArg::Stop { topic, symbol } => (topic, symbol, StoringCommand::Stop),
                StoringCommandArg::Status => {
                    writeln!(out, "{:<20} {:<14} ORDERS", "SYMBOL", "TRADE_EVENTS")?;
                    for (symbol, state) in hedgehog::storing::status(&store).await? {
                        let word = |topic| if state.is_on(topic) { "on" } else { "off" };
                        writeln!(
                            out,
                            "{:<20} {:<14} {}",
                            symbol,
                            word(hedgehog::domain::events::StoringTopic::TradeEvents),
                            word(hedgehog::domain::events::StoringTopic::Orders)
                        )?;
                    }
                    return Ok(());
                }
            };
            let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
            trading::rules_for(&rules, &rules_from, &symbol)?;
            let outcome = hedgehog::storing::command(&store, &symbol, topic, command).await?;
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
        }
        Command::Streaming { what } => {
            let (rules, rules_from) = exchange_rules(config.exchange.info.as_deref())?;
            let (symbol, command) = match what {
                StreamingCommandArg::Start { symbol } => (symbol, StreamingCommand::Start),
                StreamingCommandArg::Stop { symbol } => (symbol, StreamingCommand::Stop),
                StreamingCommandArg::Status => {
                    writeln!(out, "{:<20} STREAMING", "SYMBOL")?;
                    for (symbol, on) in hedgehog::streaming::status(&store).await? {
                        writeln!(out, "{:<20} {}", symbol, if on { "on" } else { "off" })?;
                    }
                    return Ok(());
                }
            };
            let outcome =
                hedgehog::streaming::command(&store, &rules, &rules_from, &symbol, command).await?;
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
        }
        Command::Stream { symbols, .. } => {
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
                let follow =
                    hedgehog::streaming::follow(store.clone(), source, Arc::clone(&stats), stopped);
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
            until_signal(task, stop).await?;
            writeln!(out, "{}", stats.summary())?;
        }
        Command::Projections { what } => match what {
            ProjectionsCommandArg::Status {
                format: Format::Json,
            } => {
                let status = Projector::status(&store).await?;
                writeln!(out, "{}", serde_json::to_string_pretty(&status)?)?;
            }
            ProjectionsCommandArg::Status {
                format: Format::Table,
            } => {
                writeln!(
                    out,
                    "{:<20} {:>12} {:>12} {:>10} {:>10}  UPDATED",
                    "PROJECTION", "POSITION", "HEAD", "BEHIND", "REBUILDS"
                )?;
                for p in Projector::status(&store).await? {
                    writeln!(
                        out,
                        "{:<20} {:>12} {:>12} {:>10} {:>10}  {}",
                        p.name,
                        p.position,
                        p.head,
                        p.behind,
                        p.generation,
                        if p.updated_at == 0 {
                            "never".to_owned()
                        } else {
                            format_time(p.updated_at)
                        }
                    )?;
                }
            }
            ProjectionsCommandArg::Rebuild { names } => {
                let models = hedgehog_projections::named(&names)?;
                let listed: Vec<&str> = models.iter().map(|m| m.name()).collect();
                let listed = listed.join(", ");
                let started = Instant::now();
                let bar = position_bar("rebuilding");
                let mut projector = Projector::with(store.clone(), models);
                let reached = projector
                    .rebuild(|done, target| {
                        bar.set_length(u64::try_from(target).unwrap_or(0));
                        bar.set_position(u64::try_from(done).unwrap_or(0));
                    })
                    .await;
                bar.finish_and_clear();
                let reached = reached?;
                writeln!(
                    out,
                    "rebuilt {listed} from {reached} events ({:.2} s)",
                    started.elapsed().as_secs_f64()
                )?;
            }
        },
        Command::Ohlc {
            symbol,
            interval,
            window,
        } => {
            catch_up(&store).await?;
            let candles = query::candles(
                &store.database(),
                projection_market(window.market),
                &symbol,
                interval,
                window.window(),
            )
            .await?;
            print_candles(&mut out, &candles, window.format)?;
        }
        Command::Orders {
            symbol,
            status,
            run,
            format,
        } => {
            catch_up(&store).await?;
            let orders = query::orders(
                &store.database(),
                run.as_deref(),
                symbol.as_ref(),
                status.map(OrderStatusArg::as_str),
            )
            .await?;
            print_orders(&mut out, &orders, format)?;
        }
        Command::Trades { symbol, window } => {
            catch_up(&store).await?;
            print_trades(
                &mut out,
                &store,
                projection_market(window.market),
                &symbol,
                window.window(),
                window.format,
            )
            .await?;
        }
        Command::Import {
            what:
                ImportCommand::Trades {
                    files,
                    symbol,
                    format,
                    market,
                    skip_bad_rows,
                    batch_size,
                },
        } => {
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
            let started = Instant::now();
            let progress = bar.clone();
            let result =
                import::import_trades(&store, &files, &options, move |n| progress.inc(n)).await;
            bar.finish_and_clear();
            let summary = result?;
            let secs = started.elapsed().as_secs_f64();
            // Queries answer from the read models: bring them up to date before leaving.
            catch_up(&store).await?;
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
                    hedgehog::sequencer::WINDOW,
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}

async fn open_store(url: &str) -> anyhow::Result<Store> {
    Store::open(url)
        .await
        .with_context(|| format!("cannot open the store at {}", redact_url(url)))
}

async fn backtest(
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
    let fee_asset = match &args.fee_asset {
        None => None,
        Some(asset) => {
            let fee_asset = FeeAsset::new(asset, args.fee_asset_price);
            let asset = &fee_asset.asset;
            anyhow::ensure!(
                *asset != rules.quote_asset,
                "--fee-asset {asset}: commissions are charged in the quote asset already"
            );
            anyhow::ensure!(
                args.fee_asset_price.is_some() || !args.fee_asset_data.is_empty(),
                "--fee-asset {asset} needs its price in {}: --fee-asset-price P, or its \
                 market's trades with --fee-asset-data FILE...",
                rules.quote_asset
            );
            if let Some(price) = args.fee_asset_price {
                anyhow::ensure!(
                    price > Decimal::ZERO,
                    "--fee-asset-price {price}: must be greater than 0"
                );
            }
            Some(fee_asset)
        }
    };
    let settings = SettingsChange::from(args.settings).applied_to(&TradingSettings::default());
    let json_to_stdout = args.report.as_deref() == Some(std::path::Path::new("-"));
    let (source, total) = if args.data.is_empty() {
        let store = store.context("a backtest over stored trades needs the store")?;
        let stream = args.market.trades_stream(&args.symbol);
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

fn is_broken_pipe(e: &anyhow::Error) -> bool {
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
fn exchange_rules(
    file: Option<&std::path::Path>,
) -> anyhow::Result<(hedgehog::domain::exchange::ExchangeRules, String)> {
    Ok(match file {
        Some(path) => (exchange_info::load(path)?, path.display().to_string()),
        None => (
            exchange_info::bundled()?,
            "the bundled snapshot of 2024-09-08".to_owned(),
        ),
    })
}

fn print_settings(out: &mut impl Write, symbol: &Symbol, s: &TradingSettings) -> io::Result<()> {
    writeln!(out, "settings of {symbol}:")?;
    writeln!(out, "  chunks             {}", s.chunks)?;
    writeln!(out, "  budget             {}", s.budget)?;
    writeln!(out, "  buy_down_interval  {}", s.buy_down_interval)?;
    writeln!(out, "  profit_target      {}", s.profit_target)?;
    writeln!(out, "  rebuy_interval     {}", s.rebuy_interval)?;
    writeln!(out, "  fee                {}", s.fee)
}

async fn print_trading_outcome(
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
    if matches!(request, Request::Start) && !hedgehog::streaming::is_on(store, symbol).await? {
        writeln!(
            out,
            "note: streaming of {symbol} is off, so no trades arrive; `hedgehog streaming start {symbol}` switches it on"
        )?;
    }
    Ok(())
}

fn print_trading_status(
    out: &mut impl Write,
    rules: &hedgehog::domain::exchange::ExchangeRules,
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

/// Waits for a long-running task: on SIGINT or SIGTERM it asks the task to stop (it stops taking
/// input, flushes what is pending) and waits for it; a task that ends by itself (only on an
/// error) ends the wait with its result.
async fn until_signal(
    mut task: tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()> {
    tokio::select! {
        _ = stop_signal() => {
            let _ = stop.send(true);
            (&mut task).await?
        }
        finished = &mut task => finished?,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        },
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn print_event(out: &mut impl Write, e: &RecordedEvent, format: Format) -> anyhow::Result<()> {
    let payload = e.event.encode()?;
    match format {
        Format::Table => writeln!(
            out,
            "{:>10}  {:<24} {:>8}  {:<24} {:<32} {}",
            e.position,
            e.stream_id.as_str(),
            e.stream_version,
            e.event.event_type(),
            hedgehog::actor::describe(&e.metadata),
            payload
        )?,
        Format::Json => {
            let line = serde_json::json!({
                "position": e.position,
                "event_id": e.event_id,
                "stream_id": e.stream_id.as_str(),
                "stream_version": e.stream_version,
                "recorded_at": e.recorded_at,
                "correlation_id": e.correlation_id,
                "causation_id": e.causation_id,
                "metadata": e.metadata,
                "event": serde_json::from_str::<serde_json::Value>(&payload)?,
            });
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// A bar over log positions, drawn on stderr only when it is a terminal.
fn position_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(&format!(
        "{what} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}}, eta {{eta}})"
    )) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Projects whatever the read models have not seen yet, with a bar when that takes a while.
async fn catch_up(store: &Store) -> anyhow::Result<()> {
    let bar = position_bar("projecting");
    let mut projector = Projector::new(store.clone());
    let result = projector
        .catch_up_with(|done, target| {
            bar.set_length(u64::try_from(target).unwrap_or(0));
            bar.set_position(u64::try_from(done).unwrap_or(0));
        })
        .await;
    bar.finish_and_clear();
    result.context("cannot bring the read models up to date")?;
    Ok(())
}

fn projection_market(market: import::Market) -> hedgehog_projections::Market {
    match market {
        import::Market::Spot => hedgehog_projections::Market::Spot,
        import::Market::UsdmFutures => hedgehog_projections::Market::Usdm,
    }
}

fn print_candles(
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

fn print_orders(
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
async fn print_trades(
    out: &mut impl Write,
    store: &Store,
    market: hedgehog_projections::Market,
    symbol: &Symbol,
    window: Window,
    format: QueryFormat,
) -> anyhow::Result<()> {
    let mut pages = query::TradePages::new(store.database(), market, symbol.clone(), window);
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
