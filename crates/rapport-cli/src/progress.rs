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
