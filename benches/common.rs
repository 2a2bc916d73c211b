//! Shared harness pieces: options, the cached sample database, timing and latency helpers, and
//! the result table every section appends to.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Command-line options of the harness.
#[derive(Clone)]
pub struct Options {
    /// Seconds each throughput measurement runs.
    pub seconds: f64,
    pub rows: u64,
    pub skus: usize,
    /// Run only the sections whose name contains this.
    pub only: Option<String>,
    /// Where the sample database and scratch copies live.
    pub dir: PathBuf,
    /// Client counts of the concurrency rows.
    pub clients: Vec<usize>,
    /// Runs per throughput figure (the median is reported).
    pub repeats: usize,
}

impl Options {
    pub fn from_args() -> Options {
        let mut o = Options {
            seconds: 3.0,
            rows: 2_000_000,
            skus: 20_000,
            only: None,
            dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench-data"),
            clients: vec![1, 8, 32],
            repeats: 3,
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let val = args.get(i + 1).cloned().unwrap_or_default();
            match args[i].as_str() {
                "--seconds" => o.seconds = val.parse().expect("--seconds N"),
                "--rows" => o.rows = val.parse().expect("--rows N"),
                "--skus" => o.skus = val.parse().expect("--skus N"),
                "--only" => o.only = Some(val),
                "--dir" => o.dir = PathBuf::from(val),
                "--clients" => o.clients = val.split(',').map(|c| c.parse().expect("--clients 1,8,32")).collect(),
                "--repeats" => o.repeats = val.parse::<usize>().expect("--repeats N").max(1),
                "--quick" => {
                    o.repeats = 1;
                    o.seconds = 1.0;
                    o.rows = 200_000;
                    o.skus = 5_000;
                    i += 1;
                    continue;
                }
                // cargo bench passes --bench to the harness
                "--bench" => {
                    i += 1;
                    continue;
                }
                other => panic!("unknown harness option {other}; use --seconds/--rows/--skus/--only/--dir/--quick"),
            }
            i += 2;
        }
        o
    }

    pub fn wants(&self, section: &str) -> bool {
        self.only.as_deref().is_none_or(|o| section.contains(o))
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }
}

/// The sample database for these options, generated once and reused.
pub fn sample_db(o: &Options) -> PathBuf {
    std::fs::create_dir_all(&o.dir).expect("create bench dir");
    let path = o.dir.join(format!("sample-{}-{}.db", o.rows, o.skus));
    if !path.exists() {
        let tmp = o.dir.join("sample.tmp.db");
        let _ = std::fs::remove_file(&tmp);
        eprintln!(
            "generating {} ({} rows, {} skus)...",
            path.display(),
            o.rows,
            o.skus
        );
        let t = Instant::now();
        ora::sample::generate(&tmp, o.rows, o.skus, 42).expect("generate sample");
        std::fs::rename(&tmp, &path).expect("rename sample");
        eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());
    }
    // A sample made by an older build is brought to the current schema once.
    let mut conn = rusqlite::Connection::open(&path).expect("open sample");
    ora::store::schema::migrate(&mut conn, &path.display().to_string()).expect("migrate sample");
    path
}

/// A fresh scratch copy of the sample (with no -wal/-shm left over).
pub fn scratch_copy(o: &Options, base: &Path, name: &str) -> PathBuf {
    let dst = o.dir.join(name);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", dst.display()));
    }
    std::fs::copy(base, &dst).expect("copy sample");
    dst
}

/// Writes every file system's dirty pages back before a timed phase, so that no phase pays
/// for the writeback of an earlier one (a copied sample, another setup's checkpoints): on one
/// shared disk that writeback otherwise lands in whichever phase runs next and slows its
/// fsyncs.
pub fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Latencies of individual operations.
#[derive(Default, Clone)]
pub struct Latencies(pub Vec<Duration>);

impl Latencies {
    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }
    /// "p50/p99/max" in milliseconds.
    pub fn summary(&mut self) -> String {
        if self.0.is_empty() {
            return "-".into();
        }
        self.0.sort_unstable();
        let at = |q: f64| {
            let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
            self.0[i].as_secs_f64() * 1e3
        };
        format!("{:.2}/{:.2}/{:.1}", at(0.5), at(0.99), at(1.0))
    }
    pub fn p99_ms(&mut self) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let i = ((self.0.len() as f64 - 1.0) * 0.99).round() as usize;
        self.0[i].as_secs_f64() * 1e3
    }
}

/// One line of the result table: ora's figure beside its reference from the same run.
pub struct Row {
    pub what: String,
    pub ora: String,
    pub reference: String,
    pub reference_value: String,
    pub ratio: String,
}

#[derive(Default)]
pub struct Table {
    pub rows: Vec<Row>,
}

impl Table {
    pub fn add(
        &mut self,
        what: impl Into<String>,
        ora: impl Into<String>,
        reference: impl Into<String>,
        reference_value: impl Into<String>,
        ratio: impl Into<String>,
    ) {
        let row = Row {
            what: what.into(),
            ora: ora.into(),
            reference: reference.into(),
            reference_value: reference_value.into(),
            ratio: ratio.into(),
        };
        eprintln!(
            "  {} | {} | {} {} | {}",
            row.what, row.ora, row.reference, row.reference_value, row.ratio
        );
        self.rows.push(row);
    }

    pub fn markdown(&self) -> String {
        let mut s = String::from("| measurement | ora | reference | reference figure | ora vs reference |\n|---|---:|---|---:|---:|\n");
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.what, r.ora, r.reference, r.reference_value, r.ratio
            ));
        }
        s
    }
}

/// "1.23x" for a ratio of two rates.
pub fn ratio(a: f64, b: f64) -> String {
    if b <= 0.0 {
        "-".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

/// The median of a few runs' figures and their (min, max).
pub fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// A rate formatted with thousands separators.
pub fn per_sec(n: f64) -> String {
    let v = n.round() as u64;
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{out}/s")
}

/// Peak resident memory (VmHWM) of a process (this one when `pid` is `None`), in MiB.
pub fn peak_rss_mib(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/status".to_string(),
        |p| format!("/proc/{p}/status"),
    );
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kib| kib / 1024.0)
}
