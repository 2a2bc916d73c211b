//! The replica's recorder: the row changes of one write transaction, taken from SQLite's
//! pre-update hook as they happen and turned into a changeset (the session extension's
//! "changeset" format, which `session::apply`, `session::Group` and `changeset_ids` read) just
//! before COMMIT, without reading a row back. It replaces the session extension on the
//! writer's path: that extension reads each table's columns again in every transaction,
//! prepares a SELECT per table and reads back every changed row to build its changeset.
//!
//! How it stays exact:
//! - The hook copies each change's old and new values (every visible column, as SQLite's
//!   `table_xinfo` lists them; generated columns are left out, as the extension does) into one
//!   buffer. [`changes`](super::changes) folds them into one change per row at the end.
//! - A savepoint rolled back undoes its changes without telling the hook. Every savepoint on a
//!   captured connection is therefore taken and rolled back through [`Savepoint`], which
//!   forgets what the hook saw since; a test holds that no other code issues `ROLLBACK TO`.
//! - A statement that fails is undone by SQLite after the hook may have seen some of its rows.
//!   Every failed write in ora ends its request, whose savepoint (or the whole transaction) is
//!   then rolled back; code that catches a failed write and goes on must roll back its own
//!   savepoint first, as `command`'s per-row imports do.
//! - A table the recorder has no columns for (created or altered inside the transaction), or a
//!   value it cannot read, fails the record, and so the commit: never a silent gap.
//!
//! Never runs SQL from inside the hook, never keeps a pointer SQLite handed to the hook past
//! the call, and is the only code that installs a pre-update hook on a captured connection.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use rusqlite::{ffi, Connection};

use super::changes::{self, Event, Journal, Table};

type PreupdateFn = unsafe extern "C" fn(
    *mut c_void,
    *mut ffi::sqlite3,
    c_int,
    *const c_char,
    *const c_char,
    i64,
    i64,
);

unsafe extern "C" {
    fn sqlite3_preupdate_hook(
        db: *mut ffi::sqlite3,
        x: Option<PreupdateFn>,
        ctx: *mut c_void,
    ) -> *mut c_void;
    fn sqlite3_preupdate_old(
        db: *mut ffi::sqlite3,
        i: c_int,
        pp: *mut *mut ffi::sqlite3_value,
    ) -> c_int;
    fn sqlite3_preupdate_new(
        db: *mut ffi::sqlite3,
        i: c_int,
        pp: *mut *mut ffi::sqlite3_value,
    ) -> c_int;
    fn sqlite3_preupdate_count(db: *mut ffi::sqlite3) -> c_int;
    fn sqlite3_preupdate_depth(db: *mut ffi::sqlite3) -> c_int;
}

/// The columns of every table of a schema, by name; `None` for a table never recorded (a
/// skipped prefix, or no primary key, which the session extension ignores too).
pub struct Tables {
    by_name: HashMap<Vec<u8>, Option<u32>>,
    list: Vec<Table>,
    skip: &'static [&'static str],
}

impl Tables {
    /// Reads the tables of `main` and their columns.
    pub fn load(conn: &Connection, skip: &'static [&'static str]) -> rusqlite::Result<Tables> {
        let names: Vec<String> = conn
            .prepare("SELECT name FROM main.sqlite_schema WHERE type = 'table' ORDER BY name")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut t = Tables {
            by_name: HashMap::new(),
            list: Vec::new(),
            skip,
        };
        for name in names {
            let entry = if t.skipped(name.as_bytes()) {
                None
            } else {
                Table::load(conn, &name)?.map(|table| {
                    t.list.push(table);
                    u32::try_from(t.list.len() - 1).unwrap_or(u32::MAX)
                })
            };
            t.by_name.insert(name.into_bytes(), entry);
        }
        Ok(t)
    }

    fn skipped(&self, name: &[u8]) -> bool {
        self.skip.iter().any(|s| name.starts_with(s.as_bytes()))
    }

    /// Ok(None): not recorded; Err: a table this schema did not have.
    fn find(&self, name: &[u8]) -> Result<Option<u32>, ()> {
        match self.by_name.get(name) {
            Some(entry) => Ok(*entry),
            None if self.skipped(name) => Ok(None),
            None => Err(()),
        }
    }

    pub(super) fn get(&self, i: u32) -> Option<&Table> {
        self.list.get(usize::try_from(i).ok()?)
    }
}

thread_local! {
    /// The journal of the capture open on this thread and its connection's handle (nulls when
    /// none): the savepoints taken on that connection find it here.
    static ACTIVE: Cell<(*const RefCell<Journal>, *mut ffi::sqlite3)> =
        const { Cell::new((std::ptr::null(), std::ptr::null_mut())) };
    /// The last schema's tables, by the schema's hash: loaded once per schema, not per
    /// transaction.
    static CACHE: RefCell<Option<(String, Rc<Tables>)>> = const { RefCell::new(None) };
}

/// The tables of the schema whose hash is `schema_hash`, read once and kept for the thread.
pub fn tables_for(
    conn: &Connection,
    schema_hash: &str,
    skip: &'static [&'static str],
) -> rusqlite::Result<Rc<Tables>> {
    let hit = CACHE.with(|c| {
        c.borrow()
            .as_ref()
            .filter(|(h, _)| h == schema_hash)
            .map(|(_, t)| Rc::clone(t))
    });
    if let Some(t) = hit {
        return Ok(t);
    }
    let t = Rc::new(Tables::load(conn, skip)?);
    if schema_hash.is_empty() {
        // No hash to know the schema by: never shared with another file's.
        return Ok(t);
    }
    CACHE.with(|c| *c.borrow_mut() = Some((schema_hash.to_string(), Rc::clone(&t))));
    Ok(t)
}

/// Records every row change made through one connection while it lives.
pub struct Recorder<'c> {
    conn: &'c Connection,
    journal: Box<RefCell<Journal>>,
}

impl<'c> Recorder<'c> {
    /// Starts recording on `conn`. Fails when another capture is open on this thread.
    pub fn start(conn: &'c Connection, tables: Rc<Tables>) -> rusqlite::Result<Recorder<'c>> {
        if !ACTIVE.with(Cell::get).0.is_null() {
            return Err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(ffi::SQLITE_MISUSE),
                Some("a second capture on one thread".into()),
            ));
        }
        let journal = Box::new(RefCell::new(Journal::new(tables)));
        let ctx = &*journal as *const RefCell<Journal> as *mut c_void;
        // SAFETY: the handle is valid while `conn` lives (the recorder borrows it).
        let handle = unsafe { conn.handle() };
        // SAFETY: a live handle; ctx points into the box, which lives until Drop removes the
        // hook again.
        unsafe { sqlite3_preupdate_hook(handle, Some(on_change), ctx) };
        ACTIVE.with(|a| a.set((&*journal, handle)));
        Ok(Recorder { conn, journal })
    }

    /// The changes recorded so far, net of savepoints rolled back, as a changeset.
    pub fn changeset(&self) -> rusqlite::Result<Vec<u8>> {
        changes::build(&self.journal.borrow())
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        // SAFETY: the handle is valid while `conn` lives; removing the hook is always allowed.
        unsafe { sqlite3_preupdate_hook(self.conn.handle(), None, std::ptr::null_mut()) };
        let ours = &*self.journal as *const RefCell<Journal>;
        ACTIVE.with(|a| {
            if a.get().0 == ours {
                a.set((std::ptr::null(), std::ptr::null_mut()));
            }
        });
    }
}

unsafe extern "C" fn on_change(
    ctx: *mut c_void,
    db: *mut ffi::sqlite3,
    op: c_int,
    z_db: *const c_char,
    z_name: *const c_char,
    _old_rowid: i64,
    _new_rowid: i64,
) {
    // SAFETY: ctx is the recorder's journal, alive while the hook is installed; z_db and
    // z_name are NUL-terminated strings valid for this call.
    let (cell, main, name) = unsafe {
        (
            &*(ctx as *const RefCell<Journal>),
            CStr::from_ptr(z_db).to_bytes() == b"main",
            CStr::from_ptr(z_name).to_bytes(),
        )
    };
    let Ok(mut j) = cell.try_borrow_mut() else {
        return;
    };
    if !main || j.failed.is_some() {
        return;
    }
    let caught = std::panic::catch_unwind(AssertUnwindSafe(|| record(&mut j, db, op, name)));
    match caught {
        Ok(Ok(())) => {}
        Ok(Err(why)) => j.failed = Some(why),
        Err(_) => j.failed = Some("the recorder failed".into()),
    }
}

/// Copies one change's values into the journal.
fn record(j: &mut Journal, db: *mut ffi::sqlite3, op: c_int, name: &[u8]) -> Result<(), String> {
    let lossy = || String::from_utf8_lossy(name).into_owned();
    let Journal {
        tables,
        bytes,
        events,
        ..
    } = j;
    let t = match tables.find(name) {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(()),
        Err(()) => {
            return Err(format!(
                "table {} is not in the schema it started with",
                lossy()
            ))
        }
    };
    let table = tables.get(t).ok_or("a table index out of range")?;
    // SAFETY: db is the connection running the change; these calls are valid in the hook.
    let (count, depth) = unsafe { (sqlite3_preupdate_count(db), sqlite3_preupdate_depth(db)) };
    if count != table.total {
        return Err(format!("table {} changed its columns", lossy()));
    }
    let (kind, old, new) = match op {
        ffi::SQLITE_INSERT => (changes::INSERT, false, true),
        ffi::SQLITE_DELETE => (changes::DELETE, true, false),
        _ => (changes::UPDATE, true, true),
    };
    let mark = bytes.len();
    let old = if old {
        image(bytes, table, db, sqlite3_preupdate_old)?
    } else {
        (mark, mark)
    };
    let new = if new {
        image(bytes, table, db, sqlite3_preupdate_new)?
    } else {
        (old.1, old.1)
    };
    events.push(Event {
        table: t,
        op: kind,
        indirect: depth > 0,
        old,
        new,
    });
    Ok(())
}

type ValueFn =
    unsafe extern "C" fn(*mut ffi::sqlite3, c_int, *mut *mut ffi::sqlite3_value) -> c_int;

/// Appends one row image (each visible column's value) and returns its span in the buffer.
fn image(
    bytes: &mut Vec<u8>,
    table: &Table,
    db: *mut ffi::sqlite3,
    read: ValueFn,
) -> Result<(usize, usize), String> {
    let start = bytes.len();
    for (&col, &real) in table.columns.iter().zip(&table.real) {
        let mut v = std::ptr::null_mut();
        // SAFETY: called inside the hook with a column index below preupdate_count.
        let rc = unsafe { read(db, col, &mut v) };
        if rc != ffi::SQLITE_OK {
            return Err(format!(
                "a changed value could not be read (SQLite code {rc})"
            ));
        }
        // SAFETY: v is a value SQLite owns for the rest of this hook call (or null).
        unsafe { changes::put_value(bytes, v, real) };
    }
    Ok((start, bytes.len()))
}

/// A savepoint on a connection that may be captured: rolling it back also forgets the changes
/// the recorder saw since it was taken. The only way ora takes a savepoint.
pub struct Savepoint {
    name: &'static str,
    mark: Option<(usize, usize)>,
}

impl Savepoint {
    /// `SAVEPOINT name` (statements cached: the writer takes one per request).
    pub fn take(conn: &Connection, name: &'static str) -> rusqlite::Result<Savepoint> {
        exec(conn, "SAVEPOINT ", name)?;
        let mark = with_active(conn, |j| (j.events.len(), j.bytes.len()));
        Ok(Savepoint { name, mark })
    }

    /// `RELEASE name`: the changes since stay.
    pub fn release(self, conn: &Connection) -> rusqlite::Result<()> {
        exec(conn, "RELEASE ", self.name)
    }

    /// `ROLLBACK TO name` then `RELEASE name`: the changes since are undone and forgotten.
    pub fn roll_back(self, conn: &Connection) -> rusqlite::Result<()> {
        exec(conn, "ROLLBACK TO ", self.name)?;
        if let Some((events, bytes)) = self.mark {
            with_active(conn, |j| {
                j.events.truncate(events);
                j.bytes.truncate(bytes);
            });
        }
        exec(conn, "RELEASE ", self.name)
    }
}

fn exec(conn: &Connection, verb: &str, name: &str) -> rusqlite::Result<()> {
    let mut sql = String::with_capacity(verb.len() + name.len());
    sql.push_str(verb);
    sql.push_str(name);
    conn.prepare_cached(&sql)?.execute([]).map(drop)
}

/// Runs `f` on the journal of the capture open on this thread, if it records `conn`.
fn with_active<T>(conn: &Connection, f: impl FnOnce(&mut Journal) -> T) -> Option<T> {
    let (p, handle) = ACTIVE.with(Cell::get);
    // SAFETY: the handle is only compared.
    if p.is_null() || handle != unsafe { conn.handle() } {
        return None;
    }
    // SAFETY: ACTIVE is set only while its recorder lives (Drop clears it) and only on this
    // thread; the hook is not running (savepoints run between statements).
    let cell = unsafe { &*p };
    cell.try_borrow_mut().ok().map(|mut j| f(&mut j))
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
