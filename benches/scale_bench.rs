//! The costs of ten years of data: every whole-file and everyday operation as a real `ora`
//! process on a copy of the sample, its wall time and peak memory (the child's own rusage),
//! beside what the sqlite3 shell, gzip or cp take for the same reading on the same file in
//! the same run. Run it at two sizes (`--only scale`, then `--only scale --rows 20000000`)
//! and compare the columns: each figure should grow no faster than the data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::common::{median_range, scratch_copy, Options, Table};
use crate::http_bench::{Conn, ORA};
use crate::pages_bench::{latencies, skus};

/// One process's wall time and peak resident memory.
#[derive(Clone, Copy)]
struct Cost {
    secs: f64,
    rss_mb: f64,
}

/// Runs `cmd` to its end; its wall time and peak RSS (from `wait4`). Panics on a failure
/// unless `any_exit` (health and verify exit 1 on a finding).
fn timed(mut cmd: Command, any_exit: bool) -> Cost {
    let t = Instant::now();
    // Reaped by wait4 below, which also gives its rusage.
    #[allow(clippy::zombie_processes)]
    let child = cmd.stdout(Stdio::null()).spawn().expect("spawn");
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter; the pid is our own child's.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    assert!(pid > 0, "wait4");
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    assert!(ok || any_exit, "failed: {cmd:?}");
    Cost {
        secs,
        rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

fn ora(db: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(ORA);
    c.arg("--db").arg(db).arg("-q").args(args);
    c
}

fn sh(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", script]);
    c
}

/// `o.repeats` runs of `make()` (with `before()` ahead of each, untimed): the median and range.
fn runs(o: &Options, mut before: impl FnMut(), mut make: impl FnMut() -> Cost) -> Vec<Cost> {
    (0..o.repeats)
        .map(|_| {
            before();
            make()
        })
        .collect()
}

/// "12.3 s (12.0-12.9), 31 MB": the median wall time with its range and the largest RSS.
fn show(costs: &[Cost]) -> (f64, String) {
    let (m, lo, hi) = median_range(costs.iter().map(|c| c.secs).collect());
    let rss = costs.iter().map(|c| c.rss_mb).fold(0.0, f64::max);
    let range = if costs.len() > 1 {
        format!(" ({} - {})", secs(lo), secs(hi))
    } else {
        String::new()
    };
    (m, format!("{}{range}, {rss:.0} MB", secs(m)))
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{s:.1} s")
    }
}

/// Adds one row: ora's runs beside the reference's (if any).
fn row(t: &mut Table, what: &str, ora: &[Cost], reference: Option<(&str, &[Cost])>) {
    let (m, text) = show(ora);
    match reference {
        Some((name, r)) => {
            let (rm, rtext) = show(r);
            t.add(what, text, name, rtext, format!("{:.2}x the time", m / rm));
        }
        None => t.add(what, text, "", "", ""),
    }
}

fn clear(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("work dir");
}

fn newest(dir: &Path, suffix: &str) -> PathBuf {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v.pop().expect("a file")
}

fn remove_db(p: &Path) {
    let dir = p.parent().expect("a directory");
    let name = p.file_name().expect("a name").to_string_lossy().to_string();
    // What a restore keeps beside the file it replaced.
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let n = e.file_name().to_string_lossy().to_string();
        if n.starts_with(&name) && n != name {
            let _ = std::fs::remove_file(e.path());
        }
    }
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{s}", p.display()));
    }
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    let work = o.dir.join("scale");
    clear(&work);
    let db = scratch_copy(o, base, "scale.db");
    let (busy, quiet) = skus(&db);
    backups(o, &db, &work, t);
    checks(o, &db, &work, t);
    everyday(o, &db, &busy, &quiet, t);
    salvage(o, &db, &work, t);
    replica(o, &db, &work, t);
    serve(&db, &busy, &quiet, t);
    remove_db(&db);
    let _ = std::fs::remove_dir_all(&work);
}

/// Backup, restore and the drill, beside `.backup` + `gzip -6` and `gzip -dc`.
fn backups(o: &Options, db: &Path, work: &Path, t: &mut Table) {
    let bk = work.join("backups");
    let (r, rgz) = (work.join("ref.db"), work.join("ref.db.gz"));
    let ora_b = runs(
        o,
        || clear(&bk),
        || timed(ora(db, &["backup", "--dir", path(&bk)]), false),
    );
    let ref_b = runs(
        o,
        || {},
        || {
            let script = format!(
                "rm -f {r} && sqlite3 {d} '.backup {r}' && gzip -6 -c {r} > {g}",
                r = r.display(),
                d = db.display(),
                g = rgz.display()
            );
            timed(sh(&script), false)
        },
    );
    let _ = std::fs::remove_file(&r);
    row(
        t,
        "`ora backup` (checked, gzip, sha256)",
        &ora_b,
        Some(("sqlite3 .backup + gzip -6", &ref_b)),
    );
    let file = newest(&bk, ".db.gz");
    let out = work.join("restored.db");
    let ora_r = runs(
        o,
        || remove_db(&out),
        || timed(ora(&out, &["restore", path(&file), "--yes"]), false),
    );
    remove_db(&out);
    let gunzip = format!("gzip -dc {} > {}", rgz.display(), out.display());
    let ref_r = runs(o, || {}, || timed(sh(&gunzip), false));
    remove_db(&out);
    let _ = std::fs::remove_file(&rgz);
    let dc = Some(("`gzip -dc` of the same size", ref_r.as_slice()));
    row(t, "`ora restore` of that backup", &ora_r, dc);
    let full = runs(
        o,
        || {},
        || {
            timed(
                ora(db, &["backups", "verify", "--all", "--dir", path(&bk)]),
                false,
            )
        },
    );
    row(t, "`ora backups verify --all` (the full drill)", &full, dc);
    let nightly = runs(
        o,
        || {},
        || {
            timed(
                ora(db, &["backups", "verify", "--nightly", "--dir", path(&bk)]),
                false,
            )
        },
    );
    row(t, "`ora backups verify --nightly`", &nightly, dc);
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// A file of `n` movements as `ora stock apply` reads them.
fn movements(work: &Path, n: usize, skus: usize, seed: u64) -> PathBuf {
    let f = work.join(format!("movements-{seed}.jsonl"));
    let mut w = std::io::BufWriter::new(std::fs::File::create(&f).expect("movements file"));
    let mut rng = ora::sample::Rng::new(seed);
    for _ in 0..n {
        let sku = ora::sample::sku(rng.below(skus as u64) as usize);
        writeln!(
            w,
            "{{\"sku\":\"{sku}\",\"type\":\"Receive\",\"quantity\":1}}"
        )
        .expect("write");
    }
    w.flush().expect("flush");
    f
}

fn apply(db: &Path, file: &Path) -> Cost {
    let mut c = ora(db, &["stock", "apply"]);
    c.stdin(std::fs::File::open(file).expect("movements file"));
    timed(c, false)
}

fn sqlite(db: &Path, sql: &str) -> Command {
    sh(&format!("sqlite3 {} '{sql}' > /dev/null", db.display()))
}

/// Verify (full, then nightly after a day's movements), health and maintenance.
fn checks(o: &Options, db: &Path, work: &Path, t: &mut Table) {
    let integrity = runs(
        o,
        || {},
        || timed(sqlite(db, "PRAGMA integrity_check"), false),
    );
    let quick = runs(o, || {}, || timed(sqlite(db, "PRAGMA quick_check"), false));
    let ic = Some(("`PRAGMA integrity_check`", integrity.as_slice()));
    let qc = Some(("`PRAGMA quick_check`", quick.as_slice()));
    let full = runs(o, || {}, || timed(ora(db, &["verify"]), false));
    row(t, "`ora verify` (the full pass)", &full, ic);
    let ten = movements(work, 10_000, o.skus, 1);
    let applied = runs(o, || {}, || apply(db, &ten));
    row(
        t,
        "10,000 movements through `ora stock apply`",
        &applied,
        None,
    );
    let mut seed = 2;
    let nightly = runs(
        o,
        || {
            seed += 1;
            apply(db, &movements(work, 5_000, o.skus, seed));
        },
        || timed(ora(db, &["verify", "--nightly"]), false),
    );
    row(
        t,
        "`ora verify --nightly` after 5,000 movements",
        &nightly,
        qc,
    );
    let health = runs(o, || {}, || timed(ora(db, &["health"]), true));
    row(t, "`ora health`", &health, qc);
    let deep = runs(o, || {}, || timed(ora(db, &["health", "--full"]), true));
    row(t, "`ora health --full`", &deep, ic);
    let daily = runs(o, || {}, || timed(ora(db, &["maintain", "daily"]), false));
    row(t, "`ora maintain daily`", &daily, None);
    let weekly = runs(o, || {}, || timed(ora(db, &["maintain", "weekly"]), false));
    row(t, "`ora maintain weekly`", &weekly, None);
}

/// The everyday commands and the dump.
fn everyday(o: &Options, db: &Path, busy: &str, quiet: &str, t: &mut Table) {
    for (what, args) in [
        ("`ora metrics`", vec!["metrics"]),
        ("`ora report monthly`", vec!["report", "monthly"]),
        ("`ora stock list`", vec!["stock", "list"]),
        (
            "`ora stock show` (the busiest sku)",
            vec!["stock", "show", busy],
        ),
        (
            "`ora stock show` (a quiet sku)",
            vec!["stock", "show", quiet],
        ),
        (
            "`ora stock history` (a quiet sku)",
            vec!["stock", "history", quiet],
        ),
    ] {
        let c = runs(o, || {}, || timed(ora(db, &args), false));
        row(t, what, &c, None);
    }
    let dump = runs(o, || {}, || timed(ora(db, &["dump"]), false));
    let reference = runs(
        o,
        || {},
        || timed(sh(&format!("sqlite3 {} .dump", db.display())), false),
    );
    row(t, "`ora dump`", &dump, Some(("sqlite3 .dump", &reference)));
}

/// `ora recover` of a copy with 20 overwritten pages, beside `.recover | sqlite3`.
fn salvage(o: &Options, db: &Path, work: &Path, t: &mut Table) {
    let damaged = work.join("damaged.db");
    std::fs::copy(db, &damaged).expect("copy");
    crate::ops_bench::damage(&damaged, 20);
    let out = work.join("recovered.db");
    let ora_c = runs(
        o,
        || remove_db(&out),
        || {
            timed(
                ora(&damaged, &["recover", "--out", path(&out), "--no-compare"]),
                false,
            )
        },
    );
    remove_db(&out);
    let reference = crate::ops_bench::recover_cli(o).map(|cli| {
        let script = format!(
            "rm -f {out}; {cli} {d} .recover | sqlite3 {out}",
            out = out.display(),
            cli = cli.display(),
            d = damaged.display()
        );
        runs(o, || {}, || timed(sh(&script), false))
    });
    let name = "sqlite3 .recover \\| sqlite3";
    row(
        t,
        "`ora recover`, 20 damaged pages",
        &ora_c,
        reference.as_deref().map(|r| (name, r)),
    );
    remove_db(&out);
    remove_db(&damaged);
}

/// The replica's base, the restore of a lost disk from it (RTO) and its nightly proof.
fn replica(o: &Options, db: &Path, work: &Path, t: &mut Table) {
    let dir = work.join("replica");
    let conf = work.join("replica.toml");
    std::fs::write(&conf, format!("[replica]\ndir = \"{}\"\n", dir.display())).expect("config");
    let with_conf = |args: &[&str]| {
        let mut c = ora(db, args);
        c.arg("--config").arg(&conf);
        c
    };
    let init = runs(
        o,
        || {
            let _ = timed(with_conf(&["replica", "disable", "--yes"]), true);
            clear(&dir);
        },
        || timed(with_conf(&["replica", "init", path(&dir)]), false),
    );
    let copy = work.join("copy.db");
    let cp = format!("cp {} {c} && sync {c}", db.display(), c = copy.display());
    let reference = runs(o, || remove_db(&copy), || timed(sh(&cp), false));
    remove_db(&copy);
    row(
        t,
        "`ora replica init` (the base copy)",
        &init,
        Some(("cp + sync", &reference)),
    );
    let out = work.join("from-replica.db");
    let args = [
        "restore",
        "--from-replica",
        path(&dir),
        "--latest",
        "--out",
        path(&out),
        "--yes",
    ];
    let rto = runs(o, || remove_db(&out), || timed(with_conf(&args), false));
    remove_db(&out);
    let generation = std::fs::read_dir(&dir)
        .expect("replica dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gen-"))
        })
        .max()
        .expect("a generation");
    let base = generation.join("base.db.gz");
    let gunzip = format!("gzip -dc {} > {}", base.display(), out.display());
    let reference = runs(o, || remove_db(&out), || timed(sh(&gunzip), false));
    remove_db(&out);
    let dc = ("`gzip -dc` of the base", reference.as_slice());
    row(
        t,
        "`ora restore --from-replica --latest` (RTO of a lost disk)",
        &rto,
        Some(dc),
    );
    let full = runs(o, || {}, || timed(with_conf(&["replica", "verify"]), false));
    row(t, "`ora replica verify` (the full pass)", &full, Some(dc));
    let nightly = runs(
        o,
        || {},
        || timed(with_conf(&["replica", "verify", "--nightly"]), false),
    );
    row(t, "`ora replica verify --nightly`", &nightly, Some(dc));
    let _ = timed(with_conf(&["replica", "disable", "--yes"]), true);
}

/// `ora serve`: start to the first answer, the pages and a product's history, its memory.
fn serve(db: &Path, busy: &str, quiet: &str, t: &mut Table) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let started = Instant::now();
    let child = ora(db, &["serve", "--bind", &addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ora serve");
    let srv = crate::http_bench::Server { child, addr };
    let live = b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut c = loop {
        if let Ok(s) = std::net::TcpStream::connect(&srv.addr) {
            drop(s);
            let mut c = Conn::open(&srv.addr);
            if c.call(live) == 200 {
                break c;
            }
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "ora serve did not answer"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let first = started.elapsed().as_secs_f64();
    t.add(
        "`ora serve`: start to the first 200",
        secs(first),
        "",
        "",
        "",
    );
    let mut floor = latencies(&mut c, "/health/live");
    let floor = floor.summary();
    for (what, p) in [
        ("the status page `/`".to_string(), "/".to_string()),
        (
            format!("a product's page, a quiet sku ({quiet})"),
            format!("/products/{quiet}"),
        ),
        (
            format!("`GET /api/transactions?sku=X&limit=100`, the busiest sku ({busy})"),
            format!("/api/transactions?sku={busy}&limit=100"),
        ),
        (
            format!("`GET /api/transactions?sku=X&limit=100`, a quiet sku ({quiet})"),
            format!("/api/transactions?sku={quiet}&limit=100"),
        ),
    ] {
        let mut l = latencies(&mut c, &p);
        t.add(
            format!("{what}: ms p50/p99/max"),
            l.summary(),
            "`GET /health/live`",
            floor.clone(),
            "",
        );
    }
    t.add(
        "`ora serve`: resident memory after these pages",
        format!("{:.0} MB", rss_mib(srv.child.id())),
        "",
        "",
        "",
    );
}

/// The resident memory (VmRSS) of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
