//! Python clients nobody at Hedgehog wrote (python-binance, ccxt), installed from PyPI into a
//! virtual environment under the target directory. Without `python3` (with `venv`) or PyPI the
//! tests that use them fail and say so (`.ci/run` installs Python).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A virtual environment with `requirement` (pinned: `name==version`), made once per target
/// directory and requirement; its `python`.
pub fn venv(requirement: &str) -> PathBuf {
    let name = requirement.replace(['=', '.'], "-");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("venv-{name}"));
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
            .args(["-m", "pip", "install", "--quiet", requirement])
            .status()
            .unwrap();
        assert!(
            installed.success(),
            "pip could not install {requirement} from PyPI"
        );
        std::fs::write(&ready, requirement).unwrap();
    }
    python
}

/// Runs a script of `tests/python/` with `args`; asserts it printed `ok` and exited 0.
pub fn run(python: &Path, script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let ran = Command::new(python).arg(&path).args(args).output().unwrap();
    assert!(
        ran.status.success() && String::from_utf8_lossy(&ran.stdout).trim() == "ok",
        "{script} against the exchange:\n{}\n{}",
        String::from_utf8_lossy(&ran.stdout),
        String::from_utf8_lossy(&ran.stderr)
    );
}
