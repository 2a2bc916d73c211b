//! The pages a shift lead opens, against a real `ora serve` on a copy of the sample (20,000
//! products, 2 million movements, then 150,000 more dated over the last 30 days: the end of a
//! month at 5,000 movements a day): the status page, a product's page for the busiest sku and
//! for a quiet one, its history through the API, and the search page; each a median of 200
//! sequential requests on one keep-alive connection with p99 and max, beside `GET
//! /health/live` (the cost of an HTTP round trip itself) from the same run.

use std::time::Instant;

use crate::common::{scratch_copy, Latencies, Options, Table};
use crate::http_bench::{start, Conn};

const REQUESTS: usize = 200;

pub(crate) fn latencies(c: &mut Conn, path: &str) -> Latencies {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").into_bytes();
    // Warm: the first answer reads the pages from disk.
    for _ in 0..5 {
        assert_eq!(c.call(&req), 200, "{path}");
    }
    let mut l = Latencies::default();
    for _ in 0..REQUESTS {
        let t = Instant::now();
        let st = c.call(&req);
        l.0.push(t.elapsed());
        assert_eq!(st, 200, "{path}");
    }
    l
}

/// The busiest sku and one with the fewest movements.
pub(crate) fn skus(db: &std::path::Path) -> (String, String) {
    let conn = rusqlite::Connection::open(db).expect("open the sample");
    let q = |order: &str| -> String {
        conn.query_row(
            &format!("SELECT sku FROM inventory_transactions GROUP BY sku ORDER BY count(*) {order}, sku LIMIT 1"),
            [],
            |r| r.get(0),
        )
        .expect("a sku")
    };
    (q("DESC"), q("ASC"))
}

/// 5,000 movements a day for the last 30 days, through the writer.
fn busy_month(db: &std::path::Path, skus: usize) {
    let store = crate::store_bench::open_store(db, ora::store::Synchronous::Normal);
    let w = store.writer().expect("writer");
    let today = chrono::Local::now().date_naive();
    let mut rng = ora::sample::Rng::new(30);
    let mut tickets = Vec::with_capacity(1024);
    for i in 0..150_000u64 {
        let sku = ora::sample::sku(rng.below(skus as u64) as usize);
        let mut m = ora::store::Movement::new(&sku, ora::model::TxType::Receive, 1);
        m.date = Some(
            (today - chrono::Days::new(i % 30))
                .format("%Y-%m-%d")
                .to_string(),
        );
        let req = ora::store::WriteRequest::new(ora::store::WriteOp::Movement(m));
        tickets.push(w.enqueue(req).expect("enqueue"));
        if tickets.len() == 1024 {
            for t in tickets.drain(..) {
                t.wait().expect("movement");
            }
        }
    }
    for t in tickets {
        t.wait().expect("movement");
    }
}

pub fn run(o: &Options, base: &std::path::Path, table: &mut Table) {
    let db = scratch_copy(o, base, "pages.db");
    eprintln!("pages: a busy month (150,000 movements over 30 days)");
    busy_month(&db, o.skus);
    crate::store_bench::checkpoint(&db);
    let (busy, quiet) = skus(&db);
    let binary = std::env::var("ORA_PAGES_BINARY").ok();
    if let Some(b) = &binary {
        let srv = crate::http_bench::start_binary(b, &db);
        let mut c = Conn::open(&srv.addr);
        let mut l = latencies(&mut c, "/");
        table.add(
            format!("(that build: {b}) the status page `/`: ms p50/p99/max of {REQUESTS}"),
            l.summary(),
            "",
            "",
            "",
        );
    }
    let srv = start(&db);
    let mut c = Conn::open(&srv.addr);
    let mut floor = latencies(&mut c, "/health/live");
    let floor_s = floor.summary();
    for (what, path) in [
        ("the status page `/`".to_string(), "/".to_string()),
        (
            format!("a product's page, the busiest sku ({busy})"),
            format!("/products/{busy}"),
        ),
        (
            format!("a product's page, a quiet sku ({quiet})"),
            format!("/products/{quiet}"),
        ),
        (
            format!("`GET /api/transactions?sku={quiet}&limit=100`"),
            format!("/api/transactions?sku={quiet}&limit=100"),
        ),
        (
            "`GET /api/products/{sku}` (busiest)".to_string(),
            format!("/api/products/{busy}"),
        ),
        (
            "the search page, a typo (`/search?q=widgte`)".to_string(),
            "/search?q=widgte".to_string(),
        ),
    ] {
        let mut l = latencies(&mut c, &path);
        table.add(
            format!("{what}: ms p50/p99/max of {REQUESTS}"),
            l.summary(),
            "`GET /health/live`, same connection",
            floor_s.clone(),
            "",
        );
    }
}
