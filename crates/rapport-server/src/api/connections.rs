//! Connections over the API: list yours (admins: everyone's, or one person's) and
//! disconnect one — its tokens deleted and its grant revoked at the provider. Making a
//! connection needs a browser (the provider's sign-in and consent): the web UI's
//! Connections page. No answer ever holds a token.

use crate::api::auth::Viewer;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Body, Params, Segments};
use crate::api::model::SharingName;
use crate::app::authorize;
use crate::connections::ConnectError;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use rapport_core::StaffId;
use rapport_core::permission::Action;
use rapport_store::{Connection, ConnectionId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connections))
        .routes(routes!(disconnect))
        .routes(routes!(choose_sharing))
}

/// A connection: the credentials one connector runs with (never the tokens).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    /// Id.
    pub id: i64,
    /// The connector it is for.
    pub connector: String,
    /// Whose it is: the staff member's id, or none for the organisation's.
    pub owner: Option<i64>,
    /// `active`, `needs_reconnect` (its owner must connect again) or `revoked`.
    pub status: String,
    /// Why it needs reconnecting or was revoked.
    pub status_reason: Option<String>,
    /// The account at the provider, when known.
    pub provider_account: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// When the current access token expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// When its tokens were last refreshed.
    pub refreshed_at: Option<DateTime<Utc>>,
    /// When it was first connected.
    pub created_at: DateTime<Utc>,
    /// For a person's connection: how widely what it captures is shared now.
    pub sharing: Option<SharingName>,
    /// For a person's connection: the level its owner chose, if any (the
    /// organisation's applies otherwise, or where it lets nobody choose).
    pub sharing_chosen: Option<SharingName>,
}

impl From<Connection> for ConnectionView {
    fn from(connection: Connection) -> Self {
        ConnectionView {
            id: connection.id.0,
            connector: connection.key.connector,
            owner: connection.key.owner.map(|owner| owner.0),
            status: connection.status.as_str().to_owned(),
            status_reason: connection.status_reason,
            provider_account: connection.provider_account,
            scopes: connection.scopes,
            access_expires_at: connection.access_expires_at,
            refreshed_at: connection.refreshed_at,
            created_at: connection.created_at,
            sharing: connection.key.owner.map(|_| connection.sharing.into()),
            sharing_chosen: connection.sharing_chosen.map(Into::into),
        }
    }
}

/// Whose connections.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ConnectionParams {
    /// Another person's (admins only); default: yours.
    staff: Option<i64>,
    /// Every connection, the organisation's included (admins only).
    #[serde(default)]
    all: bool,
}

/// Your connections (an admin may ask for someone else's, or all of them), oldest
/// first.
#[utoipa::path(get, path = "/connections", tag = "connections", security(("bearer" = [])), params(ConnectionParams),
    responses((status = 200, body = [ConnectionView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_connections(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Params(params): Params<ConnectionParams>,
) -> ApiResult<Json<Vec<ConnectionView>>> {
    let store = state.engine.store();
    let owner = StaffId(params.staff.unwrap_or(viewer.id.0));
    if params.all || owner != viewer.id {
        authorize(store, &viewer, Action::Administer).await?;
    }
    let connections = if params.all {
        store.connections(None, None).await?
    } else {
        store.connections(None, Some(owner)).await?
    };
    Ok(Json(
        connections.into_iter().map(ConnectionView::from).collect(),
    ))
}

/// Disconnects a connection (yours; admins: anyone's): its tokens are deleted and its
/// grant revoked at the provider where the provider allows.
#[utoipa::path(delete, path = "/connections/{id}", tag = "connections", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Connection id")),
    responses((status = 200, body = ConnectionView), (status = 401, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
async fn disconnect(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<ConnectionView>> {
    let store = state.engine.store();
    state
        .connections
        .disconnect(
            store,
            ConnectionId(id),
            viewer.id,
            viewer.permissions.may_administer(),
            &viewer.email.to_string(),
        )
        .await
        .map_err(|error| match error {
            ConnectError::Unknown(_) => ApiError::NotFound(format!("there is no connection {id}")),
            ConnectError::Store(error) => error.into(),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    state.connections.follow(&state.engine).await;
    crate::audit::action("connection.disconnected");
    crate::audit::change(serde_json::json!({ "connection": id }));
    let connection = store
        .connection(ConnectionId(id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("there is no connection {id}")))?;
    Ok(Json(connection.into()))
}

/// A person's choice of sharing level for their own connection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SharingChoice {
    /// The level; absent or `null` for the organisation's.
    #[serde(default)]
    sharing: Option<SharingName>,
}

/// Chooses how widely what your own connection captured is shared: from now on, and
/// for what it captured before. Only where the organisation lets people choose (403
/// otherwise); someone else's connection is 404.
#[utoipa::path(put, path = "/connections/{id}/sharing", tag = "connections", security(("bearer" = [])),
    request_body = SharingChoice, params(("id" = i64, Path, description = "Connection id")),
    responses((status = 200, body = ConnectionView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn choose_sharing(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<SharingChoice>,
) -> ApiResult<Json<ConnectionView>> {
    let chosen = body.sharing;
    let connection = state
        .connections
        .choose_sharing(
            state.engine.store(),
            ConnectionId(id),
            viewer.id,
            chosen.map(Into::into),
        )
        .await
        .map_err(|error| match error {
            ConnectError::Unknown(_) => ApiError::NotFound(format!("there is no connection {id}")),
            ConnectError::Forbidden(why) => ApiError::Forbidden(why),
            ConnectError::Store(error) => error.into(),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    state.connections.follow(&state.engine).await;
    crate::audit::action("connection.sharing_changed");
    crate::audit::change(serde_json::json!({
        "connection": id,
        "sharing": chosen,
    }));
    Ok(Json(connection.into()))
}
