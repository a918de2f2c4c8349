//! Staff: the directory, the org chart, and (for admins) hiring, changes and leaving.

use crate::api::auth::{Admin, Viewer};
use crate::api::error::ApiResult;
use crate::api::extract::{Body, Segments};
use crate::api::model::{LevelName, OrgChartNode, StaffView};
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use rapport_core::StaffId;
use rapport_core::account::EmailAddress;
use rapport_core::staff::{NewStaff, Staff};
use rapport_store::StaffUpdate;
use serde::Deserialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(list_staff, create_staff))
        .routes(routes!(get_staff, update_staff))
        .routes(routes!(deactivate_staff))
        .routes(routes!(direct_reports))
        .routes(routes!(org_chart))
}

/// Who the token acts for.
#[utoipa::path(get, path = "/me", tag = "staff", security(("bearer" = [])),
    responses((status = 200, body = StaffView), (status = 401, body = crate::api::error::Problem)))]
async fn me(Viewer(viewer): Viewer) -> Json<StaffView> {
    Json(viewer.staff.into())
}

/// Everyone on the staff, including those who have left.
#[utoipa::path(get, path = "/staff", tag = "staff", security(("bearer" = [])),
    responses((status = 200, body = [StaffView]), (status = 401, body = crate::api::error::Problem)))]
async fn list_staff(State(state): State<AppState>, _: Viewer) -> ApiResult<Json<Vec<StaffView>>> {
    let staff = state.engine.store().list_staff().await?;
    Ok(Json(staff.into_iter().map(StaffView::from).collect()))
}

/// A new member of staff.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewStaffBody {
    /// Display name.
    #[schema(schema_with = crate::api::formats::name)]
    name: String,
    /// Work email (unique).
    #[schema(schema_with = crate::api::formats::email)]
    email: String,
    /// Seniority.
    level: LevelName,
    /// Their manager: more senior; none for a VP.
    #[serde(default)]
    reports_to: Option<i64>,
    /// May administer rapport.
    #[serde(default)]
    is_admin: bool,
}

/// Adds someone to the staff (admins only).
#[utoipa::path(post, path = "/staff", tag = "staff", security(("bearer" = [])), request_body = NewStaffBody,
    responses((status = 201, body = StaffView), (status = 401, body = crate::api::error::Problem),
        (status = 403, body = crate::api::error::Problem), (status = 409, body = crate::api::error::Problem),
        (status = 422, body = crate::api::error::Problem)))]
async fn create_staff(
    State(state): State<AppState>,
    _: Admin,
    Body(body): Body<NewStaffBody>,
) -> ApiResult<(StatusCode, Json<StaffView>)> {
    let new = NewStaff {
        name: body.name,
        email: EmailAddress::parse(&body.email)?,
        level: body.level.into(),
        reports_to: body.reports_to.map(StaffId),
        is_admin: body.is_admin,
    };
    let staff = state.engine.store().create_staff(new, Utc::now()).await?;
    crate::audit::action("staff.created");
    crate::audit::change(serde_json::json!({ "after": crate::audit::staff_shape(&staff) }));
    Ok((StatusCode::CREATED, Json(staff.into())))
}

/// One member of staff.
#[utoipa::path(get, path = "/staff/{id}", tag = "staff", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Staff id")),
    responses((status = 200, body = StaffView), (status = 401, body = crate::api::error::Problem),
        (status = 404, body = crate::api::error::Problem)))]
async fn get_staff(
    State(state): State<AppState>,
    _: Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<StaffView>> {
    Ok(Json(state.engine.store().staff(StaffId(id)).await?.into()))
}

/// Changes to a member of staff; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaffPatch {
    /// New display name.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_name)]
    name: Option<String>,
    /// New work email.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_email)]
    email: Option<String>,
    /// New level.
    #[serde(default)]
    level: Option<LevelName>,
    /// New manager; `null` for nobody.
    #[serde(default, deserialize_with = "crate::api::extract::present")]
    #[schema(value_type = Option<i64>)]
    reports_to: Option<Option<i64>>,
    /// Grant or withdraw admin.
    #[serde(default)]
    is_admin: Option<bool>,
}

/// Changes a member of staff (admins only), keeping the hierarchy valid.
#[utoipa::path(patch, path = "/staff/{id}", tag = "staff", security(("bearer" = [])), request_body = StaffPatch,
    params(("id" = i64, Path, description = "Staff id")),
    responses((status = 200, body = StaffView), (status = 401, body = crate::api::error::Problem),
        (status = 403, body = crate::api::error::Problem), (status = 404, body = crate::api::error::Problem),
        (status = 409, body = crate::api::error::Problem), (status = 422, body = crate::api::error::Problem)))]
async fn update_staff(
    State(state): State<AppState>,
    _: Admin,
    Segments(id): Segments<i64>,
    Body(body): Body<StaffPatch>,
) -> ApiResult<Json<StaffView>> {
    let update = StaffUpdate {
        name: body.name,
        email: body.email.as_deref().map(EmailAddress::parse).transpose()?,
        level: body.level.map(Into::into),
        reports_to: body.reports_to.map(|manager| manager.map(StaffId)),
        is_admin: body.is_admin,
    };
    let store = state.engine.store();
    let before = store.staff(StaffId(id)).await?;
    let staff = store.update_staff(StaffId(id), update, Utc::now()).await?;
    crate::audit::action("staff.updated");
    crate::audit::change(serde_json::json!({
        "before": crate::audit::staff_shape(&before),
        "after": crate::audit::staff_shape(&staff),
    }));
    Ok(Json(staff.into()))
}

/// Marks someone as having left (admins only). Refused while they own accounts or have
/// reports: reassign those first (`POST /api/v1/assignments/handoff`).
#[utoipa::path(post, path = "/staff/{id}/deactivate", tag = "staff", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Staff id")),
    responses((status = 200, body = StaffView), (status = 401, body = crate::api::error::Problem),
        (status = 403, body = crate::api::error::Problem), (status = 404, body = crate::api::error::Problem),
        (status = 409, body = crate::api::error::Problem)))]
async fn deactivate_staff(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<StaffView>> {
    let staff = state
        .engine
        .store()
        .deactivate_staff(StaffId(id), Some(admin.id), Utc::now())
        .await?;
    crate::audit::action("staff.deactivated");
    crate::audit::change(serde_json::json!({ "after": crate::audit::staff_shape(&staff) }));
    Ok(Json(staff.into()))
}

/// The people reporting directly to someone.
#[utoipa::path(get, path = "/staff/{id}/reports", tag = "staff", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Staff id")),
    responses((status = 200, body = [StaffView]), (status = 401, body = crate::api::error::Problem),
        (status = 404, body = crate::api::error::Problem)))]
async fn direct_reports(
    State(state): State<AppState>,
    _: Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<Vec<StaffView>>> {
    let store = state.engine.store();
    store.staff(StaffId(id)).await?;
    let reports = store
        .list_staff()
        .await?
        .into_iter()
        .filter(|staff| staff.reports_to == Some(StaffId(id)))
        .map(StaffView::from)
        .collect();
    Ok(Json(reports))
}

/// The reporting structure of active staff, from the VP down.
#[utoipa::path(get, path = "/org-chart", tag = "staff", security(("bearer" = [])),
    responses((status = 200, body = [OrgChartNode]), (status = 401, body = crate::api::error::Problem)))]
async fn org_chart(State(state): State<AppState>, _: Viewer) -> ApiResult<Json<Vec<OrgChartNode>>> {
    let staff: Vec<Staff> = state
        .engine
        .store()
        .list_staff()
        .await?
        .into_iter()
        .filter(|staff| staff.active)
        .collect();
    let mut by_manager: BTreeMap<Option<StaffId>, Vec<Staff>> = BTreeMap::new();
    for person in staff {
        by_manager
            .entry(person.reports_to)
            .or_default()
            .push(person);
    }
    fn build(
        person: Staff,
        by_manager: &mut BTreeMap<Option<StaffId>, Vec<Staff>>,
    ) -> OrgChartNode {
        let reports = by_manager.remove(&Some(person.id)).unwrap_or_default();
        OrgChartNode {
            reports: reports
                .into_iter()
                .map(|report| build(report, by_manager))
                .collect(),
            staff: person.into(),
        }
    }
    let roots = by_manager.remove(&None).unwrap_or_default();
    Ok(Json(
        roots
            .into_iter()
            .map(|root| build(root, &mut by_manager))
            .collect(),
    ))
}
