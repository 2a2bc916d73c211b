//! SQLite's page cache, wrapped so that the end of a write transaction does not walk the whole
//! cache for nothing. Owns the process-wide page-cache methods (`SQLITE_CONFIG_PCACHE2`),
//! installed once by the `ora` binary before SQLite starts; every call is handed to SQLite's own cache unchanged,
//! except a truncation that provably has nothing to drop. Must never change a page, its key or
//! what SQLite's cache returns, and never skip a truncation that could drop a page.
//!
//! Why: when a B-tree rebalance puts two sibling pages back in ascending order it swaps their
//! numbers through a spare one, the number of the page that holds the lock bytes at 1 GiB
//! (262,145 with 4 KiB pages). SQLite's cache then remembers that number as its largest key,
//! and at the end of the transaction, asked to drop every page past the file's end, it finds
//! that largest key past the end and walks its whole hash table (every cached page) to find
//! none. On a file under 1 GiB that walk (tens to hundreds of microseconds) came in about one
//! commit in seven under keyed writes. This wrapper keeps its own bound on the keys the cache can hold (every key a page
//! was created or moved under, except the spare number while a swap passes through it) and
//! lets a truncation through only when that bound reaches the limit.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The byte offset of SQLite's lock bytes; the page that holds it is never part of a database,
/// and balance_nonroot swaps page numbers through the page right after.
const PENDING_BYTE: u32 = 0x4000_0000;

type Pc = *mut ffi::sqlite3_pcache;
type Page = *mut ffi::sqlite3_pcache_page;

/// SQLite's own cache methods, which every call goes to.
struct Inner {
    arg: *mut c_void,
    init: unsafe extern "C" fn(*mut c_void) -> c_int,
    shutdown: unsafe extern "C" fn(*mut c_void),
    create: unsafe extern "C" fn(c_int, c_int, c_int) -> Pc,
    cachesize: unsafe extern "C" fn(Pc, c_int),
    pagecount: unsafe extern "C" fn(Pc) -> c_int,
    fetch: unsafe extern "C" fn(Pc, c_uint, c_int) -> Page,
    unpin: unsafe extern "C" fn(Pc, Page, c_int),
    rekey: unsafe extern "C" fn(Pc, Page, c_uint, c_uint),
    truncate: unsafe extern "C" fn(Pc, c_uint),
    destroy: unsafe extern "C" fn(Pc),
    shrink: unsafe extern "C" fn(Pc),
}
// SAFETY: plain C function pointers and SQLite's own argument (null for the default cache);
// SQLite calls them from any thread, and the default cache does its own locking.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}

static INNER: OnceLock<Inner> = OnceLock::new();
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// Truncations SQLite's cache would have answered with a walk of its whole table, not passed on.
static WALKS_AVOIDED: AtomicU64 = AtomicU64::new(0);
/// Truncations passed on to SQLite's cache because a page could lie at or past the limit.
static PASSED_ON: AtomicU64 = AtomicU64::new(0);

/// One connection's cache: SQLite's, and what this wrapper knows of the keys in it. SQLite
/// uses a connection from one thread at a time, so its cache's calls never overlap.
struct Cache {
    inner: Pc,
    /// The spare page number swaps pass through, for this cache's page size.
    spare: c_uint,
    /// No page was ever created or moved under a key above this since the last truncation.
    max_key: c_uint,
    /// A page was moved to the spare number and has not been moved away since.
    parked: bool,
    /// A page was moved to the spare number since SQLite's cache last dropped it: that cache
    /// then walks its whole table when asked to drop from a limit at or below the spare.
    swapped: bool,
}

/// Installs the wrapper if SQLite has not started yet in this process; true when it is in
/// place; later calls only report. Call it first thing, while the process has one thread:
/// SQLite's configuration must not change while another thread starts SQLite (the `ora`
/// binary calls it before it parses its arguments; a process that never calls it keeps
/// SQLite's own cache).
pub fn install() -> bool {
    *INSTALLED.get_or_init(try_install)
}

fn try_install() -> bool {
    let mut default = ffi::sqlite3_pcache_methods2 {
        iVersion: 0,
        pArg: std::ptr::null_mut(),
        xInit: None,
        xShutdown: None,
        xCreate: None,
        xCachesize: None,
        xPagecount: None,
        xFetch: None,
        xUnpin: None,
        xRekey: None,
        xTruncate: None,
        xDestroy: None,
        xShrink: None,
    };
    // SAFETY: GETPCACHE2 copies SQLite's current methods into the struct passed (a valid,
    // writable one); once SQLite has started it fails with SQLITE_MISUSE and copies nothing.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_GETPCACHE2,
            &mut default as *mut ffi::sqlite3_pcache_methods2,
        )
    };
    if rc != ffi::SQLITE_OK || default.iVersion < 1 {
        return false;
    }
    let Some(methods) = unwrapped(&default) else {
        return false;
    };
    if INNER.set(methods).is_err() {
        return false;
    }
    let ours = ffi::sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: std::ptr::null_mut(),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        xCreate: Some(x_create),
        xCachesize: Some(x_cachesize),
        xPagecount: Some(x_pagecount),
        xFetch: Some(x_fetch),
        xUnpin: Some(x_unpin),
        xRekey: Some(x_rekey),
        xTruncate: Some(x_truncate),
        xDestroy: Some(x_destroy),
        xShrink: Some(x_shrink),
    };
    // SAFETY: PCACHE2 copies the struct; it fails with SQLITE_MISUSE once SQLite has started
    // (a connection opened before this), and SQLite then keeps its own cache.
    let rc = unsafe {
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_PCACHE2,
            &ours as *const ffi::sqlite3_pcache_methods2,
        )
    };
    rc == ffi::SQLITE_OK
}

fn unwrapped(m: &ffi::sqlite3_pcache_methods2) -> Option<Inner> {
    Some(Inner {
        arg: m.pArg,
        init: m.xInit?,
        shutdown: m.xShutdown?,
        create: m.xCreate?,
        cachesize: m.xCachesize?,
        pagecount: m.xPagecount?,
        fetch: m.xFetch?,
        unpin: m.xUnpin?,
        rekey: m.xRekey?,
        truncate: m.xTruncate?,
        destroy: m.xDestroy?,
        shrink: m.xShrink?,
    })
}

fn inner() -> &'static Inner {
    match INNER.get() {
        Some(m) => m,
        // Unreachable: SQLite learns of these methods only after INNER is set.
        None => std::process::abort(),
    }
}

/// The wrapper's state behind a cache handle SQLite gives back.
///
/// # Safety
/// `p` must be a handle made by `x_create` and not yet destroyed.
unsafe fn cache<'a>(p: Pc) -> &'a mut Cache {
    unsafe { &mut *(p as *mut Cache) }
}

unsafe extern "C" fn x_init(_: *mut c_void) -> c_int {
    let m = inner();
    unsafe { (m.init)(m.arg) }
}

unsafe extern "C" fn x_shutdown(_: *mut c_void) {
    let m = inner();
    unsafe { (m.shutdown)(m.arg) }
}

unsafe extern "C" fn x_create(sz_page: c_int, sz_extra: c_int, purgeable: c_int) -> Pc {
    let inner_cache = unsafe { (inner().create)(sz_page, sz_extra, purgeable) };
    if inner_cache.is_null() {
        return inner_cache;
    }
    // A page size SQLite would never use gives a spare no swap uses: every truncation then
    // goes through, as without the wrapper.
    let spare = u32::try_from(sz_page)
        .ok()
        .filter(|&s| s > 0)
        .map_or(0, |s| PENDING_BYTE / s + 1);
    let c = Box::new(Cache {
        inner: inner_cache,
        spare,
        max_key: 0,
        parked: false,
        swapped: false,
    });
    Box::into_raw(c) as Pc
}

unsafe extern "C" fn x_cachesize(p: Pc, n: c_int) {
    let c = unsafe { cache(p) };
    unsafe { (inner().cachesize)(c.inner, n) }
}

unsafe extern "C" fn x_pagecount(p: Pc) -> c_int {
    let c = unsafe { cache(p) };
    unsafe { (inner().pagecount)(c.inner) }
}

unsafe extern "C" fn x_fetch(p: Pc, key: c_uint, create: c_int) -> Page {
    let c = unsafe { cache(p) };
    if create != 0 {
        // A page may be created under this key: the bound covers it, the spare number too.
        c.max_key = c.max_key.max(key);
    }
    unsafe { (inner().fetch)(c.inner, key, create) }
}

unsafe extern "C" fn x_unpin(p: Pc, page: Page, discard: c_int) {
    let c = unsafe { cache(p) };
    unsafe { (inner().unpin)(c.inner, page, discard) }
}

unsafe extern "C" fn x_rekey(p: Pc, page: Page, old: c_uint, new: c_uint) {
    let c = unsafe { cache(p) };
    if new == c.spare {
        c.parked = true;
        c.swapped = true;
    } else {
        c.max_key = c.max_key.max(new);
        if old == c.spare {
            // The swap's third step: the parked page leaves the spare number.
            c.parked = false;
        }
    }
    unsafe { (inner().rekey)(c.inner, page, old, new) }
}

unsafe extern "C" fn x_truncate(p: Pc, limit: c_uint) {
    let c = unsafe { cache(p) };
    if !c.parked && c.max_key < limit {
        // No page can lie at or past the limit: nothing to drop.
        if c.swapped && c.spare >= limit {
            WALKS_AVOIDED.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    PASSED_ON.fetch_add(1, Ordering::Relaxed);
    unsafe { (inner().truncate)(c.inner, limit) }
    // Every page at or past the limit is gone, a parked one included.
    c.max_key = c.max_key.min(limit.saturating_sub(1));
    if c.spare >= limit {
        c.parked = false;
        c.swapped = false;
    }
}

unsafe extern "C" fn x_destroy(p: Pc) {
    // SAFETY: SQLite destroys a cache once, after its last other call; the box is ours.
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    unsafe { (inner().destroy)(c.inner) }
}

unsafe extern "C" fn x_shrink(p: Pc) {
    let c = unsafe { cache(p) };
    unsafe { (inner().shrink)(c.inner) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    const CHILD: &str = "ORA_PAGECACHE_CHILD";
    const NAME: &str = "store::pagecache::tests::walks_avoided_and_pages_intact";

    /// Truncations not passed on because SQLite's cache would have walked its whole table
    /// for nothing, and truncations passed on, since the process started.
    fn counts() -> (u64, u64) {
        (
            WALKS_AVOIDED.load(Ordering::Relaxed),
            PASSED_ON.load(Ordering::Relaxed),
        )
    }

    /// Random keys (a fixed sequence) into an index make B-tree rebalances that swap page
    /// numbers; a rollback of a transaction that grew the file leaves pages past its end.
    #[test]
    fn walks_avoided_and_pages_intact() {
        if std::env::var_os(CHILD).is_some() {
            return child();
        }
        // The wrapper goes in only before SQLite starts, and other tests of this binary open
        // connections: the check runs in a process of its own with this test alone.
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "the check did not run: {text}");
    }

    fn child() {
        assert!(install(), "installed before SQLite started");
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;
             CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v BLOB NOT NULL);",
        )
        .unwrap();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (avoided0, _) = counts();
        for i in 0..6_000u64 {
            conn.execute(
                "INSERT INTO t (id, k, v) VALUES (?1, ?2, zeroblob(40))",
                (i as i64, format!("{:016x}", next())),
            )
            .unwrap();
        }
        let (avoided1, passed1) = counts();
        assert!(
            avoided1 > avoided0,
            "random keys made no truncation the wrapper could skip"
        );

        // A transaction that grows the file, rolled back: its pages past the end must go.
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..2_000i64 {
            conn.execute(
                "INSERT INTO t (id, k, v) VALUES (?1, ?2, zeroblob(3000))",
                (100_000 + i, format!("grown-{i}")),
            )
            .unwrap();
        }
        conn.execute_batch("ROLLBACK").unwrap();
        let (_, passed2) = counts();
        assert!(
            passed2 > passed1,
            "the rollback's truncation was not passed on"
        );

        // The same page numbers used again: what is read back is what was written now.
        for i in 0..2_000i64 {
            conn.execute(
                "INSERT INTO t (id, k, v) VALUES (?1, ?2, randomblob(3000))",
                (200_000 + i, format!("again-{i}")),
            )
            .unwrap();
        }
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let (n, grown, again): (i64, i64, i64) = conn
            .query_row(
                "SELECT count(*), count(*) FILTER (WHERE k LIKE 'grown-%'),
                        count(*) FILTER (WHERE length(v) = 3000) FROM t",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((n, grown, again), (8_000, 0, 2_000));
        // A second connection reads the same rows through its own cache.
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        let n2: i64 = other
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n2, 8_000);
    }
}
