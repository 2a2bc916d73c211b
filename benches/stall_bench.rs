//! How long a writer waits on housekeeping: one client posts a movement every 20 ms (50/s)
//! to a real `ora serve` on a copy of the sample while `ora maintain weekly`, `ora backup`,
//! `ora verify`, `ora health --full`, `ora maintain daily` (making the ledger's statistics
//! again), `ora shipment archive` (the orders older than a year) and `ora maintain daily`
//! again (giving back the pages the archive freed) run one after the other as separate
//! processes (as the timers and an operator run them); for each, the p99.9 and the longest
//! wait of the writes made while it ran, beside the same writer with nothing else running,
//! in the same run.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{scratch_copy, settle, Options, Table};
use crate::http_bench::{Conn, ORA};

/// One write every this long.
const PACE: Duration = Duration::from_millis(20);

/// Write latencies (ms), with when each began.
type Log = Arc<Mutex<Vec<(Instant, f64)>>>;

fn writer(addr: String, stop: Arc<AtomicBool>, log: Log, skus: usize) {
    let mut c = Conn::open(&addr);
    let mut rng = ora::sample::Rng::new(7);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let sku = ora::sample::sku(rng.below(skus as u64) as usize);
        let body = format!("{{\"sku\":\"{sku}\",\"type\":\"Receive\",\"quantity\":1}}");
        let req = format!(
            "POST /api/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let t = Instant::now();
        let st = c.call(req.as_bytes());
        let ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(st, 201, "a write was refused");
        log.lock().expect("log").push((t, ms));
        next += PACE;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        } else {
            next = Instant::now();
        }
    }
}

/// The writes that began in [from, to): their count, p99.9 and max (ms), and how long after
/// `from` the slowest began (s).
fn during(log: &Log, from: Instant, to: Instant) -> (usize, f64, f64, f64) {
    let log = log.lock().expect("log");
    let mut v: Vec<(f64, f64)> = log
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(t, ms)| (*ms, (*t - from).as_secs_f64()))
        .collect();
    if v.is_empty() {
        return (0, 0.0, 0.0, 0.0);
    }
    v.sort_by(|a, b| a.0.total_cmp(&b.0));
    let p999 = v[((v.len() as f64 - 1.0) * 0.999).round() as usize].0;
    let (max, at) = v[v.len() - 1];
    (v.len(), p999, max, at)
}

/// Removes the ledger's planner statistics (as if it had grown tenfold since they were
/// made), through SQLite, beside the running server.
fn forget_ledger_statistics(db: &std::path::Path) {
    let conn = rusqlite::Connection::open(db).expect("open the copy");
    conn.busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    conn.execute(
        "DELETE FROM sqlite_stat1 WHERE tbl = 'inventory_transactions'",
        [],
    )
    .expect("remove the ledger's statistics");
}

pub fn run(o: &Options, base: &std::path::Path, table: &mut Table) {
    run_with(o, base, table, ORA, "");
}

/// [`run`] with another build of ora (`ORA_STALL_BINARY`, for a before-and-after), its rows
/// marked with `label`.
pub fn run_with(o: &Options, base: &std::path::Path, table: &mut Table, binary: &str, label: &str) {
    let db = scratch_copy(o, base, "stall.db");
    // The copy's writeback (3.3 GB at 20M rows) otherwise lands in the reference window.
    settle();
    let backups = o.dir.join("stall-backups");
    let _ = std::fs::remove_dir_all(&backups);
    std::fs::create_dir_all(&backups).expect("backup dir");
    let srv = crate::http_bench::start_binary(binary, &db);
    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    let w = {
        let (addr, stop, log, skus) = (srv.addr.clone(), stop.clone(), log.clone(), o.skus);
        std::thread::spawn(move || writer(addr, stop, log, skus))
    };
    // Warm up (the first writes read their pages from disk), then nothing else running, for
    // the reference: as long as a whole-file job on the large sample, because this disk's
    // own slowest fsync comes about once in a few thousand commits and a short window misses
    // it (the writer alone for 95 s on the 20M copy: 181.7 and 125.3 ms).
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    std::thread::sleep((o.duration() * 20).max(Duration::from_secs(5)));
    let (n0, p0, m0, _) = during(&log, t0, Instant::now());
    let reference = format!(
        "{p0:.1} / {m0:.1} ms ({n0} writes in {:.0} s)",
        t0.elapsed().as_secs_f64()
    );
    // The sample's orders span two years to its making: those older than a year move out.
    let year_ago = (chrono::Utc::now() - chrono::Duration::days(365))
        .format("%Y-%m-%d")
        .to_string();
    let archives = o.dir.join("stall-archives");
    let _ = std::fs::remove_dir_all(&archives);
    let jobs: [(&str, Vec<String>); 7] = [
        (
            "ora maintain weekly",
            vec!["maintain".into(), "weekly".into()],
        ),
        (
            "ora backup",
            vec![
                "backup".into(),
                "--dir".into(),
                backups.display().to_string(),
            ],
        ),
        ("ora verify", vec!["verify".into()]),
        ("ora health --full", vec!["health".into(), "--full".into()]),
        (
            "ora maintain daily",
            vec!["maintain".into(), "daily".into()],
        ),
        (
            "ora shipment archive",
            vec![
                "shipment".into(),
                "archive".into(),
                "--before".into(),
                year_ago,
                "--dir".into(),
                archives.display().to_string(),
            ],
        ),
        (
            "ora maintain daily",
            vec!["maintain".into(), "daily".into()],
        ),
    ];
    for (i, (name, args)) in jobs.into_iter().enumerate() {
        // The first daily run makes the ledger's statistics again; the second gives back the
        // pages the archive freed.
        let tenfold = i == 4;
        let after_archive = i == 6;
        if tenfold {
            forget_ledger_statistics(&db);
        }
        settle();
        let t = Instant::now();
        let out = Command::new(binary)
            .arg("--db")
            .arg(&db)
            .arg("-q")
            .args(&args)
            .output()
            .expect("run the job");
        let end = Instant::now();
        let (n, p, m, at) = during(&log, t, end);
        table.add(
            format!(
                "{label}a 50/s writer during `{name}`{} ({:.1} s, exit {}): write wait p99.9 / max",
                if tenfold {
                    " making the ledger's planner statistics again"
                } else if after_archive {
                    " giving back the pages the archive freed"
                } else {
                    ""
                },
                (end - t).as_secs_f64(),
                out.status.code().unwrap_or(-1)
            ),
            format!("{p:.1} / {m:.1} ms ({n} writes; the slowest {at:.1} s in)"),
            "the same writer alone",
            reference.clone(),
            "",
        );
    }
    stop.store(true, Ordering::Relaxed);
    let _ = w.join();
    drop(srv);
    let _ = std::fs::remove_dir_all(&backups);
    let _ = std::fs::remove_dir_all(&archives);
}
