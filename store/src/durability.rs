//! Group commit for SQLite's appends: the WAL is synced to disk beside the writers, not inside
//! their commits, and nothing is acknowledged or shown to this process's readers before it is.
//!
//! Why: with `synchronous = FULL` every commit syncs the WAL while it holds the write lock, so
//! the next batch cannot start inserting until the disk has answered: on a virtual disk that
//! sync was two fifths of a 1,000-event append (BENCHMARKS.md, session 10), with a core idle.
//! Here the appender commits with `synchronous = NORMAL` (SQLite writes the WAL's frames but
//! does not sync them) and a thread of this module syncs the WAL file: one `fdatasync` covers
//! every commit written before it started, so a batch inserts while the one before it is being
//! synced, and appenders that arrive together share one sync.
//!
//! What stays true:
//! - **Acknowledged means durable.** An append returns (and [`crate::PendingAppend`] answers)
//!   only once a sync that started after its commit has finished: the WAL is a single file
//!   written in order, so the sync covers its frames. SQLite's recovery keeps a WAL's frames up
//!   to the last whole commit, and a sync failure is never retried (a failed `fsync` may have
//!   dropped the pages it failed on): the store refuses appends from then on.
//! - **Readers see only durable events.** Between its commit and its sync a batch is in the
//!   file, and a read could find it; while any commit of this process is unsynced,
//!   [`Durability::visible`] caps what the reader hands out at the last synced position. Other
//!   processes read the file without the cap; anything that derives from the log and commits
//!   (a read model) syncs the same WAL, and so the events before it, in its own commit.
//! - Checkpoints stay safe: SQLite syncs the WAL before it copies any of it into the database.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::StoreError;

/// The syncer of one database file's WAL; see the module's docs.
pub(crate) struct Durability {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the syncer: a commit was written, or the store is closing.
    written: Condvar,
    /// What is synced: written by the syncer alone, read by appenders, waiters and readers.
    synced: watch::Sender<Synced>,
}

#[derive(Default)]
struct State {
    /// The last position of a commit in progress: its rows may already be visible to readers.
    committing: Option<i64>,
    /// The last position of the last commit this process wrote.
    written: i64,
    closing: bool,
}

/// What the syncer has done.
#[derive(Clone, Debug, Default)]
struct Synced {
    /// The last position of the last commit covered by a finished sync.
    durable: i64,
    /// Why the WAL could not be synced; from then on nothing more is durable.
    failed: Option<Arc<std::io::Error>>,
}

impl Durability {
    /// Starts the syncer of the WAL of the (open, WAL-mode) database file at `database`.
    pub(crate) fn start(database: &Path) -> Result<Self, StoreError> {
        let mut name = database.as_os_str().to_owned();
        name.push("-wal");
        let path = PathBuf::from(name);
        // The WAL exists once a connection has opened the file in WAL mode, and SQLite removes
        // it only when the last one closes: never while the store holds its connections.
        let wal = File::options()
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Wal {
                path: path.clone(),
                source: Arc::new(source),
            })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            written: Condvar::new(),
            synced: watch::Sender::new(Synced::default()),
        });
        let syncer = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("hedgehog-wal-sync".into())
            .spawn(move || syncer.run(&wal, &path))
            .map_err(|source| StoreError::Syncer {
                database: database.to_owned(),
                source: Arc::new(source),
            })?;
        Ok(Durability {
            shared,
            thread: Some(thread),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    /// Call inside the write transaction, just before its `COMMIT`, with the batch's last
    /// position: from here on readers are capped until a sync covers it. Refuses once a sync
    /// has failed.
    pub(crate) fn committing(&self, last: i64) -> Result<(), StoreError> {
        if let Synced {
            durable,
            failed: Some(source),
        } = &*self.shared.synced.borrow()
        {
            return Err(StoreError::Unsynced {
                durable: *durable,
                source: Arc::clone(source),
            });
        }
        self.state().committing = Some(last);
        Ok(())
    }

    /// Call right after the `COMMIT` returned: `true` if it committed (its frames are written,
    /// and the next sync covers them), `false` if it failed (nothing of it counts).
    pub(crate) fn committed(&self, ok: bool) {
        let mut state = self.state();
        if let (Some(last), true) = (state.committing.take(), ok) {
            state.written = state.written.max(last);
            self.shared.written.notify_one();
        }
    }

    /// The highest position readers may be shown: `None` when every commit of this process is
    /// synced (no cap), else the last synced position. Read it *after* the read: a commit whose
    /// rows the read saw had begun before it, and so shows here until it is synced.
    pub(crate) fn visible(&self) -> Option<i64> {
        // Synced first: a sync finishing in between only makes the cap lower than it need be.
        let durable = self.shared.synced.borrow().durable;
        let state = self.state();
        (state.committing.is_some() || state.written > durable).then_some(durable)
    }

    /// Waits until the commit ending at `last` is durable (for `i64::MAX`: every commit this
    /// process has written so far).
    pub(crate) async fn wait(&self, last: i64) -> Result<(), StoreError> {
        let target = {
            let state = self.state();
            last.min(state.written.max(state.committing.unwrap_or(0)))
        };
        let mut synced = self.shared.synced.subscribe();
        // `self` holds the sender, so the wait ends only with an answer.
        let Ok(s) = synced
            .wait_for(|s| s.durable >= target || s.failed.is_some())
            .await
        else {
            return Err(StoreError::ShuttingDown);
        };
        match &s.failed {
            Some(source) if s.durable < target => Err(StoreError::Unsynced {
                durable: s.durable,
                source: Arc::clone(source),
            }),
            _ => Ok(()),
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The syncer's loop: sync whenever something written is not yet durable; on closing,
    /// sync what is left, then stop. It alone writes `synced`, so it keeps `durable` itself.
    fn run(&self, wal: &File, path: &Path) {
        let mut durable = 0;
        loop {
            let target = {
                let mut state = self.lock();
                while state.written <= durable && !state.closing {
                    state = self.written.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.written <= durable {
                    return;
                }
                state.written
            };
            // Every commit up to `target` returned from its write(2) calls before this starts.
            if let Err(e) = wal.sync_data() {
                tracing::error!(wal = %path.display(), error = %e, durable,
                    "the event log's WAL could not be synced to disk; the store takes no more appends");
                self.synced.send_modify(|s| s.failed = Some(Arc::new(e)));
                return;
            }
            durable = target;
            self.synced.send_modify(|s| s.durable = durable);
        }
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        self.state().closing = true;
        self.shared.written.notify_one();
        if let Some(thread) = self.thread.take() {
            // It syncs what is left (a millisecond) and stops.
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal_beside(dir: &Path) -> PathBuf {
        let db = dir.join("log.db");
        std::fs::write(dir.join("log.db-wal"), b"").unwrap();
        db
    }

    #[tokio::test]
    async fn readers_are_capped_from_commit_until_the_sync_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::start(&wal_beside(dir.path())).unwrap();
        assert_eq!(durability.visible(), None, "nothing pending: no cap");

        durability.committing(1_000).unwrap();
        assert_eq!(durability.visible(), Some(0), "mid-commit rows are hidden");
        durability.committed(true);
        durability.wait(1_000).await.unwrap();
        assert_eq!(durability.visible(), None, "synced: the cap is lifted");

        // A failed commit counts for nothing and leaves no cap behind.
        durability.committing(2_000).unwrap();
        durability.committed(false);
        assert_eq!(durability.visible(), None);
        // Waiting for everything written returns at once: the failed commit wrote nothing.
        durability.wait(i64::MAX).await.unwrap();
    }

    #[tokio::test]
    async fn a_missing_wal_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = Durability::start(&dir.path().join("none.db")) else {
            panic!("opened a WAL that does not exist");
        };
        assert!(e.to_string().contains("none.db-wal"), "{e}");
    }
}
