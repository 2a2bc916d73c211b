//! Standby rows, every one against real `ora` processes over loopback on copies of the sample:
//! POST /api/transactions movements/s and p99 at 1, 8 and 32 keep-alive clients on a primary
//! with no standby, with an async standby, with a sync standby (a second `ora` process that
//! applies and fsyncs each record before the primary acknowledges it), and with a strict
//! replica on a local directory (the reference the issue names); the async standby's lag
//! (from the primary's acknowledgement to the movement being applied on the standby) p50/p99
//! while 8 clients write; promotion time (`ora promote` started to the first write the
//! promoted box acknowledges); and catch-up after an outage (records/s) against a fresh
//! standby taking a base of the same file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{median_range, per_sec, scratch_copy, Latencies, Options, Table};
use crate::http_bench::{load, start_binary_with, Conn, Kind, Server, ORA};

const TOKEN: &str = "bench-standby-token-0123456789";

fn config(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, body).expect("config");
    p
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    format!("127.0.0.1:{port}")
}

/// `GET /replication/status` of a box.
fn status(addr: &str) -> serde_json::Value {
    ureq::get(&format!("http://{addr}/replication/status"))
        .set("Authorization", &format!("Bearer {TOKEN}"))
        .timeout(Duration::from_secs(10))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

fn seq(addr: &str) -> i64 {
    status(addr)["seq"].as_i64().unwrap_or(-1)
}

/// A standby process following `primary`, on its own empty file.
struct Standby {
    child: Child,
    addr: String,
    db: PathBuf,
    cfg: PathBuf,
}

impl Drop for Standby {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], db: &Path, cfg: &Path) -> Child {
    Command::new(ORA)
        .arg("--config")
        .arg(cfg)
        .arg("--db")
        .arg(db)
        .arg("-q")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ora")
}

impl Standby {
    fn start(o: &Options, name: &str, primary: &str) -> Standby {
        Standby::start_in(o, &o.dir, name, primary)
    }

    /// A standby whose database lives in `dir`.
    fn start_in(o: &Options, dir: &Path, name: &str, primary: &str) -> Standby {
        let db = dir.join(format!("{name}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let cfg = config(&o.dir, name, &format!("[standby]\ntoken = \"{TOKEN}\"\n"));
        let addr = free_addr();
        let from = format!("http://{primary}");
        let child = spawn(&["standby", "--from", &from, "--bind", &addr], &db, &cfg);
        Standby {
            child,
            addr,
            db,
            cfg,
        }
    }

    /// Waits until it follows and holds everything up to the primary's position now.
    fn caught_up(&self, primary: &str) -> Duration {
        let started = Instant::now();
        let target = seq(primary);
        loop {
            let s = status(&self.addr);
            if s["follower"]["state"] == "following" && s["seq"].as_i64().unwrap_or(-1) >= target {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(600),
                "the standby never caught up: {s}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A primary on a copy of the sample, configured with `extra`.
fn primary(o: &Options, base: &Path, name: &str, extra: &str) -> (Server, PathBuf) {
    let db = scratch_copy(o, base, &format!("{name}.db"));
    let cfg = config(
        &o.dir,
        name,
        &format!("[standby]\ntoken = \"{TOKEN}\"\n{extra}"),
    );
    (start_binary_with(ORA, &db, Some(&cfg)), db)
}

/// POST rate and latencies at each client count (median of `repeats` runs).
fn rates(o: &Options, addr: &str) -> Vec<(usize, f64, f64, f64, Latencies)> {
    o.clients
        .iter()
        .map(|&c| {
            let mut runs = Vec::new();
            let mut lat = Latencies::default();
            for _ in 0..o.repeats {
                let (r, l, _) = load(o, addr, Kind::Post, c);
                runs.push(r);
                lat.merge(l);
            }
            let (med, lo, hi) = median_range(runs);
            (c, med, lo, hi, lat)
        })
        .collect()
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    let none = {
        let (p, _) = primary(o, base, "sb-none", "");
        rates(o, &p.addr)
    };
    let strict = {
        let db = scratch_copy(o, base, "sb-strict.db");
        let rep = o.dir.join("sb-strict-replica");
        let _ = std::fs::remove_dir_all(&rep);
        std::fs::create_dir_all(&rep).expect("replica dir");
        let cfg = config(&o.dir, "sb-strict", "");
        let out = Command::new(ORA)
            .arg("--db")
            .arg(&db)
            .args(["-q", "replica", "init", "--mode", "strict"])
            .arg(&rep)
            .output()
            .expect("replica init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let p = start_binary_with(ORA, &db, Some(&cfg));
        rates(o, &p.addr)
    };
    let (async_rates, lag) = {
        let (p, _) = primary(o, base, "sb-async", "mode = \"async\"\n");
        let s = Standby::start(o, "sb-async-standby", &p.addr);
        s.caught_up(&p.addr);
        let r = rates(o, &p.addr);
        let lag = async_lag(o, &p.addr, &s.addr);
        catch_up(o, t, &p.addr, s);
        (r, lag)
    };
    let sync_rates = {
        let (p, _) = primary(o, base, "sb-sync", "mode = \"sync\"\n");
        let s = Standby::start(o, "sb-sync-standby", &p.addr);
        s.caught_up(&p.addr);
        rates(o, &p.addr)
    };
    // Two boxes have two disks; here both files share one, so each standby fsync also delays
    // the primary's. With the standby's file on a RAM disk its fsync costs nothing: the
    // closest this one box comes to a second box's own disk.
    let ram = Path::new("/dev/shm");
    let on_ram: Vec<_> = ["async", "sync"]
        .iter()
        .map(|mode| {
            let (p, _) = primary(
                o,
                base,
                &format!("sb-{mode}-ram"),
                &format!("mode = \"{mode}\"\n"),
            );
            let s = Standby::start_in(o, ram, &format!("ora-bench-standby-{mode}"), &p.addr);
            s.caught_up(&p.addr);
            let r = rates(o, &p.addr);
            drop(s);
            for suffix in ["", "-wal", "-shm"] {
                let _ =
                    std::fs::remove_file(format!("/dev/shm/ora-bench-standby-{mode}.db{suffix}"));
            }
            r
        })
        .collect();
    for (i, (c, med, lo, hi, _)) in none.iter().enumerate() {
        let row = |name: &str, r: &(usize, f64, f64, f64, Latencies)| {
            let mut lat = r.4.clone();
            format!(
                "{name} {} ({}-{}), {}",
                per_sec(r.1),
                per_sec(r.2),
                per_sec(r.3),
                lat.summary()
            )
        };
        t.add(
            format!(
                "standby: POST movements/s at {c} client(s), median (range) of {}; p50/p99/max ms",
                o.repeats
            ),
            format!(
                "{}; {}",
                row("sync", &sync_rates[i]),
                row("async", &async_rates[i])
            ),
            "no standby; strict replica (local dir)",
            format!(
                "{} ({}-{}); {}",
                per_sec(*med),
                per_sec(*lo),
                per_sec(*hi),
                row("strict", &strict[i])
            ),
            format!(
                "sync {:.0}% / async {:.0}% of none; sync {:.0}% of strict",
                100.0 * sync_rates[i].1 / med,
                100.0 * async_rates[i].1 / med,
                100.0 * sync_rates[i].1 / strict[i].1
            ),
        );
        t.add(
            format!("standby on a RAM disk (its fsync free, as on a second box): POST movements/s at {c} client(s); p50/p99/max ms"),
            format!(
                "{}; {}",
                row("sync", &on_ram[1][i]),
                row("async", &on_ram[0][i])
            ),
            "no standby (above)",
            per_sec(*med),
            format!(
                "sync {:.0}% / async {:.0}% of none",
                100.0 * on_ram[1][i].1 / med,
                100.0 * on_ram[0][i].1 / med
            ),
        );
    }
    let mut lag = lag;
    t.add(
        "standby: async lag, acknowledged on the primary to applied on the standby, 8 clients writing: p50/p99/max ms",
        lag.summary(),
        "",
        "",
        "target p99 < 100 ms",
    );
    promotion(o, t);
}

/// While 8 clients write, one probe movement at a time: from its acknowledgement to the
/// standby holding the primary's position read right after it.
fn async_lag(o: &Options, primary: &str, standby: &str) -> Latencies {
    let mut longer = o.clone();
    longer.seconds = o.seconds * 2.0 + 1.0;
    let writers = {
        let (o, addr) = (longer.clone(), primary.to_string());
        std::thread::spawn(move || load(&o, &addr, Kind::Post, 8))
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut conn = Conn::open(primary);
    let mut lags = Latencies::default();
    let until = Instant::now() + o.duration() * 2;
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let body = format!(
            "{{\"sku\":\"{}\",\"type\":\"Receive\",\"quantity\":1,\"request_id\":\"lag-probe-{n}\"}}",
            ora::sample::sku(0)
        );
        let req = format!(
            "POST /api/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if conn.call(req.as_bytes()) != 201 {
            continue;
        }
        let acked = Instant::now();
        let target = seq(primary);
        while seq(standby) < target {
            std::hint::spin_loop();
        }
        lags.0.push(acked.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = writers.join();
    lags
}

/// The standby is killed, the primary writes for the run's length, the standby comes back and
/// catches up from the kept records; against a fresh standby taking a base of the same file.
fn catch_up(o: &Options, t: &mut Table, primary: &str, mut s: Standby) {
    let _ = s.child.kill();
    let _ = s.child.wait();
    let before = seq(primary);
    let mut longer = o.clone();
    longer.seconds = o.seconds * 3.0;
    let (away_rate, away, _) = load(&longer, primary, Kind::Post, 8);
    let records = seq(primary) - before;
    s.child = spawn(&["serve", "--bind", &s.addr.clone()], &s.db, &s.cfg);
    let back = s.caught_up(primary);
    let fresh = Standby::start(o, "sb-fresh-standby", primary);
    let base = fresh.caught_up(primary);
    t.add(
        format!(
            "standby: catch-up of {records} records ({} movements) after an outage, restart to caught up",
            away.0.len()
        ),
        format!(
            "{:.2} s, {}",
            back.as_secs_f64(),
            per_sec(records as f64 / back.as_secs_f64())
        ),
        "a fresh standby: base of the same file",
        format!("{:.2} s", base.as_secs_f64()),
        format!("{:.1}x faster", base.as_secs_f64() / back.as_secs_f64()),
    );
    t.add(
        "standby: async primary whose standby is away, POST movements/s at 8 clients",
        per_sec(away_rate),
        "",
        "",
        "",
    );
}

/// Promotion on a small pair, three times: from `ora promote` starting to the first
/// movement the promoted box acknowledges (a client posting to it in a loop).
fn promotion(o: &Options, t: &mut Table) {
    let mut times = Vec::new();
    for i in 0..o.repeats.max(3) {
        let db = o.dir.join(format!("sb-promote-{i}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let cfg = config(
            &o.dir,
            &format!("sb-promote-{i}"),
            &format!("[standby]\ntoken = \"{TOKEN}\"\n"),
        );
        let p = start_binary_with(ORA, &db, Some(&cfg));
        let add = "{\"sku\":\"P-1\",\"product_name\":\"Lamp\"}";
        let mut c = Conn::open(&p.addr);
        c.call(format!("POST /api/products HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{add}", add.len()).as_bytes());
        let s = Standby::start(o, &format!("sb-promote-standby-{i}"), &p.addr);
        s.caught_up(&p.addr);
        drop(p);
        let body = "{\"sku\":\"P-1\",\"type\":\"Receive\",\"quantity\":1}";
        let req = format!("POST /api/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let started = Instant::now();
        let mut promote = Command::new(ORA)
            .arg("--config")
            .arg(&s.cfg)
            .arg("--db")
            .arg(&s.db)
            .args(["-q", "promote", "--url", &format!("http://{}", s.addr)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ora promote");
        let mut conn = Conn::open(&s.addr);
        while conn.call(req.as_bytes()) != 201 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the promoted box took no write"
            );
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
        let _ = promote.wait();
    }
    let (med, lo, hi) = median_range(times);
    t.add(
        "standby: promotion, `ora promote` started to the first acknowledged write, median (range) ms",
        format!("{med:.0} ({lo:.0}-{hi:.0})"),
        "",
        "",
        "target < 5,000 ms",
    );
}
