//! Every shipped connector loads in the plugin host as what its name says, and the
//! IMAP connector ships with TLS.

use rapport_connectors::BUILTINS;
use rapport_plugin_host::{HostConfig, PluginHost};

#[tokio::test]
async fn every_builtin_loads_under_its_own_name() {
    let host = PluginHost::new(HostConfig::default()).unwrap();
    for builtin in BUILTINS {
        let plugin = host
            .load_bytes(&builtin.reference(), builtin.wasm)
            .await
            .unwrap_or_else(|error| panic!("{} does not load: {error}", builtin.name));
        assert_eq!(plugin.manifest().name, builtin.name);
    }
}

#[tokio::test]
async fn the_shipped_imap_connector_has_tls() {
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let imap = rapport_connectors::find("email-imap").unwrap();
    let plugin = host.load_bytes("email-imap", imap.wasm).await.unwrap();
    let manifest = plugin.manifest();
    assert!(
        !manifest.description.contains("without TLS"),
        "the shipped email-imap says it has no TLS: {}",
        manifest.description
    );
}
