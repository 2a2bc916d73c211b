//! `ora audit`: the audit trail, newest first, filtered by product, table, actor and time.
//! Reads only; the rows come from `store::audit`.

use clap::Args;

use super::{output, Ctx};
use crate::error::{Error, Result};
use crate::store::audit::{self, Entry, Filter};
use crate::store::OpenMode;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes to this product (its movements, name, reorder point, stock, vector).
    #[arg(long)]
    sku: Option<String>,
    /// Only changes to this table (inventory_transactions, inventory_current, workflows, ...).
    #[arg(long)]
    table: Option<String>,
    /// Only changes made by this actor (a login name, an API token's name, `system`).
    #[arg(long)]
    actor: Option<String>,
    /// Only changes from this date (YYYY-MM-DD, UTC) or time (RFC 3339) on.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only changes older than this point (the cursor a previous listing ended with).
    #[arg(long, value_name = "CURSOR")]
    before: Option<String>,
    /// Most rows to show (1 to 10000).
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub fn run(ctx: &Ctx, a: &AuditArgs) -> Result<i32> {
    let filter = Filter {
        sku: a.sku.clone(),
        table: a.table.clone(),
        actor: a.actor.clone(),
        since: a.since.clone(),
        before: a
            .before
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| Error::usage(format!("--before: {e}")))?,
        limit: a.limit,
    };
    // Checked before the database is opened, so a bad filter is named even without one
    // (`list` checks again for its other callers).
    filter.validate().map_err(Error::usage)?;
    let store = ctx.open(OpenMode::ReadOnly)?;
    let trail = audit::list(&*store.read()?, &filter)?;
    let rows = trail.entries;
    if ctx.json {
        output::json(&rows)?;
        return Ok(0);
    }
    if rows.is_empty() {
        outln!("no changes recorded that match");
        return Ok(0);
    }
    let lines: Vec<Vec<String>> = rows.iter().map(line).collect();
    output::table(
        &["ID", "AT", "ACTOR", "OP", "TABLE", "KEY", "CHANGE"],
        &lines,
    )?;
    if let Some(next) = trail.next {
        outln!("older changes: add --before {next}");
    }
    Ok(0)
}

fn line(e: &Entry) -> Vec<String> {
    vec![
        e.id.map_or_else(|| "-".to_string(), |i| i.to_string()),
        e.at.clone(),
        e.actor.clone(),
        e.op.clone(),
        e.table.clone(),
        e.key.clone(),
        change(e),
    ]
}

/// What changed, in one line: the new values of an insert, `field: old -> new` for each field
/// of an update that differs, the old values of a delete.
fn change(e: &Entry) -> String {
    let fields = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), shown(v))).collect())
            .unwrap_or_default()
    };
    let join = |parts: Vec<String>| parts.join(", ");
    match (&e.old, &e.new) {
        (Some(old), Some(new)) => {
            let before = fields(old);
            join(
                fields(new)
                    .into_iter()
                    .filter_map(|(k, v)| {
                        let was = before.iter().find(|(b, _)| *b == k).map(|(_, w)| w.clone());
                        match was {
                            Some(w) if w == v => None,
                            Some(w) => Some(format!("{k}: {w} -> {v}")),
                            None => Some(format!("{k}: {v}")),
                        }
                    })
                    .collect(),
            )
        }
        (None, Some(new)) => join(
            fields(new)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        (Some(old), None) => format!(
            "removed ({})",
            join(
                fields(old)
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect()
            )
        ),
        (None, None) => String::new(),
    }
}

fn shown(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => crate::model::clip(s),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}
