//! What the command line takes (clap's derives live here, not in the library), and the
//! configuration layer its flags make.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use hedgehog_domain::{Market, Symbol};
use hedgehog_engine::trading::SettingsChange;
use hedgehog_ingest::import;
use hedgehog_projections::candles::Interval;
use hedgehog_projections::query::Window;
use hedgehog_runtime::time::parse_time;
use rust_decimal::Decimal;

#[derive(Debug, Parser)]
#[command(
    name = "hedgehog",
    version,
    about = "Event-sourced crypto trading engine"
)]
pub struct Cli {
    /// The configuration file (default: HEDGEHOG_CONFIG, else ./hedgehog.toml if present).
    /// Flags override the environment, which overrides the file; see `hedgehog config show`.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,

    /// Where the event store lives: sqlite://PATH (created if missing) or postgres://USER@HOST/DB
    /// [config: database_url; env: DATABASE_URL; default: sqlite://hedgehog.db].
    #[arg(long, global = true)]
    pub database_url: Option<String>,

    /// Binance exchangeInfo JSON (plain or .gz) with the symbols and their filters; default: the
    /// bundled snapshot of 2024-09-08 [config: exchange.info].
    #[arg(long, global = true)]
    pub exchange_info: Option<PathBuf>,

    /// Log filter, e.g. info or warn,hedgehog=debug [config: log.level].
    #[arg(long, global = true)]
    pub log_level: Option<String>,

    /// Log lines as text or JSON [config: log.format].
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Seal market trades older than a time into compressed, checksummed segments in the same
    /// database (about 7 bytes a trade instead of about 100). Nothing changes for a reader:
    /// every command reads through them. Each stream's newest trade stays a row.
    Archive {
        /// Seal trades before this time: ms since the epoch, 2024-08-08 or
        /// 2024-08-08T10:00:00Z (UTC).
        #[arg(long, value_parser = parse_time, conflicts_with = "older_than_days")]
        before: Option<i64>,
        /// Seal trades more than this many days old [config: archive.older_than_days].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        older_than_days: Option<u32>,
        /// Then give the space the rows took back to the file system (SQLite rewrites the
        /// file, needing as much free disk again; PostgreSQL keeps it for new rows).
        #[arg(long)]
        compact: bool,
    },
    /// The engines (`run` processes) on this database: the live nodes, the symbols each owns,
    /// and their leases.
    Cluster {
        #[command(subcommand)]
        what: ClusterCommandArg,
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
        #[arg(long, default_value = "1m", value_parser = hedgehog_projections::candles::stored_interval)]
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
    ReplayServer(ReplayArgs),
}

#[derive(Debug, Subcommand)]
pub enum ExchangeCommandArg {
    /// Serve Binance's spot REST API (/api/v3: market data, orders, account), the trade
    /// stream (/stream, /ws) and the user data stream (/ws-api/v3) on one port, filling orders
    /// from the recorded trades it plays (see --start) and the live ones it follows.
    Serve {
        /// Recorded trades to play (any format `import trades` reads); none: orders rest.
        files: Vec<PathBuf>,
        /// Port to listen on (0: any free port; the address is printed).
        #[arg(long, default_value_t = 9080)]
        port: u16,
        /// 1 plays at real pace, 10 ten times faster, 0 as fast as possible.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// When playback starts: when the first trade-stream client connects (`stream`, so it
        /// sees every trade), or at once (`now`, for clients that only poll, like ccxt).
        #[arg(long, value_enum, default_value_t = StartArg::Stream)]
        start: StartArg,
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
        #[arg(long, value_parser = format_parser())]
        format: Option<import::Format>,
        /// Also fill from a live trade stream (Binance's, e.g. wss://stream.binance.com:9443,
        /// or a replay server's), following the --follow-symbol symbols on it.
        #[arg(long, requires = "follow_symbols")]
        follow: Option<String>,
        /// A symbol to follow on --follow (repeatable).
        #[arg(long = "follow-symbol", requires = "follow")]
        follow_symbols: Vec<Symbol>,
        /// Also follow the symbols' books on --follow (Binance's partial depth stream, the
        /// best 20 levels a side every 100 ms): served as `depth`, and the bid and ask.
        #[arg(long, requires = "follow")]
        follow_depth: bool,
    },
}

/// When `exchange serve` starts playing.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StartArg {
    Stream,
    Now,
}

/// `ASSET=AMOUNT`, as `--balance` takes it.
pub fn parse_balance(text: &str) -> Result<(String, Decimal), String> {
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
pub enum ClusterCommandArg {
    /// Every node that ran recently: whether it is alive, its symbols, their leases' ages.
    Status {
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommandArg {
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
pub struct StreamSourceArgs {
    /// Binance's websocket base URL, or a replay server's [config: exchange.stream_url].
    #[arg(long)]
    pub binance_ws_url: Option<String>,
    /// Binance's spot REST URL, whose historicalTrades fill gaps in the stream [config:
    /// exchange.backfill_url; default: Binance's while streaming from Binance].
    #[arg(long)]
    pub backfill_url: Option<String>,
}
impl StreamSourceArgs {
    /// The configuration keys these flags set, with their values.
    pub fn keys(&self) -> impl Iterator<Item = (&'static str, serde_json::Value)> + '_ {
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
pub struct WindowArgs {
    /// From this time on (candles by open time), inclusive: ms since the epoch, 2024-08-08 or
    /// 2024-08-08T10:00:00Z (UTC).
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Up to this time, inclusive (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,
    #[arg(long, default_value_t = Market::Spot)]
    pub market: Market,
    /// table, csv (for candles: Binance's kline columns, times in ms) or json.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
}
impl WindowArgs {
    pub fn window(&self) -> Window {
        Window {
            from: self.from,
            to: self.to,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OrderStatusArg {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
}
impl OrderStatusArg {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatusArg::New => "NEW",
            OrderStatusArg::PartiallyFilled => "PARTIALLY_FILLED",
            OrderStatusArg::Filled => "FILLED",
            OrderStatusArg::Canceled => "CANCELED",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum StreamingCommandArg {
    /// Stream SYMBOL's trades (refused for a symbol the exchange does not list).
    Start { symbol: Symbol },
    /// Stop streaming SYMBOL's trades.
    Stop { symbol: Symbol },
    /// Every symbol with a streaming switch, and its state.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum StoringCommandArg {
    /// Store TOPIC's rows of SYMBOL from now on (TOPIC: trade_events or orders, any case).
    Start {
        topic: hedgehog_domain::events::StoringTopic,
        symbol: Symbol,
        /// Also store the rows of everything the log already holds for it.
        #[arg(long)]
        backfill: bool,
    },
    /// Stop storing TOPIC's rows of SYMBOL (nothing is deleted; its events are still stored).
    Stop {
        topic: hedgehog_domain::events::StoringTopic,
        symbol: Symbol,
    },
    /// Every streamed, traded or switched symbol with the state of each topic.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum TradingCommandArg {
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
pub enum SettingsCommandArg {
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
pub struct SettingsArgs {
    /// The strategy, by name: `naive` (the book's) is the one this program runs.
    #[arg(long)]
    pub strategy: Option<String>,
    /// How many positions may be open at once; the budget is split evenly across them.
    #[arg(long)]
    pub chunks: Option<u32>,
    /// Quote-asset budget (e.g. USDT).
    #[arg(long, allow_hyphen_values = true)]
    pub budget: Option<Decimal>,
    /// How far below the trade price the BUY goes (0.0001 = 0.01 %).
    #[arg(long, allow_hyphen_values = true)]
    pub buy_down_interval: Option<Decimal>,
    /// Profit wanted on top of both fees.
    #[arg(long, allow_hyphen_values = true)]
    pub profit_target: Option<Decimal>,
    /// How far below the buy price a trade must go to open one more position.
    #[arg(long, allow_hyphen_values = true)]
    pub rebuy_interval: Option<Decimal>,
    /// Fee rate per side (0.001 = 0.1 %).
    #[arg(long, allow_hyphen_values = true)]
    pub fee: Option<Decimal>,
}

impl From<SettingsArgs> for SettingsChange {
    fn from(a: SettingsArgs) -> Self {
        SettingsChange {
            strategy: a.strategy,
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
pub enum ExchangeArg {
    /// Hedgehog's paper exchange, filling orders from the trade stream.
    Paper,
    /// Binance spot: real orders, real money.
    Binance,
    /// Binance's spot testnet: real orders with test funds.
    BinanceTestnet,
}
impl ExchangeArg {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeArg::Paper => "paper",
            ExchangeArg::Binance => "binance",
            ExchangeArg::BinanceTestnet => "binance-testnet",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The symbol to trade (e.g. ADAUSDT); its filters come from the exchange info.
    #[arg(long)]
    pub symbol: Symbol,
    /// Only trades from this time on: ms since the epoch, 2019-06-03 or 2019-06-03T10:00:00Z.
    #[arg(long, value_parser = parse_time)]
    pub from: Option<i64>,
    /// Only trades up to this time, inclusive (same forms as --from).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<i64>,
    /// Replay these files (any format `import trades` reads) instead of the store's trades: all
    /// of them as one market stream, in trade-id order. Takes several files (a shell glob) and
    /// is repeatable.
    #[arg(long = "data", num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// The files' format; detected from their first line when not given.
    #[arg(long, value_parser = format_parser(), requires = "data")]
    pub format: Option<import::Format>,
    /// The market of the trades: its stream in the store, and what files must hold.
    #[arg(long, default_value_t = Market::Spot)]
    pub market: Market,
    /// The strategy's settings: the defaults (see `hedgehog settings show`) with these changed.
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// When a trade fills a resting order: cross (price goes through it) or touch (at it).
    #[arg(long, value_enum, default_value_t = FillArg::Cross)]
    pub fill: FillArg,
    /// Cap each paper fill at the trade's quantity.
    #[arg(long)]
    pub partial_fills: bool,
    /// Charge commissions in this asset (BNB: Binance's discount, with a lower --fee) instead of
    /// the quote asset, counted in fees and profit at its price when charged: a fixed
    /// --fee-asset-price, or its market's trades in --fee-asset-data.
    #[arg(long)]
    pub fee_asset: Option<String>,
    /// The fee asset's price in the quote asset (e.g. 600 for BNB in USDT).
    #[arg(long, requires = "fee_asset", conflicts_with = "fee_asset_data")]
    pub fee_asset_price: Option<Decimal>,
    /// The fee asset's market trades (e.g. BNBUSDT), any format `import` reads: its price at a
    /// fill is its last trade at or before it.
    #[arg(long, requires = "fee_asset", num_args = 1..)]
    pub fee_asset_data: Vec<PathBuf>,
    /// Write the report as JSON, with every order and its fills (`-`: to stdout, instead of
    /// the table).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Draw price, fills and equity: FILE.html (a self-contained page) or FILE.png.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// Store the run's decided events in the store, in a stream of their own
    /// (backtest-RUN-SYMBOL), for inspection with `hedgehog events --stream`.
    #[arg(long)]
    pub keep: bool,
    /// Pace the replay by the trades' times: 1 is real time, 60 a minute per second (watch a
    /// kept run live with `hedgehog events`). Default: as fast as possible.
    #[arg(long)]
    pub speed: Option<f64>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FillArg {
    Cross,
    Touch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommandArg {
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
pub fn flag_layer(cli: &Cli) -> serde_json::Value {
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
pub enum ImportCommand {
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
        #[arg(long, value_parser = format_parser())]
        format: Option<import::Format>,
        /// The market of the trades: spot, or usdm for Binance USD-M futures (their own stream).
        /// Default: recordings say it themselves; CSVs and book dumps are spot.
        #[arg(long, value_enum)]
        market: Option<Market>,
        /// Report each bad row and go on, instead of stopping at the first.
        #[arg(long)]
        skip_bad_rows: bool,
        /// Trades per atomic append.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
        batch_size: u64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// `replay-server`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Port to listen on (0: any free port; the address is printed).
    #[arg(long, default_value_t = 9443)]
    pub port: u16,
    /// 1 plays at real pace, 10 ten times faster, 0 as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Cut the connection after this many messages, to exercise reconnects (0: never).
    #[arg(long, default_value_t = 0)]
    pub drop_every: u64,
    /// Messages a new connection repeats from before where the last one was cut.
    #[arg(long, default_value_t = hedgehog_sim::exchange::RESUME_OVERLAP)]
    pub resume_overlap: usize,
    /// Symbol for files whose rows carry none.
    #[arg(long)]
    pub symbol: Option<Symbol>,
    #[arg(long, value_parser = format_parser())]
    pub format: Option<import::Format>,
}

/// `--format`'s values: the importer's format names, listed in `--help`.
fn format_parser() -> impl clap::builder::TypedValueParser<Value = import::Format> {
    use clap::builder::TypedValueParser;
    use strum::VariantNames;
    clap::builder::PossibleValuesParser::new(import::Format::VARIANTS)
        .try_map(|name| name.parse::<import::Format>())
}
