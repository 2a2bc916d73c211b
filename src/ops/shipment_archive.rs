//! `ora shipment archive`: orders shipped before a day move out of the live database into a
//! gzipped SQLite file with a `.sha256` sidecar in the archive directory (`gunzip` and
//! `sqlite3` read it; so does `ora shipment show ORDER --archive FILE`), then leave the live
//! tables in short writer transactions that also record which file holds which order. Their
//! Ship movements stay in the ledger. Never removes an order before the file holding it is
//! written, synced and checked; never holds the old orders in memory, nor the write lock for
//! more than one slice.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rusqlite::OpenFlags;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::backup::{catalog, source};
use crate::file::progress::Progress;
use crate::fsutil::PendingFile;
use crate::store::shipments::{self, ArchiveRequest, OrderDetail};
use crate::store::{capture, connection, dbfile, Outcome, Store, WriteOp, WriteRequest};

/// What an archive run did.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveReport {
    /// The archive file (none when no order was old enough).
    pub file: Option<PathBuf>,
    pub before: String,
    pub orders: usize,
    pub items: usize,
    pub bytes: u64,
    pub sha256: String,
    pub seconds: f64,
}

/// Live rows (an order or an item) one request of the removal offers the writer, which
/// removes as many of them as it can in one slice's time ([`capture::SLICE_WORK`]).
const SLICE_ROWS: usize = 4_000;

/// Moves the orders shipped before `before` into a new archive file in `dir`.
///
/// The orders are copied from one read snapshot into a scratch SQLite file, row by row; it is
/// compressed into place with its checksum, and only then are the orders removed from the live
/// tables in short writer requests (each stops after [`capture::SLICE_WORK`]), so the
/// warehouse's writes go on between the slices. Any error before the first slice deletes the archive and
/// leaves the database untouched; an error after it stops the run with every removed order
/// recorded as held by the file, and the rest still live (running the archive again moves
/// them).
pub fn archive(store: &Store, dir: &Path, before: &str) -> Result<ArchiveReport> {
    crate::model::validate_date("--before", before).map_err(Error::usage)?;
    let t0 = Instant::now();
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("shipment archive: create {}", dir.display()), e))?;
    let stamp = crate::clock::now().format("%Y%m%dT%H%M%SZ");
    let name = format!("shipments-before-{before}-{stamp}.db.gz");
    let dest = dir.join(&name);
    let mut scratch = PendingFile::create(&dir.join(format!("{name}.build")))
        .map_err(|e| write_error(&dest, e))?;
    scratch.close().map_err(|e| write_error(&dest, e))?;
    let copied = fill(store, scratch.temp_path(), before)?;
    let mut report = ArchiveReport {
        file: None,
        before: before.to_string(),
        orders: usize::try_from(copied.orders).unwrap_or(usize::MAX),
        items: usize::try_from(copied.items).unwrap_or(usize::MAX),
        bytes: 0,
        sha256: String::new(),
        seconds: 0.0,
    };
    if copied.orders > 0 {
        let sha256 = compress(scratch.temp_path(), &dest, &name)?;
        let first = ArchiveRequest::first(before, &dest.display().to_string(), &sha256);
        if let Err(e) = remove(store, scratch.temp_path(), &first, SLICE_ROWS) {
            return Err(e.abandon(&dest, copied.orders));
        }
        report.bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        report.file = Some(dest);
        report.sha256 = sha256;
    }
    drop(scratch);
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

fn write_error(dest: &Path, e: std::io::Error) -> Error {
    Error::io(format!("shipment archive: write {}", dest.display()), e)
}

/// Copies the old orders into a new archive file at `path`, checked; what it holds.
fn fill(store: &Store, path: &Path, before: &str) -> Result<shipments::ArchiveCopy> {
    let conn = connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::failed(format!("shipment archive: create the archive: {e}")))?;
    let failed = |e: String| Error::failed(format!("shipment archive: write the archive: {e}"));
    conn.execute_batch("PRAGMA journal_mode = DELETE; BEGIN;")
        .and_then(|()| conn.execute_batch(shipments::ARCHIVE_SCHEMA))
        .map_err(|e| failed(e.to_string()))?;
    let copied = shipments::copy_before(&*store.read()?, before, &conn)?;
    conn.execute_batch("COMMIT;")
        .map_err(|e| failed(e.to_string()))?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .map_err(|e| failed(e.to_string()))?;
    if check != "ok" {
        return Err(failed(format!(
            "the archive's integrity check said {check}"
        )));
    }
    Ok(copied)
}

/// Compresses the archive at `plain` into `dest` with its `.sha256` sidecar; the checksum.
fn compress(plain: &Path, dest: &Path, name: &str) -> Result<String> {
    let write_err = |e| write_error(dest, e);
    let mut gz = PendingFile::create(dest).map_err(write_err)?;
    {
        let mut input = dbfile::open(plain).map_err(write_err)?;
        let mut enc = flate2::write::GzEncoder::new(gz.file(), flate2::Compression::new(6));
        std::io::copy(&mut input, &mut enc).map_err(write_err)?;
        enc.finish().map_err(write_err)?;
    }
    let dest = gz.commit().map_err(write_err)?;
    let sidecar = || -> std::io::Result<String> {
        let sha256 = catalog::sha256_file(&dest)?;
        let mut side = PendingFile::create(&catalog::sidecar(&dest))?;
        side.file()
            .write_all(catalog::sidecar_line(&sha256, name).as_bytes())?;
        side.commit()?;
        Ok(sha256)
    };
    sidecar().map_err(|e| {
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::remove_file(catalog::sidecar(&dest));
        write_err(e)
    })
}

/// Why a removal stopped, and how many orders it had removed by then.
struct Stopped {
    error: Error,
    removed: i64,
}

impl Stopped {
    /// The error to report: with nothing removed the archive files go (the database is as it
    /// was); otherwise they stay, and the error says what moved and what did not.
    fn abandon(self, dest: &Path, total: i64) -> Error {
        if self.removed == 0 {
            let _ = std::fs::remove_file(dest);
            let _ = std::fs::remove_file(catalog::sidecar(dest));
            return self.error;
        }
        let shown = dest.display().to_string();
        let removed = self.removed;
        self.error.map_message(|m| {
            format!(
                "{m}; {removed} of the {total} orders were moved to {shown} before this, the rest stay live (the file holds them too): run the archive again to move them"
            )
        })
    }
}

/// Removes the orders of the archive at `plain` from the live tables, slice by slice: each
/// request offers the writer the next orders (up to `rows` live rows); it removes as many as
/// its time for one slice allows, and the next request begins after the last it removed.
fn remove(
    store: &Store,
    plain: &Path,
    a: &ArchiveRequest,
    rows: usize,
) -> std::result::Result<(), Stopped> {
    let stop = |error: Error, removed| Stopped { error, removed };
    let conn = connection::open_with_flags(
        plain,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        stop(
            Error::failed(format!("shipment archive: read the archive back: {e}")),
            0,
        )
    })?;
    let (mut req, mut removed, mut last) = (a.clone(), 0i64, None::<String>);
    loop {
        req.orders = shipments::next_slice(&conn, last.as_deref(), rows)
            .map_err(|e| stop(e.into(), removed))?;
        if req.orders.is_empty() {
            return Ok(());
        }
        let now = match store.write(WriteRequest::new(WriteOp::ArchiveShipments(req.clone()))) {
            Ok(done) => match done.outcome {
                Outcome::ShipmentsArchived(a) => a,
                _ => {
                    return Err(stop(
                        Error::failed("shipment archive: unexpected answer from the writer"),
                        removed,
                    ))
                }
            },
            Err(e) => return Err(stop(e.into(), removed)),
        };
        let taken = usize::try_from(now.orders - removed).unwrap_or(0);
        let Some(end) = taken.checked_sub(1).and_then(|i| req.orders.get(i)) else {
            return Err(stop(
                Error::failed(format!(
                    "shipment archive: the writer removed {taken} of the {} orders offered",
                    req.orders.len()
                )),
                removed,
            ));
        };
        (req.archive, removed, last) = (Some(now.id), now.orders, Some(end.order.clone()));
        capture::hand_over();
    }
}

/// One order read back from an archive file (checked against its sidecar first).
pub fn show_archived(file: &Path, order: &str) -> Result<Option<OrderDetail>> {
    let shown = file.display();
    match catalog::check_sum(file) {
        Ok(catalog::Checksum::Ok | catalog::Checksum::Missing) => {}
        Ok(catalog::Checksum::Mismatch { .. }) => {
            return Err(Error::check_failed(format!(
                "shipment show: {shown} does not match its checksum: the archive is damaged; use another copy"
            )))
        }
        Err(e) => return Err(Error::io(format!("shipment show: read {shown}"), e)),
    }
    let tmp =
        tempfile::tempdir().map_err(|e| Error::io("shipment show: a scratch directory", e))?;
    let mut scratch = PendingFile::create(&tmp.path().join("archive.db"))
        .map_err(|e| Error::io("shipment show: a scratch copy", e))?;
    source::extract(
        file,
        scratch.file(),
        "shipment show",
        &Progress::hidden(),
        &[],
    )?;
    scratch
        .close()
        .map_err(|e| Error::io("shipment show: a scratch copy", e))?;
    let conn = connection::open_with_flags(
        scratch.temp_path(),
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        Error::usage(format!(
            "shipment show: {shown} is not a shipment archive: {e}"
        ))
    })?;
    let found = shipments::get(&conn, order).map_err(|e| {
        Error::usage(format!(
            "shipment show: {shown} is not a shipment archive ({e})"
        ))
    })?;
    drop(conn);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{OpenMode, StoreOptions};

    fn count(store: &Store, sql: &str) -> i64 {
        store
            .read()
            .unwrap()
            .query_row(sql, [], |r| r.get(0))
            .unwrap()
    }

    /// A sample of `rows` movements in `dir`, its store, the day a year ago, the query
    /// counting the live orders shipped before it, and their number.
    fn old_orders(dir: &Path, rows: u64, skus: usize) -> (Store, String, String, i64) {
        let db = dir.join("ora.db");
        crate::sample::generate(&db, rows, skus, 9).unwrap();
        let store = Store::open(&StoreOptions::new(&db), OpenMode::Existing).unwrap();
        let before = (crate::clock::now() - chrono::Duration::days(365))
            .format("%Y-%m-%d")
            .to_string();
        let old = format!("SELECT count(*) FROM shipped_orders WHERE ship_date < '{before}'");
        let total = count(&store, &old);
        (store, before, old, total)
    }

    // The removal goes slice by slice: a slice that cannot be removed (here it names an order
    // the live database does not have) stops the run with the slices before it removed and
    // recorded as held by the file, the rest live; the error says so, the file stays, and the
    // next run moves the rest.
    #[test]
    fn a_run_stopped_part_way_keeps_what_it_moved_and_the_next_moves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (store, before, old, total) = old_orders(dir.path(), 40_000, 100);
        assert!(
            total > 200,
            "{total} old orders: too few for several slices"
        );
        let plain = dir.path().join("archive.db");
        let copied = fill(&store, &plain, &before).unwrap();
        assert_eq!(copied.orders, total);
        rusqlite::Connection::open(&plain)
            .unwrap()
            .execute(
                "INSERT INTO shipped_orders VALUES ('ZZZ-NOT-LIVE', '2000-01-01', 1, 1, '2000-01-01T00:00:00Z')",
                [],
            )
            .unwrap();
        let dest = dir.path().join("archive.db.gz");
        std::fs::write(&dest, b"the archive").unwrap();
        let first = ArchiveRequest::first(&before, "archive.db.gz", "00");
        // Slices of at most 100 orders: the one holding the order that is not live comes
        // after others were removed.
        let stopped = remove(&store, &plain, &first, 200).unwrap_err();
        let removed = stopped.removed;
        assert!(removed > 0 && removed < total, "{removed} of {total}");
        assert_eq!(count(&store, &old), total - removed, "the rest stay live");
        assert_eq!(
            count(&store, "SELECT count(*) FROM archived_orders"),
            removed
        );
        assert_eq!(
            count(&store, "SELECT orders FROM shipment_archives"),
            removed,
            "the archive counts what it holds"
        );
        let err = stopped.abandon(&dest, total + 1);
        assert_eq!(err.kind(), crate::error::Kind::Conflict, "{err}");
        assert!(
            err.message()
                .contains(&format!("{removed} of the {} orders were moved", total + 1)),
            "{err}"
        );
        assert!(dest.exists(), "the file holding the moved orders stays");

        let out = dir.path().join("archives");
        let report = archive(&store, &out, &before).unwrap();
        assert_eq!(report.orders as i64, total - removed);
        assert_eq!(count(&store, &old), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM archived_orders"), total);
        store.close();
    }

    // A slice with no time to spare removes one order; the next request begins right after
    // it, so every order leaves, once, and the archive counts each.
    #[test]
    fn each_slice_goes_on_after_the_last_order_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, before, old, total) = old_orders(dir.path(), 5_000, 50);
        assert!(total > 10, "{total} old orders");
        let plain = dir.path().join("archive.db");
        fill(&store, &plain, &before).unwrap();
        let first = ArchiveRequest {
            work_ms: Some(0),
            ..ArchiveRequest::first(&before, "archive.db.gz", "00")
        };
        if let Err(e) = remove(&store, &plain, &first, SLICE_ROWS) {
            panic!("{}", e.error);
        }
        assert_eq!(count(&store, &old), 0);
        assert_eq!(count(&store, "SELECT count(*) FROM archived_orders"), total);
        assert_eq!(count(&store, "SELECT orders FROM shipment_archives"), total);
        let commits = store
            .writer()
            .unwrap()
            .stats()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            commits >= total as u64,
            "{commits} commits for {total} orders"
        );
        store.close();
    }
}
