//! Connector status (anyone signed in: it names no accounts), and asking for a sync or
//! running a connector's check (admins).

use crate::api::auth::{Admin, Viewer};
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::Segments;
use crate::api::model::ConnectorView;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use rapport_store::ConnectorStatus;
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connectors))
        .routes(routes!(request_sync))
        .routes(routes!(run_check))
}

fn view(status: ConnectorStatus, unmatched: &BTreeMap<String, i64>) -> ConnectorView {
    let now = Utc::now();
    ConnectorView {
        lag_seconds: status.lag(now).map(|lag| lag.num_seconds()),
        unmatched: unmatched.get(&status.connector).copied().unwrap_or(0),
        id: status.connector,
        state: status.state.as_str().to_owned(),
        events_ingested: status.events_ingested,
        newest_event_at: status.newest_event_at,
        last_attempt_at: status.last_attempt_at,
        last_success_at: status.last_success_at,
        last_error_kind: status.last_error.as_ref().map(|error| error.kind.clone()),
        last_error_at: status.last_error.as_ref().map(|error| error.at),
        last_error_source_id: status
            .last_error
            .as_ref()
            .and_then(|error| error.source_id.clone()),
        last_error: status.last_error.map(|error| error.message),
        last_check_at: status.last_check.as_ref().map(|check| check.at),
        last_check_ok: status.last_check.as_ref().map(|check| check.ok),
        last_check_message: status.last_check.and_then(|check| check.message),
        lease_holder: status.lease_holder,
        lease_expires_at: status.lease_expires_at,
        consecutive_failures: status.consecutive_failures,
        next_run_at: status.next_run_at,
        sync_requested_at: status.sync_requested_at,
    }
}

/// Every connector's sync status.
#[utoipa::path(get, path = "/connectors", tag = "connectors", security(("bearer" = [])),
    responses((status = 200, body = [ConnectorView]), (status = 401, body = Problem)))]
async fn list_connectors(
    State(state): State<AppState>,
    _: Viewer,
) -> ApiResult<Json<Vec<ConnectorView>>> {
    let store = state.engine.store();
    let unmatched: BTreeMap<String, i64> = store.unmatched_counts().await?.into_iter().collect();
    let statuses = store.connector_statuses().await?;
    Ok(Json(
        statuses
            .into_iter()
            .map(|status| view(status, &unmatched))
            .collect(),
    ))
}

/// Asks for a sync of a connector now (admins); whichever node holds its lease runs it.
#[utoipa::path(post, path = "/connectors/{id}/sync", tag = "connectors", security(("bearer" = [])),
    params(("id" = String, Path, description = "Connector id from rapport.toml", max_length = 64)),
    responses((status = 202, body = ConnectorView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn request_sync(
    State(state): State<AppState>,
    _: Admin,
    Segments(id): Segments<String>,
) -> ApiResult<(StatusCode, Json<ConnectorView>)> {
    let store = state.engine.store();
    store.request_sync(&id, Utc::now()).await?;
    crate::audit::action("connector.sync.requested");
    let unmatched: BTreeMap<String, i64> = store.unmatched_counts().await?.into_iter().collect();
    let status = store
        .connector_status(&id)
        .await?
        .ok_or_else(|| rapport_store::Error::UnknownConnector(id.clone()))?;
    Ok((StatusCode::ACCEPTED, Json(view(status, &unmatched))))
}

/// Runs a connector's own check now on this node (admins): its settings and
/// credentials, usually one cheap request to its upstream. The outcome is recorded on
/// its status and returned with it; a failing check is a 200 with `last_check_ok`
/// false.
#[utoipa::path(post, path = "/connectors/{id}/check", tag = "connectors", security(("bearer" = [])),
    params(("id" = String, Path, description = "Connector id from rapport.toml", max_length = 64)),
    responses((status = 200, body = ConnectorView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem)))]
async fn run_check(
    State(state): State<AppState>,
    _: Admin,
    Segments(id): Segments<String>,
) -> ApiResult<Json<ConnectorView>> {
    crate::audit::action("connector.checked");
    match state.engine.check_now(&id).await {
        Ok(_) => {}
        Err(rapport_sync::SyncError::UnknownConnector(_)) => {
            return Err(rapport_store::Error::UnknownConnector(id).into());
        }
        Err(rapport_sync::SyncError::Store(error)) => return Err(error.into()),
        Err(other) => return Err(rapport_store::Error::Conflict(other.to_string()).into()),
    }
    let store = state.engine.store();
    let unmatched: BTreeMap<String, i64> = store.unmatched_counts().await?.into_iter().collect();
    let status = store
        .connector_status(&id)
        .await?
        .ok_or_else(|| rapport_store::Error::UnknownConnector(id.clone()))?;
    Ok(Json(view(status, &unmatched)))
}
