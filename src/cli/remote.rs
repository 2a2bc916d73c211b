//! `ora sync postgres|qdrant`, `ora qdrant reindex`, `ora search TEXT`: the remote proxies by
//! hand (for cron, first loads, checks) and product search; `ora restore --from-postgres`,
//! the rebuild of a lost box from the mirror.

use clap::{Subcommand, ValueEnum};

use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::remote::forwarder::{Forwarder, ForwarderOptions};
use crate::remote::target::RemoteError;
use crate::remote::{check, outbox, search};
use crate::store::OpenMode;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TargetName {
    Postgres,
    Qdrant,
}

#[derive(Debug, Subcommand)]
pub enum QdrantCommand {
    /// Replace this site's points in the Qdrant collection with the products in SQLite (other
    /// sites' points in a shared collection stay).
    Reindex {
        /// Drop the whole collection first, every site's points with it (for a collection of
        /// the wrong vector size); the other sites then need a reindex of their own.
        #[arg(long)]
        recreate: bool,
    },
}

fn remote_err(e: RemoteError) -> Error {
    e.into()
}

fn sync_err(e: crate::remote::forwarder::SyncError) -> Error {
    match e {
        crate::remote::forwarder::SyncError::Remote(r) => remote_err(r),
        crate::remote::forwarder::SyncError::Store(s) => s.into(),
    }
}

fn not_configured(name: &str) -> Error {
    Error::config(format!(
        "remote.{name} is not configured; see docs/remote.md"
    ))
}

/// `ora sync TARGET [--check]`: delivers everything waiting (a full copy first if the target
/// is new), then optionally compares both sides.
pub fn sync(ctx: &Ctx, target: TargetName, do_check: bool, resync: bool) -> Result<i32> {
    let cfg = &ctx.config.remote;
    let name = match target {
        TargetName::Postgres => "postgres",
        TargetName::Qdrant => "qdrant",
    };
    let t = crate::remote::targets(cfg)
        .into_iter()
        .find(|t| t.name() == name)
        .ok_or_else(|| not_configured(name))?;
    // Make sure the schema is current (capture needs migration 2).
    ctx.open(OpenMode::Existing)?.close();
    let opts = ForwarderOptions {
        batch: cfg.batch,
        ..ForwarderOptions::default()
    };
    let mut f = Forwarder::new(&ctx.config.store.path, &ctx.config.store.tuning, t, opts)?;
    let started = std::time::Instant::now();
    let copied = if resync {
        f.resync().map_err(sync_err)?
    } else {
        0
    };
    let (changes, rows) = f.drain(None).map_err(sync_err)?;
    let rows = rows + copied;
    let conn =
        crate::store::connection::open_writer(&ctx.config.store.path, &ctx.config.store.tuning)?;
    outbox::prune(&conn)?;
    let mut checks = Vec::new();
    if do_check {
        checks = compare(ctx, target, &conn)?;
    }
    let ok = checks.iter().all(|c| c.equal);
    if ctx.json {
        output::json(&serde_json::json!({
            "target": name, "changes": changes, "copied_rows": rows,
            "seconds": started.elapsed().as_secs_f64(), "check": checks, "equal": ok,
        }))?;
    } else {
        if rows > 0 {
            outln!(
                "sync {name}: full copy of {}",
                super::output::count(rows, "row", "rows")
            );
        }
        outln!(
            "sync {name}: {} delivered in {:.2} s",
            super::output::count(changes, "change", "changes"),
            started.elapsed().as_secs_f64()
        );
        for c in &checks {
            outln!(
                "  {:<24} local {:>9}  remote {:>9}  {}",
                c.table,
                c.local_rows,
                c.remote_rows,
                if c.equal { "equal" } else { "DIFFERENT" }
            );
        }
    }
    if ok {
        Ok(exit::OK)
    } else {
        let differ: Vec<&str> = checks
            .iter()
            .filter(|c| !c.equal)
            .map(|c| c.table.as_str())
            .collect();
        errln!(
            "ora: sync {name} --check: the two sides differ in {}; repair with `ora sync {name} --resync` (a full copy of this site's rows; other sites stay)",
            differ.join(", ")
        );
        Ok(exit::CHECK_FAILED)
    }
}

#[cfg(feature = "postgres")]
fn compare(
    ctx: &Ctx,
    target: TargetName,
    conn: &rusqlite::Connection,
) -> Result<Vec<check::TableCheck>> {
    let cfg = &ctx.config.remote;
    let TargetName::Postgres = target else {
        return Err(Error::usage("--check compares with PostgreSQL only"));
    };
    let pg = cfg
        .postgres
        .as_ref()
        .ok_or_else(|| not_configured("postgres"))?;
    let mut remote = crate::remote::postgres::Postgres::new(pg, &cfg.site_id);
    conn.execute_batch("BEGIN")
        .map_err(|e| crate::store::StoreError::sqlite("check", e))?;
    let mut out = Vec::new();
    for (table, _, _) in outbox::TABLES {
        let (ln, ld) = check::local_digest(conn, table)?;
        let (rn, rd) = remote.table_digest(table).map_err(remote_err)?;
        out.push(check::TableCheck {
            table: table.to_string(),
            local_rows: ln,
            remote_rows: rn,
            equal: ln == rn && ld == rd,
        });
    }
    let _ = conn.execute_batch("COMMIT");
    Ok(out)
}

#[cfg(not(feature = "postgres"))]
fn compare(_: &Ctx, _: TargetName, _: &rusqlite::Connection) -> Result<Vec<check::TableCheck>> {
    Err(Error::usage(
        "this ora was built without PostgreSQL support",
    ))
}

/// `ora qdrant reindex [--recreate]`: remove this site's points (or, with --recreate, the
/// whole collection), register, copy every product.
pub fn qdrant(ctx: &Ctx, cmd: QdrantCommand) -> Result<i32> {
    let QdrantCommand::Reindex { recreate } = cmd;
    let cfg = &ctx.config.remote;
    let q = cfg
        .qdrant
        .as_ref()
        .ok_or_else(|| not_configured("qdrant"))?;
    let mut target = crate::remote::qdrant::Qdrant::new(q, &cfg.site_id);
    if recreate {
        target.recreate().map_err(remote_err)?;
        if !ctx.json {
            outln!(
                "qdrant reindex: dropped the collection {} with every site's points; other sites sharing it need `ora qdrant reindex` of their own",
                q.collection
            );
        }
    } else {
        target.clear_site().map_err(remote_err)?;
    }
    ctx.open(OpenMode::Existing)?.close();
    let conn =
        crate::store::connection::open_writer(&ctx.config.store.path, &ctx.config.store.tuning)?;
    outbox::register(&conn, "qdrant")?;
    // Forget the position: the next step makes a full copy into the fresh collection.
    outbox::reset_position(&conn, "qdrant")?;
    drop(conn);
    sync(ctx, TargetName::Qdrant, false, false)
}

/// `ora search TEXT` / `ora search --vector ...`: Qdrant when configured for this kind of
/// query, else the local store; the same output either way.
pub fn search(ctx: &Ctx, query: &search::Query, limit: usize) -> Result<i32> {
    query
        .validate()
        .map_err(|e| Error::usage(format!("search: {e}")))?;
    let store = ctx.open(OpenMode::ReadOnly)?;
    let answer = search::run(Some(&ctx.config.remote), &*store.read()?, query, limit)?;
    let (source, hits) = (answer.source, answer.hits);
    if ctx.json {
        output::json(&serde_json::json!({ "source": source, "hits": hits }))?;
    } else if hits.is_empty() {
        match query {
            search::Query::Text(t) => outln!("no product matches {t:?}"),
            search::Query::Vector(_) => outln!("no product has a vector"),
        }
    } else {
        let rows: Vec<Vec<String>> = hits
            .iter()
            .map(|h| {
                vec![
                    h.sku.clone(),
                    h.product_name.clone(),
                    format!("{:.3}", h.score),
                ]
            })
            .collect();
        output::table(&["SKU", "PRODUCT", "SCORE"], &rows)?;
    }
    Ok(exit::OK)
}

/// `ora restore --from-postgres [URL] [--site SITE] [--out FILE]`.
///
/// Kept whole: choosing the mirror (argument or configuration), one library call, then the report
/// in words: tables, repairs, what a mirror does not hold, and the previous file kept.
#[cfg(feature = "postgres")]
pub fn restore_from_postgres(
    ctx: &Ctx,
    url: &str,
    site: Option<&str>,
    out: Option<std::path::PathBuf>,
    force: bool,
) -> Result<i32> {
    let cfg = &ctx.config.remote;
    let mut pg = match (&cfg.postgres, url.is_empty()) {
        (Some(p), _) => p.clone(),
        (None, false) => crate::config::PostgresConfig {
            url: String::new(),
            schema: "ora".into(),
            tls: crate::config::PgTls::Disable,
        },
        (None, true) => {
            return Err(Error::usage(
                "restore --from-postgres: no mirror to read; give its URL (--from-postgres postgresql://...) or configure remote.postgres",
            ))
        }
    };
    if !url.is_empty() {
        pg.url = url.to_string();
    }
    let site = site.unwrap_or(&cfg.site_id).to_string();
    if !crate::config::valid_site_id(&site) {
        return Err(Error::usage(format!(
            "restore: --site {:?} must be 1-64 letters, digits, - _ .",
            crate::model::clip(&site)
        )));
    }
    let o = crate::ops::from_mirror::FromMirrorOptions {
        postgres: pg,
        site,
        out,
        force,
        allow_negative_stock: ctx.config.store.writer.rules.allow_negative_stock,
    };
    let r = crate::ops::from_mirror::run(&ctx.config.store.path, &o)?;
    if ctx.json {
        output::json(&r)?;
        return Ok(exit::OK);
    }
    let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
    outln!(
        "rebuilt {} from the PostgreSQL mirror (site {}, schema {}): {rows} rows, last ledger id {}, {}, {:.2} s",
        r.output.display(),
        r.site,
        r.schema,
        r.last_ledger_id,
        r.integrity,
        r.seconds
    );
    for t in &r.tables {
        outln!("  {:<24} {}", t.table, t.rows);
    }
    outln!(
        "the mirror had the box's changes up to {} (its last delivery {}, {}){}",
        r.mirror.last_seq,
        r.mirror.updated_at,
        crate::ops::health::ago(r.mirror_behind_seconds / 3600.0),
        r.last_movement_at
            .as_deref()
            .map(|t| format!("; newest movement recorded {t}"))
            .unwrap_or_default()
    );
    outln!("anything the box recorded after that delivery is not in the rebuilt database");
    let f = &r.fixes;
    if !f.is_empty() {
        outln!("fixed so the database obeys ora's rules (the mirror had stopped in the middle of a change):");
        for s in &f.stock_from_movements {
            outln!("  stock set from its movements: {s}");
        }
        for s in &f.recreated_products {
            outln!("  product recreated: {s}");
        }
        if f.recreated_orders > 0 {
            outln!(
                "  orders recreated from their items: {}",
                f.recreated_orders
            );
        }
        if f.unlinked_items > 0 {
            outln!(
                "  shipped items unlinked from a missing movement: {}",
                f.unlinked_items
            );
        }
    }
    outln!("not in the mirror, so not rebuilt:");
    for s in &r.not_in_mirror {
        outln!("  {s}");
    }
    if let Some(k) = &r.kept_previous {
        outln!("the previous database is kept as {}", k.display());
    }
    outln!("forwarding to this mirror resumes where it stopped (no full copy); start `ora serve`, then take a backup");
    Ok(exit::OK)
}

#[cfg(not(feature = "postgres"))]
pub fn restore_from_postgres(
    _: &Ctx,
    _: &str,
    _: Option<&str>,
    _: Option<std::path::PathBuf>,
    _: bool,
) -> Result<i32> {
    Err(Error::config(
        "restore --from-postgres: this ora was built without PostgreSQL support",
    ))
}
