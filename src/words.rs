//! How ora says things to people (the status page, the warehouse's reasons): times as people
//! read them ("3 min ago", "yesterday 02:00", in local time with the zone named), and what a
//! free-text workflow status means (and so its colour). Pure functions of their inputs and the
//! clock passed in; never reads the database or the environment.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// The local zone as people name it: "UTC" or "UTC+01:00".
pub fn zone(now: &DateTime<Local>) -> String {
    let secs = now.offset().local_minus_utc();
    if secs == 0 {
        return "UTC".into();
    }
    let sign = if secs < 0 { '-' } else { '+' };
    let m = secs.unsigned_abs() / 60;
    format!("UTC{sign}{:02}:{:02}", m / 60, m % 60)
}

/// Parses the timestamps ora stores: RFC 3339 (`2026-12-02T01:34:55.954Z`) or a plain UTC
/// `YYYY-MM-DD HH:MM:SS`.
pub fn parse(ts: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(ts) {
        return Some(t.with_timezone(&Utc));
    }
    let head = ts.get(..19)?;
    NaiveDateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(head, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

/// "just now", "3 min ago", "today 14:02", "yesterday 02:00", "Mon 30 Nov 02:00",
/// "12 Mar 2025 02:00"; a time in the future is shown as its date and time.
pub fn when(t: DateTime<Utc>, now: DateTime<Local>) -> String {
    let local = t.with_timezone(&Local);
    let secs = (now.with_timezone(&Utc) - t).num_seconds();
    if (0..60).contains(&secs) {
        return "just now".into();
    }
    if (60..3600).contains(&secs) {
        return format!("{} min ago", secs / 60);
    }
    let day = local.date_naive();
    let today = now.date_naive();
    let hm = local.format("%H:%M");
    if day == today {
        format!("today {hm}")
    } else if Some(day) == today.pred_opt() {
        format!("yesterday {hm}")
    } else if secs > 0 && secs < 6 * 86_400 {
        format!("{} {hm}", local.format("%a %-d %b"))
    } else {
        format!("{} {hm}", local.format("%-d %b %Y"))
    }
}

/// [`when`] of a stored timestamp, or the text itself when it does not parse.
pub fn when_text(ts: &str, now: DateTime<Local>) -> String {
    parse(ts).map_or_else(|| ts.to_string(), |t| when(t, now))
}

/// A business date (`YYYY-MM-DD`) as "today", "yesterday" or "30 Nov".
pub fn day(date: &str, today: NaiveDate) -> String {
    match NaiveDate::parse_from_str(date, "%Y-%m-%d") {
        Ok(d) if d == today => "today".into(),
        Ok(d) if Some(d) == today.pred_opt() => "yesterday".into(),
        Ok(d) => d.format("%-d %b").to_string(),
        Err(_) => date.to_string(),
    }
}

/// What a workflow status means, which decides its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meaning {
    Done,
    Running,
    Waiting,
    Failed,
    /// A status ora has no word for: shown as it is, in a neutral colour.
    Other,
}

impl Meaning {
    /// The CSS class of its tag.
    pub fn class(self) -> &'static str {
        match self {
            Meaning::Done => "ok",
            Meaning::Running => "run",
            Meaning::Waiting => "wait",
            Meaning::Failed => "fail",
            Meaning::Other => "other",
        }
    }
}

/// Reads a free-text status: done/ok, running/in progress, waiting, failed/error, or other.
pub fn meaning(status: &str) -> Meaning {
    let s: String = status
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect();
    let has = |words: &[&str]| {
        words
            .iter()
            .any(|w| s == *w || s.starts_with(&format!("{w} ")))
    };
    if has(&[
        "failed", "fail", "error", "errored", "aborted", "crashed", "broken", "stuck",
    ]) {
        Meaning::Failed
    } else if has(&[
        "done",
        "ok",
        "complete",
        "completed",
        "success",
        "succeeded",
        "finished",
        "green",
    ]) {
        Meaning::Done
    } else if has(&[
        "running",
        "in progress",
        "started",
        "active",
        "working",
        "processing",
        "busy",
    ]) {
        Meaning::Running
    } else if has(&[
        "waiting",
        "pending",
        "queued",
        "paused",
        "on hold",
        "scheduled",
        "idle",
    ]) {
        Meaning::Waiting
    } else {
        Meaning::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_get_a_meaning_and_free_text_is_neutral() {
        assert_eq!(meaning("done"), Meaning::Done);
        assert_eq!(meaning("OK"), Meaning::Done);
        assert_eq!(meaning("running"), Meaning::Running);
        assert_eq!(meaning("In Progress"), Meaning::Running);
        assert_eq!(meaning("in_progress"), Meaning::Running);
        assert_eq!(meaning("failed"), Meaning::Failed);
        assert_eq!(meaning("error: disk"), Meaning::Other);
        assert_eq!(meaning("error"), Meaning::Failed);
        assert_eq!(meaning("waiting"), Meaning::Waiting);
        assert_eq!(meaning("printer jammed"), Meaning::Other);
        assert_eq!(meaning(""), Meaning::Other);
    }

    #[test]
    fn times_read_as_people_say_them() {
        let now = Local.with_ymd_and_hms(2026, 12, 2, 14, 30, 0).unwrap();
        let at = |h, m| {
            Local
                .with_ymd_and_hms(2026, 12, 2, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert_eq!(when(at(14, 29), now), "1 min ago");
        assert_eq!(when(at(14, 27), now), "3 min ago");
        assert_eq!(when(at(2, 0), now), "today 02:00");
        let yesterday = Local
            .with_ymd_and_hms(2026, 12, 1, 2, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(when(yesterday, now), "yesterday 02:00");
        let old = Local
            .with_ymd_and_hms(2025, 3, 12, 2, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(when(old, now), "12 Mar 2025 02:00");
        assert!(parse("2026-12-02T01:34:55.954Z").is_some());
        assert!(parse("2026-12-02 01:34:55").is_some());
        assert!(parse("yesterday").is_none());
    }
}
