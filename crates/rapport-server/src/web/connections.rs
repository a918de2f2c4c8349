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
use rapport_core::sharing::Sharing;
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
    /// For a person's connector: how widely what it captures is shared.
    pub sharing: Option<SharingView>,
}

/// A person's connector's sharing level, and the choice they have.
pub(crate) struct SharingView {
    /// The level in force (their connection's, or the organisation's before they
    /// connect).
    pub level: &'static str,
    /// What it means.
    pub meaning: &'static str,
    /// When they may choose: the connection's id and the levels to choose from. The
    /// organisation's level is the value `organisation`.
    pub choices: Option<(i64, Vec<SharingChoice>)>,
}

/// One level a person may choose for their connection.
pub(crate) struct SharingChoice {
    pub value: &'static str,
    pub label: String,
    /// Whether it is their current choice.
    pub chosen: bool,
}

pub(crate) struct StatusView {
    pub id: i64,
    pub state: &'static str,
    pub words: String,
    pub reason: Option<String>,
    pub refreshed: String,
    pub owner: String,
    pub sharing: &'static str,
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
        sharing: match connection.key.owner {
            Some(_) => connection.sharing.as_str(),
            None => "—",
        },
    }
}

/// The sharing row of a person's connector for the signed-in person: the level in
/// force, and the choice they have if the organisation lets them.
fn sharing_view(connectable: &Connectable, made: Option<&Connection>) -> Option<SharingView> {
    if connectable.scope != ConnectionScope::Person {
        return None;
    }
    let level = made.map_or(connectable.sharing, |c| c.sharing);
    let choices = made
        .filter(|c| connectable.sharing_override && c.status != ConnectionStatus::Revoked)
        .map(|c| {
            let mut choices = vec![SharingChoice {
                value: "organisation",
                label: format!("The organisation's: {}", connectable.sharing),
                chosen: c.sharing_chosen.is_none(),
            }];
            for option in Sharing::ALL {
                choices.push(SharingChoice {
                    value: option.as_str(),
                    label: format!("{option}: {}", option.describe()),
                    chosen: c.sharing_chosen == Some(option),
                });
            }
            (c.id.0, choices)
        });
    Some(SharingView {
        level: level.as_str(),
        meaning: level.describe(),
        choices,
    })
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
                sharing: sharing_view(connectable, made),
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
        Some("shared") => Some(
            "Sharing level saved: what the connection captured before now follows it too."
                .to_owned(),
        ),
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

/// Sets the sharing level a person chooses for their own connection.
pub(crate) async fn choose_sharing(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    form: Submission,
) -> WebResult {
    // A level, or `organisation` for the organisation's.
    let chosen = match form.fields.require("sharing", "The sharing level")? {
        "organisation" => None,
        level => Some(Sharing::parse(level).ok_or_else(|| {
            WebError::Invalid(format!(
                "`{level}` is not a sharing level: choose shared, metadata, private or the organisation's"
            ))
        })?),
    };
    let caller = &form.member.caller;
    state
        .connections
        .choose_sharing(
            state.engine.store(),
            ConnectionId(id),
            caller.staff.id,
            chosen,
        )
        .await
        .map_err(web_error)?;
    state.connections.follow(&state.engine).await;
    crate::audit::action("connection.sharing_changed");
    crate::audit::change(serde_json::json!({
        "connection": id,
        "sharing": chosen.map(Sharing::as_str),
    }));
    Ok(Redirect::to("/connections?done=shared").into_response())
}
