//! The audit trail page, for admins: the same entries as `GET /api/v1/audit`.

use crate::app::authorize;
use crate::http::AppState;
use crate::web::account::Choice;
use crate::web::page::{Layout, WebResult, encode, render};
use crate::web::session::Member;
use askama::Template;
use axum::extract::{Query, State};
use rapport_core::StaffId;
use rapport_core::permission::Action;
use rapport_store::AuditQuery;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Entries per page.
const PAGE: u32 = 100;

/// The filters people pick from.
const ACTIONS: [(&str, &str); 6] = [
    ("", "Everything"),
    ("signin", "Sign-ins"),
    ("signin.failed", "Failed password sign-ins"),
    ("token", "API tokens"),
    ("owner.changed", "Owner changes"),
    ("handoff", "Handoffs"),
];

#[derive(Debug, Deserialize)]
pub(crate) struct AuditFilters {
    action: Option<String>,
    cursor: Option<String>,
}

struct EntryRow {
    when: String,
    who: String,
    action: String,
    surface: String,
    status: Option<u16>,
    target: String,
    address: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    actions: Vec<Choice>,
    entries: Vec<EntryRow>,
    next_link: Option<String>,
}

/// The trail, newest first.
pub(crate) async fn page(
    State(state): State<AppState>,
    member: Member,
    Query(filters): Query<AuditFilters>,
) -> WebResult {
    authorize(state.engine.store(), &member.caller, Action::Administer).await?;
    let store = state.engine.store();
    let action = filters
        .action
        .as_deref()
        .filter(|action| ACTIONS.iter().any(|(known, _)| known == action) && !action.is_empty())
        .map(str::to_owned);
    let listing = format!("web-audit:{}", member.caller.id.0);
    let before: Option<i64> = filters
        .cursor
        .as_deref()
        .filter(|cursor| !cursor.is_empty())
        .map(|cursor| state.cursors.verify(&listing, cursor))
        .transpose()?;
    let entries = store
        .audit_entries(&AuditQuery {
            before,
            actor: None,
            action: action.clone(),
            limit: PAGE,
        })
        .await?;
    let names: BTreeMap<StaffId, String> = store
        .list_staff()
        .await?
        .into_iter()
        .map(|person| (person.id, person.name))
        .collect();
    let next_link = (entries.len() == PAGE as usize)
        .then(|| entries.last())
        .flatten()
        .map(|last| {
            format!(
                "/audit?action={}&cursor={}",
                encode(action.as_deref().unwrap_or_default()),
                encode(&state.cursors.sign(&listing, &last.id))
            )
        });
    let entries = entries
        .into_iter()
        .map(|entry| EntryRow {
            when: entry.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            who: entry
                .entry
                .actor
                .map(|actor| {
                    names
                        .get(&actor)
                        .cloned()
                        .unwrap_or_else(|| format!("staff {}", actor.0))
                })
                .unwrap_or_else(|| "—".to_owned()),
            action: entry.entry.action,
            surface: entry.entry.surface,
            status: entry.entry.status,
            target: entry.entry.target.unwrap_or_default(),
            address: entry.entry.address.unwrap_or_default(),
            detail: entry
                .entry
                .detail
                .map(|detail| detail.to_string())
                .unwrap_or_default(),
        })
        .collect();
    render(&AuditPage {
        layout: Layout::new(&member, "audit", "Audit trail"),
        actions: ACTIONS
            .iter()
            .map(|(value, label)| Choice {
                value: (*value).to_owned(),
                label: (*label).to_owned(),
                selected: action.as_deref().unwrap_or_default() == *value,
            })
            .collect(),
        entries,
        next_link,
    })
}
