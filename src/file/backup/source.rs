//! Reading a backup back: ora's own `.db.gz` (concatenated gzip members), the same encrypted
//! with age (`.db.gz.age`, decrypted with the identities the process was given, and a replica
//! generation's own), any gzipped
//! SQLite file, or a plain SQLite file (a `sqlite3 .backup` copy). Decompresses into a file the
//! caller owns, refusing early anything that does not turn out to be a SQLite database and
//! stopping at a size limit, so a hostile archive cannot fill the disk.

use std::io::{BufReader, Read, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};
use crate::file::progress::Progress;
use crate::store::dbfile;

/// Largest database a restore or drill will write (a guard against decompression bombs).
const MAX_DATABASE_BYTES: u64 = 256 * 1024 * 1024 * 1024;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// What kind of file a backup source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Gzip,
    Plain,
    /// age-encrypted (a gzip stream inside).
    Age,
}

/// Looks at the first bytes of `path`.
pub fn kind(path: &Path, what: &str) -> Result<Kind> {
    let mut head = [0u8; 22];
    let mut f = dbfile::open(path).map_err(|e| open_error(what, path, e))?;
    let n = read_full(&mut f, &mut head)
        .map_err(|e| Error::io(format!("{what}: read {}", path.display()), e))?;
    if n == head.len() && head[..] == *super::keys::AGE_MAGIC {
        Ok(Kind::Age)
    } else if n >= 2 && head[..2] == GZIP_MAGIC {
        Ok(Kind::Gzip)
    } else if n >= 16 && head[..16] == SQLITE_MAGIC[..] {
        Ok(Kind::Plain)
    } else {
        Err(Error::usage(format!(
            "{what}: {} is neither a SQLite database nor a gzip file; pick a backup from `ora backups list`",
            path.display()
        )))
    }
}

/// A source that cannot be opened: bad input, unless it is ora's own guard refusing.
fn open_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::ResourceBusy {
        Error::io(what.to_string(), e)
    } else {
        Error::usage(format!("{what}: cannot open {}: {e}", path.display()))
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Writes the database inside `path` into `out`; returns the bytes written. Fails (having
/// written at most a few bytes) when the content is not a SQLite database. An encrypted file
/// opens with any of `identities`.
pub fn extract(
    path: &Path,
    out: &mut impl Write,
    what: &str,
    progress: &Progress,
    identities: &[age::x25519::Identity],
) -> Result<u64> {
    let shown = path.display();
    let file = dbfile::open(path).map_err(|e| open_error(what, path, e))?;
    let kind = kind(path, what)?;
    let mut input: Box<dyn Read> = match kind {
        Kind::Gzip => Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file))),
        Kind::Plain => Box::new(BufReader::with_capacity(1 << 20, file)),
        Kind::Age => {
            let plain = super::keys::decrypt(
                BufReader::with_capacity(1 << 20, file),
                what,
                path,
                identities,
            )?;
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                1 << 20,
                plain,
            )))
        }
    };
    let corrupt = |e: std::io::Error| {
        Error::usage(format!(
            "{what}: {shown} is damaged ({e}); pick another backup with `ora backups list`"
        ))
    };
    let mut buf = vec![0u8; 1 << 20];
    let first = read_full(&mut input, &mut buf[..100]).map_err(corrupt)?;
    if first < 100 || &buf[..16] != SQLITE_MAGIC {
        return Err(Error::usage(format!(
            "{what}: {shown} does not contain a SQLite database; pick a backup from `ora backups list`"
        )));
    }
    let write_err =
        |e: std::io::Error| Error::io(format!("{what}: write the database from {shown}"), e);
    out.write_all(&buf[..first]).map_err(write_err)?;
    let mut total = first as u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(e)),
        };
        total += n as u64;
        if total > MAX_DATABASE_BYTES {
            return Err(Error::usage(format!(
                "{what}: {shown} expands beyond {} GiB; refusing it as damaged or hostile",
                MAX_DATABASE_BYTES >> 30
            )));
        }
        out.write_all(&buf[..n]).map_err(write_err)?;
        progress.inc(n as u64);
    }
    out.flush().map_err(write_err)?;
    Ok(total)
}
