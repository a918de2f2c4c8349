//! What a failed run means for the next one, by the kind of failure.

use chrono::{DateTime, SubsecRound, Utc};
use rapport_plugin_host::{ConnectorError, PluginError};
use std::time::Duration;

/// How failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff after a transient failure.
    pub base: Duration,
    /// The longest backoff, and the longest `retry-after` honoured.
    pub cap: Duration,
    /// How many runs in a row may fail by the plugin's own fault (a crash, invalid
    /// output) before the connector is stopped: the same input most likely fails the
    /// same way, and a stopped connector says why on its status.
    pub plugin_failures_max: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(30 * 60),
            plugin_failures_max: 3,
        }
    }
}

/// The class of a failed run, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Credentials refused: stop until the configuration changes.
    Auth,
    /// Settings wrong: stop until the configuration changes.
    Config,
    /// The source asked us to wait this long.
    RateLimited(Duration),
    /// Worth retrying with backoff: network, 5xx, the host's load, a busy database.
    Transient,
    /// The plugin's own fault — a trap, running out of its memory or time, output
    /// that breaks the contract: retried with backoff a few times
    /// ([`RetryPolicy::plugin_failures_max`]), then stopped until the plugin or its
    /// configuration changes.
    Plugin,
    /// The connector says retrying will not help: stop until the configuration
    /// changes.
    Fatal,
}

impl FailureKind {
    /// The kind of a plugin failure.
    pub fn of_plugin_error(error: &PluginError) -> FailureKind {
        match error {
            PluginError::Connector(ConnectorError::Auth(_)) => FailureKind::Auth,
            PluginError::Connector(ConnectorError::Config(_)) => FailureKind::Config,
            PluginError::Connector(ConnectorError::RateLimited { retry_after_ms, .. }) => {
                FailureKind::RateLimited(Duration::from_millis(*retry_after_ms))
            }
            PluginError::Connector(ConnectorError::Fatal(_)) => FailureKind::Fatal,
            // A plugin that reaches a host it was not granted will keep doing so.
            PluginError::ForbiddenNetwork { .. } => FailureKind::Config,
            error if error.is_plugin_fault() => FailureKind::Plugin,
            _ => FailureKind::Transient,
        }
    }

    /// The name shown on the status record.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Auth => "auth",
            FailureKind::Config => "config",
            FailureKind::RateLimited(_) => "rate_limited",
            FailureKind::Transient => "transient",
            FailureKind::Plugin => "plugin",
            FailureKind::Fatal => "fatal",
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Retry at this instant.
    RetryAt(DateTime<Utc>),
    /// Do not run again until a person changes the configuration (or asks for a run).
    Stop,
}

impl RetryPolicy {
    /// The backoff before retry number `failures` (1 for the first failure):
    /// `base * 2^(failures-1)`, capped, with "equal jitter" — half fixed, half random —
    /// so nodes that failed together do not retry together, yet never retry sooner
    /// than half the backoff.
    pub fn backoff(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.cap);
        let half = full / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// What follows a failure of `kind`, the `failures`-th in a row, at `now`.
    pub fn after_failure(&self, kind: FailureKind, failures: u32, now: DateTime<Utc>) -> Next {
        let wait = match kind {
            FailureKind::Auth | FailureKind::Config | FailureKind::Fatal => return Next::Stop,
            // Honour the source, but never wait less than the base backoff or longer
            // than the cap.
            FailureKind::RateLimited(retry_after) => retry_after.clamp(self.base, self.cap),
            FailureKind::Plugin if failures >= self.plugin_failures_max => return Next::Stop,
            FailureKind::Transient | FailureKind::Plugin => self.backoff(failures, fastrand::f64()),
        };
        let at = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        // At the store's precision, so the reported instant is the recorded one.
        Next::RetryAt(at.trunc_subsecs(6))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let policy = RetryPolicy {
            base: Duration::from_secs(4),
            cap: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        assert_eq!(policy.backoff(1, 0.0), Duration::from_secs(2));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_secs(4));
        assert_eq!(policy.backoff(2, 1.0), Duration::from_secs(8));
        assert_eq!(policy.backoff(3, 0.5), Duration::from_secs(12));
        assert_eq!(policy.backoff(10, 1.0), Duration::from_secs(60));
        assert_eq!(policy.backoff(u32::MAX, 0.0), Duration::from_secs(30));
    }

    #[test]
    fn kinds_decide_between_retrying_and_stopping() {
        let policy = RetryPolicy::default();
        let now = Utc::now().trunc_subsecs(6);
        for kind in [FailureKind::Auth, FailureKind::Config, FailureKind::Fatal] {
            assert_eq!(policy.after_failure(kind, 1, now), Next::Stop);
        }
        let limited =
            policy.after_failure(FailureKind::RateLimited(Duration::from_secs(42)), 1, now);
        assert_eq!(limited, Next::RetryAt(now + chrono::Duration::seconds(42)));
        let absurd = policy.after_failure(
            FailureKind::RateLimited(Duration::from_secs(86_400)),
            1,
            now,
        );
        assert_eq!(absurd, Next::RetryAt(now + chrono::Duration::minutes(30)));
        let Next::RetryAt(at) = policy.after_failure(FailureKind::Transient, 1, now) else {
            panic!("transient failures retry")
        };
        assert!(
            at >= now + chrono::Duration::milliseconds(2_500)
                && at <= now + chrono::Duration::seconds(5)
        );
        // A plugin's own fault retries a bounded number of times, then stops.
        let crash = PluginError::Crashed {
            message: "boom".into(),
        };
        assert_eq!(FailureKind::of_plugin_error(&crash), FailureKind::Plugin);
        assert!(matches!(
            policy.after_failure(FailureKind::Plugin, 1, now),
            Next::RetryAt(_)
        ));
        assert!(matches!(
            policy.after_failure(FailureKind::Plugin, 2, now),
            Next::RetryAt(_)
        ));
        assert_eq!(
            policy.after_failure(FailureKind::Plugin, 3, now),
            Next::Stop
        );
        // The host's own load is not the plugin's fault.
        assert_eq!(
            FailureKind::of_plugin_error(&PluginError::MemoryBudgetExhausted { budget_bytes: 1 }),
            FailureKind::Transient
        );
        assert_eq!(
            FailureKind::of_plugin_error(&PluginError::Connector(ConnectorError::RateLimited {
                retry_after_ms: 1_500,
                message: String::new()
            })),
            FailureKind::RateLimited(Duration::from_millis(1_500))
        );
    }
}
