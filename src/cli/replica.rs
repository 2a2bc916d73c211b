//! `ora replica init|status|verify|disable` and `ora restore --from-replica`: arguments in,
//! one library call, the report printed.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{output, Ctx};
use crate::error::{exit, Error, Result};
use crate::file::progress::Progress;
use crate::replica::history::{self, Target};
use crate::replica::{restore, setup, status, verify, Mode};

#[derive(Debug, Subcommand)]
pub enum ReplicaCommand {
    /// Make an empty directory (on a second disk) this database's replica and take its first
    /// base copy.
    Init {
        /// An empty directory on another disk, ideally a subdirectory of its mount point.
        dir: PathBuf,
        /// bounded (default): acknowledge at the local commit; strict: only once the replica
        /// has it too.
        #[arg(long)]
        mode: Option<String>,
        /// Continue an existing replica whose owner is gone (this database was restored from
        /// it on a new box, or moved): records the hand-over in the replica; the old owner is
        /// refused from then on.
        #[arg(long)]
        take_over: bool,
        /// With --take-over: even though the replica was written in the last minutes (only
        /// when the old box is certainly off).
        #[arg(long, requires = "take_over")]
        force: bool,
    },
    /// Mode, lag, restorable points, size, last verify.
    Status,
    /// Rebuild the newest and a random older point in a scratch directory and prove them.
    Verify {
        /// The nightly pass: the newest point only, with quick_check (its content is compared
        /// with the database's as always); the full pass instead when none passed in the last
        /// week.
        #[arg(long)]
        nightly: bool,
    },
    /// Stop replicating this database (the replica directory is left as it is).
    Disable {
        /// Confirm: stop replicating.
        #[arg(long)]
        yes: bool,
    },
}

/// `ora restore --from-replica DIR ...`
#[derive(Debug, Args, Clone)]
pub struct FromReplica {
    /// The newest committed point.
    #[arg(long, conflicts_with_all = ["at", "before_movement"])]
    pub latest: bool,
    /// A time: RFC 3339, or local "YYYY-MM-DD HH:MM[:SS]".
    #[arg(long, value_name = "TIME", conflicts_with = "before_movement")]
    pub at: Option<String>,
    /// Just before this ledger id was committed; lists every movement after it.
    #[arg(long, value_name = "ID")]
    pub before_movement: Option<i64>,
    /// Write the result here instead of replacing the database.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// The replica directory: configured, else recorded in the database; `None` when neither.
fn dir_of(ctx: &Ctx) -> Result<Option<PathBuf>> {
    if let Some(d) = &ctx.config.replica.dir {
        return Ok(Some(d.clone()));
    }
    let store = ctx.open(crate::store::OpenMode::ReadOnly)?;
    let st = crate::store::capture::state(&*store.read()?)?;
    Ok(st
        .filter(|s| s.enabled)
        .and_then(|s| s.dir)
        .map(PathBuf::from))
}

pub fn run(ctx: &Ctx, cmd: ReplicaCommand) -> Result<i32> {
    match cmd {
        ReplicaCommand::Init {
            dir,
            mode,
            take_over,
            force,
        } => init(ctx, dir, mode, take_over, force),
        ReplicaCommand::Status => show_status(ctx),
        ReplicaCommand::Verify { nightly } => verify_now(ctx, nightly),
        ReplicaCommand::Disable { yes } => disable(ctx, yes),
    }
}

/// `ora replica init DIR [--mode M] [--take-over [--force]]`.
fn init(
    ctx: &Ctx,
    dir: PathBuf,
    mode: Option<String>,
    take_over: bool,
    force: bool,
) -> Result<i32> {
    let db = &ctx.config.store.path;
    let tuning = &ctx.config.store.tuning;
    let mode = match mode {
        Some(m) => Mode::parse(&m).ok_or_else(|| {
            Error::usage(format!(
                "--mode must be bounded or strict, got {:?}",
                crate::model::clip(&m)
            ))
        })?,
        None => ctx.config.replica.mode.unwrap_or(Mode::Bounded),
    };
    ctx.open(crate::store::OpenMode::Existing)?.close();
    let r = setup::init(
        db,
        tuning,
        &ctx.config.replica,
        &setup::InitOptions {
            dir,
            mode,
            site: ctx.config.remote.site_id.clone(),
            take_over,
            force,
        },
    )?;
    if ctx.json {
        output::json(&r)?;
    } else if let Some(from) = &r.took_over_from {
        outln!(
            "{} now continues the replica {} (epoch {}), taken over from {}; new base: generation {} at commit {}",
            db.display(),
            r.dir.display(),
            r.epoch.unwrap_or(0),
            from,
            r.generation,
            r.base_seq
        );
        outln!(
            "set [replica] dir = \"{}\" in the configuration, and restart `ora serve` if it runs",
            r.dir.display()
        );
    } else {
        outln!(
            "{} is now the {} replica of {} (site {}): first base at commit {} ({:.1} MB) in {:.2} s",
            r.dir.display(),
            r.mode,
            db.display(),
            r.site,
            r.base_seq,
            r.base_bytes as f64 / 1e6,
            r.seconds
        );
        outln!(
            "set [replica] dir = \"{}\" in the configuration, and restart `ora serve` if it runs",
            r.dir.display()
        );
    }
    Ok(exit::OK)
}

/// `ora replica status`.
///
/// Kept whole: the status in words: one line per fact of the report, in the order an operator reads
/// them.
fn show_status(ctx: &Ctx) -> Result<i32> {
    let db = &ctx.config.store.path;
    let store = ctx.open(crate::store::OpenMode::ReadOnly)?;
    let r = status::gather(&*store.read()?, db, &ctx.config.replica, None)?;
    let verdict = status::judge(&r, crate::store::capture::now_ms());
    if ctx.json {
        output::json(
            &serde_json::json!({ "replica": r, "verdict": verdict.as_ref().map(|v| v.0), "message": verdict.as_ref().map(|v| v.1.clone()) }),
        )?;
    } else if !r.enabled {
        match &r.copy {
            Some(what) => outln!("no replica: this file is {what}"),
            None => outln!("no replica: set one up with `ora replica init DIR` (on a second disk)"),
        }
    } else {
        outln!("replica     {} ({})", r.dir, r.mode);
        outln!(
            "state       {}",
            if r.up { "reachable" } else { "NOT REACHABLE" }
        );
        if let Some(p) = &r.problem {
            outln!("problem     {p}");
        }
        if let Some(o) = &r.owner {
            outln!("owner       {o} (epoch {})", r.epoch);
        }
        outln!(
            "lag         {} commits, {} bytes, {:.1} s (limit {} ms)",
            r.lag_commits,
            r.lag_bytes,
            r.lag_seconds,
            r.max_lag_ms
        );
        outln!(
            "last        commit {} on the replica, ledger id {}; {} locally",
            r.shipped_seq,
            r.shipped_ledger,
            r.local_seq
        );
        outln!(
            "restorable  {} .. {} ({} generations, {:.1} MB)",
            r.oldest_point.as_deref().unwrap_or("-"),
            r.newest_point.as_deref().unwrap_or("-"),
            r.generations,
            r.size_bytes as f64 / 1e6
        );
        outln!(
            "encrypted   {}",
            r.encrypted_to
                .as_deref()
                .map_or("no".to_string(), |to| format!("to {to}"))
        );
        outln!(
            "verified    {}",
            match (&r.last_verify, r.last_verify_ok) {
                (Some(t), Some(true)) => format!("ok at {t}"),
                (Some(t), _) => format!("FAILED at {t}"),
                _ => "never (run `ora replica verify`)".into(),
            }
        );
        for g in &r.generation_list {
            outln!(
                "generation  {}: base at commit {}, {}, {}{}",
                g.number,
                g.seq,
                g.taken,
                g.reason,
                if g.continues || g.number == 1 {
                    ""
                } else {
                    " (the history before it has a hole)"
                }
            );
        }
        for n in &r.refusals {
            outln!(
                "refused     {} (id {}) at {}",
                n.place.describe(),
                n.database_id,
                n.at
            );
        }
        if let Some((_, msg)) = &verdict {
            outln!("verdict     {msg}");
        }
    }
    Ok(match verdict {
        Some((crate::ops::health::Level::Fail, _)) => exit::CHECK_FAILED,
        _ => exit::OK,
    })
}

/// `ora replica verify`.
fn verify_now(ctx: &Ctx, nightly: bool) -> Result<i32> {
    let db = &ctx.config.store.path;
    let tuning = &ctx.config.store.tuning;
    let Some(dir) = dir_of(ctx)? else {
        if !ctx.json {
            outln!(
                "no replica is set up for {}; nothing to verify",
                db.display()
            );
        }
        return Ok(exit::OK);
    };
    let shown = super::waiting(ctx, "replica verify", "replica_verify", nightly);
    let r = verify::run(
        db,
        &dir,
        tuning,
        &ctx.config.replica,
        ctx.config.store.writer.rules.allow_negative_stock,
        &ctx.identities,
        if nightly {
            verify::Pass::Nightly
        } else {
            verify::Pass::Full
        },
    );
    shown.finish();
    let r = r?;
    if ctx.json {
        output::json(&r)?;
    } else {
        if let Some(p) = &r.newest {
            outln!(
                "newest point: commit {} ({}), {} commits applied, equal to the database: {}",
                p.seq,
                p.time,
                p.commits_applied,
                p.differing_tables.is_empty()
            );
        }
        if r.pass == "quick" {
            outln!("nightly pass: the newest point with quick_check; the full pass (integrity_check, an older point) runs weekly");
        }
        if let Some(p) = &r.older {
            outln!(
                "older point:  commit {} ({}), {} commits applied, checks pass",
                p.seq,
                p.time,
                p.commits_applied
            );
        }
        if !r.locked_generations.is_empty() {
            outln!(
                "encrypted with an earlier key, files and structure checked only: {} {} (pass --identity to check their content too)",
                crate::model::plural(r.locked_generations.len(), "generation", "generations"),
                r.locked_generations.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
            );
        }
        match &r.problem {
            None => outln!(
                "replica verify: ok ({} generations, {} commits, {:.2} s)",
                r.generations,
                r.commits,
                r.seconds
            ),
            Some(p) => errln!("ora: replica verify failed: {p}"),
        }
    }
    Ok(if r.ok { exit::OK } else { exit::CHECK_FAILED })
}

/// `ora replica disable --yes`.
fn disable(ctx: &Ctx, yes: bool) -> Result<i32> {
    let db = &ctx.config.store.path;
    let tuning = &ctx.config.store.tuning;
    if !yes {
        return Err(Error::usage(
            "replica disable: this stops replication; pass --yes to confirm",
        ));
    }
    setup::disable(db, tuning)?;
    if !ctx.json {
        outln!(
            "replication of {} is off; the replica directory was left as it is",
            db.display()
        );
    }
    Ok(exit::OK)
}

/// `ora restore --from-replica DIR (--latest | --at TIME | --before-movement N)`.
pub fn restore(ctx: &Ctx, dir: &std::path::Path, a: &FromReplica, force: bool) -> Result<i32> {
    let target = match (&a.at, a.before_movement, a.latest) {
        (Some(t), None, false) => Target::At(
            history::parse_time(t).map_err(|e| Error::usage(format!("restore: --at {e}")))?,
        ),
        (None, Some(n), false) if n > 0 => Target::BeforeMovement(n),
        (None, Some(n), false) => {
            return Err(Error::usage(format!(
                "restore: --before-movement takes a ledger id (1 or more), not {n}"
            )))
        }
        (None, None, true) => Target::Latest,
        _ => return Err(Error::usage(
            "restore --from-replica needs exactly one of --latest, --at TIME, --before-movement ID",
        )),
    };
    let o = restore::PitrOptions {
        dir: dir.to_path_buf(),
        target,
        out: a.out.clone(),
        force,
        allow_negative_stock: ctx.config.store.writer.rules.allow_negative_stock,
        check: restore::Check::Quick,
        keys: crate::replica::seal::Keyring::of_database(
            &ctx.config.store.path,
            &ctx.config.store.tuning,
            ctx.identities.clone(),
        ),
    };
    // The base's bytes are not known before its generation is read: the time it has taken.
    let shown = Progress::waiting("restore from the replica", None);
    let r = crate::ops::restore::from_replica(&ctx.config.store.path, &o, &Progress::hidden());
    shown.finish();
    let r = r?;
    if ctx.json {
        output::json(&r)?;
    } else {
        outln!(
            "restored {} to commit {} ({}) from generation {} of {}: {} commits applied on its base, last ledger id {}, {} , {:.2} s",
            r.output.display(),
            r.seq,
            r.point_time,
            r.generation,
            r.replica.display(),
            r.commits_applied,
            r.last_ledger_id,
            r.integrity,
            r.seconds
        );
        if let Some(k) = &r.kept_previous {
            outln!("the previous database is kept as {}", k.display());
        }
        if r.torn_tail {
            outln!("note: the replica's newest record was incomplete (a crash while it was written); it was never acknowledged and is not included");
        }
        if !r.later_movements.is_empty() {
            outln!("{} movements were committed after that point; enter again the ones that were right:", r.later_movements.len());
            let rows: Vec<Vec<String>> = r
                .later_movements
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        m.date.clone(),
                        m.sku.clone(),
                        m.transaction_type.clone(),
                        m.quantity.to_string(),
                        m.request_id.clone().unwrap_or_default(),
                        m.notes.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(
                &["id", "date", "sku", "type", "qty", "request_id", "notes"],
                &rows,
            )?;
        }
    }
    Ok(exit::OK)
}
