//! The layer order of `lib.rs`, held by a test: a module may use only the modules of lower
//! layers (and its own submodules). The test scans `src/` the way `store::dbfile`'s test does
//! for file opens, and fails naming every import that points up the order or sideways between
//! two modules of one layer. Compiled only for tests.

/// Each top-level module and its layer, lowest first (the order `lib.rs` documents).
const LAYERS: &[(&str, u8)] = &[
    ("clock", 0),
    ("awake", 0),
    ("shutdown", 0),
    ("error", 0),
    ("model", 1),
    ("fsutil", 1),
    ("sdnotify", 1),
    ("words", 1),
    ("tls", 2),
    ("store", 2),
    ("import", 3),
    ("sample", 3),
    ("file", 4),
    ("replica", 5),
    ("remote", 5),
    ("standby", 5),
    ("ops", 6),
    ("config", 7),
    ("web", 8),
    ("cli", 9),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

/// The code of a source file without its comments and its unit tests (which may set up
/// whatever they need).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level modules a piece of code names through `crate::`.
fn uses(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// Every import of `src/` that breaks the order: (file, its module, the module it uses).
pub fn violations(src: &std::path::Path) -> Vec<(String, String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files.sort();
    let mut bad = Vec::new();
    for f in files {
        let rel = f.strip_prefix(src).unwrap_or(&f).display().to_string();
        let module = rel
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = layer(&module) else {
            continue; // lib.rs, main.rs, this file
        };
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for used in uses(&code(&text)) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                _ => bad.push((rel.clone(), module.clone(), used)),
            }
        }
    }
    bad.sort();
    bad.dedup();
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_import_points_down_the_layer_order() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let bad = violations(&src);
        assert!(
            bad.is_empty(),
            "imports against the layer order of lib.rs (file, its module, the module it uses): {bad:#?}"
        );
    }

    #[test]
    fn every_module_of_lib_rs_has_a_layer() {
        let lib = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"),
        )
        .unwrap_or_default();
        for line in lib.lines() {
            if let Some(m) = line
                .strip_prefix("pub mod ")
                .or_else(|| line.strip_prefix("mod "))
            {
                let m = m.trim_end_matches(';');
                assert!(
                    m == "layers" || m == "shape" || layer(m).is_some(),
                    "{m} has no layer in layers::LAYERS"
                );
            }
        }
    }

    #[test]
    fn imports_are_read_from_paths_and_groups_but_not_comments() {
        let c = code("use crate::{store, file::oplog};\n// crate::web in a comment\nlet x = crate::model::today();");
        assert_eq!(uses(&c), ["store", "file", "model"]);
    }
}
