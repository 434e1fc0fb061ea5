//! Helpers for tests that run the replay server and the streamer as real processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use hedgehog_store::StreamId;

use super::TestDb;

pub const WS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/binance-ws");

/// What a child process printed on stdout, line by line, read on a thread of its own so that
/// it never writes to a closed pipe.
#[derive(Clone, Default)]
pub struct Printed(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Printed {
    /// Reads `child`'s piped stdout from now on.
    pub fn follow(child: &mut Child) -> Printed {
        let printed = Printed::default();
        let lines = printed.clone();
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.0.lock().unwrap().push(line);
            }
        });
        printed
    }

    /// The first line containing `text`, waiting up to 30 s for it.
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self.0.lock().unwrap().iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no line with {text:?} in 30 s: {:?}",
                self.0.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address starting with `scheme` on the first line containing `text`: where a server
    /// it started says it listens.
    pub fn address(&self, text: &str, scheme: &str) -> String {
        let line = self.wait_for(text);
        line.split_whitespace()
            .find(|w| w.starts_with(scheme))
            .unwrap_or_else(|| panic!("no {scheme} address in {line:?}"))
            .to_owned()
    }

    pub fn all(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}

pub struct Replay {
    pub child: Child,
    pub url: String,
}

impl Replay {
    pub fn start(files: &[&str], drop_every: u64) -> Replay {
        Replay::launch(
            files,
            &["--speed", "0", "--drop-every", &drop_every.to_string()],
        )
    }

    /// Plays `files` (names in the fixtures) on a free port with further `args`.
    pub fn launch(files: &[&str], args: &[&str]) -> Replay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .arg("replay-server")
            .args(files.iter().map(|f| format!("{WS}/{f}")))
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the replay server");
        let url = Printed::follow(&mut child).address("ws://", "ws://");
        Replay { child, url }
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hedgehog [GLOBAL...] exchange serve --port 0 [ARGS...]` (files among the args), running
/// until dropped, and its base URL (`http://127.0.0.1:PORT`).
pub fn exchange_serve(global: &[&str], args: &[&str]) -> (Running, String) {
    let mut exchange = Running::new(
        Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .args(global)
            .args(["exchange", "serve", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the exchange"),
    );
    let base = Printed::follow(exchange.child()).address("http://", "http://");
    (exchange, base)
}

/// A child process killed when dropped, so a failing test leaves nothing running behind it.
pub struct Running(Option<Child>);

impl Running {
    pub fn new(child: Child) -> Running {
        Running(Some(child))
    }

    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("still running")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn start_streamer(db: &TestDb, url: &str) -> Running {
    start_stream(db, url, &["--symbol", "BTCUSDT"])
}

/// `hedgehog stream` with `args` (no `--symbol`: it follows the streaming switches).
pub fn start_stream(db: &TestDb, url: &str, args: &[&str]) -> Running {
    let mut all = vec!["stream"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--binance-ws-url", url]);
    spawn(db, &all)
}

/// `hedgehog --database-url DB ARGS...` left running (stdout piped for [`stop`]).
pub fn spawn(db: &TestDb, args: &[&str]) -> Running {
    spawn_with_env(db, args, &[])
}

/// [`spawn`] with these environment variables set.
pub fn spawn_with_env(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Running {
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map(|child| Running(Some(child)))
        .expect("start hedgehog")
}

/// SIGTERM, then the summary line the streamer prints after flushing.
pub fn stop(mut running: Running) -> String {
    let child = running.0.take().expect("still running");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the streamer exits 0 on SIGTERM");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn number(summary: &str, label: &str) -> u64 {
    let rest = summary
        .split(label)
        .nth(1)
        .unwrap_or_else(|| panic!("{label} in {summary}"));
    rest.trim_start_matches([' ', '('])
        .split([',', ' ', ')'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Waits until the stream holds `version` events, failing at once if either process died.
pub async fn wait_for(
    db: &TestDb,
    stream: &StreamId,
    version: i64,
    replay: &mut Replay,
    streamer: &mut Running,
) {
    let store = db.open().await;
    let started = Instant::now();
    while store.stream_version(stream).await.unwrap() < version {
        if let Some(status) = replay.child.try_wait().unwrap() {
            panic!("the replay server exited early: {status}");
        }
        if let Some(status) = streamer.child().try_wait().unwrap() {
            panic!("the streamer exited early: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "timed out waiting for {version} trades"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `hedgehog --database-url DB ARGS...` to completion.
pub fn hedgehog(db: &TestDb, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hedgehog"))
        .args(["--database-url", &db.url])
        .args(args)
        .output()
        .expect("run hedgehog")
}

/// The stdout of a run that must have succeeded (its stderr shown if it did not).
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a run that must have been refused with a non-zero exit.
pub fn refused(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected a refusal: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// SIGTERM to an engine (or any long-running command), then its exit: 0 within 10 s.
pub fn terminate(mut running: Running) {
    let mut engine = running.0.take().expect("still running");
    let status = Command::new("kill")
        .args(["-TERM", &engine.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    loop {
        if let Some(status) = engine.try_wait().unwrap() {
            assert!(status.success(), "the engine exits 0 on SIGTERM: {status}");
            return;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = engine.kill();
            panic!("the engine did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
