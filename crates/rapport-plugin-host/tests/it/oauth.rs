//! OAuth 2.0 connectors (contract 0.2.0): the host hands a connector the current access
//! token of its connection from the embedder's token source; when the source refuses
//! it, the host reports it refused (the token source refreshes) and repeats the call
//! once; a refresh the provider refuses ends in `auth` for the owner to reconnect; no
//! token shows in errors or `Debug`.

use crate::support::*;
use rapport_plugin_host::{
    AccessToken, Auth, Connection, ConnectionScope, ConnectorError, Grants, PluginError,
    TokenError, TokenFuture, TokenSource,
};
use rapport_testkit::upstream::has_header;
use std::sync::{Arc, Mutex};

/// A token source over a list of tokens: `refused` moves to the next one, or fails as
/// told when they run out. Stands in for the embedder's store of connections.
struct Tokens {
    tokens: Vec<&'static str>,
    current: Mutex<usize>,
    refused: Mutex<Vec<String>>,
    when_out: TokenError,
}

impl Tokens {
    fn new(tokens: &[&'static str], when_out: TokenError) -> Arc<Tokens> {
        Arc::new(Tokens {
            tokens: tokens.to_vec(),
            current: Mutex::new(0),
            refused: Mutex::new(Vec::new()),
            when_out,
        })
    }
}

impl TokenSource for Tokens {
    fn access_token(&self) -> TokenFuture<'_, AccessToken> {
        let index = *self.current.lock().unwrap();
        let token = self.tokens.get(index).map(|token| AccessToken {
            token: (*token).to_owned(),
            token_type: "Bearer".into(),
            expires_at_micros: Some(1_900_000_000_000_000),
        });
        let out = self.when_out.clone();
        Box::pin(async move { token.ok_or(out) })
    }

    fn refused<'a>(&'a self, token: &'a AccessToken) -> TokenFuture<'a, ()> {
        self.refused.lock().unwrap().push(token.token.clone());
        let mut current = self.current.lock().unwrap();
        *current += 1;
        let result = if *current < self.tokens.len() {
            Ok(())
        } else {
            Err(self.when_out.clone())
        };
        Box::pin(async move { result })
    }
}

const PAGE: &str = r#"{"items":[
  {"id":"x1","at":"2026-03-01T10:00:00Z","title":"Quarterly review","email":"cfo@client.example"}
],"next":"c2","more":false}"#;

/// An API that accepts only `fresh-token-2`, and echoes what it was given when it
/// refuses, as careless providers do.
async fn api() -> Upstream {
    Upstream::start_with_heads(|head, path| {
        if path != "/api/activities" {
            return Reply::status(404, "no");
        }
        if has_header(head, "authorization", "Bearer fresh-token-2") {
            return Reply::json(PAGE);
        }
        let given = head
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("authorization:"))
            .unwrap_or("no authorization")
            .to_owned();
        Reply::status(401, &format!("invalid token: {given}"))
    })
    .await
}

fn oauth_grants(upstream: &Upstream, tokens: Option<Arc<Tokens>>) -> Grants {
    let mut grants = grants(
        "activity",
        &[("base_url", &upstream.url())],
        &[upstream.grant()],
    );
    grants.connection = Some(Connection {
        id: "conn-7".into(),
        scope: ConnectionScope::Person,
        owner_email: Some("sam@ours.example".into()),
        provider_account: Some("sam@ours.example".into()),
        sharing: Some(rapport_core::sharing::Sharing::Metadata),
    });
    grants.tokens = tokens.map(|tokens| tokens as Arc<dyn TokenSource>);
    grants
}

#[tokio::test]
async fn an_oauth_connector_declares_its_provider() {
    let host = host();
    let plugin = example_oauth(&host).await;
    let Auth::OAuth2(oauth) = &plugin.manifest().auth else {
        panic!(
            "example-oauth declares OAuth 2.0: {:?}",
            plugin.manifest().auth
        );
    };
    assert_eq!(oauth.authorization_endpoint, "{base_url}/oauth/authorize");
    assert_eq!(oauth.token_endpoint, "{base_url}/oauth/token");
    assert_eq!(
        oauth.revocation_endpoint.as_deref(),
        Some("{base_url}/oauth/revoke")
    );
    assert_eq!(oauth.scopes, ["activities.read", "offline_access"]);
    assert!(oauth.pkce);
    assert_eq!(oauth.token_hosts, ["{base_url}"]);
}

#[tokio::test]
async fn a_refused_token_is_refreshed_once_and_the_call_repeated() {
    let upstream = api().await;
    let host = host();
    let plugin = example_oauth(&host).await;
    let tokens = Tokens::new(
        &["stale-token-1", "fresh-token-2"],
        TokenError::NeedsReconnect("invalid_grant".into()),
    );
    let connector = plugin
        .connector(oauth_grants(&upstream, Some(tokens.clone())))
        .unwrap();
    let page = connector.sync(None).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].title, "Quarterly review");
    assert_eq!(*tokens.refused.lock().unwrap(), ["stale-token-1"]);
    assert_eq!(upstream.request_count(), 2, "one refusal, one retry");
    assert!(
        !format!("{connector:?}").contains("token-"),
        "{connector:?}"
    );

    // With a good token there is nothing to refresh.
    connector.sync(None).await.unwrap();
    assert_eq!(tokens.refused.lock().unwrap().len(), 1);
    assert_eq!(upstream.request_count(), 3);
}

#[tokio::test]
async fn a_refresh_the_provider_refuses_asks_the_owner_to_reconnect() {
    let upstream = api().await;
    let host = host();
    let plugin = example_oauth(&host).await;
    let tokens = Tokens::new(
        &["revoked-token-9"],
        TokenError::NeedsReconnect("invalid_grant: the grant was revoked".into()),
    );
    let connector = plugin
        .connector(oauth_grants(&upstream, Some(tokens.clone())))
        .unwrap();
    let error = connector.sync(None).await.unwrap_err();
    let PluginError::Connector(ConnectorError::Auth(message)) = &error else {
        panic!("expected auth, got {error:?}");
    };
    assert!(message.contains("must be reconnected"), "{message}");
    assert!(message.contains("invalid_grant"), "{message}");
    // The provider echoed the token; the host scrubbed it.
    assert!(!message.contains("revoked-token-9"), "{message}");
    assert!(message.contains("<redacted>"), "{message}");
    assert_eq!(upstream.request_count(), 1, "no retry without a new token");

    // A source that cannot be reached now is a passing failure, retried later.
    let tokens = Tokens::new(
        &["stale-token-1"],
        TokenError::Unavailable("the database is busy".into()),
    );
    let connector = plugin
        .connector(oauth_grants(&upstream, Some(tokens)))
        .unwrap();
    let error = connector.sync(None).await.unwrap_err();
    assert!(
        matches!(&error, PluginError::Connector(ConnectorError::Transient(message)) if message.contains("the database is busy")),
        "{error:?}"
    );
}

#[tokio::test]
async fn without_a_connection_an_oauth_connector_is_told_what_is_missing() {
    let upstream = api().await;
    let host = host();
    let plugin = example_oauth(&host).await;
    let connector = plugin.connector(oauth_grants(&upstream, None)).unwrap();
    let error = connector.sync(None).await.unwrap_err();
    assert!(
        matches!(&error, PluginError::Connector(ConnectorError::Config(message)) if message.contains("no OAuth 2.0 connection")),
        "{error:?}"
    );
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn tokens_are_refused_for_a_connector_that_does_not_declare_oauth() {
    let upstream = api().await;
    let host = host();
    let plugin = example_feed(&host).await;
    let tokens = Tokens::new(&["fresh-token-2"], TokenError::Unavailable("x".into()));
    let mut grants = grants(
        "feed",
        &[("base_url", &upstream.url())],
        &[upstream.grant()],
    );
    grants.tokens = Some(tokens);
    let error = plugin.connector(grants).unwrap_err().to_string();
    assert!(error.contains("does not declare OAuth 2.0"), "{error}");
}
