//! The forwarder: delivers the outbox to one target in sequence order, in batches folded to the
//! last change per row, and records the position after each delivery. A target that has never
//! been delivered to (or that claims more than this database ever wrote, as after a restore)
//! gets a full copy first. While a target is down it retries with capped exponential backoff;
//! the outbox keeps every change meanwhile and local writes never wait for it. Runs inside
//! `ora serve` (one thread per target) and as `ora sync TARGET --once`.

use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::outbox::{self, TABLES};
use super::target::{RemoteError, Target};
use crate::shutdown::Shutdown;
use crate::store::connection::{self, Tuning};
use crate::store::error::StoreError;

/// How the forwarder paces itself.
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// Changes read per delivery.
    pub batch: usize,
    /// Wait between looks at an empty outbox.
    pub idle: Duration,
    /// Longest wait between retries while a target fails.
    pub max_backoff: Duration,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        ForwarderOptions {
            batch: 1000,
            idle: Duration::from_millis(200),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing was waiting.
    Idle,
    /// A batch of this many changes was delivered.
    Delivered(usize),
    /// A full copy of this many rows was delivered.
    Copied(u64),
}

/// One forwarder: a target and the local connection it reads the outbox through.
pub struct Forwarder {
    conn: Connection,
    target: Box<dyn Target>,
    prepared: bool,
    opts: ForwarderOptions,
}

impl Forwarder {
    /// Opens the database for `target` and registers it (capture starts now).
    pub fn new(
        db: &Path,
        tuning: &Tuning,
        target: Box<dyn Target>,
        opts: ForwarderOptions,
    ) -> Result<Forwarder, StoreError> {
        let conn = connection::open_writer(db, tuning)?;
        outbox::register(&conn, target.name())?;
        Ok(Forwarder {
            conn,
            target,
            prepared: false,
            opts,
        })
    }

    pub fn name(&self) -> &'static str {
        self.target.name()
    }

    /// Delivers the next batch (or the full copy a new target needs).
    pub fn step(&mut self) -> Result<Step, SyncError> {
        let name = self.target.name();
        if !self.prepared {
            self.target.prepare()?;
            self.prepared = true;
        }
        let local = outbox::position(&self.conn, name)?;
        let remote = self.target.remote_position()?;
        let max = outbox::max_seq(&self.conn)?;
        let pos = match (remote, local) {
            // The target recorded more than this database ever wrote (restored from a backup):
            // only a full copy makes it equal again.
            (Some(r), _) if r > max => None,
            (Some(r), l) => {
                if l != Some(r) {
                    outbox::record_ok(&self.conn, name, r, 0)?;
                }
                Some(r)
            }
            (None, l) => l,
        };
        let Some(pos) = pos else {
            return self.full_copy().map(Step::Copied);
        };
        let batch = outbox::batch(&self.conn, pos, self.opts.batch)?;
        let Some(last) = batch.last().map(|c| c.seq) else {
            return Ok(Step::Idle);
        };
        self.target
            .deliver(&outbox::fold(&batch), last, &self.conn)?;
        outbox::record_ok(&self.conn, name, last, batch.len())?;
        Ok(Step::Delivered(batch.len()))
    }

    /// Copies every table as it is now, then records the outbox position of that moment.
    fn full_copy(&mut self) -> Result<u64, SyncError> {
        let sql = |e| StoreError::sqlite("sync: read the database", e);
        self.conn.execute_batch("BEGIN").map_err(sql)?;
        let copied = (|| -> Result<(u64, i64), SyncError> {
            let up_to = outbox::max_seq(&self.conn)?;
            self.target.begin_copy()?;
            let mut rows = 0;
            for (table, _, _) in TABLES {
                let (target, conn) = (&mut self.target, &self.conn);
                let n = outbox::snapshot_table(conn, table, 5000, &mut |chunk| {
                    target
                        .copy_rows(table, &chunk, conn)
                        .map_err(|e| e.to_string())
                })?
                .map_err(|e| SyncError::Remote(RemoteError::Failed(e)))?;
                rows += n;
            }
            self.target.end_copy(up_to)?;
            Ok((rows, up_to))
        })();
        let _ = self.conn.execute_batch("COMMIT");
        let (rows, up_to) = copied?;
        outbox::record_ok(&self.conn, self.target.name(), up_to, rows as usize)?;
        log::info!(
            "sync {}: full copy of {rows} rows delivered",
            self.target.name()
        );
        Ok(rows)
    }

    /// A full copy of this site now, replacing its rows or points on the target (other
    /// sites' stay), whatever the positions say: the repair for a target that drifted. A
    /// failure is recorded like any delivery's.
    pub fn resync(&mut self) -> Result<u64, SyncError> {
        let result = (|| {
            if !self.prepared {
                self.target.prepare()?;
                self.prepared = true;
            }
            self.full_copy()
        })();
        if let Err(e) = &result {
            self.record_error(e);
        }
        result
    }

    /// Delivers until the outbox is empty (or `deadline`), returning the changes and rows sent.
    /// A failure is recorded in sync_control like the server's forwarder records it, so that
    /// `ora health` and the page see a cron-mode `sync --once` that failed.
    pub fn drain(&mut self, deadline: Option<Instant>) -> Result<(u64, u64), SyncError> {
        let (mut changes, mut rows) = (0u64, 0u64);
        loop {
            let step = match self.step() {
                Ok(s) => s,
                Err(e) => {
                    self.record_error(&e);
                    return Err(e);
                }
            };
            match step {
                Step::Idle => return Ok((changes, rows)),
                Step::Delivered(n) => changes += n as u64,
                Step::Copied(n) => rows += n,
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                return Ok((changes, rows));
            }
        }
    }

    fn record_error(&self, e: &SyncError) {
        if let Err(x) = outbox::record_error(&self.conn, self.target.name(), &e.to_string()) {
            log::warn!(
                "sync {}: could not record the error: {x}",
                self.target.name()
            );
        }
    }

    fn prune(&self) {
        if let Err(e) = outbox::prune(&self.conn) {
            log::warn!("sync: could not prune the outbox: {e}");
        }
    }
}

/// Runs a forwarder until `stop` trips: deliver, back off on failure, prune now and then.
pub fn spawn(mut f: Forwarder, stop: Shutdown) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("ora-sync-{}", f.name()))
        .spawn(move || {
            let mut backoff = Duration::from_millis(500);
            let mut since_prune = 0usize;
            while !stop.is_tripped() {
                match f.step() {
                    Ok(Step::Idle) => {
                        backoff = Duration::from_millis(500);
                        stop.wait(f.opts.idle);
                    }
                    Ok(_) => {
                        backoff = Duration::from_millis(500);
                        since_prune += 1;
                        if since_prune >= 20 {
                            f.prune();
                            since_prune = 0;
                        }
                    }
                    Err(e) => {
                        log::warn!(
                            "sync {}: {e}; retrying in {:.1} s (the outbox keeps every change)",
                            f.name(),
                            backoff.as_secs_f64()
                        );
                        f.record_error(&e);
                        // The next attempt reconnects and checks the remote setup again.
                        f.prepared = false;
                        stop.wait(backoff);
                        backoff = (backoff * 2).min(f.opts.max_backoff);
                    }
                }
            }
            f.prune();
        })
}
