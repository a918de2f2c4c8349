//! A plugin host with test limits, and a loopback HTTP server.

use rapport_plugin_host::{CallLimits, Grants, HostConfig, Plugin, PluginHost};
use std::collections::BTreeMap;

/// The deadline the containment tests use.
pub const DEADLINE_MS: u64 = 1_000;
/// The memory cap the containment tests use.
pub const MEMORY_BYTES_MAX: usize = 64 * 1024 * 1024;

pub fn limits() -> CallLimits {
    CallLimits {
        memory_bytes_max: MEMORY_BYTES_MAX,
        deadline_ms: DEADLINE_MS,
        events_max: 10_000,
        returned_bytes_max: 8 * 1024 * 1024,
        http_response_bytes_max: 1024 * 1024,
        http_timeout_ms: 2_000,
        log_lines_max: 100,
        log_bytes_max: 64 * 1024,
    }
}

pub fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: None,
        pooling: true,
        concurrent_calls_max: 8,
        limits: limits(),
        ..HostConfig::default()
    })
    .expect("start the plugin host")
}

pub async fn example_feed(host: &PluginHost) -> Plugin {
    host.load(std::path::Path::new(rapport_testkit::EXAMPLE_FEED))
        .await
        .expect("load example-feed")
}

pub async fn example_oauth(host: &PluginHost) -> Plugin {
    host.load(std::path::Path::new(rapport_testkit::EXAMPLE_OAUTH))
        .await
        .expect("load example-oauth")
}

/// `example-feed` as built against contract 0.1.0 when 0.2.0 came: a committed build, so
/// the proof that 0.1.0 connectors keep working does not depend on today's sources.
pub const EXAMPLE_FEED_0_1_0: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/contract-0.1.0/example_feed.wasm"
);

pub async fn hostile(host: &PluginHost) -> Plugin {
    host.load(std::path::Path::new(rapport_testkit::HOSTILE))
        .await
        .expect("load hostile")
}

pub fn grants(id: &str, settings: &[(&str, &str)], allowed_hosts: &[String]) -> Grants {
    Grants {
        connector_id: id.into(),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        secrets: BTreeMap::new(),
        allowed_hosts: allowed_hosts.to_vec(),
        allow_private_networks: true,
        ..Default::default()
    }
}

pub use rapport_testkit::upstream::{Reply, Upstream};
