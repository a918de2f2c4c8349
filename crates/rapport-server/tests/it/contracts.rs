//! Connectors built against different contract versions, synced side by side by one
//! server: the committed 0.1.0 build of example-feed and today's 0.2.0 build, against
//! the same upstream, each storing the same items under its own connector.

use rapport_server::{Config, Server};
use rapport_testkit::feed::Feed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_and_a_0_2_0_connector_sync_side_by_side() {
    let feed = Feed::start(12, 5).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/contract-0.1.0/example_feed.wasm"
        ),
        dir.path().join("feed-0.1.0.wasm"),
    )
    .unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        dir.path().join("feed-0.2.0.wasm"),
    )
    .unwrap();
    let connector = |id: &str, file: &str| {
        format!(
            "[[connector]]\nid = \"{id}\"\nplugin = \"{file}\"\nallowed_hosts = [\"{grant}\"]\nallow_private_networks = true\nsettings = {{ base_url = \"{url}\" }}\n",
            grant = feed.upstream.grant(),
            url = feed.upstream.url()
        )
    };
    let source = format!(
        "[server]\ndatabase = \"sqlite://rapport.db\"\n\n{}\n{}",
        connector("old", "feed-0.1.0.wasm"),
        connector("new", "feed-0.2.0.wasm")
    );
    let config = Config::parse(&source, &dir.path().join("rapport.toml"), &|_| None).unwrap();
    let server = Server::start(config).await.unwrap();
    let old = server.engine.run_now("old", &|_| {}).await.unwrap();
    let new = server.engine.run_now("new", &|_| {}).await.unwrap();
    assert_eq!((old.inserted, old.pages), (12, 3), "{old:?}");
    assert_eq!((new.inserted, new.pages), (12, 3), "{new:?}");
    let statuses = server.engine.store().connector_statuses().await.unwrap();
    for id in ["old", "new"] {
        let status = statuses
            .iter()
            .find(|status| status.connector == id)
            .unwrap();
        assert_eq!(status.events_ingested, 12, "{status:?}");
    }
}
