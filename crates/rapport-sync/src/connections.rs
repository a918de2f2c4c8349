//! A connection's tokens as a connector sees them: [`ConnectionTokenSource`] implements
//! the plugin host's `TokenSource` over the store's sealed tokens, refreshing through
//! the provider when the access token is due (within [`REFRESH_AHEAD_SECONDS`] of expiry, or
//! [`REFRESH_AFTER_SECONDS`] after the last refresh) or the source refused it.
//!
//! Refreshing is claimed in the store first (`Store::claim_token_refresh`), so across
//! every node one refresh runs at a time per connection; a node that finds the claim
//! taken waits for the holder's new tokens instead of spending the refresh token
//! again. A refresh the provider refuses (`invalid_grant`) marks the connection
//! `needs_reconnect`.

use crate::oauth::{OAuthClient, OAuthError};
use chrono::{DateTime, Utc};
use rapport_core::secret::KeyRing;
use rapport_plugin_host::{AccessToken, TokenError, TokenFuture, TokenSource};
use rapport_store::{ConnectionId, ConnectionStatus, ConnectionTokens, RefreshedTokens, Store};
use std::time::Duration;

/// Refresh when the access token expires within this many seconds.
pub const REFRESH_AHEAD_SECONDS: i64 = 120;
/// Refresh at least this often, even when the access token is not due, so a grant that
/// was revoked is noticed within a day and providers see the client in use.
pub const REFRESH_AFTER_SECONDS: i64 = 24 * 60 * 60;
/// How long a node holds the refresh claim: longer than one provider call.
const REFRESH_LEASE_SECONDS: i64 = 45;
/// How long a node waits for another node's refresh before giving up for now.
const WAIT_FOR_OTHER_MS: u64 = 30_000;
const WAIT_STEP_MS: u64 = 100;

/// One connection's tokens, for one node.
#[derive(Debug, Clone)]
pub struct ConnectionTokenSource {
    store: Store,
    keys: KeyRing,
    client: OAuthClient,
    connection: ConnectionId,
    node: String,
    refresh_lease: chrono::Duration,
}

impl ConnectionTokenSource {
    /// The tokens of `connection`, sealed with `keys`, refreshed through `client`, by
    /// the node `node` (its lease holder name).
    pub fn new(
        store: Store,
        keys: KeyRing,
        client: OAuthClient,
        connection: ConnectionId,
        node: &str,
    ) -> ConnectionTokenSource {
        ConnectionTokenSource {
            store,
            keys,
            client,
            connection,
            node: node.to_owned(),
            refresh_lease: chrono::Duration::seconds(REFRESH_LEASE_SECONDS),
        }
    }

    /// Holds the refresh claim for `lease` instead of the default: how soon another
    /// node takes over the refresh of a node that died holding it.
    pub fn with_refresh_lease(mut self, lease: Duration) -> ConnectionTokenSource {
        self.refresh_lease = chrono::Duration::from_std(lease).unwrap_or(self.refresh_lease);
        self
    }

    async fn load(&self) -> Result<ConnectionTokens, TokenError> {
        self.store
            .connection_tokens(self.connection)
            .await
            .map_err(|error| TokenError::Unavailable(format!("reading the connection: {error}")))?
            .ok_or_else(|| TokenError::NeedsReconnect("the connection no longer exists".into()))
    }

    fn open_access(&self, tokens: &ConnectionTokens) -> Result<Option<AccessToken>, TokenError> {
        let Some(sealed) = &tokens.access else {
            return Ok(None);
        };
        let token = self
            .keys
            .open(sealed, &tokens.key.seal_context("access"))
            .map_err(|error| TokenError::Unavailable(error.to_string()))?;
        Ok(Some(AccessToken {
            token,
            token_type: "Bearer".into(),
            expires_at_micros: tokens.access_expires_at.map(|at| at.timestamp_micros()),
        }))
    }

    fn due(tokens: &ConnectionTokens, now: DateTime<Utc>) -> bool {
        let expiring = tokens
            .access_expires_at
            .is_some_and(|at| at <= now + chrono::Duration::seconds(REFRESH_AHEAD_SECONDS));
        let stale = tokens
            .refreshed_at
            .is_none_or(|at| at <= now - chrono::Duration::seconds(REFRESH_AFTER_SECONDS));
        tokens.access.is_none() || expiring || (stale && tokens.refresh.is_some())
    }

    /// The current access token, refreshed first when it is due.
    pub async fn current(&self) -> Result<AccessToken, TokenError> {
        let tokens = self.load().await?;
        check_status(&tokens)?;
        if !Self::due(&tokens, Utc::now())
            && let Some(token) = self.open_access(&tokens)?
        {
            return Ok(token);
        }
        self.refresh_from(tokens.token_version).await
    }

    /// Refreshes the tokens now, due or not (unless another node is refreshing them
    /// this moment, whose tokens it then waits for and returns).
    pub async fn refresh_now(&self) -> Result<AccessToken, TokenError> {
        let tokens = self.load().await?;
        check_status(&tokens)?;
        self.refresh_from(tokens.token_version).await
    }

    /// Refreshes unless the tokens have moved past `seen` (another node refreshed);
    /// returns the access token after it.
    async fn refresh_from(&self, seen: i64) -> Result<AccessToken, TokenError> {
        let deadline = std::time::Instant::now() + Duration::from_millis(WAIT_FOR_OTHER_MS);
        loop {
            let now = Utc::now();
            let claimed = self
                .store
                .claim_token_refresh(self.connection, &self.node, now + self.refresh_lease, now)
                .await
                .map_err(|error| {
                    TokenError::Unavailable(format!("claiming the refresh: {error}"))
                })?;
            match claimed {
                Some(tokens) if tokens.token_version != seen => {
                    // Someone refreshed while we looked: theirs are current.
                    self.release(None).await?;
                    if let Some(token) = self.open_access(&tokens)? {
                        return Ok(token);
                    }
                }
                Some(tokens) => return self.refresh_claimed(tokens).await,
                None => {
                    let tokens = self.load().await?;
                    check_status(&tokens)?;
                    if tokens.token_version != seen
                        && let Some(token) = self.open_access(&tokens)?
                    {
                        return Ok(token);
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(TokenError::Unavailable(
                            "another node is refreshing this connection's tokens".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(WAIT_STEP_MS)).await;
                }
            }
        }
    }

    async fn refresh_claimed(&self, tokens: ConnectionTokens) -> Result<AccessToken, TokenError> {
        let key = tokens.key.clone();
        let Some(sealed) = &tokens.refresh else {
            let reason =
                "the provider issued no refresh token; connect again (with offline access)";
            self.release(Some(reason)).await?;
            return Err(TokenError::NeedsReconnect(reason.into()));
        };
        let refresh = match self.keys.open(sealed, &key.seal_context("refresh")) {
            Ok(refresh) => refresh,
            Err(error) => {
                self.release(None).await?;
                return Err(TokenError::Unavailable(error.to_string()));
            }
        };
        match self.client.refresh(&refresh).await {
            Ok(issued) => {
                let refreshed = RefreshedTokens {
                    access: self
                        .keys
                        .seal(&issued.access_token, &key.seal_context("access")),
                    access_expires_at: issued.expires_at,
                    refresh: issued
                        .refresh_token
                        .as_deref()
                        .map(|refresh| self.keys.seal(refresh, &key.seal_context("refresh"))),
                };
                let stored = self
                    .store
                    .store_refreshed_tokens(
                        self.connection,
                        &self.node,
                        tokens.token_version,
                        refreshed,
                        Utc::now(),
                    )
                    .await
                    .map_err(|error| {
                        TokenError::Unavailable(format!("storing the refreshed tokens: {error}"))
                    })?;
                if !stored {
                    // Our claim lapsed and another node took over: its tokens win.
                    tracing::warn!(connection = %self.connection, "the refresh claim lapsed before the new tokens were stored");
                    let now = self.load().await?;
                    return self.open_access(&now)?.ok_or_else(|| {
                        TokenError::Unavailable("no access token after a lapsed refresh".into())
                    });
                }
                tracing::info!(connection = %self.connection, connector = %key.connector, "refreshed the connection's tokens");
                Ok(AccessToken {
                    token: issued.access_token,
                    token_type: issued.token_type,
                    expires_at_micros: issued.expires_at.map(|at| at.timestamp_micros()),
                })
            }
            Err(OAuthError::Refused(reason)) => {
                self.release(Some(&reason)).await?;
                tracing::warn!(connection = %self.connection, connector = %key.connector, %reason, "the provider refused the refresh; the connection needs reconnecting");
                Err(TokenError::NeedsReconnect(reason))
            }
            Err(other) => {
                self.release(None).await?;
                Err(TokenError::Unavailable(other.to_string()))
            }
        }
    }

    async fn release(&self, reconnect_reason: Option<&str>) -> Result<(), TokenError> {
        self.store
            .release_token_refresh(self.connection, &self.node, reconnect_reason, Utc::now())
            .await
            .map_err(|error| {
                TokenError::Unavailable(format!("releasing the refresh claim: {error}"))
            })
    }
}

fn check_status(tokens: &ConnectionTokens) -> Result<(), TokenError> {
    match tokens.status {
        ConnectionStatus::Active => Ok(()),
        ConnectionStatus::NeedsReconnect => Err(TokenError::NeedsReconnect(
            "the provider refused the last refresh".into(),
        )),
        ConnectionStatus::Revoked => Err(TokenError::NeedsReconnect(
            "the connection was disconnected".into(),
        )),
    }
}

impl TokenSource for ConnectionTokenSource {
    fn access_token(&self) -> TokenFuture<'_, AccessToken> {
        Box::pin(self.current())
    }

    fn refused<'a>(&'a self, token: &'a AccessToken) -> TokenFuture<'a, ()> {
        Box::pin(async move {
            let tokens = self.load().await?;
            check_status(&tokens)?;
            // Only refresh when the refused token is still the current one: another
            // call may have refreshed already.
            let current = self.open_access(&tokens)?;
            if current
                .as_ref()
                .is_some_and(|current| current.token != token.token)
            {
                return Ok(());
            }
            self.refresh_from(tokens.token_version).await.map(|_| ())
        })
    }
}

/// The organisation's connection of one connector, found when a call asks (it may be
/// made, remade or removed while the node runs): a [`ConnectionTokenSource`] on it.
#[derive(Debug, Clone)]
pub struct OrgConnectionTokens {
    store: Store,
    keys: KeyRing,
    client: OAuthClient,
    connector: String,
    node: String,
}

impl OrgConnectionTokens {
    /// The tokens of `connector`'s organisation connection, for the node `node`.
    pub fn new(
        store: Store,
        keys: KeyRing,
        client: OAuthClient,
        connector: &str,
        node: &str,
    ) -> OrgConnectionTokens {
        OrgConnectionTokens {
            store,
            keys,
            client,
            connector: connector.to_owned(),
            node: node.to_owned(),
        }
    }

    async fn source(&self) -> Result<ConnectionTokenSource, TokenError> {
        let connection = self
            .store
            .connections(Some(&self.connector), None)
            .await
            .map_err(|error| TokenError::Unavailable(format!("reading the connections: {error}")))?
            .into_iter()
            .find(|connection| connection.key.owner.is_none())
            .ok_or_else(|| {
                TokenError::NeedsReconnect(format!(
                    "`{}` is not connected yet: an admin connects it on the Connections page",
                    self.connector
                ))
            })?;
        Ok(ConnectionTokenSource::new(
            self.store.clone(),
            self.keys.clone(),
            self.client.clone(),
            connection.id,
            &self.node,
        ))
    }
}

impl TokenSource for OrgConnectionTokens {
    fn access_token(&self) -> TokenFuture<'_, AccessToken> {
        Box::pin(async move { self.source().await?.current().await })
    }

    fn refused<'a>(&'a self, token: &'a AccessToken) -> TokenFuture<'a, ()> {
        Box::pin(async move {
            let source = self.source().await?;
            source.refused(token).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_core::secret::Sealed;
    use rapport_store::{ConnectionId, ConnectionKey};

    fn tokens(expires_in_s: Option<i64>, refreshed_ago_h: i64, refresh: bool) -> ConnectionTokens {
        let now = Utc::now();
        ConnectionTokens {
            id: ConnectionId(1),
            key: ConnectionKey {
                connector: "gmail".into(),
                owner: None,
            },
            status: ConnectionStatus::Active,
            access: Some(Sealed::from_stored("rs1.k1.x".into())),
            access_expires_at: expires_in_s.map(|s| now + chrono::Duration::seconds(s)),
            refresh: refresh.then(|| Sealed::from_stored("rs1.k1.y".into())),
            refreshed_at: Some(now - chrono::Duration::hours(refreshed_ago_h)),
            token_version: 1,
        }
    }

    #[test]
    fn tokens_are_due_before_expiry_and_at_least_daily() {
        let now = Utc::now();
        assert!(!ConnectionTokenSource::due(
            &tokens(Some(3_600), 1, true),
            now
        ));
        assert!(
            ConnectionTokenSource::due(&tokens(Some(60), 1, true), now),
            "expiring soon"
        );
        assert!(
            ConnectionTokenSource::due(&tokens(Some(3_600), 25, true), now),
            "a day old"
        );
        assert!(
            !ConnectionTokenSource::due(&tokens(Some(3_600), 25, false), now),
            "nothing to refresh with"
        );
        assert!(
            !ConnectionTokenSource::due(&tokens(None, 1, true), now),
            "no expiry said"
        );
        let mut none = tokens(Some(3_600), 1, true);
        none.access = None;
        assert!(ConnectionTokenSource::due(&none, now));
    }
}
