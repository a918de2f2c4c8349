//! Loaded plugins and the connectors bound to them.

use crate::config::{Grants, WebhookRequest};
use crate::contract::{self, v0_1_0};
use crate::engine::{EPOCH_TICK_MS, PluginHost};
use crate::error::{PluginError, Result};
use crate::network::NetworkPolicy;
use crate::sandbox::Sandbox;
use rapport_core::timeline::{EventKind, NewEvent, validate_connector_id};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};

/// Contract versions this build runs, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[v0_1_0::VERSION];

/// Grace the host allows past a call's deadline before abandoning it outright — for
/// a plugin blocked inside a host call (network I/O), which epochs cannot interrupt.
const HOST_TIMEOUT_GRACE_MS: u64 = 250;

/// The contract version a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    /// `rapport:connector@0.1.0`.
    V0_1_0,
}

impl ContractVersion {
    /// The version as text.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => v0_1_0::VERSION,
        }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// One line about it.
    pub description: String,
    /// The event kinds it emits.
    pub event_kinds: Vec<String>,
    /// The settings and secrets it understands.
    pub config_keys: Vec<ConfigKey>,
    /// The hosts it needs (`*` when the operator chooses).
    pub hosts: Vec<String>,
}

/// One configuration key a plugin understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether it must be given.
    pub required: bool,
    /// Whether it is a secret.
    pub secret: bool,
}

/// One page of a sync, converted and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPage {
    /// The events, ready to match and store.
    pub events: Vec<NewEvent>,
    /// Source ids deleted at the source.
    pub deleted: Vec<String>,
    /// The checkpoint to store with this page.
    pub checkpoint: Option<String>,
    /// Whether to call `sync` again at once.
    pub more: bool,
}

/// A compiled plugin whose contract version and manifest are known. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    host: PluginHost,
    name: String,
    version: ContractVersion,
    bindings: v0_1_0::ConnectorPre<Sandbox>,
    manifest: Manifest,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("manifest", &self.inner.manifest)
            .finish()
    }
}

/// Reads the contract version from the component's exports
/// (`rapport:connector/plugin@X.Y.Z`).
fn contract_version(
    host: &PluginHost,
    name: &str,
    component: &Component,
) -> Result<ContractVersion> {
    let engine = &host.inner.engine;
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(export, _)| export.to_owned())
        .collect();
    let prefix = format!("{}/plugin@", contract::PACKAGE);
    let Some(found) = exports
        .iter()
        .find_map(|export| export.strip_prefix(&prefix))
    else {
        return Err(PluginError::NotAConnector {
            name: name.to_owned(),
            exports,
        });
    };
    match found {
        v0_1_0::VERSION => Ok(ContractVersion::V0_1_0),
        other => Err(PluginError::UnsupportedVersion {
            name: name.to_owned(),
            found: other.to_owned(),
            supported: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }),
    }
}

impl Plugin {
    pub(crate) async fn new(host: PluginHost, name: &str, component: Component) -> Result<Plugin> {
        let version = contract_version(&host, name, &component)?;
        let instantiate_error = |error: wasmtime::Error| PluginError::Instantiate {
            name: name.to_owned(),
            message: format!("{error:#}"),
        };
        let pre = host
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(instantiate_error)?;
        let bindings = v0_1_0::ConnectorPre::new(pre).map_err(instantiate_error)?;
        let mut plugin = Plugin {
            inner: Arc::new(PluginInner {
                host,
                name: name.to_owned(),
                version,
                bindings,
                manifest: Manifest {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    event_kinds: Vec::new(),
                    config_keys: Vec::new(),
                    hosts: Vec::new(),
                },
            }),
        };
        // `describe` runs like any call, in a sandbox with no network.
        let manifest = {
            let describer = Connector {
                plugin: plugin.clone(),
                grants: Arc::new(Grants {
                    connector_id: "describe".into(),
                    ..Grants::default()
                }),
                policy: Arc::new(NetworkPolicy::deny_all()),
            };
            match describer.run(Call::Describe).await? {
                Outcome::Manifest(manifest) => manifest,
                _ => unreachable!("describe returns a manifest"),
            }
        };
        validate_manifest(name, &manifest)?;
        Arc::get_mut(&mut plugin.inner)
            .expect("the describer has finished with its clone")
            .manifest = manifest;
        Ok(plugin)
    }

    /// Where the plugin came from.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The contract version it implements.
    pub fn contract_version(&self) -> ContractVersion {
        self.inner.version
    }

    /// What it says about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// Binds the plugin to one configured connector.
    pub fn connector(&self, grants: Grants) -> Result<Connector> {
        validate_connector_id(&grants.connector_id).map_err(|error| {
            PluginError::InvalidManifest {
                name: self.inner.name.clone(),
                reason: error.to_string(),
            }
        })?;
        let policy = NetworkPolicy::new(
            &self.inner.manifest.hosts,
            &grants.allowed_hosts,
            grants.allow_private_networks,
        )
        .map_err(|reason| PluginError::InvalidManifest {
            name: format!("connector `{}`", grants.connector_id),
            reason,
        })?;
        Ok(Connector {
            plugin: self.clone(),
            grants: Arc::new(grants),
            policy: Arc::new(policy),
        })
    }
}

fn validate_manifest(name: &str, manifest: &Manifest) -> Result<()> {
    let invalid = |reason: String| PluginError::InvalidManifest {
        name: name.to_owned(),
        reason,
    };
    if manifest.name.trim().is_empty() {
        return Err(invalid("its name is empty".into()));
    }
    for kind in &manifest.event_kinds {
        EventKind::parse(kind).map_err(|error| invalid(error.to_string()))?;
    }
    for host in &manifest.hosts {
        crate::network::HostPattern::parse(host).map_err(invalid)?;
    }
    Ok(())
}

/// A plugin bound to one connector's grants. Cheap to clone; every call is isolated.
#[derive(Clone)]
pub struct Connector {
    plugin: Plugin,
    grants: Arc<Grants>,
    policy: Arc<NetworkPolicy>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("plugin", &self.plugin.inner.name)
            .field("grants", &self.grants)
            .finish()
    }
}

enum Call {
    Describe,
    Check,
    Sync(Option<String>),
    Webhook(WebhookRequest),
}

enum Outcome {
    Manifest(Manifest),
    Checked,
    Page(SyncPage),
    Events(Vec<NewEvent>),
}

impl Connector {
    /// The connector id.
    pub fn id(&self) -> &str {
        &self.grants.connector_id
    }

    /// The plugin it runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Verifies configuration and credentials.
    #[tracing::instrument(skip(self), fields(connector = %self.grants.connector_id))]
    pub async fn check(&self) -> Result<()> {
        self.run(Call::Check).await.map(|_| ())
    }

    /// Fetches the page after `checkpoint`.
    #[tracing::instrument(skip(self), fields(connector = %self.grants.connector_id))]
    pub async fn sync(&self, checkpoint: Option<&str>) -> Result<SyncPage> {
        match self.run(Call::Sync(checkpoint.map(str::to_owned))).await? {
            Outcome::Page(page) => Ok(page),
            _ => unreachable!("sync returns a page"),
        }
    }

    /// Verifies and converts a webhook delivery.
    #[tracing::instrument(skip(self, request), fields(connector = %self.grants.connector_id))]
    pub async fn handle_webhook(&self, request: WebhookRequest) -> Result<Vec<NewEvent>> {
        match self.run(Call::Webhook(request)).await? {
            Outcome::Events(events) => Ok(events),
            _ => unreachable!("handle-webhook returns events"),
        }
    }

    /// Runs one call in a fresh sandbox and store.
    async fn run(&self, call: Call) -> Result<Outcome> {
        let inner = &self.plugin.inner;
        let limits = inner.host.inner.config.limits.clone();
        let connector_id = self.grants.connector_id.clone();
        let tcp_destinations = match call {
            Call::Describe => Vec::new(),
            _ => self.policy.resolve_tcp_destinations().await,
        };
        let sandbox = Sandbox::new(
            &connector_id,
            self.policy.clone(),
            tcp_destinations,
            self.grants.secrets.values().cloned().collect(),
            &limits,
        );
        let mut store = Store::new(&inner.host.inner.engine, sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        // Every tick the guest yields to the executor, so a CPU-bound plugin shares its
        // thread with other tasks instead of starving them; past the deadline it traps.
        let hard_deadline = Instant::now() + Duration::from_millis(limits.deadline_ms);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= hard_deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let config = v0_1_0::config(&self.grants);
        let started = Instant::now();
        let host_timeout =
            Duration::from_millis(limits.deadline_ms + 2 * EPOCH_TICK_MS + HOST_TIMEOUT_GRACE_MS);
        let called = tokio::time::timeout(host_timeout, async {
            let instance = inner.bindings.instantiate_async(&mut store).await?;
            let plugin = instance.rapport_connector_plugin();
            wasmtime::Result::Ok(match call {
                Call::Describe => Raw::Manifest(plugin.call_describe(&mut store).await?),
                Call::Check => Raw::Checked(plugin.call_check(&mut store, &config).await?),
                Call::Sync(checkpoint) => Raw::Page(
                    plugin
                        .call_sync(&mut store, &config, checkpoint.as_deref())
                        .await?,
                ),
                Call::Webhook(request) => Raw::Events(
                    plugin
                        .call_handle_webhook(&mut store, &config, &v0_1_0::webhook_request(request))
                        .await?,
                ),
            })
        })
        .await;
        let elapsed_ms = started.elapsed().as_millis();
        let sandbox = store.data();
        if sandbox.logs_dropped > 0 {
            tracing::warn!(connector = %connector_id, dropped = sandbox.logs_dropped, "plugin exceeded its log line limit");
        }
        // A forbidden destination fails the call whatever the plugin made of the refusal.
        if let Some(denial) = sandbox
            .denials
            .lock()
            .expect("denials lock")
            .first()
            .cloned()
        {
            tracing::warn!(connector = %connector_id, target = %denial.target, "plugin tried to reach a forbidden destination");
            return Err(PluginError::ForbiddenNetwork {
                target: denial.target,
                reason: denial.reason,
            });
        }
        let raw = match called {
            Err(_elapsed) => {
                return Err(PluginError::Timeout {
                    deadline_ms: limits.deadline_ms,
                });
            }
            Ok(Err(error)) => {
                let failure = classify(error, sandbox, &limits);
                tracing::warn!(connector = %connector_id, elapsed_ms, error = %failure, "plugin call failed");
                return Err(failure);
            }
            Ok(Ok(raw)) => raw,
        };
        tracing::debug!(connector = %connector_id, elapsed_ms, "plugin call finished");
        match raw {
            Raw::Manifest(manifest) => Ok(Outcome::Manifest(v0_1_0::manifest(manifest))),
            Raw::Checked(result) => result
                .map(|()| Outcome::Checked)
                .map_err(|error| v0_1_0::connector_error(error, sandbox).into()),
            Raw::Page(result) => {
                let page = result
                    .map_err(|error| PluginError::from(v0_1_0::connector_error(error, sandbox)))?;
                check_output(&page.events, &limits)?;
                v0_1_0::page(&connector_id, page).map(Outcome::Page)
            }
            Raw::Events(result) => {
                let events = result
                    .map_err(|error| PluginError::from(v0_1_0::connector_error(error, sandbox)))?;
                check_output(&events, &limits)?;
                v0_1_0::events(&connector_id, events).map(Outcome::Events)
            }
        }
    }
}

/// What came back from the guest, before conversion.
enum Raw {
    Manifest(v0_1_0::rapport::connector::types::Manifest),
    Checked(std::result::Result<(), v0_1_0::rapport::connector::types::ConnectorError>),
    Page(
        std::result::Result<
            v0_1_0::rapport::connector::types::Page,
            v0_1_0::rapport::connector::types::ConnectorError,
        >,
    ),
    Events(
        std::result::Result<
            Vec<v0_1_0::rapport::connector::types::Event>,
            v0_1_0::rapport::connector::types::ConnectorError,
        >,
    ),
}

fn check_output(
    events: &[v0_1_0::rapport::connector::types::Event],
    limits: &crate::config::CallLimits,
) -> Result<()> {
    if events.len() > limits.events_max {
        return Err(PluginError::TooManyEvents {
            count: events.len(),
            max: limits.events_max,
        });
    }
    let bytes = v0_1_0::text_bytes(events);
    if bytes > limits.returned_bytes_max {
        return Err(PluginError::TooLarge {
            bytes,
            max: limits.returned_bytes_max,
        });
    }
    Ok(())
}

/// Turns a wasmtime failure into what happened, using what the sandbox observed.
fn classify(
    error: wasmtime::Error,
    sandbox: &Sandbox,
    limits: &crate::config::CallLimits,
) -> PluginError {
    if sandbox.limiter.exceeded {
        return PluginError::MemoryExceeded {
            limit_bytes: limits.memory_bytes_max,
        };
    }
    let stderr = sandbox.captured_stderr();
    let with_output = |message: String| {
        if stderr.is_empty() {
            message
        } else {
            format!("{message}; the plugin wrote: {stderr}")
        }
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout {
            deadline_ms: limits.deadline_ms,
        },
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(Trap::UnreachableCodeReached) => PluginError::Crashed {
            message: with_output(sandbox.scrub(&format!("{error}"))),
        },
        Some(trap) => PluginError::Trapped {
            message: with_output(format!("{trap}")),
        },
        None => PluginError::Trapped {
            message: with_output(sandbox.scrub(&format!("{error:#}"))),
        },
    }
}
