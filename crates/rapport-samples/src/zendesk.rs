//! A fake Zendesk on loopback: the cursor-based incremental ticket export with users
//! and organizations side-loaded, per-ticket audits, `users/me`, and basic auth
//! (`{email}/token:{api_token}`), over the recorded responses in `tests/fixtures/zendesk`;
//! with one-shot faults (429 with Retry-After, 500).

use crate::upstream::{Reply, Upstream, has_header};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

const TICKETS: &str = include_str!("../../../tests/fixtures/zendesk/tickets.json");
const USERS: &str = include_str!("../../../tests/fixtures/zendesk/users.json");
const ORGANIZATIONS: &str = include_str!("../../../tests/fixtures/zendesk/organizations.json");
const AUDITS: &str = include_str!("../../../tests/fixtures/zendesk/ticket_audits.json");

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("a Zendesk fixture is JSON")
}

/// The fixture users (`nukosuke@lavabit.com` is the second).
pub fn users() -> Vec<Value> {
    parse(USERS)["users"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The fixture organizations (`Rebel Alliance`, domains hoth.com and dantooine.com, is
/// the first).
pub fn organizations() -> Vec<Value> {
    parse(ORGANIZATIONS)["organizations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The fixture ticket template with the given id, subject, status, organization and
/// times (RFC 3339); requested by the fixture user `requester`.
pub fn ticket(
    id: u64,
    subject: &str,
    status: &str,
    organization: u64,
    requester: u64,
    created_at: &str,
    updated_at: &str,
) -> Value {
    let mut ticket = parse(TICKETS)["tickets"][0].clone();
    ticket["id"] = json!(id);
    ticket["subject"] = json!(subject);
    ticket["raw_subject"] = json!(subject);
    ticket["status"] = json!(status);
    ticket["organization_id"] = json!(organization);
    ticket["requester_id"] = json!(requester);
    ticket["submitter_id"] = json!(requester);
    ticket["created_at"] = json!(created_at);
    ticket["updated_at"] = json!(updated_at);
    ticket
}

/// One audit from the fixture's template: a comment and a status change
/// `previous → status` at `created_at`, with the given ids.
pub fn audit(
    id: u64,
    ticket: u64,
    created_at: &str,
    comment_id: u64,
    comment: &str,
    previous: &str,
    status: &str,
) -> Value {
    let mut audit = parse(AUDITS)["audits"][0].clone();
    audit["id"] = json!(id);
    audit["ticket_id"] = json!(ticket);
    audit["created_at"] = json!(created_at);
    audit["events"][0]["id"] = json!(comment_id);
    audit["events"][0]["body"] = json!(comment);
    audit["events"][0]["public"] = json!(true);
    audit["events"][1]["id"] = json!(comment_id + 1);
    audit["events"][1]["previous_value"] = json!(previous);
    audit["events"][1]["value"] = json!(status);
    audit
}

/// What the fake serves; change it between syncs.
#[derive(Debug, Default)]
pub struct ZendeskState {
    /// The export's change log: a ticket's state each time it changed, oldest first.
    /// An update appends, so it comes after any cursor handed out before it, as in
    /// Zendesk's time-ordered export.
    pub tickets: Vec<Value>,
    /// Audits by ticket id.
    pub audits: BTreeMap<u64, Vec<Value>>,
    /// Served instead of the next requests' answers, in order.
    pub faults: VecDeque<Reply>,
    /// Served instead of the next audit listings, in order.
    pub audit_faults: VecDeque<Reply>,
}

/// A running fake Zendesk.
#[derive(Debug)]
pub struct FakeZendesk {
    /// The HTTP server.
    pub upstream: Upstream,
    /// Its tickets, audits and faults.
    pub state: Arc<Mutex<ZendeskState>>,
}

impl FakeZendesk {
    /// Starts a fake Zendesk accepting `email` with `api_token`.
    pub async fn start(email: &str, api_token: &str) -> FakeZendesk {
        let state = Arc::new(Mutex::new(ZendeskState::default()));
        let served = state.clone();
        let expected = format!(
            "Basic {}",
            BASE64.encode(format!("{email}/token:{api_token}"))
        );
        let upstream = Upstream::start_with_heads(move |head, path| {
            let mut state = served.lock().expect("zendesk state");
            if let Some(fault) = state.faults.pop_front() {
                return fault;
            }
            if !has_header(head, "authorization", &expected) {
                return Reply::status(401, r#"{"error":"Couldn't authenticate you"}"#);
            }
            if path.contains("/audits.json")
                && let Some(fault) = state.audit_faults.pop_front()
            {
                return fault;
            }
            answer(&state, path)
        })
        .await;
        FakeZendesk { upstream, state }
    }

    /// Records a ticket's creation or update.
    pub fn upsert_ticket(&self, ticket: Value) {
        self.state
            .lock()
            .expect("zendesk state")
            .tickets
            .push(ticket);
    }

    /// Adds an audit to its ticket.
    pub fn add_audit(&self, audit: Value) {
        let ticket = audit["ticket_id"].as_u64().expect("an audit's ticket_id");
        self.state
            .lock()
            .expect("zendesk state")
            .audits
            .entry(ticket)
            .or_default()
            .push(audit);
    }

    /// Serves `reply` to the next audit listing instead of its answer.
    pub fn fault_audits(&self, reply: Reply) {
        self.state
            .lock()
            .expect("zendesk state")
            .audit_faults
            .push_back(reply);
    }

    /// Serves `reply` to the next request instead of its answer.
    pub fn fault(&self, reply: Reply) {
        self.state
            .lock()
            .expect("zendesk state")
            .faults
            .push_back(reply);
    }
}

/// The cursor for export position `offset`: opaque, with characters that must be
/// percent-encoded in a query, as real cursors have.
fn cursor(offset: usize) -> String {
    format!("MTU3/{offset}+==")
}

fn decode_percent(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = value
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn answer(state: &ZendeskState, path: &str) -> Reply {
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let params: BTreeMap<&str, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key, decode_percent(value)))
        .collect();
    if route == "/api/v2/users/me.json" {
        return Reply::json(&json!({ "user": users()[1] }).to_string());
    }
    if route == "/api/v2/incremental/tickets/cursor.json" {
        let offset = match (params.get("cursor"), params.get("start_time")) {
            (Some(cursor), _) => match cursor
                .strip_prefix("MTU3/")
                .and_then(|rest| rest.strip_suffix("+=="))
                .and_then(|offset| offset.parse::<usize>().ok())
            {
                Some(offset) => offset,
                None => {
                    return Reply::status(
                        422,
                        r#"{"error":"InvalidValue","description":"Invalid cursor"}"#,
                    );
                }
            },
            (None, Some(_)) => 0,
            (None, None) => {
                return Reply::status(
                    422,
                    r#"{"error":"InvalidValue","description":"start_time or cursor is required"}"#,
                );
            }
        };
        let per_page = params
            .get("per_page")
            .and_then(|size| size.parse::<usize>().ok())
            .unwrap_or(1000)
            .clamp(1, 1000);
        let end = (offset + per_page).min(state.tickets.len());
        let tickets = &state.tickets[offset.min(end)..end];
        return Reply::json(
            &json!({
                "tickets": tickets,
                "users": users(),
                "organizations": organizations(),
                "after_cursor": cursor(end),
                "before_cursor": cursor(offset),
                "end_of_stream": end >= state.tickets.len(),
            })
            .to_string(),
        );
    }
    if let Some(ticket) = route
        .strip_prefix("/api/v2/tickets/")
        .and_then(|rest| rest.strip_suffix("/audits.json"))
        .and_then(|id| id.parse::<u64>().ok())
    {
        let audits = state.audits.get(&ticket).cloned().unwrap_or_default();
        return Reply::json(
            &json!({ "audits": audits, "next_page": null, "previous_page": null, "count": audits.len() })
                .to_string(),
        );
    }
    Reply::status(404, r#"{"error":"InvalidEndpoint"}"#)
}
