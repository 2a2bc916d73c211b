//! The integer keys a changeset inserts into one table, read straight from the changeset's
//! bytes. The capture needs only the lowest and highest ledger id of each commit, before its
//! COMMIT, on the writer's path: SQLite's changeset iterator copies every text value of every
//! change into its own allocation (about 3 us per movement: near a third of the time the
//! record took before COMMIT), where this walks the bytes and decodes one integer per insert.
//!
//! The format (SQLite's session extension, "changeset" flavour): per table a header `T`,
//! varint column count, one primary-key flag byte per column, the NUL-terminated name; then
//! changes: an op byte (INSERT 18, UPDATE 23, DELETE 9), an indirect byte and the values
//! (INSERT: the new row; DELETE: the old row; UPDATE: the old then the new, unchanged columns
//! undefined). A value is a type byte (0 undefined, 1 integer + 8 bytes big-endian, 2 real + 8
//! bytes, 3 text / 4 blob + varint length + bytes, 5 null). Reads only: never trusts a length
//! without checking it against what is left, and answers a malformed changeset with
//! SQLITE_CORRUPT, like SQLite's own iterator.

use rusqlite::ffi;

use super::changes::{DELETE as OP_DELETE, INSERT as OP_INSERT, UPDATE as OP_UPDATE};

fn corrupt() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        ffi::Error::new(ffi::SQLITE_CORRUPT),
        Some("read a changeset: malformed".into()),
    )
}

/// A cursor over the changeset's bytes; every read checks what is left.
struct Bytes<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn byte(&mut self) -> rusqlite::Result<u8> {
        let b = *self.buf.get(self.at).ok_or_else(corrupt)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> rusqlite::Result<&'a [u8]> {
        let end = self.at.checked_add(n).ok_or_else(corrupt)?;
        let s = self.buf.get(self.at..end).ok_or_else(corrupt)?;
        self.at = end;
        Ok(s)
    }

    /// SQLite's varint: up to nine bytes, seven bits each and all eight in the ninth.
    fn varint(&mut self) -> rusqlite::Result<u64> {
        let mut v: u64 = 0;
        for i in 0..9 {
            let b = self.byte()?;
            if i == 8 {
                return Ok((v << 8) | u64::from(b));
            }
            v = (v << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt())
    }

    fn len(&mut self) -> rusqlite::Result<usize> {
        usize::try_from(self.varint()?).map_err(|_| corrupt())
    }

    /// One value; Some(i) when it is an integer.
    fn value(&mut self) -> rusqlite::Result<Option<i64>> {
        match self.byte()? {
            0 | 5 => Ok(None),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Ok(Some(i64::from_be_bytes(a)))
            }
            2 => self.take(8).map(|_| None),
            3 | 4 => {
                let n = self.len()?;
                self.take(n).map(|_| None)
            }
            _ => Err(corrupt()),
        }
    }

    fn skip_values(&mut self, n: usize) -> rusqlite::Result<()> {
        for _ in 0..n {
            self.value()?;
        }
        Ok(())
    }
}

/// The spans of the first `n` values in `buf` (each with its type byte), as the changeset
/// encodes them: how the recorder reads back the row images it wrote.
pub(super) fn value_spans(buf: &[u8], n: usize) -> rusqlite::Result<Vec<(usize, usize)>> {
    let mut b = Bytes { buf, at: 0 };
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = b.at;
        b.value()?;
        out.push((start, b.at));
    }
    Ok(out)
}

/// The first column of every row the changeset inserts into `table`, where it is an integer
/// (the rowid of ora's ledger), in changeset order.
pub fn inserted_ids(changeset: &[u8], table: &str) -> rusqlite::Result<Vec<i64>> {
    let mut b = Bytes {
        buf: changeset,
        at: 0,
    };
    let (mut ncol, mut wanted, mut out) = (0usize, false, Vec::new());
    while b.at < b.buf.len() {
        match b.byte()? {
            b'T' => {
                ncol = b.len()?;
                b.take(ncol)?;
                let rest = b.buf.get(b.at..).ok_or_else(corrupt)?;
                let nul = rest.iter().position(|&c| c == 0).ok_or_else(corrupt)?;
                wanted = ncol > 0 && b.take(nul)? == table.as_bytes();
                b.byte()?;
            }
            op @ (OP_INSERT | OP_UPDATE | OP_DELETE) if ncol > 0 => {
                b.byte()?;
                if op == OP_INSERT && wanted {
                    if let Some(id) = b.value()? {
                        out.push(id);
                    }
                    b.skip_values(ncol - 1)?;
                } else {
                    b.skip_values(if op == OP_UPDATE { 2 * ncol } else { ncol })?;
                }
            }
            _ => return Err(corrupt()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::session::inserted_rows;
    use super::super::session::reference::Recorder;
    use super::*;
    use rusqlite::types::Value;
    use rusqlite::Connection;

    static NONE: &[&str] = &[];

    /// A changeset of inserts, updates and deletes over three tables, text and blobs of every
    /// length class (one- to three-byte varints), reals and nulls.
    fn mixed() -> Vec<u8> {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE ledger(id INTEGER PRIMARY KEY, sku TEXT, qty REAL, note BLOB);
             CREATE TABLE stock(sku TEXT PRIMARY KEY, qty INTEGER, at TEXT);
             CREATE TABLE other(id INTEGER PRIMARY KEY, v TEXT);
             INSERT INTO stock VALUES ('a', 1, 'then'), ('b', 2, 'then'), ('gone', 0, NULL);
             INSERT INTO ledger VALUES (1, 'old', 1.5, NULL);",
        )
        .unwrap();
        let rec = Recorder::start(&c, &NONE).unwrap();
        for (i, n) in [
            (7i64, 0usize),
            (3, 127),
            (-9, 128),
            (40000, 20000),
            (1 << 40, 3),
        ] {
            c.execute(
                "INSERT INTO ledger VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![i, "s".repeat(n), i as f64 / 3.0, vec![7u8; n]],
            )
            .unwrap();
            c.execute("INSERT INTO other VALUES (?1, 'x')", [i + 100])
                .unwrap();
        }
        c.execute_batch(
            "UPDATE stock SET qty = qty + 5, at = 'now' WHERE sku IN ('a', 'b');
             DELETE FROM stock WHERE sku = 'gone'; UPDATE ledger SET qty = NULL WHERE id = 1;",
        )
        .unwrap();
        let cs = rec.changeset().unwrap();
        drop(rec);
        cs
    }

    fn by_sqlite(cs: &[u8], table: &str) -> Vec<i64> {
        inserted_rows(cs, table)
            .unwrap()
            .iter()
            .filter_map(|r| match r.first() {
                Some(Value::Integer(i)) => Some(*i),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn reads_the_same_ids_as_sqlites_iterator() {
        let cs = mixed();
        let mut ids = inserted_ids(&cs, "ledger").unwrap();
        assert_eq!(ids, by_sqlite(&cs, "ledger"));
        ids.sort_unstable();
        assert_eq!(ids, vec![-9, 3, 7, 40000, 1 << 40]);
        assert_eq!(inserted_ids(&cs, "other").unwrap().len(), 5);
        assert!(inserted_ids(&cs, "stock").unwrap().is_empty(), "text keys");
        assert!(inserted_ids(&cs, "ledge").unwrap().is_empty());
        assert!(inserted_ids(&[], "ledger").unwrap().is_empty());
    }

    #[test]
    fn malformed_changesets_are_refused_never_overread() {
        let cs = mixed();
        for cut in 1..cs.len() {
            // Every cut either fails or reads a shorter, still well-formed prefix.
            if let Ok(ids) = inserted_ids(&cs[..cut], "ledger") {
                assert!(ids.len() <= 5);
            }
        }
        let mut bad = cs.clone();
        bad[0] = b'X';
        assert!(inserted_ids(&bad, "ledger").is_err());
        // A length claiming far more than is left.
        let huge = [b'T', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(inserted_ids(&huge, "ledger").is_err());
        let text = [b'T', 1, 1, b'l', 0, OP_INSERT, 0, 3, 0x8f, 0xff, 0xff, 0x7f];
        assert!(inserted_ids(&text, "l").is_err());
        assert!(
            inserted_ids(&[OP_INSERT, 0, 5], "l").is_err(),
            "no table yet"
        );
    }
}
