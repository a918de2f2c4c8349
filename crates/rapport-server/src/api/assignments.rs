//! Who owns and supports an account, handoffs (one account, or a person's whole book),
//! and the history that is never lost. Every change is written on the account's
//! timeline as `assignment.changed` by the store.

use crate::api::auth::Viewer;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Body, Segments};
use crate::api::model::AssignmentView;
use crate::api::policy::{Action, authorize, visible_of};
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use rapport_core::assignment::Assignment;
use rapport_core::staff::Staff;
use rapport_core::{AccountId, StaffId};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most accounts one handoff moves.
pub const HANDOFF_ACCOUNTS_MAX: usize = 5_000;
/// Most accounts one handoff may list: a list of 1,000 ids fits well inside a body
/// (`API_BODY_BYTES_MAX`); more go in batches.
pub const HANDOFF_LISTED_MAX: usize = 1_000;

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
    authorize(&state, &viewer, Action::See(account)).await?;
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
    let assignment = change_owner(&state, &viewer, AccountId(id), StaffId(body.staff)).await?;
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
    let account = AccountId(id);
    let to = StaffId(body.staff);
    authorize(&state, &viewer, Action::Assign { account, to }).await?;
    let assignment = state
        .engine
        .store()
        .add_support(account, StaffId(body.staff), Some(viewer.id), Utc::now())
        .await?;
    crate::audit::action("supporter.added");
    crate::audit::change(serde_json::json!({ "account": account.0, "supporter": to.0 }));
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
    let account = AccountId(id);
    let to = StaffId(staff);
    authorize(&state, &viewer, Action::Assign { account, to }).await?;
    let assignment = state
        .engine
        .store()
        .end_support(account, StaffId(staff), Some(viewer.id), Utc::now())
        .await?;
    crate::audit::action("supporter.ended");
    crate::audit::change(serde_json::json!({ "account": account.0, "supporter": to.0 }));
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
    let moved = hand_off(
        &state,
        &viewer,
        StaffId(body.from),
        StaffId(body.to),
        body.accounts
            .map(|ids| ids.into_iter().map(AccountId).collect()),
    )
    .await?;
    Ok(Json(moved.into_iter().map(AssignmentView::from).collect()))
}

/// Hands `from`'s accounts (all, or the `chosen` ones) to `to` in one transaction, if
/// `viewer` may (the API and the web UI both hand off through this).
pub(crate) async fn hand_off(
    state: &AppState,
    viewer: &Staff,
    from: StaffId,
    to: StaffId,
    chosen: Option<Vec<AccountId>>,
) -> ApiResult<Vec<Assignment>> {
    let store = state.engine.store();
    store.staff(from).await?;
    authorize(state, viewer, Action::HandOff { from, to }).await?;
    // Refused for who `to` is, even when nothing would move.
    let recipient = store.staff(to).await?;
    rapport_core::assignment::check_assignable(&recipient.org_node())?;
    if recipient.level == rapport_core::staff::Level::Associate {
        return Err(rapport_core::DomainError::AssociateCannotOwn(to).into());
    }
    // Only what the viewer sees moves, and only that is named: an admin out of an
    // account's line of sight cannot move it or learn that it exists.
    let owned = visible_of(state, viewer, store.owned_accounts(from).await?).await?;
    let accounts = match chosen {
        None => owned,
        Some(chosen) if chosen.len() > HANDOFF_LISTED_MAX => {
            return Err(ApiError::Invalid(format!(
                "{} accounts listed; at most {HANDOFF_LISTED_MAX} at once: pass `accounts` in batches",
                chosen.len()
            )));
        }
        Some(chosen) => {
            for account in &chosen {
                if !owned.contains(account) {
                    // The same words whether it is missing, hidden or someone else's.
                    return Err(ApiError::NotFound(format!(
                        "account {} is not one staff {} owns (or does not exist)",
                        account.0, from.0
                    )));
                }
            }
            chosen
        }
    };
    if accounts.len() > HANDOFF_ACCOUNTS_MAX {
        return Err(ApiError::Invalid(format!(
            "{} accounts is more than one handoff moves ({HANDOFF_ACCOUNTS_MAX}): pass `accounts` in batches",
            accounts.len()
        )));
    }
    crate::audit::action("handoff");
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let moved = store
        .reassign_owners(&accounts, to, Some(viewer.id), Utc::now())
        .await?;
    crate::audit::change(serde_json::json!({
        "owner": { "before": from.0, "after": to.0 },
        "accounts": accounts.iter().map(|account| account.0).collect::<Vec<_>>(),
    }));
    Ok(moved)
}

/// Makes `owner` the owner of a visible account, if `viewer` may hand it to them.
pub(crate) async fn change_owner(
    state: &AppState,
    viewer: &Staff,
    account: AccountId,
    owner: StaffId,
) -> ApiResult<Assignment> {
    authorize(state, viewer, Action::Assign { account, to: owner }).await?;
    let store = state.engine.store();
    let before = store.account(account).await?.owner;
    let assignment = store
        .reassign_owner(account, owner, Some(viewer.id), Utc::now())
        .await?;
    crate::audit::action("owner.changed");
    crate::audit::change(serde_json::json!({
        "account": account.0,
        "owner": { "before": before.map(|staff| staff.0), "after": owner.0 },
    }));
    Ok(assignment)
}
