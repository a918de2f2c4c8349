//! Microsoft Graph's `event` resource (as `calendarView/delta` lists it, times in UTC)
//! as a [`calendar_events::Meeting`]. Pure: unit-tested over Graph's documented delta
//! page and our own events written to the same resource.

use calendar_events::{Attendee, Meeting, Response, Status};
use rapport_pdk::Timestamp;
use rapport_pdk::prelude::*;
use serde::Deserialize;

/// How long after its creation an event may be modified and still count as first
/// scheduled (Outlook touches an event as invitations go out).
const SETTLING_US: i64 = 60_000_000;

/// A time as Graph writes it: a local date-time without offset, and its zone.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DateTimeZone {
    pub date_time: String,
    pub time_zone: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailAddress {
    pub name: Option<String>,
    pub address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Recipient {
    pub email_address: EmailAddress,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResponseStatus {
    pub response: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GraphAttendee {
    pub email_address: EmailAddress,
    pub status: ResponseStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Location {
    pub display_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OnlineMeeting {
    pub join_url: Option<String>,
}

/// A Graph event (or one occurrence of a series), without its id (the delta item's).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GraphEvent {
    pub subject: Option<String>,
    pub body_preview: Option<String>,
    pub start: Option<DateTimeZone>,
    pub end: Option<DateTimeZone>,
    pub is_all_day: bool,
    pub is_cancelled: bool,
    pub show_as: Option<String>,
    pub response_status: Option<ResponseStatus>,
    pub organizer: Option<Recipient>,
    pub attendees: Vec<GraphAttendee>,
    pub location: Option<Location>,
    pub online_meeting: Option<OnlineMeeting>,
    pub online_meeting_url: Option<String>,
    pub web_link: Option<String>,
    pub created_date_time: Option<String>,
    pub last_modified_date_time: Option<String>,
    #[serde(rename = "iCalUId")]
    pub ical_uid: Option<String>,
    /// `singleInstance`, `occurrence`, `exception` or `seriesMaster`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For an occurrence or exception: when it was due before any change.
    pub original_start: Option<String>,
}

/// Graph's UTC date-time (`2016-12-10T19:30:00.0000000`, zone `UTC`) in microseconds.
/// Requests ask for UTC (`Prefer: outlook.timezone="UTC"`); another zone is refused
/// rather than guessed.
fn instant(when: &DateTimeZone) -> Result<Timestamp, ConnectorError> {
    if !when.time_zone.is_empty() && !when.time_zone.eq_ignore_ascii_case("UTC") {
        return Err(ConnectorError::Fatal(format!(
            "Graph gave a time in `{}`, not UTC as asked",
            when.time_zone
        )));
    }
    let text = when.date_time.trim();
    // Seven fractional digits: RFC 3339 allows any number, but drop them to be safe.
    let seconds = text.split('.').next().unwrap_or(text);
    time::parse_rfc3339(&format!("{seconds}Z"))
}

fn response(text: Option<&str>) -> Response {
    match text {
        Some("organizer") => Response::Organizer,
        Some("accepted") => Response::Accepted,
        Some("declined") => Response::Declined,
        Some("tentativelyAccepted") => Response::Tentative,
        _ => Response::NeedsAction,
    }
}

fn person(address: &EmailAddress, response: Response) -> Option<Attendee> {
    Some(Attendee {
        email: address.address.clone().filter(|a| !a.is_empty())?,
        name: address.name.clone().filter(|n| !n.is_empty()),
        response,
        is_self: false,
    })
}

impl GraphEvent {
    /// The meeting this event is, under `id`.
    pub fn meeting(&self, id: &str) -> Result<Meeting, ConnectorError> {
        let start = self
            .start
            .as_ref()
            .ok_or_else(|| ConnectorError::Transient(format!("event {id} has no start")))?;
        let starts_at = instant(start)?;
        let ends_at = match &self.end {
            Some(end) => instant(end)?,
            None => starts_at,
        };
        let modified = self
            .last_modified_date_time
            .as_deref()
            .map(time::parse_rfc3339)
            .transpose()?;
        let created = self
            .created_date_time
            .as_deref()
            .map(time::parse_rfc3339)
            .transpose()?;
        let changed = self.kind.as_deref() == Some("exception")
            || matches!((created, modified), (Some(created), Some(modified)) if modified > created + SETTLING_US);
        let recurrence_id = match self.kind.as_deref() {
            Some("occurrence" | "exception") => self.original_start.clone(),
            _ => None,
        };
        Ok(Meeting {
            id: id.to_owned(),
            version: modified.unwrap_or(0).max(0),
            status: if self.is_cancelled {
                Status::Cancelled
            } else if self.show_as.as_deref() == Some("tentative") {
                Status::Tentative
            } else {
                Status::Confirmed
            },
            changed,
            title: self.subject.clone(),
            description: self.body_preview.clone(),
            starts_at,
            ends_at,
            all_day: self.is_all_day,
            organizer: self
                .organizer
                .as_ref()
                .and_then(|organizer| person(&organizer.email_address, Response::Organizer)),
            attendees: self
                .attendees
                .iter()
                .filter_map(|attendee| {
                    person(
                        &attendee.email_address,
                        response(attendee.status.response.as_deref()),
                    )
                })
                .collect(),
            location: self
                .location
                .as_ref()
                .and_then(|location| location.display_name.clone())
                .filter(|name| !name.is_empty()),
            online_url: self
                .online_meeting
                .as_ref()
                .and_then(|online| online.join_url.clone())
                .or_else(|| self.online_meeting_url.clone()),
            url: self.web_link.clone(),
            ical_uid: self.ical_uid.clone(),
            recurrence_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calendar_events::to_event;
    use rapport_pdk::people::Ourselves;
    use rapport_pdk::providers::DeltaPage;

    #[test]
    fn graphs_documented_delta_page_reads_and_internal_events_are_not_placed() {
        let page: DeltaPage<GraphEvent> = serde_json::from_str(include_str!(
            "../../../tests/fixtures/microsoft/calendarview-delta-page.json"
        ))
        .unwrap();
        assert!(page.next_link.unwrap().contains("$skiptoken="));
        let first = page.value[0].item.meeting(&page.value[0].id).unwrap();
        assert_eq!(first.title.as_deref(), Some("Get food"));
        assert_eq!(
            first.starts_at,
            time::parse_rfc3339("2016-12-10T19:30:00Z").unwrap()
        );
        assert_eq!(
            first.ends_at,
            time::parse_rfc3339("2016-12-10T21:30:00Z").unwrap()
        );
        assert_eq!(
            first.organizer.as_ref().unwrap().email,
            "samanthab@contoso.onmicrosoft.com"
        );
        // Samantha's own errands: nobody from outside, never on an account.
        let us = Ourselves::parse(None, Some("contoso.onmicrosoft.com"));
        assert!(to_event(&first, &us).is_none());
    }

    #[test]
    fn a_client_meeting_with_responses_a_teams_link_and_an_occurrence() {
        let event: GraphEvent = serde_json::from_value(serde_json::json!({
            "subject": "Quarterly review",
            "bodyPreview": "Agenda: usage, renewal",
            "start": {"dateTime": "2026-12-08T15:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2026-12-08T16:00:00.0000000", "timeZone": "UTC"},
            "isAllDay": false,
            "isCancelled": false,
            "showAs": "busy",
            "organizer": {"emailAddress": {"name": "Sam Lee", "address": "sam.lee@ours.example"}},
            "attendees": [
                {"type": "required", "status": {"response": "accepted", "time": "2026-12-01T10:00:00Z"},
                 "emailAddress": {"name": "Hannah Weber", "address": "hannah@acme.example"}},
                {"type": "optional", "status": {"response": "tentativelyAccepted"},
                 "emailAddress": {"name": "Ana", "address": "ana@ours.example"}}
            ],
            "location": {"displayName": "Microsoft Teams Meeting"},
            "onlineMeeting": {"joinUrl": "https://teams.microsoft.com/l/meetup-join/19%3ameeting"},
            "webLink": "https://outlook.office365.com/owa/?itemid=AAMk",
            "createdDateTime": "2026-11-20T09:00:00.0000000Z",
            "lastModifiedDateTime": "2026-11-25T09:00:00.0000000Z",
            "iCalUId": "040000008200E00074C5B7101A82E00800000000D0A3",
            "type": "occurrence",
            "originalStart": "2026-12-08T15:00:00Z"
        }))
        .unwrap();
        let meeting = event.meeting("AAMkOcc1").unwrap();
        assert!(meeting.changed, "modified days after it was made");
        assert_eq!(
            meeting.recurrence_id.as_deref(),
            Some("2026-12-08T15:00:00Z")
        );
        assert_eq!(meeting.attendees[1].response, Response::Tentative);
        let us = Ourselves::parse(None, Some("ours.example"));
        let placed = to_event(&meeting, &us).expect("Hannah is from outside");
        assert_eq!(placed.kind, "meeting.updated");
        assert_eq!(placed.hints.emails, ["hannah@acme.example"]);
        let zoned = DateTimeZone {
            date_time: "2026-12-08T15:00:00".into(),
            time_zone: "Pacific Standard Time".into(),
        };
        assert!(instant(&zoned).is_err());
    }
}
