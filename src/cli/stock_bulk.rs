//! `ora stock import|reconcile`: the bulk changes. An import names every bad line of a file
//! in one report and applies all of it or nothing; a reconcile sets stocks back to the sum of
//! their movements and records that it did.

use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::model::{self, merge_problems};
use crate::store::ImportReport;
use crate::store::MAX_LISTED_PROBLEMS;
use crate::store::{OpenMode, Outcome, WriteOp, WriteRequest};

pub fn reconcile(ctx: &Ctx, skus: Vec<String>) -> Result<i32> {
    for s in &skus {
        model::validate_sku(s).map_err(Error::usage)?;
    }
    let started = model::now_utc();
    let store = ctx.open(OpenMode::Existing)?;
    let done = store.write(WriteRequest::new(WriteOp::Reconcile { skus }))?;
    let path = store.path().to_path_buf();
    store.close();
    let Outcome::Reconciled { skus: changed } = done.outcome else {
        return Err(Error::failed(
            "stock reconcile: unexpected answer from the writer",
        ));
    };
    crate::file::oplog::record(
        &path,
        "reconcile",
        &started,
        true,
        &serde_json::json!({ "changed": changed }),
    );
    if ctx.json {
        output::json(&changed)?;
    } else if changed.is_empty() {
        outln!("stock reconcile: every stock already equals its ledger; nothing changed");
    } else {
        for c in &changed {
            outln!(
                "{}: stock was {}, its movements add up to {}: set to {}",
                c.sku,
                c.was,
                c.now,
                c.now
            );
        }
        outln!(
            "stock reconcile: {} set back to the ledger; count {} and record any difference with `ora stock adjust`",
            crate::model::plural(changed.len(), "sku", "skus"),
            if changed.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(exit::OK)
}

/// Kept whole: the two ways through an import (all or nothing, or --skip-bad) and the report of
/// both, which share the parsed rows and the numbering of the bad lines.
pub fn import(ctx: &Ctx, file: &std::path::Path, skip_bad: bool) -> Result<i32> {
    let shown = file.display();
    let parsed = crate::import::parse_file(file)
        .map_err(|e| Error::usage(format!("stock import: {shown}: {e}; nothing was imported")))?;
    let syntax_problems = parsed.problems;
    let rows = parsed.rows.len();
    let store = ctx.open(OpenMode::Existing)?;
    if parsed.bad_rows > 0 && !skip_bad {
        // The well-formed rows are tried too (and nothing is kept), so that one report names
        // every bad line: malformed, unknown sku, not enough stock, a reused request_id.
        let mut problems = syntax_problems;
        let mut bad = parsed.bad_rows as u64;
        if rows > 0 {
            let req = WriteRequest::new(WriteOp::Import {
                rows: parsed.rows,
                skip_bad: false,
                check_only: true,
            });
            match store.write(req) {
                Err(e) if e.kind() == crate::store::StoreKind::Rejected => {
                    bad += e.refused() as u64;
                    problems.extend(e.problems().iter().cloned());
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        store.close();
        let problems = merge_problems(problems, bad as usize, MAX_LISTED_PROBLEMS);
        let total = rows as u64 + parsed.bad_rows as u64;
        return Err(crate::store::StoreError::rejected(format!(
                "stock import: {shown}: {bad} of {total} {} cannot be imported; nothing was imported (fix them, or pass --skip-bad to import the good rows)",
                if total == 1 { "row" } else { "rows" }
            ), bad as usize, problems)
        .into());
    }
    let applied = if rows == 0 {
        ImportReport {
            applied: 0,
            replayed: 0,
            skipped: Vec::new(),
            skipped_count: 0,
        }
    } else {
        let req = WriteRequest::new(WriteOp::Import {
            rows: parsed.rows,
            skip_bad,
            check_only: false,
        });
        let done = store.write(req).map_err(|e| {
            if e.kind() == crate::store::StoreKind::Rejected {
                let m = format!("stock import: {shown}: {}", e.message());
                e.with_message(m)
            } else {
                e
            }
        })?;
        match done.outcome {
            Outcome::Import(r) => r,
            _ => {
                return Err(Error::failed(
                    "stock import: unexpected answer from the writer",
                ))
            }
        }
    };
    store.close();
    let mut skipped: Vec<String> = syntax_problems.iter().map(ToString::to_string).collect();
    skipped.extend(applied.skipped.iter().cloned());
    let skipped_count = parsed.bad_rows as u64 + applied.skipped_count;
    if ctx.json {
        output::json(&serde_json::json!({
            "file": shown.to_string(),
            "applied": applied.applied,
            "replayed": applied.replayed,
            "skipped_count": skipped_count,
            "skipped": skipped,
        }))?;
    } else {
        outln!(
            "stock import: {shown}: {} applied, {} already recorded (request_id), {} skipped",
            output::count(applied.applied, "movement", "movements"),
            applied.replayed,
            output::count(skipped_count, "row", "rows")
        );
        for s in &skipped {
            outln!("  skipped {s}");
        }
    }
    Ok(if skipped_count > 0 {
        exit::CHECK_FAILED
    } else {
        exit::OK
    })
}
