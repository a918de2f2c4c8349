//! google-calendar through the real host against the Google stand-in
//! (`rapport_samples::google`): a person's connection made through the stand-in's
//! OAuth endpoints (code with PKCE), its tokens in a real store behind the connection's
//! real token source; a full read in pages, then only what changed; an expired sync
//! token read again from the start; the window; internal meetings never placed;
//! Google's errors as the contract's kinds; an expired access token refreshed once.

use crate::connectors::support::*;
use chrono::{Duration, TimeZone, Utc};
use rapport_core::secret::KeyRing;
use rapport_plugin_host::{Connector, ConnectorError, Grants, PluginError, SyncPage};
use rapport_store::{ConnectionKey, GrantedTokens, Store};
use rapport_sync::connections::ConnectionTokenSource;
use rapport_sync::oauth::{OAuthClient, OAuthProvider};
use rapport_testkit::google::{self, FakeGoogle, meeting};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

const SAM: &str = "sam.lee@ours.example";
const REDIRECT: &str = "http://127.0.0.1:9/connections/callback";

fn client(fake: &FakeGoogle) -> OAuthClient {
    OAuthClient::new(OAuthProvider {
        authorization_endpoint: format!("{}/o/oauth2/v2/auth", fake.upstream.url()),
        token_endpoint: format!("{}/token", fake.upstream.url()),
        revocation_endpoint: Some(format!("{}/revoke", fake.upstream.url())),
        client_id: google::CLIENT_ID.into(),
        client_secret: Some(google::CLIENT_SECRET.into()),
        redirect_uri: REDIRECT.into(),
        scopes: vec![
            "openid".into(),
            "email".into(),
            "https://www.googleapis.com/auth/calendar.readonly".into(),
        ],
        extra_parameters: vec![("access_type".into(), "offline".into())],
    })
    .unwrap()
}

/// Sam connects his calendar: the stand-in's authorization page approves him, the code
/// is redeemed with its PKCE verifier, the tokens are sealed into the store.
async fn connect(store: &Store, fake: &FakeGoogle, keys: &KeyRing) -> rapport_store::ConnectionId {
    let sam = store
        .create_staff(
            rapport_core::staff::NewStaff {
                name: "Sam Lee".into(),
                email: rapport_core::account::EmailAddress::parse(SAM).unwrap(),
                level: rapport_core::staff::Level::Manager,
                reports_to: None,
                is_admin: false,
            },
            Utc::now(),
        )
        .await
        .unwrap();
    fake.with(|state| state.approve_as = Some(SAM.into()));
    let client = client(fake);
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
        connector: "calendar".into(),
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
                sharing: rapport_core::sharing::Sharing::Metadata,
            },
            Utc::now(),
        )
        .await
        .unwrap()
        .id
}

/// Follows nothing: the `Location` the authorization page answers with.
async fn reqwest_get_location(url: &str) -> String {
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

async fn bind(
    fake: &FakeGoogle,
    store: &Store,
    keys: &KeyRing,
    connection: rapport_store::ConnectionId,
    extra: &[(&str, &str)],
) -> Connector {
    let host = host();
    let plugin = host
        .load(std::path::Path::new(rapport_testkit::GOOGLE_CALENDAR))
        .await
        .unwrap();
    let mut settings: BTreeMap<String, String> = [
        ("base_url", fake.upstream.url()),
        ("accounts_url", fake.upstream.url()),
        ("oauth_url", fake.upstream.url()),
        ("own_domains", "ours.example".to_owned()),
        ("page_size", "10".to_owned()),
        ("backfill_start", "2026-11-01T00:00:00Z".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    for (key, value) in extra {
        settings.insert((*key).to_owned(), (*value).to_owned());
    }
    plugin
        .connector(Grants {
            connector_id: "calendar".into(),
            settings,
            allowed_hosts: vec![fake.upstream.grant()],
            allow_private_networks: true,
            connection: Some(rapport_plugin_host::Connection {
                id: "calendar:1".into(),
                scope: rapport_plugin_host::ConnectionScope::Person,
                owner_email: Some(SAM.into()),
                provider_account: Some(SAM.into()),
                sharing: Some(rapport_core::sharing::Sharing::Metadata),
            }),
            tokens: Some(Arc::new(ConnectionTokenSource::new(
                store.clone(),
                keys.clone(),
                client(fake),
                connection,
                "node-a",
            ))),
            ..Default::default()
        })
        .unwrap()
}

fn ids(pages: &[SyncPage]) -> BTreeSet<String> {
    pages
        .iter()
        .flat_map(|page| &page.events)
        .map(|event| event.key.source_id.clone())
        .collect()
}

fn deleted(pages: &[SyncPage]) -> BTreeSet<String> {
    pages
        .iter()
        .flat_map(|page| page.deleted.iter().cloned())
        .collect()
}

/// Sam's calendar: 24 meetings with clients over four weeks, six internal ones, and
/// one client meeting far beyond the window.
fn fill(fake: &FakeGoogle) {
    let start = Utc.with_ymd_and_hms(2026, 11, 16, 9, 0, 0).unwrap();
    fake.with(|state| {
        for n in 0..24 {
            state.put_event(
                SAM,
                meeting(
                    &format!("client{n:02}"),
                    &format!("Call {n} with Acme"),
                    SAM,
                    &[SAM, "hannah@acme.example"],
                    start + Duration::days(n),
                    30,
                ),
            );
        }
        for n in 0..6 {
            state.put_event(
                SAM,
                meeting(
                    &format!("internal{n}"),
                    "Team sync",
                    SAM,
                    &[SAM, "ana@ours.example"],
                    start + Duration::days(n),
                    30,
                ),
            );
        }
        state.put_event(
            SAM,
            meeting(
                "faraway",
                "Annual review 2028",
                SAM,
                &[SAM, "hannah@acme.example"],
                Utc::now() + Duration::days(600),
                60,
            ),
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_calendar_in_pages_then_only_what_changed() {
    let fake = FakeGoogle::start().await;
    fill(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys).await;
    let calendar = bind(&fake, &database.store, &keys, connection, &[]).await;
    calendar.check().await.expect("the calendar is there");

    // The full read: 31 events in pages of 10; client meetings placed, internal ones
    // and the one beyond the window reported deleted.
    let pages = sync_all(&calendar, None).await;
    assert_eq!(pages.len(), 4, "31 events, 10 a page");
    let expected: BTreeSet<String> = (0..24).map(|n| format!("client{n:02}")).collect();
    assert_eq!(ids(&pages), expected);
    let gone = deleted(&pages);
    assert!(
        gone.contains("internal0") && gone.contains("faraway"),
        "{gone:?}"
    );
    let every = pages.iter().flat_map(|page| &page.events);
    for event in every {
        assert_eq!(event.kind.as_str(), "meeting.scheduled");
        assert_eq!(event.hints.emails[0].to_string(), "hannah@acme.example");
    }
    let token = pages.last().unwrap().checkpoint.clone().unwrap();
    assert!(token.contains("sync_token"), "{token}");

    // Only what changed: one moved, one deleted, one new.
    fake.with(|state| {
        let mut moved = state.calendars[SAM].events["client03"].0.clone();
        moved["sequence"] = serde_json::json!(1);
        moved["summary"] = serde_json::json!("Call 3 with Acme (moved)");
        state.put_event(SAM, moved);
        state.delete_event(SAM, "client04");
        state.put_event(
            SAM,
            meeting(
                "client99",
                "New business",
                "buyer@initech.example",
                &["buyer@initech.example", SAM],
                Utc.with_ymd_and_hms(2026, 12, 20, 15, 0, 0).unwrap(),
                45,
            ),
        );
    });
    let changes = sync_all(&calendar, Some(token.clone())).await;
    let events: Vec<_> = changes.iter().flat_map(|page| &page.events).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let moved = events
        .iter()
        .find(|e| e.key.source_id == "client03")
        .unwrap();
    assert_eq!(moved.kind.as_str(), "meeting.updated");
    assert!(events.iter().any(|e| e.key.source_id == "client99"
        && e.hints.emails[0].to_string() == "buyer@initech.example"));
    assert_eq!(deleted(&changes), BTreeSet::from(["client04".to_owned()]));

    // The sync token expires: Google answers 410 and the connector reads everything
    // again from the start, under the same ids.
    fake.with(|state| state.expire_sync_tokens(SAM));
    let again = sync_all(
        &calendar,
        Some(changes.last().unwrap().checkpoint.clone().unwrap()),
    )
    .await;
    let mut expected = expected;
    expected.remove("client04");
    expected.insert("client99".into());
    assert_eq!(ids(&again), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_errors_become_the_contracts_kinds_and_an_expired_token_is_refreshed() {
    let fake = FakeGoogle::start().await;
    fill(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys).await;
    let calendar = bind(&fake, &database.store, &keys, connection, &[]).await;

    fake.with(|state| state.faults.push_back(google::rate_limited(7)));
    let error = connector_error(calendar.sync(None).await);
    assert!(
        matches!(
            &error,
            ConnectorError::RateLimited {
                retry_after_ms: 7_000,
                ..
            }
        ),
        "{error:?}"
    );
    fake.with(|state| state.faults.push_back(google::too_many_requests(3)));
    assert!(matches!(
        connector_error(calendar.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 3_000,
            ..
        }
    ));
    fake.with(|state| {
        state
            .faults
            .push_back(rapport_testkit::upstream::Reply::status(
                503,
                "backend error",
            ))
    });
    assert!(matches!(
        connector_error(calendar.sync(None).await),
        ConnectorError::Transient(_)
    ));

    // The access token expires at Google: the call fails with auth, the host refreshes
    // once (the stand-in counts the refresh) and repeats the call, which succeeds.
    fake.with(|state| state.expire_access_tokens());
    let before = fake.with(|state| state.refreshes);
    let page = calendar.sync(None).await.expect("refreshed and repeated");
    assert!(!page.events.is_empty());
    assert_eq!(fake.with(|state| state.refreshes), before + 1);

    // A revoked grant cannot be refreshed: the connection needs its owner.
    let refresh = {
        let tokens = database
            .store
            .connection_tokens(connection)
            .await
            .unwrap()
            .unwrap();
        keys.open(
            tokens.refresh.as_ref().unwrap(),
            &tokens.key.seal_context("refresh"),
        )
        .unwrap()
    };
    assert!(client(&fake).revoke(&refresh).await.unwrap());
    fake.with(|state| state.expire_access_tokens());
    let error = calendar.sync(None).await.unwrap_err();
    assert!(
        matches!(&error, PluginError::Connector(ConnectorError::Auth(text)) if text.contains("reconnect")),
        "{error:?}"
    );
}
