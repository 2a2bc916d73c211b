//! `ora stock ...`: movements (receive, ship, adjust), listings, and `apply`, which streams
//! JSON movements from stdin and answers each one only after its commit (`import` and
//! `reconcile`: [`super::stock_bulk`]).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::model::{self, TxType};
use crate::store::ledger::{self, LedgerQuery, MovementResult};
use crate::store::{products, Movement, OpenMode, Outcome, WriteOp, WriteRequest};

#[derive(Debug, Subcommand)]
pub enum StockCommand {
    /// Record goods received: adds QTY to the sku's stock.
    Receive(MoveArgs),
    /// Record goods shipped: takes QTY from the sku's stock (refused if not enough).
    Ship(MoveArgs),
    /// Correct the stock after a count: a positive QTY adds (Adjust Up), a negative one takes
    /// away (Adjust Down).
    Adjust(AdjustArgs),
    /// The stock of every product (or one) at the end of a past day, replayed from the ledger.
    AsOf {
        /// The day (YYYY-MM-DD); movements dated on or before it count.
        date: String,
        /// Only this sku.
        #[arg(long)]
        sku: Option<String>,
    },
    /// List products and their stock, most urgent first (critical, then the largest shortage).
    List {
        /// Only products at or below their reorder point.
        #[arg(long)]
        low: bool,
    },
    /// Show one product and its latest movements.
    Show {
        /// The product's sku.
        sku: String,
        /// How many movements to show (1 to 10000).
        #[arg(long, default_value_t = 20, allow_negative_numbers = true)]
        limit: i64,
    },
    /// List ledger movements, newest first.
    History {
        /// Only this sku.
        sku: Option<String>,
        /// Only movements dated on or after this day (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// How many movements to show, newest first (1 to 10000).
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        limit: i64,
    },
    /// Import movements from a CSV file (columns sku,type,quantity[,date,notes,request_id]);
    /// all or nothing unless --skip-bad.
    Import {
        /// The CSV file (a header row naming the columns, then one movement per line).
        file: PathBuf,
        /// Apply the good rows and list the bad ones instead of refusing the whole file.
        #[arg(long)]
        skip_bad: bool,
    },
    /// Read movements as JSON lines on stdin ({"sku","type","quantity",["date","notes",
    /// "request_id"]}) and print one JSON line per movement once it is committed.
    Apply,
    /// Set a sku's stock back to the sum of its movements (the fix for `verify` reporting
    /// "ledger: sku X holds A but its movements add up to B"); then count and adjust.
    Reconcile {
        /// The skus to reconcile.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        skus: Vec<String>,
        /// Every sku whose stock disagrees with its ledger.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The product's sku.
    sku: String,
    /// A whole number from 1 to 1,000,000,000.
    #[arg(value_name = "QTY", allow_hyphen_values = true)]
    quantity: String,
    #[command(flatten)]
    common: MoveOptions,
}

#[derive(Debug, Args)]
pub struct AdjustArgs {
    /// The product's sku.
    sku: String,
    /// A signed whole number: +5 or 5 adds, -5 takes away.
    #[arg(value_name = "QTY", allow_hyphen_values = true)]
    quantity: String,
    #[command(flatten)]
    common: MoveOptions,
}

#[derive(Debug, Args)]
struct MoveOptions {
    /// Business date of the movement (YYYY-MM-DD); today by default.
    #[arg(long)]
    date: Option<String>,
    /// Free text stored with the movement.
    #[arg(long)]
    notes: Option<String>,
    /// Idempotency key: the same key again returns the first result and changes nothing.
    #[arg(long)]
    request_id: Option<String>,
    /// Accept a --date more than a day ahead (refused otherwise: usually a typo in the year).
    #[arg(long)]
    allow_future: bool,
}

pub fn run(ctx: &Ctx, cmd: StockCommand) -> Result<i32> {
    match cmd {
        StockCommand::Receive(a) => movement(ctx, TxType::Receive, a.sku, &a.quantity, a.common),
        StockCommand::Ship(a) => movement(ctx, TxType::Ship, a.sku, &a.quantity, a.common),
        StockCommand::Adjust(a) => {
            let delta = model::parse_int("quantity", &a.quantity).map_err(Error::usage)?;
            let kind = if delta < 0 {
                TxType::AdjustDown
            } else {
                TxType::AdjustUp
            };
            let qty = delta.checked_abs().unwrap_or(i64::MAX).to_string();
            movement(ctx, kind, a.sku, &qty, a.common)
        }
        StockCommand::List { low } => list(ctx, low),
        StockCommand::AsOf { date, sku } => as_of(ctx, &date, sku.as_deref()),
        StockCommand::Show { sku, limit } => show(ctx, &sku, limit),
        StockCommand::History { sku, since, limit } => history(ctx, sku, since, limit),
        StockCommand::Import { file, skip_bad } => super::stock_bulk::import(ctx, &file, skip_bad),
        StockCommand::Apply => apply(ctx),
        StockCommand::Reconcile { skus, all: _ } => super::stock_bulk::reconcile(ctx, skus),
    }
}

fn movement(ctx: &Ctx, kind: TxType, sku: String, qty: &str, o: MoveOptions) -> Result<i32> {
    let quantity = model::parse_quantity(qty).map_err(Error::usage)?;
    let m = Movement {
        sku,
        kind,
        quantity,
        date: o.date,
        notes: o.notes,
        allow_future: o.allow_future,
    };
    let req = WriteRequest::with_request_id(WriteOp::Movement(m), o.request_id);
    req.validate()?;
    let store = ctx.open(OpenMode::Existing)?;
    let applied = store.write(req)?;
    store.close();
    if let Outcome::Movement(r) = &applied.outcome {
        if ctx.json {
            output::json(&serde_json::json!({ "movement": r, "replayed": applied.replayed }))?;
        } else {
            print_movement(r, applied.replayed)?;
        }
    }
    Ok(exit::OK)
}

fn print_movement(r: &MovementResult, replayed: bool) -> Result<()> {
    let verb = match r.kind {
        TxType::Receive => "received",
        TxType::Ship => "shipped",
        TxType::AdjustUp => "adjusted up",
        TxType::AdjustDown => "adjusted down",
    };
    outln!(
        "{verb} {} x {}: stock now {} ({}), ledger id {}{}",
        r.quantity,
        r.sku,
        r.new_quantity,
        r.alert_level,
        r.id,
        if replayed {
            " (already recorded earlier with this request id; nothing changed)"
        } else {
            ""
        }
    );
    Ok(())
}

fn product_rows(products: &[products::Product]) -> Vec<Vec<String>> {
    products
        .iter()
        .map(|p| {
            vec![
                p.sku.clone(),
                p.product_name.clone(),
                p.current_quantity.to_string(),
                p.reorder_point.to_string(),
                if p.shortage > 0 {
                    p.shortage.to_string()
                } else {
                    String::new()
                },
                p.alert_level.clone(),
            ]
        })
        .collect()
}

fn as_of(ctx: &Ctx, date: &str, sku: Option<&str>) -> Result<i32> {
    model::validate_date("date", date).map_err(Error::usage)?;
    if let Some(s) = sku {
        model::validate_sku(s).map_err(Error::usage)?;
    }
    let store = ctx.open(OpenMode::ReadOnly)?;
    let conn = store.read()?;
    if let Some(s) = sku {
        if products::get(&conn, s)?.is_none() {
            return Err(products::unknown(&conn, s, "list products with `ora stock list`").into());
        }
    }
    let rows = ledger::stock_as_of(&conn, date, sku)?;
    if ctx.json {
        output::json(&serde_json::json!({ "as_of": date, "stock": rows }))?;
    } else {
        outln!("stock at the end of {date}, from the ledger:");
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.sku.clone(),
                    r.product_name.clone(),
                    r.quantity.to_string(),
                    r.movements.to_string(),
                ]
            })
            .collect();
        output::table(&["SKU", "PRODUCT", "STOCK", "MOVEMENTS"], &cells)?;
    }
    Ok(exit::OK)
}

fn list(ctx: &Ctx, low: bool) -> Result<i32> {
    let store = ctx.open(OpenMode::ReadOnly)?;
    let products = products::list(&*store.read()?, low)?;
    if ctx.json {
        output::json(&products)?;
    } else if products.is_empty() {
        outln!(
            "{}",
            if low {
                "no product is at or below its reorder point"
            } else {
                "no products yet; add one with `ora product add SKU NAME`"
            }
        );
    } else {
        output::table(
            &["SKU", "PRODUCT", "STOCK", "REORDER AT", "SHORT BY", "LEVEL"],
            &product_rows(&products),
        )?;
    }
    Ok(exit::OK)
}

fn show(ctx: &Ctx, sku: &str, limit: i64) -> Result<i32> {
    model::validate_sku(sku).map_err(Error::usage)?;
    let limit = ledger::history_limit(limit).map_err(|e| Error::usage(format!("--{e}")))?;
    let store = ctx.open(OpenMode::ReadOnly)?;
    let conn = store.read()?;
    let product = products::get(&conn, sku)?
        .ok_or_else(|| products::unknown(&conn, sku, "list products with `ora stock list`"))?;
    let q = LedgerQuery {
        sku: Some(sku.to_string()),
        limit,
        ..LedgerQuery::default()
    };
    let rows = ledger::history(&conn, &q)?;
    if ctx.json {
        output::json(&serde_json::json!({ "product": product, "movements": rows }))?;
    } else {
        output::table(
            &["SKU", "PRODUCT", "STOCK", "REORDER AT", "SHORT BY", "LEVEL"],
            &product_rows(std::slice::from_ref(&product)),
        )?;
        outln!();
        print_history(&rows)?;
    }
    Ok(exit::OK)
}

fn print_history(rows: &[ledger::LedgerRow]) -> Result<()> {
    if rows.is_empty() {
        outln!("no movements");
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.date.clone(),
                r.sku.clone(),
                r.kind.clone(),
                r.quantity.to_string(),
                r.lot.clone().unwrap_or_default(),
                r.notes.clone().unwrap_or_default().replace('\n', " "),
            ]
        })
        .collect();
    output::table(
        &["ID", "DATE", "SKU", "TYPE", "QTY", "LOT", "NOTES"],
        &cells,
    )?;
    Ok(())
}

fn history(ctx: &Ctx, sku: Option<String>, since: Option<String>, limit: i64) -> Result<i32> {
    if let Some(s) = &sku {
        model::validate_sku(s).map_err(Error::usage)?;
    }
    if let Some(d) = &since {
        model::validate_date("--since", d).map_err(Error::usage)?;
    }
    let limit = ledger::history_limit(limit).map_err(|e| Error::usage(format!("--{e}")))?;
    let store = ctx.open(OpenMode::ReadOnly)?;
    let conn = store.read()?;
    if let Some(s) = &sku {
        if products::get(&conn, s)?.is_none() {
            return Err(products::unknown(&conn, s, "list products with `ora stock list`").into());
        }
    }
    let rows = ledger::history(
        &conn,
        &LedgerQuery {
            sku,
            since,
            limit,
            ..LedgerQuery::default()
        },
    )?;
    if ctx.json {
        output::json(&rows)?;
    } else {
        print_history(&rows)?;
    }
    Ok(exit::OK)
}

/// One line of `stock apply` input.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyLine {
    #[serde(flatten)]
    movement: Movement,
    #[serde(default)]
    request_id: Option<String>,
}

/// Longest accepted input line of `stock apply`.
const MAX_APPLY_LINE: usize = 64 * 1024;
/// Movements in flight (queued, not yet answered) at once.
const APPLY_WINDOW: usize = 256;

fn apply(ctx: &Ctx) -> Result<i32> {
    let store = ctx.open(OpenMode::Existing)?;
    let writer = store.writer()?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, Pending)>(APPLY_WINDOW);
    let worst = std::thread::scope(|s| {
        let printer = s.spawn(move || print_answers(rx));
        let stdin = std::io::stdin();
        let mut input = stdin.lock();
        let mut line_no = 0u64;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            line_no += 1;
            match std::io::Read::take(&mut input, MAX_APPLY_LINE as u64 + 1)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send((
                        line_no,
                        Pending::Refused(Error::io("stock apply: read stdin", e)),
                    ));
                    break;
                }
            }
            let pending = if buf.len() > MAX_APPLY_LINE && !buf.ends_with(b"\n") {
                // Skip the rest of the oversized line.
                let _ = input.skip_until(b'\n');
                Pending::Refused(Error::usage(format!(
                    "line is longer than {MAX_APPLY_LINE} bytes"
                )))
            } else {
                let text = String::from_utf8_lossy(&buf);
                if text.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<ApplyLine>(&text) {
                    Ok(l) => {
                        let req = WriteRequest::with_request_id(
                            WriteOp::Movement(l.movement),
                            l.request_id,
                        );
                        match writer.enqueue(req) {
                            Ok(t) => Pending::Queued(t),
                            Err(e) => Pending::Refused(e.into()),
                        }
                    }
                    Err(e) => Pending::Refused(Error::usage(format!("not a movement: {e}"))),
                }
            };
            if tx.send((line_no, pending)).is_err() {
                break;
            }
        }
        drop(tx);
        printer.join().unwrap_or(exit::OPERATIONAL)
    });
    store.close();
    Ok(worst)
}

enum Pending {
    Queued(crate::store::Ticket),
    Refused(Error),
}

/// Prints one answer per input line, in input order, flushing whenever no answer is waiting.
fn print_answers(rx: std::sync::mpsc::Receiver<(u64, Pending)>) -> i32 {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut worst = exit::OK;
    loop {
        let (line, pending) = match rx.try_recv() {
            Ok(p) => p,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                if out.flush().is_err() {
                    return exit::OPERATIONAL;
                }
                match rx.recv() {
                    Ok(p) => p,
                    Err(_) => break,
                }
            }
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
        };
        let answer = match pending {
            Pending::Queued(t) => t.wait().map_err(Error::from),
            Pending::Refused(e) => Err(e),
        };
        let value = match answer {
            Ok(applied) => match applied.outcome {
                Outcome::Movement(m) => serde_json::json!({
                    "line": line, "ok": true, "replayed": applied.replayed, "movement": m,
                }),
                _ => serde_json::json!({ "line": line, "ok": true }),
            },
            Err(e) => {
                worst = worst.max(e.exit_code());
                serde_json::json!({
                    "line": line, "ok": false, "error": e.to_string(), "code": e.code(),
                })
            }
        };
        if writeln!(out, "{value}").is_err() {
            return exit::OPERATIONAL;
        }
    }
    let _ = out.flush();
    worst
}
