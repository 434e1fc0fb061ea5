//! Several engines on one database: which node trades and streams which symbol.
//!
//! Every `run` is a node. It keeps a row of `nodes` alive and holds one lease per symbol it owns
//! (`hedgehog_store::lease`), renewed with each heartbeat. Every node computes the same
//! assignment from the same facts ([`assign`]: the live nodes and the symbols with a trading
//! or streaming stream), takes the leases assigned to it that are free, and releases those
//! assigned elsewhere, so the symbols spread evenly: a node that joins takes its share as the
//! others hand theirs over, a node that stops releases its leases at once, and one that dies
//! loses them when they expire ([`ClusterOptions::ttl`]).
//!
//! Invariants:
//! - A symbol's worker runs only while its node holds the symbol's lease, and its decisions
//!   carry the lease's fence: the database stores them only while the lease is still that
//!   node's at that epoch (a node paused past its lease and resumed writes nothing).
//! - Nothing is sent to a venue unless the lease has at least half its time left
//!   ([`LeaseClock::sendable`]): a node that cannot renew stops sending well before another may
//!   take over and send in its place.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hedgehog_domain::Symbol;
use hedgehog_store::NodeInfo;
use uuid::Uuid;

/// How a node takes part.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node: NodeInfo,
    /// How long a lease lasts without renewal: the longest a dead node's symbols wait.
    pub ttl: Duration,
    /// How often the node renews its leases and looks at the others.
    pub every: Duration,
}

/// A lease's default time: a dead node's symbols trade again on the others within it, plus one
/// heartbeat and a worker's hydration.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// How often a node beats by default.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

impl ClusterOptions {
    /// This process as the node `name` (default: the host's name), with a lease of `ttl`
    /// (default [`LEASE_TTL`]). A name stays a node's across restarts, so a node restarted
    /// after a crash takes its leases back at once; a second process on the same host finds
    /// the name held and joins as `name-PID`.
    pub fn for_this_process(name: Option<&str>, ttl: Option<Duration>) -> Self {
        let host = whoami::fallible::hostname().unwrap_or_else(|_| "localhost".to_owned());
        let ttl = ttl.unwrap_or(LEASE_TTL);
        ClusterOptions {
            node: NodeInfo {
                node: name.map_or_else(|| host.clone(), str::to_owned),
                pid: std::process::id(),
                host,
            },
            ttl,
            every: HEARTBEAT.min(ttl / 4),
        }
    }

    pub(crate) fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Which node owns each symbol: every node computes it from the same facts and gets the same
/// answer. Balanced (each node gets the floor or the ceiling of symbols / nodes; the nodes first
/// in name order take the ceilings) and stable (each symbol goes to the node it ranks highest,
/// by a hash of both names, that still has room), so a node joining or leaving moves few
/// symbols.
pub fn assign<'n>(symbols: &[Symbol], nodes: &[&'n str]) -> BTreeMap<Symbol, &'n str> {
    let mut nodes: Vec<&str> = nodes.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    let mut out = BTreeMap::new();
    if nodes.is_empty() {
        return out;
    }
    let mut symbols: Vec<&Symbol> = symbols.iter().collect();
    symbols.sort();
    symbols.dedup();
    let (each, extra) = (symbols.len() / nodes.len(), symbols.len() % nodes.len());
    let mut room: Vec<usize> = (0..nodes.len())
        .map(|i| each + usize::from(i < extra))
        .collect();
    for symbol in symbols {
        let mut ranked: Vec<usize> = (0..nodes.len()).collect();
        ranked.sort_by_key(|&i| std::cmp::Reverse(rank(symbol, nodes[i])));
        if let Some(&i) = ranked.iter().find(|&&i| room[i] > 0) {
            room[i] -= 1;
            out.insert(symbol.clone(), nodes[i]);
        }
    }
    out
}

/// A symbol's preference for a node: stable across processes and builds (UUID v5, SHA-1).
fn rank(symbol: &Symbol, node: &str) -> u128 {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{symbol}\n{node}").as_bytes()).as_u128()
}

/// How long a lease is known to hold, by this process's monotonic clock: renewed at each
/// heartbeat from the moment the heartbeat was sent (the database's expiry is later still).
#[derive(Debug, Clone)]
pub struct LeaseClock {
    until: Arc<Mutex<Instant>>,
    ttl: Duration,
}

impl LeaseClock {
    /// A lease taken by a request sent at `sent`.
    pub fn new(sent: Instant, ttl: Duration) -> Self {
        LeaseClock {
            until: Arc::new(Mutex::new(sent + ttl)),
            ttl,
        }
    }

    /// Renewed by a heartbeat sent at `sent`.
    pub fn renewed(&self, sent: Instant) {
        let mut until = self.until.lock().unwrap_or_else(|e| e.into_inner());
        *until = (*until).max(sent + self.ttl);
    }

    /// Whether an order may go to the venue now: at least half the lease's time is left.
    pub fn sendable(&self) -> bool {
        let until = *self.until.lock().unwrap_or_else(|e| e.into_inner());
        until.saturating_duration_since(Instant::now()) >= self.ttl / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(n: usize) -> Vec<Symbol> {
        (0..n)
            .map(|i| Symbol::parse(&format!("S{i:03}USDT")).unwrap())
            .collect()
    }

    fn loads<'n>(assigned: &BTreeMap<Symbol, &'n str>) -> BTreeMap<&'n str, usize> {
        let mut loads = BTreeMap::new();
        for node in assigned.values() {
            *loads.entry(*node).or_default() += 1;
        }
        loads
    }

    #[test]
    fn every_symbol_has_one_node_and_the_loads_differ_by_one_at_most() {
        for (n_symbols, n_nodes) in [(4, 3), (1, 3), (40, 3), (100, 7), (3, 3), (0, 2)] {
            let symbols = symbols(n_symbols);
            let names: Vec<String> = (0..n_nodes).map(|i| format!("node-{i}")).collect();
            let nodes: Vec<&str> = names.iter().map(String::as_str).collect();
            let assigned = assign(&symbols, &nodes);
            assert_eq!(assigned.len(), n_symbols);
            let loads = loads(&assigned);
            let (min, max) = (
                nodes
                    .iter()
                    .map(|n| loads.get(n).copied().unwrap_or(0))
                    .min(),
                loads.values().copied().max(),
            );
            assert!(
                max.unwrap_or(0) - min.unwrap_or(0) <= 1,
                "{n_symbols} over {n_nodes}: {loads:?}"
            );
        }
    }

    #[test]
    fn every_node_computes_the_same_answer_whatever_order_it_lists_them_in() {
        let symbols = symbols(40);
        let a = assign(&symbols, &["b", "a", "c"]);
        let mut reversed = symbols.clone();
        reversed.reverse();
        assert_eq!(a, assign(&reversed, &["c", "b", "a", "a"]));
    }

    #[test]
    fn a_node_leaving_moves_its_symbols_and_few_others() {
        let symbols = symbols(60);
        let before = assign(&symbols, &["a", "b", "c"]);
        let after = assign(&symbols, &["a", "b"]);
        let moved = symbols
            .iter()
            .filter(|s| before[*s] != "c" && before[*s] != after[*s])
            .count();
        assert!(after.values().all(|n| *n != "c"));
        // Balance may move a few of the others; most stay where they were.
        assert!(moved <= 10, "{moved} of the survivors' 40 symbols moved");
    }

    #[test]
    fn a_lease_is_sendable_only_with_half_its_time_left() {
        let ttl = Duration::from_millis(200);
        let clock = LeaseClock::new(Instant::now(), ttl);
        assert!(clock.sendable());
        std::thread::sleep(Duration::from_millis(120));
        assert!(!clock.sendable());
        clock.renewed(Instant::now());
        assert!(clock.sendable());
    }
}
