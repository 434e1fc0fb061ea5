//! Several `hedgehog run` on one database, on both backends: three nodes share four symbols
//! fed by a simulated Binance (`exchange serve` playing a recording: the replay server would
//! hold its playback for a paused client), each symbol owned by exactly one node, and one node
//! projecting for all (another serves the updates over SSE all the same); the busiest node is
//! SIGKILLed and its symbols trade again on the others within the lease's time; on PostgreSQL,
//! a node paused (SIGSTOP) past its leases and resumed appends nothing under them. Every
//! decision in the trading streams was appended under the lease current at the time (epochs
//! only rise along a stream, and each epoch is one node's); live, every order reaches the
//! exchange exactly once.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::processes::{exchange_serve, hedgehog, ok, Running, WS};
use common::{symbol, TestDb};
use hedgehog_domain::Event;
use hedgehog_store::{Fence, StreamId};
use serde_json::Value;

on_both_backends!(
    three_nodes_share_four_symbols_and_survive_a_kill_and_a_pause,
    live_nodes_send_every_order_once_through_a_kill_and_a_pause,
);

/// Symbols with BTCUSDT's filters, so each trades the recorded BTCUSDT day as BTCUSDT would.
const SYMBOLS: [&str; 4] = ["BTCFDUSD", "BTCUSDC", "BTCUSDT", "WBTCUSDT"];

/// The lease's time in this test (the default is 10 s).
const TTL: Duration = Duration::from_secs(3);

/// A recording of the four symbols: each trade of the two BTCUSDT recordings (eleven minutes
/// around midnight), played once per symbol.
fn four_symbol_recording(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for day in ["spot_btcusdt_20240808.gz", "spot_btcusdt_20240809.gz"] {
        let raw = std::fs::read(format!("{WS}/{day}")).unwrap();
        let mut gz = flate2::read::GzDecoder::new(&raw[..]);
        std::io::Read::read_to_string(&mut gz, &mut text).unwrap();
    }
    let path = dir.join("four.gz");
    let file = std::fs::File::create(&path).unwrap();
    let mut out = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    for line in text.lines().filter(|l| l.contains("@trade\"")) {
        for s in SYMBOLS {
            let relabelled = line
                .replace(
                    "btcusdt@trade",
                    &format!("{}@trade", s.to_ascii_lowercase()),
                )
                .replace("\"s\":\"BTCUSDT\"", &format!("\"s\":\"{s}\""));
            writeln!(out, "{relabelled}").unwrap();
        }
    }
    out.finish().unwrap();
    path
}

/// A node: `hedgehog run` named `name`, its log in `dir/name.log`.
struct Node {
    name: String,
    running: Running,
    log: PathBuf,
    /// Its HTTP API's base URL, when it serves one.
    http: Option<String>,
}

impl Node {
    fn start(db: &TestDb, dir: &Path, name: &str, ws: &str) -> Node {
        Node::launch(db, dir, name, ws, &[], &[])
    }

    /// A node serving the HTTP API (with the tests' token) on a free port.
    fn serving(db: &TestDb, dir: &Path, name: &str, ws: &str) -> Node {
        let env = [("HEDGEHOG_API_TOKEN", common::http::TOKEN)];
        Node::launch(db, dir, name, ws, &["--http", "127.0.0.1:0"], &env)
    }

    fn launch(
        db: &TestDb,
        dir: &Path,
        name: &str,
        ws: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let log = dir.join(format!("{name}.log"));
        let serving = args.contains(&"--http");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hedgehog"))
            .args(["--database-url", &db.url, "run"])
            .args(if serving { &[][..] } else { &["--no-http"][..] })
            .args(["--binance-ws-url", ws])
            .args(args)
            .envs(env.iter().copied())
            .env("HEDGEHOG_CLUSTER_NODE", name)
            .env("HEDGEHOG_CLUSTER_LEASE_TTL_SECS", TTL.as_secs().to_string())
            .env("RUST_LOG", "warn,hedgehog=info")
            .stdout(if serving {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start a node");
        let http = serving.then(|| {
            common::processes::Printed::follow(&mut child).address("http API on", "http://")
        });
        Node {
            name: name.to_owned(),
            running: Running::new(child),
            log,
            http,
        }
    }

    fn signal(&mut self, signal: &str) {
        let pid = self.running.child().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `cluster status --format json`: each live node's symbols.
fn owners(db: &TestDb) -> BTreeMap<String, BTreeSet<String>> {
    let out = ok(hedgehog(db, &["cluster", "status", "--format", "json"]));
    let status: Value = serde_json::from_str(&out).unwrap();
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["alive"] == true)
        .map(|n| {
            let symbols = n["symbols"].as_array().unwrap();
            (
                n["node"].as_str().unwrap().to_owned(),
                symbols
                    .iter()
                    .map(|s| s.as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The live node that projects the read models for the cluster, if one does yet.
fn projector(db: &TestDb) -> Option<String> {
    let out = ok(hedgehog(db, &["cluster", "status", "--format", "json"]));
    let status: Value = serde_json::from_str(&out).unwrap();
    let projecting: Vec<String> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["alive"] == true && n["projector"] == true)
        .map(|n| n["node"].as_str().unwrap().to_owned())
        .collect();
    assert!(projecting.len() <= 1, "one projector: {status}");
    projecting.into_iter().next()
}

/// Waits (up to `within`) until a live node projects, and names it.
fn until_projected_by_one(within: Duration, db: &TestDb) -> String {
    let started = Instant::now();
    loop {
        if let Some(node) = projector(db) {
            return node;
        }
        assert!(started.elapsed() < within, "no projector within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to `within`) until `done` holds of the owners, and answers them.
fn until_owned(
    db: &TestDb,
    within: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<String, BTreeSet<String>>) -> bool,
) -> BTreeMap<String, BTreeSet<String>> {
    let started = Instant::now();
    loop {
        let owners = owners(db);
        if done(&owners) {
            return owners;
        }
        assert!(
            started.elapsed() < within,
            "not {what} within {within:?}: {owners:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Each symbol owned by exactly one of `nodes`, all four owned.
fn each_once(owners: &BTreeMap<String, BTreeSet<String>>, nodes: usize) -> bool {
    let owned: Vec<&String> = owners.values().flatten().collect();
    let distinct: BTreeSet<&String> = owned.iter().copied().collect();
    owners.len() == nodes && owned.len() == SYMBOLS.len() && distinct.len() == SYMBOLS.len()
}

/// The fences of a trading stream's decisions, in version order.
async fn fences(db: &TestDb, s: &str) -> Vec<Fence> {
    let store = db.open().await;
    let events = store
        .read_stream_to_end(&StreamId::trading(&symbol(s)))
        .await
        .unwrap();
    events
        .iter()
        .filter_map(|e| Fence::of(&e.metadata))
        .collect()
}

/// Every decision of every trading stream was made under the lease current when it was
/// appended: along a stream epochs never go down, and one epoch is one node's.
async fn no_decision_under_a_stale_lease(db: &TestDb) {
    let store = db.open().await;
    for s in SYMBOLS {
        let events = store
            .read_stream_to_end(&StreamId::trading(&symbol(s)))
            .await
            .unwrap();
        let mut by_epoch: BTreeMap<i64, String> = BTreeMap::new();
        let mut last = 0;
        for e in &events {
            let Some(fence) = Fence::of(&e.metadata) else {
                assert!(
                    !matches!(e.event, Event::OrderPlaced(_) | Event::OrderFilled(_)),
                    "a decision without a fence in {s}: {e:?}"
                );
                continue;
            };
            assert!(
                fence.epoch >= last,
                "{s} v{}: epoch {} after {last}",
                e.stream_version,
                fence.epoch
            );
            last = fence.epoch;
            let node = by_epoch
                .entry(fence.epoch)
                .or_insert_with(|| fence.node.clone());
            assert_eq!(*node, fence.node, "{s}: epoch {} of two nodes", fence.epoch);
        }
    }
}

/// Waits (up to 60 s) until `node` has made a decision in `s`'s trading stream after its
/// first `since` fenced decisions (0: any).
async fn until_decided_by_since(db: &TestDb, s: &str, node: &str, since: usize) {
    let started = Instant::now();
    while !fences(db, s)
        .await
        .iter()
        .skip(since)
        .any(|f| f.node == node)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{node} never decided on {s} after its first {since} decisions"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 60 s) until `node` has made a decision in `s`'s trading stream.
async fn until_decided_by(db: &TestDb, s: &str, node: &str) {
    until_decided_by_since(db, s, node, 0).await;
}

/// How many fenced decisions `s`'s trading stream holds.
async fn decided(db: &TestDb, s: &str) -> usize {
    fences(db, s).await.len()
}

/// The four symbols' settings (BTCUSDT's tight ones), their trading and streaming on.
fn trade_the_four(db: &TestDb) {
    let settings = common::http::tight_btc_settings();
    let mut flags = Vec::new();
    for (key, value) in settings.as_object().unwrap() {
        flags.push(format!("--{}", key.replace('_', "-")));
        flags.push(value.as_str().unwrap().to_owned());
    }
    for s in SYMBOLS {
        let mut args = vec!["settings", "set", s];
        args.extend(flags.iter().map(String::as_str));
        ok(hedgehog(db, &args));
        ok(hedgehog(db, &["trading", "start", s]));
        ok(hedgehog(db, &["streaming", "start", s]));
    }
}

/// Waits until each of the three nodes owns a share (1, 1 and 2 symbols) and has decided on
/// each of its symbols; answers who owns what.
async fn spread_over_three(db: &TestDb) -> BTreeMap<String, BTreeSet<String>> {
    let owners = until_owned(db, Duration::from_secs(30), "spread", |o| {
        each_once(o, 3) && o.values().all(|s| !s.is_empty())
    });
    let mut loads: Vec<usize> = owners.values().map(BTreeSet::len).collect();
    loads.sort();
    assert_eq!(loads, [1, 1, 2], "spread evenly: {owners:?}");
    for (node, symbols) in &owners {
        for s in symbols {
            until_decided_by(db, s, node).await;
        }
    }
    owners
}

/// SIGKILLs the node owning the most symbols and waits until the two others own them and have
/// decided on them; answers how long the takeover took.
async fn kill_the_busiest(
    db: &TestDb,
    nodes: &mut Vec<Node>,
    owners: &BTreeMap<String, BTreeSet<String>>,
) -> Duration {
    let (busiest, theirs) = owners
        .iter()
        .max_by_key(|(_, s)| s.len())
        .map(|(n, s)| (n.clone(), s.clone()))
        .unwrap();
    let mut before = BTreeMap::new();
    for s in &theirs {
        before.insert(s.clone(), decided(db, s).await);
    }
    let killed = nodes.iter().position(|n| n.name == busiest).unwrap();
    let mut dead = nodes.remove(killed);
    dead.signal("-KILL");
    let _ = dead.running.child().wait();
    let killed_at = Instant::now();
    let owners = until_owned(db, TTL + Duration::from_secs(5), "taken over", |o| {
        each_once(o, 2)
    });
    let took = killed_at.elapsed();
    assert!(!owners.contains_key(&busiest));
    for s in &theirs {
        let heir = owners.iter().find(|(_, o)| o.contains(s)).unwrap().0;
        until_decided_by_since(db, s, heir, before[s]).await;
    }
    eprintln!("failover: {took:?} for {theirs:?}");
    took
}

/// SIGSTOPs the first of the two nodes left past its leases, waits until the other owns all
/// four and decides on them, resumes it (SIGCONT), and waits until they share again: the
/// paused node appended nothing under the leases it lost, and says it lost them.
async fn pause_one_of_two(db: &TestDb, nodes: &mut [Node]) {
    let paused_name = nodes[0].name.clone();
    let mut paused_at = BTreeMap::new();
    for s in SYMBOLS {
        paused_at.insert(s, decided(db, s).await);
    }
    nodes[0].signal("-STOP");
    let other = nodes[1].name.clone();
    until_owned(
        db,
        TTL * 3 + Duration::from_secs(5),
        "taken from the paused",
        |o| o.len() == 1 && o.get(&other).is_some_and(|s| s.len() == SYMBOLS.len()),
    );
    for s in SYMBOLS {
        until_decided_by_since(db, s, &other, paused_at[s]).await;
    }
    let mut before = BTreeMap::new();
    for s in SYMBOLS {
        before.insert(s, fences(db, s).await.len());
    }
    nodes[0].signal("-CONT");
    until_owned(db, TTL * 3 + Duration::from_secs(5), "shared again", |o| {
        each_once(o, 2) && o.values().all(|s| s.len() == 2)
    });
    no_decision_under_a_stale_lease(db).await;
    // Everything the resumed node appended after its pause is under a new epoch.
    for s in SYMBOLS {
        let now = fences(db, s).await;
        let paused_epochs: BTreeSet<i64> = now[..before[s]]
            .iter()
            .filter(|f| f.node == paused_name)
            .map(|f| f.epoch)
            .collect();
        assert!(
            now[before[s]..]
                .iter()
                .all(|f| f.node != paused_name || !paused_epochs.contains(&f.epoch)),
            "{s}: {paused_name} appended under a lease it had lost"
        );
    }
    let log = nodes[0].log();
    assert!(
        log.contains("lost the lease") || log.contains("no longer this node's"),
        "the resumed node says it lost its leases: {log}"
    );
}

mod cases {
    use super::*;

    pub async fn three_nodes_share_four_symbols_and_survive_a_kill_and_a_pause(db: &TestDb) {
        let dir = tempfile::tempdir().unwrap();
        let recording = four_symbol_recording(dir.path());
        trade_the_four(db);
        // Eleven minutes of trades at 10 times their pace: the whole test long. Played as
        // Binance does (a paused client does not hold the market up).
        let played = recording.display().to_string();
        let (exchange, base) = exchange_serve(&[], &[&played, "--speed", "10"]);
        let ws = base.replace("http://", "ws://");
        // node-a first, so it projects; node-c serves HTTP and follows its projections.
        let mut nodes = vec![Node::start(db, dir.path(), "node-a", &ws)];
        assert_eq!(
            until_projected_by_one(Duration::from_secs(30), db),
            "node-a"
        );
        nodes.push(Node::start(db, dir.path(), "node-b", &ws));
        nodes.push(Node::serving(db, dir.path(), "node-c", &ws));
        let owners = spread_over_three(db).await;
        assert_eq!(projector(db).as_deref(), Some("node-a"));
        // A node that does not project serves the read models' updates all the same.
        let api = common::http::Api::new(nodes[2].http.as_deref().unwrap());
        let mut updates = api.subscribe("/api/updates").await;
        let mut seen = BTreeSet::new();
        while !seen.contains("candle") {
            let (_, event, _) = updates.next().await;
            seen.insert(event);
        }
        drop(updates);

        kill_the_busiest(db, &mut nodes, &owners).await;
        no_decision_under_a_stale_lease(db).await;
        // The projector's lease moves like a symbol's when its node dies.
        let projecting = until_projected_by_one(TTL + Duration::from_secs(5), db);
        assert!(
            nodes.iter().any(|n| n.name == projecting),
            "{projecting} is alive"
        );

        // Every node that found a symbol held said by whom.
        assert!(
            nodes.iter().any(|n| n.log().contains("is traded by node")),
            "a node names the owner of what it cannot have"
        );

        // On SQLite a process paused inside a write transaction holds the file's one write
        // lock, and every other writer waits for it (SQLite's design): pausing is PostgreSQL's
        // case.
        if db.backend == common::Backend::Postgres {
            pause_one_of_two(db, &mut nodes).await;
        }

        // A clean stop hands everything over at once and leaves no node behind.
        for node in nodes {
            common::processes::terminate(node.running);
        }
        let out = ok(hedgehog(db, &["cluster", "status", "--format", "json"]));
        let status: Value = serde_json::from_str(&out).unwrap();
        assert!(
            status["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .all(|n| n["alive"] == false),
            "{status}"
        );
        drop(exchange);
    }

    /// Live: three nodes trade on a simulated Binance (in this process, so its request log can
    /// be read) while the busiest is SIGKILLed and, on PostgreSQL, another paused past its
    /// leases and resumed. Every client order id the log records reaches the exchange exactly
    /// once, the exchange holds no order the log lacks, and each fill the log records is one
    /// the exchange made.
    pub async fn live_nodes_send_every_order_once_through_a_kill_and_a_pause(db: &TestDb) {
        use hedgehog_sim::exchange::{ExchangeOptions, ExchangeServer, Start};
        use rust_decimal::Decimal;
        const KEY: &str = "cluster-test-key";
        const SECRET: &str = "cluster-test-secret";

        let dir = tempfile::tempdir().unwrap();
        let recording = four_symbol_recording(dir.path());
        let options = ExchangeOptions {
            files: vec![recording],
            speed: 10.0,
            start: Start::FirstStreamClient,
            import: Default::default(),
            api_key: KEY.to_owned(),
            secret: SECRET.to_owned(),
            balances: ["USDT", "USDC", "FDUSD"]
                .iter()
                .map(|a| (a.to_string(), Decimal::from(1_000_000)))
                .collect(),
            commission: Decimal::new(1, 3),
            exchange_info_json: hedgehog_binance::exchange_info::bundled_json().unwrap(),
            exchange_info_origin: "the bundled snapshot".to_owned(),
            follow: None,
            clock_skew_ms: 0,
            cuts: None,
        };
        let server = ExchangeServer::bind(([127, 0, 0, 1], 0).into(), options)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap().to_string();
        let control = server.control();
        let served = tokio::spawn(server.serve(std::future::pending()));

        trade_the_four(db);
        let api = format!("http://{addr}");
        let ws_api = format!("ws://{addr}/ws-api/v3");
        let live = [
            "--exchange",
            "binance",
            "--live",
            "--binance-api-url",
            &api,
            "--binance-ws-api-url",
            &ws_api,
        ];
        let keys = [("BINANCE_API_KEY", KEY), ("BINANCE_API_SECRET", SECRET)];
        let ws = format!("ws://{addr}");
        let mut nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
            .iter()
            .map(|name| Node::launch(db, dir.path(), name, &ws, &live, &keys))
            .collect();
        let owners = spread_over_three(db).await;
        kill_the_busiest(db, &mut nodes, &owners).await;
        if db.backend == common::Backend::Postgres {
            pause_one_of_two(db, &mut nodes).await;
        }
        for node in nodes {
            common::processes::terminate(node.running);
        }
        no_decision_under_a_stale_lease(db).await;

        // What the log recorded, and what the exchange received and holds.
        let store = db.open().await;
        let mut placed = BTreeMap::new();
        let mut filled: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut ids_of: BTreeMap<(String, u64), String> = BTreeMap::new();
        for s in SYMBOLS {
            let events = store
                .read_stream_to_end(&StreamId::trading(&symbol(s)))
                .await
                .unwrap();
            for e in events {
                match e.event {
                    Event::OrderPlaced(o) => {
                        ids_of.insert((s.to_owned(), o.order_id), o.client_order_id.clone());
                        placed.insert(o.client_order_id, s.to_owned());
                    }
                    Event::OrderFilled(f) => {
                        let id = ids_of[&(s.to_owned(), f.order_id)].clone();
                        let most = filled.entry(id).or_default();
                        *most = (*most).max(f.cumulative_quantity);
                    }
                    _ => {}
                }
            }
        }
        assert!(!placed.is_empty());
        let mut sent: BTreeMap<String, usize> = BTreeMap::new();
        for seen in control.seen() {
            if seen.method == "POST" && seen.path == "/api/v3/order" {
                let id = seen
                    .params
                    .get("newClientOrderId")
                    .cloned()
                    .unwrap_or_default();
                *sent.entry(id).or_default() += 1;
            }
        }
        for (id, s) in &placed {
            assert_eq!(
                sent.get(id),
                Some(&1),
                "{s}'s order {id} sent once: {sent:?}"
            );
        }
        let orders = control.orders();
        let executed: BTreeMap<String, Decimal> = orders
            .iter()
            .map(|o| {
                let id = o["clientOrderId"].as_str().unwrap().to_owned();
                (id, o["executedQty"].as_str().unwrap().parse().unwrap())
            })
            .collect();
        let held: BTreeSet<&String> = executed.keys().collect();
        let recorded: BTreeSet<&String> = placed.keys().collect();
        assert_eq!(
            held, recorded,
            "the exchange holds exactly the orders the log placed"
        );
        for (id, quantity) in &filled {
            assert!(
                *quantity <= executed[id],
                "order {id}: the log has {quantity} filled, the exchange {}",
                executed[id]
            );
        }
        assert!(!filled.is_empty(), "orders were filled");
        served.abort();
    }
}
