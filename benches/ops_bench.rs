//! Operations against the tools an operator would otherwise use, on the same sample in the same
//! run: backup vs `sqlite3 .backup` + `gzip -6`; restore vs `gzip -dc` into place; dump vs
//! `sqlite3 .dump`; recover of a copy with 20 damaged pages vs `sqlite3 .recover | sqlite3`
//! (a shell that can run `.recover` is built by ../shared/tools/sqlite3-recover-cli);
//! health --full vs `PRAGMA integrity_check`; maintain weekly.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ora::file::{backup, progress::Progress};
use ora::ops::{dump, health, maintain, recover, restore};
use ora::store::connection::Tuning;

use crate::common::{scratch_copy, Options, Table};

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn sh(script: &str) -> f64 {
    let t = Instant::now();
    let st = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("run sh");
    assert!(st.success(), "failed: {script}");
    secs(t)
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

/// Reads a file once so both sides start from the page cache.
fn warm(p: &Path) {
    let _ = sh(&format!("cat {} > /dev/null", p.display()));
}

/// The shell whose `.recover` works, built once.
pub(crate) fn recover_cli(o: &Options) -> Option<PathBuf> {
    let out = o.dir.join("sqlite3-recover");
    if !out.exists() {
        let tool =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/sqlite3-recover-cli");
        eprintln!(
            "building a sqlite3 shell that can .recover ({})...",
            tool.display()
        );
        let ok = Command::new(&tool)
            .arg(&out)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("could not build it; the recover reference row is skipped");
            return None;
        }
    }
    Some(out)
}

/// Overwrites `n` random pages (never the first two) with random bytes, in place: the harness
/// never holds the file in memory (a child it starts would count that memory as its own).
pub(crate) fn damage(db: &Path, n: usize) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("open to damage");
    let pages = f.metadata().expect("size").len() / 4096;
    let mut rng = ora::sample::Rng::new(20);
    let mut hit = std::collections::BTreeSet::new();
    while hit.len() < n {
        hit.insert(2 + rng.below(pages - 2));
    }
    for p in hit {
        let junk: Vec<u8> = (0..4096).map(|_| rng.next_u64() as u8).collect();
        f.write_all_at(&junk, p * 4096).expect("damage a page");
    }
    f.sync_all().expect("sync");
}

fn count(db: &Path, table: &str) -> i64 {
    rusqlite::Connection::open(db)
        .and_then(|c| c.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)))
        .unwrap_or(-1)
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    let db = scratch_copy(o, base, "ops-bench.db");
    let work = o.dir.join("ops-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    warm(&db);

    // backup
    let mut bo = backup::BackupOptions::for_db(&db);
    bo.dir = work.join("backups");
    let t0 = Instant::now();
    let b = backup::run(&db, &bo, &Progress::hidden()).expect("ora backup");
    let ora_s = secs(t0);
    let ref_copy = work.join("ref.db");
    let ref_gz = work.join("ref.db.gz");
    let s_backup = sh(&format!(
        "sqlite3 {} \".backup {}\"",
        db.display(),
        ref_copy.display()
    ));
    let s_gzip = sh(&format!(
        "gzip -6 -c {} > {}",
        ref_copy.display(),
        ref_gz.display()
    ));
    let ref_s = s_backup + s_gzip;
    t.add(
        "backup seconds (online, checked, compressed, sha256)",
        format!("{ora_s:.2} s, {}", mb(b.bytes)),
        format!("sqlite3 .backup {s_backup:.2} s + gzip -6 {s_gzip:.2} s"),
        format!("{ref_s:.2} s, {}", mb(size(&ref_gz))),
        format!(
            "{:.1}x faster, {:.2}x the size",
            ref_s / ora_s,
            b.bytes as f64 / size(&ref_gz) as f64
        ),
    );

    // restore
    let target = work.join("restore-target.db");
    std::fs::copy(&db, &target).expect("copy");
    warm(&b.file);
    let t0 = Instant::now();
    restore::run(
        &target,
        &b.file,
        &restore::RestoreOptions::default(),
        &Progress::hidden(),
    )
    .expect("ora restore");
    let ora_s = secs(t0);
    let plain = work.join("gunzip.db");
    let ref_s = sh(&format!(
        "gzip -dc {} > {}",
        ref_gz.display(),
        plain.display()
    ));
    t.add(
        "restore seconds (checksum, decompress, fsync, check, atomic swap)",
        format!("{ora_s:.2} s"),
        "gzip -dc into place (no check, no fsync)",
        format!("{ref_s:.2} s"),
        format!("{:.2}x the time", ora_s / ref_s),
    );

    // dump
    let out = work.join("ora.sql");
    let t0 = Instant::now();
    let d = dump::run(&db, Some(&out), &Tuning::default(), 2).expect("ora dump");
    let ora_s = secs(t0);
    let ref_out = work.join("ref.sql");
    let ref_s = sh(&format!(
        "sqlite3 {} .dump > {}",
        db.display(),
        ref_out.display()
    ));
    t.add(
        "dump seconds (to a file)",
        format!("{ora_s:.2} s, {}", mb(d.bytes)),
        "sqlite3 .dump",
        format!("{ref_s:.2} s, {}", mb(size(&ref_out))),
        format!("{:.2}x faster", ref_s / ora_s),
    );
    for f in [&out, &ref_out, &plain, &ref_copy] {
        let _ = std::fs::remove_file(f);
    }

    // recover on 20 damaged pages
    let damaged = work.join("damaged.db");
    std::fs::copy(&db, &damaged).expect("copy");
    damage(&damaged, 20);
    warm(&damaged);
    let rec = work.join("recovered.db");
    let ro = recover::RecoverOptions {
        out: Some(rec.clone()),
        no_compare: true,
        ..recover::RecoverOptions::default()
    };
    let t0 = Instant::now();
    let r = recover::run(&damaged, &ro, &Progress::hidden()).expect("ora recover");
    let ora_s = secs(t0);
    let ora_rows = count(&rec, "inventory_transactions") - r.reconciled.balancing.len() as i64;
    let total = count(&db, "inventory_transactions");
    match recover_cli(o) {
        Some(cli) => {
            let ref_db = work.join("ref-recovered.db");
            let ref_s = sh(&format!(
                "{} {} .recover | sqlite3 {}",
                cli.display(),
                damaged.display(),
                ref_db.display()
            ));
            let ref_rows = count(&ref_db, "inventory_transactions");
            t.add(
                "recover, 20 damaged pages: seconds, ledger rows kept",
                format!("{ora_s:.2} s, {ora_rows} of {total}"),
                "sqlite3 .recover \\| sqlite3",
                format!("{ref_s:.2} s, {ref_rows} of {total}"),
                format!(
                    "{:.2}x faster, {:+} rows",
                    ref_s / ora_s,
                    ora_rows - ref_rows
                ),
            );
        }
        None => t.add(
            "recover, 20 damaged pages: seconds, ledger rows kept",
            format!("{ora_s:.2} s, {ora_rows} of {total}"),
            "sqlite3 .recover (not available)",
            "-",
            "",
        ),
    }

    // health --full and maintain weekly
    let mut ho = health::HealthOptions::for_db(&db);
    ho.full = true;
    ho.backup_dir = bo.dir.clone();
    let t0 = Instant::now();
    let h = health::run(&db, &ho, &Tuning::default());
    let ora_s = secs(t0);
    let ref_s = sh(&format!(
        "sqlite3 {} 'PRAGMA integrity_check' > /dev/null",
        db.display()
    ));
    t.add(
        "health --full seconds",
        format!("{ora_s:.2} s ({:?})", h.verdict),
        "sqlite3 PRAGMA integrity_check",
        format!("{ref_s:.2} s"),
        format!("{:.2}x the time", ora_s / ref_s),
    );
    let t0 = Instant::now();
    let m = maintain::run(
        &db,
        maintain::Routine::Weekly,
        &maintain::MaintainOptions::default(),
    )
    .expect("maintain weekly");
    t.add(
        "maintain weekly seconds (stats, VACUUM if > 25% free, integrity_check, planner statistics)",
        format!("{:.2} s", secs(t0)),
        "-",
        "-",
        if m.ok {
            "ok".to_string()
        } else {
            "FAILED".to_string()
        },
    );
    let _ = std::fs::remove_dir_all(&work);
}
