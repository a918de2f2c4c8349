//! `rapport.toml`: reading it, checking it, and binding its connectors to plugins.
//!
//! Every problem is reported as `file:line:column: sentence saying what to fix`, and
//! all problems found are reported together, so an operator fixes a file in one pass.
//! Checking happens in two steps: [`Config::parse`] checks the file on its own (syntax,
//! unknown keys, types, schedules, duplicate ids, secrets' environment variables,
//! plugin files present); [`Config::bind_connectors`] loads each enabled plugin and
//! checks the connector against what the plugin declares (settings, secrets, hosts).

use crate::listener::HttpTuning;
use rapport_core::account::Domain;
use rapport_core::sharing::Sharing;
use rapport_plugin_host::{
    CallLimits, Grants, HostConfig, HostPattern, Plugin, PluginError, PluginHost, TokenSource,
};
use rapport_sync::{ConnectorSpec, EngineConfig, RetryPolicy, Schedule};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

mod sign_in;
pub(crate) use sign_in::secure_or_loopback;
pub use sign_in::{OidcSignInConfig, SIGN_IN_CALLBACK_PATH};

/// Environment variables that override the file, for deployments.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("RAPPORT_DATABASE", "server.database"),
    ("RAPPORT_LISTEN", "server.listen"),
    ("RAPPORT_NODE_ID", "server.node_id"),
];

/// The setting every connector receives with its `backfill_start`, as RFC 3339.
pub const BACKFILL_SETTING: &str = "backfill_start";

/// The default database: a SQLite file next to the configuration.
pub const DEFAULT_DATABASE: &str = "sqlite://rapport.db";
/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default cap on a webhook body.
pub const DEFAULT_WEBHOOK_BYTES_MAX: usize = 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    matching: RawMatching,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default, rename = "connector")]
    connectors: Vec<RawConnector>,
    #[serde(default, rename = "sign_in")]
    sign_ins: Vec<sign_in::RawSignIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    database: Option<Spanned<String>>,
    node_id: Option<Spanned<String>>,
    webhook_body_bytes_max: Option<Spanned<i64>>,
    plugin_cache_dir: Option<Spanned<String>>,
    header_read_timeout: Option<Spanned<String>>,
    request_body_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    connections_max: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    lease_ttl: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    retry_base: Option<Spanned<String>>,
    retry_cap: Option<Spanned<String>>,
    pages_per_run_max: Option<Spanned<i64>>,
    runs_max: Option<Spanned<i64>>,
    plugin_failures_max: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    calls_max: Option<Spanned<i64>>,
    connector_calls_max: Option<Spanned<i64>>,
    memory_bytes_max: Option<Spanned<i64>>,
    call_memory_bytes_max: Option<Spanned<i64>>,
    call_deadline: Option<Spanned<String>>,
    webhook_wait: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatching {
    #[serde(default)]
    ignore_domains: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnector {
    id: Spanned<String>,
    plugin: Spanned<String>,
    #[serde(default)]
    schedule: Option<Spanned<String>>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    backfill_start: Option<Spanned<toml::value::Datetime>>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    allow_private_networks: bool,
    #[serde(default)]
    settings: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    secrets: BTreeMap<String, Spanned<RawSecret>>,
    /// `org` (one connection, the default) or `person` (each staff member their own).
    #[serde(default)]
    scope: Option<Spanned<String>>,
    /// The client registered at the provider, for a plugin that declares OAuth 2.0.
    #[serde(default)]
    oauth: Option<Spanned<RawOAuth>>,
    /// For `scope = "person"`: how widely each person's captured events are shared.
    #[serde(default)]
    sharing: Option<Spanned<String>>,
    /// For `scope = "person"`: whether each person may choose their own level.
    #[serde(default)]
    sharing_override: Option<Spanned<bool>>,
}

/// `oauth = { client_id = "...", client_secret = { env = "..." }, redirect_uri = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOAuth {
    client_id: String,
    #[serde(default)]
    client_secret: Option<RawSecret>,
    redirect_uri: String,
}

fn enabled_by_default() -> bool {
    true
}

/// `{ env = "NAME" }` or `{ file = "path" }`: exactly one of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    #[serde(default)]
    env: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// The database URL (a relative SQLite path is resolved against the config file's
    /// directory).
    pub database: String,
    /// This node's id in leases; generated per process when unset.
    pub node_id: Option<String>,
    /// Most bytes a webhook body may have.
    pub webhook_body_bytes_max: usize,
    /// How connections are bounded: timeouts for slow clients, and how many at once.
    pub http: HttpTuning,
    /// Where compiled plugins are cached.
    pub plugin_cache_dir: PathBuf,
    /// Domains never matched on (beyond the built-in free-mail list).
    pub ignore_domains: Vec<Domain>,
    /// How the sync engine runs (leases, polling, retries).
    pub sync: SyncTuning,
    /// How the plugin host shares itself between connectors.
    pub plugins: PluginTuning,
    /// The connectors, in file order.
    pub connectors: Vec<ConnectorConfig>,
    /// The key ring secrets at rest are sealed with (`RAPPORT_SECRET_KEY` or
    /// `RAPPORT_SECRET_KEY_FILE`), if configured.
    pub secret_keys: Option<rapport_core::secret::KeyRing>,
    /// OpenID Connect providers staff may sign in with (`[[sign_in]]`), in file order.
    pub sign_ins: Vec<OidcSignInConfig>,
    source: String,
}

/// The `[sync]` table: how the engine shares and retries work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncTuning {
    /// How long a lease lasts without a heartbeat: how soon another node takes over a
    /// dead node's connector.
    pub lease_ttl: std::time::Duration,
    /// How often a node looks for due connectors and run requests.
    pub poll_interval: std::time::Duration,
    /// Retry backoff for transient failures.
    pub retry: RetryPolicy,
    /// Most pages one run commits before yielding.
    pub pages_per_run_max: u32,
    /// Most connectors one node syncs at once.
    pub runs_max: usize,
}

impl Default for SyncTuning {
    fn default() -> Self {
        let engine = EngineConfig::default();
        SyncTuning {
            lease_ttl: engine.lease_ttl,
            poll_interval: engine.poll_interval,
            retry: engine.retry,
            pages_per_run_max: engine.pages_per_run_max,
            runs_max: engine.runs_max,
        }
    }
}

impl SyncTuning {
    /// How long PostgreSQL may leave a transaction idle before ending its session: half
    /// the lease's lifetime (at least a second, at most 30 s), so a node frozen inside
    /// a page commit releases its connector's row in time for another node to take
    /// the connector over when the lease lapses.
    pub fn idle_in_transaction_timeout(&self) -> std::time::Duration {
        (self.lease_ttl / 2).clamp(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(30),
        )
    }

    /// The engine configuration for a node called `node_id` (generated when `None`).
    pub fn engine_config(&self, node_id: Option<&str>) -> EngineConfig {
        EngineConfig {
            node_id: node_id.map_or_else(rapport_sync::default_node_id, str::to_owned),
            lease_ttl: self.lease_ttl,
            poll_interval: self.poll_interval,
            retry: self.retry,
            pages_per_run_max: self.pages_per_run_max,
            runs_max: self.runs_max,
        }
    }
}

/// The `[plugins]` table: how many calls run at once, how much memory they share, and
/// what one connector may take of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginTuning {
    /// Most plugin calls running at once on this node, across every connector.
    pub calls_max: u32,
    /// Most calls of one connector running at once (its share under a flood).
    pub connector_calls_max: u32,
    /// Most memory all running calls together may use, in bytes.
    pub memory_bytes_max: usize,
    /// Most memory one call may use, in bytes.
    pub call_memory_bytes_max: usize,
    /// Longest one call may run.
    pub call_deadline: std::time::Duration,
    /// Longest a webhook delivery waits for its connector's call slot before 503.
    pub webhook_wait: std::time::Duration,
}

impl Default for PluginTuning {
    fn default() -> Self {
        let host = HostConfig::default();
        PluginTuning {
            calls_max: host.concurrent_calls_max,
            connector_calls_max: host.connector_calls_max,
            memory_bytes_max: host.memory_bytes_max,
            call_memory_bytes_max: host.limits.memory_bytes_max,
            call_deadline: std::time::Duration::from_millis(host.limits.deadline_ms),
            webhook_wait: std::time::Duration::from_millis(host.webhook_wait_ms),
        }
    }
}

impl PluginTuning {
    /// The plugin host's configuration, caching compiled plugins in `cache_dir`.
    pub fn host_config(&self, cache_dir: Option<PathBuf>) -> HostConfig {
        HostConfig {
            cache_dir,
            pooling: true,
            concurrent_calls_max: self.calls_max,
            connector_calls_max: self.connector_calls_max,
            memory_bytes_max: self.memory_bytes_max,
            webhook_wait_ms: u64::try_from(self.webhook_wait.as_millis()).unwrap_or(u64::MAX),
            limits: CallLimits {
                memory_bytes_max: self.call_memory_bytes_max,
                deadline_ms: u64::try_from(self.call_deadline.as_millis()).unwrap_or(u64::MAX),
                ..CallLimits::default()
            },
        }
    }
}

/// A whole number of seconds as a person writes it: `0s`, `60s`.
fn seconds(duration: std::time::Duration) -> String {
    format!("{}s", duration.as_secs())
}

/// Reads the duration `[table] key` into `target`, if it is set and within `range`;
/// otherwise says what is wrong with it.
fn duration_setting(
    problems: &mut Problems<'_>,
    table: &str,
    value: &Option<Spanned<String>>,
    key: &str,
    range: std::ops::RangeInclusive<std::time::Duration>,
    target: &mut std::time::Duration,
) {
    let Some(value) = value else { return };
    match rapport_sync::parse_duration(value.get_ref()) {
        Ok(parsed) if range.contains(&parsed) => *target = parsed,
        Ok(_) => problems.add(
            &value.span(),
            format!(
                "[{table}] {key} must be between {} and {}",
                seconds(*range.start()),
                seconds(*range.end())
            ),
        ),
        Err(reason) => problems.add(&value.span(), format!("[{table}] {key}: {reason}")),
    }
}

fn check_http(raw: &RawServer, problems: &mut Problems<'_>) -> HttpTuning {
    let mut tuning = HttpTuning::default();
    let mut duration = |value: &Option<Spanned<String>>,
                        key: &str,
                        range: std::ops::RangeInclusive<std::time::Duration>,
                        target: &mut std::time::Duration| {
        duration_setting(problems, "server", value, key, range, target);
    };
    let second = std::time::Duration::from_secs(1);
    duration(
        &raw.header_read_timeout,
        "header_read_timeout",
        second..=std::time::Duration::from_secs(300),
        &mut tuning.header_read_timeout,
    );
    duration(
        &raw.request_body_timeout,
        "request_body_timeout",
        second..=std::time::Duration::from_secs(3600),
        &mut tuning.request_body_timeout,
    );
    duration(
        &raw.idle_timeout,
        "idle_timeout",
        second..=std::time::Duration::from_secs(3600),
        &mut tuning.idle_timeout,
    );
    if let Some(value) = &raw.connections_max {
        match usize::try_from(*value.get_ref()) {
            Ok(max) if (1..=1_000_000).contains(&max) => tuning.connections_max = max,
            _ => problems.add(
                &value.span(),
                "[server] connections_max must be a whole number from 1 to 1000000",
            ),
        }
    }
    tuning
}

fn check_plugins(raw: &RawPlugins, problems: &mut Problems<'_>) -> PluginTuning {
    let mut tuning = PluginTuning::default();
    let mut number = |value: &Option<Spanned<i64>>, key: &str, min: i64, max: i64| {
        let value = value.as_ref()?;
        if (min..=max).contains(value.get_ref()) {
            Some(*value.get_ref())
        } else {
            problems.add(
                &value.span(),
                format!("[plugins] {key} must be a whole number from {min} to {max}"),
            );
            None
        }
    };
    const MIB: i64 = 1024 * 1024;
    if let Some(calls) = number(&raw.calls_max, "calls_max", 1, 1024) {
        tuning.calls_max = calls as u32;
    }
    if let Some(calls) = number(&raw.connector_calls_max, "connector_calls_max", 1, 1024) {
        tuning.connector_calls_max = calls as u32;
    }
    if let Some(bytes) = number(
        &raw.memory_bytes_max,
        "memory_bytes_max",
        64 * MIB,
        64 * 1024 * MIB,
    ) {
        tuning.memory_bytes_max = bytes as usize;
    }
    if let Some(bytes) = number(
        &raw.call_memory_bytes_max,
        "call_memory_bytes_max",
        4 * MIB,
        4 * 1024 * MIB,
    ) {
        tuning.call_memory_bytes_max = bytes as usize;
    }
    let mut duration = |value: &Option<Spanned<String>>,
                        key: &str,
                        range: std::ops::RangeInclusive<std::time::Duration>,
                        target: &mut std::time::Duration| {
        duration_setting(problems, "plugins", value, key, range, target);
    };
    duration(
        &raw.call_deadline,
        "call_deadline",
        std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(600),
        &mut tuning.call_deadline,
    );
    duration(
        &raw.webhook_wait,
        "webhook_wait",
        std::time::Duration::ZERO..=std::time::Duration::from_secs(60),
        &mut tuning.webhook_wait,
    );
    if tuning.connector_calls_max > tuning.calls_max
        && let Some(value) = &raw.connector_calls_max
    {
        problems.add(
            &value.span(),
            "[plugins] connector_calls_max must not exceed calls_max",
        );
    }
    if tuning.call_memory_bytes_max > tuning.memory_bytes_max
        && let Some(value) = &raw.call_memory_bytes_max
    {
        problems.add(
            &value.span(),
            "[plugins] call_memory_bytes_max must not exceed memory_bytes_max, the budget all calls share",
        );
    }
    tuning
}

fn check_sync(raw: &RawSync, problems: &mut Problems<'_>) -> SyncTuning {
    let mut tuning = SyncTuning::default();
    let mut duration = |value: &Option<Spanned<String>>,
                        key: &str,
                        range: std::ops::RangeInclusive<std::time::Duration>,
                        target: &mut std::time::Duration| {
        let Some(value) = value else { return };
        match rapport_sync::parse_duration(value.get_ref()) {
            Ok(parsed) if range.contains(&parsed) => *target = parsed,
            Ok(_) => problems.add(
                &value.span(),
                format!(
                    "[sync] {key} must be between {:?} and {:?}",
                    range.start(),
                    range.end()
                ),
            ),
            Err(reason) => problems.add(&value.span(), format!("[sync] {key}: {reason}")),
        }
    };
    let second = std::time::Duration::from_secs(1);
    let hour = std::time::Duration::from_secs(3_600);
    duration(
        &raw.lease_ttl,
        "lease_ttl",
        second..=hour,
        &mut tuning.lease_ttl,
    );
    duration(
        &raw.poll_interval,
        "poll_interval",
        std::time::Duration::from_millis(10)..=std::time::Duration::from_secs(600),
        &mut tuning.poll_interval,
    );
    duration(
        &raw.retry_base,
        "retry_base",
        std::time::Duration::from_millis(100)..=hour,
        &mut tuning.retry.base,
    );
    duration(
        &raw.retry_cap,
        "retry_cap",
        second..=hour * 24,
        &mut tuning.retry.cap,
    );
    if tuning.retry.cap < tuning.retry.base
        && let Some(cap) = &raw.retry_cap
    {
        problems.add(
            &cap.span(),
            "[sync] retry_cap must not be shorter than retry_base",
        );
    }
    if let Some(pages) = &raw.pages_per_run_max {
        match u32::try_from(*pages.get_ref()) {
            Ok(pages) if pages >= 1 => tuning.pages_per_run_max = pages,
            _ => problems.add(
                &pages.span(),
                "[sync] pages_per_run_max must be a whole number from 1",
            ),
        }
    }
    if let Some(runs) = &raw.runs_max {
        match usize::try_from(*runs.get_ref()) {
            Ok(runs) if (1..=1024).contains(&runs) => tuning.runs_max = runs,
            _ => problems.add(
                &runs.span(),
                "[sync] runs_max must be a whole number from 1 to 1024",
            ),
        }
    }
    if let Some(failures) = &raw.plugin_failures_max {
        match u32::try_from(*failures.get_ref()) {
            Ok(failures) if (1..=100).contains(&failures) => {
                tuning.retry.plugin_failures_max = failures
            }
            _ => problems.add(
                &failures.span(),
                "[sync] plugin_failures_max must be a whole number from 1 to 100",
            ),
        }
    }
    tuning
}

/// Where a deployment keeps its data and serves: what [`Config::essentials`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Essentials {
    /// The database URL (a relative SQLite path resolved against the file).
    pub database: String,
    /// Where the server listens.
    pub listen: SocketAddr,
}

/// One `[[connector]]` entry, checked.
#[derive(Clone)]
pub struct ConnectorConfig {
    /// Its id (also its webhook path: `/hooks/{id}`).
    pub id: String,
    /// Where its plugin comes from.
    pub plugin: PluginSource,
    /// When it runs.
    pub schedule: Schedule,
    /// Whether it runs.
    pub enabled: bool,
    /// Settings passed to the plugin (a `backfill_start` included when configured).
    pub settings: BTreeMap<String, String>,
    /// Secrets passed to the plugin, read from the environment.
    pub secrets: BTreeMap<String, String>,
    /// Hosts it may reach.
    pub allowed_hosts: Vec<String>,
    /// Whether it may reach private-network addresses.
    pub allow_private_networks: bool,
    /// Whose connections it runs with: the organisation's one, or each person's own.
    pub scope: rapport_plugin_host::ConnectionScope,
    /// The OAuth 2.0 client registered at the provider, when its plugin declares OAuth.
    pub oauth: Option<OAuthRegistration>,
    /// For a person-scoped connector: how widely what each person's connection
    /// captures is shared (`rapport_core::sharing`). Default: metadata only.
    pub sharing: Sharing,
    /// For a person-scoped connector: whether each person may choose another level for
    /// their own connection.
    pub sharing_override: bool,
    spans: ConnectorSpans,
}

/// The OAuth 2.0 client this deployment registered at a connector's provider.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthRegistration {
    /// The client id.
    pub client_id: String,
    /// The client secret (none for a public client).
    pub client_secret: Option<String>,
    /// Where the provider sends people back: this deployment's `/connections/callback`.
    pub redirect_uri: String,
}

impl fmt::Debug for OAuthRegistration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthRegistration")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .finish()
    }
}

/// The path of the OAuth callback every `redirect_uri` must name.
pub const OAUTH_CALLBACK_PATH: &str = "/connections/callback";

impl fmt::Debug for ConnectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectorConfig")
            .field("id", &self.id)
            .field("plugin", &self.plugin)
            .field("schedule", &self.schedule)
            .field("enabled", &self.enabled)
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct ConnectorSpans {
    id: Range<usize>,
    oauth: Option<Range<usize>>,
    plugin: Range<usize>,
    allowed_hosts: Vec<Range<usize>>,
    settings: BTreeMap<String, Range<usize>>,
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// Its problems, in file order (at least one).
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, problem) in self.problems.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                problem.line,
                problem.column,
                problem.message
            )?;
        }
        Ok(())
    }
}

/// Collects problems with their positions.
struct Problems<'a> {
    source: &'a str,
    found: Vec<(usize, Problem)>,
}

impl<'a> Problems<'a> {
    fn new(source: &'a str) -> Self {
        Problems {
            source,
            found: Vec::new(),
        }
    }

    fn add(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let (line, column) = line_column(self.source, span.start);
        self.found.push((
            span.start,
            Problem {
                line,
                column,
                message: message.into(),
            },
        ));
    }

    fn finish(mut self, path: &Path) -> Result<(), ConfigError> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by_key(|(offset, _)| *offset);
        Err(ConfigError {
            path: path.to_path_buf(),
            problems: self.found.into_iter().map(|(_, problem)| problem).collect(),
        })
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn read_source(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|error| ConfigError {
        path: path.to_path_buf(),
        problems: vec![Problem {
            line: 1,
            column: 1,
            message: format!(
                "cannot read the configuration: {error}; pass the right file with --config, or copy rapport.example.toml"
            ),
        }],
    })
}

fn parse_raw(source: &str, path: &Path) -> Result<RawConfig, ConfigError> {
    toml::from_str(source).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        let mut problems = Problems::new(source);
        problems.add(&span, explain_toml_error(error.message()));
        problems.finish(path).expect_err("one problem was added")
    })
}

/// The directory relative paths resolve against: the file's, made absolute so a
/// process that changes directory (and wasmtime's cache, which insists) sees the same
/// files.
fn base_dir(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(parent).unwrap_or_else(|_| parent.to_path_buf())
}

/// The listen address: `RAPPORT_LISTEN`, else the file's, else the default.
fn check_listen(
    server: &RawServer,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems<'_>,
) -> SocketAddr {
    let listen = env("RAPPORT_LISTEN")
        .or_else(|| {
            server
                .listen
                .as_ref()
                .map(|listen| listen.get_ref().clone())
        })
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen_span = server.listen.as_ref().map_or(0..0, Spanned::span);
    listen.parse::<SocketAddr>().unwrap_or_else(|_| {
        problems.add(
            &listen_span,
            format!(
                "listen address `{listen}` is not an IP address and port, e.g. `127.0.0.1:8080` or `0.0.0.0:8080`"
            ),
        );
        DEFAULT_LISTEN.parse().expect("valid default")
    })
}

/// The database URL: `RAPPORT_DATABASE`, else the file's, else the default; a
/// relative SQLite path resolved against `base`.
fn check_database(
    server: &RawServer,
    env: &dyn Fn(&str) -> Option<String>,
    base: &Path,
    problems: &mut Problems<'_>,
) -> String {
    let database = env("RAPPORT_DATABASE")
        .or_else(|| server.database.as_ref().map(|d| d.get_ref().clone()))
        .unwrap_or_else(|| DEFAULT_DATABASE.into());
    if !(database.starts_with("sqlite:")
        || database.starts_with("postgres:")
        || database.starts_with("postgresql:"))
    {
        let span = server.database.as_ref().map_or(0..0, Spanned::span);
        problems.add(
            &span,
            format!(
                "database `{database}` must start with `sqlite:` (e.g. `sqlite://rapport.db`) or `postgres://`"
            ),
        );
    }
    resolve_sqlite(&database, base)
}

fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |at| at + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl Config {
    /// Reads and checks `path`, with overrides and secrets from the process
    /// environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let source = read_source(path)?;
        Config::parse(&source, path, &|name| std::env::var(name).ok())
    }

    /// Just where `path`'s deployment keeps its data and serves (after
    /// `RAPPORT_DATABASE` and `RAPPORT_LISTEN`), for commands that need nothing else:
    /// they work without the connectors' secrets in the environment.
    pub fn essentials(path: &Path) -> Result<Essentials, ConfigError> {
        let source = read_source(path)?;
        let raw = parse_raw(&source, path)?;
        let base_dir = base_dir(path);
        let mut problems = Problems::new(&source);
        let env = |name: &str| std::env::var(name).ok();
        let database = check_database(&raw.server, &env, &base_dir, &mut problems);
        let listen = check_listen(&raw.server, &env, &mut problems);
        problems.finish(path)?;
        Ok(Essentials { database, listen })
    }

    /// Checks `source` (read from `path`, against which relative paths resolve), with
    /// environment variables looked up through `env`.
    pub fn parse(
        source: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw = parse_raw(source, path)?;
        let base_dir = base_dir(path);
        let base = base_dir.as_path();
        let mut problems = Problems::new(source);

        let listen = check_listen(&raw.server, env, &mut problems);

        let database = check_database(&raw.server, env, base, &mut problems);

        let node_id = env("RAPPORT_NODE_ID")
            .or_else(|| raw.server.node_id.as_ref().map(|n| n.get_ref().clone()));

        let webhook_body_bytes_max = match &raw.server.webhook_body_bytes_max {
            None => DEFAULT_WEBHOOK_BYTES_MAX,
            Some(bytes) => match usize::try_from(*bytes.get_ref()) {
                Ok(bytes) if (1_024..=64 * 1024 * 1024).contains(&bytes) => bytes,
                _ => {
                    problems.add(
                        &bytes.span(),
                        "webhook_body_bytes_max must be between 1024 and 67108864 (64 MiB)",
                    );
                    DEFAULT_WEBHOOK_BYTES_MAX
                }
            },
        };
        let plugin_cache_dir = raw.server.plugin_cache_dir.as_ref().map_or_else(
            || base.join(".rapport/plugin-cache"),
            |dir| base.join(dir.get_ref()),
        );

        let mut ignore_domains = Vec::new();
        for domain in &raw.matching.ignore_domains {
            match Domain::parse(domain.get_ref()) {
                Ok(parsed) => ignore_domains.push(parsed),
                Err(error) => problems.add(&domain.span(), format!("ignore_domains: {error}")),
            }
        }

        let http = check_http(&raw.server, &mut problems);
        let sync = check_sync(&raw.sync, &mut problems);
        let plugins = check_plugins(&raw.plugins, &mut problems);

        let secret_keys = crate::secrets::key_ring_from(env).unwrap_or_else(|message| {
            problems.add(&(0..0), message);
            None
        });

        let mut connectors = Vec::new();
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for raw in raw.connectors {
            if let Some(connector) = check_connector(raw, base, env, &mut seen, &mut problems) {
                connectors.push(connector);
            }
        }
        let sign_ins = sign_in::check_sign_ins(raw.sign_ins, base, env, &mut problems);
        problems.finish(path)?;
        Ok(Config {
            path: path.to_path_buf(),
            listen,
            database,
            node_id,
            webhook_body_bytes_max,
            http,
            plugin_cache_dir,
            ignore_domains,
            sync,
            plugins,
            connectors,
            secret_keys,
            sign_ins,
            source: source.to_owned(),
        })
    }

    /// Loads each enabled connector's plugin and checks the connector against what the
    /// plugin declares; returns the engine's connector specs. Disabled connectors are
    /// still listed (they show as disabled) but their plugins are loaded too, so a
    /// broken entry is found before someone enables it.
    pub async fn bind_connectors(
        &self,
        host: &PluginHost,
    ) -> Result<Vec<ConnectorSpec>, ConfigError> {
        let mut problems = Problems::new(&self.source);
        let mut specs = Vec::new();
        for connector in &self.connectors {
            let plugin = match connector.plugin.load(host).await {
                Ok(plugin) => plugin,
                Err(error) => {
                    problems.add(&connector.spans.plugin, connector.plugin.explain(&error));
                    continue;
                }
            };
            if !check_against_manifest(connector, &plugin, &mut problems) {
                continue;
            }
            // An OAuth connector runs on a connection's tokens, which need the store: it
            // is bound here unscheduled, and `Server::start` gives an organisation-
            // scoped one its tokens, and makes a person-scoped one the template of each
            // person's connection (the engine runs those, not the template).
            let enabled = connector.enabled && connector.oauth.is_none();
            match plugin.connector(connector.grants(None)) {
                Ok(bound) => specs.push(ConnectorSpec {
                    connector: bound,
                    schedule: connector.schedule.clone(),
                    enabled,
                    fingerprint: connector.fingerprint(&plugin),
                }),
                Err(error) => problems.add(
                    &connector.spans.id,
                    format!("connector `{}` cannot be set up: {error}", connector.id),
                ),
            }
        }
        problems.finish(&self.path)?;
        Ok(specs)
    }
}

impl ConnectorConfig {
    /// What its plugin is given: its settings, secrets and network grants, and — for an
    /// OAuth connector on the organisation's connection — the connection's `tokens`.
    pub fn grants(&self, tokens: Option<Arc<dyn TokenSource>>) -> Grants {
        let connection = tokens.as_ref().map(|_| rapport_plugin_host::Connection {
            id: format!("{}/org", self.id),
            scope: rapport_plugin_host::ConnectionScope::Org,
            owner_email: None,
            provider_account: None,
            sharing: None,
        });
        self.grants_on(tokens, connection)
    }

    /// What its plugin is given when it syncs one person's `connection` with that
    /// connection's `tokens`: the connection's id is the connector id it runs as, so
    /// its events, checkpoint and status are that connection's own.
    pub fn person_grants(
        &self,
        tokens: Arc<dyn TokenSource>,
        connection: rapport_plugin_host::Connection,
    ) -> Grants {
        let unit = connection.id.clone();
        Grants {
            connector_id: unit,
            ..self.grants_on(Some(tokens), Some(connection))
        }
    }

    fn grants_on(
        &self,
        tokens: Option<Arc<dyn TokenSource>>,
        connection: Option<rapport_plugin_host::Connection>,
    ) -> Grants {
        Grants {
            connector_id: self.id.clone(),
            settings: self.settings.clone(),
            secrets: self.secrets.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            allow_private_networks: self.allow_private_networks,
            connection,
            tokens,
        }
    }

    /// A digest of everything that configures this connector, plugin build included:
    /// when it changes, a connector stopped by an auth or config failure runs again.
    fn fingerprint(&self, plugin: &Plugin) -> String {
        let mut hash = Fnv::default();
        hash.write(plugin.name().as_bytes());
        hash.write(plugin.manifest().version.as_bytes());
        match &self.plugin {
            PluginSource::File(path) => {
                if let Ok(bytes) = std::fs::read(path) {
                    hash.write(&bytes);
                }
            }
            PluginSource::Builtin(builtin) => hash.write(builtin.wasm),
        }
        for (key, value) in self.settings.iter().chain(&self.secrets) {
            hash.write(key.as_bytes());
            hash.write(value.as_bytes());
        }
        for host in &self.allowed_hosts {
            hash.write(host.as_bytes());
        }
        hash.write(&[u8::from(self.allow_private_networks)]);
        if let Some(oauth) = &self.oauth {
            hash.write(oauth.client_id.as_bytes());
            hash.write(oauth.redirect_uri.as_bytes());
        }
        format!("{:016x}", hash.0)
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`), which a
/// digest stored in the database needs.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes.iter().chain(&[0xff]) {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn check_connector(
    raw: RawConnector,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    seen: &mut BTreeMap<String, usize>,
    problems: &mut Problems<'_>,
) -> Option<ConnectorConfig> {
    let before = problems.found.len();
    let id = raw.id.get_ref().clone();
    let id_span = raw.id.span();
    let valid_id = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && id != rapport_core::timeline::INTERNAL_CONNECTOR;
    if !valid_id {
        problems.add(
            &id_span,
            format!(
                "connector id `{id}` must be 1 to 64 lower-case letters, digits, `-` or `_` (and not `rapport`, which rapport itself uses)"
            ),
        );
    } else if let Some(first) = seen.get(&id) {
        let (line, _) = line_column(problems.source, *first);
        problems.add(
            &id_span,
            format!(
                "connector id `{id}` is already used on line {line}; give each connector its own id"
            ),
        );
    } else {
        seen.insert(id.clone(), id_span.start);
    }

    let plugin = match rapport_connectors::resolve(raw.plugin.get_ref()) {
        Some(Ok(builtin)) => PluginSource::Builtin(builtin),
        Some(Err(unknown)) => {
            problems.add(&raw.plugin.span(), unknown.to_string());
            PluginSource::File(PathBuf::from(raw.plugin.get_ref()))
        }
        None => {
            let file = base.join(raw.plugin.get_ref());
            if !file.is_file() {
                problems.add(
                    &raw.plugin.span(),
                    format!(
                        "plugin file {} does not exist; build it (e.g. `cargo build --release --target wasm32-wasip2`) or fix the path, which is relative to this file; or name a connector rapport ships, e.g. `builtin:billing-stripe` (`rapport plugin list`)",
                        file.display()
                    ),
                );
            }
            PluginSource::File(file)
        }
    };

    let schedule = match &raw.schedule {
        None => "every 15m".parse().expect("valid default"),
        Some(spelled) => match spelled.get_ref().parse::<Schedule>() {
            Ok(schedule) => schedule,
            Err(error) => {
                problems.add(&spelled.span(), error.to_string());
                "every 15m".parse().expect("valid default")
            }
        },
    };

    let mut settings = BTreeMap::new();
    let mut setting_spans = BTreeMap::new();
    for (key, value) in &raw.settings {
        let text = match value.get_ref() {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(number) => number.to_string(),
            toml::Value::Float(number) => number.to_string(),
            toml::Value::Boolean(flag) => flag.to_string(),
            toml::Value::Datetime(at) => at.to_string(),
            _ => {
                problems.add(
                    &value.span(),
                    format!("setting `{key}` must be a string, number, boolean or date, not a table or array"),
                );
                continue;
            }
        };
        if key == BACKFILL_SETTING {
            problems.add(
                &value.span(),
                "`backfill_start` is set on the connector itself (`backfill_start = 2025-01-01`), not under settings",
            );
        }
        settings.insert(key.clone(), text);
        setting_spans.insert(key.clone(), value.span());
    }
    if let Some(backfill) = &raw.backfill_start {
        match backfill_rfc3339(backfill.get_ref()) {
            Some(at) => {
                settings.insert(BACKFILL_SETTING.into(), at);
            }
            None => problems.add(
                &backfill.span(),
                "backfill_start must be a date (`2025-01-01`) or a date-time with offset (`2025-01-01T00:00:00Z`)",
            ),
        }
    }

    let mut secrets = BTreeMap::new();
    for (key, secret) in &raw.secrets {
        let read = match (&secret.get_ref().env, &secret.get_ref().file) {
            (Some(variable), None) => match env(variable) {
                Some(value) if !value.is_empty() => Ok(value),
                _ => Err(format!(
                    "secret `{key}` reads the environment variable `{variable}`, which is not set; export it before starting rapport, or disable this connector"
                )),
            },
            (None, Some(file)) => read_secret_file(&base.join(file))
                .map_err(|reason| format!("secret `{key}` reads the file {file}, which {reason}; write the secret there (relative paths are relative to this file), or disable this connector")),
            // Malformed whether or not the connector is enabled.
            _ => {
                problems.add(
                    &secret.span(),
                    format!(
                        "secret `{key}` must name exactly one source: `{{ env = \"VARIABLE\" }}` or `{{ file = \"path\" }}`"
                    ),
                );
                continue;
            }
        };
        match read {
            Ok(value) => {
                secrets.insert(key.clone(), value);
            }
            // A disabled connector needs its secrets only once someone enables it.
            Err(_) if !raw.enabled => {}
            Err(problem) => problems.add(&secret.span(), problem),
        }
    }

    let scope = match raw
        .scope
        .as_ref()
        .map(|scope| (scope.get_ref().as_str(), scope.span()))
    {
        None | Some(("org", _)) => rapport_plugin_host::ConnectionScope::Org,
        Some(("person", _)) => rapport_plugin_host::ConnectionScope::Person,
        Some((other, span)) => {
            problems.add(
                &span,
                format!("scope `{other}` must be `org` (one connection for the organisation) or `person` (each staff member connects their own)"),
            );
            rapport_plugin_host::ConnectionScope::Org
        }
    };
    let mut sharing = Sharing::Metadata;
    if let Some(level) = &raw.sharing {
        match Sharing::parse(level.get_ref()) {
            Some(parsed) => sharing = parsed,
            None => problems.add(
                &level.span(),
                format!(
                    "sharing `{}` must be `shared` (everyone who sees the account sees what a person's connection captures), `metadata` (others see who, the subject and when) or `private` (only its owner and their management chain)",
                    level.get_ref()
                ),
            ),
        }
    }
    if scope != rapport_plugin_host::ConnectionScope::Person {
        let stray = raw
            .sharing
            .as_ref()
            .map(Spanned::span)
            .or_else(|| raw.sharing_override.as_ref().map(Spanned::span));
        if let Some(span) = stray {
            problems.add(
                &span,
                "sharing levels apply to what people's own connections capture: set them on a connector with scope = \"person\", or remove them",
            );
        }
    }
    let sharing_override = raw
        .sharing_override
        .as_ref()
        .is_some_and(|value| *value.get_ref());
    let oauth = raw.oauth.as_ref().map(|oauth| {
        let span = oauth.span();
        let raw_oauth = oauth.get_ref();
        if raw_oauth.client_id.trim().is_empty() {
            problems.add(&span, "oauth.client_id is empty: give the client id the provider issued");
        }
        let client_secret = client_secret(
            raw_oauth.client_secret.as_ref(),
            "oauth.client_secret",
            raw.enabled,
            base,
            env,
            &span,
            problems,
        );
        match url::Url::parse(&raw_oauth.redirect_uri) {
            Ok(parsed) if parsed.path() == OAUTH_CALLBACK_PATH && matches!(parsed.scheme(), "https" | "http") => {}
            _ => problems.add(
                &span,
                format!(
                    "oauth.redirect_uri `{}` must be this deployment's address followed by {OAUTH_CALLBACK_PATH} (e.g. https://rapport.example.com{OAUTH_CALLBACK_PATH}), registered as is at the provider",
                    raw_oauth.redirect_uri
                ),
            ),
        }
        OAuthRegistration {
            client_id: raw_oauth.client_id.clone(),
            client_secret,
            redirect_uri: raw_oauth.redirect_uri.clone(),
        }
    });

    let mut allowed_hosts = Vec::new();
    let mut host_spans = Vec::new();
    for host in &raw.allowed_hosts {
        let spelled = host.get_ref();
        if let Err(reason) = HostPattern::parse_grant(spelled) {
            problems.add(&host.span(), format!("allowed_hosts: {reason}"));
        }
        allowed_hosts.push(spelled.clone());
        host_spans.push(host.span());
    }

    (problems.found.len() == before).then(|| ConnectorConfig {
        id,
        plugin,
        schedule,
        enabled: raw.enabled,
        settings,
        secrets,
        allowed_hosts,
        allow_private_networks: raw.allow_private_networks,
        scope,
        oauth,
        sharing,
        sharing_override,
        spans: ConnectorSpans {
            id: id_span,
            oauth: raw.oauth.as_ref().map(|oauth| oauth.span()),
            plugin: raw.plugin.span(),
            allowed_hosts: host_spans,
            settings: setting_spans,
        },
    })
}

/// A client secret read from where `raw` says (`what` names the key in messages); a
/// problem when it cannot be read, unless its entry is disabled (`needed` false).
fn client_secret(
    raw: Option<&RawSecret>,
    what: &str,
    needed: bool,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    span: &Range<usize>,
    problems: &mut Problems<'_>,
) -> Option<String> {
    match raw? {
        RawSecret {
            env: Some(variable),
            file: None,
        } => match env(variable) {
            Some(value) if !value.is_empty() => Some(value),
            _ if !needed => None,
            _ => {
                problems.add(span, format!("{what} reads the environment variable `{variable}`, which is not set; export it before starting rapport"));
                None
            }
        },
        RawSecret {
            env: None,
            file: Some(file),
        } => match read_secret_file(&base.join(file)) {
            Ok(value) => Some(value),
            Err(_) if !needed => None,
            Err(reason) => {
                problems.add(
                    span,
                    format!("{what} reads the file {file}, which {reason}"),
                );
                None
            }
        },
        _ => {
            problems.add(span, format!("{what} must name exactly one source: `{{ env = \"VARIABLE\" }}` or `{{ file = \"path\" }}`"));
            None
        }
    }
}

/// A secret kept in a file (a Docker or Kubernetes secret, a systemd credential): its
/// contents without the line end editors add; an empty file is no secret.
fn read_secret_file(path: &Path) -> Result<String, String> {
    /// A secret is a key or a password; anything larger is the wrong file.
    const SECRET_FILE_BYTES_MAX: u64 = 64 * 1024;
    let size = std::fs::metadata(path)
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => "does not exist".to_owned(),
            _ => format!("cannot be read ({error})"),
        })?
        .len();
    if size > SECRET_FILE_BYTES_MAX {
        return Err(format!(
            "is {size} bytes, more than a secret ({SECRET_FILE_BYTES_MAX} at most)"
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot be read as UTF-8 text ({error})"))?;
    let value = text.strip_suffix('\n').unwrap_or(&text);
    let value = value.strip_suffix('\r').unwrap_or(value);
    if value.is_empty() {
        return Err("is empty".into());
    }
    Ok(value.to_owned())
}

/// Checks a connector against its plugin's manifest; false if anything is wrong.
/// A plugin that declares OAuth 2.0 needs the client this deployment registered at the
/// provider, and endpoints its settings fill in; `oauth` and `scope = "person"` make
/// sense only for such a plugin.
fn check_auth(connector: &ConnectorConfig, plugin: &Plugin, problems: &mut Problems<'_>) {
    let name = &plugin.manifest().name;
    let oauth_span = connector
        .spans
        .oauth
        .clone()
        .unwrap_or(connector.spans.id.clone());
    // A plugin whose OAuth is optional runs on its secrets unless a client is registered.
    let optional = matches!(&plugin.manifest().auth, rapport_plugin_host::Auth::OAuth2(oauth) if oauth.optional);
    match (plugin.oauth_endpoints(&connector.settings), &connector.oauth) {
        (_, None) if optional && connector.scope == rapport_plugin_host::ConnectionScope::Person => {
            problems.add(
                &connector.spans.id,
                format!(
                    "connector `{}` has scope = \"person\": each person connects their own account with OAuth 2.0, so register rapport as a client at the provider and add `oauth = {{ client_id = \"...\", client_secret = {{ env = \"...\" }}, redirect_uri = \"https://<this deployment>{OAUTH_CALLBACK_PATH}\" }}`",
                    connector.id
                ),
            );
        }
        (_, None) if optional => {}
        (Err(reason), _) => problems.add(&connector.spans.id, format!("connector `{}`: {reason}", connector.id)),
        (Ok(Some(_)), None) if connector.enabled => problems.add(
            &connector.spans.id,
            format!(
                "connector `{}`'s plugin `{name}` authenticates with OAuth 2.0: register rapport as a client at the provider and add `oauth = {{ client_id = \"...\", client_secret = {{ env = \"...\" }}, redirect_uri = \"https://<this deployment>{OAUTH_CALLBACK_PATH}\" }}`",
                connector.id
            ),
        ),
        (Ok(None), Some(_)) => problems.add(
            &oauth_span,
            format!("plugin `{name}` does not authenticate with OAuth 2.0, so `oauth` has nothing to configure: remove it"),
        ),
        _ => {}
    }
    if connector.scope == rapport_plugin_host::ConnectionScope::Person
        && !matches!(plugin.manifest().auth, rapport_plugin_host::Auth::OAuth2(_))
    {
        problems.add(
            &connector.spans.id,
            format!(
                "connector `{}` has scope = \"person\", but its plugin `{name}` has no per-person credentials (it does not authenticate with OAuth 2.0): remove the scope",
                connector.id
            ),
        );
    }
}

fn check_against_manifest(
    connector: &ConnectorConfig,
    plugin: &Plugin,
    problems: &mut Problems<'_>,
) -> bool {
    let before = problems.found.len();
    let manifest = plugin.manifest();
    let known: Vec<&str> = manifest
        .config_keys
        .iter()
        .map(|key| key.name.as_str())
        .collect();
    for key in &manifest.config_keys {
        let present = if key.secret {
            connector.secrets.contains_key(&key.name)
        } else {
            connector.settings.contains_key(&key.name)
        };
        if key.required && !present && connector.enabled {
            let table = if key.secret { "secrets" } else { "settings" };
            problems.add(
                &connector.spans.id,
                format!(
                    "connector `{}` needs {} `{}` ({}): add it under [connector.{table}]",
                    connector.id,
                    if key.secret { "secret" } else { "setting" },
                    key.name,
                    key.description
                ),
            );
        }
    }
    for (key, span) in &connector.spans.settings {
        let declared = manifest
            .config_keys
            .iter()
            .find(|declared| &declared.name == key);
        match declared {
            None => problems.add(
                span,
                format!(
                    "plugin `{}` has no setting `{key}`; it knows: {}",
                    manifest.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ),
            Some(declared) if declared.secret => problems.add(
                span,
                format!(
                    "`{key}` is a secret of plugin `{}`: move it to [connector.secrets] as `{key} = {{ env = \"...\" }}` so it stays out of this file",
                    manifest.name
                ),
            ),
            Some(_) => {}
        }
    }
    check_auth(connector, plugin, problems);
    // The same patterns, filled in from the same settings, as the host will use.
    let declared = match plugin.declared_hosts(&connector.settings) {
        Ok(declared) => declared,
        Err(reason) => {
            problems.add(
                &connector.spans.id,
                format!("connector `{}`: {reason}", connector.id),
            );
            return false;
        }
    };
    for (host, span) in connector
        .allowed_hosts
        .iter()
        .zip(&connector.spans.allowed_hosts)
    {
        let Ok(granted) = HostPattern::parse_grant(host) else {
            continue;
        };
        if !declared.iter().any(|pattern| pattern.covers(&granted)) {
            problems.add(
                span,
                format!(
                    "plugin `{}` does not ask to reach `{host}` (with these settings it declares: {}); a grant it does not need only widens what it could reach — remove it",
                    manifest.name,
                    if declared.is_empty() {
                        "no hosts".to_owned()
                    } else {
                        declared.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    }
                ),
            );
        }
    }
    problems.found.len() == before
}

fn backfill_rfc3339(at: &toml::value::Datetime) -> Option<String> {
    match (&at.date, &at.time, &at.offset) {
        (Some(date), None, None) => Some(format!("{date}T00:00:00Z")),
        (Some(_), Some(_), Some(_)) => chrono::DateTime::parse_from_rfc3339(&at.to_string())
            .ok()
            .map(|parsed| {
                parsed
                    .to_utc()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            }),
        _ => None,
    }
}

/// Turns a relative SQLite path into one relative to the config file's directory, so a
/// server started from anywhere opens the same file.
fn resolve_sqlite(url: &str, base: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, Some(query)),
        None => (rest, None),
    };
    if file.starts_with('/') || file.starts_with(':') || file.is_empty() {
        return url.to_owned();
    }
    let resolved = base.join(file);
    match query {
        Some(query) => format!("sqlite://{}?{query}", resolved.display()),
        None => format!("sqlite://{}", resolved.display()),
    }
}

/// Makes serde's and toml's messages read as instructions.
fn explain_toml_error(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return format!("unknown key {rest}; check the spelling against rapport.example.toml");
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("this entry needs the key {field}; see rapport.example.toml");
    }
    if message.starts_with("invalid type") {
        return format!("{message}; see rapport.example.toml for each key's type");
    }
    format!("{message}; this is not valid TOML at this point")
}

/// Where a connector's plugin comes from.
#[derive(Debug, Clone)]
pub enum PluginSource {
    /// A `.wasm` file, resolved against the configuration's directory.
    File(PathBuf),
    /// A connector that ships with rapport: `plugin = "builtin:<name>"`.
    Builtin(&'static rapport_connectors::Builtin),
}

impl PluginSource {
    /// Compiles (or takes from the cache) and checks the plugin.
    pub async fn load(&self, host: &PluginHost) -> Result<Plugin, PluginError> {
        match self {
            PluginSource::File(path) => host.load(path).await,
            PluginSource::Builtin(builtin) => {
                host.load_bytes(&builtin.reference(), builtin.wasm).await
            }
        }
    }

    /// A sentence for a configuration problem: what failed and what to do.
    fn explain(&self, error: &PluginError) -> String {
        let path = match self {
            PluginSource::File(path) => path,
            // A shipped connector that does not load is a broken build, not a mistake
            // in the file.
            PluginSource::Builtin(builtin) => {
                return format!(
                    "the built-in connector `{}` cannot be used by this build: {error}",
                    builtin.reference()
                );
            }
        };
        let shown = path.display();
        match error {
            PluginError::Read { .. } => format!("cannot read plugin {shown}: {error}"),
            PluginError::Compile { message, .. } => {
                let reason = if std::fs::read(path).is_ok_and(|bytes| !bytes.starts_with(b"\0asm"))
                {
                    "it is not WebAssembly at all".to_owned()
                } else {
                    message.lines().next().unwrap_or(message).to_owned()
                };
                format!(
                    "{shown} is not a WebAssembly component ({reason}); point `plugin` at a connector built with rapport-pdk for wasm32-wasip2"
                )
            }
            _ => format!("plugin {shown} cannot be used: {error}"),
        }
    }
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::File(path) => write!(f, "{}", path.display()),
            PluginSource::Builtin(builtin) => f.write_str(&builtin.reference()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let source = "a = 1\nbé = 2\n";
        assert_eq!(line_column(source, 0), (1, 1));
        assert_eq!(line_column(source, 6), (2, 1));
        assert_eq!(line_column(source, source.find('=').unwrap()), (1, 3));
        assert_eq!(line_column(source, source.rfind('=').unwrap()), (2, 4));
    }

    #[test]
    fn relative_sqlite_paths_follow_the_config_file() {
        let base = Path::new("/etc/rapport");
        assert_eq!(
            resolve_sqlite("sqlite://rapport.db", base),
            "sqlite:///etc/rapport/rapport.db"
        );
        assert_eq!(
            resolve_sqlite("sqlite:///var/lib/r.db", base),
            "sqlite:///var/lib/r.db"
        );
        assert_eq!(resolve_sqlite("sqlite::memory:", base), "sqlite::memory:");
        assert_eq!(
            resolve_sqlite("postgres://db/rapport", base),
            "postgres://db/rapport"
        );
    }
}
