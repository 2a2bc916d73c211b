//! The ledger's hash chain: every row of `inventory_transactions` carries in `chain` the
//! SHA-256 of the previous row's chain and its own fields, so a row changed, removed or added
//! behind ora's back (with the sqlite3 shell, say, even with the stock made to match) breaks
//! the chain at the first row it touched, and `verify` names it. The writer links each new row
//! as it inserts it; builders of a new file (migration, adopt, the rebuild from the mirror,
//! recover) link the rows they load with [`repair`]. It shows tampering, it does not prevent
//! it: anyone who knows this scheme can recompute a chain, so the copies elsewhere (backups,
//! the replica) are what a recomputed chain would disagree with. Never changes a row's data.

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::error::{Result, SqlContext};

/// The fields of one ledger row that the chain covers.
pub struct Link<'a> {
    pub id: i64,
    pub date: &'a str,
    pub sku: &'a str,
    pub quantity: i64,
    pub kind: &'a str,
    pub notes: Option<&'a str>,
    pub created_at: &'a str,
    pub request_id: Option<&'a str>,
    /// Who recorded it (rows from before the audit trail have none, and hash as they did).
    pub actor: Option<&'a str>,
}

/// Bytes of a link. Eight: the chain is evidence against edits behind ora's back, not a secret
/// (anyone who knows the scheme can recompute it), and 32 random bytes per row do not compress:
/// they would nearly double the size of every backup.
pub const LINK_BYTES: usize = 8;

/// The link of a row whose predecessor's link is `prev` (empty for the first row): the first
/// [`LINK_BYTES`] of a SHA-256 over `prev` and the row's fields.
pub fn hash(prev: &[u8], l: &Link) -> [u8; LINK_BYTES] {
    let d = digest(b"ora ledger chain v2\0", prev, l);
    let mut out = [0u8; LINK_BYTES];
    out.copy_from_slice(&d[..LINK_BYTES]);
    out
}

/// The first version's 32-byte link: rows linked before links were shortened keep theirs, and
/// the row after such a row links to it as it is.
fn hash_v1(prev: &[u8], l: &Link) -> [u8; 32] {
    digest(b"ora ledger chain v1\0", prev, l)
}

fn digest(version: &[u8], prev: &[u8], l: &Link) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(version);
    h.update((prev.len() as u32).to_le_bytes());
    h.update(prev);
    h.update(l.id.to_le_bytes());
    h.update(l.quantity.to_le_bytes());
    for f in [
        Some(l.date),
        Some(l.sku),
        Some(l.kind),
        l.notes,
        Some(l.created_at),
        l.request_id,
    ] {
        match f {
            Some(s) => {
                h.update((s.len() as u32).to_le_bytes());
                h.update(s.as_bytes());
            }
            None => h.update(u32::MAX.to_le_bytes()),
        }
    }
    if let Some(a) = l.actor {
        h.update(b"actor\0");
        h.update((a.len() as u32).to_le_bytes());
        h.update(a.as_bytes());
    }
    h.finalize().into()
}

/// The last ledger row's id and chain ((0, empty) for an empty ledger).
pub fn last(conn: &Connection) -> Result<(i64, Vec<u8>)> {
    let row = conn
        .prepare_cached(
            "SELECT id, coalesce(chain, x'') FROM inventory_transactions ORDER BY id DESC LIMIT 1",
        )
        .and_then(|mut st| st.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
        .ctx("read the ledger's last link")?;
    Ok(row.unwrap_or((0, Vec::new())))
}

/// The link of ledger row `id`, if the row exists (empty when it has none).
pub fn link_at(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT coalesce(chain, x'') FROM inventory_transactions WHERE id = ?1")
        .and_then(|mut st| st.query_row([id], |r| r.get(0)).optional())
        .ctx("read the ledger's chain")
}

/// Whether the ledger has this column (files from before the chain, or before the actor).
fn has_column(conn: &Connection, name: &str) -> Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info('inventory_transactions') WHERE name = ?1",
        [name],
        |r| r.get(0),
    )
    .ctx("read the ledger's columns")
}

/// The ledger's actor column, or NULL in a file from before it (a migration links the chain
/// before the step that adds it).
fn actor_column(conn: &Connection) -> Result<&'static str> {
    Ok(if has_column(conn, "actor")? {
        "actor"
    } else {
        "NULL"
    })
}

/// Where a chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Break {
    /// The first ledger id whose link does not hold.
    pub id: i64,
    /// The id of the row before it (0 when it is the first).
    pub after: i64,
    /// Why, in words.
    pub why: String,
}

/// The columns a [`Walker`] reads, in its order, for a SELECT over the ledger (the actor as
/// NULL in a file from before it); `None` for a file from before the chain (an old backup),
/// which has nothing to check.
pub fn walk_columns(conn: &Connection) -> Result<Option<String>> {
    if !has_column(conn, "chain")? {
        return Ok(None);
    }
    Ok(Some(format!(
        "id, date, sku, quantity, transaction_type, notes, created_at, request_id, chain, {}",
        actor_column(conn)?
    )))
}

/// Checks the links of ledger rows fed to it in id order, up to the first that does not hold.
#[derive(Debug, Default)]
pub struct Walker {
    prev: Vec<u8>,
    prev_id: i64,
    rows: u64,
    broke: Option<Break>,
}

impl Walker {
    /// A walker that continues the chain after row `id`, whose link is `link` (a point an
    /// earlier walk proved), for the rows after it.
    pub fn after(id: i64, link: &[u8]) -> Walker {
        Walker {
            prev: link.to_vec(),
            prev_id: id,
            ..Walker::default()
        }
    }

    /// Where the walk stands: the last row whose link held, and that link.
    pub fn point(&self) -> (i64, &[u8]) {
        (self.prev_id, &self.prev)
    }

    /// Checks one row whose [`walk_columns`] start at column `at`; false once the chain broke
    /// (later rows are not checked).
    pub fn feed(&mut self, r: &rusqlite::Row, at: usize) -> Result<bool> {
        if self.broke.is_some() {
            return Ok(false);
        }
        self.rows += 1;
        let ctx = "read the ledger's chain";
        let id: i64 = r.get(at).ctx(ctx)?;
        let text = |i: usize| r.get_ref(at + i).ok().and_then(|v| v.as_str().ok());
        // A link that is not a blob (written as text by hand) matches nothing.
        let stored: Option<&[u8]> = r
            .get_ref(at + 8)
            .ctx(ctx)?
            .as_blob_or_null()
            .unwrap_or(Some(&[]));
        let link = Link {
            id,
            date: text(1).unwrap_or_default(),
            sku: text(2).unwrap_or_default(),
            quantity: r.get(at + 3).unwrap_or_default(),
            kind: text(4).unwrap_or_default(),
            notes: text(5),
            created_at: text(6).unwrap_or_default(),
            request_id: text(7),
            actor: text(9),
        };
        // A 32-byte link is the first version's; it stays valid, as does the next row's link to it.
        let (long, short);
        let want: &[u8] = match stored.map(<[u8]>::len) {
            Some(32) => {
                long = hash_v1(&self.prev, &link);
                &long
            }
            _ => {
                short = hash(&self.prev, &link);
                &short
            }
        };
        let why = match stored {
            None => Some("it has no link: it was added behind ora's back".to_string()),
            Some(s) if s == want => None,
            Some(_) => Some(format!(
                "its link does not match: the row was changed, or a row after ledger id {} was removed or added, behind ora's back",
                self.prev_id
            )),
        };
        if let Some(why) = why {
            self.broke = Some(Break {
                id,
                after: self.prev_id,
                why,
            });
            return Ok(false);
        }
        self.prev.clear();
        self.prev.extend_from_slice(want);
        self.prev_id = id;
        Ok(true)
    }

    /// The rows checked and the first break.
    pub fn finish(self) -> (u64, Option<Break>) {
        (self.rows, self.broke)
    }
}

/// Walks the ledger in id order; the first row whose link does not hold, and the rows walked.
/// A file from before the chain (an old backup) has nothing to check.
pub fn check(conn: &Connection) -> Result<(u64, Option<Break>)> {
    let Some(cols) = walk_columns(conn)? else {
        return Ok((0, None));
    };
    Ok(walk(conn, &cols, None, Walker::default())?.finish())
}

/// Feeds `w` the ledger rows (those after `after`, when given) in id order until one breaks.
fn walk(conn: &Connection, cols: &str, after: Option<i64>, mut w: Walker) -> Result<Walker> {
    let ctx = "read the ledger's chain";
    let filter = if after.is_some() { "WHERE id > ?1" } else { "" };
    let mut st = conn
        .prepare(&format!(
            "SELECT {cols} FROM inventory_transactions {filter} ORDER BY id"
        ))
        .ctx(ctx)?;
    let mut rows = match after {
        Some(id) => st.query([id]),
        None => st.query([]),
    }
    .ctx(ctx)?;
    while let Some(r) = rows.next().ctx(ctx)? {
        if !w.feed(r, 0)? {
            break;
        }
    }
    Ok(w)
}

/// What a walk from a point found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walked {
    pub rows: u64,
    /// The last row whose link held, and its link.
    pub to: (i64, Vec<u8>),
    pub broke: Option<Break>,
}

/// Walks the ledger rows after `id` (whose link must still be `link`).
pub fn check_after(conn: &Connection, id: i64, link: &[u8]) -> Result<Walked> {
    let Some(cols) = walk_columns(conn)? else {
        return Ok(Walked {
            rows: 0,
            to: (0, Vec::new()),
            broke: None,
        });
    };
    let stored = link_at(conn, id)?;
    if id > 0 && stored.as_deref() != Some(link) {
        let why = match stored {
            None => "the row the last verify ended at is gone: rows were removed behind ora's back",
            Some(_) => "the link the last verify ended at has changed: the ledger was edited behind ora's back at or before it",
        };
        return Ok(Walked {
            rows: 0,
            to: (id, link.to_vec()),
            broke: Some(Break {
                id,
                after: id,
                why: why.to_string(),
            }),
        });
    }
    let w = walk(conn, &cols, Some(id), Walker::after(id, link))?;
    let to = (w.point().0, w.point().1.to_vec());
    let (rows, broke) = w.finish();
    Ok(Walked { rows, to, broke })
}

/// One ledger row as read for relinking.
struct Row {
    id: i64,
    date: String,
    sku: String,
    quantity: i64,
    kind: String,
    notes: Option<String>,
    created_at: String,
    request_id: Option<String>,
    actor: Option<String>,
}

/// Rows relinked per slice by [`repair`].
const REPAIR_SLICE: i64 = 10_000;

/// Links every row from the first whose link does not hold (or is missing) to the end; returns
/// where it started, `None` when the chain already held. The ledger's append-only triggers must
/// be off (see [`with_ledger_open`]).
pub fn repair(conn: &Connection) -> Result<Option<i64>> {
    repair_in(conn, REPAIR_SLICE)
}

fn repair_in(conn: &Connection, slice: i64) -> Result<Option<i64>> {
    let Some(b) = check(conn)?.1 else {
        return Ok(None);
    };
    let mut prev: Vec<u8> = if b.after == 0 {
        Vec::new()
    } else {
        conn.query_row(
            "SELECT chain FROM inventory_transactions WHERE id = ?1",
            [b.after],
            |r| r.get(0),
        )
        .ctx("read the ledger's chain")?
    };
    // In slices of REPAIR_SLICE rows by id: a break near the start of a large ledger would
    // otherwise hold every later row in memory at once (gigabytes on a 20M-row file).
    let mut st = conn
        .prepare(&format!(
            "SELECT id, date, sku, quantity, transaction_type, notes, created_at, request_id, {}
               FROM inventory_transactions WHERE id >= ?1 ORDER BY id LIMIT ?2",
            actor_column(conn)?
        ))
        .ctx("read the ledger")?;
    let mut up = conn
        .prepare("UPDATE inventory_transactions SET chain = ?2 WHERE id = ?1")
        .ctx("link the ledger")?;
    let mut from = b.id;
    loop {
        let rows: Vec<Row> = st
            .query_map((from, slice), |r| {
                Ok(Row {
                    id: r.get(0)?,
                    date: r.get(1)?,
                    sku: r.get(2)?,
                    quantity: r.get(3)?,
                    kind: r.get(4)?,
                    notes: r.get(5)?,
                    created_at: r.get(6)?,
                    request_id: r.get(7)?,
                    actor: r.get(8)?,
                })
            })
            .ctx("read the ledger")?
            .collect::<std::result::Result<_, _>>()
            .ctx("read the ledger")?;
        let Some(last) = rows.last().map(|r| r.id) else {
            break;
        };
        for row in &rows {
            let h = hash(
                &prev,
                &Link {
                    id: row.id,
                    date: &row.date,
                    sku: &row.sku,
                    quantity: row.quantity,
                    kind: &row.kind,
                    notes: row.notes.as_deref(),
                    created_at: &row.created_at,
                    request_id: row.request_id.as_deref(),
                    actor: row.actor.as_deref(),
                },
            );
            up.execute((row.id, &h[..])).ctx("link the ledger")?;
            prev = h.to_vec();
        }
        match last.checked_add(1) {
            Some(next) if rows.len() as i64 == slice => from = next,
            _ => break,
        }
    }
    Ok(Some(b.id))
}

/// Drops the ledger's append-only triggers and returns their SQL for [`close_ledger`] (inside
/// the caller's transaction: for builders of a new file and migrations only).
pub fn open_ledger(conn: &Connection) -> Result<Vec<String>> {
    super::schema::set_aside(
        conn,
        "trigger",
        "name IN ('inventory_transactions_no_update', 'inventory_transactions_no_delete')",
    )
}

/// Puts back the triggers [`open_ledger`] dropped, exactly as they were.
pub fn close_ledger(conn: &Connection, triggers: &[String]) -> Result<()> {
    for sql in triggers {
        conn.execute_batch(sql).ctx("close the ledger again")?;
    }
    Ok(())
}

/// Runs `f` between [`open_ledger`] and [`close_ledger`].
pub fn with_ledger_open<T>(conn: &Connection, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let triggers = open_ledger(conn)?;
    let out = f()?;
    close_ledger(conn, &triggers)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(conn: &Connection) {
        conn.execute_batch(
            "CREATE TABLE inventory_transactions (id INTEGER PRIMARY KEY, date TEXT, sku TEXT,
                 quantity INTEGER, transaction_type TEXT, notes TEXT, created_at TEXT,
                 request_id TEXT, chain BLOB, actor TEXT)",
        )
        .expect("create");
    }

    fn add(conn: &Connection, id: i64, link: &[u8]) {
        conn.execute(
            "INSERT INTO inventory_transactions VALUES (?1, '2026-01-01', 'A-1', 1, 'Receive', NULL, 't', NULL, ?2, NULL)",
            rusqlite::params![id, link],
        )
        .expect("insert");
    }

    fn fields(id: i64) -> Link<'static> {
        Link {
            id,
            date: "2026-01-01",
            sku: "A-1",
            quantity: 1,
            kind: "Receive",
            notes: None,
            created_at: "t",
            request_id: None,
            actor: None,
        }
    }

    // Rows linked with the first version's 32-byte links stay valid, and so does a short link
    // that follows one; a changed row is still found.
    #[test]
    fn old_long_links_and_new_short_ones_chain_together() {
        let conn = Connection::open_in_memory().expect("open");
        ledger(&conn);
        let a = hash_v1(&[], &fields(1));
        add(&conn, 1, &a);
        let b = hash_v1(&a, &fields(2));
        add(&conn, 2, &b);
        let c = hash(&b, &fields(3));
        assert_eq!(c.len(), LINK_BYTES);
        add(&conn, 3, &c);
        add(&conn, 4, &hash(&c, &fields(4)));
        assert_eq!(check(&conn).expect("check"), (4, None));
        conn.execute(
            "UPDATE inventory_transactions SET quantity = 5 WHERE id = 2",
            [],
        )
        .expect("edit");
        let (_, broke) = check(&conn).expect("check");
        assert_eq!(broke.map(|b| b.id), Some(2));
    }

    // A break near the start is relinked to the end in slices (never the whole rest of the
    // ledger in memory): every row after it is linked again, however the slices fall.
    #[test]
    fn repair_links_the_rest_of_the_ledger_slice_by_slice() {
        let conn = Connection::open_in_memory().expect("open");
        ledger(&conn);
        let mut prev: Vec<u8> = Vec::new();
        for id in 1..=30 {
            let h = hash(&prev, &fields(id));
            add(&conn, id, &h);
            prev = h.to_vec();
        }
        conn.execute(
            "UPDATE inventory_transactions SET quantity = 9 WHERE id = 3",
            [],
        )
        .expect("edit");
        assert_eq!(check(&conn).expect("check").1.map(|b| b.id), Some(3));
        assert_eq!(repair_in(&conn, 7).expect("repair"), Some(3));
        assert_eq!(check(&conn).expect("check"), (30, None));
        assert_eq!(repair_in(&conn, 7).expect("again"), None);
    }
}
