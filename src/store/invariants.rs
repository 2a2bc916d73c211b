//! The ledger's invariants, checked on one consistent snapshot: SQLite's integrity_check and
//! foreign_key_check, the ledger invariant for every sku (current_quantity = receipts +
//! adjustments up - shipments - adjustments down), no negative stock unless allowed, every
//! shipped item backed by its Ship movement, and the ledger's hash chain. Reads only; lists
//! every violation rather than stopping at the first. `ora verify`, the restore drills, the
//! restores and the adoption all run it.

use std::time::Instant;

use rusqlite::Connection;
use serde::Serialize;

use super::error::{Result, SqlContext, StoreError};
use crate::model;

/// Most messages taken from integrity_check.
const MAX_INTEGRITY_MESSAGES: u32 = 100;

/// Options of a verify run.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Negative stock is allowed by configuration, so it is not a violation.
    pub allow_negative_stock: bool,
    /// Skip the page check (integrity_check, or quick_check for the nightly pass): the caller
    /// runs it itself.
    pub skip_integrity: bool,
    /// Skip the ledger's hash chain (the benchmark's reference only).
    pub skip_chain: bool,
    /// The nightly pass: from this point of the chain (a point an earlier pass proved), check
    /// only what changed since (see [`check`]); `None` is the full pass.
    pub after: Option<ChainPoint>,
}

/// A point of the ledger's hash chain: a row and its link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainPoint {
    pub id: i64,
    /// The row's link, in hex.
    pub link: String,
}

/// A sku whose stored stock disagrees with its ledger.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LedgerMismatch {
    pub sku: String,
    pub stored: i64,
    pub ledger: i64,
}

/// Everything verify found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub ok: bool,
    /// integrity_check messages (empty when it said "ok").
    pub integrity: Vec<String>,
    /// foreign_key_check rows, as "table rowid -> parent".
    pub foreign_keys: Vec<String>,
    pub ledger: Vec<LedgerMismatch>,
    /// Skus below zero while negative stock is not allowed.
    pub negative_stock: Vec<LedgerMismatch>,
    /// Shipped items whose ledger movement is missing or different.
    pub shipments: Vec<String>,
    /// Where the ledger's hash chain first breaks: a row changed, removed or added behind
    /// ora's back.
    pub chain: Option<crate::store::chain::Break>,
    pub skus_checked: i64,
    /// Ledger rows actually read by the ledger check.
    pub ledger_rows: i64,
    /// Whether the ledger check read the whole ledger (false: a damaged page stopped it).
    pub ledger_complete: bool,
    /// "full" (integrity_check, every ledger row) or "quick" (the nightly pass).
    pub pass: &'static str,
    /// The ledger rows before this id were taken as proved by an earlier pass (0: none were).
    pub chain_from: i64,
    /// Where the chain was proved to (the last row whose link held), for the next pass.
    pub chain_to: Option<ChainPoint>,
    pub seconds: f64,
}

impl VerifyReport {
    /// One line per violation, for people.
    pub fn violations(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(self.integrity.iter().map(|m| format!("integrity: {m}")));
        out.extend(
            self.foreign_keys
                .iter()
                .map(|m| format!("foreign key: {m}")),
        );
        out.extend(self.ledger.iter().map(|m| {
            format!(
                "ledger: sku {} holds {} but its movements add up to {}",
                m.sku, m.stored, m.ledger
            )
        }));
        out.extend(
            self.negative_stock
                .iter()
                .map(|m| format!("negative stock: sku {} holds {}", m.sku, m.stored)),
        );
        out.extend(self.shipments.iter().map(|m| format!("shipment: {m}")));
        if let Some(b) = &self.chain {
            out.push(format!(
                "ledger chain: breaks at ledger id {}: {}",
                b.id, b.why
            ));
        }
        out
    }

    /// What to do, one line per kind of violation found.
    pub fn advice(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.integrity.is_empty() || !self.foreign_keys.is_empty() || !self.ledger_complete {
            out.push("the file is damaged: restore the last good backup (`ora backups list`, `ora restore FILE`) or salvage it with `ora recover` (runbook: docs/operations.md)".to_string());
        }
        if !self.ledger.is_empty() {
            let skus: Vec<&str> = self.ledger.iter().take(5).map(|m| m.sku.as_str()).collect();
            out.push(format!(
                "stock and ledger disagree for {} (something changed the stock outside ora): the ledger is the record, so set the stock back to it with `ora stock reconcile {}`, then count and record any difference with `ora stock adjust`",
                model::plural(self.ledger.len(), "sku", "skus"),
                skus.join(" ")
            ));
        }
        if !self.negative_stock.is_empty() {
            out.push(format!(
                "{} below zero: count {} and record the difference with `ora stock adjust SKU +N`",
                model::plural(self.negative_stock.len(), "sku is", "skus are"),
                if self.negative_stock.len() == 1 {
                    "it"
                } else {
                    "them"
                }
            ));
        }
        if !self.shipments.is_empty() {
            out.push("a shipped item has no matching Ship movement: the file was changed outside ora or is damaged; restore the last good backup or run `ora recover`".to_string());
        }
        if let Some(b) = &self.chain {
            out.push(format!(
                "the ledger was edited behind ora's back at ledger id {}: compare it with the newest backup or the replica (`ora stock history`, `ora restore --from-replica DIR --before-movement {} --out F`) and find out who changed the file; `ora recover` links the chain again once the ledger is right",
                b.id, b.id
            ));
        }
        out
    }
}

/// Runs every check on `conn` inside one read transaction: the full pass, or with
/// `opts.after` the nightly one: `quick_check` instead of `integrity_check` (every page read,
/// indexes not cross-checked), the chain of the rows written since that point (and its link
/// unchanged), the stocks the `stock_outside` trigger saw changed without a movement (checked
/// against their ledger), the new rows' products, and the small tables as the full pass checks
/// them. It rests on the ledger's append-only triggers and the stock trigger being in place
/// ([`guards_missing`]); the weekly full pass reads every row again.
pub fn check(conn: &Connection, opts: &VerifyOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    conn.execute_batch("BEGIN").ctx("verify")?;
    let report = rows_then(conn, opts, || page_check(conn, opts));
    let _ = conn.execute_batch("COMMIT");
    timed(report, started)
}

/// [`check`] with the page check (integrity_check or quick_check) on `beside`, on a thread of
/// its own while the rows are checked on `conn`: the pass takes about as long as the longer of
/// the two instead of their sum. Both connections are in read transactions on one state of
/// the file (`Store::readers_on_one_state`); both transactions end here.
pub fn check_beside(
    conn: &Connection,
    beside: Connection,
    opts: &VerifyOptions,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let report = std::thread::scope(|s| {
        let pages = s.spawn(move || {
            let r = page_check(&beside, opts);
            let _ = beside.execute_batch("COMMIT");
            r
        });
        rows_then(conn, opts, move || {
            pages.join().unwrap_or_else(|_| {
                Err(StoreError::failed(
                    "verify: the page check's thread stopped unexpectedly",
                ))
            })
        })
    });
    let _ = conn.execute_batch("COMMIT");
    timed(report, started)
}

fn timed(report: Result<VerifyReport>, started: Instant) -> Result<VerifyReport> {
    let mut report = report?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The pass's page check: quick_check for the nightly pass, integrity_check for the full one
/// (nothing when it is skipped).
fn page_check(conn: &Connection, opts: &VerifyOptions) -> Result<Vec<String>> {
    let which = match opts.after {
        _ if opts.skip_integrity => return Ok(Vec::new()),
        Some(_) => "quick_check",
        None => "integrity_check",
    };
    strings(
        conn,
        &format!("PRAGMA {which}({MAX_INTEGRITY_MESSAGES})"),
        &format!("verify: {which}"),
    )
}

/// The row checks of the pass, then `pages`' verdict (the page check, run here or beside).
fn rows_then(
    conn: &Connection,
    opts: &VerifyOptions,
    pages: impl FnOnce() -> Result<Vec<String>>,
) -> Result<VerifyReport> {
    match &opts.after {
        Some(from) => quick_checks(conn, opts, from, pages),
        None => run_checks(conn, opts, pages),
    }
}

fn strings(conn: &Connection, sql: &str, what: &str) -> Result<Vec<String>> {
    let mut st = conn.prepare(sql).ctx(what)?;
    let rows = st.query_map([], |r| r.get::<_, String>(0)).ctx(what)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(what)
}

/// Runs one check; a check that cannot finish (a damaged page under it) becomes a violation
/// instead of an error, so verify still reports everything it could check.
fn guarded<T: Default>(broken: &mut Vec<String>, what: &str, r: Result<T>) -> T {
    r.unwrap_or_else(|e| {
        broken.push(format!("{what} could not be completed: {e}"));
        T::default()
    })
}

/// Kept whole: each invariant is checked by its own guarded call and a failing check is reported,
/// not raised, so verify says everything it could check; what remains here is the list of calls and
/// the report.
fn run_checks(
    conn: &Connection,
    opts: &VerifyOptions,
    pages: impl FnOnce() -> Result<Vec<String>>,
) -> Result<VerifyReport> {
    let mut broken = Vec::new();
    // One pass over the ledger gives both its sums and its own foreign key check; SQLite's
    // foreign_key_check covers the other tables.
    let scan = guarded(
        &mut broken,
        "the ledger check",
        scan_ledger(conn, !opts.skip_chain),
    );
    let scan_stopped = scan.error.clone();
    if let Some(e) = &scan_stopped {
        broken.push(format!(
            "the ledger could be read only up to row {} of it: {e}",
            scan.rows
        ));
    }
    let mut foreign_keys = guarded(
        &mut broken,
        "the foreign key check",
        strings(conn, OTHER_FOREIGN_KEYS, "verify: foreign_key_check"),
    );
    foreign_keys.extend(
        scan.orphans
            .iter()
            .map(|id| format!("inventory_transactions row {id} -> missing inventory_current")),
    );
    let ledger = guarded(
        &mut broken,
        "the ledger check",
        ledger_mismatches(conn, &scan),
    );
    let (negative_stock, shipments) = common_checks(conn, opts, &mut broken);
    let chain = scan.chain.clone();
    let skus_checked = guarded(&mut broken, "counting products", count_products(conn));
    let ledger_rows = scan.rows;
    let ledger_complete =
        scan_stopped.is_none() && !broken.iter().any(|b| b.starts_with("the ledger check"));
    let mut integrity = guarded(&mut broken, "integrity_check", pages());
    integrity.retain(|m| m != "ok");
    integrity.extend(broken);
    Ok(judged(VerifyReport {
        ok: false,
        integrity,
        foreign_keys,
        ledger,
        negative_stock,
        shipments,
        chain,
        skus_checked,
        ledger_rows,
        ledger_complete,
        pass: "full",
        chain_from: 0,
        chain_to: scan.chain_to.as_ref().map(point),
        seconds: 0.0,
    }))
}

fn point((id, link): &(i64, Vec<u8>)) -> ChainPoint {
    ChainPoint {
        id: *id,
        link: crate::fsutil::hex(link),
    }
}

/// The triggers the nightly pass relies on, when one is gone (dropped behind ora's back).
const GUARDS: [&str; 3] = [
    "inventory_transactions_no_update",
    "inventory_transactions_no_delete",
    "stock_outside_update",
];

/// The guard triggers that are missing: the nightly pass cannot stand in for the full one.
pub fn guards_missing(conn: &Connection) -> Result<Vec<&'static str>> {
    let mut out = Vec::new();
    for g in GUARDS {
        let there: bool = conn
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1",
                [g],
                |r| r.get(0),
            )
            .ctx("verify: read the triggers")?;
        if !there {
            out.push(g);
        }
    }
    Ok(out)
}

/// Kept whole: as [`run_checks`], one guarded call per invariant and the report.
fn quick_checks(
    conn: &Connection,
    opts: &VerifyOptions,
    from: &ChainPoint,
    pages: impl FnOnce() -> Result<Vec<String>>,
) -> Result<VerifyReport> {
    let mut broken = Vec::new();
    let link = crate::fsutil::unhex(&from.link).unwrap_or_default();
    let (rows, to, chain) = guarded(
        &mut broken,
        "the ledger check",
        crate::store::chain::check_after(conn, from.id, &link)
            .map(|w| (w.rows, Some(w.to), w.broke)),
    );
    let mut foreign_keys = guarded(
        &mut broken,
        "the foreign key check",
        strings(conn, OTHER_FOREIGN_KEYS, "verify: foreign_key_check"),
    );
    foreign_keys.extend(guarded(
        &mut broken,
        "the ledger check",
        strings(
            conn,
            &format!(
                "SELECT 'inventory_transactions row ' || id || ' -> missing inventory_current'
                   FROM inventory_transactions
                  WHERE id > {} AND sku NOT IN (SELECT sku FROM inventory_current) ORDER BY id",
                from.id
            ),
            "verify: ledger",
        ),
    ));
    let ledger = guarded(
        &mut broken,
        "the ledger check",
        crate::store::stock_watch::changed_outside(conn).map(|(c, _)| {
            c.into_iter()
                .map(|c| LedgerMismatch {
                    sku: c.sku,
                    stored: c.stock,
                    ledger: c.ledger,
                })
                .collect::<Vec<_>>()
        }),
    );
    let (negative_stock, shipments) = common_checks(conn, opts, &mut broken);
    let skus_checked = guarded(&mut broken, "counting products", count_products(conn));
    let ledger_complete = !broken.iter().any(|b| b.starts_with("the ledger check"));
    let mut integrity = guarded(&mut broken, "quick_check", pages());
    integrity.retain(|m| m != "ok");
    integrity.extend(broken);
    Ok(judged(VerifyReport {
        ok: false,
        integrity,
        foreign_keys,
        ledger,
        negative_stock,
        shipments,
        chain,
        skus_checked,
        ledger_rows: i64::try_from(rows).unwrap_or(i64::MAX),
        ledger_complete,
        pass: "quick",
        chain_from: from.id,
        chain_to: to.as_ref().map(point),
        seconds: 0.0,
    }))
}

/// The checks both passes make alike: negative stock (unless allowed) and shipped items
/// against their movements.
fn common_checks(
    conn: &Connection,
    opts: &VerifyOptions,
    broken: &mut Vec<String>,
) -> (Vec<LedgerMismatch>, Vec<String>) {
    let negative_stock = if opts.allow_negative_stock {
        Vec::new()
    } else {
        guarded(
            broken,
            "the negative stock check",
            mismatches(conn, NEGATIVE_SQL, "verify: negative stock"),
        )
    };
    let shipments = guarded(
        broken,
        "the shipment check",
        strings(conn, SHIPMENTS_SQL, "verify: shipments"),
    );
    (negative_stock, shipments)
}

fn count_products(conn: &Connection) -> Result<i64> {
    conn.query_row("SELECT count(*) FROM inventory_current", [], |r| r.get(0))
        .ctx("verify")
}

/// The report with its verdict: ok when nothing was found.
fn judged(mut r: VerifyReport) -> VerifyReport {
    r.ok = r.integrity.is_empty()
        && r.foreign_keys.is_empty()
        && r.ledger.is_empty()
        && r.negative_stock.is_empty()
        && r.shipments.is_empty()
        && r.chain.is_none();
    r
}

/// The ledger summed per sku, and the movements whose sku is not a product.
#[derive(Default)]
struct LedgerScan {
    totals: std::collections::HashMap<String, i64>,
    orphans: Vec<i64>,
    rows: i64,
    /// Why the scan stopped early, if it did.
    error: Option<String>,
    /// The first ledger row whose chain link does not hold (checked in the same pass).
    chain: Option<crate::store::chain::Break>,
    /// The last row whose link held, and its link.
    chain_to: Option<(i64, Vec<u8>)>,
}

/// One pass over the ledger table in its own order (a GROUP BY through the sku index looks up
/// every row at random, several times slower).
fn scan_ledger(conn: &Connection, check_chain: bool) -> Result<LedgerScan> {
    let what = "verify: ledger";
    let skus: std::collections::HashSet<String> = {
        let mut st = conn
            .prepare("SELECT sku FROM inventory_current")
            .ctx(what)?;
        let rows = st.query_map([], |r| r.get::<_, String>(0)).ctx(what)?;
        rows.collect::<std::result::Result<_, _>>().ctx(what)?
    };
    let mut scan = LedgerScan::default();
    // The chain is checked in the same pass (rowid order is id order): reading the ledger
    // twice cost a second per 2 M rows.
    let chain_cols = if check_chain {
        crate::store::chain::walk_columns(conn)?
    } else {
        None
    };
    let mut walker = chain_cols
        .as_ref()
        .map(|_| crate::store::chain::Walker::default());
    let mut st = conn
        .prepare(&format!(
            "SELECT id, sku, transaction_type, quantity{} FROM inventory_transactions NOT INDEXED",
            chain_cols.map(|c| format!(", {c}")).unwrap_or_default()
        ))
        .ctx(what)?;
    let mut rows = st.query([]).ctx(what)?;
    loop {
        let r = match rows.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            // A damaged page: what was read so far is kept, and the report says it stopped.
            Err(e) => {
                scan.error = Some(e.to_string());
                return Ok(scan);
            }
        };
        scan.rows = scan.rows.saturating_add(1);
        if let Some(w) = walker.as_mut() {
            w.feed(r, 4)?;
        }
        let sku = r.get_ref(1).ctx(what)?.as_str().unwrap_or_default();
        let qty: i64 = r.get(3).ctx(what)?;
        let signed = match r.get_ref(2).ctx(what)?.as_str().unwrap_or_default() {
            "Receive" | "Adjust Up" => qty,
            _ => qty.saturating_neg(),
        };
        if !skus.contains(sku) {
            scan.orphans.push(r.get(0).ctx(what)?);
        }
        match scan.totals.get_mut(sku) {
            Some(t) => *t = t.saturating_add(signed),
            None => {
                scan.totals.insert(sku.to_string(), signed);
            }
        }
    }
    scan.chain_to = walker.as_ref().map(|w| (w.point().0, w.point().1.to_vec()));
    scan.chain = walker.and_then(|w| w.finish().1);
    Ok(scan)
}

/// Every sku whose stock differs from the sum of its movements.
fn ledger_mismatches(conn: &Connection, scan: &LedgerScan) -> Result<Vec<LedgerMismatch>> {
    let what = "verify: ledger";
    let mut st = conn
        .prepare("SELECT sku, current_quantity FROM inventory_current ORDER BY sku")
        .ctx(what)?;
    let stock = st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .ctx(what)?;
    let mut out = Vec::new();
    for row in stock {
        let (sku, stored) = row.ctx(what)?;
        let ledger = scan.totals.get(&sku).copied().unwrap_or(0);
        if stored != ledger {
            out.push(LedgerMismatch {
                sku,
                stored,
                ledger,
            });
        }
    }
    Ok(out)
}

/// SQLite's foreign key check of every table but the ledger (whose own pass checks it).
const OTHER_FOREIGN_KEYS: &str =
    "SELECT fk.\"table\" || ' row ' || coalesce(fk.rowid, '?') || ' -> missing ' || fk.parent
   FROM pragma_table_list AS t, pragma_foreign_key_check(t.name) AS fk
  WHERE t.schema = 'main' AND t.type = 'table' AND t.name <> 'inventory_transactions'";

const NEGATIVE_SQL: &str = "SELECT sku, current_quantity, current_quantity FROM inventory_current
  WHERE current_quantity < 0 ORDER BY sku";

/// Shipped items must be backed by their Ship movement; items without a link (left by a
/// salvage whose movement was lost) are not checked.
const SHIPMENTS_SQL: &str =
    "SELECT 'order ' || s.order_number || ' item ' || s.id || ' (' || s.base_sku || ' x '
        || s.quantity_shipped || ') has no matching Ship movement'
   FROM shipped_items s
   LEFT JOIN inventory_transactions t ON t.id = s.transaction_id
  WHERE s.transaction_id IS NOT NULL
    AND (t.id IS NULL OR t.transaction_type <> 'Ship' OR t.sku <> s.base_sku
         OR t.quantity <> s.quantity_shipped)
  ORDER BY s.id";

fn mismatches(conn: &Connection, sql: &str, what: &str) -> Result<Vec<LedgerMismatch>> {
    let mut st = conn.prepare(sql).ctx(what)?;
    let rows = st
        .query_map([], |r| {
            Ok(LedgerMismatch {
                sku: r.get(0)?,
                stored: r.get(1)?,
                ledger: r.get(2)?,
            })
        })
        .ctx(what)?;
    rows.collect::<std::result::Result<Vec<_>, _>>().ctx(what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn seen(e: rusqlite::trace::TraceEvent<'_>) {
        if let rusqlite::trace::TraceEvent::Stmt(_, sql) = e {
            SEEN.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sql.to_string());
        }
    }

    // A restore runs quick_check on a thread of its own beside the row checks; a second one
    // here doubled the restore's checking time.
    #[test]
    fn a_caller_that_runs_the_page_check_itself_gets_no_second_one() {
        let (_dir, conn) = super::super::tests::made_by_ora("v.db");
        conn.trace_v2(
            rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
            Some(seen),
        );
        let after = ChainPoint {
            id: 0,
            link: String::new(),
        };
        for (after, skip, expected) in [
            (Some(after.clone()), false, Some("quick_check")),
            (Some(after), true, None),
            (None, false, Some("integrity_check")),
            (None, true, None),
        ] {
            SEEN.lock().unwrap().clear();
            let opts = VerifyOptions {
                allow_negative_stock: false,
                skip_integrity: skip,
                skip_chain: false,
                after,
            };
            check(&conn, &opts).unwrap();
            let ran: Vec<String> = SEEN
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.contains("quick_check") || s.contains("integrity_check"))
                .cloned()
                .collect();
            match expected {
                Some(which) => assert!(
                    ran.len() == 1 && ran[0].contains(which),
                    "skip {skip}: {ran:?}"
                ),
                None => assert!(ran.is_empty(), "skip {skip}: {ran:?}"),
            }
        }
    }
}
