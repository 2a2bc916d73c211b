//! What waiting awake buys on this machine (`[tuning] wait_awake`): the in-process writer at 1
//! and 8 clients (FULL) and one keep-alive HTTP client posting movements, each with the
//! switch on and off, in interleaved runs on their own copies of the sample. `--only awake`.

use std::path::Path;
use std::sync::Arc;

use crate::common::{median_range, per_sec, scratch_copy, Options, Table};
use crate::http_bench::{load, Kind};
use ora::store::{OpenMode, Store, StoreOptions, Synchronous};

fn store(db: &Path, wait_awake: bool) -> Arc<Store> {
    let mut opts = StoreOptions::new(db);
    opts.tuning = crate::store_bench::tuning(Synchronous::Full);
    opts.writer.wait_awake = wait_awake;
    Arc::new(Store::open(&opts, OpenMode::Existing).expect("open store"))
}

/// Median rate (with range) of `runs` for each setting, interleaved: (on, off).
fn interleaved(repeats: usize, mut run: impl FnMut(bool, usize) -> f64) -> [(f64, f64, f64); 2] {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for r in 0..repeats.max(3) {
        on.push(run(true, r));
        off.push(run(false, r));
    }
    [median_range(on), median_range(off)]
}

fn row(t: &mut Table, what: &str, [on, off]: [(f64, f64, f64); 2]) {
    t.add(
        what,
        format!("{} ({}-{})", per_sec(on.0), per_sec(on.1), per_sec(on.2)),
        "the same with [tuning] wait_awake = false",
        format!("{} ({}-{})", per_sec(off.0), per_sec(off.1), per_sec(off.2)),
        format!("{:.2}x", on.0 / off.0),
    );
}

pub fn run(o: &Options, base: &Path, t: &mut Table) {
    let db = scratch_copy(o, base, "awake.db");
    for clients in [1, 8] {
        let rates = interleaved(o.repeats, |awake, r| {
            let s = store(&db, awake);
            let rate = crate::store_bench::grouped(o, &s, clients, 7000 + r as u64).rate();
            drop(s);
            rate
        });
        row(
            t,
            &format!("movements/s, in-process writer, {clients} client(s), FULL, wait_awake on"),
            rates,
        );
    }
    let http = scratch_copy(o, base, "awake-http.db");
    let cfg = o.dir.join("awake-off.toml");
    std::fs::write(&cfg, "[tuning]\nwait_awake = false\n").expect("write config");
    let rates = interleaved(o.repeats, |awake, _| {
        let server = if awake {
            crate::http_bench::start_binary_with(crate::http_bench::ORA, &http, None)
        } else {
            crate::http_bench::start_binary_with(crate::http_bench::ORA, &http, Some(&cfg))
        };
        load(o, &server.addr, Kind::Post, 1).0
    });
    row(
        t,
        "HTTP POST /api/transactions, 1 keep-alive client, movements/s, wait_awake on",
        rates,
    );
    for d in [&db, &http] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", d.display()));
        }
    }
}
