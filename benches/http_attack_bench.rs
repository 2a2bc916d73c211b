//! The HTTP server against a reference build of ora in the same run, and under attack. Each
//! figure is measured on the server under test and on the reference (`ORA_BENCH_REFERENCE`,
//! the path of another `ora` binary), one server at a time on the same copy of the sample,
//! interleaved, median of the repeats: `GET /health` at 8 keep-alive clients, `POST
//! /api/transactions` at 64, one client opening a new connection per request, and the p99 of
//! `GET /health` (a new connection each, as a monitor does) while 300 slowloris connections
//! are held open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{median_range, per_sec, scratch_copy, Latencies, Options, Table};
use crate::http_bench::{fresh_rate, load, start_binary, Kind};

const ORA: &str = env!("CARGO_BIN_EXE_ora");

/// One server's figures from one round.
#[derive(Default, Clone)]
struct Round {
    health8: f64,
    post64: f64,
    fresh: f64,
    attacked_p99_ms: f64,
    attacked_errors: u64,
}

/// Holds `n` connections that each sent half a request head, adding a byte to each every
/// 100 ms and opening a new one whenever the server closes one, until `stop`.
fn slowloris(addr: String, n: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let open = |addr: &str| -> Option<TcpStream> {
            let mut c = TcpStream::connect(addr).ok()?;
            c.set_write_timeout(Some(Duration::from_millis(50))).ok()?;
            c.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes())
                .ok()?;
            Some(c)
        };
        let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open(&addr)).collect();
        let mut reopened = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for c in conns.iter_mut() {
                let alive = c.as_mut().is_some_and(|s| s.write_all(b"z").is_ok());
                if !alive {
                    *c = open(&addr);
                    reopened += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        reopened
    })
}

/// `GET /health` on a new connection each time for the run's duration: latencies of the 200s
/// and the count of everything else (503s, resets, timeouts).
fn monitor(o: &Options, addr: &str) -> (Latencies, u64) {
    let deadline = Instant::now() + o.duration();
    let (mut lat, mut errors) = (Latencies::default(), 0u64);
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    while Instant::now() < deadline {
        let t = Instant::now();
        let ok = TcpStream::connect(addr).ok().and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(req.as_bytes()).ok()?;
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).ok()?;
            buf.starts_with(b"HTTP/1.1 200").then_some(())
        });
        match ok {
            Some(()) => lat.0.push(t.elapsed()),
            None => errors += 1,
        }
        // A monitor polls; it does not hammer.
        std::thread::sleep(Duration::from_millis(5));
    }
    (lat, errors)
}

fn round(o: &Options, binary: &str, db: &std::path::Path) -> Round {
    let srv = start_binary(binary, db);
    let health8 = load(o, &srv.addr, Kind::Health, 8).0;
    let post64 = load(o, &srv.addr, Kind::Post, 64).0;
    let fresh = fresh_rate(o, &srv.addr, true);
    let stop = Arc::new(AtomicBool::new(false));
    let attack = slowloris(srv.addr.clone(), 300, Arc::clone(&stop));
    // Let the attack take its connections first.
    std::thread::sleep(Duration::from_millis(500));
    let (mut lat, attacked_errors) = monitor(o, &srv.addr);
    stop.store(true, Ordering::Relaxed);
    let _ = attack.join();
    drop(srv);
    Round {
        health8,
        post64,
        fresh,
        attacked_p99_ms: if lat.0.is_empty() {
            f64::INFINITY
        } else {
            lat.p99_ms()
        },
        attacked_errors,
    }
}

/// A table row: its name, the figure of a round, whether it is a rate, its target.
type Row = (&'static str, fn(&Round) -> f64, bool, &'static str);

fn cell(v: Vec<f64>, rate: bool) -> (f64, String) {
    let (m, lo, hi) = median_range(v);
    let f = |x: f64| {
        if rate {
            per_sec(x)
        } else {
            format!("{x:.2} ms")
        }
    };
    (m, format!("{} ({}-{})", f(m), f(lo), f(hi)))
}

pub fn run(o: &Options, base: &std::path::Path, t: &mut Table) {
    let reference = std::env::var("ORA_BENCH_REFERENCE").ok();
    let db = scratch_copy(o, base, "http-attack.db");
    // A fresh backup beside the copy, so that /health answers 200.
    let fresh = ora::file::backup::BackupOptions::for_db(&db);
    ora::file::backup::run(&db, &fresh, &ora::file::progress::Progress::hidden())
        .expect("back up the copy");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..o.repeats.max(3) {
        ours.push(round(o, ORA, &db));
        if let Some(r) = &reference {
            theirs.push(round(o, r, &db));
        }
    }
    let pick = |rs: &[Round], f: fn(&Round) -> f64| rs.iter().map(f).collect::<Vec<_>>();
    let rows: [Row; 4] = [
        (
            "HTTP GET /health, 8 keep-alive clients: requests/s (median, range)",
            |r| r.health8,
            true,
            "not below the reference",
        ),
        (
            "HTTP POST /api/transactions, 64 keep-alive clients: movements/s (median, range)",
            |r| r.post64,
            true,
            "not below the reference",
        ),
        (
            "HTTP GET /health, one client, a new connection per request: requests/s (median, range)",
            |r| r.fresh,
            true,
            "target >= 5,000/s",
        ),
        (
            "HTTP GET /health p99 (a new connection each) while 300 slowloris connections are open (median, range)",
            |r| r.attacked_p99_ms,
            false,
            "target < 50 ms",
        ),
    ];
    for (name, f, rate, target) in rows {
        let (m, text) = cell(pick(&ours, f), rate);
        let (versus, ref_text) = if theirs.is_empty() {
            (
                None,
                "set ORA_BENCH_REFERENCE to an ora binary to compare".to_string(),
            )
        } else {
            let (rm, rt) = cell(pick(&theirs, f), rate);
            (Some(rm), format!("reference build: {rt}"))
        };
        let ratio = match versus {
            Some(r) if rate => format!("{:.2}x the reference ({target})", m / r),
            Some(_) => target.to_string(),
            None => target.to_string(),
        };
        t.add(name, text, ref_text, "", ratio);
    }
    let errors = |rs: &[Round]| rs.iter().map(|r| r.attacked_errors).sum::<u64>();
    t.add(
        "HTTP GET /health not answered 200 during the slowloris runs (all repeats)",
        errors(&ours).to_string(),
        if theirs.is_empty() {
            String::new()
        } else {
            format!("reference build: {}", errors(&theirs))
        },
        "",
        "target: 0",
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let _ = std::fs::remove_dir_all(&fresh.dir);
}
