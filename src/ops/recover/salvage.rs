//! Salvage at page level: walks each table's b-tree from its root page past unreadable pages,
//! reads the schema table itself, finds orphaned table leaf pages that no readable tree
//! reaches (their parent was damaged), and reads the entries of index trees (each names a row
//! that existed). Produces rows and keys; never writes.

use std::collections::HashMap;

use rusqlite::types::Value;

use super::btree::{self, TablePage};
use super::pages::Pages;

/// A row read from a page.
#[derive(Debug, Clone)]
pub struct RawRow {
    pub rowid: i64,
    pub values: Vec<Value>,
    pub page: u32,
}

/// What walking one table's tree found.
#[derive(Debug, Default)]
pub struct TreeStats {
    /// Pages under this tree that could not be read or parsed, or held a cell that could not.
    pub damaged_pages: usize,
    /// Leaf pages read (with at least one row).
    pub leaves: usize,
    /// Cells that could not be read on readable pages.
    pub bad_cells: usize,
    /// The largest rowid the tree claims to hold (from interior keys and rows).
    pub max_rowid: i64,
}

/// Page ownership while salvaging: which pages a tree (or an overflow chain) claimed.
pub struct Claims {
    owned: Vec<bool>,
}

impl Claims {
    pub fn new(pages: &Pages) -> Claims {
        Claims {
            owned: vec![false; pages.count as usize + 1],
        }
    }
    fn claim(&mut self, pgno: u32) -> bool {
        match self.owned.get_mut(pgno as usize) {
            Some(slot) if !*slot => {
                *slot = true;
                true
            }
            _ => false,
        }
    }
    fn is_claimed(&self, pgno: u32) -> bool {
        self.owned.get(pgno as usize).copied().unwrap_or(true)
    }
    pub fn mark(&mut self, pgno: u32) {
        self.claim(pgno);
    }
}

/// Depth beyond which a tree is considered a cycle (a real tree of 4 KB pages is < 10 deep).
const MAX_DEPTH: usize = 40;

/// Walks the table b-tree rooted at `root` in rowid order, handing the readable rows of each
/// leaf page to `sink` (so a table of millions of rows is never held in memory at once).
pub fn walk_each<E>(
    pages: &Pages,
    root: u32,
    claims: &mut Claims,
    sink: &mut dyn FnMut(Vec<RawRow>) -> Result<(), E>,
) -> Result<TreeStats, E> {
    let mut h = TreeStats::default();
    let mut stack = vec![(root, 0usize)];
    let mut buf = Vec::new();
    while let Some((pgno, depth)) = stack.pop() {
        if depth > MAX_DEPTH || !claims.claim(pgno) {
            h.damaged_pages += 1;
            continue;
        }
        if !pages.read(pgno, &mut buf) {
            h.damaged_pages += 1;
            continue;
        }
        match btree::parse_table_page(pages, pgno, &buf) {
            Ok(TablePage::Interior { children }) => {
                for (child, key) in children.iter().rev() {
                    if let Some(k) = key {
                        h.max_rowid = h.max_rowid.max(*k);
                    }
                    stack.push((*child, depth + 1));
                }
            }
            Ok(TablePage::Leaf { cells, bad_cells }) => {
                let before = h.bad_cells;
                h.bad_cells += bad_cells;
                let mut rows = Vec::with_capacity(cells.len());
                for c in cells {
                    for o in &c.overflow {
                        claims.mark(*o);
                    }
                    h.max_rowid = h.max_rowid.max(c.rowid);
                    if c.truncated {
                        h.bad_cells += 1;
                        continue;
                    }
                    match btree::record(&c.payload) {
                        Some(values) => rows.push(RawRow {
                            rowid: c.rowid,
                            values,
                            page: pgno,
                        }),
                        None => h.bad_cells += 1,
                    }
                }
                // A page that lost a cell is damaged, even if the rest of it was read.
                if h.bad_cells > before {
                    h.damaged_pages += 1;
                }
                if !rows.is_empty() {
                    h.leaves += 1;
                }
                sink(rows)?;
            }
            Err(_) => h.damaged_pages += 1,
        }
    }
    Ok(h)
}

/// Walks a (small) tree and returns all its rows.
pub fn walk(pages: &Pages, root: u32, claims: &mut Claims) -> (Vec<RawRow>, TreeStats) {
    let mut all = Vec::new();
    let stats = walk_each(pages, root, claims, &mut |rows| {
        all.extend(rows);
        Ok::<(), ()>(())
    })
    .unwrap_or_default();
    (all, stats)
}

/// An entry of the schema table.
#[derive(Debug, Clone)]
pub struct SchemaEntry {
    pub kind: String,
    pub name: String,
    /// The table an index belongs to (a table's own name for a table).
    pub table: String,
    pub root: u32,
    pub sql: Option<String>,
}

/// Reads the schema table (rooted at page 1); empty when page 1 is unreadable.
pub fn schema(pages: &Pages, claims: &mut Claims) -> Vec<SchemaEntry> {
    let (rows, _) = walk(pages, 1, claims);
    rows.iter()
        .filter_map(|r| {
            let text = |i: usize| match r.values.get(i) {
                Some(Value::Text(t)) => Some(t.clone()),
                _ => None,
            };
            let root = match r.values.get(3) {
                Some(Value::Integer(n)) => u32::try_from(*n).ok()?,
                _ => 0,
            };
            Some(SchemaEntry {
                kind: text(0)?,
                name: text(1)?,
                table: text(2).unwrap_or_default(),
                root,
                sql: text(4),
            })
        })
        .collect()
}

/// Rows on table leaf pages that no tree claimed and that are not on the freelist, with the
/// page they came from, grouped by page.
pub fn orphans(pages: &Pages, claims: &mut Claims, free: &[u32]) -> (Vec<RawRow>, usize) {
    for f in free {
        claims.mark(*f);
    }
    let mut rows = Vec::new();
    let mut orphan_pages = 0;
    let mut buf = Vec::new();
    for pgno in 1..=pages.count {
        if claims.is_claimed(pgno) || !pages.read(pgno, &mut buf) {
            continue;
        }
        if let Ok(TablePage::Leaf { cells, .. }) = btree::parse_table_page(pages, pgno, &buf) {
            orphan_pages += 1;
            claims.mark(pgno);
            for c in cells {
                for o in &c.overflow {
                    claims.mark(*o);
                }
                if let (false, Some(values)) = (c.truncated, btree::record(&c.payload)) {
                    rows.push(RawRow {
                        rowid: c.rowid,
                        values,
                        page: pgno,
                    });
                }
            }
        }
    }
    (rows, orphan_pages)
}

/// Root pages of the schema's tables by name.
pub fn table_roots(schema: &[SchemaEntry]) -> HashMap<String, u32> {
    schema
        .iter()
        .filter(|e| e.kind == "table" && e.root > 0)
        .map(|e| (e.name.clone(), e.root))
        .collect()
}

/// Hands every readable entry of the index tree rooted at `root` to `sink` (its values: the
/// indexed columns, then the rowid). Walks with its own record of visited pages, so a damaged
/// index can neither claim a table's pages nor loop; returns the pages it could not read.
pub fn walk_index(pages: &Pages, root: u32, sink: &mut dyn FnMut(Vec<Value>)) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut damaged = 0;
    let mut stack = vec![(root, 0usize)];
    let mut buf = Vec::new();
    while let Some((pgno, depth)) = stack.pop() {
        if depth > MAX_DEPTH || !seen.insert(pgno) || !pages.read(pgno, &mut buf) {
            damaged += 1;
            continue;
        }
        match btree::parse_index_page(pages, pgno, &buf) {
            Ok(p) => {
                if p.bad_cells > 0 {
                    damaged += 1;
                }
                for r in p.records {
                    sink(r);
                }
                stack.extend(p.children.into_iter().map(|c| (c, depth + 1)));
            }
            Err(_) => damaged += 1,
        }
    }
    damaged
}
