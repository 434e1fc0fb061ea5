//! One configuration surface: `hedgehog.toml`, under the environment, under command-line flags.
//!
//! Layers, each overriding the one before, merged by `figment`:
//! 1. the defaults ([`Config::default`]);
//! 2. the file: `--config PATH`, else `HEDGEHOG_CONFIG`, else `./hedgehog.toml` if there is one;
//! 3. the environment: `HEDGEHOG_<SECTION>_<KEY>` for every key (`HEDGEHOG_EXCHANGE_MODE`,
//!    `HEDGEHOG_STRATEGY_BUDGET`, ...), `DATABASE_URL`, and the names earlier versions read
//!    (`HEDGEHOG_BINANCE_WS_URL`, `HEDGEHOG_BINANCE_API_URL`, `HEDGEHOG_BINANCE_WS_API_URL`,
//!    `HEDGEHOG_API_TOKEN`);
//! 4. the flags given on the command line.
//!
//! Every value remembers its layer, which `hedgehog config show` prints. Nothing starts
//! half-configured: an unknown key in the file, a wrong type or an invalid value fails the
//! load with the layer (the file's path, the variable's name, the flag), the key and what is
//! wrong. Binance API keys are not configuration: they stay in `BINANCE_API_KEY` /
//! `BINANCE_API_SECRET` only.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use hedgehog_domain::paper_exchange::FillModel;
use hedgehog_domain::{Symbol, TradingSettings};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use hedgehog_store::{redact_url, DEFAULT_DATABASE_URL};

/// The file looked for in the working directory when no path is given.
pub const DEFAULT_FILE: &str = "hedgehog.toml";

/// Everything Hedgehog can be configured with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    pub database_url: String,
    pub http: HttpConfig,
    pub exchange: ExchangeConfig,
    /// The settings a symbol trades with until `settings set` changes them.
    pub strategy: StrategyConfig,
    pub symbols: SymbolsConfig,
    pub storing: StoringConfig,
    pub engine: EngineConfig,
    pub archive: ArchiveConfig,
    pub cluster: ClusterConfig,
    pub log: LogConfig,
}

/// This engine as one node of several on the same database (`hedgehog cluster status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The node's name, kept across restarts (default: the host's name; a second `run` on the
    /// same host while the first runs joins as NAME-PID).
    pub node: Option<String>,
    /// How long a symbol's lease lasts without renewal: a node that dies loses its symbols to
    /// the others within this time.
    pub lease_ttl_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: None,
            lease_ttl_secs: hedgehog_engine::cluster::LEASE_TTL.as_secs(),
        }
    }
}

/// When market trades are sealed into compressed segments (`hedgehog archive`): by `run`, at
/// its start and every hour, those older than `older_than_days`; never when unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    pub older_than_days: Option<u32>,
}

/// How `run`'s engine keeps its workers' state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Trades a trading worker takes between two snapshots of its state (it also saves one
    /// at a clean stop): what a restart after a crash reads again at most.
    pub snapshot_every: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            snapshot_every: hedgehog_engine::worker::TRADES_PER_SNAPSHOT,
        }
    }
}

/// Whether a symbol of `[symbols]` has its rows stored when it is first started (both topics
/// are on unless switched off here or with `hedgehog storing stop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoringConfig {
    pub trade_events: bool,
    pub orders: bool,
}

impl Default for StoringConfig {
    fn default() -> Self {
        StoringConfig {
            trade_events: true,
            orders: true,
        }
    }
}

/// The strategy's settings, as the file spells them (every key known, none required).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    /// The strategy's name (`naive`: the book's, the one this program runs).
    pub name: String,
    pub chunks: u32,
    pub budget: rust_decimal::Decimal,
    pub buy_down_interval: rust_decimal::Decimal,
    pub profit_target: rust_decimal::Decimal,
    pub rebuy_interval: rust_decimal::Decimal,
    pub fee: rust_decimal::Decimal,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig::from(TradingSettings::default())
    }
}

impl From<TradingSettings> for StrategyConfig {
    fn from(s: TradingSettings) -> Self {
        StrategyConfig {
            name: s.strategy,
            chunks: s.chunks,
            budget: s.budget,
            buy_down_interval: s.buy_down_interval,
            profit_target: s.profit_target,
            rebuy_interval: s.rebuy_interval,
            fee: s.fee,
        }
    }
}

impl StrategyConfig {
    pub fn settings(&self) -> TradingSettings {
        TradingSettings {
            strategy: self.name.clone(),
            chunks: self.chunks,
            budget: self.budget,
            buy_down_interval: self.buy_down_interval,
            profit_target: self.profit_target,
            rebuy_interval: self.rebuy_interval,
            fee: self.fee,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where `run` serves the HTTP API.
    pub bind: SocketAddr,
    /// `token` (default): every request but `/api/health` and the dashboard's files needs a
    /// token or a dashboard session; `off`: none does, on a loopback address only.
    pub auth: AuthMode,
    /// The API's token (named `default` in the audit trail); without one, `run` makes one and
    /// keeps it in `token_file`.
    pub token: Option<String>,
    /// Where `run` keeps the token it makes; default: beside a SQLite database file
    /// (`hedgehog.api-token`), else `~/.config/hedgehog/api-token`.
    pub token_file: Option<PathBuf>,
    /// More tokens, by name: each person or program its own, named in the audit trail.
    pub tokens: BTreeMap<String, String>,
    /// Host names the API answers for besides the bound address, localhost, 127.0.0.1 and
    /// [::1] (a name a reverse proxy forwards).
    pub allowed_hosts: Vec<String>,
    /// Origins whose pages may change things besides the server's own (`https://desk.example`).
    pub allowed_origins: Vec<String>,
}

/// Whether the HTTP API wants a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    #[default]
    Token,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeMode {
    /// Hedgehog's paper exchange, filling orders from the trade stream.
    #[default]
    Paper,
    /// Binance spot: real orders.
    Binance,
    /// Binance's spot testnet.
    BinanceTestnet,
}

impl ExchangeMode {
    pub fn name(self) -> &'static str {
        match self {
            ExchangeMode::Paper => "paper",
            ExchangeMode::Binance => "binance",
            ExchangeMode::BinanceTestnet => "binance-testnet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeConfig {
    pub mode: ExchangeMode,
    /// Binance's trade stream (or a replay server's, or `exchange serve`'s).
    pub stream_url: String,
    /// Binance's REST base URL; default: the mode's.
    pub api_url: Option<String>,
    /// Binance's WebSocket API (user data stream); default: the mode's.
    pub ws_api_url: Option<String>,
    /// Binance's spot REST API, whose public `historicalTrades` fills gaps in the trade
    /// stream; default: `https://api.binance.com` while `stream_url` is Binance's own, none
    /// otherwise (a replay server's gaps are reported, not filled).
    pub backfill_url: Option<String>,
    /// The most trades filled in one gap (0: none are).
    pub backfill_limit: u64,
    /// Seconds a trade stream may stay silent (no data, ping or pong) before the connection is
    /// taken as dead and made again.
    pub idle_timeout_secs: u64,
    /// An exchangeInfo file (plain or .gz) for the symbols' filters; default: the bundled
    /// snapshot (live trading reads Binance's own).
    pub info: Option<PathBuf>,
    /// How the paper exchange fills: `cross` or `touch`.
    pub fill: FillModel,
    /// Cap each paper fill at the trade's quantity.
    pub partial_fills: bool,
    /// Charge paper commissions in this asset (BNB) instead of the quote asset, counted at
    /// `fee_asset_price`.
    pub fee_asset: Option<String>,
    /// The fee asset's price in the quote asset, for paper trading (live fills are priced at
    /// the asset's market price when charged).
    pub fee_asset_price: Option<Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SymbolsConfig {
    /// Streamed from the first start on (their streaming switch is set once, if never set).
    pub stream: Vec<Symbol>,
    /// Traded from the first start on (trading switched on once, if never switched).
    pub trade: Vec<Symbol>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `warn,hedgehog=debug`, ...); default: `warn,hedgehog=info` for
    /// `run`, `warn` for other commands. `RUST_LOG` overrides it.
    pub level: Option<String>,
    pub format: LogFormat,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth: AuthMode::Token,
            token: None,
            token_file: None,
            tokens: BTreeMap::new(),
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
        }
    }
}

impl ExchangeConfig {
    /// How long a silent trade stream is trusted ([`ExchangeConfig::idle_timeout_secs`]).
    pub fn idle_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.idle_timeout_secs)
    }

    /// Where and how much the streamer fills gaps from (see [`ExchangeConfig::backfill_url`]).
    pub fn backfill(&self) -> Option<hedgehog_ingest::streamer::Backfill> {
        let url = match &self.backfill_url {
            Some(url) => url.clone(),
            None if self.stream_url.trim_end_matches('/')
                == hedgehog_binance::market_stream::BINANCE_WS_URL =>
            {
                hedgehog_binance::rest::SPOT_URL.to_owned()
            }
            None => return None,
        };
        (self.backfill_limit > 0).then(|| hedgehog_ingest::streamer::Backfill {
            client: std::sync::Arc::new(hedgehog_binance::rest::RestClient::new(
                &url,
                None,
                hedgehog_binance::rest::TIMEOUT,
            )),
            limit: self.backfill_limit,
        })
    }
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            mode: ExchangeMode::Paper,
            stream_url: hedgehog_binance::market_stream::BINANCE_WS_URL.to_owned(),
            api_url: None,
            ws_api_url: None,
            backfill_url: None,
            backfill_limit: hedgehog_ingest::streamer::BACKFILL_LIMIT,
            idle_timeout_secs: hedgehog_ingest::streamer::IDLE_TIMEOUT.as_secs(),
            info: None,
            fill: FillModel::Cross,
            partial_fills: false,
            fee_asset: None,
            fee_asset_price: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            http: HttpConfig::default(),
            exchange: ExchangeConfig::default(),
            strategy: StrategyConfig::default(),
            symbols: SymbolsConfig::default(),
            storing: StoringConfig::default(),
            engine: EngineConfig::default(),
            archive: ArchiveConfig::default(),
            cluster: ClusterConfig::default(),
            log: LogConfig::default(),
        }
    }
}

/// Why the configuration cannot be used. Nothing has started.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {key} (from {origin}): {problem}")]
    Load {
        key: String,
        origin: String,
        problem: String,
    },
    #[error("configuration: {key} (from {origin}): {problem}")]
    Invalid {
        key: String,
        origin: String,
        problem: String,
    },
    #[error("configuration file {0} (from --config or HEDGEHOG_CONFIG) does not exist")]
    MissingFile(PathBuf),
    #[error("cannot write {file}: {source}")]
    Write {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} exists already; remove it or write elsewhere with --config")]
    Exists(PathBuf),
}

/// A provider under a name of ours, so that `config show` and errors say "flag", "default".
struct Named<P>(&'static str, P);

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.0)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.1.data()
    }
}

/// The configuration and where each value came from.
pub struct Loaded {
    pub config: Config,
    figment: Figment,
    /// The file read, if any.
    pub file: Option<PathBuf>,
}

/// Names earlier versions read from the environment, and the key each sets.
const LEGACY_ENV: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("HEDGEHOG_BINANCE_WS_URL", "exchange.stream_url"),
    ("HEDGEHOG_BINANCE_API_URL", "exchange.api_url"),
    ("HEDGEHOG_BINANCE_WS_API_URL", "exchange.ws_api_url"),
    ("HEDGEHOG_API_TOKEN", "http.token"),
];

/// Every key of the configuration, dotted (`exchange.mode`), in file order.
pub fn keys() -> Vec<String> {
    let mut out = Vec::new();
    let value = serde_json::to_value(Config::default()).unwrap_or_default();
    flatten("", &value, &mut out);
    out.into_iter().map(|(k, _)| k).collect()
}

/// Keys whose value is a table of names the user chooses.
const TABLE_KEYS: &[&str] = &["http.tokens"];

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
    match value {
        // A table of the user's own keys (`http.tokens`) is one key, set as a whole.
        serde_json::Value::Object(map) if !TABLE_KEYS.contains(&prefix) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        leaf => out.push((prefix.to_owned(), leaf.clone())),
    }
}

/// The environment variable of a key: `HEDGEHOG_` and the key in capitals, `.` as `_`.
pub fn env_name(key: &str) -> String {
    format!("HEDGEHOG_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// The file to read: `--config`, else `HEDGEHOG_CONFIG` (both must exist), else
/// `./hedgehog.toml` if it exists.
pub fn file_to_read(flag: Option<&Path>) -> Result<Option<PathBuf>, ConfigError> {
    let named = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("HEDGEHOG_CONFIG").map(PathBuf::from));
    match named {
        Some(path) if path.exists() => Ok(Some(path)),
        Some(path) => Err(ConfigError::MissingFile(path)),
        None => Ok(Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.exists())),
    }
}

/// Loads the layers: defaults, `file`, the environment, then `flags` (a nested JSON object of
/// the keys given on the command line).
pub fn load(file: Option<&Path>, flags: serde_json::Value) -> Result<Loaded, ConfigError> {
    let file = file_to_read(file)?;
    let mut figment = Figment::from(Named("default", Serialized::defaults(Config::default())));
    if let Some(path) = &file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let mut names: BTreeMap<String, String> = keys()
        .into_iter()
        .map(|key| (env_name(&key), key))
        .collect();
    for (name, key) in LEGACY_ENV {
        names.insert((*name).to_owned(), (*key).to_owned());
    }
    let env = Env::raw()
        .filter_map(move |name| {
            names
                .get(&name.as_str().to_ascii_uppercase())
                .map(|key| key.clone().into())
        })
        .split(".");
    figment = figment
        .merge(env)
        .merge(Named("command-line flag", Serialized::defaults(flags)));
    let config: Config = figment.extract().map_err(|e| {
        // Each error names the key as the user wrote it, and the layer it came from.
        let e = e
            .into_iter()
            .next()
            .unwrap_or_else(|| figment::Error::from("unreadable configuration".to_owned()));
        let path: Vec<&str> = e
            .path
            .iter()
            .map(String::as_str)
            .skip_while(|p| *p == "default")
            .collect();
        let key = path.join(".").to_ascii_lowercase();
        let origin = e
            .metadata
            .as_ref()
            .map_or_else(|| "the configuration".to_owned(), |m| origin_of(m, &key));
        ConfigError::Load {
            key: if key.is_empty() {
                "(top level)".to_owned()
            } else {
                key
            },
            origin,
            problem: e.kind.to_string(),
        }
    })?;
    let loaded = Loaded {
        config,
        figment,
        file,
    };
    loaded.validate()?;
    Ok(loaded)
}

/// The layer a value of `key` came from, in words: `default`, `file PATH`, `flag`, or
/// `environment NAME` (an older name when that is the one set).
fn origin_of(meta: &Metadata, key: &str) -> String {
    match (&meta.source, meta.name.as_ref()) {
        (Some(figment::Source::File(path)), _) => format!("file {}", path.display()),
        (_, "default") => "default".to_owned(),
        (_, "command-line flag") => "flag".to_owned(),
        _ => {
            let name = LEGACY_ENV
                .iter()
                .find(|(name, k)| *k == key && std::env::var_os(name).is_some())
                .map_or_else(|| env_name(key), |(name, _)| (*name).to_owned());
            format!("environment {name}")
        }
    }
}

impl Loaded {
    /// Where the value of `key` came from: `default`, `file PATH`, `environment NAME`, `flag`.
    pub fn origin(&self, key: &str) -> String {
        self.figment
            .find_metadata(key)
            .map_or_else(|| "default".to_owned(), |meta| origin_of(meta, key))
    }

    fn invalid(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            origin: self.origin(key),
            problem: problem.into(),
        }
    }

    /// What the types alone do not catch.
    fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.config;
        if let Err(e) = c.strategy.settings().validate() {
            let key = match e.field {
                "strategy" => "strategy.name".to_owned(),
                field => format!("strategy.{field}"),
            };
            return Err(self.invalid(&key, e.to_string()));
        }
        let urls = [
            (
                "database_url",
                Some(&c.database_url),
                &["sqlite", "postgres", "postgresql"][..],
            ),
            (
                "exchange.stream_url",
                Some(&c.exchange.stream_url),
                &["ws", "wss"][..],
            ),
            (
                "exchange.api_url",
                c.exchange.api_url.as_ref(),
                &["http", "https"][..],
            ),
            (
                "exchange.ws_api_url",
                c.exchange.ws_api_url.as_ref(),
                &["ws", "wss"][..],
            ),
            (
                "exchange.backfill_url",
                c.exchange.backfill_url.as_ref(),
                &["http", "https"][..],
            ),
        ];
        for (key, value, schemes) in urls {
            let Some(value) = value else { continue };
            let shown = if key == "database_url" {
                redact_url(value)
            } else {
                value.clone()
            };
            match url::Url::parse(value) {
                Ok(u) if schemes.contains(&u.scheme()) => {}
                Ok(u) => {
                    return Err(self.invalid(
                        key,
                        format!(
                            "{shown:?} has scheme {:?}; expected {}",
                            u.scheme(),
                            schemes.join(" or ")
                        ),
                    ))
                }
                Err(e) => return Err(self.invalid(key, format!("{shown:?} is not a URL: {e}"))),
            }
        }
        if let Some(level) = &c.log.level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level) {
                return Err(
                    self.invalid("log.level", format!("{level:?} is not a log filter: {e}"))
                );
            }
        }
        if c.engine.snapshot_every == 0 {
            return Err(self.invalid(
                "engine.snapshot_every",
                "0: must be at least 1 (trades between two snapshots)",
            ));
        }
        if !(2..=3600).contains(&c.cluster.lease_ttl_secs) {
            return Err(self.invalid(
                "cluster.lease_ttl_secs",
                format!(
                    "{}: must be 2 to 3600 (seconds a symbol's lease lasts without renewal)",
                    c.cluster.lease_ttl_secs
                ),
            ));
        }
        if c.cluster
            .node
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err(self.invalid("cluster.node", "empty: name the node, or leave it unset"));
        }
        if c.archive.older_than_days == Some(0) {
            return Err(self.invalid(
                "archive.older_than_days",
                "0: must be at least 1 (a day of trades stays rows, for the live readers)",
            ));
        }
        if c.exchange.idle_timeout_secs == 0 {
            return Err(self.invalid(
                "exchange.idle_timeout_secs",
                "0: must be at least 1 (Binance pings every 20 s)",
            ));
        }
        match (&c.exchange.fee_asset, c.exchange.fee_asset_price) {
            (Some(asset), None) => {
                return Err(self.invalid(
                    "exchange.fee_asset",
                    format!("{asset} needs its price: set exchange.fee_asset_price"),
                ))
            }
            (None, Some(_)) => {
                return Err(self.invalid(
                    "exchange.fee_asset_price",
                    "is the price of exchange.fee_asset, which is not set",
                ))
            }
            (_, Some(price)) if price <= Decimal::ZERO => {
                return Err(self.invalid(
                    "exchange.fee_asset_price",
                    format!("{price}: must be greater than 0"),
                ))
            }
            _ => {}
        }
        if let Some(info) = &c.exchange.info {
            if !info.exists() {
                return Err(self.invalid(
                    "exchange.info",
                    format!("{} does not exist", info.display()),
                ));
            }
        }
        Ok(())
    }

    /// Every key with its effective value (secrets masked) and where it came from.
    pub fn show(&self) -> Vec<(String, String, String)> {
        let value = serde_json::to_value(&self.config).unwrap_or_default();
        let mut leaves = Vec::new();
        flatten("", &value, &mut leaves);
        keys()
            .into_iter()
            .map(|key| {
                let value = leaves
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map_or(serde_json::Value::Null, |(_, v)| v.clone());
                let shown = match (key.as_str(), &value) {
                    (_, serde_json::Value::Null) => "(none)".to_owned(),
                    ("http.token", _) => "***".to_owned(),
                    ("http.tokens", serde_json::Value::Object(map)) => {
                        let names: Vec<String> =
                            map.keys().map(|name| format!("{name} = ***")).collect();
                        format!("{{{}}}", names.join(", "))
                    }
                    ("database_url", serde_json::Value::String(url)) => redact_url(url),
                    (_, serde_json::Value::String(s)) => s.clone(),
                    (_, other) => other.to_string(),
                };
                let origin = self.origin(&key);
                (key, shown, origin)
            })
            .collect()
    }
}

/// A commented example of every key with its default, for `hedgehog config init`.
pub fn example() -> String {
    let d = Config::default();
    let s = &d.strategy;
    format!(
        r#"# Hedgehog's configuration. Every key is optional; what is left out keeps its default.
# Precedence: this file < environment (HEDGEHOG_<SECTION>_<KEY>, DATABASE_URL) < flags.
# `hedgehog config show` prints the effective values and where each came from.

# sqlite://PATH (created if missing) or postgres://USER@HOST/DB
database_url = "{database_url}"

[http]
# where `hedgehog run` serves the HTTP API and dashboard
bind = "{bind}"
# "token": every request but /api/health and the dashboard's files needs a token (scripts:
# `Authorization: Bearer TOKEN`) or the dashboard's session; "off": none does (loopback only)
auth = "token"
# the API's token; without one, `run` makes one at first start and keeps it in token_file
# token = "at least 16 characters"
# default: beside a SQLite database file (hedgehog.api-token), else ~/.config/hedgehog/api-token
# token_file = "hedgehog.api-token"
# more tokens, each named in the audit trail of the commands it sends
tokens = {{}}
# Host names answered for besides localhost, 127.0.0.1, [::1] and the bound address, and
# origins whose pages may change things besides the server's own
allowed_hosts = []
allowed_origins = []

[exchange]
# paper, binance or binance-testnet (live modes also need --live and BINANCE_API_KEY/SECRET)
mode = "paper"
# Binance's trade stream, or a replay server's
stream_url = "{stream_url}"
# Binance's REST and WebSocket API URLs; default: the mode's
# api_url = "https://api.binance.com"
# ws_api_url = "wss://ws-api.binance.com:443/ws-api/v3"
# Binance's spot REST API for filling gaps in the trade stream (historicalTrades, public);
# default: https://api.binance.com while stream_url is Binance's own, none otherwise
# backfill_url = "https://api.binance.com"
# the most trades filled in one gap (0: gaps are reported, not filled)
backfill_limit = {backfill_limit}
# seconds a trade stream may send nothing (not even a ping) before it is taken as dead
idle_timeout_secs = {idle}
# an exchangeInfo file for the symbols' filters; default: the bundled snapshot
# info = "exchange-info.json.gz"
# paper fills: cross (a trade goes through the price) or touch (a trade at the price)
fill = "cross"
partial_fills = false
# charge paper commissions in another asset (BNB, with the discounted strategy fee), at a
# fixed price in the quote asset
# fee_asset = "BNB"
# fee_asset_price = "600"

[strategy]
# the settings a symbol trades with until `hedgehog settings set` changes them
# the strategy: "naive" (the book's) is the one this program runs; a program of your own
# built on the library registers others (see examples/grid_strategy.rs)
name = "{name}"
chunks = {chunks}
budget = "{budget}"
buy_down_interval = "{buy_down}"
profit_target = "{profit}"
rebuy_interval = "{rebuy}"
fee = "{fee}"

[symbols]
# switched on at the first start of `hedgehog run` (later switches are left alone)
stream = []
trade = []

[storing]
# whether the symbols above have their rows stored in trade_events / orders from their first
# start (events are stored either way; `hedgehog storing start|stop` switches them later)
trade_events = true
orders = true

[engine]
# trades a trading worker takes between two snapshots of its state (and one at a clean stop):
# after a crash, a restart reads at most this many of a symbol's trades again
snapshot_every = {snapshot_every}

[archive]
# `run` seals market trades older than this many days into compressed segments (about 7 bytes
# a trade instead of about 100) at its start and every hour; every reader reads through them.
# Unset: only `hedgehog archive` seals.
# older_than_days = 30

[cluster]
# several `hedgehog run` on one database share the symbols: each symbol's trading and streaming
# is owned by one node at a time, through a lease renewed every second. This node's name
# (default: the host's name, kept across restarts):
# node = "engine-1"
# how long a lease lasts unrenewed: a node that dies loses its symbols within this time
lease_ttl_secs = {lease_ttl}

[log]
# a tracing filter; default: warn,hedgehog=info for run, warn otherwise (RUST_LOG overrides)
# level = "info"
# text or json
format = "text"
"#,
        database_url = d.database_url,
        bind = d.http.bind,
        stream_url = d.exchange.stream_url,
        backfill_limit = d.exchange.backfill_limit,
        idle = d.exchange.idle_timeout_secs,
        name = s.name,
        chunks = s.chunks,
        budget = s.budget,
        buy_down = s.buy_down_interval,
        profit = s.profit_target,
        rebuy = s.rebuy_interval,
        fee = s.fee,
        snapshot_every = d.engine.snapshot_every,
        lease_ttl = d.cluster.lease_ttl_secs,
    )
}

/// Writes [`example`] to `path`, never over an existing file.
pub fn init(path: &Path) -> Result<(), ConfigError> {
    if path.exists() {
        return Err(ConfigError::Exists(path.to_path_buf()));
    }
    std::fs::write(path, example()).map_err(|source| ConfigError::Write {
        file: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_is_the_defaults() {
        // In a jail: no variable of the test's own environment leaks in.
        #[allow(clippy::result_large_err)] // figment::Jail's signature
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let path = jail.directory().join("hedgehog.toml");
            init(&path).unwrap();
            let loaded = load(Some(&path), serde_json::json!({})).unwrap();
            assert_eq!(loaded.config, Config::default());
            assert!(matches!(init(&path), Err(ConfigError::Exists(_))));
            Ok(())
        });
    }

    #[test]
    fn every_key_has_a_variable() {
        let keys = keys();
        assert!(keys.contains(&"exchange.mode".to_owned()));
        assert!(keys.contains(&"strategy.buy_down_interval".to_owned()));
        assert!(keys.contains(&"log.level".to_owned()));
        assert_eq!(
            env_name("strategy.buy_down_interval"),
            "HEDGEHOG_STRATEGY_BUY_DOWN_INTERVAL"
        );
    }
}
