//! rapport's Outlook calendar connector: a person's meetings with clients from
//! Microsoft 365, read with the person's own OAuth connection through Microsoft Graph.
//!
//! **Reading.** `calendarView/delta` over a window — from `backfill_start` (or 90 days
//! back) to `days_ahead` (180) ahead — so a recurring meeting arrives as its
//! occurrences. The first round lists the window a page at a time
//! (`@odata.nextLink`); its last page gives a `@odata.deltaLink`, and every later
//! round is only what changed since. Each page is committed with its link, so a crash
//! resumes where it was. Requests ask for UTC times and immutable ids (an event keeps
//! its id when it moves between calendars).
//!
//! **The window rolls.** Once the window's end is a week behind, a new round from just
//! before its old end starts (the old delta link is kept until the new one arrives).
//!
//! **Gone and cancelled.** An item Graph lists as `@removed` — deleted, or moved out of
//! the window — is reported deleted; a cancelled meeting stays on the timeline as
//! `meeting.canceled`. A meeting with nobody from outside is never placed on an account
//! (and is reported deleted in case an earlier version had a client on it). A delta
//! link Graph no longer knows (410, `syncStateNotFound`, `resyncRequired`) starts a
//! full round again; stored meetings keep their keys, so nothing is stored twice.
//!
//! **Errors** follow `rapport_pdk::providers::microsoft_error`: 401 → auth (the host
//! refreshes once and repeats), 429 and throttling 503/504 → rate-limited after the
//! `Retry-After`, other 5xx → transient.

use calendar_events::to_event;
use rapport_pdk::Timestamp;
use rapport_pdk::people::Ourselves;
use rapport_pdk::prelude::*;
use rapport_pdk::providers::{DeltaPage, graph_link, is_resync, microsoft_error};
use serde::{Deserialize, Serialize};

pub mod mapping;

use mapping::GraphEvent;

/// Events per page (`Prefer: odata.maxpagesize`).
const PAGE_EVENTS_DEFAULT: u64 = 100;
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
    /// The link to read next: a round's next page, or the next round's delta link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Whether `link` is mid-round (a next link) rather than a delta link.
    #[serde(default)]
    pub in_round: bool,
    /// A round to start from scratch over this window, instead of `link`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_round_from: Option<i64>,
    /// The end of the window of the current round.
    #[serde(default)]
    pub window_end: i64,
}

struct Settings {
    base_url: String,
    page_size: u64,
    days_ahead: i64,
    history_from: Timestamp,
    ourselves: Ourselves,
}

impl Settings {
    fn from_config(config: &Config) -> Result<Settings, ConnectorError> {
        let history_from = match config.get("backfill_start") {
            Some(start) => time::parse_rfc3339(start)?,
            None => time::now() - DAYS_BACK_DEFAULT * DAY_US,
        };
        Ok(Settings {
            base_url: config
                .get("base_url")
                .unwrap_or("https://graph.microsoft.com")
                .trim_end_matches('/')
                .to_owned(),
            page_size: config.number("page_size", PAGE_EVENTS_DEFAULT, 1..=1000)?,
            days_ahead: i64::try_from(config.number("days_ahead", DAYS_AHEAD_DEFAULT, 1..=1830)?)
                .expect("at most 1830"),
            history_from,
            ourselves: Ourselves::of_config(config),
        })
    }

    /// The first request of a round over `[from, to)`.
    fn round_url(&self, from: Timestamp, to: Timestamp) -> String {
        format!(
            "{}/v1.0/me/calendarView/delta?startDateTime={}&endDateTime={}",
            self.base_url,
            http::encode_query_value(&time::rfc3339(from)),
            http::encode_query_value(&time::rfc3339(to)),
        )
    }
}

/// A GET to Graph as the connector makes them all: the connection's token, UTC times,
/// immutable ids, pages of `page_size`.
fn graph_get(url: &str, page_size: u64) -> Result<http::Response, ConnectorError> {
    http::get(url)
        .oauth()?
        .header("prefer", &format!("odata.maxpagesize={page_size}"))
        .header("prefer", "outlook.timezone=\"UTC\"")
        .header("prefer", "IdType=\"ImmutableId\"")
        .send()
}

/// What to read next from a stored checkpoint at `now`.
fn next_read(stored: Option<Checkpoint>, settings: &Settings, now: Timestamp) -> Checkpoint {
    let window_end = now + settings.days_ahead * DAY_US;
    match stored {
        None => Checkpoint {
            new_round_from: Some(settings.history_from),
            window_end,
            ..Checkpoint::default()
        },
        Some(at)
            if !at.in_round
                && at.new_round_from.is_none()
                && at.window_end + ROLL_AFTER_DAYS * DAY_US < window_end =>
        {
            // The window has fallen a week behind: a new round from just before its
            // end, keeping the old delta link until the new one arrives.
            Checkpoint {
                new_round_from: Some(
                    (at.window_end - ROLL_OVERLAP_DAYS * DAY_US).max(settings.history_from),
                ),
                window_end,
                ..at
            }
        }
        Some(at) => at,
    }
}

fn url_of(at: &Checkpoint, settings: &Settings) -> Result<String, ConnectorError> {
    match (&at.new_round_from, &at.link) {
        (Some(from), _) => Ok(settings.round_url(*from, at.window_end)),
        (None, Some(link)) => graph_link(link, &settings.base_url),
        (None, None) => Ok(settings.round_url(settings.history_from, at.window_end)),
    }
}

struct OutlookCalendar;

impl Connector for OutlookCalendar {
    fn describe() -> Manifest {
        manifest(
            "outlook-calendar",
            env!("CARGO_PKG_VERSION"),
            "Outlook calendar (Microsoft 365): meetings with clients (scheduled, moved, cancelled), with organizer, attendees and their responses, time and place; recurring meetings as their occurrences",
        )
        .emits(&["meeting.scheduled", "meeting.updated", "meeting.canceled"])
        .setting(
            "base_url",
            "The Microsoft Graph root (default https://graph.microsoft.com)",
            false,
        )
        .setting(
            "backfill_start",
            "How far back the first read goes, RFC 3339 (default 90 days ago)",
            false,
        )
        .setting(
            "days_ahead",
            "How far ahead recurring meetings are expanded, in days (default 180)",
            false,
        )
        .setting("page_size", "Events per request, 1 to 1000 (default 100)", false)
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
            "login_url",
            "The Microsoft identity platform root (default https://login.microsoftonline.com)",
            false,
        )
        .setting(
            "tenant",
            "The Entra ID tenant: `organizations` (default), `common` or a tenant id",
            false,
        )
        .needs_host("{base_url|https://graph.microsoft.com}")
        .oauth2(
            oauth2(
                "{login_url|https://login.microsoftonline.com}/{tenant|organizations}/oauth2/v2.0/authorize",
                "{login_url|https://login.microsoftonline.com}/{tenant|organizations}/oauth2/v2.0/token",
            )
            .scopes(&[
                "openid",
                "email",
                "offline_access",
                "https://graph.microsoft.com/Calendars.Read",
            ])
            .pkce()
            .token_for("{base_url|https://graph.microsoft.com}"),
        )
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let response = graph_get(&format!("{}/v1.0/me/calendar", settings.base_url), 1)?;
        match microsoft_error(&response) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let now = time::now();
        let stored: Option<Checkpoint> = checkpoint::load(checkpoint.as_deref())?;
        let mut at = next_read(stored, &settings, now);
        let mut response = graph_get(&url_of(&at, &settings)?, settings.page_size)?;
        if is_resync(&response) {
            log::info("Graph no longer knows the delta link; reading the calendar again");
            at = Checkpoint {
                new_round_from: Some(settings.history_from),
                window_end: now + settings.days_ahead * DAY_US,
                ..Checkpoint::default()
            };
            response = graph_get(&url_of(&at, &settings)?, settings.page_size)?;
        }
        if let Some(error) = microsoft_error(&response) {
            return Err(error);
        }
        let page: DeltaPage<GraphEvent> = response.json()?;
        let mut events = Vec::with_capacity(page.value.len());
        let mut deleted = Vec::new();
        for item in &page.value {
            if item.removed.is_some() {
                deleted.push(item.id.clone());
                continue;
            }
            let meeting = item.item.meeting(&item.id)?;
            match to_event(&meeting, &settings.ourselves) {
                Some(event) => events.push(event),
                None => deleted.push(item.id.clone()),
            }
        }
        let (next, more) = match (page.next_link, page.delta_link) {
            (Some(link), _) => (
                Checkpoint {
                    link: Some(graph_link(&link, &settings.base_url)?),
                    in_round: true,
                    new_round_from: None,
                    window_end: at.window_end,
                },
                true,
            ),
            (None, Some(link)) => (
                Checkpoint {
                    link: Some(graph_link(&link, &settings.base_url)?),
                    in_round: false,
                    new_round_from: None,
                    window_end: at.window_end,
                },
                false,
            ),
            (None, None) => {
                return Err(ConnectorError::Transient(
                    "Graph's delta page carried neither a next link nor a delta link".into(),
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
            "outlook-calendar reads on its schedule; it takes no webhooks".into(),
        ))
    }
}

rapport_pdk::export_connector!(OutlookCalendar);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            base_url: "https://graph.microsoft.com".into(),
            page_size: 100,
            days_ahead: 180,
            history_from: 1_000 * DAY_US,
            ourselves: Ourselves::default(),
        }
    }

    #[test]
    fn the_first_round_covers_the_window_then_deltas_and_the_window_rolls() {
        let now = 2_000 * DAY_US;
        let first = next_read(None, &settings(), now);
        assert_eq!(first.new_round_from, Some(1_000 * DAY_US));
        let url = url_of(&first, &settings()).unwrap();
        assert!(
            url.contains("/v1.0/me/calendarView/delta?startDateTime="),
            "{url}"
        );
        let done = Checkpoint {
            link: Some(
                "https://graph.microsoft.com/v1.0/me/calendarView/delta?$deltatoken=x".into(),
            ),
            in_round: false,
            new_round_from: None,
            window_end: first.window_end,
        };
        assert_eq!(
            next_read(Some(done.clone()), &settings(), now + DAY_US),
            done
        );
        let rolled = next_read(Some(done), &settings(), now + 8 * DAY_US);
        assert_eq!(rolled.new_round_from, Some(first.window_end - DAY_US));
        assert!(rolled.link.is_some(), "the old delta link is kept");
        let elsewhere = Checkpoint {
            link: Some("https://evil.example/v1.0/x".into()),
            ..Checkpoint::default()
        };
        assert!(url_of(&elsewhere, &settings()).is_err());
    }
}
