//! gmail through the real host against the Google stand-in (`rapport_samples::google`),
//! on a person's connection made through the stand-in's OAuth endpoints: a bounded
//! first read in pages, then only what the history says changed; an expired history
//! read again from the start without duplicates; trash, spam and deletions; metadata
//! reads that never fetch a body; Google's errors as the contract's kinds. And the same
//! message read by `email-imap` (from a real Dovecot) and by `gmail`, synced by the
//! engine into one store: one event, seen by both.

use crate::connectors::standins::{Plugged, SAM, bind, connect, deleted, ids};
use crate::connectors::support::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rapport_core::account::{Domain, EmailAddress, Lifecycle, NewAccount};
use rapport_core::permission::Authority::Operator;
use rapport_core::secret::KeyRing;
use rapport_core::sharing::Sharing;
use rapport_plugin_host::{ConnectorError, Grants, SyncPage};
use rapport_store::{Reader, Store, TimelineQuery};
use rapport_sync::{ConnectorSpec, Engine, EngineConfig, RetryPolicy, RunOutcome};
use rapport_testkit::dovecot::{self, Dovecot};
use rapport_testkit::google::{self, FakeGoogle, message_bytes};
use rapport_testkit::on_both_backends;
use std::collections::BTreeSet;

const GMAIL: Plugged = Plugged {
    plugin: rapport_testkit::GMAIL,
    connector_id: "gmail",
    scope: "https://www.googleapis.com/auth/gmail.readonly",
    sharing: Sharing::Shared,
};

const HANNAH: &str = "Hannah Weber <hannah@acme.example>";

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

/// Sam's mailbox: 22 messages from Hannah and 3 replies from Sam since the first read's
/// start; one older than it, one in spam, one in the trash.
fn fill(fake: &FakeGoogle) {
    fake.with(|state| {
        for n in 0..22 {
            let at = start() + Duration::hours(n * 7);
            let raw = message_bytes(
                &format!("acme-{n:02}@mail.acme.example"),
                HANNAH,
                &[SAM],
                &format!("Renewal question {n}"),
                at,
                None,
                &format!("Question number {n} about the renewal."),
            );
            state.put_message(SAM, &format!("in{n:02}"), &raw, &["INBOX", "UNREAD"], at);
        }
        for n in 0..3 {
            let at = start() + Duration::hours(n * 7 + 1);
            let raw = message_bytes(
                &format!("reply-{n}@mail.ours.example"),
                &format!("Sam Lee <{SAM}>"),
                &["hannah@acme.example"],
                &format!("Re: Renewal question {n}"),
                at,
                Some(&format!("acme-{n:02}@mail.acme.example")),
                "Answered.",
            );
            state.put_message(SAM, &format!("out{n}"), &raw, &["SENT"], at);
        }
        let old = Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap();
        let raw = message_bytes(
            "old@mail.acme.example",
            HANNAH,
            &[SAM],
            "Old",
            old,
            None,
            "Old.",
        );
        state.put_message(SAM, "old", &raw, &["INBOX"], old);
        let raw = message_bytes(
            "spam@spam.example",
            "x@spam.example",
            &[SAM],
            "Win",
            start(),
            None,
            "!",
        );
        state.put_message(SAM, "spam", &raw, &["SPAM"], start());
        let raw = message_bytes(
            "bin@mail.acme.example",
            HANNAH,
            &[SAM],
            "Bin",
            start(),
            None,
            "x",
        );
        state.put_message(SAM, "bin", &raw, &["TRASH"], start());
    });
}

fn events(pages: &[SyncPage]) -> Vec<&rapport_core::timeline::NewEvent> {
    pages.iter().flat_map(|page| &page.events).collect()
}

fn text<'e>(event: &'e rapport_core::timeline::NewEvent, name: &str) -> Option<&'e str> {
    match event.attributes.get(name)? {
        rapport_core::timeline::AttributeValue::Text(text) => Some(text),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_bounded_window_then_only_what_the_history_says_changed() {
    let fake = FakeGoogle::start().await;
    fill(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys, &GMAIL).await;
    let gmail = bind(&GMAIL, &fake, &database.store, &keys, connection, &[]).await;
    gmail.check().await.expect("the mailbox is there");

    // The first read: 25 messages since backfill_start, 10 a call; the old one, spam
    // and trash never listed.
    let pages = sync_all(&gmail, None).await;
    assert_eq!(pages.len(), 3, "25 messages, 10 a call");
    let mut expected: BTreeSet<String> = (0..22).map(|n| format!("in{n:02}")).collect();
    expected.extend((0..3).map(|n| format!("out{n}")));
    assert_eq!(ids(&pages), expected);
    for event in events(&pages) {
        let sent = event.key.source_id.starts_with("out");
        assert_eq!(
            event.kind.as_str(),
            if sent { "email.sent" } else { "email.received" }
        );
        // What email-imap writes, from the same mapping: the Message-ID (the shared
        // identity), the thread named by its first message, the folder.
        let id = text(event, "message_id").expect("a message id");
        assert!(id.contains("@mail."), "{id}");
        assert_eq!(
            text(event, "folder"),
            Some(if sent { "SENT" } else { "INBOX" })
        );
        assert_eq!(event.hints.emails[0].to_string(), "hannah@acme.example");
        if event.key.source_id == "out1" {
            assert_eq!(text(event, "thread_key"), Some("acme-01@mail.acme.example"));
            assert_eq!(
                event.title,
                "To hannah@acme.example: Re: Renewal question 1"
            );
        }
        if event.key.source_id == "in05" {
            assert_eq!(event.summary, "Question number 5 about the renewal.");
            assert_eq!(event.title, "From Hannah Weber: Renewal question 5");
        }
    }
    let checkpoint = pages.last().unwrap().checkpoint.clone().unwrap();
    assert!(checkpoint.contains("history_id"), "{checkpoint}");

    // Only what changed: one new, one deleted for good, one moved to the trash.
    let reads_before = fake.with(|state| state.message_reads);
    fake.with(|state| {
        let at = start() + Duration::days(20);
        let raw = message_bytes(
            "new@mail.acme.example",
            HANNAH,
            &[SAM],
            "Signed",
            at,
            None,
            "Signed.",
        );
        state.put_message(SAM, "new", &raw, &["INBOX"], at);
        state.delete_message(SAM, "in03");
        state.add_label(SAM, "in04", "TRASH");
    });
    let changes = sync_all(&gmail, Some(checkpoint)).await;
    assert_eq!(ids(&changes), BTreeSet::from(["new".to_owned()]));
    assert_eq!(
        deleted(&changes),
        BTreeSet::from(["in03".to_owned(), "in04".to_owned()])
    );
    assert_eq!(
        fake.with(|state| state.message_reads) - reads_before,
        2,
        "only the new and the relabelled message are read; a deleted one never"
    );
    let checkpoint = changes.last().unwrap().checkpoint.clone().unwrap();
    // Nothing since: nothing read.
    let quiet = sync_all(&gmail, Some(checkpoint.clone())).await;
    assert!(ids(&quiet).is_empty() && deleted(&quiet).is_empty());

    // Gmail forgets the history: 404, and the connector reads the window again under
    // the same keys (stored ones are replaced, not doubled).
    fake.with(|state| state.expire_history(SAM));
    let again = sync_all(&gmail, Some(checkpoint)).await;
    let mut now_expected = expected.clone();
    now_expected.remove("in03");
    now_expected.remove("in04");
    now_expected.insert("new".into());
    assert_eq!(ids(&again), now_expected);
    let back_to_history = again.last().unwrap().checkpoint.clone().unwrap();
    assert!(back_to_history.contains("history_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_metadata_reads_and_googles_errors() {
    let fake = FakeGoogle::start().await;
    fill(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let metadata = Plugged {
        sharing: Sharing::Metadata,
        ..GMAIL
    };
    let connection = connect(&database.store, &fake, &keys, &metadata).await;

    // A metadata connection reads headers only: subject, people, thread, never a body.
    let gmail = bind(
        &metadata,
        &fake,
        &database.store,
        &keys,
        connection,
        &[("labels", "SENT")],
    )
    .await;
    let pages = sync_all(&gmail, None).await;
    assert_eq!(
        ids(&pages),
        BTreeSet::from(["out0".into(), "out1".into(), "out2".into()]),
        "only the chosen label"
    );
    for event in events(&pages) {
        assert_eq!(event.summary, "", "no body was read");
        assert!(text(event, "subject").unwrap().starts_with("Re: Renewal"));
        assert!(text(event, "thread_key").is_some());
    }

    // A label the mailbox does not have is a configuration error that names it.
    let typo = bind(
        &metadata,
        &fake,
        &database.store,
        &keys,
        connection,
        &[("labels", "Label_404")],
    )
    .await;
    let error = typo.check().await.unwrap_err().to_string();
    assert!(error.contains("no label `Label_404`"), "{error}");
    let wrong = bind(
        &metadata,
        &fake,
        &database.store,
        &keys,
        connection,
        &[("read", "everything")],
    )
    .await;
    assert!(matches!(
        connector_error(wrong.sync(None).await),
        ConnectorError::Config(text) if text.contains("read = `everything`")
    ));

    fake.with(|state| state.faults.push_back(google::too_many_requests(4)));
    assert!(matches!(
        connector_error(gmail.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 4_000,
            ..
        }
    ));
    fake.with(|state| state.faults.push_back(google::rate_limited(9)));
    assert!(matches!(
        connector_error(gmail.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 9_000,
            ..
        }
    ));
    fake.with(|state| {
        state
            .faults
            .push_back(rapport_testkit::upstream::Reply::status(502, "bad gateway"))
    });
    assert!(matches!(
        connector_error(gmail.sync(None).await),
        ConnectorError::Transient(_)
    ));
    // An expired access token: one refresh, the call repeated.
    fake.with(|state| state.expire_access_tokens());
    let before = fake.with(|state| state.refreshes);
    gmail.sync(None).await.expect("refreshed and repeated");
    assert_eq!(fake.with(|state| state.refreshes), before + 1);
}

on_both_backends!(the_same_message_through_imap_and_gmail_is_one_event);

/// The client's renewal thread is in the shared IMAP mailbox and in Sam's Gmail: the
/// engine syncs both into one store, and each message is one event on Acme's timeline,
/// found under either connector.
async fn the_same_message_through_imap_and_gmail_is_one_event(store: Store) {
    let at = |hours: i64| start() + Duration::hours(hours);
    let thread = [
        message_bytes(
            "renewal-1@mail.acme.example",
            HANNAH,
            &[SAM],
            "Renewal 2027",
            at(0),
            None,
            "Shall we renew?",
        ),
        message_bytes(
            "renewal-2@mail.ours.example",
            &format!("Sam Lee <{SAM}>"),
            &["hannah@acme.example"],
            "Re: Renewal 2027",
            at(2),
            Some("renewal-1@mail.acme.example"),
            "Yes, the order form is attached.",
        ),
    ];
    let bodies: Vec<&[u8]> = thread.iter().map(Vec::as_slice).collect();
    let Some(mail_server) = Dovecot::start(&bodies) else {
        return;
    };
    let fake = FakeGoogle::start().await;
    fake.with(|state| {
        state.put_message(SAM, "g1", &thread[0], &["INBOX"], at(0));
        state.put_message(SAM, "g2", &thread[1], &["SENT"], at(2));
    });
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&store, &fake, &keys, &GMAIL).await;
    let sam = store
        .staff_by_email(&EmailAddress::parse(SAM).unwrap())
        .await
        .unwrap()
        .unwrap();
    let acme = store
        .create_account(
            Operator,
            NewAccount {
                name: "Acme".into(),
                parent: None,
                lifecycle: Lifecycle::Active,
                renewal_date: None,
                domains: vec![Domain::parse("acme.example").unwrap()],
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner: sam.id,
            },
            None,
            Utc::now(),
        )
        .await
        .unwrap();

    let host = host();
    let imap = host
        .load(std::path::Path::new(rapport_testkit::EMAIL_IMAP))
        .await
        .unwrap()
        .connector(Grants {
            connector_id: "mail".into(),
            settings: [
                ("host", "127.0.0.1".to_owned()),
                ("port", mail_server.imap_port.to_string()),
                ("security", "plaintext".into()),
                ("username", dovecot::USER.into()),
                ("folders", "INBOX".into()),
                ("own_domains", "ours.example".into()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
            secrets: [("password".to_owned(), dovecot::PASSWORD.to_owned())].into(),
            allowed_hosts: vec![Dovecot::grant(mail_server.imap_port)],
            allow_private_networks: true,
            ..Default::default()
        })
        .unwrap();
    let gmail = bind(&GMAIL, &fake, &store, &keys, connection, &[]).await;
    let gmail_id = gmail.id().to_owned();
    let spec = |connector| ConnectorSpec {
        connector,
        schedule: "every 10m".parse().unwrap(),
        enabled: true,
        fingerprint: "v1".into(),
    };
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            node_id: "test".into(),
            lease_ttl: std::time::Duration::from_secs(30),
            poll_interval: std::time::Duration::from_millis(50),
            retry: RetryPolicy::default(),
            pages_per_run_max: 100,
            runs_max: 4,
        },
        vec![spec(imap), spec(gmail)],
    )
    .await
    .expect("start the engine");
    // Each order: IMAP first then Gmail, and Gmail again (a second sighting changes
    // nothing).
    for id in ["mail", gmail_id.as_str(), gmail_id.as_str()] {
        let report = engine.run_now(id, &|_| {}).await.expect("a run");
        assert!(
            matches!(report.outcome, RunOutcome::Completed),
            "{id}: {report:?}"
        );
    }

    let on_acme = |connectors: Vec<String>| {
        let mut query = TimelineQuery::account(acme.id, Reader::Operator);
        query.connectors = connectors;
        query.limit = 50;
        let store = store.clone();
        async move {
            let page = store.timeline(&query).await.unwrap();
            page.events
                .into_iter()
                .filter(|stored| stored.event.kind.as_str().starts_with("email."))
                .map(|stored| match stored.event.attributes.get("message_id") {
                    Some(rapport_core::timeline::AttributeValue::Text(id)) => id.clone(),
                    other => panic!("a message id, not {other:?}"),
                })
                .collect::<Vec<_>>()
        }
    };
    let everything = on_acme(Vec::new()).await;
    assert_eq!(
        everything,
        ["renewal-2@mail.ours.example", "renewal-1@mail.acme.example"],
        "each message once, newest first"
    );
    assert_eq!(
        on_acme(vec!["mail".into()]).await,
        everything,
        "IMAP saw both"
    );
    assert_eq!(
        on_acme(vec![gmail_id.clone()]).await,
        everything,
        "so did Gmail"
    );
}
