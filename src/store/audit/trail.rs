//! Reading the audit trail: `audit_log` rows and the ledger's movements recorded with an actor,
//! as one list, newest first, filtered and paged by a cursor that holds where each source
//! stopped (so every row comes exactly once however writes go on). Reads only; never writes
//! or deletes a row.

use rusqlite::Connection;
use serde::Serialize;

use super::super::error::{Result, SqlContext, StoreError};
use super::{validate_actor, AUDITED, MAX_LIMIT};
use crate::model;

/// One row of the trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The audit_log row; none for a movement (its ledger row is its record: `key` is its
    /// ledger id).
    pub id: Option<i64>,
    pub at: String,
    pub actor: String,
    pub request_id: Option<String>,
    pub op: String,
    pub table: String,
    pub key: String,
    pub action: String,
    pub old: Option<serde_json::Value>,
    pub new: Option<serde_json::Value>,
    pub sku: Option<String>,
}

/// Which rows to list (all given conditions hold), newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub sku: Option<String>,
    pub table: Option<String>,
    pub actor: Option<String>,
    /// A date (`YYYY-MM-DD`, from its start, UTC) or a time as ora writes them.
    pub since: Option<String>,
    /// Only rows older than this point of an earlier page (its `next`).
    pub before: Option<Cursor>,
    pub limit: usize,
}

/// The ledger: its rows are the movements' records.
const LEDGER: &str = "inventory_transactions";

/// The tables a `--table` filter may name.
pub fn tables() -> Vec<&'static str> {
    std::iter::once(LEDGER)
        .chain(AUDITED.iter().map(|a| a.table))
        .collect()
}

impl Filter {
    /// Checks every condition; the errors say what is allowed.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if let Some(s) = &self.sku {
            model::validate_sku(s)?;
        }
        if let Some(t) = &self.table {
            if !tables().contains(&t.as_str()) {
                return Err(format!(
                    "no audited table {:?}; use one of {}",
                    model::clip(t),
                    tables().join(", ")
                ));
            }
        }
        if let Some(a) = &self.actor {
            validate_actor(a)?;
        }
        if let Some(s) = &self.since {
            since_bound(s)?;
        }
        if self.limit == 0 || self.limit > MAX_LIMIT {
            return Err(format!(
                "the limit must be 1 to {MAX_LIMIT}, not {}",
                self.limit
            ));
        }
        Ok(())
    }
}

/// `--since` as the lower bound of `at`: a date means from its midnight (UTC).
fn since_bound(s: &str) -> std::result::Result<String, String> {
    let bad = || {
        format!(
            "--since {:?} is not a date (YYYY-MM-DD) or a UTC time (YYYY-MM-DDTHH:MM:SSZ)",
            model::clip(s)
        )
    };
    if s.len() == 10 {
        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad())?;
        return Ok(format!("{s}T00:00:00.000Z"));
    }
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|_| bad())?;
    Ok(t.with_timezone(&chrono::Utc)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string())
}

/// A page of the trail, and where the next one starts when this one is full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trail {
    pub entries: Vec<Entry>,
    pub next: Option<Cursor>,
}

/// Where a page ended: the trail goes on with `audit_log` rows below `change` and movements
/// below `movement` (ids, exclusive). Written `c<change>m<movement>`, e.g. `c120m88231`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cursor {
    pub change: i64,
    pub movement: i64,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}m{}", self.change, self.movement)
    }
}

impl std::str::FromStr for Cursor {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || {
            format!(
                "{:?} is not a cursor of the audit trail (c<id>m<id>, as a page's next link gives it)",
                model::clip(s)
            )
        };
        let rest = s.strip_prefix('c').ok_or_else(bad)?;
        let (c, m) = rest.split_once('m').ok_or_else(bad)?;
        let id = |t: &str| -> std::result::Result<i64, String> {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            t.parse::<i64>().map_err(|_| bad())
        };
        Ok(Cursor {
            change: id(c)?,
            movement: id(m)?,
        })
    }
}

/// The changes that match, newest first: audit_log rows and audited movements as one trail,
/// `f.limit` of them, with the cursor of the rest when there may be more.
pub fn list(conn: &Connection, f: &Filter) -> Result<Trail> {
    f.validate().map_err(StoreError::invalid)?;
    let since = f
        .since
        .as_deref()
        .map(since_bound)
        .transpose()
        .map_err(StoreError::invalid)?;
    let (ch, mv) = (
        f.table.as_deref().is_none_or(|t| t != LEDGER),
        f.table.as_deref().is_none_or(|t| t == LEDGER),
    );
    // The first page starts at the top of each source as it is now, so that what is written
    // while a reader pages never turns up in a later, older page.
    let from = match f.before {
        Some(c) => c,
        None => top(conn)?,
    };
    let changes = if ch {
        changes(conn, f, since.as_deref(), from.change)?
    } else {
        Vec::new()
    };
    let movements = if mv {
        movements(conn, f, since.as_deref(), from.movement)?
    } else {
        Vec::new()
    };
    Ok(merge(changes, movements, f.limit, Some(from)))
}

/// Just above the newest row of each source.
fn top(conn: &Connection) -> Result<Cursor> {
    let above = |sql: &str| -> Result<i64> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .ctx("read the audit trail")
            .map(|n| n.saturating_add(1))
    };
    Ok(Cursor {
        change: above("SELECT coalesce(max(id), 0) FROM audit_log")?,
        movement: above("SELECT coalesce(max(id), 0) FROM inventory_transactions")?,
    })
}

/// Two lists, each newest first by id, as one by time: each step takes the head that is
/// later (a movement at the same instant: a product's opening stock follows the product), so
/// each list is consumed in its own order and the cursor can say where each stopped.
fn merge(changes: Vec<Entry>, movements: Vec<Entry>, limit: usize, from: Option<Cursor>) -> Trail {
    let mut c = changes.into_iter().peekable();
    let mut m = movements.into_iter().peekable();
    let mut entries = Vec::with_capacity(limit.min(1024));
    let mut at = from.unwrap_or(Cursor {
        change: i64::MAX,
        movement: i64::MAX,
    });
    while entries.len() < limit {
        let take_movement = match (c.peek(), m.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b.at >= a.at,
        };
        let e = if take_movement { m.next() } else { c.next() };
        let Some(e) = e else { break };
        if take_movement {
            at.movement = e.key.parse().unwrap_or(0);
        } else {
            at.change = e.id.unwrap_or(0);
        }
        entries.push(e);
    }
    let full = entries.len() == limit && (c.peek().is_some() || m.peek().is_some());
    // A list none of whose rows this page took goes on from its first row: its bound is just
    // above that row, so rows written since stay out of the older pages.
    if let Some(e) = c.peek() {
        at.change = at.change.min(e.id.unwrap_or(0).saturating_add(1));
    }
    if let Some(e) = m.peek() {
        at.movement = at
            .movement
            .min(e.key.parse::<i64>().unwrap_or(0).saturating_add(1));
    }
    Trail {
        entries,
        next: full.then_some(at),
    }
}

/// The SQL conditions of a filter, with their values, numbered from ?1.
fn conditions(pairs: &[(&str, Option<&str>)]) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    for (cond, value) in pairs {
        if let Some(v) = value {
            args.push(v.to_string());
            sql.push_str(&format!(" AND {cond} ?{}", args.len()));
        }
    }
    (sql, args)
}

/// One row more than the page from each source: a row left over says there is a next page.
fn limit_of(f: &Filter) -> i64 {
    i64::try_from(f.limit).map_or(i64::MAX, |l| l.saturating_add(1))
}

/// Rows of audit_log below id `below` that match.
fn changes(conn: &Connection, f: &Filter, since: Option<&str>, below: i64) -> Result<Vec<Entry>> {
    let (cond, args) = conditions(&[
        ("sku =", f.sku.as_deref()),
        ("tbl =", f.table.as_deref()),
        ("actor =", f.actor.as_deref()),
        ("at >=", since),
    ]);
    let sql = format!(
        "SELECT id, at, actor, request_id, op, tbl, key, action, old, new, sku FROM audit_log
          WHERE id < {below}{cond} ORDER BY id DESC LIMIT {}",
        limit_of(f)
    );
    let ctx = "read the audit trail";
    let mut st = conn.prepare(&sql).ctx(ctx)?;
    let json = |s: Option<String>| s.and_then(|t| serde_json::from_str(&t).ok());
    let rows = st
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            Ok(Entry {
                id: Some(r.get(0)?),
                at: r.get(1)?,
                actor: r.get(2)?,
                request_id: r.get(3)?,
                op: r.get(4)?,
                table: r.get(5)?,
                key: r.get(6)?,
                action: r.get(7)?,
                old: json(r.get(8)?),
                new: json(r.get(9)?),
                sku: r.get(10)?,
            })
        })
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

/// Ledger rows below id `below` recorded with an actor that match, as entries of the trail.
fn movements(conn: &Connection, f: &Filter, since: Option<&str>, below: i64) -> Result<Vec<Entry>> {
    let (cond, args) = conditions(&[
        ("sku =", f.sku.as_deref()),
        ("actor =", f.actor.as_deref()),
        ("created_at >=", since),
    ]);
    let sql = format!(
        "SELECT id, created_at, actor, request_id, sku, transaction_type, quantity, date, notes
           FROM inventory_transactions WHERE id < {below} AND actor IS NOT NULL{cond}
          ORDER BY id DESC LIMIT {}",
        limit_of(f)
    );
    let ctx = "read the audit trail";
    let mut st = conn.prepare(&sql).ctx(ctx)?;
    let rows = st
        .query_map(rusqlite::params_from_iter(args.iter()), |r| {
            let id: i64 = r.get(0)?;
            let sku: String = r.get(4)?;
            Ok(Entry {
                id: None,
                at: r.get(1)?,
                actor: r.get(2)?,
                request_id: r.get(3)?,
                op: "movement".into(),
                table: LEDGER.into(),
                key: id.to_string(),
                action: "insert".into(),
                old: None,
                // `type`, the movement's name for it on every route; `transaction_type` (the
                // column's name) kept beside it for one release.
                new: Some(serde_json::json!({
                    "sku": sku,
                    "type": r.get::<_, String>(5)?,
                    "transaction_type": r.get::<_, String>(5)?,
                    "quantity": r.get::<_, i64>(6)?,
                    "date": r.get::<_, String>(7)?,
                    "notes": r.get::<_, Option<String>>(8)?,
                })),
                sku: Some(sku),
            })
        })
        .ctx(ctx)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        let ok = Filter {
            limit: 10,
            ..Filter::default()
        };
        assert!(ok.validate().is_ok());
        for (f, says) in [
            (
                Filter {
                    table: Some("sqlite_schema".into()),
                    ..ok.clone()
                },
                "no audited table",
            ),
            (
                Filter {
                    since: Some("yesterday".into()),
                    ..ok.clone()
                },
                "not a date",
            ),
            (
                Filter {
                    since: Some("2026-02-30".into()),
                    ..ok.clone()
                },
                "not a date",
            ),
            (
                Filter {
                    actor: Some("a\u{7}b".into()),
                    ..ok.clone()
                },
                "control character",
            ),
            (
                Filter {
                    actor: Some("x".repeat(65)),
                    ..ok.clone()
                },
                "longer than",
            ),
            (
                Filter {
                    limit: 0,
                    ..ok.clone()
                },
                "limit",
            ),
            (
                Filter {
                    limit: MAX_LIMIT + 1,
                    ..ok.clone()
                },
                "limit",
            ),
        ] {
            let e = f.validate().expect_err(says);
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn since_reads_dates_and_times_as_utc() {
        assert_eq!(
            since_bound("2026-12-01").as_deref(),
            Ok("2026-12-01T00:00:00.000Z")
        );
        assert_eq!(
            since_bound("2026-12-01T10:00:00+02:00").as_deref(),
            Ok("2026-12-01T08:00:00.000Z")
        );
    }

    #[test]
    fn cursors_read_back_and_bad_ones_are_named() {
        let c = Cursor {
            change: 12,
            movement: 88231,
        };
        assert_eq!(c.to_string(), "c12m88231");
        assert_eq!("c12m88231".parse::<Cursor>(), Ok(c));
        for bad in [
            "",
            "c",
            "c1",
            "c1m",
            "cm1",
            "m1c1",
            "c+1m2",
            "c1m2x",
            "c99999999999999999999m1",
        ] {
            let e = bad.parse::<Cursor>().expect_err(bad);
            assert!(e.contains("not a cursor"), "{e}");
        }
    }

    fn entry(change: Option<i64>, movement: i64, at: &str) -> Entry {
        Entry {
            id: change,
            at: at.into(),
            actor: "t".into(),
            request_id: None,
            op: "x".into(),
            table: "t".into(),
            key: movement.to_string(),
            action: "insert".into(),
            old: None,
            new: None,
            sku: None,
        }
    }

    #[test]
    fn a_merge_takes_each_list_in_its_order_and_says_where_each_stopped() {
        let changes = vec![
            entry(Some(9), 0, "05"),
            entry(Some(8), 0, "03"),
            entry(Some(7), 0, "01"),
        ];
        let moves = || {
            vec![
                entry(None, 40, "04"),
                entry(None, 39, "03"),
                entry(None, 38, "02"),
            ]
        };
        let t = merge(changes.clone(), moves(), 3, None);
        let order: Vec<&str> = t.entries.iter().map(|e| e.at.as_str()).collect();
        // At the same instant the movement comes first.
        assert_eq!(order, ["05", "04", "03"]);
        assert_eq!(t.entries[2].id, None);
        assert_eq!(
            t.next,
            Some(Cursor {
                change: 9,
                movement: 39
            })
        );
        // A list the page took nothing from is bounded just above its first row.
        let t = merge(changes, Vec::new(), 2, None);
        assert_eq!(
            t.next,
            Some(Cursor {
                change: 8,
                movement: i64::MAX
            })
        );
        let t = merge(
            Vec::new(),
            moves(),
            1,
            Some(Cursor {
                change: 5,
                movement: 41,
            }),
        );
        assert_eq!(
            t.next,
            Some(Cursor {
                change: 5,
                movement: 40
            })
        );
        // Everything fits: no next page.
        assert_eq!(merge(Vec::new(), moves(), 3, None).next, None);
    }
}
