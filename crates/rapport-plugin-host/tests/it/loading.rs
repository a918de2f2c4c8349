//! Loading connectors: what a component says about itself, refusals of what is not one
//! (or speaks an unknown contract), and the on-disk compilation cache.

use crate::support::*;
use rapport_plugin_host::{
    Auth, ContractVersion, HostConfig, PluginError, PluginHost, SUPPORTED_VERSIONS,
};

#[tokio::test]
async fn a_connector_loads_and_describes_itself() {
    let host = host();
    let plugin = example_feed(&host).await;
    assert_eq!(plugin.contract_version(), ContractVersion::V0_2_0);
    let manifest = plugin.manifest();
    assert_eq!(manifest.name, "example-feed");
    assert_eq!(manifest.event_kinds, ["support.*", "feed.*"]);
    assert_eq!(manifest.hosts, ["{base_url}"]);
    let secret = manifest
        .config_keys
        .iter()
        .find(|key| key.name == "token")
        .unwrap();
    assert!(secret.secret && !secret.required);
    assert_eq!(manifest.auth, Auth::None);
    assert_eq!(SUPPORTED_VERSIONS, ["0.1.0", "0.2.0"]);
}

#[tokio::test]
async fn files_that_are_not_connectors_are_refused_clearly() {
    let host = host();
    let error = host.load_bytes("notes.txt", b"hello").await.unwrap_err();
    assert!(matches!(error, PluginError::Compile { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("notes.txt is not a valid WebAssembly component")
    );

    // The smallest valid component: it exports nothing.
    let empty_component = b"\0asm\x0d\0\x01\0";
    let error = host
        .load_bytes("empty.wasm", empty_component)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "empty.wasm is not a rapport connector: it exports [], but a connector exports `rapport:connector/plugin@<version>`"
    );

    let missing = host
        .load(std::path::Path::new("/nonexistent/plugin.wasm"))
        .await
        .unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("cannot read the plugin /nonexistent/plugin.wasm")
    );
}

#[tokio::test]
async fn an_unknown_contract_version_names_what_is_supported() {
    // Re-label the example as implementing 0.9.0 (same length, so the binary stays
    // valid): a component from a future rapport.
    let bytes = std::fs::read(rapport_testkit::EXAMPLE_FEED).unwrap();
    let from = b"rapport:connector/plugin@0.2.0";
    let to = b"rapport:connector/plugin@0.9.0";
    let mut patched = bytes.clone();
    let mut replaced = 0;
    let mut index = 0;
    while index + from.len() <= patched.len() {
        if &patched[index..index + from.len()] == from {
            patched[index..index + from.len()].copy_from_slice(to);
            replaced += 1;
            index += from.len();
        } else {
            index += 1;
        }
    }
    assert!(replaced > 0);
    let error = host()
        .load_bytes("future.wasm", &patched)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "future.wasm implements rapport:connector@0.9.0, which this build does not support; supported versions: 0.1.0, 0.2.0"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let config = || HostConfig {
        cache_dir: Some(cache.path().to_owned()),
        pooling: false,
        concurrent_calls_max: 2,
        limits: limits(),
        ..HostConfig::default()
    };
    let first = PluginHost::new(config()).unwrap();
    example_feed(&first).await;
    let artifacts = compiled_artifacts(cache.path());
    assert_eq!(
        artifacts.len(),
        1,
        "the compiled component was written to the cache"
    );
    // A restarted host (a fresh engine) loads from the cache and works the same.
    let second = PluginHost::new(config()).unwrap();
    let plugin = example_feed(&second).await;
    assert_eq!(plugin.manifest().name, "example-feed");
    assert_eq!(
        compiled_artifacts(cache.path()),
        artifacts,
        "nothing was compiled twice"
    );
}

/// The cache's compiled entries: wasmtime names each by its hash alone, with no
/// extension. Everything else is the cache worker's, written in the background while
/// the test looks: usage statistics (`.stats`), its task locks (`.wip-<pid>`), files it
/// is writing (`.wip-atomic-write-*`) and clean-up markers (dot files).
fn compiled_artifacts(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = walk(dir)
        .into_iter()
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            !name.contains('.')
        })
        .collect();
    files.sort();
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
