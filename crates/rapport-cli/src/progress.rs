//! Progress for long operations: a bar redrawn in place on a terminal, a plain line at
//! every tenth when stderr is piped or logged (so CI logs stay readable). Always on
//! stderr, so stdout stays the command's report.

use std::io::{IsTerminal, Write};

/// Progress through `total` steps of one operation.
#[derive(Debug)]
pub(crate) struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    terminal: bool,
    last_tenth: u64,
}

const WIDTH: u64 = 30;

impl Progress {
    /// Starts at zero of `total` `label` (e.g. "accounts").
    pub(crate) fn new(label: &'static str, total: u64) -> Progress {
        Progress {
            label,
            total,
            done: 0,
            terminal: std::io::stderr().is_terminal(),
            last_tenth: 0,
        }
    }

    /// One more step done.
    pub(crate) fn step(&mut self) {
        self.done = (self.done + 1).min(self.total);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let filled = (self.done * WIDTH).checked_div(self.total).unwrap_or(WIDTH);
            let _ = write!(
                err,
                "\r[{}{}] {}/{} {}",
                "#".repeat(filled as usize),
                " ".repeat((WIDTH - filled) as usize),
                self.done,
                self.total,
                self.label
            );
            if self.done == self.total {
                let _ = writeln!(err);
            }
        } else {
            let tenth = (self.done * 10).checked_div(self.total).unwrap_or(10);
            if tenth > self.last_tenth || self.done == self.total {
                self.last_tenth = tenth;
                let _ = writeln!(err, "{}/{} {}", self.done, self.total, self.label);
            }
        }
    }
}

/// Progress of an operation whose length is unknown ahead (a sync): its report lines go
/// to stdout as they come, and on a terminal a status line below them on stderr keeps
/// a running count, cleared before each report line and at the end.
#[derive(Debug)]
pub(crate) struct Running {
    label: String,
    terminal: bool,
    steps: std::sync::atomic::AtomicU64,
    items: std::sync::atomic::AtomicU64,
}

impl Running {
    pub(crate) fn new(label: impl Into<String>) -> Running {
        Running {
            label: label.into(),
            terminal: std::io::stderr().is_terminal(),
            steps: Default::default(),
            items: Default::default(),
        }
    }

    /// Prints one report line, then the status with `items` more done.
    pub(crate) fn line(&self, line: &str, items: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let steps = self.steps.fetch_add(1, Relaxed) + 1;
        let items = self.items.fetch_add(items, Relaxed) + items;
        if self.terminal {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        // A closed pipe stops the output, not the work.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
        if self.terminal {
            const SPINNER: [char; 4] = ['|', '/', '-', '\\'];
            let _ = write!(
                std::io::stderr().lock(),
                "{} {}: {steps} pages, {items} events so far",
                SPINNER[(steps % 4) as usize],
                self.label
            );
        }
    }

    /// Clears the status line.
    pub(crate) fn finish(&self) {
        if self.terminal {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}
