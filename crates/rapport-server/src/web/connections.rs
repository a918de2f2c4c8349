//! The Connections page: a person's own connections (connect, reconnect, disconnect),
//! the organisation's (admins connect those), and for admins every connection's state.
//! The steps are `crate::connections`'; this module only translates requests and
//! answers.

use crate::connections::{ConnectError, Connectable};
use crate::http::AppState;
use crate::web::page::{Layout, WebError, WebResult, instant, render};
use crate::web::session::{Member, Submission};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use rapport_plugin_host::ConnectionScope;
use rapport_store::{Connection, ConnectionId, ConnectionStatus};
use serde::Deserialize;

pub(crate) struct ConnectableRow {
    pub connector: String,
    pub plugin: String,
    pub whose: &'static str,
    pub scopes: String,
    /// The connection this row is about, if made.
    pub status: Option<StatusView>,
    /// Whether the signed-in person may connect it.
    pub may_connect: bool,
}

pub(crate) struct StatusView {
    pub id: i64,
    pub state: &'static str,
    pub words: String,
    pub reason: Option<String>,
    pub refreshed: String,
    pub owner: String,
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ConnectionsPage {
    layout: Layout,
    rows: Vec<ConnectableRow>,
    everyone: Vec<StatusView>,
    is_admin: bool,
    notice: Option<String>,
}

fn view(connection: &Connection, owner: String) -> StatusView {
    let (state, words) = match connection.status {
        ConnectionStatus::Active => ("active", "connected"),
        ConnectionStatus::NeedsReconnect => ("needs-reconnect", "needs reconnecting"),
        ConnectionStatus::Revoked => ("revoked", "disconnected"),
    };
    StatusView {
        id: connection.id.0,
        state,
        words: words.to_owned(),
        reason: connection.status_reason.clone(),
        refreshed: connection
            .refreshed_at
            .map(instant)
            .unwrap_or_else(|| "never".into()),
        owner,
    }
}

#[derive(Deserialize)]
pub(crate) struct NoticeQuery {
    done: Option<String>,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    member: Member,
    Query(query): Query<NoticeQuery>,
) -> WebResult {
    let store = state.engine.store();
    let me = member.caller.staff.id;
    let is_admin = member.caller.permissions.may_administer();
    let all = store.connections(None, None).await?;
    let emails: std::collections::BTreeMap<_, _> = store
        .list_staff()
        .await?
        .into_iter()
        .map(|staff| (staff.id, staff.email.to_string()))
        .collect();
    let owner_of = |connection: &Connection| match connection.key.owner {
        None => "the organisation".to_owned(),
        Some(id) => emails.get(&id).cloned().unwrap_or_else(|| id.to_string()),
    };
    let rows = state
        .connections
        .connectors()
        .map(|connectable: &Connectable| {
            let owner = match connectable.scope {
                ConnectionScope::Person => Some(me),
                ConnectionScope::Org => None,
            };
            let made = all
                .iter()
                .find(|c| c.key.connector == connectable.connector && c.key.owner == owner);
            ConnectableRow {
                connector: connectable.connector.clone(),
                plugin: connectable.plugin.clone(),
                whose: match connectable.scope {
                    ConnectionScope::Person => "yours",
                    ConnectionScope::Org => "the organisation's",
                },
                scopes: connectable.scopes.join(" "),
                status: made.map(|c| view(c, owner_of(c))),
                may_connect: connectable.scope == ConnectionScope::Person || is_admin,
            }
        })
        .collect();
    let everyone = if is_admin {
        all.iter().map(|c| view(c, owner_of(c))).collect()
    } else {
        Vec::new()
    };
    let notice = match query.done.as_deref() {
        Some("connected") => Some("Connected.".to_owned()),
        Some("disconnected") => Some("Disconnected: its tokens are deleted.".to_owned()),
        _ => None,
    };
    render(&ConnectionsPage {
        layout: Layout::new(&member, "connections", "Connections"),
        rows,
        everyone,
        is_admin,
        notice,
    })
}

fn web_error(error: ConnectError) -> WebError {
    match error {
        ConnectError::Unknown(what) => {
            WebError::NotFound(format!("there is no connection or connector `{what}`"))
        }
        ConnectError::Forbidden(why) => WebError::Forbidden(why),
        ConnectError::NoKeys => WebError::Unavailable(error.to_string()),
        ConnectError::UnknownFlow | ConnectError::Denied(_) => WebError::Invalid(error.to_string()),
        ConnectError::Provider(error) => {
            WebError::Unavailable(format!("connecting failed: {error}"))
        }
        ConnectError::Store(error) => error.into(),
        ConnectError::Sync(_) | ConnectError::Setup(_) => WebError::Unavailable(error.to_string()),
    }
}

/// Sends the person to the provider. A link, not a form: a form's redirect to another
/// site is blocked by the page's `form-action 'self'`, and starting an authorization
/// changes nothing until the person comes back with their own session.
pub(crate) async fn connect(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    member: Member,
) -> WebResult {
    let url = state
        .connections
        .begin(
            state.engine.store(),
            &connector,
            member.caller.staff.id,
            member.caller.permissions.may_administer(),
            &member.csrf,
        )
        .await
        .map_err(web_error)?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
pub(crate) struct Callback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the person back.
pub(crate) async fn callback(
    State(state): State<AppState>,
    member: Member,
    Query(back): Query<Callback>,
) -> WebResult {
    let Some(flow_state) = back.state.as_deref() else {
        return Err(WebError::Invalid(
            "the provider sent no `state`: start connecting again".into(),
        ));
    };
    let outcome = match (&back.code, &back.error) {
        (Some(code), None) => Ok(code.as_str()),
        (_, Some(error)) => Err(back
            .error_description
            .as_deref()
            .map(|description| format!("{error}: {description}"))
            .unwrap_or_else(|| error.clone())),
        (None, None) => Err("the provider sent neither a code nor an error".to_owned()),
    };
    state
        .connections
        .finish(
            state.engine.store(),
            member.caller.staff.id,
            &member.csrf,
            flow_state,
            outcome.as_deref().map_err(String::as_str),
        )
        .await
        .map_err(web_error)?;
    state.connections.follow(&state.engine).await;
    crate::audit::action("connection.connected");
    Ok(Redirect::to("/connections?done=connected").into_response())
}

pub(crate) async fn disconnect(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    form: Submission,
) -> WebResult {
    let caller = &form.member.caller;
    state
        .connections
        .disconnect(
            state.engine.store(),
            ConnectionId(id),
            caller.staff.id,
            caller.permissions.may_administer(),
            &caller.staff.email.to_string(),
        )
        .await
        .map_err(web_error)?;
    state.connections.follow(&state.engine).await;
    crate::audit::action("connection.disconnected");
    Ok(Redirect::to("/connections?done=disconnected").into_response())
}
