//! `rapport-bench people`: hundreds of people's own connections — a person-scoped
//! OAuth connector (`example-oauth`) with one connection per member of staff, each its
//! own unit of work with its own token, checkpoint and lease — synced by one, two and
//! three `rapport serve` processes on one PostgreSQL database: how fast the work
//! drains, how it spreads, and how long the nodes take to take every connection on.
//!
//! The connections are made as the Connections page makes them (sealed tokens in the
//! store, under the key ring the nodes are given); the upstream is a loopback stand-in
//! of the provider's API that answers each bearer token with that person's own
//! activity, a page at a time, with a per-page latency like a remote API.

use crate::measure::{count, show};
use crate::serve::{self, Serve};
use anyhow::{Result, bail};
use chrono::{Duration as Span, TimeZone, Utc};
use rapport_core::permission::Authority::Operator;
use rapport_core::secret::KeyRing;
use rapport_core::sharing::Sharing;
use rapport_core::staff::{Level, NewStaff};
use rapport_store::{ConnectionKey, GrantedTokens, Store};
use rapport_testkit::database::TestDatabase;
use rapport_testkit::upstream::{Reply, Upstream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `people` measures on.
#[derive(Debug, Clone)]
pub struct PeopleOptions {
    /// The PostgreSQL server (a scratch database per run is made and dropped).
    pub postgres: String,
    /// People, each with their own connection.
    pub people: usize,
    /// Activity items each person's upstream account holds.
    pub items: usize,
    /// Items per upstream page.
    pub page_size: usize,
    /// Added to every upstream response.
    pub latency: Duration,
}

/// The client id the configuration registers (the stand-in checks none).
const CLIENT_ID: &str = "rapport-bench";

/// Runs the benchmark.
pub async fn run(options: PeopleOptions) -> Result<()> {
    let rapport = serve::rapport_binary()?;
    let plugin_cache = tempfile::tempdir()?;
    let upstream = stand_in(options.items, options.page_size, options.latency).await;
    println!(
        "people: {} person connections × {} items, {} per page, {} upstream latency",
        options.people,
        count(options.items as u64),
        options.page_size,
        show(options.latency)
    );
    let total = (options.people * options.items) as u64;
    println!(
        "\n| nodes | runs_max | all connections scheduled after | drained in | events/s | vs one node | connections each node was seen running |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---|");
    let mut one_node = None;
    let ring = KeyRing::generate_entry("bench");
    for nodes in 1..=3usize {
        let database = TestDatabase::postgres_on(options.postgres.clone()).await;
        connect_everyone(&database.store, options.people, &ring).await?;
        let dir = tempfile::tempdir()?;
        let runs_max = 16;
        let config = write_config(dir.path(), &database.url, &upstream, plugin_cache.path())?;
        let started = Instant::now();
        let env = [
            ("RAPPORT_SECRET_KEY", ring.as_str()),
            ("BENCH_CLIENT_SECRET", "unused"),
        ];
        let mut children: Vec<Serve> = (0..nodes)
            .map(|n| Serve::start_with_env(&rapport, &config, &format!("node-{}", n + 1), &env))
            .collect::<Result<_>>()?;
        let pool = sqlx::PgPool::connect(&database.url).await?;
        let mut scheduled = None;
        let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            std::collections::BTreeMap::new();
        let drained = loop {
            let registered: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM connector_state WHERE connector LIKE 'activity:%' AND state <> 'disabled'",
            )
            .fetch_one(&pool)
            .await?;
            if scheduled.is_none() && registered as usize >= options.people {
                scheduled = Some(started.elapsed());
            }
            let holders: Vec<(String, String)> = sqlx::query_as(
                "SELECT lease_holder, connector FROM connector_state WHERE lease_holder IS NOT NULL",
            )
            .fetch_all(&pool)
            .await?;
            for (holder, connector) in holders {
                seen.entry(holder).or_default().insert(connector);
            }
            let stored: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM timeline_events WHERE connector LIKE 'activity:%'",
            )
            .fetch_one(&pool)
            .await?;
            if stored as u64 >= total {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("only {stored} of {total} events arrived in 15 minutes");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        pool.close().await;
        for child in &mut children {
            child.kill();
        }
        let spread = seen
            .iter()
            .map(|(holder, units)| format!("{holder}: {}", units.len()))
            .collect::<Vec<_>>()
            .join(", ");
        let baseline = *one_node.get_or_insert(drained);
        println!(
            "| {nodes} | {runs_max} | {} | {} | {} | {:.2}× | {spread} |",
            scheduled.map_or_else(|| "—".to_owned(), show),
            show(drained),
            count((total as f64 / drained.as_secs_f64()) as u64),
            baseline.as_secs_f64() / drained.as_secs_f64(),
        );
        database.finish().await;
    }
    Ok(())
}

/// The provider's API: `GET /api/activities?after=N` answers the bearer token
/// `token-<person>` with that person's items after `N`.
async fn stand_in(items: usize, page_size: usize, latency: Duration) -> Upstream {
    Upstream::start_with_heads(move |head, path| {
        let Some(person) = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("authorization")
                .then(|| value.trim().strip_prefix("Bearer token-"))
                .flatten()
                .map(str::to_owned)
        }) else {
            return Reply::status(401, "no token");
        };
        if !path.starts_with("/api/activities") {
            return Reply::status(404, "not here");
        }
        let after: usize = path
            .split_once("after=")
            .and_then(|(_, after)| after.parse().ok())
            .unwrap_or(0);
        let end = (after + page_size).min(items);
        let start = Utc.with_ymd_and_hms(2026, 11, 1, 9, 0, 0).unwrap();
        let body = serde_json::json!({
            "items": (after..end).map(|n| serde_json::json!({
                "id": format!("act-{person}-{n}"),
                "at": (start + Span::minutes(n as i64)).to_rfc3339(),
                "title": format!("Call {n} with the client"),
                "email": "cfo@acme.example",
            })).collect::<Vec<_>>(),
            "next": end.to_string(),
            "more": end < items,
        })
        .to_string();
        Reply::json(&body).delayed(latency)
    })
    .await
}

/// Hires `people` managers and connects each one's account, as the Connections page
/// does: tokens sealed with `ring`, valid for hours (no refresh falls in the run).
async fn connect_everyone(store: &Store, people: usize, ring: &str) -> Result<()> {
    let keys = KeyRing::parse(ring)?;
    let now = Utc::now();
    let owner = store
        .create_staff(
            NewStaff {
                name: "Owner".into(),
                email: rapport_core::account::EmailAddress::parse("owner@ours.example")?,
                level: Level::Manager,
                reports_to: None,
                is_admin: false,
            },
            now,
        )
        .await?;
    store
        .create_account(
            Operator,
            rapport_core::account::NewAccount {
                name: "Acme".into(),
                parent: None,
                lifecycle: rapport_core::account::Lifecycle::Active,
                renewal_date: None,
                domains: vec![rapport_core::account::Domain::parse("acme.example")?],
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner: owner.id,
            },
            None,
            now,
        )
        .await?;
    for n in 0..people {
        let person = store
            .create_staff(
                NewStaff {
                    name: format!("Person {n}"),
                    email: rapport_core::account::EmailAddress::parse(&format!(
                        "person{n}@ours.example"
                    ))?,
                    level: Level::Manager,
                    reports_to: None,
                    is_admin: false,
                },
                now,
            )
            .await?;
        let key = ConnectionKey {
            connector: "activity".into(),
            owner: Some(person.id),
        };
        store
            .grant_connection(
                &key,
                GrantedTokens {
                    access: keys.seal(&format!("token-{n}"), &key.seal_context("access")),
                    access_expires_at: Some(now + Span::hours(6)),
                    refresh: None,
                    scopes: vec!["activities.read".into()],
                    provider_account: None,
                    sharing: Sharing::Metadata,
                },
                now,
            )
            .await?;
    }
    Ok(())
}

fn write_config(dir: &Path, database: &str, upstream: &Upstream, cache: &Path) -> Result<PathBuf> {
    std::fs::copy(
        rapport_testkit::EXAMPLE_OAUTH,
        dir.join("example-oauth.wasm"),
    )?;
    let base = format!("http://{}", upstream.address);
    let toml = format!(
        r#"[server]
listen = "127.0.0.1:0"
database = "{database}"
plugin_cache_dir = "{cache}"

[sync]
lease_ttl = "10s"
poll_interval = "100ms"
runs_max = 16

[[connector]]
id = "activity"
plugin = "example-oauth.wasm"
scope = "person"
schedule = "every 1h"
allowed_hosts = ["{grant}"]
allow_private_networks = true
oauth = {{ client_id = "{CLIENT_ID}", client_secret = {{ env = "BENCH_CLIENT_SECRET" }}, redirect_uri = "http://127.0.0.1/connections/callback" }}
[connector.settings]
base_url = "{base}"
"#,
        cache = cache.display(),
        grant = upstream.address,
    );
    let path = dir.join("rapport.toml");
    std::fs::write(&path, toml)?;
    Ok(path)
}
