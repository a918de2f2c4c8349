//! An engine wired to the fake feed upstream (`rapport_testkit::feed`) through the real
//! plugin host, and a store seeded with one account per feed customer.

use rapport_plugin_host::{CallLimits, Grants, HostConfig, Plugin, PluginHost};
use rapport_store::Store;
use rapport_sync::{ConnectorSpec, Engine, EngineConfig, RetryPolicy};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The connector id the tests configure.
pub const CONNECTOR: &str = "feed";
pub use rapport_testkit::feed::{
    CUSTOMERS, Fault, Feed, expected_ids, item_id, item_json, seed_customers as seed,
};

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
        ..HostConfig::default()
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
            ..Default::default()
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
            ..RetryPolicy::default()
        },
        pages_per_run_max: 1_000,
        runs_max: 16,
    }
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
        let mut query =
            rapport_store::TimelineQuery::account(account, rapport_store::Reader::Operator);
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
        .unmatched_events(rapport_store::Reader::Operator, Some(CONNECTOR), None, 200)
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
            .unmatched_events(
                rapport_store::Reader::Operator,
                Some(CONNECTOR),
                Some(next),
                200,
            )
            .await
            .unwrap();
    }
    ids.sort();
    ids
}
