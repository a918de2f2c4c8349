//! email-imap through the real host against a real Dovecot on loopback, its INBOX filled
//! with the RFC and malformed fixture messages: paging, resuming, a UIDVALIDITY change,
//! TLS and STARTTLS with a private CA, and refusals.

use crate::connectors::support::*;
use rapport_plugin_host::{Connector, ConnectorError, PluginError, PluginHost};
use rapport_testkit::dovecot::{self, Dovecot};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Every fixture message, RFC examples first, by name.
pub fn fixture_messages() -> Vec<(String, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/email");
    let mut messages = Vec::new();
    for set in ["rfc", "malformed"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(set))
            .expect("the email fixtures")
            .flatten()
            .map(|entry| entry.path())
            .collect();
        files.sort();
        for file in files {
            let name = format!("{set}/{}", file.file_name().unwrap().to_string_lossy());
            messages.push((name, std::fs::read(&file).expect("read a fixture")));
        }
    }
    messages
}

pub async fn imap(
    host: &PluginHost,
    server: &Dovecot,
    security: &str,
    extra: &[(&str, &str)],
) -> Connector {
    let port = match security {
        "tls" => server.imaps_port,
        _ => server.imap_port,
    };
    let port_text = port.to_string();
    let mut settings = vec![
        ("host", "127.0.0.1"),
        ("port", port_text.as_str()),
        ("security", security),
        ("username", dovecot::USER),
        ("folders", "INBOX"),
        ("own_domains", "innosoft.com"),
    ];
    settings.extend_from_slice(extra);
    connector(
        host,
        rapport_testkit::EMAIL_IMAP,
        "mail",
        &Dovecot::grant(port),
        &settings,
        &[("password", dovecot::PASSWORD)],
    )
    .await
}

fn ids(pages: &[rapport_plugin_host::SyncPage]) -> Vec<String> {
    pages
        .iter()
        .flat_map(|page| &page.events)
        .map(|event| event.key.source_id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_every_message_once_pages_and_resumes() {
    let messages = fixture_messages();
    let bodies: Vec<&[u8]> = messages.iter().map(|(_, body)| body.as_slice()).collect();
    let Some(mut server) = Dovecot::start(&bodies) else {
        return;
    };
    let host = host();
    let mail = imap(&host, &server, "plaintext", &[("messages_per_page", "10")]).await;
    mail.check().await.expect("check logs in and finds INBOX");

    let pages = sync_all(&mail, None).await;
    assert_eq!(pages.len(), messages.len().div_ceil(10));
    let first = ids(&pages);
    // Two fixture messages are byte-for-byte the same (malformed/009 and 011): one
    // event, by its content hash. Any other repeat would be a bug.
    let mut counts = std::collections::BTreeMap::new();
    for id in &first {
        *counts.entry(id.as_str()).or_insert(0) += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(repeated.len(), 1, "{repeated:?}");
    assert!(repeated[0].0.starts_with("sha256:"));
    // Malformed messages do not abort anything; nearly all carry something to keep.
    assert!(
        first.len() >= messages.len() - 3,
        "{} of {}",
        first.len(),
        messages.len()
    );

    // From Ned Freed's domain (ours here) is sent; to him is received.
    let events: Vec<_> = pages.iter().flat_map(|page| &page.events).collect();
    assert!(events.iter().any(|event| {
        event.kind.as_str() == "email.received"
            && event
                .hints
                .emails
                .iter()
                .any(|email| email.to_string() == "nsb@nsb.fv.com")
            && event
                .hints
                .emails
                .iter()
                .all(|email| !email.to_string().ends_with("innosoft.com"))
    }));

    // Caught up: nothing; then exactly the new message.
    let checkpoint = pages.last().unwrap().checkpoint.clone();
    let idle = sync_all(&mail, checkpoint.clone()).await;
    assert!(ids(&idle).is_empty());
    server.deliver(
        b"From: Ann Client <ann@globex.example>\r\nTo: Ned <ned@innosoft.com>\r\n\
          Subject: Renewal\r\nMessage-ID: <renewal-1@globex.example>\r\n\
          Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n\r\nCan we talk about the renewal?\r\n",
    );
    let later = sync_all(&mail, idle.last().unwrap().checkpoint.clone()).await;
    assert_eq!(
        ids(&later),
        vec!["msgid:renewal-1@globex.example".to_owned()]
    );
    let renewal = &later[0].events[0];
    assert_eq!(renewal.title, "From Ann Client: Renewal");
    assert_eq!(renewal.summary, "Can we talk about the renewal?");

    // Bytes that are not mail at all are reported and skipped, and the checkpoint
    // moves past them: the next message still arrives.
    server.deliver(b"\x00\x01\x02 not a message \xff\xfe\r\n");
    let skipped = sync_all(&mail, later.last().unwrap().checkpoint.clone()).await;
    assert!(ids(&skipped).is_empty());
    assert_ne!(
        skipped.last().unwrap().checkpoint,
        later.last().unwrap().checkpoint,
        "the checkpoint moved past the unreadable message"
    );
    server.deliver(
        b"From: Ann Client <ann@globex.example>\r\nSubject: Again\r\n\
          Message-ID: <renewal-2@globex.example>\r\nDate: Tue, 03 Feb 2026 10:00:00 +0000\r\n\r\nHello?\r\n",
    );
    let after = sync_all(&mail, skipped.last().unwrap().checkpoint.clone()).await;
    assert_eq!(
        ids(&after),
        vec!["msgid:renewal-2@globex.example".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uidvalidity_change_rereads_the_folder_as_the_same_events() {
    let messages = fixture_messages();
    let bodies: Vec<&[u8]> = messages.iter().map(|(_, body)| body.as_slice()).collect();
    let Some(server) = Dovecot::start(&bodies) else {
        return;
    };
    let host = host();
    let mail = imap(&host, &server, "plaintext", &[]).await;
    let pages = sync_all(&mail, None).await;
    let before: BTreeSet<String> = ids(&pages).into_iter().collect();
    let checkpoint = pages.last().unwrap().checkpoint.clone().unwrap();

    server.reset_uids();
    let after = sync_all(&mail, Some(checkpoint.clone())).await;
    let reread: BTreeSet<String> = ids(&after).into_iter().collect();
    // Everything is read again, under the same ids: the store upserts, nothing doubles.
    assert_eq!(reread, before);
    let new_checkpoint = after.last().unwrap().checkpoint.clone().unwrap();
    assert_ne!(
        new_checkpoint, checkpoint,
        "the new UIDVALIDITY is recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_starttls_trust_the_configured_ca_only() {
    let messages = fixture_messages();
    let Some(server) = Dovecot::start(&[&messages[0].1, &messages[2].1]) else {
        return;
    };
    let host = host();
    for security in ["tls", "starttls"] {
        let mail = imap(
            &host,
            &server,
            security,
            &[("ca_certificate", &server.ca_pem)],
        )
        .await;
        let pages = sync_all(&mail, None).await;
        assert_eq!(ids(&pages).len(), 2, "{security}");

        // Without the private CA the server's certificate is not trusted: a
        // configuration problem, said as such.
        let untrusting = imap(&host, &server, security, &[]).await;
        match connector_error(untrusting.sync(None).await) {
            ConnectorError::Config(message) => {
                assert!(message.contains("not trusted"), "{security}: {message}")
            }
            other => panic!("{security}: expected a configuration error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_passwords_folders_and_grants_are_told_apart() {
    let Some(server) = Dovecot::start(&[]) else {
        return;
    };
    let host = host();
    let port = server.imap_port.to_string();
    let base = [
        ("host", "127.0.0.1"),
        ("port", port.as_str()),
        ("security", "plaintext"),
        ("username", dovecot::USER),
    ];
    let wrong_password = connector(
        &host,
        rapport_testkit::EMAIL_IMAP,
        "mail",
        &Dovecot::grant(server.imap_port),
        &base,
        &[("password", "not-the-password")],
    )
    .await;
    assert!(matches!(
        connector_error(wrong_password.sync(None).await),
        ConnectorError::Auth(_)
    ));

    let missing_folder = imap(
        &host,
        &server,
        "plaintext",
        &[("folders", "INBOX, Archive/2019")],
    )
    .await;
    match connector_error(missing_folder.sync(None).await) {
        ConnectorError::Config(message) => assert!(message.contains("Archive/2019"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
    // The default folders skip a missing Sent instead.
    let defaults = connector(
        &host,
        rapport_testkit::EMAIL_IMAP,
        "mail",
        &Dovecot::grant(server.imap_port),
        &base,
        &[("password", dovecot::PASSWORD)],
    )
    .await;
    assert!(ids(&sync_all(&defaults, None).await).is_empty());

    // A port the operator did not grant is refused by the host, as a network denial.
    let ungranted = connector(
        &host,
        rapport_testkit::EMAIL_IMAP,
        "mail",
        &Dovecot::grant(server.imaps_port),
        &base,
        &[("password", dovecot::PASSWORD)],
    )
    .await;
    match ungranted.sync(None).await {
        Err(PluginError::ForbiddenNetwork { target, .. }) => {
            assert_eq!(target, format!("tcp://127.0.0.1:{}", server.imap_port))
        }
        other => panic!("expected a network denial, got {other:?}"),
    }
}

/// email-imap signing in with OAuth 2.0 against a Dovecot that validates tokens with
/// the provider (RFC 7662 introspection), through the real host and a connection's
/// real token source: both SASL mechanisms, a token for another account refused as
/// `auth`, and a connector with neither a connection nor a password told what to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signs_in_with_the_connections_oauth_token() {
    use rapport_core::secret::KeyRing;
    use rapport_sync::connections::ConnectionTokenSource;
    use rapport_sync::oauth::{OAuthClient, OAuthProvider};
    use rapport_testkit::oauth::{CLIENT_ID, CLIENT_SECRET, Provider};
    const REDIRECT: &str = "http://127.0.0.1:9/connections/callback";

    let Some(provider) = Provider::start(REDIRECT, 3600).await else {
        return;
    };
    let messages = fixture_messages();
    let bodies: Vec<&[u8]> = messages.iter().map(|(_, body)| body.as_slice()).collect();
    let Some(server) =
        Dovecot::start_with_oauth(&bodies[..3], "sam@ours.example", &provider.introspection())
    else {
        return;
    };
    let client = OAuthClient::new(OAuthProvider {
        authorization_endpoint: provider.authorization_endpoint(),
        token_endpoint: provider.token_endpoint(),
        revocation_endpoint: Some(provider.revocation_endpoint()),
        client_id: CLIENT_ID.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        redirect_uri: REDIRECT.into(),
        scopes: vec!["openid".into(), "email".into(), "offline_access".into()],
        extra_parameters: vec![("prompt".into(), "consent".into())],
    })
    .unwrap();
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let store = database.store.clone();
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let host = host();
    let plugin = host
        .load(std::path::Path::new(rapport_testkit::EMAIL_IMAP))
        .await
        .unwrap();

    // A person's connection, as connecting in the browser makes it.
    let connect = |login: &'static str| {
        let (store, client, keys, provider) =
            (store.clone(), client.clone(), keys.clone(), &provider);
        async move {
            let person = store
                .create_staff(
                    rapport_core::staff::NewStaff {
                        name: login.into(),
                        email: rapport_core::account::EmailAddress::parse(login).unwrap(),
                        level: rapport_core::staff::Level::Manager,
                        reports_to: None,
                        is_admin: false,
                    },
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
            let request = client.authorization_request().unwrap();
            let back = url::Url::parse(&provider.authorize(&request.url, login).await).unwrap();
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
            let key = rapport_store::ConnectionKey {
                connector: "mail".into(),
                owner: Some(person.id),
            };
            let connection = store
                .grant_connection(
                    &key,
                    rapport_store::GrantedTokens {
                        access: keys.seal(&issued.access_token, &key.seal_context("access")),
                        access_expires_at: issued.expires_at,
                        refresh: issued
                            .refresh_token
                            .as_deref()
                            .map(|refresh| keys.seal(refresh, &key.seal_context("refresh"))),
                        scopes: Vec::new(),
                        provider_account: None,
                        sharing: rapport_core::sharing::Sharing::Shared,
                    },
                    chrono::Utc::now(),
                )
                .await
                .unwrap();
            (person, connection)
        }
    };
    let bind =
        |owner_email: &str, connection: rapport_store::ConnectionId, mechanism: Option<&str>| {
            let mut settings: BTreeMap<String, String> = [
                ("host", "127.0.0.1".to_owned()),
                ("port", server.imap_port.to_string()),
                ("security", "plaintext".to_owned()),
                ("folders", "INBOX".to_owned()),
                (
                    "oauth_authorization_endpoint",
                    provider.authorization_endpoint(),
                ),
                ("oauth_token_endpoint", provider.token_endpoint()),
                ("oauth_scopes", "openid email offline_access".to_owned()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
            if let Some(mechanism) = mechanism {
                settings.insert("oauth_mechanism".into(), mechanism.into());
            }
            plugin
                .connector(rapport_plugin_host::Grants {
                    connector_id: "mail".into(),
                    settings,
                    allowed_hosts: vec![Dovecot::grant(server.imap_port)],
                    allow_private_networks: true,
                    connection: Some(rapport_plugin_host::Connection {
                        id: format!("mail/{connection}"),
                        scope: rapport_plugin_host::ConnectionScope::Person,
                        owner_email: Some(owner_email.to_owned()),
                        provider_account: None,
                        sharing: Some(rapport_core::sharing::Sharing::Shared),
                    }),
                    tokens: Some(std::sync::Arc::new(ConnectionTokenSource::new(
                        store.clone(),
                        keys.clone(),
                        client.clone(),
                        connection,
                        "node-a",
                    ))),
                    ..Default::default()
                })
                .unwrap()
        };

    let (_, sams) = connect("sam@ours.example").await;
    for mechanism in [None, Some("xoauth2"), Some("oauthbearer")] {
        let mail = bind("sam@ours.example", sams.id, mechanism);
        mail.check()
            .await
            .unwrap_or_else(|error| panic!("{mechanism:?}: {error}"));
        let pages = sync_all(&mail, None).await;
        assert_eq!(ids(&pages).len(), 3, "{mechanism:?}");
    }
    // Ana's token is hers: Dovecot will not open Sam's mailbox with it.
    let (_, anas) = connect("ana@ours.example").await;
    let intruder = bind("sam@ours.example", anas.id, None);
    let refused = connector_error(intruder.check().await);
    assert!(
        matches!(&refused, ConnectorError::Auth(text) if text.contains("refused the login of sam@ours.example")),
        "{refused:?}"
    );
    // Without a connection it needs its password, and says so.
    let plain = connector(
        &host,
        rapport_testkit::EMAIL_IMAP,
        "mail",
        &Dovecot::grant(server.imap_port),
        &[
            ("host", "127.0.0.1"),
            ("port", &server.imap_port.to_string()),
            ("security", "plaintext"),
            ("username", "sam@ours.example"),
        ],
        &[],
    )
    .await;
    let missing = connector_error(plain.check().await);
    assert!(
        matches!(&missing, ConnectorError::Config(text) if text.contains("`password` is required")),
        "{missing:?}"
    );
    provider.stop().await;
}
