//! Runs rapport connectors: WebAssembly components implementing `rapport:connector`.
//!
//! # Layout
//! - [`PluginHost`] owns the wasmtime engine (pooling allocator, epoch interruption,
//!   an on-disk cache of compiled components) and loads [`Plugin`]s from `.wasm` files.
//! - [`Plugin::connector`] binds a loaded plugin to one configured connector
//!   ([`Grants`]: its id, settings, secrets and the hosts the operator allows).
//! - [`Connector::check`], [`Connector::sync`] and [`Connector::handle_webhook`] each run
//!   in a fresh store with a memory cap, a deadline and caps on what may be returned.
//! - `network` decides where a connector may connect (HTTP and TCP): deny by default,
//!   allowed only to the intersection of what the plugin declares and the operator
//!   grants, and never to private, link-local or metadata addresses unless allowed.
//! - `contract` holds one module per supported contract version (`v0_1_0`, `v0_2_0`),
//!   each with its `bindgen!`; the newest converts guest values into host types, older
//!   ones upgrade their guests' values into the newest first.
//! - OAuth 2.0 connectors (0.2.0) get access tokens from the embedder's
//!   [`TokenSource`] through `host.access-token`; a call that fails with `auth` after
//!   taking one reports it refused (the source refreshes) and runs once more.
//!
//! # Invariants
//! - This is the only crate that knows wasmtime. It knows nothing of SQL or HTTP
//!   serving; it converts guest events into `rapport_core::timeline::NewEvent`s.
//! - A plugin that traps, panics, loops, exhausts memory or stack, returns too much or
//!   reaches a forbidden host fails that call with a [`PluginError`] and harms nothing
//!   else: no state survives a call.
//! - Plugins see no files, no environment variables and no arguments. Secrets reach only
//!   the connector they were configured for and never appear in logs or `Debug` output.

mod config;
mod contract;
mod engine;
mod error;
pub mod limits;
mod network;
mod plugin;
mod sandbox;

pub use config::{
    AccessToken, CallLimits, Connection, ConnectionScope, Grants, HostConfig, TokenError,
    TokenFuture, TokenSource, WebhookRequest,
};
pub use engine::{EPOCH_TICK_MS, PluginHost};
pub use error::{ConnectorError, PluginError, Result};
pub use network::{HostPattern, HostTemplate};
pub use plugin::{
    ApiKeyAuth, Auth, ConfigKey, Connector, ContractVersion, Manifest, OAuth2Auth, Plugin,
    RefusedEvent, SUPPORTED_VERSIONS, SyncPage, WebhookEvents,
};
