//! The append end of the replica: the newest generation's last segment, opened for writing,
//! and the chain position at its end. Appends whole records and fsyncs them; cuts off a torn
//! tail (a crash mid-append) before appending; rolls to a new segment past a size; notices a
//! directory that went away (a USB disk pulled, `umount -l`) by comparing what the path now
//! names with the open file. Never rewrites a whole record except the one a failed COMMIT
//! left behind ([`Cursor::drop_last`]).
//!
//! Space is allotted ahead of the records, [`ALLOT`] bytes of zeros at a time, so that an
//! append's fsync writes only the data: an append that grows the file also makes the file
//! system commit its new size (on ext4, a journal commit: two flushes of the device instead
//! of one, and on a loop image each flush is an fsync of the image below). Readers take the
//! zeros after the last record as the end (`format`); a finished segment is trimmed to its
//! records when the next one starts.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crate::fsutil;
use crate::store::capture::Record;

use super::dir::{self, Generation, ReplicaDir};
use super::format::{self, Open, SegmentHeader, Tail};
use super::seal::RecordKey;

/// A new segment once the current one passes this size.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Zeros written ahead of the records at a time (one fsync with a new file size per this
/// many bytes of records).
pub const ALLOT: u64 = 1024 * 1024;

/// The end of the replica's chain, open for appending.
pub struct Cursor {
    pub generation: u64,
    pub database_id: String,
    path: PathBuf,
    file: File,
    /// Where the records end.
    len: u64,
    /// The file's size: the records, then zeros allotted ahead.
    size: u64,
    /// The last record's seq, hash and previous hash (the base's when none yet).
    pub tail_seq: i64,
    pub tail_hash: [u8; 32],
    pub tail_prev: Option<[u8; 32]>,
    /// Where the last record starts, for [`Cursor::drop_last`].
    last_start: Option<u64>,
    /// The replica directory's marker, to notice the directory going away.
    marker: PathBuf,
    /// (device, inode) of the open segment.
    id: (u64, u64),
    /// Commit time of the last record (ms), for lag and status.
    pub tail_ms: i64,
    /// The generation's record key when it is encrypted.
    key: Option<RecordKey>,
}

/// What resuming found at the end of the newest generation.
pub enum Resumed {
    Ready(Box<Cursor>),
    /// The chain cannot be continued (a damaged record): a new generation is needed.
    Broken(String),
}

fn open_write(path: &std::path::Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

impl Cursor {
    /// Opens the end of `g`, cutting off a torn tail. `base_hash` is the chain start of `g`;
    /// `key` its record key, which an encrypted generation needs (and a plain one refuses).
    ///
    /// Kept whole: one walk over every segment that carries the chain's tail (seq, hash, time,
    /// where the last record starts) from record to record and decides, per segment, between
    /// continuing, cutting a torn end and refusing; the six tail values are its state, and split
    /// pieces would pass all of them back and forth.
    pub fn resume(
        rd: &ReplicaDir,
        g: &Generation,
        base_hash: [u8; 32],
        key: Option<RecordKey>,
    ) -> std::io::Result<Resumed> {
        let open = match (&key, g.sealed()) {
            (None, false) => Open::Plain,
            (Some(k), true) => Open::Key(k),
            (Some(_), false) => {
                return Ok(Resumed::Broken(format!(
                    "generation {} is not encrypted and encryption is on",
                    g.number
                )))
            }
            (None, true) => {
                return Ok(Resumed::Broken(format!(
                    "generation {} is encrypted and encryption is off or its key changed",
                    g.number
                )))
            }
        };
        let mut tail_seq = g.base.seq;
        let mut tail_hash = base_hash;
        let mut tail_prev = None;
        let mut tail_ms = g.base.taken_ms;
        let mut last_start = None;
        // Check the chain through every segment; the last one is the one we append to.
        let mut last: Option<(PathBuf, u64)> = None;
        for (first, path) in &g.segments {
            let bytes = std::fs::read(path)?;
            let parsed = match format::parse_segment(&bytes, open) {
                Ok(p) => p,
                Err(e)
                    if bytes.len() < format::HEADER_LEN
                        && Some(path) == g.segments.last().map(|s| &s.1) =>
                {
                    // A segment whose header never made it to disk: start it again.
                    log::warn!(
                        "replica: {} has no complete header ({e}); rewriting it",
                        path.display()
                    );
                    std::fs::remove_file(path)?;
                    continue;
                }
                Err(e) => return Ok(Resumed::Broken(format!("{}: {e}", path.display()))),
            };
            if parsed.header.generation != g.number
                || parsed.header.first_seq != *first
                || parsed.header.database_id != rd.marker.database_id
            {
                return Ok(Resumed::Broken(format!(
                    "{} does not belong where it lies",
                    path.display()
                )));
            }
            let mut end = format::HEADER_LEN as u64;
            for (r, at) in &parsed.records {
                if r.seq != tail_seq + 1 || r.prev_hash != tail_hash {
                    return Ok(Resumed::Broken(format!(
                        "{}: record {} does not follow record {tail_seq}",
                        path.display(),
                        r.seq
                    )));
                }
                last_start = Some(end);
                tail_prev = Some(r.prev_hash);
                tail_seq = r.seq;
                tail_hash = r.hash;
                tail_ms = r.committed_ms;
                end = *at as u64;
            }
            match parsed.tail {
                Tail::Clean => {}
                Tail::Torn { at } => {
                    if Some(path) != g.segments.last().map(|s| &s.1) {
                        return Ok(Resumed::Broken(format!(
                            "{} is cut short in the middle of the history",
                            path.display()
                        )));
                    }
                    log::warn!(
                        "replica: cutting an incomplete record off the end of {} (a crash while it was written; it was never acknowledged)",
                        path.display()
                    );
                    let f = open_write(path)?;
                    f.set_len(at as u64)?;
                    f.sync_all()?;
                    end = at as u64;
                }
                Tail::Damaged { at, why } => {
                    return Ok(Resumed::Broken(format!(
                        "{} at byte {at}: {why}",
                        path.display()
                    )))
                }
            }
            last = Some((path.clone(), end));
        }
        let (path, len) = match last {
            Some(l) => l,
            None => {
                let p = g.path.join(dir::segment_name(tail_seq + 1));
                new_segment(&p, &rd.marker.database_id, g.number, tail_seq + 1)?;
                fsutil::sync_dir(&g.path)?;
                let len = format::HEADER_LEN as u64;
                last_start = None;
                (p, len)
            }
        };
        let file = open_write(&path)?;
        let m = file.metadata()?;
        let size = m.len().max(len);
        Ok(Resumed::Ready(Box::new(Cursor {
            generation: g.number,
            database_id: rd.marker.database_id.clone(),
            path,
            file,
            len,
            size,
            tail_seq,
            tail_hash,
            tail_prev,
            last_start,
            marker: rd.path.join(dir::MARKER),
            id: (m.dev(), m.ino()),
            tail_ms,
            key,
        })))
    }

    /// Whether the directory is still the one the segment lives in (a pulled or lazily
    /// unmounted disk leaves the path naming something else, or nothing).
    pub fn still_there(&self) -> bool {
        self.marker.exists()
            && std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id)
    }

    /// Whether another process appended to (or cut) the segment since this cursor last did:
    /// its size changed, or the bytes at our end are no longer the zeros allotted ahead.
    pub fn moved(&self) -> bool {
        use std::os::unix::fs::FileExt;
        if std::fs::metadata(&self.path).map_or(true, |m| m.len() != self.size) {
            return true;
        }
        let mut b = [0u8; 4];
        match self.file.read_at(&mut b, self.len) {
            Ok(n) => b[..n].iter().any(|&x| x != 0),
            Err(_) => true,
        }
    }

    /// Appends `recs` (which must continue the chain) and fsyncs them.
    pub fn append(&mut self, recs: &[Record]) -> std::io::Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        if self.len >= SEGMENT_BYTES {
            self.roll()?;
        }
        let sealed = self.key.is_some();
        let mut buf = Vec::with_capacity(recs.iter().map(|r| format::record_len(r, sealed)).sum());
        let mut starts = Vec::with_capacity(recs.len());
        for r in recs {
            starts.push(self.len + buf.len() as u64);
            format::encode_record(r, &mut buf, self.key.as_ref())?;
        }
        if let Err(e) = self.write_synced(buf) {
            // Whatever part made it is cut off again, with the space allotted ahead, so the
            // next append starts clean; if even that fails the next resume does it.
            let _ = self.file.set_len(self.len);
            self.size = self.len;
            return Err(e);
        }
        if let (Some(r), Some(start)) = (recs.last(), starts.last()) {
            self.last_start = Some(*start);
            self.tail_prev = Some(r.prev_hash);
            self.tail_seq = r.seq;
            self.tail_hash = r.hash;
            self.tail_ms = r.committed_ms;
        }
        Ok(())
    }

    /// Writes `buf` at the end of the records and fsyncs it. Into the zeros allotted ahead
    /// when it fits, else with a new allotment in the same write; a buffer larger than
    /// [`format::APPEND_MAX`] grows the file by itself (the zeros ahead cut off first, and
    /// that made durable, so a crash cannot leave its bytes among allotted zeros farther
    /// than a reader takes for a torn append).
    fn write_synced(&mut self, mut buf: Vec<u8>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let n = u64::try_from(buf.len()).map_err(std::io::Error::other)?;
        let end = self.len.checked_add(n).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "segment too large")
        })?;
        if buf.len() > format::APPEND_MAX {
            if self.size > self.len {
                self.file.set_len(self.len)?;
                self.file.sync_all()?;
                self.size = self.len;
            }
        } else if end > self.size {
            let allotted = end.div_ceil(ALLOT).saturating_mul(ALLOT);
            let zeros = usize::try_from(allotted - end).map_err(std::io::Error::other)?;
            buf.resize(buf.len() + zeros, 0);
        }
        let reach = self.len + buf.len() as u64;
        self.file.write_all_at(&buf, self.len)?;
        self.file.sync_data()?;
        self.len = end;
        self.size = self.size.max(reach);
        Ok(())
    }

    /// Removes the last record (one whose COMMIT failed after it was shipped).
    pub fn drop_last(&mut self, seq: i64) -> std::io::Result<bool> {
        match (self.last_start, self.tail_prev) {
            (Some(start), Some(prev)) if self.tail_seq == seq => {
                self.file.set_len(start)?;
                self.file.sync_data()?;
                self.len = start;
                self.size = start;
                self.tail_seq = seq - 1;
                self.tail_hash = prev;
                self.tail_prev = None;
                self.last_start = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn roll(&mut self) -> std::io::Result<()> {
        // The finished segment keeps its records only (zeros left there would read as the
        // end anyway).
        if self.size > self.len {
            self.file.set_len(self.len)?;
            self.file.sync_all()?;
        }
        let dir = fsutil::parent_dir(&self.path);
        let p = dir.join(dir::segment_name(self.tail_seq + 1));
        new_segment(&p, &self.database_id, self.generation, self.tail_seq + 1)?;
        fsutil::sync_dir(&dir)?;
        let file = open_write(&p)?;
        let m = file.metadata()?;
        self.file = file;
        self.id = (m.dev(), m.ino());
        self.path = p;
        self.len = format::HEADER_LEN as u64;
        self.size = m.len().max(self.len);
        self.last_start = None;
        Ok(())
    }
}

fn new_segment(
    path: &std::path::Path,
    database_id: &str,
    generation: u64,
    first_seq: i64,
) -> std::io::Result<()> {
    let mut f = fsutil::create_private(path)?;
    f.write_all(
        &SegmentHeader {
            database_id: database_id.to_string(),
            generation,
            first_seq,
        }
        .encode(),
    )?;
    f.sync_all()
}
