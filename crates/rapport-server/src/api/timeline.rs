//! The unified timeline: one account's (optionally with its subsidiaries), the feed
//! across a viewer's whole book, and what staff write on it — notes and tasks.

use crate::api::auth::Viewer;
use crate::api::error::{ApiResult, Problem};
use crate::api::extract::{Body, Params, Segments};
use crate::api::model::{EventPage, EventView};
use crate::api::page_limit;
use crate::app::authorize;
use crate::http::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::permission::Action;
use rapport_core::timeline::TimelineCursor;
use rapport_core::{AccountId, EventId, StaffId};
use rapport_store::{FeedQuery, NewTask, Reader, TIMELINE_PAGE_MAX, TimelinePage, TimelineQuery};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(account_timeline))
        .routes(routes!(feed))
        .routes(routes!(get_event))
        .routes(routes!(add_note))
        .routes(routes!(add_task))
        .routes(routes!(complete_task))
}

/// Timeline filters and paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TimelineParams {
    /// Only these connectors, comma-separated (e.g. `stripe,zendesk`; `rapport` for
    /// notes, tasks and handoffs).
    #[param(
        max_length = 512,
        pattern = r"^([a-z0-9_-]{1,64}(,[a-z0-9_-]{1,64})*)?$"
    )]
    source: Option<String>,
    /// Only kinds equal to or under this prefix (e.g. `billing`, `support.ticket`).
    #[param(max_length = 128, pattern = r"^([a-z0-9_]+(\.[a-z0-9_]+)*)?$")]
    kind: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    from: Option<DateTime<Utc>>,
    /// Only events before this instant (RFC 3339).
    until: Option<DateTime<Utc>>,
    /// Include the account's subsidiaries (account timeline only).
    #[serde(default)]
    children: bool,
    /// Page size (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
    /// The previous page's `next`.
    #[param(max_length = 512)]
    cursor: Option<String>,
}

impl TimelineParams {
    /// The connectors asked for, each a well-formed connector id (exactly what the
    /// document's pattern allows).
    fn connectors(&self) -> ApiResult<Vec<String>> {
        let source = self.source.as_deref().unwrap_or_default();
        if source.is_empty() {
            return Ok(Vec::new());
        }
        source
            .split(',')
            .map(|id| {
                rapport_core::timeline::validate_connector_id(id)?;
                Ok(id.to_owned())
            })
            .collect()
    }

    fn after(&self, state: &AppState, listing: &str) -> ApiResult<Option<TimelineCursor>> {
        self.cursor
            .as_deref()
            // Empty is "from the top", as leaving it out is.
            .filter(|cursor| !cursor.is_empty())
            .map(|cursor| state.cursors.verify(listing, cursor))
            .transpose()
    }

    fn kind(&self) -> ApiResult<Option<String>> {
        match self.kind.as_deref() {
            None | Some("") => Ok(None),
            Some(kind) => Ok(Some(
                rapport_core::timeline::EventKind::parse(kind)?
                    .as_str()
                    .to_owned(),
            )),
        }
    }
}

fn page_view(state: &AppState, listing: &str, page: TimelinePage) -> EventPage {
    EventPage {
        events: page.events.into_iter().map(EventView::from).collect(),
        next: page.next.map(|next| state.cursors.sign(listing, &next)),
    }
}

/// An account's timeline, newest first: every source interleaved by time, keyset-paged
/// (a page deep in history costs what the first costs).
#[utoipa::path(get, path = "/accounts/{id}/timeline", tag = "timeline", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Account id"), TimelineParams),
    responses((status = 200, body = EventPage), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn account_timeline(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Params(params): Params<TimelineParams>,
) -> ApiResult<Json<EventPage>> {
    let account = AccountId(id);
    authorize(state.engine.store(), &viewer, Action::See(account)).await?;
    let listing = format!("timeline:{}:{}:{}", account.0, params.children, viewer.id.0);
    let query = TimelineQuery {
        account,
        reader: Reader::Staff(viewer.id),
        include_children: params.children,
        connectors: params.connectors()?,
        kind_prefix: params.kind()?,
        from: params.from,
        until: params.until,
        after: params.after(&state, &listing)?,
        limit: page_limit(params.limit, 50, TIMELINE_PAGE_MAX)?,
    };
    let page = state.engine.store().timeline(&query).await?;
    Ok(Json(page_view(&state, &listing, page)))
}

/// The feed across everything the viewer can see (their book and their reports'),
/// newest first, with the timeline's filters.
#[utoipa::path(get, path = "/feed", tag = "timeline", security(("bearer" = [])), params(TimelineParams),
    responses((status = 200, body = EventPage), (status = 401, body = Problem), (status = 422, body = Problem)))]
async fn feed(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Params(params): Params<TimelineParams>,
) -> ApiResult<Json<EventPage>> {
    let listing = format!("feed:{}", viewer.id.0);
    let query = FeedQuery {
        viewer: viewer.id,
        at: Utc::now(),
        connectors: params.connectors()?,
        kind_prefix: params.kind()?,
        from: params.from,
        until: params.until,
        after: params.after(&state, &listing)?,
        limit: page_limit(params.limit, 50, TIMELINE_PAGE_MAX)?,
    };
    let page = state.engine.store().feed(&query).await?;
    Ok(Json(page_view(&state, &listing, page)))
}

/// One event.
#[utoipa::path(get, path = "/events/{id}", tag = "timeline", security(("bearer" = [])),
    params(("id" = i64, Path, description = "Event id")),
    responses((status = 200, body = EventView), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_event(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<EventView>> {
    let event = crate::app::event(state.engine.store(), &viewer, EventId(id)).await?;
    Ok(Json(event.into()))
}

/// A note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoteBody {
    /// The text; its first line is the title.
    #[schema(schema_with = crate::api::formats::text)]
    text: String,
}

/// Writes a note on an account's timeline.
#[utoipa::path(post, path = "/accounts/{id}/notes", tag = "timeline", security(("bearer" = [])), request_body = NoteBody,
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 201, body = EventView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn add_note(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<NoteBody>,
) -> ApiResult<(StatusCode, Json<EventView>)> {
    let note =
        crate::app::add_note(state.engine.store(), &viewer, AccountId(id), &body.text).await?;
    Ok((StatusCode::CREATED, Json(note.into())))
}

/// A task.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskBody {
    /// What is to be done; its first line is the title.
    #[schema(schema_with = crate::api::formats::text)]
    text: String,
    /// When it is due.
    #[serde(default)]
    #[schema(schema_with = crate::api::formats::optional_date)]
    due: Option<NaiveDate>,
    /// Who is to do it (someone who can see the account); default: you.
    #[serde(default)]
    assignee: Option<i64>,
}

/// Sets a task on an account's timeline.
#[utoipa::path(post, path = "/accounts/{id}/tasks", tag = "timeline", security(("bearer" = [])), request_body = TaskBody,
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 201, body = EventView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn add_task(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
    Body(body): Body<TaskBody>,
) -> ApiResult<(StatusCode, Json<EventView>)> {
    let task = crate::app::add_task(
        state.engine.store(),
        &viewer,
        AccountId(id),
        NewTask {
            text: body.text,
            due: body.due,
            assignee: body.assignee.map(StaffId),
        },
    )
    .await?;
    Ok((StatusCode::CREATED, Json(task.into())))
}

/// Marks a task done; returns the `task.done` event written on the account.
#[utoipa::path(post, path = "/tasks/{id}/complete", tag = "timeline", security(("bearer" = [])),
    params(("id" = i64, Path, description = "The task's event id")),
    responses((status = 200, body = EventView), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
async fn complete_task(
    State(state): State<AppState>,
    Viewer(viewer): Viewer,
    Segments(id): Segments<i64>,
) -> ApiResult<Json<EventView>> {
    let done = crate::app::complete_task(state.engine.store(), &viewer, EventId(id)).await?;
    Ok(Json(done.into()))
}
