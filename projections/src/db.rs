//! The read models' side of the database: write transactions that queue with the store's own
//! appends, and the few conversions between rows and domain values.
//!
//! The SQL is shared by both backends (sqlx accepts `$1`-style parameters on SQLite too), and
//! [`on_tx!`] / [`on_pool!`] expand one body for each backend's connection type, so a query is
//! written once and type-checked twice.

use hedgehog_store::{Database, WriterTurn};
use rust_decimal::Decimal;
use sqlx::{Postgres, Sqlite, Transaction};

use crate::ProjectionError;

/// A write transaction on the store's database.
pub enum Tx {
    Sqlite {
        tx: Transaction<'static, Sqlite>,
        /// The turn in the store's writer queue, held until the commit (declared after `tx`,
        /// so dropped after a rollback too).
        _turn: WriterTurn,
    },
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    pub async fn begin(db: &Database) -> Result<Tx, ProjectionError> {
        Ok(match db {
            Database::Sqlite { pool, writer } => {
                let turn = writer.turn().await;
                Tx::Sqlite {
                    tx: pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: turn,
                }
            }
            Database::Postgres { pool } => Tx::Postgres(pool.begin().await?),
        })
    }

    pub async fn commit(self) -> Result<(), ProjectionError> {
        match self {
            Tx::Sqlite { tx, _turn } => tx.commit().await?,
            Tx::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }
}

/// Runs `$body` with `$conn` bound to the transaction's connection, whichever the backend.
macro_rules! on_tx {
    ($tx:expr, $conn:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Sqlite { tx, .. } => {
                let $conn: &mut sqlx::SqliteConnection = &mut *tx;
                $body
            }
            $crate::db::Tx::Postgres(tx) => {
                let $conn: &mut sqlx::PgConnection = &mut *tx;
                $body
            }
        }
    };
}

/// Runs `$body` with `$pool` bound to the database's pool, whichever the backend.
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            hedgehog_store::Database::Sqlite { pool, .. } => {
                let $pool: &sqlx::SqlitePool = pool;
                $body
            }
            hedgehog_store::Database::Postgres { pool } => {
                let $pool: &sqlx::PgPool = pool;
                $body
            }
        }
    };
}

pub(crate) use {on_pool, on_tx};

/// An exchange id or count as a database integer. Binance's ids are far below `i64::MAX`;
/// the store refuses a trade id above it, so saturating here cannot lose a real value.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) fn decimal(
    table: &'static str,
    column: &'static str,
    text: &str,
) -> Result<Decimal, ProjectionError> {
    text.parse().map_err(|_| ProjectionError::Corrupt {
        table,
        column,
        value: text.to_owned(),
    })
}

pub(crate) fn unsigned(
    table: &'static str,
    column: &'static str,
    value: i64,
) -> Result<u64, ProjectionError> {
    u64::try_from(value).map_err(|_| ProjectionError::Corrupt {
        table,
        column,
        value: value.to_string(),
    })
}

/// A projection's row in `projection_checkpoints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: i64,
    pub generation: i64,
    pub updated_at: i64,
}

/// Reads a projection's checkpoint, creating it at 0 the first time.
pub(crate) async fn checkpoint(tx: &mut Tx, name: &str) -> Result<Checkpoint, ProjectionError> {
    let row: (i64, i64, i64) = on_tx!(tx, conn => {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, position, generation, updated_at) \
             VALUES ($1, 0, 0, 0) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .execute(&mut *conn)
        .await?;
        sqlx::query_as(
            "SELECT position, generation, updated_at FROM projection_checkpoints WHERE name = $1",
        )
        .bind(name)
        .fetch_one(&mut *conn)
        .await?
    });
    Ok(Checkpoint {
        position: row.0,
        generation: row.1,
        updated_at: row.2,
    })
}

/// Moves a checkpoint from `from` to `to`, or reports that another projector moved it first
/// (or a rebuild reset it): `Ok(false)`, and the transaction must be rolled back.
pub(crate) async fn advance(
    tx: &mut Tx,
    name: &str,
    from: Checkpoint,
    to: i64,
    now: i64,
) -> Result<bool, ProjectionError> {
    let done = on_tx!(tx, conn => {
        sqlx::query(
            "UPDATE projection_checkpoints SET position = $1, updated_at = $2 \
             WHERE name = $3 AND position = $4 AND generation = $5",
        )
        .bind(to)
        .bind(now)
        .bind(name)
        .bind(from.position)
        .bind(from.generation)
        .execute(&mut *conn)
        .await?
        .rows_affected()
    });
    Ok(done == 1)
}

/// Empties a projection's tables and sends its checkpoint back to 0 under a new generation.
pub(crate) async fn reset(
    tx: &mut Tx,
    name: &str,
    tables: &[&str],
    now: i64,
) -> Result<(), ProjectionError> {
    checkpoint(tx, name).await?;
    for table in tables {
        let sql = format!("DELETE FROM {table}");
        on_tx!(tx, conn => {
            sqlx::query(&sql).execute(&mut *conn).await?;
        });
    }
    // The storing switches it applied go with its rows.
    on_tx!(tx, conn => {
        sqlx::query("DELETE FROM storing_switches WHERE model = $1")
            .bind(name)
            .execute(&mut *conn)
            .await?;
    });
    on_tx!(tx, conn => {
        sqlx::query(
            "UPDATE projection_checkpoints \
             SET position = 0, generation = generation + 1, updated_at = $1 WHERE name = $2",
        )
        .bind(now)
        .bind(name)
        .execute(&mut *conn)
        .await?;
    });
    Ok(())
}
