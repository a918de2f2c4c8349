//! rapport's Outlook mail connector: a person's mail with clients from Microsoft 365,
//! read with the person's own OAuth connection through Microsoft Graph.
//!
//! **Reading.** A delta round per folder (`folders`, default the inbox and sent items):
//! the first round lists the messages received since `backfill_start` (or 90 days
//! back) a page at a time; its last page gives a `@odata.deltaLink`, and every later
//! round is only what changed since. Each page is committed with where the rounds are,
//! so a crash resumes where it was. Requests ask for immutable ids, so a message keeps
//! its key when it is moved.
//!
//! **The same event as IMAP's.** Each new or changed message is read as its MIME
//! source (`/messages/{id}/$value`) and mapped by `mail-events`, exactly as
//! `email-imap` maps it: the same kinds, attributes, thread key and `Message-ID`
//! identity, so the same message read over IMAP, through Gmail or in two people's
//! mailboxes is one event. A connection whose sharing level is `metadata` reads only
//! the message's headers (`internetMessageHeaders`): no body is fetched.
//!
//! **Gone.** An item listed as `@removed` (deleted, or moved out of the folder) is
//! reported deleted, as is a message gone by the time it is read. A delta link Graph
//! no longer knows (410, `syncStateNotFound`) starts that folder's round again; stored
//! messages keep their keys, so nothing is stored twice. Drafts are skipped.
//!
//! **Errors** follow `rapport_pdk::providers::microsoft_error`.

use mail_events::{Envelope, Ourselves, ReadAs};
use rapport_pdk::Timestamp;
use rapport_pdk::prelude::*;
use rapport_pdk::providers::{DeltaPage, graph_link, is_resync, microsoft_error};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Messages per page (`Prefer: odata.maxpagesize`); each is one more request.
const PAGE_MESSAGES_DEFAULT: u64 = 50;
/// How far back the first read goes without `backfill_start`, in days.
const DAYS_BACK_DEFAULT: i64 = 90;
const DAY_US: i64 = 86_400_000_000;

/// Where the next sync continues.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Each folder's delta link: where its next round starts.
    #[serde(default)]
    pub delta: BTreeMap<String, String>,
    /// Which folder (by its place in `folders`) the current pass is at.
    #[serde(default)]
    pub folder: usize,
    /// Mid-round: that folder's next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

struct Settings {
    base_url: String,
    folders: Vec<String>,
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
        let folders: Vec<String> = config
            .get("folders")
            .unwrap_or("inbox,sentitems")
            .split(',')
            .map(str::trim)
            .filter(|folder| !folder.is_empty())
            .map(str::to_owned)
            .collect();
        if folders.is_empty() {
            return Err(ConnectorError::Config(
                "folders is empty: name at least one folder (e.g. `inbox,sentitems`)".into(),
            ));
        }
        Ok(Settings {
            base_url: config
                .get("base_url")
                .unwrap_or("https://graph.microsoft.com")
                .trim_end_matches('/')
                .to_owned(),
            folders,
            page_size: config.number("page_size", PAGE_MESSAGES_DEFAULT, 1..=1000)?,
            history_from,
            read_as,
            ourselves: Ourselves::of_config(config),
        })
    }

    fn me(&self, path: &str) -> String {
        format!("{}/v1.0/me/{path}", self.base_url)
    }

    /// The first request of `folder`'s round: what arrived since the first read's start.
    fn round_url(&self, folder: &str) -> String {
        let filter = format!("receivedDateTime ge {}", time::rfc3339(self.history_from));
        self.me(&format!(
            "mailFolders/{}/messages/delta?$select=receivedDateTime,isDraft&$filter={}",
            http::encode_query_value(folder),
            http::encode_query_value(&filter)
        ))
    }
}

fn graph_get(url: &str, page_size: u64) -> Result<http::Response, ConnectorError> {
    http::get(url)
        .oauth()?
        .header("prefer", &format!("odata.maxpagesize={page_size}"))
        .header("prefer", "IdType=\"ImmutableId\"")
        .send()
}

/// What the delta lists of a message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Listed {
    received_date_time: Option<String>,
    is_draft: bool,
}

/// `GET /messages/{id}?$select=internetMessageHeaders`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Headers {
    internet_message_headers: Vec<Header>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Header {
    name: String,
    value: String,
}

/// The message's bytes: its MIME source, or (a metadata read) its headers with no
/// body. `None` when it is gone.
fn read_message(id: &str, settings: &Settings) -> Result<Option<Vec<u8>>, ConnectorError> {
    let id = http::encode_query_value(id);
    let url = match settings.read_as {
        ReadAs::Full => settings.me(&format!("messages/{id}/$value")),
        ReadAs::Metadata => settings.me(&format!("messages/{id}?$select=internetMessageHeaders")),
    };
    let response = http::get(&url)
        .oauth()?
        .header("prefer", "IdType=\"ImmutableId\"")
        .send()?;
    if response.status == 404 {
        return Ok(None);
    }
    if let Some(error) = microsoft_error(&response) {
        return Err(error);
    }
    match settings.read_as {
        ReadAs::Full => Ok(Some(response.body)),
        ReadAs::Metadata => {
            let headers: Headers = response.json()?;
            Ok(Some(mail_events::header_block(
                headers
                    .internet_message_headers
                    .iter()
                    .map(|header| (header.name.as_str(), header.value.as_str())),
            )))
        }
    }
}

struct OutlookMail;

impl Connector for OutlookMail {
    fn describe() -> Manifest {
        manifest(
            "outlook-mail",
            env!("CARGO_PKG_VERSION"),
            "Outlook mail (Microsoft 365): mail received from and sent to clients, as the same email events IMAP gives, read with each person's own Microsoft connection",
        )
        .emits(&["email.received", "email.sent"])
        .setting(
            "base_url",
            "The Microsoft Graph root (default https://graph.microsoft.com)",
            false,
        )
        .setting(
            "folders",
            "Folders to read, comma-separated: well-known names or ids (default `inbox,sentitems`)",
            false,
        )
        .setting(
            "backfill_start",
            "How far back the first read goes, RFC 3339 (default 90 days ago)",
            false,
        )
        .setting(
            "read",
            "`full` (the whole message), `metadata` (headers only) or `by-sharing` (the default: metadata when the connection's sharing level is metadata)",
            false,
        )
        .setting("page_size", "Messages per request, 1 to 1000 (default 50)", false)
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
                "https://graph.microsoft.com/Mail.Read",
            ])
            .pkce()
            .token_for("{base_url|https://graph.microsoft.com}"),
        )
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        let settings = Settings::from_config(&config)?;
        for folder in &settings.folders {
            let url = settings.me(&format!("mailFolders/{}", http::encode_query_value(folder)));
            let response = graph_get(&url, 1)?;
            if response.status == 404 {
                return Err(ConnectorError::Config(format!(
                    "this mailbox has no folder `{folder}`: check folders (well-known names such as inbox, sentitems, archive, or folder ids)"
                )));
            }
            if let Some(error) = microsoft_error(&response) {
                return Err(error);
            }
        }
        Ok(())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let mut at: Checkpoint = checkpoint::load(checkpoint.as_deref())?.unwrap_or_default();
        if at.folder >= settings.folders.len() {
            // The folders changed since: start the pass again.
            at.folder = 0;
            at.next = None;
        }
        let folder = settings.folders[at.folder].clone();
        let url = match (&at.next, at.delta.get(&folder)) {
            (Some(next), _) => graph_link(next, &settings.base_url)?,
            (None, Some(delta)) => graph_link(delta, &settings.base_url)?,
            (None, None) => settings.round_url(&folder),
        };
        let mut response = graph_get(&url, settings.page_size)?;
        if is_resync(&response) {
            log::info(&format!(
                "Graph no longer knows the delta of folder `{folder}`; reading it again"
            ));
            at.delta.remove(&folder);
            response = graph_get(&settings.round_url(&folder), settings.page_size)?;
        }
        if let Some(error) = microsoft_error(&response) {
            return Err(error);
        }
        let page: DeltaPage<Listed> = response.json()?;
        let mut events = Vec::new();
        let mut deleted = Vec::new();
        for item in &page.value {
            if item.removed.is_some() {
                deleted.push(item.id.clone());
                continue;
            }
            if item.item.is_draft {
                continue;
            }
            let Some(bytes) = read_message(&item.id, &settings)? else {
                deleted.push(item.id.clone());
                continue;
            };
            let received_at = item
                .item
                .received_date_time
                .as_deref()
                .and_then(|at| time::parse_rfc3339(at).ok());
            let envelope = Envelope {
                folder: &folder,
                received_at,
                size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
                truncated: false,
            };
            match mail_events::to_event(&bytes, &envelope, &settings.ourselves) {
                Ok(mut event) => {
                    event.source_id = item.id.clone();
                    events.push(event);
                }
                Err(unusable) => log::warn(&format!(
                    "Outlook message {} could not be mapped ({unusable:?}); skipped",
                    item.id
                )),
            }
        }
        let more = match (page.next_link, page.delta_link) {
            (Some(next), _) => {
                at.next = Some(graph_link(&next, &settings.base_url)?);
                true
            }
            (None, Some(delta)) => {
                at.delta
                    .insert(folder, graph_link(&delta, &settings.base_url)?);
                at.next = None;
                at.folder += 1;
                if at.folder == settings.folders.len() {
                    at.folder = 0;
                    false
                } else {
                    true
                }
            }
            (None, None) => {
                return Err(ConnectorError::Transient(
                    "Graph's delta page carried neither a next link nor a delta link".into(),
                ));
            }
        };
        Ok(Page {
            events,
            deleted,
            checkpoint: Some(checkpoint::save(&at)),
            more,
        })
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Config(
            "outlook-mail reads on its schedule; it takes no webhooks".into(),
        ))
    }
}

rapport_pdk::export_connector!(OutlookMail);
