//! Zendesk tickets, audits and webhook deliveries → timeline events. Pure: no I/O.
//!
//! Source ids are chosen so that the pull and the push name the same fact the same way,
//! and the host stores it once whichever arrives first:
//! - `ticket:{id}`: the ticket itself (`support.ticket.created`), versioned by its
//!   `updated_at`, so its current status and priority follow the ticket;
//! - `ticket:{id}:status:{unix seconds}:{new status}`: a status transition
//!   (`.solved`, `.reopened`, or `.updated`), and `…:priority:…` likewise;
//! - `comment:{id}`: a comment (`support.comment.added`); Zendesk gives a comment's
//!   audit event the comment's id.

use rapport_pdk::Event;
use rapport_pdk::prelude::*;
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;

/// The external-id system of Zendesk organizations (`zendesk_org:42`).
pub const ORGANIZATION_SYSTEM: &str = "zendesk_org";
/// How much of a ticket description or comment goes into a summary.
pub const SNIPPET_CHARS_MAX: usize = 280;

pub const KINDS: &[&str] = &[
    "support.ticket.created",
    "support.ticket.updated",
    "support.ticket.solved",
    "support.ticket.reopened",
    "support.comment.added",
];

/// A page of `GET /api/v2/incremental/tickets/cursor.json` with its side-loads.
#[derive(Debug, Deserialize)]
pub struct Export {
    pub tickets: Vec<Ticket>,
    pub after_cursor: Option<String>,
    #[serde(default)]
    pub end_of_stream: bool,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub organizations: Vec<Organization>,
    #[serde(default)]
    pub metric_sets: Vec<MetricSet>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Ticket {
    pub id: u64,
    pub subject: Option<String>,
    pub description: Option<String>,
    pub status: String,
    pub priority: Option<String>,
    #[serde(rename = "type")]
    pub ticket_type: Option<String>,
    pub requester_id: Option<u64>,
    pub organization_id: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
    pub due_at: Option<String>,
    pub via: Option<Via>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Via {
    pub channel: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Organization {
    pub id: u64,
    pub name: Option<String>,
    #[serde(default)]
    pub domain_names: Vec<String>,
}

/// Zendesk's SLA-relevant measurements of a ticket (side-loaded as `metric_sets`).
#[derive(Debug, Clone, Deserialize)]
pub struct MetricSet {
    pub ticket_id: u64,
    pub reply_time_in_minutes: Option<Minutes>,
    pub first_resolution_time_in_minutes: Option<Minutes>,
    pub full_resolution_time_in_minutes: Option<Minutes>,
    pub solved_at: Option<String>,
    pub latest_comment_added_at: Option<String>,
    pub reopens: Option<i64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Minutes {
    pub calendar: Option<i64>,
    pub business: Option<i64>,
}

/// A page of `GET /api/v2/tickets/{id}/audits.json`, offset or cursor paginated.
#[derive(Debug, Deserialize)]
pub struct AuditPage {
    pub audits: Vec<Audit>,
    pub next_page: Option<String>,
    pub meta: Option<CursorMeta>,
    pub links: Option<CursorLinks>,
}

#[derive(Debug, Deserialize)]
pub struct CursorMeta {
    #[serde(default)]
    pub has_more: bool,
}

#[derive(Debug, Deserialize)]
pub struct CursorLinks {
    pub next: Option<String>,
}

impl AuditPage {
    /// The URL of the next page, whichever pagination the response used.
    pub fn next(&self) -> Option<&str> {
        match (&self.meta, &self.links) {
            (Some(meta), Some(links)) if meta.has_more => links.next.as_deref(),
            (Some(_), _) => None,
            _ => self.next_page.as_deref(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Audit {
    pub id: u64,
    pub created_at: String,
    pub author_id: Option<i64>,
    #[serde(default)]
    pub events: Vec<AuditEvent>,
}

#[derive(Debug, Deserialize)]
pub struct AuditEvent {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub field_name: Option<String>,
    pub value: Option<Value>,
    pub previous_value: Option<Value>,
    pub body: Option<String>,
    pub public: Option<bool>,
}

/// The people and organizations a page side-loaded, by id.
#[derive(Debug, Default)]
pub struct Directory {
    pub users: HashMap<u64, User>,
    pub organizations: HashMap<u64, Organization>,
    pub metrics: HashMap<u64, MetricSet>,
}

impl Directory {
    pub fn from_export(export: &Export) -> Directory {
        Directory {
            users: export.users.iter().map(|u| (u.id, u.clone())).collect(),
            organizations: export
                .organizations
                .iter()
                .map(|o| (o.id, o.clone()))
                .collect(),
            metrics: export
                .metric_sets
                .iter()
                .map(|m| (m.ticket_id, m.clone()))
                .collect(),
        }
    }
}

/// What every event of one ticket shares: where it links and whom it concerns.
pub struct TicketContext<'a> {
    pub base_url: &'a str,
    pub ticket_id: u64,
    pub subject: &'a str,
    pub requester: Option<&'a User>,
    pub organization_id: Option<u64>,
    pub organization: Option<&'a Organization>,
}

impl<'a> TicketContext<'a> {
    /// The context of `ticket`, with its requester and organization from `directory`.
    pub fn of(
        ticket: &'a Ticket,
        base_url: &'a str,
        directory: &'a Directory,
    ) -> TicketContext<'a> {
        TicketContext {
            base_url,
            ticket_id: ticket.id,
            subject: ticket.subject.as_deref().unwrap_or("(no subject)"),
            requester: ticket.requester_id.and_then(|id| directory.users.get(&id)),
            organization_id: ticket.organization_id,
            organization: ticket
                .organization_id
                .and_then(|id| directory.organizations.get(&id)),
        }
    }

    fn link(&self) -> String {
        format!(
            "{}/agent/tickets/{}",
            self.base_url.trim_end_matches('/'),
            self.ticket_id
        )
    }

    fn event(&self, source_id: &str, kind: &str, at: i64, title: &str) -> Event {
        let mut out = rapport_pdk::event(source_id, kind, at, title)
            .url(&self.link())
            .attribute(
                "ticket_id",
                AttributeValue::Integer(i64::try_from(self.ticket_id).unwrap_or(i64::MAX)),
            );
        if let Some(email) = self.requester.and_then(|user| user.email.as_deref()) {
            out = out.email(email).text("requester_email", email);
        }
        if let Some(id) = self.organization_id {
            out = out.external_id(ORGANIZATION_SYSTEM, &id.to_string());
        }
        if let Some(organization) = self.organization {
            for domain in &organization.domain_names {
                out = out.domain(domain);
            }
            if let Some(name) = &organization.name {
                out = out.text("organization", name);
            }
        }
        out
    }
}

/// The ticket itself: when it was opened, and its current state as attributes.
pub fn ticket_event(
    ticket: &Ticket,
    context: &TicketContext,
    directory: &Directory,
) -> Result<Event, ConnectorError> {
    let subject = ticket.subject.as_deref().unwrap_or("(no subject)");
    let mut out = context
        .event(
            &format!("ticket:{}", ticket.id),
            "support.ticket.created",
            time::parse_rfc3339(&ticket.created_at)?,
            &format!("Ticket #{} opened: {subject}", ticket.id),
        )
        .version(time::parse_rfc3339(&ticket.updated_at)?)
        .summary(&snippet(ticket.description.as_deref().unwrap_or_default()))
        .text("status", &ticket.status);
    if let Some(requester) = context.requester {
        out = out.actor(requester.name.as_deref(), requester.email.as_deref());
    }
    for (name, value) in [
        ("priority", ticket.priority.as_deref()),
        ("ticket_type", ticket.ticket_type.as_deref()),
        (
            "channel",
            ticket.via.as_ref().and_then(|via| via.channel.as_deref()),
        ),
    ] {
        if let Some(value) = value {
            out = out.text(name, value);
        }
    }
    if !ticket.tags.is_empty() {
        out = out.text("tags", &ticket.tags.join(" "));
    }
    if let Some(due) = &ticket.due_at {
        out = out.attribute(
            "due_at",
            AttributeValue::Timestamp(time::parse_rfc3339(due)?),
        );
    }
    if let Some(metrics) = directory.metrics.get(&ticket.id) {
        for (name, minutes) in [
            ("first_reply_minutes", &metrics.reply_time_in_minutes),
            (
                "first_resolution_minutes",
                &metrics.first_resolution_time_in_minutes,
            ),
            (
                "full_resolution_minutes",
                &metrics.full_resolution_time_in_minutes,
            ),
        ] {
            if let Some(calendar) = minutes.as_ref().and_then(|minutes| minutes.calendar) {
                out = out.attribute(name, AttributeValue::Integer(calendar));
            }
        }
        for (name, at) in [
            ("solved_at", &metrics.solved_at),
            ("latest_comment_at", &metrics.latest_comment_added_at),
        ] {
            if let Some(at) = at {
                out = out.attribute(name, AttributeValue::Timestamp(time::parse_rfc3339(at)?));
            }
        }
        if let Some(reopens) = metrics.reopens {
            out = out.attribute("reopens", AttributeValue::Integer(reopens));
        }
    }
    Ok(out)
}

/// The kind of a status transition.
pub fn status_kind(previous: Option<&str>, current: &str) -> &'static str {
    match (previous, current) {
        (_, "solved") => "support.ticket.solved",
        // Solved tickets close by themselves after a while; that is not a reopening.
        (Some("solved" | "closed"), current) if current != "closed" => "support.ticket.reopened",
        _ => "support.ticket.updated",
    }
}

/// A status transition at `at` (micros).
pub fn status_event(
    context: &TicketContext,
    at: i64,
    previous: Option<&str>,
    current: &str,
) -> Event {
    let kind = status_kind(previous, current);
    let verb = match kind {
        "support.ticket.solved" => "solved".to_owned(),
        "support.ticket.reopened" => "reopened".to_owned(),
        _ => format!("is {current}"),
    };
    let transition = match previous {
        Some(previous) => format!("Status {previous} → {current}."),
        None => format!("Status {current}."),
    };
    let mut out = context
        .event(
            &format!(
                "ticket:{}:status:{}:{current}",
                context.ticket_id,
                at.div_euclid(1_000_000)
            ),
            kind,
            at,
            &format!("Ticket #{} {verb}: {}", context.ticket_id, context.subject),
        )
        .summary(&transition)
        .text("status", current);
    if let Some(previous) = previous {
        out = out.text("previous_status", previous);
    }
    out
}

/// A comment: a public reply or an internal note.
pub fn comment_event(
    context: &TicketContext,
    comment_id: u64,
    at: i64,
    body: &str,
    public: bool,
    author: Option<&User>,
) -> Event {
    let what = if public { "Reply" } else { "Internal note" };
    let by = author
        .and_then(|user| user.name.as_deref())
        .map(|name| format!(" by {name}"))
        .unwrap_or_default();
    let mut out = context
        .event(
            &format!("comment:{comment_id}"),
            "support.comment.added",
            at,
            &format!(
                "{what} on ticket #{}{by}: {}",
                context.ticket_id, context.subject
            ),
        )
        .summary(&snippet(body))
        .attribute("public", AttributeValue::Boolean(public));
    if let Some(author) = author {
        out = out.actor(author.name.as_deref(), author.email.as_deref());
    }
    out
}

/// Everything a ticket's audits record: status and priority transitions and comments.
/// The audit that created the ticket is skipped (its comment is the description, its
/// status the initial one — both on the `ticket:{id}` event).
pub fn audit_events(
    context: &TicketContext,
    audits: &[Audit],
    directory: &Directory,
) -> Result<Vec<Event>, ConnectorError> {
    let mut out = Vec::new();
    for audit in audits {
        if audit.events.iter().any(|event| event.kind == "Create") {
            continue;
        }
        let at = time::parse_rfc3339(&audit.created_at)?;
        let author = audit
            .author_id
            .and_then(|id| u64::try_from(id).ok())
            .and_then(|id| directory.users.get(&id));
        for event in &audit.events {
            match (event.kind.as_str(), event.field_name.as_deref()) {
                ("Change", Some("status")) => {
                    let Some(current) = event.value.as_ref().and_then(Value::as_str) else {
                        continue;
                    };
                    let previous = event.previous_value.as_ref().and_then(Value::as_str);
                    out.push(status_event(context, at, previous, current));
                }
                ("Change", Some("priority")) => {
                    let current = event
                        .value
                        .as_ref()
                        .and_then(Value::as_str)
                        .unwrap_or("none");
                    let previous = event
                        .previous_value
                        .as_ref()
                        .and_then(Value::as_str)
                        .unwrap_or("none");
                    out.push(
                        context
                            .event(
                                &format!(
                                    "ticket:{}:priority:{}:{current}",
                                    context.ticket_id,
                                    at.div_euclid(1_000_000)
                                ),
                                "support.ticket.updated",
                                at,
                                &format!(
                                    "Ticket #{} priority {previous} → {current}: {}",
                                    context.ticket_id, context.subject
                                ),
                            )
                            .text("priority", current)
                            .text("previous_priority", previous),
                    );
                }
                ("Comment", _) => out.push(comment_event(
                    context,
                    event.id,
                    at,
                    event.body.as_deref().unwrap_or_default(),
                    event.public.unwrap_or(true),
                    author,
                )),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// A Zendesk event-subscription webhook delivery (`zen:event-type:ticket.*`).
#[derive(Debug, Deserialize)]
pub struct Delivery {
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    pub detail: DeliveryTicket,
    #[serde(default)]
    pub event: Value,
}

/// The ticket as a webhook describes it: ids are strings, statuses upper-case.
#[derive(Debug, Deserialize)]
pub struct DeliveryTicket {
    pub id: String,
    pub subject: Option<String>,
    pub description: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub organization_id: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// Maps a webhook delivery; `Ok(None)` for event types this connector does not map.
pub fn delivery_event(
    delivery: &Delivery,
    base_url: &str,
) -> Result<Option<Event>, ConnectorError> {
    let ticket_id: u64 = delivery.detail.id.parse().map_err(|_| {
        ConnectorError::Fatal(format!(
            "the delivery's ticket id `{}` is not a number",
            delivery.detail.id
        ))
    })?;
    let subject = delivery.detail.subject.as_deref().unwrap_or("(no subject)");
    let context = TicketContext {
        base_url,
        ticket_id,
        subject,
        requester: None,
        organization_id: delivery
            .detail
            .organization_id
            .as_deref()
            .and_then(|id| id.parse().ok()),
        organization: None,
    };
    let at = time::parse_rfc3339(&delivery.time)?;
    let lower = |value: &Value| value.as_str().map(str::to_ascii_lowercase);
    let event = match delivery.kind.strip_prefix("zen:event-type:") {
        Some("ticket.created") => {
            let created = match &delivery.detail.created_at {
                Some(created) => time::parse_rfc3339(created)?,
                None => at,
            };
            let mut out = context
                .event(
                    &format!("ticket:{ticket_id}"),
                    "support.ticket.created",
                    created,
                    &format!("Ticket #{ticket_id} opened: {subject}"),
                )
                .summary(&snippet(
                    delivery.detail.description.as_deref().unwrap_or_default(),
                ));
            if let Some(updated) = &delivery.detail.updated_at {
                out = out.version(time::parse_rfc3339(updated)?);
            }
            if let Some(status) = &delivery.detail.status {
                out = out.text("status", &status.to_ascii_lowercase());
            }
            if let Some(priority) = &delivery.detail.priority {
                out = out.text("priority", &priority.to_ascii_lowercase());
            }
            Some(out)
        }
        Some("ticket.status_changed") => {
            let current = delivery
                .event
                .get("current")
                .and_then(lower)
                .ok_or_else(|| {
                    ConnectorError::Fatal("a status_changed delivery without event.current".into())
                })?;
            let previous = delivery.event.get("previous").and_then(lower);
            Some(status_event(&context, at, previous.as_deref(), &current))
        }
        Some("ticket.comment_added") => {
            let comment = delivery.event.get("comment").ok_or_else(|| {
                ConnectorError::Fatal("a comment_added delivery without event.comment".into())
            })?;
            let id = comment
                .get("id")
                .and_then(|id| id.as_u64().or_else(|| id.as_str()?.parse().ok()))
                .ok_or_else(|| {
                    ConnectorError::Fatal("a comment_added delivery without a comment id".into())
                })?;
            let author = comment.get("author").map(|author| User {
                id: 0,
                name: author
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                email: None,
            });
            Some(comment_event(
                &context,
                id,
                at,
                comment
                    .get("body")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                comment
                    .get("is_public")
                    .and_then(Value::as_bool)
                    .unwrap_or(true),
                author.as_ref(),
            ))
        }
        _ => None,
    };
    Ok(event)
}

fn snippet(text: &str) -> String {
    rapport_pdk::snippet(text, SNIPPET_CHARS_MAX)
}

#[cfg(test)]
mod tests;
