//! Connecting accounts: the OAuth 2.0 connectors of this deployment (each with its
//! scope and the client registered at its provider) and the steps of connecting one —
//! start an authorization, finish it from the provider's callback, disconnect. The web
//! UI and the API only translate requests into these and answers out of them.
//!
//! An authorization is bound to the person and to their browser session: its `state`
//! is random, stored only as a SHA-256, and its row (with the PKCE verifier, sealed)
//! is used once and within [`FLOW_MINUTES`]. The tokens it yields are sealed with the
//! deployment's key ring before they are stored.

use crate::config::{Config, ConnectorConfig};
use chrono::{Duration, Utc};
use rapport_core::StaffId;
use rapport_core::secret::KeyRing;
use rapport_core::sharing::{Sharing, person_connection_of, person_connector_id};
use rapport_core::token::token_hash;
use rapport_plugin_host::ConnectionScope;
use rapport_store::ConnectionStatus;
use rapport_store::{Connection, ConnectionId, ConnectionKey, GrantedTokens, OAuthFlow, Store};
use rapport_sync::connections::{ConnectionTokenSource, OrgConnectionTokens};
use rapport_sync::oauth::{OAuthClient, OAuthError, OAuthProvider};
use rapport_sync::{ConnectorSpec, Engine};
use std::collections::BTreeMap;

/// How long a person has to come back from the provider.
pub const FLOW_MINUTES: i64 = 10;
/// How often a node looks for connections whose tokens are due for a refresh.
pub const REFRESH_PASS_INTERVAL_SECONDS: u64 = 60;
/// How often a node brings its sync engine in step with people's connections.
pub const RECONCILE_INTERVAL_SECONDS: u64 = 5;

/// One connector people connect accounts for.
#[derive(Debug, Clone)]
pub struct Connectable {
    /// The connector's id.
    pub connector: String,
    /// Its plugin's name.
    pub plugin: String,
    /// The organisation's one connection, or each person's own.
    pub scope: ConnectionScope,
    /// What the person grants, as the provider names it.
    pub scopes: Vec<String>,
    /// For a person-scoped connector: the organisation's sharing level for what each
    /// connection captures.
    pub sharing: Sharing,
    /// For a person-scoped connector: whether each person may choose their own level.
    pub sharing_override: bool,
    client: OAuthClient,
    /// For a person-scoped connector: what each person's connection syncs with — the
    /// connector's configuration and its bound plugin — and whether it is enabled.
    template: Option<PersonTemplate>,
}

/// The configured connector each person's connection is an instance of.
#[derive(Debug, Clone)]
struct PersonTemplate {
    config: ConnectorConfig,
    spec: ConnectorSpec,
}

/// What one [`Connections::reconcile`] changed in the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Person connections the engine now syncs.
    pub added: u32,
    /// Person connections it no longer syncs (disconnected or needing reconnect).
    pub removed: u32,
}

/// What one [`Connections::refresh_due`] pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshPass {
    /// Connections whose tokens were refreshed.
    pub refreshed: u32,
    /// Connections the provider refused: they now need reconnecting.
    pub needs_reconnect: u32,
    /// Connections that could not be refreshed now (tried again next pass).
    pub failed: u32,
}

/// The deployment's connectable connectors and the key ring their tokens are sealed
/// with.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    keys: Option<KeyRing>,
    connectors: BTreeMap<String, Connectable>,
    /// What this node's refresh passes did since it started, for `/metrics`.
    refreshes: std::sync::Arc<std::sync::Mutex<RefreshPass>>,
}

/// Why a step of connecting failed; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No such connectable connector.
    #[error("there is no connector `{0}` to connect: the Connections page lists them")]
    Unknown(String),
    /// The person may not make this connection.
    #[error("{0}")]
    Forbidden(String),
    /// No key ring: tokens could not be sealed.
    #[error(
        "connecting accounts needs a secret key to seal their tokens: the operator sets RAPPORT_SECRET_KEY (see `rapport secrets generate-key`)"
    )]
    NoKeys,
    /// The callback does not belong to a live authorization of this browser.
    #[error(
        "this sign-in with the provider is not one this browser started, was already used, or took longer than {FLOW_MINUTES} minutes: start connecting again"
    )]
    UnknownFlow,
    /// The provider said no.
    #[error("the provider did not grant access: {0}")]
    Denied(String),
    /// The provider failed.
    #[error(transparent)]
    Provider(#[from] OAuthError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] rapport_store::Error),
    /// The sync engine could not take a connection on.
    #[error(transparent)]
    Sync(#[from] rapport_sync::SyncError),
    /// A person's connection could not be bound to its connector's plugin.
    #[error("{0}")]
    Setup(String),
}

impl Connections {
    /// The OAuth connectors of `config`, their endpoints as their plugins declare them
    /// (filled in from settings), with the clients the configuration registers.
    pub fn from_config(config: &Config, specs: &[ConnectorSpec]) -> anyhow::Result<Connections> {
        let mut connectors = BTreeMap::new();
        for connector in &config.connectors {
            let Some(registration) = &connector.oauth else {
                continue;
            };
            let Some(spec) = specs.iter().find(|spec| spec.id() == connector.id) else {
                continue;
            };
            let plugin = spec.connector.plugin();
            let endpoints = plugin
                .oauth_endpoints(&connector.settings)
                .map_err(|reason| anyhow::anyhow!("connector `{}`: {reason}", connector.id))?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "connector `{}`'s plugin does not declare OAuth 2.0",
                        connector.id
                    )
                })?;
            let client = OAuthClient::new(OAuthProvider {
                authorization_endpoint: endpoints.authorization_endpoint,
                token_endpoint: endpoints.token_endpoint,
                revocation_endpoint: endpoints.revocation_endpoint,
                client_id: registration.client_id.clone(),
                client_secret: registration.client_secret.clone(),
                redirect_uri: registration.redirect_uri.clone(),
                scopes: endpoints.scopes.clone(),
                extra_parameters: endpoints.extra_parameters,
            })?;
            let template = (connector.scope == ConnectionScope::Person).then(|| PersonTemplate {
                config: connector.clone(),
                spec: ConnectorSpec {
                    enabled: connector.enabled,
                    ..spec.clone()
                },
            });
            connectors.insert(
                connector.id.clone(),
                Connectable {
                    connector: connector.id.clone(),
                    plugin: plugin.manifest().name.clone(),
                    scope: connector.scope,
                    scopes: endpoints.scopes,
                    sharing: connector.sharing,
                    sharing_override: connector.sharing_override,
                    client,
                    template,
                },
            );
        }
        Ok(Connections {
            keys: config.secret_keys.clone(),
            connectors,
            refreshes: std::sync::Arc::default(),
        })
    }

    /// The token source of `connector`'s organisation connection, for the node `node`:
    /// what its syncs run with. `None` unless it is an organisation-scoped OAuth
    /// connector and a key ring is configured.
    pub fn org_tokens(
        &self,
        connector: &str,
        store: &Store,
        node: &str,
    ) -> Option<std::sync::Arc<dyn rapport_plugin_host::TokenSource>> {
        let connectable = self.connectors.get(connector)?;
        let keys = self.keys.as_ref()?;
        (connectable.scope == ConnectionScope::Org).then(|| {
            std::sync::Arc::new(OrgConnectionTokens::new(
                store.clone(),
                keys.clone(),
                connectable.client.clone(),
                connector,
                node,
            )) as std::sync::Arc<dyn rapport_plugin_host::TokenSource>
        })
    }

    /// The connectable connectors, by id.
    pub fn connectors(&self) -> impl Iterator<Item = &Connectable> {
        self.connectors.values()
    }

    /// Whether `connector` is a person-scoped template: the engine runs each person's
    /// connection of it, never the template itself.
    pub fn is_person_template(&self, connector: &str) -> bool {
        self.connectors
            .get(connector)
            .is_some_and(|connectable| connectable.template.is_some())
    }

    /// Makes the engine sync exactly the active person connections: each gets its own
    /// unit ([`person_unit`]) bound to its own tokens, added when it becomes active
    /// (connected, or reconnected) and removed when it is disconnected or needs
    /// reconnecting. Every node runs this every few seconds, so a connection made
    /// through one node is synced by whichever node takes its lease.
    pub async fn reconcile(&self, engine: &Engine) -> Result<Reconciled, ConnectError> {
        let mut done = Reconciled::default();
        let store = engine.store();
        let mut wanted = BTreeMap::new();
        for connection in store.connections(None, None).await? {
            let Some(owner) = connection.key.owner else {
                continue;
            };
            let Some(connectable) = self.connectors.get(&connection.key.connector) else {
                continue;
            };
            if connectable.template.is_none() || connection.status != ConnectionStatus::Active {
                continue;
            }
            wanted.insert(
                person_connector_id(&connection.key.connector, owner),
                connection,
            );
        }
        for spec in engine.connectors() {
            let Some((connector, _)) = person_connection_of(spec.id()) else {
                continue;
            };
            if self.is_person_template(connector) && !wanted.contains_key(spec.id()) {
                engine.remove_connector(spec.id()).await?;
                done.removed += 1;
            }
        }
        for (unit, connection) in wanted {
            if let Some(running) = engine.connector(&unit) {
                // Bound with its current sharing level (which its plugin is told):
                // nothing to do. Otherwise it is bound again below, replacing it.
                let bound_sharing = running.connector.connection().and_then(|c| c.sharing);
                if bound_sharing == Some(connection.sharing) {
                    continue;
                }
            }
            let Some(spec) = self
                .person_spec(store, &connection, engine.node_id())
                .await?
            else {
                continue;
            };
            engine.add_connector(spec).await?;
            tracing::info!(connector = %unit, "syncing a person's connection");
            done.added += 1;
        }
        Ok(done)
    }

    /// [`Connections::reconcile`] after a connection changed through this node, so it
    /// starts (or stops) syncing at once; a failure is logged and left to the next
    /// periodic pass.
    pub async fn follow(&self, engine: &Engine) {
        if let Err(error) = self.reconcile(engine).await {
            tracing::warn!(%error, "following a changed connection failed; the next pass retries");
        }
    }

    /// The engine's connector for one person's `connection`: the template's plugin,
    /// bound to that connection's tokens, as its own unit.
    async fn person_spec(
        &self,
        store: &Store,
        connection: &Connection,
        node: &str,
    ) -> Result<Option<ConnectorSpec>, ConnectError> {
        let (Some(connectable), Some(owner), Some(keys)) = (
            self.connectors.get(&connection.key.connector),
            connection.key.owner,
            self.keys.as_ref(),
        ) else {
            return Ok(None);
        };
        let Some(template) = &connectable.template else {
            return Ok(None);
        };
        let owner_email = store.staff(owner).await?.email.to_string();
        let unit = person_connector_id(&connection.key.connector, owner);
        let tokens = std::sync::Arc::new(ConnectionTokenSource::new(
            store.clone(),
            keys.clone(),
            connectable.client.clone(),
            connection.id,
            node,
        ));
        let grants = template.config.person_grants(
            tokens,
            rapport_plugin_host::Connection {
                id: unit.clone(),
                scope: ConnectionScope::Person,
                owner_email: Some(owner_email),
                provider_account: connection.provider_account.clone(),
                sharing: Some(connection.sharing),
            },
        );
        let bound = template
            .spec
            .connector
            .plugin()
            .connector(grants)
            .map_err(|error| {
                ConnectError::Setup(format!(
                    "connection {} of `{}` cannot be set up: {error}",
                    connection.id, connection.key.connector
                ))
            })?;
        Ok(Some(ConnectorSpec {
            connector: bound,
            schedule: template.spec.schedule.clone(),
            enabled: template.spec.enabled,
            fingerprint: template.spec.fingerprint.clone(),
        }))
    }

    fn connectable(&self, connector: &str) -> Result<&Connectable, ConnectError> {
        self.connectors
            .get(connector)
            .ok_or_else(|| ConnectError::Unknown(connector.to_owned()))
    }

    fn keys(&self) -> Result<&KeyRing, ConnectError> {
        self.keys.as_ref().ok_or(ConnectError::NoKeys)
    }

    /// Starts connecting `connector` for `staff` (an admin, for the organisation's
    /// connection), in the browser session whose form token is `session_token`: returns
    /// the provider URL to send them to.
    pub async fn begin(
        &self,
        store: &Store,
        connector: &str,
        staff: StaffId,
        is_admin: bool,
        session_token: &str,
    ) -> Result<String, ConnectError> {
        let connectable = self.connectable(connector)?;
        let owner = match connectable.scope {
            ConnectionScope::Person => Some(staff),
            ConnectionScope::Org if is_admin => None,
            ConnectionScope::Org => {
                return Err(ConnectError::Forbidden(format!(
                    "`{connector}` has one connection for the whole organisation; an admin connects it"
                )));
            }
        };
        let keys = self.keys()?;
        let request = connectable.client.authorization_request()?;
        let state_hash = token_hash(&request.state);
        let now = Utc::now();
        let flow = OAuthFlow {
            staff,
            session_hash: token_hash(session_token),
            key: ConnectionKey {
                connector: connector.to_owned(),
                owner,
            },
            verifier: keys.seal(
                &request.pkce_verifier,
                &OAuthFlow::seal_context(&state_hash),
            ),
            expires_at: now + Duration::minutes(FLOW_MINUTES),
        };
        store.begin_oauth_flow(&state_hash, &flow, now).await?;
        Ok(request.url)
    }

    /// Finishes an authorization from the provider's callback (`state` and `code`, or
    /// its `error`), for the person signed in with `session_token`: exchanges the code,
    /// seals the tokens and stores the connection.
    pub async fn finish(
        &self,
        store: &Store,
        staff: StaffId,
        session_token: &str,
        state: &str,
        outcome: Result<&str, &str>,
    ) -> Result<Connection, ConnectError> {
        let keys = self.keys()?;
        let state_hash = token_hash(state);
        let flow = store
            .take_oauth_flow(&state_hash, staff, &token_hash(session_token), Utc::now())
            .await?
            .ok_or(ConnectError::UnknownFlow)?;
        let code = outcome.map_err(|error| ConnectError::Denied(error.to_owned()))?;
        let connectable = self.connectable(&flow.key.connector)?;
        let verifier = keys
            .open(&flow.verifier, &OAuthFlow::seal_context(&state_hash))
            .map_err(|_| ConnectError::UnknownFlow)?;
        let issued = connectable.client.exchange_code(code, &verifier).await?;
        let key = flow.key;
        let granted = GrantedTokens {
            access: keys.seal(&issued.access_token, &key.seal_context("access")),
            access_expires_at: issued.expires_at,
            refresh: issued
                .refresh_token
                .as_deref()
                .map(|refresh| keys.seal(refresh, &key.seal_context("refresh"))),
            scopes: issued.scopes.unwrap_or_else(|| connectable.scopes.clone()),
            provider_account: None,
            sharing: connectable.sharing,
        };
        let connection = store.grant_connection(&key, granted, Utc::now()).await?;
        if key.owner.is_none() {
            // The organisation's connector can run again, at once.
            store.resume_connector(&key.connector, Utc::now()).await?;
        }
        Ok(connection)
    }

    /// Refreshes every active connection whose tokens are due — expiring within two
    /// minutes, or last refreshed a day ago — so tokens stay fresh (and a revoked grant
    /// is noticed) whether or not anything syncs with them. The refresh is claimed per
    /// connection in the store, so nodes running this at once never refresh one
    /// connection twice.
    pub async fn refresh_due(
        &self,
        store: &Store,
        node: &str,
    ) -> Result<RefreshPass, ConnectError> {
        let mut pass = RefreshPass::default();
        let Ok(keys) = self.keys() else {
            return Ok(pass);
        };
        for connection in store.connections(None, None).await? {
            let Some(connectable) = self.connectors.get(&connection.key.connector) else {
                continue;
            };
            if connection.status != ConnectionStatus::Active {
                continue;
            }
            let before = connection.token_version;
            let source = ConnectionTokenSource::new(
                store.clone(),
                keys.clone(),
                connectable.client.clone(),
                connection.id,
                node,
            );
            match source.current().await {
                Ok(_) => {
                    let after = store
                        .connection(connection.id)
                        .await?
                        .map_or(before, |c| c.token_version);
                    if after != before {
                        pass.refreshed += 1;
                    }
                }
                Err(rapport_plugin_host::TokenError::NeedsReconnect(reason)) => {
                    tracing::warn!(connection = %connection.id, connector = %connection.key.connector, %reason, "a connection needs reconnecting");
                    pass.needs_reconnect += 1;
                }
                Err(rapport_plugin_host::TokenError::Unavailable(reason)) => {
                    tracing::info!(connection = %connection.id, %reason, "refreshing a connection's tokens failed; trying again later");
                    pass.failed += 1;
                }
            }
        }
        let mut tally = self.refreshes.lock().unwrap_or_else(|e| e.into_inner());
        tally.refreshed += pass.refreshed;
        tally.needs_reconnect += pass.needs_reconnect;
        tally.failed += pass.failed;
        Ok(pass)
    }

    /// Refreshes `connection`'s tokens now, due or not (`rapport connection refresh`):
    /// claimed in the store like every refresh, so it never races a node's. Returns the
    /// connection as it stands after.
    pub async fn refresh_now(
        &self,
        store: &Store,
        connection: ConnectionId,
        node: &str,
    ) -> Result<Connection, ConnectError> {
        let found = store
            .connection(connection)
            .await?
            .ok_or_else(|| ConnectError::Unknown(connection.to_string()))?;
        let connectable = self.connectable(&found.key.connector)?;
        let source = ConnectionTokenSource::new(
            store.clone(),
            self.keys()?.clone(),
            connectable.client.clone(),
            connection,
            node,
        );
        source.refresh_now().await.map_err(|error| match error {
            rapport_plugin_host::TokenError::NeedsReconnect(reason) => {
                ConnectError::Denied(format!("{reason}; its owner must connect again"))
            }
            rapport_plugin_host::TokenError::Unavailable(reason) => ConnectError::Setup(reason),
        })?;
        store
            .connection(connection)
            .await?
            .ok_or_else(|| ConnectError::Unknown(connection.to_string()))
    }

    /// What this node's refresh passes did since it started.
    pub fn refresh_tally(&self) -> RefreshPass {
        *self.refreshes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The level `connection`'s events carry under this configuration: its owner's
    /// choice where the organisation allows one, else the organisation's.
    fn sharing_for(connectable: &Connectable, chosen: Option<Sharing>) -> Sharing {
        match chosen {
            Some(chosen) if connectable.sharing_override => chosen,
            _ => connectable.sharing,
        }
    }

    /// Brings every person's connection to the sharing level this configuration gives
    /// it (the organisation's, or the owner's choice where allowed), re-stamping the
    /// events of each that changed. Run when a node starts, so a changed `sharing` or
    /// `sharing_override` applies to what was captured before. Returns how many
    /// connections changed.
    pub async fn apply_sharing_policy(&self, store: &Store) -> Result<u32, ConnectError> {
        let mut changed = 0;
        for connection in store.connections(None, None).await? {
            let Some(connectable) = self.connectors.get(&connection.key.connector) else {
                continue;
            };
            if connection.key.owner.is_none() || connectable.template.is_none() {
                continue;
            }
            let wanted = Self::sharing_for(connectable, connection.sharing_chosen);
            if wanted != connection.sharing {
                let restamped = store
                    .set_connection_sharing(
                        connection.id,
                        wanted,
                        connection.sharing_chosen,
                        Utc::now(),
                    )
                    .await?;
                tracing::info!(
                    connection = %connection.id,
                    connector = %connection.key.connector,
                    from = %connection.sharing,
                    to = %wanted,
                    events = restamped.unwrap_or(0),
                    "a connection's sharing level follows the configuration"
                );
                changed += 1;
            }
        }
        Ok(changed)
    }

    /// Sets the sharing level `staff` chooses for their own `connection` (`None`: the
    /// organisation's), where the organisation lets people choose; re-stamps what it
    /// already captured. Someone else's connection is not found.
    pub async fn choose_sharing(
        &self,
        store: &Store,
        connection: ConnectionId,
        staff: StaffId,
        chosen: Option<Sharing>,
    ) -> Result<Connection, ConnectError> {
        let found = store
            .connection(connection)
            .await?
            .filter(|found| found.key.owner == Some(staff))
            .ok_or_else(|| ConnectError::Unknown(connection.to_string()))?;
        let connectable = self.connectable(&found.key.connector)?;
        if connectable.template.is_none() {
            return Err(ConnectError::Unknown(connection.to_string()));
        }
        if !connectable.sharing_override && chosen.is_some_and(|c| c != connectable.sharing) {
            return Err(ConnectError::Forbidden(format!(
                "the organisation shares what `{}` connections capture as `{}`, and does not let people choose another level (`sharing_override` in rapport.toml)",
                found.key.connector, connectable.sharing
            )));
        }
        let sharing = Self::sharing_for(connectable, chosen);
        store
            .set_connection_sharing(connection, sharing, chosen, Utc::now())
            .await?;
        store
            .connection(connection)
            .await?
            .ok_or_else(|| ConnectError::Unknown(connection.to_string()))
    }

    /// Disconnects `connection` for `staff` (its owner, or an admin): deletes its
    /// tokens and revokes the grant at the provider where it can. Returns whether the
    /// provider confirmed the revocation.
    pub async fn disconnect(
        &self,
        store: &Store,
        connection: ConnectionId,
        staff: StaffId,
        is_admin: bool,
        by: &str,
    ) -> Result<bool, ConnectError> {
        let found = store
            .connection(connection)
            .await?
            .ok_or_else(|| ConnectError::Unknown(connection.to_string()))?;
        if found.key.owner != Some(staff) && !is_admin {
            // Someone else's connection is not shown to them: say it does not exist.
            return Err(ConnectError::Unknown(connection.to_string()));
        }
        let held = store
            .disconnect(connection, &format!("disconnected by {by}"), Utc::now())
            .await?;
        let (Some(held), Ok(connectable), Ok(keys)) =
            (held, self.connectable(&found.key.connector), self.keys())
        else {
            return Ok(false);
        };
        let Some(refresh) = held
            .refresh
            .as_ref()
            .and_then(|sealed| keys.open(sealed, &held.key.seal_context("refresh")).ok())
        else {
            return Ok(false);
        };
        match connectable.client.revoke(&refresh).await {
            Ok(revoked) => Ok(revoked),
            Err(error) => {
                // The tokens are gone here either way; the grant lapses at the provider.
                tracing::warn!(connection = %connection, %error, "revoking the grant at the provider failed");
                Ok(false)
            }
        }
    }
}
