//! A stand-in for Google on loopback, for the demo and the connector tests: its OAuth
//! 2.0 endpoints (authorization code with PKCE, refresh, revocation; the authorization
//! page approves at once as the account the stand-in is told to) and the Calendar API's
//! `events.list` with the semantics the connector depends on — `singleEvents`
//! occurrences, `timeMin`, pages (`pageToken`), sync tokens (`nextSyncToken`, then only
//! what changed since, deletions as `cancelled`), a sync token expiring (410 Gone) —
//! and Gmail's `profile`, `labels.get`, `messages.list` (`q=after:`, `labelIds`, pages,
//! newest first, spam and trash left out), `messages.get` (`format=raw` and
//! `format=metadata`) and `history.list` (records after `startHistoryId`, in pages; an
//! id older than the history kept is 404), and Google's errors (401, 403
//! `rateLimitExceeded`, 429 with `Retry-After`). Each account has its own calendar and
//! mailbox; a bearer token reads only its own account's.
//!
//! It stands in for someone else's service, never for rapport's own code.

use crate::upstream::{Reply, Upstream};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The client id the stand-in knows.
pub const CLIENT_ID: &str = "rapport-sample.apps.googleusercontent.com";
/// Its secret.
pub const CLIENT_SECRET: &str = "rapport-sample-secret";

/// One account's calendar: events (occurrences already expanded, as `singleEvents`
/// gives them) with the change number that last touched each.
#[derive(Debug, Default)]
pub struct Calendar {
    /// Event id → (the event resource, the change that last touched it).
    pub events: BTreeMap<String, (Value, u64)>,
    /// Sync tokens of an earlier epoch are expired (410).
    pub epoch: u64,
}

/// One Gmail message.
#[derive(Debug, Clone)]
pub struct GmailMessage {
    /// The RFC 5322 bytes.
    pub raw: Vec<u8>,
    /// Its label ids (`INBOX`, `SENT`, `TRASH`, `Label_1`, ...).
    pub labels: Vec<String>,
    /// When Gmail received it, in milliseconds.
    pub internal_date_ms: i64,
    /// Its thread.
    pub thread_id: String,
    /// The change that added it.
    pub added: u64,
}

/// What one history record says happened to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GmailChange {
    /// Added to the mailbox.
    Added,
    /// Deleted for good.
    Deleted,
    /// Labels added.
    LabelsAdded,
    /// Labels removed.
    LabelsRemoved,
}

/// One account's mailbox: its messages and its history.
#[derive(Debug, Default)]
pub struct Mailbox {
    /// By Gmail id.
    pub messages: BTreeMap<String, GmailMessage>,
    /// (history id, message id, what happened), oldest first.
    pub history: Vec<(u64, String, GmailChange)>,
    /// History before this id is no longer kept: asking from earlier is 404.
    pub history_floor: u64,
}

/// An access token the stand-in issued.
#[derive(Debug, Clone)]
struct Issued {
    account: String,
    expires_at: i64,
}

/// What the stand-in holds; change it between syncs.
#[derive(Debug, Default)]
pub struct GoogleState {
    /// The change counter: every change to any calendar takes the next number.
    pub changes: u64,
    /// Calendars by account (email).
    pub calendars: BTreeMap<String, Calendar>,
    /// Mailboxes by account (email).
    pub mailboxes: BTreeMap<String, Mailbox>,
    /// How many messages were read (`messages.get`).
    pub message_reads: u64,
    /// Served instead of the next API requests, in order.
    pub faults: VecDeque<Reply>,
    /// Whom the authorization page approves as.
    pub approve_as: Option<String>,
    /// How long access tokens live, in seconds.
    pub access_ttl_seconds: i64,
    /// Most events per page, whatever `maxResults` asks.
    pub page_cap: usize,
    codes: BTreeMap<String, (String, String)>,
    access: BTreeMap<String, Issued>,
    refresh: BTreeMap<String, String>,
    issued: u64,
    /// How many refresh grants were answered.
    pub refreshes: u64,
}

/// A running stand-in.
#[derive(Debug)]
pub struct FakeGoogle {
    /// The HTTP server: API, OAuth and sign-in at one address.
    pub upstream: Upstream,
    /// What it serves.
    pub state: Arc<Mutex<GoogleState>>,
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

fn google_error(status: u16, reason: &str, message: &str) -> Reply {
    let body = json!({
        "error": {
            "code": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    });
    Reply {
        headers: vec![("content-type".into(), "application/json".into())],
        ..Reply::status(status, &body.to_string())
    }
}

/// Google's answer to a request over the per-user rate limit (403
/// `rateLimitExceeded`), with a `Retry-After`.
pub fn rate_limited(retry_after_seconds: u64) -> Reply {
    google_error(403, "rateLimitExceeded", "Rate Limit Exceeded")
        .header("retry-after", &retry_after_seconds.to_string())
}

/// 429 Too Many Requests with a `Retry-After`.
pub fn too_many_requests(retry_after_seconds: u64) -> Reply {
    google_error(429, "rateLimitExceeded", "Too Many Requests")
        .header("retry-after", &retry_after_seconds.to_string())
}

/// A timed meeting resource: `id`, `summary`, organizer and attendees (emails; the
/// first is the organizer), start and minutes, as `events.list` lists it.
pub fn meeting(
    id: &str,
    summary: &str,
    organizer: &str,
    attendees: &[&str],
    start: chrono::DateTime<chrono::Utc>,
    minutes: i64,
) -> Value {
    let end = start + chrono::Duration::minutes(minutes);
    json!({
        "kind": "calendar#event",
        "etag": format!("\"{}\"", start.timestamp()),
        "id": id,
        "status": "confirmed",
        "htmlLink": format!("https://www.google.com/calendar/event?eid={id}"),
        "created": "2026-11-01T09:00:00.000Z",
        "updated": "2026-11-01T09:00:00.000Z",
        "summary": summary,
        "organizer": {"email": organizer},
        "start": {"dateTime": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
        "end": {"dateTime": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)},
        "iCalUID": format!("{id}@google.com"),
        "sequence": 0,
        "attendees": attendees.iter().enumerate().map(|(n, email)| json!({
            "email": email,
            "organizer": n == 0,
            "responseStatus": if n == 0 { "accepted" } else { "needsAction" },
        })).collect::<Vec<_>>(),
        "eventType": "default",
    })
}

impl GoogleState {
    /// `account`'s calendar (made empty on first use).
    pub fn calendar(&mut self, account: &str) -> &mut Calendar {
        self.calendars.entry(account.to_lowercase()).or_default()
    }

    /// `account`'s mailbox (made empty on first use).
    pub fn mailbox(&mut self, account: &str) -> &mut Mailbox {
        self.mailboxes.entry(account.to_lowercase()).or_default()
    }

    /// Delivers a message into `account`'s mailbox with `labels`, as a new change.
    pub fn put_message(
        &mut self,
        account: &str,
        id: &str,
        raw: &[u8],
        labels: &[&str],
        at: chrono::DateTime<chrono::Utc>,
    ) {
        self.changes += 1;
        let change = self.changes;
        let mailbox = self.mailbox(account);
        mailbox.messages.insert(
            id.to_owned(),
            GmailMessage {
                raw: raw.to_vec(),
                labels: labels.iter().map(|label| (*label).to_owned()).collect(),
                internal_date_ms: at.timestamp_millis(),
                thread_id: id.to_owned(),
                added: change,
            },
        );
        mailbox
            .history
            .push((change, id.to_owned(), GmailChange::Added));
    }

    /// Deletes a message for good, as a new change.
    pub fn delete_message(&mut self, account: &str, id: &str) {
        self.changes += 1;
        let change = self.changes;
        let mailbox = self.mailbox(account);
        if mailbox.messages.remove(id).is_some() {
            mailbox
                .history
                .push((change, id.to_owned(), GmailChange::Deleted));
        }
    }

    /// Adds `label` to a message (`TRASH` moves it to the trash), as a new change.
    pub fn add_label(&mut self, account: &str, id: &str, label: &str) {
        self.changes += 1;
        let change = self.changes;
        let mailbox = self.mailbox(account);
        if let Some(message) = mailbox.messages.get_mut(id) {
            message.labels.push(label.to_owned());
            mailbox
                .history
                .push((change, id.to_owned(), GmailChange::LabelsAdded));
        }
    }

    /// Forgets `account`'s history so far: the next history read from before now is 404.
    pub fn expire_history(&mut self, account: &str) {
        let next = self.changes + 1;
        self.mailbox(account).history_floor = next;
    }

    /// Adds or replaces an event in `account`'s calendar, as a new change; its
    /// `updated` moves to now.
    pub fn put_event(&mut self, account: &str, mut event: Value) {
        self.changes += 1;
        let change = self.changes;
        event["updated"] =
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let id = event["id"].as_str().unwrap_or_default().to_owned();
        self.calendar(account).events.insert(id, (event, change));
    }

    /// Deletes an event, as Google lists a deletion: `cancelled`, with its id.
    pub fn delete_event(&mut self, account: &str, id: &str) {
        self.changes += 1;
        let change = self.changes;
        let calendar = self.calendar(account);
        calendar.events.insert(
            id.to_owned(),
            (
                json!({"kind": "calendar#event", "id": id, "status": "cancelled"}),
                change,
            ),
        );
    }

    /// Makes every sync token of `account` expire: the next incremental read is 410.
    pub fn expire_sync_tokens(&mut self, account: &str) {
        self.calendar(account).epoch += 1;
    }

    /// Issues an access token and a refresh token for `account` (what connecting does).
    pub fn grant(&mut self, account: &str) -> (String, String, i64) {
        self.issued += 1;
        let access = format!("ya29.sample-{}-{}", self.issued, account.len());
        let refresh = format!("1//sample-refresh-{}", self.issued);
        let ttl = if self.access_ttl_seconds > 0 {
            self.access_ttl_seconds
        } else {
            3600
        };
        self.access.insert(
            access.clone(),
            Issued {
                account: account.to_lowercase(),
                expires_at: now_seconds() + ttl,
            },
        );
        self.refresh.insert(refresh.clone(), account.to_lowercase());
        (access, refresh, ttl)
    }

    /// Makes every access token already issued expire now (the next call is 401).
    pub fn expire_access_tokens(&mut self) {
        for issued in self.access.values_mut() {
            issued.expires_at = 0;
        }
    }

    fn account_of(&self, head: &str) -> Option<String> {
        let token = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().strip_prefix("Bearer ").map(str::to_owned))
                .flatten()
        })?;
        let issued = self.access.get(&token)?;
        (issued.expires_at > now_seconds()).then(|| issued.account.clone())
    }
}

fn query_of(path: &str) -> BTreeMap<String, String> {
    let query = path.split_once('?').map(|(_, query)| query).unwrap_or("");
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn form_of(body: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn token_json(access: &str, refresh: Option<&str>, ttl: i64, scope: &str) -> Reply {
    let mut body = json!({
        "access_token": access,
        "expires_in": ttl,
        "token_type": "Bearer",
        "scope": scope,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    Reply::json(&body.to_string())
}

fn oauth_error(error: &str) -> Reply {
    Reply {
        headers: vec![("content-type".into(), "application/json".into())],
        ..Reply::status(400, &json!({"error": error}).to_string())
    }
}

fn authorize(state: &mut GoogleState, path: &str) -> Reply {
    let query = query_of(path);
    let (Some(redirect), Some(flow_state)) = (query.get("redirect_uri"), query.get("state")) else {
        return Reply::status(400, "redirect_uri and state are required");
    };
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return Reply::status(400, "unknown client");
    }
    let Some(account) = state.approve_as.clone() else {
        return Reply::status(403, "nobody is signed in at the sample Google");
    };
    state.issued += 1;
    let code = format!("4/sample-code-{}", state.issued);
    let challenge = query.get("code_challenge").cloned().unwrap_or_default();
    state.codes.insert(code.clone(), (account, challenge));
    let location = format!(
        "{redirect}?state={}&code={}&scope={}",
        crate::percent(flow_state),
        crate::percent(&code),
        crate::percent(query.get("scope").map(String::as_str).unwrap_or_default())
    );
    Reply::status(302, "").header("location", &location)
}

fn token(state: &mut GoogleState, body: &[u8]) -> Reply {
    let form = form_of(body);
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some((account, challenge)) =
                form.get("code").and_then(|code| state.codes.remove(code))
            else {
                return oauth_error("invalid_grant");
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if !challenge.is_empty() && crate::pkce_s256(&verifier) != challenge {
                return oauth_error("invalid_grant");
            }
            let (access, refresh, ttl) = state.grant(&account);
            token_json(
                &access,
                Some(&refresh),
                ttl,
                "openid email https://www.googleapis.com/auth/calendar.readonly",
            )
        }
        Some("refresh_token") => {
            let Some(account) = form
                .get("refresh_token")
                .and_then(|refresh| state.refresh.get(refresh))
                .cloned()
            else {
                return oauth_error("invalid_grant");
            };
            state.refreshes += 1;
            let (access, _, ttl) = state.grant(&account);
            // Google keeps the refresh token: it does not rotate.
            token_json(
                &access,
                None,
                ttl,
                "https://www.googleapis.com/auth/calendar.readonly",
            )
        }
        _ => oauth_error("unsupported_grant_type"),
    }
}

fn revoke(state: &mut GoogleState, path: &str, body: &[u8]) -> Reply {
    let mut form = form_of(body);
    form.extend(query_of(path));
    if let Some(token) = form.get("token") {
        if let Some(account) = state.refresh.remove(token) {
            state.access.retain(|_, issued| issued.account != account);
        }
        state.access.remove(token);
    }
    Reply::status(200, "")
}

/// `events.list` of `account`'s calendar.
fn list_events(state: &mut GoogleState, account: &str, path: &str) -> Reply {
    let query = query_of(path);
    let cap = if state.page_cap > 0 {
        state.page_cap
    } else {
        250
    };
    let page_size = query
        .get("maxResults")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(250)
        .clamp(1, 2500)
        .min(cap);
    let changes = state.changes;
    let calendar = state.calendar(account);
    let epoch = calendar.epoch;
    let expired = || {
        google_error(
            410,
            "fullSyncRequired",
            "Sync token is no longer valid, a full sync is required.",
        )
    };
    // A page token carries where the listing is, what it lists since (0: everything),
    // the change it will end with, and the tokens' epoch.
    let (offset, since, ends_with) = match (query.get("pageToken"), query.get("syncToken")) {
        (Some(page), _) => {
            let parts: Vec<u64> = page.split(':').filter_map(|n| n.parse().ok()).collect();
            let [offset, since, ends_with, page_epoch] = parts[..] else {
                return google_error(400, "invalid", "Invalid page token value.");
            };
            if page_epoch != epoch {
                return expired();
            }
            (usize::try_from(offset).unwrap_or(0), since, ends_with)
        }
        (None, Some(token)) => {
            let parsed = token
                .strip_prefix("sync-")
                .and_then(|rest| rest.split_once('-'))
                .and_then(|(token_epoch, since)| {
                    Some((token_epoch.parse::<u64>().ok()?, since.parse::<u64>().ok()?))
                });
            let Some((token_epoch, since)) = parsed else {
                return google_error(400, "invalid", "Invalid sync token value.");
            };
            if token_epoch != epoch {
                return expired();
            }
            (0, since, changes)
        }
        (None, None) => (0, 0, changes),
    };
    let incremental = query.contains_key("syncToken") || since > 0;
    let time_min = query
        .get("timeMin")
        .and_then(|at| chrono::DateTime::parse_from_rfc3339(at).ok());
    let show_deleted = query.get("showDeleted").map(String::as_str) == Some("true");
    let matching: Vec<&Value> = calendar
        .events
        .values()
        .filter(|(event, change)| {
            if incremental {
                return *change > since && *change <= ends_with;
            }
            if *change > ends_with {
                return false;
            }
            let cancelled = event["status"] == "cancelled";
            if cancelled && !show_deleted {
                return false;
            }
            match (time_min, event["end"]["dateTime"].as_str()) {
                (Some(min), Some(end)) => {
                    chrono::DateTime::parse_from_rfc3339(end).is_ok_and(|end| end >= min)
                }
                _ => true,
            }
        })
        .map(|(event, _)| event)
        .collect();
    let page: Vec<&Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .copied()
        .collect();
    let mut body = json!({
        "kind": "calendar#events",
        "summary": account,
        "timeZone": "UTC",
        "items": page,
    });
    if offset + page_size < matching.len() {
        body["nextPageToken"] = json!(format!(
            "{}:{}:{}:{}",
            offset + page_size,
            since,
            ends_with,
            epoch
        ));
    } else {
        body["nextSyncToken"] = json!(format!("sync-{epoch}-{ends_with}"));
    }
    Reply::json(&body.to_string())
}

/// A plain-text message's bytes, as a mail client writes them.
pub fn message_bytes(
    message_id: &str,
    from: &str,
    to: &[&str],
    subject: &str,
    at: chrono::DateTime<chrono::Utc>,
    in_reply_to: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let mut text = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{message_id}>\r\n",
        to.join(", "),
        at.to_rfc2822()
    );
    if let Some(parent) = in_reply_to {
        text.push_str(&format!(
            "In-Reply-To: <{parent}>\r\nReferences: <{parent}>\r\n"
        ));
    }
    text.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
    text.push_str(body);
    text.push_str("\r\n");
    text.into_bytes()
}

fn gmail_profile(state: &mut GoogleState, account: &str) -> Reply {
    let history_id = state.changes;
    let total = state.mailbox(account).messages.len();
    Reply::json(
        &json!({
            "emailAddress": account,
            "messagesTotal": total,
            "threadsTotal": total,
            "historyId": history_id.to_string(),
        })
        .to_string(),
    )
}

const SYSTEM_LABELS: [&str; 10] = [
    "INBOX",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "UNREAD",
    "STARRED",
    "IMPORTANT",
    "CATEGORY_PERSONAL",
    "CATEGORY_UPDATES",
];

fn gmail_label(state: &mut GoogleState, account: &str, label: &str) -> Reply {
    let known = SYSTEM_LABELS.contains(&label)
        || state
            .mailbox(account)
            .messages
            .values()
            .any(|message| message.labels.iter().any(|own| own == label));
    if known {
        Reply::json(&json!({"id": label, "name": label, "type": "user"}).to_string())
    } else {
        google_error(404, "notFound", "Requested entity was not found.")
    }
}

/// Where a Gmail listing is: a page token is the offset and the change the listing
/// was taken at; without one, the start of a listing taken now. `None`: not a token.
fn gmail_page(query: &BTreeMap<String, String>, changes: u64) -> Option<(usize, u64)> {
    match query.get("pageToken") {
        Some(token) => {
            let (offset, at) = token.split_once(':')?;
            Some((offset.parse().ok()?, at.parse().ok()?))
        }
        None => Some((0, changes)),
    }
}

/// `messages.list`: newest first, spam and trash left out; `q` understands `after:`.
fn gmail_list(state: &mut GoogleState, account: &str, path: &str) -> Reply {
    let query = query_of(path);
    let label = query.get("labelIds").cloned();
    let after_ms = query
        .get("q")
        .and_then(|q| q.strip_prefix("after:"))
        .and_then(|secs| secs.trim().parse::<i64>().ok())
        .map(|secs| secs * 1000);
    let page_size = query
        .get("maxResults")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 500);
    let changes = state.changes;
    let Some((offset, at)) = gmail_page(&query, changes) else {
        return google_error(400, "invalid", "Invalid pageToken");
    };
    let mailbox = state.mailbox(account);
    let mut listed: Vec<(&String, &GmailMessage)> = mailbox
        .messages
        .iter()
        .filter(|(_, message)| {
            message.added <= at
                && !message.labels.iter().any(|l| l == "SPAM" || l == "TRASH")
                && label
                    .as_ref()
                    .is_none_or(|label| message.labels.contains(label))
                && after_ms.is_none_or(|after| message.internal_date_ms >= after)
        })
        .collect();
    listed.sort_by(|a, b| {
        b.1.internal_date_ms
            .cmp(&a.1.internal_date_ms)
            .then(a.0.cmp(b.0))
    });
    let page: Vec<Value> = listed
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|(id, message)| json!({"id": id, "threadId": message.thread_id}))
        .collect();
    let mut body = json!({"resultSizeEstimate": listed.len()});
    if !page.is_empty() {
        body["messages"] = json!(page);
    }
    if offset + page_size < listed.len() {
        body["nextPageToken"] = json!(format!("{}:{at}", offset + page_size));
    }
    Reply::json(&body.to_string())
}

fn gmail_get(state: &mut GoogleState, account: &str, id: &str, path: &str) -> Reply {
    use base64::Engine as _;
    let query = query_of(path);
    let format = query
        .get("format")
        .cloned()
        .unwrap_or_else(|| "full".into());
    state.message_reads += 1;
    let Some(message) = state.mailbox(account).messages.get(id).cloned() else {
        return google_error(404, "notFound", "Requested entity was not found.");
    };
    let mut body = json!({
        "id": id,
        "threadId": message.thread_id,
        "labelIds": message.labels,
        "snippet": "",
        "historyId": message.added.to_string(),
        "internalDate": message.internal_date_ms.to_string(),
        "sizeEstimate": message.raw.len(),
    });
    match format.as_str() {
        "raw" => {
            body["raw"] = json!(base64::engine::general_purpose::URL_SAFE.encode(&message.raw));
        }
        "metadata" => {
            let wanted: Vec<String> = url::form_urlencoded::parse(
                path.split_once('?')
                    .map(|(_, q)| q)
                    .unwrap_or("")
                    .as_bytes(),
            )
            .filter(|(key, _)| key == "metadataHeaders")
            .map(|(_, value)| value.to_ascii_lowercase())
            .collect();
            let text = String::from_utf8_lossy(&message.raw);
            let head = text.split("\r\n\r\n").next().unwrap_or_default();
            let headers: Vec<Value> = head
                .split("\r\n")
                .filter_map(|line| line.split_once(": "))
                .filter(|(name, _)| {
                    wanted.is_empty() || wanted.contains(&name.to_ascii_lowercase())
                })
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect();
            body["payload"] = json!({"mimeType": "text/plain", "headers": headers});
        }
        _ => {
            return google_error(
                400,
                "invalidArgument",
                "this stand-in serves format=raw and format=metadata",
            );
        }
    }
    Reply::json(&body.to_string())
}

/// `history.list`: the records after `startHistoryId`, a page at a time.
fn gmail_history(state: &mut GoogleState, account: &str, path: &str) -> Reply {
    let query = query_of(path);
    let Some(start) = query
        .get("startHistoryId")
        .and_then(|id| id.parse::<u64>().ok())
    else {
        return google_error(400, "invalidArgument", "startHistoryId is required");
    };
    let page_size = query
        .get("maxResults")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 500);
    let changes = state.changes;
    let Some((offset, at)) = gmail_page(&query, changes) else {
        return google_error(400, "invalid", "Invalid pageToken");
    };
    let mailbox = state.mailbox(account);
    if start < mailbox.history_floor {
        return google_error(404, "notFound", "Requested entity was not found.");
    }
    let records: Vec<&(u64, String, GmailChange)> = mailbox
        .history
        .iter()
        .filter(|(id, _, _)| *id > start && *id <= at)
        .collect();
    let page: Vec<Value> = records
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|(id, message, change)| {
            let touched = json!([{"message": {"id": message, "threadId": message}}]);
            let field = match change {
                GmailChange::Added => "messagesAdded",
                GmailChange::Deleted => "messagesDeleted",
                GmailChange::LabelsAdded => "labelsAdded",
                GmailChange::LabelsRemoved => "labelsRemoved",
            };
            let mut record =
                json!({"id": id.to_string(), "messages": [{"id": message, "threadId": message}]});
            record[field] = touched;
            record
        })
        .collect();
    let mut body = json!({"historyId": at.to_string()});
    if !page.is_empty() {
        body["history"] = json!(page);
    }
    if offset + page_size < records.len() {
        body["nextPageToken"] = json!(format!("{}:{at}", offset + page_size));
    }
    Reply::json(&body.to_string())
}

fn gmail(state: &mut GoogleState, account: &str, route: &str, path: &str) -> Reply {
    let rest = route
        .strip_prefix("/gmail/v1/users/me/")
        .unwrap_or_default();
    match rest.split('/').collect::<Vec<_>>()[..] {
        ["profile"] => gmail_profile(state, account),
        ["labels", label] => gmail_label(state, account, &crate::percent_decode(label)),
        ["messages"] => gmail_list(state, account, path),
        ["messages", id] => gmail_get(state, account, &crate::percent_decode(id), path),
        ["history"] => gmail_history(state, account, path),
        _ => google_error(404, "notFound", "Not Found"),
    }
}

fn respond(state: &Mutex<GoogleState>, head: &str, path: &str, body: &[u8]) -> Reply {
    let mut state = state.lock().expect("google state");
    let route = path.split('?').next().unwrap_or_default();
    match route {
        "/o/oauth2/v2/auth" => return authorize(&mut state, path),
        "/token" => return token(&mut state, body),
        "/revoke" => return revoke(&mut state, path, body),
        _ => {}
    }
    if let Some(fault) = state.faults.pop_front() {
        return fault;
    }
    let Some(account) = state.account_of(head) else {
        return google_error(
            401,
            "authError",
            "Request had invalid authentication credentials.",
        );
    };
    if route.starts_with("/gmail/v1/users/me/") {
        return gmail(&mut state, &account, route, path);
    }
    let calendar_path = route
        .strip_prefix("/calendar/v3/calendars/")
        .and_then(|rest| rest.strip_suffix("/events"));
    match calendar_path {
        Some(calendar) => {
            let calendar = crate::percent_decode(calendar);
            if calendar != "primary" && calendar.to_lowercase() != account {
                return google_error(404, "notFound", "Not Found");
            }
            list_events(&mut state, &account, path)
        }
        None => google_error(404, "notFound", "Not Found"),
    }
}

impl FakeGoogle {
    /// Starts an empty stand-in.
    pub async fn start() -> FakeGoogle {
        let state = Arc::new(Mutex::new(GoogleState::default()));
        let shared = Arc::clone(&state);
        let upstream =
            Upstream::start_with_bodies(move |head, path, body| respond(&shared, head, path, body))
                .await;
        FakeGoogle { upstream, state }
    }

    /// Changes its state.
    pub fn with<T>(&self, change: impl FnOnce(&mut GoogleState) -> T) -> T {
        change(&mut self.state.lock().expect("google state"))
    }
}
