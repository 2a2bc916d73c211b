//! Schema upgrades made safe: before ora migrates a database that holds data to a newer
//! schema, a verified backup is taken and named; when it cannot be taken, nothing is
//! migrated. The migration itself (one transaction for every pending step, so a failed one
//! leaves the file as it was) belongs to the store; this module never changes the database.

use std::path::Path;

use rusqlite::OpenFlags;

use crate::error::{Error, Result};
use crate::file::backup::{self, BackupOptions, BackupReport};
use crate::file::progress::Progress;
use crate::store::{connection, schema};

/// The schema version of an existing ora database and the version this ora would migrate it
/// to, when it needs a migration (`None`: missing, new, current, or not ora's).
pub fn pending(db: &Path) -> Result<Option<(i64, i64)>> {
    if !db.is_file() {
        return Ok(None);
    }
    let shown = db.display().to_string();
    let conn = connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| Error::failed(format!("open {shown}: {e}")))?;
    let id = schema::identify(&conn, &shown)?;
    drop(conn);
    let latest = schema::latest_version();
    Ok(
        (id.user_version > 0 && id.user_version < latest && id.tables > 0)
            .then_some((id.user_version, latest)),
    )
}

/// A backup taken before an upgrade.
#[derive(Debug)]
pub struct UpgradeBackup {
    pub from: i64,
    pub to: i64,
    pub backup: BackupReport,
}

impl UpgradeBackup {
    /// The sentence an operator reads.
    pub fn describe(&self, db: &Path) -> String {
        format!(
            "{}: upgrading the schema from version {} to {}; a backup was taken first: {}",
            db.display(),
            self.from,
            self.to,
            self.backup.file.display()
        )
    }
}

/// Takes a verified backup when `db` is about to be migrated; the answer says where it is.
pub fn backup_before_migration(db: &Path, o: &BackupOptions) -> Result<Option<UpgradeBackup>> {
    let Some((from, to)) = pending(db)? else {
        return Ok(None);
    };
    match backup::run(db, o, &Progress::hidden()) {
        Ok(backup) => Ok(Some(UpgradeBackup { from, to, backup })),
        Err(e) => Err(Error::failed(format!(
            "{} needs an upgrade from schema version {from} to {to}, and ora takes a backup first; that backup failed: {e}; nothing was changed (free space in {}, or set [backup] dir)",
            db.display(),
            o.dir.display()
        ))),
    }
}
