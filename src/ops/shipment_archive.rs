//! `ora shipment archive`: orders shipped before a day move out of the live database into a
//! gzipped SQLite file with a `.sha256` sidecar in the archive directory (`gunzip` and
//! `sqlite3` read it; so does `ora shipment show ORDER --archive FILE`), then leave the live
//! tables in one writer transaction that also records which file holds which order. Their
//! Ship movements stay in the ledger. Never removes an order before the file holding it is
//! written, synced and checked; a failure at any step leaves the live database as it was.

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
use crate::store::{connection, dbfile, Outcome, Store, WriteOp, WriteRequest};

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

/// Moves the orders shipped before `before` into a new archive file in `dir`.
///
/// Kept whole: an all-or-nothing sequence (read the orders, write them into a scratch SQLite
/// file, compress it into place with its checksum, then remove them through the writer in one
/// request that names the orders and the count) whose steps share the archive's clean-up: any
/// error before the removal deletes the archive and leaves the database untouched.
pub fn archive(store: &Store, dir: &Path, before: &str) -> Result<ArchiveReport> {
    crate::model::validate_date("--before", before).map_err(Error::usage)?;
    let t0 = Instant::now();
    let (orders, items) = shipments::rows_before(&*store.read()?, before)?;
    let mut report = ArchiveReport {
        file: None,
        before: before.to_string(),
        orders: orders.len(),
        items: items.len(),
        bytes: 0,
        sha256: String::new(),
        seconds: 0.0,
    };
    if orders.is_empty() {
        report.seconds = t0.elapsed().as_secs_f64();
        return Ok(report);
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("shipment archive: create {}", dir.display()), e))?;
    let stamp = crate::clock::now().format("%Y%m%dT%H%M%SZ");
    let name = format!("shipments-before-{before}-{stamp}.db.gz");
    let dest = dir.join(&name);
    let write_err =
        |e: std::io::Error| Error::io(format!("shipment archive: write {}", dest.display()), e);

    // The orders into a scratch SQLite file, which is then compressed into place.
    let mut scratch = PendingFile::create(&dir.join(format!("{name}.build"))).map_err(write_err)?;
    scratch.close().map_err(write_err)?;
    {
        let conn = connection::open_with_flags(
            scratch.temp_path(),
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::failed(format!("shipment archive: create the archive: {e}")))?;
        let fill = || -> rusqlite::Result<()> {
            conn.execute_batch("PRAGMA journal_mode = DELETE; BEGIN;")?;
            conn.execute_batch(shipments::ARCHIVE_SCHEMA)?;
            let put = |table: &str,
                       cols: &str,
                       rows: &[Vec<rusqlite::types::Value>]|
             -> rusqlite::Result<()> {
                let n = cols.split(',').count();
                let marks = vec!["?"; n].join(", ");
                let mut st =
                    conn.prepare(&format!("INSERT INTO {table} ({cols}) VALUES ({marks})"))?;
                for r in rows {
                    st.execute(rusqlite::params_from_iter(r.iter()))?;
                }
                Ok(())
            };
            put("shipped_orders", shipments::ORDER_COLUMNS, &orders)?;
            put("shipped_items", shipments::ITEM_COLUMNS, &items)?;
            conn.execute_batch("COMMIT;")?;
            let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if check != "ok" {
                return Err(rusqlite::Error::InvalidQuery);
            }
            Ok(())
        };
        fill().map_err(|e| Error::failed(format!("shipment archive: write the archive: {e}")))?;
    }
    let mut gz = PendingFile::create(&dest).map_err(write_err)?;
    {
        let mut input = dbfile::open(scratch.temp_path()).map_err(write_err)?;
        let mut enc = flate2::write::GzEncoder::new(gz.file(), flate2::Compression::new(6));
        std::io::copy(&mut input, &mut enc).map_err(write_err)?;
        enc.finish().map_err(write_err)?;
    }
    drop(scratch);
    let dest = gz.commit().map_err(write_err)?;
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(&dest);
        let _ = std::fs::remove_file(catalog::sidecar(&dest));
        e
    };
    let sha256 = catalog::sha256_file(&dest).map_err(|e| cleanup(write_err(e)))?;
    let mut side =
        PendingFile::create(&catalog::sidecar(&dest)).map_err(|e| cleanup(write_err(e)))?;
    side.file()
        .write_all(catalog::sidecar_line(&sha256, &name).as_bytes())
        .map_err(|e| cleanup(write_err(e)))?;
    side.commit().map_err(|e| cleanup(write_err(e)))?;

    let order_numbers: Vec<String> = orders
        .iter()
        .filter_map(|r| match r.first() {
            Some(rusqlite::types::Value::Text(t)) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let req = ArchiveRequest {
        before: before.to_string(),
        orders: order_numbers,
        items: items.len() as i64,
        file: dest.display().to_string(),
        sha256: sha256.clone(),
    };
    match store.write(WriteRequest::new(WriteOp::ArchiveShipments(req))) {
        Ok(done) if matches!(done.outcome, Outcome::ShipmentsArchived(_)) => {}
        Ok(_) => {
            return Err(cleanup(Error::failed(
                "shipment archive: unexpected answer from the writer",
            )))
        }
        Err(e) => return Err(cleanup(e.into())),
    }
    report.bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    report.file = Some(dest);
    report.sha256 = sha256;
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
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
