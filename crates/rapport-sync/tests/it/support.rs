//! A fake activity feed upstream (the shape `example-feed` reads), with injectable
//! faults, and an engine wired to it through the real plugin host.

use chrono::{Duration as Span, TimeZone, Utc};
use rapport_core::account::NewAccount;
use rapport_core::staff::{Level, NewStaff};
use rapport_core::{AccountId, StaffId};
use rapport_plugin_host::{CallLimits, Grants, HostConfig, Plugin, PluginHost};
use rapport_store::Store;
use rapport_sync::{ConnectorSpec, Engine, EngineConfig, RetryPolicy};
use rapport_testkit::upstream::{Reply, Upstream};
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The connector id the tests configure.
pub const CONNECTOR: &str = "feed";
/// Customers the feed's items point at: `cus_0` .. `cus_4`.
pub const CUSTOMERS: usize = 5;

/// A misbehaviour the next request gets instead of a page.
#[derive(Debug, Clone)]
pub enum Fault {
    RateLimited { retry_after_s: u64 },
    ServerError,
    Unauthorized,
    TruncatedJson,
    Slow(Duration),
}

/// The feed's state, shared with the server task.
#[derive(Debug, Default)]
pub struct FeedState {
    pub items: usize,
    pub page_size: usize,
    pub deleted: Vec<String>,
    pub faults: VecDeque<Fault>,
    /// Faults served when the request asks for this offset (`after`).
    pub faults_at: BTreeMap<usize, Fault>,
    /// Added to every page response: spreads a run over time.
    pub latency: Duration,
}

/// A running feed.
pub struct Feed {
    pub upstream: Upstream,
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

pub fn item_id(n: usize) -> String {
    format!("item-{n:05}")
}

impl Feed {
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

    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

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

pub fn limits() -> CallLimits {
    CallLimits {
        deadline_ms: 10_000,
        http_timeout_ms: 1_000,
        ..CallLimits::default()
    }
}

pub fn host(cache_dir: Option<&Path>) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: cache_dir.map(Path::to_path_buf),
        pooling: false,
        concurrent_calls_max: 4,
        limits: limits(),
    })
    .expect("start the plugin host")
}

pub async fn example_feed(host: &PluginHost) -> Plugin {
    host.load(Path::new(rapport_testkit::EXAMPLE_FEED))
        .await
        .expect("load example-feed")
}

/// The connector spec for `feed`, bound to the example-feed plugin.
pub fn spec(plugin: &Plugin, feed_url: &str, grant: &str, fingerprint: &str) -> ConnectorSpec {
    let connector = plugin
        .connector(Grants {
            connector_id: CONNECTOR.into(),
            settings: BTreeMap::from([("base_url".to_owned(), feed_url.to_owned())]),
            secrets: BTreeMap::from([("webhook_token".to_owned(), "s3cret".to_owned())]),
            allowed_hosts: vec![grant.to_owned()],
            allow_private_networks: true,
        })
        .expect("bind the connector");
    ConnectorSpec {
        connector,
        schedule: "every 10m".parse().unwrap(),
        enabled: true,
        fingerprint: fingerprint.into(),
    }
}

pub fn engine_config(node: &str) -> EngineConfig {
    EngineConfig {
        node_id: node.into(),
        lease_ttl: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        retry: RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        },
        pages_per_run_max: 1_000,
    }
}

/// A store with one staff member and an account per feed customer (`feed:cus_N`).
pub async fn seed(store: &Store) -> Vec<AccountId> {
    let owner = store
        .create_staff(
            NewStaff {
                name: "Vera VP".into(),
                email: rapport_core::account::EmailAddress::parse("vera@rapport.example").unwrap(),
                level: Level::Vp,
                reports_to: None,
                is_admin: false,
            },
            Utc::now(),
        )
        .await
        .expect("hire");
    let mut accounts = Vec::new();
    for n in 0..CUSTOMERS {
        accounts.push(open(store, owner.id, n).await);
    }
    accounts
}

async fn open(store: &Store, owner: StaffId, n: usize) -> AccountId {
    store
        .create_account(
            NewAccount {
                name: format!("Customer {n}"),
                parent: None,
                lifecycle: rapport_core::account::Lifecycle::Active,
                renewal_date: None,
                domains: Vec::new(),
                external_ids: vec![format!("feed:cus_{n}").parse().unwrap()],
                contacts: Vec::new(),
                owner,
            },
            None,
            Utc::now(),
        )
        .await
        .expect("open account")
        .id
}

/// An engine over `store` with the feed connector.
pub async fn engine(store: &Store, feed: &Feed, plugin: &Plugin, node: &str) -> Engine {
    Engine::new(
        store.clone(),
        engine_config(node),
        vec![spec(
            plugin,
            &feed.upstream.url(),
            &feed.upstream.grant(),
            "v1",
        )],
    )
    .await
    .expect("start the engine")
}

/// The source ids stored for the feed connector, sorted, with duplicates kept (there
/// must be none).
pub async fn stored_ids(store: &Store) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..CUSTOMERS {
        let account = store
            .account_by_external_id(&format!("feed:cus_{n}").parse().unwrap())
            .await
            .unwrap()
            .expect("seeded account");
        let mut query = rapport_store::TimelineQuery::account(account);
        query.connectors = vec![CONNECTOR.into()];
        query.limit = rapport_store::TIMELINE_PAGE_MAX;
        loop {
            let page = store.timeline(&query).await.unwrap();
            ids.extend(
                page.events
                    .iter()
                    .map(|event| event.event.key.source_id.clone()),
            );
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
    }
    let mut waiting = store
        .unmatched_events(Some(CONNECTOR), None, 200)
        .await
        .unwrap();
    loop {
        ids.extend(
            waiting
                .events
                .iter()
                .map(|event| event.event.key.source_id.clone()),
        );
        let Some(next) = waiting.next else { break };
        waiting = store
            .unmatched_events(Some(CONNECTOR), Some(next), 200)
            .await
            .unwrap();
    }
    ids.sort();
    ids
}

pub fn expected_ids(items: usize) -> Vec<String> {
    (0..items).map(item_id).collect()
}
