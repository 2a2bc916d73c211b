//! Reading a replica directory's history: every generation with the index of its records,
//! every file checked (base sidecars, the record chain from each base's hash), and the
//! resolution of a restore target (the newest point, a time, just before a ledger id) into one
//! generation and commit. Reads only; works on the directory alone.

use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};

use crate::error::{Error, Result};
use crate::file::backup::catalog;
use crate::store::capture::Record;

use super::base;
use super::dir::{Generation, ReplicaDir};
use super::format::{self, Open, Tail};
use super::seal::{GenKey, Keyring, NoKey, RecordKey};

/// One record's place in the history (its changes stay in the file).
#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: i64,
    pub committed_ms: i64,
    pub first_ledger: i64,
    pub last_ledger: i64,
    pub hash: [u8; 32],
}

/// A generation and what follows its base.
#[derive(Debug, Clone)]
pub struct GenIndex {
    pub generation: Generation,
    pub base_hash: [u8; 32],
    pub entries: Vec<Entry>,
    /// The last segment ended in an incomplete record (a crash while it was appended).
    pub torn_tail: bool,
    /// An encrypted generation's key, when one at hand opens it.
    pub key: Option<GenKey>,
    /// Why an encrypted generation cannot be opened here (no key given, or another key).
    pub locked: Option<String>,
}

impl GenIndex {
    pub fn last_seq(&self) -> i64 {
        self.entries
            .last()
            .map_or(self.generation.base.seq, |e| e.seq)
    }

    fn last_ms(&self) -> i64 {
        self.entries
            .last()
            .map_or(self.generation.base.taken_ms, |e| e.committed_ms)
    }

    /// How its records read (plain, or with its key), or the error that says why there is
    /// no key.
    pub fn need_key(&self) -> Result<Opening> {
        match (
            &self.locked,
            Opening::of(self.key.as_ref(), self.generation.sealed()),
        ) {
            (Some(why), Opening::Sealed) => {
                Err(Error::config(format!("{why}; nothing was restored")))
            }
            (_, o) => Ok(o),
        }
    }

    fn hash_at(&self, seq: i64) -> Option<[u8; 32]> {
        if seq == self.generation.base.seq {
            return Some(self.base_hash);
        }
        self.entries.iter().find(|e| e.seq == seq).map(|e| e.hash)
    }
}

/// The whole history of a replica directory.
#[derive(Debug, Clone)]
pub struct History {
    pub dir: ReplicaDir,
    pub gens: Vec<GenIndex>,
}

fn damaged(path: &Path, why: &str) -> Error {
    Error::check_failed(format!(
        "the replica is damaged: {}: {why}; nothing was restored. Restore from a backup instead, or from an older point with --at",
        path.display()
    ))
}

/// How the records of a generation are read, owning its record key.
pub enum Opening {
    Plain,
    Key(RecordKey),
    Sealed,
}

impl Opening {
    /// How the records of a generation that is `sealed` (or not) read with `key`.
    pub fn of(key: Option<&GenKey>, sealed: bool) -> Opening {
        match (key, sealed) {
            (_, false) => Opening::Plain,
            (Some(k), true) => Opening::Key(k.records()),
            (None, true) => Opening::Sealed,
        }
    }

    pub fn as_open(&self) -> Open<'_> {
        match self {
            Opening::Plain => Open::Plain,
            Opening::Key(k) => Open::Key(k),
            Opening::Sealed => Open::Sealed,
        }
    }
}

/// Reads every record of `g` in order, checking the chain from its base; `each` sees them.
pub fn read_records(
    g: &Generation,
    base_hash: [u8; 32],
    open: Open,
    mut each: impl FnMut(&Record) -> Result<bool>,
) -> Result<bool> {
    let mut prev = base_hash;
    let mut seq = g.base.seq;
    let mut torn = false;
    for (i, (first, path)) in g.segments.iter().enumerate() {
        let last_file = i + 1 == g.segments.len();
        let bytes =
            std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        if bytes.len() < format::HEADER_LEN && last_file {
            torn = true;
            continue;
        }
        let p = format::parse_segment(&bytes, open).map_err(|e| damaged(path, &e))?;
        if p.header.generation != g.number || p.header.first_seq != *first {
            return Err(damaged(path, "the segment does not belong where it lies"));
        }
        if p.header.first_seq != seq + 1 {
            return Err(damaged(
                path,
                &format!("the segment starts at commit {first}, after commit {seq}"),
            ));
        }
        for (r, _) in &p.records {
            if r.seq != seq + 1 || r.prev_hash != prev {
                return Err(damaged(
                    path,
                    &format!("commit {} does not follow commit {seq}", r.seq),
                ));
            }
            prev = r.hash;
            seq = r.seq;
            if !each(r)? {
                return Ok(torn);
            }
        }
        match p.tail {
            Tail::Clean => {}
            Tail::Torn { .. } if last_file => torn = true,
            Tail::Torn { at } => {
                return Err(damaged(path, &format!("cut short at byte {at}")));
            }
            Tail::Damaged { at, why } => return Err(damaged(path, &format!("byte {at}: {why}"))),
        }
    }
    Ok(torn)
}

/// Reads and checks the whole history of `dir`; encrypted generations are opened with the
/// keys in `keys` where they can be (fully checked), else read for their structure only.
pub fn load(dir: &Path, keys: &Keyring) -> Result<History> {
    let rd = ReplicaDir::open_any(dir).map_err(|p| Error::usage(p.message(dir)))?;
    let (gens, problems) = rd
        .generations()
        .map_err(|e| Error::io(format!("list the replica {}", dir.display()), e))?;
    if let Some(p) = problems.first() {
        return Err(Error::check_failed(format!(
            "the replica is damaged: {p}; nothing was restored"
        )));
    }
    let mut out = Vec::new();
    for g in gens {
        let meta_path = g.path.join("base.json");
        let base_hash =
            base::hash_of(&g.base).ok_or_else(|| damaged(&meta_path, "no valid hash"))?;
        let (key, locked) = match keys.key_of(&g) {
            Ok(k) => (k, None),
            Err(NoKey::Locked(why)) => (None, Some(why)),
            Err(damage @ NoKey::Damaged(_)) => return Err(damage.into_error()),
        };
        let opening = Opening::of(key.as_ref(), g.sealed());
        let mut entries = Vec::new();
        let torn_tail = read_records(&g, base_hash, opening.as_open(), |r| {
            entries.push(Entry {
                seq: r.seq,
                committed_ms: r.committed_ms,
                first_ledger: r.first_ledger,
                last_ledger: r.last_ledger,
                hash: r.hash,
            });
            Ok(true)
        })?;
        out.push(GenIndex {
            generation: g,
            base_hash,
            entries,
            torn_tail,
            key,
            locked,
        });
    }
    if out.is_empty() {
        return Err(Error::usage(format!(
            "the replica {} holds no base yet; nothing to restore",
            dir.display()
        )));
    }
    Ok(History { dir: rd, gens: out })
}

/// Checks a base file against its sidecar and its base.json.
pub fn check_base(g: &Generation) -> Result<PathBuf> {
    let file = g.base_file();
    match catalog::check_sum(&file) {
        Ok(catalog::Checksum::Ok) => {}
        Ok(catalog::Checksum::Missing) => {
            return Err(damaged(&file, "its checksum sidecar is missing"))
        }
        Ok(catalog::Checksum::Mismatch { .. }) => {
            return Err(damaged(&file, "it fails its checksum"))
        }
        Err(e) => return Err(Error::io(format!("read {}", file.display()), e)),
    }
    if g.sealed() {
        // The key file an off-site restore needs: checked here (by its sidecar) even where
        // the database's secret opens the generation without it.
        let key = g.path.join(super::seal::KEY_FILE);
        super::dir::read_checked(&key, 16 * 1024).map_err(|why| {
            Error::check_failed(format!(
                "the replica is damaged: {why}; nothing was restored. Restore from a backup instead, or from an older point with --at"
            ))
        })?;
    }
    let side = std::fs::read_to_string(catalog::sidecar(&file)).unwrap_or_default();
    if side.split_whitespace().next() != Some(g.base.sha256.as_str()) {
        return Err(damaged(
            &file,
            "its checksum differs from the one base.json recorded",
        ));
    }
    Ok(file)
}

/// Where to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Latest,
    At(DateTime<Utc>),
    /// Just before this ledger id was committed.
    BeforeMovement(i64),
    /// Exactly after this commit (verification).
    Seq(i64),
}

/// A resolved point: a generation and the last commit to apply.
#[derive(Debug, Clone)]
pub struct Point {
    /// Index into `History::gens`.
    pub gen: usize,
    pub seq: i64,
    pub hash: [u8; 32],
    /// Commit time of that point (the base's time when it is the base).
    pub at_ms: i64,
}

pub fn time_of(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S%.3f %Z")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

impl History {
    /// The oldest and newest restorable moments (ms).
    pub fn span(&self) -> (i64, i64) {
        let first = self.gens.first().map_or(0, |g| g.generation.base.taken_ms);
        let last = self.gens.last().map_or(0, GenIndex::last_ms);
        (first, last)
    }

    /// The point at commit `seq` of generation `gen` (its base's commit included).
    pub fn point(&self, gen: usize, seq: i64) -> Result<Point> {
        let g = &self.gens[gen];
        let hash = g.hash_at(seq).ok_or_else(|| {
            Error::usage(format!(
                "commit {seq} is not in generation {}",
                g.generation.number
            ))
        })?;
        let at_ms = if seq == g.generation.base.seq {
            g.generation.base.taken_ms
        } else {
            g.entries
                .iter()
                .find(|e| e.seq == seq)
                .map_or(0, |e| e.committed_ms)
        };
        Ok(Point {
            gen,
            seq,
            hash,
            at_ms,
        })
    }

    /// Resolves a target into a point, or says plainly why that moment cannot be shown.
    pub fn resolve(&self, target: &Target) -> Result<Point> {
        let newest = self.gens.len() - 1;
        match target {
            Target::Latest => self.point(newest, self.gens[newest].last_seq()),
            Target::Seq(s) => {
                let gen = (0..self.gens.len())
                    .rev()
                    .find(|&i| self.gens[i].hash_at(*s).is_some())
                    .ok_or_else(|| Error::usage(format!("commit {s} is not in the replica")))?;
                self.point(gen, *s)
            }
            Target::At(t) => {
                let t_ms = t.timestamp_millis();
                let Some(gen) = (0..self.gens.len())
                    .rev()
                    .find(|&i| self.gens[i].generation.base.taken_ms <= t_ms)
                else {
                    let (first, _) = self.span();
                    return Err(Error::usage(format!(
                        "{} is before the oldest point the replica holds ({}); restore a backup from before then instead",
                        time_of(t_ms),
                        time_of(first)
                    )));
                };
                let g = &self.gens[gen];
                let mut seq = g.generation.base.seq;
                for e in &g.entries {
                    if e.committed_ms > t_ms {
                        break;
                    }
                    seq = e.seq;
                }
                // Past the generation's last record, up to the next base, the state is not
                // known when the next generation does not continue the history. The moment
                // of the last record itself is known (it is offered as "before").
                let last = seq == g.last_seq() && t_ms > g.last_ms();
                if last {
                    if let Some(next) = self.gens.get(gen + 1) {
                        if !next.generation.base.continues {
                            return Err(Error::usage(format!(
                                "between {} and {} the replica holds no record of each change (a new base was taken: {}), so that moment cannot be shown exactly; restore to --at \"{}\" (before) or --at \"{}\" (after)",
                                time_of(g.last_ms()),
                                time_of(next.generation.base.taken_ms),
                                next.generation.base.reason,
                                local_arg(g.last_ms()),
                                local_arg(next.generation.base.taken_ms),
                            )));
                        }
                    }
                }
                self.point(gen, seq)
            }
            Target::BeforeMovement(n) => {
                for i in (0..self.gens.len()).rev() {
                    if let Some(e) = self.gens[i]
                        .entries
                        .iter()
                        .find(|e| e.first_ledger > 0 && e.first_ledger <= *n && *n <= e.last_ledger)
                    {
                        return self.point(i, e.seq - 1);
                    }
                }
                let newest_ledger = self
                    .gens
                    .iter()
                    .flat_map(|g| g.entries.iter())
                    .map(|e| e.last_ledger)
                    .max()
                    .unwrap_or(0);
                Err(Error::usage(if *n > newest_ledger {
                    format!("ledger id {n} is not in the replica: its newest movement is {newest_ledger}")
                } else {
                    format!("ledger id {n} is older than the replica's history (it is inside its oldest base); restore a backup from before it instead")
                }))
            }
        }
    }
}

/// A time as `--at` takes it back (local time).
fn local_arg(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S%.3f")
                .to_string()
        })
        .unwrap_or_default()
}

/// Parses `--at`: RFC 3339, or `YYYY-MM-DD HH:MM[:SS[.fff]]` in local time.
pub fn parse_time(s: &str) -> std::result::Result<DateTime<Utc>, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(n) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return match chrono::Local.from_local_datetime(&n) {
                chrono::LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
                chrono::LocalResult::Ambiguous(t, _) => Ok(t.with_timezone(&Utc)),
                chrono::LocalResult::None => Err(format!(
                    "{s} does not exist in local time (a daylight-saving jump); give an RFC 3339 time with its offset"
                )),
            };
        }
    }
    Err(format!(
        "{s:?} is not a time; give RFC 3339 (2026-11-22T14:31:00+01:00) or local \"YYYY-MM-DD HH:MM[:SS]\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_both_forms_and_garbage_is_refused() {
        let t = parse_time("2026-11-22T14:31:00Z").unwrap();
        assert_eq!(t.timestamp(), 1_795_357_860);
        assert!(parse_time("2026-11-22 14:31").is_ok());
        assert!(parse_time("2026-11-22 14:31:07.250").is_ok());
        for bad in [
            "",
            "yesterday",
            "2026-13-01 10:00",
            "2026-11-22 25:00",
            "\u{0}",
            &"9".repeat(5000),
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
    }
}
