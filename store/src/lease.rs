//! Leases: which of several engines (nodes) on one database owns what.
//!
//! A node keeps a row of `nodes` alive while it runs ([`Store::beat`], which renews its leases
//! in the same transaction) and takes resources (a symbol's trading and streaming) one lease at
//! a time ([`Store::acquire`]): a lease is free when it was released or its holder let it
//! expire, and each change of hands raises its epoch. Times are the database's clock
//! (PostgreSQL's, or on SQLite the one host's), so nodes on several machines agree on expiry
//! whatever their own clocks say.
//!
//! Invariants:
//! - A lease has one holder at a time, and its epoch only rises (a released lease keeps its
//!   row, so the next holder's epoch is above every earlier one).
//! - Fencing: an event whose metadata names a lease ([`Fence::metadata`]) is stored only while
//!   that node holds that lease at that epoch; the database refuses it otherwise, in the append's
//!   transaction ([`StoreError::StaleLease`]). On PostgreSQL the check reads the lease row `FOR
//!   SHARE`, so a takeover waits for an append in flight, and the new holder reads it.

use std::collections::BTreeMap;

use super::{Database, Metadata, Store, StoreError};

/// A running node, as it names itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Unique among the nodes that ever ran on the database (`host-pid-random` by default).
    pub node: String,
    pub pid: u32,
    pub host: String,
}

/// A node as `nodes` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node: String,
    pub pid: i64,
    pub host: String,
    pub started_at: i64,
    pub seen_at: i64,
    pub expires_at: i64,
}

/// A lease as `leases` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub resource: String,
    pub node: String,
    pub epoch: i64,
    /// ms since the Unix epoch, by the database's clock; 0: released.
    pub expires_at: i64,
    pub acquired_at: i64,
}

impl Lease {
    /// Whether it still holds at `now` (the database's time).
    pub fn is_live(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// What [`Store::acquire`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The lease is this node's, at this epoch.
    Held(Lease),
    /// Another node holds it.
    Taken(Lease),
}

/// The cluster as the database sees it at `now`: every node row and every lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub now: i64,
    pub nodes: Vec<NodeRow>,
    pub leases: Vec<Lease>,
}

impl Cluster {
    /// The nodes alive at `now`, in name order.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeRow> {
        self.nodes.iter().filter(|n| n.expires_at > self.now)
    }

    /// The live leases of each node, by node.
    pub fn held(&self) -> BTreeMap<&str, Vec<&Lease>> {
        let mut held: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for lease in self.leases.iter().filter(|l| l.is_live(self.now)) {
            held.entry(&lease.node).or_default().push(lease);
        }
        held
    }
}

/// What a decision carries to be stored under a lease: see the [module](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub resource: String,
    pub node: String,
    pub epoch: i64,
}

impl Fence {
    /// The metadata keys the database checks (`lease`, `node`, `epoch`).
    pub fn metadata(&self) -> Metadata {
        Metadata::from([
            ("lease".to_owned(), self.resource.clone()),
            ("node".to_owned(), self.node.clone()),
            ("epoch".to_owned(), self.epoch.to_string()),
        ])
    }

    /// The fence `metadata` names, if it names one.
    pub fn of(metadata: &Metadata) -> Option<Fence> {
        Some(Fence {
            resource: metadata.get("lease")?.clone(),
            node: metadata.get("node")?.clone(),
            epoch: metadata.get("epoch")?.parse().ok()?,
        })
    }
}

/// Rows of dead nodes are kept this long (for `cluster status`), then removed when a node
/// joins.
const FORGET_NODES_AFTER_MS: i64 = 24 * 3600 * 1000;

/// The database's clock, in ms since the Unix epoch, as an SQL expression.
fn now_sql(database: &Database) -> &'static str {
    match database {
        Database::Sqlite { .. } => "CAST(unixepoch('subsec') * 1000 AS INTEGER)",
        Database::Postgres { .. } => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
    }
}

type LeaseRow = (String, String, i64, i64, i64);

/// One lease's row, by resource.
const SELECT_LEASE: &str =
    "SELECT resource, node, epoch, expires_at, acquired_at FROM leases WHERE resource = $1";

fn lease((resource, node, epoch, expires_at, acquired_at): LeaseRow) -> Lease {
    Lease {
        resource,
        node,
        epoch,
        expires_at,
        acquired_at,
    }
}

/// Runs `$body` with `$conn` bound to a write transaction of either backend (SQLite: in the
/// writer queue's turn), committing it.
macro_rules! in_write_tx {
    ($database:expr, |$conn:ident| $body:expr) => {
        match $database {
            Database::Sqlite { pool, writer } => {
                let _turn = writer.turn().await;
                let mut tx = pool.begin().await?;
                let $conn = &mut *tx;
                let out = $body;
                tx.commit().await?;
                out
            }
            Database::Postgres { pool } => {
                let mut tx = pool.begin().await?;
                let $conn = &mut *tx;
                let out = $body;
                tx.commit().await?;
                out
            }
        }
    };
}

impl Store {
    /// Claims the name `me.node` for this process for `ttl_ms`: answers false when a live
    /// node holds it, unless that node is `me`'s own host and process `dead_pid` (a previous
    /// run of this node that died: its name, and the leases under it, are taken over at once).
    /// One statement, so two processes cannot both claim a name.
    pub async fn join(
        &self,
        me: &NodeInfo,
        ttl_ms: i64,
        dead_pid: Option<i64>,
    ) -> Result<bool, StoreError> {
        let database = self.database();
        let now = now_sql(&database);
        let claim = format!(
            "INSERT INTO nodes (node, pid, host, started_at, seen_at, expires_at) \
             VALUES ($1, $2, $3, {now}, {now}, {now} + $4) \
             ON CONFLICT (node) DO UPDATE SET pid = excluded.pid, host = excluded.host, \
             started_at = excluded.started_at, seen_at = excluded.seen_at, \
             expires_at = excluded.expires_at \
             WHERE nodes.expires_at < excluded.seen_at \
                OR (nodes.host = excluded.host AND nodes.pid IN (excluded.pid, $5)) \
             RETURNING node"
        );
        let forget = format!("DELETE FROM nodes WHERE expires_at < {now} - $1");
        let claimed: Option<String> = in_write_tx!(database, |conn| {
            sqlx::query(&forget)
                .bind(FORGET_NODES_AFTER_MS)
                .execute(&mut *conn)
                .await?;
            sqlx::query_scalar(&claim)
                .bind(&me.node)
                .bind(i64::from(me.pid))
                .bind(&me.host)
                .bind(ttl_ms)
                .bind(dead_pid.unwrap_or(-1))
                .fetch_optional(&mut *conn)
                .await?
        });
        Ok(claimed.is_some())
    }

    /// Keeps `me` alive for `ttl_ms` more and renews every lease it holds for as long, in one
    /// transaction; answers the leases it still holds (one it no longer holds was taken after
    /// it expired, and is not renewed), or `None` when its name is no longer this process's
    /// (another process took it over after it expired): it holds nothing and must join again.
    pub async fn beat(&self, me: &NodeInfo, ttl_ms: i64) -> Result<Option<Vec<Lease>>, StoreError> {
        let database = self.database();
        let now = now_sql(&database);
        let keep = format!(
            "UPDATE nodes SET seen_at = {now}, expires_at = {now} + $4 \
             WHERE node = $1 AND pid = $2 AND host = $3 RETURNING node"
        );
        let renew = format!(
            "UPDATE leases SET expires_at = {now} + $2 WHERE node = $1 AND expires_at > 0 \
             RETURNING resource, node, epoch, expires_at, acquired_at"
        );

        let held: Option<Vec<LeaseRow>> = in_write_tx!(database, |conn| {
            let kept: Option<String> = sqlx::query_scalar(&keep)
                .bind(&me.node)
                .bind(i64::from(me.pid))
                .bind(&me.host)
                .bind(ttl_ms)
                .fetch_optional(&mut *conn)
                .await?;
            match kept {
                None => None,
                Some(_) => Some(
                    sqlx::query_as(&renew)
                        .bind(&me.node)
                        .bind(ttl_ms)
                        .fetch_all(&mut *conn)
                        .await?,
                ),
            }
        });
        Ok(held.map(|held| {
            let mut held: Vec<Lease> = held.into_iter().map(lease).collect();
            held.sort_by(|a, b| a.resource.cmp(&b.resource));
            held
        }))
    }

    /// Takes `resource` for `me` for `ttl_ms` if it is free (never taken, released, or
    /// expired) or held under `me`'s name (by a previous run of this node), raising its epoch;
    /// otherwise answers who holds it.
    pub async fn acquire(
        &self,
        resource: &str,
        me: &NodeInfo,
        ttl_ms: i64,
    ) -> Result<Acquired, StoreError> {
        let database = self.database();
        let now = now_sql(&database);
        let take = format!(
            "INSERT INTO leases (resource, node, epoch, expires_at, acquired_at) \
             VALUES ($1, $2, 1, {now} + $3, {now}) \
             ON CONFLICT (resource) DO UPDATE SET node = excluded.node, \
             epoch = leases.epoch + 1, expires_at = excluded.expires_at, \
             acquired_at = excluded.acquired_at \
             WHERE leases.expires_at < excluded.acquired_at OR leases.node = excluded.node \
             RETURNING resource, node, epoch, expires_at, acquired_at"
        );
        let (taken, holder): (Option<LeaseRow>, Option<LeaseRow>) =
            in_write_tx!(database, |conn| {
                let taken: Option<LeaseRow> = sqlx::query_as(&take)
                    .bind(resource)
                    .bind(&me.node)
                    .bind(ttl_ms)
                    .fetch_optional(&mut *conn)
                    .await?;
                let holder = match taken {
                    Some(_) => None,
                    None => {
                        sqlx::query_as(SELECT_LEASE)
                            .bind(resource)
                            .fetch_optional(&mut *conn)
                            .await?
                    }
                };
                (taken, holder)
            });
        match (taken, holder) {
            (Some(row), _) => Ok(Acquired::Held(lease(row))),
            (None, Some(row)) => Ok(Acquired::Taken(lease(row))),
            // The upsert either inserts, updates or leaves a row that the select then finds.
            (None, None) => Err(StoreError::Corrupt {
                position: 0,
                column: "leases.resource",
                value: resource.to_owned(),
            }),
        }
    }

    /// Gives `resource` up at once, if `node` holds it: the next node to ask takes it, with a
    /// higher epoch, and anything still carrying this node's epoch is refused.
    pub async fn release(&self, resource: &str, node: &str) -> Result<(), StoreError> {
        in_write_tx!(self.database(), |conn| {
            sqlx::query("UPDATE leases SET expires_at = 0 WHERE resource = $1 AND node = $2")
                .bind(resource)
                .bind(node)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// `node` leaves the cluster: every lease it holds released and its row gone, at once
    /// (a clean stop; a node that dies is forgotten when its row expires).
    pub async fn leave(&self, node: &str) -> Result<(), StoreError> {
        in_write_tx!(self.database(), |conn| {
            sqlx::query("UPDATE leases SET expires_at = 0 WHERE node = $1")
                .bind(node)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM nodes WHERE node = $1")
                .bind(node)
                .execute(&mut *conn)
                .await?;
        });
        Ok(())
    }

    /// Every node and lease, with the database's time.
    pub async fn cluster(&self) -> Result<Cluster, StoreError> {
        let database = self.database();
        let now_query = format!("SELECT {}", now_sql(&database));
        const NODES: &str =
            "SELECT node, pid, host, started_at, seen_at, expires_at FROM nodes ORDER BY node";
        const LEASES: &str = "SELECT resource, node, epoch, expires_at, acquired_at FROM leases \
             ORDER BY resource";
        type NodeTuple = (String, i64, String, i64, i64, i64);
        macro_rules! read {
            ($pool:expr) => {{
                let now: i64 = sqlx::query_scalar(&now_query).fetch_one($pool).await?;
                let nodes: Vec<NodeTuple> = sqlx::query_as(NODES).fetch_all($pool).await?;
                let leases: Vec<LeaseRow> = sqlx::query_as(LEASES).fetch_all($pool).await?;
                (now, nodes, leases)
            }};
        }
        let (now, nodes, leases) = match &database {
            Database::Sqlite { pool, .. } => read!(pool),
            Database::Postgres { pool } => read!(pool),
        };
        Ok(Cluster {
            now,
            nodes: nodes
                .into_iter()
                .map(
                    |(node, pid, host, started_at, seen_at, expires_at)| NodeRow {
                        node,
                        pid,
                        host,
                        started_at,
                        seen_at,
                        expires_at,
                    },
                )
                .collect(),
            leases: leases.into_iter().map(lease).collect(),
        })
    }

    /// The lease of `resource` as stored, if it was ever taken.
    pub async fn lease(&self, resource: &str) -> Result<Option<Lease>, StoreError> {
        let row: Option<LeaseRow> = match self.database() {
            Database::Sqlite { pool, .. } => {
                sqlx::query_as(SELECT_LEASE)
                    .bind(resource)
                    .fetch_optional(&pool)
                    .await?
            }
            Database::Postgres { pool } => {
                sqlx::query_as(SELECT_LEASE)
                    .bind(resource)
                    .fetch_optional(&pool)
                    .await?
            }
        };
        Ok(row.map(lease))
    }
}
