//! The SQLite file and everything that reads or writes it: connection tuning, migrations, the
//! reader pool, the single writer (a seat the callers take in turn), and the domain's reads
//! and writes. Nothing outside this module opens a domain write transaction.
//!
//! The facade: the store itself ([`Store`], its options, the write requests and their
//! answers, the error), the invariants, bulk loading and the writer's options at this root;
//! the namespaces other layers read through are public modules (connections, the schema,
//! change capture and the file's lineage, the one door to a file's bytes, the domain's reads
//! by table); the rest (the writer, the checkpointer, the commands, idempotency, the metrics'
//! and the planner's statistics) is private.

mod archived_shipments;
pub mod audit;
mod bulk;
pub mod capture;
pub mod chain;
mod changes;
mod changeset_ids;
mod checkpoint;
mod command;
pub mod connection;
pub mod dbfile;
mod digest;
mod error;
pub mod follow;
mod idempotency;
mod invariants;
pub mod kpis;
pub mod ledger;
pub mod lineage;
mod pagecache;
mod planner;
pub mod products;
pub mod rebase;
mod recorder;
pub mod role;
pub mod schema;
pub mod session;
pub mod shipments;
mod sinks;
pub mod slowlog;
mod stat1;
mod stats;
pub mod stock_watch;
pub mod sync_state;
pub mod vectors;
pub mod workflows;
mod writer;

pub use bulk::{Fixes, Loader, Reconcile};
pub use command::{
    execute, ImportReport, ImportRow, ProductRow, MAX_IMPORT_ROWS, MAX_LISTED_PROBLEMS,
};
pub use digest::row_hash;
pub(crate) use error::SqlContext;
pub use error::{Cause, StoreKind};
pub use idempotency::prune_before as prune_request_log;
pub use invariants::{
    check as check_invariants, check_beside as check_invariants_beside, guards_missing, ChainPoint,
    LedgerMismatch, VerifyOptions, VerifyReport,
};
pub use pagecache::install as install_page_cache;
pub use planner::refresh as refresh_planner_statistics;
pub use sinks::SinkKind;
pub use stats::Histogram;
pub use writer::{
    run_one, ReplicaSink, Ticket, DEFAULT_LINGER_GAP_US, DEFAULT_LINGER_MAX_US,
    DEFAULT_LOCK_WAIT_MS, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_DEPTH,
};

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use connection::ReaderManager;

pub use command::{Applied, Outcome, WriteOp, WriteRequest};
pub use connection::{Synchronous, Tuning};
pub use error::{Result, StoreError};
pub use ledger::{Movement, Rules};
pub use writer::{Writer, WriterOptions};

/// A pooled read-only connection.
pub type Reader = r2d2::PooledConnection<ReaderManager>;

/// Everything needed to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    pub tuning: Tuning,
    pub writer: WriterOptions,
    /// Size of the reader pool.
    pub readers: u32,
}

impl StoreOptions {
    pub fn new(path: impl Into<PathBuf>) -> StoreOptions {
        StoreOptions {
            path: path.into(),
            tuning: Tuning::default(),
            writer: WriterOptions::default(),
            readers: connection::DEFAULT_READERS,
        }
    }
}

/// How to treat a database that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create and migrate it (`init`, `serve`).
    Create,
    /// It must exist; migrate it if it is older (domain commands).
    Existing,
    /// It must exist and be current; no writer is started (reports, verify).
    ReadOnly,
}

/// An open database: a pool of readers and, unless opened read-only, the one writer.
pub struct Store {
    path: PathBuf,
    tuning: Tuning,
    pool: r2d2::Pool<ReaderManager>,
    /// Declared before the checkpointer: fields drop in order, and the writer must have
    /// committed everything before the final checkpoint.
    writer: Option<Writer>,
    /// The consumers of captured commits (the replica's shipper, the standbys' feed), once
    /// attached: closed after the writer (which may still hand them records) and before the
    /// checkpointer.
    sinks: std::sync::Mutex<Vec<(SinkKind, Arc<dyn writer::ReplicaSink>)>>,
    /// The file's role, as the writer checks it before it queues a client's write.
    gate: Arc<role::Gate>,
    checkpointer: Option<checkpoint::Checkpointer>,
}

impl Store {
    /// Checks, opens, migrates and starts the writer. Refuses (touching nothing) a file that
    /// is not SQLite, another application's database, or one made by a newer ora.
    pub fn open(opts: &StoreOptions, mode: OpenMode) -> Result<Store> {
        let path = opts.path.as_path();
        let shown = path.display().to_string();
        connection::check_path(path, mode == OpenMode::Create)?;
        let mut conn = connection::open_raw(path, mode == OpenMode::Create)?;
        let id = schema::identify(&conn, &shown)?;
        schema::check_compatible(id, &shown)?;
        if mode == OpenMode::Create {
            schema::prepare_new(&conn, &shown)?;
        }
        let mut checkpointer = None;
        let wal_pages = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(role::Gate::default());
        let writer = if mode == OpenMode::ReadOnly {
            if id.user_version < schema::latest_version() {
                return Err(StoreError::bad_database(format!(
                    "{shown} has schema version {} and this ora needs {}; run `ora init --db {shown}` to upgrade it",
                    id.user_version,
                    schema::latest_version()
                )));
            }
            drop(conn);
            None
        } else {
            connection::ensure_writable(&conn, path)?;
            connection::tune(&conn, &opts.tuning, connection::Role::Writer)
                .ctx(&format!("open {shown}"))?;
            schema::migrate(&mut conn, &shown)?;
            gate.set(&role::read(&conn)?);
            if opts.tuning.wal_autocheckpoint > 0 {
                conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
                    .ctx(&format!("open {shown}"))?;
                checkpointer = Some(checkpoint::Checkpointer::start(
                    path,
                    &opts.tuning,
                    opts.tuning.wal_autocheckpoint,
                    Arc::clone(&wal_pages),
                )?);
            }
            Some(Writer::start(
                conn,
                opts.writer.clone(),
                wal_pages,
                Arc::clone(&gate),
            )?)
        };
        let pool = reader_pool(path, &opts.tuning, opts.readers)?;
        Ok(Store {
            path: path.to_path_buf(),
            tuning: opts.tuning.clone(),
            pool,
            writer,
            sinks: std::sync::Mutex::new(Vec::new()),
            gate,
            checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read-only connection from the pool.
    pub fn read(&self) -> Result<Reader> {
        self.pool.get().map_err(|e| {
            StoreError::failed(format!("open a reader on {}: {e}", self.path.display()))
        })
    }

    /// Two read connections in read transactions on one state of the file (lined up by
    /// holding the write lock for a moment): a pooled one and one of their own, for a long
    /// check that runs beside another on a second core. Fails where the write lock cannot be
    /// taken (a read-only file or directory, or a writer holding it past the busy timeout).
    pub fn readers_on_one_state(&self) -> Result<(Reader, rusqlite::Connection)> {
        use r2d2::ManageConnection;
        let first = self.read()?;
        let second = ReaderManager::new(&self.path, &self.tuning)
            .connect()
            .ctx(&format!("open a reader on {}", self.path.display()))?;
        let gate = connection::open_raw(&self.path, false)?;
        let wait = Duration::from_millis(u64::from(self.tuning.busy_timeout_ms));
        gate.busy_timeout(wait)
            .ctx(&format!("open {}", self.path.display()))?;
        capture::line_up(&gate, wait, &[&first, &second])?;
        Ok((first, second))
    }

    /// The writer; fails for a store opened read-only.
    pub fn writer(&self) -> Result<&Writer> {
        self.writer.as_ref().ok_or_else(|| {
            StoreError::failed("this store was opened read-only; no writes are possible")
        })
    }

    /// Applies a write request and waits for its commit.
    pub fn write(&self, req: WriteRequest) -> Result<Applied> {
        self.writer()?.submit(req)
    }

    /// Sends every later commit of the writer to `sink` too (the replica's shipper, the
    /// standbys' feed), replacing a sink of the same kind.
    pub fn attach_sink(&self, kind: SinkKind, sink: Arc<dyn writer::ReplicaSink>) {
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        sinks.retain(|(k, _)| *k != kind);
        sinks.push((kind, sink));
        if let Some(w) = &self.writer {
            let all: Arc<dyn writer::ReplicaSink> = if sinks.len() == 1 {
                Arc::clone(&sinks[0].1)
            } else {
                Arc::new(sinks::Fanout {
                    sinks: sinks.clone(),
                })
            };
            w.attach_replica(all);
        }
    }

    /// Whether a sink of this kind is attached.
    pub fn has_sink(&self, kind: SinkKind) -> bool {
        self.sinks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(k, _)| *k == kind)
    }

    /// The file's role as the writer sees it.
    pub fn gate(&self) -> &Arc<role::Gate> {
        &self.gate
    }

    /// Changes the file's role through the writer and sets the gate from the result. A fence
    /// closes the gate first: no write queued after the call is taken.
    pub fn change_role(&self, c: role::Change) -> Result<(role::Role, Option<rebase::Rebased>)> {
        if let role::Change::Fence(why) = &c {
            self.gate.close(why);
        }
        let applied = self.write(WriteRequest::new(WriteOp::Role(c)));
        let refreshed = self.read().and_then(|r| role::read(&r));
        if let Ok(r) = &refreshed {
            self.gate.set(r);
        }
        match applied?.outcome {
            Outcome::RoleChanged { role, rebased } => Ok((role, rebased)),
            other => Err(StoreError::failed(format!(
                "the writer answered a role change with {other:?}"
            ))),
        }
    }

    /// Lets the writer commit what is queued and stops it; then the replica ships what is
    /// committed.
    pub fn close(mut self) {
        if let Some(w) = self.writer.as_mut() {
            w.shutdown();
        }
        let sinks = std::mem::take(&mut *self.sinks.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, s) in sinks {
            s.close();
        }
        if let Some(c) = self.checkpointer.as_mut() {
            c.stop();
        }
    }
}

fn reader_pool(path: &Path, tuning: &Tuning, size: u32) -> Result<r2d2::Pool<ReaderManager>> {
    let manager = ReaderManager::new(path, tuning);
    r2d2::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(0))
        .connection_timeout(Duration::from_secs(10))
        .build(manager)
        .map_err(|e| StoreError::failed(format!("open readers on {}: {e}", path.display())))
}

#[cfg(test)]
pub mod tests {
    use rusqlite::Connection;

    /// A database made by ora in a new temporary directory, and a plain connection to it.
    pub fn made_by_ora(name: &str) -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        super::Store::open(&super::StoreOptions::new(&path), super::OpenMode::Create)
            .unwrap()
            .close();
        let conn = Connection::open(&path).unwrap();
        (dir, conn)
    }
}
