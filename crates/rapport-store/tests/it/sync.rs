//! Identity resolution and page commits on both backends: events placed by hints,
//! ambiguous ones waiting, identity changes placing waiting events, a page's events,
//! deletes and checkpoint committed together.

use crate::support::*;
use chrono::Duration as Span;
use rapport_core::permission::Authority::Operator;
use rapport_core::timeline::{AccountHints, EventKind, MatchReason, NewEvent};
use rapport_store::{ConnectorState, Error, PageWrite, RunRecord, Store, TimelineQuery};
use std::time::Duration;

on_both_backends!(
    events_are_placed_by_identity_resolution,
    ambiguous_events_wait_with_their_candidates,
    identity_changes_place_waiting_events,
    a_page_commits_events_deletes_and_checkpoint_together,
    a_lost_lease_commits_nothing,
    leases_exclude_and_expire,
    run_records_and_config_changes_drive_the_state,
    checks_are_due_after_a_config_change_and_recorded,
    a_dead_holders_lease_is_taken_over_only_as_it_was,
    a_page_no_backend_could_store_alike_is_refused,
    writes_that_fail_in_the_storage_are_remembered_until_one_succeeds,
);

const TTL: Duration = Duration::from_secs(30);

fn hinted(source_id: &str, at_hours: i64, hints: AccountHints) -> NewEvent {
    let mut event = NewEvent::new(
        "feed",
        source_id,
        EventKind::parse("support.ticket.created").unwrap(),
        hours(at_hours),
        format!("ticket {source_id}"),
    );
    event.hints = hints;
    event
}

fn by_email(address: &str) -> AccountHints {
    AccountHints {
        emails: vec![email(address)],
        ..AccountHints::default()
    }
}

fn by_external(id: &str) -> AccountHints {
    AccountHints {
        external_ids: vec![external(id)],
        ..AccountHints::default()
    }
}

async fn registered(store: &Store) {
    store.register_connector("feed", "v1", true).await.unwrap();
}

async fn events_are_placed_by_identity_resolution(store: Store) {
    let org = small_org(&store).await;
    let mut acme = new_account("Acme", org.mia.id);
    acme.domains = vec![domain("acme.example")];
    acme.external_ids = vec![external("stripe:cus_1")];
    acme.contacts = vec![contact("jane@partner.example", "Jane")];
    let acme = store
        .create_account(Operator, acme, None, t0())
        .await
        .unwrap()
        .id;

    let events = [
        hinted("1", 1, by_external("stripe:cus_1")),
        hinted("2", 2, by_email("jane@partner.example")),
        hinted("3", 3, by_email("bob@eu.acme.example")),
        hinted("4", 4, by_email("someone@gmail.com")),
        hinted("5", 5, by_email("nobody@unknown.example")),
    ];
    store.upsert_events(&events, hours(6)).await.unwrap();

    let page = store
        .timeline(&TimelineQuery {
            connectors: vec!["feed".into()],
            ..TimelineQuery::account(acme, rapport_store::Reader::Operator)
        })
        .await
        .unwrap();
    let reasons: Vec<(&str, &str)> = page
        .events
        .iter()
        .map(|event| {
            let placement = event.event.placement.as_ref().unwrap();
            (event.event.key.source_id.as_str(), placement.reason.rule())
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("3", "domain"),
            ("2", "contact_email"),
            ("1", "external_id")
        ]
    );
    let inbox = store
        .unmatched_events(rapport_store::Reader::Operator, None, None, 50)
        .await
        .unwrap();
    let waiting: Vec<&str> = inbox
        .events
        .iter()
        .map(|event| event.event.key.source_id.as_str())
        .collect();
    assert_eq!(waiting, ["5", "4"], "free mail never matches by domain");
}

async fn ambiguous_events_wait_with_their_candidates(store: Store) {
    let org = small_org(&store).await;
    let mut first = new_account("Shared One", org.mia.id);
    first.domains = vec![domain("shared.example")];
    let first = store
        .create_account(Operator, first, None, t0())
        .await
        .unwrap()
        .id;
    let mut second = new_account("Shared Two", org.max.id);
    second.domains = vec![domain("shared.example")];
    let second = store
        .create_account(Operator, second, None, t0())
        .await
        .unwrap()
        .id;

    store
        .upsert_events(&[hinted("1", 1, by_email("ann@shared.example"))], hours(2))
        .await
        .unwrap();
    let inbox = store
        .unmatched_events(rapport_store::Reader::Operator, Some("feed"), None, 50)
        .await
        .unwrap();
    assert_eq!(inbox.events.len(), 1);
    assert_eq!(inbox.events[0].match_candidates, [first, second]);
    assert!(inbox.events[0].event.placement.is_none(), "never guessed");

    // A contact decides what the domain could not.
    let placed = store
        .upsert_contact(Operator, second, &contact("ann@shared.example", "Ann"))
        .await
        .unwrap();
    assert_eq!(placed, 1);
    let event = store
        .event_by_key(&inbox.events[0].event.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.event.placement.unwrap().account, second);
    assert!(event.match_candidates.is_empty());
}

async fn identity_changes_place_waiting_events(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let globex = open_account(&store, "Globex", org.max.id, None).await;
    let events = [
        hinted("1", 1, by_external("stripe:cus_9")),
        hinted("2", 2, by_email("li@globex.example")),
        hinted("3", 3, by_email("li@sub.globex.example")),
        hinted("4", 4, by_email("pat@initech.example")),
        // `_` and `%` in a needle are literal, not LIKE wildcards.
        hinted("5", 5, by_external("stripe:cus_9x")),
    ];
    store.upsert_events(&events, hours(6)).await.unwrap();
    assert_eq!(
        store
            .unmatched_events(rapport_store::Reader::Operator, None, None, 50)
            .await
            .unwrap()
            .events
            .len(),
        5
    );

    assert_eq!(
        store
            .add_external_id(Operator, acme, &external("stripe:cus_9"))
            .await
            .unwrap(),
        1,
        "`stripe:cus_9x` is another customer"
    );
    assert_eq!(
        store
            .add_domain(Operator, globex, &domain("globex.example"))
            .await
            .unwrap(),
        2,
        "the domain and its subdomain"
    );
    // A newly opened account with identities claims its waiting events too.
    let mut initech = new_account("Initech", org.mia.id);
    initech.contacts = vec![contact("pat@initech.example", "Pat")];
    let initech = store
        .create_account(Operator, initech, None, t0())
        .await
        .unwrap()
        .id;

    let placement = |source_id: &'static str| {
        let store = store.clone();
        async move {
            store
                .event_by_key(&rapport_core::timeline::DedupeKey {
                    connector: "feed".into(),
                    source_id: source_id.into(),
                })
                .await
                .unwrap()
                .unwrap()
                .event
                .placement
        }
    };
    let one = placement("1").await.unwrap();
    assert_eq!(one.account, acme);
    assert_eq!(
        one.reason,
        MatchReason::ExternalId {
            external_id: external("stripe:cus_9")
        }
    );
    assert_eq!(placement("2").await.unwrap().account, globex);
    assert_eq!(placement("3").await.unwrap().account, globex);
    assert_eq!(placement("4").await.unwrap().account, initech);
    assert!(placement("5").await.is_none());
}

async fn a_page_commits_events_deletes_and_checkpoint_together(store: Store) {
    let org = small_org(&store).await;
    let mut acme = new_account("Acme", org.mia.id);
    acme.domains = vec![domain("acme.example")];
    let acme = store
        .create_account(Operator, acme, None, t0())
        .await
        .unwrap()
        .id;
    registered(&store).await;
    let lease = store
        .acquire_lease("feed", "node-a", TTL, hours(1))
        .await
        .unwrap()
        .expect("a free lease");
    store.start_run(&lease, hours(1)).await.unwrap();

    let first = [
        hinted("1", 1, by_email("a@acme.example")),
        hinted("2", 2, by_email("b@acme.example")),
        hinted("3", 3, by_email("c@nowhere.example")),
    ];
    let commit = store
        .commit_page(
            &lease,
            PageWrite {
                events: &first,
                deleted: &[],
                checkpoint: Some("cursor-1"),
            },
            hours(1),
        )
        .await
        .unwrap();
    assert_eq!(commit.summary.inserted, 3);
    assert_eq!(commit.waiting, 1);

    // The second page deletes one event and re-delivers another unchanged.
    let second = [hinted("2", 2, by_email("b@acme.example"))];
    let commit = store
        .commit_page(
            &lease,
            PageWrite {
                events: &second,
                deleted: &["1".to_owned(), "never-seen".to_owned()],
                checkpoint: Some("cursor-2"),
            },
            hours(1),
        )
        .await
        .unwrap();
    assert_eq!((commit.summary.unchanged, commit.deleted), (1, 1));

    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(status.checkpoint.as_deref(), Some("cursor-2"));
    assert_eq!(status.events_ingested, 3);
    assert_eq!(status.pages_committed, 2);
    assert_eq!(status.newest_event_at, Some(hours(3)));
    assert_eq!(status.state, ConnectorState::Running);
    let page = store
        .timeline(&TimelineQuery {
            connectors: vec!["feed".into()],
            ..TimelineQuery::account(acme, rapport_store::Reader::Operator)
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1, "event 1 was deleted");

    // An event may only be committed by the connector it says it comes from.
    let mut foreign = hinted("9", 1, AccountHints::default());
    foreign.key.connector = "other".into();
    let refused = store
        .commit_page(
            &lease,
            PageWrite {
                events: &[foreign],
                deleted: &[],
                checkpoint: Some("cursor-3"),
            },
            hours(1),
        )
        .await;
    assert!(matches!(refused, Err(Error::Domain(_))), "{refused:?}");
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(status.checkpoint.as_deref(), Some("cursor-2"));
}

async fn a_lost_lease_commits_nothing(store: Store) {
    small_org(&store).await;
    registered(&store).await;
    let stale = store
        .acquire_lease("feed", "node-a", TTL, hours(1))
        .await
        .unwrap()
        .unwrap();
    // node-a stalls past its lease; node-b takes over.
    let later = hours(1) + Span::seconds(31);
    let fresh = store
        .acquire_lease("feed", "node-b", TTL, later)
        .await
        .unwrap()
        .expect("an expired lease is free");
    assert!(fresh.token > stale.token);

    let events = [hinted("1", 1, AccountHints::default())];
    let write = PageWrite {
        events: &events,
        deleted: &[],
        checkpoint: Some("stale"),
    };
    let refused = store.commit_page(&stale, write, later).await;
    assert!(matches!(refused, Err(Error::LeaseLost(_))), "{refused:?}");
    assert!(
        store
            .unmatched_events(rapport_store::Reader::Operator, None, None, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert_eq!(
        store
            .connector_status("feed")
            .await
            .unwrap()
            .unwrap()
            .checkpoint,
        None
    );
    let mut stale = stale;
    assert!(matches!(
        store.renew_lease(&mut stale, TTL, later).await,
        Err(Error::LeaseLost(_))
    ));
    store.commit_page(&fresh, write, later).await.unwrap();
}

async fn leases_exclude_and_expire(store: Store) {
    registered(&store).await;
    assert!(
        store
            .acquire_lease("unknown", "node-a", TTL, hours(1))
            .await
            .unwrap()
            .is_none(),
        "an unregistered connector has no lease"
    );
    let mut lease = store
        .acquire_lease("feed", "node-a", TTL, hours(1))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .acquire_lease("feed", "node-b", TTL, hours(1) + Span::seconds(29))
            .await
            .unwrap()
            .is_none()
    );
    // A heartbeat keeps it.
    store
        .renew_lease(&mut lease, TTL, hours(1) + Span::seconds(20))
        .await
        .unwrap();
    assert!(
        store
            .acquire_lease("feed", "node-b", TTL, hours(1) + Span::seconds(45))
            .await
            .unwrap()
            .is_none()
    );
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(
        status.lease_holder, None,
        "status reads the real clock: lapsed"
    );
    store.release_lease(&lease).await.unwrap();
    let taken = store
        .acquire_lease("feed", "node-b", TTL, hours(1) + Span::seconds(46))
        .await
        .unwrap()
        .expect("a released lease is free");
    assert_eq!(taken.holder, "node-b");
}

async fn run_records_and_config_changes_drive_the_state(store: Store) {
    registered(&store).await;
    let lease = store
        .acquire_lease("feed", "node-a", TTL, hours(1))
        .await
        .unwrap()
        .unwrap();
    store.start_run(&lease, hours(1)).await.unwrap();
    store
        .finish_run(
            &lease,
            &RunRecord {
                state: ConnectorState::Stopped,
                error: Some(("auth".into(), "the token was refused\0".into())),
                error_source_id: Some("evt_9".into()),
                next_run_at: None,
            },
            hours(1),
        )
        .await
        .unwrap();
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(status.state, ConnectorState::Stopped);
    assert_eq!(status.consecutive_failures, 1);
    let error = status.last_error.unwrap();
    assert_eq!((error.kind.as_str(), error.at), ("auth", hours(1)));
    assert_eq!(error.source_id.as_deref(), Some("evt_9"));
    // A message with a control character is kept without it, on both backends.
    assert_eq!(error.message, "the token was refused\u{FFFD}");
    assert_eq!(status.last_success_at, None);

    // Re-registering the same config leaves it stopped; a changed config lifts it.
    let same = store.register_connector("feed", "v1", true).await.unwrap();
    assert_eq!(same.state, ConnectorState::Stopped);
    let changed = store.register_connector("feed", "v2", true).await.unwrap();
    assert_eq!(changed.state, ConnectorState::Idle);
    assert_eq!(changed.consecutive_failures, 0);
    let disabled = store.register_connector("feed", "v2", false).await.unwrap();
    assert_eq!(disabled.state, ConnectorState::Disabled);

    store.request_sync("feed", hours(2)).await.unwrap();
    assert_eq!(
        store
            .connector_status("feed")
            .await
            .unwrap()
            .unwrap()
            .sync_requested_at,
        Some(hours(2))
    );
    assert!(matches!(
        store.request_sync("nope", hours(2)).await,
        Err(Error::UnknownConnector(_))
    ));

    let lease = store
        .acquire_lease("feed", "node-a", TTL, hours(3))
        .await
        .unwrap()
        .unwrap();
    store.start_run(&lease, hours(3)).await.unwrap();
    store
        .finish_run(
            &lease,
            &RunRecord {
                state: ConnectorState::Idle,
                error: None,
                error_source_id: None,
                next_run_at: Some(hours(4)),
            },
            hours(3),
        )
        .await
        .unwrap();
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(status.last_success_at, Some(hours(3)));
    assert_eq!(
        status.sync_requested_at, None,
        "the run consumed the request"
    );
    assert_eq!(status.next_run_at, Some(hours(4)));
    assert_eq!(
        status.last_error.as_ref().unwrap().kind,
        "auth",
        "kept for the record"
    );
    assert_eq!(status.lag(hours(5)), Some(Span::hours(2)));
}

async fn checks_are_due_after_a_config_change_and_recorded(store: Store) {
    let fresh = store.register_connector("feed", "v1", true).await.unwrap();
    assert!(
        fresh.check_due,
        "a new connector checks before its first sync"
    );
    assert_eq!(fresh.last_check, None);
    store
        .record_check("feed", Err("the token was refused"), hours(1))
        .await
        .unwrap();
    let checked = store.connector_status("feed").await.unwrap().unwrap();
    assert!(!checked.check_due);
    let check = checked.last_check.unwrap();
    assert_eq!((check.at, check.ok), (hours(1), false));
    assert_eq!(check.message.as_deref(), Some("the token was refused"));
    // The same configuration again: no new check; a changed one: due again.
    let same = store.register_connector("feed", "v1", true).await.unwrap();
    assert!(!same.check_due);
    let changed = store.register_connector("feed", "v2", true).await.unwrap();
    assert!(changed.check_due);
    store.record_check("feed", Ok(()), hours(2)).await.unwrap();
    let passed = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(
        passed.last_check.map(|check| (check.ok, check.message)),
        Some((true, None))
    );
    assert!(matches!(
        store.record_check("nope", Ok(()), hours(2)).await,
        Err(Error::UnknownConnector(_))
    ));
}

async fn a_dead_holders_lease_is_taken_over_only_as_it_was(store: Store) {
    store.register_connector("feed", "v1", true).await.unwrap();
    let now = chrono::Utc::now();
    let crashed = store
        .acquire_lease_as("feed", "node-a", Some("m:b:100:7"), TTL, now)
        .await
        .unwrap()
        .unwrap();
    let status = store.connector_status("feed").await.unwrap().unwrap();
    assert_eq!(status.lease_process.as_deref(), Some("m:b:100:7"));
    assert_eq!(status.lease_holder.as_deref(), Some("node-a"));
    // Another claim about who held it changes nothing.
    assert_eq!(
        store
            .take_over_lease("feed", "node-a", "m:b:100:8", "node-b", None, TTL, now)
            .await
            .unwrap(),
        None
    );
    let taken = store
        .take_over_lease(
            "feed",
            "node-a",
            "m:b:100:7",
            "node-b",
            Some("m:b:200:9"),
            TTL,
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(taken.token > crashed.token, "the fence moves on");
    // The crashed holder, had it lived, could not commit.
    let page = PageWrite {
        events: &[],
        deleted: &[],
        checkpoint: Some("x"),
    };
    assert!(matches!(
        store.commit_page(&crashed, page, now).await,
        Err(Error::LeaseLost(_))
    ));
    store.commit_page(&taken, page, now).await.unwrap();
    // Once taken, the same takeover does not displace the new holder.
    assert_eq!(
        store
            .take_over_lease("feed", "node-a", "m:b:100:7", "node-c", None, TTL, now)
            .await
            .unwrap(),
        None
    );
}

async fn a_page_no_backend_could_store_alike_is_refused(store: Store) {
    store.register_connector("feed", "v1", true).await.unwrap();
    let lease = store
        .acquire_lease("feed", "node-a", TTL, hours(1))
        .await
        .unwrap()
        .unwrap();
    for page in [
        PageWrite {
            events: &[],
            deleted: &[],
            checkpoint: Some("after\0here"),
        },
        PageWrite {
            events: &[],
            deleted: &["gone\0".to_owned()],
            checkpoint: None,
        },
    ] {
        let error = store.commit_page(&lease, page, hours(1)).await.unwrap_err();
        assert!(
            matches!(&error, Error::Domain(_)) && error.to_string().contains("NUL"),
            "{error}"
        );
    }
    let mut titled = hinted("t1", 1, by_email("a@b.example"));
    titled.title = "Invoice\0paid".into();
    let refused = store
        .commit_page(
            &lease,
            PageWrite {
                events: &[titled],
                deleted: &[],
                checkpoint: None,
            },
            hours(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::Domain(_)), "{refused}");
    assert_eq!(
        store
            .connector_status("feed")
            .await
            .unwrap()
            .unwrap()
            .checkpoint,
        None,
        "nothing was written"
    );
}

async fn writes_that_fail_in_the_storage_are_remembered_until_one_succeeds(store: Store) {
    assert_eq!(store.write_failure(), None);
    store.probe_write().await.unwrap();
    // A refused write (a rule, not the storage) is not a storage failure.
    store.register_connector("feed", "v1", true).await.unwrap();
    let lease = store
        .acquire_lease("feed", "node-a", TTL, hours(1))
        .await
        .unwrap()
        .unwrap();
    let _ = store
        .commit_page(
            &lease,
            PageWrite {
                events: &[],
                deleted: &[],
                checkpoint: Some("\0"),
            },
            hours(1),
        )
        .await;
    assert_eq!(store.write_failure(), None);
}
