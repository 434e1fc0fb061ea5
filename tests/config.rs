//! The configuration surface through the real binary: `hedgehog.toml` under the environment
//! under flags, key by key; every error names the key and where it came from, and nothing runs;
//! `config init` writes the defaults; `[symbols]` and `[strategy]` apply at the first start.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::processes::{terminate, Running};
use common::{symbol, TestDb};
use hedgehog::domain::Event;
use hedgehog::store::StreamId;
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

const FILE: &str = r#"
database_url = "sqlite://from-file.db"
[exchange]
mode = "binance-testnet"
fill = "touch"
[strategy]
budget = 250
chunks = 2
[http]
bind = "127.0.0.1:9001"
token = "file-secret"
[log]
format = "json"
"#;

#[test]
fn each_key_comes_from_the_file_then_the_environment_then_a_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hedgehog.toml"), FILE).unwrap();
    // (key, variable, value from the environment, flag, value from the flag)
    let cases: &[(&str, &str, &str, &[&str], &str)] = &[
        (
            "database_url",
            "DATABASE_URL",
            "sqlite://from-env.db",
            &["--database-url", "sqlite://from-flag.db"],
            "sqlite://from-flag.db",
        ),
        (
            "exchange.mode",
            "HEDGEHOG_EXCHANGE_MODE",
            "binance",
            &["run", "--exchange", "paper"],
            "paper",
        ),
        (
            "exchange.fill",
            "HEDGEHOG_EXCHANGE_FILL",
            "cross",
            &["run", "--fill", "touch"],
            "touch",
        ),
        (
            "http.bind",
            "HEDGEHOG_HTTP_BIND",
            "127.0.0.1:9002",
            &["run", "--http", "127.0.0.1:9003"],
            "127.0.0.1:9003",
        ),
        (
            "log.format",
            "HEDGEHOG_LOG_FORMAT",
            "text",
            &["--log-format", "json"],
            "json",
        ),
        (
            "exchange.stream_url",
            "HEDGEHOG_BINANCE_WS_URL",
            "ws://127.0.0.1:1",
            &["run", "--binance-ws-url", "ws://127.0.0.1:2"],
            "ws://127.0.0.1:2",
        ),
    ];
    let file = format!("file {}", "hedgehog.toml");
    let from_file = show(dir.path(), &[], &[]);
    assert_eq!(
        get(&from_file, "strategy.budget"),
        ("250".into(), file.clone())
    );
    assert_eq!(
        get(&from_file, "strategy.fee"),
        ("0.001".into(), "default".into())
    );
    assert_eq!(
        get(&from_file, "http.token"),
        ("***".into(), file.clone()),
        "secrets are masked"
    );
    for (key, variable, env_value, flag, flag_value) in cases {
        let (value, from) = get(&from_file, key);
        if *key != "exchange.stream_url" {
            assert_eq!(from, file, "{key} from the file");
        }
        assert_ne!(value, *env_value, "{key}: the cases must differ per layer");
        let env = [(*variable, *env_value)];
        let from_env = show(dir.path(), &env, &[]);
        assert_eq!(
            get(&from_env, key),
            (env_value.to_string(), format!("environment {variable}")),
            "{key}: the environment overrides the file"
        );
        // A flag is given where the command takes it: global ones to `config show`, `run`'s
        // to `run --print-config`, which prints the same table and starts nothing.
        let mut args: Vec<&str> = flag.to_vec();
        let run = args.first() == Some(&"run");
        if run {
            args.remove(0);
        }
        let out = if run {
            show_with_run_flags(dir.path(), &env, &args)
        } else {
            show(dir.path(), &env, &args)
        };
        assert_eq!(
            get(&out, key),
            (flag_value.to_string(), "flag".into()),
            "{key}: a flag overrides the environment"
        );
    }
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
    assert!(hedgehog::streaming::is_on(&store, &symbol("BTCUSDT"))
        .await
        .unwrap());
    let storing = hedgehog::storing::status(&store).await.unwrap();
    let (_, btc) = storing
        .iter()
        .find(|(s, _)| s.as_str() == "BTCUSDT")
        .unwrap();
    use hedgehog::domain::events::StoringTopic;
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
