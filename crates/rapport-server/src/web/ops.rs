//! Running rapport: each connector's sync status (and a sync on demand, for admins),
//! and the unmatched inbox, where managers place events no account claimed.

use crate::api::inbox::LearnBody;
use crate::app::authorize;
use crate::http::AppState;
use crate::web::account::Choice;
use crate::web::page::{Layout, WebError, WebResult, ago, instant, path_id, render};
use crate::web::session::{Member, Submission};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use chrono::Utc;
use rapport_core::permission::Action;
use rapport_core::staff::Staff;
use rapport_core::timeline::TimelineCursor;
use rapport_core::{AccountId, EventId, StaffId};
use rapport_store::Reader;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) struct ConnectorRow {
    pub name: String,
    pub state: &'static str,
    pub last_success: String,
    pub last_error: Option<String>,
    pub lag: String,
    pub events: i64,
    pub unmatched: i64,
    pub next_run: String,
    pub requested: bool,
    /// The last check of its settings and credentials: when, and how it went.
    pub check: Option<String>,
    pub check_failed: bool,
    /// Which node syncs it now, and until when.
    pub holder: Option<String>,
    /// For one person's connection of a person-scoped connector: whose.
    pub owner: Option<String>,
}

#[derive(Template)]
#[template(path = "connectors.html")]
struct ConnectorsPage {
    layout: Layout,
    rows: Vec<ConnectorRow>,
    is_admin: bool,
}

fn lag_words(lag: Option<chrono::Duration>) -> String {
    match lag {
        None => "—".to_owned(),
        Some(lag) if lag.num_minutes() < 1 => "under a minute".to_owned(),
        Some(lag) if lag.num_hours() < 1 => format!("{} min", lag.num_minutes()),
        Some(lag) if lag.num_days() < 1 => format!("{} h", lag.num_hours()),
        Some(lag) => format!("{} days", lag.num_days()),
    }
}

pub(crate) async fn connectors(State(state): State<AppState>, member: Member) -> WebResult {
    let store = state.engine.store();
    let now = Utc::now();
    let unmatched: BTreeMap<String, i64> = store.unmatched_counts().await?.into_iter().collect();
    let statuses = store.connector_statuses().await?;
    let mut owners = BTreeMap::new();
    for status in &statuses {
        if let Some((_, owner)) = rapport_core::sharing::person_connection_of(&status.connector)
            && let Ok(staff) = store.staff(owner).await
        {
            owners.insert(status.connector.clone(), staff.name);
        }
    }
    let rows = statuses
        .into_iter()
        .map(|status| ConnectorRow {
            owner: owners.get(&status.connector).cloned(),
            state: status.state.as_str(),
            last_success: status.last_success_at.map_or_else(
                || "never".to_owned(),
                |at| format!("{} ({})", instant(at), ago(at, now)),
            ),
            last_error: status.last_error.as_ref().map(|error| {
                format!(
                    "{} — {} ({}){}",
                    instant(error.at),
                    error.message,
                    error.kind,
                    error
                        .source_id
                        .as_ref()
                        .map(|id| format!(", event {id}"))
                        .unwrap_or_default()
                )
            }),
            check: status.last_check.as_ref().map(|check| {
                if check.ok {
                    format!("passed {}", instant(check.at))
                } else {
                    format!(
                        "failed {}: {}",
                        instant(check.at),
                        check.message.as_deref().unwrap_or("no reason given")
                    )
                }
            }),
            check_failed: status.last_check.as_ref().is_some_and(|check| !check.ok),
            holder: status.lease_holder.as_ref().map(|holder| {
                format!(
                    "{holder}{}",
                    status
                        .lease_expires_at
                        .map(|until| format!(" until {}", instant(until)))
                        .unwrap_or_default()
                )
            }),
            lag: lag_words(status.lag(now)),
            events: status.events_ingested,
            unmatched: unmatched.get(&status.connector).copied().unwrap_or(0),
            next_run: status.next_run_at.map_or_else(|| "—".to_owned(), instant),
            requested: status.sync_requested_at.is_some(),
            name: status.connector,
        })
        .collect();
    render(&ConnectorsPage {
        is_admin: member.caller.is_admin,
        layout: Layout::new(&member, "connectors", "Connectors"),
        rows,
    })
}

/// Asks for a sync now (admins); whichever node holds the connector's lease runs it.
pub(crate) async fn run_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: Submission,
) -> WebResult {
    authorize(
        state.engine.store(),
        &form.member.caller,
        Action::Administer,
    )
    .await?;
    state.engine.store().request_sync(&name, Utc::now()).await?;
    crate::audit::action("connector.sync.requested");
    Ok(Redirect::to("/connectors").into_response())
}

/// Runs the connector's own check now on this node (admins) and shows the outcome on
/// its status.
pub(crate) async fn check_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
    form: Submission,
) -> WebResult {
    authorize(
        state.engine.store(),
        &form.member.caller,
        Action::Administer,
    )
    .await?;
    crate::audit::action("connector.checked");
    match state.engine.check_now(&name).await {
        Ok(_) => Ok(Redirect::to(&format!("/connectors#c-{name}")).into_response()),
        Err(rapport_sync::SyncError::UnknownConnector(_)) => Err(WebError::NotFound(format!(
            "this node runs no connector `{name}`"
        ))),
        Err(rapport_sync::SyncError::Store(error)) => {
            Err(crate::api::error::ApiError::from(error).into())
        }
        Err(other) => Err(WebError::Conflict(other.to_string())),
    }
}

pub(crate) struct Waiting {
    pub id: i64,
    pub source: String,
    pub when: String,
    pub title: String,
    pub summary: String,
    pub hints: Vec<String>,
    pub accounts: Vec<Choice>,
    pub learn: Vec<Choice>,
    pub ambiguous: bool,
    pub capture_note: Option<String>,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    layout: Layout,
    waiting: Vec<Waiting>,
    next_link: Option<String>,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct InboxQuery {
    cursor: Option<String>,
    placed: Option<i64>,
}

pub(crate) async fn inbox(
    State(state): State<AppState>,
    member: Member,
    Query(query): Query<InboxQuery>,
) -> WebResult {
    authorize(state.engine.store(), &member.caller, Action::Triage).await?;
    let store = state.engine.store();
    let now = Utc::now();
    let listing = format!("web-inbox:{}", member.caller.id.0);
    let after: Option<TimelineCursor> = query
        .cursor
        .as_deref()
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| state.cursors.verify(&listing, cursor))
        .transpose()?;
    let page = store
        .unmatched_events(Reader::Staff(member.caller.id), None, after, 25)
        .await?;
    let visible: Vec<AccountId> = store
        .visible_account_ids(member.caller.id, now)
        .await?
        .into_iter()
        .collect();
    let mut book = store.accounts(&visible).await?;
    book.sort_by_cached_key(|account| account.name.to_lowercase());
    let staff: BTreeMap<StaffId, Staff> = if page.events.iter().any(|e| e.capture.is_some()) {
        store
            .list_staff()
            .await?
            .into_iter()
            .map(|person| (person.id, person))
            .collect()
    } else {
        BTreeMap::new()
    };
    let mut waiting = Vec::new();
    for mut event in page.events {
        crate::app::visible_candidates(state.engine.store(), &member.caller, &mut event).await?;
        let candidates = event.match_candidates.clone();
        let mut accounts: Vec<Choice> = book
            .iter()
            .filter(|account| candidates.contains(&account.id))
            .chain(
                book.iter()
                    .filter(|account| !candidates.contains(&account.id)),
            )
            .map(|account| Choice {
                value: account.id.0.to_string(),
                label: if candidates.contains(&account.id) {
                    format!("{} (fits)", account.name)
                } else {
                    account.name.clone()
                },
                selected: false,
            })
            .collect();
        if let Some(first) = accounts.first_mut()
            && candidates.len() == 1
        {
            first.selected = true;
        }
        let hints = &event.event.hints;
        let mut learn = vec![Choice {
            value: String::new(),
            label: "Just this event".to_owned(),
            selected: true,
        }];
        learn.extend(hints.domains.iter().map(|domain| Choice {
            value: format!("domain:{domain}"),
            label: format!("Also everything from the domain {domain}"),
            selected: false,
        }));
        learn.extend(hints.emails.iter().map(|email| Choice {
            value: format!("contact:{email}"),
            label: format!("Also add {email} as a contact"),
            selected: false,
        }));
        learn.extend(hints.external_ids.iter().map(|id| Choice {
            value: format!("external_id:{id}"),
            label: format!("Also link the id {id}"),
            selected: false,
        }));
        let mut hint_words: Vec<String> = hints.domains.iter().map(|d| d.to_string()).collect();
        hint_words.extend(hints.emails.iter().map(|e| e.to_string()));
        hint_words.extend(hints.external_ids.iter().map(|i| i.to_string()));
        waiting.push(Waiting {
            id: event.id.0,
            source: event.event.key.connector.clone(),
            when: instant(event.event.occurred_at),
            title: event.event.title.clone(),
            summary: event.event.summary.chars().take(240).collect(),
            hints: hint_words,
            accounts,
            learn,
            ambiguous: !candidates.is_empty(),
            capture_note: crate::web::account::capture_note(&event, &staff),
        });
    }
    let next_link = page.next.map(|next| {
        format!(
            "/inbox?cursor={}",
            crate::web::page::encode(&state.cursors.sign(&listing, &next))
        )
    });
    let notice = query.placed.map(|id| {
        format!(
            "Placed event {id}. Anything else waiting that now matches went to its account too."
        )
    });
    render(&InboxPage {
        layout: Layout::new(&member, "inbox", "Unmatched inbox"),
        waiting,
        next_link,
        notice,
    })
}

/// Places an event, optionally teaching its account a hint.
pub(crate) async fn place(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Submission,
) -> WebResult {
    let event = EventId(path_id(&raw, "event")?);
    let account = AccountId(form.fields.id("account", "The account")?);
    let learn = match form
        .fields
        .get("learn")
        .and_then(|value| value.split_once(':'))
    {
        None => None,
        Some(("domain", value)) => Some(LearnBody::Domain(crate::api::formats::DomainText(
            value.to_owned(),
        ))),
        Some(("contact", value)) => Some(LearnBody::Contact(crate::api::formats::EmailText(
            value.to_owned(),
        ))),
        Some(("external_id", value)) => Some(LearnBody::ExternalId(
            crate::api::formats::ExternalIdText(value.to_owned()),
        )),
        Some((other, _)) => {
            return Err(WebError::Invalid(format!(
                "{other:?} is not something an account can learn: choose a domain, contact or id"
            )));
        }
    };
    let learn = learn.map(LearnBody::parse).transpose()?;
    crate::app::place_event(
        state.engine.store(),
        &form.member.caller,
        event,
        account,
        learn,
    )
    .await?;
    Ok(Redirect::to(&format!("/inbox?placed={}", event.0)).into_response())
}
