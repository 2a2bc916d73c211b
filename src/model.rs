//! The domain's value types and their validation: skus, quantities, movement kinds, dates and
//! free text. Pure functions only; this module never touches the database or the disk. Every
//! input path (CLI, CSV, JSON) validates through here, so a rule is written once.

use serde::{Deserialize, Serialize};

/// Largest quantity one movement may carry.
const MAX_QUANTITY: i64 = 1_000_000_000;
/// Largest stock level a sku may reach (keeps every ledger sum far from i64 overflow).
pub const MAX_STOCK: i64 = 1_000_000_000_000;
pub const MAX_SKU_LEN: usize = 64;
pub const MAX_NAME_LEN: usize = 200;
pub const MAX_NOTES_LEN: usize = 1_000;
const MAX_REQUEST_ID_LEN: usize = 128;
pub const MAX_STATUS_LEN: usize = 64;
pub const MAX_DETAILS_LEN: usize = 10_000;

/// The four kinds of ledger movement. Receive and Adjust Up add stock; Ship and Adjust Down
/// take it away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash)]
pub enum TxType {
    Receive,
    Ship,
    #[serde(rename = "Adjust Up")]
    AdjustUp,
    #[serde(rename = "Adjust Down")]
    AdjustDown,
}

/// Read with [`TxType::parse`], so the API takes what the CSV import takes: the four types
/// in any case, with spaces, `_` or `-` ("ship", "Adjust Up", "adjust_down").
impl<'de> Deserialize<'de> for TxType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TxType, D::Error> {
        let s = String::deserialize(d)?;
        TxType::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl TxType {
    pub const ALL: [TxType; 4] = [
        TxType::Receive,
        TxType::Ship,
        TxType::AdjustUp,
        TxType::AdjustDown,
    ];

    /// The spelling stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            TxType::Receive => "Receive",
            TxType::Ship => "Ship",
            TxType::AdjustUp => "Adjust Up",
            TxType::AdjustDown => "Adjust Down",
        }
    }

    /// +1 for movements that add stock, -1 for those that take it away.
    pub fn sign(self) -> i64 {
        match self {
            TxType::Receive | TxType::AdjustUp => 1,
            TxType::Ship | TxType::AdjustDown => -1,
        }
    }

    /// Parses the ledger spelling and the forgiving variants people type in CSV files
    /// ("receive", "ADJUST_UP", "adjust-down").
    pub fn parse(s: &str) -> Result<TxType, String> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect();
        match norm.as_str() {
            "receive" => Ok(TxType::Receive),
            "ship" => Ok(TxType::Ship),
            "adjustup" => Ok(TxType::AdjustUp),
            "adjustdown" => Ok(TxType::AdjustDown),
            _ => Err(format!(
                "unknown movement type {:?}; use Receive, Ship, Adjust Up or Adjust Down",
                clip(s)
            )),
        }
    }
}

/// One bad part of a file or request: its line, when it has one, and what is wrong with it.
/// Shown as "line N: what".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: Option<u64>,
    /// What `line` counts: "line" (of a file) or "movement" (of a batch).
    pub unit: &'static str,
    /// The field it is about (`sku`, `quantity`, ...), when one is.
    pub field: Option<&'static str>,
    pub what: String,
}

impl Problem {
    pub fn at(line: u64, what: impl Into<String>) -> Problem {
        Problem {
            line: Some(line),
            unit: "line",
            field: None,
            what: what.into(),
        }
    }

    /// A problem with one field of a batch's movement `n` (from 1).
    pub fn movement(n: u64, field: Option<&'static str>, what: impl Into<String>) -> Problem {
        Problem {
            line: Some(n),
            unit: "movement",
            field,
            what: what.into(),
        }
    }

    /// The entry that stands for problems not listed.
    pub fn more(n: usize) -> Problem {
        Problem {
            line: None,
            unit: "line",
            field: None,
            what: format!("... and {n} more"),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(n) => write!(f, "{} {n}: {}", self.unit, self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// Problems from several passes over one file as one list: in line order, at most `max`
/// listed, then one entry for the `total - listed` others.
pub fn merge_problems(mut lists: Vec<Problem>, total: usize, max: usize) -> Vec<Problem> {
    lists.retain(|p| p.line.is_some());
    lists.sort_by_key(|p| p.line);
    lists.truncate(max);
    if total > lists.len() {
        let more = total - lists.len();
        lists.push(Problem::more(more));
    }
    lists
}

/// Shortens a user-supplied value for quoting in an error message.
pub fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}... ({} bytes)", s.len())
    }
}

/// A sku: 1-64 characters of letters, digits and `-_./`, no spaces.
pub fn validate_sku(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("sku is empty".into());
    }
    if s.len() > MAX_SKU_LEN {
        return Err(format!(
            "sku {:?} is longer than {MAX_SKU_LEN} characters",
            clip(s)
        ));
    }
    if !s.starts_with(char::is_alphanumeric) {
        return Err(format!(
            "sku {:?} must start with a letter or a digit",
            clip(s)
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "sku {:?} contains {c:?}; a sku may hold letters, digits and - _ . / only",
            clip(s)
        ));
    }
    Ok(())
}

/// A movement quantity: a whole number from 1 to [`MAX_QUANTITY`].
pub fn validate_quantity(q: i64) -> Result<(), String> {
    if (1..=MAX_QUANTITY).contains(&q) {
        Ok(())
    } else {
        Err(format!(
            "quantity must be a whole number from 1 to {MAX_QUANTITY}, got {q}"
        ))
    }
}

/// Parses a quantity typed by a person: digits only, optional leading `+`/`-`.
pub fn parse_int(field: &str, s: &str) -> Result<i64, String> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{field} must be a whole number, got {:?}", clip(s)));
    }
    t.trim_start_matches('+')
        .parse::<i64>()
        .map_err(|_| format!("{field} {:?} is out of range", clip(s)))
}

/// Parses and range-checks a movement quantity.
pub fn parse_quantity(s: &str) -> Result<i64, String> {
    let q = parse_int("quantity", s)?;
    validate_quantity(q)?;
    Ok(q)
}

/// A non-negative counter (reorder point, KPI counts) up to [`MAX_STOCK`].
pub fn validate_count(field: &str, n: i64) -> Result<(), String> {
    if (0..=MAX_STOCK).contains(&n) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be a whole number from 0 to {MAX_STOCK}, got {n}"
        ))
    }
}

/// A calendar date written YYYY-MM-DD.
pub fn validate_date(field: &str, s: &str) -> Result<(), String> {
    let ok = s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} must be a date written YYYY-MM-DD, got {:?}",
            clip(s)
        ))
    }
}

/// Free text: at most `max` bytes, no control characters other than tab and newline.
pub fn validate_text(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.len() > max {
        return Err(format!("{field} is {} bytes; the limit is {max}", s.len()));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(format!("{field} contains control characters"));
    }
    Ok(())
}

/// Required single-line text (a product name, a status): non-empty after trimming.
pub fn validate_label(field: &str, s: &str, max: usize) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{field} is empty"));
    }
    if s.contains(['\n', '\t']) {
        return Err(format!("{field} must be a single line"));
    }
    validate_text(field, s, max)
}

/// An idempotency key: 1-128 printable ASCII characters.
pub fn validate_request_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_REQUEST_ID_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "request_id must be 1 to {MAX_REQUEST_ID_LEN} printable ASCII characters without spaces, got {:?}",
            clip(s)
        ));
    }
    Ok(())
}

/// Today's date in the box's local time zone: the default business date of a movement.
/// Refuses a business date more than one day after today (local time): almost always a typo
/// in the year, and it would sit at the top of every "latest" list for years.
pub fn refuse_far_future(what: &str, date: &str) -> std::result::Result<(), String> {
    let Ok(d) = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
        return Ok(());
    };
    let limit = crate::clock::local_now().date_naive() + chrono::Days::new(1);
    if d > limit {
        return Err(format!(
            "{what} {date} is more than a day in the future; check the year, or pass --allow-future (\"allow_future\": true) if it is right"
        ));
    }
    Ok(())
}

/// A count with the word that fits it: "1 sku", "3 skus".
pub fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

pub fn today() -> String {
    crate::clock::local_now().format("%Y-%m-%d").to_string()
}

/// The current instant as stored in `created_at`/`updated_at` columns (UTC, milliseconds).
pub fn now_utc() -> String {
    crate::clock::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The alert level derived from a quantity and a reorder point (the same rule as the
/// generated column `inventory_current.alert_level`).
pub fn alert_level(quantity: i64, reorder_point: i64) -> &'static str {
    if quantity <= 0 {
        "critical"
    } else if quantity <= reorder_point {
        "low"
    } else {
        "ok"
    }
}

/// A verdict's level: all right, look soon, act now. Health, the replica's status and the
/// page judge with it; the worst level found is the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_reject_zero_negative_huge_and_junk() {
        assert_eq!(parse_quantity("12"), Ok(12));
        assert_eq!(parse_quantity("+7"), Ok(7));
        for bad in [
            "0",
            "-3",
            "1000000001",
            "99999999999999999999999",
            "abc",
            "1e3",
            "1.5",
            "",
            " ",
            "١٢",
        ] {
            assert!(parse_quantity(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn skus_allow_warehouse_codes_and_refuse_the_rest() {
        for ok in ["A-1", "SKU_00042", "box.12/red", "Ärmel-3"] {
            assert!(validate_sku(ok).is_ok(), "{ok} refused");
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            "a b",
            "a;DROP TABLE x",
            "a\0b",
            long.as_str(),
            "a'b",
            "..",
            "-x",
            "/etc",
        ] {
            assert!(validate_sku(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn movement_types_parse_forgivingly() {
        assert_eq!(TxType::parse("adjust_up"), Ok(TxType::AdjustUp));
        assert_eq!(TxType::parse(" Adjust Down "), Ok(TxType::AdjustDown));
        assert_eq!(TxType::parse("SHIP"), Ok(TxType::Ship));
        assert!(TxType::parse("steal").is_err());
    }

    #[test]
    fn dates_must_be_real_calendar_days() {
        assert!(validate_date("date", "2026-02-28").is_ok());
        for bad in ["2026-02-30", "2026-2-1", "yesterday", "2026-02-28T00:00"] {
            assert!(validate_date("date", bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn alert_levels_follow_the_reorder_point() {
        assert_eq!(alert_level(0, 5), "critical");
        assert_eq!(alert_level(5, 5), "low");
        assert_eq!(alert_level(6, 5), "ok");
    }
}
