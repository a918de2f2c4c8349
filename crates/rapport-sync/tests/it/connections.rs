//! Connections' OAuth tokens against a real OAuth 2.0 provider (oidc-provider from npm,
//! on loopback), on both backends: the authorization code flow with PKCE and `state`,
//! refresh before expiry with refresh tokens that rotate on every use, two nodes
//! refreshing one connection without ever spending a refresh token twice (the provider
//! revokes the grant on reuse, so one double refresh would fail the test), a node that
//! dies holding the refresh claim, revocation, and `invalid_grant` ending in
//! `needs_reconnect`.

use chrono::Utc;
use rapport_core::secret::KeyRing;
use rapport_core::staff::{Level, NewStaff};
use rapport_plugin_host::{TokenError, TokenSource};
use rapport_store::{ConnectionId, ConnectionKey, ConnectionStatus, GrantedTokens, Store};
use rapport_sync::connections::ConnectionTokenSource;
use rapport_sync::oauth::{OAuthClient, OAuthError, OAuthProvider};
use rapport_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, Provider};
use rapport_testkit::on_both_backends_with_url;
use std::time::Duration;

on_both_backends_with_url!(
    two_nodes_refresh_a_rotating_grant_without_spending_a_token_twice,
    a_revoked_grant_ends_in_needs_reconnect,
);

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

fn client(provider: &Provider) -> OAuthClient {
    OAuthClient::new(OAuthProvider {
        authorization_endpoint: provider.authorization_endpoint(),
        token_endpoint: provider.token_endpoint(),
        revocation_endpoint: Some(provider.revocation_endpoint()),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        redirect_uri: REDIRECT.into(),
        scopes: vec![
            "openid".into(),
            "email".into(),
            "offline_access".into(),
            "activities.read".into(),
        ],
        // As for Google: a refresh token only with consent asked every time.
        extra_parameters: vec![("prompt".into(), "consent".into())],
    })
    .unwrap()
}

/// Sam connects: the authorization code flow through the provider's own pages, the
/// code exchanged with its PKCE verifier, the tokens sealed and stored.
async fn connect_sam(store: &Store, provider: &Provider, keys: &KeyRing) -> (ConnectionId, String) {
    let sam = store
        .create_staff(
            NewStaff {
                name: "Sam Lee".into(),
                email: rapport_core::account::EmailAddress::parse("sam@ours.example").unwrap(),
                level: Level::Manager,
                reports_to: None,
                is_admin: false,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    let client = client(provider);
    let request = client.authorization_request().unwrap();
    assert!(
        request.url.contains("code_challenge_method=S256"),
        "{}",
        request.url
    );
    assert!(request.url.contains(&format!("state={}", request.state)));
    let back = provider.authorize(&request.url, "sam@ours.example").await;
    let back = url::Url::parse(&back).unwrap();
    let query: std::collections::BTreeMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(
        query.get("state"),
        Some(&request.state),
        "the state comes back"
    );
    let code = &query["code"];

    // Without the verifier the code is refused (PKCE).
    let wrong = client
        .exchange_code(code, &"x".repeat(64))
        .await
        .unwrap_err();
    assert!(matches!(wrong, OAuthError::Refused(_)), "{wrong:?}");
    // A code is single-use at this provider, so authorize again for the real exchange.
    let request = client.authorization_request().unwrap();
    let back =
        url::Url::parse(&provider.authorize(&request.url, "sam@ours.example").await).unwrap();
    let code = back
        .query_pairs()
        .find(|(key, _)| key == "code")
        .unwrap()
        .1
        .into_owned();
    let issued = client
        .exchange_code(&code, &request.pkce_verifier)
        .await
        .unwrap();
    let refresh = issued
        .refresh_token
        .clone()
        .expect("offline_access gives a refresh token");
    let key = ConnectionKey {
        connector: "activity".into(),
        owner: Some(sam.id),
    };
    let connection = store
        .grant_connection(
            &key,
            GrantedTokens {
                access: keys.seal(&issued.access_token, &key.seal_context("access")),
                access_expires_at: issued.expires_at,
                refresh: Some(keys.seal(&refresh, &key.seal_context("refresh"))),
                scopes: issued.scopes.clone().unwrap_or_default(),
                provider_account: Some("sam@ours.example".into()),
                sharing: rapport_core::sharing::Sharing::Shared,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    (connection.id, refresh)
}

async fn two_nodes_refresh_a_rotating_grant_without_spending_a_token_twice(
    store: Store,
    url: String,
) {
    // Access tokens live 60 s: always within the two minutes before expiry that a
    // token is refreshed in, so every node's first ask refreshes.
    let Some(provider) = Provider::start(REDIRECT, 60).await else {
        return;
    };
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let (connection, first_refresh) = connect_sam(&store, &provider, &keys).await;
    let other_store = Store::connect(&url).await.unwrap();
    let node = |store: &Store, name: &str| {
        ConnectionTokenSource::new(
            store.clone(),
            keys.clone(),
            client(&provider),
            connection,
            name,
        )
    };
    let (a, b) = (node(&store, "node-a"), node(&other_store, "node-b"));

    // Eight asks at once across two nodes.
    let asks = (0..8).map(|i| {
        let source = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { source.access_token().await }
    });
    let tokens = futures_join_all(asks).await;
    for token in &tokens {
        assert!(token.is_ok(), "{token:?}");
    }
    let after = store.connection(connection).await.unwrap().unwrap();
    assert_eq!(
        after.status,
        ConnectionStatus::Active,
        "{:?}",
        after.status_reason
    );
    assert!(after.token_version >= 2, "refreshed at least once");

    // The provider rotated: the first refresh token is spent (and, reused, it would
    // revoke the grant — which the asks above never did).
    let stored = store.connection_tokens(connection).await.unwrap().unwrap();
    let current_refresh = keys
        .open(
            stored.refresh.as_ref().unwrap(),
            &stored.key.seal_context("refresh"),
        )
        .unwrap();
    assert_ne!(current_refresh, first_refresh, "refresh tokens rotate");

    // A node dies holding the refresh claim: the other waits for its lease to lapse,
    // then refreshes with the token the dead node never spent.
    let now = Utc::now();
    store
        .claim_token_refresh(
            connection,
            "node-dead",
            now + chrono::Duration::seconds(1),
            now,
        )
        .await
        .unwrap()
        .expect("the claim is free");
    let b = b.with_refresh_lease(Duration::from_secs(5));
    let token = b
        .access_token()
        .await
        .expect("taken over after the lease lapsed");
    let last = store.connection_tokens(connection).await.unwrap().unwrap();
    assert!(last.token_version > stored.token_version);
    assert_eq!(
        keys.open(
            last.access.as_ref().unwrap(),
            &last.key.seal_context("access")
        )
        .unwrap(),
        token.token
    );

    // A refused token is refreshed once; asking again with one already replaced does
    // not refresh again.
    let version = last.token_version;
    a.refused(&token).await.unwrap();
    let refreshed = store.connection_tokens(connection).await.unwrap().unwrap();
    assert_eq!(refreshed.token_version, version + 1);
    a.refused(&token).await.unwrap();
    assert_eq!(
        store
            .connection_tokens(connection)
            .await
            .unwrap()
            .unwrap()
            .token_version,
        version + 1
    );
    assert_eq!(
        store.connection(connection).await.unwrap().unwrap().status,
        ConnectionStatus::Active
    );
    provider.stop().await;
}

async fn a_revoked_grant_ends_in_needs_reconnect(store: Store, _url: String) {
    let Some(provider) = Provider::start(REDIRECT, 60).await else {
        return;
    };
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let (connection, refresh) = connect_sam(&store, &provider, &keys).await;
    // The person revokes the app at the provider (RFC 7009).
    assert!(client(&provider).revoke(&refresh).await.unwrap());
    let source = ConnectionTokenSource::new(
        store.clone(),
        keys.clone(),
        client(&provider),
        connection,
        "node-a",
    );
    let error = source.access_token().await.unwrap_err();
    assert!(
        matches!(&error, TokenError::NeedsReconnect(reason) if reason.contains("invalid_grant")),
        "{error:?}"
    );
    let after = store.connection(connection).await.unwrap().unwrap();
    assert_eq!(after.status, ConnectionStatus::NeedsReconnect);
    assert!(after.status_reason.unwrap().contains("invalid_grant"));
    assert!(!after.has_refresh_token, "the dead tokens are deleted");
    // And it stays so, without asking the provider, until Sam connects again.
    let again = source.access_token().await.unwrap_err();
    assert!(matches!(again, TokenError::NeedsReconnect(_)));
    provider.stop().await;
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.unwrap());
    }
    outputs
}
