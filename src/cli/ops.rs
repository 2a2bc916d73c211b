//! `ora health|maintain|metrics|explain|backup|archive|restore|dump|recover`: the whole-file
//! operations, printed for people or as JSON (`backups ...`: [`super::backups`]).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::file::backup::{self, archive};
use crate::file::progress::Progress;
use crate::ops::health::{self, Level};
use crate::ops::maintain::{self, Routine};
use crate::ops::{dump, metrics, recover, restore};

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Run the full integrity_check instead of quick_check.
    #[arg(long)]
    full: bool,
}

#[derive(Debug, Subcommand)]
pub enum MaintainCommand {
    /// Checkpoint, planner statistics (only tables new or grown tenfold), prune old
    /// idempotency keys, free pages back in slices, quick_check.
    Daily,
    /// Page statistics, free pages back in slices, VACUUM of a file made before incremental
    /// vacuum above the free-page threshold, integrity_check, table sizes, planner statistics.
    Weekly {
        /// VACUUM now, whatever the file's size or free pages (it holds every writer while it
        /// runs: about 10 s a GB); the file gives free pages back in slices from then on.
        #[arg(long)]
        vacuum: bool,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory for backups (default: backup.dir, or `backups` beside the database).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep backups this many days, 1 to 3650 (default: backup.keep_days, 30).
    #[arg(long, value_parser = keep_days_flag)]
    keep_days: Option<u32>,
}

/// `--keep-days`: a whole number, held to the range `backup.keep_days` has in the file.
fn keep_days_flag(text: &str) -> std::result::Result<u32, String> {
    let days: u32 = text.parse().map_err(|_| {
        format!(
            "{:?} is not a whole number of days",
            crate::model::clip(text)
        )
    })?;
    crate::config::in_range(days, &crate::config::BACKUP_KEEP_DAYS)
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// An ora backup (.db.gz), a gzipped SQLite file, or a plain SQLite file.
    #[arg(
        required_unless_present_any = ["from_replica", "from_postgres"],
        conflicts_with_all = ["from_replica", "from_postgres"]
    )]
    file: Option<PathBuf>,
    /// Rebuild from this replica directory instead (with --latest, --at or --before-movement).
    #[arg(long, value_name = "DIR", conflicts_with = "from_postgres")]
    from_replica: Option<PathBuf>,
    /// The box is gone: rebuild from the central PostgreSQL mirror (the configured
    /// remote.postgres, or this URL).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = "")]
    from_postgres: Option<String>,
    /// With --from-postgres: the site to rebuild (default remote.site_id).
    #[arg(long, requires = "from_postgres")]
    site: Option<String>,
    #[command(flatten)]
    point: super::replica::FromReplica,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Restore even while a server holds the database (dangerous).
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Where to write the salvaged database (default: <name>-recovered-<time>.db beside it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Install the salvaged database over the damaged one (kept beside it); refused while a
    /// server runs.
    #[arg(long)]
    replace: bool,
    /// Compare row counts with this backup (default: the newest backup).
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Do not compare with a backup.
    #[arg(long, conflicts_with = "compare")]
    no_compare: bool,
}

#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Write here instead of stdout (gzip when the name ends in .gz).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub(super) fn backup_opts(
    ctx: &Ctx,
    dir: Option<PathBuf>,
    keep_days: Option<u32>,
) -> backup::BackupOptions {
    let mut o = ctx.config.backup.clone();
    if let Some(d) = dir {
        o.dir = d;
        o.dir_is_default = false;
    }
    if let Some(k) = keep_days {
        o.keep_days = k;
    }
    o
}

/// After the database was replaced: the replica takes its new base now, rather than at the
/// next write.
pub(super) fn replica_catch_up(ctx: &Ctx, what: &str) {
    let Ok((store, Some(rep))) = ctx.open_replicated(crate::store::OpenMode::Existing) else {
        return;
    };
    if !rep.catch_up(std::time::Duration::from_secs(120)) {
        let st = rep.status();
        errln!(
            "ora: {what}: the replica could not take the new database yet ({}); it will when it is reachable",
            st.problem.unwrap_or_else(|| "still working".into())
        );
    }
    store.close();
}

/// Bytes for people: kB below a megabyte, MB above.
pub(super) fn mb(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{:.0} kB", (bytes as f64 / 1e3).ceil())
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

pub fn health(ctx: &Ctx, a: &HealthArgs) -> Result<i32> {
    let mut o = ctx.config.health.clone();
    o.full = a.full;
    let mut r = health::run(&ctx.config.store.path, &o, &ctx.config.store.tuning);
    if a.full {
        // The full check also asks each configured remote target, live.
        for (target, answer) in crate::remote::probe(&ctx.config.remote) {
            r.add_probe(&target, answer);
        }
    }
    if ctx.json {
        output::json(&r.to_json(None, None))?;
    } else {
        let word = match r.verdict {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        outln!("health of {}: {word}", r.database);
        for f in &r.findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Fail => "FAIL",
            };
            outln!("  {tag} {:<12} {}", f.check, f.message);
        }
        let f = &r.facts;
        if f.exists && f.open_error.is_none() {
            outln!(
                "  size {}, WAL {}, {} pages of {} bytes, {:.1}% free",
                mb(f.file.size_bytes),
                mb(f.file.wal_bytes),
                f.file.page_count,
                f.file.page_size,
                f.file.free_percent
            );
        }
    }
    if r.verdict == Level::Fail {
        // One line on stderr naming every failing check, so a job runner that keeps only
        // stderr (the journal, a heartbeat) says what failed.
        let failing: Vec<String> = r
            .findings
            .iter()
            .filter(|f| f.level == Level::Fail)
            .map(|f| format!("{}: {}", f.check, f.message))
            .collect();
        errln!("ora: health FAIL: {}", failing.join("; "));
        return Ok(exit::CHECK_FAILED);
    }
    Ok(exit::OK)
}

pub fn maintain(ctx: &Ctx, c: &MaintainCommand) -> Result<i32> {
    let mut o = ctx.config.maintain.clone();
    let routine = match c {
        MaintainCommand::Daily => Routine::Daily,
        MaintainCommand::Weekly { vacuum } => {
            o.vacuum_asked = *vacuum;
            Routine::Weekly
        }
    };
    let r = maintain::run(&ctx.config.store.path, routine, &o)?;
    if ctx.json {
        output::json(&r)?;
    } else {
        for s in &r.steps {
            outln!("{:<26} {:>7.2} s  {}", s.step, s.seconds, s.result);
        }
        outln!(
            "{}: {} in {:.1} s",
            r.routine,
            if r.ok { "ok" } else { "FAILED" },
            r.seconds
        );
    }
    if r.ok {
        Ok(exit::OK)
    } else {
        errln!(
            "ora: {} found a damaged database; see the runbook in docs/operations.md (restore or recover)",
            r.routine
        );
        Ok(exit::CHECK_FAILED)
    }
}

pub fn metrics(ctx: &Ctx) -> Result<i32> {
    let m = metrics::collect(&ctx.config.store.path, &ctx.config.store.tuning)?;
    if ctx.json {
        output::json(&m)?;
        return Ok(exit::OK);
    }
    outln!("database        {}", m.database);
    outln!(
        "size            {} (WAL {})",
        mb(m.file.size_bytes),
        mb(m.file.wal_bytes)
    );
    outln!(
        "pages           {} x {} bytes, {} free ({:.1}%)",
        m.file.page_count,
        m.file.page_size,
        m.file.freelist_count,
        m.file.free_percent
    );
    outln!("cache           {} KiB per connection", m.cache_size_kib);
    outln!("journal mode    {}", m.journal_mode);
    outln!(
        "foreign keys    {}",
        if m.foreign_keys { "on" } else { "OFF" }
    );
    outln!(
        "schema version  {} (SQLite {})",
        m.schema_version,
        m.sqlite_version
    );
    let rows: Vec<Vec<String>> = m
        .tables
        .iter()
        .map(|(t, n)| vec![t.clone(), n.to_string()])
        .collect();
    outln!();
    output::table(&["TABLE", "ROWS"], &rows)?;
    outln!();
    outln!(
        "{} and {}, largest first:",
        output::count(m.table_count.max(0) as u64, "table", "tables"),
        output::count(m.index_count.max(0) as u64, "index", "indexes")
    );
    let sizes: Vec<Vec<String>> = m
        .objects
        .iter()
        .take(30)
        .map(|o| vec![o.name.clone(), o.kind.clone(), mb(o.bytes.max(0) as u64)])
        .collect();
    output::table(&["NAME", "KIND", "SIZE"], &sizes)?;
    Ok(exit::OK)
}

pub fn explain(ctx: &Ctx, sql: &str) -> Result<i32> {
    let e = metrics::explain(&ctx.config.store.path, &ctx.config.store.tuning, sql)?;
    if ctx.json {
        output::json(&e)?;
    } else {
        for line in &e.plan {
            outln!("{line}");
        }
        outln!(
            "{} in {:.3} ms",
            output::count(e.rows as u64, "row", "rows"),
            e.seconds * 1e3
        );
    }
    Ok(exit::OK)
}

pub fn backup(ctx: &Ctx, a: &BackupArgs) -> Result<i32> {
    let o = backup_opts(ctx, a.dir.clone(), a.keep_days);
    let db = &ctx.config.store.path;
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    let r = backup::run(db, &o, &Progress::bytes("backup", size))?;
    if ctx.json {
        output::json(&r)?;
    } else {
        outln!(
            "backup {}: {} -> {} in {:.2} s, quick_check {}, sha256 {}",
            r.file.display(),
            mb(r.database_bytes),
            mb(r.bytes),
            r.seconds,
            r.check,
            &r.sha256[..16]
        );
        for n in &r.removed {
            outln!("  removed expired {n}");
        }
        if r.left_for_archive > 0 {
            outln!(
                "  {} expired backups wait for `ora archive`",
                r.left_for_archive
            );
        }
    }
    Ok(exit::OK)
}

pub fn archive(ctx: &Ctx) -> Result<i32> {
    let o = &ctx.config.backup;
    if !o.dir.is_dir() {
        return Err(Error::usage(format!(
            "archive: the backup directory {} does not exist",
            o.dir.display()
        )));
    }
    let r = archive::run(&ctx.config.store.path, &o.dir, o.keep())?;
    if ctx.json {
        output::json(&r)?;
    } else {
        if !r.removed.is_empty() {
            outln!(
                "archive: removed {} no retention rule keeps (daily {} days, weekly {} weeks, monthly {} months)",
                output::count(r.removed.len() as u64, "backup", "backups"),
                o.keep_days,
                o.keep_weeks,
                o.keep_months
            );
        }
        if r.packed.is_empty() {
            outln!(
                "archive: no kept backups older than {} days to pack",
                o.keep_days
            );
        }
        for a in &r.archives {
            outln!("archive: wrote {}", a.display());
        }
        if !r.packed.is_empty() {
            outln!(
                "archive: packed and removed {}",
                output::count(r.packed.len() as u64, "backup", "backups")
            );
        }
    }
    Ok(exit::OK)
}

/// Kept whole: the confirmation of a restore that replaces the database, then one of the three
/// sources (file, replica, mirror) and the report of the file restore.
pub fn restore(ctx: &Ctx, a: &RestoreArgs) -> Result<i32> {
    let db = &ctx.config.store.path;
    let installs = (a.from_replica.is_none() && a.from_postgres.is_none()) || a.point.out.is_none();
    let what = match (&a.file, &a.from_replica, &a.from_postgres) {
        (Some(f), _, _) => f.display().to_string(),
        (None, Some(d), _) => format!("the replica in {}", d.display()),
        (None, None, Some(_)) => "the central PostgreSQL mirror".to_string(),
        (None, None, None) => {
            return Err(Error::usage(
                "restore: name a backup file, or --from-replica DIR, or --from-postgres",
            ))
        }
    };
    // With the box gone there is nothing at the path to replace, so nothing to confirm.
    let replaces = installs && (a.from_postgres.is_none() || db.exists());
    if replaces && !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::usage(
                "restore: this replaces the database; pass --yes to confirm",
            ));
        }
        {
            use std::io::Write as _;
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "Replace {} with {}? The current database is kept beside it. [y/N] ",
                db.display(),
                what
            );
            let _ = err.flush();
        }
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(Error::usage("restore: not confirmed; nothing was changed"));
        }
    }
    if let Some(dir) = &a.from_replica {
        return super::replica::restore(ctx, dir, &a.point, a.force);
    }
    if let Some(url) = &a.from_postgres {
        if a.point.latest || a.point.at.is_some() || a.point.before_movement.is_some() {
            return Err(Error::usage(
                "restore --from-postgres rebuilds the mirror's newest state; --latest, --at and --before-movement go with --from-replica DIR",
            ));
        }
        return super::remote::restore_from_postgres(
            ctx,
            url,
            a.site.as_deref(),
            a.point.out.clone(),
            a.force,
        );
    }
    let Some(file) = &a.file else {
        return Err(Error::usage(
            "restore: name a backup file, or --from-replica DIR",
        ));
    };
    if a.point.latest
        || a.point.at.is_some()
        || a.point.before_movement.is_some()
        || a.point.out.is_some()
    {
        return Err(Error::usage(
            "restore: --latest, --at, --before-movement and --out go with --from-replica DIR",
        ));
    }
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let o = restore::RestoreOptions {
        force: a.force,
        tuning: ctx.config.store.tuning.clone(),
        identities: ctx.identities.clone(),
    };
    let r = restore::run(db, file, &o, &Progress::bytes("restore", size * 3))?;
    replica_catch_up(ctx, "restore");
    if ctx.json {
        output::json(&r)?;
    } else {
        outln!(
            "restored {} from {} ({}, {}) in {:.2} s",
            r.database.display(),
            r.restored_from.display(),
            mb(r.database_bytes),
            r.check,
            r.seconds
        );
        if let Some(k) = &r.kept_previous {
            outln!("the previous database is kept as {}", k.display());
        }
    }
    Ok(exit::OK)
}

pub fn dump(ctx: &Ctx, a: &DumpArgs) -> Result<i32> {
    let r = dump::run(
        &ctx.config.store.path,
        a.out.as_deref(),
        &ctx.config.store.tuning,
        ctx.config.backup.level,
    )?;
    if let Some(out) = &r.out {
        if ctx.json {
            output::json(&r)?;
        } else {
            errln!(
                "dump: {} tables, {} rows -> {} ({}) in {:.2} s",
                r.tables,
                r.rows,
                out.display(),
                mb(r.bytes),
                r.seconds
            );
        }
    }
    Ok(exit::OK)
}

/// Kept whole: the command's report in words: one line per salvage figure and a table of what each
/// table kept and lost, printed in the order an operator reads them.
pub fn recover(ctx: &Ctx, a: &RecoverArgs) -> Result<i32> {
    let db = &ctx.config.store.path;
    let o = recover::RecoverOptions {
        out: a.out.clone(),
        replace: a.replace,
        compare_with: a.compare.clone(),
        backup_dir: Some(ctx.config.backup.dir.clone()),
        no_compare: a.no_compare,
        identities: ctx.identities.clone(),
    };
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    let r = recover::run(db, &o, &Progress::bytes("recover", size))?;
    if a.replace {
        replica_catch_up(ctx, "recover");
    }
    if ctx.json {
        output::json(&r)?;
        return Ok(exit::OK);
    }
    outln!(
        "recover: {} pages read ({} from the WAL), {} damaged, {} orphaned; {:.1} s",
        r.pages,
        r.pages_from_wal,
        r.damaged_pages,
        r.orphan_pages,
        r.seconds
    );
    if r.schema_assumed {
        outln!("  the schema table was unreadable: ora's own schema was assumed");
    }
    let rows: Vec<Vec<String>> = r
        .tables
        .iter()
        .map(|t| {
            let l = &t.loss;
            vec![
                t.table.clone(),
                (t.salvaged + t.from_orphans).to_string(),
                t.from_orphans.to_string(),
                t.to_lost_and_found.to_string(),
                l.known_lost.to_string(),
                if l.possibly_lost > 0 {
                    format!("up to {}", l.possibly_lost)
                } else {
                    "0".into()
                },
                t.damaged_pages.to_string(),
                t.in_backup.map_or("-".into(), |n| n.to_string()),
                l.missing_vs_backup.map_or("-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    output::table(
        &[
            "TABLE",
            "SALVAGED",
            "FROM ORPHANS",
            "IN LOST+FOUND",
            "KNOWN LOST",
            "POSSIBLY LOST",
            "DAMAGED PAGES",
            "IN BACKUP",
            "BACKUP ONLY",
        ],
        &rows,
    )?;
    for t in r
        .tables
        .iter()
        .filter(|t| t.loss.known_lost > 0 || t.loss.possibly_lost > 0)
    {
        let l = &t.loss;
        if l.known_lost > 0 {
            outln!(
                "  {}: {} known lost, named by {} (for example {})",
                t.table,
                l.known_lost,
                l.known_lost_how.join(" and "),
                l.known_lost_examples.join(", ")
            );
        }
        if let Some(how) = &l.possibly_lost_how {
            outln!("  {}: possibly lost {}", t.table, how);
        }
    }
    if let Some(b) = &r.compared_with {
        outln!(
            "  (IN BACKUP: rows of {}; BACKUP ONLY: its rows the salvage lacks, rows removed since it included)",
            b.display()
        );
    }
    if r.reconciled.requests_forgotten > 0 {
        outln!(
            "  {} request id(s) whose movement was lost were forgotten: sending them again records the movement again",
            r.reconciled.requests_forgotten
        );
    }
    outln!(
        "  {} rows could not be placed: see the lost_and_found table",
        r.lost_and_found
    );
    for b in &r.reconciled.balancing {
        outln!("  balancing adjustment {b} (movements lost; stock kept as recorded)");
    }
    for p in &r.reconciled.recreated_products {
        outln!("  product {p} recreated from its movements: check its name and count it");
    }
    if let Some(id) = r.reconciled.chain_restarted_at {
        outln!("  the ledger's hash chain was linked again from ledger id {id} (rows at or before it were lost or damaged)");
    }
    outln!("  integrity_check: {}", r.integrity);
    match &r.kept_previous {
        Some(k) => outln!("installed over {}; the damaged file is kept as {}", r.output.display(), k.display()),
        None => outln!(
            "salvaged into {}; check it (`ora --db {} verify`), then install it with `ora restore {} --yes` or rerun with --replace",
            r.output.display(),
            r.output.display(),
            r.output.display()
        ),
    }
    Ok(exit::OK)
}
