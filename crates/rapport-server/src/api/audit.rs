//! The audit trail, for admins: sign-ins and failed attempts, tokens made and revoked,
//! and every write through the API or the web UI, newest first.

use crate::api::auth::Admin;
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::Params;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use rapport_core::StaffId;
use rapport_store::{AUDIT_PAGE_MAX, AuditEntry, AuditQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_trail))
}

/// Filters and paging for the trail.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only what this member of staff did.
    #[param(minimum = 1)]
    actor: Option<i64>,
    /// Only actions equal to or under this one (`signin` covers `signin.failed`).
    #[param(max_length = 64)]
    action: Option<String>,
    /// Page size (default 100, at most 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(max_length = 512)]
    cursor: Option<String>,
}

/// One entry of the trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntryView {
    /// Id; later entries have larger ids.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who (absent for a failed sign-in).
    pub actor: Option<i64>,
    /// What: `signin.password`, `signin.link`, `signin.failed`, `signin.link.failed`,
    /// `signout`, `token.created`, `token.revoked`, `owner.changed`, `handoff`,
    /// `account.restructured`, ..., or `write`.
    pub action: String,
    /// Through what: `api`, `web` or `cli`.
    pub surface: String,
    /// About what: the request, or the email a sign-in named.
    pub target: Option<String>,
    /// The client's address.
    pub address: Option<String>,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// Before and after, for changes of ownership and structure.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        AuditEntryView {
            id: entry.id,
            at: entry.at,
            actor: entry.entry.actor.map(|actor| actor.0),
            action: entry.entry.action,
            surface: entry.entry.surface,
            target: entry.entry.target,
            address: entry.entry.address,
            status: entry.entry.status,
            detail: entry.entry.detail,
        }
    }
}

/// A page of the trail.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntryView>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    pub next: Option<String>,
}

/// The audit trail, newest first (admins only).
#[utoipa::path(get, path = "/audit", tag = "audit", security(("bearer" = [])), params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
async fn audit_trail(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Params(params): Params<AuditParams>,
) -> ApiResult<Json<AuditPage>> {
    let listing = format!("audit:{}", admin.id.0);
    let before: Option<i64> = params
        .cursor
        .as_deref()
        // Empty is "from the top", as leaving it out is.
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| state.cursors.verify(&listing, cursor))
        .transpose()?;
    let limit = crate::api::page_limit(params.limit, 100, AUDIT_PAGE_MAX)?;
    let entries = state
        .engine
        .store()
        .audit_entries(&AuditQuery {
            before,
            actor: params.actor.map(StaffId),
            action: params.action.filter(|action| !action.is_empty()),
            limit,
        })
        .await?;
    let next = (entries.len() == limit as usize)
        .then(|| {
            entries
                .last()
                .map(|entry| state.cursors.sign(&listing, &entry.id))
        })
        .flatten();
    Ok(Json(AuditPage {
        entries: entries.into_iter().map(AuditEntryView::from).collect(),
        next,
    }))
}
