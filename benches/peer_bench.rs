//! The peer a user would pick instead of ora: the same movement transaction (insert the ledger
//! row with a unique request id, update the product's stock under its check) against a real
//! PostgreSQL 15 with fsync and synchronous_commit on, driven by `pgbench` at 1, 8 and 32
//! clients, beside ora over HTTP (`ora serve`, keep-alive clients POSTing) and ora in-process
//! (the group-commit writer), the three interleaved in each repeat so that they meet the same
//! stretch of this disk. PostgreSQL starts with as many ledger rows as the sample.

use std::path::Path;
use std::process::Command;

use crate::common::{median_range, per_sec, scratch_copy, Options, Table};
use crate::http_bench::{load, start, Kind};
use crate::remote_bench::{cluster_in, Cluster};

/// The ledger and the products as PostgreSQL holds them: the same constraints as ora's.
const SCHEMA: &str = "
CREATE TABLE products (sku text PRIMARY KEY, stock bigint NOT NULL CHECK (stock >= 0),
                       updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE ledger (id bigserial PRIMARY KEY, sku text NOT NULL REFERENCES products,
                     tx_type text NOT NULL, qty bigint NOT NULL, request_id text UNIQUE,
                     at timestamptz NOT NULL DEFAULT now());
CREATE INDEX ledger_sku ON ledger (sku, id);
";

/// One movement, as ora's harness sends them: a shipment of one in four, else a receipt of 1-5.
const SCRIPT: &str = r"\set i random(0, :skus - 1)
\set r random(0, 3)
\set q random(1, 5)
BEGIN;
\if :r = 0
INSERT INTO ledger (sku, tx_type, qty, request_id) VALUES ('SKU-' || lpad(:i::text, 5, '0'), 'ship', -1, gen_random_uuid()::text);
UPDATE products SET stock = stock - 1, updated_at = now() WHERE sku = 'SKU-' || lpad(:i::text, 5, '0');
\else
INSERT INTO ledger (sku, tx_type, qty, request_id) VALUES ('SKU-' || lpad(:i::text, 5, '0'), 'receive', :q, gen_random_uuid()::text);
UPDATE products SET stock = stock + :q, updated_at = now() WHERE sku = 'SKU-' || lpad(:i::text, 5, '0');
\endif
COMMIT;
";

fn psql(pg: &Cluster, sql: &str) {
    let st = Command::new("psql")
        .args(["-q", "-v", "ON_ERROR_STOP=1", &pg.url, "-c", sql])
        .status()
        .expect("psql");
    assert!(st.success(), "psql failed on: {sql}");
}

/// The schema, the sample's products and as many ledger rows as the sample holds.
fn seed(o: &Options, pg: &Cluster) {
    psql(pg, SCHEMA);
    psql(
        pg,
        &format!(
            "INSERT INTO products (sku, stock) SELECT 'SKU-' || lpad(i::text, 5, '0'), 1000
             FROM generate_series(0, {}) i",
            o.skus - 1
        ),
    );
    psql(
        pg,
        &format!(
            "INSERT INTO ledger (sku, tx_type, qty, request_id)
             SELECT 'SKU-' || lpad((i % {})::text, 5, '0'), 'receive', 1, md5(i::text)
             FROM generate_series(1, {}) i",
            o.skus, o.rows
        ),
    );
    psql(pg, "VACUUM ANALYZE");
}

/// Transactions/s of pgbench with `clients` connections for the run's duration.
fn pgbench(o: &Options, pg: &Cluster, script: &Path, clients: usize) -> f64 {
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-f"])
        .arg(script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(4).to_string(),
            "-T",
            &(o.seconds.round() as u64).max(1).to_string(),
            "-D",
            &format!("skus={}", o.skus),
            &pg.url,
        ])
        .output()
        .expect("pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("pgbench's tps line")
}

/// "1,234/s (1,100/s-1,300/s)" from a run's repeats.
fn spread(v: &[f64]) -> (f64, String) {
    let (m, lo, hi) = median_range(v.to_vec());
    (
        m,
        format!("{} ({}-{})", per_sec(m), per_sec(lo), per_sec(hi)),
    )
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    let Some(pg) = cluster_in(&o.dir.join("pg-peer"), true) else {
        assert!(
            std::env::var_os("ORA_TEST_STRICT").is_none(),
            "no PostgreSQL for the peer rows"
        );
        return;
    };
    eprintln!("peer: seeding PostgreSQL with {} ledger rows", o.rows);
    seed(o, &pg);
    let script = o.dir.join("peer-movement.sql");
    std::fs::write(&script, SCRIPT).expect("pgbench script");
    let served = scratch_copy(o, base, "peer-http.db");
    let srv = start(&served);
    let local = scratch_copy(o, base, "peer-inprocess.db");
    let store = crate::store_bench::open_store(&local, ora::store::Synchronous::Full);
    for clients in [1usize, 8, 32] {
        let (mut pgs, mut https, mut locals) = (Vec::new(), Vec::new(), Vec::new());
        let mut refused = 0;
        for r in 0..o.repeats {
            pgs.push(pgbench(o, &pg, &script, clients));
            let (rate, _, errors) = load(o, &srv.addr, Kind::Keyed, clients);
            https.push(rate);
            refused += errors;
            locals.push(crate::store_bench::grouped(o, &store, clients, 7000 + r as u64).rate());
        }
        let (p, ptext) = spread(&pgs);
        let (h, htext) = spread(&https);
        let (l, ltext) = spread(&locals);
        let goal = if clients == 1 { 1.5 } else { 3.0 };
        t.add(
            format!("movements/s, {clients} client(s), ora over HTTP (FULL)"),
            htext,
            "PostgreSQL 15, pgbench, the same transaction (fsync, synchronous_commit on)",
            ptext.clone(),
            if refused > 0 {
                format!(
                    "{:.2}x (goal >= {goal}x; {refused} shipments refused for want of stock, not counted)",
                    h / p
                )
            } else {
                format!("{:.2}x (goal >= {goal}x)", h / p)
            },
        );
        t.add(
            format!("movements/s, {clients} client(s), ora in-process (FULL, no request id)"),
            ltext,
            "PostgreSQL 15, the same run",
            ptext,
            format!("{:.2}x", l / p),
        );
    }
    drop(srv);
    drop(store);
    for db in [served, local] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
    }
}
