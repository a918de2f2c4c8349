//! The team: the org chart under the viewer with each person's book size and how many
//! of those accounts need attention, and bulk handoffs between people.

use crate::http::AppState;
use crate::web::account::{Choice, owner_choices};
use crate::web::page::{Layout, WebError, WebResult, render, staff_by_id};
use crate::web::session::{Member, Submission};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use chrono::Utc;
use rapport_core::health::Band;
use rapport_core::staff::Staff;
use rapport_core::{AccountId, StaffId};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

pub(crate) struct Person {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub level: &'static str,
    pub depth: usize,
    pub active: bool,
    pub book: usize,
    pub attention: usize,
    pub can_hand_off: bool,
}

#[derive(Template)]
#[template(path = "team.html")]
struct TeamPage {
    layout: Layout,
    people: Vec<Person>,
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TeamQuery {
    moved: Option<usize>,
    to: Option<i64>,
}

/// `root` and everyone under them, depth first, each with their depth.
fn org_below(root: StaffId, staff: &BTreeMap<StaffId, Staff>) -> Vec<(usize, StaffId)> {
    let mut reports: BTreeMap<StaffId, Vec<&Staff>> = BTreeMap::new();
    for person in staff.values() {
        if let Some(manager) = person.reports_to {
            reports.entry(manager).or_default().push(person);
        }
    }
    for list in reports.values_mut() {
        list.sort_by(|a, b| (b.level, &a.name).cmp(&(a.level, &b.name)));
    }
    let mut out = Vec::new();
    let mut stack = vec![(0, root)];
    let mut seen = BTreeSet::new();
    while let Some((depth, id)) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        out.push((depth, id));
        if let Some(list) = reports.get(&id) {
            for person in list.iter().rev() {
                stack.push((depth + 1, person.id));
            }
        }
    }
    out
}

pub(crate) async fn page(
    State(state): State<AppState>,
    member: Member,
    Query(query): Query<TeamQuery>,
) -> WebResult {
    let store = state.engine.store();
    let now = Utc::now();
    let viewer = &member.caller;
    let staff: BTreeMap<StaffId, Staff> = staff_by_id(store).await?;
    let visible: Vec<AccountId> = store
        .visible_account_ids(viewer.id, now)
        .await?
        .into_iter()
        .collect();
    let accounts = store.accounts(&visible).await?;
    let ids: Vec<AccountId> = accounts.iter().map(|account| account.id).collect();
    let meetings = store.meetings(&ids, now).await?;
    let needs_attention: BTreeSet<AccountId> = store
        .insights(&ids)
        .await?
        .into_iter()
        .filter(|(id, insight)| {
            let calendar = meetings.get(id).copied().unwrap_or_default();
            insight.health(now, &calendar).band != Band::Healthy
        })
        .map(|(id, _)| id)
        .collect();
    let may_hand_off = viewer.permissions.may_reassign();
    let people = org_below(viewer.id, &staff)
        .into_iter()
        .filter_map(|(depth, id)| staff.get(&id).map(|person| (depth, person)))
        .map(|(depth, person)| {
            let book: Vec<AccountId> = accounts
                .iter()
                .filter(|a| a.owner == Some(person.id) || a.supporters.contains(&person.id))
                .map(|a| a.id)
                .collect();
            Person {
                id: person.id.0,
                name: person.name.clone(),
                email: person.email.to_string(),
                level: person.level.as_str(),
                depth: depth.min(6),
                active: person.active,
                book: book.len(),
                attention: book.iter().filter(|a| needs_attention.contains(a)).count(),
                can_hand_off: may_hand_off && accounts.iter().any(|a| a.owner == Some(person.id)),
            }
        })
        .collect();
    let notice = match (query.moved, query.to.and_then(|to| staff.get(&StaffId(to)))) {
        (Some(moved), Some(to)) => Some(format!(
            "Handed {moved} account{} to {}. Each account's timeline records the handoff.",
            if moved == 1 { "" } else { "s" },
            to.name
        )),
        _ => None,
    };
    render(&TeamPage {
        layout: Layout::new(&member, "team", "Team"),
        people,
        notice,
    })
}

pub(crate) struct Owned {
    pub id: i64,
    pub name: String,
}

#[derive(Template)]
#[template(path = "handoff.html")]
struct HandoffPage {
    layout: Layout,
    from_id: i64,
    from_name: String,
    accounts: Vec<Owned>,
    recipients: Vec<Choice>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct HandoffQuery {
    from: Option<String>,
}

/// Choose which of one person's accounts go to whom.
pub(crate) async fn handoff_page(
    State(state): State<AppState>,
    member: Member,
    Query(query): Query<HandoffQuery>,
) -> WebResult {
    let store = state.engine.store();
    let from = query
        .from
        .as_deref()
        .and_then(|raw| raw.parse().ok())
        .map(StaffId)
        .ok_or_else(|| {
            WebError::Invalid("choose whose accounts to hand off on the Team page".to_owned())
        })?;
    let person = store.staff(from).await?;
    // Only what the viewer sees: a handoff must not reveal hidden accounts.
    let owned =
        crate::app::visible_of(store, &member.caller, store.owned_accounts(from).await?).await?;
    let mut accounts: Vec<Owned> = store
        .accounts(&owned)
        .await?
        .into_iter()
        .map(|account| Owned {
            id: account.id.0,
            name: account.name,
        })
        .collect();
    accounts.sort_by(|a, b| a.name.cmp(&b.name));
    let staff: BTreeMap<StaffId, Staff> = staff_by_id(store).await?;
    let recipients = owner_choices(&state, &member.caller, &staff, None)
        .await?
        .into_iter()
        .filter(|choice| choice.value != from.0.to_string())
        .collect::<Vec<_>>();
    if recipients.is_empty() {
        return Err(WebError::Forbidden(
            "you cannot hand accounts to anyone: handoffs are for managers and up, to people in their own reporting line".to_owned(),
        ));
    }
    render(&HandoffPage {
        layout: Layout::new(
            &member,
            "team",
            format!("Hand off {}'s accounts", person.name),
        ),
        from_id: from.0,
        from_name: person.name,
        accounts,
        recipients,
    })
}

/// Moves the ticked accounts in one transaction.
pub(crate) async fn handoff(State(state): State<AppState>, form: Submission) -> WebResult {
    let from = StaffId(form.fields.id("from", "Whose accounts")?);
    let to = StaffId(form.fields.id("to", "The new owner")?);
    let chosen: Vec<AccountId> = form
        .fields
        .all("account")
        .map(|raw| {
            raw.parse()
                .map(AccountId)
                .map_err(|_| WebError::Invalid(format!("account must be a number, not {raw:?}")))
        })
        .collect::<WebResult<_>>()?;
    if chosen.is_empty() {
        return Err(WebError::Invalid(
            "no accounts were ticked: tick the ones to hand off".to_owned(),
        ));
    }
    let moved = crate::app::hand_off(
        state.engine.store(),
        &form.member.caller,
        from,
        to,
        Some(chosen),
    )
    .await?;
    Ok(Redirect::to(&format!("/team?moved={}&to={}", moved.len(), to.0)).into_response())
}
