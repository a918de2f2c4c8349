//! Secrets at rest and the node's key ring: a node refuses to start when the database
//! holds sealed tokens and no key ring (or one without their key) is configured; key
//! rotation re-seals every token under the new primary key while the old key still
//! opens what it sealed.

use rapport_core::secret::KeyRing;
use rapport_core::staff::{Level, NewStaff};
use rapport_server::secrets::{self, SECRET_KEY_ENV};
use rapport_server::{Config, Server};
use rapport_store::{ConnectionKey, GrantedTokens, Store};
use std::path::Path;

const SOURCE: &str = r#"
[server]
database = "sqlite://rapport.db"
"#;

fn config(dir: &Path, ring: Option<&str>) -> Config {
    let env = |name: &str| {
        (name == SECRET_KEY_ENV)
            .then(|| ring.map(str::to_owned))
            .flatten()
    };
    Config::parse(SOURCE, &dir.join("rapport.toml"), &env).unwrap()
}

async fn store_a_token(dir: &Path, keys: &KeyRing) -> ConnectionKey {
    let store = Store::connect(&format!("sqlite://{}", dir.join("rapport.db").display()))
        .await
        .unwrap();
    let sam = store
        .create_staff(
            NewStaff {
                name: "Sam Lee".into(),
                email: rapport_core::account::EmailAddress::parse("sam@ours.example").unwrap(),
                level: Level::Manager,
                reports_to: None,
                is_admin: false,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let key = ConnectionKey {
        connector: "gmail".into(),
        owner: Some(sam.id),
    };
    store
        .grant_connection(
            &key,
            GrantedTokens {
                access: keys.seal("ya29.access", &key.seal_context("access")),
                access_expires_at: None,
                refresh: Some(keys.seal("1//refresh", &key.seal_context("refresh"))),
                scopes: Vec::new(),
                provider_account: None,
                sharing: rapport_core::sharing::Sharing::Shared,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    key
}

#[tokio::test]
async fn a_node_without_the_key_refuses_to_start_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    // Before any token is stored, no key is needed.
    Server::start(config(dir.path(), None)).await.unwrap();

    let entry = KeyRing::generate_entry("2026-01");
    let keys = KeyRing::parse(&entry).unwrap();
    store_a_token(dir.path(), &keys).await;

    let error = Server::start(config(dir.path(), None))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("holds 2 sealed connection token(s), but no secret key is configured: set RAPPORT_SECRET_KEY"),
        "{error}"
    );
    assert!(error.contains("key `2026-01`: 2"), "{error}");

    let other = KeyRing::generate_entry("2026-12");
    let error = Server::start(config(dir.path(), Some(&other)))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("lacks key(s) `2026-01`"), "{error}");
    assert!(!error.contains(entry.split_once(':').unwrap().1));

    // The right ring, or a rotated one that keeps the old key, starts.
    Server::start(config(dir.path(), Some(&entry)))
        .await
        .unwrap();
    Server::start(config(dir.path(), Some(&format!("{other},{entry}"))))
        .await
        .unwrap();
}

#[tokio::test]
async fn rotation_reseals_everything_under_the_new_primary() {
    let dir = tempfile::tempdir().unwrap();
    let old_entry = KeyRing::generate_entry("2026-01");
    let old = KeyRing::parse(&old_entry).unwrap();
    let key = store_a_token(dir.path(), &old).await;
    let new_entry = KeyRing::generate_entry("2026-12");
    let rotated = KeyRing::parse(&format!("{new_entry},{old_entry}")).unwrap();
    let store = Store::connect(&format!(
        "sqlite://{}",
        dir.path().join("rapport.db").display()
    ))
    .await
    .unwrap();
    let rotation = secrets::rotate(&store, &rotated).await.unwrap();
    assert_eq!(rotation.resealed, 2);
    let again = secrets::rotate(&store, &rotated).await.unwrap();
    assert_eq!((again.resealed, again.current), (0, 2));
    // The old key can now be retired: the new key alone opens every token.
    let retired = KeyRing::parse(&new_entry).unwrap();
    secrets::require_keys(&store, Some(&retired)).await.unwrap();
    let connection = store.connections(None, None).await.unwrap().remove(0);
    let tokens = store
        .connection_tokens(connection.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        retired
            .open(
                tokens.refresh.as_ref().unwrap(),
                &key.seal_context("refresh")
            )
            .unwrap(),
        "1//refresh"
    );
}
