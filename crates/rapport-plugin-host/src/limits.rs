//! The limits on what crosses the boundary from a connector, besides the event model's
//! own (`rapport_core::timeline::limits`: titles, summaries, attributes, money,
//! instants, the size of one event). The per-call limits an operator may tune
//! (memory, deadline, events and bytes per call, HTTP sizes, log lines) are
//! [`CallLimits`](crate::CallLimits); these are fixed by the contract.
//!
//! Crossing one fails the call with a [`PluginError`](crate::PluginError) that names the
//! limit, which the sync engine records on the connector's status. Every one is listed
//! in `docs/connectors.md` and in the contract's comments (`wit/`).

/// Longest manifest `name`, in characters.
pub const MANIFEST_NAME_CHARS_MAX: usize = 64;
/// Longest manifest `version`, in characters.
pub const MANIFEST_VERSION_CHARS_MAX: usize = 64;
/// Longest manifest `description`, in characters.
pub const MANIFEST_DESCRIPTION_CHARS_MAX: usize = 1_000;
/// Most event kinds a manifest declares.
pub const MANIFEST_KINDS_MAX: usize = 64;
/// Most configuration keys a manifest declares.
pub const MANIFEST_CONFIG_KEYS_MAX: usize = 64;
/// Longest configuration key name, in bytes.
pub const CONFIG_KEY_NAME_BYTES_MAX: usize = 64;
/// Longest configuration key description, in characters.
pub const CONFIG_KEY_DESCRIPTION_CHARS_MAX: usize = 500;
/// Most host patterns a manifest declares.
pub const MANIFEST_HOSTS_MAX: usize = 32;
/// Longest host pattern, in bytes.
pub const HOST_PATTERN_BYTES_MAX: usize = 300;
/// Largest checkpoint a page may carry, in bytes. A checkpoint is stored with every
/// page and shown on the connector's status: it should say where the sync is, not hold
/// data.
pub const CHECKPOINT_BYTES_MAX: usize = 64 * 1024;
/// Most source ids one page may delete.
pub const DELETES_MAX: usize = 10_000;
/// Longest error message kept from a connector, in bytes; the rest is cut.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 2 * 1024;
/// Longest log line forwarded, in bytes; the rest is cut. Lines come from the `log`
/// import and from the connector's stdout and stderr.
pub const LOG_LINE_BYTES_MAX: usize = 4 * 1024;
/// Longest OAuth 2.0 endpoint (authorization, token, revocation), in bytes.
pub const OAUTH_ENDPOINT_BYTES_MAX: usize = 2_048;
/// Most OAuth 2.0 scopes a manifest asks for.
pub const OAUTH_SCOPES_MAX: usize = 64;
/// Longest OAuth 2.0 scope, in bytes.
pub const OAUTH_SCOPE_BYTES_MAX: usize = 512;
/// Most extra parameters of an OAuth 2.0 authorization request.
pub const OAUTH_EXTRA_PARAMETERS_MAX: usize = 16;
/// Most hosts an OAuth 2.0 access token is declared for.
pub const OAUTH_TOKEN_HOSTS_MAX: usize = 32;
