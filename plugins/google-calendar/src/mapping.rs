//! Google Calendar's `Event` resource (Calendar API v3, `events.list`) as a
//! [`calendar_events::Meeting`].

use calendar_events::{Attendee, Meeting, Response, Status};
use rapport_pdk::Timestamp;
use rapport_pdk::prelude::*;
use serde::Deserialize;

/// One page of `events.list`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    #[serde(default)]
    pub items: Vec<GoogleEvent>,
    pub next_page_token: Option<String>,
    pub next_sync_token: Option<String>,
}

/// A date or a time, as Google writes the start and end of an event.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct When {
    /// A time (RFC 3339), for a timed event.
    pub date_time: Option<String>,
    /// A date (`2026-12-01`), for an all-day event.
    pub date: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    pub email: Option<String>,
    pub display_name: Option<String>,
    #[serde(default, rename = "self")]
    pub is_self: bool,
    #[serde(default)]
    pub organizer: bool,
    pub response_status: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryPoint {
    pub entry_point_type: Option<String>,
    pub uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConferenceData {
    #[serde(default)]
    pub entry_points: Vec<EntryPoint>,
}

/// A Google Calendar event (or one occurrence of a recurring one).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoogleEvent {
    pub id: String,
    pub status: Option<String>,
    pub html_link: Option<String>,
    pub updated: Option<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub organizer: Option<Person>,
    #[serde(default)]
    pub start: Option<When>,
    #[serde(default)]
    pub end: Option<When>,
    pub recurring_event_id: Option<String>,
    pub original_start_time: Option<When>,
    #[serde(rename = "iCalUID")]
    pub ical_uid: Option<String>,
    #[serde(default)]
    pub sequence: i64,
    #[serde(default)]
    pub attendees: Vec<Person>,
    pub hangout_link: Option<String>,
    pub conference_data: Option<ConferenceData>,
}

/// What a Google event means for the timeline.
#[derive(Debug)]
pub enum Change {
    /// A meeting, as it stands now.
    Meeting(Box<Meeting>),
    /// Gone: a deleted event, or a cancelled occurrence of a series.
    Deleted(String),
}

/// Parses Google's start or end: a time in RFC 3339, or a date (all day, midnight UTC).
fn instant(when: &When) -> Result<(Timestamp, bool), ConnectorError> {
    match (&when.date_time, &when.date) {
        (Some(time), _) => Ok((time::parse_rfc3339(time)?, false)),
        (None, Some(date)) => Ok((time::parse_rfc3339(&format!("{date}T00:00:00Z"))?, true)),
        (None, None) => Err(ConnectorError::Transient(
            "an event has neither a time nor a date".into(),
        )),
    }
}

fn response(status: Option<&str>, organizer: bool) -> Response {
    match status {
        Some("accepted") if organizer => Response::Organizer,
        Some("accepted") => Response::Accepted,
        Some("declined") => Response::Declined,
        Some("tentative") => Response::Tentative,
        _ if organizer => Response::Organizer,
        _ => Response::NeedsAction,
    }
}

fn attendee(person: &Person) -> Option<Attendee> {
    Some(Attendee {
        email: person.email.clone()?,
        name: person.display_name.clone(),
        response: response(person.response_status.as_deref(), person.organizer),
        is_self: person.is_self,
    })
}

impl GoogleEvent {
    /// What this event means: a meeting, or an id to delete. Google lists a deleted
    /// event as `cancelled` with little more than its id; a cancelled occurrence of a
    /// series is deleted too (the series goes on without it), while a cancelled meeting
    /// that still says what it was is kept as `meeting.canceled`.
    pub fn change(&self) -> Result<Change, ConnectorError> {
        let cancelled = self.status.as_deref() == Some("cancelled");
        let described = self.start.is_some() && !self.attendees.is_empty();
        if cancelled && (self.recurring_event_id.is_some() || !described) {
            return Ok(Change::Deleted(self.id.clone()));
        }
        let start = self
            .start
            .as_ref()
            .ok_or_else(|| ConnectorError::Transient(format!("event {} has no start", self.id)))?;
        let (starts_at, all_day) = instant(start)?;
        let ends_at = match &self.end {
            Some(end) => instant(end)?.0,
            None => starts_at,
        };
        let version = match &self.updated {
            Some(updated) => time::parse_rfc3339(updated)?,
            None => 0,
        };
        let moved = match (&self.original_start_time, start) {
            (Some(original), current) => {
                original.date_time.as_deref() != current.date_time.as_deref()
                    || original.date.as_deref() != current.date.as_deref()
            }
            (None, _) => false,
        };
        let online_url = self.hangout_link.clone().or_else(|| {
            self.conference_data.as_ref().and_then(|data| {
                data.entry_points
                    .iter()
                    .find(|point| point.entry_point_type.as_deref() == Some("video"))
                    .and_then(|point| point.uri.clone())
            })
        });
        let recurrence_id = self
            .original_start_time
            .as_ref()
            .and_then(|original| original.date_time.clone().or_else(|| original.date.clone()));
        Ok(Change::Meeting(Box::new(Meeting {
            id: self.id.clone(),
            version: version.max(0),
            status: match self.status.as_deref() {
                Some("cancelled") => Status::Cancelled,
                Some("tentative") => Status::Tentative,
                _ => Status::Confirmed,
            },
            changed: self.sequence > 0 || moved,
            title: self.summary.clone(),
            description: self.description.clone(),
            starts_at,
            ends_at,
            all_day,
            organizer: self.organizer.as_ref().and_then(|organizer| {
                attendee(organizer).map(|mut person| {
                    person.response = Response::Organizer;
                    person
                })
            }),
            attendees: self.attendees.iter().filter_map(attendee).collect(),
            location: self.location.clone(),
            online_url,
            url: self.html_link.clone(),
            ical_uid: self.ical_uid.clone(),
            recurrence_id,
        })))
    }
}

#[cfg(test)]
mod tests;
