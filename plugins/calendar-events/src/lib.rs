//! A meeting, as any calendar reports it (Google Calendar, Microsoft Graph, an iCalendar
//! feed), and the one way rapport's calendar connectors turn it into a timeline event,
//! so a meeting reads the same whichever calendar it came from:
//!
//! - kind `meeting.scheduled` (as first scheduled), `meeting.updated` (its time, place
//!   or people changed since) or `meeting.canceled`;
//! - placed on the timeline at its start, keyed by the calendar's id for it, versioned
//!   by when the calendar last changed it, so a later version replaces the earlier;
//! - attributes `starts_at`, `ends_at`, `duration_minutes`, `all_day`, `organizer`,
//!   `attendees` (each with their response), `response` (the calendar owner's own),
//!   `status`, `location`, `online_meeting_url`, `ical_uid` and, for one occurrence of
//!   a series, `recurrence_id`;
//! - the attendees from outside (not [`Ourselves`]) as the account hints. A meeting with
//!   nobody from outside is never placed on an account: [`to_event`] gives `None`, and
//!   the connector reports its id deleted, in case an earlier version had someone from
//!   outside.

use rapport_pdk::people::{Ourselves, valid_address};
use rapport_pdk::{AttributeValue, Event, Timestamp};

/// The most of a meeting's description kept as the event's summary.
pub const DESCRIPTION_CHARS_MAX: usize = 600;
/// The most attendees listed in the `attendees` attribute (all of them are hints).
pub const ATTENDEES_LISTED_MAX: usize = 50;

/// Where a meeting stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It will happen.
    Confirmed,
    /// It may happen.
    Tentative,
    /// It was called off.
    Cancelled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Confirmed => "confirmed",
            Status::Tentative => "tentative",
            Status::Cancelled => "cancelled",
        }
    }
}

/// How someone answered an invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// They will come.
    Accepted,
    /// They will not.
    Declined,
    /// They may.
    Tentative,
    /// They have not said.
    NeedsAction,
    /// They organize it.
    Organizer,
}

impl Response {
    /// The response as attributes write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Response::Accepted => "accepted",
            Response::Declined => "declined",
            Response::Tentative => "tentative",
            Response::NeedsAction => "needs action",
            Response::Organizer => "organizer",
        }
    }
}

/// Someone on a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    /// Their address.
    pub email: String,
    /// Their name, if the calendar gave one.
    pub name: Option<String>,
    /// How they answered.
    pub response: Response,
    /// Whether this is the calendar's owner.
    pub is_self: bool,
}

/// A meeting, as a calendar reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// The calendar's id for it (for one occurrence of a series, the occurrence's).
    pub id: String,
    /// When the calendar last changed it: a higher version replaces a lower.
    pub version: i64,
    /// Where it stands.
    pub status: Status,
    /// Whether it changed since it was first scheduled (Google's `sequence` > 0, a
    /// modified occurrence, an iCalendar `SEQUENCE` > 0).
    pub changed: bool,
    /// Its title.
    pub title: Option<String>,
    /// Its description, as plain text.
    pub description: Option<String>,
    /// When it starts.
    pub starts_at: Timestamp,
    /// When it ends.
    pub ends_at: Timestamp,
    /// Whether it takes whole days rather than a time.
    pub all_day: bool,
    /// Who organizes it.
    pub organizer: Option<Attendee>,
    /// Who is invited (the organizer may be among them).
    pub attendees: Vec<Attendee>,
    /// Where.
    pub location: Option<String>,
    /// The online meeting's link (Meet, Teams, Zoom).
    pub online_url: Option<String>,
    /// A link to the meeting in the calendar.
    pub url: Option<String>,
    /// Its iCalendar UID: the same meeting in every attendee's calendar.
    pub ical_uid: Option<String>,
    /// For one occurrence of a series: which one (its original start, RFC 3339).
    pub recurrence_id: Option<String>,
}

impl Meeting {
    /// The people on it outside us, each once, in order: the organizer first.
    pub fn outsiders<'a>(&'a self, ourselves: &Ourselves) -> Vec<&'a Attendee> {
        let mut seen: Vec<String> = Vec::new();
        let mut outsiders = Vec::new();
        for person in self.organizer.iter().chain(&self.attendees) {
            let address = person.email.to_ascii_lowercase();
            if person.is_self
                || ourselves.is_us(&address)
                || !valid_address(&address)
                || seen.contains(&address)
            {
                continue;
            }
            seen.push(address);
            outsiders.push(person);
        }
        outsiders
    }
}

/// The kind a meeting's current state is.
pub fn kind_of(meeting: &Meeting) -> &'static str {
    match (meeting.status, meeting.changed) {
        (Status::Cancelled, _) => "meeting.canceled",
        (_, true) => "meeting.updated",
        (_, false) => "meeting.scheduled",
    }
}

/// The event for `meeting`, or `None` when nobody from outside is on it (never placed
/// on an account: report its id deleted instead).
pub fn to_event(meeting: &Meeting, ourselves: &Ourselves) -> Option<Event> {
    let outsiders = meeting.outsiders(ourselves);
    if outsiders.is_empty() {
        return None;
    }
    let title = meeting
        .title
        .as_deref()
        .map(str::trim)
        .filter(|title| !title.is_empty())
        .map(|title| title.chars().take(400).collect::<String>())
        .unwrap_or_else(|| "(no title)".to_owned());
    let title = match meeting.status {
        Status::Cancelled => format!("Canceled: {title}"),
        _ => title,
    };
    let minutes = (meeting.ends_at - meeting.starts_at).max(0) / 60_000_000;
    let mut event = rapport_pdk::event(&meeting.id, kind_of(meeting), meeting.starts_at, &title)
        .version(meeting.version)
        .attribute("starts_at", AttributeValue::Timestamp(meeting.starts_at))
        .attribute("ends_at", AttributeValue::Timestamp(meeting.ends_at))
        .attribute("duration_minutes", AttributeValue::Integer(minutes))
        .attribute("all_day", AttributeValue::Boolean(meeting.all_day))
        .text("status", meeting.status.as_str());
    if let Some(description) = meeting
        .description
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty())
    {
        event = event.summary(&rapport_pdk::snippet(description, DESCRIPTION_CHARS_MAX));
    }
    if let Some(url) = meeting.url.as_deref().filter(|url| url.starts_with("http")) {
        event = event.url(url);
    }
    if let Some(organizer) = &meeting.organizer {
        event = event
            .text("organizer", &organizer.email.to_ascii_lowercase())
            .actor(organizer.name.as_deref(), Some(&organizer.email));
    }
    let listed: Vec<String> = meeting
        .attendees
        .iter()
        .take(ATTENDEES_LISTED_MAX)
        .map(|person| {
            format!(
                "{} ({})",
                person.email.to_ascii_lowercase(),
                person.response.as_str()
            )
        })
        .collect();
    if !listed.is_empty() {
        event = event.text("attendees", &listed.join(", "));
    }
    if let Some(own) = meeting.attendees.iter().find(|person| person.is_self) {
        event = event.text("response", own.response.as_str());
    }
    if let Some(location) = meeting
        .location
        .as_deref()
        .filter(|text| !text.trim().is_empty())
    {
        event = event.text("location", location.trim());
    }
    if let Some(link) = meeting
        .online_url
        .as_deref()
        .filter(|url| url.starts_with("http"))
    {
        event = event.text("online_meeting_url", link);
    }
    if let Some(uid) = &meeting.ical_uid {
        event = event.text("ical_uid", uid);
    }
    if let Some(recurrence) = &meeting.recurrence_id {
        event = event.text("recurrence_id", recurrence);
    }
    for person in outsiders {
        event = event.email(&person.email.to_ascii_lowercase());
    }
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(email: &str, response: Response) -> Attendee {
        Attendee {
            email: email.into(),
            name: None,
            response,
            is_self: false,
        }
    }

    fn review() -> Meeting {
        Meeting {
            id: "evt-1".into(),
            version: 1_700_000_000_000_000,
            status: Status::Confirmed,
            changed: false,
            title: Some("Quarterly review".into()),
            description: Some("Agenda: renewal".into()),
            starts_at: 1_764_583_200_000_000,
            ends_at: 1_764_586_800_000_000,
            all_day: false,
            organizer: Some(person("sam@ours.example", Response::Organizer)),
            attendees: vec![
                Attendee {
                    is_self: true,
                    ..person("sam@ours.example", Response::Accepted)
                },
                person("Hannah@Acme.example", Response::Tentative),
                person("ana@ours.example", Response::NeedsAction),
            ],
            location: Some("Acme HQ".into()),
            online_url: Some("https://meet.example.com/abc".into()),
            url: Some("https://calendar.example.com/evt-1".into()),
            ical_uid: Some("evt-1@example.com".into()),
            recurrence_id: None,
        }
    }

    #[test]
    fn a_meeting_with_a_client_becomes_one_event_hinting_at_the_client() {
        let ours = Ourselves::parse(None, Some("ours.example"));
        let event = to_event(&review(), &ours).expect("placed");
        assert_eq!(event.kind, "meeting.scheduled");
        assert_eq!(event.occurred_at, 1_764_583_200_000_000);
        assert_eq!(event.hints.emails, vec!["hannah@acme.example".to_owned()]);
        let text = |name: &str| {
            event
                .attributes
                .iter()
                .find(|a| a.name == name)
                .map(|a| match &a.value {
                    AttributeValue::Text(text) => text.clone(),
                    AttributeValue::Integer(n) => n.to_string(),
                    other => format!("{other:?}"),
                })
        };
        assert_eq!(text("duration_minutes").as_deref(), Some("60"));
        assert_eq!(text("response").as_deref(), Some("accepted"));
        assert_eq!(text("organizer").as_deref(), Some("sam@ours.example"));
        assert_eq!(
            text("attendees").as_deref(),
            Some(
                "sam@ours.example (accepted), hannah@acme.example (tentative), ana@ours.example (needs action)"
            )
        );
        assert_eq!(event.summary, "Agenda: renewal");
    }

    #[test]
    fn internal_meetings_are_never_placed_and_changes_and_cancellations_say_so() {
        let ours = Ourselves::parse(None, Some("ours.example, acme.example"));
        assert!(to_event(&review(), &ours).is_none());
        let ours = Ourselves::parse(None, Some("ours.example"));
        let moved = Meeting {
            changed: true,
            ..review()
        };
        assert_eq!(to_event(&moved, &ours).unwrap().kind, "meeting.updated");
        let off = Meeting {
            status: Status::Cancelled,
            ..review()
        };
        let event = to_event(&off, &ours).unwrap();
        assert_eq!(event.kind, "meeting.canceled");
        assert_eq!(event.title, "Canceled: Quarterly review");
    }
}
