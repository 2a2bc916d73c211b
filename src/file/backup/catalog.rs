//! The backup directory: how backups are named (`<db stem>-YYYYMMDDTHHMMSSZ.db.gz` with a
//! `.sha256` sidecar that `sha256sum -c` accepts), listing them newest first, reading and
//! checking checksums, and deciding which ones retention may remove. The timestamp in the name
//! is authoritative (mtimes change when files are copied).

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};

const STAMP: &str = "%Y%m%dT%H%M%SZ";
const SUFFIX: &str = ".db.gz";
/// An age-encrypted backup.
const AGE_SUFFIX: &str = ".db.gz.age";

/// One backup file found in the directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupFile {
    pub path: PathBuf,
    pub name: String,
    pub taken: DateTime<Utc>,
    pub bytes: u64,
    /// A `.sha256` sidecar is present.
    pub has_checksum: bool,
}

/// The stem backups of `db` are named after ("ora" for ora.db).
pub fn stem(db: &Path) -> String {
    db.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ora".into())
}

/// The file name for a backup of `db` taken at `at` (with `-N` when `n > 0`; `.age` at the
/// end when it is encrypted).
pub fn file_name(db: &Path, at: DateTime<Utc>, n: u32, encrypted: bool) -> String {
    let base = format!("{}-{}", stem(db), at.format(STAMP));
    let suffix = if encrypted { AGE_SUFFIX } else { SUFFIX };
    if n == 0 {
        format!("{base}{suffix}")
    } else {
        format!("{base}-{n}{suffix}")
    }
}

/// The sidecar of a backup file.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".sha256");
    PathBuf::from(s)
}

/// The sidecar's content for a backup file named `name`.
pub fn sidecar_line(sha256: &str, name: &str) -> String {
    format!("{sha256}  {name}\n")
}

/// When a backup named `name` (of a database with stem `stem`) was taken, if it is one.
pub fn parse_name(stem: &str, name: &str) -> Option<DateTime<Utc>> {
    let rest = name.strip_prefix(stem)?.strip_prefix('-')?;
    let rest = rest
        .strip_suffix(AGE_SUFFIX)
        .or_else(|| rest.strip_suffix(SUFFIX))?;
    let stamp = rest.get(..16)?;
    let tail = &rest[16..];
    if !(tail.is_empty()
        || (tail.starts_with('-')
            && tail[1..].bytes().all(|b| b.is_ascii_digit())
            && tail.len() > 1))
    {
        return None;
    }
    NaiveDateTime::parse_from_str(stamp, STAMP)
        .ok()
        .map(|t| t.and_utc())
}

/// Every backup of `db` in `dir`, newest first.
pub fn list(dir: &Path, db: &Path) -> std::io::Result<Vec<BackupFile>> {
    let stem = stem(db);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(taken) = parse_name(&stem, &name) else {
            continue;
        };
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let path = entry.path();
        out.push(BackupFile {
            has_checksum: sidecar(&path).is_file(),
            path,
            name,
            taken,
            bytes: meta.len(),
        });
    }
    // Within one second, `-N` counts up: `...Z-1.db.gz` was taken after `...Z.db.gz` (their
    // names alone sort the other way).
    out.sort_by(|a, b| {
        b.taken
            .cmp(&a.taken)
            .then(same_second_number(&b.name).cmp(&same_second_number(&a.name)))
    });
    Ok(out)
}

/// N of a `...Z-N.db.gz` name (0 for the first backup of a second).
fn same_second_number(name: &str) -> u64 {
    name.strip_suffix(AGE_SUFFIX)
        .or_else(|| name.strip_suffix(SUFFIX))
        .and_then(|r| r.rsplit_once('-'))
        .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

/// What the sidecar check found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    Ok,
    Mismatch { expected: String, actual: String },
    Missing,
}

/// Hashes `path` and compares it with its sidecar.
pub fn check_sum(path: &Path) -> std::io::Result<Checksum> {
    let side = sidecar(path);
    let expected = match std::fs::read_to_string(&side) {
        Ok(s) => s
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Checksum::Missing),
        Err(e) => return Err(e),
    };
    let actual = sha256_file(path)?;
    Ok(if expected == actual {
        Checksum::Ok
    } else {
        Checksum::Mismatch { expected, actual }
    })
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = crate::store::dbfile::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match f.read(&mut buf)? {
            0 => break,
            n => h.update(&buf[..n]),
        }
    }
    Ok(crate::fsutil::hex(&h.finalize()))
}

/// How long backups are kept (grandfather-father-son): every one for `days`, then the newest
/// of each ISO week for `weeks` weeks and the newest of each month for `months` months.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep {
    pub days: u32,
    pub weeks: u32,
    pub months: u32,
}

/// The backups past the daily window that the weekly and monthly rules keep: the newest good
/// one (with a checksum) of each week or month inside their windows, and the newest good
/// backup of all, whatever its age.
fn keepers(backups: &[BackupFile], keep: &Keep, now: DateTime<Utc>) -> Vec<PathBuf> {
    use chrono::Datelike;
    let weeks_from = now - chrono::Duration::weeks(i64::from(keep.weeks));
    let months_from = now
        .checked_sub_months(chrono::Months::new(keep.months))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut out: Vec<PathBuf> = backups
        .iter()
        .find(|b| b.has_checksum)
        .map(|b| b.path.clone())
        .into_iter()
        .collect();
    let (mut weeks, mut months) = (Vec::new(), Vec::new());
    // Newest first: the first good backup seen of a week or month is its newest.
    for b in backups.iter().filter(|b| b.has_checksum) {
        let w = b.taken.iso_week();
        if b.taken >= weeks_from && !weeks.contains(&(w.year(), w.week())) {
            weeks.push((w.year(), w.week()));
            out.push(b.path.clone());
        }
        let m = (b.taken.year(), b.taken.month());
        if b.taken >= months_from && !months.contains(&m) {
            months.push(m);
            out.push(b.path.clone());
        }
    }
    out
}

/// The backups retention removes: older than the daily window and kept by no weekly or
/// monthly rule; never the newest good backup, whatever its age.
pub fn expired(backups: &[BackupFile], keep: &Keep, now: DateTime<Utc>) -> Vec<BackupFile> {
    let kept = keepers(backups, keep, now);
    let cutoff = now - chrono::Duration::days(i64::from(keep.days));
    backups
        .iter()
        .filter(|b| b.taken < cutoff && !kept.contains(&b.path))
        .cloned()
        .collect()
}

/// The backups older than the daily window that the weekly and monthly rules keep (what
/// `ora archive` packs), oldest first; never the newest good backup.
pub fn aged_keepers(backups: &[BackupFile], keep: &Keep, now: DateTime<Utc>) -> Vec<BackupFile> {
    let kept = keepers(backups, keep, now);
    let newest_good = backups.iter().find(|b| b.has_checksum).map(|b| &b.path);
    let cutoff = now - chrono::Duration::days(i64::from(keep.days));
    let mut out: Vec<BackupFile> = backups
        .iter()
        .filter(|b| b.taken < cutoff && kept.contains(&b.path) && Some(&b.path) != newest_good)
        .cloned()
        .collect();
    out.reverse();
    out
}

/// Removes a backup and its sidecar.
pub fn remove(b: &BackupFile) -> std::io::Result<()> {
    std::fs::remove_file(&b.path)?;
    match std::fs::remove_file(sidecar(&b.path)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_ignored() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T02:00:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let n = file_name(Path::new("/var/lib/ora/ora.db"), at, 0, false);
        assert_eq!(n, "ora-20261122T020005Z.db.gz");
        assert_eq!(parse_name("ora", &n), Some(at));
        let sealed = file_name(Path::new("/var/lib/ora/ora.db"), at, 1, true);
        assert_eq!(sealed, "ora-20261122T020005Z-1.db.gz.age");
        assert_eq!(parse_name("ora", &sealed), Some(at));
        assert_eq!(parse_name("ora", "ora-20261122T020005Z-2.db.gz"), Some(at));
        for bad in [
            "ora-2026.db.gz",
            "other-20261122T020005Z.db.gz",
            "ora-20261122T020005Z.db",
            "ora-20261122T020005Z-x.db.gz",
            "ora-20261399T020005Z.db.gz",
        ] {
            assert_eq!(parse_name("ora", bad), None, "{bad}");
        }
    }

    #[test]
    fn backups_of_one_second_list_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "ora-20261122T020005Z.db.gz",
            "ora-20261122T020005Z-1.db.gz",
            "ora-20261122T020005Z-2.db.gz",
            "ora-20261122T020004Z.db.gz",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let names: Vec<String> = list(dir.path(), Path::new("ora.db"))
            .unwrap()
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(
            names,
            [
                "ora-20261122T020005Z-2.db.gz",
                "ora-20261122T020005Z-1.db.gz",
                "ora-20261122T020005Z.db.gz",
                "ora-20261122T020004Z.db.gz",
            ]
        );
    }

    fn keep(days: u32) -> Keep {
        Keep {
            days,
            weeks: 0,
            months: 0,
        }
    }

    #[test]
    fn retention_never_removes_the_newest_good_backup() {
        let now = crate::clock::now();
        let mk = |days: i64, sum: bool| BackupFile {
            path: PathBuf::from(format!("b{days}")),
            name: format!("b{days}"),
            taken: now - chrono::Duration::days(days),
            bytes: 1,
            has_checksum: sum,
        };
        // All old: the newest with a checksum survives.
        let all_old = vec![mk(40, false), mk(41, true), mk(50, true)];
        let gone: Vec<String> = expired(&all_old, &keep(30), now)
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(gone, ["b40", "b50"]);
        let mixed = vec![mk(1, true), mk(31, true), mk(45, true)];
        let gone: Vec<String> = expired(&mixed, &keep(30), now)
            .into_iter()
            .map(|b| b.name)
            .collect();
        assert_eq!(gone, ["b31", "b45"]);
    }

    // A backup every day for two years, kept 30 days daily, 8 weeks weekly, 12 months monthly:
    // every backup of the last 30 days, one a week back to 8 weeks, one a month back to 12
    // months, nothing older; what is kept plus what is removed is everything, once.
    #[test]
    fn backups_thin_out_with_age() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let all: Vec<BackupFile> = (0..730)
            .map(|d| BackupFile {
                path: PathBuf::from(format!("d{d}")),
                name: format!("d{d}"),
                taken: now - chrono::Duration::days(d),
                bytes: 1,
                has_checksum: true,
            })
            .collect();
        let k = Keep {
            days: 30,
            weeks: 8,
            months: 12,
        };
        let gone = expired(&all, &k, now);
        let kept: Vec<&BackupFile> = all
            .iter()
            .filter(|b| !gone.iter().any(|g| g.path == b.path))
            .collect();
        let old_kept = kept
            .iter()
            .filter(|b| b.taken < now - chrono::Duration::days(30))
            .count();
        // Every daily one of the window (days 0 to 30, the 30th on its edge), then about 4
        // more weeks' newest (weeks 5-8) and about 11 months' newest beyond the weekly
        // window; none older than 12 months.
        assert_eq!(kept.len() - old_kept, 31);
        assert!(
            (12..=18).contains(&old_kept),
            "{old_kept} kept beyond the daily window"
        );
        assert!(kept
            .iter()
            .all(|b| b.taken >= now - chrono::Duration::days(366)));
        assert_eq!(kept.len() + gone.len(), all.len());
        let aged = aged_keepers(&all, &k, now);
        assert_eq!(aged.len(), old_kept);
        assert!(
            aged.windows(2).all(|w| w[0].taken < w[1].taken),
            "oldest first"
        );
    }
}
