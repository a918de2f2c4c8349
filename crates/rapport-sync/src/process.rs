//! Which process holds a lease, told precisely enough that a node on the same machine
//! can see that it has died: `machine:boot:pid:start`, from the machine id and host
//! name, the kernel's boot id, the pid and the process's start time (so a reused pid is not mistaken for
//! the holder). Off Linux, or without `/proc`, nothing is known and leases simply lapse.

use std::path::Path;

/// This process, as a lease records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcessIdentity {
    machine: String,
    boot: String,
    pid: u32,
    start: u64,
}

/// Whether a recorded process is alive, as far as this machine can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// It runs here.
    Alive,
    /// It ran on this machine since it last booted, and is gone.
    Dead,
    /// It ran on another machine (or before a reboot, or we cannot tell).
    Unknown,
}

impl ProcessIdentity {
    /// This process, when `/proc` can tell.
    pub(crate) fn current() -> Option<ProcessIdentity> {
        let pid = std::process::id();
        Some(ProcessIdentity {
            machine: machine_id()?,
            boot: read_trimmed("/proc/sys/kernel/random/boot_id")?,
            pid,
            start: start_time(pid)?,
        })
    }

    /// As stored with a lease.
    pub(crate) fn spelled(&self) -> String {
        format!("{}:{}:{}:{}", self.machine, self.boot, self.pid, self.start)
    }

    /// Reads a stored identity back.
    pub(crate) fn parse(spelled: &str) -> Option<ProcessIdentity> {
        let mut parts = spelled.split(':');
        let identity = ProcessIdentity {
            machine: parts.next()?.to_owned(),
            boot: parts.next()?.to_owned(),
            pid: parts.next()?.parse().ok()?,
            start: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(identity)
    }

    /// The holder's pid, for messages.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether this process is alive, judged from `here` (the current process).
    pub(crate) fn liveness(&self, here: &ProcessIdentity) -> Liveness {
        if self.machine != here.machine || self.boot != here.boot {
            return Liveness::Unknown;
        }
        match start_time(self.pid) {
            Some(start) if start == self.start => Liveness::Alive,
            // No such pid, or a different process under it.
            _ => Liveness::Dead,
        }
    }
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty() && !text.contains(':')).then(|| text.to_owned())
}

/// The machine id and the host name together: containers on one kernel share its boot
/// id and may share a baked-in machine id, but not a pid namespace — their host names
/// tell them apart.
fn machine_id() -> Option<String> {
    let id = read_trimmed("/etc/machine-id").or_else(|| read_trimmed("/var/lib/dbus/machine-id"));
    let host = read_trimmed("/proc/sys/kernel/hostname");
    match (id, host) {
        (Some(id), Some(host)) => Some(format!("{id}.{host}")),
        (id, host) => id.or(host),
    }
}

/// A process's start time in clock ticks after boot: field 22 of `/proc/<pid>/stat`,
/// read after the command name (which may hold spaces and parentheses).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    // After the name come state (field 3) onwards; start time is field 22.
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_tell_the_dead_from_the_living() {
        let Some(here) = ProcessIdentity::current() else {
            eprintln!("skipped: this system has no /proc to tell processes apart");
            return;
        };
        assert_eq!(ProcessIdentity::parse(&here.spelled()), Some(here.clone()));
        assert_eq!(here.liveness(&here), Liveness::Alive);
        // The same pid with another start time is another process.
        let reused = ProcessIdentity {
            start: here.start + 1,
            ..here.clone()
        };
        assert_eq!(reused.liveness(&here), Liveness::Dead);
        let elsewhere = ProcessIdentity {
            machine: "another-machine".into(),
            ..here.clone()
        };
        assert_eq!(elsewhere.liveness(&here), Liveness::Unknown);
        // A child that has exited and been reaped is dead.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = ProcessIdentity {
            pid,
            ..here.clone()
        };
        assert_eq!(gone.liveness(&here), Liveness::Dead);
        assert_eq!(ProcessIdentity::parse("a:b:c"), None);
        assert_eq!(ProcessIdentity::parse("a:b:1:2:3"), None);
    }
}
