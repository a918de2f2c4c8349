//! Connections: the credentials a connector runs with, the organisation's or one staff
//! member's own. Tokens arrive here already sealed ([`Sealed`], from
//! `rapport_core::secret`): this module stores and hands back sealed values and never
//! sees a token in the clear.
//!
//! Refreshing is serialised across nodes by a lease on the row
//! ([`Store::claim_token_refresh`]); new tokens are stored only by the node holding the
//! claim, and only over the version it read ([`Store::store_refreshed_tokens`]).

use crate::time::{from_us, to_us};
use crate::{Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::StaffId;
use rapport_core::secret::Sealed;
use rapport_core::sharing::{Sharing, person_connector_id};
use std::collections::BTreeMap;

/// A connection's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub i64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    /// It has tokens and syncs.
    Active,
    /// Its grant is gone (a refused refresh): its owner must connect again.
    NeedsReconnect,
    /// Its owner or an admin disconnected it; its tokens are deleted.
    Revoked,
}

impl ConnectionStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReconnect => "needs_reconnect",
            ConnectionStatus::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Result<ConnectionStatus> {
        match text {
            "active" => Ok(ConnectionStatus::Active),
            "needs_reconnect" => Ok(ConnectionStatus::NeedsReconnect),
            "revoked" => Ok(ConnectionStatus::Revoked),
            other => Err(crate::Error::Corrupt(format!(
                "connection status `{other}`"
            ))),
        }
    }
}

/// Which connection a sealed token belongs to: its connector and owner. Tokens are
/// sealed for [`ConnectionKey::seal_context`], so a sealed token copied to another
/// connection or field does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionKey {
    /// The configured connector's id.
    pub connector: String,
    /// Whose it is: `None` for the organisation's.
    pub owner: Option<StaffId>,
}

impl ConnectionKey {
    /// The associated data a token of `field` (`access`, `refresh`) is sealed with.
    pub fn seal_context(&self, field: &str) -> String {
        match self.owner {
            Some(owner) => format!("connection/{}/staff-{}/{field}", self.connector, owner.0),
            None => format!("connection/{}/org/{field}", self.connector),
        }
    }
}

/// A connection as lists and status pages show it: no tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its id.
    pub id: ConnectionId,
    /// Its connector and owner.
    pub key: ConnectionKey,
    /// Where it stands.
    pub status: ConnectionStatus,
    /// Why it needs reconnecting or was revoked.
    pub status_reason: Option<String>,
    /// The account at the provider, when known.
    pub provider_account: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When the current access token expires, if the provider said.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When its tokens were last refreshed.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// Whether it holds a refresh token.
    pub has_refresh_token: bool,
    /// Grows with every new set of tokens.
    pub token_version: i64,
    /// When it was first connected.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The sharing level its events carry now (a person's connection; `Shared` for the
    /// organisation's, whose events carry none).
    pub sharing: Sharing,
    /// The level its owner chose, if they did (the organisation may not let it apply).
    pub sharing_chosen: Option<Sharing>,
}

/// What an authorization (or a reconnect) granted, sealed.
#[derive(Debug, Clone)]
pub struct GrantedTokens {
    /// The access token.
    pub access: Sealed,
    /// When it expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// The refresh token, if the provider issued one.
    pub refresh: Option<Sealed>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The account at the provider, when known.
    pub provider_account: Option<String>,
    /// The sharing level a new connection starts with (a reconnect keeps its own).
    pub sharing: Sharing,
}

/// A connection's sealed tokens, at a version.
#[derive(Debug, Clone)]
pub struct ConnectionTokens {
    /// Its id.
    pub id: ConnectionId,
    /// Its connector and owner (what the tokens are sealed for).
    pub key: ConnectionKey,
    /// Where it stands.
    pub status: ConnectionStatus,
    /// The access token.
    pub access: Option<Sealed>,
    /// When it expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// The refresh token.
    pub refresh: Option<Sealed>,
    /// When the tokens were last refreshed (or granted).
    pub refreshed_at: Option<DateTime<Utc>>,
    /// The version these tokens are.
    pub token_version: i64,
}

/// What a refresh gave, sealed.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    /// The new access token.
    pub access: Sealed,
    /// When it expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// A new refresh token, when the provider rotated it; `None` keeps the old one.
    pub refresh: Option<Sealed>,
}

#[derive(sqlx::FromRow)]
struct ConnectionRow {
    id: i64,
    connector: String,
    owner_staff_id: Option<i64>,
    status: String,
    status_reason: Option<String>,
    provider_account: Option<String>,
    scopes: String,
    access_expires_at_us: Option<i64>,
    refreshed_at_us: Option<i64>,
    has_refresh_token: bool,
    token_version: i64,
    created_at_us: i64,
    updated_at_us: i64,
    sharing: String,
    sharing_chosen: Option<String>,
}

const SELECT_CONNECTION: &str = "SELECT id, connector, owner_staff_id, status, status_reason, \
    provider_account, scopes, access_expires_at_us, refreshed_at_us, \
    (refresh_token_sealed IS NOT NULL) AS has_refresh_token, token_version, created_at_us, \
    updated_at_us, sharing, sharing_chosen FROM connections";

/// A stored sharing level.
fn sharing_of(text: &str) -> Result<Sharing> {
    Sharing::parse(text)
        .ok_or_else(|| crate::Error::Corrupt(format!("connection sharing level `{text}`")))
}

impl ConnectionRow {
    fn into_connection(self) -> Result<Connection> {
        Ok(Connection {
            id: ConnectionId(self.id),
            key: ConnectionKey {
                connector: self.connector,
                owner: self.owner_staff_id.map(StaffId),
            },
            status: ConnectionStatus::parse(&self.status)?,
            status_reason: self.status_reason,
            provider_account: self.provider_account,
            scopes: self.scopes.split_whitespace().map(str::to_owned).collect(),
            access_expires_at: self.access_expires_at_us.map(from_us),
            refreshed_at: self.refreshed_at_us.map(from_us),
            has_refresh_token: self.has_refresh_token,
            token_version: self.token_version,
            created_at: from_us(self.created_at_us),
            updated_at: from_us(self.updated_at_us),
            sharing: sharing_of(&self.sharing)?,
            sharing_chosen: self.sharing_chosen.as_deref().map(sharing_of).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TokensRow {
    id: i64,
    connector: String,
    owner_staff_id: Option<i64>,
    status: String,
    access_token_sealed: Option<String>,
    access_expires_at_us: Option<i64>,
    refresh_token_sealed: Option<String>,
    refreshed_at_us: Option<i64>,
    token_version: i64,
}

const TOKEN_COLUMNS: &str = "id, connector, owner_staff_id, status, access_token_sealed, \
    access_expires_at_us, refresh_token_sealed, refreshed_at_us, token_version";

impl TokensRow {
    fn into_tokens(self) -> Result<ConnectionTokens> {
        Ok(ConnectionTokens {
            id: ConnectionId(self.id),
            key: ConnectionKey {
                connector: self.connector,
                owner: self.owner_staff_id.map(StaffId),
            },
            status: ConnectionStatus::parse(&self.status)?,
            access: self.access_token_sealed.map(Sealed::from_stored),
            access_expires_at: self.access_expires_at_us.map(from_us),
            refresh: self.refresh_token_sealed.map(Sealed::from_stored),
            refreshed_at: self.refreshed_at_us.map(from_us),
            token_version: self.token_version,
        })
    }
}

impl Store {
    /// Stores what an authorization granted for `key`: a new connection, or new tokens
    /// for an existing one (a reconnect), which makes it active again.
    pub async fn grant_connection(
        &self,
        key: &ConnectionKey,
        tokens: GrantedTokens,
        at: DateTime<Utc>,
    ) -> Result<Connection> {
        let scope = if key.owner.is_some() { "person" } else { "org" };
        let scopes = tokens.scopes.join(" ");
        let id: i64 = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let existing: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM connections WHERE connector = $1 AND COALESCE(owner_staff_id, 0) = $2",
            )
            .bind(&key.connector)
            .bind(key.owner.map_or(0, |owner| owner.0))
            .fetch_optional(&mut *tx)
            .await?;
            let id = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE connections SET status = 'active', status_reason = NULL,
                             provider_account = $2, scopes = $3, access_token_sealed = $4,
                             access_expires_at_us = $5, refresh_token_sealed = $6,
                             token_version = token_version + 1, refreshed_at_us = $7,
                             refresh_holder = NULL, refresh_lease_expires_at_us = NULL,
                             updated_at_us = $7
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&tokens.provider_account)
                    .bind(&scopes)
                    .bind(tokens.access.as_str())
                    .bind(tokens.access_expires_at.map(to_us))
                    .bind(tokens.refresh.as_ref().map(Sealed::as_str))
                    .bind(to_us(at))
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => {
                    sqlx::query_scalar(
                        "INSERT INTO connections (connector, scope, owner_staff_id,
                             provider_account, scopes, access_token_sealed, access_expires_at_us,
                             refresh_token_sealed, token_version, refreshed_at_us, created_at_us,
                             updated_at_us, sharing)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9, $9, $10)
                         RETURNING id",
                    )
                    .bind(&key.connector)
                    .bind(scope)
                    .bind(key.owner.map(|owner| owner.0))
                    .bind(&tokens.provider_account)
                    .bind(&scopes)
                    .bind(tokens.access.as_str())
                    .bind(tokens.access_expires_at.map(to_us))
                    .bind(tokens.refresh.as_ref().map(Sealed::as_str))
                    .bind(to_us(at))
                    .bind(tokens.sharing.as_str())
                    .fetch_one(&mut *tx)
                    .await?
                }
            };
            tx.commit().await?;
            id
        });
        self.connection(ConnectionId(id))
            .await?
            .ok_or_else(|| crate::Error::Corrupt(format!("connection {id} vanished")))
    }

    /// One connection, without its tokens.
    pub async fn connection(&self, id: ConnectionId) -> Result<Option<Connection>> {
        let sql = format!("{SELECT_CONNECTION} WHERE id = $1");
        let row: Option<ConnectionRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id.0)
                .fetch_optional(pool)
                .await?
        });
        row.map(ConnectionRow::into_connection).transpose()
    }

    /// Connections, optionally of one connector and of one owner, oldest first.
    pub async fn connections(
        &self,
        connector: Option<&str>,
        owner: Option<StaffId>,
    ) -> Result<Vec<Connection>> {
        let sql = format!(
            "{SELECT_CONNECTION} WHERE ($1 IS NULL OR connector = $1)
             AND ($2 IS NULL OR owner_staff_id = $2) ORDER BY id"
        );
        let rows: Vec<ConnectionRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(connector)
                .bind(owner.map(|owner| owner.0))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(ConnectionRow::into_connection)
            .collect()
    }

    /// A connection's sealed tokens.
    pub async fn connection_tokens(&self, id: ConnectionId) -> Result<Option<ConnectionTokens>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM connections WHERE id = $1");
        let row: Option<TokensRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id.0)
                .fetch_optional(pool)
                .await?
        });
        row.map(TokensRow::into_tokens).transpose()
    }

    /// Claims the right to refresh an active connection's tokens until `lease_until`,
    /// for `holder` (a node). Returns the tokens to refresh from, or `None` when another
    /// holder's claim is still live or the connection is not active. Of several nodes
    /// claiming at once, exactly one gets it.
    pub async fn claim_token_refresh(
        &self,
        id: ConnectionId,
        holder: &str,
        lease_until: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Option<ConnectionTokens>> {
        let sql = format!(
            "UPDATE connections SET refresh_holder = $2, refresh_lease_expires_at_us = $3
             WHERE id = $1 AND status = 'active'
               AND (refresh_holder IS NULL OR refresh_lease_expires_at_us <= $4)
             RETURNING {TOKEN_COLUMNS}"
        );
        let row: Option<TokensRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(id.0)
                .bind(holder)
                .bind(to_us(lease_until))
                .bind(to_us(at))
                .fetch_optional(pool)
                .await?
        });
        row.map(TokensRow::into_tokens).transpose()
    }

    /// Stores refreshed tokens and releases the claim — only if `holder` still holds it
    /// and the tokens are still at `version` (what the claim returned). Returns whether
    /// they were stored; `false` means the claim was lost and the tokens must be thrown
    /// away (another node's are newer).
    pub async fn store_refreshed_tokens(
        &self,
        id: ConnectionId,
        holder: &str,
        version: i64,
        tokens: RefreshedTokens,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let stored = with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connections SET access_token_sealed = $4, access_expires_at_us = $5,
                     refresh_token_sealed = COALESCE($6, refresh_token_sealed),
                     token_version = token_version + 1, refreshed_at_us = $7,
                     refresh_holder = NULL, refresh_lease_expires_at_us = NULL, updated_at_us = $7
                 WHERE id = $1 AND refresh_holder = $2 AND token_version = $3 AND status = 'active'",
            )
            .bind(id.0)
            .bind(holder)
            .bind(version)
            .bind(tokens.access.as_str())
            .bind(tokens.access_expires_at.map(to_us))
            .bind(tokens.refresh.as_ref().map(Sealed::as_str))
            .bind(to_us(at))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(stored == 1)
    }

    /// Releases `holder`'s claim without new tokens. With `reconnect_reason`, the
    /// provider refused the refresh: the connection needs its owner to reconnect, and
    /// its tokens are deleted (they no longer work).
    pub async fn release_token_refresh(
        &self,
        id: ConnectionId,
        holder: &str,
        reconnect_reason: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            match reconnect_reason {
                None => {
                    sqlx::query(
                        "UPDATE connections SET refresh_holder = NULL,
                             refresh_lease_expires_at_us = NULL
                         WHERE id = $1 AND refresh_holder = $2",
                    )
                    .bind(id.0)
                    .bind(holder)
                    .execute(pool)
                    .await?;
                }
                Some(reason) => {
                    sqlx::query(
                        "UPDATE connections SET status = 'needs_reconnect', status_reason = $3,
                             access_token_sealed = NULL, access_expires_at_us = NULL,
                             refresh_token_sealed = NULL, token_version = token_version + 1,
                             refresh_holder = NULL, refresh_lease_expires_at_us = NULL,
                             updated_at_us = $4
                         WHERE id = $1 AND refresh_holder = $2",
                    )
                    .bind(id.0)
                    .bind(holder)
                    .bind(reason)
                    .bind(to_us(at))
                    .execute(pool)
                    .await?;
                }
            }
        });
        Ok(())
    }

    /// Sets the sharing level of a person's connection — `sharing`, what its events
    /// carry from now on, and `chosen`, the owner's own choice if any — and re-stamps
    /// every event it already stored, in one transaction. Page commits read the level
    /// under a shared lock on the row ([`crate::timeline::capture_of`]), so no page
    /// can store events with the old level after this commits. Returns how many stored
    /// events were re-stamped, or `None` when there is no such person's connection.
    pub async fn set_connection_sharing(
        &self,
        id: ConnectionId,
        sharing: Sharing,
        chosen: Option<Sharing>,
        at: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let result = async {
            with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let locked = format!(
                "SELECT connector, owner_staff_id FROM connections WHERE id = $1 AND owner_staff_id IS NOT NULL{}",
                dialect.lock_rows()
            );
            let row: Option<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(locked))
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((connector, owner)) = row else {
                return Ok(None);
            };
            sqlx::query(
                "UPDATE connections SET sharing = $2, sharing_chosen = $3, updated_at_us = $4
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(sharing.as_str())
            .bind(chosen.map(Sharing::as_str))
            .bind(to_us(at))
            .execute(&mut *tx)
            .await?;
            let connector_id = person_connector_id(&connector, StaffId(owner));
            let mut restamped = sqlx::query(
                "UPDATE timeline_events SET sharing = $2, captured_by = $3
                 WHERE connector = $1 AND identity IS NULL AND (sharing IS NULL OR sharing <> $2)",
            )
            .bind(&connector_id)
            .bind(sharing.as_str())
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            // Events seen through other connections too: this one's sightings change,
            // and each event's summary is recomputed over all of its sightings.
            restamped += sqlx::query(
                "UPDATE event_sightings SET sharing = $2, captured_by = $3
                 WHERE connector = $1 AND (sharing IS NULL OR sharing <> $2)",
            )
            .bind(&connector_id)
            .bind(sharing.as_str())
            .bind(owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            crate::sightings::restamp(&mut *tx, crate::sightings::Restamp::SeenBy(&connector_id))
                .await?;
            tx.commit().await?;
            Ok(Some(restamped))
            })
        }
        .await;
        self.observe_write(&result, true);
        result
    }

    /// Disconnects: deletes the tokens and marks the connection revoked. Returns the
    /// tokens it held, for revoking them at the provider.
    pub async fn disconnect(
        &self,
        id: ConnectionId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<ConnectionTokens>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM connections WHERE id = $1");
        let row: Option<TokensRow> = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin().await?;
            let locked = format!("{sql}{}", dialect.lock_rows());
            let row: Option<TokensRow> = sqlx::query_as(sqlx::AssertSqlSafe(locked))
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await?;
            if row.is_some() {
                sqlx::query(
                    "UPDATE connections SET status = 'revoked', status_reason = $2,
                         access_token_sealed = NULL, access_expires_at_us = NULL,
                         refresh_token_sealed = NULL, token_version = token_version + 1,
                         refresh_holder = NULL, refresh_lease_expires_at_us = NULL,
                         updated_at_us = $3
                     WHERE id = $1",
                )
                .bind(id.0)
                .bind(reason)
                .bind(to_us(at))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            row
        });
        row.map(TokensRow::into_tokens).transpose()
    }

    /// How many sealed secrets the database holds, by the id of the key that sealed
    /// them: what a server checks its key ring against before it starts, and what
    /// rotation has left to re-seal.
    pub async fn sealed_secrets_by_key(&self) -> Result<BTreeMap<String, u64>> {
        let rows: Vec<(Option<String>, Option<String>)> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT access_token_sealed, refresh_token_sealed FROM connections
                 WHERE access_token_sealed IS NOT NULL OR refresh_token_sealed IS NOT NULL
                 UNION ALL SELECT verifier_sealed, NULL FROM oauth_flows",
            )
            .fetch_all(pool)
            .await?
        });
        let mut by_key = BTreeMap::new();
        for sealed in rows
            .into_iter()
            .flat_map(|(access, refresh)| [access, refresh])
            .flatten()
        {
            let sealed = Sealed::from_stored(sealed);
            let key = sealed.key_id().unwrap_or("(malformed)").to_owned();
            *by_key.entry(key).or_insert(0) += 1;
        }
        Ok(by_key)
    }

    /// Replaces a connection's sealed tokens with the same tokens sealed again (key
    /// rotation), if they are still at `version`. Returns whether it did.
    pub async fn reseal_connection_tokens(
        &self,
        id: ConnectionId,
        version: i64,
        access: Option<Sealed>,
        refresh: Option<Sealed>,
    ) -> Result<bool> {
        let stored = with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE connections SET access_token_sealed = $3, refresh_token_sealed = $4
                 WHERE id = $1 AND token_version = $2",
            )
            .bind(id.0)
            .bind(version)
            .bind(access.as_ref().map(Sealed::as_str))
            .bind(refresh.as_ref().map(Sealed::as_str))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(stored == 1)
    }
}

/// An authorization in progress (see [`Store::begin_oauth_flow`]).
#[derive(Debug, Clone)]
pub struct OAuthFlow {
    /// Who started it.
    pub staff: StaffId,
    /// The SHA-256 of the browser session's form token it is bound to.
    pub session_hash: String,
    /// The connection it makes.
    pub key: ConnectionKey,
    /// The PKCE verifier, sealed for [`OAuthFlow::seal_context`].
    pub verifier: Sealed,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

impl OAuthFlow {
    /// The associated data a flow's verifier is sealed with: bound to its state.
    pub fn seal_context(state_hash: &str) -> String {
        format!("oauth-flow/{state_hash}/verifier")
    }
}

impl Store {
    /// Records an authorization in progress under the SHA-256 of its `state`; expired
    /// flows are cleared on the way.
    pub async fn begin_oauth_flow(
        &self,
        state_hash: &str,
        flow: &OAuthFlow,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let scope = if flow.key.owner.is_some() {
            "person"
        } else {
            "org"
        };
        with_backend!(self, |pool, dialect| {
            sqlx::query("DELETE FROM oauth_flows WHERE expires_at_us <= $1")
                .bind(to_us(at))
                .execute(pool)
                .await?;
            sqlx::query(
                "INSERT INTO oauth_flows (state_hash, staff_id, session_hash, connector, scope,
                     verifier_sealed, created_at_us, expires_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(state_hash)
            .bind(flow.staff.0)
            .bind(&flow.session_hash)
            .bind(&flow.key.connector)
            .bind(scope)
            .bind(flow.verifier.as_str())
            .bind(to_us(at))
            .bind(to_us(flow.expires_at))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Takes the flow whose state hashes to `state_hash`, once, if `staff` started it in
    /// the session whose form token hashes to `session_hash`: it is deleted as it is
    /// read (so a way back works once), an expired one is `None`, and someone else's
    /// attempt neither gets it nor spends it.
    pub async fn take_oauth_flow(
        &self,
        state_hash: &str,
        staff: StaffId,
        session_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<OAuthFlow>> {
        type FlowRow = (i64, String, String, String, String, i64);
        let row: Option<FlowRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "DELETE FROM oauth_flows WHERE state_hash = $1 AND staff_id = $2 AND session_hash = $3
                 RETURNING staff_id, session_hash, connector, scope, verifier_sealed, expires_at_us",
            )
            .bind(state_hash)
            .bind(staff.0)
            .bind(session_hash)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(
            |(staff, session_hash, connector, scope, verifier, expires)| {
                (expires > to_us(at)).then(|| OAuthFlow {
                    staff: StaffId(staff),
                    session_hash,
                    key: ConnectionKey {
                        connector,
                        owner: (scope == "person").then_some(StaffId(staff)),
                    },
                    verifier: Sealed::from_stored(verifier),
                    expires_at: from_us(expires),
                })
            },
        ))
    }
}
