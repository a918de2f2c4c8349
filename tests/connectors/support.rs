//! Loading the reference connectors into a real host and binding them to loopback
//! upstreams; signing webhook deliveries the way the providers do.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rapport_plugin_host::{
    CallLimits, Connector, ConnectorError, Grants, HostConfig, PluginError, PluginHost, SyncPage,
    WebhookRequest,
};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::path::Path;

pub fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: None,
        pooling: false,
        concurrent_calls_max: 4,
        limits: CallLimits {
            deadline_ms: 20_000,
            http_timeout_ms: 5_000,
            ..CallLimits::default()
        },
        ..HostConfig::default()
    })
    .expect("start the plugin host")
}

/// Loads the component at `path` and binds it as connector `id` with `settings` and
/// `secrets`, allowed to reach `grant` on loopback.
pub async fn connector(
    host: &PluginHost,
    path: &str,
    id: &str,
    grant: &str,
    settings: &[(&str, &str)],
    secrets: &[(&str, &str)],
) -> Connector {
    let plugin = host.load(Path::new(path)).await.expect("load the plugin");
    let pairs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    };
    plugin
        .connector(Grants {
            connector_id: id.into(),
            settings: pairs(settings),
            secrets: pairs(secrets),
            allowed_hosts: vec![grant.to_owned()],
            allow_private_networks: true,
            ..Default::default()
        })
        .expect("bind the connector")
}

/// Syncs from `checkpoint` until the connector says nothing more is pending; returns
/// the pages.
pub async fn sync_all(connector: &Connector, mut checkpoint: Option<String>) -> Vec<SyncPage> {
    let mut pages = Vec::new();
    for _ in 0..100 {
        let page = connector.sync(checkpoint.as_deref()).await.expect("a page");
        checkpoint = page.checkpoint.clone();
        let more = page.more;
        pages.push(page);
        if !more {
            return pages;
        }
    }
    panic!("the connector kept saying `more` for 100 pages");
}

/// The connector error inside a failed call, or a panic saying what came instead.
pub fn connector_error<T: std::fmt::Debug>(result: Result<T, PluginError>) -> ConnectorError {
    match result {
        Err(PluginError::Connector(error)) => error,
        other => panic!("expected a connector error, got {other:?}"),
    }
}

pub fn hmac_sha256(key: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A POST delivery with `headers` and `body`.
pub fn delivery(path: &str, headers: &[(&str, String)], body: &[u8]) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: path.into(),
        query: String::new(),
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    }
}

pub fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}
