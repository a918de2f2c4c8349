//! Connecting an account from the web UI, through the router, against a real OAuth 2.0
//! provider (oidc-provider from npm, on loopback): a person starts connecting, signs in
//! and consents at the provider, comes back, and their connection is stored with its
//! tokens sealed; the way back works once and only for the browser that started it;
//! disconnecting deletes the tokens and revokes the grant at the provider.

use crate::web::{send, session};
use axum::http::{Method, StatusCode, header};
use rapport_core::secret::KeyRing;
use rapport_core::staff::{Level, NewStaff};
use rapport_server::{AppState, Config, Server, app};
use rapport_store::{ConnectionKey, ConnectionStatus};
use rapport_sync::oauth::{OAuthClient, OAuthError, OAuthProvider};
use rapport_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, Provider};
use std::collections::BTreeMap;

const CALLBACK: &str = "http://rapport.test/connections/callback";

fn location(reply: &crate::web::Reply) -> String {
    reply
        .headers
        .get(header::LOCATION)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A provider, and a server whose configuration `config` writes for it (with
/// `example-oauth.wasm` beside it and a fresh key ring): `None` when the provider cannot
/// run here (outside CI).
async fn start(
    config: impl Fn(&Provider) -> String,
) -> Option<(Provider, KeyRing, Server, tempfile::TempDir)> {
    let provider = Provider::start(CALLBACK, 3600).await?;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_OAUTH,
        dir.path().join("example-oauth.wasm"),
    )
    .unwrap();
    let ring = KeyRing::generate_entry("k1");
    let env = |name: &str| match name {
        rapport_testkit::oauth::CLIENT_SECRET_ENV => Some(CLIENT_SECRET.to_owned()),
        "RAPPORT_SECRET_KEY" => Some(ring.clone()),
        _ => None,
    };
    let source = config(&provider);
    let config = Config::parse(&source, &dir.path().join("rapport.toml"), &env).unwrap();
    let server = Server::start(config).await.unwrap();
    Some((provider, KeyRing::parse(&ring).unwrap(), server, dir))
}

/// The provider's configuration with `extra` lines, granted to reach the provider's
/// own API (on loopback) with the connection's tokens.
fn reaching(provider: &Provider, extra: &str) -> String {
    let grant = provider.issuer.trim_start_matches("http://");
    provider.config_toml_with(&format!(
        "{extra}\nallowed_hosts = [\"{grant}\"]\nallow_private_networks = true"
    ))
}

/// Posts the Connections page's Disconnect form for `connection` in the session of
/// `cookie` (with its form token `csrf`).
async fn disconnect_as(
    world: &crate::support::World,
    connection: rapport_store::ConnectionId,
    cookie: &str,
    csrf: &str,
) -> crate::web::Reply {
    send(
        world,
        Method::POST,
        &format!("/connections/{connection}/disconnect"),
        Some(cookie),
        Some(&[("csrf", csrf)]),
        &[("origin", "http://rapport.test")],
    )
    .await
}

/// Sam and Ana, two managers, by name.
async fn sam_and_ana(
    store: &rapport_store::Store,
) -> BTreeMap<&'static str, rapport_core::staff::Staff> {
    let mut staff = BTreeMap::new();
    for (name, email) in [("Sam", "sam@ours.example"), ("Ana", "ana@ours.example")] {
        let person = store
            .create_staff(
                NewStaff {
                    name: name.into(),
                    email: rapport_core::account::EmailAddress::parse(email).unwrap(),
                    level: Level::Manager,
                    reports_to: None,
                    is_admin: false,
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        staff.insert(name, person);
    }
    staff
}

/// The client `acme.example`, owned by `owner`: where the provider's activity lands.
async fn acme(
    store: &rapport_store::Store,
    owner: rapport_core::StaffId,
) -> rapport_core::account::Account {
    store
        .create_account(
            rapport_core::permission::Authority::Operator,
            rapport_core::account::NewAccount {
                name: "Acme".into(),
                parent: None,
                lifecycle: rapport_core::account::Lifecycle::Active,
                renewal_date: None,
                domains: vec![rapport_core::account::Domain::parse("acme.example").unwrap()],
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner,
            },
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_connects_their_account_and_disconnects_it() {
    let Some((provider, keys, server, _dir)) = start(|provider| provider.config_toml()).await
    else {
        return;
    };
    let store = server.engine.store().clone();
    let staff = sam_and_ana(&store).await;
    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap()
            .with_connections(server.connections.clone()),
    );
    let world = crate::support::World::around(router, store.clone(), staff);
    let (sam_cookie, sam_csrf) = session(&world, "Sam").await;
    let (ana_cookie, _) = session(&world, "Ana").await;

    let page = send(
        &world,
        Method::GET,
        "/connections",
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("not connected"), "{}", page.body);
    assert!(page.body.contains("href=\"/connections/activity/connect\""));

    // Sam starts connecting and is sent to the provider, with PKCE and a state.
    let start = send(
        &world,
        Method::GET,
        "/connections/activity/connect",
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let to_provider = location(&start);
    assert!(
        to_provider.starts_with(&provider.authorization_endpoint()),
        "{to_provider}"
    );
    assert!(to_provider.contains("code_challenge_method=S256"));

    // At the provider Sam signs in and consents; the provider sends him back.
    let back = provider.authorize(&to_provider, "sam@ours.example").await;
    let back_path = back.strip_prefix("http://rapport.test").unwrap().to_owned();
    assert!(back_path.starts_with("/connections/callback?"), "{back}");

    // Ana's browser cannot use Sam's way back, and trying does not spend it.
    let stolen = send(
        &world,
        Method::GET,
        &back_path,
        Some(&ana_cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(
        stolen.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        stolen.body
    );
    assert!(
        stolen.body.contains("not one this browser started"),
        "{}",
        stolen.body
    );
    let done = send(
        &world,
        Method::GET,
        &back_path,
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(location(&done), "/connections?done=connected");
    let again = send(
        &world,
        Method::GET,
        &back_path,
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(
        again.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a way back works once"
    );

    // A provider's refusal comes back as what it said.
    let start = send(
        &world,
        Method::GET,
        "/connections/activity/connect",
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    let state = url::Url::parse(&location(&start))
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "state")
        .unwrap()
        .1
        .into_owned();
    let denied = send(
        &world,
        Method::GET,
        &format!("/connections/callback?error=access_denied&error_description=The+user+said+no&state={state}"),
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(denied.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        denied.body.contains("access_denied: The user said no"),
        "{}",
        denied.body
    );

    let sam = world.id("Sam");
    let connections = store
        .connections(Some("activity"), Some(sam))
        .await
        .unwrap();
    assert_eq!(connections.len(), 1);
    let connection = &connections[0];
    assert_eq!(connection.status, ConnectionStatus::Active);
    assert!(connection.has_refresh_token);
    let key = ConnectionKey {
        connector: "activity".into(),
        owner: Some(sam),
    };
    let tokens = store
        .connection_tokens(connection.id)
        .await
        .unwrap()
        .unwrap();
    let refresh = keys
        .open(
            tokens.refresh.as_ref().unwrap(),
            &key.seal_context("refresh"),
        )
        .unwrap();
    let page = send(
        &world,
        Method::GET,
        "/connections",
        Some(&sam_cookie),
        None,
        &[],
    )
    .await;
    assert!(page.body.contains(">connected<"), "{}", page.body);
    // Fresh tokens are left alone by the refresh pass.
    let pass = server
        .connections
        .refresh_due(&store, "node-a")
        .await
        .unwrap();
    assert_eq!(pass, rapport_server::connections::RefreshPass::default());
    assert!(!page.body.contains(&refresh), "no token on the page");
    // Ana sees her own (none), not Sam's.
    let page = send(
        &world,
        Method::GET,
        "/connections",
        Some(&ana_cookie),
        None,
        &[],
    )
    .await;
    assert!(page.body.contains("not connected"), "{}", page.body);
    let ana_csrf = session(&world, "Ana").await.1;
    let hers = disconnect_as(&world, connection.id, &ana_cookie, &ana_csrf).await;
    assert_ne!(
        hers.status,
        StatusCode::SEE_OTHER,
        "Ana cannot disconnect Sam's connection"
    );

    // Sam disconnects: the tokens are deleted and the grant revoked at the provider.
    let gone = disconnect_as(&world, connection.id, &sam_cookie, &sam_csrf).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
    let after = store.connection(connection.id).await.unwrap().unwrap();
    assert_eq!(after.status, ConnectionStatus::Revoked);
    assert!(!after.has_refresh_token);
    let client = OAuthClient::new(OAuthProvider {
        authorization_endpoint: provider.authorization_endpoint(),
        token_endpoint: provider.token_endpoint(),
        revocation_endpoint: None,
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        redirect_uri: CALLBACK.into(),
        scopes: vec![],
        extra_parameters: vec![],
    })
    .unwrap();
    let refused = client.refresh(&refresh).await.unwrap_err();
    assert!(
        matches!(refused, OAuthError::Refused(_)),
        "revoked at the provider: {refused:?}"
    );
    provider.stop().await;
}

/// What `rapport.toml` needs for an OAuth connector, each problem saying what to fix.
#[tokio::test]
async fn oauth_connectors_are_checked_with_what_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_OAUTH,
        dir.path().join("example-oauth.wasm"),
    )
    .unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        dir.path().join("example-feed.wasm"),
    )
    .unwrap();
    let path = dir.path().join("rapport.toml");
    let parse = |connector: &str| {
        let source =
            format!("[server]\ndatabase = \"sqlite://rapport.db\"\n\n[[connector]]\n{connector}\n");
        Config::parse(&source, &path, &|_| None)
    };
    let problem = |connector: &str| parse(connector).unwrap_err().to_string();
    assert!(
        problem("id = \"a\"\nplugin = \"example-oauth.wasm\"\nscope = \"everyone\"\nsettings = { base_url = \"https://api.example.com\" }")
            .contains("scope `everyone` must be `org`")
    );
    assert!(
        problem("id = \"a\"\nplugin = \"example-oauth.wasm\"\nsettings = { base_url = \"https://api.example.com\" }\noauth = { client_id = \"c\", redirect_uri = \"https://rapport.example.com/oauth\" }")
            .contains("must be this deployment's address followed by /connections/callback")
    );
    let host =
        rapport_plugin_host::PluginHost::new(rapport_plugin_host::HostConfig::default()).unwrap();
    let bind = |connector: &'static str| {
        let config = parse(connector).unwrap();
        let host = host.clone();
        async move { config.bind_connectors(&host).await.unwrap_err().to_string() }
    };
    let missing = bind("id = \"a\"\nplugin = \"example-oauth.wasm\"\nsettings = { base_url = \"https://api.example.com\" }").await;
    assert!(
        missing.contains("authenticates with OAuth 2.0: register rapport as a client"),
        "{missing}"
    );
    let needless = bind("id = \"a\"\nplugin = \"example-feed.wasm\"\nsettings = { base_url = \"https://feed.example.com\" }\noauth = { client_id = \"c\", redirect_uri = \"https://rapport.example.com/connections/callback\" }").await;
    assert!(
        needless
            .contains("does not authenticate with OAuth 2.0, so `oauth` has nothing to configure"),
        "{needless}"
    );
    let person = bind("id = \"a\"\nplugin = \"example-feed.wasm\"\nscope = \"person\"\nsettings = { base_url = \"https://feed.example.com\" }").await;
    assert!(person.contains("has no per-person credentials"), "{person}");
}

/// An organisation-scoped OAuth connector syncs through the engine with its
/// connection's tokens: refused until an admin connects it, then its activity lands
/// on the client's timeline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connects_the_organisations_account_and_its_activity_arrives() {
    let Some((provider, _keys, server, _dir)) =
        start(|provider| reaching(provider, "scope = \"org\"")).await
    else {
        return;
    };
    let store = server.engine.store().clone();
    let vera = store
        .create_staff(
            NewStaff {
                name: "Vera Admin".into(),
                email: rapport_core::account::EmailAddress::parse("vera@ours.example").unwrap(),
                level: Level::Vp,
                reports_to: None,
                is_admin: true,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let acme = acme(&store, vera.id).await;

    // Not connected yet: the sync says so.
    let before = server.engine.run_now("activity", &|_| {}).await;
    let said = format!("{before:?}");
    assert!(said.contains("not connected yet"), "{said}");
    assert_eq!(before.map(|report| report.inserted).unwrap_or(0), 0);
    let status = store.connector_status("activity").await.unwrap().unwrap();
    assert_eq!(
        status.state,
        rapport_store::ConnectorState::Stopped,
        "stopped until connected"
    );

    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap()
            .with_connections(server.connections.clone()),
    );
    let world = crate::support::World::around(router, store.clone(), [("Vera", vera)].into());
    let (cookie, _) = session(&world, "Vera").await;
    let start = send(
        &world,
        Method::GET,
        "/connections/activity/connect",
        Some(&cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let back = provider
        .authorize(&location(&start), "integrations@ours.example")
        .await;
    let done = send(
        &world,
        Method::GET,
        back.strip_prefix("http://rapport.test").unwrap(),
        Some(&cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);

    // Connecting lifts the stop and asks for a sync.
    let status = store.connector_status("activity").await.unwrap().unwrap();
    assert_eq!(
        status.state,
        rapport_store::ConnectorState::Idle,
        "{status:?}"
    );
    assert!(status.sync_requested_at.is_some(), "{status:?}");

    // Now it syncs with the connection's access token, and the activity is Acme's.
    let report = server.engine.run_now("activity", &|_| {}).await.unwrap();
    assert_eq!(report.inserted, 3, "{report:?}");
    assert!(
        matches!(report.outcome, rapport_sync::RunOutcome::Completed),
        "{report:?}"
    );
    let timeline = store
        .timeline(&rapport_store::TimelineQuery::account(
            acme.id,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    let titles: Vec<_> = timeline
        .events
        .iter()
        .map(|event| event.event.title.as_str())
        .collect();
    assert!(titles.contains(&"Quarterly review with Acme"), "{titles:?}");
    provider.stop().await;
}

rapport_testkit::on_both_backends!(the_api_lists_and_disconnects_connections);

/// The API shows a person their connections (an admin everyone's) without a token in
/// sight, and disconnects them, each person only their own.
async fn the_api_lists_and_disconnects_connections(store: rapport_store::Store) {
    let world = crate::support::world(store.clone()).await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let mut ids = BTreeMap::new();
    for person in ["mia", "ava"] {
        let key = ConnectionKey {
            connector: "gmail".into(),
            owner: Some(world.id(person)),
        };
        let connection = store
            .grant_connection(
                &key,
                rapport_store::GrantedTokens {
                    access: keys.seal(
                        &format!("ya29.{person}-access"),
                        &key.seal_context("access"),
                    ),
                    access_expires_at: None,
                    refresh: Some(keys.seal(
                        &format!("1//{person}-refresh"),
                        &key.seal_context("refresh"),
                    )),
                    scopes: vec!["gmail.readonly".into()],
                    provider_account: None,
                    sharing: rapport_core::sharing::Sharing::Shared,
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        ids.insert(person, connection.id.0);
    }
    let token = |person: &str| world.tokens[person].clone();
    let (status, mine) = world
        .call(
            Method::GET,
            "/api/v1/connections",
            Some(&token("mia")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine[0]["connector"], "gmail");
    assert_eq!(mine[0]["status"], "active");
    assert!(!mine.to_string().contains("ya29"), "{mine}");
    let (status, _) = world
        .call(
            Method::GET,
            "/api/v1/connections?all=true",
            Some(&token("mia")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only admins see everyone's");
    let (status, all) = world
        .call(
            Method::GET,
            "/api/v1/connections?all=true",
            Some(&token("adam")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert!(
        !all.to_string().contains("ya29") && !all.to_string().contains("1//"),
        "{all}"
    );

    // Mia cannot disconnect Ava's: to her it does not exist.
    let avas = format!("/api/v1/connections/{}", ids["ava"]);
    let (status, _) = world
        .call(Method::DELETE, &avas, Some(&token("mia")), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, gone) = world
        .call(Method::DELETE, &avas, Some(&token("ava")), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{gone}");
    assert_eq!(gone["status"], "revoked");
    let tokens = store
        .connection_tokens(rapport_store::ConnectionId(ids["ava"]))
        .await
        .unwrap()
        .unwrap();
    assert!(tokens.access.is_none() && tokens.refresh.is_none());
}

/// Connects `connector` for the person signed in with `cookie`, signing in at the
/// provider as `login`, through the Connections page; returns once it is stored.
async fn connect(
    world: &crate::support::World,
    provider: &Provider,
    connector: &str,
    cookie: &str,
    login: &str,
) {
    let start = send(
        world,
        Method::GET,
        &format!("/connections/{connector}/connect"),
        Some(cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let back = provider.authorize(&location(&start), login).await;
    let done = send(
        world,
        Method::GET,
        back.strip_prefix("http://rapport.test").unwrap(),
        Some(cookie),
        None,
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
}

/// A person-scoped connector syncs each person's connection as its own unit — its own
/// tokens, checkpoint, lease and status — scheduled like any connector, from the moment
/// they connect; disconnecting one stops that one alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_persons_connection_syncs_with_their_own_tokens_until_they_disconnect() {
    let Some((provider, keys, server, _dir)) =
        start(|provider| reaching(provider, "scope = \"person\"\nschedule = \"every 10s\"")).await
    else {
        return;
    };
    let store = server.engine.store().clone();
    let staff = sam_and_ana(&store).await;
    let (sam, ana) = (staff["Sam"].id, staff["Ana"].id);
    acme(&store, sam).await;
    // The template itself is never run.
    assert!(server.engine.connector("activity").is_none());
    assert!(matches!(
        server.engine.run_now("activity", &|_| {}).await,
        Err(rapport_sync::SyncError::UnknownConnector(_))
    ));

    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap()
            .with_connections(server.connections.clone()),
    );
    let world = crate::support::World::around(router, store.clone(), staff);
    let (sam_cookie, _) = session(&world, "Sam").await;
    let (ana_cookie, ana_csrf) = session(&world, "Ana").await;
    connect(
        &world,
        &provider,
        "activity",
        &sam_cookie,
        "sam@ours.example",
    )
    .await;
    connect(
        &world,
        &provider,
        "activity",
        &ana_cookie,
        "ana@ours.example",
    )
    .await;
    let sam_unit = rapport_core::sharing::person_connector_id("activity", sam);
    let ana_unit = rapport_core::sharing::person_connector_id("activity", ana);
    assert!(server.engine.connector(&sam_unit).is_some());
    assert!(server.engine.connector(&ana_unit).is_some());
    // /metrics counts them, by connector and status, and shows nothing of a token.
    let (status, metrics) = world.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("rapport_connections{connector=\"activity\",status=\"active\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rapport_connection_refreshes_total{outcome=\"needs_reconnect\"} 0"),
        "{metrics}"
    );
    for connection in store.connections(None, None).await.unwrap() {
        let tokens = store
            .connection_tokens(connection.id)
            .await
            .unwrap()
            .unwrap();
        let access = keys
            .open(
                tokens.access.as_ref().unwrap(),
                &tokens.key.seal_context("access"),
            )
            .unwrap();
        assert!(!metrics.contains(&access), "no token in /metrics");
    }
    // Another node on the same database follows the connections from the store.
    let node_b = Server::start(server.config.clone()).await.unwrap();
    assert_ne!(node_b.engine.node_id(), server.engine.node_id());
    assert!(node_b.engine.connector(&sam_unit).is_some());
    assert!(node_b.engine.connector(&ana_unit).is_some());

    // The scheduler runs both, each with its own token.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(server.engine.clone().run(stopping));
    let own = |unit: &str, login: &str| rapport_core::timeline::DedupeKey {
        connector: unit.to_owned(),
        source_id: format!("own-{login}"),
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let sams = store
            .event_by_key(&own(&sam_unit, "sam@ours.example"))
            .await
            .unwrap();
        let anas = store
            .event_by_key(&own(&ana_unit, "ana@ours.example"))
            .await
            .unwrap();
        if sams.is_some() && anas.is_some() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both connections synced: {:?}",
            store.connector_statuses().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for (unit, stranger) in [
        (&sam_unit, "ana@ours.example"),
        (&ana_unit, "sam@ours.example"),
    ] {
        assert!(
            store
                .event_by_key(&own(unit, stranger))
                .await
                .unwrap()
                .is_none(),
            "{unit} synced with its owner's token only"
        );
        let status = store.connector_status(unit).await.unwrap().unwrap();
        assert_eq!(status.events_ingested, 3, "{status:?}");
        assert!(status.checkpoint.is_some() || status.last_success_at.is_some());
    }

    // Ana disconnects: her connection stops, Sam's goes on.
    let connection = store
        .connections(Some("activity"), Some(ana))
        .await
        .unwrap()
        .remove(0);
    let gone = disconnect_as(&world, connection.id, &ana_cookie, &ana_csrf).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
    assert!(server.engine.connector(&ana_unit).is_none());
    assert!(server.engine.connector(&sam_unit).is_some());
    let status = store.connector_status(&ana_unit).await.unwrap().unwrap();
    assert_eq!(status.state, rapport_store::ConnectorState::Disabled);
    // The other node lets it go on its next pass, and keeps Sam's.
    let followed = node_b.connections.reconcile(&node_b.engine).await.unwrap();
    assert_eq!(
        followed,
        rapport_server::connections::Reconciled {
            added: 0,
            removed: 1
        }
    );
    assert!(node_b.engine.connector(&ana_unit).is_none());
    assert!(node_b.engine.connector(&sam_unit).is_some());
    // What stays is Ana's history, not her schedule: nothing runs it by hand either.
    assert!(matches!(
        node_b.engine.run_now(&ana_unit, &|_| {}).await,
        Err(rapport_sync::SyncError::UnknownConnector(_))
    ));
    let _ = stop.send(true);
    scheduler.await.unwrap();
    provider.stop().await;
}

/// What a person's connection captures is shared as the organisation says (here
/// metadata only) and, where it lets them, as the person chooses: through the API
/// and the web UI, their management chain sees it whole, a peer who sees the account
/// sees it withheld or not at all, and nobody else can change the level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_activity_is_shared_as_its_owner_and_the_organisation_chose() {
    let Some((provider, _keys, server, _dir)) = start(|provider| {
        reaching(
            provider,
            "scope = \"person\"\nsharing = \"metadata\"\nsharing_override = true",
        )
    })
    .await
    else {
        return;
    };
    let store = server.engine.store().clone();
    // Vera (VP) over Sam (manager); Ana, a manager elsewhere, supports Sam's client.
    let mut staff: BTreeMap<&'static str, rapport_core::staff::Staff> = BTreeMap::new();
    for (name, email, level, reports_to) in [
        ("Vera", "vera@ours.example", Level::Vp, None),
        ("Sam", "sam@ours.example", Level::Manager, Some("Vera")),
        ("Ana", "ana@ours.example", Level::Manager, None),
    ] {
        let person = store
            .create_staff(
                NewStaff {
                    name: name.into(),
                    email: rapport_core::account::EmailAddress::parse(email).unwrap(),
                    level,
                    reports_to: reports_to.map(|boss: &str| staff[boss].id),
                    is_admin: false,
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        staff.insert(name, person);
    }
    let (sam, ana) = (staff["Sam"].id, staff["Ana"].id);
    let account = acme(&store, sam).await;
    store
        .add_support(
            rapport_core::permission::Authority::Operator,
            account.id,
            ana,
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap()
            .with_connections(server.connections.clone()),
    );
    let mut world = crate::support::World::around(router, store.clone(), staff);
    for name in ["Vera", "Sam", "Ana"] {
        let issued = store
            .create_api_token(world.id(name), "tests", None, chrono::Utc::now())
            .await
            .unwrap();
        world.tokens.insert(name, issued.secret);
    }
    let (sam_cookie, sam_csrf) = session(&world, "Sam").await;
    connect(
        &world,
        &provider,
        "activity",
        &sam_cookie,
        "sam@ours.example",
    )
    .await;
    let unit = rapport_core::sharing::person_connector_id("activity", sam);
    server.engine.run_now(&unit, &|_| {}).await.unwrap();

    let timeline = format!("/api/v1/accounts/{}/timeline", account.id.0);
    let captured = |page: &serde_json::Value| -> Vec<serde_json::Value> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["source"] == unit.as_str())
            .cloned()
            .collect()
    };
    // Metadata only: Ana sees the three, withheld; Sam and Vera see them whole.
    let (status, page) = world.as_("Ana", Method::GET, &timeline, None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let anas = captured(&page);
    assert_eq!(anas.len(), 3, "{page}");
    for event in &anas {
        assert_eq!(event["withheld"], true, "{event}");
        assert_eq!(event["capture"]["sharing"], "metadata");
        assert_eq!(event["capture"]["owner"], sam.0);
        assert_eq!(event["summary"], "");
        assert!(event["url"].is_null());
    }
    for person in ["Sam", "Vera"] {
        let (_, page) = world.as_(person, Method::GET, &timeline, None).await;
        let theirs = captured(&page);
        assert_eq!(theirs.len(), 3, "{person}: {page}");
        assert!(theirs.iter().all(|event| event["withheld"] == false));
    }
    // The web page says whose it is and that the content is held back.
    let (ana_cookie, _) = session(&world, "Ana").await;
    let page = send(
        &world,
        Method::GET,
        &format!("/accounts/{}", account.id.0),
        Some(&ana_cookie),
        None,
        &[],
    )
    .await;
    assert!(
        page.body
            .contains("From Sam&#39;s connection, shared as metadata only")
            || page
                .body
                .contains("From Sam's connection, shared as metadata only"),
        "{}",
        page.body
    );

    // Sam makes his private: Ana no longer sees them anywhere; Vera still does.
    let connection = store
        .connections(Some("activity"), Some(sam))
        .await
        .unwrap()[0]
        .id;
    let sharing = format!("/api/v1/connections/{}/sharing", connection.0);
    // Nobody else may change it: someone else's connection does not exist for them.
    let (status, _) = world
        .as_(
            "Ana",
            Method::PUT,
            &sharing,
            Some(serde_json::json!({ "sharing": "shared" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, view) = world
        .as_(
            "Sam",
            Method::PUT,
            &sharing,
            Some(serde_json::json!({ "sharing": "private" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["sharing"], "private");
    assert_eq!(view["sharing_chosen"], "private");
    let (_, page) = world.as_("Ana", Method::GET, &timeline, None).await;
    assert!(captured(&page).is_empty(), "{page}");
    let (_, feed) = world.as_("Ana", Method::GET, "/api/v1/feed", None).await;
    assert!(captured(&feed).is_empty(), "{feed}");
    let id = anas[0]["id"].as_i64().unwrap();
    let (status, _) = world
        .as_("Ana", Method::GET, &format!("/api/v1/events/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, event) = world
        .as_("Vera", Method::GET, &format!("/api/v1/events/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["withheld"], false);
    // The plugin is told the level its connection has now.
    server.connections.follow(&server.engine).await;
    let bound = server.engine.connector(&unit).unwrap();
    assert_eq!(
        bound.connector.connection().unwrap().sharing,
        Some(rapport_core::sharing::Sharing::Private)
    );
    // Back to the organisation's level, through the web form.
    let saved = send(
        &world,
        Method::POST,
        &format!("/connections/{}/sharing", connection.0),
        Some(&sam_cookie),
        Some(&[("csrf", &sam_csrf), ("sharing", "organisation")]),
        &[("origin", "http://rapport.test")],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let (_, page) = world.as_("Ana", Method::GET, &timeline, None).await;
    assert_eq!(captured(&page).len(), 3);
    assert!(
        captured(&page)
            .iter()
            .all(|event| event["withheld"] == true)
    );
    provider.stop().await;
}

/// A message from a client to `to`, as it sits in a mailbox.
fn client_mail(id: &str, subject: &str, to: &str, body: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@acme.example>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         From: Hannah Ortiz <hannah@acme.example>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The issue's "done when", through the router: Sam connects *his mailbox* — the
/// built-in IMAP connector, person-scoped, signing in to a real Dovecot with his
/// connection's access token (XOAUTH2), which Dovecot checks with the provider — and
/// his client mail lands on the client's account; his manager sees it whole, a peer
/// on the account only who, the subject and when; disconnecting stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_connects_their_mailbox_and_their_mail_arrives_as_the_sharing_level_says() {
    let Some(provider) = Provider::start(CALLBACK, 3600).await else {
        return;
    };
    let first = client_mail(
        "renewal",
        "Renewal terms",
        "sam@ours.example",
        "We would like to discuss a 20% discount.",
    );
    let Some(mut mailbox) = rapport_testkit::dovecot::Dovecot::start_with_oauth(
        &[&first],
        "sam@ours.example",
        &provider.introspection(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ring = KeyRing::generate_entry("k1");
    let env = |name: &str| match name {
        rapport_testkit::oauth::CLIENT_SECRET_ENV => Some(CLIENT_SECRET.to_owned()),
        "RAPPORT_SECRET_KEY" => Some(ring.clone()),
        _ => None,
    };
    let issuer = &provider.issuer;
    let port = mailbox.imap_port;
    let source = format!(
        r#"
[server]
database = "sqlite://rapport.db"

[[connector]]
id = "mailbox"
plugin = "builtin:email-imap"
scope = "person"
sharing = "metadata"
schedule = "every 1h"
allowed_hosts = ["127.0.0.1:{port}"]
allow_private_networks = true
oauth = {{ client_id = "{CLIENT_ID}", client_secret = {{ env = "{secret_env}" }}, redirect_uri = "{CALLBACK}" }}
[connector.settings]
host = "127.0.0.1"
port = {port}
security = "plaintext"
folders = "INBOX"
own_domains = "ours.example"
oauth_authorization_endpoint = "{issuer}/oauth/authorize"
oauth_token_endpoint = "{issuer}/oauth/token"
oauth_scopes = "openid email offline_access"
"#,
        secret_env = rapport_testkit::oauth::CLIENT_SECRET_ENV,
    );
    let config = Config::parse(&source, &dir.path().join("rapport.toml"), &env).unwrap();
    let server = Server::start(config).await.unwrap();
    let store = server.engine.store().clone();
    let mut staff: BTreeMap<&'static str, rapport_core::staff::Staff> = BTreeMap::new();
    for (name, email, level, reports_to) in [
        ("Vera", "vera@ours.example", Level::Vp, None),
        ("Sam", "sam@ours.example", Level::Manager, Some("Vera")),
        ("Ana", "ana@ours.example", Level::Manager, None),
    ] {
        let person = store
            .create_staff(
                NewStaff {
                    name: name.into(),
                    email: rapport_core::account::EmailAddress::parse(email).unwrap(),
                    level,
                    reports_to: reports_to.map(|boss: &str| staff[boss].id),
                    is_admin: false,
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        staff.insert(name, person);
    }
    let (sam, ana) = (staff["Sam"].id, staff["Ana"].id);
    let account = acme(&store, sam).await;
    store
        .add_support(
            rapport_core::permission::Authority::Operator,
            account.id,
            ana,
            None,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap()
            .with_connections(server.connections.clone()),
    );
    let mut world = crate::support::World::around(router, store.clone(), staff);
    for name in ["Vera", "Sam", "Ana"] {
        let issued = store
            .create_api_token(world.id(name), "tests", None, chrono::Utc::now())
            .await
            .unwrap();
        world.tokens.insert(name, issued.secret);
    }
    let (sam_cookie, sam_csrf) = session(&world, "Sam").await;
    connect(
        &world,
        &provider,
        "mailbox",
        &sam_cookie,
        "sam@ours.example",
    )
    .await;
    let unit = rapport_core::sharing::person_connector_id("mailbox", sam);
    let connection = store.connections(Some("mailbox"), Some(sam)).await.unwrap()[0].clone();
    assert!(
        connection.has_refresh_token,
        "offline access was asked for: the mailbox keeps syncing"
    );
    let report = server.engine.run_now(&unit, &|_| {}).await.unwrap();
    assert_eq!(
        report.outcome,
        rapport_sync::RunOutcome::Completed,
        "{report:?}"
    );

    let timeline = format!("/api/v1/accounts/{}/timeline", account.id.0);
    let mail = |page: &serde_json::Value| -> Vec<serde_json::Value> {
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["source"] == unit.as_str())
            .cloned()
            .collect()
    };
    for person in ["Sam", "Vera"] {
        let (status, page) = world.as_(person, Method::GET, &timeline, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let theirs = mail(&page);
        assert_eq!(theirs.len(), 1, "{person}: {page}");
        assert_eq!(theirs[0]["kind"], "email.received");
        assert_eq!(theirs[0]["withheld"], false);
        assert!(
            theirs[0]["summary"]
                .as_str()
                .unwrap()
                .contains("20% discount"),
            "{person}: {page}"
        );
        assert_eq!(theirs[0]["match"]["rule"], "domain");
    }
    let (_, page) = world.as_("Ana", Method::GET, &timeline, None).await;
    let anas = mail(&page);
    assert_eq!(anas.len(), 1, "{page}");
    assert_eq!(anas[0]["withheld"], true);
    assert_eq!(anas[0]["summary"], "");
    assert_eq!(anas[0]["attributes"]["subject"]["text"], "Renewal terms");
    assert!(anas[0]["attributes"]["folder"].is_null());

    // A token the server no longer takes (here: one the provider never issued) is
    // refreshed once and the sync repeated: the next message arrives.
    let keys = KeyRing::parse(&ring).unwrap();
    let held = store
        .connection_tokens(connection.id)
        .await
        .unwrap()
        .unwrap();
    let refresh = keys
        .open(
            held.refresh.as_ref().unwrap(),
            &held.key.seal_context("refresh"),
        )
        .unwrap();
    store
        .grant_connection(
            &held.key,
            rapport_store::GrantedTokens {
                access: keys.seal(
                    "not-a-token-dovecot-knows",
                    &held.key.seal_context("access"),
                ),
                access_expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
                refresh: Some(keys.seal(&refresh, &held.key.seal_context("refresh"))),
                scopes: connection.scopes.clone(),
                provider_account: None,
                sharing: rapport_core::sharing::Sharing::Metadata,
            },
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    mailbox.deliver(&client_mail(
        "followup",
        "Re: Renewal terms",
        "sam@ours.example",
        "Following up on the discount.",
    ));
    let report = server.engine.run_now(&unit, &|_| {}).await.unwrap();
    assert_eq!(
        report.outcome,
        rapport_sync::RunOutcome::Completed,
        "{report:?}"
    );
    assert_eq!(report.inserted, 1, "{report:?}");
    let refreshed = store.connection(connection.id).await.unwrap().unwrap();
    assert_eq!(refreshed.status, ConnectionStatus::Active);
    assert!(
        refreshed.token_version > held.token_version + 1,
        "refreshed"
    );
    let (_, page) = world.as_("Sam", Method::GET, &timeline, None).await;
    assert_eq!(mail(&page).len(), 2, "{page}");

    // Disconnecting stops it: the token is revoked, the next message is never read.
    let gone = disconnect_as(&world, connection.id, &sam_cookie, &sam_csrf).await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER, "{}", gone.body);
    mailbox.deliver(&client_mail(
        "later",
        "After you left",
        "sam@ours.example",
        "Are you there?",
    ));
    assert!(matches!(
        server.engine.run_now(&unit, &|_| {}).await,
        Err(rapport_sync::SyncError::UnknownConnector(_))
    ));
    let (_, page) = world.as_("Sam", Method::GET, &timeline, None).await;
    assert_eq!(mail(&page).len(), 2, "{page}");
    provider.stop().await;
}
