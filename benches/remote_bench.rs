//! Remote proxies: sync throughput to PostgreSQL (batched vs row by row, same run), the local
//! write rate with the outbox capturing vs not (target: at most 15% slower), the rebuild of a
//! lost box from the mirror against the full copy that filled it, the lag of a forwarder under
//! sustained writes (with its recorder thread and recording inline), and the latency of local product search on 20,000
//! products. PostgreSQL comes from ../shared/tools/pg-cluster.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ora::model::TxType;
use ora::remote::forwarder::{self, Forwarder, ForwarderOptions};
use ora::remote::outbox;
use ora::remote::postgres::Postgres;
use ora::shutdown::Shutdown;
use ora::store::connection::Tuning;
use ora::store::{Movement, OpenMode, Store, StoreOptions, WriteOp, WriteRequest};

use crate::common::{per_sec, scratch_copy, Latencies, Options, Table};

pub(crate) struct Cluster {
    dir: PathBuf,
    pub(crate) url: String,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(tool()).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tool() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/pg-cluster")
}

fn cluster(o: &Options) -> Option<Cluster> {
    cluster_in(&o.dir.join("pg"), false)
}

/// A throwaway PostgreSQL 15 cluster in `dir`; `durable`: fsync on (synchronous_commit is on
/// by default), as a user would run it.
pub(crate) fn cluster_in(dir: &Path, durable: bool) -> Option<Cluster> {
    let dir = dir.to_path_buf();
    let _ = Command::new(tool()).arg("stop").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(tool())
        .env("PG_FSYNC", if durable { "on" } else { "off" })
        .arg("start")
        .arg(&dir)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "no PostgreSQL for the remote rows: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(Cluster {
        dir,
        url: String::from_utf8_lossy(&out.stdout).trim().to_string(),
    })
}

fn movements(store: &Store, n: usize, skus: usize) {
    let w = store.writer().expect("writer");
    let mut tickets = Vec::with_capacity(512);
    for i in 0..n {
        let sku = ora::sample::sku(i % skus);
        let m = Movement::new(&sku, TxType::Receive, 1);
        tickets.push(
            w.enqueue(WriteRequest::new(WriteOp::Movement(m)))
                .expect("enqueue"),
        );
        if tickets.len() == 512 {
            for t in tickets.drain(..) {
                t.wait().expect("movement");
            }
        }
    }
    for t in tickets {
        t.wait().expect("movement");
    }
}

/// (full copy rows/s, incremental changes/s) for one delivery mode.
fn sync_rate(o: &Options, pg: &Cluster, row_by_row: bool) -> (f64, u64, f64, u64) {
    let name = if row_by_row {
        "remote-rows.db"
    } else {
        "remote-batched.db"
    };
    let db = o.dir.join(name);
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", db.display()));
    }
    ora::sample::generate(&db, 50_000, 2_000, 77).expect("sample");
    let site = if row_by_row {
        "bench-rows"
    } else {
        "bench-batched"
    };
    let mut target = Postgres::new(&pg_config(&pg.url), site);
    target.row_by_row = row_by_row;
    let mut f = Forwarder::new(
        &db,
        &Tuning::default(),
        Box::new(target),
        ForwarderOptions::default(),
    )
    .expect("forwarder");
    let t = Instant::now();
    let (_, rows) = f.drain(None).expect("full copy");
    let copy_rate = rows as f64 / t.elapsed().as_secs_f64();
    let store = Store::open(&StoreOptions::new(&db), OpenMode::Existing).expect("open");
    movements(&store, 20_000, 2_000);
    store.close();
    let t = Instant::now();
    let (changes, _) = f.drain(None).expect("drain");
    (
        copy_rate,
        rows,
        changes as f64 / t.elapsed().as_secs_f64(),
        changes,
    )
}

/// Movements/s of 32 writer clients for the run's duration.
fn write_rate(o: &Options, db: &Path) -> f64 {
    let store = Arc::new(Store::open(&StoreOptions::new(db), OpenMode::Existing).expect("open"));
    let deadline = Instant::now() + o.duration();
    let start = Instant::now();
    let handles: Vec<_> = (0..32)
        .map(|c| {
            let (store, skus) = (Arc::clone(&store), o.skus);
            std::thread::spawn(move || {
                let mut rng = ora::sample::Rng::new(40_000 + c);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    n += u64::from(receive_one(&store, &mut rng, skus));
                }
                n
            })
        })
        .collect();
    let n: u64 = handles.into_iter().map(|h| h.join().expect("client")).sum();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    if let Ok(s) = Arc::try_unwrap(store) {
        s.close();
    }
    rate
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    // The outbox's cost: the same load with capture off and on (a target registered, nothing
    // delivering, so the outbox only grows).
    let db = scratch_copy(o, base, "outbox-bench.db");
    let mut off = Vec::new();
    let mut on = Vec::new();
    for rep in 0..o.repeats {
        off.push(write_rate(o, &db));
        let conn = ora::store::connection::open_writer(&db, &Tuning::default()).expect("open");
        outbox::register(&conn, "bench").expect("register");
        on.push(write_rate(o, &db));
        conn.execute_batch("DELETE FROM sync_control; DELETE FROM outbox;")
            .expect("reset");
        let _ = rep;
    }
    off.sort_by(f64::total_cmp);
    on.sort_by(f64::total_cmp);
    let (off, on) = (off[off.len() / 2], on[on.len() / 2]);
    t.add(
        "movements/s at 32 clients (FULL) with the outbox capturing",
        per_sec(on),
        "same, capture off (no remote configured)",
        per_sec(off),
        format!("{:.1}% slower (target <= 15%)", 100.0 * (1.0 - on / off)),
    );

    // Local search latency on the sample's 20,000 products.
    let store = Store::open(&StoreOptions::new(&db), OpenMode::Existing).expect("open");
    let conn = store.read().expect("reader");
    let mut lat = Latencies::default();
    let mut rng = ora::sample::Rng::new(5);
    for i in 0..1_000 {
        let mut name: Vec<char> = ora::sample::product_name(rng.below(o.skus as u64) as usize)
            .to_lowercase()
            .chars()
            .collect();
        let p = 1 + rng.below(name.len() as u64 - 2) as usize;
        name.swap(p, p + 1);
        let q: String = name.into_iter().collect();
        let t0 = Instant::now();
        let hits = ora::remote::search::local(&conn, &q, 5).expect("search");
        lat.0.push(t0.elapsed());
        assert!(!hits.is_empty() || i > 0);
    }
    drop(conn);
    t.add(
        format!(
            "local product search on {} products: p50/p99/max ms",
            o.skus
        ),
        lat.summary(),
        "",
        "",
        "",
    );

    // Local vector search (exact cosine scan) with a 384-dimensional vector per product.
    const DIMS: usize = 384;
    let mut rng = ora::sample::Rng::new(9);
    let mut vector = move || -> Vec<f32> {
        (0..DIMS)
            .map(|_| rng.below(2001) as f32 / 1000.0 - 1.0)
            .collect()
    };
    {
        let w = ora::store::connection::open_writer(&db, &Tuning::default()).expect("open");
        w.execute_batch("BEGIN").expect("begin");
        let skus: Vec<String> = w
            .prepare("SELECT sku FROM inventory_current")
            .and_then(|mut st| {
                st.query_map([], |r| r.get(0))?
                    .collect::<Result<Vec<String>, _>>()
            })
            .expect("skus");
        for sku in &skus {
            w.execute(
                "INSERT OR REPLACE INTO product_vectors (sku, dims, vector, updated_at) VALUES (?1, ?2, ?3, 'bench')",
                (sku, DIMS as i64, ora::store::vectors::encode(&vector())),
            )
            .expect("insert vector");
        }
        w.execute_batch("COMMIT").expect("commit");
    }
    let conn = store.read().expect("reader");
    let mut vlat = Latencies::default();
    for _ in 0..100 {
        let q = vector();
        let t0 = Instant::now();
        let hits = ora::remote::search::local_vector(&conn, &q, 5).expect("vector search");
        vlat.0.push(t0.elapsed());
        assert_eq!(hits.len(), 5);
    }
    drop(conn);
    store.close();
    t.add(
        format!(
            "local vector search ({DIMS} dims, exact scan) on {} products: p50/p99/max ms",
            o.skus
        ),
        vlat.summary(),
        "",
        "",
        "",
    );

    let Some(pg) = cluster(o) else {
        t.add("sync to PostgreSQL", "skipped: no PostgreSQL", "", "", "");
        return;
    };
    let (copy_b, rows, inc_b, changes) = sync_rate(o, &pg, false);
    let (copy_r, _, inc_r, _) = sync_rate(o, &pg, true);
    t.add(
        format!("PostgreSQL full copy of {rows} rows: rows/s, one statement per table per batch"),
        per_sec(copy_b),
        "row by row",
        per_sec(copy_r),
        format!("{:.1}x", copy_b / copy_r),
    );
    t.add(
        format!("PostgreSQL incremental sync of {changes} changes: changes/s, batched"),
        per_sec(inc_b),
        "row by row",
        per_sec(inc_r),
        format!("{:.1}x", inc_b / inc_r),
    );

    // Rebuilding the lost box from the mirror: the batched site read back into a new file,
    // against the full copy that sent it there.
    let mut rebuild = Vec::new();
    let mut rebuilt_rows = 0;
    for rep in 0..o.repeats.max(1) {
        let out = o.dir.join(format!("rebuilt-{rep}.db"));
        for s in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{s}", out.display()));
        }
        let t0 = Instant::now();
        let r = ora::ops::from_mirror::run(
            &o.dir.join("nothing-here.db"),
            &ora::ops::from_mirror::FromMirrorOptions {
                postgres: pg_config(&pg.url),
                site: "bench-batched".into(),
                out: Some(out.clone()),
                force: false,
                allow_negative_stock: false,
            },
        )
        .expect("rebuild from the mirror");
        let secs = t0.elapsed().as_secs_f64();
        rebuilt_rows = r.tables.iter().map(|t| t.rows).sum::<u64>();
        rebuild.push(rebuilt_rows as f64 / secs);
        let _ = std::fs::remove_file(&out);
    }
    rebuild.sort_by(f64::total_cmp);
    let mid = rebuild[rebuild.len() / 2];
    t.add(
        format!("restore --from-postgres of {rebuilt_rows} rows (checked, installed): rows/s, median of {} ({}-{})", rebuild.len(), per_sec(rebuild[0]), per_sec(rebuild[rebuild.len() - 1])),
        per_sec(mid),
        "the full copy to PostgreSQL, batched",
        per_sec(copy_b),
        format!("{:.2}x", mid / copy_b),
    );

    // Lag under sustained writes: 8 clients write while a forwarder delivers; the reference is
    // the same forwarder recording each position itself (waiting behind the writers for the
    // write lock) instead of through its recorder thread and the store's writer.
    let db = o.dir.join("remote-batched.db");
    let mut runs = [Vec::new(), Vec::new()];
    for _ in 0..o.repeats {
        for (i, recorder) in [true, false].into_iter().enumerate() {
            runs[i].push(lag(o, &db, &pg, recorder));
        }
    }
    let summary = |v: &mut Vec<(f64, i64, i64, f64)>| {
        v.sort_by(|a, b| a.3.total_cmp(&b.3));
        let (rate, median, max_rows, secs) = v[v.len() / 2];
        (
            rate,
            format!(
                "{median}/{max_rows} changes, {secs:.2} s (max s over {} runs: {:.2}-{:.2})",
                v.len(),
                v[0].3,
                v[v.len() - 1].3
            ),
            secs,
        )
    };
    let (rate, with, secs) = summary(&mut runs[0]);
    let (rate_ref, without, secs_ref) = summary(&mut runs[1]);
    t.add(
        format!("PostgreSQL lag under sustained writes ({} from 8 clients): median/max changes behind, max seconds (target < 1 s)", per_sec(rate)),
        with,
        format!("recording inline ({} from 8 clients)", per_sec(rate_ref)),
        without,
        format!("{:.2}x the max seconds", secs / secs_ref),
    );
}

/// One lag run: (movements/s written, median and max changes behind, max seconds behind).
fn lag(o: &Options, db: &Path, pg: &Cluster, recorder: bool) -> (f64, i64, i64, f64) {
    let store = Arc::new(Store::open(&StoreOptions::new(db), OpenMode::Existing).expect("open"));
    let stop = Shutdown::new();
    let mut f = Forwarder::new(
        db,
        &Tuning::default(),
        Box::new(Postgres::new(&pg_config(&pg.url), "bench-batched")),
        ForwarderOptions::default(),
    )
    .expect("forwarder");
    f.drain(None).expect("catch up before the run");
    let fwd = if recorder {
        // As in `ora serve`: the records go through the store's writer.
        let st = Arc::clone(&store);
        let through: forwarder::WriteThrough = Box::new(move |r| {
            st.write(WriteRequest::new(WriteOp::SyncRecord(r)))
                .map(|_| ())
        });
        forwarder::spawn(f, stop.clone(), Some(through)).expect("spawn")
    } else {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.is_tripped() {
                if let Ok(forwarder::Step::Idle) | Err(_) = f.step() {
                    stop.wait(Duration::from_millis(200));
                }
            }
        })
    };
    let writing = Arc::new(AtomicBool::new(true));
    let writers: Vec<_> = (0..8)
        .map(|c| {
            let (store, writing) = (Arc::clone(&store), Arc::clone(&writing));
            std::thread::spawn(move || {
                let mut rng = ora::sample::Rng::new(70 + c);
                let mut n = 0u64;
                while writing.load(Ordering::Relaxed) {
                    n += u64::from(receive_one(&store, &mut rng, 2_000));
                }
                n
            })
        })
        .collect();
    let conn = ora::store::connection::open_writer(db, &Tuning::default()).expect("open");
    let start = Instant::now();
    let (mut max_rows, mut max_secs, mut samples) = (0i64, 0f64, Vec::new());
    while start.elapsed() < o.duration() * 2 {
        std::thread::sleep(Duration::from_millis(100));
        if let Ok((st, _)) = outbox::status(&conn) {
            if let Some(s) = st.iter().find(|s| s.target == "postgres") {
                max_rows = max_rows.max(s.lag_rows);
                max_secs = max_secs.max(s.lag_seconds);
                samples.push(s.lag_rows);
            }
        }
    }
    writing.store(false, Ordering::Relaxed);
    let written: u64 = writers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    let rate = written as f64 / start.elapsed().as_secs_f64();
    stop.trip();
    let _ = fwd.join();
    samples.sort_unstable();
    if let Ok(s) = Arc::try_unwrap(store) {
        s.close();
    }
    (
        rate,
        samples.get(samples.len() / 2).copied().unwrap_or(0),
        max_rows,
        max_secs,
    )
}

/// One Receive of 1 unit of a random sku among the first `skus` through the writer; true when
/// it committed.
fn receive_one(store: &Store, rng: &mut ora::sample::Rng, skus: usize) -> bool {
    let sku = ora::sample::sku(rng.below(skus as u64) as usize);
    store
        .write(WriteRequest::new(WriteOp::Movement(Movement::new(
            &sku,
            TxType::Receive,
            1,
        ))))
        .is_ok()
}

/// The mirror's settings for the benchmark cluster (schema `ora`, plain TCP on loopback).
fn pg_config(url: &str) -> ora::config::PostgresConfig {
    ora::config::PostgresConfig {
        url: url.to_string(),
        schema: "ora".into(),
        tls: ora::config::PgTls::Disable,
    }
}
