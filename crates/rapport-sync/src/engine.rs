//! The engine: which connector runs when, on which node, and how a run turns plugin
//! pages into committed timeline events.

use crate::retry::{FailureKind, Next, RetryPolicy};
use crate::schedule::Schedule;
use chrono::{DateTime, SubsecRound, Utc};
use rapport_plugin_host::{Connector, PluginError, WebhookRequest};
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
    #[error("connector `{connector}` is being synced right now{}; try again when it finishes", holder.as_ref().map(|holder| format!(" by {holder}")).unwrap_or_default())]
    Busy {
        /// The connector.
        connector: String,
        /// Who holds its lease, if known.
        holder: Option<String>,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] rapport_store::Error),
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
}

/// Runs the configured connectors against one store. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Engine {
    store: Store,
    config: EngineConfig,
    connectors: BTreeMap<String, ConnectorSpec>,
    /// Connectors with a run in progress on this node.
    running: Arc<Mutex<BTreeSet<String>>>,
    /// What this node's runs did.
    tally: Mutex<SyncTally>,
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
            by_id.insert(spec.id().to_owned(), spec);
        }
        Ok(Engine {
            store,
            config,
            connectors: by_id,
            running: Arc::new(Mutex::new(BTreeSet::new())),
            tally: Mutex::new(SyncTally::default()),
        })
    }

    /// The store it writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configured connectors, by id.
    pub fn connectors(&self) -> impl Iterator<Item = &ConnectorSpec> {
        self.connectors.values()
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
            .connectors
            .get(connector)
            .ok_or_else(|| SyncError::UnknownConnector(connector.to_owned()))?;
        if !spec.enabled {
            return Err(SyncError::Disabled(connector.to_owned()));
        }
        let Some(_running) = RunningGuard::claim(&self.running, connector) else {
            return Err(SyncError::Busy {
                connector: connector.to_owned(),
                holder: Some(self.config.node_id.clone()),
            });
        };
        let lease = self
            .store
            .acquire_lease(
                connector,
                &self.config.node_id,
                self.config.lease_ttl,
                now(),
            )
            .await?;
        let Some(lease) = lease else {
            let holder = self
                .store
                .connector_status(connector)
                .await?
                .and_then(|status| status.lease_holder);
            return Err(SyncError::Busy {
                connector: connector.to_owned(),
                holder,
            });
        };
        Ok(self.run_leased(spec, lease, progress, None).await)
    }

    /// Runs the scheduler until `shutdown` turns true: every poll it starts each due
    /// connector whose lease it can take, then waits for running syncs to stop at their
    /// next page boundary.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        tracing::info!(node = %self.config.node_id, connectors = self.connectors.len(), "sync engine started");
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
            let Some(spec) = self.connectors.get(&status.connector) else {
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
            let Some(lease) = self
                .store
                .acquire_lease(spec.id(), &self.config.node_id, self.config.lease_ttl, now)
                .await?
            else {
                continue;
            };
            let engine = Arc::clone(self);
            let shutdown = shutdown.clone();
            let id = spec.id().to_owned();
            tasks.spawn(async move {
                let _running = running;
                let spec = &engine.connectors[&id];
                let report = engine
                    .run_leased(spec, lease, &|_| {}, Some(&shutdown))
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
                    next_run_at: Some(now),
                }
            }
            Err(Stop::Failed(kind, message)) => {
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
        let mut checkpoint = self
            .store
            .connector_status(spec.id())
            .await
            .map_err(Stop::from_store)?
            .and_then(|status| status.checkpoint);
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
                .map_err(|error| {
                    Stop::Failed(FailureKind::of_plugin_error(&error), plugin_message(&error))
                })?;
            if page.more && (page.checkpoint.is_none() || page.checkpoint == checkpoint) {
                return Err(Stop::Failed(
                    FailureKind::Fatal,
                    "the plugin said more pages are pending but did not move its checkpoint; \
                     it would read the same page forever (a bug in the plugin)"
                        .into(),
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

    /// Hands a webhook delivery to `connector`'s plugin; stores what it accepts through
    /// the same resolution and upsert path as a sync page.
    pub async fn handle_webhook(
        &self,
        connector: &str,
        request: WebhookRequest,
    ) -> Result<PageCommit, WebhookError> {
        let spec = self
            .connectors
            .get(connector)
            .filter(|spec| spec.enabled)
            .ok_or_else(|| WebhookError::NotFound(connector.to_owned()))?;
        let events = spec
            .connector
            .handle_webhook(request)
            .await
            .map_err(|error| match FailureKind::of_plugin_error(&error) {
                FailureKind::Auth => WebhookError::Rejected(plugin_message(&error)),
                FailureKind::Config | FailureKind::Fatal => {
                    WebhookError::Invalid(plugin_message(&error))
                }
                _ => WebhookError::Failed(plugin_message(&error)),
            })?;
        self.store
            .ingest_pushed(connector, &events, now())
            .await
            .map_err(|error| match error {
                rapport_store::Error::Domain(error) => WebhookError::Invalid(error.to_string()),
                other => WebhookError::Failed(other.to_string()),
            })
    }
}

/// The current instant at the store's precision (microseconds), so what a run reports
/// equals what it recorded.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Why the page loop stopped early.
enum Stop {
    Failed(FailureKind, String),
    LeaseLost,
    ShutDown,
}

impl Stop {
    fn from_store(error: rapport_store::Error) -> Stop {
        match error {
            rapport_store::Error::LeaseLost(_) => Stop::LeaseLost,
            // The plugin produced something the store refuses (e.g. an event for
            // another connector): retrying the same page will not help.
            rapport_store::Error::Domain(error) => Stop::Failed(
                FailureKind::Fatal,
                format!("the plugin returned a page the store refused: {error}"),
            ),
            other => Stop::Failed(FailureKind::Transient, format!("database: {other}")),
        }
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
