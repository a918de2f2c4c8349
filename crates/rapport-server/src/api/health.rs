//! Health, needs-attention and revenue, computed on request from the timeline by the
//! rules in `rapport_core::health` and `rapport_core::revenue`.

use crate::api::auth::Viewer;
use crate::api::clamp_limit;
use crate::api::error::{ApiError, ApiResult, Problem};
use crate::api::extract::{Params, Segments};
use crate::api::model::{
    AccountView, HealthView, MrrView, ReasonView, RevenuePointView, RevenueView,
};
use crate::api::policy::require_visible;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Duration, Utc};
use rapport_core::AccountId;
use rapport_core::health::{HEALTH_KINDS, HEALTH_WINDOW_DAYS, Health, assess};
use rapport_core::revenue::{Mrr, revenue};
use rapport_core::timeline::TimelineEvent;
use rapport_store::{Store, TIMELINE_PAGE_MAX, TimelineQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Most events of one family health reads per account; older ones beyond it are
/// ignored (the newest matter most).
const EVENTS_PER_FAMILY_MAX: usize = 5_000;
/// Most accounts one attention list scores; a larger book is narrowed with `staff`.
pub const ATTENTION_ACCOUNTS_MAX: usize = 2_000;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account_health))
        .routes(routes!(account_revenue))
        .routes(routes!(attention))
}

/// An account's events of `prefix` since `since`, newest first, up to the cap.
async fn events_of(
    store: &Store,
    account: AccountId,
    prefix: &str,
    since: Option<DateTime<Utc>>,
) -> ApiResult<Vec<TimelineEvent>> {
    let mut query = TimelineQuery::account(account);
    query.kind_prefix = Some(prefix.to_owned());
    query.from = since;
    query.limit = TIMELINE_PAGE_MAX;
    let mut events = Vec::new();
    loop {
        let page = store.timeline(&query).await?;
        events.extend(page.events);
        match page.next {
            Some(next) if events.len() < EVENTS_PER_FAMILY_MAX => query.after = Some(next),
            _ => break,
        }
    }
    Ok(events)
}

async fn health_of(store: &Store, account: AccountId, now: DateTime<Utc>) -> ApiResult<Health> {
    let since = now - Duration::days(HEALTH_WINDOW_DAYS);
    let mut events = Vec::new();
    for prefix in HEALTH_KINDS {
        // An open ticket matters however old it is.
        let window = (prefix != "support.ticket.created").then_some(since);
        events.extend(events_of(store, account, prefix, window).await?);
    }
    Ok(assess(&events, now))
}

fn health_view(health: Health, at: DateTime<Utc>) -> HealthView {
    HealthView {
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
    require_visible(&state, &viewer, account).await?;
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
    require_visible(&state, &viewer, account).await?;
    let store = state.engine.store();
    let events = events_of(store, account, "billing.subscription", None).await?;
    let revenue = revenue(&events);
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
    if accounts.len() > ATTENTION_ACCOUNTS_MAX {
        return Err(ApiError::Invalid(format!(
            "{} accounts is more than one attention list scores ({ATTENTION_ACCOUNTS_MAX}): narrow it with `staff`",
            accounts.len()
        )));
    }
    let mut scored = Vec::with_capacity(accounts.len());
    for account in accounts {
        let health = health_of(store, account.id, now).await?;
        scored.push((health, account));
    }
    scored.sort_by(|(a, x), (b, y)| a.score.cmp(&b.score).then(x.name.cmp(&y.name)));
    scored.truncate(clamp_limit(params.limit, 20, 200) as usize);
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
