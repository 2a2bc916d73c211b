//! When the backup disk fills: the nightly backup simulated day by day under the retention
//! rules (each new backup the size of the newest, grown by the rate the last week or more of
//! backups shows; the ones no rule keeps removed, as `ora backup` removes them), against the
//! space free now. Arithmetic over a listing only: reads no file, writes nothing.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::catalog::{self, BackupFile, Keep};

/// The days ahead the forecast looks.
pub const HORIZON_DAYS: u32 = 60;

/// What the backup directory will need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Free on its file system now.
    pub free_bytes: u64,
    /// Held by this database's backups now.
    pub backup_bytes: u64,
    /// The next backup's expected size.
    pub next_backup_bytes: u64,
    /// How much each backup grows a day (by the backups of the last week or more; 0 before).
    pub growth_bytes_per_day: u64,
    /// The first day (counted from now) whose backup would not fit, within the horizon.
    pub full_in_days: Option<u32>,
}

/// The forecast for `backups` (newest first, as listed) with `free` bytes free; none without
/// a backup to go by.
pub fn forecast(
    backups: &[BackupFile],
    keep: &Keep,
    now: DateTime<Utc>,
    free: u64,
) -> Option<Forecast> {
    let newest = backups.first()?;
    let growth = growth_per_day(backups);
    let held: u64 = backups.iter().map(|b| b.bytes).sum();
    let mut all = backups.to_vec();
    let mut full_in_days = None;
    for day in 1..=HORIZON_DAYS {
        let at = now + Duration::days(i64::from(day));
        let bytes = newest
            .bytes
            .saturating_add(growth.saturating_mul(u64::from(day)));
        all.insert(
            0,
            BackupFile {
                path: format!("(day {day})").into(),
                name: format!("(day {day})"),
                taken: at,
                bytes,
                has_checksum: true,
            },
        );
        // The new backup is written before retention removes the old ones.
        let written: u64 = all.iter().map(|b| b.bytes).sum();
        if written.saturating_sub(held) > free {
            full_in_days = Some(day);
            break;
        }
        let gone = catalog::expired(&all, keep, at);
        all.retain(|b| !gone.iter().any(|g| g.path == b.path));
    }
    Some(Forecast {
        free_bytes: free,
        backup_bytes: held,
        next_backup_bytes: newest.bytes.saturating_add(growth),
        growth_bytes_per_day: growth,
        full_in_days,
    })
}

/// Bytes a day the backups grow, from the newest and the newest one at least a week older
/// (fewer days say nothing about a trend); 0 when they shrink or there is no such pair.
fn growth_per_day(backups: &[BackupFile]) -> u64 {
    let Some(newest) = backups.first() else {
        return 0;
    };
    let week_before = newest.taken - Duration::days(7);
    let Some(older) = backups.iter().find(|b| b.taken <= week_before) else {
        return 0;
    };
    let days = (newest.taken - older.taken).num_seconds() as f64 / 86_400.0;
    let grown = newest.bytes.saturating_sub(older.bytes) as f64;
    (grown / days).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(n: u32, first: u64, grow: u64, now: DateTime<Utc>) -> Vec<BackupFile> {
        (0..n)
            .map(|i| BackupFile {
                path: format!("b{i}").into(),
                name: format!("b{i}"),
                taken: now - Duration::days(i64::from(i)),
                bytes: first.saturating_sub(grow * u64::from(i)),
                has_checksum: true,
            })
            .collect()
    }

    const KEEP: Keep = Keep {
        days: 7,
        weeks: 4,
        months: 3,
    };

    /// A fixed day (the weekly and monthly keepers depend on the calendar).
    fn now() -> DateTime<Utc> {
        "2026-12-06T02:30:00Z".parse().unwrap()
    }

    #[test]
    fn a_steady_size_under_retention_fills_nothing_once_the_windows_are_full() {
        let now = now();
        // 120 days of 100-byte backups: retention already holds its steady set.
        let all = daily(120, 100, 0, now);
        let kept: Vec<BackupFile> = {
            let gone = catalog::expired(&all, &KEEP, now);
            all.into_iter()
                .filter(|b| !gone.iter().any(|g| g.path == b.path))
                .collect()
        };
        // The kept set moves by a backup or two as weeks and months turn: room for four.
        let f = forecast(&kept, &KEEP, now, 400).unwrap();
        assert_eq!(f.full_in_days, None, "{f:?}");
        assert_eq!(f.growth_bytes_per_day, 0);
        // Less free than one more backup needs before retention removes one: day 1.
        assert_eq!(
            forecast(&kept, &KEEP, now, 50).unwrap().full_in_days,
            Some(1)
        );
    }

    #[test]
    fn a_young_directory_fills_as_its_windows_fill_and_growth_counts() {
        let now = now();
        // Two backups a day apart: no trend yet. The daily window fills, then weekly and
        // monthly keepers pile up until the set is about 14 backups: 1,000 bytes free (ten
        // more backups of 100) runs out, but not before day 11, and 2,000 never does.
        let young = daily(2, 100, 0, now);
        let f = forecast(&young, &KEEP, now, 1_000).unwrap();
        assert_eq!(f.growth_bytes_per_day, 0);
        let day = f.full_in_days.expect("fills");
        assert!((11..=HORIZON_DAYS).contains(&day), "{f:?}");
        assert_eq!(
            forecast(&young, &KEEP, now, 2_000).unwrap().full_in_days,
            None
        );
        // Without the weekly and monthly windows the daily one is all: the 8 backups of the
        // last 7 days and the night's new one, 700 bytes more than the 200 held now.
        let days_only = Keep {
            days: 7,
            weeks: 0,
            months: 0,
        };
        assert_eq!(
            forecast(&young, &days_only, now, 700).unwrap().full_in_days,
            None
        );
        assert!(forecast(&young, &days_only, now, 699)
            .unwrap()
            .full_in_days
            .is_some());
        // Ten days of backups growing 10 bytes a day: the trend is seen and counted.
        let growing = daily(10, 1_000, 10, now);
        let f = forecast(&growing, &KEEP, now, 1_000_000).unwrap();
        assert_eq!(f.growth_bytes_per_day, 10);
        assert_eq!(f.next_backup_bytes, 1_010);
        assert_eq!(f.full_in_days, None);
        assert!(forecast(&[], &KEEP, now, 0).is_none());
    }
}
