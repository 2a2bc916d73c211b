//! The one clock ora reads the date and the time of day from. It is the system's, unless the
//! environment variable `ORA_NOW` (an RFC 3339 time, read once per process) moves it: "now"
//! then starts at that moment and runs on at the system clock's pace. Tests use it to run ora
//! on the days that break date arithmetic (the first of a month, a year's end, a leap day);
//! an operator can use it to rehearse what a job would do on a given day. Measures of elapsed
//! time use `Instant`, never this clock. Never stops time and never makes it run backwards
//! within a process.

use std::sync::OnceLock;

use chrono::{DateTime, Local, Utc};

/// The variable that moves the clock.
pub const VAR: &str = "ORA_NOW";

/// How far the clock is moved from the system's, fixed at its first reading.
fn offset() -> chrono::Duration {
    static OFFSET: OnceLock<chrono::Duration> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(VAR)
            .ok()
            .and_then(|v| DateTime::parse_from_rfc3339(v.trim()).ok())
            .map_or(chrono::Duration::zero(), |t| {
                t.with_timezone(&Utc) - Utc::now()
            })
    })
}

/// Now, in UTC.
pub fn now() -> DateTime<Utc> {
    Utc::now() + offset()
}

/// Now, in the machine's time zone.
pub fn local_now() -> DateTime<Local> {
    now().with_timezone(&Local)
}

/// Now as milliseconds since 1970 (UTC).
pub fn now_ms() -> i64 {
    now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_runs_forward() {
        let a = now_ms();
        let b = now_ms();
        assert!(b >= a);
    }
}
