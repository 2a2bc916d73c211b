//! Reading the old system's values the way its users wrote them: movement types in any case
//! and spelling, signed quantities, dates and times as free text. Pure functions; each says
//! what it had to change, so adopt can list every fix.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};

use crate::model::TxType;

/// A movement type read from the old ledger, or `None` when it cannot be told.
pub fn tx_type(raw: &str) -> Option<TxType> {
    if let Ok(t) = TxType::parse(raw) {
        return Some(t);
    }
    let norm: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    match norm.as_str() {
        "received" | "receipt" | "receiving" | "in" | "purchase" => Some(TxType::Receive),
        "shipped" | "shipment" | "shipping" | "out" | "sale" | "sold" => Some(TxType::Ship),
        "adjustmentup" | "adjup" | "adjustplus" | "adjustin" | "adjustupward" => {
            Some(TxType::AdjustUp)
        }
        "adjustmentdown" | "adjdown" | "adjustminus" | "adjustout" | "adjustdownward" => {
            Some(TxType::AdjustDown)
        }
        _ => None,
    }
}

/// How a signed quantity becomes an ora movement (ora's quantities are positive; the type
/// says the direction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantity {
    /// As it was.
    Kept(TxType, i64),
    /// A negative quantity on an outgoing type: the sign only said the direction.
    SignDropped(TxType, i64),
    /// A negative quantity on an incoming type: a correction the other way (Receive -5 is an
    /// Adjust Down of 5).
    Reversed(TxType, i64),
    /// Zero, or too large to hold: no movement.
    Unusable,
}

pub fn quantity(t: TxType, q: i64) -> Quantity {
    match q {
        0 | i64::MIN => Quantity::Unusable,
        q if q > 0 => Quantity::Kept(t, q),
        q if t.sign() < 0 => Quantity::SignDropped(t, -q),
        q => Quantity::Reversed(TxType::AdjustDown, -q),
    }
}

/// A day in any of the spellings the old system's users wrote (ISO, with slashes, day first
/// with dots, month names, a timestamp, Unix seconds): `YYYY-MM-DD`, or `None`.
pub fn date(raw: &str) -> Option<String> {
    use chrono::Datelike;
    moment(raw).map(|t| format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()))
}

/// An instant as ora stores `created_at` (UTC, milliseconds), or `None`. Times without a
/// zone are taken as UTC (SQLite's CURRENT_TIMESTAMP is UTC).
pub fn instant(raw: &str) -> Option<String> {
    use chrono::{Datelike, Timelike};
    // Written field by field: chrono's format strings are parsed anew on every call, which
    // showed in profiles of a 2 M-row adopt.
    moment(raw).map(|t| {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.timestamp_subsec_millis().min(999)
        )
    })
}

fn moment(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    // The two spellings nearly every row has come first: an ISO day, and SQLite's
    // CURRENT_TIMESTAMP (neither can be RFC 3339, so the result is the same as below).
    if s.len() == 10 {
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return plausible(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
        }
    }
    if s.len() == 19 {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
            return plausible(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d %H:%M:%S",
        "%d.%m.%Y %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return plausible(Utc.from_utc_datetime(&t));
        }
    }
    for f in [
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%Y.%m.%d",
        "%Y%m%d",
        "%d.%m.%Y",
        "%d %b %Y",
        "%d %B %Y",
        "%b %d %Y",
        "%b %d, %Y",
        "%B %d, %Y",
        "%B %d %Y",
    ] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return plausible(Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?));
        }
    }
    // 12/01/2025 is the 12th of January or the 1st of December: only a day above 12 tells.
    if let Some((a, b, y)) = slashed(s) {
        let (d, m) = match (a, b) {
            (a, b) if a > 12 && b <= 12 => (a, b),
            (a, b) if b > 12 && a <= 12 => (b, a),
            _ => return None,
        };
        let day = NaiveDate::from_ymd_opt(y, m, d)?;
        return plausible(Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?));
    }
    // Unix seconds (ten digits: 2001-2286).
    if s.len() == 10 && s.bytes().all(|b| b.is_ascii_digit()) {
        return plausible(Utc.timestamp_opt(s.parse().ok()?, 0).single()?);
    }
    None
}

fn slashed(s: &str) -> Option<(u32, u32, i32)> {
    let mut it = s.split('/');
    let (a, b, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 {
        return None;
    }
    Some((a.parse().ok()?, b.parse().ok()?, y.parse().ok()?))
}

/// Years a warehouse ledger can hold; anything else is a misreading.
fn plausible(t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (1970..=2200)
        .contains(&chrono::Datelike::year(&t))
        .then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_in_any_spelling() {
        for (raw, t) in [
            ("Receive", TxType::Receive),
            ("RECEIVE", TxType::Receive),
            (" received ", TxType::Receive),
            ("ship", TxType::Ship),
            ("Shipped", TxType::Ship),
            ("adjust_up", TxType::AdjustUp),
            ("Adjustment Down", TxType::AdjustDown),
            ("ADJUST-DOWN", TxType::AdjustDown),
        ] {
            assert_eq!(tx_type(raw), Some(t), "{raw}");
        }
        for raw in ["", "transfer", "??", "receive2", "\u{0}ship"] {
            assert_eq!(tx_type(raw), None, "{raw:?}");
        }
    }

    #[test]
    fn signed_quantities() {
        assert_eq!(quantity(TxType::Ship, 5), Quantity::Kept(TxType::Ship, 5));
        assert_eq!(
            quantity(TxType::Ship, -5),
            Quantity::SignDropped(TxType::Ship, 5)
        );
        assert_eq!(
            quantity(TxType::Receive, -5),
            Quantity::Reversed(TxType::AdjustDown, 5)
        );
        assert_eq!(quantity(TxType::Receive, 0), Quantity::Unusable);
        assert_eq!(quantity(TxType::Ship, i64::MIN), Quantity::Unusable);
    }

    #[test]
    fn free_text_dates() {
        for (raw, d) in [
            ("2025-01-15", "2025-01-15"),
            ("2025/01/15", "2025-01-15"),
            ("20250115", "2025-01-15"),
            ("15.01.2025", "2025-01-15"),
            ("15 Jan 2025", "2025-01-15"),
            ("Jan 15, 2025", "2025-01-15"),
            ("January 15 2025", "2025-01-15"),
            ("2025-01-15 10:30:00", "2025-01-15"),
            ("2025-01-15T23:30:00-02:00", "2025-01-16"),
            ("15/01/2025", "2025-01-15"),
            ("01/15/2025", "2025-01-15"),
            ("1736899200", "2025-01-15"),
        ] {
            assert_eq!(date(raw).as_deref(), Some(d), "{raw}");
        }
        for raw in [
            "",
            "yesterday",
            "05/06/2025",
            "2025-02-30",
            "32.01.2025",
            "0000-01-01",
            "9999-01-01",
            "2025-13-01",
            "99999999999",
            "2025-01-15; DROP TABLE x",
        ] {
            assert_eq!(date(raw), None, "{raw:?}");
        }
        assert_eq!(
            instant("2025-01-15 10:30:00").as_deref(),
            Some("2025-01-15T10:30:00.000Z")
        );
    }
}
