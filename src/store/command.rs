//! The write requests the writer thread accepts, their outcomes, and [`execute`], which runs
//! one request inside the caller's open transaction (with idempotency keys honoured). Never
//! begins or commits a transaction itself: the writer's group commit owns that.

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use super::error::{Result, SqlContext, StoreError};
use super::idempotency;
use super::kpis::{self, Kpi, KpiRecord};
use super::ledger::{self, Movement, MovementResult, Rules};
use super::products::{self, NewProduct, Product, ProductChange};
use super::recorder::Savepoint;
use super::shipments::{self, Shipment, ShipmentResult};
use super::vectors::{self, ProductVector, VectorInfo};
use super::workflows::{self, Workflow, WorkflowChange};
use crate::model::{self, Problem};

/// Most movements one all-or-nothing batch may carry.
const MAX_BATCH: usize = 10_000;
/// Most rows one import may carry.
pub const MAX_IMPORT_ROWS: usize = 1_000_000;
/// Most problems an import lists before summarising the rest.
pub const MAX_LISTED_PROBLEMS: usize = 200;

/// One row of a CSV import, with its line number in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRow {
    pub line: u64,
    pub movement: Movement,
    #[serde(default)]
    pub request_id: Option<String>,
}

/// One product row of a CSV import, with its line number in the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRow {
    pub line: u64,
    pub product: NewProduct,
}

/// Refuses an import of more than [`MAX_IMPORT_ROWS`] rows.
fn import_size(rows: usize) -> std::result::Result<(), String> {
    if rows > MAX_IMPORT_ROWS {
        Err(format!(
            "the import has {rows} rows; the limit is {MAX_IMPORT_ROWS}, split the file"
        ))
    } else {
        Ok(())
    }
}

/// What a caller asks the writer to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WriteOp {
    Movement(Movement),
    /// Several movements, all or nothing.
    Batch {
        movements: Vec<Movement>,
    },
    /// Rows of a file; all or nothing unless `skip_bad`. `check_only`: apply nothing, and
    /// refuse with every row that could not be applied (none listed: every row would apply).
    Import {
        rows: Vec<ImportRow>,
        skip_bad: bool,
        check_only: bool,
    },
    ProductAdd(NewProduct),
    ProductUpdate(ProductChange),
    Shipment(Shipment),
    WorkflowSet(WorkflowChange),
    KpiRecord(KpiRecord),
    /// Store or remove a product's client-supplied vector.
    ProductVector(ProductVector),
    /// Remove every product vector (to change embedding models).
    ProductVectorsClear,
    /// Set the stored stock of these skus (all when empty) back to the sum of their movements.
    Reconcile {
        skus: Vec<String>,
    },
    /// Products of a file, all or nothing; `check_only` as for [`WriteOp::Import`].
    ProductImport {
        rows: Vec<ProductRow>,
        check_only: bool,
    },
    /// Remove orders written to an archive file, and record where they are.
    ArchiveShipments(shipments::ArchiveRequest),
    /// A forwarder's record of its deliveries to a remote target (in `ora serve`, so that it
    /// takes its turn with the other writes instead of waiting for the write lock apart).
    #[serde(skip_deserializing)]
    SyncRecord(super::sync_state::SyncRecord),
    /// A standby applying its primary's records.
    #[serde(skip)]
    Follow(super::follow::Batch),
    /// A change of the file's role (standby, promotion, fence, the standbys' feed).
    #[serde(skip)]
    Role(super::role::Change),
}

impl WriteOp {
    /// The write's name in the audit trail.
    pub fn name(&self) -> &'static str {
        match self {
            WriteOp::Movement(_) => "movement",
            WriteOp::Batch { .. } => "batch",
            WriteOp::Import { .. } => "import",
            WriteOp::ProductAdd(_) => "product_add",
            WriteOp::ProductUpdate(_) => "product_update",
            WriteOp::Shipment(_) => "shipment",
            WriteOp::WorkflowSet(_) => "workflow_set",
            WriteOp::KpiRecord(_) => "kpi_record",
            WriteOp::ProductVector(_) => "product_vector",
            WriteOp::ProductVectorsClear => "product_vectors_clear",
            WriteOp::Reconcile { .. } => "reconcile",
            WriteOp::ProductImport { .. } => "product_import",
            WriteOp::ArchiveShipments(_) => "archive_shipments",
            WriteOp::SyncRecord(_) => "sync_record",
            WriteOp::Follow(_) => "follow",
            WriteOp::Role(_) => "role",
        }
    }

    /// Whether the write comes from the primary (a standby takes only these).
    pub fn from_primary(&self) -> bool {
        matches!(self, WriteOp::Follow(_) | WriteOp::Role(_))
    }

    /// Whether the write must be a transaction of its own. A role change can turn the capture
    /// for standbys on or off, and the capture of a transaction is decided at its BEGIN: a
    /// write grouped after it would change data uncaptured, and the next record would then
    /// report a gap in the history (and every standby take a new base).
    pub fn alone(&self) -> bool {
        matches!(self, WriteOp::Role(_))
    }
}

/// A write request with its optional idempotency key and the actor it is recorded under.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRequest {
    pub op: WriteOp,
    pub request_id: Option<String>,
    /// Who makes the change (the audit trail); `None`: the writer's own actor.
    pub actor: Option<String>,
}

impl WriteRequest {
    pub fn new(op: WriteOp) -> WriteRequest {
        WriteRequest {
            op,
            request_id: None,
            actor: None,
        }
    }

    pub fn with_request_id(op: WriteOp, request_id: Option<String>) -> WriteRequest {
        WriteRequest {
            op,
            request_id,
            actor: None,
        }
    }

    /// The same request, recorded under `actor`.
    pub fn by(mut self, actor: &str) -> WriteRequest {
        self.actor = Some(actor.to_string());
        self
    }

    /// Checks the whole request without touching the database.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = &self.request_id {
            model::validate_request_id(r).map_err(StoreError::invalid)?;
        }
        if let Some(a) = &self.actor {
            super::audit::validate_actor(a).map_err(StoreError::invalid)?;
        }
        let checked = match &self.op {
            WriteOp::Movement(m) => m.validate(),
            WriteOp::Batch { movements } => return validate_batch(movements),
            WriteOp::Import { rows, .. } => import_size(rows.len()),
            WriteOp::ProductAdd(p) => p.validate(),
            WriteOp::ProductUpdate(p) => p.validate(),
            WriteOp::Shipment(s) => s.validate(),
            WriteOp::WorkflowSet(w) => w.validate(),
            WriteOp::KpiRecord(k) => k.validate(),
            WriteOp::ProductVector(v) => v.validate(),
            WriteOp::ProductVectorsClear => Ok(()),
            WriteOp::Reconcile { skus } => skus.iter().try_for_each(|s| model::validate_sku(s)),
            WriteOp::ArchiveShipments(a) => model::validate_date("before", &a.before),
            WriteOp::ProductImport { rows, .. } => import_size(rows.len()),
            WriteOp::SyncRecord(_) | WriteOp::Follow(_) | WriteOp::Role(_) => Ok(()),
        };
        checked.map_err(StoreError::invalid)
    }
}

/// Checks a batch's size, then every field of every movement: all the problems, each with
/// its movement (from 1) and field.
fn validate_batch(movements: &[Movement]) -> Result<()> {
    if movements.is_empty() {
        return Err(StoreError::invalid("the batch is empty").on("movements"));
    }
    if movements.len() > MAX_BATCH {
        return Err(StoreError::invalid(format!(
            "the batch has {} movements; the limit is {MAX_BATCH}",
            movements.len()
        ))
        .on("movements"));
    }
    let problems: Vec<Problem> = movements
        .iter()
        .zip(1u64..)
        .flat_map(|(m, i)| {
            m.problems()
                .into_iter()
                .map(move |(field, e)| Problem::movement(i, Some(field), e))
        })
        .collect();
    batch_refused(movements.len(), problems)
}

/// The refusal of a batch with these problems (none: accepted).
fn batch_refused(total: usize, mut problems: Vec<Problem>) -> Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    let refused: std::collections::BTreeSet<Option<u64>> =
        problems.iter().map(|p| p.line).collect();
    let n = problems.len();
    problems.truncate(MAX_LISTED_PROBLEMS);
    if n > problems.len() {
        problems.push(Problem::more(n - problems.len()));
    }
    Err(StoreError::rejected(
        format!(
            "{} of {total} {} cannot be applied; nothing of the batch was applied",
            refused.len(),
            if total == 1 { "movement" } else { "movements" }
        ),
        refused.len(),
        problems,
    ))
}

/// The result of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Rows applied now.
    pub applied: u64,
    /// Rows whose request_id had been applied before (nothing changed for them).
    pub replayed: u64,
    /// Rows refused, as "line N: reason" (only with `skip_bad`).
    pub skipped: Vec<String>,
    /// Number of refused rows (may exceed the listed ones).
    pub skipped_count: u64,
}

/// What a committed request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    Movement(MovementResult),
    Batch {
        movements: Vec<MovementResult>,
    },
    Import(ImportReport),
    Product(Product),
    Shipment(ShipmentResult),
    Workflow(Workflow),
    Kpi(Kpi),
    Vector(VectorInfo),
    VectorsCleared {
        removed: usize,
    },
    Reconciled {
        skus: Vec<ledger::Reconciled>,
    },
    ProductsImported {
        added: usize,
    },
    ShipmentsArchived(shipments::ShipmentArchive),
    /// A forwarder's record was written; this many outbox rows were pruned.
    SyncRecorded {
        pruned: usize,
    },
    /// A standby applied its primary's records.
    Followed(super::follow::Followed),
    /// The file's role after a change (and where a new base left a standby).
    RoleChanged {
        role: super::role::Role,
        rebased: Option<super::rebase::Rebased>,
    },
}

/// A committed request's outcome, and whether it is a replay of an earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub outcome: Outcome,
    pub replayed: bool,
}

/// Runs one request inside the caller's open transaction. On error the caller must roll back
/// to a savepoint taken before the call: partial changes may have been made.
pub fn execute(conn: &Connection, req: &WriteRequest, rules: Rules) -> Result<Applied> {
    req.validate()?;
    let Some(rid) = req.request_id.as_deref() else {
        return Ok(Applied {
            outcome: apply(conn, &req.op, None, rules)?,
            replayed: false,
        });
    };
    let fp = idempotency::fingerprint(&req.op);
    if let Some(outcome) = idempotency::lookup(conn, rid, &fp)? {
        return Ok(Applied {
            outcome,
            replayed: true,
        });
    }
    let outcome = apply(conn, &req.op, Some(rid), rules)?;
    idempotency::record(conn, rid, &fp, &outcome)?;
    Ok(Applied {
        outcome,
        replayed: false,
    })
}

fn apply(conn: &Connection, op: &WriteOp, rid: Option<&str>, rules: Rules) -> Result<Outcome> {
    Ok(match op {
        WriteOp::Movement(m) => Outcome::Movement(ledger::apply(conn, m, rid, rules)?),
        WriteOp::Batch { movements } => Outcome::Batch {
            movements: batch(conn, movements, rid, rules)?,
        },
        WriteOp::Import {
            rows,
            skip_bad,
            check_only,
        } => Outcome::Import(import(conn, rows, *skip_bad, *check_only, rules)?),
        WriteOp::ProductAdd(p) => Outcome::Product(products::add(conn, p, rid)?),
        WriteOp::ProductUpdate(p) => Outcome::Product(products::update(conn, p)?),
        WriteOp::Shipment(s) => Outcome::Shipment(shipments::record(conn, s, rid, rules)?),
        WriteOp::WorkflowSet(w) => Outcome::Workflow(workflows::set(conn, w)?),
        WriteOp::ProductVector(v) => Outcome::Vector(vectors::set(conn, v)?),
        WriteOp::ProductVectorsClear => Outcome::VectorsCleared {
            removed: vectors::clear_all(conn)?,
        },
        WriteOp::KpiRecord(k) => Outcome::Kpi(kpis::record(conn, k)?),
        WriteOp::Reconcile { skus } => Outcome::Reconciled {
            skus: ledger::reconcile(conn, skus)?,
        },
        WriteOp::SyncRecord(r) => Outcome::SyncRecorded {
            pruned: super::sync_state::apply(conn, r)?,
        },
        WriteOp::Follow(b) => Outcome::Followed(super::follow::apply(conn, b)?),
        WriteOp::Role(c) => {
            let (role, rebased) = super::role::change(conn, c)?;
            Outcome::RoleChanged { role, rebased }
        }
        WriteOp::ArchiveShipments(a) => {
            Outcome::ShipmentsArchived(shipments::remove_archived(conn, a)?)
        }
        WriteOp::ProductImport { rows, check_only } => Outcome::ProductsImported {
            added: import_products(conn, rows, *check_only)?,
        },
    })
}

/// Adds every product of a file, all or nothing: each row is tried (so every bad line is
/// named), and any failure, or `check_only`, refuses the whole file. Statistics are refreshed
/// after a large addition (a bulk change must not leave the planner with stale ones).
fn import_products(conn: &Connection, rows: &[ProductRow], check_only: bool) -> Result<usize> {
    let mut problems = Vec::new();
    let mut bad = 0usize;
    for row in rows {
        let point = Savepoint::take(conn, "product_row").ctx("product import")?;
        match products::add(conn, &row.product, None) {
            Ok(_) => point.release(conn).ctx("product import")?,
            Err(e) if e.is_operational() => return Err(e),
            Err(e) => {
                point.roll_back(conn).ctx("product import")?;
                bad += 1;
                if problems.len() < MAX_LISTED_PROBLEMS {
                    problems.push(Problem::at(row.line, e.to_string()));
                }
            }
        }
    }
    if bad > problems.len() {
        problems.push(Problem::more(bad - problems.len()));
    }
    if check_only || bad > 0 {
        return Err(StoreError::rejected(
            format!(
                "{bad} of {} {} cannot be added; nothing was imported",
                rows.len(),
                if rows.len() == 1 {
                    "product"
                } else {
                    "products"
                }
            ),
            bad,
            problems,
        ));
    }
    if rows.len() >= ANALYZE_AFTER_ROWS {
        refresh_statistics(conn)?;
    }
    Ok(rows.len())
}

/// A bulk change this large refreshes the planner's statistics in the same transaction.
const ANALYZE_AFTER_ROWS: usize = 1_000;

/// Refreshes the planner's statistics where a bulk import made them stale (a new or tenfold
/// larger table), in the import's transaction.
fn refresh_statistics(conn: &Connection) -> Result<()> {
    super::planner::refresh(conn).map(drop)
}

/// Applies a batch's movements in order, each under a savepoint, collecting every refusal
/// (each with its movement and field) instead of stopping at the first; any refusal refuses
/// the whole batch (the caller's savepoint undoes the movements applied).
fn batch(
    conn: &Connection,
    movements: &[Movement],
    rid: Option<&str>,
    rules: Rules,
) -> Result<Vec<ledger::MovementResult>> {
    let mut done = Vec::with_capacity(movements.len());
    let mut problems = Vec::new();
    for (m, i) in movements.iter().zip(1u64..) {
        let tag = rid.map(|r| format!("{r}#{i}"));
        let point = Savepoint::take(conn, "batch_movement").ctx("batch")?;
        match ledger::apply(conn, m, tag.as_deref(), rules) {
            Ok(r) => {
                point.release(conn).ctx("batch")?;
                done.push(r);
            }
            Err(e) if e.is_operational() => return Err(e),
            Err(e) => {
                point.roll_back(conn).ctx("batch")?;
                problems.push(Problem::movement(i, e.field(), e.message()));
            }
        }
    }
    batch_refused(movements.len(), problems)?;
    Ok(done)
}

/// Applies import rows one savepoint each, collecting every bad row. Without `skip_bad`, any
/// bad row fails the whole import (the caller's savepoint undoes the good ones).
fn import(
    conn: &Connection,
    rows: &[ImportRow],
    skip_bad: bool,
    check_only: bool,
    rules: Rules,
) -> Result<ImportReport> {
    let mut report = ImportReport {
        applied: 0,
        replayed: 0,
        skipped: Vec::new(),
        skipped_count: 0,
    };
    let mut skipped: Vec<Problem> = Vec::new();
    for row in rows {
        let point = Savepoint::take(conn, "import_row").ctx("import")?;
        let req = WriteRequest::with_request_id(
            WriteOp::Movement(row.movement.clone()),
            row.request_id.clone(),
        );
        match execute(conn, &req, rules) {
            Ok(applied) => {
                point.release(conn).ctx("import")?;
                if applied.replayed {
                    report.replayed += 1;
                } else {
                    report.applied += 1;
                }
            }
            Err(e) if e.is_operational() => {
                return Err(e);
            }
            Err(e) => {
                point.roll_back(conn).ctx("import")?;
                report.skipped_count += 1;
                if skipped.len() < MAX_LISTED_PROBLEMS {
                    skipped.push(Problem::at(row.line, e.to_string()));
                }
            }
        }
    }
    if check_only {
        // Refusing rolls back every row applied above; the problems are the answer.
        let mut problems = std::mem::take(&mut skipped);
        let refused = report.skipped_count as usize;
        if refused > problems.len() {
            problems.push(Problem::more(refused - problems.len()));
        }
        return Err(StoreError::rejected(
            format!("{refused} rows cannot be applied"),
            refused,
            problems,
        ));
    }
    if report.skipped_count > 0 && !skip_bad {
        let mut problems = std::mem::take(&mut skipped);
        let refused = report.skipped_count as usize;
        if refused > problems.len() {
            problems.push(Problem::more(refused - problems.len()));
        }
        return Err(StoreError::rejected(format!(
                "{refused} of {} {} cannot be applied; nothing was imported (fix them, or pass --skip-bad to import the good rows)",
                rows.len(),
                if rows.len() == 1 { "row" } else { "rows" }
            ), refused, problems));
    }
    if report.applied as usize >= ANALYZE_AFTER_ROWS {
        refresh_statistics(conn)?;
    }
    report.skipped = skipped.iter().map(Problem::to_string).collect();
    Ok(report)
}
