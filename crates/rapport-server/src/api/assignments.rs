//! Who owns and supports an account, handoffs (one account, or a person's whole book),
//! and the history that is never lost. Every change is written on the account's
//! timeline as `assignment.changed` by the store.

use crate::api::auth::Viewer;
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::{Body, Segments};
use crate::api::model::AssignmentView;
use crate::app::authorize;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use rapport_core::permission::Action;
use rapport_core::{AccountId, StaffId};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(history))
        .routes(routes!(set_owner))
        .routes(routes!(add_supporter))
        .routes(routes!(end_support))
        .routes(routes!(handoff))
}

/// An account's assignment history, oldest first.
#[utoipa::path(get, path = "/accounts/{id}/assignments", tag = "assignments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = [AssignmentView]), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn history(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<Vec<AssignmentView>>> {
    let account = AccountId(id);
    authorize(state.engine.store(), &viewer, Action::See(account)).await?;
    let rows = state.engine.store().assignment_history(account).await?;
    Ok(Json(rows.into_iter().map(AssignmentView::from).collect()))
}

/// A member of staff to assign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaffRef {
    /// Their staff id.
    staff: i64,
}

/// Hands an account to a new owner (a manager, director or VP); the old ownership ends
/// now.
#[utoipa::path(put, path = "/accounts/{id}/owner", tag = "assignments", security(("bearer" = [])), request_body = StaffRef,
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = AssignmentView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn set_owner(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<StaffRef>,
) -> ApiResult<Json<AssignmentView>> {
    let assignment = crate::app::change_owner(
        state.engine.store(),
        &viewer,
        AccountId(id),
        StaffId(body.staff),
    )
    .await?;
    Ok(Json(assignment.into()))
}

/// Adds a supporter to an account.
#[utoipa::path(post, path = "/accounts/{id}/supporters", tag = "assignments", security(("bearer" = [])), request_body = StaffRef,
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 201, body = AssignmentView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn add_supporter(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<StaffRef>,
) -> ApiResult<(StatusCode, Json<AssignmentView>)> {
    let assignment = crate::app::change_support(
        state.engine.store(),
        &viewer,
        AccountId(id),
        StaffId(body.staff),
        true,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(assignment.into())))
}

/// Ends someone's support of an account.
#[utoipa::path(delete, path = "/accounts/{id}/supporters/{staff}", tag = "assignments", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), ("staff" = i64, Path, description = "Staff id")),
    responses((status = 200, body = AssignmentView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn end_support(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments((id, staff)): Segments<(i64, i64)>,
) -> ApiResult<Json<AssignmentView>> {
    let assignment = crate::app::change_support(
        state.engine.store(),
        &viewer,
        AccountId(id),
        StaffId(staff),
        false,
    )
    .await?;
    Ok(Json(assignment.into()))
}

/// A bulk handoff.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Handoff {
    /// The current owner (e.g. someone leaving).
    from: i64,
    /// The new owner.
    to: i64,
    /// Only these of `from`'s accounts (at most 1,000 at once); absent: all of them.
    #[serde(default)]
    #[schema(max_items = 1000)]
    accounts: Option<Vec<i64>>,
}

/// Hands accounts owned by one person to another in one transaction: all move, or none
/// does (e.g. everything of a departing manager).
#[utoipa::path(post, path = "/assignments/handoff", tag = "assignments", security(("bearer" = [])), request_body = Handoff,
    responses((status = 200, body = [AssignmentView]), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn handoff(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Body(body): Body<Handoff>,
) -> ApiResult<Json<Vec<AssignmentView>>> {
    let moved = crate::app::hand_off(
        state.engine.store(),
        &viewer,
        StaffId(body.from),
        StaffId(body.to),
        body.accounts
            .map(|ids| ids.into_iter().map(AccountId).collect()),
    )
    .await?;
    Ok(Json(moved.into_iter().map(AssignmentView::from).collect()))
}
