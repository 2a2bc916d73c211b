//! Health, maintenance, metrics and explain as the morning check and the nightly timers use
//! them, including beside a process that keeps writing.

use std::io::Write;
use std::process::Stdio;

use crate::util::{query_i64, Sandbox};

// A brand-new database is all right (nothing to lose, no night gone by yet); its first
// movement without a backup is a warning; a backup and maintenance make it fully OK; a stale
// newest backup fails the check (exit 1); so does a damaged file.
#[test]
fn health_verdicts_follow_backups_maintenance_and_damage() {
    let s = Sandbox::new();
    let v = s.json(&["health"]);
    assert_eq!(v["status"], "ok", "{v}");
    s.ok(&["product", "add", "H-1", "Lamp", "--initial", "1"]);
    let v = s.json(&["health"]);
    assert_eq!(v["status"], "warn", "{v}");
    assert!(v["reasons"].to_string().contains("no backup yet"), "{v}");
    s.ok(&["backup"]);
    s.ok(&["maintain", "daily"]);
    let v = s.json(&["health", "--full"]);
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["facts"]["check_kind"], "integrity_check");
    // How long the night takes, by the jobs' last runs.
    let kinds: Vec<&str> = v["facts"]["round"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["nightly_seconds"].is_number())
        .map(|j| j["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["backup", "maintain_daily"], "{v}");
    assert!(
        v["findings"]
            .to_string()
            .contains("the nightly round takes about"),
        "{v}"
    );
    // Make the only backup look 50 hours old.
    let dir = s.path("backups");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".db.gz") {
            let old = (chrono::Utc::now() - chrono::Duration::hours(50))
                .format("ora-%Y%m%dT%H%M%SZ.db.gz")
                .to_string();
            std::fs::rename(e.path(), dir.join(&old)).unwrap();
            std::fs::rename(
                dir.join(format!("{name}.sha256")),
                dir.join(format!("{old}.sha256")),
            )
            .unwrap();
        }
    }
    let out = s.run(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("50 h old"));
    // The page's server says so: the backup card red with the backup's age, the finding with
    // its hours; and to Prometheus, whose shipped rules page someone.
    let srv = crate::util::Server::start(&s, &[]);
    let (_, _, body) = crate::util::http(&srv.addr, "GET", "/", &[], b"").unwrap();
    let page = String::from_utf8_lossy(&body);
    let card = &page[page.find(r#"<div id="backups-card""#).unwrap()..];
    let card = &card[..card.find("</div></div>").unwrap_or(card.len().min(600))];
    assert!(
        card.starts_with(r#"<div id="backups-card" class="card fail">"#),
        "{card}"
    );
    assert!(
        card.contains(r#"<div class="big">50 h old</div>"#),
        "{card}"
    );
    assert!(page.contains("50 h old"), "{page}");
    crate::monitoring::assert_fires(
        &srv.addr,
        &s.path("."),
        &["OraBackupTooOld", "OraDatabaseUnhealthy"],
    );
    drop(srv);
    // A missing database fails too, with a hint.
    let gone = Sandbox::empty();
    let out = gone.run(&["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("missing"));
}

#[test]
fn health_full_catches_a_damaged_file() {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 20_000, 100, 3).unwrap();
    // The sample's movements are old: without a backup the verdict would fail for that.
    s.ok(&["backup"]);
    s.ok(&["health", "--full"]);
    // Overwrite a few pages in the middle of the ledger with garbage.
    let mut bytes = std::fs::read(&s.db).unwrap();
    let page = 4096;
    for p in [150usize, 151, 300] {
        for b in &mut bytes[p * page + 8..(p + 1) * page] {
            *b = 0xA5;
        }
    }
    std::fs::write(&s.db, &bytes).unwrap();
    let out = s.run(&["health", "--full", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "fail");
    let out = s.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
}

/// A 30,000-movement sample whose shipments were deleted: free pages for a VACUUM to give back.
fn with_free_pages() -> Sandbox {
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 30_000, 100, 5).unwrap();
    let c = rusqlite::Connection::open(&s.db).unwrap();
    // A file made before incremental vacuum: its free pages stay until a VACUUM.
    c.execute_batch(
        "PRAGMA auto_vacuum = NONE; VACUUM; DELETE FROM shipped_items; DELETE FROM shipped_orders;",
    )
    .unwrap();
    s
}

// Daily and weekly maintenance (with VACUUM forced) run beside a process that keeps writing:
// both succeed, the writer sees no error, nothing is lost.
#[test]
fn maintenance_runs_beside_a_live_writer() {
    let s = with_free_pages();
    let cfg = s.path("ora.toml");
    std::fs::write(&cfg, "[maintenance]\nvacuum_free_percent = 0\n").unwrap();
    let mut writer = s
        .cmd(&["stock", "apply"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = writer.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for n in 0..4_000 {
            let l = format!(
                "{{\"sku\":\"SKU-{:05}\",\"type\":\"Receive\",\"quantity\":1}}\n",
                n % 100
            );
            stdin.write_all(l.as_bytes()).unwrap();
        }
    });
    let daily = s.json(&["--config", cfg.to_str().unwrap(), "maintain", "daily"]);
    assert_eq!(daily["ok"], true);
    let weekly = s.json(&["--config", cfg.to_str().unwrap(), "maintain", "weekly"]);
    assert_eq!(weekly["ok"], true);
    let vacuum = step_result(&weekly, "VACUUM");
    assert!(vacuum.contains("->"), "VACUUM did not run: {vacuum}");
    // Drain the answers while the feeder finishes (a full stdout pipe would stall the writer).
    let out = writer.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let acks = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        acks.lines().filter(|l| l.contains("\"ok\":true")).count(),
        4_000
    );
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        34_000
    );
    s.ok(&["verify"]);
    assert_eq!(
        query_i64(
            &s.db,
            "SELECT count(*) FROM ops_log WHERE kind LIKE 'maintain_%' AND ok = 1"
        ),
        2
    );
}

#[test]
fn metrics_and_explain_report_and_refuse_writes() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "A-1", "Widget", "--initial", "3"]);
    let m = s.json(&["metrics"]);
    assert_eq!(m["journal_mode"], "wal");
    assert_eq!(m["foreign_keys"], true);
    let ledger = m["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t[0] == "inventory_transactions")
        .unwrap();
    assert_eq!(ledger[1], 1);
    let e = s.json(&[
        "explain",
        "SELECT * FROM inventory_transactions WHERE sku = 'A-1'",
    ]);
    assert!(
        e["plan"][0].as_str().unwrap().contains("USING INDEX"),
        "{e}"
    );
    assert_eq!(e["rows"], 1);
    let before = s.snapshot();
    for bad in [
        "DELETE FROM inventory_current",
        "DROP TABLE workflows",
        "SELEC 1",
        "",
        "SELECT 1; DELETE FROM workflows",
    ] {
        let err = s.fails(&["explain", bad], 2);
        assert!(err.contains("explain"), "{bad}: {err}");
    }
    assert_eq!(s.snapshot(), before);
}

// Regression: `ora health` said OK while the database could not be written (writes failed with
// exit 3 elsewhere). Now that is a failure that says why; and a write lock another process
// holds is a warning naming that process.
#[test]
fn health_sees_an_unwritable_database_and_a_held_write_lock() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "H-1", "Lamp", "--initial", "3"]);
    // A write lock held by this test process: health waits a second, then names it.
    {
        let c = rusqlite::Connection::open(&s.db).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        let out = s.run(&["health"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("holds the database's write lock"), "{text}");
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "the holder is named: {text}"
        );
        // Reading needs no lock: opening a current file no longer takes the write lock for a
        // migration check (it failed with "migrate ... to schema version 1: locked").
        let list = s.ok(&["stock", "list"]);
        assert!(list.contains("H-1"), "{list}");
        s.ok(&["init"]);
        c.execute_batch("ROLLBACK").unwrap();
    }
    let out = s.run(&["health"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("write lock"));
    if !crate::util::is_root() || !crate::util::have("runuser") {
        crate::util::skip(
            "health_sees_an_unwritable_database_and_a_held_write_lock (read-only part)",
            "needs root and runuser",
        );
        return;
    }
    // Read-only for the service user: the file belongs to nobody, mode 0444.
    let st = std::process::Command::new("chown")
        .args(["-R", "nobody"])
        .arg(s.dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s.db, std::fs::Permissions::from_mode(0o444)).unwrap();
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("runuser");
        crate::util::clean_env(&mut c);
        c.args(["-u", "nobody", "--", crate::util::ORA, "--db"])
            .arg(&s.db)
            .args(args)
            .output()
            .unwrap()
    };
    let write = as_nobody(&["stock", "receive", "H-1", "1"]);
    assert_eq!(
        write.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    let out = as_nobody(&["health"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("cannot be written"), "{text}");
}

// A backup folder that vanished (its disk not mounted) is not "no backup yet": once a backup
// succeeded, an empty or missing folder fails the check and says where and what to do; the
// page's backup card turns red and says MISSING.
#[test]
fn a_vanished_backup_folder_fails_and_says_where() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "H-1", "Lamp", "--initial", "1"]);
    s.ok(&["backup"]);
    let dir = s.path("backups");
    std::fs::rename(&dir, s.path("elsewhere")).unwrap();
    let health = || -> serde_json::Value {
        let out = s.run(&["--json", "health"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = health();
    assert_eq!(v["status"], "fail", "{v}");
    let reasons = v["reasons"].to_string();
    assert!(
        reasons.contains("is gone") && reasons.contains(dir.to_str().unwrap()),
        "{reasons}"
    );
    let srv = crate::util::Server::start(&s, &[]);
    let (_, _, body) = crate::util::http(&srv.addr, "GET", "/", &[], b"").unwrap();
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.contains(r#"<div id="backups-card" class="card fail">"#) && page.contains("MISSING"),
        "{page}"
    );
    crate::monitoring::assert_fires(&srv.addr, &s.path("."), &["OraDatabaseUnhealthy"]);
    // The folder back, empty: the backups were moved away.
    std::fs::create_dir(&dir).unwrap();
    let v = health();
    assert!(
        v["reasons"]
            .to_string()
            .contains("holds no backup of this database"),
        "{v}"
    );
    // Back with its backups: all right again.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::rename(s.path("elsewhere"), &dir).unwrap();
    let v = health();
    assert_ne!(v["status"], "fail", "{v}");
}

// A replica directory that disappears under a running server is named for what it is,
// DIRECTORY MISSING, and warns at once instead of reading green for a minute.
#[test]
fn a_missing_replica_directory_warns_at_once_and_is_named() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "H-1", "Lamp", "--initial", "1"]);
    let rep = s.path("replica");
    std::fs::create_dir(&rep).unwrap();
    s.ok(&["replica", "init", rep.to_str().unwrap()]);
    let srv = crate::util::Server::start(&s, &[]);
    std::fs::rename(&rep, s.path("replica-gone")).unwrap();
    let (st, _) = crate::util::call(
        &srv.addr,
        "POST",
        "/api/transactions",
        None,
        Some(&serde_json::json!({"sku": "H-1", "type": "Receive", "quantity": 1})),
    );
    assert_eq!(st, 201);
    // The shipper notices on its next attempt; wait for it (up to 10 s), never for a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let finding = loop {
        let (_, h) = crate::util::call(&srv.addr, "GET", "/health", None, None);
        let f = h["findings"]
            .as_array()
            .and_then(|a| a.iter().find(|f| f["check"] == "replica").cloned());
        if let Some(f) = f.filter(|f| f["level"] != "ok") {
            break f;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replica stayed green: {h}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(finding["level"], "warn", "{finding}");
    let (_, _, body) = crate::util::http(&srv.addr, "GET", "/", &[], b"").unwrap();
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("DIRECTORY MISSING"), "{page}");
    assert!(!page.contains("NOT REACHABLE"));
    crate::monitoring::assert_fires(&srv.addr, &s.path("."), &["OraReplicaDown"]);
}

// A backup disk the nightly backups will fill within a month (a small tmpfs): `ora health`
// warns with the free space, the backup's size, the retention and what to do; `/metrics` says
// in how many days, and the shipped alert fires on it. The same database backing up to a roomy
// disk says nothing of the kind.
#[test]
fn a_backup_disk_filling_within_a_month_warns_before_it_is_full() {
    if !crate::util::is_root() {
        crate::util::skip("a filling backup disk", "needs root for a tmpfs");
        return;
    }
    let s = Sandbox::empty();
    ora::sample::generate(&s.db, 20_000, 100, 3).unwrap();
    s.ok(&["backup"]);
    let finding = |args: &[&str]| -> Option<serde_json::Value> {
        let mut a = args.to_vec();
        a.extend(["--json", "health"]);
        let v: serde_json::Value = serde_json::from_slice(&s.run(&a).stdout).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"] == "backup_space")
            .cloned()
    };
    assert_eq!(finding(&[]), None, "a roomy disk");

    let disk = s.path("small-disk");
    let _disk = crate::util::Tmpfs::mount(&disk, "8m");
    let cfg = s.path("ora.toml");
    // (The sample's KPIs stop some days back; whether today's are due depends on the hour.)
    std::fs::write(
        &cfg,
        format!(
            "[backup]\ndir = {:?}\n[warehouse]\nkpis_missing = \"off\"\n",
            disk.to_str().unwrap()
        ),
    )
    .unwrap();
    let config = ["--config", cfg.to_str().unwrap()];
    s.ok(&[&config[..], &["backup"]].concat());
    let size = std::fs::read_dir(&disk)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .max()
        .unwrap();
    // Thirty daily backups cannot fit in 8 MB: the forecast must see it.
    assert!(
        size * 30 > 8 << 20,
        "a backup of {size} bytes fits 30 times"
    );
    let f = finding(&config).expect("a backup_space finding");
    assert_eq!(f["level"], "warn", "{f}");
    let text = f["message"].as_str().unwrap();
    for needle in [
        "will be full in about",
        "MB free",
        "kept daily for 30 days",
        "keep_days",
    ] {
        assert!(text.contains(needle), "{needle:?} missing: {text}");
    }
    let srv = crate::util::Server::start(&s, &config);
    let days = crate::util::gauge(&srv.addr, "ora_backup_full_in_days");
    assert!((4.0..=30.0).contains(&days), "{days}");
    crate::monitoring::assert_fires(&srv.addr, &s.path("."), &["OraBackupDiskFilling"]);
}

// A file over `[maintenance] vacuum_max_mb` is not vacuumed by the weekly routine (a VACUUM
// holds every writer for its whole length): the step says so and how to ask; `--vacuum` asks,
// and the free pages are given back. Health's free-page warning names the same command.
#[test]
fn a_large_file_is_vacuumed_only_when_asked() {
    let s = with_free_pages();
    let cfg = s.path("ora.toml");
    // Every file is "large" here; the threshold on free pages is met by any.
    std::fs::write(
        &cfg,
        "[maintenance]\nvacuum_free_percent = 0\nvacuum_max_mb = 0\n[health]\nmax_free_percent = 1\n",
    )
    .unwrap();
    let config = ["--config", cfg.to_str().unwrap()];
    let pages = || query_i64(&s.db, "PRAGMA page_count");
    // (Exit 1: the sample was never backed up; the warning is what matters here.)
    let (_, health) = s.json_at(&[&config[..], &["health"]].concat(), None);
    assert!(
        health["findings"]
            .to_string()
            .contains("ora maintain weekly --vacuum"),
        "{health}"
    );
    let before = pages();
    let v = s.json(&[&config[..], &["maintain", "weekly"]].concat());
    let said = step_result(&v, "VACUUM");
    assert!(
        said.starts_with("not run:") && said.contains("ora maintain weekly --vacuum"),
        "{said}"
    );
    assert_eq!(pages(), before, "the weekly routine vacuumed unasked");
    let v = s.json(&[&config[..], &["maintain", "weekly", "--vacuum"]].concat());
    assert!(step_result(&v, "VACUUM").contains("->"), "{v}");
    assert!(pages() < before, "{} pages after, {before} before", pages());
}

/// The result of `step` in a routine's JSON report.
fn step_result(v: &serde_json::Value, step: &str) -> String {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["step"] == step)
        .map(|st| st["result"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no step {step}: {v}"))
}

/// Feeds `input` (JSON lines) to `ora stock apply` and waits for it to succeed.
fn stock_apply(s: &Sandbox, input: &[u8]) {
    let mut apply = s
        .cmd(&["stock", "apply"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = apply.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    assert!(apply.wait().unwrap().success());
}

// The planner's statistics are refreshed only where they are missing or a table grew tenfold:
// analyzing a large ledger holds every writer, so the nightly routine leaves one whose
// statistics still hold alone, and analyzes it again once it has grown tenfold.
#[test]
fn planner_statistics_are_refreshed_only_when_a_table_grows_tenfold() {
    let s = Sandbox::new();
    s.ok(&["product", "add", "SKU-001", "A widget"]);
    let line = "{\"sku\":\"SKU-001\",\"type\":\"Receive\",\"quantity\":1}\n";
    let apply = |n: usize| stock_apply(&s, line.repeat(n).as_bytes());
    apply(500);
    let stats = || step_result(&s.json(&["maintain", "daily"]), "planner statistics");
    let first = stats();
    assert!(first.contains("inventory_transactions"), "{first}");
    let ledger_stats = "SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'inventory_transactions'";
    assert!(query_i64(&s.db, ledger_stats) > 0);
    // (The first run's own ops_log row may be analyzed the next night; then nothing is.)
    let again = stats();
    assert!(!again.contains("inventory_transactions"), "{again}");
    let third = stats();
    assert!(third.contains("still hold"), "{third}");
    apply(20_000);
    let grown = stats();
    assert!(grown.contains("inventory_transactions"), "{grown}");
    let weekly = s.json(&["maintain", "weekly"]);
    let said = step_result(&weekly, "planner statistics");
    assert!(said.contains("still hold"), "{said}");
}

// A file ora makes gives free pages back in slices: `auto_vacuum = INCREMENTAL` from its first
// table, and the daily routine returns the pages freed since (here: 20,000 idempotency keys
// past their days) in short transactions, the file shrinking without a VACUUM, the weekly one
// needing none. A file made before (the old sample) keeps its free pages until `maintain
// weekly --vacuum`, which also converts it.
#[test]
fn free_pages_go_back_in_slices() {
    let s = Sandbox::new();
    assert_eq!(query_i64(&s.db, "PRAGMA auto_vacuum"), 2, "a new file");
    for n in 0..5 {
        s.ok(&["product", "add", &format!("SKU-{n:03}"), "A widget"]);
    }
    let mut lines = String::new();
    for n in 0..20_000 {
        lines.push_str(&format!(
            "{{\"sku\":\"SKU-{:03}\",\"type\":\"Receive\",\"quantity\":1,\"request_id\":\"key-{n:06}-{}\"}}\n",
            n % 5,
            "k".repeat(80)
        ));
    }
    stock_apply(&s, lines.as_bytes());
    let pages = || query_i64(&s.db, "PRAGMA page_count");
    let before = pages();
    // A year on, every key is past its days: pruned, then given back.
    let later = (chrono::Utc::now() + chrono::Duration::days(400)).to_rfc3339();
    let (code, daily) = s.json_at(&["maintain", "daily"], Some(&later));
    assert_eq!(code, Some(0), "{daily}");
    let said = step_result(&daily, "give back free pages");
    assert!(said.contains("pages given back in"), "{said}");
    assert_eq!(query_i64(&s.db, "PRAGMA freelist_count"), 0, "{said}");
    // "N of M pages given back in S slice(s), ...": how many pages a slice gives back depends
    // on how long each took (the unit tests hold it).
    let given: u64 = said
        .split("of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a number");
    assert!(given > 2048, "{said}");
    assert!(
        pages() < before * 3 / 4,
        "{} pages after, {before} before: {said}",
        pages()
    );
    let weekly = s.json(&["maintain", "weekly"]);
    assert!(
        step_result(&weekly, "VACUUM").starts_with("not needed"),
        "{weekly}"
    );
    // The old file: left as it is by the routines, converted when asked.
    let old = with_free_pages();
    assert_eq!(query_i64(&old.db, "PRAGMA auto_vacuum"), 0);
    let free = query_i64(&old.db, "PRAGMA freelist_count");
    assert!(free > 0);
    let daily = old.json(&["maintain", "daily"]);
    assert!(
        step_result(&daily, "give back free pages").contains("ora maintain weekly --vacuum"),
        "{daily}"
    );
    assert!(
        query_i64(&old.db, "PRAGMA freelist_count") >= free,
        "given back unasked"
    );
    old.ok(&["maintain", "weekly", "--vacuum"]);
    assert_eq!(query_i64(&old.db, "PRAGMA auto_vacuum"), 2, "converted");
    assert_eq!(query_i64(&old.db, "PRAGMA freelist_count"), 0);
}
