//! The peer a user would pick instead of ora: the same movement transaction (insert the ledger
//! row with a unique request id, update the product's stock under its check) against a real
//! PostgreSQL 15 with fsync and synchronous_commit on, driven by `pgbench` at 1, 8 and 32
//! clients (or `--clients`), beside ora over HTTP (`ora serve`, keep-alive clients POSTing,
//! with a request id each and again without) and ora in-process (the group-commit writer),
//! interleaved in each repeat so that they meet the same stretch of this disk. PostgreSQL
//! starts with as many ledger rows as the sample.

use std::path::Path;
use std::process::Command;

use crate::bound_bench::{cpu_sample, CpuSample};
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

/// The server's writer counters from `/metrics`: (group commits, requests answered).
fn writer_counts(addr: &str) -> Option<(f64, f64)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Some((
        value("ora_writer_commits_total"),
        value("ora_writer_requests_total"),
    ))
}

/// CPU seconds one movement over HTTP cost the server and the clients (the harness's own
/// threads: nothing else runs in it meanwhile), and how busy the machine's cores were.
#[derive(Clone, Copy)]
struct CpuPerMovement {
    server: f64,
    clients: f64,
    busy: f64,
    cores: f64,
}

impl CpuPerMovement {
    fn of(a: CpuSample, b: CpuSample, movements: f64, secs: f64) -> CpuPerMovement {
        let n = movements.max(1.0);
        CpuPerMovement {
            server: (b.child - a.child) / n,
            clients: (b.own - a.own) / n,
            busy: (b.busy - a.busy) / (secs * b.cores.max(1.0)),
            cores: b.cores,
        }
    }

    /// The repeat with the median server CPU.
    fn median(v: &[CpuPerMovement]) -> Option<CpuPerMovement> {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.server.total_cmp(&b.server));
        v.get(v.len() / 2).copied()
    }
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
    // The in-process writer's (group commits, requests answered), as `writer_counts` reads
    // the server's.
    let local_counts = || {
        use std::sync::atomic::Ordering::Relaxed;
        let st = store.writer().expect("writer").stats();
        (
            st.commits.load(Relaxed) as f64,
            (st.applied.load(Relaxed) + st.refused.load(Relaxed)) as f64,
        )
    };
    for &clients in &o.clients {
        let (mut pgs, mut https, mut locals) = (Vec::new(), Vec::new(), Vec::new());
        let mut unkeyed = Vec::new();
        let mut refused = 0;
        let mut cpu = Vec::new();
        let (mut http_groups, mut local_groups) = (Vec::new(), Vec::new());
        for r in 0..o.repeats {
            pgs.push(pgbench(o, &pg, &script, clients));
            let before = cpu_sample(srv.child.id());
            let groups_before = writer_counts(&srv.addr);
            let started = std::time::Instant::now();
            let (rate, _, errors) = load(o, &srv.addr, Kind::Keyed, clients);
            let secs = started.elapsed().as_secs_f64();
            if let (Some(a), Some(b)) = (groups_before, writer_counts(&srv.addr)) {
                http_groups.push((b.1 - a.1) / (b.0 - a.0).max(1.0));
            }
            let local_before = local_counts();
            if let (Some(a), Some(b)) = (before, cpu_sample(srv.child.id())) {
                cpu.push(CpuPerMovement::of(a, b, rate * secs, secs));
            }
            https.push(rate);
            refused += errors;
            unkeyed.push(load(o, &srv.addr, Kind::Unkeyed, clients).0);
            locals.push(crate::store_bench::grouped(o, &store, clients, 7000 + r as u64).rate());
            let local_after = local_counts();
            local_groups
                .push((local_after.1 - local_before.1) / (local_after.0 - local_before.0).max(1.0));
        }
        let (p, ptext) = spread(&pgs);
        let (h, htext) = spread(&https);
        let (l, ltext) = spread(&locals);
        let goal = if clients == 1 { 1.5 } else { 3.0 };
        // Each repeat's pair ran back to back: their ratios, which this VM's drift between
        // repeats moves less than it moves a ratio of medians.
        let (pm, plo, phi) = median_range(
            https
                .iter()
                .zip(&pgs)
                .map(|(a, b)| a / b.max(1.0))
                .collect(),
        );
        let paired = format!("per repeat {pm:.2}x ({plo:.2}-{phi:.2})");
        t.add(
            format!("movements/s, {clients} client(s), ora over HTTP (FULL)"),
            htext.clone(),
            "PostgreSQL 15, pgbench, the same transaction (fsync, synchronous_commit on)",
            ptext.clone(),
            if refused > 0 {
                format!(
                    "{:.2}x (goal >= {goal}x; {paired}; {refused} shipments refused for want of stock, not counted)",
                    h / p
                )
            } else {
                format!("{:.2}x (goal >= {goal}x; {paired})", h / p)
            },
        );
        let (u, utext) = spread(&unkeyed);
        t.add(
            format!("movements/s, {clients} client(s), ora over HTTP without a request id"),
            utext,
            "the same with a request id each, the same run",
            htext,
            format!("the request id costs {:.0}%", (1.0 - h / u) * 100.0),
        );
        if !http_groups.is_empty() {
            t.add(
                format!("requests a group commit, {clients} client(s), ora over HTTP"),
                format!("{:.1}", median_range(http_groups).0),
                "ora in-process, the same run",
                format!("{:.1}", median_range(local_groups).0),
                "",
            );
        }
        if let Some(c) = CpuPerMovement::median(&cpu) {
            t.add(
                format!("CPU a movement over HTTP, {clients} client(s): ora serve; the clients"),
                format!("{:.0} µs; {:.0} µs", c.server * 1e6, c.clients * 1e6),
                format!(
                    "what this box's {:.0} cores allow: every core on both / on the server alone (the cores were {:.0}% busy)",
                    c.cores,
                    c.busy * 100.0
                ),
                format!(
                    "{} / {}",
                    per_sec(c.cores / (c.server + c.clients)),
                    per_sec(c.cores / c.server)
                ),
                format!("3x PostgreSQL: {}", per_sec(3.0 * p)),
            );
        }
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
