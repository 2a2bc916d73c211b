//! `ora recover`: salvages a damaged database into a new file at page level, as sqlite3's
//! `.recover` does, instead of through SQL (a `.dump` pipe stops at the first damaged page:
//! it kept 0 of 2.5 M ledger rows from a file with 20 damaged pages). Reads the file's pages
//! (with its WAL's committed frames), walks each table's b-tree past unreadable pages, places
//! rows from orphaned leaf pages where exactly one table fits them and puts the rest in
//! `lost_and_found` with their rowids, rebuilds indexes, reconciles the ledger so the result
//! passes `verify`, and integrity-checks it. The report says per table what was salvaged,
//! what is known lost and how it is known, what may be lost (a bound, with its reason), and
//! what the newest good backup holds that the salvage does not ([`losses`]). `--replace`
//! installs the result the way restore does. Never writes the damaged file.

mod btree;
mod losses;
mod pages;
mod rebuild;
mod salvage;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::backup::{catalog, source};
use crate::file::check::pragma_check;
use crate::file::progress::Progress;
use crate::file::{install, oplog};
use crate::fsutil;
use crate::store::error::StoreError;
use crate::store::lineage::Origin;
use crate::store::{connection, dbfile};

pub use rebuild::Reconciled;

/// Options of a salvage.
#[derive(Debug, Clone, Default)]
pub struct RecoverOptions {
    /// Where to write the salvaged database (default `<stem>-recovered-<time>.db` beside it).
    pub out: Option<PathBuf>,
    /// Install the result over the database (refused while a server holds it).
    pub replace: bool,
    /// Backup to compare row counts with (default: the newest in `backup_dir`).
    pub compare_with: Option<PathBuf>,
    pub backup_dir: Option<PathBuf>,
    /// Skip the comparison with a backup.
    pub no_compare: bool,
    /// What opens an encrypted backup to compare with.
    pub identities: crate::file::backup::keys::Identities,
}

/// What was salvaged of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableReport {
    pub table: String,
    /// Rows read through the table's b-tree.
    pub salvaged: u64,
    /// Rows placed from orphaned pages.
    pub from_orphans: u64,
    /// Rows of this table that went to lost_and_found (refused by the schema).
    pub to_lost_and_found: u64,
    /// Pages of this table's tree that could not be read, or held a cell that could not.
    pub damaged_pages: usize,
    /// Rows known lost, possibly lost, and missing against the backup, with how each is known.
    #[serde(flatten)]
    pub loss: losses::Loss,
    /// Rows in the compared backup.
    pub in_backup: Option<i64>,
}

/// What a salvage did.
#[derive(Debug, Clone, Serialize)]
pub struct RecoverReport {
    pub source: PathBuf,
    pub output: PathBuf,
    pub kept_previous: Option<PathBuf>,
    pub pages: u32,
    pub pages_from_wal: u32,
    pub damaged_pages: usize,
    pub orphan_pages: usize,
    /// The schema table itself was unreadable; ora's own schema was assumed.
    pub schema_assumed: bool,
    /// The file header was readable (else the page size was assumed).
    pub header_readable: bool,
    pub tables: Vec<TableReport>,
    pub lost_and_found: u64,
    pub reconciled: Reconciled,
    pub integrity: String,
    pub compared_with: Option<PathBuf>,
    pub seconds: f64,
}

/// Salvages `db`; the run is recorded in the output's ops_log.
pub fn run(db: &Path, o: &RecoverOptions, progress: &Progress) -> Result<RecoverReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    if !db.is_file() {
        return Err(Error::usage(format!(
            "recover: no database file at {}; check --db",
            db.display()
        )));
    }
    if o.replace {
        if let Some(pid) = fsutil::server_holding(db) {
            return Err(Error::failed(format!(
                "recover: an ora server (pid {pid}) has {} open; stop it before --replace (nothing was changed)",
                db.display()
            )));
        }
    }
    let pages = pages::Pages::open(db)
        .map_err(|e| Error::io(format!("recover: read {}", db.display()), e))?;
    progress.set_message("reading");
    let mut claims = salvage::Claims::new(&pages);
    let schema = salvage::schema(&pages, &mut claims);
    let roots = salvage::table_roots(&schema);
    let reference = rebuild::reference()?;
    // Derived tables (the search index) are rebuilt, not salvaged.
    let derived = crate::store::schema::derived_tables(&reference)?;
    let ref_tables: Vec<String> = {
        let mut st = reference
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY rowid")
            .map_err(|e| StoreError::sqlite("recover", e))?;
        let r = st
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(|e| StoreError::sqlite("recover", e))?;
        r.filter_map(|n| n.ok())
            .filter(|n| !derived.contains(n) && !n.starts_with("sqlite_"))
            .collect()
    };
    let schema_assumed = roots.is_empty();

    // Where the output goes: a temporary name beside it until it is complete and checked.
    let out = o.out.clone().unwrap_or_else(|| {
        let stamp = crate::clock::local_now().format("%Y%m%dT%H%M%S");
        fsutil::parent_dir(db).join(format!("{}-recovered-{stamp}.db", catalog::stem(db)))
    });
    if out.exists() {
        return Err(Error::usage(format!(
            "recover: {} already exists; pass another --out",
            out.display()
        )));
    }
    let building = install::Building::beside(&out, "recover");
    let tmp = building.path().to_path_buf();
    let mut output = rebuild::Output::create(&tmp, pages.page_size, &reference)?;

    // Layouts: how the damaged file stored each table (from its own schema when readable).
    let scratch =
        rusqlite::Connection::open_in_memory().map_err(|e| StoreError::sqlite("recover", e))?;
    let mut layouts: HashMap<String, (rebuild::Layout, rebuild::Layout)> = HashMap::new();
    for t in &ref_tables {
        let to = rebuild::layout(&reference, t)?;
        let from = schema
            .iter()
            .find(|e| e.kind == "table" && &e.name == t)
            .and_then(|e| e.sql.as_deref())
            .and_then(|sql| scratch.execute_batch(sql).ok())
            .and_then(|()| rebuild::layout(&scratch, t).ok())
            .filter(|l| !l.columns.is_empty())
            .unwrap_or_else(|| to.clone());
        layouts.insert(t.clone(), (from, to));
    }

    // Each table's tree is walked and loaded leaf by leaf.
    progress.set_message("salvaging");
    let mut tables = Vec::new();
    let mut damaged_pages = 0;
    for t in &ref_tables {
        let Some(root) = roots.get(t) else {
            continue;
        };
        let (from, to) = &layouts[t];
        let (mut salvaged, mut lost) = (0, 0);
        let stats = salvage::walk_each(&pages, *root, &mut claims, &mut |rows| {
            let (a, b) = output.load(from, to, &rows)?;
            salvaged += a;
            lost += b;
            Ok::<(), Error>(())
        })?;
        damaged_pages += stats.damaged_pages;
        tables.push((
            t.clone(),
            salvaged,
            lost,
            stats.damaged_pages,
            stats.max_rowid,
            stats.leaves,
        ));
    }
    log::debug!(
        "recover: known tables loaded at {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    // Tables ora does not know (a previous salvage's lost_and_found, a table an operator
    // added) are carried over; SQLite's own statistics tables only need their pages claimed.
    for e in schema
        .iter()
        .filter(|e| e.kind == "table" && e.root > 0 && !ref_tables.contains(&e.name))
    {
        if e.name.starts_with("sqlite_") || derived.contains(&e.name) {
            // Only their pages are claimed (the search index is rebuilt from the products).
            salvage::walk(&pages, e.root, &mut claims);
            continue;
        }
        let created = output.conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [&e.name],
            |r| r.get::<_, i64>(0),
        );
        let exists = matches!(created, Ok(n) if n > 0);
        let usable = exists
            || e.sql
                .as_deref()
                .is_some_and(|sql| output.conn.execute_batch(sql).is_ok());
        let (mut salvaged, mut lost) = (0, 0);
        let stats = if usable {
            let to = rebuild::layout(&output.conn, &e.name)?;
            let from = e
                .sql
                .as_deref()
                .and_then(|sql| scratch.execute_batch(sql).ok())
                .and_then(|()| rebuild::layout(&scratch, &e.name).ok())
                .unwrap_or_else(|| to.clone());
            salvage::walk_each(&pages, e.root, &mut claims, &mut |rows| {
                let (a, b) = output.load(&from, &to, &rows)?;
                salvaged += a;
                lost += b;
                Ok::<(), Error>(())
            })?
        } else {
            salvage::walk_each(&pages, e.root, &mut claims, &mut |rows| {
                for row in &rows {
                    output.lose(Some(&e.name), row, "its table could not be recreated")?;
                }
                lost += rows.len() as u64;
                Ok::<(), Error>(())
            })?
        };
        damaged_pages += stats.damaged_pages;
        tables.push((
            e.name.clone(),
            salvaged,
            lost,
            stats.damaged_pages,
            stats.max_rowid,
            stats.leaves,
        ));
    }
    let free = pages.freelist();
    let (orphans, orphan_pages) = salvage::orphans(&pages, &mut claims, &free);
    log::debug!(
        "recover: orphans scanned at {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    // Orphans: placed where exactly one table fits and the rowid is free, else lost_and_found.
    let mut placed: HashMap<String, u64> = HashMap::new();
    for row in &orphans {
        let fits: Vec<&String> = ref_tables
            .iter()
            .filter(|t| rebuild::fits(&layouts[*t].0, &row.values))
            .collect();
        match fits.as_slice() {
            [one] => {
                if output.has_rowid(one, row.rowid)? {
                    output.lose(Some(one), row, "orphaned page; its rowid is already taken")?;
                    continue;
                }
                let (from, to) = &layouts[*one];
                let (ok, _) = output.load(from, to, std::slice::from_ref(row))?;
                *placed.entry((*one).clone()).or_default() += ok;
            }
            [] => output.lose(None, row, "orphaned page; fits no table")?,
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.as_str()).collect();
                output.lose(
                    None,
                    row,
                    &format!("orphaned page; fits several tables: {}", names.join(", ")),
                )?;
            }
        }
    }
    let lost_and_found = output.lost();
    log::debug!(
        "recover: rows loaded at {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    // What survived names rows too: the damaged file's index entries and the newest backup.
    let mut kinds = losses::key_kinds(&reference, &ref_tables)?;
    for (t, ..) in &tables {
        kinds.entry(t.clone()).or_insert(losses::KeyKind::Rowid);
    }
    let from_indexes = losses::from_indexes(&pages, &schema, &kinds);
    let (compared_with, from_backup) = if o.no_compare {
        (None, HashMap::new())
    } else {
        compare(db, o, &kinds)
    };
    let ledger = "inventory_transactions";
    let answers = losses::StoredAnswers::read(&output.conn)?;
    let first_new_id = losses::first_new_ledger_id(
        &output.conn,
        &answers,
        tables.iter().find(|t| t.0 == ledger).map_or(0, |t| t.4),
        from_indexes.get(ledger),
        from_backup.get(ledger),
    )?;
    let forgotten = losses::forget_lost_requests(&output.conn, &answers)?;
    let (conn, mut reconciled) = output.finish(&reference, first_new_id)?;
    reconciled.requests_forgotten = forgotten;
    log::debug!(
        "recover: indexes built, reconciled at {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let integrity = pragma_check(&conn, "integrity_check")?;
    log::debug!(
        "recover: integrity_check done at {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    if integrity != "ok" {
        return Err(Error::check_failed(format!(
            "recover: the salvaged database fails integrity_check ({integrity}); nothing was installed. Please report this"
        )));
    }
    let mut reports = Vec::new();
    // A page that held no readable row still held about as many as the others.
    let fallback_rows_per_page = (pages.usable / 64).max(1) as u64;
    for (t, salvaged, lost, damaged, max_rowid, leaves) in tables {
        let from_orphans = placed.get(&t).copied().unwrap_or(0);
        let kind = kinds.get(&t).cloned().unwrap_or(losses::KeyKind::Rowid);
        let present = losses::keys_in(&conn, &t, &kind)?;
        let parked = losses::parked(&conn, &t)?;
        let loss = losses::account(&losses::Facts {
            dense: losses::DENSE.contains(&t.as_str()),
            present: &present,
            parked: &parked,
            from_indexes: from_indexes.get(&t),
            from_backup: from_backup.get(&t),
            tree_max: max_rowid,
            damaged_pages: damaged,
            rows_per_leaf: if leaves > 0 {
                (salvaged / leaves as u64).max(1)
            } else {
                fallback_rows_per_page
            },
        });
        reports.push(TableReport {
            in_backup: from_backup.get(&t).map(|k| k.len() as i64),
            table: t,
            salvaged,
            from_orphans,
            to_lost_and_found: lost,
            damaged_pages: damaged,
            loss,
        });
    }
    drop(conn);
    // The file is complete: fsync it, give it its name.
    dbfile::sync(&tmp).map_err(|e| Error::io("recover: fsync the salvaged database", e))?;
    for suffix in ["-wal", "-shm"] {
        dbfile::remove(&install::companion(&tmp, suffix))
            .map_err(|e| Error::io("recover: remove the salvaged database's WAL", e))?;
    }
    let mut report = RecoverReport {
        source: db.to_path_buf(),
        output: out.clone(),
        kept_previous: None,
        pages: pages.count,
        pages_from_wal: (1..=pages.count).filter(|p| pages.in_wal(*p)).count() as u32,
        damaged_pages,
        orphan_pages,
        schema_assumed,
        header_readable: pages.header_ok,
        tables: reports,
        lost_and_found,
        reconciled,
        integrity,
        compared_with,
        seconds: 0.0,
    };
    // The damaged file's byte readers close before anything opens it through SQLite again.
    drop(claims);
    drop(pages);
    if o.replace {
        let tuning = crate::store::Tuning::default();
        // The damaged file's own replica settings may be unreadable: then the salvage starts
        // without a replica, and `ora health` says so when one is configured.
        let fate = crate::replica::setup::fate_in_place(
            db,
            &tuning,
            building.path(),
            Some("recovered in place (a salvage of the damaged file)".into()),
            Origin::copy("recover", &db.display().to_string()),
            None,
        );
        report.kept_previous = building.install(db, "recover", &fate)?;
        report.output = db.to_path_buf();
        crate::remote::after_replace(db, &tuning);
    } else {
        building.name_as(
            &out,
            "recover",
            &Origin::copy("recover", &db.display().to_string()),
        )?;
    }
    report.seconds = t0.elapsed().as_secs_f64();
    let details = serde_json::json!({
        "source": db.display().to_string(), "output": report.output.display().to_string(),
        "damaged_pages": report.damaged_pages, "lost_and_found": report.lost_and_found,
        "balancing": report.reconciled.balancing.len(), "seconds": report.seconds,
    });
    oplog::record(&report.output, "recover", &started, true, &details);
    progress.finish();
    Ok(report)
}

/// The keys of every table of the backup to compare with (the named one, or the newest in the
/// directory).
fn compare(
    db: &Path,
    o: &RecoverOptions,
    kinds: &HashMap<String, losses::KeyKind>,
) -> (Option<PathBuf>, HashMap<String, losses::Keys>) {
    let file = o.compare_with.clone().or_else(|| {
        let dir = o.backup_dir.clone()?;
        catalog::list(&dir, db)
            .ok()?
            .into_iter()
            .find(|b| b.has_checksum)
            .map(|b| b.path)
    });
    let Some(file) = file else {
        return (None, HashMap::new());
    };
    let read = (|| -> Result<HashMap<String, losses::Keys>> {
        let scratch = tempfile::Builder::new()
            .prefix(".ora-compare-")
            .tempdir_in(fsutil::parent_dir(db))
            .map_err(|e| Error::io("recover: scratch directory", e))?;
        let copy = scratch.path().join("backup.db");
        let mut f = dbfile::create_new(&copy).map_err(|e| Error::io("recover: scratch copy", e))?;
        source::extract(
            &file,
            &mut f,
            "recover",
            &Progress::hidden(),
            o.identities.as_slice(),
        )?;
        drop(f);
        let conn = connection::open_plain(&copy)
            .map_err(|e| StoreError::sqlite("recover: open the backup", e))?;
        let mut out = HashMap::new();
        for (t, kind) in kinds {
            // A table the backup's (older) schema lacks, or keys differently, is left out.
            if let Ok(k) = losses::keys_in(&conn, t, kind) {
                out.insert(t.clone(), k);
            }
        }
        Ok(out)
    })();
    match read {
        Ok(k) => (Some(file), k),
        Err(e) => {
            log::warn!("recover: could not compare with {}: {e}", file.display());
            (None, HashMap::new())
        }
    }
}
