//! One message or meeting seen through several connections is one event
//! (`rapport_core::sighting`): through the organisation's mailbox and a person's
//! Gmail, or in two people's mailboxes. Its content is the newest any sighting
//! reported, it lives while any sighting does, people see the most any sighting
//! lets them, and mail stored before identities is merged by the migration.

use crate::support::*;
use chrono::Duration as Span;
use rapport_core::AccountId;
use rapport_core::StaffId;
use rapport_core::insight::{Insight, Observed};
use rapport_core::permission::Authority::Operator;
use rapport_core::sharing::{Capture, Sharing, person_connector_id};
use rapport_core::timeline::{
    AttributeValue, DedupeKey, EventKind, MatchReason, NewEvent, Placement, TimelineEvent,
};
use rapport_store::{PageWrite, Reader, Store, TIMELINE_PAGE_MAX, TimelineQuery, UpsertOutcome};
use rapport_testkit::database::execute_raw;
use rapport_testkit::{on_both_backends, on_both_backends_with_url};
use std::time::Duration;

on_both_backends!(
    one_message_through_two_connections_is_one_event,
    the_event_lives_while_any_sighting_does,
    the_newest_content_wins_and_between_equals_the_most_open,
    a_key_that_changes_what_it_is_leaves_its_old_event,
    an_event_stored_without_an_identity_is_adopted_not_doubled,
);
on_both_backends_with_url!(mail_stored_before_identities_is_merged_by_the_migration);

const ORG_MAILBOX: &str = "email-imap";

fn message(
    connector: &str,
    key: &str,
    message_id: &str,
    version: i64,
    title: &str,
    account: AccountId,
) -> NewEvent {
    let mut event = NewEvent::new(
        connector,
        key,
        EventKind::parse(EventKind::EMAIL_RECEIVED).unwrap(),
        t0(),
        title,
    );
    event.source_version = version;
    event.summary = format!("{title}, in full");
    event.attributes.insert(
        "message_id".into(),
        AttributeValue::Text(message_id.to_owned()),
    );
    event.placement = Some(Placement {
        account,
        reason: MatchReason::Direct,
    });
    event
}

/// The mail on `account`'s timeline as `reader` sees it.
async fn timeline(store: &Store, account: AccountId, reader: Reader) -> Vec<TimelineEvent> {
    let mut query = TimelineQuery::account(account, reader);
    query.limit = TIMELINE_PAGE_MAX;
    query.kind_prefix = Some("email".into());
    store.timeline(&query).await.unwrap().events
}

async fn key_of(store: &Store, connector: &str, source_id: &str) -> Option<TimelineEvent> {
    store
        .event_by_key(&DedupeKey {
            connector: connector.into(),
            source_id: source_id.into(),
        })
        .await
        .unwrap()
}

/// An account owned by Max, which Mia (a peer manager) does not see and Dan (their
/// director) does.
async fn setup(store: &Store) -> (Org, AccountId) {
    let org = small_org(store).await;
    let account = store
        .create_account(Operator, new_account("Acme", org.max.id), None, t0())
        .await
        .unwrap()
        .id;
    (org, account)
}

fn gmail(owner: StaffId) -> String {
    person_connector_id("gmail", owner)
}

async fn one_message_through_two_connections_is_one_event(store: Store) {
    let (org, acme) = setup(&store).await;
    // Ava's own Gmail (no connection record: private to her line) and the shared
    // IMAP mailbox hold the same message, its id written differently.
    let ava = gmail(org.ava.id);
    let (_, first) = store
        .upsert_events(
            &[message(
                &ava,
                "g-1",
                "<CAF1@client.example>",
                1,
                "Renewal",
                acme,
            )],
            t0(),
        )
        .await
        .unwrap();
    let UpsertOutcome::Inserted(id) = first[0] else {
        panic!("{first:?}");
    };
    // Max owns the account but is outside Ava's line: her private message is hidden.
    assert!(
        timeline(&store, acme, Reader::Staff(org.max.id))
            .await
            .is_empty()
    );

    let (summary, second) = store
        .upsert_events(
            &[message(
                ORG_MAILBOX,
                "msgid:caf1@client.example",
                "caf1@client.example",
                1,
                "Renewal",
                acme,
            )],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(summary.inserted, 0, "{second:?}");
    assert_eq!(
        second,
        vec![UpsertOutcome::Updated(id)],
        "the more open copy's content"
    );
    let all = timeline(&store, acme, Reader::Operator).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!(all[0].id, id);
    // The organisation's mailbox had it too: everyone who sees the account sees it.
    assert_eq!(all[0].capture, None);
    let as_max = timeline(&store, acme, Reader::Staff(org.max.id)).await;
    assert_eq!((as_max.len(), as_max[0].withheld), (1, false));
    // Either key finds the one event; filtering by either connector shows it.
    assert_eq!(key_of(&store, &ava, "g-1").await.unwrap().id, id);
    assert_eq!(
        key_of(&store, ORG_MAILBOX, "msgid:caf1@client.example")
            .await
            .unwrap()
            .id,
        id
    );
    for connector in [ava.clone(), ORG_MAILBOX.to_owned()] {
        let mut query = TimelineQuery::account(acme, Reader::Operator);
        query.kind_prefix = Some("email".into());
        query.connectors = vec![connector.clone()];
        assert_eq!(
            store.timeline(&query).await.unwrap().events.len(),
            1,
            "{connector}"
        );
    }
    // Seen again by either, at the same version: nothing changes.
    let (_, again) = store
        .upsert_events(
            &[message(
                &ava,
                "g-1",
                "<CAF1@client.example>",
                1,
                "Renewal",
                acme,
            )],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(again, vec![UpsertOutcome::Unchanged]);
}

async fn the_event_lives_while_any_sighting_does(store: Store) {
    let (org, acme) = setup(&store).await;
    let ava = gmail(org.ava.id);
    let mut leases = Vec::new();
    for connector in [ORG_MAILBOX, ava.as_str()] {
        store
            .register_connector(connector, "v1", true)
            .await
            .unwrap();
        leases.push(
            store
                .acquire_lease(connector, "node", Duration::from_secs(3_600), t0())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let write = |lease: usize, events: Vec<NewEvent>, deleted: Vec<String>| {
        let (store, lease) = (&store, &leases[lease]);
        async move {
            store
                .commit_page(
                    lease,
                    PageWrite {
                        events: &events,
                        deleted: &deleted,
                        checkpoint: None,
                    },
                    t0(),
                )
                .await
                .unwrap()
        }
    };
    write(
        0,
        vec![message(ORG_MAILBOX, "imap-1", "m1@x", 1, "Hello", acme)],
        vec![],
    )
    .await;
    write(
        1,
        vec![message(&ava, "g-1", "m1@x", 1, "Hello", acme)],
        vec![],
    )
    .await;
    let id = timeline(&store, acme, Reader::Operator).await[0].id;

    // The shared mailbox lets it go: Ava's private copy remains, and only her line
    // (Mia, Dan, Vera) sees it now.
    let commit = write(0, vec![], vec!["imap-1".into()]).await;
    assert_eq!(
        commit.deleted, 0,
        "the event is not deleted while Ava's sighting remains"
    );
    let left = timeline(&store, acme, Reader::Operator).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, id);
    assert_eq!(
        left[0].capture,
        Some(Capture {
            owner: org.ava.id,
            sharing: Sharing::Private
        })
    );
    assert!(
        timeline(&store, acme, Reader::Staff(org.max.id))
            .await
            .is_empty()
    );
    assert_eq!(
        timeline(&store, acme, Reader::Staff(org.director.id))
            .await
            .len(),
        1
    );
    assert_eq!(key_of(&store, &ava, "g-1").await.unwrap().id, id);
    assert!(key_of(&store, ORG_MAILBOX, "imap-1").await.is_none());

    // Deleting a key twice, or one never seen, does nothing.
    assert_eq!(
        write(0, vec![], vec!["imap-1".into(), "never".into()])
            .await
            .deleted,
        0
    );
    // The last sighting goes: so does the event, and the insight forgets it.
    assert_eq!(write(1, vec![], vec!["g-1".into()]).await.deleted, 1);
    assert!(timeline(&store, acme, Reader::Operator).await.is_empty());
    let kept = store.insight(acme).await.unwrap();
    assert_eq!(kept, Insight::of(std::iter::empty::<Observed<'_>>()));
}

async fn the_newest_content_wins_and_between_equals_the_most_open(store: Store) {
    let (org, acme) = setup(&store).await;
    let (ava, max) = (gmail(org.ava.id), gmail(org.max.id));
    store
        .upsert_events(&[message(&ava, "a", "m@x", 2, "Ava's v2", acme)], t0())
        .await
        .unwrap();
    // An older version from elsewhere leaves the content alone but joins the event.
    let (_, outcome) = store
        .upsert_events(&[message(ORG_MAILBOX, "o", "m@x", 1, "Org v1", acme)], t0())
        .await
        .unwrap();
    assert_eq!(outcome, vec![UpsertOutcome::Unchanged]);
    let event = &timeline(&store, acme, Reader::Operator).await[0];
    assert_eq!(event.event.title, "Ava's v2");
    assert_eq!(
        event.capture, None,
        "but it is shared: the org's mailbox has it"
    );
    // A newer version from anyone replaces it, and the event is under that key.
    store
        .upsert_events(&[message(&max, "x", "m@x", 3, "Max's v3", acme)], t0())
        .await
        .unwrap();
    let event = &timeline(&store, acme, Reader::Operator).await[0];
    assert_eq!(
        (
            event.event.title.as_str(),
            event.event.key.connector.as_str()
        ),
        ("Max's v3", max.as_str())
    );

    // Between equal versions the more open copy's content is kept: a private copy
    // never replaces what a shared one reported.
    let other = store
        .create_account(Operator, new_account("Globex", org.mia.id), None, t0())
        .await
        .unwrap()
        .id;
    store
        .upsert_events(
            &[message(ORG_MAILBOX, "o2", "n@x", 1, "Org's", other)],
            t0(),
        )
        .await
        .unwrap();
    let (_, outcome) = store
        .upsert_events(&[message(&ava, "a2", "n@x", 1, "Ava's", other)], t0())
        .await
        .unwrap();
    assert_eq!(outcome, vec![UpsertOutcome::Unchanged]);
    assert_eq!(
        timeline(&store, other, Reader::Operator).await[0]
            .event
            .title,
        "Org's"
    );
}

async fn a_key_that_changes_what_it_is_leaves_its_old_event(store: Store) {
    let (org, acme) = setup(&store).await;
    let ava = gmail(org.ava.id);
    store
        .upsert_events(
            &[
                message(&ava, "k", "first@x", 1, "First", acme),
                message(ORG_MAILBOX, "o", "first@x", 1, "First", acme),
            ],
            t0(),
        )
        .await
        .unwrap();
    // Ava's key now says it is another message: it leaves the first (which the org's
    // mailbox still has) and is the second.
    store
        .upsert_events(&[message(&ava, "k", "second@x", 2, "Second", acme)], t0())
        .await
        .unwrap();
    let mut titles: Vec<String> = timeline(&store, acme, Reader::Operator)
        .await
        .into_iter()
        .map(|event| event.event.title)
        .collect();
    titles.sort();
    assert_eq!(titles, ["First", "Second"]);
    // And as a plain event (no message id), it leaves the second, which goes with it.
    let mut plain = message(&ava, "k", "", 3, "Plain", acme);
    plain.attributes.clear();
    store.upsert_events(&[plain], t0()).await.unwrap();
    let mut titles: Vec<String> = timeline(&store, acme, Reader::Operator)
        .await
        .into_iter()
        .map(|event| event.event.title)
        .collect();
    titles.sort();
    assert_eq!(titles, ["First", "Plain"]);
    assert_eq!(
        key_of(&store, &ava, "k").await.unwrap().event.title,
        "Plain"
    );
}

async fn an_event_stored_without_an_identity_is_adopted_not_doubled(store: Store) {
    let (org, acme) = setup(&store).await;
    let mut before = message(ORG_MAILBOX, "o", "", 1, "No id yet", acme);
    before.attributes.clear();
    let (_, outcome) = store.upsert_events(&[before], t0()).await.unwrap();
    let UpsertOutcome::Inserted(id) = outcome[0] else {
        panic!("{outcome:?}");
    };
    // Its next version says which message it is: the same event, now shared by
    // identity with Ava's copy.
    store
        .upsert_events(
            &[message(ORG_MAILBOX, "o", "m@x", 2, "With id", acme)],
            t0(),
        )
        .await
        .unwrap();
    store
        .upsert_events(
            &[message(&gmail(org.ava.id), "g", "m@x", 1, "Ava's", acme)],
            t0(),
        )
        .await
        .unwrap();
    let events = timeline(&store, acme, Reader::Operator).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (events[0].id, events[0].event.title.as_str()),
        (id, "With id")
    );
}

/// A database written before identities (migration 15 undone by hand, as an older
/// rapport left it) with the same message in two mailboxes and in the shared one:
/// opening it merges them into the first event, with a sighting each, the capture
/// summary of all three, and insights rebuilt.
async fn mail_stored_before_identities_is_merged_by_the_migration(store: Store, url: String) {
    let (org, acme) = setup(&store).await;
    let other = store
        .create_account(Operator, new_account("Globex", org.mia.id), None, t0())
        .await
        .unwrap()
        .id;
    let (ava, max) = (gmail(org.ava.id), gmail(org.max.id));
    // Written as events that do not say their message id yet (`message_ref`).
    let mut events = vec![
        message(&ava, "a", "<Same@x>", 1, "Ava's copy", acme),
        message(&max, "m", "same@x", 1, "Max's copy", other),
        message(ORG_MAILBOX, "o", "SAME@X", 1, "The org's copy", acme),
        message(&ava, "b", "<other@x>", 1, "Another", acme),
    ];
    for (n, event) in events.iter_mut().enumerate() {
        event.occurred_at = t0() + Span::minutes(n as i64);
        let id = event.attributes.remove("message_id").unwrap();
        event.attributes.insert("message_ref".into(), id);
    }
    store.upsert_events(&events, t0()).await.unwrap();
    assert_eq!(timeline(&store, acme, Reader::Operator).await.len(), 3);
    store.close().await;

    let undo = [
        "DROP INDEX timeline_by_identity",
        "DROP TABLE event_sightings",
        "ALTER TABLE timeline_events DROP COLUMN identity",
        "DELETE FROM _sqlx_migrations WHERE version >= 15",
    ];
    for sql in undo {
        execute_raw(&url, sql).await;
    }
    let rename = if url.starts_with("sqlite:") {
        "UPDATE timeline_events SET attributes = replace(attributes, '\"message_ref\"', '\"message_id\"')"
    } else {
        "UPDATE timeline_events SET attributes = replace(attributes::text, '\"message_ref\"', '\"message_id\"')::jsonb"
    };
    execute_raw(&url, rename).await;

    let store = Store::connect(&url).await.unwrap();
    let on_acme = timeline(&store, acme, Reader::Operator).await;
    let mut titles: Vec<&str> = on_acme.iter().map(|e| e.event.title.as_str()).collect();
    titles.sort();
    assert_eq!(titles, ["Another", "Ava's copy"], "the first copy stays");
    assert!(timeline(&store, other, Reader::Operator).await.is_empty());
    let merged = on_acme
        .iter()
        .find(|e| e.event.title == "Ava's copy")
        .unwrap();
    assert_eq!(merged.capture, None, "the org's mailbox had it: shared");
    for (connector, key) in [(ava.as_str(), "a"), (max.as_str(), "m"), (ORG_MAILBOX, "o")] {
        assert_eq!(key_of(&store, connector, key).await.unwrap().id, merged.id);
    }
    // Insights are what the timeline now says, on both accounts.
    for account in [acme, other] {
        let events = timeline(&store, account, Reader::Operator).await;
        assert_eq!(
            store.insight(account).await.unwrap(),
            Insight::of(events.iter().map(Observed::from)),
            "{account}"
        );
    }
    // And a new sighting joins the merged event.
    store
        .upsert_events(
            &[message(&gmail(org.mia.id), "x", "same@x", 1, "Mia's", acme)],
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(timeline(&store, acme, Reader::Operator).await.len(), 2);
    store.close().await;
}
