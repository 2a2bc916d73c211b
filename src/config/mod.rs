//! Configuration: built-in defaults, then the TOML file (`--config`, env `ORA_CONFIG`), then
//! environment overrides, then command-line flags; validated into a [`Config`] before any work
//! starts. Unknown keys are errors, so a typo never silently falls back to a default.
//! Each section is read and checked by its own function ([`Config::load`] only orders them);
//! the remote targets' section is checked in [`remote`] into `remote`'s typed settings. The
//! sections share the one precedence rule, and the tests at this file's end hold every key to
//! it.

mod remote;
mod standby;
mod warehouse;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::file::backup::BackupOptions;
use crate::ops::health::HealthOptions;
use crate::ops::maintain::MaintainOptions;
pub use crate::remote::options::{
    valid_site_id, PgTls, PostgresConfig, QdrantConfig, RemoteConfig, VectorSource,
};
use crate::replica::ReplicaConfig;
use crate::store::{self, connection, StoreOptions, Synchronous};
use remote::RemoteSection;

const DEFAULT_DB_PATH: &str = "./ora.db";
const DEFAULT_BIND: &str = "127.0.0.1:8080";
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The days `backup.keep_days` (and `--keep-days`, which overrides it) may be.
pub const BACKUP_KEEP_DAYS: std::ops::RangeInclusive<u32> = 1..=3650;
pub const DEFAULT_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Every environment variable ora reads as configuration: the two the command line takes
/// (`--db`, `--config`) and those read here. Tests clear exactly this list; a unit test keeps
/// it equal to the names the source reads.
pub const ENV_VARS: &[&str] = &[
    "DATABASE_PATH",
    "ORA_CONFIG",
    "ORA_BIND",
    "ORA_TOKEN",
    "ORA_ACTOR",
    "ORA_SYNCHRONOUS",
    "ORA_LOG",
    "ORA_BACKUP_DIR",
    "ORA_SITE_ID",
    "ORA_POSTGRES_URL",
    "ORA_POSTGRES_CA_FILE",
    "ORA_QDRANT_URL",
    "ORA_QDRANT_API_KEY",
    "ORA_QDRANT_CA_FILE",
    "ORA_REPLICA_DIR",
    "ORA_REPLICA_MODE",
    "ORA_STANDBY_TOKEN",
    "ORA_STANDBY_MODE",
];
/// Largest configuration file read (a config is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    database: DatabaseSection,
    #[serde(default)]
    writer: WriterSection,
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    log: LogSection,
    #[serde(default)]
    backup: BackupSection,
    #[serde(default)]
    health: HealthSection,
    #[serde(default)]
    maintenance: MaintenanceSection,
    #[serde(default)]
    remote: RemoteSection,
    #[serde(default)]
    replica: ReplicaSection,
    #[serde(default)]
    tuning: TuningSection,
    #[serde(default)]
    standby: standby::StandbySection,
    #[serde(default)]
    warehouse: warehouse::WarehouseSection,
}

/// `[tuning]`: how ora trades CPU for latency.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TuningSection {
    wait_awake: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplicaSection {
    dir: Option<PathBuf>,
    mode: Option<String>,
    max_lag_ms: Option<u64>,
    keep_days: Option<u32>,
    strict_timeout_ms: Option<u64>,
    base_interval_hours: Option<u32>,
    max_pending_mb: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupSection {
    dir: Option<PathBuf>,
    keep_days: Option<u32>,
    keep_weeks: Option<u32>,
    keep_months: Option<u32>,
    archive: Option<bool>,
    level: Option<u32>,
    threads: Option<usize>,
    /// An age public key: backups are encrypted to it.
    encrypt_to: Option<String>,
    /// An age identity file restores and drills decrypt with (when no --identity is given).
    identity_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthSection {
    max_backup_age_hours: Option<u32>,
    max_maintenance_age_hours: Option<u32>,
    max_wal_mb: Option<u64>,
    max_free_percent: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceSection {
    vacuum_free_percent: Option<f64>,
    vacuum_max_mb: Option<u64>,
    request_log_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabaseSection {
    path: Option<PathBuf>,
    synchronous: Option<Synchronous>,
    busy_timeout_ms: Option<u32>,
    cache_size_kib: Option<i64>,
    wal_autocheckpoint: Option<u32>,
    readers: Option<u32>,
    allow_negative_stock: Option<bool>,
    slow_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriterSection {
    max_batch: Option<usize>,
    queue_depth: Option<usize>,
    lock_wait_ms: Option<u64>,
    linger_gap_us: Option<u64>,
    linger_max_us: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    bind: Option<String>,
    token: Option<String>,
    tokens: Option<std::collections::BTreeMap<String, String>>,
    max_connections: Option<usize>,
    max_body_bytes: Option<usize>,
    read_timeout_ms: Option<u64>,
    hosts: Option<Vec<String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    allow_plain_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogSection {
    level: Option<String>,
}

/// The HTTP server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub bind: SocketAddr,
    /// The bearer tokens that may write, each with the name the audit trail records for its
    /// writes (`token` is named `api`); none leaves writes open (loopback only).
    pub tokens: Vec<NamedToken>,
    /// Connections served at once; more are answered 503.
    pub max_connections: usize,
    pub max_body_bytes: usize,
    /// The deadline of a whole request head (idle keep-alive included), of a whole body
    /// (408), and of an answer the client does not read.
    pub read_timeout: Duration,
    /// Host names (besides loopback names and IP addresses) requests may name in `Host`.
    pub hosts: Vec<String>,
    /// `[tuning] wait_awake`: an idle connection and the lone request's helper wait awake for
    /// a moment instead of sleeping (docs/architecture.md, "Waiting awake").
    pub wait_awake: bool,
    /// `tls_cert` and `tls_key`: serve HTTPS with this PEM certificate chain and key.
    pub tls: Option<TlsFiles>,
    /// Serve plain HTTP beyond loopback (tokens and data cross the network in clear).
    pub allow_plain_http: bool,
}

/// The server's certificate chain and key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A bearer token and the name its writes are recorded under.
#[derive(Clone)]
pub struct NamedToken {
    pub name: String,
    pub token: String,
}

impl std::fmt::Debug for NamedToken {
    // A token is never printed, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (token hidden)", self.name)
    }
}

/// The name `token` (and `ORA_TOKEN`) writes under.
pub const SINGLE_TOKEN_NAME: &str = "api";

/// `token` and `tokens` as one checked list: names 1-64 letters, digits, `-`, `_`, `.`; each
/// token at least 16 printable ASCII characters, none used twice.
fn named_tokens(
    single: Option<String>,
    named: Option<&std::collections::BTreeMap<String, String>>,
) -> std::result::Result<Vec<NamedToken>, String> {
    let mut out: Vec<NamedToken> = Vec::new();
    let pairs = single
        .map(|t| (SINGLE_TOKEN_NAME.to_string(), t))
        .into_iter()
        .chain(
            named
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    for (name, token) in pairs {
        let name_ok = !name.is_empty()
            && name.len() <= crate::store::audit::MAX_ACTOR
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(format!(
                "server.tokens: the name {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                crate::model::clip(&name)
            ));
        }
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the server token of {name:?} must be at least 16 printable ASCII characters without spaces"
            ));
        }
        if let Some(other) = out.iter().find(|t| t.name == name) {
            return Err(format!(
                "server.tokens: {:?} is named twice (`token` is named {SINGLE_TOKEN_NAME:?}); give each token its own name",
                other.name
            ));
        }
        if let Some(other) = out.iter().find(|t| t.token == token) {
            return Err(format!(
                "server.tokens: {name:?} and {:?} have the same token; give each its own, or its writes cannot be told apart",
                other.name
            ));
        }
        out.push(NamedToken { name, token });
    }
    Ok(out)
}

/// The validated configuration every command runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub store: StoreOptions,
    pub server: ServerConfig,
    pub log_level: log::LevelFilter,
    pub backup: BackupOptions,
    pub health: HealthOptions,
    pub maintain: MaintainOptions,
    pub remote: RemoteConfig,
    pub replica: ReplicaConfig,
    pub standby: crate::standby::StandbyConfig,
    /// `[backup] identity_file`: the age identities that decrypt encrypted backups.
    pub identity_file: Option<PathBuf>,
    /// `[database] slow_ms`: statements slower than this are logged (0: off).
    pub slow_ms: u64,
    /// The file the configuration came from, if any.
    pub source: Option<PathBuf>,
}

/// Values given on the command line (or by clap from their environment variables).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub db: Option<PathBuf>,
    pub bind: Option<String>,
}

/// A listen address: IP:PORT, or HOST:PORT resolved now (`localhost:8098`), an IPv4 address
/// preferred when the name has both.
fn resolve_bind(text: &str) -> std::result::Result<SocketAddr, String> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let shape = || {
        format!("bind address {text:?} is not IP:PORT or HOST:PORT (for example 127.0.0.1:8080 or localhost:8080)")
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(shape());
    }
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("bind address {text:?}: cannot resolve {host:?}: {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("bind address {text:?}: {host:?} resolves to no address"))
}

/// Reads an environment variable; unset and empty are the same.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Config {
    /// Loads defaults, the file, the environment (`ORA_BIND`, `ORA_TOKEN`, `ORA_SYNCHRONOUS`,
    /// `ORA_LOG`) and the overrides, in that order, and validates the result.
    pub fn load(file: Option<&Path>, over: &Overrides) -> Result<Config> {
        let fc = match file {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let (store, slow_ms) = store_options(&fc.database, &fc.writer, over)?;
        let mut server = server_config(&fc.server, over)?;
        let mut store = store;
        let wait_awake = fc.tuning.wait_awake.unwrap_or(true);
        server.wait_awake = wait_awake;
        store.writer.wait_awake = wait_awake;
        let log_level = log_level(&fc.log)?;
        let (backup, identity_file) = backup_options(&fc.backup, &store)?;
        let mut health = health_options(&fc.health, &store, &backup)?;
        let maintain = maintain_options(&fc.maintenance, &store)?;
        let remote = remote::from_section(&fc.remote)?;
        health.outbox_cap = remote.outbox_cap;
        health.max_lag_seconds = remote.max_lag_seconds;
        let replica = replica(&fc.replica, &backup)?;
        health.replica = replica.clone();
        health.warehouse = warehouse::from_section(&fc.warehouse)?;
        let standby = standby::from_section(&fc.standby)?;
        Ok(Config {
            store,
            server,
            log_level,
            backup,
            health,
            maintain,
            remote,
            replica,
            standby,
            identity_file,
            slow_ms,
            source: file.map(Path::to_path_buf),
        })
    }
}

/// `[database]` and `[writer]`, with `--db` and ORA_SYNCHRONOUS; also `database.slow_ms`.
///
/// Kept whole: one key after another of `[database]` and `[writer]`, each checked with its range
/// and its environment override; a list, not logic.
fn store_options(
    db: &DatabaseSection,
    w: &WriterSection,
    over: &Overrides,
) -> Result<(StoreOptions, u64)> {
    let mut store = StoreOptions::new(
        over.db
            .clone()
            .or_else(|| db.path.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DB_PATH)),
    );
    if store.path.as_os_str().is_empty() {
        return Err(bad("the database path is empty".into()));
    }
    let t = &mut store.tuning;
    t.synchronous = match env("ORA_SYNCHRONOUS") {
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "full" => Synchronous::Full,
            "normal" => Synchronous::Normal,
            _ => {
                return Err(bad(format!(
                    "ORA_SYNCHRONOUS must be full or normal, got {v:?}"
                )))
            }
        },
        None => db.synchronous.unwrap_or_default(),
    };
    t.busy_timeout_ms = ranged(
        "database.busy_timeout_ms",
        db.busy_timeout_ms,
        connection::DEFAULT_BUSY_TIMEOUT_MS,
        0..=600_000,
    )?;
    t.cache_size_kib = ranged(
        "database.cache_size_kib",
        db.cache_size_kib,
        connection::DEFAULT_CACHE_SIZE_KIB,
        100..=16_000_000,
    )?;
    t.wal_autocheckpoint = ranged(
        "database.wal_autocheckpoint",
        db.wal_autocheckpoint,
        connection::DEFAULT_WAL_AUTOCHECKPOINT,
        0..=10_000_000,
    )?;
    store.readers = ranged(
        "database.readers",
        db.readers,
        connection::DEFAULT_READERS,
        1..=64,
    )?;
    store.writer.max_batch = ranged(
        "writer.max_batch",
        w.max_batch,
        store::DEFAULT_MAX_BATCH,
        1..=100_000,
    )?;
    store.writer.queue_depth = ranged(
        "writer.queue_depth",
        w.queue_depth,
        store::DEFAULT_QUEUE_DEPTH,
        1..=1_000_000,
    )?;
    store.writer.lock_wait = Duration::from_millis(ranged(
        "writer.lock_wait_ms",
        w.lock_wait_ms,
        store::DEFAULT_LOCK_WAIT_MS,
        0..=3_600_000,
    )?);
    store.writer.linger_gap = Duration::from_micros(ranged(
        "writer.linger_gap_us",
        w.linger_gap_us,
        store::DEFAULT_LINGER_GAP_US,
        0..=10_000,
    )?);
    store.writer.linger_max = Duration::from_micros(ranged(
        "writer.linger_max_us",
        w.linger_max_us,
        store::DEFAULT_LINGER_MAX_US,
        0..=100_000,
    )?);
    store.writer.rules.allow_negative_stock = db.allow_negative_stock.unwrap_or(false);
    let slow_ms = ranged(
        "database.slow_ms",
        db.slow_ms,
        crate::store::slowlog::DEFAULT_SLOW_MS,
        0..=3_600_000,
    )?;
    store.tuning.slow_ms = slow_ms;

    Ok((store, slow_ms))
}

/// `[server]`, with `--bind`, ORA_BIND and ORA_TOKEN.
fn server_config(s: &ServerSection, over: &Overrides) -> Result<ServerConfig> {
    let bind_text = over
        .bind
        .clone()
        .or_else(|| env("ORA_BIND"))
        .or_else(|| s.bind.clone())
        .unwrap_or_else(|| DEFAULT_BIND.to_string());
    let bind = resolve_bind(&bind_text).map_err(bad)?;
    let token = env("ORA_TOKEN")
        .or_else(|| s.token.clone())
        .filter(|t| !t.is_empty());
    let tokens = named_tokens(token, s.tokens.as_ref()).map_err(bad)?;
    Ok(ServerConfig {
        bind,
        tokens,
        max_connections: ranged(
            "server.max_connections",
            s.max_connections,
            DEFAULT_MAX_CONNECTIONS,
            1..=10_000,
        )?,
        max_body_bytes: ranged(
            "server.max_body_bytes",
            s.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
            1024..=64 * 1024 * 1024,
        )?,
        read_timeout: Duration::from_millis(ranged(
            "server.read_timeout_ms",
            s.read_timeout_ms,
            DEFAULT_READ_TIMEOUT_MS,
            100..=600_000,
        )?),
        hosts: {
            let hosts: Vec<String> = s
                .hosts
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect();
            if let Some(bad_host) = hosts.iter().find(|h| {
                h.is_empty()
                    || h.len() > 253
                    || !h
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
            }) {
                return Err(bad(format!(
                    "server.hosts: {:?} is not a host name",
                    crate::model::clip(bad_host)
                )));
            }
            hosts
        },
        wait_awake: true,
        tls: match (&s.tls_cert, &s.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => {
                return Err(bad(
                    "server.tls_cert and server.tls_key go together: set both (HTTPS) or neither"
                        .into(),
                ))
            }
        },
        allow_plain_http: s.allow_plain_http.unwrap_or(false),
    })
}

/// `[log] level`, with ORA_LOG.
fn log_level(l: &LogSection) -> Result<log::LevelFilter> {
    let level_text = env("ORA_LOG").or_else(|| l.level.clone());
    Ok(match level_text {
        Some(l) => l.parse().map_err(|_| {
            bad(format!(
                "log level {l:?} is not one of off, error, warn, info, debug, trace"
            ))
        })?,
        None => log::LevelFilter::Warn,
    })
}

/// `[backup]`, with ORA_BACKUP_DIR; also the identity file drills and restores decrypt with.
fn backup_options(
    b: &BackupSection,
    store: &StoreOptions,
) -> Result<(BackupOptions, Option<PathBuf>)> {
    let mut backup = BackupOptions::for_db(&store.path);
    if let Some(d) = env("ORA_BACKUP_DIR")
        .map(PathBuf::from)
        .or_else(|| b.dir.clone())
    {
        backup.dir = d;
        backup.dir_is_default = false;
    }
    backup.keep_days = ranged(
        "backup.keep_days",
        b.keep_days,
        backup.keep_days,
        BACKUP_KEEP_DAYS,
    )?;
    backup.keep_weeks = ranged(
        "backup.keep_weeks",
        b.keep_weeks,
        backup.keep_weeks,
        0..=520,
    )?;
    backup.keep_months = ranged(
        "backup.keep_months",
        b.keep_months,
        backup.keep_months,
        0..=1200,
    )?;
    backup.archive = b.archive.unwrap_or(backup.archive);
    backup.level = ranged("backup.level", b.level, backup.level, 1..=12)?;
    backup.threads = ranged("backup.threads", b.threads, 0, 0..=64)?;
    if let Some(to) = b.encrypt_to.as_deref().filter(|t| !t.trim().is_empty()) {
        crate::file::backup::keys::recipient(to).map_err(bad)?;
        backup.encrypt_to = Some(to.trim().to_string());
    }
    let identity_file = b.identity_file.clone();
    backup.tuning = store.tuning.clone();
    Ok((backup, identity_file))
}

/// `[health]`; the remote and replica thresholds are filled in by the caller.
fn health_options(
    h: &HealthSection,
    store: &StoreOptions,
    backup: &BackupOptions,
) -> Result<HealthOptions> {
    let mut health = HealthOptions::for_db(&store.path);
    health.backup_dir = backup.dir.clone();
    health.keep = backup.keep();
    health.max_backup_age_hours = ranged(
        "health.max_backup_age_hours",
        h.max_backup_age_hours,
        health.max_backup_age_hours,
        1..=24 * 366,
    )?;
    health.max_maintenance_age_hours = ranged(
        "health.max_maintenance_age_hours",
        h.max_maintenance_age_hours,
        health.max_maintenance_age_hours,
        1..=24 * 366,
    )?;
    health.max_wal_bytes = ranged(
        "health.max_wal_mb",
        h.max_wal_mb,
        health.max_wal_bytes >> 20,
        1..=1 << 20,
    )? << 20;
    health.max_free_percent = ranged(
        "health.max_free_percent",
        h.max_free_percent,
        health.max_free_percent,
        0.0..=100.0,
    )?;
    Ok(health)
}

/// `[maintenance]`.
fn maintain_options(m: &MaintenanceSection, store: &StoreOptions) -> Result<MaintainOptions> {
    let mut maintain = MaintainOptions::default();
    maintain.vacuum_free_percent = ranged(
        "maintenance.vacuum_free_percent",
        m.vacuum_free_percent,
        maintain.vacuum_free_percent,
        0.0..=100.0,
    )?;
    maintain.vacuum_max_bytes = ranged(
        "maintenance.vacuum_max_mb",
        m.vacuum_max_mb,
        crate::ops::maintain::DEFAULT_VACUUM_MAX_MB,
        0..=1 << 24,
    )? << 20;
    maintain.request_log_days = ranged(
        "maintenance.request_log_days",
        m.request_log_days,
        maintain.request_log_days,
        1..=3650,
    )?;
    maintain.tuning = store.tuning.clone();
    Ok(maintain)
}

/// The error of a configuration that breaks a rule.
fn bad(m: String) -> Error {
    Error::config(format!("config: {m}"))
}

/// `[replica]`, with `ORA_REPLICA_DIR` and `ORA_REPLICA_MODE` over the file.
fn replica(sec: &ReplicaSection, backup: &BackupOptions) -> Result<ReplicaConfig> {
    use crate::replica::{self, Mode};
    let mut r = ReplicaConfig {
        dir: env("ORA_REPLICA_DIR")
            .map(PathBuf::from)
            .or_else(|| sec.dir.clone())
            .filter(|d| !d.as_os_str().is_empty()),
        level: backup.level,
        threads: backup.threads,
        encrypt_to: backup.encrypt_to.clone(),
        ..ReplicaConfig::default()
    };
    if let Some(m) = env("ORA_REPLICA_MODE").or_else(|| sec.mode.clone()) {
        r.mode = Some(Mode::parse(&m).ok_or_else(|| {
            Error::config(format!(
                "config: replica mode must be bounded or strict, got {:?}",
                crate::model::clip(&m)
            ))
        })?);
    }
    r.max_lag = Duration::from_millis(ranged(
        "replica.max_lag_ms",
        sec.max_lag_ms,
        replica::DEFAULT_MAX_LAG_MS,
        10..=3_600_000,
    )?);
    r.keep_days = ranged(
        "replica.keep_days",
        sec.keep_days,
        replica::DEFAULT_KEEP_DAYS,
        1..=3650,
    )?;
    r.strict_timeout = Duration::from_millis(ranged(
        "replica.strict_timeout_ms",
        sec.strict_timeout_ms,
        replica::DEFAULT_STRICT_TIMEOUT_MS,
        100..=600_000,
    )?);
    r.base_interval = Duration::from_secs(
        u64::from(ranged(
            "replica.base_interval_hours",
            sec.base_interval_hours,
            replica::DEFAULT_BASE_INTERVAL_HOURS,
            1..=24 * 366,
        )?) * 3600,
    );
    r.max_pending_bytes = ranged(
        "replica.max_pending_mb",
        sec.max_pending_mb,
        replica::DEFAULT_MAX_PENDING_MB,
        1..=1 << 20,
    )? << 20;
    Ok(r)
}

pub(crate) fn ranged<T>(
    key: &str,
    value: Option<T>,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    in_range(value.unwrap_or(default), &range)
        .map_err(|m| Error::config(format!("config: {key} = {m}")))
}

/// `v` when `range` holds it; otherwise says so. The one range check for a key, whether it
/// comes from the file, the environment or a command-line flag.
pub fn in_range<T>(v: T, range: &std::ops::RangeInclusive<T>) -> std::result::Result<T, String>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{v} is out of range ({}..={})",
            range.start(),
            range.end()
        ))
    }
}

fn read_file(path: &Path) -> Result<FileConfig> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        Error::config(format!(
            "config: cannot read {shown}: {e}; check --config / ORA_CONFIG"
        ))
    })?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(Error::config(format!(
            "config: {shown} is {} bytes, too large for a configuration file",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| Error::config(format!("config: cannot read {shown}: {e}")))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::config(format!("config: {shown} is not valid UTF-8")))?;
    toml::from_str(&text).map_err(|e| {
        let msg = e.to_string().replace('\n', " ");
        Error::config(format!("config: {shown}: {}", msg.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::ENV_VARS;

    /// The names in `env("...")` calls and clap's `env = "..."` attributes across `src/`.
    fn names_read_by_the_source() -> std::collections::BTreeSet<String> {
        fn walk(dir: &std::path::Path, out: &mut std::collections::BTreeSet<String>) {
            for e in std::fs::read_dir(dir).expect("read src").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let text = std::fs::read_to_string(&p).expect("read a source file");
                    for marker in ["env(\"", "env = \""] {
                        for (at, _) in text.match_indices(marker) {
                            let rest = &text[at + marker.len()..];
                            let name: String = rest
                                .chars()
                                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                                .collect();
                            if !name.is_empty() && rest[name.len()..].starts_with('"') {
                                out.insert(name);
                            }
                        }
                    }
                }
            }
        }
        let mut out = std::collections::BTreeSet::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut out,
        );
        out
    }

    #[test]
    fn env_vars_lists_every_variable_the_source_reads() {
        let listed: std::collections::BTreeSet<String> =
            ENV_VARS.iter().map(|s| s.to_string()).collect();
        let read = names_read_by_the_source();
        assert!(read.len() >= 10, "the scan found too little: {read:?}");
        assert_eq!(listed, read, "config::ENV_VARS and the source disagree");
    }

    /// What the loaded configuration says for the key an environment variable sets.
    fn effective(c: &super::Config, var: &str) -> String {
        let pg = c.remote.postgres.as_ref();
        let q = c.remote.qdrant.as_ref();
        match var {
            "ORA_BIND" => c.server.bind.to_string(),
            "ORA_TOKEN" => format!("{:?}", c.server.tokens.first().map(|t| t.token.clone())),
            "ORA_SYNCHRONOUS" => format!("{:?}", c.store.tuning.synchronous),
            "ORA_LOG" => c.log_level.to_string(),
            "ORA_BACKUP_DIR" => c.backup.dir.display().to_string(),
            "ORA_SITE_ID" => c.remote.site_id.clone(),
            "ORA_POSTGRES_URL" => format!("{:?}", pg.map(|p| &p.url)),
            "ORA_POSTGRES_CA_FILE" => format!("{:?}", pg.map(|p| &p.tls)),
            "ORA_QDRANT_URL" => format!("{:?}", q.map(|q| &q.url)),
            "ORA_QDRANT_API_KEY" => format!("{:?}", q.map(|q| &q.api_key)),
            "ORA_QDRANT_CA_FILE" => format!("{:?}", q.map(|q| &q.ca_file)),
            "ORA_REPLICA_DIR" => format!("{:?}", c.replica.dir),
            "ORA_REPLICA_MODE" => format!("{:?}", c.replica.mode),
            "ORA_STANDBY_TOKEN" => format!("{:?}", c.standby.token),
            "ORA_STANDBY_MODE" => format!("{:?}", c.standby.mode),
            other => panic!("no check for {other}"),
        }
    }

    // One rule for every key: flag > environment > file > default. For each variable the
    // config reads, the file's value beats the default and the variable beats the file.
    #[test]
    fn every_environment_variable_wins_over_the_file_and_the_file_over_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("file-ca.pem");
        let ca_env = dir.path().join("env-ca.pem");
        std::fs::write(&ca_file, "x").expect("write");
        std::fs::write(&ca_env, "x").expect("write");
        let file = dir.path().join("ora.toml");
        std::fs::write(
            &file,
            format!(
                r#"
[database]
synchronous = "normal"
[server]
bind = "127.0.0.1:9001"
token = "file-token-0123456789"
[log]
level = "error"
[backup]
dir = "/file/backups"
[remote]
site_id = "file-site"
[remote.postgres]
url = "postgresql://file@localhost/ora"
ca_file = "{}"
[remote.qdrant]
url = "https://file:6333"
api_key = "file-key"
ca_file = "{}"
[replica]
dir = "/file/replica"
mode = "bounded"
[standby]
token = "file-standby-token-0123"
mode = "sync"
"#,
                ca_file.display(),
                ca_file.display()
            ),
        )
        .expect("write config");
        let env_values: &[(&str, String)] = &[
            ("ORA_BIND", "127.0.0.1:9002".into()),
            ("ORA_TOKEN", "env-token-0123456789".into()),
            ("ORA_SYNCHRONOUS", "full".into()),
            ("ORA_LOG", "debug".into()),
            ("ORA_BACKUP_DIR", "/env/backups".into()),
            ("ORA_SITE_ID", "env-site".into()),
            ("ORA_POSTGRES_URL", "postgresql://env@localhost/ora".into()),
            ("ORA_POSTGRES_CA_FILE", ca_env.display().to_string()),
            ("ORA_QDRANT_URL", "https://env:6333".into()),
            ("ORA_QDRANT_API_KEY", "env-key".into()),
            ("ORA_QDRANT_CA_FILE", ca_env.display().to_string()),
            ("ORA_REPLICA_DIR", "/env/replica".into()),
            ("ORA_REPLICA_MODE", "strict".into()),
            ("ORA_STANDBY_TOKEN", "env-standby-token-0123".into()),
            ("ORA_STANDBY_MODE", "async".into()),
        ];
        // Every variable but the three clap reads (tested with real processes) is covered.
        let covered: std::collections::BTreeSet<&str> =
            env_values.iter().map(|(v, _)| *v).collect();
        let expected: std::collections::BTreeSet<&str> = ENV_VARS
            .iter()
            .copied()
            .filter(|v| !["DATABASE_PATH", "ORA_CONFIG", "ORA_ACTOR"].contains(v))
            .collect();
        assert_eq!(covered, expected, "a variable has no precedence check");
        for (var, _) in env_values {
            std::env::remove_var(var);
        }
        let none = super::Overrides::default();
        let defaults = super::Config::load(None, &none).expect("defaults load");
        let from_file = super::Config::load(Some(&file), &none).expect("the file loads");
        for (var, value) in env_values {
            let d = effective(&defaults, var);
            let f = effective(&from_file, var);
            assert_ne!(d, f, "{var}: the file's key does not beat the default");
            std::env::set_var(var, value);
            let loaded = super::Config::load(Some(&file), &none);
            std::env::remove_var(var);
            let e = effective(&loaded.expect("the file with the variable loads"), var);
            assert_ne!(e, f, "{var}: the variable does not beat the file");
            let shown = value.trim_start_matches("postgresql://");
            assert!(
                e.to_lowercase().contains(&shown.to_lowercase()),
                "{var}: {e} does not show {value}"
            );
        }
        // And a flag beats the variable.
        std::env::set_var("ORA_BIND", "127.0.0.1:9002");
        let over = super::Overrides {
            bind: Some("127.0.0.1:9003".into()),
            ..Default::default()
        };
        let loaded = super::Config::load(Some(&file), &over);
        std::env::remove_var("ORA_BIND");
        assert_eq!(
            loaded.expect("loads").server.bind.to_string(),
            "127.0.0.1:9003"
        );
    }
}
