//! A fake activity feed: the upstream `example-feed` reads (`GET /feed?after=N`), with
//! `items` items served `page_size` at a time, deletes, latency, and injectable faults
//! (429 with Retry-After, 500, 401, truncated JSON, slow responses).

use crate::upstream::{Reply, Upstream};
use chrono::{Duration as Span, TimeZone, Utc};
use rapport_core::permission::Authority::Operator;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Customers the feed's items point at: `cus_0` .. `cus_4`.
pub const CUSTOMERS: usize = 5;

/// A misbehaviour the next request gets instead of a page.
#[derive(Debug, Clone)]
pub enum Fault {
    /// 429 with `Retry-After` in seconds.
    RateLimited {
        /// The seconds to wait.
        retry_after_s: u64,
    },
    /// 500.
    ServerError,
    /// 401.
    Unauthorized,
    /// 200 with half a JSON body.
    TruncatedJson,
    /// The page, but only after this long.
    Slow(Duration),
}

/// The feed's state, shared with the server task.
#[derive(Debug, Default)]
pub struct FeedState {
    /// Items `0..items` exist.
    pub items: usize,
    /// Items per page.
    pub page_size: usize,
    /// Ids listed as deleted on every page after the first.
    pub deleted: Vec<String>,
    /// Faults served to the next requests, in order.
    pub faults: VecDeque<Fault>,
    /// Faults served when the request asks for this offset (`after`).
    pub faults_at: BTreeMap<usize, Fault>,
    /// Added to every page response: spreads a run over time.
    pub latency: Duration,
}

/// A running feed.
#[derive(Debug)]
pub struct Feed {
    /// The HTTP server.
    pub upstream: Upstream,
    /// What it serves; change it between runs.
    pub state: Arc<Mutex<FeedState>>,
}

/// The JSON item `n` of the feed.
pub fn item_json(n: usize) -> serde_json::Value {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Span::minutes(n as i64);
    serde_json::json!({
        "id": item_id(n),
        "kind": "support.ticket.created",
        "at": at.to_rfc3339(),
        "title": format!("Ticket {n}"),
        "customer": format!("cus_{}", n % CUSTOMERS),
    })
}

/// The id of item `n`.
pub fn item_id(n: usize) -> String {
    format!("item-{n:05}")
}

impl Feed {
    /// Serves `items` items, `page_size` per page.
    pub async fn start(items: usize, page_size: usize) -> Feed {
        let state = Arc::new(Mutex::new(FeedState {
            items,
            page_size,
            ..FeedState::default()
        }));
        let shared = Arc::clone(&state);
        let upstream = Upstream::start(move |path| respond(&shared, path)).await;
        Feed { upstream, state }
    }

    /// Serves `fault` to the next request not already given one.
    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Grows (or shrinks) the feed.
    pub fn set_items(&self, items: usize) {
        self.state.lock().unwrap().items = items;
    }
}

fn respond(state: &Mutex<FeedState>, path: &str) -> Reply {
    let mut state = state.lock().unwrap();
    let after: usize = path
        .split_once("after=")
        .and_then(|(_, after)| after.parse().ok())
        .unwrap_or(0);
    let fault = state
        .faults
        .pop_front()
        .or_else(|| state.faults_at.remove(&after));
    let latency = state.latency;
    let page_end = (after + state.page_size).min(state.items);
    let body = serde_json::json!({
        "items": (after..page_end).map(item_json).collect::<Vec<_>>(),
        "deleted": if after == 0 { Vec::new() } else { state.deleted.clone() },
        "next": page_end.to_string(),
        "more": page_end < state.items,
    })
    .to_string();
    let reply = match fault {
        None => Reply::json(&body),
        Some(Fault::RateLimited { retry_after_s }) => {
            Reply::status(429, "slow down").header("retry-after", &retry_after_s.to_string())
        }
        Some(Fault::ServerError) => Reply::status(500, "internal error"),
        Some(Fault::Unauthorized) => Reply::status(401, "bad token"),
        Some(Fault::TruncatedJson) => {
            let cut = body.len() / 2;
            Reply::json(&body[..cut])
        }
        Some(Fault::Slow(delay)) => Reply::json(&body).delayed(delay),
    };
    if latency.is_zero() {
        reply
    } else {
        reply.delayed(latency)
    }
}

/// The ids of items `0..items`, sorted.
pub fn expected_ids(items: usize) -> Vec<String> {
    (0..items).map(item_id).collect()
}

/// Seeds a VP and one account per feed customer, holding external id `feed:cus_N`, so
/// the feed's items match by external id. Returns the accounts, by customer number.
pub async fn seed_customers(store: &rapport_store::Store) -> Vec<rapport_core::AccountId> {
    use rapport_core::account::{EmailAddress, Lifecycle, NewAccount};
    use rapport_core::staff::{Level, NewStaff};
    let owner = store
        .create_staff(
            NewStaff {
                name: "Vera VP".into(),
                email: EmailAddress::parse("vera@rapport.example").expect("valid email"),
                level: Level::Vp,
                reports_to: None,
                is_admin: false,
            },
            Utc::now(),
        )
        .await
        .expect("hire the owner");
    let mut accounts = Vec::new();
    for n in 0..CUSTOMERS {
        let account = store
            .create_account(
                Operator,
                NewAccount {
                    name: format!("Customer {n}"),
                    parent: None,
                    lifecycle: Lifecycle::Active,
                    renewal_date: None,
                    domains: Vec::new(),
                    external_ids: vec![format!("feed:cus_{n}").parse().expect("valid id")],
                    contacts: Vec::new(),
                    owner: owner.id,
                },
                None,
                Utc::now(),
            )
            .await
            .expect("open an account");
        accounts.push(account.id);
    }
    accounts
}
