//! Sustained ingest through the whole path — upstream HTTP → plugin → identity
//! resolution → upsert + checkpoint per page — against its peers, measured in the same
//! process on the same data:
//! - **native**: a rusqlite prepared-INSERT loop writing the same rows (JSON already
//!   encoded, accounts already known) into the same schema, one transaction per page;
//! - **plugin only**: the same pages fetched and mapped by the plugin, stored nowhere;
//! - **store only**: the same events committed page by page (`Store::commit_page`,
//!   resolution included), with no plugin or HTTP;
//! - **re-ingest**: the full path again over data already stored (the dedupe path).
//!
//! SQLite always; PostgreSQL too when `RAPPORT_BENCH_DATABASE_URL` names a server (a
//! scratch database is created and dropped), where the native peer is a sqlx
//! prepared-INSERT loop.
//!
//! Run: `cargo bench -p rapport-sync --bench ingest` (`RAPPORT_BENCH_EVENTS` sets the
//! event count, default 20,000).

use chrono::Utc;
use rapport_core::timeline::NewEvent;
use rapport_plugin_host::{CallLimits, Connector, Grants, HostConfig, PluginHost};
use rapport_store::{PageWrite, Store};
use rapport_sync::{ConnectorSpec, Engine, EngineConfig};
use rapport_testkit::database::TestDatabase;
use rapport_testkit::feed::{Feed, seed_customers};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const PAGE: usize = 500;

struct Row {
    what: &'static str,
    elapsed: Duration,
    events: usize,
}

fn report(backend: &str, rows: &[Row]) {
    let baseline = rows[0].elapsed.as_secs_f64() / rows[0].events as f64;
    println!("\n{backend}");
    println!(
        "{:<58} {:>10} {:>14} {:>10}",
        "path", "time", "events/s", "vs native"
    );
    for row in rows {
        let per_event = row.elapsed.as_secs_f64() / row.events as f64;
        println!(
            "{:<58} {:>9.0}ms {:>14.0} {:>9.2}x",
            row.what,
            row.elapsed.as_secs_f64() * 1e3,
            row.events as f64 / row.elapsed.as_secs_f64(),
            per_event / baseline
        );
    }
}

fn connector(plugin: &rapport_plugin_host::Plugin, feed: &Feed) -> Connector {
    plugin
        .connector(Grants {
            connector_id: "feed".into(),
            settings: BTreeMap::from([("base_url".to_owned(), feed.upstream.url())]),
            allowed_hosts: vec![feed.upstream.grant()],
            allow_private_networks: true,
            ..Grants::default()
        })
        .unwrap()
}

/// Every page the plugin produces, fetched through the host.
async fn pages(connector: &Connector) -> Vec<(Vec<NewEvent>, Option<String>)> {
    let mut pages = Vec::new();
    let mut checkpoint: Option<String> = None;
    loop {
        let page = connector.sync(checkpoint.as_deref()).await.unwrap();
        let more = page.more;
        pages.push((page.events, page.checkpoint.clone()));
        checkpoint = page.checkpoint.or(checkpoint);
        if !more {
            return pages;
        }
    }
}

async fn full_path(store: &Store, connector: Connector) -> (Duration, u64) {
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            node_id: "bench".into(),
            ..EngineConfig::default()
        },
        vec![ConnectorSpec {
            connector,
            schedule: "every 1h".parse().unwrap(),
            enabled: true,
            fingerprint: "bench".into(),
        }],
    )
    .await
    .unwrap();
    let started = Instant::now();
    let report = engine.run_now("feed", &|_| {}).await.unwrap();
    (started.elapsed(), report.inserted + report.unchanged)
}

async fn store_only(store: &Store, pages: &[(Vec<NewEvent>, Option<String>)]) -> Duration {
    store
        .register_connector("feed", "bench", true)
        .await
        .unwrap();
    let lease = store
        .acquire_lease("feed", "bench", Duration::from_secs(3_600), Utc::now())
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    for (events, checkpoint) in pages {
        store
            .commit_page(
                &lease,
                PageWrite {
                    events,
                    deleted: &[],
                    checkpoint: checkpoint.as_deref(),
                },
                Utc::now(),
            )
            .await
            .unwrap();
    }
    started.elapsed()
}

/// The rows the store would write, with JSON encoded and the account resolved in
/// advance: the native peers do only the inserts.
struct NativeRow {
    source_id: String,
    account: i64,
    kind: String,
    occurred_us: i64,
    title: String,
    attributes: String,
    hints: String,
    detail: String,
}

fn native_rows(pages: &[(Vec<NewEvent>, Option<String>)]) -> Vec<Vec<NativeRow>> {
    pages
        .iter()
        .map(|(events, _)| {
            events
                .iter()
                .map(|event| {
                    let customer = &event.hints.external_ids[0].id;
                    let n: i64 = customer.trim_start_matches("cus_").parse().unwrap();
                    NativeRow {
                        source_id: event.key.source_id.clone(),
                        account: n + 1,
                        kind: event.kind.as_str().to_owned(),
                        occurred_us: event.occurred_at.timestamp_micros(),
                        title: event.title.clone(),
                        attributes: serde_json::to_string(&event.attributes).unwrap(),
                        hints: serde_json::to_string(&event.hints).unwrap(),
                        detail: format!(
                            r#"{{"rule":"external_id","external_id":"feed:{customer}"}}"#
                        ),
                    }
                })
                .collect()
        })
        .collect()
}

const NATIVE_INSERT: &str = "INSERT INTO timeline_events (connector, source_id, source_version, account_id,
    kind, occurred_at_us, ingested_at_us, title, summary, attributes, hints, match_rule, match_detail)
    VALUES ('native', ?1, 0, ?2, ?3, ?4, ?5, ?6, '', ?7, ?8, 'external_id', ?9)
    ON CONFLICT (connector, source_id) DO NOTHING";

fn native_sqlite(path: &std::path::Path, pages: &[Vec<NativeRow>]) -> Duration {
    let mut connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
        .unwrap();
    let now = Utc::now().timestamp_micros();
    let started = Instant::now();
    for page in pages {
        let tx = connection.transaction().unwrap();
        {
            let mut insert = tx.prepare_cached(NATIVE_INSERT).unwrap();
            for row in page {
                insert
                    .execute(rusqlite::params![
                        row.source_id,
                        row.account,
                        row.kind,
                        row.occurred_us,
                        now,
                        row.title,
                        row.attributes,
                        row.hints,
                        row.detail
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed()
}

async fn native_postgres(url: &str, pages: &[Vec<NativeRow>]) -> Duration {
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let insert = NATIVE_INSERT
        .replace("?1", "$1")
        .replace("?2", "$2")
        .replace("?3", "$3")
        .replace("?4", "$4")
        .replace("?5", "$5")
        .replace("?6", "$6")
        .replace("?7", "$7::jsonb")
        .replace("?8", "$8::jsonb")
        .replace("?9", "$9::jsonb");
    let now = Utc::now().timestamp_micros();
    let started = Instant::now();
    for page in pages {
        let mut tx = connection.begin().await.unwrap();
        for row in page {
            sqlx::query(sqlx::AssertSqlSafe(insert.as_str()))
                .bind(&row.source_id)
                .bind(row.account)
                .bind(&row.kind)
                .bind(row.occurred_us)
                .bind(now)
                .bind(&row.title)
                .bind(&row.attributes)
                .bind(&row.hints)
                .bind(&row.detail)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
    }
    started.elapsed()
}

async fn bench_backend(
    backend: &str,
    urls: [String; 2],
    native_peer: impl AsyncFnOnce(&[Vec<NativeRow>]) -> Duration,
    events: usize,
) {
    let host = PluginHost::new(HostConfig {
        cache_dir: None,
        // Off only to count instructions under valgrind, which cannot map the pool.
        pooling: std::env::var("RAPPORT_BENCH_POOLING").map_or(true, |value| value != "0"),
        concurrent_calls_max: 4,
        limits: CallLimits::default(),
        ..HostConfig::default()
    })
    .unwrap();
    let plugin = host
        .load(std::path::Path::new(rapport_testkit::EXAMPLE_FEED))
        .await
        .unwrap();
    let feed = Feed::start(events, PAGE).await;

    // Full path into a fresh database, then again over what it stored.
    let full = Store::connect(&urls[0]).await.unwrap();
    seed_customers(&full).await;
    let (elapsed, stored) = full_path(&full, connector(&plugin, &feed)).await;
    assert_eq!(stored as usize, events);
    let reingest = reingest(&full, connector(&plugin, &feed)).await;
    full.close().await;

    let fetched = Instant::now();
    let pages = pages(&connector(&plugin, &feed)).await;
    let plugin_only = fetched.elapsed();

    let store = Store::connect(&urls[1]).await.unwrap();
    seed_customers(&store).await;
    let store_elapsed = store_only(&store, &pages).await;
    store.close().await;

    let native = native_peer(&native_rows(&pages)).await;
    report(
        backend,
        &[
            Row {
                what: "native prepared-INSERT loop (one tx per 500-event page)",
                elapsed: native,
                events,
            },
            Row {
                what: "full path: HTTP -> plugin -> resolve -> upsert+checkpoint",
                elapsed,
                events,
            },
            Row {
                what: "  of which plugin only (HTTP + guest + conversion)",
                elapsed: plugin_only,
                events,
            },
            Row {
                what: "  of which store only (resolve + upsert + checkpoint)",
                elapsed: store_elapsed,
                events,
            },
            Row {
                what: "re-ingest of stored events (full path, dedupe)",
                elapsed: reingest,
                events,
            },
        ],
    );
}

async fn reingest(store: &Store, connector: Connector) -> Duration {
    // Point the checkpoint back at the start (an empty page committing "0"), so the
    // next run fetches every page again and every event upserts as unchanged.
    let lease = store
        .acquire_lease("feed", "reset", Duration::from_secs(1), Utc::now())
        .await
        .unwrap()
        .unwrap();
    store
        .commit_page(
            &lease,
            PageWrite {
                events: &[],
                deleted: &[],
                checkpoint: Some("0"),
            },
            Utc::now(),
        )
        .await
        .unwrap();
    store.release_lease(&lease).await.unwrap();
    let (elapsed, _) = full_path(store, connector).await;
    elapsed
}

fn main() {
    let events: usize = std::env::var("RAPPORT_BENCH_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let native_path = dir.path().join("native.db");
        // The native peer writes into the same schema, created by the same migrations.
        Store::connect(&format!("sqlite://{}", native_path.display()))
            .await
            .unwrap()
            .close()
            .await;
        let sqlite_urls = [
            format!("sqlite://{}", dir.path().join("full.db").display()),
            format!("sqlite://{}", dir.path().join("store.db").display()),
        ];
        bench_backend(
            &format!("SQLite (WAL, synchronous=NORMAL), {events} events"),
            sqlite_urls,
            async |rows: &[Vec<NativeRow>]| {
                seed_native_accounts(&native_path);
                native_sqlite(&native_path, rows)
            },
            events,
        )
        .await;

        if let Ok(admin) = std::env::var("RAPPORT_BENCH_DATABASE_URL") {
            let full = TestDatabase::postgres_on(admin.clone()).await;
            let store = TestDatabase::postgres_on(admin.clone()).await;
            let native = TestDatabase::postgres_on(admin).await;
            seed_customers(&native.store).await;
            let native_url = native.url.clone();
            bench_backend(
                &format!("PostgreSQL (local socket over TCP), {events} events"),
                [full.url.clone(), store.url.clone()],
                async |rows: &[Vec<NativeRow>]| native_postgres(&native_url, rows).await,
                events,
            )
            .await;
            for database in [full, store, native] {
                database.finish().await;
            }
        } else {
            println!("\nPostgreSQL: skipped (set RAPPORT_BENCH_DATABASE_URL to include it)");
        }
    });
}

/// Accounts 1..=CUSTOMERS for the native peer's foreign keys.
fn seed_native_accounts(path: &std::path::Path) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        runtime.block_on(async {
            let store = Store::connect(&format!("sqlite://{}", path.display()))
                .await
                .unwrap();
            seed_customers(&store).await;
            store.close().await;
        });
    })
    .join()
    .unwrap();
}
