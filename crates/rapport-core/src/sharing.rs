//! Who sees what a person's own connection captured: their mailbox, their calendar.
//!
//! An event that came through one staff member's connection (the connector of a
//! person's connection, `mailbox:42`, see [`person_connector_id`]) carries a
//! [`Capture`]: whose connection it came through and the [`Sharing`] level that
//! connection had when the event was stored (re-stamped whenever the level changes).
//! Seeing such an event takes two steps, in order:
//!
//! 1. the account rule of [`crate::visibility`]: the viewer sees the account it is on
//!    (or, for an unplaced event, may triage the unmatched inbox);
//! 2. the event's sharing level, by [`Capture::access`]:
//!    - [`Sharing::Shared`]: everyone who passed step 1 sees it whole;
//!    - [`Sharing::Metadata`]: the mailbox owner and their management chain see it
//!      whole; everyone else sees that it happened — who took part, the subject, when
//!      — but not its content ([`withhold_content`]);
//!    - [`Sharing::Private`]: only the mailbox owner and their management chain.
//!
//! "The owner and their management chain" is everyone whose reporting line (them and
//! everyone below them, as [`crate::staff::OrgChart::subtree`] walks it) holds the
//! owner: the owner, their manager, that manager's director, and the VP. The store's
//! SQL applies the same rule, and its property test proves they agree.
//!
//! Aggregates that name no event — health, last contact, activity counts — are
//! computed from every event on the account whatever its level, so a private
//! conversation still counts as contact with the client.

use crate::StaffId;
use crate::timeline::{Attributes, NewEvent};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// How widely what a person's connection captures is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sharing {
    /// With everyone who sees the account: the rule for every other event.
    Shared,
    /// Whole to the owner and their management chain; to others, only who, what
    /// subject and when.
    Metadata,
    /// Only to the owner and their management chain.
    Private,
}

impl Sharing {
    /// Every level, most open first.
    pub const ALL: [Sharing; 3] = [Sharing::Shared, Sharing::Metadata, Sharing::Private];

    /// The level as configured, stored and sent: `shared`, `metadata`, `private`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sharing::Shared => "shared",
            Sharing::Metadata => "metadata",
            Sharing::Private => "private",
        }
    }

    /// Parses [`Sharing::as_str`]'s form.
    pub fn parse(text: &str) -> Option<Sharing> {
        Sharing::ALL
            .into_iter()
            .find(|level| level.as_str() == text)
    }

    /// What the level means, for people choosing one.
    pub fn describe(self) -> &'static str {
        match self {
            Sharing::Shared => "everyone who sees the account sees these whole",
            Sharing::Metadata => {
                "others who see the account see who took part, the subject and when, not the content; you and your management chain see them whole"
            }
            Sharing::Private => "only you and your management chain see these",
        }
    }
}

impl fmt::Display for Sharing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person's connection stamped on an event it captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Capture {
    /// Whose connection (mailbox, calendar) it came through.
    pub owner: StaffId,
    /// How widely it is shared.
    pub sharing: Sharing,
}

/// How much of an event a viewer may see, once they may see it at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// All of it.
    Whole,
    /// Who, what subject and when: [`withhold_content`] applies.
    MetadataOnly,
}

impl Capture {
    /// What a viewer whose reporting line is `line` (them and everyone below them) may
    /// see of an event with this capture, having passed the account rule; `None`:
    /// nothing, not even that it exists.
    pub fn access(&self, line: &BTreeSet<StaffId>) -> Option<Access> {
        self.access_by(line.contains(&self.owner))
    }

    /// [`Capture::access`] for a viewer of whose reporting line it is known whether it
    /// holds the owner (`owner_in_line`): how the store applies it to a row whose SQL
    /// answered that.
    pub fn access_by(&self, owner_in_line: bool) -> Option<Access> {
        if owner_in_line {
            return Some(Access::Whole);
        }
        match self.sharing {
            Sharing::Shared => Some(Access::Whole),
            Sharing::Metadata => Some(Access::MetadataOnly),
            Sharing::Private => None,
        }
    }
}

/// The attributes that describe who took part in a conversation or meeting, and when,
/// rather than what was said: what a metadata-only viewer still sees. Anything not
/// listed is withheld, so a connector's new attribute is private until named here.
pub const METADATA_ATTRIBUTES: &[&str] = &[
    // Mail: participants, subject, threading.
    "from",
    "to",
    "cc",
    "subject",
    "thread_key",
    "message_id",
    "in_reply_to",
    "direction",
    // Meetings: who, and when.
    "organizer",
    "attendees",
    "start",
    "end",
    "starts_at",
    "ends_at",
    "duration_minutes",
    "all_day",
];

/// Strips from `event` what a metadata-only viewer may not see: its summary (the
/// snippet or body), its link into the owner's mailbox, and every attribute but
/// [`METADATA_ATTRIBUTES`]. The title (the subject and who), kind, time, actor and
/// account hints stay.
pub fn withhold_content(event: &mut NewEvent) {
    event.summary.clear();
    event.url = None;
    let kept: Attributes = std::mem::take(&mut event.attributes)
        .into_iter()
        .filter(|(name, _)| METADATA_ATTRIBUTES.contains(&name.as_str()))
        .collect();
    event.attributes = kept;
}

/// The connector id of `owner`'s own connection of the configured connector
/// `connector`: its own checkpoint, lease, schedule slot, status and events.
/// Configured connector ids hold no `:`, so these never collide with one.
pub fn person_connector_id(connector: &str, owner: StaffId) -> String {
    format!("{connector}:{}", owner.0)
}

/// The configured connector and owner of a connector id made by
/// [`person_connector_id`]; `None` for any other.
pub fn person_connection_of(connector_id: &str) -> Option<(&str, StaffId)> {
    let (connector, owner) = connector_id.split_once(':')?;
    Some((connector, StaffId(owner.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timeline::{AttributeValue, EventKind};
    use chrono::{TimeZone, Utc};

    #[test]
    fn each_level_decides_what_others_see_and_the_owners_line_sees_all() {
        let owner = StaffId(5);
        let line_of_owner_manager = BTreeSet::from([StaffId(3), StaffId(5), StaffId(6)]);
        let someone_else = BTreeSet::from([StaffId(4), StaffId(7)]);
        let expectations = [
            (Sharing::Shared, Some(Access::Whole), Some(Access::Whole)),
            (
                Sharing::Metadata,
                Some(Access::Whole),
                Some(Access::MetadataOnly),
            ),
            (Sharing::Private, Some(Access::Whole), None),
        ];
        for (sharing, in_line, outside) in expectations {
            let capture = Capture { owner, sharing };
            assert_eq!(capture.access(&line_of_owner_manager), in_line, "{sharing}");
            assert_eq!(capture.access(&someone_else), outside, "{sharing}");
            // The owner's own line always holds the owner.
            assert_eq!(
                capture.access(&BTreeSet::from([owner])),
                Some(Access::Whole)
            );
        }
    }

    #[test]
    fn withholding_keeps_who_and_when_and_drops_the_content() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 0, 0).unwrap();
        let mut event = NewEvent::new(
            "mailbox:5",
            "m1",
            EventKind::parse(EventKind::EMAIL_RECEIVED).unwrap(),
            at,
            "From Hannah: Renewal terms",
        );
        event.summary = "We would like a 20% discount".into();
        event.url = Some("https://mail.example.com/m1".into());
        for (name, value) in [
            ("from", "hannah@client.example"),
            ("subject", "Renewal terms"),
            ("folder", "Personal/Health"),
            ("body_preview", "We would like"),
        ] {
            event
                .attributes
                .insert(name.into(), AttributeValue::Text(value.into()));
        }
        withhold_content(&mut event);
        assert!(event.summary.is_empty());
        assert_eq!(event.url, None);
        assert_eq!(event.title, "From Hannah: Renewal terms");
        let names: Vec<&str> = event.attributes.keys().map(String::as_str).collect();
        assert_eq!(names, ["from", "subject"]);
    }

    #[test]
    fn person_connector_ids_round_trip() {
        let id = person_connector_id("mailbox", StaffId(42));
        assert_eq!(id, "mailbox:42");
        assert_eq!(person_connection_of(&id), Some(("mailbox", StaffId(42))));
        assert_eq!(person_connection_of("mailbox"), None);
        assert_eq!(person_connection_of("mailbox:x"), None);
        for level in Sharing::ALL {
            assert_eq!(Sharing::parse(level.as_str()), Some(level));
        }
        assert_eq!(Sharing::parse("public"), None);
    }
}
