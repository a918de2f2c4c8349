//! The mapping over a page of `events.list` shaped as Google's API description says
//! (`tests/fixtures/google/calendar-events.json`; see its NOTICE): a meeting with a
//! client, a moved occurrence of a series, a cancelled occurrence, a deleted event, and
//! an internal all-day event.

use super::*;
use calendar_events::to_event;
use rapport_pdk::people::Ourselves;

const PAGE: &str = include_str!("../../../../tests/fixtures/google/calendar-events.json");

fn page() -> EventList {
    serde_json::from_str(PAGE).unwrap()
}

fn text<'e>(event: &'e Event, name: &str) -> Option<&'e str> {
    event
        .attributes
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| match &a.value {
            AttributeValue::Text(text) => Some(text.as_str()),
            _ => None,
        })
}

fn ours() -> Ourselves {
    Ourselves::parse(Some("sam.lee@ours.example"), Some("ours.example"))
}

#[test]
fn the_page_carries_its_sync_token() {
    let list = page();
    assert_eq!(list.items.len(), 5);
    assert!(list.next_page_token.is_none());
    assert_eq!(
        list.next_sync_token.as_deref(),
        Some("CPDAlvWDx4cDEPDAlvWDx4cDGAUgrrmPhQI=")
    );
}

#[test]
fn a_meeting_with_the_client_keeps_who_when_where_and_the_link() {
    let Change::Meeting(meeting) = page().items[0].change().unwrap() else {
        panic!("a meeting")
    };
    let event = to_event(&meeting, &ours()).expect("placed");
    assert_eq!(event.source_id, "7kukuqrfedlm2f9tqn3rl4bark");
    assert_eq!(event.kind, "meeting.scheduled");
    assert_eq!(event.title, "Quarterly business review");
    assert_eq!(
        event.occurred_at,
        time::parse_rfc3339("2026-12-03T10:00:00Z").unwrap()
    );
    assert_eq!(
        event.source_version,
        time::parse_rfc3339("2026-11-20T09:12:52.962Z").unwrap()
    );
    assert_eq!(
        event.hints.emails,
        vec![
            "hannah.ortiz@acme.example".to_owned(),
            "cfo@acme.example".to_owned()
        ]
    );
    assert_eq!(
        text(&event, "online_meeting_url"),
        Some("https://meet.google.com/abc-defg-hij")
    );
    assert_eq!(text(&event, "location"), Some("Acme HQ, 4th floor"));
    assert_eq!(text(&event, "response"), Some("organizer"));
    assert_eq!(
        text(&event, "ical_uid"),
        Some("7kukuqrfedlm2f9tqn3rl4bark@google.com")
    );
    assert!(event.summary.starts_with("Agenda:"));
    assert!(
        event
            .url
            .as_deref()
            .unwrap()
            .starts_with("https://www.google.com/calendar/event")
    );
}

#[test]
fn a_moved_occurrence_is_an_update_with_its_original_start() {
    let Change::Meeting(meeting) = page().items[1].change().unwrap() else {
        panic!("a meeting")
    };
    assert!(meeting.changed);
    let event = to_event(&meeting, &ours()).unwrap();
    assert_eq!(event.kind, "meeting.updated");
    assert_eq!(text(&event, "recurrence_id"), Some("2026-12-08T15:00:00Z"));
    assert_eq!(text(&event, "response"), Some("needs action"));
    assert_eq!(text(&event, "organizer"), Some("hannah.ortiz@acme.example"));
}

#[test]
fn cancelled_occurrences_and_deleted_events_are_deletes_and_internal_meetings_are_not_placed() {
    let items = page().items;
    assert!(
        matches!(items[2].change().unwrap(), Change::Deleted(id) if id.ends_with("_20261215T150000Z"))
    );
    assert!(
        matches!(items[3].change().unwrap(), Change::Deleted(id) if id == "5r9ttv8l1v0nnqsgfvbqv6ehjl")
    );
    let Change::Meeting(planning) = items[4].change().unwrap() else {
        panic!("a meeting")
    };
    assert!(planning.all_day);
    assert_eq!(planning.ends_at - planning.starts_at, 86_400_000_000);
    assert!(
        to_event(&planning, &ours()).is_none(),
        "nobody from outside"
    );
}
