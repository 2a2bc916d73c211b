//! The shipper: one thread per writing process that copies captured commits from
//! `replica_log` to the replica directory, in order, chained, fsynced. In bounded mode it is
//! woken by each commit (and polls for other processes' commits); in strict mode the writer
//! hands it each group's record before COMMIT and waits, up to `strict_timeout`, for it to be
//! durable. It takes a new base when the chain cannot continue (a gap, a schema change, a
//! database restored from elsewhere, records dropped while the replica was away) and daily;
//! it prunes old generations. Faults on the replica side (missing, full, read-only, slow, gone)
//! are retried with backoff and reported in [`Status`]; they never stop local writes in bounded
//! mode. Never reads the database except through SQLite, never writes domain data.
//! One piece: the shipping loop, its recovery (gaps, new bases) and its bookkeeping share one
//! lock and one order of steps that must be read together.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde::Serialize;

use crate::store::capture::{self, Record};
use crate::store::connection::{self, Tuning};
use crate::store::ReplicaSink;

use super::base::{self, BaseOptions};
use super::dir::{DirLock, DirProblem, ReplicaDir};
use super::error::{ReplicaError, ReplicaKind};
use super::owner::{self, Place};
use super::seal;
use super::segment::{Cursor, Resumed};
use super::{Mode, ReplicaConfig};

/// How often the shipper looks for commits of other processes and does its housekeeping.
const POLL: Duration = Duration::from_millis(200);
/// Records read from `replica_log` at a time.
const BATCH: i64 = 4096;
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Bounded mode ships at most once per this interval (the lag it adds is far below
/// `max_lag_ms`).
const GATHER: Duration = Duration::from_millis(20);

/// What the shipper last saw, for /health, /metrics, the page and `ora replica status`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Status {
    pub mode: String,
    pub dir: String,
    /// The last attempt to reach the replica succeeded.
    pub up: bool,
    /// What is wrong with the replica, and what to do.
    pub problem: Option<String>,
    /// The problem in one word ([`super::ReplicaError::condition`]).
    pub condition: Option<&'static str>,
    /// The replica refused this database: another database owns it (or another lineage's).
    pub refused: bool,
    /// Since when it is wrong (ms since 1970).
    pub problem_since_ms: Option<i64>,
    /// The last commit durable on the replica, its ledger id and commit time.
    pub shipped_seq: i64,
    pub shipped_ledger: i64,
    pub shipped_commit_ms: i64,
    /// The last commit made locally.
    pub local_seq: i64,
    /// Commit time of the oldest commit not yet on the replica (0 when none).
    pub oldest_unshipped_ms: i64,
    /// Since when the replica is further behind than `max_lag_ms` (ms since 1970).
    pub behind_since_ms: Option<i64>,
    pub generation: u64,
    pub base_in_progress: bool,
    pub bases_taken: u64,
    /// Why the last base was taken.
    pub last_base_reason: Option<String>,
}

impl Status {
    pub fn lag_commits(&self) -> i64 {
        (self.local_seq - self.shipped_seq).max(0)
    }

    pub fn lag_seconds(&self, now_ms: i64) -> f64 {
        if self.lag_commits() == 0 || self.oldest_unshipped_ms == 0 {
            0.0
        } else {
            (now_ms - self.oldest_unshipped_ms).max(0) as f64 / 1000.0
        }
    }
}

struct StrictJob {
    rec: Record,
    deadline: Instant,
    reply: SyncSender<Result<(), ReplicaError>>,
}

#[derive(Default)]
struct Queue {
    strict: VecDeque<StrictJob>,
    abandoned: Vec<i64>,
    woken: bool,
    stop: bool,
}

struct Inner {
    /// Ship every commit of the database as it appears (`ora serve`), rather than only this
    /// process's own (a command that writes once and exits).
    follow: bool,
    /// Ship everything committed, as a follower would, until stopped ([`Replicator::catch_up`]).
    force: std::sync::atomic::AtomicBool,
    /// The database's last commit when the shipper started.
    started_at: i64,
    db: PathBuf,
    tuning: Tuning,
    cfg: ReplicaConfig,
    dir: PathBuf,
    mode: Mode,
    database_id: String,
    /// Where this database lives: the replica's owner must be this place.
    here: Place,
    shipped: AtomicI64,
    committed: AtomicI64,
    queue: Mutex<Queue>,
    cv: Condvar,
    status: Mutex<Status>,
}

/// What a shipper ships, and where.
pub struct ShipTarget {
    pub db: PathBuf,
    pub dir: PathBuf,
    pub mode: Mode,
    /// The database's id (the replica's marker must name it).
    pub database_id: String,
    /// The database's last captured commit now.
    pub local_seq: i64,
    /// Follow every commit of the database (`ora serve`), not only this process's own.
    pub follow: bool,
}

/// The shipper of one process; stops (after shipping what is committed) when dropped.
pub struct Replicator {
    inner: Arc<Inner>,
    thread: Mutex<Option<(JoinHandle<()>, mpsc::Receiver<()>)>>,
}

/// How long stopping waits for the last shipment (a hung replica disk must not hang the exit).
const STOP_WAIT: Duration = Duration::from_secs(10);

impl Replicator {
    /// Starts shipping the captured commits of `t.db` to `t.dir`. Problems with the directory
    /// do not fail this: they are retried and reported.
    pub fn start(
        t: ShipTarget,
        tuning: &Tuning,
        cfg: &ReplicaConfig,
    ) -> std::io::Result<Arc<Replicator>> {
        let ShipTarget {
            db,
            dir,
            mode,
            database_id,
            local_seq,
            follow,
        } = t;
        let here = Place::of(&db);
        let inner = Arc::new(Inner {
            follow,
            force: std::sync::atomic::AtomicBool::new(false),
            started_at: local_seq,
            db,
            tuning: tuning.clone(),
            cfg: cfg.clone(),
            dir: dir.clone(),
            mode,
            database_id,
            here,
            shipped: AtomicI64::new(0),
            committed: AtomicI64::new(local_seq),
            queue: Mutex::new(Queue::default()),
            cv: Condvar::new(),
            status: Mutex::new(Status {
                mode: mode.as_str().into(),
                dir: dir.display().to_string(),
                local_seq,
                ..Status::default()
            }),
        });
        let worker = Arc::clone(&inner);
        let (done_tx, done_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ora-replica".into())
            .spawn(move || {
                run(&worker);
                let _ = done_tx.send(());
            })?;
        Ok(Arc::new(Replicator {
            inner,
            thread: Mutex::new(Some((thread, done_rx))),
        }))
    }

    pub fn status(&self) -> Status {
        lock(&self.inner.status).clone()
    }

    /// (last commit made, last commit durable on the replica).
    pub fn positions(&self) -> (i64, i64) {
        (
            self.inner.committed.load(Ordering::SeqCst),
            self.inner.shipped.load(Ordering::SeqCst),
        )
    }

    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    pub fn max_lag(&self) -> Duration {
        self.inner.cfg.max_lag
    }

    /// Brings the replica up to the database's last commit (a new base when the database was
    /// replaced), waiting up to `timeout`; true when done.
    pub fn catch_up(&self, timeout: Duration) -> bool {
        self.inner.force.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            self.inner.wake();
            let st = self.status();
            if st.up
                && self.inner.shipped.load(Ordering::SeqCst)
                    >= self.inner.committed.load(Ordering::SeqCst)
                && st.generation > 0
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Ships everything committed so far, waiting up to `timeout`; true when all is shipped.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let target = self.inner.committed.load(Ordering::SeqCst);
            if self.inner.shipped.load(Ordering::SeqCst) >= target {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.inner.wake();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the thread after a last attempt to ship what is committed (waiting at most
    /// [`STOP_WAIT`]; a thread stuck on a hung disk is left behind, what it could not ship
    /// stays in `replica_log` for the next run).
    pub fn stop(&self) {
        {
            let mut q = lock(&self.inner.queue);
            q.stop = true;
            self.inner.cv.notify_all();
        }
        if let Some((t, done)) = lock(&self.thread).take() {
            if done.recv_timeout(STOP_WAIT).is_ok() {
                let _ = t.join();
            } else {
                log::warn!(
                    "replica: {} did not answer within {} s; the commits not shipped stay queued in the database",
                    self.inner.dir.display(),
                    STOP_WAIT.as_secs()
                );
            }
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn wake(&self) {
        let mut q = lock(&self.queue);
        q.woken = true;
        self.cv.notify_all();
    }
}

impl ReplicaSink for Replicator {
    fn strict(&self) -> bool {
        self.inner.mode == Mode::Strict
    }

    fn ship_now(&self, rec: &Record) -> Result<(), crate::store::Cause> {
        let timeout = self.inner.cfg.strict_timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        {
            let mut q = lock(&self.inner.queue);
            if q.stop {
                return Err(std::sync::Arc::new(ReplicaError::stopped(
                    "the replica shipper is stopping",
                )));
            }
            q.strict.push_back(StrictJob {
                rec: rec.clone(),
                deadline: Instant::now() + timeout,
                reply: tx,
            });
            self.inner.cv.notify_all();
        }
        let r = match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(ReplicaError::new(
                ReplicaKind::Timeout,
                format!(
                    "the replica did not confirm within {} s",
                    timeout.as_secs_f64()
                ),
            )),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(ReplicaError::stopped("the replica shipper stopped"))
            }
        };
        r.map_err(|e| std::sync::Arc::new(e) as crate::store::Cause)
    }

    fn committed(&self, seq: i64) {
        self.inner.committed.fetch_max(seq, Ordering::SeqCst);
        // A strict group's record is on the replica before its COMMIT: waking the shipper for
        // it would cost a thread wake-up per group and find nothing to do.
        if self.inner.shipped.load(Ordering::SeqCst) < seq {
            self.inner.wake();
        }
    }

    fn abandoned(&self, seq: i64) {
        let mut q = lock(&self.inner.queue);
        q.abandoned.push(seq);
        self.inner.cv.notify_all();
    }

    fn shipped(&self) -> i64 {
        self.inner.shipped.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.stop();
    }
}

/// The thread's state: its own read connection, the directory, the append end.
struct Worker<'a> {
    inner: &'a Inner,
    conn: Option<Connection>,
    rd: Option<ReplicaDir>,
    cursor: Option<Cursor>,
    retry_at: Option<Instant>,
    backoff: Duration,
    last_poll: Instant,
    last_pruned: i64,
    last_retention: Option<Instant>,
    last_daily_check: Option<Instant>,
    /// When the last bounded shipment ended.
    last_ship: Option<Instant>,
    /// When [`Worker::housekeeping`] last ran.
    last_housekeeping: Option<Instant>,
    /// ops_log entries to write once no strict writer waits on us.
    log_later: Vec<(&'static str, String, serde_json::Value)>,
    /// The `owners/` directory as it was when ownership was last confirmed (see
    /// [`Worker::confirm_owner`]).
    owners_seen: Option<OwnersStamp>,
}

/// What a stat of `owners/` says, to notice a hand-over without reading it every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OwnersStamp {
    present: bool,
    ino: u64,
    mtime_ns: i128,
}

impl OwnersStamp {
    fn of(replica: &Path) -> OwnersStamp {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(replica.join("owners")) {
            Ok(m) => OwnersStamp {
                present: true,
                ino: m.ino(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            },
            Err(_) => OwnersStamp {
                present: false,
                ino: 0,
                mtime_ns: 0,
            },
        }
    }
}

/// Kept whole: the shipper thread's loop: wait for commits, gather up to a bound, append and fsync,
/// report, and a last attempt on the way out; its state is the worker, and the loop is where the
/// timing decisions are visible together.
fn run(inner: &Inner) {
    let mut w = Worker {
        inner,
        conn: None,
        rd: None,
        cursor: None,
        retry_at: None,
        backoff: Duration::from_millis(100),
        last_poll: Instant::now() - POLL,
        last_pruned: 0,
        last_retention: None,
        last_daily_check: None,
        last_ship: None,
        last_housekeeping: None,
        log_later: Vec::new(),
        owners_seen: None,
    };
    loop {
        let (jobs, abandoned, stop) = {
            let mut q = lock(&inner.queue);
            if q.strict.is_empty() && q.abandoned.is_empty() && !q.woken && !q.stop {
                let (g, _) = inner
                    .cv
                    .wait_timeout_while(q, POLL, |q| {
                        q.strict.is_empty() && q.abandoned.is_empty() && !q.woken && !q.stop
                    })
                    .unwrap_or_else(|p| p.into_inner());
                q = g;
            }
            q.woken = false;
            (
                std::mem::take(&mut q.strict),
                std::mem::take(&mut q.abandoned),
                q.stop,
            )
        };
        for seq in abandoned {
            w.abandon(seq);
        }
        for job in jobs {
            let result = if Instant::now() > job.deadline {
                Err(ReplicaError::new(
                    ReplicaKind::Timeout,
                    "the request waited too long",
                ))
            } else {
                w.ship(job.rec.seq - 1, Some(&job.rec))
            };
            w.note(&result);
            let _ = job.reply.send(result);
        }
        let target = w.target();
        if target > inner.shipped.load(Ordering::SeqCst) && w.may_try() && !stop {
            // Bounded: one append and fsync gathers the commits of up to GATHER, instead of
            // one per commit (on a disk shared with the database, each fsync of ours delays
            // the writer's).
            if let Some(last) = w.last_ship {
                let left = GATHER.saturating_sub(last.elapsed());
                if inner.mode == Mode::Bounded && !left.is_zero() {
                    let q = lock(&inner.queue);
                    let _ = inner
                        .cv
                        .wait_timeout_while(q, left, |q| q.strict.is_empty() && !q.stop)
                        .unwrap_or_else(|p| p.into_inner());
                }
            }
            let target = w.target();
            let r = w.ship(target, None);
            if r.is_ok() {
                w.last_ship = Some(Instant::now());
            }
            w.note(&r);
        }
        if stop {
            // A last attempt for what is committed, then out.
            let target = w.target();
            if target > inner.shipped.load(Ordering::SeqCst) {
                let r = w.ship(target, None);
                w.note(&r);
            }
            w.prune();
            w.write_logs();
            return;
        }
        w.write_logs();
        w.housekeeping();
    }
}

fn now_ms() -> i64 {
    capture::now_ms()
}

impl Worker<'_> {
    /// The highest commit to ship: our writer's, or what polling the database found. A
    /// shipper that does not follow has nothing to do until its own process committed.
    fn target(&mut self) -> i64 {
        let mut t = self.inner.committed.load(Ordering::SeqCst);
        let follows = self.inner.follow || self.inner.force.load(Ordering::SeqCst);
        if !follows && t <= self.inner.started_at {
            return 0;
        }
        if self.last_poll.elapsed() >= POLL {
            self.last_poll = Instant::now();
            if let Some(st) = self
                .conn()
                .ok()
                .and_then(|c| capture::state(c).ok().flatten())
            {
                t = t.max(st.seq);
                self.inner.committed.fetch_max(st.seq, Ordering::SeqCst);
            }
        }
        t
    }

    fn may_try(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// Records the outcome of an attempt in the status, with backoff after a failure.
    fn note(&mut self, r: &Result<(), ReplicaError>) {
        let mut st = lock(&self.inner.status);
        match r {
            Ok(()) => {
                self.retry_at = None;
                self.backoff = Duration::from_millis(100);
                if st.problem.is_some() {
                    log::info!("replica: {} is reachable again", self.inner.dir.display());
                }
                st.up = true;
                st.problem = None;
                st.condition = None;
                st.problem_since_ms = None;
                st.refused = false;
            }
            Err(e) => {
                let why = e.to_string();
                if st.problem.as_deref() != Some(why.as_str()) {
                    if self.inner.follow || self.inner.mode == Mode::Bounded {
                        log::warn!("replica: {why}");
                    } else {
                        // A strict command reports it as its own error.
                        log::debug!("replica: {why}");
                    }
                }
                st.up = false;
                st.problem = Some(why);
                st.condition = Some(e.condition());
                st.problem_since_ms.get_or_insert_with(now_ms);
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                // Whatever was open may belong to a disk that is gone: start again next time.
                self.cursor = None;
                self.rd = None;
            }
        }
    }

    fn conn(&mut self) -> Result<&Connection, ReplicaError> {
        if self.conn.is_none() {
            let c = crate::file::check::open_source(&self.inner.db, &self.inner.tuning, "replica")
                .map_err(|e| ReplicaError::database("open the database", e))?;
            self.conn = Some(c);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| ReplicaError::stopped("the database connection is gone"))
    }

    /// Opens the directory and the append end, taking a base when there is none to continue.
    /// Takes the replica directory's append lock (every writing process may append; one at a
    /// time). Everything that changes the directory runs under it.
    fn lock_dir(&mut self) -> Result<DirLock, ReplicaError> {
        if self.rd.is_none() {
            let rd = self.open_dir()?;
            self.rd = Some(rd);
        }
        let rd = self
            .rd
            .as_ref()
            .ok_or_else(|| ReplicaError::stopped("replica directory closed"))?;
        let lock = rd.lock().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                // The directory itself is gone (a disk unmounted under us).
                ReplicaError::directory(DirProblem::Missing.message(&rd.path))
            } else {
                ReplicaError::io(format!("lock the replica {}", rd.path.display()), e)
            }
        })?;
        // Under the lock: a take-over (which writes its owner file under the same lock) is
        // seen before anything more is appended.
        self.confirm_owner()?;
        Ok(lock)
    }

    /// Opens the replica directory as this database's own, or says why it is not (leaving a
    /// note there when another database owns it, so its owner hears of the attempt).
    /// The replica directory this shipper has open (refused once it was closed).
    fn current_dir(&self) -> Result<ReplicaDir, ReplicaError> {
        self.rd
            .clone()
            .ok_or_else(|| ReplicaError::stopped("replica directory closed"))
    }

    fn open_dir(&mut self) -> Result<ReplicaDir, ReplicaError> {
        let i = self.inner;
        ReplicaDir::open(&i.dir, &i.database_id, &i.here)
            .map_err(|p| ReplicaError::directory(self.refused(&p)))
    }

    /// The message for `p`, after noting the refusal in the directory when it names another
    /// owner or lineage.
    fn refused(&mut self, p: &DirProblem) -> String {
        let i = self.inner;
        let why = problem_text(p, &i.dir);
        if matches!(p, DirProblem::NotOwner { .. } | DirProblem::Foreign { .. }) {
            owner::note_refusal(&i.dir, &i.database_id, &i.here, &why);
            lock(&i.status).refused = true;
            self.cursor = None;
            self.rd = None;
            self.owners_seen = None;
        }
        why
    }

    /// Checks that this database still owns the replica, reading the owner again only when
    /// `owners/` changed since the last check.
    fn confirm_owner(&mut self) -> Result<(), ReplicaError> {
        let i = self.inner;
        let stamp = OwnersStamp::of(&i.dir);
        if self.owners_seen == Some(stamp) {
            return Ok(());
        }
        let rd = self.current_dir()?;
        match owner::check(&rd, &i.database_id, &i.here) {
            Ok(_) => {
                self.owners_seen = Some(stamp);
                Ok(())
            }
            Err(p) => Err(ReplicaError::directory(self.refused(&p))),
        }
    }

    /// Why the database asks for a new base (an in-place restore or salvage, a take-over), if
    /// it does.
    fn asked_base(&mut self) -> Option<String> {
        let c = self.conn().ok()?;
        let l = crate::store::lineage::read(c).ok()?;
        (!l.base_reason.is_empty()).then_some(l.base_reason)
    }

    /// Kept whole: the shipper's one decision before it appends: whether the replica's end still
    /// belongs to this database as it is now (another process appended, the key changed, a new base
    /// asked for, a strict commit never acknowledged); the cases share the cursor and each ends in
    /// the same few outcomes.
    fn ensure_ready(&mut self) -> Result<(), ReplicaError> {
        if let Some(c) = &self.cursor {
            if c.still_there() && !c.moved() {
                return Ok(());
            }
            if c.still_there() {
                // Another process appended: read the end again.
                self.cursor = None;
                return self.ensure_ready();
            }
            self.cursor = None;
            self.rd = None;
            return Err(ReplicaError::directory(format!(
                "the replica directory {} went away (disk unplugged or unmounted?); writes go on locally and shipping resumes when it is back",
                self.inner.dir.display()
            )));
        }
        let rd = self.open_dir()?;
        let (gens, problems) = list(&rd)?;
        for p in problems {
            log::warn!("replica: {p}");
        }
        self.rd = Some(rd);
        let Some(g) = gens.last() else {
            return self.new_generation("the replica has no base yet".into(), false);
        };
        if let Some(why) = self.asked_base() {
            return self.new_generation(why, false);
        }
        let Some(hash) = base::hash_of(&g.base) else {
            return self.new_generation(
                format!("generation {} has a damaged base hash", g.number),
                false,
            );
        };
        // Encryption turned on, off or to another key: the open generation is continued
        // with its own key until the hand-over below.
        let want = self.inner.cfg.encrypt_to.clone();
        let switch = (!seal::sealed_for(&g.base, want.as_deref())).then(|| match &want {
            Some(to) => format!("the replica is now encrypted to {to}"),
            None => "the replica is no longer encrypted".to_string(),
        });
        let key = match seal::own_key(&seal::read_secret(self.conn()?), g) {
            Ok(k) => k,
            Err(why) => return self.new_generation(why, false),
        };
        let rd = self
            .rd
            .as_ref()
            .ok_or_else(|| ReplicaError::stopped("replica directory closed"))?;
        let resumed = Cursor::resume(rd, g, hash, key)
            .map_err(|e| ReplicaError::io("read the replica's newest generation", e))?;
        let cursor = match resumed {
            Resumed::Ready(c) => *c,
            Resumed::Broken(why) => return self.new_generation(why, false),
        };
        // Does the replica's end belong to this database's history as it is now?
        let st = capture::state(self.conn()?)
            .map_err(|e| ReplicaError::database("read the replica state", e))?
            .ok_or_else(|| ReplicaError::stopped("the database has no replica state"))?;
        let mut cursor = cursor;
        if cursor.tail_seq > st.seq {
            if cursor.tail_seq == st.seq + 1 && cursor.tail_prev == Some(st.last_hash) {
                // A strict commit shipped, then the process died before COMMIT: never
                // acknowledged, never committed here.
                cursor.drop_last(cursor.tail_seq).map_err(|e| {
                    ReplicaError::io("remove an uncommitted record from the replica", e)
                })?;
            } else {
                return self.new_generation(
                    "the database is behind its replica (restored from elsewhere?)".into(),
                    false,
                );
            }
        } else if cursor.tail_seq == st.seq && cursor.tail_hash != st.last_hash {
            return self.new_generation(
                "the database's history differs from its replica's (restored from elsewhere?)"
                    .into(),
                false,
            );
        }
        self.set_cursor(cursor);
        match switch {
            Some(why) => self.hand_over(why),
            None => Ok(()),
        }
    }

    fn set_cursor(&mut self, c: Cursor) {
        self.inner.shipped.store(c.tail_seq, Ordering::SeqCst);
        let mut st = lock(&self.inner.status);
        st.generation = c.generation;
        st.shipped_seq = c.tail_seq;
        st.shipped_commit_ms = c.tail_ms;
        self.cursor = Some(c);
    }

    /// Takes a new base and continues the chain from it.
    fn new_generation(&mut self, reason: String, continues: bool) -> Result<(), ReplicaError> {
        let rd = self.current_dir()?;
        self.cursor = None;
        if !continues {
            // Commits by other programs up to now are in the copy: clear the flag first, so a
            // change made after it is still seen. (A strict writer holding the lock clears
            // it with its own commit.)
            let _ = self.clear_outside();
        }
        let started = crate::model::now_utc();
        let g = self.take_base(&rd, reason.clone(), continues)?;
        let number = g.number;
        if !continues {
            // Written later, outside this call: a strict writer may hold the write lock now.
            self.log_later.push((
                "replica_base",
                started,
                serde_json::json!({
                    "reason": reason, "generation": number, "seq": g.base.seq,
                    "dir": rd.path.display().to_string(),
                }),
            ));
        }
        {
            let mut st = lock(&self.inner.status);
            st.bases_taken += 1;
            st.last_base_reason = Some(reason);
        }
        self.continue_in(&rd, &g)
    }

    /// Opens the append end of the generation just based, with its key.
    fn continue_in(
        &mut self,
        rd: &ReplicaDir,
        g: &super::dir::Generation,
    ) -> Result<(), ReplicaError> {
        let hash = base::hash_of(&g.base)
            .ok_or_else(|| ReplicaError::damaged("the new base has no hash"))?;
        let key = seal::own_key(&seal::read_secret(self.conn()?), g).map_err(ReplicaError::keys)?;
        match Cursor::resume(rd, g, hash, key)
            .map_err(|e| ReplicaError::io("open the new generation", e))?
        {
            Resumed::Ready(c) => {
                self.set_cursor(*c);
                Ok(())
            }
            Resumed::Broken(why) => Err(ReplicaError::damaged(format!(
                "the new generation is unusable: {why}"
            ))),
        }
    }

    /// The database's secret for a new generation encrypted to `to`: made here when it is
    /// missing or was made for another public key, and removed for a plain one (its base must
    /// not carry it), without waiting for a busy write lock. The open generation keeps its
    /// key in memory, so it can still be appended to.
    fn secret_for(&mut self, to: Option<&str>) -> Result<Option<Vec<u8>>, ReplicaError> {
        let s = seal::read_secret(self.conn()?);
        if s.serves(to) {
            return Ok(s.bytes);
        }
        if !self.small_write(Duration::from_millis(200), |c| seal::store_secret(c, to)) {
            return Err(ReplicaError::new(
                ReplicaKind::Database,
                "the replica's encryption secret could not be stored (the database is busy); retrying",
            ));
        }
        let s = seal::read_secret(self.conn()?);
        match (to, s.bytes) {
            (Some(_), None) => Err(ReplicaError::keys(
                "the replica's encryption secret was not stored",
            )),
            (_, b) => Ok(b),
        }
    }

    /// Writes the next generation's base (the status says so meanwhile).
    fn take_base(
        &mut self,
        rd: &ReplicaDir,
        reason: String,
        continues: bool,
    ) -> Result<super::dir::Generation, ReplicaError> {
        let number = rd
            .last_generation_number()
            .map_err(|e| ReplicaError::io(format!("list the replica {}", rd.path.display()), e))?
            + 1;
        let to = self.inner.cfg.encrypt_to.clone();
        let secret = self.secret_for(to.as_deref())?;
        lock(&self.inner.status).base_in_progress = true;
        let taken = base::take(
            rd,
            &self.inner.db,
            number,
            &BaseOptions {
                tuning: &self.inner.tuning,
                level: self.inner.cfg.level,
                threads: self.inner.cfg.threads(),
                reason,
                continues,
                seal: match (&secret, &to) {
                    (Some(secret), Some(to)) => Some(base::SealWith { secret, to }),
                    _ => None,
                },
            },
        );
        lock(&self.inner.status).base_in_progress = false;
        taken.map_err(|e| ReplicaError::new(ReplicaKind::Io, e.to_string()).with_source(e))
    }

    /// Resets the `outside` flag (a base is about to copy what other programs changed);
    /// false when the write lock could not be had at once.
    fn clear_outside(&mut self) -> bool {
        self.small_write(Duration::from_millis(200), |c| {
            c.execute("UPDATE replica_state SET outside = 0 WHERE outside = 1", [])?;
            crate::store::lineage::clear_base_reason(c)
        })
    }

    /// One short transaction of the shipper's own on `replica_*` (never domain data), given
    /// up rather than waited for when the write lock is busy; true when it committed.
    fn small_write(
        &self,
        wait: Duration,
        f: impl FnOnce(&Connection) -> rusqlite::Result<()>,
    ) -> bool {
        let Ok(c) = self.short_writer() else {
            return false;
        };
        capture::replica_write(&c, wait, |c| {
            f(c).map_err(|e| crate::store::StoreError::sqlite("replica", e))
        })
        .is_ok()
    }

    /// A connection for the shipper's own small writes (replica_state, pruning): it must never
    /// wait long for the write lock, which a strict writer may hold while it waits for us.
    fn short_writer(&self) -> crate::store::Result<Connection> {
        let t = Tuning {
            busy_timeout_ms: 50,
            ..self.inner.tuning.clone()
        };
        connection::open_writer(&self.inner.db, &t)
    }

    /// Committed records after `after` up to `upto`, in order.
    fn read_records(&mut self, after: i64, upto: i64) -> Result<Vec<Record>, ReplicaError> {
        let conn = self.conn()?;
        let mut st = conn
            .prepare_cached(
                "SELECT seq, committed_ms, flags, first_ledger, last_ledger, prev_hash, hash, changeset
                   FROM replica_log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(|e| ReplicaError::database("read replica_log", e))?;
        let rows = st
            .query_map((after, upto, BATCH), |r| {
                Ok(Record {
                    seq: r.get(0)?,
                    committed_ms: r.get(1)?,
                    flags: r.get(2)?,
                    first_ledger: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                    last_ledger: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                    prev_hash: capture::hash_from(&r.get::<_, Vec<u8>>(5)?),
                    hash: capture::hash_from(&r.get::<_, Vec<u8>>(6)?),
                    changeset: r.get(7)?,
                })
            })
            .map_err(|e| ReplicaError::database("read replica_log", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| ReplicaError::database("read replica_log", e))
    }

    /// Makes every committed record up to `upto`, then `extra` (a strict writer's record,
    /// not committed yet), durable on the replica.
    fn ship(&mut self, upto: i64, extra: Option<&Record>) -> Result<(), ReplicaError> {
        let _lock = self.lock_dir()?;
        self.ship_locked(upto, extra)
    }

    fn ship_locked(&mut self, upto: i64, extra: Option<&Record>) -> Result<(), ReplicaError> {
        self.ensure_ready()?;
        loop {
            let tail = self.cursor.as_ref().map_or(0, |c| c.tail_seq);
            let mut recs = if upto > tail {
                self.read_records(tail, upto)?
            } else {
                Vec::new()
            };
            let more = recs.len() as i64 >= BATCH;
            if !more {
                if let Some(x) = extra {
                    recs.push(x.clone());
                }
            }
            if recs.is_empty() {
                return Ok(());
            }
            let broke = self.append_chain(&recs)?;
            if let Some(why) = broke {
                let why = self.asked_base().unwrap_or(why);
                self.new_generation(why, false)?;
                continue;
            }
            if !more {
                self.update_lag();
                return Ok(());
            }
        }
    }

    /// Appends the records that continue the chain; returns why the chain broke, if it did.
    fn append_chain(&mut self, recs: &[Record]) -> Result<Option<String>, ReplicaError> {
        let c = self
            .cursor
            .as_mut()
            .ok_or_else(|| ReplicaError::stopped("no replica open"))?;
        let mut ok: Vec<Record> = Vec::new();
        let mut broke = None;
        for r in recs {
            let (tail, tail_hash) = ok
                .last()
                .map_or((c.tail_seq, c.tail_hash), |l| (l.seq, l.hash));
            if r.seq <= tail && ok.is_empty() && r.seq == c.tail_seq && r.hash == c.tail_hash {
                continue; // already there
            }
            if r.seq == c.tail_seq
                && ok.is_empty()
                && Some(r.prev_hash) == c.tail_prev
                && r.hash != c.tail_hash
            {
                // The replica ends with a record whose COMMIT failed: replace it.
                c.drop_last(r.seq).map_err(|e| {
                    ReplicaError::io("remove an uncommitted record from the replica", e)
                })?;
                ok.push(r.clone());
                continue;
            }
            if r.is_gap() {
                broke = Some("another program changed the database or its schema".to_string());
                break;
            }
            if r.seq != tail + 1 || r.prev_hash != tail_hash {
                broke = Some(format!(
                    "commit {} does not follow commit {tail} on the replica (changes were dropped while it was away, or the database was replaced)",
                    r.seq
                ));
                break;
            }
            ok.push(r.clone());
        }
        c.append(&ok).map_err(|e| {
            ReplicaError::io(
                format!("write to the replica {}", self.inner.dir.display()),
                e,
            )
        })?;
        if let Some(last) = ok.last() {
            self.inner.shipped.store(last.seq, Ordering::SeqCst);
            let mut st = lock(&self.inner.status);
            st.shipped_seq = last.seq;
            st.shipped_commit_ms = last.committed_ms;
            if let Some(l) = ok.iter().rev().find(|r| r.last_ledger > 0) {
                st.shipped_ledger = l.last_ledger;
            }
        }
        Ok(broke)
    }

    fn abandon(&mut self, seq: i64) {
        if let Some(c) = self.cursor.as_mut() {
            match c.drop_last(seq) {
                Ok(true) => {
                    self.inner.shipped.store(c.tail_seq, Ordering::SeqCst);
                }
                Ok(false) => {}
                Err(e) => {
                    log::warn!("replica: could not remove uncommitted record {seq}: {e}");
                    self.cursor = None;
                }
            }
        }
    }

    /// Lag facts for the status.
    fn update_lag(&mut self) {
        let shipped = self.inner.shipped.load(Ordering::SeqCst);
        let local = self.inner.committed.load(Ordering::SeqCst);
        let oldest = if local > shipped {
            self.conn().ok().and_then(|c| {
                c.query_row(
                    "SELECT committed_ms FROM replica_log WHERE seq > ?1 ORDER BY seq LIMIT 1",
                    [shipped],
                    |r| r.get::<_, i64>(0),
                )
                .ok()
            })
        } else {
            None
        };
        let max_lag_ms = i64::try_from(self.inner.cfg.max_lag.as_millis()).unwrap_or(i64::MAX);
        let mut st = lock(&self.inner.status);
        st.local_seq = local;
        st.oldest_unshipped_ms = oldest.unwrap_or(0);
        let behind = oldest.is_some_and(|o| now_ms() - o > max_lag_ms);
        if behind {
            st.behind_since_ms.get_or_insert_with(now_ms);
        } else {
            st.behind_since_ms = None;
        }
    }

    fn write_logs(&mut self) {
        for (kind, started, details) in std::mem::take(&mut self.log_later) {
            crate::file::oplog::record(&self.inner.db, kind, &started, true, &details);
        }
    }

    /// A change by another program while ora is idle (no commit of ours follows to carry the
    /// gap flag): the replica takes a new base that includes it.
    fn outside_while_idle(&mut self) {
        let shipped = self.inner.shipped.load(Ordering::SeqCst);
        let Some(st) = self
            .conn()
            .ok()
            .and_then(|c| capture::state(c).ok().flatten())
        else {
            return;
        };
        if st.outside && st.enabled && st.seq <= shipped {
            let r = self.lock_dir().and_then(|_lock| {
                let why = self
                    .asked_base()
                    .unwrap_or_else(|| "another program changed the database".into());
                if self.clear_outside() {
                    self.new_generation(why, false)
                } else {
                    Ok(())
                }
            });
            self.note(&r);
        }
    }

    /// Lag, outside changes while idle, retention, daily base, the pending cap; at most
    /// twice a poll interval (a strict writer wakes the loop once a group, and each run reads
    /// the database).
    fn housekeeping(&mut self) {
        if !self.inner.follow
            || self
                .last_housekeeping
                .is_some_and(|t| t.elapsed() < POLL / 2)
        {
            return;
        }
        self.last_housekeeping = Some(Instant::now());
        self.update_lag();
        if self.cursor.is_some() {
            self.outside_while_idle();
        }
        let up = self.cursor.is_some();
        if !up {
            self.enforce_cap();
            return;
        }
        let hourly = self
            .last_retention
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(3600));
        if hourly {
            self.last_retention = Some(Instant::now());
            if let Err(e) = self.lock_dir().and_then(|_lock| self.retention()) {
                log::warn!("replica: retention: {e}");
            }
        }
        if let Err(e) = self.daily_base() {
            self.note(&Err(e));
        }
    }

    /// `daily_base` decides under the directory's lock, once a minute.
    fn daily_base(&mut self) -> Result<(), ReplicaError> {
        if self.cursor.is_none()
            || self
                .last_daily_check
                .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return Ok(());
        }
        self.last_daily_check = Some(Instant::now());
        let _lock = self.lock_dir()?;
        self.daily_base_locked()
    }

    /// Drops `replica_log` rows the replica has, at stop (while running, the writer does it
    /// inside its own transactions; taking the write lock here would stall a strict writer).
    fn prune(&mut self) {
        let shipped = self.inner.shipped.load(Ordering::SeqCst);
        if shipped <= self.last_pruned {
            return;
        }
        let done = self.small_write(Duration::from_millis(200), |c| {
            c.execute("DELETE FROM replica_log WHERE seq <= ?1", [shipped])
                .map(|_| ())
        });
        if done {
            self.last_pruned = shipped;
        }
    }

    /// While the replica is away: past `max_pending_bytes`, the waiting changes are dropped
    /// (a new base follows when it is back) so the database does not grow without bound.
    fn enforce_cap(&mut self) {
        let shipped = self.inner.shipped.load(Ordering::SeqCst);
        let Ok(pending) = self.conn().and_then(|c| {
            c.query_row(
                "SELECT total(length(changeset)), count(*), max(seq) FROM replica_log WHERE seq > ?1",
                [shipped],
                |r| Ok((r.get::<_, f64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Option<i64>>(2)?)),
            )
            .map_err(|e| ReplicaError::database("read replica_log", e))
        }) else {
            return;
        };
        let (bytes, count, max) = pending;
        if bytes <= self.inner.cfg.max_pending_bytes as f64 {
            return;
        }
        let Some(max) = max else { return };
        let started = crate::model::now_utc();
        let done = self.small_write(Duration::from_secs(2), |c| {
            c.execute("DELETE FROM replica_log WHERE seq <= ?1", [max])
                .map(|_| ())
        });
        if !done {
            return;
        }
        log::error!(
            "replica: {count} changes ({:.0} MB) waited for the absent replica; dropped locally, a new base will be taken when it is back",
            bytes / 1e6
        );
        crate::file::oplog::record(
            &self.inner.db,
            "replica_gap",
            &started,
            false,
            &serde_json::json!({
                "reason": "the replica was away too long; the changes waiting for it were dropped locally",
                "dropped": count, "bytes": bytes, "up_to_seq": max,
            }),
        );
    }

    /// A new base once the newest is older than `base_interval` (the history continues).
    fn daily_base_locked(&mut self) -> Result<(), ReplicaError> {
        let Some(c) = &self.cursor else { return Ok(()) };
        let rd = self.current_dir()?;
        let (gens, _) = list(&rd)?;
        let Some(newest) = gens.iter().find(|g| g.number == c.generation) else {
            return Ok(());
        };
        let age_ms = now_ms() - newest.base.taken_ms;
        let interval = i64::try_from(self.inner.cfg.base_interval.as_millis()).unwrap_or(i64::MAX);
        if age_ms < interval {
            return Ok(());
        }
        self.hand_over("daily".into())
    }

    /// Ends the open generation and continues the history in a new one: what is committed is
    /// shipped into the old generation first, so it ends exactly where the new base begins
    /// (the daily base, and encryption turned on, off or to another key).
    fn hand_over(&mut self, reason: String) -> Result<(), ReplicaError> {
        let rd = self.current_dir()?;
        let target = self.target();
        self.ship_locked(target, None)?;
        let old = self.cursor.take();
        let g = self.take_base(&rd, reason.clone(), true)?;
        // Commits made while the copy was taken go to the old generation too, up to the base.
        self.cursor = old;
        if g.base.seq > self.cursor.as_ref().map_or(0, |c| c.tail_seq) {
            self.ship_locked(g.base.seq, None)?;
        }
        self.continue_in(&rd, &g)?;
        let mut st = lock(&self.inner.status);
        st.bases_taken += 1;
        st.last_base_reason = Some(reason);
        Ok(())
    }

    /// Removes generations whose whole span lies before `keep_days`; never the newest.
    fn retention(&mut self) -> Result<(), ReplicaError> {
        let rd = self.current_dir()?;
        let (gens, _) = list(&rd)?;
        let cutoff = now_ms() - i64::from(self.inner.cfg.keep_days) * 86_400_000;
        for pair in gens.windows(2) {
            let (g, next) = (&pair[0], &pair[1]);
            if next.base.taken_ms < cutoff {
                std::fs::remove_dir_all(&g.path)
                    .map_err(|e| ReplicaError::io(format!("remove {}", g.path.display()), e))?;
                log::info!(
                    "replica: removed generation {} (older than {} days)",
                    g.number,
                    self.inner.cfg.keep_days
                );
            }
        }
        owner::prune_refusals(&rd, now_ms());
        crate::fsutil::sync_dir(&rd.path)
            .map_err(|e| ReplicaError::io(format!("fsync {}", rd.path.display()), e))
    }
}

fn problem_text(p: &DirProblem, dir: &Path) -> String {
    p.message(dir)
}

/// The generations of `rd` and the entries it could not read.
fn list(rd: &ReplicaDir) -> Result<(Vec<super::dir::Generation>, Vec<String>), ReplicaError> {
    rd.generations()
        .map_err(|e| ReplicaError::io(format!("list the replica {}", rd.path.display()), e))
}
