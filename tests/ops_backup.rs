//! Backups, drills, restore, retention and archive, with real files and real processes:
//! what an operator relies on the night something goes wrong.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{clean_env, is_root, query_i64, snapshot, Rng, Sandbox, Server, ORA};

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(".db.gz"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A short digest of a file, so a failed comparison prints two lines, not megabytes.
fn file_digest(p: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(p).expect("read");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{} bytes, hash {:x}", bytes.len(), h.finish())
}

fn take_backup(s: &Sandbox) -> PathBuf {
    let v = s.json(&["backup"]);
    PathBuf::from(v["file"].as_str().expect("file"))
}

fn seeded(rows: u64) -> Sandbox {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, rows, 200, 7).expect("sample");
    s
}

// A backup taken while four processes write restores to a database that passes verify.
#[test]
fn backup_under_four_writers_restores_to_a_verified_database() {
    let s = seeded(20_000);
    let mut writers: Vec<_> = (0..4)
        .map(|p| {
            let mut child = s
                .cmd(&["stock", "apply"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn writer");
            let mut stdin = child.stdin.take().expect("stdin");
            std::thread::spawn(move || {
                for n in 0..3_000 {
                    let l = format!("{{\"sku\":\"SKU-{:05}\",\"type\":\"Receive\",\"quantity\":1,\"request_id\":\"w{p}-{n}\"}}\n", (p * 31 + n) % 200);
                    if stdin.write_all(l.as_bytes()).is_err() {
                        break;
                    }
                }
            });
            child
        })
        .collect();
    // Wait until every writer has committed something, then back up while they go on.
    for w in writers.iter_mut() {
        let mut line = String::new();
        BufReader::new(w.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("first ack");
        assert!(line.contains("\"ok\":true"), "{line}");
    }
    let file = take_backup(&s);
    for w in writers {
        let out = w.wait_with_output().expect("writer");
        assert!(out.status.success());
    }
    let total = query_i64(&s.db, "SELECT count(*) FROM inventory_transactions");
    let target = Sandbox::empty();
    target.ok(&["restore", file.to_str().unwrap(), "--yes"]);
    target.ok(&["verify"]);
    let restored = query_i64(&target.db, "SELECT count(*) FROM inventory_transactions");
    assert!(
        restored > 20_000 && restored <= total,
        "restored {restored} of {total}"
    );
    target.ok(&["backups", "verify", file.to_str().unwrap()]);
}

// One flipped byte: the drill fails, restore refuses, the live database is untouched.
#[test]
fn a_flipped_byte_fails_the_drill_and_restore_refuses_it() {
    let s = seeded(5_000);
    let file = take_backup(&s);
    s.ok(&["backups", "verify"]);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();
    let out = s.run(&["backups", "verify", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("checksum does not match"));
    let before = file_digest(&s.db);
    let err = s.fails(&["restore", file.to_str().unwrap(), "--yes"], 2);
    assert!(err.contains("checksum mismatch"), "{err}");
    // Without its sidecar the damage is still caught (gzip CRC), and still nothing changes.
    std::fs::remove_file(format!("{}.sha256", file.display())).unwrap();
    let err = s.fails(&["restore", file.to_str().unwrap(), "--yes"], 2);
    assert!(err.contains("damaged"), "{err}");
    assert_eq!(file_digest(&s.db), before, "the live database changed");
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().contains(".tmp")),
        "temporary files left: {leftovers:?}"
    );
}

// SIGKILL the restore at 30 moments from start to rename: the database at the path always
// opens, passes integrity_check, and is either the old or the new one.
#[test]
fn restore_killed_at_any_moment_leaves_old_or_new() {
    let new = seeded(40_000);
    new.ok(&["workflow", "set", "marker", "new"]);
    let file = take_backup(&new);
    let s = seeded(30_000);
    s.ok(&["workflow", "set", "marker", "old"]);
    s.ok(&["maintain", "daily"]);
    let pristine = s.path("pristine.db");
    std::fs::copy(&s.db, &pristine).unwrap();
    let marker = |db: &Path| -> String {
        let c = rusqlite::Connection::open(db).expect("open");
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(ok, "ok");
        c.query_row(
            "SELECT status FROM workflows WHERE name = 'marker'",
            [],
            |r| r.get(0),
        )
        .expect("marker")
    };
    // How long a whole restore takes here, to spread the kills over it.
    let t = std::time::Instant::now();
    s.ok(&["restore", file.to_str().unwrap(), "--yes"]);
    let whole = t.elapsed();
    assert_eq!(marker(&s.db), "new");
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut seen = std::collections::BTreeMap::new();
    for round in 0..30u64 {
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", s.db.display()));
        }
        std::fs::copy(&pristine, &s.db).unwrap();
        // Moments spread evenly over the whole run (plus a margin), jittered.
        let span = whole.as_micros() as u64 * 13 / 10;
        let delay = std::time::Duration::from_micros(span * round / 30 + rng.below(span / 30 + 1));
        let mut child = s
            .cmd(&["restore", file.to_str().unwrap(), "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let m = marker(&s.db);
        assert!(m == "old" || m == "new", "round {round}: {m}");
        *seen.entry(m).or_insert(0) += 1;
        // A later restore still works after the interrupted one.
        if round % 10 == 9 {
            s.ok(&["restore", file.to_str().unwrap(), "--yes"]);
            assert_eq!(marker(&s.db), "new");
        }
    }
    eprintln!("restore kill outcomes: {seen:?}");
}

// The dump loads into the sqlite3 CLI and gives the same rows.
#[test]
fn dump_loads_into_sqlite3_with_the_same_rows() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        crate::util::skip(
            "dump_loads_into_sqlite3_with_the_same_rows",
            "no sqlite3 CLI (scripts/test.sh installs it)",
        );
        return;
    }
    let s = seeded(3_000);
    s.ok(&[
        "product",
        "add",
        "Q-1",
        "It's a \"quoted\" name; DROP TABLE x; -- ünïcödé ✓",
    ]);
    s.ok(&[
        "stock",
        "receive",
        "Q-1",
        "5",
        "--notes",
        "line one\nline two, 'quoted'",
    ]);
    s.ok(&["kpi", "record", "2026-11-22", "--status", "green"]);
    for (name, gz) in [("d.sql", false), ("d.sql.gz", true)] {
        let out = s.path(name);
        s.ok(&["dump", "--out", out.to_str().unwrap()]);
        let loaded = s.path(&format!("{name}.db"));
        let script = if gz {
            format!("gzip -dc {} | sqlite3 {}", out.display(), loaded.display())
        } else {
            format!("sqlite3 {} < {}", loaded.display(), out.display())
        };
        let st = Command::new("sh").args(["-c", &script]).status().unwrap();
        assert!(st.success(), "sqlite3 could not load {name}");
        assert_eq!(snapshot(&loaded), snapshot(&s.db), "{name} differs");
        let mut c = Command::new(ORA);
        clean_env(&mut c);
        assert!(c
            .arg("--db")
            .arg(&loaded)
            .arg("verify")
            .status()
            .unwrap()
            .success());
    }
}

/// A copy of the backup `src` named as if taken `days_ago` days before `now`.
fn fabricate(src: &Path, dir: &Path, now: chrono::DateTime<chrono::Utc>, days_ago: i64) -> PathBuf {
    let at = now - chrono::Duration::days(days_ago);
    let name = format!("ora-{}.db.gz", at.format("%Y%m%dT%H%M%SZ"));
    let dest = dir.join(&name);
    std::fs::copy(src, &dest).unwrap();
    let sum = std::fs::read_to_string(format!("{}.sha256", src.display())).unwrap();
    let hash = sum.split_whitespace().next().unwrap();
    std::fs::write(
        format!("{}.sha256", dest.display()),
        format!("{hash}  {name}\n"),
    )
    .unwrap();
    dest
}

/// The member names of one tar file (the listing must succeed).
fn tar_members(tar: &str) -> String {
    let out = Command::new("tar").arg("tf").arg(tar).output().unwrap();
    assert!(out.status.success(), "tar tf {tar}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// Retention thins backups out with age (grandfather-father-son): every one for keep_days,
// then the newest of each month for keep_months; the rest is removed, by `ora backup` or
// `ora archive`, and archive packs the kept ones into monthly tars. Never the newest good one.
// Run on two pinned days, a month's first week and its third: which of two backups 35 and 40
// days old is its month's newest changes with the day (the test once failed on the first
// days of a month).
#[test]
fn retention_and_archive_handle_old_backups() {
    for today in ["2027-02-05T10:00:00Z", "2027-02-20T10:00:00Z"] {
        retention_and_archive_on(today);
    }
}

fn retention_and_archive_on(today: &str) {
    let now = chrono::DateTime::parse_from_rfc3339(today)
        .unwrap()
        .with_timezone(&chrono::Utc);
    let s = Sandbox {
        now: Some(today.to_string()),
        ..Sandbox::empty()
    };
    ora::sample::generate(&s.db, 500, 200, 7).expect("sample");
    let made = take_backup(&s);
    let dir = made.parent().unwrap().to_path_buf();
    // A pristine copy outside the directory to fabricate old backups from.
    let fresh = s.path(&made.file_name().unwrap().to_string_lossy());
    std::fs::copy(&made, &fresh).unwrap();
    std::fs::copy(
        format!("{}.sha256", made.display()),
        format!("{}.sha256", fresh.display()),
    )
    .unwrap();
    let old40 = fabricate(&fresh, &dir, now, 40);
    let old35 = fabricate(&fresh, &dir, now, 35);
    let old10 = fabricate(&fresh, &dir, now, 10);
    // Of 35 and 40 days old, the month's newest is kept, the other removed.
    let month = |f: &std::path::Path| f.file_name().unwrap().to_string_lossy()[4..10].to_string();
    let (kept, gone) = if month(&old35) == month(&old40) {
        (&old35, &old40)
    } else {
        (&old40, &old35)
    };
    let gfs = s.path("gfs.toml");
    std::fs::write(&gfs, "[backup]\nkeep_weeks = 0\nkeep_months = 3\n").unwrap();
    let g = gfs.to_str().unwrap();
    // Archive mode (the default): backup removes what no rule keeps and leaves the kept ones
    // for `ora archive`.
    let v = s.json(&["--config", g, "backup"]);
    assert_eq!(v["left_for_archive"], 1, "{today}: {v}");
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{today}: {v}");
    assert!(kept.exists() && !gone.exists(), "{today}");
    let v = s.json(&["--config", g, "archive"]);
    assert_eq!(v["packed"].as_array().unwrap().len(), 1);
    assert!(!kept.exists() && old10.exists());
    let tars: Vec<String> = v["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(tars.len(), 1, "{today}: {tars:?}");
    let listing: String = tars.iter().map(|t| tar_members(t)).collect();
    let name = kept.file_name().unwrap().to_string_lossy();
    assert!(
        listing.contains(&*name) && listing.contains(&format!("{name}.sha256")),
        "{today}: {listing}"
    );
    // Delete mode: expired backups are removed by `ora backup`.
    let old50 = fabricate(&fresh, &dir, now, 50);
    let cfg = s.path("ora.toml");
    std::fs::write(
        &cfg,
        "[backup]\narchive = false\nkeep_weeks = 0\nkeep_months = 0\n",
    )
    .unwrap();
    let v = s.json(&[
        "--config",
        cfg.to_str().unwrap(),
        "backup",
        "--keep-days",
        "30",
    ]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 1);
    assert!(
        !old50.exists() && !std::path::Path::new(&format!("{}.sha256", old50.display())).exists()
    );
    // Everything expired: the newest good backup survives whatever its age.
    for b in backups_in(&dir) {
        std::fs::remove_file(format!("{}.sha256", b.display())).unwrap();
        std::fs::remove_file(&b).unwrap();
    }
    let a = fabricate(&fresh, &dir, now, 60);
    let b = fabricate(&fresh, &dir, now, 45);
    s.json(&["archive"]);
    assert!(
        !a.exists() && b.exists(),
        "the newest good backup was archived"
    );
}

// Three backups started in the same second (the clock pinned) get three names and all
// verify; what runs cut short left behind (a temporary file, a sidecar whose backup never got
// its name) is removed by the next run.
#[test]
fn backups_started_together_keep_their_own_names_and_leftovers_go() {
    let s = Sandbox {
        now: Some("2027-02-05T10:00:00Z".into()),
        ..Sandbox::empty()
    };
    ora::sample::generate(&s.db, 2_000, 100, 7).expect("sample");
    let dir = s.path("backups");
    std::fs::create_dir(&dir).unwrap();
    let partial = dir.join(".ora-20270101T000000Z.db.gz.tmp-999999999");
    let orphan = dir.join("ora-20270101T000001Z.db.gz.sha256");
    std::fs::write(&partial, b"half a backup").unwrap();
    std::fs::write(&orphan, b"00  ora-20270101T000001Z.db.gz\n").unwrap();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            s.cmd(&["--json", "backup"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut files = std::collections::BTreeSet::new();
    let mut cleaned = Vec::new();
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        files.insert(v["file"].as_str().unwrap().to_string());
        cleaned.extend(v["leftovers_removed"].as_array().unwrap().clone());
    }
    assert_eq!(files.len(), 3, "two runs reported the same file: {files:?}");
    assert_eq!(backups_in(&dir).len(), 3);
    assert!(!partial.exists() && !orphan.exists());
    assert_eq!(cleaned.len(), 2, "{cleaned:?}");
    let v = s.json(&["backups", "verify", "--all"]);
    let drills = v.as_array().unwrap();
    assert_eq!(drills.len(), 3, "{v}");
    assert!(drills.iter().all(|d| d["ok"] == true), "{v}");
}

// Restore refuses while `ora serve` holds the database.
#[test]
fn restore_refuses_while_a_server_runs() {
    let s = seeded(500);
    let file = take_backup(&s);
    let server = Server::start(&s, &[]);
    let before = snapshot(&s.db);
    let err = s.fails(&["restore", file.to_str().unwrap(), "--yes"], 3);
    assert!(err.contains(&format!("pid {}", server.child.id())), "{err}");
    assert_eq!(snapshot(&s.db), before);
}

// Things that are not backups are refused before anything changes.
#[test]
fn restore_refuses_inputs_that_are_not_databases() {
    let s = seeded(500);
    let file = take_backup(&s);
    let before = file_digest(&s.db);
    let text = s.path("notes.txt");
    std::fs::write(&text, "not a database at all\n").unwrap();
    let err = s.fails(&["restore", text.to_str().unwrap(), "--yes"], 2);
    assert!(
        err.contains("neither a SQLite database nor a gzip file"),
        "{err}"
    );
    let gz = s.path("notes.txt.gz");
    let st = Command::new("sh")
        .args([
            "-c",
            &format!("gzip -c {} > {}", text.display(), gz.display()),
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let err = s.fails(&["restore", gz.to_str().unwrap(), "--yes"], 2);
    assert!(err.contains("does not contain a SQLite database"), "{err}");
    let truncated = s.path("cut.db.gz");
    let b = std::fs::read(&file).unwrap();
    std::fs::write(&truncated, &b[..b.len() / 2]).unwrap();
    let err = s.fails(&["restore", truncated.to_str().unwrap(), "--yes"], 2);
    assert!(err.contains("damaged"), "{err}");
    let err = s.fails(
        &[
            "restore",
            s.path("missing.db.gz").to_str().unwrap(),
            "--yes",
        ],
        2,
    );
    assert!(err.contains("not a file"), "{err}");
    let other = s.path("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        .unwrap();
    let err = s.fails(&["restore", other.to_str().unwrap(), "--yes"], 2);
    assert!(err.contains("did not create"), "{err}");
    assert_eq!(file_digest(&s.db), before);
    // A plain SQLite copy made by another tool is accepted.
    let copy = s.path("copy.db");
    std::fs::copy(&s.db, &copy).unwrap();
    s.ok(&["restore", copy.to_str().unwrap(), "--yes"]);
    s.ok(&["verify"]);
}

// Backup faults: a missing directory, a read-only one, a full one, a missing database.
#[test]
fn backup_faults_are_reported_and_leave_no_half_backup() {
    let s = seeded(60_000);
    let missing = s.path("no-such-dir");
    let err = s.fails(&["backup", "--dir", missing.to_str().unwrap()], 2);
    assert!(err.contains("does not exist"), "{err}");
    assert!(!missing.exists());
    let nodb = Sandbox::empty();
    let err = nodb.fails(&["backup"], 2);
    assert!(err.contains("no database at"), "{err}");
    if !is_root() {
        crate::util::skip(
            "read-only and full backup directories",
            "need root (runuser, tmpfs)",
        );
        return;
    }
    // Read-only: the database belongs to `nobody`, the backup directory to root.
    let ro = s.path("ro-backups");
    std::fs::create_dir(&ro).unwrap();
    let st = Command::new("chown")
        .args(["-R", "nobody"])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let st = Command::new("chown").arg("root").arg(&ro).status().unwrap();
    assert!(st.success());
    let st = Command::new("chmod")
        .args(["755"])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("runuser")
        .args(["-u", "nobody", "--", ORA, "--db"])
        .arg(&s.db)
        .args(["backup", "--dir"])
        .arg(&ro)
        .env_remove("DATABASE_PATH")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("Permission denied"), "{err}");
    assert!(
        std::fs::read_dir(&ro).unwrap().next().is_none(),
        "files left in the read-only dir"
    );
    // Full: a 1 MB tmpfs cannot hold the backup.
    let full = s.path("full");
    std::fs::create_dir(&full).unwrap();
    if !Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&full)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        crate::util::skip("full backup directory", "cannot mount a tmpfs");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(full.clone());
    let err = s.fails(&["backup", "--dir", full.to_str().unwrap()], 3);
    assert!(err.contains("No space left"), "{err}");
    assert!(
        std::fs::read_dir(&full).unwrap().next().is_none(),
        "a partial backup was left"
    );
    let recorded = query_i64(
        &s.db,
        "SELECT count(*) FROM ops_log WHERE kind = 'backup' AND ok = 0",
    );
    assert!(recorded >= 1);
}

/// `ora backups verify --nightly` (at `at` on ora's clock, when given): exit code and the
/// newest backup's report.
fn nightly_drill(s: &Sandbox, at: Option<&str>) -> (Option<i32>, serde_json::Value) {
    let (code, v) = s.json_at(&["backups", "verify", "--nightly"], at);
    (code, v[0].clone())
}

// The nightly drill: the first night makes the full drill; after it, quick_check on the copy
// and the copy's newest ledger row proved the same as the live database's (one link that
// commits to every row before it), the full drill again a week on. A backup whose newest row
// the database no longer holds the same way fails it.
#[test]
fn the_nightly_drill_proves_the_newest_row_and_drills_fully_each_week() {
    let s = seeded(2_000);
    take_backup(&s);
    let (code, v) = nightly_drill(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("full")), "{v}");
    let (code, v) = nightly_drill(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("quick")), "{v}");
    let newest = query_i64(&s.db, "SELECT max(id) FROM inventory_transactions");
    assert_eq!(v["newest_point"], newest, "{v}");
    let week = (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339();
    let (code, v) = nightly_drill(&s, Some(&week));
    assert_eq!((code, v["pass"].as_str()), (Some(0), Some("full")), "{v}");

    // The live ledger's newest row changed behind ora's back, its guard put back.
    let edit = crate::util::behind_the_guard(
        &s.db,
        &format!("UPDATE inventory_transactions SET chain = x'00' WHERE id = {newest}"),
    );
    rusqlite::Connection::open(&s.db)
        .unwrap()
        .execute_batch(&edit)
        .unwrap();
    let (code, v) = nightly_drill(&s, None);
    assert_eq!((code, v["pass"].as_str()), (Some(1), Some("quick")), "{v}");
    assert!(
        v["violations"][0]
            .as_str()
            .unwrap()
            .contains(&format!("ledger row {newest} differs")),
        "{v}"
    );
}
