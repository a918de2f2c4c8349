//! Sync engine state: each connector's checkpoint, status record and work lease, and the
//! page commit that ties them to the events.
//!
//! A page commit is one transaction: it first proves the caller still holds the
//! connector's lease (holder, token and expiry must all match — a fencing token, so a
//! node that stalled past its lease cannot commit over its successor), then writes the
//! events (with identity resolution), the deletes and the next checkpoint. A crash
//! anywhere before the commit leaves the previous checkpoint with the previous data; a
//! crash after leaves both new. Re-delivered pages upsert to the same rows.

use crate::time::{from_us, to_us};
use crate::timeline::{UpsertSummary, check_batch, named_accounts, write_events};
use crate::tx::require_account;
use crate::{Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::AccountId;
use rapport_core::timeline::NewEvent;
use std::time::Duration;

/// Where a connector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorState {
    /// Waiting for its next run.
    Idle,
    /// A node is syncing it now.
    Running,
    /// The last run failed with a transient or rate-limit error; it retries at
    /// `next_run_at`.
    BackingOff,
    /// The last run failed for a reason only a person can fix (credentials, settings);
    /// it stays stopped until its configuration changes.
    Stopped,
    /// Switched off in the configuration.
    Disabled,
}

impl ConnectorState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorState::Idle => "idle",
            ConnectorState::Running => "running",
            ConnectorState::BackingOff => "backing_off",
            ConnectorState::Stopped => "stopped",
            ConnectorState::Disabled => "disabled",
        }
    }

    fn parse(value: &str) -> Result<ConnectorState> {
        Ok(match value {
            "idle" => ConnectorState::Idle,
            "running" => ConnectorState::Running,
            "backing_off" => ConnectorState::BackingOff,
            "stopped" => ConnectorState::Stopped,
            "disabled" => ConnectorState::Disabled,
            other => return Err(Error::Corrupt(format!("connector state `{other}`"))),
        })
    }
}

/// The last failure of a connector.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LastError {
    /// When.
    pub at: DateTime<Utc>,
    /// Its kind (`auth`, `config`, `rate_limited`, `transient`, `fatal`, `plugin`,
    /// `lease_lost`, `database`).
    pub kind: String,
    /// What happened, in words.
    pub message: String,
    /// The source id of the event the failure was about, when it was about one (an
    /// event the plugin returned that breaks the contract, say).
    pub source_id: Option<String>,
}

/// The outcome of the connector's own `check` (configuration and credentials).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckRecord {
    /// When it ran.
    pub at: DateTime<Utc>,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed, when it did.
    pub message: Option<String>,
}

/// A connector's status record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectorStatus {
    /// The connector's configured id.
    pub connector: String,
    /// Where it is.
    pub state: ConnectorState,
    /// The committed checkpoint (opaque to rapport).
    pub checkpoint: Option<String>,
    /// Events inserted or updated by its syncs, ever.
    pub events_ingested: i64,
    /// Pages committed, ever.
    pub pages_committed: i64,
    /// The newest `occurred_at` it has delivered.
    pub newest_event_at: Option<DateTime<Utc>>,
    /// When a run last started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When a run last finished without error.
    pub last_success_at: Option<DateTime<Utc>>,
    /// The most recent failure, kept after later successes for the record.
    pub last_error: Option<LastError>,
    /// Failed runs since the last success.
    pub consecutive_failures: i64,
    /// When it runs next (none: as soon as possible).
    pub next_run_at: Option<DateTime<Utc>>,
    /// When a person asked for a run that has not started yet.
    pub sync_requested_at: Option<DateTime<Utc>>,
    /// The node holding its lease, while the lease is live.
    pub lease_holder: Option<String>,
    /// Until when that node holds it.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The holder's process (`machine:boot:pid:start`), when it said, while the lease
    /// is live.
    pub lease_process: Option<String>,
    /// A digest of its configuration when last registered.
    pub config_fingerprint: Option<String>,
    /// Whether its `check` runs before the next sync (its configuration changed).
    pub check_due: bool,
    /// The last `check`, if one ran.
    pub last_check: Option<CheckRecord>,
}

impl ConnectorStatus {
    /// How far behind now the connector is: the time since its last successful run
    /// (or since it was first tried, if it never succeeded).
    pub fn lag(&self, now: DateTime<Utc>) -> Option<chrono::Duration> {
        self.last_success_at
            .or(self.last_attempt_at)
            .map(|since| now - since)
    }
}

/// The right to run one connector's sync until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The connector.
    pub connector: String,
    /// This node.
    pub holder: String,
    /// Grows on every acquisition; commits must present the current one.
    pub token: i64,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// One page of a sync, as committed.
#[derive(Debug, Clone, Copy)]
pub struct PageWrite<'a> {
    /// Events to upsert.
    pub events: &'a [NewEvent],
    /// Source ids (of this connector) the upstream deleted.
    pub deleted: &'a [String],
    /// The checkpoint to resume after this page; `None` keeps the previous one.
    pub checkpoint: Option<&'a str>,
}

/// What a page commit changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageCommit {
    /// Upsert totals.
    pub summary: UpsertSummary,
    /// Events deleted.
    pub deleted: u64,
    /// Events that went to the unmatched inbox (including ambiguous ones).
    pub waiting: u64,
}

impl PageCommit {
    /// Adds `other`'s totals to these.
    pub fn add(&mut self, other: &PageCommit) {
        self.summary.inserted += other.summary.inserted;
        self.summary.updated += other.summary.updated;
        self.summary.unchanged += other.summary.unchanged;
        self.deleted += other.deleted;
        self.waiting += other.waiting;
    }
}

/// How a run ended, for the status record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The state the connector is left in.
    pub state: ConnectorState,
    /// The failure (kind, message), if the run failed.
    pub error: Option<(String, String)>,
    /// The source id of the event the failure was about, if it was about one.
    pub error_source_id: Option<String>,
    /// When it should run next.
    pub next_run_at: Option<DateTime<Utc>>,
}

const STATUS_COLUMNS: &str =
    "SELECT connector, state, checkpoint, events_ingested, pages_committed,
    newest_event_at_us, last_attempt_at_us, last_success_at_us, last_error_at_us, last_error_kind,
    last_error_message, last_error_source_id, consecutive_failures, next_run_at_us,
    sync_requested_at_us, lease_holder, lease_expires_at_us, lease_process, config_fingerprint,
    check_due, last_check_at_us, last_check_ok, last_check_message FROM connector_state";

#[derive(Debug, sqlx::FromRow)]
struct StatusRow {
    connector: String,
    state: String,
    checkpoint: Option<String>,
    events_ingested: i64,
    pages_committed: i64,
    newest_event_at_us: Option<i64>,
    last_attempt_at_us: Option<i64>,
    last_success_at_us: Option<i64>,
    last_error_at_us: Option<i64>,
    last_error_kind: Option<String>,
    last_error_message: Option<String>,
    last_error_source_id: Option<String>,
    consecutive_failures: i64,
    next_run_at_us: Option<i64>,
    sync_requested_at_us: Option<i64>,
    lease_holder: Option<String>,
    lease_expires_at_us: Option<i64>,
    lease_process: Option<String>,
    config_fingerprint: Option<String>,
    check_due: bool,
    last_check_at_us: Option<i64>,
    last_check_ok: Option<bool>,
    last_check_message: Option<String>,
}

impl StatusRow {
    fn into_status(self, now: DateTime<Utc>) -> Result<ConnectorStatus> {
        let live_lease = self.lease_expires_at_us.filter(|&at| at > to_us(now));
        Ok(ConnectorStatus {
            state: ConnectorState::parse(&self.state)?,
            connector: self.connector,
            checkpoint: self.checkpoint,
            events_ingested: self.events_ingested,
            pages_committed: self.pages_committed,
            newest_event_at: self.newest_event_at_us.map(from_us),
            last_attempt_at: self.last_attempt_at_us.map(from_us),
            last_success_at: self.last_success_at_us.map(from_us),
            last_error: match (
                self.last_error_at_us,
                self.last_error_kind,
                self.last_error_message,
            ) {
                (Some(at), Some(kind), Some(message)) => Some(LastError {
                    at: from_us(at),
                    kind,
                    message,
                    source_id: self.last_error_source_id,
                }),
                _ => None,
            },
            consecutive_failures: self.consecutive_failures,
            next_run_at: self.next_run_at_us.map(from_us),
            sync_requested_at: self.sync_requested_at_us.map(from_us),
            lease_holder: live_lease.and(self.lease_holder),
            lease_expires_at: live_lease.map(from_us),
            lease_process: live_lease.and(self.lease_process),
            config_fingerprint: self.config_fingerprint,
            check_due: self.check_due,
            last_check: match (self.last_check_at_us, self.last_check_ok) {
                (Some(at), Some(ok)) => Some(CheckRecord {
                    at: from_us(at),
                    ok,
                    message: self.last_check_message,
                }),
                _ => None,
            },
        })
    }
}

/// Longest message a status record keeps, in bytes.
const STATUS_MESSAGE_BYTES_MAX: usize = 4 * 1024;

/// A message as a status record keeps it: without control characters (PostgreSQL
/// refuses NUL in text), cut to [`STATUS_MESSAGE_BYTES_MAX`].
fn status_text(message: &str) -> String {
    let mut text = rapport_core::timeline::clean_text(message.to_owned());
    if text.len() > STATUS_MESSAGE_BYTES_MAX {
        let mut at = STATUS_MESSAGE_BYTES_MAX - '…'.len_utf8();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
    text
}

/// The fence every lease-holder write starts with: matches one row only while the
/// lease is this one and has not lapsed.
const LEASE_FENCE: &str =
    "connector = $1 AND lease_holder = $2 AND lease_token = $3 AND lease_expires_at_us > $4";

/// `Ok` if the fenced statement matched the lease's row, else [`Error::LeaseLost`].
fn lease_held(rows_affected: u64, lease: &Lease) -> Result<()> {
    if rows_affected == 0 {
        return Err(Error::LeaseLost(lease.connector.clone()));
    }
    Ok(())
}

/// Refuses a checkpoint or deleted id that no backend could store alike: PostgreSQL
/// refuses NUL in text, SQLite would keep it.
fn check_page_text(page: PageWrite<'_>) -> Result<()> {
    let refuse = |field: &'static str| {
        Err(rapport_core::DomainError::InvalidField {
            field,
            reason: "must not contain NUL characters".into(),
        }
        .into())
    };
    if page
        .checkpoint
        .is_some_and(|checkpoint| checkpoint.contains('\0'))
    {
        return refuse("page checkpoint");
    }
    if page.deleted.iter().any(|id| id.contains('\0')) {
        return refuse("deleted source id");
    }
    Ok(())
}

/// Refuses events that claim another connector: a connector writes only its own keys.
fn all_from(events: &[NewEvent], connector: &str) -> Result<()> {
    match events.iter().find(|event| event.key.connector != connector) {
        None => Ok(()),
        Some(event) => Err(rapport_core::DomainError::InvalidField {
            field: "event connector",
            reason: format!(
                "event `{}` says it comes from `{}` but was delivered by connector `{connector}`",
                event.key.source_id, event.key.connector
            ),
        }
        .into()),
    }
}

impl Store {
    /// Makes sure `connector` has a state row, and records its configuration: a
    /// disabled connector is marked so; an enabled one whose configuration changed
    /// (`fingerprint`) leaves a `stopped` or `disabled` state and runs at once.
    pub async fn register_connector(
        &self,
        connector: &str,
        fingerprint: &str,
        enabled: bool,
    ) -> Result<ConnectorStatus> {
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            sqlx::query(
                "INSERT INTO connector_state (connector, config_fingerprint) VALUES ($1, $2)
                 ON CONFLICT (connector) DO NOTHING",
            )
            .bind(connector)
            .bind(fingerprint)
            .execute(&mut *tx)
            .await?;
            if enabled {
                sqlx::query(
                    "UPDATE connector_state SET
                        state = CASE WHEN state = 'disabled'
                                       OR (state = 'stopped' AND config_fingerprint <> $2)
                                     THEN 'idle' ELSE state END,
                        consecutive_failures = CASE WHEN config_fingerprint <> $2
                                                    THEN 0 ELSE consecutive_failures END,
                        next_run_at_us = CASE WHEN config_fingerprint <> $2 OR state = 'disabled'
                                              THEN NULL ELSE next_run_at_us END,
                        check_due = CASE WHEN config_fingerprint <> $2 THEN TRUE ELSE check_due END,
                        config_fingerprint = $2
                     WHERE connector = $1",
                )
                .bind(connector)
                .bind(fingerprint)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE connector_state SET state = 'disabled',
                        check_due = CASE WHEN config_fingerprint <> $2 THEN TRUE ELSE check_due END,
                        config_fingerprint = $2
                     WHERE connector = $1",
                )
                .bind(connector)
                .bind(fingerprint)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        self.connector_status(connector)
            .await?
            .ok_or_else(|| Error::UnknownConnector(connector.to_owned()))
    }

    /// One connector's status record, if it was ever registered.
    pub async fn connector_status(&self, connector: &str) -> Result<Option<ConnectorStatus>> {
        let row: Option<StatusRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{STATUS_COLUMNS} WHERE connector = $1"
            )))
            .bind(connector)
            .fetch_optional(pool)
            .await?
        });
        row.map(|row| row.into_status(Utc::now())).transpose()
    }

    /// Every registered connector's status record, by id.
    pub async fn connector_statuses(&self) -> Result<Vec<ConnectorStatus>> {
        let rows: Vec<StatusRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{STATUS_COLUMNS} ORDER BY connector"
            )))
            .fetch_all(pool)
            .await?
        });
        let now = Utc::now();
        rows.into_iter().map(|row| row.into_status(now)).collect()
    }

    /// New credentials for `connector` (a connection was made or remade): a connector
    /// stopped because it had none leaves `stopped`, its failures are forgotten, and a
    /// sync is requested. A disabled connector stays disabled.
    pub async fn resume_connector(&self, connector: &str, at: DateTime<Utc>) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connector_state SET
                    state = CASE WHEN state = 'stopped' OR state = 'backing_off' THEN 'idle' ELSE state END,
                    consecutive_failures = 0, next_run_at_us = NULL, check_due = TRUE,
                    sync_requested_at_us = COALESCE(sync_requested_at_us, $2)
                 WHERE connector = $1 AND state <> 'disabled'",
            )
            .bind(connector)
            .bind(to_us(at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Asks for a run of `connector` as soon as a node is free (any node: the request
    /// is stored, not sent).
    pub async fn request_sync(&self, connector: &str, at: DateTime<Utc>) -> Result<()> {
        let updated = with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connector_state SET sync_requested_at_us = COALESCE(sync_requested_at_us, $2)
                 WHERE connector = $1",
            )
            .bind(connector)
            .bind(to_us(at))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(Error::UnknownConnector(connector.to_owned()));
        }
        Ok(())
    }

    /// Takes `connector`'s lease for `holder` unless another node holds a live one.
    /// On PostgreSQL, `FOR UPDATE SKIP LOCKED` makes a contended acquisition return
    /// `None` at once instead of queueing behind the holder's transaction.
    pub async fn acquire_lease(
        &self,
        connector: &str,
        holder: &str,
        ttl: Duration,
        at: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        self.acquire_lease_as(connector, holder, None, ttl, at)
            .await
    }

    /// [`Store::acquire_lease`], recording the holder's `process` (see
    /// [`ConnectorStatus::lease_process`]) so that a node on the same machine can tell
    /// when it has died.
    pub async fn acquire_lease_as(
        &self,
        connector: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        at: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let result = self
            .acquire_lease_unobserved(connector, holder, process, ttl, at)
            .await;
        self.observe_write(&result, false);
        result
    }

    async fn acquire_lease_unobserved(
        &self,
        connector: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        at: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let at_us = to_us(at);
        let expires_us = at_us + i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let token: Option<i64> = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let select = match dialect {
                crate::Dialect::Sqlite => {
                    "SELECT lease_holder, lease_expires_at_us FROM connector_state WHERE connector = $1"
                }
                crate::Dialect::Postgres => {
                    "SELECT lease_holder, lease_expires_at_us FROM connector_state WHERE connector = $1
                     FOR UPDATE SKIP LOCKED"
                }
            };
            let current: Option<(Option<String>, Option<i64>)> = sqlx::query_as(select)
                .bind(connector)
                .fetch_optional(&mut *tx)
                .await?;
            let free = match &current {
                None => false,
                Some((Some(other), Some(expires))) => other == holder || *expires <= at_us,
                Some(_) => true,
            };
            if !free {
                return Ok(None);
            }
            let token: i64 = sqlx::query_scalar(
                "UPDATE connector_state SET lease_holder = $2, lease_token = lease_token + 1,
                    lease_expires_at_us = $3, lease_process = $4
                 WHERE connector = $1 RETURNING lease_token",
            )
            .bind(connector)
            .bind(holder)
            .bind(expires_us)
            .bind(process)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Some(token)
        });
        Ok(token.map(|token| Lease {
            connector: connector.to_owned(),
            holder: holder.to_owned(),
            token,
            expires_at: from_us(expires_us),
        }))
    }

    /// Takes over `connector`'s lease from a holder that is known to be dead (its
    /// process is gone from this machine), without waiting for it to lapse: only if
    /// that same holder and process still hold it, so a live successor is never
    /// displaced. The fencing token grows as on any acquisition.
    #[allow(clippy::too_many_arguments)]
    pub async fn take_over_lease(
        &self,
        connector: &str,
        dead_holder: &str,
        dead_process: &str,
        holder: &str,
        process: Option<&str>,
        ttl: Duration,
        at: DateTime<Utc>,
    ) -> Result<Option<Lease>> {
        let expires_us = to_us(at) + i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let token: Option<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "UPDATE connector_state SET lease_holder = $4, lease_token = lease_token + 1,
                    lease_expires_at_us = $5, lease_process = $6
                 WHERE connector = $1 AND lease_holder = $2 AND lease_process = $3
                 RETURNING lease_token",
            )
            .bind(connector)
            .bind(dead_holder)
            .bind(dead_process)
            .bind(holder)
            .bind(expires_us)
            .bind(process)
            .fetch_optional(pool)
            .await?
        });
        Ok(token.map(|token| Lease {
            connector: connector.to_owned(),
            holder: holder.to_owned(),
            token,
            expires_at: from_us(expires_us),
        }))
    }

    /// Records a failure outside any run (a webhook delivery the plugin could not
    /// turn into valid events): the last error's fields, not the connector's state.
    pub async fn record_error(
        &self,
        connector: &str,
        kind: &str,
        message: &str,
        source_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connector_state SET last_error_at_us = $2, last_error_kind = $3,
                    last_error_message = $4, last_error_source_id = $5
                 WHERE connector = $1",
            )
            .bind(connector)
            .bind(to_us(at))
            .bind(kind)
            .bind(status_text(message))
            .bind(source_id.map(status_text))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Records the outcome of the connector's `check` and clears `check_due`.
    pub async fn record_check(
        &self,
        connector: &str,
        outcome: std::result::Result<(), &str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let updated = with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connector_state SET check_due = FALSE, last_check_at_us = $2,
                    last_check_ok = $3, last_check_message = $4
                 WHERE connector = $1",
            )
            .bind(connector)
            .bind(to_us(at))
            .bind(outcome.is_ok())
            .bind(outcome.err().map(status_text))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(Error::UnknownConnector(connector.to_owned()));
        }
        Ok(())
    }

    /// Extends a live lease to `at + ttl` (the heartbeat); fails with
    /// [`Error::LeaseLost`] if it lapsed or another node took it.
    pub async fn renew_lease(
        &self,
        lease: &mut Lease,
        ttl: Duration,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let expires_us = to_us(at) + i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX / 2);
        let updated = with_backend!(self, |pool, dialect| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE connector_state SET lease_expires_at_us = $5 WHERE {LEASE_FENCE}"
            )))
            .bind(&lease.connector)
            .bind(&lease.holder)
            .bind(lease.token)
            .bind(to_us(at))
            .bind(expires_us)
            .execute(pool)
            .await?
            .rows_affected()
        });
        lease_held(updated, lease)?;
        lease.expires_at = from_us(expires_us);
        Ok(())
    }

    /// Gives a lease back so another node may run the connector at once.
    pub async fn release_lease(&self, lease: &Lease) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connector_state SET lease_holder = NULL, lease_expires_at_us = NULL,
                    lease_process = NULL
                 WHERE connector = $1 AND lease_holder = $2 AND lease_token = $3",
            )
            .bind(&lease.connector)
            .bind(&lease.holder)
            .bind(lease.token)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a run as started under `lease`: state `running`, the attempt time, and the
    /// pending on-demand request consumed.
    pub async fn start_run(&self, lease: &Lease, at: DateTime<Utc>) -> Result<()> {
        let updated = with_backend!(self, |pool, dialect| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE connector_state SET state = 'running', last_attempt_at_us = $4,
                    sync_requested_at_us = NULL
                 WHERE {LEASE_FENCE}"
            )))
            .bind(&lease.connector)
            .bind(&lease.holder)
            .bind(lease.token)
            .bind(to_us(at))
            .execute(pool)
            .await?
            .rows_affected()
        });
        lease_held(updated, lease)
    }

    /// Commits one page under `lease`, in one transaction: events (placed by identity
    /// resolution unless they name their account), deletes and the next checkpoint.
    /// Fails with [`Error::LeaseLost`], writing nothing, if the lease is no longer
    /// this node's.
    pub async fn commit_page(
        &self,
        lease: &Lease,
        page: PageWrite<'_>,
        at: DateTime<Utc>,
    ) -> Result<PageCommit> {
        let result = self.commit_page_unobserved(lease, page, at).await;
        self.observe_write(&result, true);
        result
    }

    async fn commit_page_unobserved(
        &self,
        lease: &Lease,
        page: PageWrite<'_>,
        at: DateTime<Utc>,
    ) -> Result<PageCommit> {
        check_batch(page.events)?;
        all_from(page.events, &lease.connector)?;
        check_page_text(page)?;
        let accounts = named_accounts(page.events);
        let at_us = to_us(at);
        let newest_us = page
            .events
            .iter()
            .map(|event| to_us(event.occurred_at))
            .max();
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            // The fence first: on PostgreSQL it also locks the state row, so the page
            // and a concurrent acquisition cannot interleave.
            let fenced = sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE connector_state SET checkpoint = COALESCE($5, checkpoint) WHERE {LEASE_FENCE}"
            )))
            .bind(&lease.connector)
            .bind(&lease.holder)
            .bind(lease.token)
            .bind(at_us)
            .bind(page.checkpoint)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if fenced == 0 {
                return Err(Error::LeaseLost(lease.connector.clone()));
            }
            for account in &accounts {
                require_account(&mut *tx, AccountId(*account)).await?;
            }
            let mut changes = crate::insights::Changes::default();
            let (mut commit, _) = write_events(
                &mut *tx,
                dialect,
                page.events,
                &self.ignored_domains,
                at_us,
                &mut changes,
            )
            .await?;
            for source_id in page.deleted {
                // A sighting of an event seen through other connections too takes only
                // this connection's sighting away.
                match crate::sightings::detach(
                    &mut *tx,
                    dialect,
                    &lease.connector,
                    source_id,
                    &mut changes,
                )
                .await?
                {
                    crate::sightings::Detached::Deleted => {
                        commit.deleted += 1;
                        continue;
                    }
                    crate::sightings::Detached::Kept => continue,
                    crate::sightings::Detached::NotSeen => {}
                }
                let deleted: Option<crate::insights::FactRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "DELETE FROM timeline_events
                         WHERE connector = $1 AND source_id = $2 AND identity IS NULL
                         RETURNING {}",
                        crate::insights::FACT_COLUMNS
                    )))
                    .bind(&lease.connector)
                    .bind(source_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(row) = deleted {
                    commit.deleted += 1;
                    changes.removed(row.into_fact());
                }
            }
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            sqlx::query(
                "UPDATE connector_state SET events_ingested = events_ingested + $2,
                    pages_committed = pages_committed + 1,
                    newest_event_at_us = CASE WHEN $3 IS NOT NULL
                        AND (newest_event_at_us IS NULL OR newest_event_at_us < $3)
                        THEN $3 ELSE newest_event_at_us END
                 WHERE connector = $1",
            )
            .bind(&lease.connector)
            .bind(commit.summary.changed())
            .bind(newest_us)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(commit)
        })
    }

    /// Records how a run under `lease` ended; a success clears the failure count, a
    /// failure is kept as the last error.
    pub async fn finish_run(
        &self,
        lease: &Lease,
        record: &RunRecord,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let result = self.finish_run_unobserved(lease, record, at).await;
        self.observe_write(&result, false);
        result
    }

    async fn finish_run_unobserved(
        &self,
        lease: &Lease,
        record: &RunRecord,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let at_us = to_us(at);
        let (kind, message) = match &record.error {
            Some((kind, message)) => (Some(kind.as_str()), Some(status_text(message))),
            None => (None, None),
        };
        let updated = with_backend!(self, |pool, dialect| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE connector_state SET
                    state = $5,
                    next_run_at_us = $6,
                    last_success_at_us = CASE WHEN $7 IS NULL THEN $4 ELSE last_success_at_us END,
                    last_error_at_us = CASE WHEN $7 IS NULL THEN last_error_at_us ELSE $4 END,
                    last_error_kind = COALESCE($7, last_error_kind),
                    last_error_message = COALESCE($8, last_error_message),
                    last_error_source_id = CASE WHEN $7 IS NULL THEN last_error_source_id ELSE $9 END,
                    consecutive_failures = CASE WHEN $7 IS NULL THEN 0 ELSE consecutive_failures + 1 END
                 WHERE {LEASE_FENCE}"
            )))
            .bind(&lease.connector)
            .bind(&lease.holder)
            .bind(lease.token)
            .bind(at_us)
            .bind(record.state.as_str())
            .bind(record.next_run_at.map(to_us))
            .bind(kind)
            .bind(message)
            .bind(record.error_source_id.as_deref())
            .execute(pool)
            .await?
            .rows_affected()
        });
        lease_held(updated, lease)
    }

    /// Stores events a connector pushed (webhooks) outside any sync run: the same
    /// resolution and versioned upsert as a page, without a checkpoint. The events'
    /// count goes on the connector's status record.
    pub async fn ingest_pushed(
        &self,
        connector: &str,
        events: &[NewEvent],
        at: DateTime<Utc>,
    ) -> Result<PageCommit> {
        all_from(events, connector)?;
        let (commit, _) = self
            .write_batch(
                rapport_core::permission::Authority::Operator,
                events,
                at,
                Some(connector),
            )
            .await?;
        Ok(commit)
    }
}
