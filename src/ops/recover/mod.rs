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
mod intset;
mod lookup;
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
use crate::store::lineage::Origin;
use crate::store::StoreError;
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

/// One table's walk: what it loaded, what it lost, and what its tree says about the rest.
struct TableRun {
    table: String,
    salvaged: u64,
    lost: u64,
    damaged_pages: usize,
    max_rowid: i64,
    leaves: usize,
}

/// The salvage under way: what the damaged file's pages said, how each table is laid out
/// there and in ora's schema, and what each phase loaded.
struct Salvage {
    claims: salvage::Claims,
    schema: Vec<salvage::SchemaEntry>,
    roots: HashMap<String, u32>,
    /// ora's own schema, in memory.
    reference: rusqlite::Connection,
    /// Derived tables (the search index): rebuilt, not salvaged.
    derived: Vec<String>,
    /// ora's tables, in schema order.
    ref_tables: Vec<String>,
    /// Where the damaged file's own table definitions are tried.
    scratch: rusqlite::Connection,
    /// Per table: how the damaged file stored it, and how ora stores it.
    layouts: HashMap<String, (rebuild::Layout, rebuild::Layout)>,
    tables: Vec<TableRun>,
    damaged_pages: usize,
    orphan_pages: usize,
    /// Rows placed from orphaned pages, per table.
    placed: HashMap<String, u64>,
}

/// Refuses what cannot be salvaged or replaced before anything is read.
fn preflight(db: &Path, o: &RecoverOptions) -> Result<()> {
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
    Ok(())
}

/// Where the output goes (`--out`, else `<stem>-recovered-<time>.db` beside the database).
fn output_path(db: &Path, o: &RecoverOptions) -> Result<PathBuf> {
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
    Ok(out)
}

impl Salvage {
    /// Reads the damaged file's schema and ora's own (phase 1).
    fn read(pages: &pages::Pages) -> Result<Salvage> {
        let sql = |e| StoreError::sqlite("recover", e);
        let mut claims = salvage::Claims::new(pages);
        let schema = salvage::schema(pages, &mut claims);
        let roots = salvage::table_roots(&schema);
        let reference = rebuild::reference()?;
        let derived = crate::store::schema::derived_tables(&reference)?;
        let ref_tables: Vec<String> = {
            let mut st = reference
                .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY rowid")
                .map_err(sql)?;
            let r = st.query_map([], |r| r.get::<_, String>(0)).map_err(sql)?;
            r.filter_map(|n| n.ok())
                .filter(|n| !derived.contains(n) && !n.starts_with("sqlite_"))
                .collect()
        };
        let scratch = rusqlite::Connection::open_in_memory().map_err(sql)?;
        let mut s = Salvage {
            claims,
            schema,
            roots,
            reference,
            derived,
            ref_tables,
            scratch,
            layouts: HashMap::new(),
            tables: Vec::new(),
            damaged_pages: 0,
            orphan_pages: 0,
            placed: HashMap::new(),
        };
        s.layouts = s.layouts()?;
        Ok(s)
    }

    /// How the damaged file stored each of ora's tables (from its own schema when readable).
    fn layouts(&self) -> Result<HashMap<String, (rebuild::Layout, rebuild::Layout)>> {
        let mut out = HashMap::new();
        for t in &self.ref_tables {
            let to = rebuild::layout(&self.reference, t)?;
            let from = self
                .schema
                .iter()
                .find(|e| e.kind == "table" && &e.name == t)
                .and_then(|e| e.sql.as_deref())
                .and_then(|sql| self.scratch.execute_batch(sql).ok())
                .and_then(|()| rebuild::layout(&self.scratch, t).ok())
                .filter(|l| !l.columns.is_empty())
                .unwrap_or_else(|| to.clone());
            out.insert(t.clone(), (from, to));
        }
        Ok(out)
    }

    /// Walks each of ora's tables and loads it leaf by leaf (phase 2).
    fn load_known(&mut self, pages: &pages::Pages, output: &mut rebuild::Output) -> Result<()> {
        for t in self.ref_tables.clone() {
            let Some(root) = self.roots.get(&t).copied() else {
                continue;
            };
            let (from, to) = &self.layouts[&t];
            let (mut salvaged, mut lost) = (0, 0);
            let stats = salvage::walk_each(pages, root, &mut self.claims, &mut |rows| {
                let (a, b) = output.load(from, to, &rows)?;
                salvaged += a;
                lost += b;
                Ok::<(), Error>(())
            })?;
            self.damaged_pages += stats.damaged_pages;
            self.tables.push(TableRun {
                table: t,
                salvaged,
                lost,
                damaged_pages: stats.damaged_pages,
                max_rowid: stats.max_rowid,
                leaves: stats.leaves,
            });
        }
        Ok(())
    }

    /// Tables ora does not know (a previous salvage's lost_and_found, a table an operator
    /// added) are carried over; SQLite's own statistics tables and the derived search index
    /// only need their pages claimed.
    fn load_others(&mut self, pages: &pages::Pages, output: &mut rebuild::Output) -> Result<()> {
        let others: Vec<salvage::SchemaEntry> = self
            .schema
            .iter()
            .filter(|e| e.kind == "table" && e.root > 0 && !self.ref_tables.contains(&e.name))
            .cloned()
            .collect();
        for e in others {
            if e.name.starts_with("sqlite_") || self.derived.contains(&e.name) {
                salvage::walk(pages, e.root, &mut self.claims);
                continue;
            }
            let (mut salvaged, mut lost) = (0, 0);
            let stats = match self.other_layouts(&e, output)? {
                Some((from, to)) => {
                    salvage::walk_each(pages, e.root, &mut self.claims, &mut |rows| {
                        let (a, b) = output.load(&from, &to, &rows)?;
                        salvaged += a;
                        lost += b;
                        Ok::<(), Error>(())
                    })?
                }
                None => salvage::walk_each(pages, e.root, &mut self.claims, &mut |rows| {
                    for row in &rows {
                        output.lose(Some(&e.name), row, "its table could not be recreated")?;
                    }
                    lost += rows.len() as u64;
                    Ok::<(), Error>(())
                })?,
            };
            self.damaged_pages += stats.damaged_pages;
            self.tables.push(TableRun {
                table: e.name.clone(),
                salvaged,
                lost,
                damaged_pages: stats.damaged_pages,
                max_rowid: stats.max_rowid,
                leaves: stats.leaves,
            });
        }
        Ok(())
    }

    /// An unknown table recreated in the output (from its own definition): how it was stored
    /// and how it is now; `None` when it cannot be recreated.
    fn other_layouts(
        &self,
        e: &salvage::SchemaEntry,
        output: &rebuild::Output,
    ) -> Result<Option<(rebuild::Layout, rebuild::Layout)>> {
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
        if !usable {
            return Ok(None);
        }
        let to = rebuild::layout(&output.conn, &e.name)?;
        let from = e
            .sql
            .as_deref()
            .and_then(|sql| self.scratch.execute_batch(sql).ok())
            .and_then(|()| rebuild::layout(&self.scratch, &e.name).ok())
            .unwrap_or_else(|| to.clone());
        Ok(Some((from, to)))
    }

    /// Rows of orphaned pages: placed where exactly one table fits and the rowid is free,
    /// else kept in lost_and_found (phase 3).
    fn place_orphans(&mut self, pages: &pages::Pages, output: &mut rebuild::Output) -> Result<()> {
        let free = pages.freelist();
        let (orphans, orphan_pages) = salvage::orphans(pages, &mut self.claims, &free);
        self.orphan_pages = orphan_pages;
        for row in &orphans {
            let fits: Vec<&String> = self
                .ref_tables
                .iter()
                .filter(|t| rebuild::fits(&self.layouts[*t].0, &row.values))
                .collect();
            match fits.as_slice() {
                [one] => {
                    if output.has_rowid(one, row.rowid)? {
                        output.lose(Some(one), row, "orphaned page; its rowid is already taken")?;
                        continue;
                    }
                    let (from, to) = &self.layouts[*one];
                    let (ok, _) = output.load(from, to, std::slice::from_ref(row))?;
                    *self.placed.entry((*one).clone()).or_default() += ok;
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
        Ok(())
    }
}

/// Maps an SQLite error of the salvage's own SQL (on the output, the backup's copy or the
/// reference schema) to the error the operator sees, naming the step.
fn sql(what: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| StoreError::sqlite(&format!("recover: {what}"), e).into()
}

/// What survived that names rows: the damaged file's index entries and the newest backup
/// (the rowids of the tables keyed by rowid, read once; the backup's copy kept open for the
/// tables keyed by a column, whose keys are looked up rather than held).
struct Witnesses {
    kinds: HashMap<String, losses::KeyKind>,
    from_indexes: HashMap<String, losses::Keys>,
    from_backup: HashMap<String, losses::Keys>,
    backup: Option<BackupCopy>,
    compared_with: Option<PathBuf>,
}

/// The backup compared with, extracted to a scratch directory removed when this is dropped.
struct BackupCopy {
    conn: rusqlite::Connection,
    _dir: tempfile::TempDir,
}

impl Salvage {
    fn witnesses(&self, db: &Path, o: &RecoverOptions, pages: &pages::Pages) -> Result<Witnesses> {
        let mut kinds = losses::key_kinds(&self.reference, &self.ref_tables)?;
        for t in &self.tables {
            kinds
                .entry(t.table.clone())
                .or_insert(losses::KeyKind::Rowid);
        }
        let from_indexes = losses::from_indexes(pages, &self.schema, &kinds);
        let (compared_with, backup) = if o.no_compare {
            (None, None)
        } else {
            compare(db, o)
        };
        let from_backup = backup
            .as_ref()
            .map(|b| rowids_of(&b.conn, &kinds))
            .unwrap_or_default();
        Ok(Witnesses {
            kinds,
            from_indexes,
            from_backup,
            backup,
            compared_with,
        })
    }

    /// Rebuilds the indexes, reconciles the ledger (no id of a lost movement reused) and
    /// checks the result (phase 4).
    fn finish(
        &self,
        output: rebuild::Output,
        w: &Witnesses,
    ) -> Result<(rusqlite::Connection, Reconciled, String)> {
        let ledger = "inventory_transactions";
        let answers = losses::StoredAnswers::read(&output.conn)?;
        let first_new_id = losses::first_new_ledger_id(
            &output.conn,
            &answers,
            self.tables
                .iter()
                .find(|t| t.table == ledger)
                .map_or(0, |t| t.max_rowid),
            w.from_indexes.get(ledger),
            w.from_backup.get(ledger),
        )?;
        let forgotten = losses::forget_lost_requests(&output.conn, &answers)?;
        let (conn, mut reconciled) = output.finish(&self.reference, first_new_id)?;
        reconciled.requests_forgotten = forgotten;
        let integrity = pragma_check(&conn, "integrity_check")?;
        if integrity != "ok" {
            return Err(Error::check_failed(format!(
                "recover: the salvaged database fails integrity_check ({integrity}); nothing was installed. Please report this"
            )));
        }
        Ok((conn, reconciled, integrity))
    }

    /// Per table: what was salvaged, and what is known or possibly lost, and how it is known
    /// (phase 5).
    fn account(
        &self,
        conn: &rusqlite::Connection,
        w: &Witnesses,
        pages: &pages::Pages,
    ) -> Result<Vec<TableReport>> {
        // A page that held no readable row still held about as many as the others.
        let fallback_rows_per_page = (pages.usable / 64).max(1) as u64;
        let mut reports = Vec::new();
        for t in &self.tables {
            let kind = w
                .kinds
                .get(&t.table)
                .cloned()
                .unwrap_or(losses::KeyKind::Rowid);
            let rows_per_leaf = if t.leaves > 0 {
                (t.salvaged / t.leaves as u64).max(1)
            } else {
                fallback_rows_per_page
            };
            let (loss, in_backup) = match &kind {
                losses::KeyKind::Rowid => {
                    let present = losses::keys_in(conn, &t.table)?;
                    let parked = losses::parked(conn, &t.table)?;
                    let loss = losses::account(&losses::Facts {
                        dense: losses::DENSE.contains(&t.table.as_str()),
                        present: &present,
                        parked: &parked,
                        from_indexes: w.from_indexes.get(&t.table),
                        from_backup: w.from_backup.get(&t.table),
                        tree_max: t.max_rowid,
                        damaged_pages: t.damaged_pages,
                        rows_per_leaf,
                    });
                    let in_backup = w.from_backup.get(&t.table).map(|k| k.len() as i64);
                    (loss, in_backup)
                }
                losses::KeyKind::Column(key) => lookup::account(
                    conn,
                    &lookup::TextKeyed {
                        table: &t.table,
                        key,
                        index: lookup::key_index_root(&self.schema, &t.table)
                            .map(|root| (pages, root)),
                        backup: w.backup.as_ref().map(|b| &b.conn),
                        damaged_pages: t.damaged_pages,
                        rows_per_leaf,
                    },
                )?,
            };
            reports.push(TableReport {
                in_backup,
                table: t.table.clone(),
                salvaged: t.salvaged,
                from_orphans: self.placed.get(&t.table).copied().unwrap_or(0),
                to_lost_and_found: t.lost,
                damaged_pages: t.damaged_pages,
                loss,
            });
        }
        Ok(reports)
    }
}

/// Makes the finished file durable with no `-wal`/`-shm` beside it.
fn seal(tmp: &Path) -> Result<()> {
    dbfile::sync(tmp).map_err(|e| Error::io("recover: fsync the salvaged database", e))?;
    for suffix in ["-wal", "-shm"] {
        dbfile::remove(&install::companion(tmp, suffix))
            .map_err(|e| Error::io("recover: remove the salvaged database's WAL", e))?;
    }
    Ok(())
}

/// Salvages `db`; the run is recorded in the output's ops_log. The phases: read the damaged
/// file's pages and schema, load each table's tree, place the orphaned rows, reconcile and
/// check the result, account for what was lost, then name or install the file.
pub fn run(db: &Path, o: &RecoverOptions, progress: &Progress) -> Result<RecoverReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    preflight(db, o)?;
    let pages = pages::Pages::open(db)
        .map_err(|e| Error::io(format!("recover: read {}", db.display()), e))?;
    progress.set_message("reading");
    let mut s = Salvage::read(&pages)?;
    let schema_assumed = s.roots.is_empty();
    let out = output_path(db, o)?;
    let building = install::Building::beside(&out, "recover");
    let mut output = rebuild::Output::create(building.path(), pages.page_size, &s.reference)?;
    progress.set_message("salvaging");
    s.load_known(&pages, &mut output)?;
    s.load_others(&pages, &mut output)?;
    s.place_orphans(&pages, &mut output)?;
    let lost_and_found = output.lost();
    let w = s.witnesses(db, o, &pages)?;
    let (conn, reconciled, integrity) = s.finish(output, &w)?;
    let tables = s.account(&conn, &w, &pages)?;
    drop(conn);
    seal(building.path())?;
    let mut report = RecoverReport {
        source: db.to_path_buf(),
        output: out.clone(),
        kept_previous: None,
        pages: pages.count,
        pages_from_wal: (1..=pages.count).filter(|p| pages.in_wal(*p)).count() as u32,
        damaged_pages: s.damaged_pages,
        orphan_pages: s.orphan_pages,
        schema_assumed,
        header_readable: pages.header_ok,
        tables,
        lost_and_found,
        reconciled,
        integrity,
        compared_with: w.compared_with,
        seconds: 0.0,
    };
    // The damaged file's byte readers close before anything opens it through SQLite again.
    drop(s);
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

/// The backup to compare with (the named one, or the newest checked one in the directory),
/// extracted beside the database and opened. A backup that cannot be read is left out, with
/// a warning: the salvage does not depend on it.
fn compare(db: &Path, o: &RecoverOptions) -> (Option<PathBuf>, Option<BackupCopy>) {
    let file = o.compare_with.clone().or_else(|| {
        let dir = o.backup_dir.clone()?;
        catalog::list(&dir, db)
            .ok()?
            .into_iter()
            .find(|b| b.has_checksum)
            .map(|b| b.path)
    });
    let Some(file) = file else {
        return (None, None);
    };
    let read = (|| -> Result<BackupCopy> {
        let dir = tempfile::Builder::new()
            .prefix(".ora-compare-")
            .tempdir_in(fsutil::parent_dir(db))
            .map_err(|e| Error::io("recover: scratch directory", e))?;
        let copy = dir.path().join("backup.db");
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
        Ok(BackupCopy { conn, _dir: dir })
    })();
    match read {
        Ok(b) => (Some(file), Some(b)),
        Err(e) => {
            log::warn!("recover: could not compare with {}: {e}", file.display());
            (None, None)
        }
    }
}

/// The rowids of each table keyed by rowid in the backup. A table the backup's (older) schema
/// lacks is left out.
fn rowids_of(
    backup: &rusqlite::Connection,
    kinds: &HashMap<String, losses::KeyKind>,
) -> HashMap<String, losses::Keys> {
    kinds
        .iter()
        .filter(|(_, kind)| **kind == losses::KeyKind::Rowid)
        .filter_map(|(t, _)| Some((t.clone(), losses::keys_in(backup, t).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small ora database on disk: three products, five movements.
    fn small_db(dir: &Path) -> PathBuf {
        let db = dir.join("ora.db");
        let mut c = rusqlite::Connection::open(&db).unwrap();
        crate::store::schema::migrate(&mut c, "test").unwrap();
        for sku in ["A", "B", "C"] {
            c.execute(
                "INSERT INTO inventory_current (sku, product_name, current_quantity, reorder_point, last_updated) VALUES (?1, 'p', 0, 0, 'x')",
                [sku],
            )
            .unwrap();
        }
        drop(c);
        db
    }

    // The phases on an undamaged file: every table read through its tree, nothing orphaned,
    // nothing lost, and the accounting says so.
    #[test]
    fn the_phases_salvage_an_undamaged_file_whole() {
        let d = tempfile::tempdir().unwrap();
        let db = small_db(d.path());
        let o = RecoverOptions {
            no_compare: true,
            ..RecoverOptions::default()
        };
        preflight(&db, &o).unwrap();
        let pages = pages::Pages::open(&db).unwrap();
        let mut s = Salvage::read(&pages).unwrap();
        assert!(s.ref_tables.iter().any(|t| t == "inventory_current"));
        let out = d.path().join("out.db");
        let b = install::Building::beside(&out, "test");
        let mut output = rebuild::Output::create(b.path(), pages.page_size, &s.reference).unwrap();
        s.load_known(&pages, &mut output).unwrap();
        s.load_others(&pages, &mut output).unwrap();
        s.place_orphans(&pages, &mut output).unwrap();
        assert_eq!(output.lost(), 0);
        let products = s
            .tables
            .iter()
            .find(|t| t.table == "inventory_current")
            .unwrap();
        assert_eq!(
            (products.salvaged, products.lost, products.damaged_pages),
            (3, 0, 0)
        );
        assert!(s.placed.is_empty());
        let w = s.witnesses(&db, &o, &pages).unwrap();
        let (conn, _, integrity) = s.finish(output, &w).unwrap();
        assert_eq!(integrity, "ok");
        let reports = s.account(&conn, &w, &pages).unwrap();
        let r = reports
            .iter()
            .find(|r| r.table == "inventory_current")
            .unwrap();
        assert_eq!(r.salvaged, 3);
    }

    #[test]
    fn what_cannot_be_salvaged_or_replaced_is_refused_first() {
        let d = tempfile::tempdir().unwrap();
        let e = preflight(&d.path().join("none.db"), &RecoverOptions::default()).unwrap_err();
        assert_eq!(e.kind(), crate::error::Kind::Usage);
        let db = small_db(d.path());
        let taken = d.path().join("taken.db");
        std::fs::write(&taken, b"x").unwrap();
        let o = RecoverOptions {
            out: Some(taken),
            ..RecoverOptions::default()
        };
        assert!(output_path(&db, &o).is_err());
    }
}
