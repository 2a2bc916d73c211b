//! What the package installs beside the binary, made by the binary itself: a man page per
//! command that `man -l` renders without a warning, and completion scripts that load in bash,
//! zsh and fish and complete `ora re` to the commands beginning with `re`.

use std::collections::BTreeSet;
use std::process::Command;

use crate::util::{have, skip, Sandbox, ORA};

/// The top-level commands `ora --help` lists that begin with `prefix`.
fn commands_beginning(prefix: &str) -> BTreeSet<String> {
    let out = Command::new(ORA).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout).to_string();
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| c.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_man_page_renders_without_a_warning() {
    if !have("man") {
        return skip(
            "every_man_page_renders_without_a_warning",
            "no man (man-db)",
        );
    }
    let sb = Sandbox::empty();
    let dir = sb.path("man");
    sb.ok(&["manpages", dir.to_str().unwrap()]);
    let pages: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(pages.len() > 40, "{} pages", pages.len());
    for p in &pages {
        let out = Command::new("man")
            .args(["-l", "-P", "cat"])
            .arg(p)
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{}: {stderr}",
            p.display()
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("NAME"));
    }
    assert!(!sb.db.exists(), "making the pages touches no database");
}

#[test]
fn completions_load_and_complete_commands() {
    for sh in ["bash", "zsh", "fish"] {
        if !have(sh) {
            return skip(
                "completions_load_and_complete_commands",
                &format!("no {sh}"),
            );
        }
    }
    let sb = Sandbox::empty();
    let want = commands_beginning("re");
    assert!(
        want.contains("restore") && want.contains("replica"),
        "{want:?}"
    );
    let script = |sh: &str| {
        let p = sb.path(&format!("ora.{sh}"));
        std::fs::write(&p, sb.ok(&["completions", sh])).unwrap();
        let check = Command::new(sh).arg("-n").arg(&p).output().unwrap();
        assert!(
            check.status.success(),
            "{sh} -n: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        p
    };
    let run = |sh: &str, code: String| {
        let out = Command::new(sh).arg("-c").arg(code).output().unwrap();
        assert!(
            out.status.success(),
            "{sh}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let bash = script("bash");
    let got: BTreeSet<String> = run(
        "bash",
        format!(
            "source {}; COMP_WORDS=(ora re); COMP_CWORD=1; COMP_LINE='ora re'; COMP_POINT=6; _ora ora re ora; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            bash.display()
        ),
    )
    .lines()
    .map(str::to_string)
    .collect();
    assert_eq!(got, want, "bash");
    let fish = script("fish");
    let got: BTreeSet<String> = run(
        "fish",
        format!("source {}; complete -C 'ora re'", fish.display()),
    )
    .lines()
    .filter_map(|l| l.split('\t').next())
    .map(str::to_string)
    .collect();
    assert_eq!(got, want, "fish");
    // zsh: the script loads into the completion system and defines its function.
    let zsh = script("zsh");
    let out = run(
        "zsh",
        format!(
            "autoload -U compinit && compinit -u -D; source {}; whence -w _ora; print -r -- $_comps[ora]",
            zsh.display()
        ),
    );
    assert!(
        out.contains("_ora: function") && out.trim_end().ends_with("_ora"),
        "{out}"
    );
    let err = sb.fails(&["completions", "tcsh"], 2);
    assert!(err.contains("tcsh"), "{err}");
}
