//! `ora adopt OLD.db [--out NEW.db] [--check]`: the old system's database brought into ora;
//! prints what was found and what was changed.

use std::path::PathBuf;

use clap::Args;

use super::output;
use super::Ctx;
use crate::error::{exit, Result};
use crate::ops::adopt::{self, AdoptOptions};

#[derive(Debug, Args)]
pub struct AdoptArgs {
    /// The old system's database file (only read, never changed).
    old: PathBuf,
    /// Where to write the new ora database (default: the database path, --db or [database]
    /// path; it must not exist).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only check the old file and report what adopting would do; write nothing.
    #[arg(long)]
    check: bool,
}

pub fn run(ctx: &Ctx, a: &AdoptArgs) -> Result<i32> {
    let o = AdoptOptions {
        out: a
            .out
            .clone()
            .unwrap_or_else(|| ctx.config.store.path.clone()),
        check_only: a.check,
    };
    let r = adopt::run(&a.old, &o)?;
    if ctx.json {
        output::json(&r)?;
        return Ok(exit::OK);
    }
    outln!(
        "{} {}: integrity_check {}, {:.2} s",
        if a.check { "checked" } else { "adopted" },
        r.source.display(),
        r.integrity,
        r.seconds
    );
    for t in &r.tables {
        outln!(
            "  {:<24} {} rows: {} adopted{}",
            t.table,
            t.old_rows,
            t.adopted,
            if t.rejected > 0 {
                format!(", {} kept in adopt_rejected", t.rejected)
            } else {
                String::new()
            }
        );
    }
    if r.problems.is_empty() {
        outln!("found nothing that breaks ora's rules");
    } else {
        outln!("found:");
        for p in &r.problems {
            outln!("  {p}");
        }
    }
    if !r.fixes.is_empty() {
        outln!("changed to fit:");
        for f in &r.fixes {
            outln!("  {f}");
        }
    }
    for t in &r.not_adopted {
        outln!("not adopted (not one of the old system's tables): {t}");
    }
    match &r.output {
        Some(out) => outln!(
            "wrote {}; start it with `ora --db {} serve`, then take a backup",
            out.display(),
            out.display()
        ),
        None => outln!("nothing was written (--check)"),
    }
    Ok(exit::OK)
}
