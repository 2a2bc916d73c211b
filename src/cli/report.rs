//! `ora report monthly [--month YYYY-MM]`: prints the month's review (or its JSON).

use clap::Subcommand;

use super::{output, Ctx};
use crate::error::{exit, Result};
use crate::ops::report::{self, Runs};

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Statements slower than `[database] slow_ms` (100 ms by default), slowest first, with
    /// their query plans.
    Slow {
        /// Only statements seen on or after this day (YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
    },
    /// The month's review: growth, table and index sizes, backups and drills, maintenance and
    /// integrity results, movements per day, the busiest skus.
    Monthly {
        /// The month (YYYY-MM) [default: this month].
        #[arg(long)]
        month: Option<String>,
    },
}

fn kb_mb(bytes: f64) -> String {
    if bytes.abs() < 1e6 {
        format!("{:.0} kB", bytes / 1e3)
    } else {
        format!("{:.1} MB", bytes / 1e6)
    }
}

fn runs(r: &Runs) -> String {
    if r.failed > 0 {
        format!("{} ok, {} FAILED", r.ok, r.failed)
    } else {
        format!("{} ok", r.ok)
    }
}

fn print_slow(list: &[crate::store::slowlog::SlowStatement]) -> Result<()> {
    if list.is_empty() {
        outln!("no statement was slower than the threshold ([database] slow_ms)");
        return Ok(());
    }
    for s in list {
        outln!(
            "{:.0} ms at most, {} times, {:.0} ms in all, last seen {}",
            s.max_ms,
            s.count,
            s.total_ms,
            s.last_seen
        );
        outln!("  {}", s.sql);
        for p in &s.plan {
            outln!("    plan: {p}");
        }
    }
    Ok(())
}

fn print_largest(largest: &[crate::ops::metrics::ObjectSize], as_of: Option<&str>) -> Result<()> {
    let rows: Vec<Vec<String>> = largest
        .iter()
        .map(|o| vec![o.name.clone(), o.kind.clone(), kb_mb(o.bytes as f64)])
        .collect();
    output::table(&["LARGEST", "KIND", "SIZE"], &rows)?;
    if let Some(when) = as_of {
        outln!("(sizes as the weekly maintenance of {when} measured them)");
    }
    Ok(())
}

fn slow(ctx: &Ctx, since: Option<&str>) -> Result<i32> {
    if let Some(d) = since {
        crate::model::validate_date("--since", d).map_err(crate::error::Error::usage)?;
    }
    let store = ctx.open(crate::store::OpenMode::ReadOnly)?;
    let list = crate::store::slowlog::list(&*store.read()?, since, 100)?;
    if ctx.json {
        output::json(&list)?;
    } else {
        print_slow(&list)?;
    }
    Ok(exit::OK)
}

pub fn run(ctx: &Ctx, c: ReportCommand) -> Result<i32> {
    let month = match c {
        ReportCommand::Slow { since } => return slow(ctx, since.as_deref()),
        ReportCommand::Monthly { month } => month,
    };
    let r = report::monthly(
        &ctx.config.store.path,
        &ctx.config.store.tuning,
        month.as_deref(),
        true,
    )?;
    if ctx.json {
        output::json(&r)?;
        return Ok(exit::OK);
    }
    outln!(
        "monthly review of {}, {} to {}",
        ctx.config.store.path.display(),
        r.first_day,
        r.last_day
    );
    outln!();
    outln!("database        {} now", kb_mb(r.database_bytes as f64));
    match (
        r.size_at_first_backup,
        r.size_at_last_backup,
        r.growth_bytes_per_day,
    ) {
        (Some(a), Some(b), Some(g)) => outln!(
            "growth          {} -> {} between the month's first and last backup ({} per day)",
            kb_mb(a as f64),
            kb_mb(b as f64),
            kb_mb(g)
        ),
        _ => outln!("growth          not known: this month's backups span less than a week"),
    }
    outln!("backups         {}", runs(&r.backups));
    outln!("restore drills  {}", runs(&r.drills));
    outln!(
        "maintenance     daily {}; weekly {}",
        runs(&r.daily_maintenance),
        runs(&r.weekly_maintenance)
    );
    outln!(
        "integrity       {} checks: {}",
        r.integrity_checks.ok + r.integrity_checks.failed,
        runs(&r.integrity_checks)
    );
    outln!("verify          {}", runs(&r.verify));
    outln!("movements       {} this month", r.movements);
    outln!();
    print_largest(&r.largest, r.largest_as_of.as_deref())?;
    outln!();
    let rows: Vec<Vec<String>> = r
        .busiest_skus
        .iter()
        .map(|b| vec![b.sku.clone(), b.movements.to_string(), b.units.to_string()])
        .collect();
    if rows.is_empty() {
        outln!("no movements dated this month");
    } else {
        output::table(&["BUSIEST SKU", "MOVEMENTS", "UNITS"], &rows)?;
    }
    outln!();
    let rows: Vec<Vec<String>> = r
        .movements_per_day
        .iter()
        .map(|(d, n)| vec![d.clone(), n.to_string()])
        .collect();
    output::table(&["DAY", "MOVEMENTS"], &rows)?;
    outln!();
    outln!("slow statements this month:");
    print_slow(&r.slow_statements)?;
    Ok(exit::OK)
}
