//! `ora replica verify`: the proof that the replica restores. Reads the whole history (every
//! base checksum, every record's chain hash), rebuilds the newest point and compares it table
//! by table with the live database at the same commit, then rebuilds a random older point and
//! checks it (integrity_check, `ora verify`, the chain). The nightly pass (`--nightly`) checks
//! the rebuilt newest point with quick_check (its content equal to the live database's, which
//! the night's `ora verify` proves) and leaves the older point to the full pass, which it makes
//! itself once a week. Scratch files live in a temporary directory beside the database and are
//! removed. The result is recorded in ops_log.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::check::open_source;
use crate::file::oplog;
use crate::file::progress::Progress;
use crate::fsutil;
use crate::store::capture::{self, SKIP_PREFIXES};
use crate::store::connection::{self, Tuning};
use crate::store::{SqlContext, StoreError};

use super::history::{self, History, Target};
use super::restore::{self, PitrOptions};
use super::seal::{self, Keyring};

/// One point that was rebuilt.
#[derive(Debug, Clone, Serialize)]
pub struct CheckedPoint {
    pub generation: u64,
    pub seq: i64,
    pub time: String,
    pub commits_applied: usize,
    /// Tables whose content differs from the live database (newest point only).
    pub differing_tables: Vec<String>,
}

/// What a verify found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub replica: String,
    pub ok: bool,
    pub generations: usize,
    /// Encrypted generations whose content could not be checked without `--identity`.
    pub locked_generations: Vec<u64>,
    pub commits: usize,
    pub newest: Option<CheckedPoint>,
    pub older: Option<CheckedPoint>,
    pub problem: Option<String>,
    /// "full" or "quick" (the nightly pass).
    pub pass: &'static str,
    pub seconds: f64,
}

/// Which pass a run makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The newest point with integrity_check and every invariant, and a random older point.
    Full,
    /// The newest point with quick_check; the full pass when none passed in the last week.
    Nightly,
}

/// The pass to make: the nightly one only when a full pass passed within
/// [`oplog::FULL_PASS_EVERY_DAYS`] (by `db`'s ops_log).
fn decide(db: &Path, asked: Pass) -> Pass {
    let due = || -> crate::store::Result<bool> {
        oplog::full_pass_due(&connection::open_raw(db, false)?, "replica_verify")
    };
    if asked == Pass::Nightly && due().is_ok_and(|d| !d) {
        Pass::Nightly
    } else {
        Pass::Full
    }
}

/// Row count and an order-independent digest of every captured table.
fn content_digest(
    conn: &rusqlite::Connection,
) -> crate::store::Result<BTreeMap<String, (i64, u64)>> {
    let tables: Vec<String> = {
        let mut st = conn
            .prepare("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table'")
            .ctx("list tables")?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))
            .ctx("list tables")?;
        rows.filter_map(|r| r.ok())
            .filter(|t| !SKIP_PREFIXES.iter().any(|p| t.starts_with(p)))
            .collect()
    };
    let mut out = BTreeMap::new();
    for t in tables {
        let mut st = conn
            .prepare(&format!("SELECT * FROM \"{}\"", t.replace('"', "\"\"")))
            .ctx("digest")?;
        let n = st.column_count();
        let mut rows = st.query([]).ctx("digest")?;
        let (mut count, mut digest) = (0i64, 0u64);
        while let Some(r) = rows.next().ctx("digest")? {
            digest = digest.wrapping_add(row_digest(r, n));
            count += 1;
        }
        out.insert(t, (count, digest));
    }
    Ok(out)
}

/// A row's digest from its values' types and bytes as SQLite holds them (no text made of
/// them: the two sides compared are read the same way, in the same run).
fn row_digest(r: &rusqlite::Row, n: usize) -> u64 {
    use rusqlite::types::ValueRef;
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for i in 0..n {
        match r.get_ref(i) {
            Ok(ValueRef::Null) | Err(_) => h.update([0u8]),
            Ok(ValueRef::Integer(v)) => {
                h.update([1u8]);
                h.update(v.to_le_bytes());
            }
            Ok(ValueRef::Real(v)) => {
                h.update([2u8]);
                h.update(v.to_bits().to_le_bytes());
            }
            Ok(ValueRef::Text(b)) => {
                h.update([3u8]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
            Ok(ValueRef::Blob(b)) => {
                h.update([4u8]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
        }
    }
    let d = h.finalize();
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// Verifies the replica in `dir` against `db`; recorded in `db`'s ops_log.
pub fn run(
    db: &Path,
    dir: &Path,
    tuning: &Tuning,
    cfg: &super::ReplicaConfig,
    allow_negative_stock: bool,
    identities: &crate::file::backup::keys::Identities,
    pass: Pass,
) -> Result<VerifyReport> {
    let started = crate::model::now_utc();
    let t0 = Instant::now();
    let pass = decide(db, pass);
    let result = verify(db, dir, tuning, cfg, allow_negative_stock, identities, pass);
    let mut report = match result {
        Ok(r) => r,
        Err(e) => VerifyReport {
            replica: dir.display().to_string(),
            ok: false,
            generations: 0,
            locked_generations: Vec::new(),
            commits: 0,
            newest: None,
            older: None,
            problem: Some(e.to_string()),
            pass: pass_name(pass),
            seconds: 0.0,
        },
    };
    report.seconds = t0.elapsed().as_secs_f64();
    if db.is_file() {
        oplog::record(
            db,
            "replica_verify",
            &started,
            report.ok,
            &serde_json::to_value(&report).unwrap_or_default(),
        );
    }
    Ok(report)
}

/// The live database at one snapshot: its replica position, its content and its keys.
struct Live {
    state: capture::State,
    digest: BTreeMap<String, (i64, u64)>,
    keys: Keyring,
}

fn read_live(
    db: &Path,
    tuning: &Tuning,
    identities: &crate::file::backup::keys::Identities,
) -> Result<Live> {
    let live = open_source(db, tuning, "replica verify")?;
    let sql = |e| StoreError::sqlite("replica verify: read the database", e);
    live.execute_batch("BEGIN").map_err(sql)?;
    let state = capture::state(&live)?
        .filter(|s| s.enabled)
        .ok_or_else(|| Error::usage("replica verify: this database has no replica; set one up with `ora replica init DIR`"))?;
    let digest = content_digest(&live)?;
    let keys = Keyring {
        secret: seal::read_secret(&live),
        identities: identities.clone(),
    };
    let _ = live.execute_batch("COMMIT");
    Ok(Live {
        state,
        digest,
        keys,
    })
}

/// The replica's history; a running server's shipper gets a moment to bring it up to `seq`.
fn load_through(db: &Path, dir: &Path, keys: &Keyring, seq: i64) -> Result<History> {
    let wait = if fsutil::server_holding(db).is_some() {
        10
    } else {
        0
    };
    let deadline = Instant::now() + Duration::from_secs(wait);
    loop {
        let h = history::load(dir, keys)?;
        let newest = h.gens.last().map_or(0, |g| g.last_seq());
        if newest >= seq || Instant::now() >= deadline {
            return Ok(h);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn pass_name(p: Pass) -> &'static str {
    match p {
        Pass::Full => "full",
        Pass::Nightly => "quick",
    }
}

/// Kept whole: the steps of one verify in their order (ship, read the live side, load and check
/// the history, rebuild the points) and the report.
fn verify(
    db: &Path,
    dir: &Path,
    tuning: &Tuning,
    cfg: &super::ReplicaConfig,
    allow_negative_stock: bool,
    identities: &crate::file::backup::keys::Identities,
    pass: Pass,
) -> Result<VerifyReport> {
    super::ship_pending(
        db,
        tuning,
        &super::ReplicaConfig {
            dir: Some(dir.to_path_buf()),
            ..cfg.clone()
        },
        Duration::from_secs(10),
    );
    // The live side first: its content and position in one snapshot.
    let live = read_live(db, tuning, identities)?;
    let hist = load_through(db, dir, &live.keys, live.state.seq)?;
    if hist.dir.marker.database_id != live.state.database_id {
        return Err(Error::usage(format!(
            "replica verify: {} is the replica of another database",
            dir.display()
        )));
    }
    let commits = hist.gens.iter().map(|g| g.entries.len()).sum();
    // Every base, not only the ones rebuilt below, must still match its checksum.
    for g in &hist.gens {
        history::check_base(&g.generation)?;
    }
    let scratch = tempfile::Builder::new()
        .prefix(".ora-replica-verify-")
        .tempdir_in(fsutil::parent_dir(db))
        .map_err(|e| Error::io("replica verify: make a scratch directory", e))?;
    let rebuild = Rebuild {
        hist: &hist,
        scratch: scratch.path(),
        opts: PitrOptions {
            dir: dir.to_path_buf(),
            target: Target::Latest,
            out: None,
            force: false,
            allow_negative_stock,
            check: match pass {
                Pass::Full => restore::Check::Full,
                Pass::Nightly => restore::Check::Quick,
            },
            keys: live.keys.clone(),
        },
    };
    let (newest, at) = rebuild.newest(&live)?;
    let older = match pass {
        Pass::Full => rebuild.older(at)?,
        Pass::Nightly => None,
    };
    let problem = (!newest.differing_tables.is_empty()).then(|| {
        format!(
            "the replica's newest point differs from the database in {}",
            newest.differing_tables.join(", ")
        )
    });
    Ok(VerifyReport {
        replica: dir.display().to_string(),
        ok: problem.is_none(),
        generations: hist.gens.len(),
        locked_generations: hist
            .gens
            .iter()
            .filter(|g| g.locked.is_some())
            .map(|g| g.generation.number)
            .collect(),
        commits,
        newest: Some(newest),
        older,
        problem,
        pass: pass_name(pass),
        seconds: 0.0,
    })
}

/// Points of one history rebuilt into a scratch directory.
struct Rebuild<'a> {
    hist: &'a History,
    scratch: &'a Path,
    opts: PitrOptions,
}

impl Rebuild<'_> {
    fn build(&self, point: &history::Point, name: &str) -> Result<restore::Built> {
        let o = PitrOptions {
            target: Target::Seq(point.seq),
            ..self.opts.clone()
        };
        let path = self.scratch.join(name);
        restore::build(self.hist, point, &path, &o, &Progress::hidden())
    }

    /// The newest point, at exactly the live snapshot's commit, compared table by table.
    fn newest(&self, live: &Live) -> Result<(CheckedPoint, (usize, i64))> {
        let seq = live.state.seq;
        let point = self.hist.resolve(&Target::Seq(seq)).map_err(|_| {
            Error::check_failed(format!(
                "replica verify: the replica does not hold commit {seq} yet (it is behind; see `ora replica status`)"
            ))
        })?;
        let built = self.build(&point, "newest.db")?;
        let conn = connection::open_plain(&self.scratch.join("newest.db"))
            .map_err(|e| StoreError::sqlite("replica verify", e))?;
        let rebuilt = content_digest(&conn)?;
        drop(conn);
        let differing: Vec<String> = live
            .digest
            .iter()
            .filter(|(t, v)| rebuilt.get(*t) != Some(v))
            .map(|(t, _)| t.clone())
            .chain(
                rebuilt
                    .keys()
                    .filter(|t| !live.digest.contains_key(*t))
                    .cloned(),
            )
            .collect();
        let checked = CheckedPoint {
            generation: self.hist.gens[point.gen].generation.number,
            seq: point.seq,
            time: history::time_of(point.at_ms),
            commits_applied: built.applied,
            differing_tables: differing,
        };
        Ok((checked, (point.gen, point.seq)))
    }

    /// A random older point: any commit (or base) of any generation but `newest`.
    fn older(&self, newest: (usize, i64)) -> Result<Option<CheckedPoint>> {
        let mut candidates: Vec<(usize, i64)> = Vec::new();
        // An encrypted generation no key at hand opens (made with an earlier secret, and no
        // --identity) had its files and the structure of its records checked above, not its
        // content: it is named in the report, never picked.
        for (i, g) in self
            .hist
            .gens
            .iter()
            .enumerate()
            .filter(|(_, g)| g.locked.is_none())
        {
            candidates.push((i, g.generation.base.seq));
            candidates.extend(g.entries.iter().map(|e| (i, e.seq)));
        }
        candidates.retain(|c| *c != newest);
        if candidates.is_empty() {
            return Ok(None);
        }
        let pick = (capture::now_ms() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) as usize
            % candidates.len();
        let (gi, seq) = candidates[pick];
        let p = self.hist.point(gi, seq)?;
        let b = self.build(&p, "older.db")?;
        Ok(Some(CheckedPoint {
            generation: self.hist.gens[gi].generation.number,
            seq,
            time: history::time_of(p.at_ms),
            commits_applied: b.applied,
            differing_tables: Vec::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(rows: &[&str]) -> rusqlite::Connection {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (a, b)").unwrap();
        for r in rows {
            c.execute_batch(&format!("INSERT INTO t VALUES ({r})"))
                .unwrap();
        }
        c
    }

    // The digest holds whatever order the rows come in, and tells apart what differs only in
    // type (1 and '1'), in a byte, in where a value ends, or by a row more.
    #[test]
    fn content_digests_ignore_order_and_see_types_bytes_and_rows() {
        let d = |rows: &[&str]| content_digest(&db(rows)).unwrap();
        let base = d(&["1, 'x'", "2.5, x'00ff'", "NULL, 'y'"]);
        assert_eq!(base, d(&["NULL, 'y'", "1, 'x'", "2.5, x'00ff'"]));
        for other in [
            d(&["'1', 'x'", "2.5, x'00ff'", "NULL, 'y'"]),
            d(&["1, 'x'", "2.5, x'00fe'", "NULL, 'y'"]),
            d(&["1, 'x'", "2.5, x'00ff'", "NULL, 'y'", "NULL, 'y'"]),
            d(&["1, 'xy'", "2.5, x'00ff'", "NULL, ''"]),
        ] {
            assert_ne!(base, other);
        }
    }
}
