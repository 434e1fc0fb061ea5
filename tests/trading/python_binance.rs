//! python-binance drives `hedgehog exchange serve`: orders placed, queried and cancelled,
//! balances read, Binance's error codes met (see `tests/python/python_binance_client.py`).

use std::process::{Command, Stdio};

use crate::common::processes::{Printed, Running};
use crate::common::python;

/// The pinned client version: what this test was written against.
const PYTHON_BINANCE: &str = "python-binance==1.0.37";

#[test]
fn python_binance_trades_against_the_paper_exchange() {
    let python = python::venv(PYTHON_BINANCE);
    let (key, secret) = ("py-key", "py-secret");
    let mut exchange = Running::new(
        Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .args(["exchange", "serve", "--port", "0"])
            .args(["--api-key", key, "--api-secret", secret])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = Printed::follow(exchange.child()).address("http://", "http://");
    python::run(&python, "python_binance_client.py", &[&base, key, secret]);
}
