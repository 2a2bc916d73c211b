//! HTTP throughput and latency against a real `ora serve` child on a copy of the sample:
//! `GET /health`, `GET /api/inventory/{sku}` and `POST /api/transactions` at 1, 8 and 64
//! concurrent keep-alive clients, again while backups run back to back, the p99 of /health
//! while writes run, and the server's peak RSS. POST at 64 clients is compared with the
//! store's own group-commit rate measured in the same run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{median_range, per_sec, scratch_copy, Latencies, Options, Table};

pub(crate) const ORA: &str = env!("CARGO_BIN_EXE_ora");

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub(crate) fn start(db: &std::path::Path) -> Server {
    start_binary(ORA, db)
}

/// Starts `ora serve` from `binary` on `db`, on a free loopback port.
pub(crate) fn start_binary(binary: &str, db: &std::path::Path) -> Server {
    start_binary_with(binary, db, None)
}

/// [`start_binary`] with a configuration file.
pub(crate) fn start_binary_with(
    binary: &str,
    db: &std::path::Path,
    config: Option<&std::path::Path>,
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(binary);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let child = cmd
        .args([
            "--db",
            db.to_str().expect("path"),
            "-q",
            "serve",
            "--bind",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ora serve");
    for _ in 0..200 {
        if TcpStream::connect(&addr).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Server { child, addr }
}

/// One keep-alive connection that sends requests and reads whole responses.
pub(crate) struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub(crate) fn open(addr: &str) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        Conn {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        }
    }

    pub(crate) fn call(&mut self, req: &[u8]) -> u16 {
        self.w.write_all(req).expect("send");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0usize;
        loop {
            line.clear();
            self.r.read_line(&mut line).expect("header");
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).expect("body");
        status
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Health,
    Item,
    Post,
    /// The peer comparison's movement: a shipment of one in four, else a receipt of 1-5, each
    /// with its own request id.
    Keyed,
    /// The same mix without a request id: what the request id costs, in the same run.
    Unkeyed,
}

fn request(kind: Kind, rng: &mut ora::sample::Rng, skus: usize) -> Vec<u8> {
    let sku = ora::sample::sku(rng.below(skus as u64) as usize);
    match kind {
        Kind::Health => b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        Kind::Item => {
            format!("GET /api/inventory/{sku} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes()
        }
        Kind::Post => {
            let body = format!(
                "{{\"sku\":\"{sku}\",\"type\":\"Receive\",\"quantity\":{}}}",
                1 + rng.below(5)
            );
            format!(
                "POST /api/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
        Kind::Keyed | Kind::Unkeyed => {
            let (mv, qty) = if rng.below(4) == 0 {
                ("Ship", 1)
            } else {
                ("Receive", 1 + rng.below(5))
            };
            // Drawn for both kinds, so that the two mixes see the same skus and quantities.
            let random = rng.below(u64::MAX);
            let key = if matches!(kind, Kind::Keyed) {
                // Random first, as a scanner's UUID lands at a random place in the key index,
                // and unique across runs of this process (a repeated id would be a replay,
                // answered from the request log without a commit).
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!(
                    ",\"request_id\":\"{random:016x}-{}-{n}\"",
                    std::process::id()
                )
            } else {
                String::new()
            };
            let body = format!("{{\"sku\":\"{sku}\",\"type\":\"{mv}\",\"quantity\":{qty}{key}}}");
            format!(
                "POST /api/transactions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        }
    }
}

/// `clients` connections hammering one endpoint for the run's duration: (rate, latencies, errors).
pub(crate) fn load(o: &Options, addr: &str, kind: Kind, clients: usize) -> (f64, Latencies, u64) {
    let deadline = Instant::now() + o.duration();
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, skus) = (addr.to_string(), o.skus);
            std::thread::spawn(move || {
                let mut conn = Conn::open(&addr);
                let mut rng = ora::sample::Rng::new(9000 + c as u64);
                let (mut lat, mut errors) = (Latencies::default(), 0u64);
                while Instant::now() < deadline {
                    let req = request(kind, &mut rng, skus);
                    let t = Instant::now();
                    let st = conn.call(&req);
                    if (200..300).contains(&st) {
                        lat.0.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Latencies::default();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().expect("client");
        all.merge(l);
        errors += e;
    }
    let n = all.0.len() as f64;
    (n / start.elapsed().as_secs_f64(), all, errors)
}

/// One scanner posting movements over one keep-alive connection, against one thread writing
/// through an in-process store (FULL, its own copy of the sample), in pairs of short runs back
/// to back: this disk's speed drifts over seconds, and both sides of a pair meet the same
/// disk. The figure is the median of the pairs' ratios (at least 9 pairs of a third of the
/// run's duration each).
fn one_writer(o: &Options, base: &std::path::Path, addr: &str, t: &mut Table) {
    let db = scratch_copy(o, base, "http-inprocess.db");
    let store = crate::store_bench::open_store(&db, ora::store::Synchronous::Full);
    let mut slice = o.clone();
    slice.seconds = o.seconds / 3.0;
    let (mut http, mut local, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..(3 * o.repeats).max(9) {
        let h = load(&slice, addr, Kind::Post, 1).0;
        let l = crate::store_bench::grouped(&slice, &store, 1, 5000 + r as u64).rate();
        http.push(h);
        local.push(l);
        ratios.push(h / l);
    }
    drop(store);
    let pairs = ratios.len();
    let (h, h0, h1) = median_range(http);
    let (l, l0, l1) = median_range(local);
    let (q, q0, q1) = median_range(ratios);
    t.add(
        "HTTP POST /api/transactions, 1 keep-alive client: movements/s (median, range)",
        format!("{} ({}-{})", per_sec(h), per_sec(h0), per_sec(h1)),
        "in-process writer, 1 client, FULL, in pairs of runs back to back",
        format!("{} ({}-{})", per_sec(l), per_sec(l0), per_sec(l1)),
        format!(
            "{:.0}% ({:.0}-{:.0}% over {} pairs; target >= 90%)",
            100.0 * q,
            100.0 * q0,
            100.0 * q1,
            pairs
        ),
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// Requests/s of one client sending `GET /health` for the run's duration, on a new
/// connection each time (`fresh`) or on one keep-alive connection.
pub(crate) fn fresh_rate(o: &Options, addr: &str, fresh: bool) -> f64 {
    let deadline = std::time::Instant::now() + o.duration();
    let start = std::time::Instant::now();
    let mut n = 0u64;
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: {addr}\r\n{}\r\n",
        if fresh { "Connection: close\r\n" } else { "" }
    );
    let mut keep = None;
    while std::time::Instant::now() < deadline {
        if fresh {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(req.as_bytes()).expect("send");
            let mut buf = Vec::new();
            s.read_to_end(&mut buf).expect("read");
            // 503 is a verdict (the sample was never backed up), still a full answer.
            assert!(
                buf.starts_with(b"HTTP/1.1 200") || buf.starts_with(b"HTTP/1.1 503"),
                "{}",
                String::from_utf8_lossy(&buf)
            );
        } else {
            let c = keep.get_or_insert_with(|| Conn::open(addr));
            assert!(matches!(c.call(req.as_bytes()), 200 | 503));
        }
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The floor under any one-client HTTP figure on this machine: one byte there and back over
/// loopback between two threads, 20,000 times, with the answering side sleeping in `read`
/// between messages, and with it watching the socket (non-blocking reads, yielding) for up to
/// 150 µs first, as `ora serve` does; median of 3 each.
fn round_trip_floor(t: &mut Table) {
    fn once(watch: bool) -> f64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().expect("accept");
            s.set_nodelay(true).expect("nodelay");
            let mut b = [0u8; 1];
            loop {
                if watch {
                    s.set_nonblocking(true).expect("nonblocking");
                    let start = Instant::now();
                    let mut got = None;
                    while start.elapsed() < Duration::from_micros(150) {
                        match s.read(&mut b) {
                            Ok(n) => {
                                got = Some(n);
                                break;
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::thread::yield_now()
                            }
                            Err(_) => return,
                        }
                    }
                    s.set_nonblocking(false).expect("blocking");
                    let n = match got {
                        Some(n) => n,
                        None => s.read(&mut b).unwrap_or(0),
                    };
                    if n == 0 {
                        return;
                    }
                } else if s.read(&mut b).unwrap_or(0) == 0 {
                    return;
                }
                if s.write_all(&b).is_err() {
                    return;
                }
            }
        });
        let mut c = TcpStream::connect(addr).expect("connect");
        c.set_nodelay(true).expect("nodelay");
        let n = 20_000;
        let mut b = [7u8; 1];
        let start = Instant::now();
        for _ in 0..n {
            c.write_all(&b).expect("send");
            c.read_exact(&mut b).expect("answer");
        }
        let per = start.elapsed().as_secs_f64() * 1e6 / f64::from(n);
        drop(c);
        let _ = server.join();
        per
    }
    let median = |watch: bool| median_range((0..3).map(|_| once(watch)).collect());
    let (s, s0, s1) = median(false);
    let (w, w0, w1) = median(true);
    t.add(
        "loopback round trip of one byte between two threads, the answering side watching its socket for 150 µs: µs (median, range)",
        format!("{w:.1} ({w0:.1}-{w1:.1})"),
        "both sides sleeping in read",
        format!("{s:.1} ({s0:.1}-{s1:.1})"),
        format!("{:.2}x", w / s),
    );
}

/// One client opening a new connection for every `GET /health` (curl in a script, a scanner
/// gateway), against one client on one keep-alive connection; median of the repeats.
fn new_connections(o: &Options, addr: &str, t: &mut Table) {
    let once = |fresh: bool| fresh_rate(o, addr, fresh);
    let mut fresh = Vec::new();
    let mut kept = Vec::new();
    for _ in 0..o.repeats.max(3) {
        fresh.push(once(true));
        kept.push(once(false));
    }
    let (f, f0, f1) = median_range(fresh);
    let (k, k0, k1) = median_range(kept);
    t.add(
        "HTTP GET /health from one client, a new connection per request: requests/s (median, range)",
        format!("{} ({}-{})", per_sec(f), per_sec(f0), per_sec(f1)),
        "the same client on one keep-alive connection",
        format!("{} ({}-{})", per_sec(k), per_sec(k0), per_sec(k1)),
        format!("{:.2}x (target >= 5,000/s; it was 50/s)", f / k),
    );
}

/// Runs the HTTP rows; `store_rate` is the writer's 32-client FULL rate from the store rows.
pub fn run(o: &Options, base: &std::path::Path, t: &mut Table, store_rate: Option<f64>) {
    let db = scratch_copy(o, base, "http-bench.db");
    // A fresh backup beside the copy, so that /health answers 200 (a sample with old movements
    // and no backup fails the verdict, 503).
    let fresh = ora::file::backup::BackupOptions::for_db(&db);
    ora::file::backup::run(&db, &fresh, &ora::file::progress::Progress::hidden())
        .expect("back up the copy");
    let backups = o.dir.join("http-backups");
    let _ = std::fs::remove_dir_all(&backups);
    std::fs::create_dir_all(&backups).expect("backup dir");
    let srv = start(&db);
    round_trip_floor(t);
    new_connections(o, &srv.addr, t);
    one_writer(o, base, &srv.addr, t);
    if o.only.as_deref() == Some("http-one") {
        return;
    }
    let mut post64 = 0.0;
    for (kind, name) in [
        (Kind::Health, "GET /health"),
        (Kind::Item, "GET /api/inventory/{sku}"),
        (Kind::Post, "POST /api/transactions"),
    ] {
        for clients in [1usize, 8, 64] {
            let (rate, mut lat, errors) = load(o, &srv.addr, kind, clients);
            if matches!(kind, Kind::Post) && clients == 64 {
                post64 = rate;
            }
            t.add(
                format!("HTTP {name}, {clients} keep-alive client(s): requests/s, p50/p99/max ms"),
                format!("{}, {}", per_sec(rate), lat.summary()),
                if errors > 0 {
                    format!("{errors} non-2xx")
                } else {
                    String::new()
                },
                "",
                "",
            );
        }
    }
    if let Some(store) = store_rate {
        t.add(
            "HTTP POST at 64 clients vs the store's group commit at 32 clients (FULL)",
            per_sec(post64),
            "store writer, same run",
            per_sec(store),
            format!("{:.0}% (target >= 50%)", 100.0 * post64 / store),
        );
    }
    // The p99 of /health while 8 clients write.
    let writing = Arc::new(AtomicBool::new(true));
    let writers = {
        let (addr, o2) = (
            srv.addr.clone(),
            Options {
                seconds: o.seconds + 1.0,
                rows: o.rows,
                skus: o.skus,
                only: None,
                dir: o.dir.clone(),
                clients: Vec::new(),
                repeats: 1,
            },
        );
        std::thread::spawn(move || load(&o2, &addr, Kind::Post, 8))
    };
    std::thread::sleep(Duration::from_millis(300));
    let (rate, mut lat, _) = load(o, &srv.addr, Kind::Health, 1);
    let (wrate, _, _) = writers.join().expect("writers");
    writing.store(false, Ordering::Relaxed);
    t.add(
        format!(
            "HTTP GET /health while 8 clients POST ({}): requests/s, p50/p99/max ms",
            per_sec(wrate)
        ),
        format!("{}, {}", per_sec(rate), lat.summary()),
        "target: p99 < 10 ms",
        format!("{:.2} ms", lat.p99_ms()),
        if lat.p99_ms() < 10.0 {
            "met".to_string()
        } else {
            "MISSED".to_string()
        },
    );
    // Everything again while backups run back to back.
    let backing = Arc::new(AtomicBool::new(true));
    let backer = {
        let (flag, db, dir) = (Arc::clone(&backing), db.clone(), backups.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while flag.load(Ordering::Relaxed) {
                let st = Command::new(ORA)
                    .args([
                        "--db",
                        db.to_str().unwrap_or_default(),
                        "-q",
                        "backup",
                        "--dir",
                        dir.to_str().unwrap_or_default(),
                        "--keep-days",
                        "1",
                    ])
                    .stdout(Stdio::null())
                    .status();
                if st.map(|s| s.success()).unwrap_or(false) {
                    n += 1;
                }
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
            n
        })
    };
    for (kind, name) in [
        (Kind::Health, "GET /health"),
        (Kind::Item, "GET /api/inventory/{sku}"),
        (Kind::Post, "POST /api/transactions"),
    ] {
        let (rate, mut lat, errors) = load(o, &srv.addr, kind, 64);
        t.add(
            format!(
                "HTTP {name}, 64 clients, backups running back to back: requests/s, p50/p99/max ms"
            ),
            format!("{}, {}", per_sec(rate), lat.summary()),
            if errors > 0 {
                format!("{errors} non-2xx")
            } else {
                String::new()
            },
            "",
            "",
        );
    }
    backing.store(false, Ordering::Relaxed);
    let n = backer.join().unwrap_or(0);
    t.add(
        "backups completed during the loaded HTTP runs",
        n.to_string(),
        "",
        "",
        "",
    );
    t.add(
        "peak RSS of the ora serve process",
        format!(
            "{:.0} MiB",
            crate::common::peak_rss_mib(Some(srv.child.id()))
        ),
        "",
        "",
        "",
    );
    drop(srv);
    let _ = std::fs::remove_dir_all(&backups);
    let _ = std::fs::remove_dir_all(&fresh.dir);
}
