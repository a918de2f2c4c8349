//! What the embedder configures: limits, grants and webhook requests.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// Limits applied to every call into a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLimits {
    /// Most linear memory one call may use, across its memories.
    pub memory_bytes_max: usize,
    /// Wall-clock deadline of one call.
    pub deadline_ms: u64,
    /// Most events one call may return.
    pub events_max: usize,
    /// Most bytes of text one call may return (titles, summaries, ids, attributes...).
    pub returned_bytes_max: usize,
    /// Most bytes of one HTTP response body.
    pub http_response_bytes_max: u64,
    /// Connect and first-byte timeout of one HTTP request.
    pub http_timeout_ms: u64,
    /// Most log lines one call may write (through the `log` import, stdout and
    /// stderr together); the rest are counted and dropped.
    pub log_lines_max: u32,
    /// Most bytes of log one call may write; the rest are counted and dropped.
    pub log_bytes_max: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            memory_bytes_max: 128 * 1024 * 1024,
            deadline_ms: 30_000,
            events_max: 10_000,
            returned_bytes_max: 32 * 1024 * 1024,
            http_response_bytes_max: 32 * 1024 * 1024,
            http_timeout_ms: 20_000,
            log_lines_max: 1_000,
            log_bytes_max: 256 * 1024,
        }
    }
}

/// How the host is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where compiled components are cached between runs; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling instance allocator (fast instantiation) rather than on-demand.
    pub pooling: bool,
    /// Most plugin calls running at once across every connector (pooling slots are
    /// sized from this). Calls beyond it wait for a slot.
    pub concurrent_calls_max: u32,
    /// Most calls of one connector running at once: a flood at one connector takes at
    /// most this share of the slots and of the memory budget.
    pub connector_calls_max: u32,
    /// Most linear memory all running calls together may use. A call that would grow
    /// past it fails with [`PluginError::MemoryBudgetExhausted`](crate::PluginError),
    /// which is retried like a passing failure.
    pub memory_bytes_max: usize,
    /// Longest a webhook delivery waits for its connector's call slot before it is
    /// refused with a retry hint ([`PluginError::Busy`](crate::PluginError)).
    pub webhook_wait_ms: u64,
    /// Limits for every call.
    pub limits: CallLimits,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            pooling: true,
            concurrent_calls_max: 32,
            connector_calls_max: 4,
            memory_bytes_max: 1024 * 1024 * 1024,
            webhook_wait_ms: 2_000,
            limits: CallLimits::default(),
        }
    }
}

/// What the operator gives one configured connector.
#[derive(Clone, Default)]
pub struct Grants {
    /// The connector id from the configuration (e.g. `stripe`), used for logs and as the
    /// events' connector.
    pub connector_id: String,
    /// Settings, passed to the plugin as they are.
    pub settings: BTreeMap<String, String>,
    /// Secrets, already resolved from the environment; passed to this plugin only.
    pub secrets: BTreeMap<String, String>,
    /// Hosts the operator allows: `host`, `host:port`, `host:*`. Intersected with what
    /// the plugin declares.
    pub allowed_hosts: Vec<String>,
    /// Allow private, loopback and link-local addresses (tests, on-premises servers).
    /// Cloud metadata addresses stay refused even then.
    pub allow_private_networks: bool,
    /// The connection the connector runs for (contract 0.2.0 and later hand it over).
    pub connection: Option<Connection>,
    /// Where its OAuth 2.0 access tokens come from, when it authenticates with OAuth.
    pub tokens: Option<Arc<dyn TokenSource>>,
}

impl fmt::Debug for Grants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grants")
            .field("connector_id", &self.connector_id)
            .field("settings", &self.settings)
            .field(
                "secrets",
                &self
                    .secrets
                    .keys()
                    .map(|key| (key, "<redacted>"))
                    .collect::<BTreeMap<_, _>>(),
            )
            .field("allowed_hosts", &self.allowed_hosts)
            .field("allow_private_networks", &self.allow_private_networks)
            .field("connection", &self.connection)
            .field("tokens", &self.tokens.as_ref().map(|_| "<token source>"))
            .finish()
    }
}

/// Whose credentials a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionScope {
    /// The organisation's one connection.
    Org,
    /// One staff member's own.
    Person,
}

/// The connection a connector runs for, as the embedder knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// The embedder's id for it.
    pub id: String,
    /// Whose it is.
    pub scope: ConnectionScope,
    /// For a person's connection: their email address.
    pub owner_email: Option<String>,
    /// The account at the provider the credentials belong to, when known.
    pub provider_account: Option<String>,
    /// For a person's connection: how widely its events are shared.
    pub sharing: Option<rapport_core::sharing::Sharing>,
}

/// An OAuth 2.0 access token. `Debug` never shows the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token itself.
    pub token: String,
    /// How it is presented ("Bearer").
    pub token_type: String,
    /// When it expires, in microseconds since the Unix epoch, if the provider said.
    pub expires_at_micros: Option<i64>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_at_micros", &self.expires_at_micros)
            .finish()
    }
}

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The grant is gone (revoked, `invalid_grant`, never completed): the connection's
    /// owner must connect again.
    #[error("the connection must be reconnected: {0}")]
    NeedsReconnect(String),
    /// The provider or the store could not be reached; worth retrying later.
    #[error("no access token right now: {0}")]
    Unavailable(String),
}

/// A future a [`TokenSource`] returns.
pub type TokenFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, TokenError>> + Send + 'a>>;

/// Where a connector's access tokens come from: the embedder keeps the grant (and the
/// refresh token, which never enters a sandbox) and refreshes it.
pub trait TokenSource: Send + Sync {
    /// A token valid for at least a minute, refreshed first when it is due.
    fn access_token(&self) -> TokenFuture<'_, AccessToken>;

    /// The source refused `token` (the connector failed with `auth` after using it):
    /// refresh, so the next [`access_token`](TokenSource::access_token) gives another
    /// one. A refresh the provider refuses is [`TokenError::NeedsReconnect`].
    fn refused<'a>(&'a self, token: &'a AccessToken) -> TokenFuture<'a, ()>;
}

/// A webhook delivery, as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookRequest {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Query string, without `?`.
    pub query: String,
    /// Headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The raw body.
    pub body: Vec<u8>,
}
