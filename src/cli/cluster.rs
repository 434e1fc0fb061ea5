//! `hedgehog cluster status`: the engines (nodes) on this database and the symbols each owns.

use std::io::Write;

use hedgehog_store::Store;
use serde::Serialize;

use hedgehog_engine::supervisor::PROJECTOR;

use super::args::Format;

/// A node as `cluster status` shows it.
#[derive(Debug, Serialize)]
struct NodeView {
    node: String,
    pid: i64,
    host: String,
    alive: bool,
    /// Since its last heartbeat.
    seen_ms_ago: i64,
    symbols: Vec<String>,
    /// Whether it holds the lease of the cluster's projector (the read models).
    projector: bool,
    leases: Vec<LeaseView>,
}

#[derive(Debug, Serialize)]
struct LeaseView {
    resource: String,
    epoch: i64,
    /// Since it was taken.
    age_ms: i64,
    expires_in_ms: i64,
}

pub async fn status(out: &mut impl Write, store: &Store, format: Format) -> anyhow::Result<()> {
    let cluster = store.cluster().await?;
    let held = cluster.held();
    let nodes: Vec<NodeView> = cluster
        .nodes
        .iter()
        .map(|n| {
            let leases: Vec<LeaseView> = held
                .get(n.node.as_str())
                .into_iter()
                .flatten()
                .map(|l| LeaseView {
                    resource: l.resource.clone(),
                    epoch: l.epoch,
                    age_ms: cluster.now - l.acquired_at,
                    expires_in_ms: l.expires_at - cluster.now,
                })
                .collect();
            NodeView {
                node: n.node.clone(),
                pid: n.pid,
                host: n.host.clone(),
                alive: n.expires_at > cluster.now,
                seen_ms_ago: cluster.now - n.seen_at,
                symbols: leases
                    .iter()
                    .filter(|l| l.resource != PROJECTOR)
                    .map(|l| l.resource.clone())
                    .collect(),
                projector: leases.iter().any(|l| l.resource == PROJECTOR),
                leases,
            }
        })
        .collect();
    match format {
        Format::Json => {
            writeln!(out, "{}", serde_json::json!({ "nodes": nodes }))?;
        }
        Format::Table => {
            if nodes.is_empty() {
                writeln!(out, "no engine is running on this database (a node that stopped cleanly leaves no row)")?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<28} {:>8} {:<6} {:>10}  SYMBOLS (epoch, lease age)",
                "NODE", "PID", "ALIVE", "SEEN"
            )?;
            for n in &nodes {
                let symbols: Vec<String> = n
                    .leases
                    .iter()
                    .map(|l| {
                        let name = if l.resource == PROJECTOR {
                            "projector"
                        } else {
                            &l.resource
                        };
                        format!("{} ({}, {:.1} s)", name, l.epoch, l.age_ms as f64 / 1000.0)
                    })
                    .collect();
                writeln!(
                    out,
                    "{:<28} {:>8} {:<6} {:>8.1} s  {}",
                    n.node,
                    n.pid,
                    if n.alive { "yes" } else { "no" },
                    n.seen_ms_ago as f64 / 1000.0,
                    if symbols.is_empty() {
                        "-".to_owned()
                    } else {
                        symbols.join(", ")
                    }
                )?;
            }
        }
    }
    Ok(())
}
