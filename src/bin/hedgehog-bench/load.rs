//! `hedgehog-bench load`: `hedgehog run` under many symbols and many subscribers.
//!
//! It writes a synthetic recording (a random walk per symbol on the symbol's own tick and lot
//! sizes, interleaved), switches every symbol's trading and streaming on through the CLI, then
//! starts the replay server at full speed and the engine, and opens the Server-Sent-Events
//! clients: half on `/api/updates` (what a dashboard reads), half on `/api/events?symbol=S`
//! (what a reporting client reads), spread over the symbols. When the time is up it stops the
//! engine with SIGTERM and checks every events client against the log: each must have received
//! exactly its symbol's events up to the last one it saw, in order. Memory is the engine's
//! resident set, sampled every second.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use hedgehog_domain::exchange::SymbolRules;
use hedgehog_domain::Symbol;
use hedgehog_store::Store;
use rust_decimal::Decimal;
use tokio::sync::watch;

use super::Walk;

#[derive(Debug, clap::Args)]
pub struct LoadOptions {
    #[arg(long, default_value_t = 20)]
    symbols: usize,
    #[arg(long, default_value_t = 200)]
    clients: usize,
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Trades recorded per symbol (the replay plays them as fast as the engine takes them).
    #[arg(long, default_value_t = 100_000)]
    trades: u64,
    /// Store to run on (default: a SQLite file in a temporary directory). A PostgreSQL
    /// database must be empty.
    #[arg(long)]
    database_url: Option<String>,
    /// Write the engine's log (info level: readiness, the per-minute status) to this file
    /// instead of keeping its warnings only.
    #[arg(long)]
    engine_log: Option<std::path::PathBuf>,
    /// Engines (`run` processes, nodes of one cluster) sharing the symbols; the clients
    /// listen to the first, whose memory is reported.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=16))]
    nodes: u64,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    frames: u64,
    bytes: u64,
    /// `/api/updates` only: catch-ups from the read models after the client fell behind the
    /// broadcast (or another process projected first).
    catch_ups: u64,
    /// `/api/events` only: the positions received, in order.
    positions: Vec<i64>,
    errors: Vec<String>,
}

pub async fn run(o: LoadOptions) -> anyhow::Result<()> {
    if o.symbols == 0 || o.clients == 0 {
        bail!("--symbols and --clients must be at least 1");
    }
    let (dir, url, hedgehog) = engine_bench("load", o.database_url.clone())?;

    let rules = hedgehog_binance::exchange_info::bundled()?;
    let symbols = traded_symbols(&rules, o.symbols)?;
    let recording = dir.path().join("load.rec.gz");
    let started = Instant::now();
    let total = write_recording(&recording, &symbols, o.trades)?;
    eprintln!(
        "recorded {total} trades of {} symbols in {:.1} s",
        symbols.len(),
        started.elapsed().as_secs_f64()
    );

    switch_on(&hedgehog, &url, &symbols)?;

    let (mut replay, ws) = replay_server(&hedgehog, &recording, 0)?;
    // The clients read as the dashboard's owner would: with a token.
    let token = format!("load-{}", uuid::Uuid::now_v7().simple());
    let mut engine = Command::new(&hedgehog);
    engine
        .args(["--database-url", &url, "run", "--http", "127.0.0.1:0"])
        .args(["--binance-ws-url", &ws])
        .env("RUST_LOG", "warn")
        .env("HEDGEHOG_API_TOKEN", &token)
        .stdout(Stdio::piped());
    if let Some(path) = &o.engine_log {
        let file = std::fs::File::create(path)
            .with_context(|| format!("create the engine's log {}", path.display()))?;
        engine.env("RUST_LOG", "warn,hedgehog=info").stderr(file);
    }
    let mut engine = engine.spawn()?;
    let http = first_word(&mut engine, "http://")?;
    let pid = engine.id();
    // The other nodes of the cluster: they take their share of the symbols as they join.
    let mut others = Vec::new();
    for n in 1..o.nodes {
        others.push(
            Command::new(&hedgehog)
                .args(["--database-url", &url, "run", "--no-http"])
                .args(["--binance-ws-url", &ws])
                .env("RUST_LOG", "warn")
                .env("HEDGEHOG_CLUSTER_NODE", format!("load-node-{n}"))
                .stdout(Stdio::null())
                .spawn()?,
        );
    }

    let (stop, stopping) = watch::channel(false);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..o.clients {
        let path = if i % 2 == 0 {
            "/api/updates".to_owned()
        } else {
            let symbol = &symbols[(i / 2) % symbols.len()].symbol;
            format!("/api/events?symbol={symbol}&after=0")
        };
        let request = client.get(format!("{http}{path}")).bearer_auth(&token);
        tasks.push((path, tokio::spawn(listen(request, stopping.clone()))));
    }

    let bar = super::progress(o.seconds, "s under load");
    let mut rss = Vec::new();
    let mut anon = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(o.seconds);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push(resident_kib(pid, "VmRSS:")?);
        anon.push(resident_kib(pid, "RssAnon:")?);
        bar.inc(1);
        if let Some(status) = engine.try_wait()? {
            bail!("the engine exited under load: {status}");
        }
        for other in &mut others {
            if let Some(status) = other.try_wait()? {
                bail!("an engine of the cluster exited under load: {status}");
            }
        }
    }
    bar.finish_and_clear();
    let _ = stop.send(true);
    let mut seen = Vec::new();
    for (path, task) in tasks {
        seen.push((path, task.await?));
    }
    let stopped = Instant::now();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    for other in &others {
        Command::new("kill")
            .args(["-TERM", &other.id().to_string()])
            .status()?;
    }
    let status = engine.wait()?;
    let stop_time = stopped.elapsed();
    for mut other in others {
        let status = other.wait()?;
        anyhow::ensure!(
            status.success(),
            "an engine of the cluster exited with {status}"
        );
    }
    let _ = replay.kill();
    let _ = replay.wait();

    // Check every events client against the log.
    let store = Store::open(&url).await?;
    let log = check_against_log(&store, &symbols, &seen).await?;
    let engine = Engine {
        rss,
        anon,
        stop_time,
        status,
    };
    let backend = store.backend_name();
    let failed = print_report(&o, symbols.len(), total, backend, &log, &seen, &engine)?;
    if failed {
        bail!("the load test failed: see above");
    }
    Ok(())
}

/// How the engine went through the load: its memory each second, how long SIGTERM took.
struct Engine {
    rss: Vec<u64>,
    anon: Vec<u64>,
    stop_time: Duration,
    status: std::process::ExitStatus,
}

/// Prints what the clients received and the engine did; true when the test failed (a client
/// error, an event lost or out of order, an unclean exit).
fn print_report(
    o: &LoadOptions,
    symbols: usize,
    total: u64,
    backend: &str,
    log: &Checked,
    seen: &[(String, Seen)],
    engine: &Engine,
) -> anyhow::Result<bool> {
    let errors: Vec<&String> = seen.iter().flat_map(|(_, s)| &s.errors).collect();
    let frames: u64 = seen.iter().map(|(_, s)| s.frames).sum();
    let bytes: u64 = seen.iter().map(|(_, s)| s.bytes).sum();
    let catch_ups: u64 = seen.iter().map(|(_, s)| s.catch_ups).sum();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let tenth = (engine.rss.len() / 10).max(1);
    let early = engine.rss[..tenth.min(engine.rss.len())]
        .iter()
        .sum::<u64>()
        / tenth as u64;
    let after_warmup = &engine.rss[(engine.rss.len() / 6).min(engine.rss.len() - 1)..];
    let late = engine.rss[engine.rss.len() - tenth..].iter().sum::<u64>() / tenth as u64;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "load: {} symbols, {} node(s), {} SSE clients ({} on /api/updates, {} on /api/events?symbol=), {} s, {}",
        symbols,
        o.nodes,
        o.clients,
        o.clients.div_ceil(2),
        o.clients / 2,
        o.seconds,
        backend
    )?;
    writeln!(
        out,
        "  trades stored {} of {total} recorded ({:.0}/s); log head {}",
        log.trades_stored,
        log.trades_stored as f64 / o.seconds as f64,
        log.head
    )?;
    writeln!(
        out,
        "  SSE frames delivered {frames} ({:.0}/s, {:.1} MiB); catch-ups on /api/updates {catch_ups}",
        frames as f64 / o.seconds as f64,
        bytes as f64 / 1048576.0
    )?;
    writeln!(
        out,
        "  events clients checked against the log: {} events, lost or out of order {}",
        log.checked, log.lost
    )?;
    writeln!(out, "  client errors {}", errors.len())?;
    for e in errors.iter().take(5) {
        writeln!(out, "    {e}")?;
    }
    writeln!(
        out,
        "  engine RSS MiB: first tenth {:.1}, last tenth {:.1}, after warm-up min {:.1} max {:.1}",
        mib(early),
        mib(late),
        mib(*after_warmup.iter().min().unwrap_or(&0)),
        mib(*after_warmup.iter().max().unwrap_or(&0)),
    )?;
    let every_5_s = |samples: &[u64]| {
        samples
            .iter()
            .step_by(5)
            .map(|k| format!("{:.0}", mib(*k)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    writeln!(out, "  engine RSS MiB each 5 s: {}", every_5_s(&engine.rss))?;
    writeln!(
        out,
        "  of which anonymous (heap) MiB each 5 s: {}",
        every_5_s(&engine.anon)
    )?;
    writeln!(
        out,
        "  SIGTERM to exit: {:.2} s, {}",
        engine.stop_time.as_secs_f64(),
        engine.status
    )?;
    Ok(!errors.is_empty() || log.lost > 0 || !engine.status.success())
}

/// What the events clients received, checked against the log.
struct Checked {
    head: i64,
    trades_stored: u64,
    /// Events missing or out of order across the clients.
    lost: u64,
    /// Events the clients received.
    checked: u64,
}

/// Reads the log once and compares each `/api/events?symbol=` client's positions with that
/// symbol's events up to the last one it got.
async fn check_against_log(
    store: &Store,
    symbols: &[&SymbolRules],
    seen: &[(String, Seen)],
) -> anyhow::Result<Checked> {
    let mut by_symbol: HashMap<Symbol, Vec<i64>> = HashMap::new();
    let mut next = 1;
    loop {
        let page = store.read_all(next, 10_000).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        for e in &page {
            by_symbol
                .entry(e.event.symbol().clone())
                .or_default()
                .push(e.position);
        }
        next = last + 1;
    }
    let head = next - 1;
    let trades_stored: u64 = {
        let mut n = 0;
        for r in symbols {
            n += store
                .stream_version(&hedgehog_store::StreamId::trades(&r.symbol))
                .await? as u64;
        }
        n
    };
    let mut lost = 0u64;
    let mut checked = 0u64;
    for (path, s) in seen {
        let Some(symbol) = path
            .split("symbol=")
            .nth(1)
            .and_then(|s| s.split('&').next())
        else {
            continue;
        };
        let symbol = Symbol::parse(symbol)?;
        let last = s.positions.last().copied().unwrap_or(0);
        let expected: Vec<i64> = by_symbol
            .get(&symbol)
            .map(|all| all.iter().copied().filter(|p| *p <= last).collect())
            .unwrap_or_default();
        if expected != s.positions {
            lost += expected.len().abs_diff(s.positions.len()).max(1) as u64;
            eprintln!(
                "{path}: received {} events up to position {last}; the log holds {}",
                s.positions.len(),
                expected.len()
            );
        }
        checked += s.positions.len() as u64;
    }

    Ok(Checked {
        head,
        trades_stored,
        lost,
        checked,
    })
}

/// `hedgehog replay-server RECORDING` on a free port at `speed` (0: as fast as it is read), and
/// the WebSocket URL it serves.
pub(super) fn replay_server(
    hedgehog: &Path,
    recording: &Path,
    speed: u32,
) -> anyhow::Result<(Child, String)> {
    let mut replay = Command::new(hedgehog)
        .arg("replay-server")
        .arg(recording)
        .args(["--port", "0", "--speed", &speed.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let ws = first_word(&mut replay, "ws://")?;
    Ok((replay, ws))
}

/// Reads a child's first line of stdout and returns its first word starting with `prefix`;
/// what it prints after is read and dropped, so it never writes to a closed pipe.
pub(super) fn first_word(child: &mut Child, prefix: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().context("stdout")?);
    out.read_line(&mut line)?;
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    line.split_whitespace()
        .find(|w| w.starts_with(prefix))
        .map(str::to_owned)
        .with_context(|| format!("no {prefix} address in {line:?}"))
}

/// A memory figure of a process from /proc/PID/status (`VmRSS:`, `RssAnon:`), KiB (Linux).
fn resident_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmRSS in /proc/PID/status")
}

/// One SSE client: reads frames until told to stop.
async fn listen(request: reqwest::RequestBuilder, mut stopping: watch::Receiver<bool>) -> Seen {
    let mut seen = Seen::default();
    let response = match request.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            seen.errors.push(format!("HTTP {}", r.status()));
            return seen;
        }
        Err(e) => {
            seen.errors.push(e.to_string());
            return seen;
        }
    };
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    loop {
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            _ = stopping.wait_for(|stop| *stop) => return seen,
        };
        match chunk {
            Some(Ok(bytes)) => {
                seen.bytes += bytes.len() as u64;
                buffer.push_str(&String::from_utf8_lossy(&bytes));
            }
            Some(Err(e)) => {
                seen.errors.push(e.to_string());
                return seen;
            }
            None => {
                seen.errors.push("the server closed the stream".into());
                return seen;
            }
        }
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut event = "";
            let mut id = None;
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v;
                } else if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse::<i64>().ok();
                }
            }
            if frame.starts_with(':') {
                continue; // keep-alive
            }
            seen.frames += 1;
            match event {
                "caught_up" => seen.catch_ups += 1,
                "error" => seen.errors.push(frame.clone()),
                _ => {}
            }
            if let Some(id) = id {
                seen.positions.push(id);
            }
        }
    }
}

/// Writes `per_symbol` trades of each symbol, interleaved in time, as a Binance websocket
/// recording (`NANOS JSON` lines): a random walk of up to 3 ticks a trade around 10,000 ticks,
/// quantities of 1 to 50 lots. Returns how many trades it wrote.
/// What a benchmark of the engine starts from: a temporary directory, the store's URL (the one
/// given, or a SQLite file `NAME.db` in that directory) and the `hedgehog` binary beside this
/// one.
pub(super) fn engine_bench(
    name: &str,
    database_url: Option<String>,
) -> anyhow::Result<(tempfile::TempDir, String, std::path::PathBuf)> {
    let dir = tempfile::tempdir()?;
    let url = database_url.unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            dir.path().join(format!("{name}.db")).display()
        )
    });
    let hedgehog = std::env::current_exe()?
        .parent()
        .context("the bench's directory")?
        .join("hedgehog");
    anyhow::ensure!(
        hedgehog.exists(),
        "{} not found: build it first (cargo build --release)",
        hedgehog.display()
    );
    Ok((dir, url, hedgehog))
}

/// Gives each symbol the settings the synthetic walk trades often with, and switches its
/// trading and streaming on, through the command line.
pub(super) fn switch_on(
    hedgehog: &Path,
    url: &str,
    symbols: &[&SymbolRules],
) -> anyhow::Result<()> {
    for r in symbols {
        let s = r.symbol.as_str();
        for args in [
            &["settings", "set", s, "--budget", "1000"][..],
            &["settings", "set", s, "--buy-down-interval", "0.0005"],
            &["settings", "set", s, "--profit-target", "0.0005"],
            &["trading", "start", s],
            &["streaming", "start", s],
        ] {
            let out = Command::new(hedgehog)
                .args(["--database-url", url])
                .args(args)
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "hedgehog {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(())
}

/// `n` symbols of the bundled rules that the synthetic walk can trade: USDT pairs with a small
/// minimum notional and a coarse enough tick.
pub(super) fn traded_symbols(
    rules: &hedgehog_domain::exchange::ExchangeRules,
    n: usize,
) -> anyhow::Result<Vec<&SymbolRules>> {
    let symbols: Vec<&SymbolRules> = rules
        .symbols
        .values()
        .filter(|r| {
            r.is_trading()
                && r.quote_asset == "USDT"
                && r.min_notional <= Decimal::TEN
                && r.tick_size >= Decimal::new(1, 4)
        })
        .take(n)
        .collect();
    anyhow::ensure!(symbols.len() == n, "only {} symbols", symbols.len());
    Ok(symbols)
}

/// A recording of `per_symbol` trades of each symbol, interleaved: a random walk on each
/// symbol's own tick and lot sizes, 0 to 2 ms apart.
pub(super) fn write_recording(
    path: &Path,
    symbols: &[&SymbolRules],
    per_symbol: u64,
) -> anyhow::Result<u64> {
    let file = std::fs::File::create(path).with_context(|| path.display().to_string())?;
    let mut w = std::io::BufWriter::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::fast(),
    ));
    let mut walk = Walk(7);
    let mut ticks: Vec<i64> = vec![10_000; symbols.len()];
    let mut time: i64 = 1_700_000_000_000;
    let mut written = 0;
    for id in 1..=per_symbol {
        for (i, r) in symbols.iter().enumerate() {
            let n = walk.next();
            ticks[i] = (ticks[i] + (n % 7) as i64
                - 3
                - (ticks[i] - 10_000).signum() * i64::from(n % 5 == 0))
            .max(1);
            time += (n >> 40) as i64 % 3;
            let price = r.tick_size * Decimal::from(ticks[i]);
            let lots = Decimal::from(1 + (n >> 20) % 50);
            let quantity = (r.step_size * lots).max(r.min_qty);
            let lower = r.symbol.as_str().to_ascii_lowercase();
            writeln!(
                w,
                r#"{} {{"stream":"{lower}@trade","data":{{"e":"trade","E":{time},"s":"{}","t":{id},"p":"{}","q":"{}","T":{time},"m":{},"M":true}}}}"#,
                time * 1_000_000,
                r.symbol,
                price.normalize(),
                quantity.normalize(),
                n & 1 == 0
            )?;
            written += 1;
        }
    }
    w.into_inner()
        .map_err(|e| e.into_error())?
        .finish()?
        .sync_all()?;
    Ok(written)
}
