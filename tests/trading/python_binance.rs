//! python-binance, installed from PyPI into a virtual environment under the target directory,
//! drives `hedgehog exchange serve`: orders placed, queried and cancelled, balances read,
//! Binance's error codes met (see `tests/python/python_binance_client.py`). It needs `python3`
//! with `venv` and PyPI; without them it fails and says so (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The pinned client version: what this test was written against.
const PYTHON_BINANCE: &str = "python-binance==1.0.37";

/// A virtual environment with python-binance, made once per target directory.
fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("python-binance-venv");
    let python = dir.join("bin/python");
    let ready = dir.join(".installed");
    if !ready.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&dir)
            .status()
            .expect("python3 must be installed (with venv) for this test");
        assert!(
            made.success(),
            "python3 -m venv failed: install python3-venv"
        );
        let installed = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", PYTHON_BINANCE])
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "pip could not install {PYTHON_BINANCE} from PyPI"
        );
        std::fs::write(&ready, PYTHON_BINANCE).unwrap();
    }
    python
}

#[test]
fn python_binance_trades_against_the_paper_exchange() {
    let python = venv();
    let (key, secret) = ("py-key", "py-secret");
    let mut exchange = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["exchange", "serve", "--port", "0"])
        .args(["--api-key", key, "--api-secret", secret])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let base =
        crate::common::processes::Printed::follow(&mut exchange).address("http://", "http://");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/python_binance_client.py"
    );
    let ran = Command::new(&python)
        .args([script, &base, key, secret])
        .output()
        .unwrap();
    let _ = exchange.kill();
    let _ = exchange.wait();
    assert!(
        ran.status.success() && String::from_utf8_lossy(&ran.stdout).trim() == "ok",
        "python-binance against the exchange:\n{}\n{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}
