//! `ora restore --from-replica DIR (--latest | --at TIME | --before-movement N)`: rebuilds the
//! database exactly as it was at a committed point, from the replica directory alone: the
//! generation's base is checked and decompressed beside the destination, the recorded commits
//! up to the point are applied in order (each one checked against the chain, any row that does
//! not fit refusing the whole restore), the derived search index rebuilt, and the result must
//! pass its checks before it is installed with the same atomic swap as `ora restore` (or
//! written to `--out`): for a restore, quick_check and `ora verify`'s nightly pass over what
//! the commits after the base changed (the base itself is proved as a backup is, by its
//! checksum); for the weekly replica verify, integrity_check and every invariant. Nothing is
//! installed unless all of that succeeded.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::types::Value;
use rusqlite::Connection;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::backup::source;
use crate::file::check::page_check_beside;
use crate::file::progress::Progress;
use crate::file::{install, oplog};
use crate::fsutil;
use crate::store::capture::Record;
use crate::store::lineage::Origin;
use crate::store::StoreError;
use crate::store::{check_invariants, ChainPoint, VerifyOptions};
use crate::store::{connection, dbfile, schema, session};

use super::history::{self, History, Point, Target};
use super::seal::Keyring;

/// Commits merged into one changeset before it is applied.
const MERGE_COMMITS: usize = 4096;

/// Options of a point-in-time restore.
#[derive(Debug, Clone)]
pub struct PitrOptions {
    pub dir: PathBuf,
    pub target: Target,
    /// Write the result here instead of installing it over the database.
    pub out: Option<PathBuf>,
    /// Install even though a server holds the database.
    pub force: bool,
    pub allow_negative_stock: bool,
    /// The structure check of the result.
    pub check: Check,
    /// Where the keys of encrypted generations come from.
    pub keys: Keyring,
}

/// Which structure check a rebuilt database must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `quick_check`: for a restore (the base passed quick_check when it was taken, every
    /// change is checksummed and applied through SQLite).
    Quick,
    /// `integrity_check`: for the nightly verify, which has time.
    Full,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Quick => "quick_check",
            Check::Full => "integrity_check",
        }
    }
}

/// A movement committed after the restored point.
#[derive(Debug, Clone, Serialize)]
pub struct LaterMovement {
    pub id: i64,
    pub date: String,
    pub sku: String,
    pub quantity: i64,
    pub transaction_type: String,
    pub notes: Option<String>,
    pub request_id: Option<String>,
}

/// What a restore from the replica did.
#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    pub replica: PathBuf,
    pub output: PathBuf,
    pub generation: u64,
    /// The last commit in the result, and when it was made.
    pub seq: i64,
    pub point_time: String,
    /// The highest ledger id in the result.
    pub last_ledger_id: i64,
    pub commits_applied: usize,
    pub base_taken: String,
    pub integrity: String,
    pub kept_previous: Option<PathBuf>,
    /// With --before-movement: every movement committed after the point.
    pub later_movements: Vec<LaterMovement>,
    /// The newest record was incomplete (a crash while it was written; never acknowledged).
    pub torn_tail: bool,
    pub seconds: f64,
}

/// Restores `db` (or `--out`) from the replica; recorded in the result's ops_log. (The
/// remote targets learn of an in-place restore from the command above, `ops::restore`.)
///
/// Kept whole: the refusals (existing --out, a running server, a missing directory, a point that
/// does not exist) then the build and the install, with the fork of the history decided between
/// them; each step is a few lines and their order is the safety argument.
pub fn run(db: &Path, o: &PitrOptions, progress: &Progress) -> Result<PitrReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    let out = o.out.clone().unwrap_or_else(|| db.to_path_buf());
    if o.out.is_some() && out.exists() {
        return Err(Error::usage(format!(
            "restore: {} already exists; pass another --out",
            out.display()
        )));
    }
    if o.out.is_none() {
        if let Some(pid) = fsutil::server_holding(db) {
            if !o.force {
                return Err(Error::failed(format!(
                    "restore: an ora server (pid {pid}) has {} open; stop it first (`systemctl stop ora`), or restore with --out and swap later (nothing was changed)",
                    db.display()
                )));
            }
        }
    }
    let out_dir = fsutil::parent_dir(&out);
    if !out_dir.is_dir() {
        return Err(Error::usage(format!(
            "restore: the directory {} does not exist",
            out_dir.display()
        )));
    }
    let hist = history::load(&o.dir, &o.keys)?;
    let point = hist.resolve(&o.target)?;
    let building = install::Building::beside(&out, "pitr");
    let tmp = building.path().to_path_buf();
    let built = build(&hist, &point, &tmp, o, progress)?;
    let later = match o.target {
        Target::BeforeMovement(_) => later_movements(&hist, &point)?,
        _ => Vec::new(),
    };
    let g = &hist.gens[point.gen];
    let newest = hist.resolve(&Target::Latest)?;
    let origin = Origin::copy(
        "restore",
        &format!(
            "the replica {} (commit {} of generation {}, {})",
            o.dir.display(),
            point.seq,
            g.generation.number,
            history::time_of(point.at_ms)
        ),
    );
    let kept = if o.out.is_some() {
        building.name_as(&out, "restore", &origin)?;
        None
    } else {
        // At the replica's newest point the chain simply continues; anywhere else the history
        // forks here, and the replica takes a new base that says so.
        let forks = (newest.gen, newest.seq) != (point.gen, point.seq);
        let fate = super::setup::fate_in_place(
            db,
            &crate::store::connection::Tuning::default(),
            &tmp,
            forks.then(|| {
                format!(
                    "restored in place to commit {} ({}) from the replica",
                    point.seq,
                    history::time_of(point.at_ms)
                )
            }),
            origin,
            Some(&o.dir),
        );
        building.install(db, "restore", &fate)?
    };
    let report = PitrReport {
        replica: o.dir.clone(),
        output: out.clone(),
        generation: g.generation.number,
        seq: point.seq,
        point_time: history::time_of(point.at_ms),
        last_ledger_id: built.last_ledger,
        commits_applied: built.applied,
        base_taken: g.generation.base.taken.clone(),
        integrity: built.integrity,
        kept_previous: kept,
        later_movements: later,
        torn_tail: hist.gens.last().is_some_and(|g| g.torn_tail),
        seconds: t0.elapsed().as_secs_f64(),
    };
    oplog::record(
        &out,
        "restore",
        &started,
        true,
        &serde_json::json!({
            "from_replica": o.dir.display().to_string(), "generation": report.generation,
            "seq": report.seq, "point": report.point_time, "commits_applied": report.commits_applied,
            "kept_previous": report.kept_previous.as_ref().map(|p| p.display().to_string()),
            "seconds": report.seconds,
        }),
    );
    Ok(report)
}

/// What [`build`] made.
pub(crate) struct Built {
    pub applied: usize,
    pub last_ledger: i64,
    pub integrity: String,
}

fn sql(what: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| StoreError::sqlite(&format!("restore: {what}"), e).into()
}

/// Builds the database at `point` into `tmp` and checks it: the base, the commits up to the
/// point, the position, then the checks.
pub(crate) fn build(
    hist: &History,
    point: &Point,
    tmp: &Path,
    o: &PitrOptions,
    progress: &Progress,
) -> Result<Built> {
    let g = &hist.gens[point.gen];
    // Without the generation's key nothing is read: say so before the base is touched.
    let opening = g.need_key()?;
    extract_base(g, tmp, o, progress)?;
    let conn = connection::open_plain(tmp).map_err(sql("open the base copy"))?;
    let shown = tmp.display().to_string();
    schema::check_compatible(schema::identify(&conn, &shown)?, &shown)
        .map_err(|e| Error::usage(format!("restore: the replica's base is not usable: {e}")))?;
    // A scratch file until it is checked and renamed: no journal on disk while it is built.
    conn.execute_batch(
        "PRAGMA journal_mode = MEMORY; PRAGMA foreign_keys = ON; PRAGMA synchronous = OFF;
         PRAGMA cache_size = -262144; PRAGMA temp_store = MEMORY;",
    )
    .map_err(sql("prepare the copy"))?;
    let since = base_point(&conn, o.check)?;
    conn.execute_batch("BEGIN").map_err(sql("begin"))?;
    let triggers = set_triggers_aside(&conn)?;
    let applied = apply_commits(&conn, g, &opening, point)?;
    for (_, sqltext) in &triggers {
        conn.execute_batch(sqltext)
            .map_err(sql("put the triggers back"))?;
    }
    conn.execute_batch(schema::REBUILD_DERIVED)
        .map_err(sql("rebuild the search index"))?;
    // The result continues the history from this point; what the base still had waiting for
    // the replica is in the replica already.
    conn.execute(
        "UPDATE replica_state SET seq = ?1, last_hash = ?2, outside = 0 WHERE id = 1",
        rusqlite::params![point.seq, &point.hash[..]],
    )
    .map_err(sql("set the replica position"))?;
    conn.execute("DELETE FROM replica_log", [])
        .map_err(sql("clear the replica queue"))?;
    crate::store::lineage::clear_base_reason(&conn).map_err(sql("clear the base reason"))?;
    conn.execute_batch("COMMIT").map_err(sql("commit"))?;
    let last_ledger: i64 = conn
        .query_row(
            "SELECT coalesce(max(id), 0) FROM inventory_transactions",
            [],
            |r| r.get(0),
        )
        .map_err(sql("read the ledger"))?;
    check_result(&conn, tmp, o, since)?;
    drop(conn);
    install::seal_built(tmp, "restore")?;
    Ok(Built {
        applied,
        last_ledger,
        integrity: format!("{} ok, verify ok", o.check.as_str()),
    })
}

/// Writes the generation's base, decrypted, into a new file at `tmp`.
fn extract_base(
    g: &history::GenIndex,
    tmp: &Path,
    o: &PitrOptions,
    progress: &Progress,
) -> Result<()> {
    let base = history::check_base(&g.generation)?;
    let own: Vec<age::x25519::Identity> = g
        .key
        .iter()
        .map(|k| k.base_identity())
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("restore: derive the generation's identity", e))?;
    let _ = std::fs::remove_file(tmp);
    let mut f = dbfile::create_new(tmp)
        .map_err(|e| Error::io(format!("restore: create {}", tmp.display()), e))?;
    let ids: Vec<age::x25519::Identity> = own
        .into_iter()
        .chain(o.keys.identities.as_slice().iter().cloned())
        .collect();
    source::extract(&base, &mut f, "restore", progress, &ids)?;
    f.sync_all()
        .map_err(|e| Error::io("restore: fsync the restored file", e))
}

/// Drops the triggers (inside the open transaction) and returns them to be put back: they
/// would act a second time on changes that already carry their effects (the outbox rows, the
/// search index).
fn set_triggers_aside(conn: &Connection) -> Result<Vec<(String, String)>> {
    let triggers: Vec<(String, String)> = {
        let mut st = conn
            .prepare(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND sql IS NOT NULL",
            )
            .map_err(sql("read the triggers"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql("read the triggers"))?;
        rows.collect::<std::result::Result<_, _>>()
            .map_err(sql("read the triggers"))?
    };
    for (name, _) in &triggers {
        conn.execute_batch(&format!("DROP TRIGGER \"{}\"", name.replace('"', "\"\"")))
            .map_err(sql("set the triggers aside"))?;
    }
    Ok(triggers)
}

/// Commits of the generation read so far and not yet applied: how many, the first and last.
#[derive(Clone, Copy, Default)]
struct Pending {
    count: usize,
    first: i64,
    last: i64,
}

/// Applies the generation's commits through `point` and returns how many. Commits are merged
/// a few thousand at a time (same effect, far fewer statements), then applied; a merge or
/// apply that fails names the range.
fn apply_commits(
    conn: &Connection,
    g: &history::GenIndex,
    opening: &history::Opening,
    point: &Point,
) -> Result<usize> {
    let mut applied = 0usize;
    let mut last_hash = g.base_hash;
    let mut failure: Option<Error> = None;
    let mut group = session::Group::new().map_err(sql("merge the commits"))?;
    let mut pending = Pending::default();
    let flush = |group: &mut session::Group, p: Pending| -> Result<()> {
        if p.count == 0 {
            return Ok(());
        }
        let merged = group.output().map_err(sql("merge the commits"))?;
        session::apply(conn, &merged).map_err(|e| {
            Error::check_failed(format!(
                "restore: commits {} to {} of the replica do not apply to its base ({e}); the replica is inconsistent, nothing was restored. Restore from a backup or an older point",
                p.first, p.last
            ))
        })?;
        *group = session::Group::new().map_err(sql("merge the commits"))?;
        Ok(())
    };
    if point.seq > g.generation.base.seq {
        history::read_records(
            &g.generation,
            g.base_hash,
            opening.as_open(),
            |r: &Record| {
                if r.seq > point.seq {
                    return Ok(false);
                }
                if let Err(e) = group.add(&r.changeset) {
                    failure = Some(Error::check_failed(format!(
                        "restore: commit {} of the replica cannot be read ({e}); nothing was restored",
                        r.seq
                    )));
                    return Ok(false);
                }
                if pending.count == 0 {
                    pending.first = r.seq;
                }
                pending.count += 1;
                pending.last = r.seq;
                applied += 1;
                last_hash = r.hash;
                if pending.count >= MERGE_COMMITS {
                    flush(&mut group, pending)?;
                    pending = Pending::default();
                }
                Ok(r.seq < point.seq)
            },
        )?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    flush(&mut group, pending)?;
    if last_hash != point.hash {
        return Err(Error::check_failed(format!(
            "restore: the replica ends before commit {} of generation {}; nothing was restored",
            point.seq, g.generation.number
        )));
    }
    Ok(applied)
}

/// Where the quick check of a rebuilt file takes the ledger as proved: the base's newest row.
/// The base's bytes are the checksummed copy of a snapshot that passed quick_check, as a
/// backup's are (and a restored backup's ledger is taken as it is); what the replica adds on
/// top of them (every commit after the base) is proved link by link, with the stocks and
/// shipments they touched. None (every row proved) for the full check, an empty ledger, or a
/// base whose append-only guards were gone.
fn base_point(conn: &Connection, check: Check) -> Result<Option<ChainPoint>> {
    if check == Check::Full || !crate::store::guards_missing(conn)?.is_empty() {
        return Ok(None);
    }
    let (id, link) = crate::store::chain::last(conn)?;
    Ok((id > 0 && !link.is_empty()).then(|| ChainPoint {
        id,
        link: fsutil::hex(&link),
    }))
}

/// The structure check and the ledger's invariants, side by side on the finished file: the
/// invariants of every row for the full check, of what changed after `since` for the quick.
fn check_result(
    conn: &Connection,
    tmp: &Path,
    o: &PitrOptions,
    since: Option<ChainPoint>,
) -> Result<()> {
    let (integrity, verified) = page_check_beside(
        tmp,
        o.check.as_str(),
        "PRAGMA cache_size = -131072;",
        "restore",
        || {
            check_invariants(
                conn,
                &VerifyOptions {
                    allow_negative_stock: o.allow_negative_stock,
                    skip_integrity: true,
                    skip_chain: false,
                    after: since,
                },
            )
        },
    );
    let integrity = integrity?;
    if integrity != "ok" {
        return Err(Error::check_failed(format!(
            "restore: the rebuilt database fails {} ({integrity}); nothing was restored",
            o.check.as_str()
        )));
    }
    let violations = verified?.violations();
    if !violations.is_empty() {
        return Err(Error::check_failed(format!(
            "restore: the rebuilt database fails `ora verify` ({}); nothing was restored",
            violations.join("; ")
        )));
    }
    Ok(())
}

/// Every movement in the commits after `point`, through the newest commit of the history.
fn later_movements(hist: &History, point: &Point) -> Result<Vec<LaterMovement>> {
    let mut out: Vec<LaterMovement> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, g) in hist.gens.iter().enumerate().skip(point.gen) {
        let after = if i == point.gen {
            point.seq
        } else {
            g.generation.base.seq
        };
        let mut bad = None;
        let opening = g.need_key()?;
        history::read_records(&g.generation, g.base_hash, opening.as_open(), |r| {
            if r.seq <= after || r.first_ledger == 0 {
                return Ok(true);
            }
            match session::inserted_rows(&r.changeset, "inventory_transactions") {
                Ok(rows) => {
                    for row in rows {
                        if let Some(m) = movement_of(&row) {
                            if seen.insert(m.id) {
                                out.push(m);
                            }
                        }
                    }
                }
                Err(e) => bad = Some(e.to_string()),
            }
            Ok(true)
        })?;
        if let Some(e) = bad {
            return Err(Error::check_failed(format!(
                "restore: read the later movements: {e}"
            )));
        }
    }
    out.sort_by_key(|m| m.id);
    Ok(out)
}

fn movement_of(row: &[Value]) -> Option<LaterMovement> {
    let int = |v: &Value| match v {
        Value::Integer(i) => Some(*i),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::Text(s) => Some(s.clone()),
        _ => None,
    };
    Some(LaterMovement {
        id: int(row.first()?)?,
        date: text(row.get(1)?)?,
        sku: text(row.get(2)?)?,
        quantity: int(row.get(3)?)?,
        transaction_type: text(row.get(4)?)?,
        notes: row.get(5).and_then(text),
        request_id: row.get(7).and_then(text),
    })
}
