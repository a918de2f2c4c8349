//! A stand-in for Google on loopback, for the demo and the connector tests: its OAuth
//! 2.0 endpoints (authorization code with PKCE, refresh, revocation; the authorization
//! page approves at once as the account the stand-in is told to) and the Calendar API's
//! `events.list` with the semantics the connector depends on — `singleEvents`
//! occurrences, `timeMin`, pages (`pageToken`), sync tokens (`nextSyncToken`, then only
//! what changed since, deletions as `cancelled`), a sync token expiring (410 Gone), and
//! Google's errors (401, 403 `rateLimitExceeded`, 429 with `Retry-After`). Each account
//! has its own calendar; a bearer token reads only its own account's.
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
