//! Progress bars for long operations: drawn on stderr only when it is a terminal (never in
//! scripts, pipes or under systemd), and never an error source.

use std::io::IsTerminal;

/// A byte-counting progress bar, or nothing when stderr is not a terminal.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar for `total` bytes labelled `what`; hidden unless stderr is a terminal.
    pub fn bytes(what: &str, total: u64) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        Progress { bar: Some(bar) }
    }

    /// A line that counts the time of a long check on a terminal, beside how long its last
    /// run took (`about`, in words): "verify 00:00:42 (its last full pass took 2 min)".
    pub fn waiting(what: &str, about: Option<String>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {elapsed_precise} {msg}")
        {
            bar.set_style(style);
        }
        bar.set_prefix(what.to_string());
        bar.set_message(about.unwrap_or_default());
        bar.enable_steady_tick(std::time::Duration::from_millis(250));
        Progress { bar: Some(bar) }
    }

    /// A bar that does nothing (library callers, tests).
    pub fn hidden() -> Progress {
        Progress { bar: None }
    }

    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn set_message(&self, msg: &str) {
        if let Some(b) = &self.bar {
            b.set_message(msg.to_string());
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
