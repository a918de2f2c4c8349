//! Account insights kept on write: after any sequence of writes — pages that insert,
//! replace, move and delete events, notes and tasks, tasks completed, waiting events
//! placed by an identity change or by a person — each account's kept insight equals
//! the one computed from its timeline as it now stands.

use crate::support::*;
use chrono::{Duration as Span, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rapport_core::AccountId;
use rapport_core::insight::{Insight, Meetings, Observed};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::Level;
use rapport_core::timeline::{
    AccountHints, AttributeValue, Attributes, EventKind, Money, NewEvent, TimelineEvent,
};
use rapport_store::{NewTask, PageWrite, Store, TIMELINE_PAGE_MAX, TimelineQuery};
use rapport_testkit::database::{count_raw, execute_raw};
use std::collections::BTreeMap;
use std::time::Duration;

on_both_backends!(a_new_account_has_an_empty_insight);
on_both_backends_with_url!(insights_are_rebuilt_when_missing_or_of_another_shape);

const ACCOUNTS: usize = 3;
const KEYS: u8 = 8;

/// One event of the feed connector: which key and version, what it says, and which
/// account's domain it hints at (`ACCOUNTS` is a domain nobody has: it waits).
#[derive(Debug, Clone)]
struct Item {
    key: u8,
    version: i64,
    kind: &'static str,
    day: i64,
    status: Option<&'static str>,
    priority: Option<&'static str>,
    subject: Option<u8>,
    mrr: Option<(i64, i64)>,
    plan: Option<&'static str>,
    due: Option<u8>,
    target: usize,
    /// For mail and meetings: which of a few messages or meetings it is, as its
    /// `message_id` / `ical_uid` says — the same one from both connectors, or under
    /// two keys, is one event with two sightings.
    shared: Option<u8>,
}

#[derive(Debug, Clone)]
enum Write {
    /// A connector page (of `feed`, or of `feed2` when `second`): events, then
    /// deletions by key.
    Page {
        items: Vec<Item>,
        deleted: Vec<u8>,
        second: bool,
    },
    /// A task (with a due day) on an account.
    Task { account: usize, due: Option<u8> },
    /// The n-th task written so far is completed.
    Complete { nth: usize },
    /// The last account gains the domain its waiting events hint at.
    Learn,
    /// The n-th waiting event is placed on an account by a person.
    Place { nth: usize, account: usize },
}

fn item() -> impl Strategy<Value = Item> {
    let kinds = prop::sample::select(vec![
        "email.received",
        "email.sent",
        "support.ticket.created",
        "billing.invoice.paid",
        "billing.invoice.payment_failed",
        "billing.subscription.created",
        "billing.subscription.updated",
        "billing.subscription.deleted",
        "meeting.scheduled",
        "meeting.updated",
        "meeting.canceled",
        // Kinds an insight does not read, so an event changing to or from one counts.
        "support.ticket.updated",
        "crm.deal.updated",
    ]);
    (
        (0..KEYS, 1i64..4, kinds, 0i64..5),
        (
            prop::option::of(prop::sample::select(vec!["open", "solved", "done"])),
            prop::option::of(prop::sample::select(vec!["urgent", "normal"])),
            prop::option::of(0u8..3),
            prop::option::of((1_000i64..3_000, 1_000i64..3_000)),
            prop::option::of(prop::sample::select(vec!["Pro", "Team"])),
            prop::option::of(0u8..4),
            prop::option::of(0u8..3),
        ),
        0..=ACCOUNTS,
    )
        .prop_map(
            |(
                (key, version, kind, day),
                (status, priority, subject, mrr, plan, due, shared),
                target,
            )| {
                Item {
                    key,
                    version,
                    kind,
                    day,
                    status,
                    priority,
                    subject,
                    mrr,
                    plan,
                    due,
                    target,
                    shared,
                }
            },
        )
}

fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        4 => (
            prop::collection::vec(item(), 1..6),
            prop::collection::vec(0..KEYS, 0..2),
            any::<bool>(),
        )
            .prop_map(|(items, deleted, second)| Write::Page { items, deleted, second }),
        1 => (0..ACCOUNTS, prop::option::of(0u8..4))
            .prop_map(|(account, due)| Write::Task { account, due }),
        1 => (0usize..4).prop_map(|nth| Write::Complete { nth }),
        1 => Just(Write::Learn),
        1 => (0usize..4, 0..ACCOUNTS).prop_map(|(nth, account)| Write::Place { nth, account }),
    ]
}

fn domain_of(account: usize) -> String {
    format!("client{account}.test")
}

fn day(n: i64) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 2, 1, 8, 30, 0).unwrap() + Span::days(n)
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::Text(value.to_owned())
}

fn event_of(connector: &str, item: &Item) -> NewEvent {
    let mut event = NewEvent::new(
        connector,
        format!("k{}", item.key),
        EventKind::parse(item.kind).unwrap(),
        day(item.day),
        format!("{} {}", item.kind, item.key),
    );
    event.source_version = item.version;
    let mut attributes = Attributes::new();
    if let Some(status) = item.status {
        attributes.insert("status".into(), text(status));
    }
    if let Some(priority) = item.priority {
        attributes.insert("priority".into(), text(priority));
    }
    if let Some(subject) = item.subject {
        attributes.insert("invoice_id".into(), text(&format!("in_{subject}")));
        attributes.insert("subscription_id".into(), text(&format!("sub_{subject}")));
    }
    if let Some((now, before)) = item.mrr {
        let usd = |minor_units| {
            AttributeValue::Money(Money {
                minor_units,
                currency: "USD".into(),
            })
        };
        attributes.insert("mrr".into(), usd(now));
        attributes.insert("previous_mrr".into(), usd(before));
    }
    if let Some(plan) = item.plan {
        attributes.insert("plan".into(), text(plan));
        attributes.insert(
            "renews_at".into(),
            AttributeValue::Timestamp(day(item.day + 365)),
        );
    }
    if let Some(shared) = item.shared {
        if item.kind.starts_with("email.") {
            attributes.insert("message_id".into(), text(&format!("<m{shared}@x>")));
        } else if item.kind.starts_with("meeting.") {
            attributes.insert("ical_uid".into(), text(&format!("U{shared}@x")));
        }
    }
    if item.kind.starts_with("meeting.") {
        // Some meetings last an hour, some (`subject` absent) say no end at all.
        if let Some(hours) = item.subject {
            attributes.insert(
                "ends_at".into(),
                AttributeValue::Timestamp(day(item.day) + Span::hours(i64::from(hours))),
            );
        }
    }
    if let Some(due) = item.due {
        attributes.insert("due".into(), text(&format!("2026-02-0{}", due + 1)));
    }
    event.attributes = attributes;
    event.hints = AccountHints {
        domains: vec![domain(&domain_of(item.target))],
        ..AccountHints::default()
    };
    event
}

/// Every event of `account`'s own timeline.
async fn timeline_of(store: &Store, account: AccountId) -> Vec<TimelineEvent> {
    let mut query = TimelineQuery::account(account, rapport_store::Reader::Operator);
    query.limit = TIMELINE_PAGE_MAX;
    let mut events = Vec::new();
    loop {
        let page = store.timeline(&query).await.unwrap();
        events.extend(page.events);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return events,
        }
    }
}

/// Each account's insight as its timeline says it should be.
async fn recomputed(store: &Store, accounts: &[AccountId]) -> BTreeMap<AccountId, Insight> {
    let mut insights = BTreeMap::new();
    for account in accounts {
        let events = timeline_of(store, *account).await;
        insights.insert(*account, Insight::of(events.iter().map(Observed::from)));
    }
    insights
}

async fn apply(store: &Store, writes: &[Write]) -> Vec<AccountId> {
    let org = small_org(store).await;
    let mut accounts = Vec::new();
    for n in 0..ACCOUNTS {
        let mut account = new_account(&format!("Client {n}"), org.mia.id);
        // The last account learns its domain later (`Write::Learn`).
        if n + 1 < ACCOUNTS {
            account.domains = vec![domain(&domain_of(n))];
        }
        accounts.push(
            store
                .create_account(Operator, account, None, t0())
                .await
                .unwrap()
                .id,
        );
    }
    let at = t0() + Span::hours(1);
    let mut leases = Vec::new();
    for connector in ["feed", "feed2"] {
        store
            .register_connector(connector, "v1", true)
            .await
            .unwrap();
        leases.push(
            store
                .acquire_lease(connector, "node", Duration::from_secs(3_600), at)
                .await
                .unwrap()
                .expect("the lease is free"),
        );
    }
    let mut tasks = Vec::new();
    for write in writes {
        match write {
            Write::Page {
                items,
                deleted,
                second,
            } => {
                let lease = &leases[usize::from(*second)];
                let events: Vec<NewEvent> = items
                    .iter()
                    .map(|item| event_of(&lease.connector, item))
                    .collect();
                let deleted: Vec<String> = deleted.iter().map(|key| format!("k{key}")).collect();
                store
                    .commit_page(
                        lease,
                        PageWrite {
                            events: &events,
                            deleted: &deleted,
                            checkpoint: None,
                        },
                        at,
                    )
                    .await
                    .unwrap();
            }
            Write::Task { account, due } => {
                let task = NewTask {
                    text: "Call back".into(),
                    due: due.map(|due| day(i64::from(due)).date_naive()),
                    assignee: None,
                };
                let written = store
                    .add_task(Operator, accounts[*account], org.mia.id, task, at)
                    .await
                    .unwrap();
                tasks.push(written.id);
            }
            Write::Complete { nth } => {
                if let Some(task) = tasks.get(*nth) {
                    // A task completed twice is refused; that is not what is tested.
                    let _ = store.complete_task(Operator, *task, org.mia.id, at).await;
                }
            }
            Write::Learn => {
                store
                    .add_domain(
                        Operator,
                        accounts[ACCOUNTS - 1],
                        &domain(&domain_of(ACCOUNTS - 1)),
                    )
                    .await
                    .unwrap();
            }
            Write::Place { nth, account } => {
                let waiting = store
                    .unmatched_events(rapport_store::Reader::Operator, None, None, 50)
                    .await
                    .unwrap();
                if let Some(event) = waiting.events.get(*nth) {
                    store
                        .place_unmatched(Operator, event.id, accounts[*account], org.mia.id, None)
                        .await
                        .unwrap();
                }
            }
        }
    }
    accounts
}

// `run_property` hands over its strategy's value, a `Vec`, by reference.
#[allow(clippy::ptr_arg)]
async fn check_kept(store: &Store, writes: &Vec<Write>) -> Result<(), TestCaseError> {
    let accounts = apply(store, writes).await;
    let kept = store.insights(&accounts).await.unwrap();
    let expected = recomputed(store, &accounts).await;
    prop_assert_eq!(kept, expected);
    // The calendar read from the meeting indexes says what the timeline says, at a
    // moment among the meetings (so some are held, some to come, some under way).
    for now in [day(2) + Span::minutes(30), day(-1), day(9)] {
        let indexed = store.meetings(&accounts, now).await.unwrap();
        let mut expected = BTreeMap::new();
        for account in &accounts {
            let events = timeline_of(store, *account).await;
            let meetings = Meetings::of(events.iter().map(Observed::from), now);
            if meetings != Meetings::default() {
                expected.insert(*account, meetings);
            }
        }
        prop_assert_eq!(indexed, expected);
    }
    Ok(())
}

#[test]
fn kept_insights_equal_the_timeline_on_sqlite() {
    run_property(
        "a kept insight differs from its timeline's",
        cases(64),
        prop::collection::vec(write(), 1..12),
        sqlite_case,
        check_kept,
    );
}

#[test]
fn kept_insights_equal_the_timeline_on_postgres() {
    run_property(
        "a kept insight differs from its timeline's",
        cases(24),
        prop::collection::vec(write(), 1..12),
        postgres_case,
        check_kept,
    );
}

/// A database whose insight rows are missing (as after the migration that adds them)
/// or of an older shape gets them rebuilt from the timeline when it is opened.
async fn insights_are_rebuilt_when_missing_or_of_another_shape(store: Store, url: String) {
    let writes = vec![Write::Page {
        items: vec![
            Item {
                key: 1,
                version: 1,
                kind: "email.received",
                day: 2,
                status: None,
                priority: None,
                subject: None,
                mrr: None,
                plan: None,
                due: None,
                target: 0,
                shared: None,
            },
            Item {
                key: 2,
                version: 1,
                kind: "support.ticket.created",
                day: 3,
                status: Some("open"),
                priority: Some("urgent"),
                subject: None,
                mrr: None,
                plan: None,
                due: None,
                target: 1,
                shared: None,
            },
        ],
        deleted: Vec::new(),
        second: false,
    }];
    let accounts = apply(&store, &writes).await;
    let expected = recomputed(&store, &accounts).await;
    assert!(expected[&accounts[0]].received.is_some());
    assert_eq!(expected[&accounts[1]].open_tickets.len(), 1);
    assert_eq!(store.insights(&accounts).await.unwrap(), expected);

    // One row gone, one from an older build, one that cannot be read.
    execute_raw(
        &url,
        &format!(
            "DELETE FROM account_insights WHERE account_id = {}",
            accounts[0].0
        ),
    )
    .await;
    execute_raw(
        &url,
        &format!(
            "UPDATE account_insights SET version = 0, insight = '{{}}' WHERE account_id = {}",
            accounts[1].0
        ),
    )
    .await;
    execute_raw(
        &url,
        &format!(
            "UPDATE account_insights SET insight = 'not json' WHERE account_id = {}",
            accounts[2].0
        ),
    )
    .await;
    // Read as they are, each is computed from the timeline instead.
    assert_eq!(store.insights(&accounts).await.unwrap(), expected);
    // A write to a stale account rebuilds it rather than folding into a wrong value.
    let late = NewTask {
        text: "Follow up".into(),
        due: Some(day(9).date_naive()),
        assignee: None,
    };
    let org_owner = store.account(accounts[1]).await.unwrap().owner.unwrap();
    store
        .add_task(Operator, accounts[1], org_owner, late, t0())
        .await
        .unwrap();
    let expected = recomputed(&store, &accounts).await;
    assert_eq!(expected[&accounts[1]].open_task_due.len(), 1);
    assert_eq!(store.insights(&accounts).await.unwrap(), expected);
    // The write rebuilt its account's row; the deleted one is still missing, until
    // migrating (every start does) writes what is missing or stale.
    let current = "SELECT COUNT(*) FROM account_insights WHERE version = 1";
    assert_eq!(count_raw(&url, current).await, ACCOUNTS as i64 - 1);
    store.migrate().await.unwrap();
    assert_eq!(count_raw(&url, current).await, ACCOUNTS as i64);
    assert_eq!(store.insights(&accounts).await.unwrap(), expected);
}

async fn a_new_account_has_an_empty_insight(store: Store) {
    let owner = hire(&store, "Mia", Level::Manager, None).await;
    let account = open_account(&store, "Quiet", owner.id, None).await;
    assert_eq!(store.insight(account).await.unwrap(), Insight::default());
    assert!(store.insight(AccountId(account.0 + 1_000)).await.is_err());
}
