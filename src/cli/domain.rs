//! `ora product|workflow|kpi ...`: the non-movement domain writes and their listings
//! (shipments: [`super::shipment`]).

use clap::Subcommand;

use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::model;
use crate::store::kpis::{self, KpiRecord};
use crate::store::products::{NewProduct, ProductChange};
use crate::store::vectors::ProductVector;
use crate::store::workflows::{self, WorkflowChange};
use crate::store::{OpenMode, Outcome, WriteOp, WriteRequest};

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// Add a product (its opening stock, if any, is recorded as a Receive).
    Add {
        /// A new sku: 1-64 letters, digits and - _ . /, starting with a letter or digit.
        sku: String,
        /// The product's name as people search for it.
        name: String,
        /// Stock level at or below which the product shows as low.
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        reorder_point: String,
        /// Opening stock.
        #[arg(long, default_value = "0", allow_hyphen_values = true)]
        initial: String,
        /// Idempotency key: the same key again returns the first result and changes nothing.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// Change a product's name or reorder point.
    Update {
        /// The product's sku.
        sku: String,
        /// A new name.
        #[arg(long)]
        name: Option<String>,
        /// A new reorder point (stock at or below it shows as low).
        #[arg(long, allow_hyphen_values = true)]
        reorder_point: Option<String>,
    },
    /// Store your own embedding of a product for Qdrant (`vectors = "client"`), or remove it.
    Vector {
        /// The product's sku.
        sku: String,
        /// The vector as a JSON array, e.g. '[0.12, -0.5, 0.33]'.
        #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["file", "clear"])]
        values: Option<String>,
        /// A file holding the vector (a JSON array, or {"vector": [...]}); `-` reads stdin.
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        file: Option<std::path::PathBuf>,
        /// Remove the product's vector (its Qdrant point goes with it).
        #[arg(long)]
        clear: bool,
    },
    /// Add products from a CSV file (columns sku,name[,reorder_point,initial]), all or
    /// nothing, with every bad line named.
    Import {
        /// The CSV file (a header row naming the columns, then one product per line).
        file: std::path::PathBuf,
    },
    /// Remove every product vector (before loading the vectors of another model).
    ClearVectors {
        /// Confirm: every product loses its vector and its Qdrant point.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WorkflowCommand {
    /// Set a workflow's status (creates it at version 1; each change bumps the version).
    Set {
        /// The workflow's name.
        name: String,
        /// Free text up to 64 characters. The page gives these words a meaning and a colour:
        /// done/ok, running/in progress, waiting/pending, failed/error; any other text is shown
        /// in a neutral colour.
        status: String,
        /// A line for people ("printer jammed at dock 2"); left out, the previous details stay;
        /// "" clears them.
        #[arg(long)]
        details: Option<String>,
        /// Refuse (exit 1) unless the workflow is at this version (0: must not exist yet).
        #[arg(long, allow_hyphen_values = true)]
        expect_version: Option<String>,
    },
    /// List workflows.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KpiCommand {
    /// Record (upsert) a day's KPIs; fields left out keep their value.
    Record {
        /// The day (YYYY-MM-DD).
        date: String,
        /// Orders taken that day (a whole number, 0 or more).
        #[arg(long, allow_hyphen_values = true)]
        orders_today: Option<String>,
        /// Shipments sent that day (a whole number, 0 or more).
        #[arg(long, allow_hyphen_values = true)]
        shipments_sent: Option<String>,
        /// Uploads still waiting (a whole number, 0 or more).
        #[arg(long, allow_hyphen_values = true)]
        pending_uploads: Option<String>,
        /// The day's system status: free text up to 64 characters; green/ok, amber/warn and
        /// red/failed are the usual words.
        #[arg(long)]
        status: Option<String>,
    },
    /// List the most recent days.
    List {
        /// How many days, newest first (1 to 3660).
        #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=3660))]
        days: u32,
    },
}

fn count(field: &str, s: &str) -> Result<i64> {
    let n = model::parse_int(field, s).map_err(Error::usage)?;
    model::validate_count(field, n).map_err(Error::usage)?;
    Ok(n)
}

fn opt_count(field: &str, s: Option<String>) -> Result<Option<i64>> {
    s.map(|v| count(field, &v)).transpose()
}

/// Validates, writes through the writer, prints the outcome.
pub(super) fn write(ctx: &Ctx, req: WriteRequest) -> Result<i32> {
    req.validate()?;
    let store = ctx.open(OpenMode::Existing)?;
    let applied = store.write(req)?;
    store.close();
    if ctx.json {
        output::json(
            &serde_json::json!({ "result": applied.outcome, "replayed": applied.replayed }),
        )?;
        return Ok(exit::OK);
    }
    match &applied.outcome {
        Outcome::Product(p) => outln!(
            "product {} ({}): stock {}, reorder at {}, {}",
            p.sku,
            p.product_name,
            p.current_quantity,
            p.reorder_point,
            p.alert_level
        ),
        Outcome::Shipment(s) => outln!(
            "order {} shipped on {}: {}, {}",
            s.order_number,
            s.ship_date,
            output::count(s.movements.len() as u64, "item", "items"),
            output::count(s.total_units.max(0) as u64, "unit", "units")
        ),
        Outcome::Workflow(w) => outln!(
            "workflow {} is {} (version {})",
            w.name,
            w.status,
            w.version
        ),
        Outcome::Vector(v) if v.cleared => outln!("product {}: vector removed", v.sku),
        Outcome::Vector(v) => outln!("product {}: vector of {} dimensions stored", v.sku, v.dims),
        Outcome::VectorsCleared { removed } => outln!("{removed} product vectors removed"),
        Outcome::Kpi(k) => outln!(
            "KPIs for {}: orders {}, shipments {}, pending uploads {}, status {}",
            k.snapshot_date,
            k.orders_today,
            k.shipments_sent,
            k.pending_uploads,
            k.system_status
        ),
        other => output::json(other)?,
    }
    if applied.replayed {
        outln!("(already recorded earlier with this request id; nothing changed)");
    }
    Ok(exit::OK)
}

/// `ora product import FILE`: every bad line in one report (malformed rows, a sku twice in
/// the file, a sku that already exists), nothing added unless every row can be.
fn product_import(ctx: &Ctx, file: &std::path::Path) -> Result<i32> {
    use crate::store::StoreError;
    let shown = file.display();
    let parsed = crate::import::parse_products_file(file).map_err(|e| {
        Error::usage(format!(
            "product import: {shown}: {e}; nothing was imported"
        ))
    })?;
    let total = parsed.rows.len() + parsed.bad_rows;
    let store = ctx.open(OpenMode::Existing)?;
    let check_only = parsed.bad_rows > 0;
    let mut problems = parsed.problems;
    let mut bad = parsed.bad_rows;
    let result = if parsed.rows.is_empty() {
        Err(StoreError::rejected(String::new(), 0, Vec::new()))
    } else {
        store.write(WriteRequest::new(WriteOp::ProductImport {
            rows: parsed.rows,
            check_only,
        }))
    };
    store.close();
    let added = match result {
        Ok(done) => match done.outcome {
            Outcome::ProductsImported { added } => added,
            _ => {
                return Err(Error::failed(
                    "product import: unexpected answer from the writer",
                ))
            }
        },
        Err(e) if e.kind() == crate::store::StoreKind::Rejected => {
            bad += e.refused();
            problems.extend(e.problems().iter().cloned());
            0
        }
        Err(e) => return Err(e.into()),
    };
    if bad > 0 {
        let problems =
            crate::model::merge_problems(problems, bad, crate::store::MAX_LISTED_PROBLEMS);
        return Err(StoreError::rejected(format!(
                "product import: {shown}: {bad} of {total} {} cannot be added; nothing was imported (fix them and import the file again)",
                if total == 1 { "row" } else { "rows" }
            ), bad, problems)
        .into());
    }
    if ctx.json {
        output::json(&serde_json::json!({ "file": shown.to_string(), "added": added }))?;
    } else {
        outln!(
            "product import: {shown}: {} added",
            output::count(added as u64, "product", "products")
        );
    }
    Ok(exit::OK)
}

pub fn product(ctx: &Ctx, cmd: ProductCommand) -> Result<i32> {
    match cmd {
        ProductCommand::Import { file } => product_import(ctx, &file),
        ProductCommand::Add {
            sku,
            name,
            reorder_point,
            initial,
            request_id,
        } => {
            let p = NewProduct {
                sku,
                product_name: name,
                reorder_point: count("reorder point", &reorder_point)?,
                initial_quantity: count("initial stock", &initial)?,
            };
            write(
                ctx,
                WriteRequest::with_request_id(WriteOp::ProductAdd(p), request_id),
            )
        }
        ProductCommand::Update {
            sku,
            name,
            reorder_point,
        } => {
            let c = ProductChange {
                sku,
                product_name: name,
                reorder_point: opt_count("reorder point", reorder_point)?,
            };
            write(ctx, WriteRequest::new(WriteOp::ProductUpdate(c)))
        }
        ProductCommand::Vector {
            sku,
            values,
            file,
            clear,
        } => {
            let vector = if clear {
                None
            } else {
                let v = super::vector_arg::from_args(values.as_deref(), file.as_deref())?;
                check_client_size(ctx, v.len())?;
                Some(v)
            };
            write(
                ctx,
                WriteRequest::new(WriteOp::ProductVector(ProductVector { sku, vector })),
            )
        }
        ProductCommand::ClearVectors { yes } => {
            if !yes {
                return Err(Error::usage(
                    "clear-vectors removes every product vector and its Qdrant point; add --yes to confirm",
                ));
            }
            write(ctx, WriteRequest::new(WriteOp::ProductVectorsClear))
        }
    }
}

/// With `vectors = "client"`, a stored vector must have the collection's size.
fn check_client_size(ctx: &Ctx, dims: usize) -> Result<()> {
    match ctx.config.remote.client_vector_size() {
        Some(size) if size != dims => Err(Error::usage(format!(
            "the vector has {dims} dimensions; remote.qdrant.vector_size is {size}"
        ))),
        _ => Ok(()),
    }
}

pub fn workflow(ctx: &Ctx, cmd: WorkflowCommand) -> Result<i32> {
    match cmd {
        WorkflowCommand::Set {
            name,
            status,
            details,
            expect_version,
        } => {
            let w = WorkflowChange {
                name,
                status,
                details,
                expect_version: opt_count("--expect-version", expect_version)?,
            };
            write(ctx, WriteRequest::new(WriteOp::WorkflowSet(w)))
        }
        WorkflowCommand::List => {
            let store = ctx.open(OpenMode::ReadOnly)?;
            let list = workflows::list(&*store.read()?)?;
            if ctx.json {
                output::json(&list)?;
            } else if list.is_empty() {
                outln!("no workflows yet; set one with `ora workflow set NAME STATUS`");
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|w| {
                        vec![
                            w.name.clone(),
                            w.status.clone(),
                            w.version.to_string(),
                            w.updated_at.clone(),
                            w.details.clone().unwrap_or_default().replace('\n', " "),
                        ]
                    })
                    .collect();
                output::table(&["NAME", "STATUS", "VERSION", "UPDATED", "DETAILS"], &rows)?;
            }
            Ok(exit::OK)
        }
    }
}

pub fn kpi(ctx: &Ctx, cmd: KpiCommand) -> Result<i32> {
    match cmd {
        KpiCommand::Record {
            date,
            orders_today,
            shipments_sent,
            pending_uploads,
            status,
        } => {
            let k = KpiRecord {
                snapshot_date: date,
                orders_today: opt_count("orders today", orders_today)?,
                shipments_sent: opt_count("shipments sent", shipments_sent)?,
                pending_uploads: opt_count("pending uploads", pending_uploads)?,
                system_status: status,
            };
            write(ctx, WriteRequest::new(WriteOp::KpiRecord(k)))
        }
        KpiCommand::List { days } => {
            let store = ctx.open(OpenMode::ReadOnly)?;
            let list = kpis::recent(&*store.read()?, days)?;
            if ctx.json {
                output::json(&list)?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|k| {
                        vec![
                            k.snapshot_date.clone(),
                            k.orders_today.to_string(),
                            k.shipments_sent.to_string(),
                            k.pending_uploads.to_string(),
                            k.system_status.clone(),
                        ]
                    })
                    .collect();
                output::table(
                    &["DATE", "ORDERS", "SHIPMENTS", "PENDING UPLOADS", "STATUS"],
                    &rows,
                )?;
            }
            Ok(exit::OK)
        }
    }
}
