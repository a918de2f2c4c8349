//! rapport's sync engine: turns connectors into a living timeline.
//!
//! # Layout
//! - [`Engine`] holds the configured connectors ([`ConnectorSpec`]: a bound plugin, a
//!   [`Schedule`], a config digest) and runs them: on schedule ([`Engine::run`], the
//!   scheduler a server runs), on demand ([`Engine::run_now`], what `rapport sync`
//!   calls) and on push ([`Engine::handle_webhook`]).
//! - `schedule`: `every 5m` or cron. `retry`: what each failure kind means for the next
//!   run (wait for `retry-after`, back off with jitter, or stop until the configuration
//!   changes).
//! - [`oauth`]: the OAuth 2.0 client (authorization URL with PKCE and `state`, code
//!   exchange, refresh, revocation). [`connections`]: a connection's sealed tokens as a
//!   connector's `TokenSource`, refreshed when due, one node at a time.
//!
//! # Invariants
//! - A run holds the connector's lease (store-side, fenced by a token) for its whole
//!   length; a heartbeat renews it. At most one node syncs a connector at a time, and a
//!   node that lost its lease cannot commit.
//! - Each page's events, deletes and next checkpoint commit in one transaction
//!   (`Store::commit_page`); the plugin is asked for the next page only from the
//!   committed checkpoint. At-least-once delivery plus idempotent upserts gives an
//!   exactly-once effect, whatever crashes where.
//! - Identity resolution happens inside that transaction (rules in `rapport-core`,
//!   applied by the store), so webhook and pull deliveries place events identically.
//! - Every run ends in a status record: state, last success, last error with its kind,
//!   next run, events ingested.

pub mod connections;
mod engine;
pub mod oauth;
mod process;
mod retry;
mod schedule;

pub use engine::{
    ConnectorSpec, Engine, EngineConfig, PageProgress, RunOutcome, RunReport, SyncError, SyncTally,
    WebhookAccepted, WebhookError, default_node_id,
};
pub use retry::{FailureKind, Next, RetryPolicy};
pub use schedule::{INTERVAL_MIN, Schedule, ScheduleError, parse_duration};
