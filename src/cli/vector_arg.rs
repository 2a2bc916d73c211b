//! A vector given on the command line, inline (`--values '[0.1, 0.2]'`) or in a file (`--file
//! F`, `-` for stdin): a JSON array of numbers, or an object with a `vector` array. The file
//! is bounded in size; what the numbers must be (size, finite, not all zero) is checked once,
//! by the writer or the search. Never panics on what it reads.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest vector file read (65,536 values of ~20 characters fit well within it).
const MAX_FILE: u64 = 8 << 20;

/// Parses the JSON text of a vector; `what` names its origin in errors.
pub fn parse(text: &str, what: &str) -> Result<Vec<f32>> {
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| Error::usage(format!("{what} is not JSON: {e}")))?;
    let items = match &v {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(o) => match o.get("vector") {
            Some(serde_json::Value::Array(a)) => a,
            _ => {
                return Err(Error::usage(format!(
                    "{what}: give a JSON array of numbers or {{\"vector\": [...]}}"
                )))
            }
        },
        _ => {
            return Err(Error::usage(format!(
                "{what}: give a JSON array of numbers or {{\"vector\": [...]}}"
            )))
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        let n = x.as_f64().ok_or_else(|| {
            Error::usage(format!(
                "{what}: value {} is {}, not a number",
                i + 1,
                crate::model::clip(&x.to_string())
            ))
        })?;
        out.push(n as f32);
    }
    Ok(out)
}

/// Reads and parses a vector file (`-` is stdin).
pub fn read_file(path: &Path) -> Result<Vec<f32>> {
    let shown = path.display().to_string();
    let mut text = String::new();
    let read = if shown == "-" {
        std::io::stdin()
            .lock()
            .take(MAX_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
    };
    read.map_err(|e| Error::usage(format!("cannot read the vector file {shown}: {e}")))?;
    if text.len() as u64 > MAX_FILE {
        return Err(Error::usage(format!(
            "the vector file {shown} is larger than {} MiB",
            MAX_FILE >> 20
        )));
    }
    parse(&text, &format!("the vector file {shown}"))
}

/// The vector of `--values` or `--file` (exactly one of them).
pub fn from_args(values: Option<&str>, file: Option<&Path>) -> Result<Vec<f32>> {
    match (values, file) {
        (Some(v), None) => parse(v, "--values"),
        (None, Some(f)) => read_file(f),
        _ => Err(Error::usage(
            "give the vector with either --values '[...]' or --file FILE",
        )),
    }
}
