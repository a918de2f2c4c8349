//! All three reference connectors configured against their upstreams and run by the
//! sync engine into a real store (SQLite and PostgreSQL): one client's timeline
//! interleaves its email, billing and support in time order, each placed for the right
//! reason; a second sync adds nothing.

use crate::connectors::imap::fixture_messages;
use chrono::{DateTime, Utc};
use rapport_core::account::{Contact, Domain, EmailAddress, Lifecycle, NewAccount};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff};
use rapport_core::timeline::MatchReason;
use rapport_plugin_host::{Connector, Grants, Plugin, PluginHost};
use rapport_store::{Store, TimelineQuery};
use rapport_sync::{ConnectorSpec, Engine, EngineConfig, RetryPolicy, RunOutcome};
use rapport_testkit::dovecot::{self, Dovecot};
use rapport_testkit::on_both_backends;
use rapport_testkit::stripe::{self as fake_stripe, FakeStripe};
use rapport_testkit::zendesk::{self as fake_zendesk, FakeZendesk};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

on_both_backends!(one_clients_timeline_interleaves_mail_billing_and_support);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn bind(
    host: &PluginHost,
    path: &str,
    id: &str,
    grant: String,
    settings: &[(&str, String)],
    secrets: &[(&str, &str)],
) -> ConnectorSpec {
    let plugin: Plugin = host.load(Path::new(path)).await.expect("load the plugin");
    let connector: Connector = plugin
        .connector(Grants {
            connector_id: id.into(),
            settings: settings
                .iter()
                .map(|(key, value)| ((*key).to_owned(), value.clone()))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            allowed_hosts: vec![grant],
            allow_private_networks: true,
            ..Default::default()
        })
        .expect("bind the connector");
    ConnectorSpec {
        connector,
        schedule: "every 10m".parse().unwrap(),
        enabled: true,
        fingerprint: "v1".into(),
    }
}

async fn one_clients_timeline_interleaves_mail_billing_and_support(store: Store) {
    // The client's mail, among the fixture messages.
    let mut messages: Vec<Vec<u8>> = fixture_messages()
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    messages.push(
        b"From: Ann Client <ann@acme-client.example>\r\nTo: Vera <vera@rapport.example>\r\n\
          Subject: Blank invoice PDF\r\nMessage-ID: <m1@acme-client.example>\r\n\
          Date: Mon, 02 Feb 2026 08:30:00 +0000\r\n\r\nOur invoice PDF is blank.\r\n"
            .to_vec(),
    );
    messages.push(
        b"From: Vera <vera@rapport.example>\r\nTo: Bob <bob@acme-client.example>\r\n\
          Subject: Re: Blank invoice PDF\r\nMessage-ID: <m2@rapport.example>\r\n\
          In-Reply-To: <m1@acme-client.example>\r\nReferences: <m1@acme-client.example>\r\n\
          Date: Wed, 04 Feb 2026 09:00:00 +0000\r\n\r\nFixed; thanks for your patience.\r\n"
            .to_vec(),
    );
    let bodies: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let Some(mail_server) = Dovecot::start(&bodies) else {
        return;
    };

    let stripe = FakeStripe::start("rk_test").await;
    let day = |text: &str| at(text).timestamp();
    stripe.push(
        "customer.subscription.created",
        day("2026-02-01T12:00:00Z"),
        fake_stripe::subscription("sub_acme", "cus_acme", "Pro", 5_000),
        None,
    );
    stripe.push(
        "invoice.paid",
        day("2026-02-03T12:00:00Z"),
        fake_stripe::invoice("in_acme", "cus_acme", "ACME-1", 5_000, None),
        None,
    );
    stripe.push(
        "invoice.paid",
        day("2026-02-03T13:00:00Z"),
        fake_stripe::invoice("in_other", "cus_unknown", "X-1", 100, None),
        None,
    );

    let zendesk = FakeZendesk::start("agent@rapport.example", "zd").await;
    let organization = fake_zendesk::organizations()[1]["id"].as_u64().unwrap();
    let requester = fake_zendesk::users()[0]["id"].as_u64().unwrap();
    zendesk.upsert_ticket(fake_zendesk::ticket(
        501,
        "Invoice PDF is blank",
        "solved",
        organization,
        requester,
        "2026-02-02T09:00:00Z",
        "2026-02-04T10:00:00Z",
    ));
    zendesk.add_audit(fake_zendesk::audit(
        9501,
        501,
        "2026-02-04T10:00:00Z",
        8501,
        "Fixed in today's release.",
        "open",
        "solved",
    ));

    // The client, known by its Stripe customer, its Zendesk organization, its domain
    // and one contact; and a second client the fixture mail goes to.
    let now = Utc::now();
    let owner = store
        .create_staff(
            NewStaff {
                name: "Vera VP".into(),
                email: EmailAddress::parse("vera@rapport.example").unwrap(),
                level: Level::Vp,
                reports_to: None,
                is_admin: false,
            },
            now,
        )
        .await
        .unwrap();
    let acme = store
        .create_account(
            Operator,
            NewAccount {
                name: "Acme".into(),
                parent: None,
                lifecycle: Lifecycle::Active,
                renewal_date: None,
                domains: vec![Domain::parse("acme-client.example").unwrap()],
                external_ids: vec![
                    "stripe:cus_acme".parse().unwrap(),
                    format!("zendesk_org:{organization}").parse().unwrap(),
                ],
                contacts: vec![Contact {
                    name: Some("Ann Client".into()),
                    email: EmailAddress::parse("ann@acme-client.example").unwrap(),
                    title: Some("CFO".into()),
                }],
                owner: owner.id,
            },
            None,
            now,
        )
        .await
        .unwrap();
    let innosoft = store
        .create_account(
            Operator,
            NewAccount {
                name: "Innosoft".into(),
                parent: None,
                lifecycle: Lifecycle::Active,
                renewal_date: None,
                domains: vec![Domain::parse("innosoft.com").unwrap()],
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner: owner.id,
            },
            None,
            now,
        )
        .await
        .unwrap();

    let host = crate::connectors::support::host();
    let specs = vec![
        bind(
            &host,
            rapport_testkit::BILLING_STRIPE,
            "stripe",
            stripe.upstream.grant(),
            &[("base_url", stripe.upstream.url())],
            &[("api_key", "rk_test")],
        )
        .await,
        bind(
            &host,
            rapport_testkit::SUPPORT_ZENDESK,
            "zendesk",
            zendesk.upstream.grant(),
            &[
                ("base_url", zendesk.upstream.url()),
                ("email", "agent@rapport.example".into()),
            ],
            &[("api_token", "zd")],
        )
        .await,
        bind(
            &host,
            rapport_testkit::EMAIL_IMAP,
            "mail",
            Dovecot::grant(mail_server.imap_port),
            &[
                ("host", "127.0.0.1".into()),
                ("port", mail_server.imap_port.to_string()),
                ("security", "plaintext".into()),
                ("username", dovecot::USER.into()),
                ("folders", "INBOX".into()),
                ("own_domains", "rapport.example".into()),
                ("messages_per_page", "10".into()),
            ],
            &[("password", dovecot::PASSWORD)],
        )
        .await,
    ];
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            node_id: "test".into(),
            lease_ttl: Duration::from_secs(30),
            poll_interval: Duration::from_millis(50),
            retry: RetryPolicy {
                base: Duration::from_secs(1),
                cap: Duration::from_secs(60),
                ..RetryPolicy::default()
            },
            pages_per_run_max: 100,
            runs_max: 16,
        },
        specs,
    )
    .await
    .expect("start the engine");

    let mut first = BTreeMap::new();
    for id in ["stripe", "zendesk", "mail"] {
        let report = engine.run_now(id, &|_| {}).await.expect("a run");
        assert!(
            matches!(report.outcome, RunOutcome::Completed),
            "{id}: {report:?}"
        );
        assert!(report.inserted > 0, "{id}: {report:?}");
        first.insert(id, report.inserted);
    }
    assert_eq!(first["stripe"], 3);
    assert_eq!(first["zendesk"], 3, "the ticket, the reply and the solve");

    // Acme's timeline (without the handoff its creation wrote): newest first, all three
    // sources, each placed for its reason.
    let mut query = TimelineQuery::account(acme.id, rapport_store::Reader::Operator);
    query.connectors = vec!["stripe".into(), "zendesk".into(), "mail".into()];
    query.limit = 100;
    let page = store.timeline(&query).await.unwrap();
    let lines: Vec<(String, String, String)> = page
        .events
        .iter()
        .map(|stored| {
            let event = &stored.event;
            let reason = match &event.placement.as_ref().expect("placed").reason {
                MatchReason::ExternalId { external_id } => format!("external id {external_id}"),
                MatchReason::ContactEmail { email } => format!("contact {email}"),
                MatchReason::Domain { domain } => format!("domain {domain}"),
                other => format!("{other:?}"),
            };
            (
                event.occurred_at.to_rfc3339(),
                event.key.connector.as_str().to_owned(),
                format!("{} ({reason})", event.kind.as_str()),
            )
        })
        .collect();
    let zendesk_reason = format!("external id zendesk_org:{organization}");
    let expected: Vec<(String, String, String)> = vec![
        (
            "2026-02-04T10:00:00+00:00",
            "zendesk",
            format!("support.comment.added ({zendesk_reason})"),
        ),
        (
            "2026-02-04T10:00:00+00:00",
            "zendesk",
            format!("support.ticket.solved ({zendesk_reason})"),
        ),
        (
            "2026-02-04T09:00:00+00:00",
            "mail",
            "email.sent (domain acme-client.example)".into(),
        ),
        (
            "2026-02-03T12:00:00+00:00",
            "stripe",
            "billing.invoice.paid (external id stripe:cus_acme)".into(),
        ),
        (
            "2026-02-02T09:00:00+00:00",
            "zendesk",
            format!("support.ticket.created ({zendesk_reason})"),
        ),
        (
            "2026-02-02T08:30:00+00:00",
            "mail",
            "email.received (contact ann@acme-client.example)".into(),
        ),
        (
            "2026-02-01T12:00:00+00:00",
            "stripe",
            "billing.subscription.created (external id stripe:cus_acme)".into(),
        ),
    ]
    .into_iter()
    .map(|(time, connector, what)| (time.to_owned(), connector.to_owned(), what))
    .collect();
    // Same-instant events may come in either order; compare as sorted within a time.
    let normalise = |mut lines: Vec<(String, String, String)>| {
        lines.sort_by(|a, b| b.0.cmp(&a.0).then(a.2.cmp(&b.2)));
        lines
    };
    assert!(
        page.events
            .windows(2)
            .all(|pair| pair[0].event.occurred_at >= pair[1].event.occurred_at),
        "newest first"
    );
    assert_eq!(normalise(lines), normalise(expected));

    // The fixture mail to Ned Freed went to Innosoft by its domain.
    let innosoft_page = store
        .timeline(&TimelineQuery::account(
            innosoft.id,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    assert!(!innosoft_page.events.is_empty());
    // The unknown Stripe customer waits in the unmatched inbox.
    let waiting = store
        .unmatched_events(rapport_store::Reader::Operator, Some("stripe"), None, 10)
        .await
        .unwrap();
    assert_eq!(waiting.events.len(), 1);

    // A second sync of each adds and changes nothing.
    for id in ["stripe", "zendesk", "mail"] {
        let report = engine.run_now(id, &|_| {}).await.expect("a run");
        assert!(
            matches!(report.outcome, RunOutcome::Completed),
            "{id}: {report:?}"
        );
        assert_eq!(
            (report.inserted, report.updated),
            (0, 0),
            "{id}: {report:?}"
        );
    }
    let again = store.timeline(&query).await.unwrap();
    assert_eq!(again.events.len(), page.events.len());
}
