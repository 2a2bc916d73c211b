//! CSV files of stock movements -> validated [`ImportRow`]s, each with the line it came from.
//! Parsing only: every syntax problem of the whole file is collected (with its line number)
//! before anything is applied; this module never touches the database.
//!
//! The file has a header row. Required columns: `sku`, `type`, `quantity`; optional: `date`,
//! `notes`, `request_id` (a request_id makes its row idempotent, so a file can be re-imported
//! safely). Column names are case-insensitive; a UTF-8 byte-order mark is ignored.

use crate::model::{self, TxType};
use crate::store::command::{ImportRow, MAX_IMPORT_ROWS, MAX_LISTED_PROBLEMS};
use crate::store::Movement;

/// Largest file accepted (about 4 million typical rows).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// Largest field accepted (a notes field is at most 1,000 bytes; this is the parser's guard).
pub const MAX_FIELD_BYTES: usize = 16 * 1024;

/// The parse of a whole file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub rows: Vec<ImportRow>,
    /// "line N: reason", at most [`MAX_LISTED_PROBLEMS`] of them.
    pub problems: Vec<String>,
    /// Number of bad rows (may exceed the listed ones).
    pub bad_rows: usize,
}

#[derive(Clone, Copy)]
enum Col {
    Sku,
    Type,
    Quantity,
    Date,
    Notes,
    RequestId,
}

const EXPECTED: &str = "sku, type, quantity and optionally date, notes, request_id";

/// Reads and parses a CSV file (at most [`MAX_FILE_BYTES`]).
pub fn parse_file(path: &std::path::Path) -> Result<Parsed, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the file: {e}"))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {len} bytes; the limit is {MAX_FILE_BYTES}, split it into smaller files"
        ));
    }
    let data = std::fs::read(path).map_err(|e| format!("cannot read the file: {e}"))?;
    parse(&data)
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

/// Parses CSV bytes. A header problem is returned as `Err` (nothing else can be read);
/// row problems are collected in [`Parsed::problems`].
pub fn parse(data: &[u8]) -> Result<Parsed, String> {
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
            "the file is empty; expected a header row with {EXPECTED}"
        ));
    }
    let columns = header(&rec)?;
    let mut out = Parsed::default();
    let note = |out: &mut Parsed, line: u64, msg: String| {
        out.bad_rows += 1;
        if out.problems.len() < MAX_LISTED_PROBLEMS {
            out.problems.push(format!("line {line}: {msg}"));
        }
    };
    let mut last_start = None;
    let mut seen_ids: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
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
                match row(&rec, &columns) {
                    Ok((_, Some(rid))) if seen_ids.contains_key(&rid) => {
                        let first = seen_ids.get(&rid).copied().unwrap_or(0);
                        note(
                            &mut out,
                            line,
                            format!(
                                "request_id {:?} is also on line {first}; each row needs its own",
                                model::clip(&rid)
                            ),
                        );
                    }
                    Ok((movement, request_id)) => {
                        if let Some(r) = &request_id {
                            seen_ids.insert(r.clone(), line);
                        }
                        if out.rows.len() >= MAX_IMPORT_ROWS {
                            return Err(format!(
                                "the file has more than {MAX_IMPORT_ROWS} rows; split it into smaller files"
                            ));
                        }
                        out.rows.push(ImportRow {
                            line,
                            movement,
                            request_id,
                        })
                    }
                    Err(msg) => note(&mut out, line, msg),
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
        out.problems.push(format!(
            "... and {} more bad rows",
            out.bad_rows - out.problems.len()
        ));
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

fn header(rec: &csv::ByteRecord) -> Result<Vec<Col>, String> {
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
        let col = match name.as_str() {
            "sku" => Col::Sku,
            "type" | "transaction_type" => Col::Type,
            "quantity" | "qty" => Col::Quantity,
            "date" => Col::Date,
            "notes" => Col::Notes,
            "request_id" => Col::RequestId,
            _ => {
                return Err(format!(
                    "line 1: unknown column {:?}; expected {EXPECTED}",
                    model::clip(&name)
                ))
            }
        };
        if cols
            .iter()
            .any(|c: &Col| std::mem::discriminant(c) == std::mem::discriminant(&col))
        {
            return Err(format!("line 1: column {name:?} appears twice"));
        }
        cols.push(col);
    }
    for (needed, label) in [
        (Col::Sku, "sku"),
        (Col::Type, "type"),
        (Col::Quantity, "quantity"),
    ] {
        if !cols
            .iter()
            .any(|c| std::mem::discriminant(c) == std::mem::discriminant(&needed))
        {
            return Err(format!(
                "line 1: the header has no {label:?} column; expected {EXPECTED}"
            ));
        }
    }
    Ok(cols)
}

fn row(rec: &csv::ByteRecord, columns: &[Col]) -> Result<(Movement, Option<String>), String> {
    if rec.len() != columns.len() {
        return Err(format!(
            "expected {} fields like the header, found {}",
            columns.len(),
            rec.len()
        ));
    }
    let mut m = Movement::new("", TxType::Receive, 0);
    let mut request_id = None;
    for (raw, col) in rec.iter().zip(columns) {
        if raw.len() > MAX_FIELD_BYTES {
            return Err(format!(
                "a field is {} bytes; the limit is {MAX_FIELD_BYTES}",
                raw.len()
            ));
        }
        let v = std::str::from_utf8(raw)
            .map_err(|_| "not valid UTF-8; save the file as UTF-8".to_string())?;
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
            assert!(
                p.problems[i].starts_with(&format!("line {line}:")),
                "{:?}",
                p.problems
            );
        }
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
