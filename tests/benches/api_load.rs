//! The timeline endpoint under load: a 1M-event SQLite store, the server pinned to one
//! core and `wrk` (Debian's package) to the other. Reports req/s and p50/p99 for the
//! API's first page and a page 50,000 events deep (keyset cursor), against the same
//! JSON bytes served statically by the same process in the same run; and, for the deep
//! page, keyset against OFFSET at the SQL level (one raw-query route, both ways).
//!
//! `cargo bench -p rapport-e2e --bench api_load` (needs `wrk`, `curl` and `taskset`).
//! `RAPPORT_BENCH_EVENTS` (default 1,000,000) and `RAPPORT_BENCH_SECONDS` (default 10)
//! change the store size and the length of each load run.

use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use chrono::{Duration, TimeZone, Utc};
use rapport_core::account::{Lifecycle, NewAccount};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff};
use rapport_core::timeline::{EventKind, MatchReason, NewEvent, Placement};
use rapport_server::{AppState, app};
use rapport_store::Store;
use rapport_sync::{Engine, EngineConfig};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const PAGE: u32 = 50;
const DEPTH: usize = 50_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

struct Load {
    requests_per_second: f64,
    p50: String,
    p99: String,
}

/// Runs wrk on core 1 against `url` and reads its summary.
fn wrk(url: &str, token: Option<&str>, seconds: usize) -> Load {
    let mut command = Command::new("taskset");
    command.args([
        "-c",
        "1",
        "wrk",
        "-t1",
        "-c8",
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(token) = token {
        command.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .arg(url)
        .output()
        .expect("wrk runs (apt-get install wrk)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !text.contains("Non-2xx"),
        "{url} answered errors under load:\n{text}"
    );
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no `{prefix}` in wrk's output:\n{text}"))
    };
    Load {
        requests_per_second: field("Requests/sec:").parse().unwrap(),
        p50: field("50%"),
        p99: field("99%"),
    }
}

/// GETs `url` with curl (off the server's runtime).
fn fetch(url: &str, token: &str) -> String {
    let output = Command::new("curl")
        .args(["-sf", "-H", &format!("Authorization: Bearer {token}"), url])
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "GET {url} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[derive(Clone)]
struct Side {
    pool: sqlx::SqlitePool,
    account: i64,
    statics: Arc<HashMap<String, String>>,
}

/// The deep page straight from SQL, by keyset (`after=<occurred_at_us>,<id>`) or by
/// OFFSET (`skip=N`), a page of 50 ([`PAGE`]) encoded the same way for both.
async fn raw(State(side): State<Side>, Query(params): Query<HashMap<String, String>>) -> String {
    let rows: Vec<(i64, String, String, i64)> = if let Some(skip) = params.get("skip") {
        sqlx::query_as(
            "SELECT id, kind, title, occurred_at_us FROM timeline_events WHERE account_id = $1
             ORDER BY occurred_at_us DESC, id DESC LIMIT 50 OFFSET $2",
        )
        .bind(side.account)
        .bind(skip.parse::<i64>().unwrap())
        .fetch_all(&side.pool)
        .await
        .unwrap()
    } else {
        let (at, id) = params["after"].split_once(',').unwrap();
        sqlx::query_as(
            "SELECT id, kind, title, occurred_at_us FROM timeline_events WHERE account_id = $1
             AND (occurred_at_us, id) < ($2, $3) ORDER BY occurred_at_us DESC, id DESC LIMIT 50",
        )
        .bind(side.account)
        .bind(at.parse::<i64>().unwrap())
        .bind(id.parse::<i64>().unwrap())
        .fetch_all(&side.pool)
        .await
        .unwrap()
    };
    serde_json::to_string(&rows).unwrap()
}

async fn statics(
    State(side): State<Side>,
    Query(params): Query<HashMap<String, String>>,
) -> String {
    side.statics[&params["page"]].clone()
}

async fn seed(store: &Store, events: usize) -> (rapport_core::StaffId, rapport_core::AccountId) {
    let t0 = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    let vp = store
        .create_staff(
            NewStaff {
                name: "Bench VP".into(),
                email: rapport_core::account::EmailAddress::parse("vp@bench.example").unwrap(),
                level: Level::Vp,
                reports_to: None,
                is_admin: false,
            },
            t0,
        )
        .await
        .unwrap();
    let account = store
        .create_account(
            Operator,
            NewAccount {
                name: "Big Client".into(),
                parent: None,
                lifecycle: Lifecycle::Active,
                renewal_date: None,
                domains: Vec::new(),
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner: vp.id,
            },
            None,
            t0,
        )
        .await
        .unwrap();
    let kinds = [
        "email.received",
        "email.sent",
        "billing.invoice.paid",
        "support.ticket.created",
    ];
    for batch in 0..events.div_ceil(10_000) {
        let chunk: Vec<NewEvent> = (batch * 10_000..((batch + 1) * 10_000).min(events))
            .map(|n| {
                let mut event = NewEvent::new(
                    "bench",
                    format!("evt-{n}"),
                    EventKind::parse(kinds[n % kinds.len()]).unwrap(),
                    t0 + Duration::seconds(n as i64 * 60),
                    format!("Event number {n} on the big client's timeline"),
                );
                event.summary =
                    "A summary of typical length for a timeline entry, about one line.".into();
                event.placement = Some(Placement {
                    account: account.id,
                    reason: MatchReason::Direct,
                });
                event
            })
            .collect();
        store.upsert_events(&chunk, Utc::now()).await.unwrap();
    }
    (vp.id, account.id)
}

fn main() {
    let events = env_number("RAPPORT_BENCH_EVENTS", 1_000_000);
    let seconds = env_number("RAPPORT_BENCH_SECONDS", 10);
    // This process (the server) on core 0 before any thread starts, so every thread
    // inherits it; wrk runs on core 1.
    let pinned = Command::new("taskset")
        .args(["-c", "-p", "0", &std::process::id().to_string()])
        .output()
        .is_ok_and(|output| output.status.success());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        let store = Store::connect(&url).await.unwrap();
        let started = Instant::now();
        let (vp, account) = seed(&store, events).await;
        let seeded = started.elapsed();
        let token = store
            .create_api_token(vp, "bench", None, Utc::now())
            .await
            .unwrap()
            .secret;
        let engine = Arc::new(
            Engine::new(store.clone(), EngineConfig::default(), Vec::new())
                .await
                .unwrap(),
        );
        let api = app(AppState::new(engine, 1024).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, api).await.unwrap() });

        // Walk 50,000 events deep through the API itself, 200 at a time.
        let timeline = format!("{base}/api/v1/accounts/{}/timeline", account.0);
        let mut cursor: Option<String> = None;
        let mut walked = 0;
        while walked < DEPTH {
            let url = match &cursor {
                Some(cursor) => format!("{timeline}?limit=200&cursor={cursor}"),
                None => format!("{timeline}?limit=200"),
            };
            let token = token.clone();
            let page: serde_json::Value = serde_json::from_str(
                &tokio::task::spawn_blocking(move || fetch(&url, &token))
                    .await
                    .unwrap(),
            )
            .unwrap();
            walked += page["events"].as_array().unwrap().len();
            cursor = page["next"].as_str().map(str::to_owned);
        }
        let first_url = format!("{timeline}?limit={PAGE}");
        let deep_url = format!("{timeline}?limit={PAGE}&cursor={}", cursor.unwrap());
        let (first_json, deep_json, deep_page) = {
            let (first, deep, token) = (first_url.clone(), deep_url.clone(), token.clone());
            tokio::task::spawn_blocking(move || {
                let first_json = fetch(&first, &token);
                let deep_json = fetch(&deep, &token);
                let deep_page: serde_json::Value = serde_json::from_str(&deep_json).unwrap();
                (first_json, deep_json, deep_page)
            })
            .await
            .unwrap()
        };
        // The same position for the raw keyset query: just after the 50,000th event.
        let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=ro"))
            .await
            .unwrap();
        let bound: (i64, i64) = sqlx::query_as(
            "SELECT occurred_at_us, id FROM timeline_events WHERE account_id = $1
             ORDER BY occurred_at_us DESC, id DESC LIMIT 1 OFFSET $2",
        )
        .bind(account.0)
        .bind(DEPTH as i64 - 1)
        .fetch_one(&pool)
        .await
        .unwrap();
        let first_deep_id = deep_page["events"][0]["id"].as_i64().unwrap();
        let side = Side {
            pool,
            account: account.0,
            statics: Arc::new(HashMap::from([
                ("first".to_owned(), first_json),
                ("deep".to_owned(), deep_json),
            ])),
        };
        let side_router = Router::new()
            .route("/static", get(statics))
            .route("/raw", get(raw))
            .with_state(side);
        let side_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let side_base = format!("http://{}", side_listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(side_listener, side_router).await.unwrap() });

        let runs: Vec<(&str, String, bool)> = vec![
            ("API, first page (keyset)", first_url, true),
            ("API, 50,000 deep (keyset cursor)", deep_url, true),
            ("Same JSON as the first page, static", format!("{side_base}/static?page=first"), false),
            ("Same JSON as the deep page, static", format!("{side_base}/static?page=deep"), false),
            (
                "SQL only, 50,000 deep, keyset",
                format!("{side_base}/raw?after={},{}", bound.0, bound.1),
                false,
            ),
            (
                "SQL only, 50,000 deep, OFFSET",
                format!("{side_base}/raw?skip={DEPTH}"),
                false,
            ),
        ];
        println!(
            "{events} events on one account, seeded in {:.1} s; server pinned to core 0: {pinned}; wrk -t1 -c8 -d{seconds}s on core 1",
            seeded.as_secs_f64()
        );
        println!("deep page starts at event id {first_deep_id}");
        println!("| Request | req/s | p50 | p99 |");
        println!("|---|---:|---:|---:|");
        for (label, url, authenticated) in runs {
            let token = authenticated.then(|| token.clone());
            let load = tokio::task::spawn_blocking(move || wrk(&url, token.as_deref(), seconds))
                .await
                .unwrap();
            println!(
                "| {label} | {:.0} | {} | {} |",
                load.requests_per_second, load.p50, load.p99
            );
        }
    });
}
