//! One conversation or meeting, seen through several connections.
//!
//! The same message arrives through the organisation's IMAP mailbox and through Gmail,
//! or sits in two people's mailboxes; the same meeting is in every attendee's calendar.
//! Each is one event on the timeline. An event's **shared identity**
//! ([`shared_identity`]) says what it is independently of where it was seen — the
//! message's `Message-ID`, the meeting's iCalendar UID (and which occurrence) — and
//! the store keeps one row per identity with a **sighting** per connection that
//! reported it: its own key, version and [`Capture`].
//!
//! What people see of the one event is the most any sighting lets them see
//! ([`access`]): a message that one person shares and another keeps private is shared,
//! since the one who shares it had it too. The store keeps on the row the summary
//! [`combined`] gives (the most open sighting's capture) and asks the other
//! sightings only whether a viewer's line holds one of their owners. The content
//! stored is the newest version any sighting reported; between equal versions, the
//! most open sighting's (so what the most people see is what the most open
//! connection reported).
//!
//! A connector that reports a `message_id` or `ical_uid` is taken at its word, as it
//! is for everything else it reports.

use crate::StaffId;
use crate::sharing::{Access, Capture, Sharing};
use crate::timeline::{AttributeValue, NewEvent};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeSet;

/// The prefix of a message's identity.
pub const EMAIL_IDENTITY_PREFIX: &str = "email:";
/// The prefix of a meeting's identity.
pub const MEETING_IDENTITY_PREFIX: &str = "meeting:";

/// What `event` is independently of the connection it came through, if it says:
/// `email:<message-id>` for mail (`email.received`, `email.sent`) with a `message_id`,
/// `meeting:<uid>` for a meeting (`meeting.*`) with an `ical_uid`, followed by
/// `@<original start>` for one occurrence of a series (`recurrence_id`). Ids are
/// compared without surrounding spaces or angle brackets and in ASCII lower case,
/// as mail systems write them variously.
pub fn shared_identity(event: &NewEvent) -> Option<String> {
    let kind = event.kind.as_str();
    if kind == crate::timeline::EventKind::EMAIL_RECEIVED
        || kind == crate::timeline::EventKind::EMAIL_SENT
    {
        let id = normalized(text(event, "message_id")?)?;
        return Some(format!("{EMAIL_IDENTITY_PREFIX}{id}"));
    }
    if kind.starts_with("meeting.") {
        let uid = normalized(text(event, "ical_uid")?)?;
        return Some(match text(event, "recurrence_id").and_then(occurrence) {
            Some(at) => format!("{MEETING_IDENTITY_PREFIX}{uid}@{at}"),
            None => format!("{MEETING_IDENTITY_PREFIX}{uid}"),
        });
    }
    None
}

fn text<'a>(event: &'a NewEvent, name: &str) -> Option<&'a str> {
    match event.attributes.get(name) {
        Some(AttributeValue::Text(value)) => Some(value),
        _ => None,
    }
}

/// An id without the spaces and angle brackets around it, in ASCII lower case; `None`
/// when nothing is left. (The store's migration backfills with the SQL equivalent,
/// `lower(trim(id, ' <>'))`.)
fn normalized(id: &str) -> Option<String> {
    let id = id.trim_matches(|c| c == ' ' || c == '<' || c == '>');
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// An occurrence's original start as one instant in UTC, whatever offset the calendar
/// wrote it with; a value that is not RFC 3339 is compared as written.
fn occurrence(recurrence_id: &str) -> Option<String> {
    let trimmed = recurrence_id.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(match DateTime::parse_from_rfc3339(trimmed) {
        Ok(at) => at
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        Err(_) => trimmed.to_ascii_lowercase(),
    })
}

/// How open a sighting is: an organisation connection's (`None`) most, then the
/// levels from [`Sharing::Shared`] to [`Sharing::Private`]. Lower is more open.
pub fn openness_rank(capture: Option<&Capture>) -> u8 {
    match capture.map(|capture| capture.sharing) {
        None => 0,
        Some(Sharing::Shared) => 1,
        Some(Sharing::Metadata) => 2,
        Some(Sharing::Private) => 3,
    }
}

/// What the row of an event seen through `sightings` carries: `None` (everyone sees it
/// whole) if an organisation connection saw it, else the most open sighting's capture
/// (between equally open ones, the lowest owner id, so the summary is the same in
/// whatever order the sightings came).
pub fn combined<'a>(sightings: impl IntoIterator<Item = Option<&'a Capture>>) -> Option<Capture> {
    let mut best: Option<Option<Capture>> = None;
    for capture in sightings {
        let better = match &best {
            None => true,
            Some(current) => {
                let (new_rank, old_rank) =
                    (openness_rank(capture), openness_rank(current.as_ref()));
                new_rank < old_rank
                    || (new_rank == old_rank && capture.map(|c| c.owner) < current.map(|c| c.owner))
            }
        };
        if better {
            best = Some(capture.copied());
        }
    }
    best.flatten()
}

/// What a viewer whose reporting line is `line` may see of an event seen through
/// `sightings` (having passed the account rule): the most any one sighting allows.
pub fn access<'a>(
    sightings: impl IntoIterator<Item = Option<&'a Capture>>,
    line: &BTreeSet<StaffId>,
) -> Option<Access> {
    let mut best = None;
    for capture in sightings {
        let granted = match capture {
            None => Some(Access::Whole),
            Some(capture) => capture.access(line),
        };
        best = match (best, granted) {
            (Some(Access::Whole), _) | (_, Some(Access::Whole)) => Some(Access::Whole),
            (Some(Access::MetadataOnly), _) | (_, Some(Access::MetadataOnly)) => {
                Some(Access::MetadataOnly)
            }
            _ => None,
        };
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::EventKind;
    use chrono::TimeZone;

    fn event(kind: &str, attributes: &[(&str, &str)]) -> NewEvent {
        let mut event = NewEvent::new(
            "mail",
            "k",
            EventKind::parse(kind).unwrap(),
            Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap(),
            "t",
        );
        for (name, value) in attributes {
            event
                .attributes
                .insert((*name).into(), AttributeValue::Text((*value).into()));
        }
        event
    }

    #[test]
    fn a_message_is_its_message_id_however_written() {
        let plain = event("email.received", &[("message_id", "CAB=x1@Mail.Example")]);
        let bracketed = event("email.sent", &[("message_id", " <cab=x1@mail.example> ")]);
        assert_eq!(
            shared_identity(&plain).as_deref(),
            Some("email:cab=x1@mail.example")
        );
        assert_eq!(shared_identity(&plain), shared_identity(&bracketed));
        assert_eq!(
            shared_identity(&event("email.received", &[("message_id", "<>")])),
            None
        );
        assert_eq!(shared_identity(&event("email.received", &[])), None);
        // Only mail and meetings say what they are across connections.
        assert_eq!(
            shared_identity(&event("support.ticket.created", &[("message_id", "a@b")])),
            None
        );
    }

    #[test]
    fn a_meeting_is_its_uid_and_which_occurrence() {
        let series = event("meeting.scheduled", &[("ical_uid", "ABC@google.com")]);
        assert_eq!(
            shared_identity(&series).as_deref(),
            Some("meeting:abc@google.com")
        );
        let google = event(
            "meeting.updated",
            &[
                ("ical_uid", "abc@google.com"),
                ("recurrence_id", "2026-03-10T10:00:00+01:00"),
            ],
        );
        let outlook = event(
            "meeting.canceled",
            &[
                ("ical_uid", "abc@google.com"),
                ("recurrence_id", "2026-03-10T09:00:00Z"),
            ],
        );
        assert_eq!(
            shared_identity(&google).as_deref(),
            Some("meeting:abc@google.com@2026-03-10T09:00:00Z")
        );
        assert_eq!(shared_identity(&google), shared_identity(&outlook));
    }

    #[test]
    fn the_most_open_sighting_decides() {
        let mia = |sharing| Capture {
            owner: StaffId(5),
            sharing,
        };
        let max = |sharing| Capture {
            owner: StaffId(7),
            sharing,
        };
        let private_mia = mia(Sharing::Private);
        let metadata_max = max(Sharing::Metadata);
        let metadata_mia = mia(Sharing::Metadata);
        assert_eq!(
            combined([Some(&private_mia), Some(&metadata_max)]),
            Some(metadata_max)
        );
        assert_eq!(combined([Some(&private_mia), None]), None);
        // Equally open: the lower owner, whatever the order.
        assert_eq!(
            combined([Some(&metadata_max), Some(&metadata_mia)]),
            Some(metadata_mia)
        );

        let mias_line = BTreeSet::from([StaffId(5)]);
        let maxs_line = BTreeSet::from([StaffId(7)]);
        let neither = BTreeSet::from([StaffId(9)]);
        let sightings = [Some(&private_mia), Some(&metadata_max)];
        assert_eq!(access(sightings, &mias_line), Some(Access::Whole));
        assert_eq!(access(sightings, &maxs_line), Some(Access::Whole));
        assert_eq!(access(sightings, &neither), Some(Access::MetadataOnly));
        assert_eq!(access([Some(&private_mia)], &neither), None);
        assert_eq!(
            access([Some(&private_mia), None], &neither),
            Some(Access::Whole)
        );
    }
}
