//! The SQLite WAL's checkpoints, run beside the writers instead of inside their commits.
//!
//! Why: SQLite's automatic checkpoint runs in the commit that crosses 1,000 WAL pages, on the
//! writer's own thread, copying those pages into the database file and syncing it. An append of
//! trades spent a fifth of its writer's time there (BENCHMARKS.md), while the other core idled.
//! Here every connection of the process has `wal_autocheckpoint = 0`, and the end of each
//! writer's turn in the process's [`WriteQueue`] wakes one task that checkpoints on a pooled
//! connection of its own:
//!
//! - normally `PASSIVE`: it copies what no reader still needs and never blocks a writer;
//! - once the WAL holds [`RESTART_FRAMES`] pages, `RESTART`, holding the process's writer
//!   queue: a writer that keeps appending keeps a passive checkpoint from ever finishing, so the
//!   WAL would otherwise grow without bound (364 MB after a million trades); the restart makes
//!   the next writer start the WAL from its beginning again. It waits a second at most for
//!   readers still on the WAL (the writers wait for it meanwhile), then gives up for a second.
//!
//! Checkpoints are best-effort: one that fails (another process is checkpointing) is logged and
//! retried at the next commit, and SQLite checkpoints the WAL itself when the last connection
//! to the file closes. Durability is untouched: a commit is durable in the WAL before any of this.

use std::sync::Arc;

use sqlx::SqlitePool;
use tokio::sync::{mpsc, Mutex, OwnedMutexGuard};

use crate::sqlite::BUSY_TIMEOUT;

/// WAL pages (of 4 KiB) after which the checkpointer restarts the WAL: 64 MiB.
pub(crate) const RESTART_FRAMES: i64 = 16_384;
/// How long the checkpointer waits before trying again after a restart found readers.
const RESTART_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// The process's queue of SQLite writers, which also wakes the checkpointer: every write
/// transaction takes a [`WriterTurn`] for its whole length, and the end of each turn wakes the
/// checkpointer, so no writer can forget to. (A turn that rolled back costs one passive
/// checkpoint that finds little to do.) Cheap to clone; the checkpointer stops once every
/// clone is gone.
#[derive(Clone, Debug)]
pub struct WriteQueue {
    pub(crate) lock: Arc<Mutex<()>>,
    wake: mpsc::Sender<()>,
}

/// One writer's turn; see [`WriteQueue`].
pub struct WriterTurn {
    _guard: OwnedMutexGuard<()>,
    wake: mpsc::Sender<()>,
}

impl Drop for WriterTurn {
    fn drop(&mut self) {
        // Full: a wake-up is already pending, which covers this turn too.
        let _ = self.wake.try_send(());
    }
}

impl WriteQueue {
    /// Makes the queue of `pool` and starts its checkpointer on the current runtime.
    pub(crate) fn start(pool: SqlitePool) -> Self {
        let lock = Arc::new(Mutex::new(()));
        // A channel of one: wake-ups that arrive while a checkpoint runs fold into one more.
        let (wake, mut woken) = mpsc::channel(1);
        // The task holds the lock, not a queue: it must not keep its own channel open.
        let write_lock = Arc::clone(&lock);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                if let Err(e) = checkpoint(&pool, &write_lock, RESTART_FRAMES).await {
                    tracing::debug!(error = %e, "WAL checkpoint deferred");
                }
            }
        });
        WriteQueue { lock, wake }
    }

    /// Waits for this writer's turn; hold it until the transaction has committed or rolled
    /// back.
    pub async fn turn(&self) -> WriterTurn {
        WriterTurn {
            _guard: Arc::clone(&self.lock).lock_owned().await,
            wake: self.wake.clone(),
        }
    }
}

/// One checkpoint: passive, or a restart once the WAL holds `restart_frames` pages. Answers
/// whether the WAL was restarted.
async fn checkpoint(
    pool: &SqlitePool,
    write_lock: &Mutex<()>,
    restart_frames: i64,
) -> Result<bool, sqlx::Error> {
    if wal_frames(pool).await? >= restart_frames {
        // The restart waits for readers still on the WAL, and this process's writers wait
        // for it: a second at most (not the pool's 30 s), then it gives up until later.
        if blocking_checkpoint(pool, write_lock, "RESTART").await? {
            return Ok(true);
        }
        tracing::debug!("WAL restart deferred: readers or another checkpoint still on it");
        tokio::time::sleep(RESTART_BACKOFF).await;
    }
    Ok(false)
}

/// Copies the whole WAL into the database file and empties it, if no reader holds it within
/// a second: what a command does as it exits, so a clean exit leaves the database in one file
/// (SQLite removes the WAL only when the last connection to it closes, which a process exiting
/// with its pools open does not do). Answers whether it could: not while a reader (or another
/// checkpoint) is on the WAL. The WAL is durable either way.
pub(crate) async fn truncate(
    pool: &SqlitePool,
    write_lock: &Mutex<()>,
) -> Result<bool, sqlx::Error> {
    blocking_checkpoint(pool, write_lock, "TRUNCATE").await
}

/// A `RESTART` or `TRUNCATE` checkpoint, holding the process's writer queue and waiting a
/// second at most for other connections: answers whether it was done.
async fn blocking_checkpoint(
    pool: &SqlitePool,
    write_lock: &Mutex<()>,
    mode: &str,
) -> Result<bool, sqlx::Error> {
    let _writer = write_lock.lock().await;
    let mut conn = pool.acquire().await?;
    sqlx::query("PRAGMA busy_timeout = 1000")
        .execute(&mut *conn)
        .await?;
    let done: Result<(i64, i64, i64), sqlx::Error> =
        sqlx::query_as(&format!("PRAGMA wal_checkpoint({mode})"))
            .fetch_one(&mut *conn)
            .await;
    sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        BUSY_TIMEOUT.as_millis()
    ))
    .execute(&mut *conn)
    .await?;
    Ok(done?.0 == 0)
}

/// Runs a passive checkpoint and answers how many pages the WAL holds.
async fn wal_frames(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    // (busy, pages in the WAL, pages checkpointed)
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Database, ExpectedVersion, NewEvent, Store, StreamId};
    use hedgehog_domain::Symbol;

    fn trades(symbol: &Symbol, ids: std::ops::Range<u64>) -> Vec<NewEvent> {
        ids.map(|trade_id| {
            NewEvent::new(
                hedgehog_domain::testkit::trade(symbol.as_str(), trade_id)
                    .price(rust_decimal::Decimal::new(6_000_001, 2))
                    .quantity(rust_decimal::Decimal::new(1, 3))
                    .at(1_700_000_000_000)
                    .event_time(1_700_000_000_001)
                    .build(),
            )
        })
        .collect()
    }

    /// The WAL's pages, once the background checkpointer is not running (SQLite answers -1
    /// to a second checkpointer meanwhile).
    async fn frames_when_idle(pool: &SqlitePool) -> i64 {
        for _ in 0..500 {
            let frames = wal_frames(pool).await.unwrap();
            if frames >= 0 {
                return frames;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the WAL stayed busy for 5 s")
    }

    /// Commits leave checkpointing to the checkpointer, which copies the WAL into the
    /// database file beside them, and a restart makes the next commit write the WAL from its
    /// start again.
    #[tokio::test]
    async fn the_wal_is_checkpointed_beside_the_writers_and_restarted_when_long() {
        let dir = std::env::temp_dir().join(format!("hh-ckpt-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("t.db");
        let url = format!("sqlite://{}", file.display());
        let store = Store::open(&url).await.unwrap();
        let Database::Sqlite { pool, writer } = store.database() else {
            unreachable!("a SQLite URL opens SQLite")
        };
        let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(auto, 0, "commits never checkpoint themselves");
        let before = std::fs::metadata(&file).unwrap().len();
        let symbol = Symbol::parse("BTCUSDT").unwrap();
        let stream = StreamId::trades(&symbol);
        for n in 0..40 {
            store
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    trades(&symbol, n * 500..(n + 1) * 500),
                )
                .await
                .unwrap();
        }
        // In WAL mode only a checkpoint writes the database file, and nothing here runs one:
        // the file grows by the checkpointer's work alone.
        let mut grown = false;
        for _ in 0..500 {
            if std::fs::metadata(&file).unwrap().len() > before + 1_000_000 {
                grown = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            grown,
            "the checkpointer copied the WAL into the database file"
        );

        // While the background checkpointer runs, SQLite answers -1 pages and no restart is
        // tried: wait for it.
        let mut restarted = false;
        for _ in 0..200 {
            restarted = checkpoint(&pool, &writer.lock, 1).await.unwrap();
            if restarted {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(restarted, "the WAL was restarted");
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                trades(&symbol, 20_000..20_010),
            )
            .await
            .unwrap();
        let short = frames_when_idle(&pool).await;
        assert!(
            short < 50,
            "after a restart the WAL starts again: {short} pages"
        );
        assert_eq!(store.stream_version(&stream).await.unwrap(), 20_010);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
