//! The size rule of the code, held by a test: a function of more than [`LIMIT`] lines says
//! why at its top, in a doc line beginning `Kept whole:`. The test scans `src/` (without unit
//! tests, strings and comments, so braces in them do not count) and fails naming every long
//! function that does not. Compiled only for tests.

use std::path::{Path, PathBuf};

/// The longest a function may be without a reason.
const LIMIT: usize = 80;

/// `text` with the contents of string and character literals and all comments blanked out,
/// line for line (so line numbers stay true).
fn blank(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                out.push(if b[i] == b'\n' { b'\n' } else { b' ' });
                i += 1;
            }
            i += 2;
        } else if c == b'r'
            && matches!(next, Some(b'"' | b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            let hashes = b[i + 1..].iter().take_while(|x| **x == b'#').count();
            if b.get(i + 1 + hashes) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            let end: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while i < b.len() && !b[i..].starts_with(&end) {
                if b[i] == b'\n' {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += end.len();
        } else if c == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                if b.get(i) == Some(&b'\n') {
                    out.push(b'\n');
                }
                i += 1;
            }
            i += 1;
        } else if c == b'\'' && char_literal_len(&b[i..]).is_some() {
            i += char_literal_len(&b[i..]).unwrap_or(1);
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The length of a character literal at the start of `b` ('x', '\n', '\''), if one is there
/// (a lifetime is not).
fn char_literal_len(b: &[u8]) -> Option<usize> {
    match b {
        [b'\'', b'\\', _, ..] => b[3..].iter().position(|x| *x == b'\'').map(|p| p + 4),
        [b'\'', _, b'\'', ..] => Some(3),
        [b'\'', first, ..] if *first >= 0x80 => {
            let len = b[1..].iter().position(|x| *x == b'\'')?;
            (len <= 4).then_some(len + 2)
        }
        _ => None,
    }
}

/// The name of the function a line declares, if it declares one.
fn declares(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(r) = rest.strip_prefix("pub") {
        rest = match r.strip_prefix('(') {
            Some(r) => r.split_once(')')?.1,
            None => r,
        }
        .trim_start();
    }
    for word in ["const ", "async ", "unsafe "] {
        rest = rest.strip_prefix(word).unwrap_or(rest);
    }
    let name = rest.strip_prefix("fn ")?;
    let end = name
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    Some(&name[..end])
}

/// Every function over the limit without a reason: (file, function, lines).
fn unexplained(file: &str, text: &str) -> Vec<(String, String, usize)> {
    let text = text.split("\n#[cfg(test)]").next().unwrap_or("");
    let original: Vec<&str> = text.lines().collect();
    let clean = blank(text);
    let lines: Vec<&str> = clean.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = declares(lines[i]) else {
            i += 1;
            continue;
        };
        let (mut depth, mut opened, mut j) = (0i32, false, i);
        while j < lines.len() {
            for c in lines[j].chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if (opened && depth == 0) || (!opened && lines[j].trim_end().ends_with(';')) {
                break;
            }
            j += 1;
        }
        let length = j + 1 - i;
        let reason = original[..i]
            .iter()
            .rev()
            .take_while(|l| {
                let l = l.trim_start();
                l.starts_with("///") || l.starts_with("#[")
            })
            .any(|l| l.contains("Kept whole:"));
        if length > LIMIT && !reason {
            out.push((file.to_string(), name.to_string(), length));
        }
        i = j + 1;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_long_function_says_why_it_is_kept_whole() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        files.sort();
        let mut long = Vec::new();
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap_or(f).display().to_string();
            long.extend(unexplained(
                &rel,
                &std::fs::read_to_string(f).unwrap_or_default(),
            ));
        }
        assert!(
            long.is_empty(),
            "functions over {LIMIT} lines without a `Kept whole:` line at their top (split them, or say why not): {long:#?}"
        );
    }

    // The scans of `src/` (this one, the layer order's, `store::dbfile`'s) read a file up to its
    // first `#[cfg(test)]`: test-only code elsewhere would hide what follows it.
    #[test]
    fn test_only_code_is_a_module_at_the_end() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            for (i, l) in lines.iter().enumerate() {
                if l.trim() != "#[cfg(test)]" || f.ends_with("lib.rs") {
                    continue;
                }
                let next = lines[i + 1..]
                    .iter()
                    .find(|l| !l.trim_start().starts_with("#["))
                    .map_or("", |l| l.trim_start());
                assert!(
                    next.starts_with("mod ") || next.starts_with("pub mod "),
                    "{}:{}: #[cfg(test)] on something other than a module; move it into the tests module",
                    f.display(),
                    i + 1
                );
            }
        }
    }

    #[test]
    fn braces_in_strings_and_comments_do_not_count_and_a_reason_is_read() {
        let body = "    let x = 1;\n".repeat(LIMIT);
        let long = format!("pub(crate) fn long() {{\n{body}}}\n");
        assert_eq!(unexplained("a.rs", &long).len(), 1);
        let said = format!("/// Does it.\n///\n/// Kept whole: one loop.\n#[inline]\n{long}");
        assert!(unexplained("a.rs", &said).is_empty());
        let short = "fn f() {\n    let s = \"}}{{\"; let r = r#\"{\"#; let c = '{'; // }\n    g::<'a>();\n}\nfn h() {}\n";
        assert_eq!(blank(short).matches('{').count(), 2);
        assert!(unexplained("a.rs", short).is_empty());
    }

    /// Savepoints rolled back behind the recorder's back would leave changes it recorded: every
    /// `ROLLBACK TO` in ora goes through `store::recorder::Savepoint`.
    #[test]
    fn no_code_rolls_back_a_savepoint_but_the_recorders() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let allowed = ["recorder.rs", "recorder_tests.rs", "session.rs", "shape.rs"];
        let mut offenders = Vec::new();
        for f in &files {
            let name = f.file_name().unwrap_or_default().to_string_lossy();
            if allowed.contains(&name.as_ref()) {
                continue;
            }
            let text = std::fs::read_to_string(f)
                .unwrap_or_default()
                .to_uppercase();
            if text.contains("ROLLBACK TO") || text.contains("\"SAVEPOINT") {
                offenders.push(f.display().to_string());
            }
        }
        assert!(
            offenders.is_empty(),
            "savepoints outside recorder::Savepoint: {offenders:?}"
        );
    }
}
