//! The SQLite session extension, declared by hand (the bundled SQLite is compiled with it; see
//! `.cargo/config.toml`): read the inserted rows of a table back out of a changeset, merge
//! changesets, and apply a changeset to another database. Its own recorder is built for tests
//! only: the reference the replica's recorder (`recorder`) is checked against. The only unsafe code for sessions; every pointer handed to SQLite lives for the
//! whole call that uses it, and every changeset read from outside is length-checked first
//! (SQLite's own parser rejects a corrupt one with SQLITE_CORRUPT, never reads past its end).

use std::ffi::{c_char, c_int, c_void, CStr};

use rusqlite::ffi;
use rusqlite::types::Value;
use rusqlite::Connection;

#[allow(non_camel_case_types)]
type sqlite3_changeset_iter = c_void;

type FilterFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type ConflictFn = unsafe extern "C" fn(*mut c_void, c_int, *mut sqlite3_changeset_iter) -> c_int;

unsafe extern "C" {
    fn sqlite3changeset_apply_v2(
        db: *mut ffi::sqlite3,
        n: c_int,
        p: *mut c_void,
        x_filter: Option<FilterFn>,
        x_conflict: Option<ConflictFn>,
        ctx: *mut c_void,
        pp_rebase: *mut *mut c_void,
        pn_rebase: *mut c_int,
        flags: c_int,
    ) -> c_int;
    fn sqlite3changeset_start(
        pp: *mut *mut sqlite3_changeset_iter,
        n: c_int,
        p: *mut c_void,
    ) -> c_int;
    fn sqlite3changeset_next(p: *mut sqlite3_changeset_iter) -> c_int;
    fn sqlite3changeset_op(
        p: *mut sqlite3_changeset_iter,
        pz_tab: *mut *const c_char,
        pn_col: *mut c_int,
        p_op: *mut c_int,
        pb_indirect: *mut c_int,
    ) -> c_int;
    fn sqlite3changeset_new(
        p: *mut sqlite3_changeset_iter,
        i: c_int,
        pp: *mut *mut ffi::sqlite3_value,
    ) -> c_int;
    fn sqlite3changeset_finalize(p: *mut sqlite3_changeset_iter) -> c_int;
    fn sqlite3changegroup_new(pp: *mut *mut c_void) -> c_int;
    fn sqlite3changegroup_add(p: *mut c_void, n: c_int, data: *mut c_void) -> c_int;
    fn sqlite3changegroup_output(p: *mut c_void, pn: *mut c_int, pp: *mut *mut c_void) -> c_int;
    fn sqlite3changegroup_delete(p: *mut c_void);
}

const CHANGESET_ABORT: c_int = 2;
const CHANGESETAPPLY_NOSAVEPOINT: c_int = 1;

fn sqlite_error(code: c_int, what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(what.to_string()))
}

/// Calls an SQLite function that hands back a buffer it allocated (`n` bytes at `p`), copies
/// the bytes and frees the buffer once.
fn take_buffer(
    what: &str,
    call: impl FnOnce(*mut c_int, *mut *mut c_void) -> c_int,
) -> rusqlite::Result<Vec<u8>> {
    let (mut n, mut p) = (0 as c_int, std::ptr::null_mut());
    let rc = call(&mut n, &mut p);
    let out = if rc != ffi::SQLITE_OK || p.is_null() || n <= 0 {
        Vec::new()
    } else {
        let len = usize::try_from(n).unwrap_or(0);
        // SAFETY: SQLite returned a buffer of exactly n bytes.
        unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec()
    };
    // SAFETY: p came from SQLite's allocator (or is null, which sqlite3_free accepts).
    unsafe { ffi::sqlite3_free(p) };
    if rc != ffi::SQLITE_OK {
        return Err(sqlite_error(rc, what));
    }
    Ok(out)
}

fn len_of(changeset: &[u8]) -> rusqlite::Result<c_int> {
    c_int::try_from(changeset.len()).map_err(|_| sqlite_error(ffi::SQLITE_TOOBIG, "changeset"))
}

fn value_of(v: *mut ffi::sqlite3_value) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    // SAFETY: v is a value owned by the iterator, valid until the next step.
    unsafe {
        match ffi::sqlite3_value_type(v) {
            ffi::SQLITE_INTEGER => Value::Integer(ffi::sqlite3_value_int64(v)),
            ffi::SQLITE_FLOAT => Value::Real(ffi::sqlite3_value_double(v)),
            ffi::SQLITE_TEXT => {
                let p = ffi::sqlite3_value_text(v);
                let n = usize::try_from(ffi::sqlite3_value_bytes(v)).unwrap_or(0);
                if p.is_null() {
                    Value::Text(String::new())
                } else {
                    let b = std::slice::from_raw_parts(p, n);
                    Value::Text(String::from_utf8_lossy(b).into_owned())
                }
            }
            ffi::SQLITE_BLOB => {
                let p = ffi::sqlite3_value_blob(v) as *const u8;
                let n = usize::try_from(ffi::sqlite3_value_bytes(v)).unwrap_or(0);
                if p.is_null() {
                    Value::Blob(Vec::new())
                } else {
                    Value::Blob(std::slice::from_raw_parts(p, n).to_vec())
                }
            }
            _ => Value::Null,
        }
    }
}

/// Calls `f` with each change of a changeset: its table, its operation (SQLITE_INSERT,
/// SQLITE_UPDATE, SQLITE_DELETE) and a reader of its new values. Fails with SQLITE_CORRUPT on
/// a malformed changeset.
fn each_change(
    changeset: &[u8],
    mut f: impl FnMut(
        &str,
        c_int,
        &dyn Fn(c_int) -> rusqlite::Result<Option<Value>>,
        c_int,
    ) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    if changeset.is_empty() {
        return Ok(());
    }
    let n = len_of(changeset)?;
    let mut it = std::ptr::null_mut();
    // SAFETY: SQLite only reads the n bytes of the buffer (the pointer is mut in its API only).
    let rc = unsafe { sqlite3changeset_start(&mut it, n, changeset.as_ptr() as *mut c_void) };
    if rc != ffi::SQLITE_OK {
        return Err(sqlite_error(rc, "read a changeset"));
    }
    let result = (|| {
        loop {
            // SAFETY: it is a live iterator over a buffer that outlives it.
            let rc = unsafe { sqlite3changeset_next(it) };
            if rc == ffi::SQLITE_DONE {
                return Ok(());
            }
            if rc != ffi::SQLITE_ROW {
                return Err(sqlite_error(rc, "read a changeset"));
            }
            let (mut tab, mut ncol, mut op, mut indirect) = (std::ptr::null(), 0, 0, 0);
            // SAFETY: as above; the out-pointers are valid locals.
            let rc =
                unsafe { sqlite3changeset_op(it, &mut tab, &mut ncol, &mut op, &mut indirect) };
            if rc != ffi::SQLITE_OK || tab.is_null() {
                return Err(sqlite_error(rc, "read a changeset"));
            }
            // SAFETY: SQLite returns a NUL-terminated name valid until the next step.
            let name = unsafe { CStr::from_ptr(tab) }
                .to_string_lossy()
                .into_owned();
            // The new value of column i (None: not set, as for an UPDATE's unchanged columns
            // and every column of a DELETE).
            let new_value = |i: c_int| -> rusqlite::Result<Option<Value>> {
                if op == ffi::SQLITE_DELETE || i < 0 || i >= ncol {
                    return Ok(None);
                }
                let mut v = std::ptr::null_mut();
                // SAFETY: i is within the change's column count; the iterator is on this change.
                let rc = unsafe { sqlite3changeset_new(it, i, &mut v) };
                if rc != ffi::SQLITE_OK {
                    return Err(sqlite_error(rc, "read a changeset"));
                }
                Ok((!v.is_null()).then(|| value_of(v)))
            };
            f(&name, op, &new_value, ncol)?;
        }
    })();
    // SAFETY: finalizes the iterator exactly once; its code reports a corrupt tail.
    let fin = unsafe { sqlite3changeset_finalize(it) };
    result?;
    if fin != ffi::SQLITE_OK {
        return Err(sqlite_error(fin, "read a changeset"));
    }
    Ok(())
}

/// The rows a changeset inserts into `table`, each as its column values in table order.
/// Fails with SQLITE_CORRUPT on a malformed changeset.
pub fn inserted_rows(changeset: &[u8], table: &str) -> rusqlite::Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    each_change(changeset, |name, op, new_value, ncol| {
        if op != ffi::SQLITE_INSERT || name != table {
            return Ok(());
        }
        let mut row = Vec::with_capacity(usize::try_from(ncol).unwrap_or(0));
        for i in 0..ncol {
            row.push(new_value(i)?.unwrap_or(Value::Null));
        }
        out.push(row);
        Ok(())
    })?;
    Ok(out)
}

/// Whether a changeset adds or removes rows of `table`, or changes one of its `columns` (by
/// position) in a row it updates.
pub fn touches(changeset: &[u8], table: &str, columns: &[c_int]) -> rusqlite::Result<bool> {
    let mut found = false;
    each_change(changeset, |name, op, new_value, _| {
        if found || name != table {
            return Ok(());
        }
        found = op != ffi::SQLITE_UPDATE;
        for &c in columns {
            found = found || new_value(c)?.is_some();
        }
        Ok(())
    })?;
    Ok(found)
}

/// Changesets merged into one that has the same effect as applying them in order (a row
/// changed many times appears once, with its final values): far fewer statements to apply.
pub struct Group {
    p: *mut c_void,
}

impl Group {
    pub fn new() -> rusqlite::Result<Group> {
        let mut p = std::ptr::null_mut();
        // SAFETY: SQLite allocates the group; it is deleted exactly once in Drop.
        let rc = unsafe { sqlite3changegroup_new(&mut p) };
        if rc != ffi::SQLITE_OK {
            return Err(sqlite_error(rc, "merge changes"));
        }
        Ok(Group { p })
    }

    /// Adds the next changeset (fails with SQLITE_CORRUPT on a malformed one).
    pub fn add(&mut self, changeset: &[u8]) -> rusqlite::Result<()> {
        if changeset.is_empty() {
            return Ok(());
        }
        let n = len_of(changeset)?;
        // SAFETY: SQLite copies what it needs from the n bytes; the buffer is only read.
        let rc = unsafe { sqlite3changegroup_add(self.p, n, changeset.as_ptr() as *mut c_void) };
        if rc != ffi::SQLITE_OK {
            return Err(sqlite_error(rc, "merge changes"));
        }
        Ok(())
    }

    /// The merged changeset.
    pub fn output(&mut self) -> rusqlite::Result<Vec<u8>> {
        // SAFETY: the group is live; the buffer is copied and freed by `take_buffer`.
        take_buffer("merge changes", |n, p| unsafe {
            sqlite3changegroup_output(self.p, n, p)
        })
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: deleted exactly once.
        unsafe { sqlite3changegroup_delete(self.p) };
    }
}

/// What stopped an apply.
#[derive(Debug, Default)]
struct ApplyState {
    conflicts: u32,
    first: Option<(c_int, String)>,
}

unsafe extern "C" fn abort_on_conflict(
    ctx: *mut c_void,
    kind: c_int,
    it: *mut sqlite3_changeset_iter,
) -> c_int {
    // SAFETY: ctx is the ApplyState of the running apply; it is the live conflict iterator.
    let st = unsafe { &mut *(ctx as *mut ApplyState) };
    st.conflicts = st.conflicts.saturating_add(1);
    if st.first.is_none() {
        let (mut tab, mut ncol, mut op, mut ind) = (std::ptr::null(), 0, 0, 0);
        // SAFETY: as above.
        let table = unsafe {
            if sqlite3changeset_op(it, &mut tab, &mut ncol, &mut op, &mut ind) == ffi::SQLITE_OK
                && !tab.is_null()
            {
                CStr::from_ptr(tab).to_string_lossy().into_owned()
            } else {
                String::from("?")
            }
        };
        st.first = Some((kind, table));
    }
    CHANGESET_ABORT
}

/// Applies `changeset` to `conn` inside the caller's transaction; any conflict (a row that is
/// not as the changeset expects) aborts with an error naming the table: a replica that does
/// not fit its base is never half-applied silently.
pub fn apply(conn: &Connection, changeset: &[u8]) -> rusqlite::Result<()> {
    if changeset.is_empty() {
        return Ok(());
    }
    let n = len_of(changeset)?;
    let mut st = ApplyState::default();
    // SAFETY: the buffer is only read; st lives across the call; no rebase buffer is asked for.
    let rc = unsafe {
        sqlite3changeset_apply_v2(
            conn.handle(),
            n,
            changeset.as_ptr() as *mut c_void,
            None,
            Some(abort_on_conflict),
            &mut st as *mut ApplyState as *mut c_void,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            CHANGESETAPPLY_NOSAVEPOINT,
        )
    };
    if let Some((kind, table)) = st.first {
        let what = match kind {
            1 => "a row differs from what the change expects",
            2 => "a row the change updates or deletes is missing",
            3 => "a row the change inserts already exists",
            4 => "the change breaks a constraint",
            5 => "the change breaks a foreign key",
            _ => "conflict",
        };
        return Err(sqlite_error(
            ffi::SQLITE_ABORT,
            &format!("apply a recorded change to table {table}: {what}"),
        ));
    }
    if rc != ffi::SQLITE_OK {
        return Err(sqlite_error(rc, "apply a recorded change"));
    }
    Ok(())
}

/// The session extension's own recorder, for tests only: the reference the replica's recorder
/// is checked against.
#[cfg(test)]
pub mod reference {
    use std::ffi::{c_char, c_int, c_void, CStr};
    use std::marker::PhantomData;

    use rusqlite::{ffi, Connection};

    use super::{sqlite_error, take_buffer, FilterFn};

    #[allow(non_camel_case_types)]
    type sqlite3_session = c_void;

    unsafe extern "C" {
        fn sqlite3session_create(
            db: *mut ffi::sqlite3,
            z_db: *const c_char,
            pp: *mut *mut sqlite3_session,
        ) -> c_int;
        fn sqlite3session_delete(p: *mut sqlite3_session);
        fn sqlite3session_attach(p: *mut sqlite3_session, z_tab: *const c_char) -> c_int;
        fn sqlite3session_table_filter(
            p: *mut sqlite3_session,
            x: Option<FilterFn>,
            ctx: *mut c_void,
        );
        fn sqlite3session_changeset(
            p: *mut sqlite3_session,
            pn: *mut c_int,
            pp: *mut *mut c_void,
        ) -> c_int;
    }

    /// Records every row change made through one connection, except to tables whose names start
    /// with one of the `skip` prefixes.
    pub struct Recorder<'c> {
        s: *mut sqlite3_session,
        /// The skipped prefixes (a static, so the filter callback's pointer never dangles).
        skip: &'static &'static [&'static str],
        _conn: PhantomData<&'c Connection>,
    }

    unsafe extern "C" fn skip_filter(ctx: *mut c_void, tab: *const c_char) -> c_int {
        // SAFETY: ctx points at a static prefix list; tab is a NUL-terminated table name from
        // SQLite.
        let (skip, name) = unsafe { (*(ctx as *const &[&str]), CStr::from_ptr(tab)) };
        let name = name.to_string_lossy();
        c_int::from(!skip.iter().any(|s| name.starts_with(s)))
    }

    impl<'c> Recorder<'c> {
        /// Starts recording on `conn` (all tables of `main`, minus the `skip` prefixes).
        pub fn start(
            conn: &'c Connection,
            skip: &'static &'static [&'static str],
        ) -> rusqlite::Result<Recorder<'c>> {
            let mut s = std::ptr::null_mut();
            // SAFETY: the handle is valid while `conn` lives, which the recorder's lifetime ties
            // to; the session is deleted in Drop before the connection can close.
            let rc = unsafe { sqlite3session_create(conn.handle(), c"main".as_ptr(), &mut s) };
            if rc != ffi::SQLITE_OK {
                return Err(sqlite_error(rc, "start recording changes"));
            }
            let r = Recorder {
                s,
                skip,
                _conn: PhantomData,
            };
            let ctx = r.skip as *const &[&str] as *mut c_void;
            // SAFETY: s is a live session; ctx points at a static.
            let rc = unsafe {
                sqlite3session_table_filter(r.s, Some(skip_filter), ctx);
                sqlite3session_attach(r.s, std::ptr::null())
            };
            if rc != ffi::SQLITE_OK {
                return Err(sqlite_error(rc, "record changes of every table"));
            }
            Ok(r)
        }

        /// The changes recorded so far (net of savepoints rolled back), as a changeset.
        pub fn changeset(&self) -> rusqlite::Result<Vec<u8>> {
            // SAFETY: s is live; SQLite allocates the buffer, `take_buffer` copies and frees it.
            take_buffer("build the changeset", |n, p| unsafe {
                sqlite3session_changeset(self.s, n, p)
            })
        }
    }

    impl Drop for Recorder<'_> {
        fn drop(&mut self) {
            // SAFETY: s is a live session, deleted exactly once, while its connection is open.
            unsafe { sqlite3session_delete(self.s) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::Recorder;
    use super::*;

    static SKIP: &[&str] = &["skip"];
    static NONE: &[&str] = &[];

    fn db() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, g TEXT GENERATED ALWAYS AS (upper(v)) VIRTUAL);
             CREATE TABLE skipped(id INTEGER PRIMARY KEY);",
        )
        .unwrap();
        c
    }

    #[test]
    fn records_net_changes_and_applies_them_elsewhere() {
        let a = db();
        let rec = Recorder::start(&a, &SKIP).unwrap();
        a.execute_batch(
            "BEGIN; SAVEPOINT s; INSERT INTO t(id, v) VALUES (1, 'kept'); RELEASE s;
             SAVEPOINT s; INSERT INTO t(id, v) VALUES (2, 'rolled back'); ROLLBACK TO s; RELEASE s;
             INSERT INTO skipped VALUES (7); COMMIT;",
        )
        .unwrap();
        let cs = rec.changeset().unwrap();
        drop(rec);
        let rows = inserted_rows(&cs, "t").unwrap();
        assert_eq!(rows.len(), 1, "the rolled-back insert is not recorded");
        assert_eq!(rows[0][0], Value::Integer(1));
        assert!(inserted_rows(&cs, "skipped").unwrap().is_empty());
        let b = db();
        b.execute_batch("BEGIN").unwrap();
        apply(&b, &cs).unwrap();
        b.execute_batch("COMMIT").unwrap();
        let g: String = b
            .query_row("SELECT g FROM t WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(g, "KEPT");
        // Applying it again conflicts: the row exists.
        b.execute_batch("BEGIN").unwrap();
        let err = apply(&b, &cs).unwrap_err().to_string();
        assert!(err.contains("already exists"), "{err}");
    }

    #[test]
    fn corrupt_changesets_are_refused() {
        let a = db();
        let rec = Recorder::start(&a, &NONE).unwrap();
        a.execute("INSERT INTO t(id, v) VALUES (1, 'x')", [])
            .unwrap();
        let cs = rec.changeset().unwrap();
        drop(rec);
        for cut in 1..cs.len() {
            let _ = inserted_rows(&cs[..cut], "t");
            let b = db();
            let _ = apply(&b, &cs[..cut]);
        }
        let mut bad = cs.clone();
        bad[0] ^= 0xff;
        assert!(inserted_rows(&bad, "t").is_err() || inserted_rows(&bad, "t").unwrap().is_empty());
    }
}
