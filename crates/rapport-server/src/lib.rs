//! rapport's server process: reads `rapport.toml`, opens the store, binds the
//! configured connectors to their plugins, runs the sync engine, and serves HTTP.
//!
//! # Layout
//! - `config`: `rapport.toml` — parsing, checking (every problem with file:line:column)
//!   and binding connectors to plugins.
//! - [`app`]: the axum `Router` (testable without a socket): the JSON API under
//!   `/api/v1` (module `api`; its OpenAPI document at `/api/openapi.json`), the web UI
//!   for staff (module `web`: server-rendered pages behind a session cookie), webhook
//!   intake at `POST /hooks/{connector}`, `/healthz`, `/readyz`, `/metrics`.
//! - [`Server::start`] / [`Server::serve`]: the process — store, plugin host, engine and
//!   listener, with graceful shutdown.
//! - `audit`: the audit trail — one entry per successful write through the API or the
//!   web UI (one middleware), and sign-ins, failed ones included.
//! - [`connections`]: connecting accounts through OAuth 2.0 (start, callback,
//!   disconnect), for the web UI's Connections page.
//! - [`secrets`]: the key ring that seals connection tokens at rest, from the
//!   environment; a node refuses to start when stored tokens need a key it lacks.
//! - `listener`: accepting connections and serving HTTP/1.1 on them, bounded: a
//!   connection cap and header, body and idle timeouts (`[server]`, [`HttpTuning`]).
//!
//! # Invariants
//! - Only this crate accepts connections.
//! - A webhook body is size-capped before any plugin sees it; a rejected signature is a
//!   401 and stores nothing; accepted events take the same resolution and upsert path
//!   as pulled ones.

mod api;
mod app;
mod audit;
pub mod config;
pub mod connections;
mod http;
mod insight;
mod listener;
mod metrics;
pub mod oidc;
pub mod secrets;
mod web;

pub use api::openapi;
pub use config::{
    Config, ConfigError, ConnectorConfig, Essentials, PluginSource, Problem, SyncTuning,
};
pub use http::{AppState, REQUEST_TIMEOUT, app};
pub use listener::HttpTuning;
pub use web::{
    SESSION_COOKIE, SESSION_HOURS, SIGN_IN_FAILURES_PER_ACCOUNT_MAX,
    SIGN_IN_FAILURES_PER_ADDRESS_MAX, SIGN_IN_LINK_MINUTES, SIGN_IN_WINDOW_MINUTES,
};

use anyhow::Context;
use rapport_plugin_host::PluginHost;
use rapport_store::{Store, StoreOptions};
use rapport_sync::Engine;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything a node runs, started from a checked configuration.
#[derive(Debug)]
pub struct Server {
    /// The configuration it started from.
    pub config: Config,
    /// The sync engine (with the store it writes to).
    pub engine: Arc<Engine>,
    /// The connectors people connect accounts for.
    pub connections: Arc<connections::Connections>,
}

impl Server {
    /// Opens the store (migrating it), loads and binds the plugins, registers the
    /// connectors. Nothing runs yet.
    ///
    /// Everything that can be checked without the database — every plugin loaded and
    /// bound — is checked first, so a configuration refused for a typo never creates or
    /// migrates a database.
    pub async fn start(config: Config) -> anyhow::Result<Server> {
        let host = PluginHost::new(
            config
                .plugins
                .host_config(Some(config.plugin_cache_dir.clone())),
        )
        .context("starting the plugin host")?;
        let specs = config.bind_connectors(&host).await?;
        let store = Store::connect_with(
            &config.database,
            StoreOptions {
                ignored_domains: config.ignore_domains.clone(),
                idle_in_transaction_timeout: config.sync.idle_in_transaction_timeout(),
                ..StoreOptions::default()
            },
        )
        .await?;
        secrets::require_keys(&store, config.secret_keys.as_ref()).await?;
        let connections = connections::Connections::from_config(&config, &specs)?;
        let engine_config = config.sync.engine_config(config.node_id.as_deref());
        // Organisation-scoped OAuth connectors sync with their connection's tokens:
        // rebound (the plugins already loaded) now that the store is open.
        let mut specs = specs;
        for spec in &mut specs {
            let Some(connector) = config.connectors.iter().find(|c| c.id == spec.id()) else {
                continue;
            };
            if let Some(tokens) =
                connections.org_tokens(&connector.id, &store, &engine_config.node_id)
            {
                let plugin = spec.connector.plugin().clone();
                spec.connector = plugin
                    .connector(connector.grants(Some(tokens)))
                    .with_context(|| format!("connector `{}` on its connection", connector.id))?;
                spec.enabled = connector.enabled;
            }
        }
        // A person-scoped connector is a template: the engine runs each person's
        // connection of it (`Connections::reconcile`), never the template itself.
        specs.retain(|spec| !connections.is_person_template(spec.id()));
        let engine = Engine::new(store, engine_config, specs).await?;
        connections
            .apply_sharing_policy(engine.store())
            .await
            .context("applying the configured sharing levels to people's connections")?;
        connections
            .reconcile(&engine)
            .await
            .context("registering people's connections with the sync engine")?;
        Ok(Server {
            config,
            engine: Arc::new(engine),
            connections: Arc::new(connections),
        })
    }

    /// Serves HTTP on the configured address and runs the scheduler until `shutdown`
    /// turns true (or SIGTERM/ctrl-c arrives); in-flight requests finish, running
    /// syncs stop at their next page boundary.
    pub async fn serve(self, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(self.config.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {}: is another server running there? Change [server] listen",
                    self.config.listen
                )
            })?;
        self.serve_on(listener, shutdown).await
    }

    /// [`Server::serve`] on a listener the caller bound (tests bind port 0).
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let (stop, stopping) = watch::channel(false);
        let signals = tokio::spawn(forward_shutdown(shutdown, stop));
        let scheduler = tokio::spawn(Arc::clone(&self.engine).run(stopping.clone()));
        let refresher = tokio::spawn(keep_tokens_fresh(
            Arc::clone(&self.engine),
            Arc::clone(&self.connections),
            stopping.clone(),
        ));
        let reconciler = tokio::spawn(follow_connections(
            Arc::clone(&self.engine),
            Arc::clone(&self.connections),
            stopping.clone(),
        ));
        let state = AppState::new(Arc::clone(&self.engine), self.config.webhook_body_bytes_max)
            .await?
            .with_connections(Arc::clone(&self.connections))
            .with_sign_in(Arc::new(
                oidc::SignInProviders::new(&self.config.sign_ins)
                    .context("setting up OpenID Connect sign-in")?,
            ));
        let address = listener.local_addr()?;
        tracing::info!(%address, node = self.engine.node_id(), "rapport is serving");
        listener::serve(listener, app(state), self.config.http, stopping.clone()).await;
        scheduler.await?;
        refresher.abort();
        reconciler.abort();
        signals.abort();
        self.engine.store().close().await;
        Ok(())
    }
}

/// Refreshes due connection tokens every minute until `stopping`.
async fn keep_tokens_fresh(
    engine: Arc<Engine>,
    connections: Arc<connections::Connections>,
    mut stopping: watch::Receiver<bool>,
) {
    if connections.connectors().next().is_none() {
        return;
    }
    let every = std::time::Duration::from_secs(connections::REFRESH_PASS_INTERVAL_SECONDS);
    loop {
        match connections
            .refresh_due(engine.store(), engine.node_id())
            .await
        {
            Ok(pass) if pass != connections::RefreshPass::default() => {
                tracing::info!(
                    refreshed = pass.refreshed,
                    needs_reconnect = pass.needs_reconnect,
                    failed = pass.failed,
                    "refreshed connection tokens"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "the connection refresh pass failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}

/// Keeps the engine's person connections in step with the store every
/// [`connections::RECONCILE_INTERVAL_SECONDS`] until `stopping`: a connection made or
/// dropped through another node is picked up (or let go) here within that long.
async fn follow_connections(
    engine: Arc<Engine>,
    connections: Arc<connections::Connections>,
    mut stopping: watch::Receiver<bool>,
) {
    if connections.connectors().next().is_none() {
        return;
    }
    let every = std::time::Duration::from_secs(connections::RECONCILE_INTERVAL_SECONDS);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
        if let Err(error) = connections.reconcile(&engine).await {
            tracing::warn!(%error, "following people's connections failed; retrying");
        }
    }
}

/// Turns the caller's shutdown signal, SIGTERM or ctrl-c into one stop signal.
async fn forward_shutdown(mut shutdown: watch::Receiver<bool>, stop: watch::Sender<bool>) {
    #[cfg(unix)]
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let terminated = async {
        match terminate.as_mut() {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    tokio::select! {
        _ = shutdown.wait_for(|stop| *stop) => {}
        _ = tokio::signal::ctrl_c() => {}
        () = terminated => {}
    }
    tracing::info!("shutting down");
    let _ = stop.send(true);
}
