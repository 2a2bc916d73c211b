//! CSV files -> validated rows, each with the line it came from: stock movements
//! ([`ImportRow`]s, [`parse`]) and products ([`NewProduct`]s, [`parse_products`]). Parsing
//! only: every syntax problem of the whole file is collected (with its line number) before
//! anything is applied; this module never touches the database.
//!
//! A file has a header row; column names are case-insensitive; a UTF-8 byte-order mark is
//! ignored. Movements: `sku`, `type`, `quantity`, optionally `date`, `notes`, `request_id` (a
//! request_id makes its row idempotent, so a file can be re-imported safely). Products: `sku`,
//! `name`, optionally `reorder_point`, `initial`.
//! One piece: one CSV reader (line numbers, limits, quoting) shared by both kinds of file;
//! its tests are at the end.

use crate::model::{self, Problem, TxType};
use crate::store::products::NewProduct;
use crate::store::Movement;
use crate::store::{ImportRow, MAX_IMPORT_ROWS, MAX_LISTED_PROBLEMS};

/// Largest file accepted (about 4 million typical rows).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Largest field accepted (a notes field is at most 1,000 bytes; this is the parser's guard).
const MAX_FIELD_BYTES: usize = 16 * 1024;

/// The parse of a whole file.
#[derive(Debug)]
pub struct ParsedRows<T> {
    pub rows: Vec<T>,
    /// The bad rows with their lines, at most [`MAX_LISTED_PROBLEMS`] of them (then one entry
    /// for the others).
    pub problems: Vec<Problem>,
    /// Number of bad rows (may exceed the listed ones).
    pub bad_rows: usize,
}

impl<T> Default for ParsedRows<T> {
    fn default() -> Self {
        ParsedRows {
            rows: Vec::new(),
            problems: Vec::new(),
            bad_rows: 0,
        }
    }
}

/// A file of movements.
pub type Parsed = ParsedRows<ImportRow>;

pub use crate::store::ProductRow;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Sku,
    Type,
    Quantity,
    Date,
    Notes,
    RequestId,
}

const EXPECTED: &str = "sku, type, quantity and optionally date, notes, request_id";

/// The movement columns: the names each may have, and whether it is required.
const MOVEMENT_COLUMNS: &[(&[&str], Col, bool)] = &[
    (&["sku"], Col::Sku, true),
    (&["type", "transaction_type"], Col::Type, true),
    (&["quantity", "qty"], Col::Quantity, true),
    (&["date"], Col::Date, false),
    (&["notes"], Col::Notes, false),
    (&["request_id"], Col::RequestId, false),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum PCol {
    Sku,
    Name,
    ReorderPoint,
    Initial,
}

const PRODUCTS_EXPECTED: &str = "sku, name and optionally reorder_point, initial";

const PRODUCT_COLUMNS: &[(&[&str], PCol, bool)] = &[
    (&["sku"], PCol::Sku, true),
    (&["name", "product_name"], PCol::Name, true),
    (&["reorder_point", "reorder"], PCol::ReorderPoint, false),
    (
        &["initial", "initial_quantity", "quantity"],
        PCol::Initial,
        false,
    ),
];

/// Reads a CSV file whole (at most [`MAX_FILE_BYTES`]).
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the file: {e}"))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {len} bytes; the limit is {MAX_FILE_BYTES}, split it into smaller files"
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))
}

/// Reads and parses a CSV file of products (at most [`MAX_FILE_BYTES`]).
pub fn parse_products_file(path: &std::path::Path) -> Result<ParsedRows<ProductRow>, String> {
    parse_products(&read_file(path)?)
}

/// Parses CSV bytes of products; every bad row and every sku given twice is named.
fn parse_products(data: &[u8]) -> Result<ParsedRows<ProductRow>, String> {
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    read_rows(
        data,
        PRODUCTS_EXPECTED,
        PRODUCT_COLUMNS,
        |line, rec, cols, out| {
            let p = product_row(rec, cols)?;
            if let Some(first) = seen.get(&p.sku) {
                return Err(format!(
                    "sku {:?} is also on line {first}; each product once",
                    model::clip(&p.sku)
                ));
            }
            seen.insert(p.sku.clone(), line);
            out.push(ProductRow { line, product: p });
            Ok(())
        },
    )
}

fn product_row(rec: &csv::ByteRecord, columns: &[PCol]) -> Result<NewProduct, String> {
    let mut p = NewProduct {
        sku: String::new(),
        product_name: String::new(),
        reorder_point: 0,
        initial_quantity: 0,
    };
    for (v, col) in fields(rec, columns)? {
        match col {
            PCol::Sku => p.sku = v.to_string(),
            PCol::Name => p.product_name = v.to_string(),
            PCol::ReorderPoint if !v.is_empty() => {
                p.reorder_point = model::parse_int("reorder_point", v)?
            }
            PCol::Initial if !v.is_empty() => p.initial_quantity = model::parse_int("initial", v)?,
            _ => {}
        }
    }
    p.validate()?;
    Ok(p)
}

/// A row's fields as text, paired with their columns: the count must match the header, each
/// field within [`MAX_FIELD_BYTES`] and UTF-8.
fn fields<'r, C: Copy>(
    rec: &'r csv::ByteRecord,
    columns: &[C],
) -> Result<Vec<(&'r str, C)>, String> {
    if rec.len() != columns.len() {
        return Err(format!(
            "expected {} fields like the header, found {}",
            columns.len(),
            rec.len()
        ));
    }
    rec.iter()
        .zip(columns)
        .map(|(raw, col)| {
            if raw.len() > MAX_FIELD_BYTES {
                return Err(format!(
                    "a field is {} bytes; the limit is {MAX_FIELD_BYTES}",
                    raw.len()
                ));
            }
            std::str::from_utf8(raw)
                .map(|v| (v, *col))
                .map_err(|_| "not valid UTF-8; save the file as UTF-8".to_string())
        })
        .collect()
}

/// Reads and parses a CSV file of movements (at most [`MAX_FILE_BYTES`]).
pub fn parse_file(path: &std::path::Path) -> Result<Parsed, String> {
    parse(&read_file(path)?)
}

/// Counts lines as records go by. The csv reader reports a record that follows blank lines
/// at the first blank line, so the true line is found from the bytes themselves.
struct LineCounter<'a> {
    data: &'a [u8],
    counted_to: usize,
    newlines: u64,
}

impl LineCounter<'_> {
    /// The 1-based line on which the record reported at byte `at` really starts.
    fn line_at(&mut self, at: u64) -> u64 {
        let mut start = (at as usize).min(self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\n' | b'\r') {
            start += 1;
        }
        if start > self.counted_to {
            self.newlines += self.data[self.counted_to..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            self.counted_to = start;
        }
        self.newlines + 1
    }
}

/// Parses CSV bytes of movements. A header problem is returned as `Err` (nothing else can be
/// read); row problems are collected in [`ParsedRows::problems`].
pub fn parse(data: &[u8]) -> Result<Parsed, String> {
    let mut seen_ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    read_rows(data, EXPECTED, MOVEMENT_COLUMNS, |line, rec, cols, out| {
        let (movement, request_id) = row(rec, cols)?;
        if let Some(rid) = &request_id {
            if let Some(first) = seen_ids.get(rid) {
                return Err(format!(
                    "request_id {:?} is also on line {first}; each row needs its own",
                    model::clip(rid)
                ));
            }
            seen_ids.insert(rid.clone(), line);
        }
        out.push(ImportRow {
            line,
            movement,
            request_id,
        });
        Ok(())
    })
}

/// The shared reader: the header (named by `columns`), then each data row with its true line
/// handed to `each`, which keeps it (pushing onto the rows) or says what is wrong with it.
///
/// Kept whole: the CSV reader's loop keeps the true line numbers, the last record's start and the
/// problems list together, so that every problem names its line even across quoted line breaks.
fn read_rows<C: Copy + PartialEq, T>(
    data: &[u8],
    expected: &str,
    columns: &[(&[&str], C, bool)],
    mut each: impl FnMut(u64, &csv::ByteRecord, &[C], &mut Vec<T>) -> Result<(), String>,
) -> Result<ParsedRows<T>, String> {
    let mut lines = LineCounter {
        data,
        counted_to: 0,
        newlines: 0,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(data);
    let mut rec = csv::ByteRecord::new();
    let has_header = rdr
        .read_byte_record(&mut rec)
        .map_err(|e| format!("line 1: {}", csv_error(&e)))?;
    if !has_header {
        return Err(format!(
            "the file is empty; expected a header row with {expected}"
        ));
    }
    let cols = header(&rec, expected, columns)?;
    let mut out = ParsedRows::default();
    let note = |out: &mut ParsedRows<T>, line: u64, msg: String| {
        out.bad_rows += 1;
        if out.problems.len() < MAX_LISTED_PROBLEMS {
            out.problems.push(Problem::at(line, msg));
        }
    };
    let mut last_start = None;
    loop {
        let line = rdr.position().line();
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                last_start = rec.position().map(|p| p.byte() as usize);
                let line = rec.position().map_or(line, |p| lines.line_at(p.byte()));
                if rec.iter().all(|f| f.is_empty()) {
                    continue;
                }
                if out.rows.len() >= MAX_IMPORT_ROWS {
                    return Err(format!(
                        "the file has more than {MAX_IMPORT_ROWS} rows; split it into smaller files"
                    ));
                }
                if let Err(msg) = each(line, &rec, &cols, &mut out.rows) {
                    note(&mut out, line, msg);
                }
            }
            Err(e) => {
                let at = e.position().map_or(line, |p| p.line());
                note(&mut out, at, csv_error(&e));
                if !matches!(
                    e.kind(),
                    csv::ErrorKind::Utf8 { .. } | csv::ErrorKind::UnequalLengths { .. }
                ) {
                    // An I/O error or a broken stream: nothing further can be trusted.
                    return Err(format!("line {at}: {}", csv_error(&e)));
                }
            }
        }
    }
    if let Some(start) = last_start {
        if quote_left_open(&data[start..]) {
            let line = lines.line_at(start as u64);
            return Err(format!(
                "line {line}: a quoted field is never closed, so the rest of the file would be read as one value; add the closing quote"
            ));
        }
    }
    if out.rows.is_empty() && out.bad_rows == 0 {
        return Err("the file has a header but no rows".into());
    }
    if out.bad_rows > out.problems.len() {
        out.problems
            .push(Problem::more(out.bad_rows - out.problems.len()));
    }
    Ok(out)
}

/// True when a record running to the end of the data leaves a quoted field open (the csv
/// reader accepts that silently and swallows everything after the quote).
fn quote_left_open(record: &[u8]) -> bool {
    let mut in_quotes = false;
    let mut at_field_start = true;
    let mut i = 0;
    while i < record.len() {
        let b = record[i];
        if in_quotes {
            if b == b'"' {
                if record.get(i + 1) == Some(&b'"') {
                    i += 1;
                } else {
                    in_quotes = false;
                }
            }
        } else {
            match b {
                b'"' if at_field_start => in_quotes = true,
                b',' | b'\n' => {
                    at_field_start = true;
                    i += 1;
                    continue;
                }
                b' ' | b'\t' | b'\r' if at_field_start => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
        }
        at_field_start = false;
        i += 1;
    }
    in_quotes
}

fn csv_error(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Io(io) => format!("cannot read the file: {io}"),
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8; save the file as UTF-8".into(),
        other => format!("malformed CSV ({other:?})"),
    }
}

fn header<C: Copy + PartialEq>(
    rec: &csv::ByteRecord,
    expected: &str,
    columns: &[(&[&str], C, bool)],
) -> Result<Vec<C>, String> {
    let mut cols = Vec::with_capacity(rec.len());
    for (i, raw) in rec.iter().enumerate() {
        let raw = if i == 0 {
            raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw)
        } else {
            raw
        };
        let name = std::str::from_utf8(raw)
            .map_err(|_| {
                "line 1: the header is not valid UTF-8; save the file as UTF-8".to_string()
            })?
            .trim()
            .to_ascii_lowercase();
        let Some((_, col, _)) = columns
            .iter()
            .find(|(names, _, _)| names.contains(&name.as_str()))
        else {
            return Err(format!(
                "line 1: unknown column {:?}; expected {expected}",
                model::clip(&name)
            ));
        };
        if cols.contains(col) {
            return Err(format!("line 1: column {name:?} appears twice"));
        }
        cols.push(*col);
    }
    for (names, col, required) in columns {
        if *required && !cols.contains(col) {
            return Err(format!(
                "line 1: the header has no {:?} column; expected {expected}",
                names[0]
            ));
        }
    }
    Ok(cols)
}

fn row(rec: &csv::ByteRecord, columns: &[Col]) -> Result<(Movement, Option<String>), String> {
    let mut m = Movement::new("", TxType::Receive, 0);
    let mut request_id = None;
    for (v, col) in fields(rec, columns)? {
        match col {
            Col::Sku => m.sku = v.to_string(),
            Col::Type => m.kind = TxType::parse(v)?,
            Col::Quantity => m.quantity = model::parse_quantity(v)?,
            Col::Date if !v.is_empty() => m.date = Some(v.to_string()),
            Col::Notes if !v.is_empty() => m.notes = Some(v.to_string()),
            Col::RequestId if !v.is_empty() => request_id = Some(v.to_string()),
            _ => {}
        }
    }
    m.validate()?;
    if let Some(r) = &request_id {
        model::validate_request_id(r)?;
    }
    Ok((m, request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_with_line_numbers_and_optional_columns() {
        let csv = "\u{feff}SKU,Type,Quantity,notes\nA-1,receive,5,first\n\nB-2,Adjust Down,2,\"a, quoted\nnote\"\nC-3,ship,1,x\n";
        let p = parse(csv.as_bytes()).expect("parses");
        assert!(p.problems.is_empty(), "{:?}", p.problems);
        let lines: Vec<u64> = p.rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 4, 6]);
        assert_eq!(p.rows[1].movement.notes.as_deref(), Some("a, quoted\nnote"));
        assert_eq!(p.rows[1].movement.kind, TxType::AdjustDown);
    }

    #[test]
    fn reports_every_bad_row() {
        let csv = b"sku,type,quantity\nA-1,receive,0\nA-1,receive,abc\nA 1,receive,3\nA-1,steal,3\nA-1,receive\nA-1,\xff,3\nA-1,ship,2\n";
        let p = parse(csv).expect("header ok");
        assert_eq!(p.rows.len(), 1);
        assert_eq!(p.bad_rows, 6);
        for (i, line) in [2, 3, 4, 5, 6, 7].iter().enumerate() {
            assert_eq!(p.problems[i].line, Some(*line), "{:?}", p.problems);
        }
    }

    #[test]
    fn products_parse_with_every_bad_line_named() {
        let csv = b"sku,name,reorder_point,initial\nP-1,Lamp,5,10\nP-2,Desk,,\nP-1,Again,1,1\nP 3,Bad sku,1,1\nP-4,Chair,x,1\nP-5,,1,1\n";
        let p = parse_products(csv).expect("header ok");
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[1].product.reorder_point, 0);
        assert_eq!(p.bad_rows, 4, "{:?}", p.problems);
        for (i, (line, words)) in [
            (4, "also on line 2"),
            (5, "sku"),
            (6, "reorder_point"),
            (7, "name"),
        ]
        .iter()
        .enumerate()
        {
            assert!(
                p.problems[i].line == Some(*line) && p.problems[i].what.contains(words),
                "{:?}",
                p.problems
            );
        }
        assert!(parse_products(b"sku,reorder_point\nA,1\n")
            .unwrap_err()
            .contains("\"name\""));
    }

    #[test]
    fn refuses_bad_headers() {
        assert!(parse(b"").is_err());
        assert!(parse(b"sku,kind,quantity\n")
            .unwrap_err()
            .contains("unknown column"));
        assert!(parse(b"sku,quantity\nA,1\n")
            .unwrap_err()
            .contains("\"type\""));
        assert!(parse(b"sku,type,quantity,sku\n")
            .unwrap_err()
            .contains("twice"));
        assert!(parse(b"sku,type,quantity\n")
            .unwrap_err()
            .contains("no rows"));
    }
}
