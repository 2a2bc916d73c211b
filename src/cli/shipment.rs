//! `ora shipment record|list|show|archive`: recording an order (all or nothing), reading
//! orders back (with their lots), and moving old ones to archive files.

use clap::Subcommand;

use super::domain::write;
use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::model;
use crate::store::shipments::{ShipItem, Shipment};
use crate::store::{OpenMode, WriteOp, WriteRequest};

#[derive(Debug, Subcommand)]
pub enum ShipmentCommand {
    /// Record a shipped order: every item becomes a Ship movement, all or nothing.
    Record {
        /// The order's number (unique: an order is recorded once).
        order_number: String,
        /// An item as SKU:QTY or SKU:QTY:LOT (repeat for several items).
        #[arg(long = "item", required = true, value_name = "SKU:QTY[:LOT]")]
        items: Vec<String>,
        /// Ship date (YYYY-MM-DD); today by default.
        #[arg(long)]
        date: Option<String>,
        /// Idempotency key: the same key again returns the first result and changes nothing.
        #[arg(long)]
        request_id: Option<String>,
    },
    /// List recorded orders, newest first.
    List {
        /// Only orders shipped on or after this day (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// How many orders at most (1 to 10000).
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        limit: i64,
    },
    /// Show one order: its items, their lots and the ledger movements they became.
    Show {
        /// The order's number.
        order_number: String,
        /// Read it from this archive file (see `ora shipment archive --list`).
        #[arg(long, value_name = "FILE")]
        archive: Option<std::path::PathBuf>,
    },
    /// Move the orders shipped before a day into an archive file (their Ship movements stay in
    /// the ledger), or list the archives.
    Archive {
        /// Orders shipped before this day (YYYY-MM-DD) are archived.
        #[arg(long, required_unless_present = "list", conflicts_with = "list")]
        before: Option<String>,
        /// List the archives made so far.
        #[arg(long)]
        list: bool,
        /// Where archive files go [default: `shipments` in the backup directory].
        #[arg(long, value_name = "DIR")]
        dir: Option<std::path::PathBuf>,
    },
}

/// Parses SKU:QTY or SKU:QTY:LOT.
fn parse_item(spec: &str) -> Result<ShipItem> {
    let mut parts = spec.splitn(3, ':');
    let sku = parts.next().unwrap_or_default().to_string();
    let qty = parts.next().ok_or_else(|| {
        Error::usage(format!(
            "item {:?} must be SKU:QTY or SKU:QTY:LOT",
            model::clip(spec)
        ))
    })?;
    Ok(ShipItem {
        sku,
        quantity: model::parse_quantity(qty).map_err(Error::usage)?,
        lot: parts.next().map(str::to_string),
    })
}

pub fn run(ctx: &Ctx, cmd: ShipmentCommand) -> Result<i32> {
    let (order_number, items, date, request_id) = match cmd {
        ShipmentCommand::Record {
            order_number,
            items,
            date,
            request_id,
        } => (order_number, items, date, request_id),
        ShipmentCommand::List { since, limit } => return shipment_list(ctx, since, limit),
        ShipmentCommand::Show {
            order_number,
            archive,
        } => return shipment_show(ctx, &order_number, archive.as_deref()),
        ShipmentCommand::Archive { before, list, dir } => {
            return shipment_archive(ctx, before.as_deref(), list, dir)
        }
    };
    let s = Shipment {
        order_number,
        ship_date: date,
        items: items.iter().map(|i| parse_item(i)).collect::<Result<_>>()?,
    };
    write(
        ctx,
        WriteRequest::with_request_id(WriteOp::Shipment(s), request_id),
    )
}

fn shipment_list(ctx: &Ctx, since: Option<String>, limit: i64) -> Result<i32> {
    use crate::store::shipments;
    if let Some(d) = &since {
        crate::model::validate_date("--since", d).map_err(Error::usage)?;
    }
    let max = i64::from(shipments::MAX_LISTED_ORDERS);
    if !(1..=max).contains(&limit) {
        return Err(Error::usage(format!(
            "--limit must be from 1 to {max}, got {limit}"
        )));
    }
    let store = ctx.open(OpenMode::ReadOnly)?;
    let list = shipments::list(
        &*store.read()?,
        since.as_deref(),
        u32::try_from(limit).unwrap_or(shipments::MAX_LISTED_ORDERS),
    )?;
    if ctx.json {
        output::json(&list)?;
    } else if list.is_empty() {
        outln!(
            "no orders recorded{}",
            since.map_or(String::new(), |s| format!(" since {s}"))
        );
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|o| {
                vec![
                    o.order_number.clone(),
                    o.ship_date.clone(),
                    o.item_count.to_string(),
                    o.total_units.to_string(),
                ]
            })
            .collect();
        output::table(&["ORDER", "SHIPPED", "ITEMS", "UNITS"], &rows)?;
    }
    Ok(exit::OK)
}

fn shipment_archive(
    ctx: &Ctx,
    before: Option<&str>,
    list: bool,
    dir: Option<std::path::PathBuf>,
) -> Result<i32> {
    if list {
        let store = ctx.open(OpenMode::ReadOnly)?;
        let all = crate::store::shipments::archives(&*store.read()?)?;
        if ctx.json {
            output::json(&all)?;
        } else if all.is_empty() {
            outln!("no shipment archives yet; make one with `ora shipment archive --before DATE`");
        } else {
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|a| {
                    vec![
                        a.file.clone(),
                        a.before.clone(),
                        a.orders.to_string(),
                        a.items.to_string(),
                        a.created_at.get(..10).unwrap_or(&a.created_at).to_string(),
                    ]
                })
                .collect();
            output::table(&["FILE", "BEFORE", "ORDERS", "ITEMS", "MADE"], &rows)?;
        }
        return Ok(exit::OK);
    }
    let before = before.unwrap_or_default();
    let dir = dir.unwrap_or_else(|| ctx.config.backup.dir.join("shipments"));
    let store = ctx.open(OpenMode::Existing)?;
    let r = crate::ops::shipment_archive::archive(&store, &dir, before)?;
    let path = store.path().to_path_buf();
    store.close();
    crate::file::oplog::record(
        &path,
        "shipment_archive",
        &crate::model::now_utc(),
        true,
        &serde_json::json!({ "file": r.file, "before": r.before, "orders": r.orders, "items": r.items }),
    );
    if ctx.json {
        output::json(&r)?;
    } else {
        match &r.file {
            None => outln!("shipment archive: no order was shipped before {before}; nothing to archive"),
            Some(f) => outln!(
                "shipment archive: {} and {} shipped before {before} moved to {} ({} bytes); their Ship movements stay in the ledger",
                output::count(r.orders as u64, "order", "orders"),
                output::count(r.items as u64, "item", "items"),
                f.display(),
                r.bytes
            ),
        }
    }
    Ok(exit::OK)
}

fn shipment_show(ctx: &Ctx, order: &str, archive: Option<&std::path::Path>) -> Result<i32> {
    let found = match archive {
        Some(file) => crate::ops::shipment_archive::show_archived(file, order)?,
        None => {
            let store = ctx.open(OpenMode::ReadOnly)?;
            let conn = store.read()?;
            match crate::store::shipments::get(&conn, order)? {
                Some(d) => Some(d),
                None => {
                    if let Some(file) = crate::store::shipments::archived_in(&conn, order)? {
                        return Err(crate::store::StoreError::not_found(format!(
                            "order {order} was archived to {file}; read it with `ora shipment show {order} --archive {file}`"
                        ))
                        .into());
                    }
                    None
                }
            }
        }
    };
    let d = found.ok_or_else(|| {
        crate::store::StoreError::not_found(format!(
            "no order {:?} was recorded{}; list orders with `ora shipment list`",
            crate::model::clip(order),
            archive.map_or(String::new(), |a| format!(" in {}", a.display()))
        ))
    })?;
    if ctx.json {
        output::json(&d)?;
    } else {
        outln!(
            "order {} shipped {}: {} {}, {} units",
            d.order.order_number,
            d.order.ship_date,
            d.order.item_count,
            if d.order.item_count == 1 {
                "item"
            } else {
                "items"
            },
            d.order.total_units
        );
        let rows: Vec<Vec<String>> = d
            .items
            .iter()
            .map(|i| {
                vec![
                    i.sku.clone(),
                    i.lot.clone().unwrap_or_default(),
                    i.quantity.to_string(),
                    i.ledger_id.map_or_else(String::new, |id| id.to_string()),
                ]
            })
            .collect();
        output::table(&["SKU", "LOT", "QTY", "LEDGER ID"], &rows)?;
    }
    Ok(exit::OK)
}
