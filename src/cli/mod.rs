//! The command line: arguments (clap) -> a validated [`Config`] -> one library call -> output.
//! The only module that prints for people; every error leaves through [`main`] as one line on
//! stderr and an exit code from [`Error::exit_code`]. Never panics on user input.

/// `println!` through `io::Write`: a closed stdout is an error the command returns (`main`
/// ends a command whose reader went away with exit 0, after its epilogue), never a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err($crate::cli::output::write_failed)?
    }};
}

/// `eprintln!` that never panics: a message that cannot reach stderr is dropped.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod adopt;
mod audit;
mod backups;
mod docs;
mod domain;
mod ops;
mod output;
mod remote;
mod replica;
mod report;
mod serve;
mod shipment;
mod standby;
mod stock;
mod stock_bulk;
mod tls;
mod vector_arg;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};
use crate::error::{exit, Result};
use crate::file::progress::Progress;
use crate::store::{OpenMode, Store};

/// The heading the options every command takes are listed under, apart from its own.
const GLOBAL: &str = "Global options";

/// ora: a warehouse ledger in one SQLite file that looks after itself.
#[derive(Debug, Parser)]
#[command(name = "ora", version, about, max_term_width = 100)]
struct Cli {
    /// The database file [default: [database] path in the configuration, else ./ora.db].
    #[arg(long, global = true, env = "DATABASE_PATH", value_name = "PATH", help_heading = GLOBAL)]
    db: Option<PathBuf>,
    /// A TOML configuration file (every key and its default: docs/configuration.md).
    #[arg(long, global = true, env = "ORA_CONFIG", value_name = "FILE", help_heading = GLOBAL)]
    config: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true, help_heading = GLOBAL)]
    json: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,
    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    quiet: u8,
    /// An age identity file (AGE-SECRET-KEY-1... lines) for encrypted backups: restore, drills
    /// [default: [backup] identity_file].
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL)]
    identity: Option<PathBuf>,
    /// Who makes the changes, as the audit trail records them [default: the login name,
    /// `SUDO_USER` under sudo].
    #[arg(long, global = true, env = "ORA_ACTOR", value_name = "NAME", help_heading = GLOBAL)]
    actor: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database, or upgrade an older one, and exit.
    Init,
    /// Serve the status page and the HTTP API (creates the database if missing).
    Serve(serve::ServeArgs),
    /// Serve as a standby of another box's `ora serve`: follow it commit by commit, answer
    /// reads, and be ready for `ora promote`.
    Standby(standby::StandbyArgs),
    /// Make this standby the primary (a new epoch); it takes writes at once.
    Promote(standby::PromoteArgs),
    /// HTTPS certificates: make a self-signed pair, print a certificate's fingerprint.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Print a shell completion script (e.g. `ora completions bash > /etc/bash_completion.d/ora`).
    Completions {
        /// bash, zsh or fish.
        shell: docs::Shell,
    },
    /// Write the man pages (one per command) into DIR (for packaging).
    #[command(hide = true)]
    Manpages {
        /// Where the pages go (created if missing).
        dir: PathBuf,
    },
    /// Record and list stock movements.
    #[command(subcommand)]
    Stock(stock::StockCommand),
    /// Add or change products.
    #[command(subcommand)]
    Product(domain::ProductCommand),
    /// Record, list, show and archive shipped orders (each item becomes a Ship movement).
    #[command(subcommand, visible_alias = "shipments")]
    Shipment(shipment::ShipmentCommand),
    /// Set and list workflow states.
    #[command(subcommand)]
    Workflow(domain::WorkflowCommand),
    /// Record and list daily KPIs.
    #[command(subcommand)]
    Kpi(domain::KpiCommand),
    /// Check every invariant (integrity, foreign keys, ledger = stock); exit 1 on any violation.
    Verify(VerifyArgs),
    /// Is everything all right? File, integrity, backups, maintenance; exit 1 when not.
    Health(ops::HealthArgs),
    /// Run the daily or weekly maintenance routine.
    #[command(subcommand)]
    Maintain(ops::MaintainCommand),
    /// The metrics report: size, free pages, cache, journal mode, row counts, table and index
    /// sizes.
    Metrics,
    /// Reports for people: the monthly review.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Show the query plan and timing of a read-only SQL statement.
    Explain {
        /// One SELECT (or WITH ... SELECT) statement; nothing that writes is accepted.
        sql: String,
    },
    /// Take a verified, compressed backup now (online; writers keep going).
    Backup(ops::BackupArgs),
    /// List backups or verify them with a restore drill.
    #[command(subcommand)]
    Backups(backups::BackupsCommand),
    /// Pack backups older than the retention window into a monthly tar, then remove them.
    Archive,
    /// Replace the database with a backup (atomic; the current one is kept beside it).
    Restore(ops::RestoreArgs),
    /// Write a logical SQL dump that the sqlite3 CLI can load.
    Dump(ops::DumpArgs),
    /// Salvage a damaged database at page level into a new file (or over it with --replace).
    Recover(ops::RecoverArgs),
    /// Bring the old system's database into ora: check it, report, write a new ora database
    /// with every row (the old file is only read).
    Adopt(adopt::AdoptArgs),
    /// Who changed what, and when: the audit trail, newest first.
    Audit(audit::AuditArgs),
    /// Deliver everything waiting to a remote target now (a full copy first if it is new).
    Sync {
        /// Which remote store.
        target: remote::TargetName,
        /// Deliver what is waiting and exit (the only mode; accepted for cron lines).
        #[arg(long)]
        once: bool,
        /// Then compare row counts and checksums of every table on both sides (PostgreSQL).
        #[arg(long)]
        check: bool,
        /// First replace this site's rows (or points) on the target with a full copy: the
        /// repair when `--check` finds the sides differ. Other sites' data stays.
        #[arg(long)]
        resync: bool,
    },
    /// Qdrant maintenance.
    #[command(subcommand)]
    Qdrant(remote::QdrantCommand),
    /// The continuous replica on a second disk: set up, status, nightly proof.
    #[command(subcommand)]
    Replica(replica::ReplicaCommand),
    /// Find products by name (Qdrant when configured, else the local index); typos welcome.
    /// With --vector or --vector-file, find the products nearest to a vector of your model.
    Search {
        /// The words to look for in product names and skus.
        #[arg(required_unless_present_any = ["vector", "vector_file"], conflicts_with_all = ["vector", "vector_file"])]
        text: Option<String>,
        /// A query vector as a JSON array (the size of your product vectors).
        #[arg(long, conflicts_with = "vector_file", allow_hyphen_values = true)]
        vector: Option<String>,
        /// A file holding the query vector (`-`: stdin).
        #[arg(long, value_name = "FILE")]
        vector_file: Option<PathBuf>,
        /// How many products at most (1 to 100).
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
}

/// What every command gets: the validated config and the output mode.
pub(crate) struct Ctx {
    pub config: Config,
    pub json: bool,
    /// The age identities given (`--identity`, `[backup] identity_file`), for the operations
    /// that open encrypted backups or replica generations.
    pub identities: crate::file::backup::keys::Identities,
}

impl Ctx {
    /// Opens the store; a writing store ships its commits to the database's replica, if it
    /// has one.
    pub fn open(&self, mode: OpenMode) -> Result<Store> {
        Ok(self.open_replicated(mode)?.0)
    }

    /// [`Ctx::open`], also returning the replica's shipper when there is one.
    pub fn open_replicated(
        &self,
        mode: OpenMode,
    ) -> Result<(
        Store,
        Option<std::sync::Arc<crate::replica::ship::Replicator>>,
    )> {
        if mode != OpenMode::ReadOnly {
            let path = &self.config.store.path;
            if let Some(up) =
                crate::ops::upgrade::backup_before_migration(path, &self.config.backup)?
            {
                errln!("ora: {}", up.describe(path));
            }
        }
        let store = Store::open(&self.config.store, mode)?;
        if let Some(what) =
            crate::store::lineage::announce(&self.config.store.path, &self.config.store.tuning)
        {
            errln!("ora: note: {} is {what}", self.config.store.path.display());
        }
        let rep = if mode == OpenMode::ReadOnly {
            None
        } else {
            crate::replica::attach(
                &store,
                &self.config.store.tuning,
                &self.config.replica,
                false,
            )?
        };
        Ok((store, rep))
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    install_panic_hook();
    // First, while the process has one thread: SQLite's page cache, wrapped (see the store's).
    crate::store::install_page_cache();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let json = cli.json;
    match std::panic::catch_unwind(move || run(cli)) {
        Ok(Ok(code)) => code,
        // The reader of our output went away (`ora stock history | head -1`): that is the end
        // of the job, not an error; the command's epilogue has run.
        Ok(Err(e)) if e.io_kind() == Some(std::io::ErrorKind::BrokenPipe) => exit::OK,
        Ok(Err(e)) => {
            output::error(&e, json);
            e.exit_code()
        }
        Err(_) => exit::OPERATIONAL,
    }
}

/// A command line clap refused (or `--help`/`--version`): help and version as clap prints
/// them; an error as one line starting with `ora: `, with the usage and where to read more.
fn usage_error(e: &clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            exit::BAD_INPUT
        } else {
            exit::OK
        };
    }
    errln!("ora: {}", one_line(&e.to_string()));
    exit::BAD_INPUT
}

/// clap's multi-line error as one line: "error: " dropped, the lines joined, the usage kept
/// and the "For more information" hint turned into a pointer at --help.
fn one_line(text: &str) -> String {
    let (message, usage) = match text.split_once("Usage:") {
        Some((m, u)) => (m, Some(u)),
        None => (text, None),
    };
    let message = message.trim().trim_start_matches("error:").trim();
    let mut out: Vec<String> = Vec::new();
    for line in message.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        let line = line.trim_start_matches("tip:").trim();
        out.push(line.to_string());
    }
    let mut one = out.join(" ");
    if let Some(u) = usage {
        let usage = u
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        if !usage.is_empty() {
            one.push_str(&format!(" (usage: {usage}; more with --help)"));
        }
    }
    one
}

fn run(cli: Cli) -> Result<i32> {
    // Generated from the definition alone: no configuration, no database.
    match &cli.command {
        Command::Completions { shell } => return docs::completions(*shell),
        Command::Manpages { dir } => return docs::manpages(dir),
        _ => {}
    }
    let over = Overrides {
        db: cli.db.clone(),
        bind: match &cli.command {
            Command::Serve(a) => a.bind.clone(),
            Command::Standby(a) => a.bind.clone(),
            _ => None,
        },
    };
    let mut config = Config::load(cli.config.as_deref(), &over)?;
    let is_serve = matches!(cli.command, Command::Serve(_) | Command::Standby(_));
    // The server's own jobs write as `system`; each API request names its token's actor.
    if !is_serve {
        let actor = cli.actor.clone().unwrap_or_else(login_name);
        crate::store::audit::validate_actor(&actor)
            .map_err(|e| crate::error::Error::usage(format!("--actor: {e}")))?;
        config.store.writer.actor = actor;
    }
    let identities = match cli.identity.as_ref().or(config.identity_file.as_ref()) {
        Some(file) => {
            crate::file::backup::keys::Identities(crate::file::backup::keys::read_identities(file)?)
        }
        None => crate::file::backup::keys::Identities::default(),
    };
    init_logging(&config, cli.verbose, cli.quiet, is_serve);
    let ctx = Ctx {
        config,
        json: cli.json,
        identities,
    };
    let result = dispatch(&ctx, cli.command);
    if !is_serve {
        crate::store::slowlog::flush(&ctx.config.store.path);
        // Bookkeeping commits of this command (ops_log lines) reach the replica now.
        crate::replica::ship_pending(
            &ctx.config.store.path,
            &ctx.config.store.tuning,
            &ctx.config.replica,
            std::time::Duration::from_secs(5),
        );
    }
    result
}

/// The person running this command: the sudo caller, else the login name, else the user id.
fn login_name() -> String {
    let login = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if let Some(u) = login("SUDO_USER") {
        return u;
    }
    if let Some(u) = login("USER").or_else(|| login("LOGNAME")) {
        return u;
    }
    // SAFETY: getuid cannot fail; getpwuid_r writes only into the buffers it is given.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() && !pw.pw_name.is_null() {
        let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
        if let Ok(n) = name.to_str() {
            return n.to_string();
        }
    }
    format!("uid {uid}")
}

fn dispatch(ctx: &Ctx, command: Command) -> Result<i32> {
    match command {
        Command::Init => init(ctx),
        Command::Serve(a) => serve::run(ctx, &a),
        Command::Standby(a) => standby::run(ctx, &a),
        Command::Promote(a) => standby::promote(ctx, &a),
        Command::Tls(c) => tls::run(ctx, c),
        Command::Completions { .. } | Command::Manpages { .. } => Ok(exit::OK),
        Command::Stock(c) => stock::run(ctx, c),
        Command::Product(c) => domain::product(ctx, c),
        Command::Shipment(c) => shipment::run(ctx, c),
        Command::Workflow(c) => domain::workflow(ctx, c),
        Command::Kpi(c) => domain::kpi(ctx, c),
        Command::Verify(a) => verify(ctx, &a),
        Command::Health(a) => ops::health(ctx, &a),
        Command::Maintain(c) => ops::maintain(ctx, &c),
        Command::Metrics => ops::metrics(ctx),
        Command::Report(c) => report::run(ctx, c),
        Command::Explain { sql } => ops::explain(ctx, &sql),
        Command::Backup(a) => ops::backup(ctx, &a),
        Command::Backups(c) => backups::run(ctx, &c),
        Command::Archive => ops::archive(ctx),
        Command::Restore(a) => ops::restore(ctx, &a),
        Command::Dump(a) => ops::dump(ctx, &a),
        Command::Recover(a) => ops::recover(ctx, &a),
        Command::Adopt(a) => adopt::run(ctx, &a),
        Command::Audit(a) => audit::run(ctx, &a),
        Command::Sync {
            target,
            once: _,
            check,
            resync,
        } => remote::sync(ctx, target, check, resync),
        Command::Qdrant(c) => remote::qdrant(ctx, c),
        Command::Replica(c) => replica::run(ctx, c),
        Command::Search {
            text,
            vector,
            vector_file,
            limit,
        } => {
            let query = match text {
                Some(t) => crate::remote::search::Query::Text(t),
                None => crate::remote::search::Query::Vector(vector_arg::from_args(
                    vector.as_deref(),
                    vector_file.as_deref(),
                )?),
            };
            remote::search(ctx, &query, limit)
        }
    }
}

fn init(ctx: &Ctx) -> Result<i32> {
    let store = ctx.open(OpenMode::Create)?;
    let path = store.path().display().to_string();
    store.close();
    if ctx.json {
        output::json(
            &serde_json::json!({ "database": path, "schema_version": crate::store::schema::latest_version() }),
        )?;
    } else {
        outln!(
            "{path} is ready (schema version {})",
            crate::store::schema::latest_version()
        );
    }
    Ok(exit::OK)
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The nightly pass: quick_check, and only the ledger rows and stocks changed since the
    /// last passing run; the full pass instead once a week (or when it cannot stand in for it).
    #[arg(long)]
    nightly: bool,
}

/// The line a long check draws on a terminal while it runs, with how long the last run of
/// `kind` (its nightly or its full pass) took, from ops_log; nothing in scripts and pipes.
pub(crate) fn waiting(ctx: &Ctx, what: &str, kind: &str, quick: bool) -> Progress {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return Progress::hidden();
    }
    let about =
        crate::file::check::open_source(&ctx.config.store.path, &ctx.config.store.tuning, what)
            .ok()
            .and_then(|c| crate::ops::round::last_took(&c, kind, quick).ok().flatten());
    Progress::waiting(what, about)
}

fn verify(ctx: &Ctx, a: &VerifyArgs) -> Result<i32> {
    let store = ctx.open(OpenMode::ReadOnly)?;
    let shown = waiting(ctx, "verify", "verify", a.nightly);
    let opts = crate::ops::verify::VerifyOptions {
        allow_negative_stock: ctx.config.store.writer.rules.allow_negative_stock,
        skip_integrity: false,
        skip_chain: false,
        after: None,
    };
    let pass = if a.nightly {
        crate::ops::verify::Pass::Nightly
    } else {
        crate::ops::verify::Pass::Full
    };
    let outcome = crate::ops::verify::run(&store, &opts, pass);
    shown.finish();
    let outcome = outcome?;
    let report = outcome.report;
    if let Some(why) = &outcome.full_because {
        if !ctx.json {
            outln!("verify: the full pass, because {why}");
        }
    }
    let violations = report.violations();
    if ctx.json {
        output::json(&report)?;
    } else {
        for v in &violations {
            outln!("{v}");
        }
        use crate::model::plural;
        outln!(
            "verify ({} pass{}): {} checked, {} read{} in {:.2} s: {}",
            report.pass,
            if report.chain_from > 0 {
                format!(", ledger from id {}", report.chain_from + 1)
            } else {
                String::new()
            },
            plural(report.skus_checked.max(0) as usize, "sku", "skus"),
            plural(
                report.ledger_rows.max(0) as usize,
                "ledger row",
                "ledger rows"
            ),
            if report.ledger_complete {
                ""
            } else {
                " (the rest of the ledger could not be read)"
            },
            report.seconds,
            if report.ok {
                "all invariants hold".to_string()
            } else {
                plural(violations.len(), "violation", "violations")
            }
        );
    }
    if report.ok {
        Ok(exit::OK)
    } else {
        if !ctx.json {
            errln!(
                "ora: verify found {} in {}",
                crate::model::plural(violations.len(), "violation", "violations"),
                store.path().display()
            );
            for a in report.advice() {
                errln!("  what to do: {a}");
            }
        }
        Ok(exit::CHECK_FAILED)
    }
}

fn init_logging(config: &Config, verbose: u8, quiet: u8, serving: bool) {
    use log::LevelFilter::*;
    let levels = [Off, Error, Warn, Info, Debug, Trace];
    let base = if serving && config.log_level == Warn {
        Info
    } else {
        config.log_level
    };
    let at = levels.iter().position(|l| *l == base).unwrap_or(2) as i32;
    let at = (at + i32::from(verbose) - i32::from(quiet)).clamp(0, 5) as usize;
    let cfg = simplelog::ConfigBuilder::new()
        .set_time_level(if serving { Error } else { Off })
        .set_target_level(Off)
        .set_thread_level(Off)
        .build();
    let _ = simplelog::WriteLogger::init(levels[at], cfg, std::io::stderr());
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        errln!(
            "ora: internal error (a bug): {msg}{at}; nothing more was changed, please report it"
        );
    }));
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// Every argument and option of every command, with the command path.
    fn args(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String, bool)>) {
        for a in cmd.get_arguments() {
            let id = a.get_id().as_str().to_string();
            if id == "help" || id == "version" {
                continue;
            }
            out.push((path.to_string(), id, a.get_help().is_some()));
        }
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            args(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_argument_and_option_has_a_help_line() {
        let mut all = Vec::new();
        args(&super::Cli::command(), "ora", &mut all);
        assert!(all.len() > 50, "the walk found too little: {}", all.len());
        let missing: Vec<String> = all
            .iter()
            .filter(|(_, _, has)| !has)
            .map(|(p, id, _)| format!("{p} <{id}>"))
            .collect();
        assert!(missing.is_empty(), "no help line: {missing:#?}");
    }

    #[test]
    fn clap_errors_become_one_line() {
        let e = super::Cli::try_parse_from(["ora", "stock", "receive"]).unwrap_err();
        let line = super::one_line(&e.to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("<SKU>") && line.contains("usage: ora stock receive"),
            "{line}"
        );
        assert!(!line.starts_with("error"), "{line}");
    }
}
