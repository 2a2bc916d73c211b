//! The only code that writes domain data, through the one write connection (the "seat").
//! Callers queue their requests; whoever finds the seat free leads: it takes everything queued
//! (up to a bound), runs it in one `BEGIN IMMEDIATE` transaction with each request under its
//! own SAVEPOINT (so one failure rolls back only itself; a request alone in a group that cannot
//! grow needs none: its refusal rolls the transaction back), and, when the last group had company,
//! keeps the transaction open for as many requests as were busy at the last commit (its group
//! and those that missed it), running each arrival as it comes (never longer than `linger_max`,
//! nor past a `linger_gap` without one); it commits once, and only then answers every caller of
//! the group (group commit), in its own thread. Requests that arrive during a commit form the
//! next group: once its own answer came, the leader hands the lead to a waiting caller and
//! returns (so that its own next request can join the next group); a leader looks at the queue
//! again after it leaves the seat, so no request is ever left without one. No thread hand-off
//! when a caller is alone, otherwise one wake-up per answer and one per group for the lead (a
//! dedicated writer thread cost two hand-offs per request, slower than a plain connection at
//! two clients); while only one or two requests are in the writer, a waiting caller watches
//! for its answer for a moment instead of sleeping, so that wake-up costs nothing either. A
//! caller is never answered before its COMMIT returned, and never sees SQLITE_BUSY: the leader
//! waits out other processes' locks up to `lock_wait` and then reports plainly.
//!
//! Each group is captured for the replica ([`super::capture`]): its record is stored in the
//! same transaction, and with a strict replica it is made durable there before COMMIT (a group
//! the replica cannot take in time is rolled back and refused, nothing applied).
//! One piece: the batching, the commit and the answers are one protocol; split, its ordering
//! guarantee (no answer before COMMIT) would span files.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::capture::{Capture, Record};
use super::command::{self, Applied, WriteRequest};
use super::error::{Result, StoreError};
use super::ledger::Rules;
use super::recorder::Savepoint;
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
    /// The actor of requests that name none (the audit trail).
    pub actor: String,
    /// Waiting callers watch for their answer, and a leader keeps its group open for
    /// arrivals, awake for a moment instead of sleeping (`[tuning] wait_awake`; false: plain
    /// group commit, every wait a sleep).
    pub wait_awake: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            max_batch: DEFAULT_MAX_BATCH,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            lock_wait: Duration::from_millis(DEFAULT_LOCK_WAIT_MS),
            linger_gap: Duration::from_micros(DEFAULT_LINGER_GAP_US),
            linger_max: Duration::from_micros(DEFAULT_LINGER_MAX_US),
            actor: super::audit::SYSTEM.to_string(),
            rules: Rules::default(),
            wait_awake: true,
        }
    }
}

type Reply = Result<Applied>;

/// Where captured commits go: the continuous replica's shipper, as the writer sees it.
pub trait ReplicaSink: Send + Sync {
    /// Whether a write is acknowledged only once durable on the replica.
    fn strict(&self) -> bool;
    /// Strict mode, before COMMIT: makes `rec` (and every committed record before it) durable
    /// on the replica, or says why it could not within the configured time (the replica's own
    /// error: a full disk stays recognisable as one).
    fn ship_now(&self, rec: &Record) -> std::result::Result<(), super::error::Cause>;
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
type ReplicaSlot = Arc<RwLock<Option<Arc<dyn ReplicaSink>>>>;

/// A leader checkpoints once this many pages are in the WAL since the last checkpoint
/// (four times SQLite's own default cadence: a checkpoint writes each page once however many
/// commits changed it, so a longer run between checkpoints writes fewer pages a commit)...
const LONE_CHECKPOINT_PAGES: u64 = 4_000;
/// ... once at least this many groups in a row had one request (nobody else waits).
const LONE_STREAK: u32 = 64;

/// Statements the write connection keeps prepared.
const WRITER_STATEMENTS: usize = 64;
/// Prune `replica_log` once this many shipped records have piled up.
const PRUNE_EVERY: i64 = 64;
/// How long a waiting caller watches its channel before it sleeps (see `next_message`): a
/// group of one or two commits within it in NORMAL, and mostly with FULL on this disk.
const WATCH: Duration = Duration::from_micros(400);
/// A caller watches only while at most this many requests are queued or being committed:
/// with more company, the CPU it would spin on is wanted by the leader and the others.
const WATCH_QUEUED: i64 = 2;

/// What a waiting caller is told.
enum Msg {
    /// Its request committed (or was refused).
    Done(Reply),
    /// Nobody is committing and requests wait: it is to lead the next group.
    Lead,
}

struct Job {
    req: WriteRequest,
    reply: mpsc::Sender<Msg>,
    /// Its caller is waiting for the answer now (so it can be handed the lead).
    waits: Arc<AtomicBool>,
}

/// A request handed to the writer; [`Ticket::wait`] blocks until its transaction committed
/// (committing it, and everything queued with it, itself when nobody else is).
pub struct Ticket {
    rx: Receiver<Msg>,
    waits: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

impl Ticket {
    pub fn wait(self) -> Reply {
        // From now on this caller may be handed the lead.
        self.waits.store(true, Ordering::SeqCst);
        self.shared.wait(&self.rx)
    }
}

fn stopped() -> StoreError {
    StoreError::failed("the writer stopped unexpectedly; the request was not applied (see the log)")
}

/// The write connection and what goes with it, used by whoever leads.
struct Seat {
    conn: Connection,
    /// The last `replica_log` position pruned.
    pruned: i64,
    /// Groups of one request in a row.
    lone: u32,
    /// Callers busy at the last commit: its group's requests and those already waiting for
    /// the next.
    last_group: usize,
}

#[derive(Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    closed: bool,
}

/// The writer: a queue of requests and the seat whoever leads commits them from.
struct Shared {
    seat: Mutex<Seat>,
    queue: Mutex<Queue>,
    /// Where one waiting caller at a time watches its channel instead of sleeping.
    watching: crate::awake::Awake,
    /// Where the leader watches the queue while it gathers a group (only the seat's holder
    /// gathers, so it is never taken).
    gathering: crate::awake::Awake,
    opts: WriterOptions,
    stats: Arc<WriterStats>,
    wal_pages: Arc<AtomicU64>,
    /// The replica's shipper, once attached.
    replica: ReplicaSlot,
    /// Whether this database takes clients' writes (a standby takes only its primary's).
    gate: Arc<super::role::Gate>,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, req: WriteRequest, waits: &Arc<AtomicBool>) -> Result<Receiver<Msg>> {
        let (reply, rx) = mpsc::channel();
        let mut q = self.queue();
        if q.closed {
            return Err(stopped());
        }
        q.jobs.push_back(Job {
            req,
            reply,
            waits: Arc::clone(waits),
        });
        drop(q);
        // A leader with an open group looks at the queue itself (see `gather`): an arrival
        // wakes nobody.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(rx)
    }

    /// Waits for the answer on `rx`, leading groups whenever it is handed the lead.
    fn wait(&self, rx: &Receiver<Msg>) -> Reply {
        let mut mine = None;
        loop {
            self.lead(rx, &mut mine);
            if let Some(r) = mine.take() {
                return r;
            }
            match self.next_message(rx) {
                Ok(Msg::Done(r)) => return r,
                Ok(Msg::Lead) => continue,
                Err(_) => return Err(stopped()),
            }
        }
    }

    /// The next message for a waiting caller. While few requests are queued (a group of one
    /// or two, whose commit comes within a fraction of a millisecond) and no other caller
    /// watches, it watches its channel for up to `WATCH` before it sleeps: waking a sleeping
    /// caller costs the leader a cross-CPU wake-up and the caller tens of microseconds on a
    /// virtual machine.
    fn next_message(&self, rx: &Receiver<Msg>) -> std::result::Result<Msg, mpsc::RecvError> {
        if self.opts.wait_awake && self.stats.queued.load(Ordering::Relaxed) <= WATCH_QUEUED {
            let got = self.watching.wait_for(WATCH, || match rx.try_recv() {
                Ok(m) => Some(Ok(m)),
                Err(mpsc::TryRecvError::Disconnected) => Some(Err(mpsc::RecvError)),
                Err(mpsc::TryRecvError::Empty) => None,
            });
            if let Some(m) = got {
                return m;
            }
        }
        rx.recv()
    }

    /// Commits what is queued, group after group, while it can take the seat, until the
    /// queue is empty, or, once this caller's own answer came (into `mine`), hands the lead to
    /// a waiting caller. A caller that cannot take the seat returns at once: the leader
    /// looks at the queue again after it leaves the seat, so no request is left behind.
    fn lead(&self, rx: &Receiver<Msg>, mine: &mut Option<Reply>) {
        loop {
            let mut seat = match self.seat.try_lock() {
                Ok(s) => s,
                // A panic in an earlier group leaves SQLite's transaction to roll back at the
                // next BEGIN's failure path; the seat itself holds no half-made state.
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => return,
            };
            loop {
                let mut group = self.take_group();
                if group.is_empty() {
                    break;
                }
                // When callers are busy (the last group had company), the group stays open
                // for as many requests as were busy at the last commit: its group and those
                // that missed it (never with `linger_max` zero). Counting only the group, a
                // caller that missed one group (its leader, answered last) would miss every
                // next one too, each group closing as soon as it is as large as the last.
                let want = if self.opts.wait_awake
                    && seat.last_group > 1
                    && !group.iter().any(|j| j.req.op.alone())
                    && !self.opts.linger_max.is_zero()
                {
                    seat.last_group.min(self.opts.max_batch.max(1))
                } else {
                    0
                };
                let replies = self.commit(&mut seat, &mut group, want);
                seat.last_group = group.len() + self.queue().jobs.len();
                let lone = group.len() == 1;
                deliver(group, replies, &self.stats);
                self.checkpoint_if_alone(&mut seat, lone);
                while let Ok(m) = rx.try_recv() {
                    if let Msg::Done(r) = m {
                        *mine = Some(r);
                    }
                }
                // Once its own answer came the leader leads no further group: it could not
                // be in that group, and with every client waiting on the writer (closed loop)
                // each such group was one request short of all of them.
                if mine.is_some() {
                    break;
                }
            }
            drop(seat);
            let q = self.queue();
            if q.jobs.is_empty() {
                return;
            }
            if mine.is_some() {
                if let Some(j) = q.jobs.iter().find(|j| j.waits.load(Ordering::SeqCst)) {
                    if j.reply.send(Msg::Lead).is_ok() {
                        return;
                    }
                }
            }
            // Only requests whose callers do not wait yet (tickets), or the one handed the
            // lead went away: lead on.
        }
    }

    /// The start of the next group: up to `max_batch` queued requests, stopping before one
    /// that must run alone (which, first in the queue, is a group by itself).
    fn take_group(&self) -> Vec<Job> {
        let mut q = self.queue();
        let n = q.jobs.len().min(self.opts.max_batch.max(1));
        let n = match q.jobs.iter().take(n).position(|j| j.req.op.alone()) {
            Some(0) => 1,
            Some(i) => i,
            None => n,
        };
        q.jobs.drain(..n).collect()
    }

    /// More requests for an open group that still has room for `room`: what is queued now,
    /// or, when nothing is, what arrives within one `linger_gap` (and before `deadline`).
    /// Empty: a whole gap passed with no arrival, close the group. The leader watches the
    /// queue for that gap (yielding the CPU at every turn) instead of sleeping on a condition
    /// variable: a short sleep costs a timer and a wake-up longer than the gap itself, with
    /// the write lock held (the comparison is in benches/RESULTS.md).
    fn gather(&self, room: usize, deadline: Instant) -> Vec<Job> {
        let budget = self
            .opts
            .linger_gap
            .min(deadline.saturating_duration_since(Instant::now()));
        self.gathering
            .wait_for(budget, || {
                let mut q = self.queue();
                (!q.jobs.is_empty() || q.closed).then(|| {
                    let n = q.jobs.len().min(room);
                    let n = q
                        .jobs
                        .iter()
                        .take(n)
                        .position(|j| j.req.op.alone())
                        .unwrap_or(n);
                    q.jobs.drain(..n).collect()
                })
            })
            .unwrap_or_default()
    }

    /// Alone, the leader also checkpoints (as SQLite's own autocheckpoint would) once enough
    /// pages piled up: a background checkpoint's database fsync landing in the middle of the
    /// next commit's WAL fsync slowed a lone client markedly. Only in a steady run of
    /// lone commits: with company, a checkpoint here would stall every caller queued behind
    /// it; the background checkpointer does it.
    fn checkpoint_if_alone(&self, seat: &mut Seat, lone: bool) {
        if !lone {
            seat.lone = 0;
            return;
        }
        seat.lone = seat.lone.saturating_add(1);
        let pending = self.wal_pages.load(Ordering::Relaxed);
        if seat.lone >= LONE_STREAK && pending >= LONE_CHECKPOINT_PAGES {
            self.wal_pages.fetch_sub(pending, Ordering::Relaxed);
            if let Err(e) = seat
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            {
                log::warn!("checkpoint failed: {e}");
            }
        }
    }

    /// Commits `group` on the seat held in `seat`, first growing it to `want` requests with
    /// those that arrive meanwhile (see [`commit_group`]).
    fn commit(&self, seat: &mut Seat, group: &mut Vec<Job>, want: usize) -> Vec<Reply> {
        let sink = self.replica.read().ok().and_then(|s| s.clone());
        let deadline = Instant::now() + self.opts.linger_max;
        let mut more = |room: usize| self.gather(room, deadline);
        let replies = commit_group(
            &seat.conn,
            group,
            want,
            &mut more,
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

/// Handle to the writer. Dropping it commits what is queued and refuses later requests.
pub struct Writer {
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the writer on `conn` (already tuned, schema migrated).
    /// `wal_pages` is increased by the pages each commit writes (for the checkpointer).
    pub fn start(
        conn: Connection,
        opts: WriterOptions,
        wal_pages: Arc<AtomicU64>,
        gate: Arc<super::role::Gate>,
    ) -> Result<Writer> {
        super::audit::install(&conn)?;
        // Every statement a group runs stays prepared (BEGIN, COMMIT, the savepoints and each
        // request's own), with room to spare: a cache smaller than that set would re-prepare
        // all of them in turn.
        conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
        let shared = Arc::new(Shared {
            seat: Mutex::new(Seat {
                conn,
                pruned: 0,
                lone: 0,
                last_group: 0,
            }),
            queue: Mutex::new(Queue::default()),
            watching: crate::awake::Awake::new(),
            gathering: crate::awake::Awake::new(),
            opts,
            stats: Arc::new(WriterStats::default()),
            wal_pages,
            replica: Arc::new(RwLock::new(None)),
            gate,
        });
        Ok(Writer { shared })
    }

    /// Queues a request and returns at once (unless the queue is full: then this caller
    /// commits what waits first); the ticket answers after COMMIT.
    pub fn enqueue(&self, req: WriteRequest) -> Result<Ticket> {
        req.validate()?;
        let full = self.shared.queue().jobs.len() >= self.shared.opts.queue_depth.max(1);
        if full {
            let (_tx, idle) = mpsc::channel();
            let mut none = None;
            self.shared.lead(&idle, &mut none);
        }
        let waits = Arc::new(AtomicBool::new(false));
        let rx = self.shared.push(req, &waits)?;
        Ok(Ticket {
            rx,
            waits,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Applies a request and waits for its commit: the caller that finds nobody committing
    /// commits it (with whatever else is queued by then) in its own thread; the others wait
    /// for that group, or lead the next.
    pub fn submit(&self, req: WriteRequest) -> Reply {
        req.validate()?;
        if !req.op.from_primary() {
            if let Some(refusal) = self.shared.gate.refusal() {
                return Err(refusal);
            }
        }
        let rx = self.shared.push(req, &Arc::new(AtomicBool::new(true)))?;
        self.shared.wait(&rx)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.shared.stats
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

    /// Stops accepting requests and commits what is queued.
    pub fn shutdown(&mut self) {
        self.shared.queue().closed = true;
        let mut seat = self.shared.seat.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let mut group = self.shared.take_group();
            if group.is_empty() {
                break;
            }
            let replies = self.shared.commit(&mut seat, &mut group, 0);
            deliver(group, replies, &self.shared.stats);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
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
        let _ = job.reply.send(Msg::Done(reply));
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
/// While the group has fewer than `want` requests, `more(room)` is asked for the requests that
/// arrived meanwhile; they join the group (and `group`) and run in the same transaction. So
/// the leader runs the first arrivals while the later callers are still being woken, instead
/// of waiting for all of them before BEGIN (the wake-ups and the requests' work then
/// overlap). An empty answer closes the group.
///
/// Kept whole: the group commit is one transaction: BEGIN, each request under its savepoint, the
/// capture record, the prune, the strict replica hand-off, COMMIT, then the replies. Every step
/// decides what the replies say, and they must be read together to see that no reply is sent before
/// COMMIT.
#[allow(clippy::too_many_arguments)]
fn commit_group(
    conn: &Connection,
    group: &mut Vec<Job>,
    want: usize,
    more: &mut dyn FnMut(usize) -> Vec<Job>,
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
    let mut replies = Vec::with_capacity(group.len().max(want));
    // A request alone in a group that cannot grow needs no savepoint of its own: when it is
    // refused, the whole transaction is rolled back and nothing is committed.
    let alone = want <= 1 && group.len() == 1;
    loop {
        for job in &group[replies.len()..] {
            match run_one(conn, &job.req, opts, !alone) {
                Ok(Err(refused)) if alone => {
                    drop(capture);
                    rollback(conn);
                    return vec![Err(refused)];
                }
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
        if group.len() >= want {
            break;
        }
        let arrived = more(want - group.len());
        if arrived.is_empty() {
            break;
        }
        group.extend(arrived);
    }
    let shipped = sink.map_or(0, |s| s.shipped());
    let prune = if shipped >= pruned.saturating_add(PRUNE_EVERY) {
        shipped
    } else {
        0
    };
    let capturing = capture.active().then(Instant::now);
    let record = match capture.finish(conn, prune) {
        Ok(r) => r,
        Err(e) => {
            rollback(conn);
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            return fail_applied(replies, &e);
        }
    };
    if let Some(t) = capturing {
        stats.capture_seconds.observe(t.elapsed().as_secs_f64());
    }
    if prune > 0 {
        *pruned = prune;
    }
    let strict = match (&record, sink) {
        (Some(rec), Some(s)) if s.strict() => {
            if let Err(why) = s.ship_now(rec) {
                rollback(conn);
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                let err = StoreError::replica_down(format!(
                    "the replica could not take this change ({why}); nothing was applied"
                ))
                .with_hint("check the replica disk (`ora replica status`) and retry")
                .with_cause(why);
                return fail_applied(replies, &err);
            }
            true
        }
        _ => false,
    };
    let syncing = Instant::now();
    match exec_cached(conn, "COMMIT") {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.sync_seconds.observe(syncing.elapsed().as_secs_f64());
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

/// Runs one request, under its own savepoint when `savepoint` (without one, a refused request
/// leaves its partial writes for the caller to roll back with the transaction). The outer
/// `Err` means the savepoint could not be released or rolled back; the inner result is the
/// request's own answer. Public for the benchmark's batch ceiling, which does the same work
/// per movement; inside ora only the writer calls it, in its open transaction.
pub fn run_one(
    conn: &Connection,
    req: &WriteRequest,
    opts: &WriterOptions,
    savepoint: bool,
) -> Result<Reply> {
    let sp = |e| StoreError::sqlite("writer savepoint", e);
    let point = if savepoint {
        Some(Savepoint::take(conn, "request").map_err(sp)?)
    } else {
        None
    };
    let actor = req.actor.as_deref().unwrap_or(&opts.actor);
    let scope = super::audit::Scope::enter(actor, req.request_id.as_deref(), req.op.name());
    let reply = command::execute(conn, req, opts.rules);
    drop(scope);
    match point {
        Some(p) if reply.is_err() => p.roll_back(conn).map_err(sp)?,
        Some(p) => p.release(conn).map_err(sp)?,
        None => {}
    }
    Ok(reply)
}

/// Runs `sql` (one statement without parameters) from the connection's statement cache:
/// `BEGIN IMMEDIATE` and `COMMIT` run once per group, and parsing them each time was a few
/// thousand instructions of a lone caller's commit.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("ROLLBACK") {
            log::error!("writer: rollback failed: {e}");
        }
    }
}

/// `BEGIN IMMEDIATE`, retried while another process holds the write lock, up to `lock_wait`.
/// (Outside the store, a transaction begins through `capture`'s short writes.)
pub(super) fn begin_immediate(conn: &Connection, lock_wait: Duration) -> Result<()> {
    let started = Instant::now();
    loop {
        match exec_cached(conn, "BEGIN IMMEDIATE") {
            Ok(()) => return Ok(()),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                if started.elapsed() >= lock_wait {
                    return Err(StoreError::busy(format!(
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
