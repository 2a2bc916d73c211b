//! `ora restore --from-postgres`: rebuilds a lost box's database from the central PostgreSQL
//! mirror alone. A new file with ora's current schema is filled with every mirrored row of
//! the site (ledger ids and every other key kept), made to obey ora's rules where the mirror
//! broke them (each fix reported), checked with integrity_check and `verify`, told that the
//! mirror already holds everything up to its recorded position (so forwarding resumes with no
//! duplicates and no full copy), and installed the way restore installs a backup (or written
//! to `--out`). The report says what the mirror cannot give back and how far behind it was.
//! Never writes to PostgreSQL; never touches the database at the path until the new one is
//! complete and checked.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::check::pragma_check;
use crate::file::{install, oplog};
use crate::fsutil;
use crate::remote::mirror_read::{self, ReadError, SitePosition};
use crate::remote::options::PostgresConfig;
use crate::remote::outbox;
use crate::store::connection;
use crate::store::lineage::Origin;
use crate::store::StoreError;
use crate::store::{check_invariants, VerifyOptions};
use crate::store::{Fixes, Loader, Reconcile};

/// What the rebuild reads and where it writes.
#[derive(Debug, Clone)]
pub struct FromMirrorOptions {
    pub postgres: PostgresConfig,
    /// The site to rebuild (the lost box's `remote.site_id`).
    pub site: String,
    /// Write the result here instead of installing it at the database path.
    pub out: Option<PathBuf>,
    /// Install even while a server holds the database (dangerous).
    pub force: bool,
    pub allow_negative_stock: bool,
}

/// Rows rebuilt per table.
#[derive(Debug, Clone, Serialize)]
pub struct TableRows {
    pub table: String,
    pub rows: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, Serialize)]
pub struct FromMirrorReport {
    pub output: PathBuf,
    pub site: String,
    pub schema: String,
    /// Where the mirror stood: the last change of the box it held, and when it took it.
    pub mirror: SitePosition,
    /// Seconds between the mirror's last delivery and this rebuild.
    pub mirror_behind_seconds: f64,
    pub tables: Vec<TableRows>,
    /// The highest ledger id rebuilt, and when that movement was recorded.
    pub last_ledger_id: i64,
    pub last_movement_at: Option<String>,
    /// What had to change so the result obeys ora's rules (empty for a consistent mirror).
    pub fixes: Fixes,
    /// What the mirror does not hold, said plainly.
    pub not_in_mirror: Vec<String>,
    pub integrity: String,
    pub kept_previous: Option<PathBuf>,
    pub seconds: f64,
}

/// Local state the mirror never receives, and what losing it means.
const NOT_MIRRORED: &[&str] = &[
    "request_log: the idempotency window is lost; a scanner that retries a request it sent before the loss is recorded again instead of answered 'already recorded'",
    "ops_log: the history of backups, checks and maintenance starts empty",
    "product_vectors: vectors clients stored for products are gone; send them again",
    "shipment archives: orders archived on the box were removed from the mirror too; their archive files were on the box",
    "the replica: the rebuilt database starts a new replica generation",
];

fn sql(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| StoreError::sqlite(&format!("restore --from-postgres: {what}"), e).into()
}

/// Refuses before anything is read: an `--out` that exists, a database a server holds (unless
/// forced), a directory that is not there.
fn preflight(db: &Path, o: &FromMirrorOptions, out: &Path) -> Result<()> {
    if o.out.is_some() && out.exists() {
        return Err(Error::usage(format!(
            "restore: {} already exists; pass another --out",
            out.display()
        )));
    }
    if o.out.is_none() && !o.force {
        if let Some(pid) = fsutil::server_holding(db) {
            return Err(Error::failed(format!(
                "restore: an ora server (pid {pid}) has {} open; stop it first (`systemctl stop ora`), or restore with --out and swap later (nothing was changed)",
                db.display()
            )));
        }
    }
    let out_dir = fsutil::parent_dir(out);
    if !out_dir.is_dir() {
        return Err(Error::usage(format!(
            "restore: the directory {} does not exist",
            out_dir.display()
        )));
    }
    Ok(())
}

/// The result is checked as any restored file is: structure, then ora's own rules.
fn check_built(tmp: &Path, o: &FromMirrorOptions) -> Result<()> {
    let conn = connection::open_plain(tmp).map_err(sql("reopen the new database"))?;
    let integrity = pragma_check(&conn, "integrity_check")?;
    if integrity != "ok" {
        return Err(Error::check_failed(format!(
            "restore: the database rebuilt from the mirror fails integrity_check ({integrity}); nothing was installed. Please report this"
        )));
    }
    let violations = check_invariants(
        &conn,
        &VerifyOptions {
            allow_negative_stock: o.allow_negative_stock,
            skip_integrity: true,
            skip_chain: false,
            after: None,
        },
    )?
    .violations();
    if !violations.is_empty() {
        return Err(Error::check_failed(format!(
            "restore: the database rebuilt from the mirror fails `ora verify` ({}); nothing was installed",
            violations.join("; ")
        )));
    }
    drop(conn);
    Ok(())
}

/// Rebuilds `db` (or `--out`) from the mirror; recorded in the result's ops_log.
///
/// Kept whole: read the mirror into a new file, check it, install it, report; the loader and the
/// read position pass from step to step, and the report gathers them.
pub fn run(db: &Path, o: &FromMirrorOptions) -> Result<FromMirrorReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    let out = o.out.clone().unwrap_or_else(|| db.to_path_buf());
    preflight(db, o, &out)?;
    let building = install::Building::beside(&out, "mirror");
    let tmp = building.path().to_path_buf();

    let conn = building.create("restore --from-postgres")?;
    let mut loader = Loader::begin(&conn, "(rebuilt)")?;
    let read = mirror_read::read_site(&o.postgres, &o.site, &mut |table, cols, values| {
        loader.insert(table, cols, &values)
    })
    .map_err(|e| match e {
        ReadError::Remote(r) => Error::from(r),
        ReadError::Sink(s) => Error::from(s),
    })?;
    let fixes = loader.finish(Reconcile::StockFromMovements)?;
    outbox::resume_at(&conn, "postgres", read.position.last_seq)?;
    let (last_ledger_id, last_movement_at): (i64, Option<String>) = conn
        .query_row(
            "SELECT coalesce(max(id), 0), (SELECT created_at FROM inventory_transactions ORDER BY id DESC LIMIT 1) FROM inventory_transactions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql("read the ledger"))?;
    drop(conn);

    check_built(&tmp, o)?;
    install::seal_built(&tmp, "restore")?;

    let origin = Origin::new_database(
        "restore --from-postgres",
        &format!("site {} of the PostgreSQL mirror", o.site),
    );
    let kept = if o.out.is_some() {
        building.name_as(&out, "restore", &origin)?;
        None
    } else {
        let fate = crate::replica::setup::fate_in_place(
            db,
            &crate::store::Tuning::default(),
            &tmp,
            Some("rebuilt in place from the PostgreSQL mirror".into()),
            origin,
            None,
        );
        building.install(db, "restore", &fate)?
    };
    let behind = chrono::DateTime::parse_from_rfc3339(&read.position.updated_at)
        .map(|t| {
            (crate::clock::now() - t.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0
        })
        .unwrap_or(0.0)
        .max(0.0);
    let report = FromMirrorReport {
        output: out.clone(),
        site: o.site.clone(),
        schema: o.postgres.schema.clone(),
        mirror: read.position,
        mirror_behind_seconds: behind,
        tables: read
            .rows
            .iter()
            .map(|(t, n)| TableRows {
                table: t.to_string(),
                rows: *n,
            })
            .collect(),
        last_ledger_id,
        last_movement_at,
        fixes,
        not_in_mirror: NOT_MIRRORED.iter().map(|s| s.to_string()).collect(),
        integrity: "integrity_check ok, verify ok".into(),
        kept_previous: kept,
        seconds: t0.elapsed().as_secs_f64(),
    };
    oplog::record(
        &out,
        "restore",
        &started,
        true,
        &serde_json::json!({
            "from_postgres": {"site": report.site, "schema": report.schema, "last_seq": report.mirror.last_seq},
            "rows": report.tables.iter().map(|t| t.rows).sum::<u64>(),
            "fixes": report.fixes,
        }),
    );
    Ok(report)
}
