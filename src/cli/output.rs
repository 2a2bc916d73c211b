//! Printing: JSON for scripts, plain aligned text for people, and the one-line error format.

use serde::Serialize;

use crate::error::{Error, Result};

/// What a failed write to stdout becomes: an I/O error whose kind (`BrokenPipe` when the
/// reader went away) `main` looks at.
pub fn write_failed(e: std::io::Error) -> Error {
    Error::io("write the output", e)
}

/// Prints a value as one line of JSON on stdout.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    match serde_json::to_string(value) {
        Ok(s) => outln!("{s}"),
        Err(e) => errln!("ora: cannot encode the output as JSON: {e}"),
    }
    Ok(())
}

/// Prints an error: one line on stderr (plus one indented line per listed problem), and with
/// `--json` also a JSON object on stdout.
pub fn error(e: &Error, as_json: bool) {
    let msg = e.to_string();
    errln!("ora: {msg}");
    let problems = e.problems().to_vec();
    for p in &problems {
        errln!("  {p}");
    }
    if as_json {
        let code = e.code();
        let io_kind = e.io_kind().map(|k| format!("{k:?}"));
        let _ = json(
            &serde_json::json!({ "error": msg, "code": code, "problems": problems, "io_kind": io_kind }),
        );
    }
}

/// Prints rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    let head: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    outln!("{}", line(&head));
    for r in rows {
        outln!("{}", line(r));
    }
    Ok(())
}

/// "1 row", "3 rows": [`crate::model::plural`] for any unsigned count.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    crate::model::plural(usize::try_from(n.into()).unwrap_or(usize::MAX), one, many)
}
