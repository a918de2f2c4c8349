//! The engine: which connector runs when, on which node, and how a run turns plugin
//! pages into committed timeline events.

use crate::process::{Liveness, ProcessIdentity};
use crate::retry::{FailureKind, Next, RetryPolicy};
use crate::schedule::Schedule;
use chrono::{DateTime, SubsecRound, Utc};
use rapport_plugin_host::{Connector, PluginError, RefusedEvent, WebhookRequest};
use rapport_store::{ConnectorState, Lease, PageCommit, PageWrite, RunRecord, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// One configured connector, bound to its plugin.
#[derive(Debug, Clone)]
pub struct ConnectorSpec {
    /// Its bound plugin (id, settings, secrets and grants included).
    pub connector: Connector,
    /// When it runs by itself.
    pub schedule: Schedule,
    /// Whether it runs at all.
    pub enabled: bool,
    /// A digest of everything configured for it (including the plugin file and secret
    /// values): a change lifts a `stopped` state.
    pub fingerprint: String,
}

impl ConnectorSpec {
    /// Its configured id.
    pub fn id(&self) -> &str {
        self.connector.id()
    }
}

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's name in leases (unique per process).
    pub node_id: String,
    /// How long a lease lasts without a heartbeat; the heartbeat renews it every third
    /// of that. A dead node's connectors resume elsewhere after at most this long.
    pub lease_ttl: Duration,
    /// How often the scheduler looks for due connectors and stored run requests.
    pub poll_interval: Duration,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Most pages one run commits before yielding (the next run continues at once).
    pub pages_per_run_max: u32,
    /// Most connectors this node's scheduler syncs at once. Beyond it, due connectors
    /// wait for this node's next free slot — or for another node, which is how several
    /// nodes share the work instead of the first to look taking everything.
    pub runs_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_id: default_node_id(),
            lease_ttl: Duration::from_secs(90),
            poll_interval: Duration::from_secs(1),
            retry: RetryPolicy::default(),
            pages_per_run_max: 1_000,
            runs_max: 16,
        }
    }
}

/// `host-pid-random`: unique per process, readable in status pages.
pub fn default_node_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}-{:04x}", std::process::id(), fastrand::u16(..))
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// No connector with this id is configured.
    #[error("there is no connector `{0}` in the configuration")]
    UnknownConnector(String),
    /// The connector is switched off.
    #[error("connector `{0}` is disabled: set `enabled = true` in its [[connector]] entry")]
    Disabled(String),
    /// Another node (or another run on this node) is syncing it right now.
    #[error("connector `{connector}` is being synced right now{}", busy_detail(holder.as_deref(), *until, *holder_pid))]
    Busy {
        /// The connector.
        connector: String,
        /// Who holds its lease, if known.
        holder: Option<String>,
        /// Until when, unless renewed.
        until: Option<DateTime<Utc>>,
        /// The holder's pid, when it runs on this machine.
        holder_pid: Option<u32>,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] rapport_store::Error),
}

/// The rest of a [`SyncError::Busy`] message: who, until when, and what to do.
fn busy_detail(holder: Option<&str>, until: Option<DateTime<Utc>>, pid: Option<u32>) -> String {
    let who = holder.map_or_else(String::new, |holder| format!(" by {holder}"));
    let until_text = until.map_or_else(String::new, |until| {
        format!(" until {}", until.format("%Y-%m-%d %H:%M:%S UTC"))
    });
    match pid {
        Some(pid) => format!(
            "{who} (process {pid} on this machine){until_text}: wait for it to finish, or stop that process — its lease then passes on at once"
        ),
        None => format!(
            "{who}{until_text}: wait for it to finish; if that node has died, its lease lapses then and any node continues from the last committed page"
        ),
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every page the plugin had was committed.
    Completed,
    /// It stopped after the per-run page cap; the next run continues at once.
    Yielded,
    /// It failed; what happens next follows the kind.
    Failed {
        /// The class of failure.
        kind: FailureKind,
        /// What happened.
        message: String,
        /// When it runs again.
        next: Next,
    },
    /// Another node took the lease over (this node stalled); nothing more was
    /// committed by this run.
    LeaseLost,
    /// The process is shutting down; committed pages stay committed.
    ShutDown,
}

impl RunOutcome {
    /// A stable one-word label, for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Yielded => "yielded",
            RunOutcome::Failed { .. } => "failed",
            RunOutcome::LeaseLost => "lease_lost",
            RunOutcome::ShutDown => "shut_down",
        }
    }
}

/// What this node's runs did since it started, per connector: what `/metrics` reports
/// (each node counts its own runs; the status record holds the deployment's totals).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncTally {
    /// Finished runs by (connector, outcome label).
    pub runs: BTreeMap<(String, &'static str), u64>,
    /// Events inserted or updated, by connector.
    pub events_written: BTreeMap<String, u64>,
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// The connector.
    pub connector: String,
    /// Pages committed.
    pub pages: u32,
    /// Totals over those pages.
    pub inserted: u64,
    /// Events replaced by newer versions.
    pub updated: u64,
    /// Events already stored.
    pub unchanged: u64,
    /// Events deleted.
    pub deleted: u64,
    /// Events that went to the unmatched inbox.
    pub waiting: u64,
    /// How it ended.
    pub outcome: RunOutcome,
}

/// Reported after each committed page.
#[derive(Debug, Clone, Copy)]
pub struct PageProgress<'a> {
    /// The connector.
    pub connector: &'a str,
    /// 1-based page number within the run.
    pub page: u32,
    /// What the page changed.
    pub commit: &'a PageCommit,
}

/// Why a webhook delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No such connector, or it is disabled: the sender should not be told which.
    #[error("no connector `{0}` accepts webhooks here")]
    NotFound(String),
    /// The plugin refused the delivery's signature or credentials; nothing was stored.
    #[error("the delivery was rejected: {0}")]
    Rejected(String),
    /// The plugin could not make sense of the delivery; nothing was stored.
    #[error("the delivery could not be read: {0}")]
    Invalid(String),
    /// The plugin or the database failed; the sender should retry.
    #[error("the delivery could not be processed: {0}")]
    Failed(String),
    /// The connector is already running as many calls as it may (a flood of
    /// deliveries); the sender should retry after `retry_after_ms`.
    #[error("{message}")]
    Busy {
        /// What happened.
        message: String,
        /// How long to wait.
        retry_after_ms: u64,
    },
}

/// A webhook delivery that was taken: what was stored, and the events refused one by
/// one (recorded on the connector's status). The sender should not send it again.
#[derive(Debug, Clone)]
pub struct WebhookAccepted {
    /// What the valid events did.
    pub commit: PageCommit,
    /// Events the host or the store refused, each with its reason.
    pub refused: Vec<RefusedEvent>,
}

/// Runs the configured connectors against one store. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Engine {
    store: Store,
    config: EngineConfig,
    /// The connectors it runs, by id. Fixed ones come from the configuration; a
    /// person's connection is added when they connect and removed when they disconnect
    /// ([`Engine::add_connector`], [`Engine::remove_connector`]), so the map changes
    /// while runs hold their spec (an `Arc`) to the end of the run.
    connectors: std::sync::RwLock<BTreeMap<String, Arc<ConnectorSpec>>>,
    /// Connectors with a run in progress on this node.
    running: Arc<Mutex<BTreeSet<String>>>,
    /// What this node's runs did.
    tally: Mutex<SyncTally>,
    /// This process, as its leases record it.
    process: Option<ProcessIdentity>,
}

impl Engine {
    /// An engine for `connectors`; registers each in the store (recording its
    /// configuration digest, which lifts a `stopped` state when it changed).
    pub async fn new(
        store: Store,
        config: EngineConfig,
        connectors: Vec<ConnectorSpec>,
    ) -> Result<Engine, SyncError> {
        let mut by_id = BTreeMap::new();
        for spec in connectors {
            store
                .register_connector(spec.id(), &spec.fingerprint, spec.enabled)
                .await?;
            by_id.insert(spec.id().to_owned(), Arc::new(spec));
        }
        Ok(Engine {
            store,
            config,
            connectors: std::sync::RwLock::new(by_id),
            running: Arc::new(Mutex::new(BTreeSet::new())),
            tally: Mutex::new(SyncTally::default()),
            process: ProcessIdentity::current(),
        })
    }

    /// Takes `connector`'s lease for this node: free or lapsed, or held by a process
    /// on this machine that has died (a crashed `rapport sync`), which is taken over at
    /// once instead of waiting for it to lapse. `Err` says who holds it.
    async fn take_lease(&self, connector: &str) -> Result<Result<Lease, SyncError>, SyncError> {
        let process = self.process.as_ref().map(ProcessIdentity::spelled);
        let at = now();
        if let Some(lease) = self
            .store
            .acquire_lease_as(
                connector,
                &self.config.node_id,
                process.as_deref(),
                self.config.lease_ttl,
                at,
            )
            .await?
        {
            return Ok(Ok(lease));
        }
        let status = self.store.connector_status(connector).await?;
        let holder = status
            .as_ref()
            .and_then(|status| status.lease_holder.clone());
        let until = status.as_ref().and_then(|status| status.lease_expires_at);
        let holder_process = status
            .as_ref()
            .and_then(|status| status.lease_process.clone());
        let parsed = holder_process.as_deref().and_then(ProcessIdentity::parse);
        let liveness = match (&parsed, &self.process) {
            (Some(theirs), Some(mine)) => theirs.liveness(mine),
            _ => Liveness::Unknown,
        };
        if liveness == Liveness::Dead
            && let (Some(dead_holder), Some(dead_process)) = (&holder, &holder_process)
            && let Some(lease) = self
                .store
                .take_over_lease(
                    connector,
                    dead_holder,
                    dead_process,
                    &self.config.node_id,
                    process.as_deref(),
                    self.config.lease_ttl,
                    at,
                )
                .await?
        {
            tracing::info!(%connector, dead = %dead_holder, "took over the lease of a process on this machine that has died");
            return Ok(Ok(lease));
        }
        Ok(Err(SyncError::Busy {
            connector: connector.to_owned(),
            holder,
            until,
            holder_pid: parsed
                .filter(|_| liveness == Liveness::Alive)
                .map(|process| process.pid()),
        }))
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The connectors it runs now, by id.
    pub fn connectors(&self) -> Vec<Arc<ConnectorSpec>> {
        self.read_connectors().values().cloned().collect()
    }

    /// The connector `id`, if it runs here.
    pub fn connector(&self, id: &str) -> Option<Arc<ConnectorSpec>> {
        self.read_connectors().get(id).cloned()
    }

    fn read_connectors(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ConnectorSpec>>> {
        // A panic while holding the lock cannot leave the map half-changed (each write
        // is one insert or remove), so a poisoned lock is still a sound map.
        self.connectors.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `spec` (or replaces the connector of its id): registers it in the store —
    /// its own checkpoint, status and lease — and schedules it from the next poll.
    /// A run of the connector it replaces finishes with the old spec.
    pub async fn add_connector(&self, spec: ConnectorSpec) -> Result<(), SyncError> {
        self.store
            .register_connector(spec.id(), &spec.fingerprint, spec.enabled)
            .await?;
        self.connectors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.id().to_owned(), Arc::new(spec));
        Ok(())
    }

    /// Stops scheduling connector `id` on this node and marks it disabled in the
    /// store, so no node runs it; its checkpoint and events stay. A run in progress
    /// stops at its next page boundary when its credentials are gone, or finishes.
    pub async fn remove_connector(&self, id: &str) -> Result<bool, SyncError> {
        let removed = self
            .connectors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        if let Some(spec) = &removed {
            self.store
                .register_connector(id, &spec.fingerprint, false)
                .await?;
        }
        Ok(removed.is_some())
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Runs `connector` now, on this node, until it has nothing more (or fails),
    /// reporting each committed page. Fails with [`SyncError::Busy`] if it is running
    /// somewhere already.
    pub async fn run_now(
        &self,
        connector: &str,
        progress: &(dyn Fn(PageProgress<'_>) + Sync),
    ) -> Result<RunReport, SyncError> {
        let spec = self
            .connector(connector)
            .ok_or_else(|| SyncError::UnknownConnector(connector.to_owned()))?;
        if !spec.enabled {
            return Err(SyncError::Disabled(connector.to_owned()));
        }
        let Some(_running) = RunningGuard::claim(&self.running, connector) else {
            return Err(SyncError::Busy {
                connector: connector.to_owned(),
                holder: Some(self.config.node_id.clone()),
                until: None,
                holder_pid: Some(std::process::id()),
            });
        };
        let lease = self.take_lease(connector).await??;
        Ok(self.run_leased(&spec, lease, progress, None).await)
    }

    /// Runs the scheduler until `shutdown` turns true: every poll it starts each due
    /// connector whose lease it can take, then waits for running syncs to stop at their
    /// next page boundary.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        tracing::info!(node = %self.config.node_id, connectors = self.read_connectors().len(), "sync engine started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(error) = self.start_due(&mut tasks, &shutdown).await {
                tracing::warn!(%error, "looking for due connectors failed; retrying");
            }
            tokio::select! {
                _ = shutdown.changed() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!(running = tasks.len(), "sync engine stopping");
        while tasks.join_next().await.is_some() {}
    }

    async fn start_due(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<(), SyncError> {
        let now = now();
        for status in self.store.connector_statuses().await? {
            let Some(spec) = self.connector(&status.connector) else {
                continue;
            };
            let requested = status.sync_requested_at.is_some();
            let scheduled = status.state != ConnectorState::Stopped
                && status.next_run_at.is_none_or(|at| at <= now);
            if !spec.enabled || !(requested || scheduled) {
                continue;
            }
            if self.running.lock().expect("running set lock").len() >= self.config.runs_max {
                // Full: leave the rest to another node or this node's next free slot.
                break;
            }
            let Some(running) = RunningGuard::claim(&self.running, spec.id()) else {
                continue;
            };
            let Ok(lease) = self.take_lease(spec.id()).await? else {
                continue;
            };
            let engine = Arc::clone(self);
            let shutdown = shutdown.clone();
            tasks.spawn(async move {
                let _running = running;
                let report = engine
                    .run_leased(&spec, lease, &|_| {}, Some(&shutdown))
                    .await;
                log_report(&report);
            });
        }
        Ok(())
    }

    /// What this node's runs have done since it started.
    pub fn tally(&self) -> SyncTally {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// [`Engine::run_leased_untallied`], counted in the node's tally.
    async fn run_leased(
        &self,
        spec: &ConnectorSpec,
        lease: Lease,
        progress: &(dyn Fn(PageProgress<'_>) + Sync),
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> RunReport {
        let report = self
            .run_leased_untallied(spec, lease, progress, shutdown)
            .await;
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        *tally
            .runs
            .entry((report.connector.clone(), report.outcome.label()))
            .or_default() += 1;
        *tally
            .events_written
            .entry(report.connector.clone())
            .or_default() += report.inserted + report.updated;
        report
    }

    /// One run under `lease`: pages until done, failure, cap, lost lease or shutdown;
    /// then the status record and the lease released.
    async fn run_leased_untallied(
        &self,
        spec: &ConnectorSpec,
        lease: Lease,
        progress: &(dyn Fn(PageProgress<'_>) + Sync),
        shutdown: Option<&watch::Receiver<bool>>,
    ) -> RunReport {
        let mut report = RunReport {
            connector: spec.id().to_owned(),
            pages: 0,
            inserted: 0,
            updated: 0,
            unchanged: 0,
            deleted: 0,
            waiting: 0,
            outcome: RunOutcome::Completed,
        };
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            lease.clone(),
            self.config.lease_ttl,
            Arc::clone(&lost),
        ));
        let failure = self
            .pages(spec, &lease, &mut report, progress, shutdown, &lost)
            .await;
        heartbeat.abort();
        let now = now();
        let record = match failure {
            Err(Stop::LeaseLost) => {
                report.outcome = RunOutcome::LeaseLost;
                return report;
            }
            Err(Stop::ShutDown) => {
                report.outcome = RunOutcome::ShutDown;
                RunRecord {
                    state: ConnectorState::Idle,
                    error: None,
                    error_source_id: None,
                    next_run_at: Some(now),
                }
            }
            Err(Stop::Failed(kind, message, source_id)) => {
                let failures = self
                    .store
                    .connector_status(spec.id())
                    .await
                    .ok()
                    .flatten()
                    .map_or(0, |status| status.consecutive_failures);
                let failures = u32::try_from(failures + 1).unwrap_or(u32::MAX);
                let next = self.config.retry.after_failure(kind, failures, now);
                report.outcome = RunOutcome::Failed {
                    kind,
                    message: message.clone(),
                    next,
                };
                RunRecord {
                    state: match next {
                        Next::Stop => ConnectorState::Stopped,
                        Next::RetryAt(_) => ConnectorState::BackingOff,
                    },
                    error: Some((kind.as_str().to_owned(), message)),
                    error_source_id: source_id,
                    next_run_at: match next {
                        Next::Stop => None,
                        Next::RetryAt(at) => Some(at),
                    },
                }
            }
            Ok(yielded) => {
                report.outcome = if yielded {
                    RunOutcome::Yielded
                } else {
                    RunOutcome::Completed
                };
                RunRecord {
                    state: ConnectorState::Idle,
                    error: None,
                    error_source_id: None,
                    next_run_at: Some(if yielded {
                        now
                    } else {
                        spec.schedule.next_after(now)
                    }),
                }
            }
        };
        if let Err(error) = self.store.finish_run(&lease, &record, now).await {
            tracing::warn!(connector = spec.id(), %error, "could not record the end of a run");
            if matches!(error, rapport_store::Error::LeaseLost(_)) {
                report.outcome = RunOutcome::LeaseLost;
                return report;
            }
        }
        if let Err(error) = self.store.release_lease(&lease).await {
            tracing::warn!(connector = spec.id(), %error, "could not release a lease; it will expire");
        }
        report
    }

    /// The page loop. `Ok(true)` if it stopped at the page cap.
    async fn pages(
        &self,
        spec: &ConnectorSpec,
        lease: &Lease,
        report: &mut RunReport,
        progress: &(dyn Fn(PageProgress<'_>) + Sync),
        shutdown: Option<&watch::Receiver<bool>>,
        lost: &AtomicBool,
    ) -> Result<bool, Stop> {
        self.store
            .start_run(lease, now())
            .await
            .map_err(Stop::from_store)?;
        let status = self
            .store
            .connector_status(spec.id())
            .await
            .map_err(Stop::from_store)?;
        if status.as_ref().is_some_and(|status| status.check_due) {
            self.check_first(spec).await?;
        }
        let mut checkpoint = status.and_then(|status| status.checkpoint);
        loop {
            if report.pages >= self.config.pages_per_run_max {
                return Ok(true);
            }
            if lost.load(Ordering::SeqCst) {
                return Err(Stop::LeaseLost);
            }
            if shutdown.is_some_and(|shutdown| *shutdown.borrow()) {
                return Err(Stop::ShutDown);
            }
            let page = spec
                .connector
                .sync(checkpoint.as_deref())
                .await
                .map_err(|error| Stop::from_plugin(&error))?;
            if page.more && (page.checkpoint.is_none() || page.checkpoint == checkpoint) {
                return Err(Stop::Failed(
                    FailureKind::Fatal,
                    "the plugin said more pages are pending but did not move its checkpoint; \
                     it would read the same page forever (a bug in the plugin)"
                        .into(),
                    None,
                ));
            }
            let commit = self
                .store
                .commit_page(
                    lease,
                    PageWrite {
                        events: &page.events,
                        deleted: &page.deleted,
                        checkpoint: page.checkpoint.as_deref(),
                    },
                    now(),
                )
                .await
                .map_err(Stop::from_store)?;
            report.pages += 1;
            report.inserted += commit.summary.inserted;
            report.updated += commit.summary.updated;
            report.unchanged += commit.summary.unchanged;
            report.deleted += commit.deleted;
            report.waiting += commit.waiting;
            progress(PageProgress {
                connector: spec.id(),
                page: report.pages,
                commit: &commit,
            });
            if page.checkpoint.is_some() {
                checkpoint = page.checkpoint;
            }
            if !page.more {
                return Ok(false);
            }
        }
    }

    /// The connector's own `check`, on the first run after its configuration changed:
    /// recorded on its status; a failure that retrying will not fix (credentials,
    /// settings, the plugin's own fault) ends the run with it, anything passing lets the
    /// sync go ahead (it will meet the same condition and back off).
    async fn check_first(&self, spec: &ConnectorSpec) -> Result<(), Stop> {
        match self.check(spec).await.map_err(Stop::from_store)? {
            Ok(()) => Ok(()),
            Err(error) => match FailureKind::of_plugin_error(&error) {
                FailureKind::Transient | FailureKind::RateLimited(_) => Ok(()),
                kind => Err(Stop::Failed(
                    kind,
                    format!("its check failed: {}", plugin_message(&error)),
                    None,
                )),
            },
        }
    }

    /// Runs the connector's `check` and records its outcome on the status.
    async fn check(
        &self,
        spec: &ConnectorSpec,
    ) -> Result<Result<(), PluginError>, rapport_store::Error> {
        let outcome = spec.connector.check().await;
        let message = outcome.as_ref().err().map(plugin_message);
        self.store
            .record_check(spec.id(), message.as_deref().map_or(Ok(()), Err), now())
            .await?;
        Ok(outcome)
    }

    /// Runs `connector`'s `check` now (configuration and credentials, e.g. one cheap
    /// request upstream), records it on its status, and returns it.
    pub async fn check_now(&self, connector: &str) -> Result<Result<(), PluginError>, SyncError> {
        let spec = self
            .connector(connector)
            .ok_or_else(|| SyncError::UnknownConnector(connector.to_owned()))?;
        Ok(self.check(&spec).await?)
    }

    /// Hands a webhook delivery to `connector`'s plugin; stores what it accepts through
    /// the same resolution and upsert path as a sync page.
    pub async fn handle_webhook(
        &self,
        connector: &str,
        request: WebhookRequest,
    ) -> Result<WebhookAccepted, WebhookError> {
        let spec = self
            .connector(connector)
            .filter(|spec| spec.enabled)
            .ok_or_else(|| WebhookError::NotFound(connector.to_owned()))?;
        let delivery = match spec.connector.handle_webhook(request).await {
            Ok(delivery) => delivery,
            Err(PluginError::Busy { retry_after_ms, .. }) => {
                return Err(WebhookError::Busy {
                    message: format!(
                        "connector `{connector}` is busy with other deliveries; retry in {} s",
                        retry_after_ms.div_ceil(1000)
                    ),
                    retry_after_ms,
                });
            }
            Err(error) => {
                let kind = FailureKind::of_plugin_error(&error);
                let message = plugin_message(&error);
                return Err(match kind {
                    FailureKind::Auth => WebhookError::Rejected(message),
                    // The same delivery would fail the same way: the sender should stop
                    // retrying it, and the operator sees why on the status.
                    FailureKind::Config | FailureKind::Fatal | FailureKind::Plugin => {
                        if kind == FailureKind::Plugin {
                            self.record_webhook_failure(connector, &message, error.source_id())
                                .await;
                        }
                        WebhookError::Invalid(message)
                    }
                    _ => WebhookError::Failed(message),
                });
            }
        };
        let mut refused = delivery.refused;
        let events = delivery.events;
        let returned = events.len() + refused.len();
        let at = now();
        let commit = match self.store.ingest_pushed(connector, &events, at).await {
            Ok(commit) => commit,
            // The store refused something in the batch: take the events one by one,
            // so the good ones are kept and each bad one is refused with its reason.
            Err(rapport_store::Error::Domain(_)) => {
                let mut total = PageCommit::default();
                for (index, event) in events.iter().enumerate() {
                    match self
                        .store
                        .ingest_pushed(connector, std::slice::from_ref(event), at)
                        .await
                    {
                        Ok(commit) => total.add(&commit),
                        Err(rapport_store::Error::Domain(error)) => refused.push(RefusedEvent {
                            index,
                            source_id: rapport_core::timeline::clean_text(
                                event.key.source_id.clone(),
                            ),
                            reason: format!("the store refused it: {error}"),
                        }),
                        Err(other) => return Err(WebhookError::Failed(other.to_string())),
                    }
                }
                total
            }
            Err(other) => return Err(WebhookError::Failed(other.to_string())),
        };
        if let Some(first) = refused.first() {
            let message = format!(
                "{} of {returned} events were refused; the first, event {} ({}): {}",
                refused.len(),
                first.index,
                first.source_id,
                first.reason
            );
            let source = (!first.source_id.is_empty()).then_some(first.source_id.as_str());
            self.record_webhook_failure(connector, &message, source)
                .await;
        }
        Ok(WebhookAccepted { commit, refused })
    }

    /// Puts a delivery the plugin could not turn into valid events on the status.
    async fn record_webhook_failure(
        &self,
        connector: &str,
        message: &str,
        source_id: Option<&str>,
    ) {
        let message = format!("a webhook delivery was refused: {message}");
        if let Err(error) = self
            .store
            .record_error(connector, "plugin", &message, source_id, now())
            .await
        {
            tracing::warn!(%connector, %error, "could not record a refused webhook delivery");
        }
    }
}

/// The current instant at the store's precision (microseconds), so what a run reports
/// equals what it recorded.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Why the page loop stopped early.
enum Stop {
    /// The kind, what happened, and the source id of the event it was about.
    Failed(FailureKind, String, Option<String>),
    LeaseLost,
    ShutDown,
}

impl Stop {
    fn from_store(error: rapport_store::Error) -> Stop {
        match error {
            rapport_store::Error::LeaseLost(_) => Stop::LeaseLost,
            // Its owner disconnected it mid-run: nothing more is stored, and it runs
            // again only once they connect again (which resumes it).
            error @ rapport_store::Error::ConnectionClosed(_) => {
                Stop::Failed(FailureKind::Auth, error.to_string(), None)
            }
            // The plugin produced something the store refuses: the same page would be
            // refused again, so it counts as the plugin's fault (bounded retries).
            rapport_store::Error::Domain(error) => Stop::Failed(
                FailureKind::Plugin,
                format!("the plugin returned a page the store refused: {error}"),
                None,
            ),
            other => Stop::Failed(FailureKind::Transient, format!("database: {other}"), None),
        }
    }

    fn from_plugin(error: &PluginError) -> Stop {
        Stop::Failed(
            FailureKind::of_plugin_error(error),
            plugin_message(error),
            error.source_id().map(str::to_owned),
        )
    }
}

fn plugin_message(error: &PluginError) -> String {
    error.to_string()
}

/// Renews `lease` every third of its lifetime until aborted; flags `lost` if another
/// node took it.
async fn heartbeat(store: Store, mut lease: Lease, ttl: Duration, lost: Arc<AtomicBool>) {
    loop {
        tokio::time::sleep(ttl / 3).await;
        match store.renew_lease(&mut lease, ttl, now()).await {
            Ok(()) => {}
            Err(rapport_store::Error::LeaseLost(_)) => {
                lost.store(true, Ordering::SeqCst);
                return;
            }
            // A database hiccup: try again next beat; commits are fenced regardless.
            Err(error) => {
                tracing::warn!(connector = %lease.connector, %error, "lease heartbeat failed")
            }
        }
    }
}

fn log_report(report: &RunReport) {
    match &report.outcome {
        RunOutcome::Failed {
            kind,
            message,
            next,
        } => tracing::warn!(
            connector = %report.connector,
            kind = kind.as_str(),
            next = ?next,
            pages = report.pages,
            "sync failed: {message}"
        ),
        outcome => tracing::info!(
            connector = %report.connector,
            ?outcome,
            pages = report.pages,
            inserted = report.inserted,
            updated = report.updated,
            deleted = report.deleted,
            waiting = report.waiting,
            "sync finished"
        ),
    }
}

/// Marks a connector as running on this node for as long as it lives.
struct RunningGuard {
    running: Arc<Mutex<BTreeSet<String>>>,
    connector: String,
}

impl RunningGuard {
    fn claim(running: &Arc<Mutex<BTreeSet<String>>>, connector: &str) -> Option<Self> {
        running
            .lock()
            .expect("running set lock")
            .insert(connector.to_owned())
            .then(|| RunningGuard {
                running: Arc::clone(running),
                connector: connector.to_owned(),
            })
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            running.remove(&self.connector);
        }
    }
}
