//! Ledger write and read throughput: the naive way (each client its own connection, one
//! BEGIN IMMEDIATE transaction per movement, busy_timeout) against ora's group-commit writer,
//! at 1, 8 and 32 clients; batches of 1,000 per transaction as the machine's ceiling; point
//! reads idle and under full write load. Everything with synchronous=FULL and NORMAL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ora::model::TxType;
use ora::store::connection::{self, Tuning};
use ora::store::{
    execute, products, Movement, OpenMode, Rules, Store, StoreOptions, Synchronous, WriteOp,
    WriteRequest,
};

use crate::common::{
    median_range, per_sec, ratio, scratch_copy, settle, Latencies, Options, Table,
};

/// The movement a client sends next: mostly receipts, some shipments, random skus.
pub fn next_movement(rng: &mut ora::sample::Rng, skus: usize) -> WriteRequest {
    let s = ora::sample::sku(rng.below(skus as u64) as usize);
    let m = if rng.below(4) == 0 {
        Movement::new(&s, TxType::Ship, 1)
    } else {
        Movement::new(&s, TxType::Receive, 1 + rng.below(5) as i64)
    };
    WriteRequest::new(WriteOp::Movement(m))
}

/// Outcome of one throughput run.
pub struct Run {
    pub done: u64,
    pub seconds: f64,
    /// Errors a caller saw that were not a domain refusal (busy, I/O).
    pub errors: u64,
    pub latencies: Latencies,
    /// The mean COMMIT time of a batched run, in seconds (0 for the others).
    pub sync_seconds: f64,
}

impl Run {
    /// Joins client threads that report (done, errors, latencies) into one run that started
    /// at `start`.
    fn gather(handles: Vec<std::thread::JoinHandle<(u64, u64, Latencies)>>, start: Instant) -> Run {
        let mut run = Run {
            done: 0,
            seconds: 0.0,
            errors: 0,
            latencies: Latencies::default(),
            sync_seconds: 0.0,
        };
        for h in handles {
            let (d, e, l) = h.join().expect("benchmark client");
            run.done += d;
            run.errors += e;
            run.latencies.merge(l);
        }
        run.seconds = start.elapsed().as_secs_f64();
        run
    }
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.seconds
    }
}

/// ora's tuning with the given synchronous setting (the writer and the batch ceiling).
/// The run with the median rate.
/// `BEGIN IMMEDIATE` from the statement cache, as a plain client would run it (SQLite's busy
/// timeout does the waiting).
fn begin(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("BEGIN IMMEDIATE")?
        .execute([])
        .map(|_| ())
}

pub fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

pub fn tuning(sync: Synchronous) -> Tuning {
    Tuning {
        synchronous: sync,
        ..Tuning::default()
    }
}

/// What a naive program gets: the operations guide's PRAGMAs and SQLite's default
/// checkpoint cadence (1,000 pages).
fn naive_tuning(sync: Synchronous) -> Tuning {
    Tuning {
        wal_autocheckpoint: 1_000,
        ..tuning(sync)
    }
}

pub fn checkpoint(db: &std::path::Path) {
    let c = rusqlite::Connection::open(db).expect("open for checkpoint");
    let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
}

/// Each client its own connection; one BEGIN IMMEDIATE ... COMMIT per movement.
fn naive(o: &Options, db: &std::path::Path, sync: Synchronous, clients: usize) -> Run {
    let deadline = Instant::now() + o.duration();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (db, skus) = (db.to_path_buf(), o.skus);
            std::thread::spawn(move || {
                let conn =
                    connection::open_writer(&db, &naive_tuning(sync)).expect("open naive client");
                // The same work as the writer: its audit trail too.
                ora::store::audit::install(&conn).expect("audit trail on the naive client");
                let mut rng = ora::sample::Rng::new(1000 + c as u64);
                let (mut done, mut errors, mut lat) = (0u64, 0u64, Latencies::default());
                while Instant::now() < deadline {
                    let req = next_movement(&mut rng, skus);
                    let t = Instant::now();
                    // The naive client waits only as long as busy_timeout (8 s), then fails.
                    if begin(&conn).is_err() {
                        errors += 1;
                        continue;
                    }
                    let r = execute(&conn, &req, Rules::default());
                    let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    match conn.execute_batch(end) {
                        Ok(()) => {
                            done += 1;
                            lat.0.push(t.elapsed());
                        }
                        Err(_) => {
                            errors += 1;
                            let _ = conn.execute_batch("ROLLBACK");
                        }
                    }
                }
                (done, errors, lat)
            })
        })
        .collect();
    let run = Run::gather(handles, start);
    checkpoint(db);
    run
}

pub fn open_store(db: &std::path::Path, sync: Synchronous) -> Arc<Store> {
    open_store_with(db, sync, ora::store::slowlog::DEFAULT_SLOW_MS)
}

/// [`open_store`] with the slow-statement log's threshold (0: off).
pub fn open_store_with(db: &std::path::Path, sync: Synchronous, slow_ms: u64) -> Arc<Store> {
    let mut opts = StoreOptions::new(db);
    opts.tuning = tuning(sync);
    opts.tuning.slow_ms = slow_ms;
    Arc::new(Store::open(&opts, OpenMode::Existing).expect("open store"))
}

/// `clients` threads writing through one store's writer until the deadline.
pub fn grouped(o: &Options, store: &Arc<Store>, clients: usize, seed: u64) -> Run {
    let deadline = Instant::now() + o.duration();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (store, skus) = (Arc::clone(store), o.skus);
            std::thread::spawn(move || {
                let mut rng = ora::sample::Rng::new(seed + c as u64);
                let (mut done, mut errors, mut lat) = (0u64, 0u64, Latencies::default());
                while Instant::now() < deadline {
                    let req = next_movement(&mut rng, skus);
                    let t = Instant::now();
                    match store.write(req) {
                        Ok(_) => {
                            done += 1;
                            lat.0.push(t.elapsed());
                        }
                        Err(e) if e.kind() == ora::store::StoreKind::Conflict => {
                            done += 1;
                            lat.0.push(t.elapsed());
                        }
                        Err(_) => errors += 1,
                    }
                }
                (done, errors, lat)
            })
        })
        .collect();
    let run = Run::gather(handles, start);
    let st = store.writer().expect("writer").stats();
    let commits = st.commits.load(Ordering::Relaxed).max(1);
    let answered = st.applied.load(Ordering::Relaxed) + st.refused.load(Ordering::Relaxed);
    let (_, _, tx_secs) = st.commit_seconds.snapshot();
    let (_, _, sync_secs) = st.sync_seconds.snapshot();
    let (_, _, capture_secs) = st.capture_seconds.snapshot();
    let per = |s: f64| s * 1e6 / commits as f64;
    eprintln!(
        "    writer (since the store opened): {} commits, {:.1} requests per commit; per commit {:.0} us \
         inside the transaction, of which {:.0} us in COMMIT and {:.0} us recording the replica's record",
        commits,
        answered as f64 / commits as f64,
        per(tx_secs),
        per(sync_secs),
        per(capture_secs),
    );
    run
}

/// One connection, 1,000 movements per transaction: the ceiling of the disk and the engine.
/// With `same_work`, each movement also does what the writer does around it (its audit
/// scope, its own SAVEPOINT, the audit triggers installed), so the gap to the writer is the
/// grouping alone.
fn batched(
    o: &Options,
    db: &std::path::Path,
    sync: Synchronous,
    same_work: bool,
    size: usize,
) -> Run {
    let conn = connection::open_writer(db, &tuning(sync)).expect("open batch client");
    if same_work {
        ora::store::audit::install(&conn).expect("audit trail on the batch client");
    }
    let writer_opts = ora::store::WriterOptions::default();
    let mut rng = ora::sample::Rng::new(7);
    let deadline = Instant::now() + o.duration();
    let (mut busy, mut syncing) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    let (mut done, mut commits) = (0, 0u32);
    while Instant::now() < deadline {
        // The requests are made before the transaction and its clock: the ceiling is the
        // engine's and the disk's, as the writer's clients make theirs on other threads.
        let reqs: Vec<WriteRequest> = (0..size).map(|_| next_movement(&mut rng, o.skus)).collect();
        let t = Instant::now();
        begin(&conn).expect("begin");
        for req in &reqs {
            if same_work {
                // A refused movement (not enough stock) is rolled back to its savepoint.
                let _ = ora::store::run_one(&conn, req, &writer_opts, true).expect("savepoint");
            } else {
                // No savepoints: a refused movement (not enough stock) fails before it writes.
                let _ = execute(&conn, req, Rules::default());
            }
        }
        let c = Instant::now();
        conn.execute_batch("COMMIT").expect("commit");
        syncing += c.elapsed();
        busy += t.elapsed();
        done += size as u64;
        commits += 1;
    }
    let run = Run {
        done,
        seconds: busy.as_secs_f64(),
        errors: 0,
        latencies: Latencies::default(),
        sync_seconds: syncing.as_secs_f64() / f64::from(commits.max(1)),
    };
    checkpoint(db);
    run
}

/// Two readers doing point reads (stock of one sku) until `stop`.
fn reads(o: &Options, store: &Arc<Store>) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|r| {
            let (store, stop, count, skus) = (
                Arc::clone(store),
                Arc::clone(&stop),
                Arc::clone(&count),
                o.skus,
            );
            std::thread::spawn(move || {
                let conn = store.read().expect("reader");
                let mut rng = ora::sample::Rng::new(500 + r);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let s = ora::sample::sku(rng.below(skus as u64) as usize);
                    let p = products::get(&conn, &s).expect("read");
                    assert!(p.is_some());
                    n += 1;
                }
                count.fetch_add(n, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(o.duration());
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("reader");
    }
    (count.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

/// Runs the store rows; returns the writer's rate at 32 clients with FULL.
pub fn run(o: &Options, base: &std::path::Path, t: &mut Table) -> Option<f64> {
    let mut full32 = None;
    // A rate with the range of its repeats (when there were several).
    let range = |m: String, lo: f64, hi: f64| {
        if o.repeats > 1 {
            format!("{m} ({}-{})", per_sec(lo), per_sec(hi))
        } else {
            m
        }
    };
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let tag = sync.as_str();
        eprintln!("store, synchronous={tag}");
        let db = scratch_copy(o, base, "store-bench.db");
        // Per repeat at 32 clients: (the writer's rate, the ceiling's) for the plain batch
        // and for the batch with the writer's work.
        let mut ceilings: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        // Per client count: each repeat's writer run beside the bound measured right after it.
        let mut bounds: Vec<(usize, Vec<BoundPair>)> = Vec::new();
        for &clients in &o.clients {
            // Three interleaved runs of each, the median reported: this VM's disk varies by
            // about 20% from one run to the next.
            let mut ns = Vec::new();
            let mut gs = Vec::new();
            let mut pairs_bound = Vec::new();
            for rep in 0..o.repeats {
                settle();
                ns.push(naive(o, &db, sync, clients));
                let store = open_store(&db, sync);
                settle();
                gs.push(grouped(o, &store, clients, 2000 + 100 * rep as u64));
                drop(store);
                checkpoint(&db);
                settle();
                let bound = batched(o, &db, sync, true, clients);
                let turn = if clients > 1 {
                    crate::bound_bench::turnaround(clients, o.skus, o.duration() / 2)
                } else {
                    0.0 // one client is its own leader: nobody to wake
                };
                pairs_bound.push((gs[rep].rate(), bound, turn));
                if clients == 32 {
                    // The ceilings right after the writer's run they are compared with, so
                    // that each ratio meets one stretch of this disk's speed.
                    for (c, same_work) in ceilings.iter_mut().zip([false, true]) {
                        settle();
                        c.push((
                            gs[rep].rate(),
                            batched(o, &db, sync, same_work, 1_000).rate(),
                        ));
                    }
                }
            }
            // The spread: each repeat's writer against the naive run just before it.
            let pairs: Vec<f64> = gs
                .iter()
                .zip(&ns)
                .map(|(g, n)| g.rate() / n.rate())
                .collect();
            let (_, glo, ghi) = median_range(gs.iter().map(Run::rate).collect());
            let (_, nlo, nhi) = median_range(ns.iter().map(Run::rate).collect());
            let (_, rlo, rhi) = median_range(pairs);
            let mut n = median(ns);
            let mut g = median(gs);
            bounds.push((clients, pairs_bound));
            t.add(
                format!("movements/s, {clients} client(s), {tag}"),
                range(per_sec(g.rate()), glo, ghi),
                "naive: one BEGIN IMMEDIATE tx per movement",
                range(per_sec(n.rate()), nlo, nhi),
                if o.repeats > 1 {
                    format!(
                        "{} ({rlo:.2}-{rhi:.2} per repeat)",
                        ratio(g.rate(), n.rate())
                    )
                } else {
                    ratio(g.rate(), n.rate())
                },
            );
            t.add(
                format!("latency of one movement p50/p99/max ms, {clients} client(s), {tag}"),
                g.latencies.summary(),
                "naive",
                n.latencies.summary(),
                "",
            );
            if n.errors + g.errors > 0 {
                t.add(
                    format!("errors seen by callers, {clients} client(s), {tag}"),
                    g.errors.to_string(),
                    "naive (busy after busy_timeout)",
                    n.errors.to_string(),
                    "",
                );
            }
            if clients == 32 && sync == Synchronous::Full {
                full32 = Some(g.rate());
            }
        }
        for (pairs, what, reference) in [
            (
                &ceilings[0],
                "batches of 1,000 per tx",
                "one client, 1,000 movements per transaction (ceiling)",
            ),
            (
                &ceilings[1],
                "batches with the writer's work",
                "the same, each movement with its audit scope and SAVEPOINT",
            ),
        ] {
            if pairs.is_empty() {
                continue;
            }
            let (writer, _, _) = median_range(pairs.iter().map(|p| p.0).collect());
            let (ceiling, clo, chi) = median_range(pairs.iter().map(|p| p.1).collect());
            let (share, slo, shi) = median_range(pairs.iter().map(|p| 100.0 * p.0 / p.1).collect());
            let of_ceiling = if pairs.len() > 1 {
                format!("{share:.0}% of ceiling ({slo:.0}-{shi:.0}% per repeat)")
            } else {
                format!("{share:.0}% of ceiling")
            };
            t.add(
                format!("movements/s at 32 clients vs {what}, {tag}"),
                per_sec(writer),
                reference,
                range(per_sec(ceiling), clo, chi),
                of_ceiling,
            );
        }
        share_of_bound(sync, &bounds, o.repeats, t);
        let store = open_store(&db, sync);
        // One pass first so that both measured passes find the readers' page caches warm: a
        // cold first pass would understate the idle rate.
        let _ = reads(o, &store);
        let (idle, idle_s) = reads(o, &store);
        let loader = {
            let store = Arc::clone(&store);
            let o2 = Options {
                seconds: o.seconds,
                rows: o.rows,
                skus: o.skus,
                only: None,
                dir: o.dir.clone(),
                clients: Vec::new(),
                repeats: 1,
            };
            std::thread::spawn(move || grouped(&o2, &store, 32, 3000))
        };
        let (busy, busy_s) = reads(o, &store);
        let w = loader.join().expect("loader");
        drop(store);
        let (idle_rate, busy_rate) = (idle as f64 / idle_s, busy as f64 / busy_s);
        t.add(
            format!(
                "point reads/s, 2 readers, writer at full speed ({}), {tag}",
                per_sec(w.rate())
            ),
            per_sec(busy_rate),
            "same readers, writer idle",
            per_sec(idle_rate),
            format!("{:.0}% of idle", 100.0 * busy_rate / idle_rate),
        );
    }
    full32
}

/// One repeat at one client count: the writer's rate, the bound's run right after it, and the
/// clients' turnaround (seconds a group) measured after that.
type BoundPair = (f64, Run, f64);

/// The writer against the bound of group commit: with `c` requests outstanding a group holds
/// at most `c` movements, so the writer can do no better than one connection committing
/// groups of exactly `c` movements, made ready beforehand, with the writer's work on each
/// (`c / (c x w + f)`, `w` the work of a movement, `f` the group's COMMIT). That bound is
/// measured right after each writer run, on the same file, and the share is the median of
/// the pairs' ratios. A second row adds what that bound leaves out when a group holds every
/// client: `t`, the clients' turnaround between two groups (answered, back with the next
/// request), measured alone right after ([`crate::bound_bench::turnaround`]):
/// `c / (c x w + f + t)`. That is what a writer would get that waits for the whole group
/// before it starts; not a bound (the writer runs the first arrivals while the last are
/// still on their way back), but the size of what the first row's bound leaves out.
fn share_of_bound(
    sync: Synchronous,
    bounds: &[(usize, Vec<BoundPair>)],
    repeats: usize,
    t: &mut Table,
) {
    for (c, pairs) in bounds {
        let (writer, _, _) = median_range(pairs.iter().map(|p| p.0).collect());
        let (bound, blo, bhi) = median_range(pairs.iter().map(|p| p.1.rate()).collect());
        let (share, slo, shi) =
            median_range(pairs.iter().map(|p| 100.0 * p.0 / p.1.rate()).collect());
        let f = median_range(pairs.iter().map(|p| p.1.sync_seconds).collect()).0;
        let w = (1.0 / bound - f / *c as f64).max(0.0);
        let spread = |lo: f64, hi: f64| {
            if repeats > 1 {
                format!(" ({lo:.0}-{hi:.0}% per repeat)")
            } else {
                String::new()
            }
        };
        t.add(
            format!(
                "movements/s, {c} client(s), {}, against the group-commit bound",
                sync.as_str()
            ),
            per_sec(writer),
            format!(
                "one connection, groups of {c} ready-made movements with the writer's work: w = {:.1} µs a movement, f = {:.2} ms a COMMIT",
                w * 1e6,
                f * 1e3
            ),
            format!("{} ({}-{})", per_sec(bound), per_sec(blo), per_sec(bhi)),
            format!("{share:.0}% of bound{} (goal >= 90% at 8 and 32)", spread(slo, shi)),
        );
        if *c < 2 {
            continue;
        }
        // Each repeat's bound with that repeat's turnaround added to its group's time.
        let with_turn = |p: &BoundPair| {
            let per_group = *c as f64 / p.1.rate().max(f64::MIN_POSITIVE) + p.2;
            *c as f64 / per_group
        };
        let (bound2, lo2, hi2) = median_range(pairs.iter().map(with_turn).collect());
        let (share2, slo2, shi2) =
            median_range(pairs.iter().map(|p| 100.0 * p.0 / with_turn(p)).collect());
        let turn = median_range(pairs.iter().map(|p| p.2).collect()).0;
        t.add(
            format!(
                "movements/s, {c} client(s), {}, against the bound plus the clients' turnaround",
                sync.as_str()
            ),
            per_sec(writer),
            format!(
                "the bound above plus t = {:.0} µs a group: {c} closed-loop threads answered together by one thread doing no work, each back with its next request (measured alone)",
                turn * 1e6
            ),
            format!("{} ({}-{})", per_sec(bound2), per_sec(lo2), per_sec(hi2)),
            format!("{share2:.0}% of it{}", spread(slo2, shi2)),
        );
    }
}
