//! python-binance drives `hedgehog exchange serve`: orders placed, queried and cancelled,
//! balances read, Binance's error codes met; then, on an exchange playing real trades, market
//! data read and market, IOC and maker orders (see `tests/python/python_binance_client.py`).

use crate::common::processes::exchange_serve;
use crate::common::python;

/// The pinned client version: what this test was written against.
const PYTHON_BINANCE: &str = "python-binance==1.0.37";

#[test]
fn python_binance_trades_against_the_paper_exchange() {
    let python = python::venv(PYTHON_BINANCE);
    let (key, secret) = ("py-key", "py-secret");
    let keys = ["--api-key", key, "--api-secret", secret];
    let serve = |args: &[&str]| exchange_serve(&[], &[&keys[..], args].concat());
    let (_empty, base) = serve(&[]);
    let tape = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spot_BTCUSDT_trades_20230404T235959_20230405T000654.binance-vision.csv.gz"
    );
    let (_playing, tape_base) = serve(&[
        "--start",
        "now",
        "--speed",
        "10",
        "--balance",
        "USDT=100000",
        "--symbol",
        "BTCUSDT",
        tape,
    ]);
    python::run(
        &python,
        "python_binance_client.py",
        &[&base, key, secret, &tape_base],
    );
}
