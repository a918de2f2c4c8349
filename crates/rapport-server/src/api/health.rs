//! Health, needs-attention and revenue, as `crate::insight` reads them.

use crate::api::auth::Viewer;
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::{Params, Segments};
use crate::api::model::{
    AccountView, HealthView, MrrView, ReasonView, RevenuePointView, RevenueView,
};
use crate::api::page_limit;
use crate::app::authorize;
use crate::http::AppState;
use crate::insight::{Vitals, by_attention, health_of, revenue_of};
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use rapport_core::AccountId;
use rapport_core::permission::Action;
use rapport_core::revenue::Mrr;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account_health))
        .routes(routes!(account_revenue))
        .routes(routes!(attention))
}

fn health_view(vitals: Vitals, at: DateTime<Utc>) -> HealthView {
    let health = vitals.health;
    HealthView {
        last_contact: vitals.last_contact,
        next_meeting: vitals.next_meeting,
        score: health.score,
        band: health.band.as_str().to_owned(),
        reasons: health
            .reasons
            .into_iter()
            .map(|reason| ReasonView {
                code: reason.code.to_owned(),
                points: reason.points,
                detail: reason.detail,
            })
            .collect(),
        computed_at: at,
    }
}

/// An account's health: a score from 0 to 100 with the reasons that took points off.
#[utoipa::path(get, path = "/accounts/{id}/health", tag = "health", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = HealthView), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn account_health(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<HealthView>> {
    let account = AccountId(id);
    authorize(state.engine.store(), &viewer, Action::See(account)).await?;
    let now = Utc::now();
    let health = health_of(state.engine.store(), account, now).await?;
    Ok(Json(health_view(health, now)))
}

fn mrr_views(totals: Vec<Mrr>) -> Vec<MrrView> {
    totals
        .into_iter()
        .map(|mrr| MrrView {
            currency: mrr.currency,
            minor_units: mrr.minor_units,
        })
        .collect()
}

/// An account's MRR per currency, its history, plans and renewal, from billing events.
#[utoipa::path(get, path = "/accounts/{id}/revenue", tag = "health", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = RevenueView), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn account_revenue(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<RevenueView>> {
    let account = AccountId(id);
    authorize(state.engine.store(), &viewer, Action::See(account)).await?;
    let store = state.engine.store();
    let revenue = revenue_of(store, account).await?;
    let renewal_date = store.account(account).await?.renewal_date;
    Ok(Json(RevenueView {
        mrr: mrr_views(revenue.mrr),
        history: revenue
            .history
            .into_iter()
            .map(|point| RevenuePointView {
                at: point.at,
                mrr: mrr_views(point.totals),
            })
            .collect(),
        plans: revenue.plans,
        subscriptions: revenue.subscriptions,
        renewal_date: renewal_date.or(revenue.renews_at.map(|at| at.date_naive())),
    }))
}

/// Which accounts to score.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AttentionParams {
    /// Only accounts this staff member owns or supports (within what you see).
    staff: Option<i64>,
    /// How many (default 20, at most 200), lowest score first.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// One account in the attention list.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AttentionItem {
    /// The account.
    account: AccountView,
    /// Its health.
    health: HealthView,
}

/// The viewer's book, lowest health first, each account with its reasons: what needs
/// attention today.
#[utoipa::path(get, path = "/attention", tag = "health", security(("bearer" = [])), params(AttentionParams),
    responses((status = 200, body = [AttentionItem]), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn attention(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Params(params): Params<AttentionParams>,
) -> ApiResult<Json<Vec<AttentionItem>>> {
    let store = state.engine.store();
    let now = Utc::now();
    let visible: Vec<AccountId> = store
        .visible_account_ids(viewer.id, now)
        .await?
        .into_iter()
        .collect();
    let mut accounts = store.accounts(&visible).await?;
    if let Some(staff) = params.staff {
        let staff = rapport_core::StaffId(staff);
        accounts
            .retain(|account| account.owner == Some(staff) || account.supporters.contains(&staff));
    }
    let limit = page_limit(params.limit, 20, 200)? as usize;
    let mut scored = by_attention(store, accounts, now).await?;
    scored.truncate(limit);
    Ok(Json(
        scored
            .into_iter()
            .map(|(health, account)| AttentionItem {
                account: account.into(),
                health: health_view(health, now),
            })
            .collect(),
    ))
}
