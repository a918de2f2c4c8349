//! The mapping, over the recorded Zendesk responses in `tests/fixtures/zendesk`.

use super::*;
use serde_json::json;

const TICKETS: &str = include_str!("../../../../tests/fixtures/zendesk/tickets.json");
const USERS: &str = include_str!("../../../../tests/fixtures/zendesk/users.json");
const ORGANIZATIONS: &str = include_str!("../../../../tests/fixtures/zendesk/organizations.json");
const AUDITS: &str = include_str!("../../../../tests/fixtures/zendesk/ticket_audits.json");

const BASE: &str = "https://acme.zendesk.com";

/// The fixture tickets as an export page, with the first user and organization of the
/// fixtures as the requester and organization of every ticket.
fn export() -> Export {
    let mut tickets: Value = serde_json::from_str(TICKETS).unwrap();
    let users: Value = serde_json::from_str(USERS).unwrap();
    let organizations: Value = serde_json::from_str(ORGANIZATIONS).unwrap();
    for ticket in tickets["tickets"].as_array_mut().unwrap() {
        ticket["requester_id"] = users["users"][1]["id"].clone();
        ticket["organization_id"] = organizations["organizations"][0]["id"].clone();
    }
    serde_json::from_value(json!({
        "tickets": tickets["tickets"],
        "users": users["users"],
        "organizations": organizations["organizations"],
        "after_cursor": "MTU3NjYxMzUzOS4wfHw0NTF8",
        "end_of_stream": true,
    }))
    .unwrap()
}

fn context<'a>(ticket: &'a Ticket, directory: &'a Directory) -> TicketContext<'a> {
    TicketContext::of(ticket, BASE, directory)
}

fn text<'e>(event: &'e Event, name: &str) -> Option<&'e str> {
    event
        .attributes
        .iter()
        .find_map(|attribute| match &attribute.value {
            AttributeValue::Text(text) if attribute.name == name => Some(text.as_str()),
            _ => None,
        })
}

#[test]
fn a_ticket_is_opened_with_requester_organization_and_link() {
    let export = export();
    let directory = Directory::from_export(&export);
    let ticket = &export.tickets[0];
    let event = ticket_event(ticket, &context(ticket, &directory), &directory).unwrap();

    assert_eq!(event.source_id, "ticket:2");
    assert_eq!(event.kind, "support.ticket.created");
    assert_eq!(
        event.title,
        "Ticket #2 opened: Mail to create fixture ticket for testing"
    );
    assert_eq!(
        event.occurred_at,
        time::parse_rfc3339("2019-06-03T02:23:47Z").unwrap()
    );
    // Versioned by updated_at, so later syncs refresh its status.
    assert_eq!(
        event.source_version,
        time::parse_rfc3339("2019-06-05T01:13:24Z").unwrap()
    );
    assert_eq!(
        event.url.as_deref(),
        Some("https://acme.zendesk.com/agent/tickets/2")
    );
    assert_eq!(text(&event, "status"), Some("solved"));
    assert_eq!(text(&event, "channel"), Some("email"));
    assert_eq!(event.hints.emails, vec!["nukosuke@lavabit.com".to_owned()]);
    assert_eq!(event.hints.external_ids[0].system, "zendesk_org");
    assert_eq!(event.hints.external_ids[0].id, "361898904439");
    assert_eq!(
        event.hints.domains,
        vec!["hoth.com".to_owned(), "dantooine.com".to_owned()]
    );
    assert_eq!(
        event.summary,
        "Mail to create fixture ticket for testing nukosuke (●ↀ ω ↀ●)"
    );
}

#[test]
fn sla_metrics_become_attributes() {
    let mut export = export();
    export.metric_sets = vec![
        serde_json::from_value(json!({
            "ticket_id": 2,
            "reply_time_in_minutes": { "calendar": 42, "business": 30 },
            "full_resolution_time_in_minutes": { "calendar": 2790, "business": 900 },
            "solved_at": "2019-06-05T01:13:24Z",
            "reopens": 1
        }))
        .unwrap(),
    ];
    let directory = Directory::from_export(&export);
    let ticket = &export.tickets[0];
    let event = ticket_event(ticket, &context(ticket, &directory), &directory).unwrap();
    let integer = |name: &str| {
        event
            .attributes
            .iter()
            .find_map(|attribute| match attribute.value {
                AttributeValue::Integer(value) if attribute.name == name => Some(value),
                _ => None,
            })
    };
    assert_eq!(integer("first_reply_minutes"), Some(42));
    assert_eq!(integer("full_resolution_minutes"), Some(2790));
    assert_eq!(integer("reopens"), Some(1));
    assert!(
        event
            .attributes
            .iter()
            .any(|attribute| attribute.name == "solved_at")
    );
}

#[test]
fn audits_give_transitions_and_comments_but_not_the_creation() {
    let export = export();
    let directory = Directory::from_export(&export);
    let ticket = &export.tickets[0];
    let context = context(ticket, &directory);
    let page: AuditPage = serde_json::from_str(AUDITS).unwrap();
    assert_eq!(page.next(), None);

    let events = audit_events(&context, &page.audits, &directory).unwrap();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.kind.as_str(), event.source_id.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("support.comment.added", "comment:2127301148"),
            ("support.ticket.updated", "ticket:2:status:1316990144:open"),
        ]
    );
    assert_eq!(
        events[0].title,
        "Internal note on ticket #2: Mail to create fixture ticket for testing"
    );
    assert_eq!(events[1].summary, "Status new → open.");

    // The audit that created a ticket repeats what the ticket event says.
    let mut created: Value = serde_json::from_str(AUDITS).unwrap();
    created["audits"][0]["events"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "id": 1, "type": "Create", "field_name": "status", "value": "new" }));
    let page: AuditPage = serde_json::from_value(created).unwrap();
    assert!(
        audit_events(&context, &page.audits, &directory)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn transitions_are_named_by_where_they_go() {
    assert_eq!(status_kind(Some("open"), "solved"), "support.ticket.solved");
    assert_eq!(
        status_kind(Some("solved"), "open"),
        "support.ticket.reopened"
    );
    assert_eq!(
        status_kind(Some("closed"), "new"),
        "support.ticket.reopened"
    );
    assert_eq!(
        status_kind(Some("open"), "pending"),
        "support.ticket.updated"
    );
    assert_eq!(
        status_kind(Some("solved"), "closed"),
        "support.ticket.updated"
    );
    assert_eq!(status_kind(None, "open"), "support.ticket.updated");
}

#[test]
fn cursor_pagination_of_audits_is_followed_only_while_has_more() {
    let page = |has_more: bool| -> AuditPage {
        serde_json::from_value(json!({
            "audits": [],
            "meta": { "has_more": has_more, "after_cursor": "x" },
            "links": { "next": "https://acme.zendesk.com/api/v2/tickets/2/audits.json?page[after]=x" }
        }))
        .unwrap()
    };
    assert!(page(true).next().unwrap().ends_with("page[after]=x"));
    assert_eq!(page(false).next(), None);
}

#[test]
fn webhook_deliveries_name_facts_as_the_pull_does() {
    let delivery: Delivery = serde_json::from_value(json!({
        "type": "zen:event-type:ticket.status_changed",
        "id": "a2a8e7ae-4d8f-4b0c-9d93-7e3f3a3b1f44",
        "time": "2011-09-25T22:35:44Z",
        "subject": "zen:ticket:2",
        "detail": { "id": "2", "subject": "Mail to create fixture ticket for testing",
                    "status": "OPEN", "organization_id": "361898904439" },
        "event": { "current": "OPEN", "previous": "NEW" }
    }))
    .unwrap();
    let event = delivery_event(&delivery, BASE).unwrap().unwrap();
    // The same id as the audit's transition above: stored once, whichever comes first.
    assert_eq!(event.source_id, "ticket:2:status:1316990144:open");
    assert_eq!(event.kind, "support.ticket.updated");
    assert_eq!(event.hints.external_ids[0].id, "361898904439");

    let comment: Delivery = serde_json::from_value(json!({
        "type": "zen:event-type:ticket.comment_added",
        "time": "2011-09-25T22:35:44Z",
        "detail": { "id": "2", "subject": "Hello" },
        "event": { "comment": { "id": "2127301148", "body": "Thanks!", "is_public": true,
                                "author": { "id": "5", "name": "Ann Agent" } } }
    }))
    .unwrap();
    let event = delivery_event(&comment, BASE).unwrap().unwrap();
    assert_eq!(event.source_id, "comment:2127301148");
    assert_eq!(event.title, "Reply on ticket #2 by Ann Agent: Hello");

    let other: Delivery = serde_json::from_value(json!({
        "type": "zen:event-type:user.created", "time": "2011-09-25T22:35:44Z",
        "detail": { "id": "9" }
    }))
    .unwrap();
    assert!(delivery_event(&other, BASE).unwrap().is_none());
}
