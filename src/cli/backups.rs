//! `ora backups list|verify|keygen`: the backups of a database, their restore drills, and the
//! key pair for encrypted backups, printed for people or as JSON.

use std::path::PathBuf;

use clap::Subcommand;

use super::ops::{backup_opts, mb};
use super::output;
use super::Ctx;
use crate::error::{exit, Error, Result};
use crate::file::backup::{catalog, drill};

#[derive(Debug, Subcommand)]
pub enum BackupsCommand {
    /// List backups, newest first.
    List {
        /// The backup directory [default: [backup] dir, else `backups` beside the database].
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Make an age key pair for encrypted backups: the identity goes to FILE (0600), the
    /// public key (for `[backup] encrypt_to`) is printed. Keep a copy of FILE off the box.
    Keygen {
        /// Where the identity (the secret key) is written; never over an existing file.
        file: PathBuf,
    },
    /// Restore drill: checksum, decompress, integrity_check and verify on a scratch copy.
    Verify {
        /// A backup file (default: the newest).
        file: Option<PathBuf>,
        /// Every backup in the directory.
        #[arg(long, conflicts_with = "file")]
        all: bool,
        /// The backup directory [default: [backup] dir, else `backups` beside the database].
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The nightly drill: quick_check on the copy and its newest ledger row proved the
        /// database's; the full drill instead when none ran in the last week.
        #[arg(long)]
        nightly: bool,
    },
}

/// The backups in `dir`, newest first; a directory that does not exist yet has none.
fn listed(
    dir: &std::path::Path,
    db: &std::path::Path,
    what: &str,
) -> Result<Vec<catalog::BackupFile>> {
    match catalog::list(dir, db) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::usage(format!(
            "{what}: cannot read {}: {e}",
            dir.display()
        ))),
    }
}

/// Kept whole: one arm per `ora backups` subcommand, each parsing its options into one library call
/// and printing its report.
pub fn run(ctx: &Ctx, c: &BackupsCommand) -> Result<i32> {
    let db = &ctx.config.store.path;
    match c {
        BackupsCommand::List { dir } => {
            let o = backup_opts(ctx, dir.clone(), None);
            let list = listed(&o.dir, db, "backups list")?;
            if ctx.json {
                output::json(&list)?;
            } else if list.is_empty() {
                outln!(
                    "no backups yet in {}; take one with `ora backup`",
                    o.dir.display()
                );
            } else {
                let now = crate::clock::now();
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|b| {
                        vec![
                            b.name.clone(),
                            b.taken.format("%Y-%m-%d %H:%M UTC").to_string(),
                            format!("{:.1} h", (now - b.taken).num_seconds() as f64 / 3600.0),
                            mb(b.bytes),
                            if b.has_checksum { "yes" } else { "MISSING" }.into(),
                        ]
                    })
                    .collect();
                output::table(&["FILE", "TAKEN", "AGE", "SIZE", "CHECKSUM"], &rows)?;
            }
            Ok(exit::OK)
        }
        BackupsCommand::Keygen { file } => {
            let public = crate::file::backup::keys::generate(file)?;
            if ctx.json {
                output::json(&serde_json::json!({ "identity_file": file, "public_key": public }))?;
            } else {
                outln!("identity written to {} (keep a copy off this box: without it an encrypted backup cannot be restored)", file.display());
                outln!("public key: {public}");
                outln!("to encrypt every backup, add to the configuration:\n[backup]\nencrypt_to = \"{public}\"");
            }
            Ok(exit::OK)
        }
        BackupsCommand::Verify {
            file,
            all,
            dir,
            nightly,
        } => {
            let o = backup_opts(ctx, dir.clone(), None);
            let files: Vec<PathBuf> = match (file, all) {
                (Some(f), _) => vec![f.clone()],
                (None, all) => {
                    let list = listed(&o.dir, db, "backups verify")?;
                    let n = if *all { list.len() } else { 1 };
                    list.into_iter().take(n).map(|b| b.path).collect()
                }
            };
            if files.is_empty() {
                return Err(Error::check_failed(format!(
                    "backups verify: no backups yet in {}; take one with `ora backup`",
                    o.dir.display()
                )));
            }
            let mut failed = 0;
            let mut reports = Vec::new();
            for f in files {
                if !f.is_file() {
                    return Err(Error::usage(format!(
                        "backups verify: {} is not a file",
                        f.display()
                    )));
                }
                let shown = super::waiting(ctx, "backups verify", "backup_verify", *nightly);
                let r = drill::drill_and_record(
                    db,
                    &f,
                    ctx.config.store.writer.rules.allow_negative_stock,
                    &ctx.identities,
                    if *nightly {
                        drill::nightly_depth(db)
                    } else {
                        drill::Depth::Full
                    },
                );
                shown.finish();
                let r = r?;
                if !r.ok {
                    failed += 1;
                }
                if !ctx.json {
                    match &r.problem {
                        None => outln!(
                            "{}: ok ({} restored and checked in {:.1} s, {} drill)",
                            f.display(),
                            mb(r.database_bytes),
                            r.seconds,
                            r.pass
                        ),
                        Some(p) => outln!("{}: FAILED: {p}", f.display()),
                    }
                }
                reports.push(r);
            }
            if ctx.json {
                output::json(&reports)?;
            }
            if failed > 0 {
                errln!("ora: backups verify: {failed} backup(s) failed the drill; do not restore them, take a new backup with `ora backup`");
                Ok(exit::CHECK_FAILED)
            } else {
                Ok(exit::OK)
            }
        }
    }
}
