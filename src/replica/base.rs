//! Taking a base: a new generation in the replica directory that starts from a full, checked,
//! compressed copy of the database, with the capture position (seq and chain hash) read in the
//! very snapshot that was copied, so the records after it apply exactly; encrypted (with its
//! generation's key file) when the replica is (see `seal`). Uses one read
//! transaction and never takes the write lock (a strict writer may be holding it, waiting).

use std::path::Path;

use crate::error::{Error, Result};
use crate::file::backup::{self, catalog, keys};
use crate::file::progress::Progress;
use crate::fsutil::{self, Paced, PendingFile};
use crate::store::capture;
use crate::store::connection::Tuning;

use super::dir::{self, BaseMeta, Generation, ReplicaDir};
use super::seal;

/// How to take a base.
pub struct BaseOptions<'a> {
    pub tuning: &'a Tuning,
    /// libdeflate level and threads, as for backups.
    pub level: u32,
    pub threads: usize,
    pub reason: String,
    pub continues: bool,
    /// Encrypt the generation (see `seal`): the database's secret and the public key.
    pub seal: Option<SealWith<'a>>,
}

/// What a generation is encrypted with.
#[derive(Clone, Copy)]
pub struct SealWith<'a> {
    pub secret: &'a [u8],
    pub to: &'a str,
}

/// Writes generation `number` with a base copy of `db`; returns it once complete (its
/// `base.json` written and the directory fsynced).
///
/// Kept whole: the steps of a base (directory, snapshot or sealed snapshot, checksum sidecar,
/// fsyncs in order) must run in exactly this order for a crash at any point to leave either no
/// generation or a complete one; the order reads best in one place.
pub fn take(rd: &ReplicaDir, db: &Path, number: u64, o: &BaseOptions) -> Result<Generation> {
    let path = rd.generation_path(number);
    let w = |what: &str| {
        let what = format!("replica base: {what} in {}", path.display());
        move |e: std::io::Error| Error::io(what, e)
    };
    if path.exists() {
        // Left by a base that never completed (no base.json): start it over.
        std::fs::remove_dir_all(&path).map_err(w("remove an unfinished generation"))?;
    }
    std::fs::create_dir(&path).map_err(w("create the generation directory"))?;
    fsutil::sync_dir(&rd.path).map_err(w("fsync the replica directory"))?;
    let sealing = o
        .seal
        .map(|s| seal::Sealing::new(s.secret, s.to, &rd.marker.database_id, number))
        .transpose()?;
    let base_name = dir::base_name(sealing.is_some());
    let base = path.join(base_name);
    let mut pending = PendingFile::create(&base).map_err(w("create the base copy"))?;
    let opts = backup::SnapshotOptions {
        tuning: o.tuning,
        level: o.level,
        threads: o.threads,
        what: "replica base",
        dir: &rd.path,
        parallel_check: false,
    };
    let read = |conn: &rusqlite::Connection| {
        capture::state(conn)?.ok_or_else(|| {
            Error::usage(
                "replica base: the database has no replica state; run `ora init` to upgrade it",
            )
        })
    };
    // The sidecar's checksum is of the file as written (for an encrypted base, the age file).
    let (snap, sha256, bytes) = match &sealing {
        None => {
            let mut out = Paced::new(pending.file());
            let snap = backup::snapshot_into(db, &opts, &mut out, &Progress::hidden(), read)?;
            let (sha, n) = (snap.compressed.sha256.clone(), snap.compressed.bytes_out);
            (snap, sha, n)
        }
        Some(s) => {
            let own = s
                .key
                .base_identity()
                .map_err(w("derive the generation's identity"))?
                .to_public();
            let mut out = keys::encrypt_to_all(
                &[&s.to, &own],
                keys::Hashing::new(Paced::new(pending.file())),
            )
            .map_err(w("encrypt the base copy"))?;
            let snap = backup::snapshot_into(db, &opts, &mut out, &Progress::hidden(), read)?;
            let (sha, n) = out.finish().map_err(w("encrypt the base copy"))?.finish();
            (snap, sha, n)
        }
    };
    let state = snap.value;
    if state.database_id != rd.marker.database_id {
        return Err(Error::usage(
            dir::DirProblem::Foreign {
                database_id: rd.marker.database_id.clone(),
                site: rd.marker.site.clone(),
            }
            .message(&rd.path),
        ));
    }
    let side = catalog::sidecar(&base);
    let mut sum = PendingFile::create(&side).map_err(w("write the base checksum"))?;
    std::io::Write::write_all(
        sum.file(),
        catalog::sidecar_line(&sha256, base_name).as_bytes(),
    )
    .map_err(w("write the base checksum"))?;
    sum.commit().map_err(w("write the base checksum"))?;
    pending.commit().map_err(w("write the base copy"))?;
    if let Some(s) = &sealing {
        let wrapped = s.key.wrap(&s.to).map_err(w("encrypt the generation key"))?;
        dir::write_checked(&path.join(seal::KEY_FILE), &wrapped)
            .map_err(w("write the generation key"))?;
    }
    let now = crate::clock::now();
    let meta = BaseMeta {
        format: dir::FORMAT,
        database_id: state.database_id,
        generation: number,
        seq: state.seq,
        hash: fsutil::hex(&state.last_hash),
        taken: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        taken_ms: now.timestamp_millis(),
        reason: o.reason.clone(),
        continues: o.continues,
        bytes,
        database_bytes: snap.database_bytes,
        sha256,
        encrypted_to: sealing.as_ref().map(|s| s.to_text.clone()),
        key_salt: sealing.as_ref().map(|s| s.salt.clone()).unwrap_or_default(),
        key_check: sealing.as_ref().map(|s| s.key.check()).unwrap_or_default(),
    };
    let bytes = serde_json::to_vec_pretty(&meta)
        .map_err(|e| Error::failed(format!("replica base: encode base.json: {e}")))?;
    dir::write_checked(&path.join("base.json"), &bytes).map_err(w("write base.json"))?;
    fsutil::sync_dir(&rd.path).map_err(w("fsync the replica directory"))?;
    log::info!(
        "replica: generation {number} based at commit {} ({}) in {}",
        meta.seq,
        meta.reason,
        rd.path.display()
    );
    Ok(Generation {
        number,
        path,
        base: meta,
        segments: Vec::new(),
    })
}

/// Parses a hex chain hash from base.json.
pub fn hash_of(meta: &BaseMeta) -> Option<[u8; 32]> {
    fsutil::unhex32(&meta.hash)
}
