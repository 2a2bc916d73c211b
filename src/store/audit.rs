//! The audit trail: who changed what, and when. A movement's record is its own ledger row,
//! which is append-only and chained already and carries its actor (written by
//! `ledger::apply`): a second row per movement would double the writer's work for no new fact.
//! Every other change the writer makes to the domain tables (a product added or changed, a
//! stock set by a reconcile, a shipment, a shipment archive, a workflow state, a KPI, a product
//! vector) adds a row to the append-only `audit_log` in the same transaction: table, key, old
//! and new values as JSON, the actor, the time, the write's name and its request id.
//!
//! Those rows are written by TEMP triggers that exist only on the writer's connection
//! ([`install`]); they read the actor and request of the write being run from SQL functions
//! backed by this thread's [`Scope`], which the writer enters around each request. Bulk loads
//! (adopt, a rebuild from the mirror, recover) and the sqlite3 shell write through other
//! connections and leave no audit rows and no actor (the ledger's hash chain catches edits
//! behind ora's back). [`list`] reads both sources as one trail, newest first, on any
//! connection. Never updates or deletes a row.

use std::cell::RefCell;

use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;
use serde::Serialize;

use super::error::{Result, SqlContext, StoreError};
use crate::model;

/// The writes that record no trail of their own: a standby applying its primary's records,
/// and a role change (a new base copies the primary's rows, trail included; SQLite runs TEMP
/// triggers even with triggers turned off).
const UNTRAILED: [&str; 2] = ["follow", "role"];

/// The actor of ora's own jobs and of writes that name nobody.
pub const SYSTEM: &str = "system";
/// Longest actor name kept.
pub const MAX_ACTOR: usize = 64;
/// Most rows one listing returns.
pub const MAX_LIMIT: usize = 10_000;

#[derive(Debug, Clone)]
struct Current {
    actor: String,
    request_id: Option<String>,
    op: &'static str,
}

thread_local! {
    static CURRENT: RefCell<Option<Current>> = const { RefCell::new(None) };
}

/// While alive, the writes this thread runs are recorded under this actor, request and
/// write name.
pub struct Scope(());

impl Scope {
    pub fn enter(actor: &str, request_id: Option<&str>, op: &'static str) -> Scope {
        CURRENT.with(|c| {
            *c.borrow_mut() = Some(Current {
                actor: actor.to_string(),
                request_id: request_id.map(str::to_string),
                op,
            })
        });
        Scope(())
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }
}

fn current<T>(f: impl FnOnce(Option<&Current>) -> T) -> T {
    CURRENT.with(|c| f(c.borrow().as_ref()))
}

/// The actor of the write this thread is running (`None` outside the writer).
pub fn actor() -> Option<String> {
    current(|c| c.map(|c| c.actor.clone()))
}

/// Checks an actor name: 1 to [`MAX_ACTOR`] printable characters, no control characters.
pub fn validate_actor(name: &str) -> std::result::Result<(), String> {
    if name.trim().is_empty() {
        return Err("the actor is empty; name who makes the change (--actor NAME)".into());
    }
    if name.chars().count() > MAX_ACTOR {
        return Err(format!(
            "the actor {:?} is longer than {MAX_ACTOR} characters",
            model::clip(name)
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the actor {:?} holds a control character",
            model::clip(name)
        ));
    }
    Ok(())
}

/// One audited table: how its key, product and values read in a trigger (`R` stands for
/// `NEW` or `OLD`), and when an update is worth a row.
struct Audited {
    table: &'static str,
    key: &'static str,
    sku: &'static str,
    values: &'static str,
    /// The condition under which an UPDATE is recorded (`None`: never).
    update_when: Option<&'static str>,
    delete: bool,
}

const AUDITED: &[Audited] = &[
    // A movement changes the stored stock too; that change is the movement's own ledger row.
    // Only a reconcile sets stock without a movement, so only then is quantity alone recorded.
    Audited {
        table: "inventory_current",
        key: "R.sku",
        sku: "R.sku",
        values: "'product_name', R.product_name, 'reorder_point', R.reorder_point, 'current_quantity', R.current_quantity",
        update_when: Some(
            "OLD.product_name IS NOT NEW.product_name OR OLD.reorder_point IS NOT NEW.reorder_point \
             OR (OLD.current_quantity IS NOT NEW.current_quantity AND ora_audit_op() = 'reconcile')",
        ),
        delete: true,
    },
    Audited {
        table: "shipped_orders",
        key: "R.order_number",
        sku: "NULL",
        values: "'ship_date', R.ship_date, 'item_count', R.item_count, 'total_units', R.total_units",
        update_when: None,
        delete: false,
    },
    Audited {
        table: "shipment_archives",
        key: "R.id",
        sku: "NULL",
        values: "'file', R.file, 'before', R.before, 'orders', R.orders, 'items', R.items, 'sha256', R.sha256",
        update_when: None,
        delete: false,
    },
    Audited {
        table: "workflows",
        key: "R.name",
        sku: "NULL",
        values: "'status', R.status, 'details', R.details, 'version', R.version",
        update_when: Some("1"),
        delete: true,
    },
    Audited {
        table: "system_kpis",
        key: "R.snapshot_date",
        sku: "NULL",
        values: "'orders_today', R.orders_today, 'shipments_sent', R.shipments_sent, 'pending_uploads', R.pending_uploads, 'system_status', R.system_status",
        update_when: Some("1"),
        delete: true,
    },
    Audited {
        table: "product_vectors",
        key: "R.sku",
        sku: "R.sku",
        values: "'dims', R.dims, 'sha256', hex(ora_audit_digest(R.vector))",
        update_when: Some("1"),
        delete: true,
    },
];

fn trigger(a: &Audited, action: &str, when: Option<&str>) -> String {
    let (event, row) = match action {
        "insert" => ("INSERT", "NEW"),
        "update" => ("UPDATE", "NEW"),
        _ => ("DELETE", "OLD"),
    };
    let r = |expr: &str| expr.replace("R.", &format!("{row}."));
    let values = |rec: &str| {
        format!(
            "json_object({})",
            a.values.replace("R.", &format!("{rec}."))
        )
    };
    let (old, new) = match action {
        "insert" => ("NULL".to_string(), values("NEW")),
        "update" => (values("OLD"), values("NEW")),
        _ => (values("OLD"), "NULL".to_string()),
    };
    // A standby applying its primary's records writes no trail of its own: the records carry
    // the primary's rows of audit_log.
    let when = match when {
        Some(w) => format!("WHEN ora_audit_on() AND ({w}) "),
        None => "WHEN ora_audit_on() ".to_string(),
    };
    format!(
        "CREATE TEMP TRIGGER audit_{table}_{action} AFTER {event} ON main.{table} {when}\
         BEGIN INSERT INTO audit_log (at, actor, request_id, op, tbl, key, action, old, new, sku) \
         VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ora_audit_actor(), ora_audit_request(), \
         ora_audit_op(), '{table}', {key}, '{action}', {old}, {new}, {sku}); END;",
        table = a.table,
        key = r(a.key),
        sku = r(a.sku),
    )
}

/// Registers the trail's functions and TEMP triggers on the writer's connection.
pub fn install(conn: &Connection) -> Result<()> {
    let ctx = "set up the audit trail";
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("ora_audit_actor", 0, flags, |_| {
        Ok(current(|c| {
            c.map_or_else(|| SYSTEM.to_string(), |c| c.actor.clone())
        }))
    })
    .ctx(ctx)?;
    conn.create_scalar_function("ora_audit_on", 0, flags, |_| {
        Ok(current(|c| c.is_none_or(|c| !UNTRAILED.contains(&c.op))))
    })
    .ctx(ctx)?;
    conn.create_scalar_function("ora_audit_request", 0, flags, |_| {
        Ok(current(|c| c.and_then(|c| c.request_id.clone())))
    })
    .ctx(ctx)?;
    conn.create_scalar_function("ora_audit_op", 0, flags, |_| {
        Ok(current(|c| c.map_or("unknown", |c| c.op)))
    })
    .ctx(ctx)?;
    conn.create_scalar_function(
        "ora_audit_digest",
        1,
        flags | FunctionFlags::SQLITE_DETERMINISTIC,
        |f| {
            use sha2::{Digest, Sha256};
            let blob = f
                .get_raw(0)
                .as_bytes_or_null()
                .unwrap_or(None)
                .unwrap_or(&[]);
            Ok(Sha256::digest(blob).to_vec())
        },
    )
    .ctx(ctx)?;
    let mut sql = String::new();
    for a in AUDITED {
        sql.push_str(&trigger(a, "insert", None));
        if let Some(w) = a.update_when {
            sql.push_str(&trigger(a, "update", Some(w)));
        }
        if a.delete {
            sql.push_str(&trigger(a, "delete", None));
        }
    }
    conn.execute_batch(&sql).ctx(ctx)
}

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

/// The changes that match, newest first: audit_log rows and audited movements as one trail.
pub fn list(conn: &Connection, f: &Filter) -> Result<Vec<Entry>> {
    f.validate().map_err(StoreError::invalid)?;
    let since = f
        .since
        .as_deref()
        .map(since_bound)
        .transpose()
        .map_err(StoreError::invalid)?;
    let mut out = Vec::new();
    if f.table.as_deref().is_none_or(|t| t != LEDGER) {
        out.extend(changes(conn, f, since.as_deref())?);
    }
    if f.table.as_deref().is_none_or(|t| t == LEDGER) {
        out.extend(movements(conn, f, since.as_deref())?);
    }
    // Both lists are newest first; one order by time. At the same instant a movement is the
    // later one (a product's opening stock follows the product).
    out.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.is_none().cmp(&a.id.is_none())));
    out.truncate(f.limit);
    Ok(out)
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

fn limit_of(f: &Filter) -> i64 {
    i64::try_from(f.limit).unwrap_or(i64::MAX)
}

/// Rows of audit_log that match.
fn changes(conn: &Connection, f: &Filter, since: Option<&str>) -> Result<Vec<Entry>> {
    let (cond, args) = conditions(&[
        ("sku =", f.sku.as_deref()),
        ("tbl =", f.table.as_deref()),
        ("actor =", f.actor.as_deref()),
        ("at >=", since),
    ]);
    let sql = format!(
        "SELECT id, at, actor, request_id, op, tbl, key, action, old, new, sku FROM audit_log
          WHERE 1{cond} ORDER BY id DESC LIMIT {}",
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

/// Ledger rows recorded with an actor that match, as entries of the trail.
fn movements(conn: &Connection, f: &Filter, since: Option<&str>) -> Result<Vec<Entry>> {
    let (cond, args) = conditions(&[
        ("sku =", f.sku.as_deref()),
        ("actor =", f.actor.as_deref()),
        ("created_at >=", since),
    ]);
    let sql = format!(
        "SELECT id, created_at, actor, request_id, sku, transaction_type, quantity, date, notes
           FROM inventory_transactions WHERE actor IS NOT NULL{cond} ORDER BY id DESC LIMIT {}",
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
}
