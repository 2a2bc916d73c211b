//! The benchmark harness: `cargo bench --bench harness [-- --quick | --seconds N | --only S]`.
//! Generates (once) a deterministic sample database of about 300 MB (2 million ledger rows,
//! 20,000 skus), measures each figure beside its reference in the same
//! run, and prints one markdown table (also saved under bench-data/).

mod awake_bench;
mod bound_bench;
mod common;
mod housekeeping_bench;
mod http_attack_bench;
mod http_bench;
mod ops_bench;
mod pages_bench;
mod peer_bench;
mod remote_bench;
mod replica_bench;
mod scale_bench;
mod stall_bench;
mod standby_bench;
mod store_bench;

fn main() {
    // As the `ora` binary does, before anything starts SQLite: the in-process rows then run
    // with the same page cache as `ora serve`.
    ora::store::install_page_cache();
    let o = common::Options::from_args();
    let base = common::sample_db(&o);
    let size = std::fs::metadata(&base).map(|m| m.len()).unwrap_or(0);
    let mut table = common::Table::default();
    let mut store_rate = None;
    if o.wants("store") {
        store_rate = store_bench::run(&o, &base, &mut table);
    }
    // `--only http` runs the whole HTTP section, `--only http-one` its one-client rows alone.
    if o.wants("http-one") {
        http_bench::run(&o, &base, &mut table, store_rate);
    }
    if o.wants("attack") {
        http_attack_bench::run(&o, &base, &mut table);
    }
    if o.wants("pages") {
        pages_bench::run(&o, &base, &mut table);
    }
    if o.wants("stall") {
        if let Ok(before) = std::env::var("ORA_STALL_BINARY") {
            stall_bench::run_with(&o, &base, &mut table, &before, "(that build) ");
        }
        stall_bench::run(&o, &base, &mut table);
    }
    if o.wants("ops") {
        ops_bench::run(&o, &base, &mut table);
    }
    if o.wants("peer") {
        peer_bench::run(&o, &base, &mut table);
    }
    if o.wants("remote") {
        remote_bench::run(&o, &base, &mut table);
    }
    if o.wants("housekeeping") {
        housekeeping_bench::run(&o, &base, &mut table);
    }
    if o.wants("adopt") {
        housekeeping_bench::adopt(&o, &base, &mut table);
    }
    if o.wants("chain") {
        housekeeping_bench::chain(&o, &base, &mut table);
    }
    if o.wants("replica") {
        replica_bench::run(&o, &base, &mut table);
    }
    if o.wants("standby") {
        standby_bench::run(&o, &base, &mut table);
    }
    if o.wants("scale") {
        scale_bench::run(&o, &base, &mut table);
    }
    if o.wants("awake") {
        awake_bench::run(&o, &base, &mut table);
    }
    table.add(
        "peak RSS of the harness process",
        format!("{:.0} MiB", common::peak_rss_mib(None)),
        "",
        "",
        "",
    );
    let header = format!(
        "sample: {} ({:.0} MB, {} ledger rows, {} skus), {} s per measurement, {} cores\n\n",
        base.display(),
        size as f64 / 1e6,
        o.rows,
        o.skus,
        o.seconds,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let md = format!("{header}{}", table.markdown());
    println!("{md}");
    let out = o.dir.join(format!(
        "results-{}.md",
        chrono::Utc::now().format("%Y%m%dT%H%M%S")
    ));
    if std::fs::write(&out, &md).is_ok() {
        eprintln!("saved {}", out.display());
    }
}
