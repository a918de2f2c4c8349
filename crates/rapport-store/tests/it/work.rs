//! What staff do on timelines beyond reading one: the feed across a book, tasks, and
//! placing events from the unmatched inbox.

use crate::support::*;
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::Level;
use rapport_core::timeline::{AttributeValue, EventKind, MatchReason, NewEvent};
use rapport_core::{DomainError, EventId};
use rapport_store::{Error, FeedQuery, Learn, NewTask, Store, TimelineQuery};

on_both_backends!(
    feed_spans_exactly_the_visible_book,
    tasks_open_and_complete_once,
    inbox_placement_is_manual_and_teaches_matching,
    server_keys_are_made_once,
    feeds_read_alike_by_both_plans,
);

fn feed(viewer: rapport_core::StaffId, limit: u32) -> FeedQuery {
    FeedQuery {
        viewer,
        at: hours(100),
        connectors: Vec::new(),
        kind_prefix: None,
        from: None,
        until: None,
        after: None,
        limit,
    }
}

async fn feed_spans_exactly_the_visible_book(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let acme_eu = open_account(&store, "Acme EU", org.max.id, Some(acme)).await;
    let globex = open_account(&store, "Globex", org.max.id, None).await;
    for (hour, account) in [(1, acme), (2, acme_eu), (3, globex), (4, acme)] {
        store
            .add_note(
                Operator,
                account,
                org.director.id,
                &format!("note {hour}"),
                hours(hour),
            )
            .await
            .unwrap();
    }
    let notes = |page: &rapport_store::TimelinePage| -> Vec<String> {
        page.events
            .iter()
            .filter(|event| event.event.kind.as_str() == "note")
            .map(|event| event.event.title.clone())
            .collect()
    };
    // Mia owns Acme, so she sees Acme EU beneath it too, but not Globex.
    let mia = store.feed(&feed(org.mia.id, 200)).await.unwrap();
    assert_eq!(notes(&mia), ["note 4", "note 2", "note 1"]);
    // The director sees both managers' books.
    let director = store.feed(&feed(org.director.id, 200)).await.unwrap();
    assert_eq!(notes(&director), ["note 4", "note 3", "note 2", "note 1"]);
    // Ava supports nothing yet: an empty feed, not an error.
    let ava = store.feed(&feed(org.ava.id, 200)).await.unwrap();
    assert!(ava.events.is_empty());

    // Keyset pages of two cover the director's feed once each, in order.
    let mut seen = Vec::new();
    let mut query = feed(org.director.id, 2);
    query.kind_prefix = Some("note".into());
    loop {
        let page = store.feed(&query).await.unwrap();
        seen.extend(notes(&page));
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["note 4", "note 3", "note 2", "note 1"]);

    let mut bad = feed(org.mia.id, 10);
    bad.kind_prefix = Some("Not A Kind".into());
    assert!(matches!(
        store.feed(&bad).await,
        Err(Error::Domain(DomainError::InvalidEventKind { .. }))
    ));
}

async fn tasks_open_and_complete_once(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    // A task is for someone who can see its account: Ava cannot until she supports it.
    let unseen = store
        .add_task(
            Operator,
            acme,
            org.mia.id,
            NewTask {
                text: "Call them".into(),
                due: None,
                assignee: Some(org.ava.id),
            },
            hours(1),
        )
        .await;
    assert!(
        matches!(
            unseen,
            Err(Error::Domain(DomainError::TaskAssigneeCannotSee { staff, account }))
                if staff == org.ava.id && account == acme
        ),
        "{unseen:?}"
    );
    store
        .add_support(Operator, acme, org.ava.id, None, hours(0))
        .await
        .unwrap();
    let task = store
        .add_task(
            Operator,
            acme,
            org.mia.id,
            NewTask {
                text: "Send the renewal quote\nWith the annual discount".into(),
                due: Some("2026-12-01".parse().unwrap()),
                assignee: Some(org.ava.id),
            },
            hours(1),
        )
        .await
        .unwrap();
    assert_eq!(task.event.kind.as_str(), EventKind::TASK_CREATED);
    assert_eq!(task.event.title, "Send the renewal quote");
    assert_eq!(
        task.event.attributes["status"],
        AttributeValue::Text("open".into())
    );
    assert_eq!(
        task.event.attributes["assignee"],
        AttributeValue::Integer(org.ava.id.0)
    );

    let done = store
        .complete_task(Operator, task.id, org.ava.id, hours(2))
        .await
        .unwrap();
    assert_eq!(done.event.kind.as_str(), EventKind::TASK_DONE);
    assert_eq!(done.event.title, "Done: Send the renewal quote");
    let stored = store
        .event(task.id, rapport_store::Reader::Operator)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.event.attributes["status"],
        AttributeValue::Text("done".into())
    );
    let page = store
        .timeline(&TimelineQuery::account(
            acme,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    let kinds: Vec<&str> = page.events.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(&kinds[..2], ["task.done", "task.created"]);

    // Done is done; a note is not a task; an unknown id is named.
    assert!(matches!(
        store
            .complete_task(Operator, task.id, org.mia.id, hours(3))
            .await,
        Err(Error::Domain(DomainError::EventNotChangeable { .. }))
    ));
    let note = store
        .add_note(Operator, acme, org.mia.id, "hi", hours(3))
        .await
        .unwrap();
    assert!(matches!(
        store
            .complete_task(Operator, note.id, org.mia.id, hours(3))
            .await,
        Err(Error::Domain(DomainError::EventNotChangeable { .. }))
    ));
    assert!(matches!(
        store
            .complete_task(Operator, EventId(999_999), org.mia.id, hours(3))
            .await,
        Err(Error::Domain(DomainError::UnknownEvent(_)))
    ));
    let empty = NewTask {
        text: "  ".into(),
        due: None,
        assignee: None,
    };
    assert!(matches!(
        store
            .add_task(Operator, acme, org.mia.id, empty, hours(3))
            .await,
        Err(Error::Domain(DomainError::InvalidField {
            field: "task",
            ..
        }))
    ));
}

fn unmatched(source_id: &str, email: &str, at_hours: i64) -> NewEvent {
    let mut event = NewEvent::new(
        "mail",
        source_id,
        EventKind::parse("email.received").unwrap(),
        hours(at_hours),
        format!("mail {source_id}"),
    );
    event.hints.emails.push(self::email(email));
    event
}

async fn inbox_placement_is_manual_and_teaches_matching(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let (_, outcomes) = store
        .upsert_events(
            &[
                unmatched("m1", "ceo@initech.example", 1),
                unmatched("m2", "cfo@initech.example", 2),
                unmatched("m3", "someone@else.example", 3),
            ],
            hours(3),
        )
        .await
        .unwrap();
    let ids: Vec<EventId> = outcomes
        .iter()
        .map(|outcome| match outcome {
            rapport_store::UpsertOutcome::Inserted(id) => *id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        store
            .unmatched_events(rapport_store::Reader::Operator, None, None, 50)
            .await
            .unwrap()
            .events
            .len(),
        3
    );

    // Placing m1 and learning the domain: m1 is Mia's decision, and m2 (same domain)
    // follows by the new rule, while m3 keeps waiting.
    let placed = store
        .place_unmatched(
            Operator,
            ids[0],
            acme,
            org.mia.id,
            Some(Learn::Domain(domain("initech.example"))),
        )
        .await
        .unwrap();
    let placement = placed.event.placement.unwrap();
    assert_eq!(placement.account, acme);
    assert_eq!(placement.reason, MatchReason::Manual { by: org.mia.id });
    let m2 = store
        .event(ids[1], rapport_store::Reader::Operator)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m2.event.placement.unwrap().account, acme);
    let waiting = store
        .unmatched_events(rapport_store::Reader::Operator, None, None, 50)
        .await
        .unwrap();
    assert_eq!(waiting.events.len(), 1);
    assert_eq!(waiting.events[0].id, ids[2]);

    // A placed event has left the inbox; an unknown account or event is named.
    assert!(matches!(
        store
            .place_unmatched(Operator, ids[0], acme, org.mia.id, None)
            .await,
        Err(Error::Domain(DomainError::EventNotChangeable { .. }))
    ));
    assert!(matches!(
        store
            .place_unmatched(
                Operator,
                ids[2],
                rapport_core::AccountId(4242),
                org.mia.id,
                None
            )
            .await,
        Err(Error::Domain(DomainError::UnknownAccount(_)))
    ));
    assert!(matches!(
        store
            .place_unmatched(Operator, EventId(4242), acme, org.mia.id, None)
            .await,
        Err(Error::Domain(DomainError::UnknownEvent(_)))
    ));
    // Learning a contact adds them to the account, unnamed.
    store
        .place_unmatched(
            Operator,
            ids[2],
            acme,
            org.max.id,
            Some(Learn::Contact(email("someone@else.example"))),
        )
        .await
        .unwrap();
    let account = store.account(acme).await.unwrap();
    assert!(
        account
            .contacts
            .iter()
            .any(|c| c.email.as_str() == "someone@else.example" && c.name.is_none())
    );
    assert!(
        store
            .unmatched_events(rapport_store::Reader::Operator, None, None, 50)
            .await
            .unwrap()
            .events
            .is_empty()
    );
}

async fn server_keys_are_made_once(store: Store) {
    let first = store.server_key("cursor").await.unwrap();
    assert_eq!(first.len(), 64);
    assert_eq!(store.server_key("cursor").await.unwrap(), first);
    assert_ne!(store.server_key("other").await.unwrap(), first);
}

/// A feed has two plans (a merge of each account's newest rows for a narrow book, a
/// newest-first walk of the whole timeline for a wide one); both must page exactly the
/// visible accounts' events, newest first with ties broken by id, once each. Checked
/// against a reference built from single-account timelines, for a manager (narrow:
/// one of 14 staff), a director and the VP (wide), with and without a kind filter.
async fn feeds_read_alike_by_both_plans(store: Store) {
    let vp = hire(&store, "Vera", Level::Vp, None).await;
    let director = hire(&store, "Dan", Level::Director, Some(vp.id)).await;
    let mut managers = Vec::new();
    for n in 0..12 {
        managers.push(
            hire(
                &store,
                &format!("Manager {n}"),
                Level::Manager,
                Some(director.id),
            )
            .await,
        );
    }
    let mut accounts = Vec::new();
    for (n, manager) in managers.iter().enumerate() {
        for k in 0..3 {
            // Manager 0's first account has a subsidiary owned by manager 1.
            let parent = (n == 1 && k == 0).then(|| accounts[0]);
            accounts
                .push(open_account(&store, &format!("Client {n}.{k}"), manager.id, parent).await);
        }
    }
    // Events at few distinct instants, so many share one and the id decides.
    let mut events = Vec::new();
    for (n, account) in accounts.iter().enumerate() {
        for e in 0..(2 + n % 5) {
            let kind = if e % 2 == 0 {
                "billing.invoice.paid"
            } else {
                "support.ticket.created"
            };
            let mut event = NewEvent::new(
                "feed",
                format!("{n}-{e}"),
                EventKind::parse(kind).unwrap(),
                hours(((n * 7 + e * 3) % 6) as i64),
                format!("event {n}-{e}"),
            );
            event.placement = Some(rapport_core::timeline::Placement {
                account: *account,
                reason: MatchReason::Direct,
            });
            events.push(event);
        }
    }
    store.upsert_events(&events, hours(50)).await.unwrap();

    for viewer in [managers[0].id, director.id, vp.id] {
        for kind in [None, Some("billing")] {
            let visible = store.visible_account_ids(viewer, hours(100)).await.unwrap();
            let mut expected = Vec::new();
            for account in &visible {
                let mut query = TimelineQuery::account(*account, rapport_store::Reader::Operator);
                query.limit = 200;
                query.kind_prefix = kind.map(str::to_owned);
                expected.extend(store.timeline(&query).await.unwrap().events);
            }
            expected.sort_by_key(|event| std::cmp::Reverse((event.event.occurred_at, event.id)));
            let expected: Vec<EventId> = expected.iter().map(|event| event.id).collect();

            let mut query = feed(viewer, 4);
            query.kind_prefix = kind.map(str::to_owned);
            let mut seen = Vec::new();
            loop {
                let page = store.feed(&query).await.unwrap();
                seen.extend(page.events.iter().map(|event| event.id));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "viewer {viewer:?}, kind {kind:?}");
            assert!(!seen.is_empty());
        }
    }
}
