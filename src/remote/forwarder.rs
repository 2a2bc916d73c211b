//! The forwarder: delivers the outbox to one target in sequence order, in batches folded to the
//! last change per row (growing while it is behind), and records the position after each
//! delivery; it asks the target for its position only when it does not know it from its own
//! last delivery. In `ora serve` the local records (position, errors, pruning) go through the
//! store's writer from a recorder thread beside it, so a forwarder never waits for SQLite's
//! write lock between deliveries and its records take their turn with the other writes (the
//! target's own record, written with the data, is the one that decides where to resume). A target that has never been delivered to (or that claims
//! more than this database ever wrote, as after a restore) gets a full copy first. While a target is down it retries with capped exponential backoff;
//! the outbox keeps every change meanwhile and local writes never wait for it. Runs inside
//! `ora serve` (one thread per target) and as `ora sync TARGET --once`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::outbox::{self, TABLES};
use super::target::{RemoteError, Target};
use crate::shutdown::Shutdown;
use crate::store::connection::{self, Tuning};
use crate::store::sync_state::SyncRecord;
use crate::store::StoreError;

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
    /// The target's position as of our own last delivery to it (then it need not be asked
    /// again); `None` after a failure or before the first step.
    known: Option<i64>,
    /// Changes to read next: `opts.batch`, doubled (up to [`MAX_GROWTH`] times) while each
    /// delivery comes back full, so a forwarder that fell behind catches up in fewer, larger
    /// transactions (folding makes a larger batch cheaper per change).
    limit: usize,
    /// Where deliveries are recorded when a recorder thread runs (in `ora serve`).
    recorder: Option<Arc<Recorder>>,
    db: PathBuf,
    tuning: Tuning,
}

/// How far the batch grows while the forwarder is behind.
const MAX_GROWTH: usize = 16;

/// Records waiting for the recorder thread, folded: the newest position with the changes
/// delivered since the last write, and the newest error after it.
#[derive(Default)]
struct Pending {
    ok: Option<(i64, usize)>,
    error: Option<String>,
    stop: bool,
}

/// The hand-over between a forwarder and its recorder thread.
#[derive(Default)]
struct Recorder {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ok(&self, seq: i64, delivered: usize) {
        let mut p = self.lock();
        let before = p.ok.map_or(0, |(_, n)| n);
        p.ok = Some((seq, before + delivered));
        p.error = None;
        self.wake.notify_one();
    }

    fn error(&self, e: String) {
        self.lock().error = Some(e);
        self.wake.notify_one();
    }
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
            limit: opts.batch,
            opts,
            known: None,
            recorder: None,
            db: db.to_path_buf(),
            tuning: tuning.clone(),
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
        let pos = match self.known {
            Some(p) => Some(p),
            None => {
                if let Some(why) = self.target.needs_copy()? {
                    log::warn!("sync {name}: {why}");
                    return self.full_copy().map(Step::Copied);
                }
                let local = outbox::position(&self.conn, name)?;
                let remote = self.target.remote_position()?;
                let max = outbox::max_seq(&self.conn)?;
                match (remote, local) {
                    // The target recorded more than this database ever wrote (restored from a
                    // backup): only a full copy makes it equal again.
                    (Some(r), _) if r > max => None,
                    (Some(r), l) => {
                        if l != Some(r) {
                            outbox::record_ok(&self.conn, name, r, 0)?;
                        }
                        Some(r)
                    }
                    (None, l) => l,
                }
            }
        };
        let Some(pos) = pos else {
            return self.full_copy().map(Step::Copied);
        };
        self.known = Some(pos);
        let batch = outbox::batch(&self.conn, pos, self.limit)?;
        let Some(last) = batch.last().map(|c| c.seq) else {
            self.limit = self.opts.batch;
            return Ok(Step::Idle);
        };
        let full = batch.len() >= self.limit;
        // Until the target confirms, where it stands is unknown (the delivery may have
        // committed there even if its answer is lost).
        self.known = None;
        self.target
            .deliver(&outbox::fold(&batch), last, &self.conn)?;
        self.known = Some(last);
        match &self.recorder {
            Some(r) => r.ok(last, batch.len()),
            None => outbox::record_ok(&self.conn, name, last, batch.len())?,
        }
        self.limit = if full {
            (self.limit * 2).min(self.opts.batch.saturating_mul(MAX_GROWTH))
        } else {
            self.opts.batch
        };
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
                .map_err(|e| SyncError::Remote(RemoteError::failed(e)))?;
                rows += n;
            }
            self.target.end_copy(up_to)?;
            Ok((rows, up_to))
        })();
        let _ = self.conn.execute_batch("COMMIT");
        let (rows, up_to) = copied?;
        self.known = Some(up_to);
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
                    self.known = None;
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
        if let Some(r) = &self.recorder {
            return r.error(e.to_string());
        }
        if let Err(x) = outbox::record_error(&self.conn, self.target.name(), &e.to_string()) {
            log::warn!(
                "sync {}: could not record the error: {x}",
                self.target.name()
            );
        }
    }
}

/// How a recorder writes in `ora serve`: through the store's writer, taking its turn with
/// every other write (the error is the writer's, in words).
pub type WriteThrough = Box<dyn Fn(SyncRecord) -> crate::store::Result<()> + Send>;

/// Runs a forwarder until `stop` trips: deliver, back off on failure; its recorder thread
/// writes the positions and errors and prunes now and then, through `through` when given,
/// else on a connection of its own.
pub fn spawn(
    mut f: Forwarder,
    stop: Shutdown,
    through: Option<WriteThrough>,
) -> std::io::Result<JoinHandle<()>> {
    let recorder = Arc::new(Recorder::default());
    let sink = match through {
        Some(w) => Sink::Writer(w),
        None => Sink::Own(
            connection::open_writer(&f.db, &f.tuning)
                .map_err(|e| std::io::Error::other(e.to_string()))?,
        ),
    };
    let name = f.name();
    let rec = Arc::clone(&recorder);
    let recording = std::thread::Builder::new()
        .name(format!("ora-sync-{name}-rec"))
        .spawn(move || record_loop(&sink, name, &rec))?;
    f.recorder = Some(Arc::clone(&recorder));
    std::thread::Builder::new()
        .name(format!("ora-sync-{}", f.name()))
        .spawn(move || {
            let mut backoff = Duration::from_millis(500);
            while !stop.is_tripped() {
                match f.step() {
                    Ok(Step::Idle) => {
                        backoff = Duration::from_millis(500);
                        stop.wait(f.opts.idle);
                    }
                    Ok(_) => backoff = Duration::from_millis(500),
                    Err(e) => {
                        log::warn!(
                            "sync {}: {e}; retrying in {:.1} s (the outbox keeps every change)",
                            f.name(),
                            backoff.as_secs_f64()
                        );
                        f.record_error(&e);
                        // The next attempt reconnects, checks the remote setup again and asks
                        // the target where it is.
                        f.prepared = false;
                        f.known = None;
                        stop.wait(backoff);
                        backoff = (backoff * 2).min(f.opts.max_backoff);
                    }
                }
            }
            recorder.lock().stop = true;
            recorder.wake.notify_one();
            let _ = recording.join();
        })
}

/// Where a recorder writes.
enum Sink {
    /// Its own connection, one short transaction per record.
    Own(Connection),
    /// The store's writer.
    Writer(WriteThrough),
}

impl Sink {
    fn write(&self, r: SyncRecord) -> crate::store::Result<()> {
        match self {
            Sink::Own(conn) => outbox::record(conn, &r).map(|_| ()),
            Sink::Writer(w) => w(r),
        }
    }
}

/// The recorder: writes what the forwarder hands over (the newest position first, then an
/// error that came after it), and prunes the outbox with every 20th position. A record that
/// cannot be written is kept (merged with newer ones) and tried again. Flushes everything
/// before it stops (three tries: the target holds the position itself, the next start asks it).
fn record_loop(sink: &Sink, name: &'static str, r: &Recorder) {
    let (mut since_prune, mut rounds_after_stop) = (0usize, 0usize);
    loop {
        let (ok, error, stop) = {
            let mut p = r.lock();
            while p.ok.is_none() && p.error.is_none() && !p.stop {
                p = r.wake.wait(p).unwrap_or_else(|e| e.into_inner());
            }
            (p.ok.take(), p.error.take(), p.stop)
        };
        if ok.is_some() || error.is_some() {
            let prune = since_prune + usize::from(ok.is_some()) >= 20 || stop;
            let record = SyncRecord {
                target: name.to_string(),
                ok,
                error: error.clone(),
                prune,
            };
            match sink.write(record) {
                Ok(()) => {
                    since_prune = if prune {
                        0
                    } else {
                        since_prune + usize::from(ok.is_some())
                    }
                }
                Err(e) => {
                    log::warn!("sync {name}: could not record its deliveries locally: {e}");
                    let mut p = r.lock();
                    if let Some((seq, n)) = ok {
                        let (newer, more) = p.ok.map_or((seq, 0), |(s, m)| (s.max(seq), m));
                        p.ok = Some((newer, more + n));
                    }
                    if p.error.is_none() {
                        p.error = error;
                    }
                    drop(p);
                    if !stop {
                        std::thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        }
        if stop {
            rounds_after_stop += 1;
            let p = r.lock();
            if p.ok.is_none() && p.error.is_none() {
                return;
            }
            if rounds_after_stop >= 3 {
                log::warn!("sync {name}: stopping without recording the last position locally");
                return;
            }
        }
    }
}
