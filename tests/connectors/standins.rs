//! What the tests of connectors on people's own accounts (Google, Microsoft) share:
//! Sam Lee connecting his account through a provider stand-in's OAuth endpoints (code
//! with PKCE), the tokens sealed in a real store behind the connection's real token
//! source, and a connector bound to it.

use crate::connectors::support::*;
use chrono::Utc;
use rapport_core::secret::KeyRing;
use rapport_core::sharing::Sharing;
use rapport_plugin_host::{Connector, Grants, SyncPage};
use rapport_store::{ConnectionKey, GrantedTokens, Store};
use rapport_sync::connections::ConnectionTokenSource;
use rapport_sync::oauth::{OAuthClient, OAuthProvider};
use rapport_testkit::google::{self, FakeGoogle};
use rapport_testkit::microsoft::{self, FakeMicrosoft};
use rapport_testkit::upstream::Upstream;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Which connector a test binds, and how.
pub struct Plugged {
    /// The component's path.
    pub plugin: &'static str,
    /// The connector id (the connection's key is `<id>:<staff id>`).
    pub connector_id: &'static str,
    /// The API scope the connection is granted.
    pub scope: &'static str,
    /// Its sharing level.
    pub sharing: Sharing,
}

pub const SAM: &str = "sam.lee@ours.example";
pub const REDIRECT: &str = "http://127.0.0.1:9/connections/callback";

/// A provider's stand-in that people connect to: its OAuth client, who its
/// authorization page approves, and the settings that point a connector at it.
pub trait StandIn {
    /// The HTTP server.
    fn upstream(&self) -> &Upstream;
    /// The OAuth client a connection to it uses, for `scope`.
    fn client(&self, scope: &str) -> OAuthClient;
    /// Makes its authorization page approve `account`.
    fn approve(&self, account: &str);
    /// The connector settings that point at it.
    fn settings(&self) -> Vec<(&'static str, String)>;
}

impl StandIn for FakeGoogle {
    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn client(&self, scope: &str) -> OAuthClient {
        OAuthClient::new(OAuthProvider {
            authorization_endpoint: format!("{}/o/oauth2/v2/auth", self.upstream.url()),
            token_endpoint: format!("{}/token", self.upstream.url()),
            revocation_endpoint: Some(format!("{}/revoke", self.upstream.url())),
            client_id: google::CLIENT_ID.into(),
            client_secret: Some(google::CLIENT_SECRET.into()),
            redirect_uri: REDIRECT.into(),
            scopes: vec!["openid".into(), "email".into(), scope.into()],
            extra_parameters: vec![("access_type".into(), "offline".into())],
        })
        .unwrap()
    }

    fn approve(&self, account: &str) {
        self.with(|state| state.approve_as = Some(account.into()));
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("base_url", self.upstream.url()),
            ("accounts_url", self.upstream.url()),
            ("oauth_url", self.upstream.url()),
        ]
    }
}

impl StandIn for FakeMicrosoft {
    fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    fn client(&self, scope: &str) -> OAuthClient {
        OAuthClient::new(OAuthProvider {
            authorization_endpoint: format!(
                "{}/organizations/oauth2/v2.0/authorize",
                self.upstream.url()
            ),
            token_endpoint: format!("{}/organizations/oauth2/v2.0/token", self.upstream.url()),
            revocation_endpoint: None,
            client_id: microsoft::CLIENT_ID.into(),
            client_secret: Some(microsoft::CLIENT_SECRET.into()),
            redirect_uri: REDIRECT.into(),
            scopes: vec!["openid".into(), "offline_access".into(), scope.into()],
            extra_parameters: Vec::new(),
        })
        .unwrap()
    }

    fn approve(&self, account: &str) {
        self.with(|state| state.approve_as = Some(account.into()));
    }

    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("base_url", self.upstream.url()),
            ("login_url", self.upstream.url()),
        ]
    }
}

/// Sam (made on first use) connects his Google account for `plugged`: the stand-in's authorization page approves him, the code
/// is redeemed with its PKCE verifier, the tokens are sealed into the store.
pub async fn connect(
    store: &Store,
    fake: &impl StandIn,
    keys: &KeyRing,
    plugged: &Plugged,
) -> rapport_store::ConnectionId {
    let email = rapport_core::account::EmailAddress::parse(SAM).unwrap();
    let sam = match store.staff_by_email(&email).await.unwrap() {
        Some(sam) => sam,
        None => store
            .create_staff(
                rapport_core::staff::NewStaff {
                    name: "Sam Lee".into(),
                    email,
                    level: rapport_core::staff::Level::Manager,
                    reports_to: None,
                    is_admin: false,
                },
                Utc::now(),
            )
            .await
            .unwrap(),
    };
    fake.approve(SAM);
    let client = fake.client(plugged.scope);
    let request = client.authorization_request().unwrap();
    let approved = reqwest_get_location(&request.url).await;
    let back = url::Url::parse(&approved).unwrap();
    let code = back
        .query_pairs()
        .find(|(key, _)| key == "code")
        .unwrap()
        .1
        .into_owned();
    // Without the PKCE verifier the stand-in refuses the code, as Google does.
    assert!(client.exchange_code(&code, &"x".repeat(64)).await.is_err());
    let request = client.authorization_request().unwrap();
    let back = url::Url::parse(&reqwest_get_location(&request.url).await).unwrap();
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
    let key = ConnectionKey {
        connector: plugged.connector_id.into(),
        owner: Some(sam.id),
    };
    store
        .grant_connection(
            &key,
            GrantedTokens {
                access: keys.seal(&issued.access_token, &key.seal_context("access")),
                access_expires_at: issued.expires_at,
                refresh: issued
                    .refresh_token
                    .as_deref()
                    .map(|refresh| keys.seal(refresh, &key.seal_context("refresh"))),
                scopes: Vec::new(),
                provider_account: Some(SAM.into()),
                sharing: plugged.sharing,
            },
            Utc::now(),
        )
        .await
        .unwrap()
        .id
}

/// Follows nothing: the `Location` the authorization page answers with.
pub async fn reqwest_get_location(url: &str) -> String {
    let parsed = url::Url::parse(url).unwrap();
    let address = format!("{}:{}", parsed.host_str().unwrap(), parsed.port().unwrap());
    let path = &url[url.find(parsed.path()).unwrap()..];
    let (status, response) = tokio::task::spawn_blocking({
        let (address, path) = (address.clone(), path.to_owned());
        move || raw_get(&address, &path)
    })
    .await
    .unwrap();
    assert_eq!(status, 302, "{response}");
    response
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .expect("a Location")
        .trim()
        .to_owned()
}

fn raw_get(address: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    (status, response)
}

pub async fn bind(
    plugged: &Plugged,
    fake: &impl StandIn,
    store: &Store,
    keys: &KeyRing,
    connection: rapport_store::ConnectionId,
    extra: &[(&str, &str)],
) -> Connector {
    let host = host();
    let plugin = host
        .load(std::path::Path::new(plugged.plugin))
        .await
        .unwrap();
    let mut settings: BTreeMap<String, String> = [
        ("own_domains", "ours.example".to_owned()),
        ("page_size", "10".to_owned()),
        ("backfill_start", "2026-11-01T00:00:00Z".to_owned()),
    ]
    .into_iter()
    .chain(fake.settings())
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    for (key, value) in extra {
        settings.insert((*key).to_owned(), (*value).to_owned());
    }
    // A person's connection runs as `<connector>:<staff id>`, which is what stamps its
    // events with their owner and sharing level.
    let owner = store
        .connection_tokens(connection)
        .await
        .unwrap()
        .expect("the connection")
        .key
        .owner
        .expect("a person's connection");
    plugin
        .connector(Grants {
            connector_id: rapport_core::sharing::person_connector_id(plugged.connector_id, owner),
            settings,
            allowed_hosts: vec![fake.upstream().grant()],
            allow_private_networks: true,
            connection: Some(rapport_plugin_host::Connection {
                id: format!("{}:1", plugged.connector_id),
                scope: rapport_plugin_host::ConnectionScope::Person,
                owner_email: Some(SAM.into()),
                provider_account: Some(SAM.into()),
                sharing: Some(plugged.sharing),
            }),
            tokens: Some(Arc::new(ConnectionTokenSource::new(
                store.clone(),
                keys.clone(),
                fake.client(plugged.scope),
                connection,
                "node-a",
            ))),
            ..Default::default()
        })
        .unwrap()
}

pub fn ids(pages: &[SyncPage]) -> BTreeSet<String> {
    pages
        .iter()
        .flat_map(|page| &page.events)
        .map(|event| event.key.source_id.clone())
        .collect()
}

pub fn deleted(pages: &[SyncPage]) -> BTreeSet<String> {
    pages
        .iter()
        .flat_map(|page| page.deleted.iter().cloned())
        .collect()
}
