//! rapport's Gmail connector: a person's mail with clients, on the clients' timelines,
//! read with the person's own OAuth connection.
//!
//! **Reading.** The first read is *full* and bounded: the messages received since
//! `backfill_start` (or 90 days back), listed by `users.messages.list` (once per label
//! in `labels`, or the whole mailbox but spam and trash) and read one by one. Before it
//! starts, the mailbox's `historyId` is noted; once it ends, every later read is
//! *incremental* through `users.history.list` from there, so what arrived during the
//! full read is not missed. Each call reads one page and commits it with its
//! checkpoint, so a crash resumes where it was.
//!
//! **The same event as IMAP's.** A message is mapped by `mail-events`, exactly as
//! `email-imap` maps it: the same kinds, attributes and thread key, and its
//! `Message-ID` as its shared identity, so the same message read by IMAP, or in two
//! people's mailboxes, is one event on the timeline. Its key here is Gmail's id, which
//! is what Gmail's history names when a message is deleted.
//!
//! **Metadata or full.** A connection whose sharing level is `metadata` has its
//! messages read as `format=metadata` (the headers only: no body is ever fetched);
//! others as `format=raw`. The `read` setting (`full`, `metadata`) overrides it.
//!
//! **Gone.** A message deleted, moved to the trash or spam, or no longer under any of
//! the chosen labels is reported deleted. An expired `historyId` (404) starts a full
//! read again; stored messages keep their keys, so nothing is stored twice.
//!
//! **Errors** follow `rapport_pdk::providers::google_error`: 401 → auth (the host
//! refreshes once and repeats), 403 quota and 429 → rate-limited after Google's hint,
//! 5xx → transient.

use mail_events::{Envelope, Ourselves, ReadAs, Unusable};
use rapport_pdk::Timestamp;
use rapport_pdk::prelude::*;
use rapport_pdk::providers::google_error;
use serde::{Deserialize, Serialize};

pub mod api;

use api::{HistoryList, Message, MessageList, Profile};

/// Messages read per call (each is one request to Gmail).
const PAGE_MESSAGES_DEFAULT: u64 = 50;
/// How far back the first read goes without `backfill_start`, in days.
const DAYS_BACK_DEFAULT: i64 = 90;
const DAY_US: i64 = 86_400_000_000;

/// Where the next sync continues.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Incremental: the history id the next read starts from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_id: Option<String>,
    /// Incremental, mid-way: the next page of the history since `history_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_page: Option<String>,
    /// A full read in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<FullRead>,
}

/// A full read: which label's listing, which page of it, and the history id to go on
/// from once it is done.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullRead {
    pub label: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_token: Option<String>,
    pub then_history_id: String,
}

/// The connector's settings, validated.
struct Settings {
    base_url: String,
    labels: Vec<String>,
    page_size: u64,
    history_from: Timestamp,
    read_as: ReadAs,
    ourselves: Ourselves,
}

impl Settings {
    fn from_config(config: &Config) -> Result<Settings, ConnectorError> {
        let history_from = match config.get("backfill_start") {
            Some(start) => time::parse_rfc3339(start)?,
            None => time::now() - DAYS_BACK_DEFAULT * DAY_US,
        };
        let read_as = mail_events::read_as(config)?;
        let labels = config
            .get("labels")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|label| !label.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Settings {
            base_url: config
                .get("base_url")
                .unwrap_or("https://gmail.googleapis.com")
                .trim_end_matches('/')
                .to_owned(),
            labels,
            page_size: config.number("page_size", PAGE_MESSAGES_DEFAULT, 1..=500)?,
            history_from,
            read_as,
            ourselves: Ourselves::of_config(config),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/gmail/v1/users/me/{path}", self.base_url)
    }

    /// The label the full read's `label`-th listing is of (`None`: the whole mailbox).
    fn label(&self, index: usize) -> Option<&str> {
        self.labels.get(index).map(String::as_str)
    }

    fn listings(&self) -> usize {
        self.labels.len().max(1)
    }
}

/// GETs `url` with the connection's token; Google's errors become the contract's.
fn get(url: &str) -> Result<http::Response, ConnectorError> {
    let response = http::get(url).oauth()?.send()?;
    match google_error(&response) {
        Some(error) => Err(error),
        None => Ok(response),
    }
}

/// Starts a full read: notes where the mailbox's history is now.
fn start_full_read(settings: &Settings) -> Result<FullRead, ConnectorError> {
    let profile: Profile = get(&settings.url("profile"))?.json()?;
    Ok(FullRead {
        label: 0,
        page_token: None,
        then_history_id: profile.history_id,
    })
}

/// Reads one message, or `None` when it is gone (404).
fn read_message(id: &str, settings: &Settings) -> Result<Option<Message>, ConnectorError> {
    let query = match settings.read_as {
        ReadAs::Full => "format=raw".to_owned(),
        ReadAs::Metadata => {
            let mut query = "format=metadata".to_owned();
            for header in api::METADATA_HEADERS {
                query.push_str("&metadataHeaders=");
                query.push_str(header);
            }
            query
        }
    };
    let url = settings.url(&format!(
        "messages/{}?{query}",
        http::encode_query_value(id)
    ));
    let response = http::get(&url).oauth()?.send()?;
    if response.status == 404 {
        return Ok(None);
    }
    if let Some(error) = google_error(&response) {
        return Err(error);
    }
    Ok(Some(response.json()?))
}

/// What reading a page's messages gave.
#[derive(Default)]
struct Read {
    events: Vec<Event>,
    deleted: Vec<String>,
}

/// Reads `ids` and maps each: kept, reported deleted (gone, discarded, or outside the
/// chosen labels), or skipped (older than the first read reaches, or not a message).
fn read_all(ids: &[String], settings: &Settings, read: &mut Read) -> Result<(), ConnectorError> {
    for id in ids {
        let Some(message) = read_message(id, settings)? else {
            read.deleted.push(id.clone());
            continue;
        };
        let outside_labels = !settings.labels.is_empty()
            && !settings
                .labels
                .iter()
                .any(|label| message.label_ids.contains(label));
        if message.is_discarded() || outside_labels {
            read.deleted.push(id.clone());
            continue;
        }
        if let Some(event) = to_event(&message, settings)? {
            read.events.push(event);
        }
    }
    Ok(())
}

/// One Gmail message → the event `email-imap` would make of it, keyed by Gmail's id.
fn to_event(message: &Message, settings: &Settings) -> Result<Option<Event>, ConnectorError> {
    let received_at = message.received_at_us();
    if received_at.is_some_and(|at| at < settings.history_from) {
        return Ok(None);
    }
    let bytes = match message.bytes() {
        Ok(bytes) => bytes,
        Err(unreadable) => {
            log::warn(&format!(
                "Gmail message {} could not be read ({unreadable:?}); skipped",
                message.id
            ));
            return Ok(None);
        }
    };
    let envelope = Envelope {
        folder: message.folder(&settings.labels),
        received_at,
        size: message.size_estimate,
        truncated: false,
    };
    match mail_events::to_event(&bytes, &envelope, &settings.ourselves) {
        Ok(mut event) => {
            event.source_id = message.id.clone();
            Ok(Some(event.text("gmail_thread_id", &message.thread_id)))
        }
        Err(Unusable::NotAMessage | Unusable::NoTime) => {
            log::warn(&format!(
                "Gmail message {} is not a message rapport can place in time; skipped",
                message.id
            ));
            Ok(None)
        }
    }
}

/// One page of a full read.
fn full_page(at: FullRead, settings: &Settings) -> Result<Page, ConnectorError> {
    let mut query = format!(
        "maxResults={}&q={}",
        settings.page_size,
        http::encode_query_value(&format!(
            "after:{}",
            settings.history_from.div_euclid(1_000_000)
        ))
    );
    if let Some(label) = settings.label(at.label) {
        query.push_str("&labelIds=");
        query.push_str(&http::encode_query_value(label));
    }
    if let Some(page) = &at.page_token {
        query.push_str("&pageToken=");
        query.push_str(&http::encode_query_value(page));
    }
    let list: MessageList = get(&settings.url(&format!("messages?{query}")))?.json()?;
    let ids: Vec<String> = list.messages.into_iter().map(|m| m.id).collect();
    let mut read = Read::default();
    read_all(&ids, settings, &mut read)?;
    let next = match list.next_page_token {
        Some(page) => Checkpoint {
            full: Some(FullRead {
                page_token: Some(page),
                ..at
            }),
            ..Checkpoint::default()
        },
        None if at.label + 1 < settings.listings() => Checkpoint {
            full: Some(FullRead {
                label: at.label + 1,
                page_token: None,
                ..at
            }),
            ..Checkpoint::default()
        },
        None => Checkpoint {
            history_id: Some(at.then_history_id),
            ..Checkpoint::default()
        },
    };
    let more = next.full.is_some();
    Ok(Page {
        events: read.events,
        deleted: read.deleted,
        checkpoint: Some(checkpoint::save(&next)),
        more,
    })
}

/// One page of the history since `history_id`; `None` when Gmail no longer has it.
fn history_page(
    history_id: &str,
    page_token: Option<&str>,
    settings: &Settings,
) -> Result<Option<Page>, ConnectorError> {
    let mut query = format!(
        "startHistoryId={}&maxResults={}&historyTypes=messageAdded&historyTypes=messageDeleted&historyTypes=labelAdded&historyTypes=labelRemoved",
        http::encode_query_value(history_id),
        settings.page_size
    );
    if let Some(page) = page_token {
        query.push_str("&pageToken=");
        query.push_str(&http::encode_query_value(page));
    }
    let response = http::get(&settings.url(&format!("history?{query}")))
        .oauth()?
        .send()?;
    if response.status == 404 {
        // Gmail keeps history for about a week: older ids are not found.
        return Ok(None);
    }
    if let Some(error) = google_error(&response) {
        return Err(error);
    }
    let list: HistoryList = response.json()?;
    let changes = list.changes();
    let mut read = Read {
        deleted: changes.deleted,
        ..Read::default()
    };
    read_all(&changes.read, settings, &mut read)?;
    let next = match list.next_page_token {
        Some(page) => Checkpoint {
            history_id: Some(history_id.to_owned()),
            history_page: Some(page),
            full: None,
        },
        None => Checkpoint {
            history_id: Some(list.history_id.unwrap_or_else(|| history_id.to_owned())),
            ..Checkpoint::default()
        },
    };
    let more = next.history_page.is_some();
    Ok(Some(Page {
        events: read.events,
        deleted: read.deleted,
        checkpoint: Some(checkpoint::save(&next)),
        more,
    }))
}

struct Gmail;

impl Connector for Gmail {
    fn describe() -> Manifest {
        manifest(
            "gmail",
            env!("CARGO_PKG_VERSION"),
            "Gmail: mail received from and sent to clients, as the same email events IMAP gives, read with each person's own Google connection",
        )
        .emits(&["email.received", "email.sent"])
        .setting(
            "base_url",
            "The Gmail API root (default https://gmail.googleapis.com)",
            false,
        )
        .setting(
            "backfill_start",
            "How far back the first read goes, RFC 3339 (default 90 days ago)",
            false,
        )
        .setting(
            "labels",
            "Label ids to read, comma-separated, e.g. `INBOX,SENT` (default: every message but spam and trash)",
            false,
        )
        .setting(
            "read",
            "`full` (the whole message), `metadata` (headers only) or `by-sharing` (the default: metadata when the connection's sharing level is metadata)",
            false,
        )
        .setting("page_size", "Messages per call, 1 to 500 (default 50)", false)
        .setting(
            "own_addresses",
            "Our addresses, comma-separated: never hints (the person's own always counts)",
            false,
        )
        .setting(
            "own_domains",
            "Our domains, comma-separated: never hints",
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
        .needs_host("{base_url|https://gmail.googleapis.com}")
        .oauth2(
            oauth2(
                "{accounts_url|https://accounts.google.com}/o/oauth2/v2/auth",
                "{oauth_url|https://oauth2.googleapis.com}/token",
            )
            .revocation("{oauth_url|https://oauth2.googleapis.com}/revoke")
            .scopes(&[
                "openid",
                "email",
                "https://www.googleapis.com/auth/gmail.readonly",
            ])
            .pkce()
            .parameter("access_type", "offline")
            .parameter("prompt", "consent")
            .token_for("{base_url|https://gmail.googleapis.com}"),
        )
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        let settings = Settings::from_config(&config)?;
        get(&settings.url("profile"))?.json::<Profile>()?;
        for label in &settings.labels {
            let url = settings.url(&format!("labels/{}", http::encode_query_value(label)));
            let response = http::get(&url).oauth()?.send()?;
            if response.status == 404 {
                return Err(ConnectorError::Config(format!(
                    "this mailbox has no label `{label}`: check labels (label ids, e.g. INBOX, SENT, Label_12)"
                )));
            }
            if let Some(error) = google_error(&response) {
                return Err(error);
            }
        }
        Ok(())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let stored: Option<Checkpoint> = checkpoint::load(checkpoint.as_deref())?;
        match stored {
            Some(Checkpoint {
                full: Some(full), ..
            }) => full_page(full, &settings),
            Some(Checkpoint {
                history_id: Some(history_id),
                history_page: page_token,
                ..
            }) => match history_page(&history_id, page_token.as_deref(), &settings)? {
                Some(page) => Ok(page),
                None => {
                    log::info(
                        "Gmail no longer has the history since the last read; reading the mailbox again",
                    );
                    full_page(start_full_read(&settings)?, &settings)
                }
            },
            _ => full_page(start_full_read(&settings)?, &settings),
        }
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Config(
            "gmail reads on its schedule; it takes no webhooks".into(),
        ))
    }
}

rapport_pdk::export_connector!(Gmail);
