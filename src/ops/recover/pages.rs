//! Reading raw pages of a possibly damaged database file, with the committed frames of its WAL
//! laid over them (as SQLite would on open), without trusting anything: every offset is
//! checked, a page beyond the end of a truncated file is simply missing. Never writes.

use std::collections::HashMap;
use std::fs::File;

use crate::store::dbfile::{self, RawFile};
use std::os::unix::fs::FileExt;
use std::path::Path;

const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The pages of one database file (plus WAL).
pub struct Pages {
    file: RawFile,
    file_len: u64,
    pub page_size: usize,
    /// Page size minus the reserved bytes at the end of each page.
    pub usable: usize,
    /// Number of pages (from the file length, or the WAL's commit size if larger).
    pub count: u32,
    /// Latest committed WAL frame of each page: (file, offset of the page data).
    wal: Option<(RawFile, HashMap<u32, u64>)>,
    /// Whether the database header was readable (else the page size is a guess).
    pub header_ok: bool,
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

pub fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Pages {
    /// Opens `db` (and `db-wal` when present).
    pub fn open(db: &Path) -> std::io::Result<Pages> {
        let file = dbfile::open(db)?;
        let file_len = file.file().metadata()?.len();
        let mut head = [0u8; 100];
        let got = file.file().read_at(&mut head, 0).unwrap_or(0);
        let mut header_ok = got == 100 && &head[..16] == HEADER_MAGIC;
        let mut page_size = if header_ok {
            match be16(&head, 16) {
                1 => 65_536,
                n => n,
            }
        } else {
            0
        };
        if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
            header_ok = false;
            page_size = 0;
        }
        let mut reserved = if header_ok { usize::from(head[20]) } else { 0 };
        let wal_path = crate::file::install::companion(db, "-wal");
        let wal_file = match dbfile::open(&wal_path) {
            Ok(w) => Some(w),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut wal = None;
        let mut wal_pages = 0;
        if let Some(w) = wal_file {
            if let Some((size, frames, db_pages)) = read_wal(w.file(), page_size) {
                if page_size == 0 {
                    page_size = size;
                }
                if size == page_size {
                    wal_pages = db_pages;
                    wal = Some((w, frames));
                }
            }
        }
        if page_size == 0 {
            // ora always creates 4096-byte pages.
            page_size = 4096;
            reserved = 0;
        }
        // After a commit in the WAL the database has exactly the size that commit recorded.
        let count = if wal_pages > 0 {
            wal_pages
        } else {
            (file_len / page_size as u64) as u32
        };
        Ok(Pages {
            file,
            file_len,
            page_size,
            usable: page_size - reserved,
            count,
            wal,
            header_ok,
        })
    }

    /// Reads page `pgno` (1-based) into `buf` (page_size bytes); false when it is missing.
    pub fn read(&self, pgno: u32, buf: &mut Vec<u8>) -> bool {
        if pgno == 0 || pgno > self.count {
            return false;
        }
        buf.resize(self.page_size, 0);
        if let Some((w, frames)) = &self.wal {
            if let Some(off) = frames.get(&pgno) {
                return w.file().read_exact_at(buf, *off).is_ok();
            }
        }
        let off = u64::from(pgno - 1) * self.page_size as u64;
        if off + self.page_size as u64 > self.file_len {
            return false;
        }
        self.file.file().read_exact_at(buf, off).is_ok()
    }

    /// True when page `pgno` comes from the WAL.
    pub fn in_wal(&self, pgno: u32) -> bool {
        self.wal
            .as_ref()
            .is_some_and(|(_, f)| f.contains_key(&pgno))
    }

    /// The pages on the freelist (their contents are deleted data and must not be salvaged).
    pub fn freelist(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let mut page = Vec::new();
        if !self.read(1, &mut page) {
            return out;
        }
        let mut trunk = be32(&page, 32);
        let total = be32(&page, 36) as usize;
        let mut seen = std::collections::HashSet::new();
        while trunk != 0 && out.len() <= total && seen.insert(trunk) {
            if !self.read(trunk, &mut page) {
                break;
            }
            out.push(trunk);
            let n = be32(&page, 4) as usize;
            let max = (self.usable - 8) / 4;
            for i in 0..n.min(max) {
                let leaf = be32(&page, 8 + 4 * i);
                if leaf != 0 && leaf <= self.count {
                    out.push(leaf);
                }
            }
            trunk = be32(&page, 0);
        }
        out
    }
}

/// WAL checksum (sqlite.org/fileformat2.html#walcksum) over `data` in 8-byte steps.
fn wal_checksum(data: &[u8], big_endian: bool, mut s0: u32, mut s1: u32) -> (u32, u32) {
    for chunk in data.chunks_exact(8) {
        let (a, b) = if big_endian {
            (be32(chunk, 0), be32(chunk, 4))
        } else {
            (
                u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]),
                u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]),
            )
        };
        s0 = s0.wrapping_add(a).wrapping_add(s1);
        s1 = s1.wrapping_add(b).wrapping_add(s0);
    }
    (s0, s1)
}

/// Parses a WAL: (page size, latest committed frame per page, database size in pages after
/// the last commit). Frames after the last valid commit are ignored, as SQLite does.
fn read_wal(w: &File, expect_page_size: usize) -> Option<(usize, HashMap<u32, u64>, u32)> {
    let mut hdr = [0u8; 32];
    w.read_exact_at(&mut hdr, 0).ok()?;
    let magic = be32(&hdr, 0);
    let big_endian = match magic {
        0x377f_0682 => false,
        0x377f_0683 => true,
        _ => return None,
    };
    let page_size = be32(&hdr, 8) as usize;
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return None;
    }
    if expect_page_size != 0 && expect_page_size != page_size {
        return None;
    }
    let (salt1, salt2) = (be32(&hdr, 16), be32(&hdr, 20));
    let (mut s0, mut s1) = wal_checksum(&hdr[..24], big_endian, 0, 0);
    if (s0, s1) != (be32(&hdr, 24), be32(&hdr, 28)) {
        return None;
    }
    let len = w.metadata().ok()?.len();
    let frame = 24 + page_size as u64;
    let mut committed = HashMap::new();
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut db_pages = 0;
    let mut off = 32u64;
    let mut fh = [0u8; 24];
    let mut data = vec![0u8; page_size];
    while off + frame <= len {
        if w.read_exact_at(&mut fh, off).is_err() || w.read_exact_at(&mut data, off + 24).is_err() {
            break;
        }
        if be32(&fh, 8) != salt1 || be32(&fh, 12) != salt2 {
            break;
        }
        let (a, b) = wal_checksum(&fh[..8], big_endian, s0, s1);
        let (a, b) = wal_checksum(&data, big_endian, a, b);
        if (a, b) != (be32(&fh, 16), be32(&fh, 20)) {
            break;
        }
        (s0, s1) = (a, b);
        let pgno = be32(&fh, 0);
        pending.push((pgno, off + 24));
        let commit = be32(&fh, 4);
        if commit != 0 {
            for (p, o) in pending.drain(..) {
                committed.insert(p, o);
            }
            db_pages = commit;
        }
        off += frame;
    }
    Some((page_size, committed, db_pages))
}
