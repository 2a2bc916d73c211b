//! Replica rows: movements/s and p99 at each client count with replication off, bounded,
//! strict and strict encrypted (synchronous=FULL, the replica directory on the same disk as the database: the worst
//! case, where both fsyncs share one device), on a RAM disk (ora's own cost alone) and on an
//! ext4 image mounted on a loop device (a second file system); the replica's lag under 32 clients; restoring to
//! a point in the middle of 100,000 movements made after the base, against restoring the
//! backup taken at the base; replica bytes per 100,000 movements; `replica verify` seconds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ora::file::progress::Progress;
use ora::replica::{self, Mode, ReplicaConfig};
use ora::store::{Store, Synchronous};

use crate::common::{
    median_range, per_sec, ratio, scratch_copy, settle, Latencies, Options, Table,
};
use crate::store_bench::{grouped, median, next_movement, open_store, tuning, Run};

/// An ext4 image mounted on a loop device for the run (root only; none when it cannot be made).
struct LoopMount {
    img: PathBuf,
    mnt: PathBuf,
}

impl LoopMount {
    fn new(base: &Path) -> Option<LoopMount> {
        let (img, mnt) = (base.with_extension("img"), base.join("mnt"));
        let _ = std::process::Command::new("umount").arg(&mnt).status();
        let _ = std::fs::remove_file(&img);
        std::fs::create_dir_all(&mnt).ok()?;
        let sh = |args: &[&str]| {
            std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let i = img.to_str()?;
        let made = sh(&["truncate", "-s", "4G", i])
            && sh(&["mkfs.ext4", "-q", "-F", i])
            && sh(&["mount", "-o", "loop", i, mnt.to_str()?]);
        if !made {
            eprintln!("replica: no loop-mounted image (not root?); those rows are left out");
            let _ = std::fs::remove_file(&img);
            return None;
        }
        Some(LoopMount { img, mnt })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.img);
    }
}

fn fresh_dir(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
    std::fs::create_dir_all(p).expect("replica dir");
}

/// A store on `db` replicating to `rep` in `mode` (set up first).
fn replicated(db: &Path, rep: &Path, mode: Mode) -> (Arc<Store>, Arc<replica::ship::Replicator>) {
    replicated_with(db, rep, mode, ReplicaConfig::default())
}

/// [`replicated`], encrypted to a new age key.
fn sealed(db: &Path, rep: &Path, mode: Mode) -> (Arc<Store>, Arc<replica::ship::Replicator>) {
    let to = age::x25519::Identity::generate().to_public().to_string();
    replicated_with(
        db,
        rep,
        mode,
        ReplicaConfig {
            encrypt_to: Some(to),
            ..ReplicaConfig::default()
        },
    )
}

fn replicated_with(
    db: &Path,
    rep: &Path,
    mode: Mode,
    cfg: ReplicaConfig,
) -> (Arc<Store>, Arc<replica::ship::Replicator>) {
    replica::setup::init(
        db,
        &tuning(Synchronous::Full),
        &cfg,
        &replica::setup::InitOptions {
            dir: rep.to_path_buf(),
            mode,
            site: "bench".into(),
            take_over: false,
            force: false,
        },
    )
    .expect("replica init");
    let store = open_store(db, Synchronous::Full);
    let rep = replica::attach(&store, &tuning(Synchronous::Full), &cfg, true)
        .expect("attach")
        .expect("a replicator");
    (store, rep)
}

/// Samples how long each commit takes to become durable on the replica while `busy` runs.
fn lag_sampler(
    rep: Arc<replica::ship::Replicator>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Latencies> {
    std::thread::spawn(move || {
        let mut pending: std::collections::VecDeque<(Instant, i64)> = Default::default();
        let mut lags = Latencies::default();
        while !stop.load(Ordering::Relaxed) {
            let (committed, shipped) = rep.positions();
            let now = Instant::now();
            if pending.back().is_none_or(|b| b.1 < committed) {
                pending.push_back((now, committed));
            }
            while pending.front().is_some_and(|f| f.1 <= shipped) {
                if let Some((t, _)) = pending.pop_front() {
                    lags.0.push(now - t);
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        lags
    })
}

/// `n` movements from 32 clients through `store`.
fn write_n(store: &Arc<Store>, skus: usize, n: usize) {
    let per = n / 32;
    let hs: Vec<_> = (0..32)
        .map(|c| {
            let store = Arc::clone(store);
            std::thread::spawn(move || {
                let mut rng = ora::sample::Rng::new(9000 + c as u64);
                for _ in 0..per {
                    let _ = store.write(next_movement(&mut rng, skus));
                }
            })
        })
        .collect();
    for h in hs {
        h.join().expect("writer");
    }
}

fn seg_bytes(p: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            total += seg_bytes(&path);
        } else if path.extension().is_some_and(|x| x == "seg") {
            // What was written: the newest segment ends with zeros allotted ahead.
            let b = std::fs::read(&path).unwrap_or_default();
            total += b.iter().rposition(|&x| x != 0).map_or(0, |i| i as u64 + 1);
        }
    }
    total
}

/// What strict mode can keep of replication off's rate on one file system.
struct Ceiling {
    place: &'static str,
    /// Requests per group with replication off, and its seconds per group.
    group: f64,
    cycle: f64,
    /// The bare append and fdatasync there (median seconds).
    sync: f64,
    ceiling: f64,
    /// Strict's rate over off's, median of the per-repeat pairs.
    measured: f64,
}

/// Strict's ceiling on each file system a strict setup used: a group with replication off
/// takes `cycle` (its requests over off's rate); strict must add one append with fdatasync
/// of the replica before each COMMIT, so it can keep at most `cycle / (cycle + sync)`, with
/// `sync` measured alone right after the runs ([`crate::bound_bench::append_sync`], a
/// record of about 200 bytes a movement).
fn strict_ceilings(
    places: &[(Option<Mode>, PathBuf, bool)],
    runs: &[Vec<Run>],
    off_group: f64,
    clients: usize,
) -> Vec<Ceiling> {
    let off = median_range(runs[0].iter().map(Run::rate).collect()).0;
    let cycle = off_group / off.max(f64::MIN_POSITIVE);
    let mut out = Vec::new();
    for (i, place) in [(2, "same disk"), (5, "RAM disk"), (7, "loop image")] {
        let (Some((_, dir, _)), Some(rs)) = (places.get(i), runs.get(i)) else {
            continue;
        };
        if i == 5 && !dir.starts_with("/dev/shm") {
            continue; // no RAM disk: that setup stood on the same disk
        }
        let Some(sync) = dir
            .parent()
            .and_then(|d| crate::bound_bench::append_sync(d, 200 * clients, 400))
        else {
            continue;
        };
        let pairs: Vec<f64> = rs
            .iter()
            .zip(&runs[0])
            .map(|(a, b)| a.rate() / b.rate().max(f64::MIN_POSITIVE))
            .collect();
        out.push(Ceiling {
            place,
            group: off_group,
            cycle,
            sync,
            ceiling: cycle / (cycle + sync),
            measured: median_range(pairs).0,
        });
    }
    out
}

/// The setups' names in the rows, by their index in `places` (see [`run`]).
const PLACE_NAMES: [&str; 8] = [
    "off",
    "bounded",
    "strict",
    "strict encrypted",
    "bounded on a RAM disk",
    "strict on a RAM disk",
    "bounded on the loop image",
    "strict on the loop image",
];

/// CPU seconds of this process so far, every thread (0 when `/proc` cannot be read).
fn own_cpu() -> f64 {
    crate::bound_bench::cpu_sample(std::process::id()).map_or(0.0, |c| c.own)
}

fn secs(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    let rep_dir: PathBuf = o.dir.join("replica-bench");
    // Throughput and latency, off / bounded / strict, with the replica on the same disk as the
    // database (the worst case: both fsyncs share one device), then on a RAM disk standing in
    // for a second device (what remains is ora's own cost: capture, the extra WAL bytes, the
    // hand-off).
    let mut lag = Latencies::default();
    let ram = Path::new("/dev/shm")
        .is_dir()
        .then(|| PathBuf::from("/dev/shm/ora-replica-bench"));
    // (mode, directory, encrypted); the indexes below name them.
    let mut places: Vec<(Option<Mode>, PathBuf, bool)> = vec![
        (None, o.dir.join("replica-bench-off"), false),
        (
            Some(Mode::Bounded),
            o.dir.join("replica-bench-bounded"),
            false,
        ),
        (
            Some(Mode::Strict),
            o.dir.join("replica-bench-strict"),
            false,
        ),
        (
            Some(Mode::Strict),
            o.dir.join("replica-bench-strict-sealed"),
            true,
        ),
    ];
    if let Some(r) = &ram {
        places.push((Some(Mode::Bounded), r.join("bounded"), false));
        places.push((Some(Mode::Strict), r.join("strict"), false));
    }
    // A second file system: an ext4 image on its own loop device (the image is a file on the
    // same virtio disk: its own journal and fsyncs, the same device underneath).
    let looped = LoopMount::new(&o.dir.join("replica-loop"));
    if let Some(l) = &looped {
        if ram.is_none() {
            // Keep the indexes: 4 and 5 are the RAM disk's.
            places.push((
                Some(Mode::Bounded),
                o.dir.join("replica-bench-ram-b"),
                false,
            ));
            places.push((Some(Mode::Strict), o.dir.join("replica-bench-ram-s"), false));
        }
        places.push((Some(Mode::Bounded), l.mnt.join("bounded"), false));
        places.push((Some(Mode::Strict), l.mnt.join("strict"), false));
    }
    let mut rates: Vec<(usize, [f64; 8])> = Vec::new();
    let mut lats: Vec<(usize, [String; 8])> = Vec::new();
    // Every configuration is open at once and the runs interleave (off, bounded, strict, ...
    // for each client count and repeat): this VM's disk drifts by 20-30% over minutes, which
    // would otherwise bias whichever configuration ran in a slow stretch.
    let mut setups = Vec::new();
    for (i, (mode, rep_dir, encrypted)) in places.iter().enumerate() {
        eprintln!("replica, preparing {mode:?} in {}", rep_dir.display());
        let db = scratch_copy(o, base, &format!("replica-bench-{i}.db"));
        fresh_dir(rep_dir);
        let (store, rep) = match mode {
            None => (open_store(&db, Synchronous::Full), None),
            Some(m) => {
                let (s, r) = if *encrypted {
                    sealed(&db, rep_dir, *m)
                } else {
                    replicated(&db, rep_dir, *m)
                };
                (s, Some(r))
            }
        };
        setups.push((db, store, rep));
    }
    // The writer's time inside transactions and recording the replica's record, per setup,
    // before each client count (the histograms only grow).
    let spent = |store: &Arc<Store>| {
        let st = store.writer().expect("writer").stats();
        (
            st.commit_seconds.snapshot().2,
            st.capture_seconds.snapshot().2,
        )
    };
    let mut shares: Vec<(usize, f64, f64)> = Vec::new();
    // Per client count: strict's ceiling on each file system (see `strict_ceilings`).
    let mut ceilings: Vec<(usize, Vec<Ceiling>)> = Vec::new();
    let commits = |store: &Arc<Store>| {
        store
            .writer()
            .expect("writer")
            .stats()
            .commits
            .load(Ordering::Relaxed)
    };
    let mut pairs: Vec<(usize, [String; 8])> = Vec::new();
    let mut cpus: Vec<(usize, Vec<f64>)> = Vec::new();
    for &clients in &o.clients {
        let before: Vec<_> = setups.iter().map(|(_, s, _)| spent(s)).collect();
        let off_commits = commits(&setups[0].1);
        let mut runs: Vec<Vec<Run>> = (0..setups.len()).map(|_| Vec::new()).collect();
        // Per setup: the process's CPU seconds over its runs (until the replica has them too)
        // and the movements they made.
        let mut cpu: Vec<(f64, u64)> = vec![(0.0, 0); setups.len()];
        for r in 0..o.repeats {
            for (mi, (_, store, rep)) in setups.iter().enumerate() {
                let stop = Arc::new(AtomicBool::new(false));
                let sampler = match (rep, mi, clients) {
                    (Some(rp), 1, 32) => Some(lag_sampler(Arc::clone(rp), Arc::clone(&stop))),
                    _ => None,
                };
                settle();
                let cpu0 = own_cpu();
                let run = grouped(o, store, clients, 4000 + 100 * r as u64);
                if let Some(rp) = rep {
                    rp.flush(Duration::from_secs(60));
                }
                cpu[mi].0 += own_cpu() - cpu0;
                cpu[mi].1 += run.done;
                runs[mi].push(run);
                stop.store(true, Ordering::Relaxed);
                if let Some(s) = sampler {
                    lag.merge(s.join().expect("sampler"));
                }
            }
        }
        // Each configuration against replication off in the same repeat (the pair ran back
        // to back): the median and range of those ratios, which this VM's drift between
        // repeats does not move as much as it moves a ratio of medians.
        let mut paired: [String; 8] = Default::default();
        for (mi, rs) in runs.iter().enumerate().skip(1) {
            let r: Vec<f64> = rs
                .iter()
                .zip(&runs[0])
                .map(|(a, off)| a.rate() / off.rate().max(f64::MIN_POSITIVE))
                .collect();
            if !r.is_empty() {
                let (m, lo, hi) = median_range(r);
                paired[mi] = format!("{m:.2}x ({lo:.2}-{hi:.2} per repeat)");
            }
        }
        let off_group = runs[0].iter().map(|r| r.done).sum::<u64>() as f64
            / (commits(&setups[0].1) - off_commits).max(1) as f64;
        ceilings.push((clients, strict_ceilings(&places, &runs, off_group, clients)));
        let mut v = [0.0; 8];
        let mut l: [String; 8] = Default::default();
        for (mi, rs) in runs.into_iter().enumerate() {
            let mut m = median(rs);
            v[mi] = m.rate();
            l[mi] = m.latencies.summary();
        }
        rates.push((clients, v));
        lats.push((clients, l));
        pairs.push((clients, paired));
        cpus.push((
            clients,
            cpu.iter()
                .map(|(secs, done)| secs * 1e6 / (*done).max(1) as f64)
                .collect(),
        ));
        let share = |i: usize| {
            let ((c0, r0), (c1, r1)) = (before[i], spent(&setups[i].1));
            (r1 - r0) / (c1 - c0).max(f64::MIN_POSITIVE)
        };
        shares.push((clients, share(1), share(2)));
    }
    for (db, store, rep) in setups {
        drop(rep);
        if let Ok(s) = Arc::try_unwrap(store) {
            s.close();
        }
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
    for (clients, v) in &rates {
        t.add(
            format!("movements/s, {clients} client(s), FULL, replica bounded"),
            per_sec(v[1]),
            "replication off",
            per_sec(v[0]),
            format!("{} (target >= 0.90 at 32)", ratio(v[1], v[0])),
        );
        t.add(
            format!("movements/s, {clients} client(s), FULL, replica strict"),
            per_sec(v[2]),
            "replication off",
            per_sec(v[0]),
            format!("{} (target >= 0.75 at 32)", ratio(v[2], v[0])),
        );
        t.add(
            format!("movements/s, {clients} client(s), FULL, replica strict and encrypted"),
            per_sec(v[3]),
            "replica strict, not encrypted",
            per_sec(v[2]),
            ratio(v[3], v[2]),
        );
        if ram.is_some() && v[4] > 0.0 {
            t.add(
                format!("movements/s, {clients} client(s), FULL, bounded, replica on a RAM disk"),
                per_sec(v[4]),
                "replication off",
                per_sec(v[0]),
                ratio(v[4], v[0]),
            );
            t.add(
                format!("movements/s, {clients} client(s), FULL, strict, replica on a RAM disk"),
                per_sec(v[5]),
                "replication off",
                per_sec(v[0]),
                ratio(v[5], v[0]),
            );
        }
        if v[6] > 0.0 {
            t.add(
                format!("movements/s, {clients} client(s), FULL, bounded, replica on a loop-mounted ext4 image"),
                per_sec(v[6]),
                "replication off",
                per_sec(v[0]),
                format!("{} (target >= 0.90 at 32)", ratio(v[6], v[0])),
            );
            t.add(
                format!("movements/s, {clients} client(s), FULL, strict, replica on a loop-mounted ext4 image"),
                per_sec(v[7]),
                "replication off",
                per_sec(v[0]),
                format!("{} (target >= 0.75 at 32)", ratio(v[7], v[0])),
            );
        }
    }
    // Indexes 4 and 5 stand on the database's disk when there is no RAM disk: not named so.
    let named = |i: usize| ram.is_some() || !(4..=5).contains(&i);
    for (clients, p) in &pairs {
        // The encrypted setup (3) has its own row, against strict.
        let shown: Vec<String> = (1..PLACE_NAMES.len())
            .filter(|&i| i != 3 && !p[i].is_empty() && named(i))
            .map(|i| format!("{} {}", PLACE_NAMES[i], p[i]))
            .collect();
        t.add(
            format!("movements/s, {clients} client(s), FULL, each replica configuration against replication off in the same repeat"),
            shown.join("; "),
            "",
            "",
            "target bounded >= 0.90x, strict >= 0.75x at 32",
        );
    }
    for (clients, per) in &cpus {
        let shown: Vec<String> = per
            .iter()
            .enumerate()
            .filter(|&(i, _)| named(i))
            .map(|(i, us)| format!("{} {us:.0}", PLACE_NAMES[i]))
            .collect();
        t.add(
            format!("CPU µs per movement, {clients} client(s), every thread of the process, the run and the replica catching up after it"),
            shown.join("; "),
            "",
            "",
            "what the replica costs on 2 cores where the clients and the writer share them",
        );
    }
    drop(looped);
    for (clients, cs) in &ceilings {
        if cs.is_empty() {
            continue;
        }
        let shown: Vec<String> = cs
            .iter()
            .map(|c| {
                format!(
                    "{}: {:.2}x, measured {:.2}x ({:.0}% of it)",
                    c.place,
                    c.ceiling,
                    c.measured,
                    100.0 * c.measured / c.ceiling
                )
            })
            .collect();
        let how: Vec<String> = cs
            .iter()
            .map(|c| format!("{} {:.0} µs", c.place, c.sync * 1e6))
            .collect();
        t.add(
            format!("strict's ceiling at {clients} client(s), against replication off"),
            shown.join("; "),
            format!(
                "off's group of {:.1} requests takes {:.0} µs; strict adds at least one append and fdatasync of the replica's file system before each COMMIT, measured alone: {}",
                cs[0].group,
                cs[0].cycle * 1e6,
                how.join(", ")
            ),
            "",
            "ceiling = cycle / (cycle + append)",
        );
    }
    for (clients, v) in &lats {
        t.add(
            format!("latency p50/p99/max ms, {clients} client(s): bounded; strict (same disk)"),
            format!("{}; {}", v[1], v[2]),
            "replication off",
            v[0].clone(),
            "",
        );
    }
    for (clients, bounded, strict) in &shares {
        t.add(
            format!("share of the writer's transaction time spent recording the replica's record, {clients} client(s): bounded; strict"),
            format!("{:.1}%; {:.1}%", bounded * 100.0, strict * 100.0),
            "",
            "",
            "folding the changes into a changeset, its hash, the replica_log row",
        );
    }
    t.add(
        "replica lag under 32 clients, commit to durable on the replica, p50/p99/max ms",
        lag.summary(),
        "target p99 <= 1000 ms",
        "",
        "",
    );

    // Restore to a point, against restoring the backup taken when the base was.
    eprintln!("replica, restore to a point");
    let db = scratch_copy(o, base, "replica-pitr.db");
    fresh_dir(&rep_dir);
    let bk = o.dir.join("replica-pitr-backups");
    fresh_dir(&bk);
    let mut bo = ora::file::backup::BackupOptions::for_db(&db);
    bo.dir = bk.clone();
    bo.dir_is_default = false;
    let backup = ora::file::backup::run(&db, &bo, &Progress::hidden())
        .expect("backup")
        .file;
    let (store, rp) = replicated(&db, &rep_dir, Mode::Bounded);
    let size_before = store
        .read()
        .expect("reader")
        .query_row(
            "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("size");
    let n = 100_000;
    write_n(&store, o.skus, n / 2);
    let middle = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(5));
    write_n(&store, o.skus, n / 2);
    rp.flush(Duration::from_secs(120));
    let size_after = store
        .read()
        .expect("reader")
        .query_row(
            "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
            [],
            |r| r.get::<_, i64>(0),
        )
        .expect("size");
    drop(rp);
    if let Ok(s) = Arc::try_unwrap(store) {
        s.close();
    }
    let out = o.dir.join("replica-pitr-out.db");
    let restored = o.dir.join("replica-backup-out.db");
    let clean = |p: &Path| {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
    };
    let (mut pitr, mut plain) = (Vec::new(), Vec::new());
    let mut applied = 0;
    for _ in 0..o.repeats {
        clean(&out);
        pitr.push(secs(|| {
            let r = replica::restore::run(
                &db,
                &replica::restore::PitrOptions {
                    dir: rep_dir.clone(),
                    target: replica::history::Target::At(middle),
                    out: Some(out.clone()),
                    force: false,
                    allow_negative_stock: false,
                    check: replica::restore::Check::Quick,
                    keys: Default::default(),
                },
                &Progress::hidden(),
            )
            .expect("restore to a point");
            applied = r.commits_applied;
        }));
        clean(&restored);
        plain.push(secs(|| {
            ora::ops::restore::run(&restored, &backup, &Default::default(), &Progress::hidden())
                .expect("restore backup");
        }));
    }
    let (p, pmin, pmax) = median_range(pitr);
    let (b, bmin, bmax) = median_range(plain);
    t.add(
        format!("restore --at the middle of {n} movements after the base ({applied} commits applied), s (min-max)"),
        format!("{p:.2} ({pmin:.2}-{pmax:.2})"),
        "ora restore of the backup taken at the base",
        format!("{b:.2} ({bmin:.2}-{bmax:.2})"),
        format!("{:.2}x its time (target <= 2x)", p / b),
    );
    let bytes = seg_bytes(&rep_dir);
    t.add(
        format!("replica log bytes per 100,000 movements (32 clients, {n} written)"),
        format!("{:.1} MB", bytes as f64 / 1e6 * 100_000.0 / n as f64),
        "growth of the database file over the same movements",
        format!(
            "{:.1} MB",
            (size_after - size_before) as f64 / 1e6 * 100_000.0 / n as f64
        ),
        "",
    );
    let v = secs(|| {
        let r = replica::verify::run(
            &db,
            &rep_dir,
            &tuning(Synchronous::Full),
            &ReplicaConfig::default(),
            false,
            &Default::default(),
            replica::verify::Pass::Full,
        )
        .expect("verify");
        assert!(r.ok, "replica verify failed: {:?}", r.problem);
    });
    t.add(
        "replica verify seconds (newest + one older point)",
        format!("{v:.2}"),
        "",
        "",
        "",
    );
}
