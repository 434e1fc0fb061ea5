//! A short load run in the suite, on both backends: `hedgehog run` with 20 symbols replayed at
//! full speed and 200 SSE clients for 10 s, through `hedgehog-bench load`, which exits non-zero
//! on any client error, any event lost or out of order (every events client is checked against
//! the log), or an unclean SIGTERM exit. The full minute, and the memory curve, are in
//! BENCHMARKS.md (speed and memory are measured there, not here).

use crate::common;

use std::process::Command;

use common::TestDb;

on_both_backends!(twenty_symbols_and_two_hundred_subscribers_lose_nothing);

mod cases {
    use super::*;

    pub async fn twenty_symbols_and_two_hundred_subscribers_lose_nothing(db: &TestDb) {
        let out = Command::new(env!("CARGO_BIN_EXE_hedgehog-bench"))
            .args(["load", "--symbols", "20", "--clients", "200"])
            .args(["--seconds", "10", "--trades", "5000"])
            .args(["--database-url", &db.url])
            .output()
            .expect("run hedgehog-bench load");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(report.contains("lost or out of order 0"), "{report}");
        assert!(report.contains("client errors 0"), "{report}");
        let checked: u64 = report
            .split("checked against the log: ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{report}"));
        assert!(
            checked > 1000,
            "the events clients received events: {report}"
        );
    }
}
