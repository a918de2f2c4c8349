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
    }
}

pub use rapport_testkit::upstream::{Reply, Upstream};
