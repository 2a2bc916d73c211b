//! The only code that writes domain data: one thread owns the one write connection. Callers
//! hand it requests over a bounded channel; it takes everything queued (up to a bound), runs it
//! in one `BEGIN IMMEDIATE` transaction with each request under its own SAVEPOINT (so one
//! failure rolls back only itself), commits once, and only then answers every caller (group
//! commit). A caller is never answered before its COMMIT returned, and never sees SQLITE_BUSY:
//! the writer waits out other processes' locks up to `lock_wait` and then reports plainly.
//!
//! A caller that arrives while nobody waits and no group is being committed does not hand its
//! request to the thread: it takes the write connection itself and commits its request as a
//! group of one, in its own thread (a thread hand-off each way cost more than the commit saved
//! with one client). Callers arriving meanwhile queue for the writer thread as usual.
//!
//! Each group is captured for the replica ([`super::capture`]): its record is stored in the
//! same transaction, and with a strict replica it is made durable there before COMMIT (a group
//! the replica cannot take in time is rolled back and refused, nothing applied).
//! One piece: the batching, the commit and the answers are one protocol; split, its ordering
//! guarantee (no answer before COMMIT) would span files.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::capture::{Capture, Record};
use super::command::{self, Applied, WriteRequest};
use super::error::{Result, StoreError};
use super::ledger::Rules;
use super::stats::WriterStats;

pub const DEFAULT_MAX_BATCH: usize = 512;
pub const DEFAULT_QUEUE_DEPTH: usize = 4_096;
pub const DEFAULT_LOCK_WAIT_MS: u64 = 30_000;
pub const DEFAULT_LINGER_GAP_US: u64 = 20;
pub const DEFAULT_LINGER_MAX_US: u64 = 2_000;

/// How the writer groups and waits.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Most requests in one transaction.
    pub max_batch: usize,
    /// Requests that may wait in the queue before callers block.
    pub queue_depth: usize,
    /// How long to wait for another process's write lock before failing a group.
    pub lock_wait: Duration,
    /// Under load, keep gathering a group while requests arrive less than this apart...
    pub linger_gap: Duration,
    /// ... but never longer than this (zero: never linger).
    pub linger_max: Duration,
    pub rules: Rules,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: DEFAULT_MAX_BATCH,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            lock_wait: Duration::from_millis(DEFAULT_LOCK_WAIT_MS),
            linger_gap: Duration::from_micros(DEFAULT_LINGER_GAP_US),
            linger_max: Duration::from_micros(DEFAULT_LINGER_MAX_US),
            rules: Rules::default(),
        }
    }
}

type Reply = Result<Applied>;

/// Where captured commits go: the continuous replica's shipper, as the writer sees it.
pub trait ReplicaSink: Send + Sync {
    /// Whether a write is acknowledged only once durable on the replica.
    fn strict(&self) -> bool;
    /// Strict mode, before COMMIT: makes `rec` (and every committed record before it) durable
    /// on the replica, or says why it could not within the configured time.
    fn ship_now(&self, rec: &Record) -> std::result::Result<(), String>;
    /// After COMMIT: records up to `seq` exist and can be shipped.
    fn committed(&self, seq: i64);
    /// A record shipped by [`ReplicaSink::ship_now`] whose COMMIT then failed: it must not
    /// stay on the replica.
    fn abandoned(&self, seq: i64);
    /// The replica holds every record up to this position: they may leave `replica_log`.
    fn shipped(&self) -> i64;
    /// Ships what is committed (within a bounded time) and stops; the store is closing.
    fn close(&self);
}

/// The replica sink a writer uses, attached once the replica is known (possibly after start).
pub type ReplicaSlot = Arc<RwLock<Option<Arc<dyn ReplicaSink>>>>;

/// A caller committing alone checkpoints once this many pages are in the WAL since the last
/// checkpoint (SQLite's own default cadence).
const LONE_CHECKPOINT_PAGES: u64 = 1_000;
/// ... once at least this many commits in a row were led by lone callers.
const LONE_STREAK: u32 = 64;
/// A caller leads its own commit only when the writer thread has committed no group for this
/// long (with company, group commit shares each fsync; alone, the hand-off costs more).
const LEAD_AFTER_QUIET: Duration = Duration::from_millis(5);

/// Prune `replica_log` once this many shipped records have piled up.
const PRUNE_EVERY: i64 = 64;

struct Job {
    req: WriteRequest,
    reply: SyncSender<Reply>,
}

/// A request handed to the writer; [`Ticket::wait`] blocks until its transaction committed.
pub struct Ticket {
    rx: Receiver<Reply>,
}

impl Ticket {
    pub fn wait(self) -> Reply {
        self.rx.recv().unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> StoreError {
    StoreError::Failed(
        "the writer stopped unexpectedly; the request was not applied (see the log)".into(),
    )
}

/// The write connection and what goes with it, used by whoever holds the lock: the writer
/// thread for a group, or a lone caller leading its own commit.
struct Seat {
    conn: Connection,
    /// The last `replica_log` position pruned.
    pruned: i64,
    /// Commits led by lone callers in a row (reset by every group of the writer thread).
    lone: u32,
}

/// What the writer thread and leading callers share.
struct Shared {
    seat: Mutex<Seat>,
    opts: WriterOptions,
    stats: Arc<WriterStats>,
    wal_pages: Arc<AtomicU64>,
    /// The replica's shipper, once attached.
    replica: ReplicaSlot,
    /// When the writer thread last committed a group of more than one request (µs since
    /// `epoch`; 0: never).
    last_group_us: AtomicU64,
    epoch: Instant,
}

impl Shared {
    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether callers have had company lately (the writer thread committed a shared group
    /// within [`LEAD_AFTER_QUIET`]): then a caller does not lead, it joins the next group.
    fn busy_lately(&self) -> bool {
        let last = self.last_group_us.load(Ordering::Relaxed);
        last != 0 && self.now_us().saturating_sub(last) < LEAD_AFTER_QUIET.as_micros() as u64
    }

    fn seat(&self) -> std::sync::MutexGuard<'_, Seat> {
        // A panic in a group leaves SQLite's transaction to roll back on the next BEGIN's
        // failure path; the seat itself holds no half-made state.
        self.seat.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits `group` on the seat held in `seat`.
    fn commit(&self, seat: &mut Seat, group: &[Job]) -> Vec<Reply> {
        let sink = self.replica.read().ok().and_then(|s| s.clone());
        let replies = commit_group(
            &seat.conn,
            group,
            &self.opts,
            &self.stats,
            sink.as_deref(),
            &mut seat.pruned,
        );
        self.wal_pages
            .fetch_add(pages_written(&seat.conn), Ordering::Relaxed);
        replies
    }
}

/// Handle to the writer thread. Dropping it lets the thread finish the queue and exit.
pub struct Writer {
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<WriterStats>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the writer thread on `conn` (already tuned, schema migrated).
    /// `wal_pages` is increased by the pages each commit writes (for the checkpointer).
    pub fn start(
        conn: Connection,
        opts: WriterOptions,
        wal_pages: Arc<AtomicU64>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::sync_channel::<Job>(opts.queue_depth.max(1));
        let stats = Arc::new(WriterStats::default());
        let shared = Arc::new(Shared {
            seat: Mutex::new(Seat {
                conn,
                pruned: 0,
                lone: 0,
            }),
            opts,
            stats: Arc::clone(&stats),
            wal_pages,
            replica: Arc::new(RwLock::new(None)),
            last_group_us: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("ora-writer".into())
            .spawn(move || run(&thread_shared, rx))
            .map_err(|e| StoreError::Failed(format!("start the writer thread: {e}")))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            stats,
            shared,
        })
    }

    /// Queues a request and returns at once; the ticket answers after COMMIT.
    pub fn enqueue(&self, req: WriteRequest) -> Result<Ticket> {
        req.validate()?;
        let tx = self.tx.as_ref().ok_or_else(stopped)?;
        let (reply, rx) = mpsc::sync_channel(1);
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        let job = Job { req, reply };
        let sent = match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => tx.send(job).map_err(|_| ()),
            Err(TrySendError::Disconnected(_)) => Err(()),
        };
        if sent.is_err() {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(stopped());
        }
        Ok(Ticket { rx })
    }

    /// Applies a request and waits for its commit: led here when nobody else is writing,
    /// else through the writer thread's group commit.
    pub fn submit(&self, req: WriteRequest) -> Reply {
        if self.tx.is_some()
            && self.stats.queued.load(Ordering::SeqCst) == 0
            && !self.shared.busy_lately()
        {
            if let Ok(mut seat) = self.shared.seat.try_lock() {
                req.validate()?;
                self.stats.queued.fetch_add(1, Ordering::SeqCst);
                let (reply, rx) = mpsc::sync_channel(1);
                let group = [Job { req, reply }];
                let replies = self.shared.commit(&mut seat, &group);
                // Alone, the caller also checkpoints (as SQLite's own autocheckpoint would) once
                // enough pages piled up: a background checkpoint's database fsync landing in
                // the middle of the next commit's WAL fsync cost a lone client 40% (measured).
                // Only in a steady run of lone commits: with company, a checkpoint here would
                // stall every caller queued behind it; the background checkpointer does it.
                seat.lone = seat.lone.saturating_add(1);
                let pending = self.shared.wal_pages.load(Ordering::Relaxed);
                if seat.lone >= LONE_STREAK && pending >= LONE_CHECKPOINT_PAGES {
                    self.shared.wal_pages.fetch_sub(pending, Ordering::Relaxed);
                    if let Err(e) =
                        seat.conn
                            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        log::warn!("checkpoint failed: {e}");
                    }
                }
                drop(seat);
                deliver(group.into(), replies, &self.stats);
                return rx.recv().unwrap_or_else(|_| Err(stopped()));
            }
        }
        self.enqueue(req)?.wait()
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Sends every later group's record to `sink`.
    pub fn attach_replica(&self, sink: Arc<dyn ReplicaSink>) {
        let mut slot = self
            .shared
            .replica
            .write()
            .unwrap_or_else(|p| p.into_inner());
        *slot = Some(sink);
    }

    /// Stops accepting requests, lets the thread commit what is queued, and joins it.
    pub fn shutdown(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                log::error!("the writer thread panicked");
            }
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn run(shared: &Shared, rx: Receiver<Job>) {
    let (opts, stats) = (&shared.opts, &shared.stats);
    // Waking each caller is a syscall; a helper thread does it so the writer can start the
    // next group at once (measured: more movements per second at 32 clients).
    let (answer_tx, answer_rx) = mpsc::channel::<(Vec<Job>, Vec<Reply>)>();
    let answer_stats = Arc::clone(stats);
    let answerer = std::thread::Builder::new()
        .name("ora-answer".into())
        .spawn(move || answer(answer_rx, &answer_stats));
    let max_batch = opts.max_batch.max(1);
    let mut last_group = 0usize;
    while let Ok(first) = rx.recv() {
        let mut group = Vec::with_capacity(max_batch.min(64));
        group.push(first);
        gather(&rx, &mut group, max_batch, opts, last_group > 1);
        last_group = group.len();
        let replies = {
            let mut seat = shared.seat();
            seat.lone = 0;
            // Requests queued while a caller led its own commit join this group.
            gather(&rx, &mut group, max_batch, opts, false);
            let replies = shared.commit(&mut seat, &group);
            if group.len() > 1 {
                shared
                    .last_group_us
                    .store(shared.now_us().max(1), Ordering::Relaxed);
            }
            replies
        };
        // A lone caller is answered here: a hand-off to the answering thread would only add
        // a wake-up to its latency.
        let undelivered = match &answerer {
            Ok(_) if group.len() > 1 => answer_tx.send((group, replies)).err().map(|e| e.0),
            _ => Some((group, replies)),
        };
        if let Some((group, replies)) = undelivered {
            deliver(group, replies, stats);
        }
    }
    drop(answer_tx);
    if let Ok(t) = answerer {
        let _ = t.join();
    }
}

/// Fills a group: everything already queued, then, when callers are busy (the last group had
/// company), keeps taking requests while they keep arriving less than `linger_gap` apart, for
/// at most `linger_max`. Callers answered a moment ago come back in microseconds, and one
/// commit for all of them beats one commit per half of them (measured).
fn gather(
    rx: &Receiver<Job>,
    group: &mut Vec<Job>,
    max_batch: usize,
    opts: &WriterOptions,
    busy: bool,
) {
    while group.len() < max_batch {
        match rx.try_recv() {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
    if !busy || opts.linger_max.is_zero() {
        return;
    }
    let deadline = Instant::now() + opts.linger_max;
    while group.len() < max_batch {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        match rx.recv_timeout(opts.linger_gap.min(deadline - now)) {
            Ok(job) => group.push(job),
            Err(_) => break,
        }
    }
}

/// The answering thread: delivers each committed group's replies.
fn answer(rx: Receiver<(Vec<Job>, Vec<Reply>)>, stats: &WriterStats) {
    while let Ok((group, replies)) = rx.recv() {
        deliver(group, replies, stats);
    }
}

fn deliver(group: Vec<Job>, replies: Vec<Reply>, stats: &WriterStats) {
    stats
        .queued
        .fetch_sub(group.len() as i64, Ordering::Relaxed);
    for (job, reply) in group.into_iter().zip(replies) {
        match &reply {
            Ok(_) => stats.applied.fetch_add(1, Ordering::Relaxed),
            Err(_) => stats.refused.fetch_add(1, Ordering::Relaxed),
        };
        // A caller that went away no longer needs its answer; its change stands.
        let _ = job.reply.send(reply);
    }
}

/// Every caller whose request succeeded gets `err` instead (nothing of the group stands);
/// refused requests keep their own answer.
fn fail_applied(replies: Vec<Reply>, err: &StoreError) -> Vec<Reply> {
    replies
        .into_iter()
        .map(|r| match r {
            Ok(_) => Err(err.clone()),
            refused => refused,
        })
        .collect()
}

/// Runs a group in one transaction and returns one reply per job, all decided after COMMIT.
fn commit_group(
    conn: &Connection,
    group: &[Job],
    opts: &WriterOptions,
    stats: &WriterStats,
    sink: Option<&dyn ReplicaSink>,
    pruned: &mut i64,
) -> Vec<Reply> {
    let started = Instant::now();
    if let Err(e) = begin_immediate(conn, opts.lock_wait) {
        return group.iter().map(|_| Err(e.clone())).collect();
    }
    let capture = match Capture::begin(conn) {
        Ok(c) => c,
        Err(e) => {
            rollback(conn);
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            return group.iter().map(|_| Err(e.clone())).collect();
        }
    };
    let mut replies = Vec::with_capacity(group.len());
    for job in group {
        match run_one(conn, &job.req, opts.rules) {
            Ok(reply) => replies.push(reply),
            Err(fatal) => {
                // The savepoint machinery itself failed: the transaction cannot be trusted.
                drop(capture);
                rollback(conn);
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                return group.iter().map(|_| Err(fatal.clone())).collect();
            }
        }
    }
    let shipped = sink.map_or(0, |s| s.shipped());
    let prune = if shipped >= pruned.saturating_add(PRUNE_EVERY) {
        shipped
    } else {
        0
    };
    let record = match capture.finish(conn, prune) {
        Ok(r) => r,
        Err(e) => {
            rollback(conn);
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            return fail_applied(replies, &e);
        }
    };
    if prune > 0 {
        *pruned = prune;
    }
    let strict = match (&record, sink) {
        (Some(rec), Some(s)) if s.strict() => {
            if let Err(why) = s.ship_now(rec) {
                rollback(conn);
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                let err = StoreError::ReplicaDown(format!(
                    "the replica could not take this change ({why}); nothing was applied. Check the replica disk (`ora replica status`) and retry"
                ));
                return fail_applied(replies, &err);
            }
            true
        }
        _ => false,
    };
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            if let (Some(rec), Some(s)) = (&record, sink) {
                s.committed(rec.seq);
            }
            replies
        }
        Err(e) => {
            rollback(conn);
            if let (true, Some(rec), Some(s)) = (strict, &record, sink) {
                s.abandoned(rec.seq);
            }
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            let err = StoreError::sqlite("commit", e);
            log::debug!("{err}");
            fail_applied(replies, &err)
        }
    }
}

/// Pages this connection wrote since the last call (SQLITE_DBSTATUS_CACHE_WRITE, reset).
fn pages_written(conn: &Connection) -> u64 {
    let (mut current, mut high) = (0, 0);
    // SAFETY: the handle is valid while `conn` lives; sqlite3_db_status only reads and resets
    // a counter of that connection, which only this thread uses.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_status(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_WRITE,
            &mut current,
            &mut high,
            1,
        )
    };
    if rc == rusqlite::ffi::SQLITE_OK {
        u64::try_from(current).unwrap_or(0)
    } else {
        0
    }
}

/// Runs one request under its own savepoint. The outer `Err` means the savepoint could not be
/// released or rolled back; the inner result is the request's own answer.
fn run_one(conn: &Connection, req: &WriteRequest, rules: Rules) -> Result<Reply> {
    // Cached statements: these run for every request, parsing them each time showed in profiles.
    let sp = |sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut st| st.execute([]))
            .map_err(|e| StoreError::sqlite("writer savepoint", e))
    };
    sp("SAVEPOINT request")?;
    let reply = command::execute(conn, req, rules);
    if reply.is_err() {
        sp("ROLLBACK TO request")?;
    }
    sp("RELEASE request")?;
    Ok(reply)
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            log::error!("writer: rollback failed: {e}");
        }
    }
}

/// `BEGIN IMMEDIATE`, retried while another process holds the write lock, up to `lock_wait`.
pub fn begin_immediate(conn: &Connection, lock_wait: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                if started.elapsed() >= lock_wait {
                    return Err(StoreError::Busy(format!(
                        "another process has held the database's write lock for over {} s; nothing was applied. Retry, and look for a long-running `ora` command (backup, import, maintain)",
                        lock_wait.as_secs()
                    )));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(StoreError::sqlite("begin a write transaction", e)),
        }
    }
}
