//! My book: what needs attention first, then every account the viewer sees — their
//! own, those they support and their reports' — grouped by owner, with health, MRR,
//! renewal and last contact.

use crate::http::AppState;
use crate::web::page::{Layout, WebResult, ago, day, instant, money, render, staff_by_id};
use crate::web::session::Member;
use askama::Template;
use axum::extract::{Query, State};
use chrono::Utc;
use rapport_core::account::Account;
use rapport_core::health::Band;
use rapport_core::staff::Level;
use rapport_core::{AccountId, StaffId};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Most accounts one book page lists; a bigger book is narrowed by search or by
/// person. Needs attention is chosen from the whole book, listed or not.
pub const BOOK_ACCOUNTS_MAX: usize = 300;
/// How many accounts the needs-attention list shows.
const ATTENTION_SHOWN: usize = 10;

#[derive(Debug, Deserialize)]
pub(crate) struct BookQuery {
    q: Option<String>,
    staff: Option<String>,
}

pub(crate) struct Row {
    pub id: i64,
    pub name: String,
    pub lifecycle: &'static str,
    pub score: u8,
    pub band: &'static str,
    pub band_label: &'static str,
    pub reasons: Vec<String>,
    pub mrr: String,
    pub renewal: String,
    pub last_contact: String,
    /// When the next meeting with the client starts, if one is scheduled.
    pub next_meeting: Option<String>,
    pub role: &'static str,
}

pub(crate) struct Group {
    pub heading: String,
    pub rows: Vec<Row>,
}

#[derive(Template)]
#[template(path = "book.html")]
struct BookPage {
    layout: Layout,
    query: String,
    filter_name: Option<String>,
    attention: Vec<Row>,
    groups: Vec<Group>,
    total: usize,
    truncated: bool,
}

pub(crate) fn band_label(band: Band) -> &'static str {
    match band {
        Band::Healthy => "Healthy",
        Band::Watch => "Watch",
        Band::AtRisk => "At risk",
    }
}

pub(crate) async fn page(
    State(state): State<AppState>,
    member: Member,
    Query(query): Query<BookQuery>,
) -> WebResult {
    let store = state.engine.store();
    let now = Utc::now();
    let viewer = &member.caller;
    let mut visible: Vec<AccountId> = store
        .visible_account_ids(viewer.id, now)
        .await?
        .into_iter()
        .collect();
    let text = query.q.as_deref().map(str::trim).unwrap_or_default();
    if !text.is_empty() {
        visible = store.search_accounts(text, &visible).await?;
    }
    let staff: BTreeMap<StaffId, rapport_core::staff::Staff> = staff_by_id(store).await?;
    let person = query
        .staff
        .as_deref()
        .and_then(|raw| raw.parse().ok())
        .map(StaffId)
        .filter(|id| staff.contains_key(id));
    let mut accounts: Vec<Account> = store
        .accounts(&visible)
        .await?
        .into_iter()
        .filter(|account| {
            person.is_none_or(|p| account.owner == Some(p) || account.supporters.contains(&p))
        })
        .collect();
    accounts.sort_by_cached_key(|account| (account.name.to_lowercase(), account.id.0));
    let total = accounts.len();
    let truncated = total > BOOK_ACCOUNTS_MAX;
    // Every account's insight in one read per thousand, so attention is chosen from
    // the whole book and only the listing is cut.
    let ids: Vec<AccountId> = accounts.iter().map(|account| account.id).collect();
    let insights = store.insights(&ids).await?;
    let meetings = store.meetings(&ids, now).await?;

    let mut rows: Vec<(Option<StaffId>, Row)> = Vec::with_capacity(accounts.len());
    for account in &accounts {
        let Some(insight) = insights.get(&account.id) else {
            continue; // removed since it was listed
        };
        let calendar = meetings.get(&account.id).copied().unwrap_or_default();
        let health = insight.health(now, &calendar);
        let standing = insight.standing();
        let renewal = account
            .renewal_date
            .or(standing.renews_at.map(|at| at.date_naive()));
        let role = if account.owner == Some(viewer.id) {
            "owner"
        } else if account.supporters.contains(&viewer.id) {
            "supporting"
        } else {
            ""
        };
        rows.push((
            account.owner,
            Row {
                id: account.id.0,
                name: account.name.clone(),
                lifecycle: account.lifecycle.as_str(),
                score: health.score,
                band: health.band.as_str(),
                band_label: band_label(health.band),
                reasons: health.reasons.iter().map(|r| r.detail.clone()).collect(),
                mrr: money(&standing.mrr),
                renewal: renewal.map(day).unwrap_or_else(|| "—".to_owned()),
                last_contact: insight
                    .last_contact(&calendar)
                    .map(|at| ago(at, now))
                    .unwrap_or_else(|| "never".to_owned()),
                next_meeting: calendar.next.map(instant),
                role,
            },
        ));
    }

    let mut attention: Vec<&Row> = rows
        .iter()
        .map(|(_, row)| row)
        .filter(|row| row.band != Band::Healthy.as_str())
        .collect();
    attention.sort_by(|a, b| a.score.cmp(&b.score).then(a.name.cmp(&b.name)));
    let attention: Vec<Row> = attention
        .into_iter()
        .take(ATTENTION_SHOWN)
        .map(|row| Row {
            reasons: row.reasons.clone(),
            mrr: row.mrr.clone(),
            renewal: row.renewal.clone(),
            last_contact: row.last_contact.clone(),
            next_meeting: row.next_meeting.clone(),
            name: row.name.clone(),
            ..*row
        })
        .collect();
    rows.truncate(BOOK_ACCOUNTS_MAX);

    // Managers and up see their book by owner; an associate's is one list.
    let by_owner = viewer.level != Level::Associate || person.is_some();
    let mut groups: BTreeMap<(u8, String), Vec<Row>> = BTreeMap::new();
    for (owner, row) in rows {
        let key = if !by_owner {
            (0, "Your accounts".to_owned())
        } else {
            match owner.and_then(|id| staff.get(&id)) {
                Some(person) if person.id == viewer.id => (0, "Owned by you".to_owned()),
                Some(person) => (1, format!("Owned by {}", person.name)),
                None => (2, "No owner".to_owned()),
            }
        };
        groups.entry(key).or_default().push(row);
    }
    let layout = Layout::new(&member, "book", "My book");
    render(&BookPage {
        layout,
        query: text.to_owned(),
        filter_name: person.and_then(|id| staff.get(&id)).map(|p| p.name.clone()),
        attention,
        groups: groups
            .into_iter()
            .map(|((_, heading), rows)| Group { heading, rows })
            .collect(),
        total,
        truncated,
    })
}
