//! What the package installs beside the binary, made by the binary itself: a man page per
//! command that `man -l` renders without a warning, and completion scripts that load in bash,
//! zsh and fish and complete `ora re` to the commands beginning with `re` (zsh driven on a
//! pseudo-terminal, since it completes only inside its line editor).

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
    // zsh completes only inside its line editor: drive a real interactive zsh
    // on a pseudo-terminal (zpty), type `ora re<Tab>`, and record every match
    // the completion system offers (compadd -O) to a file. Each step waits
    // for the shell's own output (a prompt, a marker), never for time.
    let zsh = script("zsh");
    let matches = sb.path("zsh-matches");
    let driver = format!(
        r#"zmodload zsh/zpty
zpty -b z zsh -f -i
zpty -w z 'PS1=RE""ADY%%; autoload -U compinit; compinit -u -D; source {script}; compadd() {{ local -a __m; builtin compadd -O __m "$@"; print -rl -- $__m >> {out}; builtin compadd "$@" }}'
zpty -r z line '*READY%*'
zpty -n -w z $'ora re\t'
zpty -n -w z $'\C-u'
zpty -w z 'print -r -- __DO""NE__'
zpty -r z line '*__DONE__*'
zpty -d z
"#,
        script = zsh.display(),
        out = matches.display()
    );
    // A shell that never prints the marker must fail the test, not hang it.
    let out = Command::new("timeout")
        .args(["120", "zsh", "-f", "-c", &driver])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zsh driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: BTreeSet<String> = std::fs::read_to_string(&matches)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(got, want, "zsh");
    let err = sb.fails(&["completions", "tcsh"], 2);
    assert!(err.contains("tcsh"), "{err}");
}
