//! The box is gone: `ora restore --from-postgres` rebuilds its database from a real
//! PostgreSQL mirror alone, every mirrored row with its key, `verify` clean, and forwarding
//! resumes with no duplicates and no full copy; two sites share the mirror and rebuilding one
//! leaves the other alone; mirrors it cannot trust are refused.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use crate::pg::PgCluster;
use crate::remote_pg::wait_caught_up;
use crate::util::{query_i64, Sandbox, Server};

fn config(s: &Sandbox, url: &str, site: &str) -> String {
    let cfg = s.path("ora.toml");
    std::fs::write(
        &cfg,
        format!("[remote]\nsite_id = {site:?}\nbatch = 300\n\n[remote.postgres]\nurl = {url:?}\n"),
    )
    .unwrap();
    cfg.to_str().unwrap().to_string()
}

/// Every mirrored column of each table, in key order, as psql prints them.
const TABLES: &[(&str, &str, &str)] = &[
    (
        "inventory_current",
        "sku",
        "sku, product_name, current_quantity, reorder_point, last_updated",
    ),
    (
        "inventory_transactions",
        "id",
        "id, date, sku, quantity, transaction_type, notes, created_at, request_id, actor",
    ),
    (
        "shipped_orders",
        "order_number",
        "order_number, ship_date, item_count, total_units, created_at",
    ),
    (
        "shipped_items",
        "id",
        "id, ship_date, sku_lot, base_sku, quantity_shipped, order_number, transaction_id",
    ),
    (
        "workflows",
        "name",
        "name, status, details, version, updated_at",
    ),
    (
        "system_kpis",
        "snapshot_date",
        "snapshot_date, orders_today, shipments_sent, pending_uploads, system_status, updated_at",
    ),
    (
        "audit_log",
        "id",
        "id, at, actor, request_id, op, tbl, key, action, old, new, sku",
    ),
];

/// The rows of a local table as psql's unaligned output prints them (`|`, NULL empty).
fn local_rows(db: &std::path::Path, table: &str, key: &str, cols: &str) -> String {
    let c = rusqlite::Connection::open(db).unwrap();
    let n = cols.split(',').count();
    let mut st = c
        .prepare(&format!("SELECT {cols} FROM {table} ORDER BY {key}"))
        .unwrap();
    let rows = st
        .query_map([], |r| {
            let mut f = Vec::new();
            for i in 0..n {
                let v: rusqlite::types::Value = r.get(i)?;
                f.push(match v {
                    rusqlite::types::Value::Null => String::new(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                });
            }
            Ok(f.join("|"))
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows.join("\n")
}

fn mirror_rows(pg: &PgCluster, site: &str, table: &str, key: &str, cols: &str) -> String {
    pg.psql(&format!(
        "SELECT {cols} FROM ora.{table} WHERE site_id = '{site}' ORDER BY {key}{}",
        if key == "id" { "" } else { " COLLATE \"C\"" }
    ))
}

/// Every mirrored table of `db` equals the mirror's rows of `site`, compared with psql.
fn assert_mirror_equals(pg: &PgCluster, site: &str, db: &std::path::Path) {
    for (t, key, cols) in TABLES {
        let local = local_rows(db, t, key, cols);
        let remote = mirror_rows(pg, site, t, key, cols);
        let first = local
            .lines()
            .zip(remote.lines())
            .find(|(l, r)| l != r)
            .map(|(l, r)| format!("local {l:?}, mirror {r:?}"))
            .unwrap_or_default();
        assert!(
            local == remote,
            "{t} differs between the local file and the mirror ({} vs {} lines; first: {first})",
            local.lines().count(),
            remote.lines().count()
        );
    }
}

/// Movements through `stock apply` (the real writer), `n` of them spread over `skus`.
fn movements(s: &Sandbox, cfg: &str, tag: &str, n: usize, skus: usize) {
    let mut c = s
        .cmd(&["--config", cfg, "stock", "apply"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let tag = tag.to_string();
    let feeder = std::thread::spawn(move || {
        for i in 0..n {
            let kind = if (i / skus) % 3 == 2 {
                "Ship"
            } else {
                "Receive"
            };
            let l = format!("{{\"sku\":\"SKU-{:02}\",\"type\":\"{kind}\",\"quantity\":1,\"request_id\":\"{tag}-{i}\",\"notes\":\"n{i}\"}}\n", i % skus);
            stdin.write_all(l.as_bytes()).unwrap();
        }
    });
    let out = c.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| l.unwrap())
        .collect();
    let failed: Vec<&String> = lines
        .iter()
        .filter(|l| !l.contains("\"ok\":true"))
        .collect();
    assert!(
        lines.len() == n && failed.is_empty(),
        "every movement is acknowledged: {} lines, failed: {:?}",
        lines.len(),
        failed.iter().take(3).collect::<Vec<_>>()
    );
}

fn seed(s: &Sandbox, cfg: &str, tag: &str) {
    for i in 0..12 {
        s.ok(&[
            "--config",
            cfg,
            "product",
            "add",
            &format!("SKU-{i:02}"),
            &format!("{tag} product {i}"),
            "--initial",
            "50",
        ]);
    }
    s.ok(&[
        "--config",
        cfg,
        "shipment",
        "record",
        &format!("{tag}-ORD-1"),
        "--item",
        "SKU-01:2:LOT-A",
        "--item",
        "SKU-02:3",
    ]);
    s.ok(&["--config", cfg, "workflow", "set", "picking", "running"]);
    s.ok(&[
        "--config",
        cfg,
        "kpi",
        "record",
        "2026-11-30",
        "--orders-today",
        "7",
    ]);
}

fn remove_db(s: &Sandbox) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = s.db.as_os_str().to_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

// Writes through `ora serve` reach the mirror; the server is killed and its file deleted; the
// database rebuilt from PostgreSQL alone holds every row the mirror had (compared with psql,
// table by table), passes verify, and a new server forwards only what is new: no full copy,
// no duplicates, the mirror equal to the file again.
#[test]
fn a_lost_box_is_rebuilt_from_the_mirror_and_forwarding_resumes() {
    let Some(pg) = PgCluster::start("a_lost_box_is_rebuilt_from_the_mirror_and_forwarding_resumes")
    else {
        return;
    };
    let s = Sandbox::empty();
    let cfg = config(&s, &pg.url(), "north");
    s.ok(&["--config", &cfg, "init"]);
    seed(&s, &cfg, "north");
    let srv = Server::start(&s, &["--config", &cfg]);
    std::thread::scope(|sc| {
        for w in 0..3 {
            let (s, cfg) = (&s, &cfg);
            sc.spawn(move || movements(s, cfg, &format!("w{w}"), 700, 12));
        }
    });
    wait_caught_up(&srv.addr, &s.db, Duration::from_secs(120));
    drop(srv); // SIGKILL: the box is gone
    let before = local_rows(&s.db, "inventory_transactions", "id", "id, sku, quantity");
    remove_db(&s);

    let r = s.json(&["--config", &cfg, "restore", "--from-postgres"]);
    assert_eq!(r["site"], "north");
    assert_eq!(r["integrity"], "integrity_check ok, verify ok");
    assert!(
        r["fixes"]["stock_from_movements"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{r}"
    );
    assert!(
        r["not_in_mirror"].to_string().contains("request_log"),
        "{r}"
    );
    let ledger = r["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "inventory_transactions")
        .unwrap()["rows"]
        .as_i64()
        .unwrap();
    assert_eq!(ledger, 12 + 2 + 3 * 700);
    assert_eq!(
        local_rows(&s.db, "inventory_transactions", "id", "id, sku, quantity"),
        before,
        "every acknowledged movement is back with its ledger id"
    );
    assert_mirror_equals(&pg, "north", &s.db);
    let v = s.json(&["--config", &cfg, "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let last_seq = r["mirror"]["last_seq"].as_i64().unwrap();
    assert!(last_seq > 0);

    // Serving again: only the new changes travel.
    let srv = Server::start(&s, &["--config", &cfg]);
    movements(&s, &cfg, "after", 300, 12);
    wait_caught_up(&srv.addr, &s.db, Duration::from_secs(120));
    drop(srv);
    let first_new = query_i64(&s.db, "SELECT coalesce(min(seq), 0) FROM outbox");
    assert!(
        first_new == 0 || first_new > last_seq,
        "sequence numbers continue after the mirror's"
    );
    let delivered = query_i64(
        &s.db,
        "SELECT delivered FROM sync_control WHERE target = 'postgres'",
    );
    let now_seq = query_i64(
        &s.db,
        "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
    );
    assert_eq!(
        delivered,
        now_seq - last_seq,
        "only the changes made after the rebuild were delivered (a full copy would send every row)"
    );
    assert_eq!(
        pg.psql("SELECT last_seq FROM ora.sync_state WHERE site_id = 'north'"),
        now_seq.to_string()
    );
    assert_mirror_equals(&pg, "north", &s.db);
    assert_eq!(
        query_i64(&s.db, "SELECT count(*) FROM inventory_transactions"),
        12 + 2 + 3 * 700 + 300
    );
}

// Two sites share the central database: rebuilding north gives north's rows only and leaves
// south's untouched; a site the mirror does not know is refused with the sites it has.
#[test]
fn two_sites_rebuild_independently_and_unknown_sites_are_refused() {
    let Some(pg) =
        PgCluster::start("two_sites_rebuild_independently_and_unknown_sites_are_refused")
    else {
        return;
    };
    let north = Sandbox::empty();
    let south = Sandbox::empty();
    let ncfg = config(&north, &pg.url(), "north");
    let scfg = config(&south, &pg.url(), "south");
    for (s, cfg, tag, n) in [(&north, &ncfg, "north", 90), (&south, &scfg, "south", 40)] {
        s.ok(&["--config", cfg, "init"]);
        s.ok(&["--config", cfg, "sync", "postgres", "--once"]);
        seed(s, cfg, tag);
        movements(s, cfg, tag, n, 12);
        s.ok(&["--config", cfg, "sync", "postgres", "--once"]);
    }
    let south_before: Vec<String> = TABLES
        .iter()
        .map(|(t, k, c)| mirror_rows(&pg, "south", t, k, c))
        .collect();

    remove_db(&north);
    north.json(&["--config", &ncfg, "restore", "--from-postgres"]);
    assert_mirror_equals(&pg, "north", &north.db);
    assert_eq!(
        query_i64(&north.db, "SELECT count(*) FROM inventory_transactions"),
        12 + 2 + 90
    );
    let names = local_rows(&north.db, "inventory_current", "sku", "product_name");
    assert!(names.lines().all(|n| n.starts_with("north")), "{names}");
    let south_after: Vec<String> = TABLES
        .iter()
        .map(|(t, k, c)| mirror_rows(&pg, "south", t, k, c))
        .collect();
    assert_eq!(south_before, south_after, "south's rows are untouched");

    // South rebuilt beside its file with --out and --site, from a URL given on the line.
    let out = south.path("south-rebuilt.db");
    south.json(&[
        "restore",
        "--from-postgres",
        &pg.url(),
        "--site",
        "south",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(
        local_rows(
            &out,
            "inventory_transactions",
            "id",
            "id, sku, quantity, request_id"
        ),
        local_rows(
            &south.db,
            "inventory_transactions",
            "id",
            "id, sku, quantity, request_id"
        )
    );

    // An unknown site: refused, naming the sites the mirror holds; nothing written.
    let gone = north.path("west.db");
    let err = north.fails(
        &[
            "--config",
            &ncfg,
            "restore",
            "--from-postgres",
            "--site",
            "west",
            "--out",
            gone.to_str().unwrap(),
        ],
        2,
    );
    assert!(
        err.contains("no site \"west\"") && err.contains("north, south"),
        "{err}"
    );
    assert!(!gone.exists());
    // A hostile site id never reaches PostgreSQL.
    let err = north.fails(
        &[
            "--config",
            &ncfg,
            "restore",
            "--from-postgres",
            "--site",
            "x'; DROP TABLE ora.sync_state; --",
            "--out",
            gone.to_str().unwrap(),
        ],
        2,
    );
    assert!(err.contains("--site"), "{err}");
    assert!(!gone.exists());
}

// Mirrors that cannot be trusted are refused and nothing is written: a newer mirror layout, a
// mirrored column missing, a database with no mirror, an unreachable server, an --out that
// exists. A mirror that stopped in the middle of a change (stock not matching its movements,
// a product row missing) is rebuilt with each fix listed, and passes verify.
#[test]
fn untrustworthy_mirrors_are_refused_and_a_torn_one_is_fixed_openly() {
    let Some(pg) =
        PgCluster::start("untrustworthy_mirrors_are_refused_and_a_torn_one_is_fixed_openly")
    else {
        return;
    };
    let s = Sandbox::empty();
    let cfg = config(&s, &pg.url(), "north");
    let out = s.path("rebuilt.db");
    let out_s = out.to_str().unwrap().to_string();
    let rebuild = |code: i32| {
        s.fails(
            &[
                "--config",
                &cfg,
                "restore",
                "--from-postgres",
                "--out",
                &out_s,
            ],
            code,
        )
    };

    // No mirror in this database yet.
    let err = rebuild(2);
    assert!(err.contains("no schema \"ora\""), "{err}");
    assert!(!out.exists());

    s.ok(&["--config", &cfg, "init"]);
    s.ok(&["--config", &cfg, "sync", "postgres", "--once"]);
    seed(&s, &cfg, "north");
    movements(&s, &cfg, "m", 60, 12);
    s.ok(&["--config", &cfg, "sync", "postgres", "--once"]);
    assert_eq!(pg.psql("SELECT version FROM ora.mirror_layout"), "2");

    pg.psql("UPDATE ora.mirror_layout SET version = 99");
    let err = rebuild(2);
    assert!(err.contains("newer ora") && err.contains("99"), "{err}");
    assert!(!out.exists());
    pg.psql("UPDATE ora.mirror_layout SET version = 2");

    pg.psql("ALTER TABLE ora.workflows RENAME COLUMN details TO details_old");
    let err = rebuild(2);
    assert!(err.contains("workflows has no column details"), "{err}");
    assert!(!out.exists());
    pg.psql("ALTER TABLE ora.workflows RENAME COLUMN details_old TO details");

    let dead = format!(
        "postgresql://postgres:x@127.0.0.1:{}/postgres",
        crate::util::free_port()
    );
    let err = s.fails(
        &[
            "restore",
            "--from-postgres",
            &dead,
            "--site",
            "north",
            "--out",
            &out_s,
        ],
        3,
    );
    assert!(err.contains("unreachable"), "{err}");
    assert!(!out.exists());

    std::fs::write(&out, b"keep me").unwrap();
    let err = rebuild(2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&out).unwrap(), b"keep me");
    std::fs::remove_file(&out).unwrap();

    // Torn: SKU-03's stock update and SKU-04's product row never arrived.
    let stock3 = pg.psql("SELECT current_quantity FROM ora.inventory_current WHERE site_id = 'north' AND sku = 'SKU-03'");
    pg.psql("UPDATE ora.inventory_current SET current_quantity = current_quantity + 5 WHERE site_id = 'north' AND sku = 'SKU-03'");
    pg.psql("DELETE FROM ora.inventory_current WHERE site_id = 'north' AND sku = 'SKU-04'");
    let r = s.json(&[
        "--config",
        &cfg,
        "restore",
        "--from-postgres",
        "--out",
        &out_s,
    ]);
    let fixes = r["fixes"].to_string();
    let torn = format!("SKU-03: {} -> {stock3}", stock3.parse::<i64>().unwrap() + 5);
    assert!(fixes.contains(&torn), "{fixes}");
    assert_eq!(r["fixes"]["recreated_products"][0], "SKU-04", "{fixes}");
    assert_eq!(
        query_i64(
            &out,
            "SELECT current_quantity FROM inventory_current WHERE sku = 'SKU-03'"
        ),
        stock3.parse::<i64>().unwrap()
    );
    let v = crate::util::Sandbox {
        dir: tempfile::tempdir().unwrap(),
        db: out.clone(),
        now: None,
    }
    .json(&["verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

// A mirror written before it carried the trail (layout 1: no actor, no audit_log) still
// rebuilds a box (without the trail, which it does not have); the next forwarder upgrades it
// in place and copies the site once in full, so a box rebuilt from it then starts with its
// history of who changed what, equal to the lost box's.
#[test]
fn an_older_mirror_is_upgraded_in_place_and_a_rebuild_keeps_who_changed_what() {
    let Some(pg) = PgCluster::start(
        "an_older_mirror_is_upgraded_in_place_and_a_rebuild_keeps_who_changed_what",
    ) else {
        return;
    };
    let s = Sandbox::empty();
    let cfg = config(&s, &pg.url(), "north");
    s.ok(&["--config", &cfg, "init"]);
    s.ok(&["--config", &cfg, "sync", "postgres", "--once"]);
    seed(&s, &cfg, "north");
    s.ok(&[
        "--config", &cfg, "--actor", "alice", "stock", "receive", "SKU-03", "4",
    ]);
    s.ok(&[
        "--config",
        &cfg,
        "--actor",
        "bob",
        "product",
        "update",
        "SKU-04",
        "--name",
        "Renamed lamp",
    ]);
    s.ok(&["--config", &cfg, "sync", "postgres", "--once"]);
    assert_eq!(pg.psql("SELECT version FROM ora.mirror_layout"), "2");
    assert_mirror_equals(&pg, "north", &s.db);
    assert!(pg.psql("SELECT count(*) FROM ora.audit_log WHERE actor = 'bob'") != "0");

    // The same mirror as an ora of layout 1 left it.
    pg.psql(
        "ALTER TABLE ora.inventory_transactions DROP COLUMN actor; DROP TABLE ora.audit_log;
         ALTER TABLE ora.sync_state DROP COLUMN layout; UPDATE ora.mirror_layout SET version = 1",
    );
    let old = s.path("from-layout-1.db");
    let r = s.json(&[
        "--config",
        &cfg,
        "restore",
        "--from-postgres",
        "--out",
        old.to_str().unwrap(),
    ]);
    assert_eq!(r["mirror"]["layout"], 1, "{r}");
    assert_eq!(r["integrity"], "integrity_check ok, verify ok");
    assert_eq!(query_i64(&old, "SELECT count(*) FROM audit_log"), 0);
    assert_eq!(
        query_i64(
            &old,
            "SELECT count(*) FROM inventory_transactions WHERE actor IS NOT NULL"
        ),
        0
    );

    // One more change, then the forwarder: layout 2 again, every row copied with its trail.
    s.ok(&[
        "--config", &cfg, "--actor", "carol", "stock", "ship", "SKU-05", "1",
    ]);
    s.ok(&["--config", &cfg, "sync", "postgres", "--once"]);
    assert_eq!(pg.psql("SELECT version FROM ora.mirror_layout"), "2");
    assert_eq!(
        pg.psql("SELECT layout FROM ora.sync_state WHERE site_id = 'north'"),
        "2"
    );
    assert_mirror_equals(&pg, "north", &s.db);

    let trail = |db: &std::path::Path| {
        (
            local_rows(
                db,
                "audit_log",
                "id",
                "id, at, actor, request_id, op, tbl, key, action, old, new, sku",
            ),
            local_rows(db, "inventory_transactions", "id", "id, actor, request_id"),
        )
    };
    let before = trail(&s.db);
    assert!(before.1.contains("|alice|") && before.1.contains("|carol|"));
    remove_db(&s);
    let r = s.json(&["--config", &cfg, "restore", "--from-postgres"]);
    assert_eq!(r["mirror"]["layout"], 2, "{r}");
    assert_eq!(r["integrity"], "integrity_check ok, verify ok");
    assert_eq!(
        trail(&s.db),
        before,
        "the rebuilt box has the lost box's trail"
    );
    let audit = s.ok(&["--config", &cfg, "audit", "--sku", "SKU-04"]);
    assert!(audit.contains("bob"), "{audit}");
}
