//! `ora completions SHELL` (a completion script for bash, zsh or fish, on stdout) and the
//! hidden `ora manpages DIR` (one man page per command group: `ora.1`, `ora-restore.1`,
//! `ora-stock.1`, `ora-stock-receive.1`, ...), both generated from the command line's own
//! definition, so they cannot drift from it. The package build runs both. Touches no
//! database and reads no configuration.

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;

use crate::error::{exit, Error, Result};

/// The shells a completion script is made for.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

pub fn completions(shell: Shell) -> Result<i32> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(shell, &mut cmd, "ora", &mut out);
    std::io::stdout()
        .write_all(&out)
        .map_err(super::output::write_failed)?;
    Ok(exit::OK)
}

/// Writes every page into `dir` (created if missing); returns how many.
pub fn manpages(dir: &Path) -> Result<i32> {
    let n = write_manpages(dir)?;
    outln!("manpages: wrote {n} pages into {}", dir.display());
    Ok(exit::OK)
}

pub(super) fn write_manpages(dir: &Path) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let cmd = super::Cli::command();
    clap_mangen::generate_to(cmd, dir)
        .map_err(|e| Error::io(format!("write the man pages into {}", dir.display()), e))?;
    let n = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("read {}", dir.display()), e))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".1"))
        })
        .count();
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and subcommand has its page, named by its path (`ora-stock-receive.1`).
    #[test]
    fn every_command_has_its_man_page() {
        let dir = tempfile::tempdir().unwrap();
        write_manpages(dir.path()).unwrap();
        fn walk(cmd: &clap::Command, name: &str, missing: &mut Vec<String>, dir: &Path) {
            if cmd.is_hide_set() {
                return;
            }
            if !dir.join(format!("{name}.1")).exists() {
                missing.push(name.to_string());
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    walk(sub, &format!("{name}-{}", sub.get_name()), missing, dir);
                }
            }
        }
        let mut missing = Vec::new();
        walk(
            &super::super::Cli::command(),
            "ora",
            &mut missing,
            dir.path(),
        );
        assert!(
            missing.is_empty(),
            "commands without a man page: {missing:?}"
        );
        let restore = std::fs::read_to_string(dir.path().join("ora-restore.1")).unwrap();
        assert!(
            restore.contains("from\\-replica"),
            "the page lists the options"
        );
    }
}
