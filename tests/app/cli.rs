//! The `hedgehog` binary as a user runs it.

use crate::common;

use std::process::Command;

use common::{trades, TestDb};
use hedgehog_store::{ExpectedVersion, StreamId};

fn hedgehog(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run hedgehog")
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn database_url_is_global_and_events_are_listed() {
    let db = TestDb::sqlite();
    let store = db.open().await;
    let stream = StreamId::trades(&common::symbol("ADAUSDT"));
    store
        .append(&stream, ExpectedVersion::Any, trades("ADAUSDT", 1..6))
        .await
        .unwrap();

    // Before the subcommand...
    let out = hedgehog(&["--database-url", &db.url, "status"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("events:    5"), "{text}");
    assert!(text.contains("TradeReceived on trades-ADAUSDT"), "{text}");

    // ...or after it.
    let out = hedgehog(&["events", "--database-url", &db.url, "--from", "4"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert_eq!(
        text.lines().count(),
        3,
        "header and positions 4, 5:\n{text}"
    );
    assert!(text.contains(r#""trade_id":5"#), "{text}");

    let out = hedgehog(&[
        "--database-url",
        &db.url,
        "events",
        "--stream",
        "trades-ADAUSDT",
        "--format",
        "json",
        "--limit",
        "2",
    ]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["stream_version"], 2);
    assert_eq!(lines[1]["event"]["type"], "TradeReceived");
    assert_eq!(lines[1]["event"]["price"], "0.09643002");

    let out = hedgehog(&["--database-url", &db.url, "streams"]);
    assert!(stdout(&out).contains("trades-ADAUSDT"));
}

#[test]
fn bad_input_gets_a_clear_error_and_a_non_zero_exit() {
    let out = hedgehog(&["--database-url", "mysql://root@localhost/x", "status"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("database_url (from flag)") && err.contains("scheme \"mysql\""),
        "{err}"
    );

    let db = TestDb::sqlite();
    let out = hedgehog(&["--database-url", &db.url, "events", "--stream", "$all"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--stream") && err.contains("reserved"),
        "{err}"
    );
}

#[test]
fn passwords_are_masked_in_errors() {
    let out = hedgehog(&[
        "--database-url",
        "postgres://hh:topsecret@127.0.0.1:1/nope?connect_timeout=1",
        "status",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hh:***@127.0.0.1:1"), "{err}");
    assert!(!err.contains("topsecret"), "{err}");
}
