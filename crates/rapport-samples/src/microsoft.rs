//! A stand-in for Microsoft 365 on loopback, for the demo and the connector tests: the
//! identity platform's OAuth 2.0 endpoints (`/{tenant}/oauth2/v2.0/authorize` and
//! `/token`: authorization code with PKCE, and refresh grants that **rotate** the
//! refresh token, as Microsoft's do) and Microsoft Graph's delta rounds with the
//! semantics the connectors depend on — `calendarView/delta` over a window and
//! `mailFolders/{folder}/messages/delta` with `$filter=receivedDateTime ge …`; pages of
//! `Prefer: odata.maxpagesize` with `@odata.nextLink`, a round's end with
//! `@odata.deltaLink`, later rounds with only what changed (deletions, and events moved
//! out of the window, as `@removed`), links forgotten (410 `syncStateNotFound`) — the
//! messages' MIME source (`$value`) and headers, and Graph's errors (401, 429 and 503
//! with `Retry-After`). Each account has its own calendar and mailbox; a bearer token
//! reads only its own account's.
//!
//! It stands in for someone else's service, never for rapport's own code.

use crate::upstream::{Reply, Upstream};
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

/// The client id the stand-in knows.
pub const CLIENT_ID: &str = "00000000-rapport-sample-client";
/// Its secret.
pub const CLIENT_SECRET: &str = "rapport-sample-secret";

/// One Outlook message.
#[derive(Debug, Clone)]
pub struct OutlookMessage {
    /// The MIME source.
    pub raw: Vec<u8>,
    /// Its folder (`inbox`, `sentitems`, ...).
    pub folder: String,
    /// When it was received.
    pub received: chrono::DateTime<chrono::Utc>,
    /// Whether it is a draft.
    pub draft: bool,
}

/// An item of a calendar or a mailbox, with the change that last touched it; `None`
/// once it is deleted (a delta round still lists it as removed).
#[derive(Debug, Clone)]
struct Tracked<T> {
    item: Option<T>,
    change: u64,
    /// For a deleted message: the folder it was in (a folder's round lists it removed).
    folder: Option<String>,
}

/// One account's calendar and mailbox.
#[derive(Debug, Default)]
pub struct Account {
    events: BTreeMap<String, Tracked<Value>>,
    messages: BTreeMap<String, Tracked<OutlookMessage>>,
    /// Links of an earlier epoch are forgotten (410).
    epoch: u64,
}

/// What a delta round tracks.
#[derive(Debug, Clone, PartialEq)]
enum Tracks {
    /// Events starting within `[from, to)`.
    Calendar {
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
    /// Messages of a folder received since.
    Folder {
        folder: String,
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// A round in progress or done: what it tracks, the change it started after, the change
/// it ends with, how far its pages got.
#[derive(Debug, Clone)]
struct Round {
    account: String,
    tracks: Tracks,
    /// The first round: it lists what is there, not what was removed.
    initial: bool,
    after: u64,
    ends_with: u64,
    offset: usize,
    page_size: usize,
    epoch: u64,
}

#[derive(Debug, Clone)]
struct Issued {
    account: String,
    expires_at: i64,
}

/// What the stand-in holds; change it between syncs.
#[derive(Debug, Default)]
pub struct MicrosoftState {
    /// The change counter: every change to any account takes the next number.
    pub changes: u64,
    accounts: BTreeMap<String, Account>,
    rounds: BTreeMap<String, Round>,
    /// Served instead of the next Graph requests, in order.
    pub faults: VecDeque<Reply>,
    /// Whom the authorization page approves as.
    pub approve_as: Option<String>,
    /// How many messages' sources or headers were read.
    pub message_reads: u64,
    /// How many refresh grants were answered.
    pub refreshes: u64,
    codes: BTreeMap<String, (String, String)>,
    access: BTreeMap<String, Issued>,
    refresh: BTreeMap<String, String>,
    issued: u64,
}

/// A running stand-in.
#[derive(Debug)]
pub struct FakeMicrosoft {
    /// The HTTP server: Graph, OAuth and sign-in at one address.
    pub upstream: Upstream,
    /// What it serves.
    pub state: Arc<Mutex<MicrosoftState>>,
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

fn graph_error(status: u16, code: &str, message: &str) -> Reply {
    let body = json!({"error": {"code": code, "message": message, "innerError": {
        "date": "2026-12-01T09:00:00", "request-id": "00000000-0000-0000-0000-000000000000"}}});
    Reply {
        headers: vec![("content-type".into(), "application/json".into())],
        ..Reply::status(status, &body.to_string())
    }
}

/// Graph's throttling answer: 429 with a `Retry-After`.
pub fn throttled(retry_after_seconds: u64) -> Reply {
    graph_error(
        429,
        "TooManyRequests",
        "Application is over its MailboxConcurrency limit.",
    )
    .header("retry-after", &retry_after_seconds.to_string())
}

/// An Outlook event resource: `id`, subject, organizer and attendees (the first is
/// the organizer), start and minutes, as `calendarView/delta` lists it (UTC).
pub fn meeting(
    subject: &str,
    organizer: &str,
    attendees: &[&str],
    start: chrono::DateTime<chrono::Utc>,
    minutes: i64,
    ical_uid: &str,
) -> Value {
    let end = start + chrono::Duration::minutes(minutes);
    let graph_time = |at: chrono::DateTime<chrono::Utc>| json!({"dateTime": at.format("%Y-%m-%dT%H:%M:%S.0000000").to_string(), "timeZone": "UTC"});
    json!({
        "@odata.type": "#microsoft.graph.event",
        "subject": subject,
        "bodyPreview": "",
        "start": graph_time(start),
        "end": graph_time(end),
        "isAllDay": false,
        "isCancelled": false,
        "showAs": "busy",
        "type": "singleInstance",
        "iCalUId": ical_uid,
        "organizer": {"emailAddress": {"name": organizer, "address": organizer}},
        "attendees": attendees.iter().skip(1).map(|address| json!({
            "type": "required",
            "status": {"response": "none", "time": "0001-01-01T00:00:00Z"},
            "emailAddress": {"name": address, "address": address},
        })).collect::<Vec<_>>(),
        "location": {"displayName": "Microsoft Teams Meeting"},
        "onlineMeeting": {"joinUrl": "https://teams.microsoft.com/l/meetup-join/sample"},
        "webLink": "https://outlook.office365.com/owa/?itemid=sample",
    })
}

impl MicrosoftState {
    fn account(&mut self, account: &str) -> &mut Account {
        self.accounts.entry(account.to_lowercase()).or_default()
    }

    fn next_change(&mut self) -> u64 {
        self.changes += 1;
        self.changes
    }

    /// Adds or replaces an event in `account`'s calendar, as a new change; its
    /// `lastModifiedDateTime` moves to now.
    pub fn put_event(&mut self, account: &str, id: &str, mut event: Value) {
        let change = self.next_change();
        event["lastModifiedDateTime"] = json!(
            chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S.%fZ")
                .to_string()
        );
        self.account(account).events.insert(
            id.to_owned(),
            Tracked {
                item: Some(event),
                change,
                folder: None,
            },
        );
    }

    /// The event `id` of `account`'s calendar, to change and put back.
    pub fn event(&mut self, account: &str, id: &str) -> Option<Value> {
        self.account(account).events.get(id)?.item.clone()
    }

    /// Deletes an event, as a new change.
    pub fn delete_event(&mut self, account: &str, id: &str) {
        let change = self.next_change();
        self.account(account).events.insert(
            id.to_owned(),
            Tracked {
                item: None,
                change,
                folder: None,
            },
        );
    }

    /// Delivers a message into `account`'s `folder`, as a new change.
    pub fn put_message(
        &mut self,
        account: &str,
        id: &str,
        folder: &str,
        raw: &[u8],
        received: chrono::DateTime<chrono::Utc>,
    ) {
        let change = self.next_change();
        self.account(account).messages.insert(
            id.to_owned(),
            Tracked {
                item: Some(OutlookMessage {
                    raw: raw.to_vec(),
                    folder: folder.to_owned(),
                    received,
                    draft: false,
                }),
                change,
                folder: Some(folder.to_owned()),
            },
        );
    }

    /// Deletes a message for good, as a new change.
    pub fn delete_message(&mut self, account: &str, id: &str) {
        let change = self.next_change();
        let messages = &mut self.account(account).messages;
        let folder = messages
            .get(id)
            .and_then(|tracked| tracked.item.as_ref())
            .map(|message| message.folder.clone());
        messages.insert(
            id.to_owned(),
            Tracked {
                item: None,
                change,
                folder,
            },
        );
    }

    /// Forgets every delta link of `account`: their next use is 410.
    pub fn forget_delta_links(&mut self, account: &str) {
        self.account(account).epoch += 1;
    }

    /// Issues an access token and a refresh token for `account`.
    pub fn grant(&mut self, account: &str) -> (String, String, i64) {
        self.issued += 1;
        let access = format!("eyJ0eXAi.sample-{}", self.issued);
        let refresh = format!("M.C507_sample-refresh-{}", self.issued);
        let ttl = 3600;
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

    /// Makes every access token already issued expire now.
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

fn oauth_error(error: &str) -> Reply {
    Reply {
        headers: vec![("content-type".into(), "application/json".into())],
        ..Reply::status(
            400,
            &json!({"error": error, "error_description": format!("AADSTS70000: {error}")})
                .to_string(),
        )
    }
}

fn authorize(state: &mut MicrosoftState, path: &str) -> Reply {
    let query = query_of(path);
    let (Some(redirect), Some(flow_state)) = (query.get("redirect_uri"), query.get("state")) else {
        return Reply::status(400, "redirect_uri and state are required");
    };
    if query.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return Reply::status(400, "AADSTS700016: unknown client");
    }
    let Some(account) = state.approve_as.clone() else {
        return Reply::status(403, "nobody is signed in at the sample Microsoft");
    };
    state.issued += 1;
    let code = format!("0.sample-code-{}", state.issued);
    let challenge = query.get("code_challenge").cloned().unwrap_or_default();
    state.codes.insert(code.clone(), (account, challenge));
    let location = format!(
        "{redirect}?code={}&state={}",
        crate::percent(&code),
        crate::percent(flow_state)
    );
    Reply::status(302, "").header("location", &location)
}

fn token(state: &mut MicrosoftState, body: &[u8]) -> Reply {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let account = match form.get("grant_type").map(String::as_str) {
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
            account
        }
        Some("refresh_token") => {
            // Microsoft rotates: the refresh token used is spent, a new one comes back.
            let Some(account) = form
                .get("refresh_token")
                .and_then(|refresh| state.refresh.remove(refresh))
            else {
                return oauth_error("invalid_grant");
            };
            state.refreshes += 1;
            account
        }
        _ => return oauth_error("unsupported_grant_type"),
    };
    let (access, refresh, ttl) = state.grant(&account);
    Reply::json(
        &json!({
            "token_type": "Bearer",
            "scope": "https://graph.microsoft.com/Mail.Read https://graph.microsoft.com/Calendars.Read",
            "expires_in": ttl,
            "ext_expires_in": ttl,
            "access_token": access,
            "refresh_token": refresh,
        })
        .to_string(),
    )
}

/// `Prefer: odata.maxpagesize=N` of a request (Graph's default page is 10).
fn page_size(head: &str) -> usize {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("prefer"))
        .flat_map(|(_, value)| value.split(','))
        .find_map(|preference| {
            preference
                .trim()
                .strip_prefix("odata.maxpagesize=")
                .and_then(|n| n.trim().parse::<usize>().ok())
        })
        .unwrap_or(10)
        .clamp(1, 1000)
}

fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|at| at.with_timezone(&chrono::Utc))
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|at| at.and_utc())
        })
}

/// The start of a Graph event resource.
fn event_start(event: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    parse_time(event["start"]["dateTime"].as_str()?)
}

/// One page of `round` (registered under `token` when it goes on).
fn delta_page(state: &mut MicrosoftState, base: &str, round: Round) -> Reply {
    let Some(account) = state.accounts.get(&round.account) else {
        return graph_error(404, "ErrorItemNotFound", "The mailbox was not found.");
    };
    if account.epoch != round.epoch {
        return graph_error(
            410,
            "syncStateNotFound",
            "The sync state generation is not found.",
        );
    }
    let initial = round.initial;
    // (id, the item or None when it is to be listed as removed)
    // (change, id, what to list or None when removed); only a page's items are built.
    enum Listed<'a> {
        Event(&'a Value),
        Message(&'a OutlookMessage),
    }
    let mut changed: Vec<(u64, &String, Option<Listed<'_>>)> = Vec::new();
    match &round.tracks {
        Tracks::Calendar { from, to } => {
            for (id, tracked) in &account.events {
                if tracked.change <= round.after || tracked.change > round.ends_with {
                    continue;
                }
                let inside = tracked
                    .item
                    .as_ref()
                    .and_then(event_start)
                    .is_some_and(|start| start >= *from && start < *to);
                match (&tracked.item, inside) {
                    (Some(event), true) => {
                        changed.push((tracked.change, id, Some(Listed::Event(event))))
                    }
                    // Deleted, or moved out of the window: removed (a first round
                    // lists neither).
                    _ if !initial => changed.push((tracked.change, id, None)),
                    _ => {}
                }
            }
        }
        Tracks::Folder { folder, since } => {
            for (id, tracked) in &account.messages {
                if tracked.change <= round.after || tracked.change > round.ends_with {
                    continue;
                }
                let inside = tracked.item.as_ref().is_some_and(|message| {
                    &message.folder == folder && since.is_none_or(|since| message.received >= since)
                });
                match (&tracked.item, inside) {
                    (Some(message), true) => {
                        changed.push((tracked.change, id, Some(Listed::Message(message))))
                    }
                    // Deleted from this folder (moves are not modelled).
                    (None, _) if !initial && tracked.folder.as_ref() == Some(folder) => {
                        changed.push((tracked.change, id, None))
                    }
                    _ => {}
                }
            }
        }
    }
    changed.sort_by_key(|(change, id, _)| (*change, *id));
    let value: Vec<Value> = changed
        .iter()
        .skip(round.offset)
        .take(round.page_size)
        .map(|(_, id, item)| match item {
            Some(Listed::Event(event)) => {
                let mut item = (*event).clone();
                item["id"] = json!(id);
                item
            }
            Some(Listed::Message(message)) => json!({
                "@odata.type": "#microsoft.graph.message",
                "id": id,
                "receivedDateTime": message.received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "isDraft": message.draft,
            }),
            None => json!({"id": id, "@removed": {"reason": "deleted"}}),
        })
        .collect();
    let path = match &round.tracks {
        Tracks::Calendar { .. } => "/v1.0/me/calendarView/delta".to_owned(),
        Tracks::Folder { folder, .. } => format!("/v1.0/me/mailFolders/{folder}/messages/delta"),
    };
    state.issued += 1;
    let token = format!("t{}", state.issued);
    let more = round.offset + round.page_size < changed.len();
    let mut body =
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata", "value": value});
    let next = if more {
        body["@odata.nextLink"] = json!(format!("{base}{path}?$skiptoken={token}"));
        Round {
            offset: round.offset + round.page_size,
            ..round
        }
    } else {
        body["@odata.deltaLink"] = json!(format!("{base}{path}?$deltatoken={token}"));
        Round {
            initial: false,
            after: round.ends_with,
            ends_with: 0,
            offset: 0,
            ..round
        }
    };
    state.rounds.insert(token, next);
    Reply::json(&body.to_string())
}

fn graph(state: &mut MicrosoftState, base: &str, head: &str, path: &str) -> Reply {
    if let Some(fault) = state.faults.pop_front() {
        return fault;
    }
    let Some(account) = state.account_of(head) else {
        return graph_error(
            401,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        );
    };
    let route = path.split('?').next().unwrap_or_default();
    let query = query_of(path);
    let size = page_size(head);
    let changes = state.changes;
    let epoch = state.account(&account).epoch;
    let parts: Vec<&str> = route
        .trim_start_matches("/v1.0/me")
        .split('/')
        .filter(|part| !part.is_empty())
        .collect();
    // A link from an earlier page or round.
    let token = query
        .get("$skiptoken")
        .or(query.get("$deltatoken"))
        .cloned();
    if let Some(token) = token {
        let Some(mut round) = state.rounds.get(&token).cloned() else {
            return graph_error(
                410,
                "syncStateNotFound",
                "The sync state generation is not found.",
            );
        };
        if round.account != account {
            return graph_error(403, "ErrorAccessDenied", "Access is denied.");
        }
        if round.ends_with == 0 {
            // A delta link: a new round from where the last one ended.
            round.ends_with = changes;
            round.page_size = size;
        }
        return delta_page(state, base, round);
    }
    match parts[..] {
        ["calendar"] => Reply::json(&json!({"id": "calendar", "name": "Calendar"}).to_string()),
        ["calendarView", "delta"] => {
            let (Some(from), Some(to)) = (
                query.get("startDateTime").and_then(|t| parse_time(t)),
                query.get("endDateTime").and_then(|t| parse_time(t)),
            ) else {
                return graph_error(
                    400,
                    "ErrorInvalidParameter",
                    "startDateTime and endDateTime are required.",
                );
            };
            let round = Round {
                account,
                tracks: Tracks::Calendar { from, to },
                initial: true,
                after: 0,
                ends_with: changes,
                offset: 0,
                page_size: size,
                epoch,
            };
            delta_page(state, base, round)
        }
        ["mailFolders", folder] => {
            if matches!(folder, "inbox" | "sentitems" | "archive" | "drafts") {
                Reply::json(&json!({"id": folder, "displayName": folder}).to_string())
            } else {
                graph_error(404, "ErrorInvalidIdMalformed", "Id is malformed.")
            }
        }
        ["mailFolders", folder, "messages", "delta"] => {
            let since = query
                .get("$filter")
                .and_then(|filter| filter.strip_prefix("receivedDateTime ge "))
                .and_then(|at| parse_time(at.trim()));
            let round = Round {
                account,
                tracks: Tracks::Folder {
                    folder: folder.to_owned(),
                    since,
                },
                initial: true,
                after: 0,
                ends_with: changes,
                offset: 0,
                page_size: size,
                epoch,
            };
            delta_page(state, base, round)
        }
        ["messages", id, "$value"] => {
            state.message_reads += 1;
            match state
                .account(&account)
                .messages
                .get(id)
                .and_then(|t| t.item.clone())
            {
                Some(message) => Reply {
                    headers: vec![("content-type".into(), "text/plain".into())],
                    ..Reply::status(200, &String::from_utf8_lossy(&message.raw))
                },
                None => graph_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            }
        }
        ["messages", id] => {
            state.message_reads += 1;
            match state
                .account(&account)
                .messages
                .get(id)
                .and_then(|t| t.item.clone())
            {
                Some(message) => {
                    let text = String::from_utf8_lossy(&message.raw).into_owned();
                    let head = text.split("\r\n\r\n").next().unwrap_or_default();
                    let headers: Vec<Value> = head
                        .split("\r\n")
                        .filter_map(|line| line.split_once(": "))
                        .map(|(name, value)| json!({"name": name, "value": value}))
                        .collect();
                    Reply::json(&json!({"id": id, "internetMessageHeaders": headers}).to_string())
                }
                None => graph_error(
                    404,
                    "ErrorItemNotFound",
                    "The specified object was not found in the store.",
                ),
            }
        }
        _ => graph_error(400, "BadRequest", "Resource not found for the segment."),
    }
}

fn respond(
    state: &Mutex<MicrosoftState>,
    base: &str,
    head: &str,
    path: &str,
    body: &[u8],
) -> Reply {
    let mut state = state.lock().expect("microsoft state");
    let route = path.split('?').next().unwrap_or_default();
    if route.ends_with("/oauth2/v2.0/authorize") {
        return authorize(&mut state, path);
    }
    if route.ends_with("/oauth2/v2.0/token") {
        return token(&mut state, body);
    }
    if route.starts_with("/v1.0/me") {
        return graph(&mut state, base, head, path);
    }
    graph_error(404, "NotFound", "Not found")
}

impl FakeMicrosoft {
    /// Starts an empty stand-in.
    pub async fn start() -> FakeMicrosoft {
        let state = Arc::new(Mutex::new(MicrosoftState::default()));
        let shared = Arc::clone(&state);
        let base: Arc<Mutex<String>> = Arc::default();
        let base_of = Arc::clone(&base);
        let upstream = Upstream::start_with_bodies(move |head, path, body| {
            let base = base_of.lock().expect("base").clone();
            respond(&shared, &base, head, path, body)
        })
        .await;
        *base.lock().expect("base") = upstream.url();
        FakeMicrosoft { upstream, state }
    }

    /// Changes its state.
    pub fn with<T>(&self, change: impl FnOnce(&mut MicrosoftState) -> T) -> T {
        change(&mut self.state.lock().expect("microsoft state"))
    }
}
