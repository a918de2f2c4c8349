//! The OpenAPI document is generated from the handlers; the committed copy
//! (`crates/rapport-server/openapi.json`, what client authors read) must match it.
//! After changing the API, refresh it with
//! `RAPPORT_UPDATE_OPENAPI=1 cargo test -p rapport-server --test it openapi`.

use crate::support::*;
use axum::http::{Method, StatusCode};
use rapport_testkit::database::run_on_sqlite;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");

#[test]
fn committed_document_matches_the_code() {
    let generated = rapport_server::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("RAPPORT_UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json is out of date with the handlers: run `RAPPORT_UPDATE_OPENAPI=1 cargo test -p rapport-server --test it openapi` and commit it"
    );
    let document: serde_json::Value = serde_json::from_str(&generated).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    // Every operation is authenticated and documents its problems.
    for (path, item) in document["paths"].as_object().unwrap() {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for (method, operation) in item.as_object().unwrap() {
            assert_eq!(
                operation["security"],
                serde_json::json!([{"bearer": []}]),
                "{method} {path}"
            );
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path} documents 401"
            );
        }
    }
}

#[tokio::test]
async fn the_server_serves_the_same_document() {
    run_on_sqlite(|store| async move {
        let world = world(store).await;
        let (status, served) = world
            .call(Method::GET, "/api/openapi.json", None, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let generated: serde_json::Value =
            serde_json::from_str(&rapport_server::openapi().to_json().unwrap()).unwrap();
        assert_eq!(served, generated);
    })
    .await;
}
