//! The account page: who looks after the client, its group, health and revenue, and the
//! unified timeline with filters, roll-up, keyset paging, notes and tasks.

use crate::app::{Caller, authorize};
use crate::http::AppState;
use crate::insight::{health_of, revenue_of, weekly_activity};
use crate::web::book::band_label;
use crate::web::chart::{mrr_steps, weekly_bars};
use crate::web::page::{
    Layout, WebError, WebResult, ago, day, encode, instant, money, path_id, render, staff_by_id,
};
use crate::web::session::{Member, Submission};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::assignment::Role;
use rapport_core::permission::Action;
use rapport_core::sharing::Sharing;
use rapport_core::staff::{Level, Staff};
use rapport_core::timeline::{AttributeValue, EventKind, TimelineCursor, TimelineEvent};
use rapport_core::{AccountId, EventId, StaffId};
use rapport_store::{NewTask, Reader, TASK_ASSIGNEE, TASK_DUE, TASK_STATUS, TimelineQuery};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Events per timeline page.
const PAGE_EVENTS: u32 = 50;
/// Weeks in the activity chart.
const ACTIVITY_WEEKS: u32 = 12;
/// The kind filters offered, as (prefix, label).
const KINDS: [(&str, &str); 10] = [
    ("", "Everything"),
    ("email", "Email"),
    ("meeting", "Meetings"),
    ("billing", "Billing"),
    ("billing.invoice", "Invoices"),
    ("billing.subscription", "Subscriptions"),
    ("support", "Support"),
    ("note", "Notes"),
    ("task", "Tasks"),
    ("assignment", "Handoffs"),
];

/// The timeline's filters, as the form sends them (all text, checked here so a bad
/// value gets a sentence, not a bare 400).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Filters {
    source: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    until: Option<String>,
    children: Option<String>,
    cursor: Option<String>,
}

fn blank_to_none(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn date(value: &Option<String>, label: &str) -> WebResult<Option<NaiveDate>> {
    blank_to_none(value)
        .map(|raw| {
            NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
                WebError::Invalid(format!(
                    "{label} must be a date like 2026-11-27, not {raw:?}"
                ))
            })
        })
        .transpose()
}

fn start_of(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

impl Filters {
    fn children(&self) -> bool {
        blank_to_none(&self.children).is_some()
    }

    /// The query string for these filters, continuing at `cursor` if given.
    fn link(&self, account: i64, cursor: Option<&str>) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("source", &self.source),
            ("kind", &self.kind),
            ("from", &self.from),
            ("until", &self.until),
        ] {
            if let Some(value) = blank_to_none(value) {
                parts.push(format!("{name}={}", encode(value)));
            }
        }
        if self.children() {
            parts.push("children=on".to_owned());
        }
        if let Some(cursor) = cursor {
            parts.push(format!("cursor={}", encode(cursor)));
        }
        if parts.is_empty() {
            format!("/accounts/{account}#timeline")
        } else {
            format!("/accounts/{account}?{}#timeline", parts.join("&"))
        }
    }
}

pub(crate) struct Item {
    pub id: i64,
    pub icon: &'static str,
    pub family: &'static str,
    pub family_label: &'static str,
    pub kind: String,
    pub when_iso: String,
    pub when: String,
    pub title: String,
    pub summary: String,
    pub url: Option<String>,
    pub actor: Option<String>,
    pub open_task: bool,
    pub task_note: Option<String>,
    pub elsewhere: Option<(i64, String)>,
    /// Why part of the stored event could not be read, when it could not.
    pub unreadable: Option<String>,
    /// Whose mailbox (or calendar) captured it and who else sees it, for an event a
    /// person's connection captured.
    pub capture_note: Option<String>,
}

/// Whose connection captured `event` and how it is shared, in words for the reader.
pub(crate) fn capture_note(
    event: &TimelineEvent,
    staff: &BTreeMap<StaffId, Staff>,
) -> Option<String> {
    let capture = event.capture?;
    let owner = staff.get(&capture.owner).map_or_else(
        || format!("staff {}", capture.owner.0),
        |person| person.name.clone(),
    );
    Some(match (capture.sharing, event.withheld) {
        (_, true) => format!(
            "From {owner}'s connection, shared as metadata only: who took part, the subject and when. The content is for {owner} and their managers."
        ),
        (Sharing::Shared, false) => format!("From {owner}'s connection."),
        (Sharing::Metadata, false) => format!(
            "From {owner}'s connection: others who see this account see only who took part, the subject and when."
        ),
        (Sharing::Private, false) => {
            format!("From {owner}'s connection, private to {owner} and their managers.")
        }
    })
}

fn family(kind: &EventKind) -> (&'static str, &'static str, &'static str) {
    match kind.family() {
        "email" => ("email", "E", "Email"),
        "meeting" => ("meeting", "M", "Meeting"),
        "billing" => ("billing", "$", "Billing"),
        "support" => ("support", "S", "Support"),
        "note" => ("note", "N", "Note"),
        "task" => ("task", "T", "Task"),
        "assignment" => ("assignment", "H", "Handoff"),
        _ => ("other", "•", "Other"),
    }
}

fn text_attribute<'a>(event: &'a TimelineEvent, name: &str) -> Option<&'a str> {
    match event.event.attributes.get(name) {
        Some(AttributeValue::Text(value)) => Some(value),
        _ => None,
    }
}

fn item(
    event: TimelineEvent,
    account: AccountId,
    names: &BTreeMap<AccountId, String>,
    staff: &BTreeMap<StaffId, Staff>,
) -> Item {
    let (family, icon, family_label) = family(&event.event.kind);
    let is_task = event.event.kind.as_str() == EventKind::TASK_CREATED;
    let open_task = is_task && text_attribute(&event, TASK_STATUS) != Some("done");
    let task_note = is_task.then(|| {
        let mut bits = Vec::new();
        if let Some(due) = text_attribute(&event, TASK_DUE) {
            bits.push(format!("due {due}"));
        }
        if let Some(AttributeValue::Integer(who)) = event.event.attributes.get(TASK_ASSIGNEE)
            && let Some(person) = staff.get(&StaffId(*who))
        {
            bits.push(format!("for {}", person.name));
        }
        bits.push(if open_task { "open" } else { "done" }.to_owned());
        bits.join(" · ")
    });
    let elsewhere = event
        .event
        .placement
        .as_ref()
        .filter(|placement| placement.account != account)
        .map(|placement| {
            let name = names
                .get(&placement.account)
                .cloned()
                .unwrap_or_else(|| format!("account {}", placement.account.0));
            (placement.account.0, name)
        });
    let actor = event.event.actor.as_ref().and_then(|actor| {
        actor
            .name
            .clone()
            .or_else(|| actor.email.as_ref().map(|email| email.to_string()))
    });
    let mut summary = event.event.summary.clone();
    if summary.chars().count() > 320 {
        summary = summary.chars().take(320).collect::<String>() + "…";
    }
    Item {
        id: event.id.0,
        icon,
        family,
        family_label,
        kind: event.event.kind.to_string(),
        when_iso: event.event.occurred_at.to_rfc3339(),
        when: instant(event.event.occurred_at),
        title: if event.event.title.is_empty() {
            "(unreadable event)".to_owned()
        } else {
            event.event.title.clone()
        },
        summary,
        url: event.event.url.clone(),
        actor,
        open_task,
        task_note,
        elsewhere,
        unreadable: event.unreadable.clone(),
        capture_note: capture_note(&event, staff),
    }
}

pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

pub(crate) struct Link {
    pub id: i64,
    pub name: String,
}

pub(crate) struct HistoryItem {
    pub who: String,
    pub role: &'static str,
    pub from: String,
    pub to: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    id: i64,
    name: String,
    lifecycle: &'static str,
    owner: String,
    team: Option<String>,
    supporters: Vec<String>,
    parent: Option<Link>,
    children: Vec<Link>,
    domains: Vec<String>,
    external_ids: Vec<String>,
    contacts: Vec<(String, String)>,
    mrr: String,
    plans: Vec<String>,
    renewal: String,
    /// When we were last in touch with the client, as "3 days ago".
    last_contact: String,
    /// When the next meeting with the client starts, if one is scheduled.
    next_meeting: Option<String>,
    score: u8,
    band: &'static str,
    band_label: &'static str,
    reasons: Vec<String>,
    mrr_chart: Option<String>,
    activity_chart: String,
    items: Vec<Item>,
    sources: Vec<Choice>,
    kinds: Vec<Choice>,
    from: String,
    until: String,
    children_on: bool,
    filtered: bool,
    next_link: Option<String>,
    newest_link: Option<String>,
    owners: Vec<Choice>,
    assignees: Vec<Choice>,
    history: Vec<HistoryItem>,
}

/// People `viewer` may make owner of an account: managers and up in their reporting
/// line (anyone's, for an admin). Empty if they may not reassign at all.
pub(crate) async fn owner_choices(
    state: &AppState,
    viewer: &Caller,
    staff: &BTreeMap<StaffId, Staff>,
    current: Option<StaffId>,
) -> WebResult<Vec<Choice>> {
    if !viewer.permissions.may_reassign() {
        return Ok(Vec::new());
    }
    let line = state.engine.store().reporting_subtree(viewer.id).await?;
    let mut choices: Vec<Choice> = staff
        .values()
        .filter(|person| person.active && person.level != Level::Associate)
        .filter(|person| viewer.is_admin || line.contains(&person.id))
        .map(|person| Choice {
            value: person.id.0.to_string(),
            label: format!("{} ({})", person.name, person.level.as_str()),
            selected: Some(person.id) == current,
        })
        .collect();
    choices.sort_by(|a, b| a.label.cmp(&b.label));
    // Only the current owner to choose from is no choice.
    if choices.iter().all(|choice| choice.selected) {
        choices.clear();
    }
    Ok(choices)
}

pub(crate) async fn page(
    State(state): State<AppState>,
    member: Member,
    Path(raw): Path<String>,
    Query(filters): Query<Filters>,
) -> WebResult {
    let id = AccountId(path_id(&raw, "account")?);
    let viewer = &member.caller;
    authorize(state.engine.store(), viewer, Action::See(id)).await?;
    let store = state.engine.store();
    let now = Utc::now();
    let account = store.account(id).await?;
    let staff: BTreeMap<StaffId, Staff> = staff_by_id(store).await?;
    let name_of = |id: StaffId| {
        staff
            .get(&id)
            .map_or_else(|| format!("staff {}", id.0), |p| p.name.clone())
    };

    // The group: a parent the viewer can see, and every subsidiary (visible with it).
    let parent = match account.parent {
        Some(parent) if store.can_see(viewer.id, parent, now).await? => Some(Link {
            id: parent.0,
            name: store.account(parent).await?.name,
        }),
        _ => None,
    };
    let child_ids = store.account_children(id).await?;
    let mut children: Vec<Link> = store
        .accounts(&child_ids)
        .await?
        .into_iter()
        .map(|child| Link {
            id: child.id.0,
            name: child.name,
        })
        .collect();
    children.sort_by(|a, b| a.name.cmp(&b.name));

    // Filters.
    let children_on = filters.children();
    let connectors: Vec<String> = blank_to_none(&filters.source)
        .map(|source| vec![source.to_owned()])
        .unwrap_or_default();
    let kind = blank_to_none(&filters.kind).map(str::to_owned);
    let from = date(&filters.from, "From")?;
    let until = date(&filters.until, "Until")?;
    let listing = format!("web-timeline:{}:{}:{}", id.0, children_on, viewer.id.0);
    let after: Option<TimelineCursor> = blank_to_none(&filters.cursor)
        .map(|cursor| state.cursors.verify(&listing, cursor))
        .transpose()?;
    let query = TimelineQuery {
        account: id,
        reader: Reader::Staff(viewer.id),
        include_children: children_on,
        connectors: connectors.clone(),
        kind_prefix: kind.clone(),
        from: from.map(start_of),
        // Until a day means through the end of it.
        until: until.map(|day| start_of(day + chrono::Duration::days(1))),
        after,
        limit: PAGE_EVENTS,
    };
    let timeline = store.timeline(&query).await?;
    let mut names: BTreeMap<AccountId, String> = children
        .iter()
        .map(|link| (AccountId(link.id), link.name.clone()))
        .collect();
    if children_on {
        // Grandchildren too: name whatever the page shows.
        let missing: Vec<AccountId> = timeline
            .events
            .iter()
            .filter_map(|event| event.event.placement.as_ref().map(|p| p.account))
            .filter(|account| *account != id && !names.contains_key(account))
            .collect();
        for other in store.accounts(&missing).await? {
            names.insert(other.id, other.name);
        }
    }
    let next_link = timeline.next.map(|next| {
        let cursor = state.cursors.sign(&listing, &next);
        filters.link(id.0, Some(&cursor))
    });
    let newest_link = after.map(|_| filters.link(id.0, None));
    let items: Vec<Item> = timeline
        .events
        .into_iter()
        .map(|event| item(event, id, &names, &staff))
        .collect();

    let mut source_names: Vec<String> = store
        .connector_statuses()
        .await?
        .into_iter()
        .map(|status| status.connector)
        .collect();
    source_names.push(rapport_core::timeline::INTERNAL_CONNECTOR.to_owned());
    let mut sources = vec![Choice {
        value: String::new(),
        label: "Every source".to_owned(),
        selected: connectors.is_empty(),
    }];
    sources.extend(source_names.into_iter().map(|name| Choice {
        selected: connectors.contains(&name),
        label: if name == rapport_core::timeline::INTERNAL_CONNECTOR {
            "rapport (notes, tasks, handoffs)".to_owned()
        } else {
            name.clone()
        },
        value: name,
    }));
    let kinds = KINDS
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: kind.as_deref().unwrap_or_default() == *value,
        })
        .collect();

    // Health, revenue, activity.
    let vitals = health_of(store, id, now).await?;
    let health = vitals.health;
    let revenue = revenue_of(store, id).await?;
    let mrr_chart = revenue.mrr.first().map(|main| {
        let points: Vec<(DateTime<Utc>, i64)> = revenue
            .history
            .iter()
            .map(|point| {
                let value = point
                    .totals
                    .iter()
                    .find(|total| total.currency == main.currency)
                    .map_or(0, |total| total.minor_units);
                (point.at, value)
            })
            .collect();
        mrr_steps("mrr", &main.currency, &points, now)
    });
    let activity = weekly_activity(store, id, children_on, ACTIVITY_WEEKS, now).await?;

    let team_name = account
        .owner
        .and_then(|owner| staff.get(&owner))
        .and_then(|owner| owner.reports_to)
        .map(|manager| format!("{}'s team", name_of(manager)));
    let history = store
        .assignment_history(id)
        .await?
        .into_iter()
        .rev()
        .take(20)
        .map(|assignment| HistoryItem {
            who: name_of(assignment.staff),
            role: match assignment.role {
                Role::Owner => "Owner",
                Role::Support => "Support",
            },
            from: day(assignment.valid_from.date_naive()),
            to: assignment
                .valid_to
                .map_or_else(|| "now".to_owned(), |to| day(to.date_naive())),
        })
        .collect();
    let owners = owner_choices(&state, viewer, &staff, account.owner).await?;
    let mut on_account: Vec<StaffId> = account.owner.into_iter().collect();
    on_account.extend(account.supporters.iter().copied());
    if !on_account.contains(&viewer.id) {
        on_account.push(viewer.id);
    }
    let assignees = on_account
        .into_iter()
        .map(|person| Choice {
            value: person.0.to_string(),
            label: name_of(person),
            selected: person == viewer.id,
        })
        .collect();

    let filtered = !connectors.is_empty()
        || kind.is_some()
        || from.is_some()
        || until.is_some()
        || after.is_some();
    render(&AccountPage {
        layout: Layout::new(&member, "book", account.name.clone()),
        id: id.0,
        name: account.name.clone(),
        lifecycle: account.lifecycle.as_str(),
        owner: account.owner.map_or_else(|| "nobody".to_owned(), name_of),
        team: team_name,
        supporters: account.supporters.iter().map(|s| name_of(*s)).collect(),
        parent,
        children,
        domains: account.domains.iter().map(|d| d.to_string()).collect(),
        external_ids: account.external_ids.iter().map(|e| e.to_string()).collect(),
        contacts: account
            .contacts
            .iter()
            .map(|contact| {
                let mut label = contact.name.clone().unwrap_or_default();
                if let Some(title) = &contact.title {
                    label = format!("{label}, {title}");
                }
                (label, contact.email.to_string())
            })
            .collect(),
        mrr: money(&revenue.mrr),
        plans: revenue.plans.clone(),
        renewal: account
            .renewal_date
            .or(revenue.renews_at.map(|at| at.date_naive()))
            .map_or_else(|| "—".to_owned(), day),
        last_contact: vitals
            .last_contact
            .map_or_else(|| "never".to_owned(), |at| ago(at, now)),
        next_meeting: vitals.next_meeting.map(instant),
        score: health.score,
        band: health.band.as_str(),
        band_label: band_label(health.band),
        reasons: health.reasons.into_iter().map(|r| r.detail).collect(),
        mrr_chart,
        activity_chart: weekly_bars("activity", &activity),
        items,
        sources,
        kinds,
        from: from.map(|d| d.to_string()).unwrap_or_default(),
        until: until.map(|d| d.to_string()).unwrap_or_default(),
        children_on,
        filtered,
        next_link,
        newest_link,
        owners,
        assignees,
        history,
    })
}

fn back_to(account: AccountId) -> axum::response::Response {
    Redirect::to(&format!("/accounts/{}#timeline", account.0)).into_response()
}

/// Writes a note on the account's timeline.
pub(crate) async fn add_note(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Submission,
) -> WebResult {
    let account = AccountId(path_id(&raw, "account")?);
    let text = form.fields.require("text", "The note")?;
    crate::app::add_note(state.engine.store(), &form.member.caller, account, text).await?;
    Ok(back_to(account))
}

/// Sets a task on the account.
pub(crate) async fn add_task(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Submission,
) -> WebResult {
    let account = AccountId(path_id(&raw, "account")?);
    let fields = &form.fields;
    let text = fields.require("text", "The task")?.to_owned();
    let due = date(&fields.get("due").map(str::to_owned), "Due")?;
    let assignee = match fields.get("assignee") {
        Some(_) => Some(StaffId(fields.id("assignee", "Who")?)),
        None => None,
    };
    crate::app::add_task(
        state.engine.store(),
        &form.member.caller,
        account,
        NewTask {
            text,
            due,
            assignee,
        },
    )
    .await?;
    Ok(back_to(account))
}

/// Marks a task done.
pub(crate) async fn complete_task(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Submission,
) -> WebResult {
    let task = EventId(path_id(&raw, "task")?);
    let done = crate::app::complete_task(state.engine.store(), &form.member.caller, task).await?;
    match done.event.placement {
        Some(placement) => Ok(back_to(placement.account)),
        None => Ok(Redirect::to("/").into_response()),
    }
}

/// Hands the account to a new owner.
pub(crate) async fn set_owner(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    form: Submission,
) -> WebResult {
    let account = AccountId(path_id(&raw, "account")?);
    let owner = StaffId(form.fields.id("owner", "The new owner")?);
    crate::app::change_owner(state.engine.store(), &form.member.caller, account, owner).await?;
    Ok(back_to(account))
}
