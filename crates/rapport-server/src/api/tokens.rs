//! API tokens over the API: make, list and revoke your own; admins manage anyone's.
//! A token's secret is shown once, at creation; only its hash is stored.

use crate::api::auth::Viewer;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Body, Params, Segments};
use crate::api::model::{IssuedTokenView, TokenView};
use crate::app::authorize;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{Duration, Utc};
use rapport_core::permission::Action;
use rapport_core::{DomainError, StaffId};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Longest a token made over the API may live.
pub const TOKEN_DAYS_MAX: u32 = 366;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

/// Whose tokens.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenParams {
    /// Another person's (admins only); default: yours.
    staff: Option<i64>,
}

/// Your tokens (an admin may ask for someone else's), newest first.
#[utoipa::path(get, path = "/tokens", tag = "tokens", security(("bearer" = [])), params(TokenParams),
    responses((status = 200, body = [TokenView]), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn list_tokens(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Params(params): Params<TokenParams>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let staff = StaffId(params.staff.unwrap_or(viewer.id.0));
    if staff != viewer.id {
        authorize(state.engine.store(), &viewer, Action::Administer).await?;
    }
    let tokens = state.engine.store().api_tokens(Some(staff)).await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// A token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenBody {
    /// What it is for, e.g. `laptop` or `weekly report script`.
    #[schema(schema_with = crate::api::formats::name)]
    name: String,
    /// Days until it stops working (1..=366; default 90).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 366)]
    expires_in_days: Option<u32>,
    /// Make it for someone else (admins only).
    #[serde(default)]
    staff: Option<i64>,
}

/// Makes a token. Its secret is in this response and nowhere else, ever.
#[utoipa::path(post, path = "/tokens", tag = "tokens", security(("bearer" = [])), request_body = NewTokenBody,
    responses((status = 201, body = IssuedTokenView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_token(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Body(body): Body<NewTokenBody>,
) -> ApiResult<(StatusCode, Json<IssuedTokenView>)> {
    let staff = StaffId(body.staff.unwrap_or(viewer.id.0));
    if staff != viewer.id {
        authorize(state.engine.store(), &viewer, Action::Administer).await?;
    }
    let days = body.expires_in_days.unwrap_or(90);
    if !(1..=TOKEN_DAYS_MAX).contains(&days) {
        return Err(ApiError::Invalid(format!(
            "expires_in_days must be 1 to {TOKEN_DAYS_MAX}, not {days}"
        )));
    }
    let now = Utc::now();
    let issued = state
        .engine
        .store()
        .create_api_token(
            staff,
            &body.name,
            Some(now + Duration::days(days.into())),
            now,
        )
        .await?;
    crate::audit::action("token.created");
    crate::audit::change(serde_json::json!({
        "token": issued.token.id,
        "name": issued.token.name,
        "for": staff.0,
        "prefix": issued.token.display_prefix,
    }));
    Ok((
        StatusCode::CREATED,
        Json(IssuedTokenView {
            token: issued.token.into(),
            secret: issued.secret,
        }),
    ))
}

/// Revokes a token at once (yours; admins: anyone's).
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, body = TokenView), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn revoke_token(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<TokenView>> {
    let store = state.engine.store();
    if !viewer.permissions.may_administer() {
        // Someone else's token looks like no token.
        let own = store.api_tokens(Some(viewer.id)).await?;
        if !own.iter().any(|token| token.id == id) {
            return Err(DomainError::UnknownToken(id).into());
        }
    }
    let token = store.revoke_api_token(id, Utc::now()).await?;
    crate::audit::action("token.revoked");
    crate::audit::change(serde_json::json!({
        "token": token.id,
        "name": token.name,
        "for": token.staff.0,
        "prefix": token.display_prefix,
    }));
    Ok(Json(token.into()))
}
