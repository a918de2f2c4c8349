//! The unmatched inbox: events no account claims yet, and placing them — optionally
//! teaching the account the domain, contact or external id that would have matched.

use crate::api::auth::Viewer;
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::{Body, Params, Segments};
use crate::api::model::{EventPage, EventView};
use crate::api::page_limit;
use crate::app::authorize;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use rapport_core::account::{Domain, EmailAddress, ExternalId};
use rapport_core::permission::Action;
use rapport_core::timeline::TimelineCursor;
use rapport_core::{AccountId, EventId};
use rapport_store::{Learn, Reader, TIMELINE_PAGE_MAX};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_inbox))
        .routes(routes!(place))
}

/// Inbox filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct InboxParams {
    /// Only this connector's events.
    #[param(max_length = 64, pattern = r"^[a-z0-9_-]{0,64}$")]
    source: Option<String>,
    /// Page size (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(max_length = 512)]
    cursor: Option<String>,
}

/// Events waiting for a person to say which account they belong to, newest first
/// (managers and above, and admins).
#[utoipa::path(get, path = "/inbox", tag = "inbox", security(("bearer" = [])), params(InboxParams),
    responses((status = 200, body = EventPage), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)))]
async fn list_inbox(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Params(params): Params<InboxParams>,
) -> ApiResult<Json<EventPage>> {
    authorize(state.engine.store(), &viewer, Action::Triage).await?;
    let listing = format!("inbox:{}", viewer.id.0);
    let after: Option<TimelineCursor> = params
        .cursor
        .as_deref()
        // Empty is "from the top", as leaving it out is.
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| state.cursors.verify(&listing, cursor))
        .transpose()?;
    let source = params.source.as_deref().filter(|source| !source.is_empty());
    if let Some(source) = source {
        rapport_core::timeline::validate_connector_id(source)?;
    }
    let mut page = state
        .engine
        .store()
        .unmatched_events(
            Reader::Staff(viewer.id),
            source,
            after,
            page_limit(params.limit, 50, TIMELINE_PAGE_MAX)?,
        )
        .await?;
    for event in &mut page.events {
        crate::app::visible_candidates(state.engine.store(), &viewer, event).await?;
    }
    Ok(Json(EventPage {
        events: page.events.into_iter().map(EventView::from).collect(),
        next: page.next.map(|next| state.cursors.sign(&listing, &next)),
    }))
}

/// A hint to add to the account so the next event like this one matches by itself.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum LearnBody {
    /// One of the client's domains, e.g. `acme.example`.
    Domain(#[schema(inline)] crate::api::formats::DomainText),
    /// A person at the client, by email.
    Contact(#[schema(inline)] crate::api::formats::EmailText),
    /// The client's id in another system, as `system:id`.
    ExternalId(#[schema(inline)] crate::api::formats::ExternalIdText),
}

/// Where to place an unmatched event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Placement {
    /// The account (one you can see).
    account: i64,
    /// Also add this to the account, so similar events match from now on (waiting ones
    /// are placed at once).
    #[serde(default)]
    learn: Option<LearnBody>,
}

/// Places an unmatched event on an account, as your decision (later syncs of the event
/// keep it there).
#[utoipa::path(post, path = "/inbox/{id}/place", tag = "inbox", security(("bearer" = [])), request_body = Placement,
    params(("id" = i64, Path, description = "Event id")),
    responses((status = 200, body = EventView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn place(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<Placement>,
) -> ApiResult<Json<EventView>> {
    let placed = crate::app::place_event(
        state.engine.store(),
        &viewer,
        EventId(id),
        AccountId(body.account),
        body.learn.map(LearnBody::parse).transpose()?,
    )
    .await?;
    Ok(Json(placed.into()))
}

impl LearnBody {
    /// The hint, parsed.
    pub(crate) fn parse(self) -> ApiResult<Learn> {
        Ok(match self {
            LearnBody::Domain(domain) => Learn::Domain(Domain::parse(&domain.0)?),
            LearnBody::Contact(email) => Learn::Contact(EmailAddress::parse(&email.0)?),
            LearnBody::ExternalId(id) => Learn::ExternalId(id.0.parse::<ExternalId>()?),
        })
    }
}
