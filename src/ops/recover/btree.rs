//! Parsing b-tree pages and records from raw bytes (sqlite.org/fileformat2.html), defensively:
//! every length and offset is checked against the page, so a damaged page yields an error
//! instead of garbage or a panic. Table b-trees for the rows; index b-trees only for the keys
//! their entries hold (the evidence of rows whose table page was lost); indexes themselves are
//! rebuilt, not copied.

use rusqlite::types::Value;

use super::pages::{be32, Pages};

/// Reads a varint at `at`; returns (value, bytes used).
fn varint(b: &[u8], at: usize) -> Option<(i64, usize)> {
    let mut v: u64 = 0;
    for i in 0..9 {
        let byte = *b.get(at + i)?;
        if i == 8 {
            v = (v << 8) | u64::from(byte);
            return Some((v as i64, 9));
        }
        v = (v << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((v as i64, i + 1));
        }
    }
    None
}

/// One cell of a table leaf page, with its payload assembled from overflow pages.
pub struct LeafCell {
    pub rowid: i64,
    pub payload: Vec<u8>,
    /// Overflow pages the payload was read from.
    pub overflow: Vec<u32>,
    /// The payload was cut short (an overflow page was missing or bad).
    pub truncated: bool,
}

/// A parsed table b-tree page.
pub enum TablePage {
    Interior {
        /// (left child, largest rowid in it), then the right-most child with key None.
        children: Vec<(u32, Option<i64>)>,
    },
    Leaf {
        cells: Vec<LeafCell>,
        /// Cells that could not be parsed.
        bad_cells: usize,
    },
}

/// Parses page `pgno` (its bytes in `data`) as a table b-tree page.
pub fn parse_table_page(pages: &Pages, pgno: u32, data: &[u8]) -> Result<TablePage, String> {
    let hdr = if pgno == 1 { 100 } else { 0 };
    let usable = pages.usable.min(data.len());
    let kind = *data.get(hdr).ok_or("page too short")?;
    let interior = match kind {
        0x05 => true,
        0x0D => false,
        0x02 | 0x0A => return Err("an index page".into()),
        other => return Err(format!("not a b-tree page (type byte {other:#04x})")),
    };
    let ncells = usize::from(u16::from_be_bytes([data[hdr + 3], data[hdr + 4]]));
    let ptrs = hdr + if interior { 12 } else { 8 };
    if ptrs + 2 * ncells > usable {
        return Err(format!("{ncells} cells cannot fit in the page"));
    }
    let cell_at = |i: usize| {
        usize::from(u16::from_be_bytes([
            data[ptrs + 2 * i],
            data[ptrs + 2 * i + 1],
        ]))
    };
    if interior {
        let mut children = Vec::with_capacity(ncells + 1);
        for i in 0..ncells {
            let at = cell_at(i);
            if at < ptrs + 2 * ncells || at + 5 > usable {
                return Err(format!("cell {i} points outside the page"));
            }
            let child = be32(data, at);
            let (key, _) = varint(&data[..usable], at + 4).ok_or("bad key")?;
            children.push((child, Some(key)));
        }
        children.push((be32(data, hdr + 8), None));
        // Children beyond the end of a truncated file are reported missing by the walk.
        if children.iter().all(|(c, _)| *c == 0) {
            return Err("no child page numbers".into());
        }
        return Ok(TablePage::Interior { children });
    }
    let mut cells: Vec<LeafCell> = Vec::with_capacity(ncells);
    let mut bad_cells = 0;
    let mut offsets = std::collections::HashSet::new();
    // A sound leaf's cells are distinct and in rising rowid order: a page where they are not
    // had a pointer or a key changed, and counts as damaged (its readable cells are kept).
    let mut disorder = false;
    for i in 0..ncells {
        let at = cell_at(i);
        if at < ptrs + 2 * ncells || at >= usable {
            bad_cells += 1;
            continue;
        }
        if !offsets.insert(at) {
            disorder = true;
            continue;
        }
        match leaf_cell(pages, &data[..usable], at) {
            Some(c) => {
                if cells.last().is_some_and(|p| p.rowid >= c.rowid) {
                    disorder = true;
                }
                cells.push(c)
            }
            None => bad_cells += 1,
        }
    }
    if disorder {
        bad_cells += 1;
    }
    if ncells > 0 && cells.is_empty() {
        return Err("no cell of the page could be read".into());
    }
    Ok(TablePage::Leaf { cells, bad_cells })
}

/// Reads one leaf cell at `at`, following its overflow chain.
fn leaf_cell(pages: &Pages, page: &[u8], at: usize) -> Option<LeafCell> {
    let (len, n1) = varint(page, at)?;
    let (rowid, n2) = varint(page, at + n1)?;
    let u = pages.usable;
    let (payload, overflow, truncated) = payload(pages, page, at + n1 + n2, len, u - 35)?;
    Some(LeafCell {
        rowid,
        payload,
        overflow,
        truncated,
    })
}

/// A payload of `len` bytes starting at `start` on `page`, with the part beyond what the page
/// keeps locally (at most `x` bytes: the table leaf and index rules differ) read from its
/// overflow chain: (payload, overflow pages, cut short).
fn payload(
    pages: &Pages,
    page: &[u8],
    start: usize,
    len: i64,
    x: usize,
) -> Option<(Vec<u8>, Vec<u32>, bool)> {
    let len = usize::try_from(len).ok()?;
    if len > 1 << 30 {
        return None;
    }
    let u = pages.usable;
    let local = if len <= x {
        len
    } else {
        let m = ((u - 12) * 32 / 255) - 23;
        let k = m + ((len - m) % (u - 4));
        if k <= x {
            k
        } else {
            m
        }
    };
    let end = start.checked_add(local)?;
    if end > page.len() {
        return None;
    }
    let mut payload = Vec::with_capacity(len);
    payload.extend_from_slice(&page[start..end]);
    let mut overflow = Vec::new();
    let mut truncated = false;
    if local < len {
        if end + 4 > page.len() {
            return None;
        }
        let mut next = be32(page, end);
        let mut buf = Vec::new();
        while payload.len() < len {
            if next == 0 || overflow.contains(&next) || !pages.read(next, &mut buf) {
                truncated = true;
                break;
            }
            overflow.push(next);
            let take = (len - payload.len()).min(u - 4);
            payload.extend_from_slice(&buf[4..4 + take]);
            next = be32(&buf, 0);
        }
    }
    Some((payload, overflow, truncated))
}

/// A parsed index b-tree page: its entries' records (interior cells hold entries too) and, for
/// an interior page, its children.
pub struct IndexPage {
    pub children: Vec<u32>,
    pub records: Vec<Vec<Value>>,
    /// Entries that could not be read.
    pub bad_cells: usize,
}

/// Parses page `pgno` (its bytes in `data`) as an index b-tree page.
pub fn parse_index_page(pages: &Pages, pgno: u32, data: &[u8]) -> Result<IndexPage, String> {
    let hdr = if pgno == 1 { 100 } else { 0 };
    let usable = pages.usable.min(data.len());
    let interior = match *data.get(hdr).ok_or("page too short")? {
        0x02 => true,
        0x0A => false,
        other => return Err(format!("not an index page (type byte {other:#04x})")),
    };
    if hdr + 12 > usable {
        return Err("page too short".into());
    }
    let ncells = usize::from(u16::from_be_bytes([data[hdr + 3], data[hdr + 4]]));
    let ptrs = hdr + if interior { 12 } else { 8 };
    if ptrs + 2 * ncells > usable {
        return Err(format!("{ncells} cells cannot fit in the page"));
    }
    let page = &data[..usable];
    let x = ((pages.usable - 12) * 64 / 255) - 23;
    let mut out = IndexPage {
        children: Vec::new(),
        records: Vec::with_capacity(ncells),
        bad_cells: 0,
    };
    for i in 0..ncells {
        let at = usize::from(u16::from_be_bytes([
            data[ptrs + 2 * i],
            data[ptrs + 2 * i + 1],
        ]));
        let body = if interior { at + 4 } else { at };
        if at < ptrs + 2 * ncells || body >= usable {
            out.bad_cells += 1;
            continue;
        }
        if interior {
            out.children.push(be32(page, at));
        }
        let read = varint(page, body).and_then(|(len, n)| payload(pages, page, body + n, len, x));
        match read {
            Some((p, _, false)) => match record(&p) {
                Some(v) => out.records.push(v),
                None => out.bad_cells += 1,
            },
            _ => out.bad_cells += 1,
        }
    }
    if interior {
        out.children.push(be32(data, hdr + 8));
    }
    Ok(out)
}

/// Decodes a record into values; None when it is malformed.
pub fn record(payload: &[u8]) -> Option<Vec<Value>> {
    let (hlen, n) = varint(payload, 0)?;
    let hlen = usize::try_from(hlen).ok()?;
    if hlen < n || hlen > payload.len() {
        return None;
    }
    let mut types = Vec::new();
    let mut at = n;
    while at < hlen {
        let (t, k) = varint(&payload[..hlen], at)?;
        types.push(t);
        at += k;
    }
    let mut body = hlen;
    let mut out = Vec::with_capacity(types.len());
    for t in types {
        let size: usize = match t {
            0 | 8 | 9 => 0,
            1 => 1,
            2 => 2,
            3 => 3,
            4 => 4,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return None,
            n if n >= 12 => usize::try_from((n - 12) / 2).ok()?,
            _ => return None,
        };
        let end = body.checked_add(size)?;
        let bytes = payload.get(body..end)?;
        out.push(match t {
            0 => Value::Null,
            1..=6 => {
                let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
                for b in bytes {
                    v = (v << 8) | i64::from(*b);
                }
                Value::Integer(v)
            }
            7 => Value::Real(f64::from_be_bytes(bytes.try_into().ok()?)),
            8 => Value::Integer(0),
            9 => Value::Integer(1),
            n if n % 2 == 0 => Value::Blob(bytes.to_vec()),
            _ => Value::Text(String::from_utf8(bytes.to_vec()).ok()?),
        });
        body = end;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_like_sqlite() {
        assert_eq!(varint(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9], 0), Some((-1, 9)));
        assert_eq!(varint(&[0x81], 0), None);
    }

    #[test]
    fn records_decode_and_bad_ones_are_refused() {
        // header: len 4, types: NULL, int8, text(3 bytes) = 13+2*3 = 19
        let rec = [4u8, 0, 1, 19, 0xFE, b'a', b'b', b'c'];
        let v = record(&rec).expect("decodes");
        assert_eq!(
            v,
            vec![Value::Null, Value::Integer(-2), Value::Text("abc".into())]
        );
        assert!(
            record(&[4u8, 0, 1, 19, 0xFE, b'a']).is_none(),
            "body too short"
        );
        assert!(record(&[2u8, 10]).is_none(), "reserved serial type");
        assert!(record(&[9u8, 0]).is_none(), "header longer than the record");
    }
}
