//! `hedgehog-bench failover`: how long a SIGKILLed node's symbols wait for the other nodes.
//!
//! NODES `hedgehog run` processes share SYMBOLS symbols, played by the replay server at the
//! recording's pace; once every node owns its share and has decided on it, the node owning the
//! most is SIGKILLed, and the bench times, from the kill, the moment the survivors own its
//! symbols (`cluster status`'s leases) and each one's first decision under its new owner.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hedgehog_domain::Symbol;
use hedgehog_store::{Fence, Store, StreamId};

use super::load::{engine_bench, replay_server, switch_on, traded_symbols, write_recording};

#[derive(Debug, clap::Args)]
pub struct FailoverOptions {
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
    nodes: u64,
    #[arg(long, default_value_t = 4)]
    symbols: usize,
    /// The nodes' `cluster.lease_ttl_secs`.
    #[arg(long, default_value_t = 10)]
    lease_ttl_secs: u64,
    /// Store to run on (default: a SQLite file in a temporary directory). A PostgreSQL
    /// database must be empty.
    #[arg(long)]
    database_url: Option<String>,
}

/// How long the nodes get to share the symbols and decide on them, and the survivors to
/// take over.
const PATIENCE: Duration = Duration::from_secs(120);

pub async fn run(o: FailoverOptions) -> anyhow::Result<()> {
    let (dir, url, hedgehog) = engine_bench("failover", o.database_url.clone())?;
    let rules = hedgehog_binance::exchange_info::bundled()?;
    let symbols = traded_symbols(&rules, o.symbols)?;
    let recording = dir.path().join("failover.rec.gz");
    // About a millisecond a trade: long enough for any run of this bench.
    write_recording(&recording, &symbols, 1_000_000 / o.symbols.max(1) as u64)?;
    switch_on(&hedgehog, &url, &symbols)?;
    let (mut replay, ws) = replay_server(&hedgehog, &recording, 1)?;
    let mut nodes: BTreeMap<String, Child> = BTreeMap::new();
    for n in 0..o.nodes {
        let name = format!("failover-node-{n}");
        let child = Command::new(&hedgehog)
            .args(["--database-url", &url, "run", "--no-http"])
            .args(["--binance-ws-url", &ws])
            .env("RUST_LOG", "warn")
            .env("HEDGEHOG_CLUSTER_NODE", &name)
            .env(
                "HEDGEHOG_CLUSTER_LEASE_TTL_SECS",
                o.lease_ttl_secs.to_string(),
            )
            .stdout(Stdio::null())
            .spawn()?;
        nodes.insert(name, child);
    }
    let store = Store::open(&url).await?;

    // Every node owns its share and has decided on it.
    let started = Instant::now();
    let owners = loop {
        let owners = owners_of(&store).await?;
        let owned: usize = owners.values().map(Vec::len).sum();
        let share = symbols.len() / nodes.len();
        if owners.len() == nodes.len()
            && owned == symbols.len()
            && owners.values().all(|o| o.len() >= share)
        {
            let mut decided = true;
            for (node, theirs) in &owners {
                for s in theirs {
                    decided &= decided_by(&store, s, node).await?;
                }
            }
            if decided {
                break owners;
            }
        }
        if started.elapsed() > PATIENCE {
            bail!("the nodes did not share the symbols within {PATIENCE:?}: {owners:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let (busiest, theirs) = owners
        .iter()
        .max_by_key(|(_, s)| s.len())
        .map(|(n, s)| (n.clone(), s.clone()))
        .context("no node")?;
    // A decision of the new owner is one under a later lease than any before the kill.
    let mut before = BTreeMap::new();
    for s in &theirs {
        before.insert(s.clone(), latest(&store, s).await?.map_or(0, |f| f.epoch));
    }
    let mut dead = nodes.remove(&busiest).context("the busiest node")?;
    dead.kill()?;
    let killed = Instant::now();
    dead.wait()?;
    let taken = loop {
        let owners = owners_of(&store).await?;
        let owned: usize = owners.values().map(Vec::len).sum();
        if !owners.contains_key(&busiest) && owned == symbols.len() {
            break (killed.elapsed(), owners);
        }
        if killed.elapsed() > PATIENCE {
            bail!("{busiest}'s symbols were not taken over within {PATIENCE:?}: {owners:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut first = BTreeMap::new();
    while first.len() < theirs.len() {
        for s in &theirs {
            let heir = taken
                .1
                .iter()
                .find(|(_, o)| o.contains(s))
                .map(|(n, _)| n.clone())
                .context("an heir")?;
            let now = latest(&store, s).await?;
            if !first.contains_key(s) && now.is_some_and(|f| f.node == heir && f.epoch > before[s])
            {
                first.insert(s.clone(), killed.elapsed());
            }
        }
        if killed.elapsed() > PATIENCE {
            bail!("no decision by the new owners within {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    for child in nodes.values() {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
    }
    for (name, mut child) in nodes {
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "{name} exited with {status}");
    }
    let _ = replay.kill();
    let _ = replay.wait();
    let decisions: Vec<String> = first
        .iter()
        .map(|(s, d)| format!("{s} {:.2} s", d.as_secs_f64()))
        .collect();
    println!(
        "failover: {} nodes, {} symbols, lease {} s, {}: killed {busiest} owning {}; its leases taken after {:.2} s; first decisions of the new owners: {}",
        o.nodes,
        symbols.len(),
        o.lease_ttl_secs,
        store.backend_name(),
        theirs.len(),
        taken.0.as_secs_f64(),
        decisions.join(", ")
    );
    Ok(())
}

/// Each live node's symbols (the projector's lease left out).
async fn owners_of(store: &Store) -> anyhow::Result<BTreeMap<String, Vec<Symbol>>> {
    let cluster = store.cluster().await?;
    let mut owners: BTreeMap<String, Vec<Symbol>> = cluster
        .live_nodes()
        .map(|n| (n.node.clone(), Vec::new()))
        .collect();
    for (node, leases) in cluster.held() {
        for lease in leases {
            if let (Some(owned), Ok(symbol)) =
                (owners.get_mut(node), Symbol::parse(&lease.resource))
            {
                owned.push(symbol);
            }
        }
    }
    Ok(owners)
}

/// Whether `node` has appended a decision to `symbol`'s trading stream.
async fn decided_by(store: &Store, symbol: &Symbol, node: &str) -> anyhow::Result<bool> {
    Ok(fences(store, symbol).await?.iter().any(|f| f.node == node))
}

/// The fence of the last decision in `symbol`'s trading stream.
async fn latest(store: &Store, symbol: &Symbol) -> anyhow::Result<Option<Fence>> {
    Ok(fences(store, symbol).await?.pop())
}

/// The fences of `symbol`'s decisions, in its trading stream's order.
async fn fences(store: &Store, symbol: &Symbol) -> anyhow::Result<Vec<Fence>> {
    let events = store.read_stream_to_end(&StreamId::trading(symbol)).await?;
    Ok(events
        .iter()
        .filter_map(|e| Fence::of(&e.metadata))
        .collect())
}
