//! The background checkpointer of a store with a writer: copies the WAL back into the database
//! file on its own connection and thread, so the writer's COMMIT never pays for a checkpoint
//! (with SQLite's automatic checkpoints, a group commit now and then stalled for the copy and
//! the database fsync). The writer counts the pages it commits; once they pass the
//! threshold (or writes paused for a while) a PASSIVE checkpoint runs, which never blocks the
//! writer or readers. Only PASSIVE: a RESTART checkpoint holds the write lock while it waits
//! for readers, and a backup's read transaction then stalled every write for its whole
//! duration. A WAL that readers kept from being reset is reused from the
//! start by SQLite itself once they are gone. Never writes domain data.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::connection::{self, Tuning};
use super::error::{Result, StoreError};
use crate::shutdown::Shutdown;

/// How often the checkpointer looks at the page count.
const INTERVAL: Duration = Duration::from_millis(100);
/// Pages below the threshold are checkpointed once writes have paused this long.
const IDLE_AFTER: Duration = Duration::from_secs(5);

/// The checkpointer thread; stops (after a last checkpoint) when dropped.
pub struct Checkpointer {
    stop: Shutdown,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path` whenever `pages` (committed by the writer since the last
    /// checkpoint) passes `threshold_pages`.
    pub fn start(
        path: &Path,
        tuning: &Tuning,
        threshold_pages: u32,
        pages: Arc<AtomicU64>,
    ) -> Result<Checkpointer> {
        let conn = connection::open_writer(path, tuning)?;
        // This connection must not run automatic checkpoints of its own.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
            .map_err(|e| StoreError::sqlite("start the checkpointer", e))?;
        let stop = Shutdown::new();
        let s = stop.clone();
        let threshold = u64::from(threshold_pages.max(1));
        let thread = std::thread::Builder::new()
            .name("ora-checkpoint".into())
            .spawn(move || {
                let (mut seen, mut changed_at) = (0, Instant::now());
                while !s.wait(INTERVAL) {
                    let now = pages.load(Ordering::Relaxed);
                    if now != seen {
                        (seen, changed_at) = (now, Instant::now());
                    }
                    let due = now >= threshold || (now > 0 && changed_at.elapsed() >= IDLE_AFTER);
                    if due {
                        pages.fetch_sub(now, Ordering::Relaxed);
                        seen = 0;
                        run_once(&conn, threshold);
                    }
                }
                run_once(&conn, threshold);
            })
            .map_err(|e| StoreError::failed(format!("start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a final checkpoint.
    pub fn stop(&mut self) {
        self.stop.trip();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// (busy, frames in the WAL, frames checkpointed)
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

fn run_once(conn: &Connection, threshold: u64) {
    match checkpoint(conn, "PASSIVE") {
        Ok((_, frames, done)) if frames > done && frames as u64 > 4 * threshold => {
            log::info!(
                "checkpoint: {done} of {frames} WAL frames copied; a long reader holds the rest"
            );
        }
        Ok(_) => {}
        Err(e) => log::warn!("checkpoint failed: {e}"),
    }
}
