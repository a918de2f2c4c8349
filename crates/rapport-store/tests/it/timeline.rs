//! The timeline on both backends: idempotent versioned upserts, manual placement kept,
//! keyset pages, filters, roll-ups, invalid batches writing nothing.

use crate::support::*;
use chrono::Duration;
use rapport_core::permission::Authority::Operator;
use rapport_core::timeline::{EventKind, MatchReason, NewEvent, Placement, TimelineEvent};
use rapport_core::{AccountId, DomainError, StaffId};
use rapport_store::{Error, Store, TimelineQuery, UpsertOutcome, UpsertSummary};

on_both_backends!(
    upserts_are_idempotent_and_versioned,
    manual_placement_survives_newer_versions,
    keyset_pages_cover_everything_once,
    filters_by_source_kind_and_date,
    roll_up_includes_subsidiaries,
    invalid_batches_write_nothing,
    notes_land_on_the_timeline,
    large_batches_keep_one_at_a_time_meaning,
);

on_both_backends_with_url!(a_row_that_does_not_decode_is_shown_marked_never_failing_the_page);

fn event(
    connector: &str,
    source_id: &str,
    kind: &str,
    at_hours: i64,
    account: Option<AccountId>,
) -> NewEvent {
    let mut event = NewEvent::new(
        connector,
        source_id,
        EventKind::parse(kind).unwrap(),
        hours(at_hours),
        format!("{kind} {source_id}"),
    );
    event.placement = account.map(|account| Placement {
        account,
        reason: MatchReason::ExternalId {
            external_id: external("stripe:cus_1"),
        },
    });
    event
}

fn titles(events: &[TimelineEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event.event.title.as_str())
        .collect()
}

async fn upserts_are_idempotent_and_versioned(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let mut first = event("stripe", "evt_1", "billing.invoice.paid", 1, Some(acme));
    first.source_version = 1;
    first.summary = "Invoice 1 paid".into();
    first.url = Some("https://dashboard.stripe.com/invoices/in_1".into());

    let (summary, outcomes) = store
        .upsert_events(&[first.clone()], hours(2))
        .await
        .unwrap();
    assert_eq!(
        summary,
        UpsertSummary {
            inserted: 1,
            updated: 0,
            unchanged: 0
        }
    );
    let UpsertOutcome::Inserted(id) = outcomes[0] else {
        panic!("{outcomes:?}")
    };

    // The same delivery again: nothing changes.
    let (summary, _) = store
        .upsert_events(&[first.clone()], hours(3))
        .await
        .unwrap();
    assert_eq!(summary.unchanged, 1);
    let stored = store
        .event(id, rapport_store::Reader::Operator)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.ingested_at, hours(2), "an equal version is a no-op");
    assert_eq!(stored.event, first);

    // A newer version replaces it in place.
    let mut newer = first.clone();
    newer.source_version = 2;
    newer.title = "Invoice 1 paid (corrected)".into();
    let (summary, outcomes) = store
        .upsert_events(&[newer.clone()], hours(4))
        .await
        .unwrap();
    assert_eq!(summary.updated, 1);
    assert_eq!(outcomes[0], UpsertOutcome::Updated(id));
    // An older version arriving late is ignored.
    let (summary, _) = store
        .upsert_events(&[first.clone()], hours(5))
        .await
        .unwrap();
    assert_eq!(summary.unchanged, 1);
    let stored = store.event_by_key(&newer.key).await.unwrap().unwrap();
    assert_eq!(
        (stored.id, stored.event.title.as_str()),
        (id, "Invoice 1 paid (corrected)")
    );
    assert_eq!(stored.ingested_at, hours(4));

    // Duplicates inside one batch are stored once.
    let once = event("stripe", "evt_2", "billing.invoice.paid", 2, Some(acme));
    let twice = [once.clone(), once];
    let (summary, _) = store.upsert_events(&twice, hours(6)).await.unwrap();
    assert_eq!(
        summary,
        UpsertSummary {
            inserted: 1,
            updated: 0,
            unchanged: 1
        }
    );
    // Unmatched events are stored without an account.
    let loose = event("imap", "<m1@example.com>", "email.received", 3, None);
    let (_, outcomes) = store.upsert_events(&[loose], hours(6)).await.unwrap();
    let UpsertOutcome::Inserted(loose_id) = outcomes[0] else {
        panic!()
    };
    assert_eq!(
        store
            .event(loose_id, rapport_store::Reader::Operator)
            .await
            .unwrap()
            .unwrap()
            .event
            .placement,
        None
    );
}

async fn manual_placement_survives_newer_versions(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let globex = open_account(&store, "Globex", org.max.id, None).await;
    let mut placed = event(
        "zendesk",
        "ticket/7",
        "support.ticket.created",
        1,
        Some(acme),
    );
    placed.placement = Some(Placement {
        account: acme,
        reason: MatchReason::Manual { by: StaffId(3) },
    });
    placed.source_version = 1;
    store
        .upsert_events(&[placed.clone()], hours(1))
        .await
        .unwrap();
    // The connector later matches the ticket elsewhere by its own rules.
    let mut newer = event(
        "zendesk",
        "ticket/7",
        "support.ticket.created",
        1,
        Some(globex),
    );
    newer.source_version = 2;
    newer.title = "Ticket 7 (updated)".into();
    store
        .upsert_events(&[newer.clone()], hours(2))
        .await
        .unwrap();
    let stored = store.event_by_key(&newer.key).await.unwrap().unwrap();
    assert_eq!(stored.event.title, "Ticket 7 (updated)");
    assert_eq!(
        stored.event.placement, placed.placement,
        "a person's placement wins"
    );
}

async fn keyset_pages_cover_everything_once(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    // 57 events with many ties on occurred_at (3 per hour), inserted out of order.
    let mut events: Vec<NewEvent> = (0..57)
        .map(|n| {
            event(
                "stripe",
                &format!("evt_{n:03}"),
                "billing.invoice.paid",
                10 + n / 3,
                Some(acme),
            )
        })
        .collect();
    events.reverse();
    events.swap(3, 40);
    store.upsert_events(&events, hours(100)).await.unwrap();

    let mut query = TimelineQuery::account(acme, rapport_store::Reader::Operator);
    query.limit = 10;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.timeline(&query).await.unwrap();
        pages += 1;
        assert!(page.events.len() <= 10);
        seen.extend(page.events.iter().map(|e| (e.event.occurred_at, e.id)));
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => break,
        }
    }
    // 57 invoices plus the "became the owner" event, in strict newest-first order.
    assert_eq!(seen.len(), 58);
    assert_eq!(pages, 6);
    assert!(
        seen.windows(2).all(|pair| pair[0] > pair[1]),
        "strictly descending, no repeats"
    );

    // Page size is clamped.
    let mut huge = TimelineQuery::account(acme, rapport_store::Reader::Operator);
    huge.limit = 100_000;
    assert_eq!(store.timeline(&huge).await.unwrap().events.len(), 58);
    let mut zero = TimelineQuery::account(acme, rapport_store::Reader::Operator);
    zero.limit = 0;
    assert_eq!(store.timeline(&zero).await.unwrap().events.len(), 1);
}

async fn filters_by_source_kind_and_date(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let events = [
        event("stripe", "in_paid", "billing.invoice.paid", 1, Some(acme)),
        event(
            "stripe",
            "in_failed",
            "billing.invoice.payment_failed",
            2,
            Some(acme),
        ),
        event(
            "stripe",
            "sub",
            "billing.subscription.updated",
            3,
            Some(acme),
        ),
        event("custom", "odd", "billingx.thing", 4, Some(acme)),
        event("zendesk", "t1", "support.ticket.created", 5, Some(acme)),
        event("imap", "m1", "email.received", 6, Some(acme)),
    ];
    store.upsert_events(&events, hours(10)).await.unwrap();
    let run = |configure: &dyn Fn(&mut TimelineQuery)| {
        let mut query = TimelineQuery::account(acme, rapport_store::Reader::Operator);
        configure(&mut query);
        let store = store.clone();
        async move {
            let page = store.timeline(&query).await.unwrap();
            page.events
                .into_iter()
                .map(|e| e.event.key.source_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        run(&|q| q.kind_prefix = Some("billing".into())).await,
        ["sub", "in_failed", "in_paid"],
        "a prefix matches whole segments only (not billingx)"
    );
    assert_eq!(
        run(&|q| q.kind_prefix = Some("billing.invoice".into())).await,
        ["in_failed", "in_paid"]
    );
    assert_eq!(
        run(&|q| q.kind_prefix = Some("billing.invoice.paid".into())).await,
        ["in_paid"]
    );
    assert_eq!(
        run(&|q| q.connectors = vec!["zendesk".into(), "imap".into()]).await,
        ["m1", "t1"]
    );
    assert_eq!(
        run(&|q| {
            q.from = Some(hours(2));
            q.until = Some(hours(5));
        })
        .await,
        ["odd", "sub", "in_failed"],
        "from is inclusive, until exclusive"
    );
    assert_eq!(
        run(&|q| {
            q.connectors = vec!["stripe".into()];
            q.kind_prefix = Some("billing".into());
            q.from = Some(hours(0) - Duration::minutes(1));
            q.until = Some(hours(3));
        })
        .await,
        ["in_failed", "in_paid"]
    );
    let mut bad = TimelineQuery::account(acme, rapport_store::Reader::Operator);
    bad.kind_prefix = Some("Billing%".into());
    assert!(matches!(
        store.timeline(&bad).await,
        Err(Error::Domain(DomainError::InvalidEventKind { .. }))
    ));
}

async fn roll_up_includes_subsidiaries(store: Store) {
    let org = small_org(&store).await;
    let group = open_account(&store, "Group", org.mia.id, None).await;
    let sub = open_account(&store, "Sub", org.max.id, Some(group)).await;
    let branch = open_account(&store, "Branch", org.max.id, Some(sub)).await;
    let other = open_account(&store, "Other", org.max.id, None).await;
    store
        .upsert_events(
            &[
                event("stripe", "g", "billing.invoice.paid", 1, Some(group)),
                event("stripe", "s", "billing.invoice.paid", 2, Some(sub)),
                event("stripe", "b", "billing.invoice.paid", 3, Some(branch)),
                event("stripe", "o", "billing.invoice.paid", 4, Some(other)),
            ],
            hours(10),
        )
        .await
        .unwrap();
    let mut query = TimelineQuery::account(group, rapport_store::Reader::Operator);
    query.kind_prefix = Some("billing".into());
    assert_eq!(
        titles(&store.timeline(&query).await.unwrap().events),
        ["billing.invoice.paid g"]
    );
    query.include_children = true;
    query.limit = 2;
    let first = store.timeline(&query).await.unwrap();
    assert_eq!(
        titles(&first.events),
        ["billing.invoice.paid b", "billing.invoice.paid s"]
    );
    query.after = first.next;
    let second = store.timeline(&query).await.unwrap();
    assert_eq!(titles(&second.events), ["billing.invoice.paid g"]);
    assert_eq!(second.next, None);
    assert!(matches!(
        store
            .timeline(&TimelineQuery::account(
                AccountId(404),
                rapport_store::Reader::Operator
            ))
            .await,
        Err(Error::Domain(DomainError::UnknownAccount(_)))
    ));
}

async fn invalid_batches_write_nothing(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let good = event("stripe", "ok", "billing.invoice.paid", 1, Some(acme));
    let mut bad_url = event("stripe", "bad", "billing.invoice.paid", 1, Some(acme));
    bad_url.url = Some("javascript:alert(1)".into());
    assert!(
        store
            .upsert_events(&[good.clone(), bad_url], hours(2))
            .await
            .is_err()
    );
    let ghost = event(
        "stripe",
        "ghost",
        "billing.invoice.paid",
        1,
        Some(AccountId(404)),
    );
    assert!(matches!(
        store.upsert_events(&[good.clone(), ghost], hours(2)).await,
        Err(Error::Domain(DomainError::UnknownAccount(AccountId(404))))
    ));
    assert_eq!(store.event_by_key(&good.key).await.unwrap(), None);
}

async fn notes_land_on_the_timeline(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let long_first_line = "Renewal call went well; they want the annual plan ".repeat(4);
    let note = store
        .add_note(
            Operator,
            acme,
            org.mia.id,
            &format!("{long_first_line}\nSecond line"),
            hours(3),
        )
        .await
        .unwrap();
    assert_eq!(note.event.kind.as_str(), "note");
    assert_eq!(note.event.title.chars().count(), 120);
    assert!(note.event.title.ends_with('…'));
    assert!(note.event.summary.ends_with("Second line"));
    let page = store
        .timeline(&TimelineQuery::account(
            acme,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    assert_eq!(page.events[0].id, note.id);
    assert_eq!(
        page.events[0].event.actor.as_ref().unwrap().staff,
        Some(org.mia.id)
    );
    assert!(matches!(
        store
            .add_note(Operator, acme, org.mia.id, "   ", hours(4))
            .await,
        Err(Error::Domain(DomainError::InvalidField {
            field: "note",
            ..
        }))
    ));
}

/// A batch spanning several multi-row statements, with keys repeated inside a
/// statement's run and across runs, upserts as if its events came one at a time:
/// outcomes in input order, a repeat with a higher version updates, an equal one does
/// nothing, and two connectors may share a source id.
async fn large_batches_keep_one_at_a_time_meaning(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let mut batch: Vec<NewEvent> = (0..700)
        .map(|n| {
            event(
                "stripe",
                &format!("evt_{n}"),
                "billing.invoice.paid",
                n,
                Some(acme),
            )
        })
        .collect();
    // Repeats: a newer version of evt_5 within the first run, an equal copy of evt_300
    // far after it, and a newer evt_699 right after its first copy.
    let mut newer_5 = batch[5].clone();
    newer_5.source_version = 2;
    newer_5.title = "evt_5 corrected".into();
    batch.insert(10, newer_5);
    let same_300 = batch[301].clone();
    batch.push(same_300);
    let mut newer_699 = batch[700].clone();
    newer_699.source_version = 7;
    batch.push(newer_699);
    // The same source id from another connector is another event.
    batch.push(event(
        "zendesk",
        "evt_1",
        "support.ticket.created",
        1,
        Some(acme),
    ));

    let (summary, outcomes) = store.upsert_events(&batch, hours(800)).await.unwrap();
    assert_eq!(
        summary,
        UpsertSummary {
            inserted: 701,
            updated: 2,
            unchanged: 1
        }
    );
    assert_eq!(outcomes.len(), batch.len());
    let id_of = |outcome: UpsertOutcome| match outcome {
        UpsertOutcome::Inserted(id) | UpsertOutcome::Updated(id) => Some(id),
        UpsertOutcome::Unchanged => None,
    };
    assert!(matches!(outcomes[5], UpsertOutcome::Inserted(_)));
    assert!(matches!(outcomes[10], UpsertOutcome::Updated(_)));
    assert_eq!(id_of(outcomes[10]), id_of(outcomes[5]));
    assert_eq!(outcomes[701], UpsertOutcome::Unchanged);
    assert!(matches!(outcomes[702], UpsertOutcome::Updated(_)));
    assert_eq!(id_of(outcomes[702]), id_of(outcomes[700]));
    // Every outcome names the event stored under that input's key.
    for (input, outcome) in batch.iter().zip(&outcomes) {
        if let Some(id) = id_of(*outcome) {
            let stored = store
                .event(id, rapport_store::Reader::Operator)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.event.key, input.key);
        }
    }
    let corrected = store.event_by_key(&batch[5].key).await.unwrap().unwrap();
    assert_eq!(
        (
            corrected.event.title.as_str(),
            corrected.event.source_version
        ),
        ("evt_5 corrected", 2)
    );
    let page = store
        .timeline(&TimelineQuery {
            limit: 200,
            ..TimelineQuery::account(acme, rapport_store::Reader::Operator)
        })
        .await
        .unwrap();
    assert_eq!(page.events.len(), 200);
}

/// Rows an older build or a person could have left: a float stored as `null` (what
/// serde writes for NaN), an attribute of an unknown type, hints that are not an
/// object, a kind that is no longer valid, a placed event without its reason. Each
/// costs only its own field; the page, the feed and single reads answer.
async fn a_row_that_does_not_decode_is_shown_marked_never_failing_the_page(
    store: Store,
    url: String,
) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let mut good = event("stripe", "evt_good", "billing.invoice.paid", 1, Some(acme));
    good.attributes.insert(
        "plan".into(),
        rapport_core::timeline::AttributeValue::Text("pro".into()),
    );
    let mut bad = event("stripe", "evt_bad", "billing.invoice.paid", 2, Some(acme));
    bad.attributes.insert(
        "plan".into(),
        rapport_core::timeline::AttributeValue::Text("team".into()),
    );
    let worse = event("stripe", "evt_worse", "billing.invoice.paid", 3, Some(acme));
    store
        .upsert_events(&[good, bad, worse], hours(4))
        .await
        .unwrap();
    rapport_testkit::database::execute_raw(
        &url,
        r#"UPDATE timeline_events
           SET attributes = '{"ratio": {"float": null}, "plan": {"text": "team"}, "odd": {"vector": [1]}}'
           WHERE source_id = 'evt_bad'"#,
    )
    .await;
    rapport_testkit::database::execute_raw(
        &url,
        r#"UPDATE timeline_events
           SET kind = 'Not A Kind', hints = '[1, 2]', match_detail = NULL
           WHERE source_id = 'evt_worse'"#,
    )
    .await;

    let page = store
        .timeline(&TimelineQuery::account(
            acme,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    // The three events and the account's opening handoff.
    assert_eq!(page.events.len(), 4, "every row is on the page");
    let by_id = |id: &str| {
        page.events
            .iter()
            .find(|event| event.event.key.source_id == id)
            .unwrap()
    };
    assert_eq!(by_id("evt_good").unreadable, None);
    let bad = by_id("evt_bad");
    let why = bad.unreadable.as_deref().unwrap();
    assert!(
        why.contains("attribute `ratio`") && why.contains("attribute `odd`"),
        "{why}"
    );
    assert_eq!(
        bad.event.attributes.get("plan"),
        Some(&rapport_core::timeline::AttributeValue::Text("team".into())),
        "the attributes that read are kept"
    );
    let worse = by_id("evt_worse");
    assert_eq!(worse.event.kind.as_str(), EventKind::UNREADABLE);
    let why = worse.unreadable.as_deref().unwrap();
    assert!(
        why.contains("kind") && why.contains("hints") && why.contains("match reason"),
        "{why}"
    );
    assert_eq!(
        worse.event.placement.as_ref().map(|p| p.account),
        Some(acme)
    );

    // Single reads and the feed answer too.
    let one = store
        .event(bad.id, rapport_store::Reader::Operator)
        .await
        .unwrap()
        .unwrap();
    assert!(one.unreadable.is_some());
    let feed = store
        .feed(&rapport_store::FeedQuery {
            viewer: org.mia.id,
            at: hours(5),
            connectors: Vec::new(),
            kind_prefix: None,
            from: None,
            until: None,
            after: None,
            limit: 50,
        })
        .await
        .unwrap();
    assert_eq!(feed.events.len(), 4);
}
