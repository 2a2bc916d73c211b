//! Housekeeping against the way it was done before: `ora product import` of 20,000 products in
//! one process against `ora product add` once per product (measured on 500 calls, as a rate),
//! `ora stock as-of` on the sample against summing the ledger with the sqlite3 shell, and an
//! encrypted backup of the sample against a plain one (seconds and size), and the writer at 32
//! clients with the slow-statement log on against off.
//! Each figure is the median of `--repeats` runs, with its spread.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::common::{median_range, per_sec, ratio, scratch_copy, Options, Table};

const ORA: &str = env!("CARGO_BIN_EXE_ora");

fn ora(db: &Path, args: &[&str]) {
    let st = Command::new(ORA)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("run ora");
    assert!(
        st.status.success(),
        "ora {args:?}: {}",
        String::from_utf8_lossy(&st.stderr)
    );
}

pub fn run(o: &Options, base: &Path, table: &mut Table) {
    eprintln!("housekeeping: product import vs product add, stock as-of vs sqlite3");
    let n_import = 20_000;
    let n_add = 500;
    let mut import_rates = Vec::new();
    let mut add_rates = Vec::new();
    for r in 0..o.repeats.max(3) {
        let dir = o.dir.join(format!("housekeeping-{r}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let csv = dir.join("products.csv");
        let mut text = String::from("sku,name,reorder_point,initial\n");
        for i in 0..n_import {
            text.push_str(&format!("P-{i},Product {i},5,{}\n", i % 50));
        }
        std::fs::write(&csv, text).expect("write csv");
        let a = dir.join("import.db");
        ora(&a, &["init"]);
        let t = Instant::now();
        ora(&a, &["product", "import", csv.to_str().unwrap_or_default()]);
        import_rates.push(n_import as f64 / t.elapsed().as_secs_f64());
        let b = dir.join("add.db");
        ora(&b, &["init"]);
        let t = Instant::now();
        for i in 0..n_add {
            let (sku, name, initial) = (
                format!("P-{i}"),
                format!("Product {i}"),
                (i % 50).to_string(),
            );
            ora(
                &b,
                &[
                    "product",
                    "add",
                    &sku,
                    &name,
                    "--reorder-point",
                    "5",
                    "--initial",
                    &initial,
                ],
            );
        }
        add_rates.push(n_add as f64 / t.elapsed().as_secs_f64());
        let _ = std::fs::remove_dir_all(&dir);
    }
    let (im, imin, imax) = median_range(import_rates);
    let (am, amin, amax) = median_range(add_rates);
    table.add(
        format!(
            "products added per second: `ora product import` of {n_import} (median of {}, range)",
            o.repeats.max(3)
        ),
        format!("{} ({}-{})", per_sec(im), per_sec(imin), per_sec(imax)),
        format!("`ora product add` per product, {n_add} calls"),
        format!("{} ({}-{})", per_sec(am), per_sec(amin), per_sec(amax)),
        ratio(im, am),
    );

    let copy = scratch_copy(o, base, "as-of");
    let day = "2026-06-30";
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..o.repeats.max(3) {
        let t = Instant::now();
        ora(&copy, &["--json", "stock", "as-of", day]);
        ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let st = Command::new("sqlite3")
            .arg(&copy)
            .arg(format!("SELECT sku, sum(CASE WHEN transaction_type IN ('Receive','Adjust Up') THEN quantity ELSE -quantity END) FROM inventory_transactions WHERE date <= '{day}' GROUP BY sku"))
            .output()
            .expect("run sqlite3");
        assert!(st.status.success());
        theirs.push(t.elapsed().as_secs_f64());
    }
    let (om, omin, omax) = median_range(ours);
    let (tm, tmin, tmax) = median_range(theirs);
    table.add(
        format!("`ora stock as-of {day}` on the sample, seconds (median, range)"),
        format!("{om:.2} s ({omin:.2}-{omax:.2})"),
        "sqlite3: the same sums with GROUP BY",
        format!("{tm:.2} s ({tmin:.2}-{tmax:.2})"),
        ratio(tm, om),
    );
    // The monthly review of the sample (every page read once for the sizes) against the same
    // size table from the sqlite3 shell's dbstat.
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..o.repeats.max(3) {
        let t = Instant::now();
        ora(
            &copy,
            &["--json", "report", "monthly", "--month", "2026-06"],
        );
        ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let ok = Command::new("sqlite3")
            .arg(&copy)
            .arg("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        theirs.push(if ok {
            t.elapsed().as_secs_f64()
        } else {
            f64::NAN
        });
    }
    let (rm, rmin, rmax) = median_range(ours);
    let (dm, dmin, dmax) = median_range(theirs);
    table.add(
        "`ora report monthly --month 2026-06` on the sample, seconds (median, range)",
        format!("{rm:.2} s ({rmin:.2}-{rmax:.2})"),
        "sqlite3: the table and index sizes alone (dbstat)",
        format!("{dm:.2} s ({dmin:.2}-{dmax:.2})"),
        format!("{:.2}x its time", rm / dm),
    );
    let _ = std::fs::remove_file(&copy);

    // Encrypted against plain backups of the sample, interleaved.
    let key_dir = o.dir.join("housekeeping-key");
    let _ = std::fs::remove_dir_all(&key_dir);
    std::fs::create_dir_all(&key_dir).expect("key dir");
    let public = ora::file::backup::keys::generate(&key_dir.join("backup.key")).expect("keygen");
    let mut plain = Vec::new();
    let mut sealed = Vec::new();
    let (mut plain_bytes, mut sealed_bytes) = (0u64, 0u64);
    for r in 0..o.repeats.max(3) {
        for encrypt in [false, true] {
            let mut opts = ora::file::backup::BackupOptions::for_db(base);
            opts.dir = o.dir.join(format!("housekeeping-backups-{r}-{encrypt}"));
            opts.dir_is_default = false;
            let _ = std::fs::remove_dir_all(&opts.dir);
            std::fs::create_dir_all(&opts.dir).expect("backup dir");
            opts.encrypt_to = encrypt.then(|| public.clone());
            let t = Instant::now();
            let rep = ora::file::backup::run(base, &opts, &ora::file::progress::Progress::hidden())
                .expect("backup");
            let secs = t.elapsed().as_secs_f64();
            if encrypt {
                sealed.push(secs);
                sealed_bytes = rep.bytes;
            } else {
                plain.push(secs);
                plain_bytes = rep.bytes;
            }
            let _ = std::fs::remove_dir_all(&opts.dir);
        }
    }
    let _ = std::fs::remove_dir_all(&key_dir);
    slow_log_cost(o, base, table);
    let (sm, smin, smax) = median_range(sealed);
    let (pm, pmin, pmax) = median_range(plain);
    table.add(
        "encrypted backup of the sample (age), seconds (median, range) and size",
        format!(
            "{sm:.2} s ({smin:.2}-{smax:.2}), {:.1} MB",
            sealed_bytes as f64 / 1e6
        ),
        "plain backup, same run, interleaved",
        format!(
            "{pm:.2} s ({pmin:.2}-{pmax:.2}), {:.1} MB",
            plain_bytes as f64 / 1e6
        ),
        format!("{:.2}x the time", sm / pm),
    );
}

/// The writer's rate at 32 clients with the slow-statement log watching every statement
/// (threshold 100 ms) against the log off, on one scratch copy, runs interleaved.
fn slow_log_cost(o: &Options, base: &Path, table: &mut Table) {
    use crate::store_bench::{grouped, open_store_with};
    use ora::store::Synchronous;
    let db = scratch_copy(o, base, "slowlog.db");
    let mut on = Vec::new();
    let mut off = Vec::new();
    for r in 0..o.repeats.max(3) {
        for watching in [true, false] {
            let store = open_store_with(&db, Synchronous::Full, if watching { 100 } else { 0 });
            let run = grouped(o, &store, 32, 1000 + r as u64);
            if watching {
                on.push(run.rate())
            } else {
                off.push(run.rate())
            }
            drop(store);
        }
    }
    let (a, amin, amax) = median_range(on);
    let (b, bmin, bmax) = median_range(off);
    table.add(
        "movements/s at 32 clients (FULL), slow-statement log on (100 ms)",
        format!("{} ({}-{})", per_sec(a), per_sec(amin), per_sec(amax)),
        "same, log off",
        format!("{} ({}-{})", per_sec(b), per_sec(bmin), per_sec(bmax)),
        format!(
            "{:.1}% {} (target at most 3% slower)",
            ((a / b) - 1.0).abs() * 100.0,
            if a < b { "slower" } else { "faster" }
        ),
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// `ora adopt` of the sample converted to the old system's layout (lower-case types, text
/// dates, no ora marker, no order table) against `sqlite3 OLD .dump | sqlite3 NEW` of the same
/// file: seconds, median of `--repeats`, with the range.
pub fn adopt(o: &Options, base: &Path, table: &mut Table) {
    eprintln!("housekeeping: adopt of the sample in the old layout vs sqlite3 .dump | sqlite3");
    let old = o.dir.join("adopt-old.db");
    let _ = std::fs::remove_file(&old);
    {
        let c = rusqlite::Connection::open(&old).expect("old layout");
        c.execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
             ATTACH '{}' AS s;
             CREATE TABLE inventory_current (sku TEXT PRIMARY KEY, product_name TEXT, current_quantity INTEGER,
                 reorder_point INTEGER, alert_level TEXT, last_updated TIMESTAMP);
             INSERT INTO inventory_current SELECT sku, product_name, current_quantity, reorder_point, alert_level,
                 replace(substr(last_updated, 1, 19), 'T', ' ') FROM s.inventory_current;
             CREATE TABLE inventory_transactions (id INTEGER PRIMARY KEY AUTOINCREMENT, date TEXT, sku TEXT,
                 quantity INTEGER, transaction_type TEXT, notes TEXT, created_at TIMESTAMP);
             INSERT INTO inventory_transactions SELECT id, date, sku, quantity, lower(transaction_type), notes,
                 replace(substr(created_at, 1, 19), 'T', ' ') FROM s.inventory_transactions;
             CREATE TABLE shipped_items (id INTEGER PRIMARY KEY, ship_date TEXT, sku_lot TEXT, base_sku TEXT,
                 quantity_shipped INTEGER, order_number TEXT);
             INSERT INTO shipped_items SELECT id, ship_date, sku_lot, base_sku, quantity_shipped, order_number
                 FROM s.shipped_items;
             CREATE TABLE workflows (name TEXT PRIMARY KEY, status TEXT, details TEXT, updated_at TIMESTAMP);
             INSERT INTO workflows SELECT name, status, details, updated_at FROM s.workflows;
             CREATE TABLE system_kpis (snapshot_date TEXT PRIMARY KEY, orders_today INTEGER, shipments_sent INTEGER,
                 pending_uploads INTEGER, system_status TEXT, created_at TIMESTAMP);
             INSERT INTO system_kpis SELECT snapshot_date, orders_today, shipments_sent, pending_uploads,
                 system_status, updated_at FROM s.system_kpis;
             DETACH s;",
            base.display()
        ))
        .expect("convert the sample to the old layout");
    }
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for r in 0..o.repeats.max(3) {
        let new = o.dir.join(format!("adopt-new-{r}.db"));
        let copy = o.dir.join(format!("adopt-dump-{r}.db"));
        for p in [&new, &copy] {
            let _ = std::fs::remove_file(p);
        }
        let t = Instant::now();
        let st = Command::new(ORA)
            .arg("adopt")
            .arg(&old)
            .arg("--out")
            .arg(&new)
            .output()
            .expect("run ora adopt");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        ours.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "sqlite3 '{}' .dump | sqlite3 '{}'",
                old.display(),
                copy.display()
            ))
            .status()
            .expect("run sqlite3");
        assert!(st.success());
        theirs.push(t.elapsed().as_secs_f64());
        for p in [&new, &copy] {
            let _ = std::fs::remove_file(p);
        }
    }
    let _ = std::fs::remove_file(&old);
    let (om, omin, omax) = median_range(ours);
    let (tm, tmin, tmax) = median_range(theirs);
    table.add(
        "`ora adopt` of the sample in the old layout (checked, converted, verified), seconds",
        format!("{om:.2} s ({omin:.2}-{omax:.2})"),
        "sqlite3 OLD .dump \\| sqlite3 NEW",
        format!("{tm:.2} s ({tmin:.2}-{tmax:.2})"),
        format!("{:.2}x the time", om / tm),
    );
}

/// `ora verify`'s checks on the sample with the ledger's chain checked against without it,
/// with integrity_check (what `ora verify` runs) and without (the ledger checks alone).
pub fn chain(o: &Options, base: &Path, table: &mut Table) {
    use ora::ops::verify::{check, VerifyOptions};
    eprintln!("housekeeping: verify with the chain check vs without");
    let conn = rusqlite::Connection::open_with_flags(
        base,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .expect("open the sample");
    for skip_integrity in [false, true] {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for _ in 0..o.repeats.max(3) {
            for (skip_chain, into) in [(false, &mut with), (true, &mut without)] {
                let opts = VerifyOptions {
                    allow_negative_stock: false,
                    skip_integrity,
                    skip_chain,
                    after: None,
                };
                let t = Instant::now();
                let r = check(&conn, &opts).expect("verify the sample");
                into.push(t.elapsed().as_secs_f64());
                assert!(r.violations().is_empty(), "{:?}", r.violations());
            }
        }
        let (wm, wmin, wmax) = median_range(with);
        let (nm, nmin, nmax) = median_range(without);
        let what = if skip_integrity {
            "the ledger checks alone"
        } else {
            "with integrity_check"
        };
        table.add(
            format!("verify of the sample, {what}, with the chain check, seconds"),
            format!("{wm:.2} s ({wmin:.2}-{wmax:.2})"),
            "the same without the chain check",
            format!("{nm:.2} s ({nmin:.2}-{nmax:.2})"),
            format!("{:.2}x the time", wm / nm),
        );
    }
}
