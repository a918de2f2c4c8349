//! rapport's Google Calendar connector: a person's meetings with clients, on the
//! clients' timelines, read with the person's own OAuth connection.
//!
//! **Reading.** `events.list` of the calendar (`primary` by default) with
//! `singleEvents=true`, so a recurring meeting arrives as its occurrences, and
//! `showDeleted=true`, so deletions arrive too. The first read is a *full read* from
//! `backfill_start` (or 90 days back); its last page carries a `nextSyncToken`, and
//! every later read is *incremental* from it. Each page is committed with a checkpoint
//! (the page token, or the sync token), so a crash resumes where it was.
//!
//! **The window.** Occurrences further ahead than `days_ahead` (180) are left out: a
//! weekly meeting is not a thousand events. Since nothing changes when time moves on,
//! the window *rolls*: once it is a week short, a full read from just before its old
//! end brings the occurrences that have come into it, and its sync token replaces the
//! old one.
//!
//! **Gone and cancelled.** An expired sync token (410) starts a full read again; events
//! already stored are keyed by Google's id, so nothing is stored twice. A cancelled
//! occurrence of a series, or a deleted event (listed with little but its id), is
//! reported deleted; a cancelled meeting that still says what it was stays on the
//! timeline as `meeting.canceled`. A meeting with nobody from outside (see
//! `own_domains`; the connection's owner is always one of us) is never placed on an
//! account, and is reported deleted in case an earlier version had a client on it.
//!
//! **Errors** follow `rapport_pdk::providers::google_error`: 401 → auth (the host
//! refreshes once and repeats), 403 quota and 429 → rate-limited after Google's hint,
//! 5xx → transient.

use calendar_events::to_event;
use rapport_pdk::people::Ourselves;
use rapport_pdk::prelude::*;
use rapport_pdk::providers::{google_error, is_resync};
use serde::{Deserialize, Serialize};

pub mod mapping;

use mapping::{Change, EventList};

/// Events per page (Google's maximum is 2,500; 250 is its default).
const PAGE_EVENTS_DEFAULT: u64 = 250;
/// How far ahead occurrences are read, in days.
const DAYS_AHEAD_DEFAULT: u64 = 180;
/// How far back the first read goes without `backfill_start`, in days.
const DAYS_BACK_DEFAULT: i64 = 90;
/// How far the window may fall behind before it rolls.
const ROLL_AFTER_DAYS: i64 = 7;
/// How far before the old window's end a roll reads again.
const ROLL_OVERLAP_DAYS: i64 = 1;
const DAY_US: i64 = 86_400_000_000;

/// Where the next sync continues.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The token of the last finished read: the next read is incremental from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_token: Option<String>,
    /// Mid-read: the next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    /// The full read in progress: from when (RFC 3339). `None` for an incremental one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_from: Option<String>,
    /// The end of the window of the read in progress, or of the last finished one.
    #[serde(default)]
    pub window_end: i64,
}

/// The connector's settings, validated.
struct Settings {
    base_url: String,
    calendar_id: String,
    page_size: u64,
    days_ahead: i64,
    history_from: Timestamp,
    ourselves: Ourselves,
}

use rapport_pdk::Timestamp;

impl Settings {
    fn from_config(config: &Config) -> Result<Settings, ConnectorError> {
        let history_from = match config.get("backfill_start") {
            Some(start) => time::parse_rfc3339(start)?,
            None => time::now() - DAYS_BACK_DEFAULT * DAY_US,
        };
        Ok(Settings {
            base_url: config
                .get("base_url")
                .unwrap_or("https://www.googleapis.com")
                .trim_end_matches('/')
                .to_owned(),
            calendar_id: config.get("calendar_id").unwrap_or("primary").to_owned(),
            page_size: config.number("page_size", PAGE_EVENTS_DEFAULT, 1..=2500)?,
            days_ahead: i64::try_from(config.number("days_ahead", DAYS_AHEAD_DEFAULT, 1..=1830)?)
                .expect("at most 1830"),
            history_from,
            ourselves: Ourselves::of_config(config),
        })
    }

    fn events_url(&self, query: &str) -> String {
        format!(
            "{}/calendar/v3/calendars/{}/events?{query}",
            self.base_url,
            http::encode_query_value(&self.calendar_id)
        )
    }
}

/// The query of the page `at` asks for.
fn query(at: &Checkpoint, settings: &Settings) -> String {
    let mut query = format!(
        "singleEvents=true&showDeleted=true&maxResults={}",
        settings.page_size
    );
    match (&at.full_from, &at.sync_token) {
        (Some(from), _) => {
            query.push_str("&timeMin=");
            query.push_str(&http::encode_query_value(from));
        }
        (None, Some(token)) => {
            query.push_str("&syncToken=");
            query.push_str(&http::encode_query_value(token));
        }
        (None, None) => {}
    }
    if let Some(page) = &at.page_token {
        query.push_str("&pageToken=");
        query.push_str(&http::encode_query_value(page));
    }
    query
}

/// A full read from `from` with a window ending at `window_end`.
fn full_read(from: Timestamp, window_end: Timestamp, keep_token: Option<String>) -> Checkpoint {
    Checkpoint {
        sync_token: keep_token,
        page_token: None,
        full_from: Some(time::rfc3339(from)),
        window_end,
    }
}

/// What to read next from a stored checkpoint at `now`: the stored position, a fresh
/// full read, or a roll of a window that has fallen behind.
fn next_read(stored: Option<Checkpoint>, settings: &Settings, now: Timestamp) -> Checkpoint {
    let window_end = now + settings.days_ahead * DAY_US;
    match stored {
        None => full_read(settings.history_from, window_end, None),
        Some(at)
            if at.page_token.is_none()
                && at.full_from.is_none()
                && at.sync_token.is_some()
                && at.window_end + ROLL_AFTER_DAYS * DAY_US < window_end =>
        {
            // The window has fallen a week behind: read again from just before its
            // end, keeping the old token until the new one arrives.
            let from = (at.window_end - ROLL_OVERLAP_DAYS * DAY_US).max(settings.history_from);
            full_read(from, window_end, at.sync_token)
        }
        Some(at) => at,
    }
}

fn fetch(at: &Checkpoint, settings: &Settings) -> Result<http::Response, ConnectorError> {
    http::get(&settings.events_url(&query(at, settings)))
        .oauth()?
        .send()
}

struct GoogleCalendar;

impl Connector for GoogleCalendar {
    fn describe() -> Manifest {
        manifest(
            "google-calendar",
            env!("CARGO_PKG_VERSION"),
            "Google Calendar: meetings with clients (scheduled, moved, cancelled), with organizer, attendees and their responses, time and place; recurring meetings as their occurrences",
        )
        .emits(&["meeting.scheduled", "meeting.updated", "meeting.canceled"])
        .setting(
            "base_url",
            "The Calendar API root (default https://www.googleapis.com)",
            false,
        )
        .setting(
            "calendar_id",
            "Which calendar (default `primary`, the person's own)",
            false,
        )
        .setting(
            "days_ahead",
            "How far ahead recurring meetings are expanded, in days (default 180)",
            false,
        )
        .setting("page_size", "Events per request, 1 to 2500 (default 250)", false)
        .setting(
            "own_addresses",
            "Our addresses, comma-separated: never hints (the person's own always counts)",
            false,
        )
        .setting(
            "own_domains",
            "Our domains, comma-separated: a meeting with only these is never placed on an account",
            false,
        )
        .setting(
            "accounts_url",
            "Google's sign-in root (default https://accounts.google.com)",
            false,
        )
        .setting(
            "oauth_url",
            "Google's token root (default https://oauth2.googleapis.com)",
            false,
        )
        .needs_host("{base_url|https://www.googleapis.com}")
        .oauth2(
            oauth2(
                "{accounts_url|https://accounts.google.com}/o/oauth2/v2/auth",
                "{oauth_url|https://oauth2.googleapis.com}/token",
            )
            .revocation("{oauth_url|https://oauth2.googleapis.com}/revoke")
            .scopes(&[
                "openid",
                "email",
                "https://www.googleapis.com/auth/calendar.readonly",
            ])
            .pkce()
            // A refresh token only with offline access and consent asked each time.
            .parameter("access_type", "offline")
            .parameter("prompt", "consent")
            .token_for("{base_url|https://www.googleapis.com}"),
        )
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let response = http::get(&settings.events_url("maxResults=1"))
            .oauth()?
            .send()?;
        match google_error(&response) {
            Some(ConnectorError::Fatal(text)) if response.status == 404 => {
                Err(ConnectorError::Config(format!(
                    "there is no calendar `{}` for this account ({text}): check calendar_id",
                    settings.calendar_id
                )))
            }
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let now = time::now();
        let stored: Option<Checkpoint> = checkpoint::load(checkpoint.as_deref())?;
        let mut at = next_read(stored, &settings, now);
        let mut response = fetch(&at, &settings)?;
        if is_resync(&response) {
            // The sync token (or a page token) expired: read everything again. What is
            // stored already is keyed by Google's id, so nothing is stored twice.
            log::info("Google says the sync token expired; reading the calendar again");
            at = full_read(
                settings.history_from,
                now + settings.days_ahead * DAY_US,
                None,
            );
            response = fetch(&at, &settings)?;
        }
        if let Some(error) = google_error(&response) {
            return Err(error);
        }
        let list: EventList = response.json()?;
        let mut events = Vec::with_capacity(list.items.len());
        let mut deleted = Vec::new();
        for item in &list.items {
            match item.change()? {
                Change::Deleted(id) => deleted.push(id),
                Change::Meeting(meeting) if meeting.starts_at > at.window_end => {
                    // Beyond the window: the roll brings it in time (and if it was moved
                    // out of the window, it leaves the timeline until then).
                    deleted.push(meeting.id);
                }
                Change::Meeting(meeting) => match to_event(&meeting, &settings.ourselves) {
                    Some(event) => events.push(event),
                    None => deleted.push(meeting.id),
                },
            }
        }
        let (next, more) = match (list.next_page_token, list.next_sync_token) {
            (Some(page), _) => (
                Checkpoint {
                    page_token: Some(page),
                    ..at
                },
                true,
            ),
            (None, Some(token)) => (
                Checkpoint {
                    sync_token: Some(token),
                    page_token: None,
                    full_from: None,
                    window_end: at.window_end,
                },
                false,
            ),
            (None, None) => {
                return Err(ConnectorError::Transient(
                    "Google's last page carried neither a page token nor a sync token".into(),
                ));
            }
        };
        Ok(Page {
            events,
            deleted,
            checkpoint: Some(checkpoint::save(&next)),
            more,
        })
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Config(
            "google-calendar reads on its schedule; it takes no webhooks".into(),
        ))
    }
}

rapport_pdk::export_connector!(GoogleCalendar);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            base_url: "https://www.googleapis.com".into(),
            calendar_id: "sam@ours.example".into(),
            page_size: 250,
            days_ahead: 180,
            history_from: 1_000 * DAY_US,
            ourselves: Ourselves::default(),
        }
    }

    #[test]
    fn the_first_read_is_full_then_incremental_and_the_window_rolls() {
        let now = 2_000 * DAY_US;
        let first = next_read(None, &settings(), now);
        assert_eq!(
            first.full_from.as_deref(),
            Some(time::rfc3339(1_000 * DAY_US).as_str())
        );
        assert_eq!(first.window_end, now + 180 * DAY_US);
        assert!(query(&first, &settings()).contains("timeMin="));
        let synced = Checkpoint {
            sync_token: Some("tok".into()),
            page_token: None,
            full_from: None,
            window_end: first.window_end,
        };
        // Soon after: incremental from the token.
        let later = next_read(Some(synced.clone()), &settings(), now + DAY_US);
        assert_eq!(later, synced);
        assert!(query(&later, &settings()).contains("syncToken=tok"));
        // Eight days on, the window has fallen behind: a roll from just before its end,
        // keeping the token until the new one arrives.
        let rolled = next_read(Some(synced), &settings(), now + 8 * DAY_US);
        assert_eq!(
            rolled.full_from.as_deref(),
            Some(time::rfc3339(first.window_end - DAY_US).as_str())
        );
        assert_eq!(rolled.sync_token.as_deref(), Some("tok"));
        assert_eq!(rolled.window_end, now + 188 * DAY_US);
        assert!(
            settings()
                .events_url("x=1")
                .contains("/calendars/sam%40ours.example/events")
        );
    }
}
