//! The configuration surface through the real binary: `hedgehog.toml` under the environment
//! under flags, key by key; every error names the key and where it came from, and nothing runs;
//! `config init` writes the defaults; `[symbols]` and `[strategy]` apply at the first start.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::processes::{terminate, Running};
use common::{symbol, TestDb};
use hedgehog_domain::Event;
use hedgehog_store::StreamId;
use rust_decimal_macros::dec;
use serde_json::Value;

/// `hedgehog ARGS` in `dir` with only `env` of Hedgehog's variables set.
fn hedgehog(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hedgehog"));
    command.current_dir(dir).args(args).env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("HEDGEHOG_") || name == "DATABASE_URL" {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

/// `config show --format json` as key -> (value, from).
fn show(dir: &Path, env: &[(&str, &str)], flags: &[&str]) -> Vec<(String, String, String)> {
    let mut args = flags.to_vec();
    args.extend(["config", "show", "--format", "json"]);
    rows(hedgehog(dir, env, &args))
}

/// The rows of `config show --format json` (or `run --print-config`).
fn rows(out: Output) -> Vec<(String, String, String)> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap().to_owned(),
                r["value"].as_str().unwrap().to_owned(),
                r["from"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn get(rows: &[(String, String, String)], key: &str) -> (String, String) {
    rows.iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, v, f)| (v.clone(), f.clone()))
        .unwrap_or_else(|| panic!("no {key} in {rows:?}"))
}

/// One key across the layers: its line in the file (under its section), the value it shows
/// from the file, its variable and the value from there, and, if a flag sets it, the flag's
/// arguments (`run`'s own start with "run") and the value from there.
struct Case {
    key: &'static str,
    file: &'static str,
    from_file: &'static str,
    env: (&'static str, &'static str),
    from_env: &'static str,
    flag: Option<(&'static [&'static str], &'static str)>,
}

const fn case(
    key: &'static str,
    file: &'static str,
    from_file: &'static str,
    env: (&'static str, &'static str),
    from_env: &'static str,
    flag: Option<(&'static [&'static str], &'static str)>,
) -> Case {
    Case {
        key,
        file,
        from_file,
        env,
        from_env,
        flag,
    }
}

/// Every key of the configuration (the test fails if `config show` lists one more).
const CASES: &[Case] = &[
    case(
        "database_url",
        "database_url = \"sqlite://file.db\"",
        "sqlite://file.db",
        ("DATABASE_URL", "sqlite://env.db"),
        "sqlite://env.db",
        Some((&["--database-url", "sqlite://flag.db"], "sqlite://flag.db")),
    ),
    case(
        "http.bind",
        "bind = \"127.0.0.1:9001\"",
        "127.0.0.1:9001",
        ("HEDGEHOG_HTTP_BIND", "127.0.0.1:9002"),
        "127.0.0.1:9002",
        Some((&["run", "--http", "127.0.0.1:9003"], "127.0.0.1:9003")),
    ),
    case(
        "http.token",
        "token = \"file-secret\"",
        "***",
        ("HEDGEHOG_API_TOKEN", "env-secret"),
        "***",
        Some((&["run", "--api-token", "flag-secret"], "***")),
    ),
    case(
        "exchange.mode",
        "mode = \"binance-testnet\"",
        "binance-testnet",
        ("HEDGEHOG_EXCHANGE_MODE", "binance"),
        "binance",
        Some((&["run", "--exchange", "paper"], "paper")),
    ),
    case(
        "exchange.stream_url",
        "stream_url = \"ws://127.0.0.1:1\"",
        "ws://127.0.0.1:1",
        ("HEDGEHOG_BINANCE_WS_URL", "ws://127.0.0.1:2"),
        "ws://127.0.0.1:2",
        Some((
            &["run", "--binance-ws-url", "ws://127.0.0.1:3"],
            "ws://127.0.0.1:3",
        )),
    ),
    case(
        "exchange.api_url",
        "api_url = \"http://127.0.0.1:1\"",
        "http://127.0.0.1:1",
        ("HEDGEHOG_EXCHANGE_API_URL", "http://127.0.0.1:2"),
        "http://127.0.0.1:2",
        Some((
            &["run", "--binance-api-url", "http://127.0.0.1:3"],
            "http://127.0.0.1:3",
        )),
    ),
    case(
        "exchange.ws_api_url",
        "ws_api_url = \"ws://127.0.0.1:1/ws-api/v3\"",
        "ws://127.0.0.1:1/ws-api/v3",
        ("HEDGEHOG_BINANCE_WS_API_URL", "ws://127.0.0.1:2/ws-api/v3"),
        "ws://127.0.0.1:2/ws-api/v3",
        Some((
            &["run", "--binance-ws-api-url", "ws://127.0.0.1:3/ws-api/v3"],
            "ws://127.0.0.1:3/ws-api/v3",
        )),
    ),
    case(
        "exchange.info",
        "info = \"info-file.json\"",
        "info-file.json",
        ("HEDGEHOG_EXCHANGE_INFO", "info-env.json"),
        "info-env.json",
        Some((&["--exchange-info", "info-flag.json"], "info-flag.json")),
    ),
    case(
        "exchange.fill",
        "fill = \"touch\"",
        "touch",
        ("HEDGEHOG_EXCHANGE_FILL", "cross"),
        "cross",
        Some((&["run", "--fill", "touch"], "touch")),
    ),
    case(
        "exchange.partial_fills",
        "partial_fills = false",
        "false",
        ("HEDGEHOG_EXCHANGE_PARTIAL_FILLS", "false"),
        "false",
        Some((&["run", "--partial-fills"], "true")),
    ),
    case(
        "strategy.name",
        "name = \"grid\"",
        "grid",
        ("HEDGEHOG_STRATEGY_NAME", "naive"),
        "naive",
        None,
    ),
    case(
        "strategy.chunks",
        "chunks = 2",
        "2",
        ("HEDGEHOG_STRATEGY_CHUNKS", "3"),
        "3",
        None,
    ),
    case(
        "strategy.budget",
        "budget = 250",
        "250",
        ("HEDGEHOG_STRATEGY_BUDGET", "300"),
        "300",
        None,
    ),
    case(
        "strategy.buy_down_interval",
        "buy_down_interval = \"0.002\"",
        "0.002",
        ("HEDGEHOG_STRATEGY_BUY_DOWN_INTERVAL", "0.003"),
        "0.003",
        None,
    ),
    case(
        "strategy.profit_target",
        "profit_target = \"0.004\"",
        "0.004",
        ("HEDGEHOG_STRATEGY_PROFIT_TARGET", "0.005"),
        "0.005",
        None,
    ),
    case(
        "strategy.rebuy_interval",
        "rebuy_interval = \"0.006\"",
        "0.006",
        ("HEDGEHOG_STRATEGY_REBUY_INTERVAL", "0.007"),
        "0.007",
        None,
    ),
    case(
        "strategy.fee",
        "fee = \"0.0008\"",
        "0.0008",
        ("HEDGEHOG_STRATEGY_FEE", "0.0009"),
        "0.0009",
        None,
    ),
    case(
        "exchange.backfill_url",
        "backfill_url = \"http://127.0.0.1:1\"",
        "http://127.0.0.1:1",
        ("HEDGEHOG_EXCHANGE_BACKFILL_URL", "http://127.0.0.1:2"),
        "http://127.0.0.1:2",
        Some((
            &["run", "--backfill-url", "http://127.0.0.1:3"],
            "http://127.0.0.1:3",
        )),
    ),
    case(
        "http.allowed_hosts",
        "allowed_hosts = [\"hedgehog.lan\"]",
        "[\"hedgehog.lan\"]",
        ("HEDGEHOG_HTTP_ALLOWED_HOSTS", "[\"desk.lan\"]"),
        "[\"desk.lan\"]",
        None,
    ),
    case(
        "http.allowed_origins",
        "allowed_origins = [\"https://a.example\"]",
        "[\"https://a.example\"]",
        ("HEDGEHOG_HTTP_ALLOWED_ORIGINS", "[\"https://b.example\"]"),
        "[\"https://b.example\"]",
        None,
    ),
    case(
        "http.auth",
        "auth = \"off\"",
        "off",
        ("HEDGEHOG_HTTP_AUTH", "token"),
        "token",
        Some((&["run", "--no-auth"], "off")),
    ),
    case(
        "http.token_file",
        "token_file = \"from-file.token\"",
        "from-file.token",
        ("HEDGEHOG_HTTP_TOKEN_FILE", "from-env.token"),
        "from-env.token",
        None,
    ),
    case(
        "http.tokens",
        "tokens = { desk = \"file-desk-secret-0000\" }",
        "{desk = ***}",
        ("HEDGEHOG_HTTP_TOKENS", "{ops = \"env-ops-secret-00000\"}"),
        // Tables merge: the environment adds tokens to the file's.
        "{desk = ***, ops = ***}",
        None,
    ),
    case(
        "exchange.fee_asset",
        "fee_asset = \"BNB\"",
        "BNB",
        ("HEDGEHOG_EXCHANGE_FEE_ASSET", "ETH"),
        "ETH",
        None,
    ),
    case(
        "exchange.fee_asset_price",
        "fee_asset_price = \"600\"",
        "600",
        ("HEDGEHOG_EXCHANGE_FEE_ASSET_PRICE", "3000.5"),
        "3000.5",
        None,
    ),
    case(
        "exchange.idle_timeout_secs",
        "idle_timeout_secs = 30",
        "30",
        ("HEDGEHOG_EXCHANGE_IDLE_TIMEOUT_SECS", "90"),
        "90",
        None,
    ),
    case(
        "exchange.backfill_limit",
        "backfill_limit = 10",
        "10",
        ("HEDGEHOG_EXCHANGE_BACKFILL_LIMIT", "0"),
        "0",
        None,
    ),
    case(
        "symbols.stream",
        "stream = [\"BTCUSDT\"]",
        "[\"BTCUSDT\"]",
        ("HEDGEHOG_SYMBOLS_STREAM", "[ETHUSDT]"),
        "[\"ETHUSDT\"]",
        None,
    ),
    case(
        "symbols.trade",
        "trade = [\"BTCUSDT\"]",
        "[\"BTCUSDT\"]",
        ("HEDGEHOG_SYMBOLS_TRADE", "[ADAUSDT]"),
        "[\"ADAUSDT\"]",
        None,
    ),
    case(
        "storing.trade_events",
        "trade_events = false",
        "false",
        ("HEDGEHOG_STORING_TRADE_EVENTS", "true"),
        "true",
        None,
    ),
    case(
        "storing.orders",
        "orders = false",
        "false",
        ("HEDGEHOG_STORING_ORDERS", "true"),
        "true",
        None,
    ),
    case(
        "log.level",
        "level = \"info\"",
        "info",
        ("HEDGEHOG_LOG_LEVEL", "debug"),
        "debug",
        Some((&["--log-level", "warn"], "warn")),
    ),
    case(
        "engine.snapshot_every",
        "snapshot_every = 500",
        "500",
        ("HEDGEHOG_ENGINE_SNAPSHOT_EVERY", "20000"),
        "20000",
        None,
    ),
    case(
        "archive.older_than_days",
        "older_than_days = 30",
        "30",
        ("HEDGEHOG_ARCHIVE_OLDER_THAN_DAYS", "7"),
        "7",
        None,
    ),
    case(
        "cluster.node",
        "node = \"engine-1\"",
        "engine-1",
        ("HEDGEHOG_CLUSTER_NODE", "engine-2"),
        "engine-2",
        None,
    ),
    case(
        "cluster.lease_ttl_secs",
        "lease_ttl_secs = 15",
        "15",
        ("HEDGEHOG_CLUSTER_LEASE_TTL_SECS", "5"),
        "5",
        None,
    ),
    case(
        "log.format",
        "format = \"json\"",
        "json",
        ("HEDGEHOG_LOG_FORMAT", "text"),
        "text",
        Some((&["--log-format", "json"], "json")),
    ),
];

/// The file holding every case's line under its section.
fn file_of_cases() -> String {
    let mut top = String::new();
    let mut sections: std::collections::BTreeMap<&str, String> = Default::default();
    for c in CASES {
        match c.key.split_once('.') {
            Some((section, _)) => {
                let body = sections.entry(section).or_default();
                body.push_str(c.file);
                body.push('\n');
            }
            None => {
                top.push_str(c.file);
                top.push('\n');
            }
        }
    }
    for (section, body) in sections {
        top.push_str(&format!("[{section}]\n{body}"));
    }
    top
}

#[test]
fn each_key_comes_from_the_file_then_the_environment_then_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hedgehog.toml"), file_of_cases()).unwrap();
    for name in ["info-file.json", "info-env.json", "info-flag.json"] {
        std::fs::write(dir.path().join(name), "{}").unwrap();
    }
    let from_file = show(dir.path(), &[], &[]);
    let listed: Vec<&str> = from_file.iter().map(|(k, _, _)| k.as_str()).collect();
    let tested: Vec<&str> = CASES.iter().map(|c| c.key).collect();
    assert_eq!(
        listed.iter().collect::<std::collections::BTreeSet<_>>(),
        tested.iter().collect::<std::collections::BTreeSet<_>>(),
        "every key has a case"
    );
    for c in CASES {
        assert_eq!(
            get(&from_file, c.key),
            (c.from_file.to_owned(), "file hedgehog.toml".to_owned()),
            "{}: from the file",
            c.key
        );
        let env = [c.env];
        let from_env = show(dir.path(), &env, &[]);
        assert_eq!(
            get(&from_env, c.key),
            (c.from_env.to_owned(), format!("environment {}", c.env.0)),
            "{}: the environment overrides the file",
            c.key
        );
        let Some((flag, from_flag)) = c.flag else {
            continue;
        };
        // Global flags go to `config show`; `run`'s to `run --print-config`, which prints
        // the same table and starts nothing.
        let shown = match flag.split_first() {
            Some((&"run", rest)) => show_with_run_flags(dir.path(), &env, rest),
            _ => show(dir.path(), &env, flag),
        };
        assert_eq!(
            get(&shown, c.key),
            (from_flag.to_owned(), "flag".to_owned()),
            "{}: a flag overrides the environment",
            c.key
        );
    }
    // The default when no layer sets a key.
    let bare = tempfile::tempdir().unwrap();
    let defaults = show(bare.path(), &[], &[]);
    assert_eq!(
        get(&defaults, "strategy.fee"),
        ("0.001".into(), "default".into())
    );
}

/// `run --print-config FLAGS`: the effective configuration with `run`'s own flags.
fn show_with_run_flags(
    dir: &Path,
    env: &[(&str, &str)],
    flags: &[&str],
) -> Vec<(String, String, String)> {
    let mut args = vec!["run", "--print-config"];
    args.extend_from_slice(flags);
    rows(hedgehog(dir, env, &args))
}

#[test]
fn every_error_names_the_key_and_where_it_came_from_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    let refused = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["--config", "bad.toml"];
        all.extend_from_slice(args);
        all.push("status");
        let out = hedgehog(dir.path(), env, &all);
        assert!(!out.status.success(), "must refuse: {out:?}");
        assert!(
            !dir.path().join("hedgehog.db").exists(),
            "nothing ran: no store was created"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let cases = [
        (
            "[strategy]\nbudgte = 5\n",
            "strategy.budgte (from file bad.toml): unknown field",
        ),
        (
            "nonsense = 1\n",
            "nonsense (from file bad.toml): unknown field",
        ),
        (
            "[strategy]\nchunks = \"x\"\n",
            "strategy.chunks (from file bad.toml): invalid type",
        ),
        (
            "[strategy]\nbudget = -5\n",
            "strategy.budget (from file bad.toml)",
        ),
        (
            "[exchange]\nstream_url = \"nope\"\n",
            "exchange.stream_url (from file bad.toml): \"nope\" is not a URL",
        ),
        (
            "[exchange]\nmode = \"kraken\"\n",
            "exchange.mode (from file bad.toml): unknown variant",
        ),
        (
            "[http]\nbind = \"localhost\"\n",
            "http.bind (from file bad.toml)",
        ),
        ("[log]\nlevel = \"=!=\"\n", "log.level (from file bad.toml)"),
        (
            "[exchange]\nidle_timeout_secs = 0\n",
            "exchange.idle_timeout_secs (from file bad.toml): 0: must be at least 1",
        ),
        (
            "[exchange]\nfee_asset = \"BNB\"\n",
            "exchange.fee_asset (from file bad.toml): BNB needs its price",
        ),
        (
            "[exchange]\nfee_asset = \"BNB\"\nfee_asset_price = \"0\"\n",
            "exchange.fee_asset_price (from file bad.toml): 0: must be greater",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&file, text).unwrap();
        let why = refused(&[], &[]);
        assert!(why.contains(expected), "{text:?}: {why}");
    }
    std::fs::write(&file, "").unwrap();
    let why = refused(&[("HEDGEHOG_STRATEGY_BUDGET", "-1")], &[]);
    assert!(
        why.contains("strategy.budget (from environment HEDGEHOG_STRATEGY_BUDGET)"),
        "{why}"
    );
    let why = refused(&[], &["--database-url", "ftp://x"]);
    assert!(why.contains("database_url (from flag)"), "{why}");
    let out = hedgehog(dir.path(), &[], &["--config", "missing.toml", "status"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    assert!(!out.status.success());
}

#[test]
fn config_init_writes_the_defaults_and_never_over_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = hedgehog(dir.path(), &[], &["config", "init"]);
    assert!(out.status.success());
    let rows = show(dir.path(), &[], &[]);
    assert!(rows.iter().all(|(_, _, from)| from != "flag"));
    let defaults = show(dir.path(), &[], &["--config", "/dev/null"]);
    let values = |rows: &[(String, String, String)]| -> Vec<(String, String)> {
        rows.iter()
            .map(|(k, v, _)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(
        values(&rows),
        values(&defaults),
        "the example holds the defaults"
    );
    let again = hedgehog(dir.path(), &[], &["config", "init"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_and_strategy_apply_at_the_first_start_only() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hedgehog.toml"),
        format!(
            "database_url = \"{}\"\n[exchange]\nstream_url = \"ws://127.0.0.1:9\"\n[strategy]\nbudget = \"150\"\nchunks = 3\n[symbols]\nstream = [\"BTCUSDT\"]\ntrade = [\"BTCUSDT\"]\n[storing]\norders = false\n",
            db.url
        ),
    )
    .unwrap();
    let store = db.open().await;
    let start = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hedgehog"));
        command.current_dir(dir.path()).args(["run", "--no-http"]);
        for (name, _) in std::env::vars() {
            if name.starts_with("HEDGEHOG_") || name == "DATABASE_URL" {
                command.env_remove(name);
            }
        }
        Running::new(command.spawn().unwrap())
    };
    let trading = StreamId::trading(&symbol("BTCUSDT"));
    let mut engine = start();
    let started = Instant::now();
    while store.stream_version(&trading).await.unwrap() < 2 {
        assert!(
            engine.child().try_wait().unwrap().is_none(),
            "the engine died"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no first start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    terminate(engine);
    let events: Vec<Event> = store
        .read_stream_to_end(&trading)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    let Event::SettingsUpdated(settings) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (settings.settings.budget, settings.settings.chunks),
        (dec!(150), 3)
    );
    assert!(matches!(events[1], Event::TradingStarted(_)));
    assert!(
        hedgehog_engine::streaming::is_on(&store, &symbol("BTCUSDT"))
            .await
            .unwrap()
    );
    let storing = hedgehog_engine::storing::status(&store).await.unwrap();
    let (_, btc) = storing
        .iter()
        .find(|(s, _)| s.as_str() == "BTCUSDT")
        .unwrap();
    use hedgehog_domain::events::StoringTopic;
    assert!(btc.is_on(StoringTopic::TradeEvents) && !btc.is_on(StoringTopic::Orders));
    // Stopped by the user: the next start leaves it stopped.
    let out = hedgehog(dir.path(), &[], &["trading", "stop", "BTCUSDT"]);
    assert!(out.status.success(), "{out:?}");
    let before = store.stream_version(&trading).await.unwrap();
    let engine = start();
    tokio::time::sleep(Duration::from_secs(2)).await;
    terminate(engine);
    assert_eq!(store.stream_version(&trading).await.unwrap(), before);
}

/// `log.format = "json"` (here from the environment) makes every log line a JSON object, and
/// `log.level` filters them.
#[test]
fn logs_come_as_json_lines_when_configured() {
    let db = TestDb::sqlite();
    let dir = tempfile::tempdir().unwrap();
    // A streamer that cannot connect warns on every attempt.
    let logs = |level: &str| {
        let child = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .current_dir(dir.path())
            .args(["--database-url", &db.url, "stream", "--symbol", "BTCUSDT"])
            .args(["--binance-ws-url", "ws://127.0.0.1:9"])
            .env_remove("RUST_LOG")
            .env("HEDGEHOG_LOG_FORMAT", "json")
            .env("HEDGEHOG_LOG_LEVEL", level)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let warn = logs("warn");
    let lines: Vec<Value> = warn
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["level"] == "WARN"
            && l["fields"]["message"] == "cannot connect to the trade stream"),
        "{warn}"
    );
    assert_eq!(logs("error"), "", "a warning is below the error level");
}
