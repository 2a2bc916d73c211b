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

use super::error::{Result, SqlContext};
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

mod trail;
pub use trail::{list, tables, Cursor, Entry, Filter, Trail};
