//! The SQL visibility queries must agree with `rapport_core::visibility` everywhere:
//! the visible set, one account's check, the accounts a feed shows events from, and —
//! for events people's own connections captured — which of them each reader sees
//! whole, withheld or not at all (`rapport_core::sharing`), in feeds, timelines, the
//! unmatched inbox and single reads.

use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use rapport_core::EventId;
use rapport_core::account::AccountForest;
use rapport_core::assignment::{Role, check_history};
use rapport_core::permission::Authority::Operator;
use rapport_core::secret::KeyRing;
use rapport_core::sharing::{Access, Capture, Sharing, person_connector_id};
use rapport_core::sighting;
use rapport_core::staff::{Level, NewStaff, OrgChart, Staff};
use rapport_core::timeline::{AttributeValue, EventKind, MatchReason, NewEvent, Placement};
use rapport_core::visibility::World;
use rapport_core::{AccountId, StaffId};
use rapport_store::{
    ConnectionKey, Error, FeedQuery, GrantedTokens, Reader, Store, TIMELINE_PAGE_MAX,
    TimelineQuery, UpsertOutcome,
};
use std::collections::{BTreeMap, BTreeSet};

on_both_backends!(
    the_rule_in_a_readable_org,
    writes_on_a_persons_authority_are_decided_with_the_write
);

/// The DESIGN.md rule, walked through by hand on the small org.
async fn the_rule_in_a_readable_org(store: Store) {
    let org = small_org(&store).await;
    let group = open_account(&store, "Group", org.mia.id, None).await;
    let subsidiary = open_account(&store, "Group Subsidiary", org.max.id, Some(group)).await;
    let maxs = open_account(&store, "Max's client", org.max.id, None).await;
    let supported = open_account(&store, "Supported", org.max.id, None).await;
    store
        .add_support(Operator, supported, org.ava.id, None, hours(1))
        .await
        .unwrap();
    let now = hours(2);
    let visible = |staff: StaffId| {
        let store = store.clone();
        async move { store.visible_account_ids(staff, now).await.unwrap() }
    };
    // Ava, an associate, sees only what she supports.
    assert_eq!(visible(org.ava.id).await, BTreeSet::from([supported]));
    // Mia sees her own, its subsidiary (owned by a peer!), and her report's.
    assert_eq!(
        visible(org.mia.id).await,
        BTreeSet::from([group, subsidiary, supported])
    );
    // Max sees his own only: not his peer's group above his subsidiary.
    assert_eq!(
        visible(org.max.id).await,
        BTreeSet::from([subsidiary, maxs, supported])
    );
    // The director and VP see everything beneath them.
    let everything = BTreeSet::from([group, subsidiary, maxs, supported]);
    assert_eq!(visible(org.director.id).await, everything);
    assert_eq!(visible(org.vp.id).await, everything);
    assert!(store.can_see(org.mia.id, subsidiary, now).await.unwrap());
    assert!(!store.can_see(org.max.id, group, now).await.unwrap());
    // Before Ava's support started, Mia could not see that account.
    assert!(
        !store
            .can_see(org.mia.id, supported, hours(0))
            .await
            .unwrap()
    );
    // After a handoff the old owner loses sight; history still says who had it.
    store
        .reassign_owner(Operator, maxs, org.mia.id, None, hours(3))
        .await
        .unwrap();
    assert!(!store.can_see(org.max.id, maxs, hours(4)).await.unwrap());
    assert!(store.can_see(org.max.id, maxs, hours(2)).await.unwrap());
    // Strangers and unknown accounts see nothing.
    assert!(visible(StaffId(999)).await.is_empty());
    assert!(!store.can_see(org.vp.id, AccountId(999), now).await.unwrap());
}

/// A write made on a person's authority is decided by the permission table, on the
/// facts the write's own transaction sees, and a refused one writes nothing.
async fn writes_on_a_persons_authority_are_decided_with_the_write(store: Store) {
    use rapport_core::DomainError;
    use rapport_core::permission::{Action, Authority, Permissions};
    use rapport_store::AccountUpdate;
    let org = small_org(&store).await;
    let mias = open_account(&store, "Mia's", org.mia.id, None).await;
    let maxs = open_account(&store, "Max's", org.max.id, None).await;
    let now = hours(1);
    let mia = Permissions::of(&org.mia);
    let ava = Permissions::of(&org.ava);
    let events = |account| {
        let store = store.clone();
        async move {
            let query = rapport_store::TimelineQuery {
                account,
                reader: rapport_store::Reader::Operator,
                include_children: false,
                connectors: Vec::new(),
                kind_prefix: None,
                from: None,
                until: None,
                after: None,
                limit: TIMELINE_PAGE_MAX,
            };
            store.timeline(&query).await.unwrap().events.len()
        }
    };
    let before = events(maxs).await;
    // Mia cannot see Max's account: the same answer as a missing one, nothing written.
    let work = Action::Work(maxs);
    let refused = store
        .add_note(
            Authority::Staff(&mia, &work),
            maxs,
            org.mia.id,
            "Hello",
            now,
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Domain(DomainError::UnknownAccount(id))) if id == maxs),
        "{refused:?}"
    );
    assert_eq!(events(maxs).await, before);
    // The action must name the account written: naming a visible one does not help
    // when the decision is about the one named.
    let work = Action::Work(mias);
    store
        .add_note(
            Authority::Staff(&mia, &work),
            mias,
            org.mia.id,
            "Hello",
            now,
        )
        .await
        .unwrap();
    // Associates do not restructure: refused with a reason, the name unchanged.
    store
        .add_support(Operator, mias, org.ava.id, None, now)
        .await
        .unwrap();
    let rename = Action::Restructure {
        account: mias,
        parent: None,
    };
    let update = AccountUpdate {
        name: Some("Renamed".into()),
        ..AccountUpdate::default()
    };
    let refused = store
        .update_account(Authority::Staff(&ava, &rename), mias, update, hours(2))
        .await;
    assert!(
        matches!(refused, Err(Error::Domain(DomainError::NotPermitted(_)))),
        "{refused:?}"
    );
    assert_eq!(store.account(mias).await.unwrap().name, "Mia's");
    // A handoff moves all its accounts or none: one out of sight refuses them all.
    let handoff = Action::HandOff {
        from: org.mia.id,
        to: org.mia.id,
        accounts: vec![mias, maxs],
    };
    let director = Permissions::of(&org.director);
    let refused = store
        .reassign_owners(
            Authority::Staff(&mia, &handoff),
            &[mias, maxs],
            org.mia.id,
            Some(org.mia.id),
            hours(3),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Domain(DomainError::UnknownAccount(id))) if id == maxs),
        "{refused:?}"
    );
    assert_eq!(store.account(maxs).await.unwrap().owner, Some(org.max.id));
    // Their director sees both and has both people in their line.
    let handoff = Action::HandOff {
        from: org.mia.id,
        to: org.max.id,
        accounts: vec![mias],
    };
    store
        .reassign_owners(
            Authority::Staff(&director, &handoff),
            &[mias],
            org.max.id,
            Some(org.director.id),
            hours(3),
        )
        .await
        .unwrap();
    // Mia handed her account on, and Ava (her report) stops supporting it: Mia's next
    // write to it is refused in its transaction.
    store
        .end_support(Operator, mias, org.ava.id, None, hours(3))
        .await
        .unwrap();
    let work = Action::Work(mias);
    let refused = store
        .add_note(
            Authority::Staff(&mia, &work),
            mias,
            org.mia.id,
            "Late",
            hours(4),
        )
        .await;
    assert!(
        matches!(refused, Err(Error::Domain(DomainError::UnknownAccount(_)))),
        "{refused:?}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Reassign {
        account: Index,
        staff: Index,
    },
    AddSupport {
        account: Index,
        staff: Index,
    },
    EndSupport {
        account: Index,
        staff: Index,
    },
    Reparent {
        account: Index,
        parent: Option<Index>,
    },
}

#[derive(Debug, Clone)]
struct Plan {
    /// Each person's level and a choice of manager among the more senior.
    staff: Vec<(Level, Option<Index>)>,
    /// Each account's parent (among earlier accounts) and owner choice.
    accounts: Vec<(Option<Index>, Index)>,
    /// Changes over time, one per hour.
    ops: Vec<Op>,
    /// People to try to deactivate at the end.
    deactivate: Vec<Index>,
    /// Events people's own connections captured: on which account (none: the
    /// unmatched inbox), through whose connection, at which sharing level, and
    /// whether it is one of a few messages that several mailboxes hold (then it is
    /// one event with a sighting per capture, on the account of its first capture).
    captures: Vec<(Option<Index>, Index, Sharing, Option<u8>)>,
}

fn sharing() -> impl Strategy<Value = Sharing> {
    prop_oneof![
        Just(Sharing::Shared),
        Just(Sharing::Metadata),
        Just(Sharing::Private),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    prop_oneof![
        4 => Just(Level::Associate),
        3 => Just(Level::Manager),
        2 => Just(Level::Director),
        1 => Just(Level::Vp),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<Index>(), any::<Index>())
            .prop_map(|(account, staff)| Op::Reassign { account, staff }),
        (any::<Index>(), any::<Index>())
            .prop_map(|(account, staff)| Op::AddSupport { account, staff }),
        (any::<Index>(), any::<Index>())
            .prop_map(|(account, staff)| Op::EndSupport { account, staff }),
        (any::<Index>(), any::<Option<Index>>())
            .prop_map(|(account, parent)| Op::Reparent { account, parent }),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec((level(), any::<Option<Index>>()), 1..10),
        prop::collection::vec((any::<Option<Index>>(), any::<Index>()), 1..12),
        prop::collection::vec(op(), 0..24),
        prop::collection::vec(any::<Index>(), 0..3),
        prop::collection::vec(
            (
                any::<Option<Index>>(),
                any::<Index>(),
                sharing(),
                prop::option::of(0u8..3),
            ),
            0..12,
        ),
    )
        .prop_map(|(staff, accounts, ops, deactivate, captures)| Plan {
            staff,
            accounts,
            ops,
            deactivate,
            captures,
        })
}

/// Applies the plan through the store's public API. Changes the domain refuses are
/// skipped (the store must refuse them cleanly); any other error fails the case.
async fn build(store: &Store, plan: &Plan) -> Result<(Vec<Staff>, Vec<AccountId>), TestCaseError> {
    let skip_refusals = |result: Result<_, Error>| match result {
        Ok(_) | Err(Error::Domain(_)) | Err(Error::Conflict(_)) => Ok(()),
        Err(other) => Err(TestCaseError::fail(format!("store failed: {other}"))),
    };
    let mut people = plan.staff.clone();
    people.sort_by_key(|(level, _)| std::cmp::Reverse(*level));
    // Someone must be able to own accounts.
    if people[0].0 == Level::Associate {
        people[0].0 = Level::Manager;
    }
    let mut staff: Vec<Staff> = Vec::new();
    for (index, (level, manager)) in people.iter().enumerate() {
        let seniors: Vec<StaffId> = staff
            .iter()
            .filter(|s| s.level > *level)
            .map(|s| s.id)
            .collect();
        let reports_to = match (level, manager) {
            (Level::Vp, _) | (_, None) => None,
            (_, Some(_)) if seniors.is_empty() => None,
            (_, Some(choice)) => Some(seniors[choice.index(seniors.len())]),
        };
        let person = store
            .create_staff(
                NewStaff {
                    name: format!("Person {index}"),
                    email: email(&format!("person{index}@rapport.test")),
                    level: *level,
                    reports_to,
                    is_admin: false,
                },
                t0(),
            )
            .await
            .map_err(|error| TestCaseError::fail(format!("hire: {error}")))?;
        staff.push(person);
    }
    let owners: Vec<StaffId> = staff
        .iter()
        .filter(|s| s.level != Level::Associate)
        .map(|s| s.id)
        .collect();
    let mut accounts: Vec<AccountId> = Vec::new();
    for (index, (parent, owner)) in plan.accounts.iter().enumerate() {
        let parent = parent
            .filter(|_| !accounts.is_empty())
            .map(|choice| accounts[choice.index(accounts.len())]);
        let owner = owners[owner.index(owners.len())];
        let mut new = new_account(&format!("Account {index}"), owner);
        new.parent = parent;
        let account = store
            .create_account(Operator, new, None, t0())
            .await
            .map_err(|error| TestCaseError::fail(format!("open account: {error}")))?;
        accounts.push(account.id);
    }
    for (hour, op) in plan.ops.iter().enumerate() {
        let at = hours(1 + hour as i64);
        let pick_account = |choice: &Index| accounts[choice.index(accounts.len())];
        let pick_staff = |choice: &Index| staff[choice.index(staff.len())].id;
        match op {
            Op::Reassign { account, staff } => skip_refusals(
                store
                    .reassign_owner(Operator, pick_account(account), pick_staff(staff), None, at)
                    .await
                    .map(|_| ()),
            )?,
            Op::AddSupport { account, staff } => skip_refusals(
                store
                    .add_support(Operator, pick_account(account), pick_staff(staff), None, at)
                    .await
                    .map(|_| ()),
            )?,
            Op::EndSupport { account, staff } => skip_refusals(
                store
                    .end_support(Operator, pick_account(account), pick_staff(staff), None, at)
                    .await
                    .map(|_| ()),
            )?,
            Op::Reparent { account, parent } => skip_refusals(
                store
                    .set_account_parent(
                        Operator,
                        pick_account(account),
                        parent.as_ref().map(pick_account),
                        at,
                    )
                    .await
                    .map(|_| ()),
            )?,
        }
    }
    for (offset, choice) in plan.deactivate.iter().enumerate() {
        let person = staff[choice.index(staff.len())].id;
        skip_refusals(
            store
                .deactivate_staff(person, None, hours(100 + offset as i64))
                .await
                .map(|_| ()),
        )?;
    }
    Ok((staff, accounts))
}

async fn check_agreement(store: &Store, plan: &Plan) -> Result<(), TestCaseError> {
    let (_, accounts) = build(store, plan).await?;
    let staff = store
        .list_staff()
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let org = OrgChart::new(staff.iter().map(Staff::org_node));
    prop_assert!(org.validate().is_ok(), "the stored org chart breaks a rule");
    let forest = AccountForest::new(store.account_tree().await.unwrap());
    let assignments = store.all_assignments().await.unwrap();
    let world = World {
        org: &org,
        accounts: &forest,
        assignments: &assignments,
    };
    let times: [DateTime<Utc>; 5] = [
        t0() - Duration::hours(1),
        t0(),
        hours(plan.ops.len() as i64 / 2),
        hours(50),
        hours(200),
    ];
    for &account in &accounts {
        let history: Vec<_> = assignments
            .iter()
            .filter(|a| a.account == account)
            .cloned()
            .collect();
        prop_assert!(
            check_history(&history).is_ok(),
            "overlapping assignments on {account}"
        );
        for &at in &times[1..] {
            let owners = history
                .iter()
                .filter(|a| a.role == Role::Owner && a.is_current_at(at))
                .count();
            prop_assert_eq!(
                owners,
                1,
                "{} must have exactly one owner at {}",
                account,
                at
            );
        }
    }
    // One note on every account, so a feed shows each account it may.
    if let Some(author) = staff.iter().find(|person| person.active) {
        for &account in &accounts {
            store
                .add_note(Operator, account, author.id, "Checked in", t0())
                .await
                .map_err(|error| TestCaseError::fail(format!("note: {error}")))?;
        }
    }
    let noted: BTreeSet<AccountId> = if staff.iter().any(|person| person.active) {
        accounts.iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    let captured = capture_events(store, plan, &staff, &accounts).await?;
    // What each event is, for the reader: notes are whole to whoever sees their account.
    let mut on_accounts: Vec<(EventId, AccountId, Vec<Option<Capture>>)> = Vec::new();
    if staff.iter().any(|person| person.active) {
        for &account in &accounts {
            let notes = store
                .timeline(&TimelineQuery {
                    limit: TIMELINE_PAGE_MAX,
                    ..TimelineQuery::account(account, Reader::Operator)
                })
                .await
                .unwrap();
            prop_assert!(notes.next.is_none(), "the case fits one timeline page");
            for note in notes.events.iter().filter(|e| e.capture.is_none()) {
                on_accounts.push((note.id, account, vec![None]));
            }
        }
    }
    for (id, account, sightings) in &captured {
        if let Some(account) = account {
            on_accounts.push((*id, *account, sightings.iter().copied().map(Some).collect()));
        }
    }
    let mut viewers: Vec<StaffId> = staff.iter().map(|s| s.id).collect();
    viewers.push(StaffId(9_999));
    let mut candidates = accounts.clone();
    candidates.push(AccountId(9_999));
    for &at in &times {
        for &viewer in &viewers {
            let sql = store.visible_account_ids(viewer, at).await.unwrap();
            prop_assert_eq!(
                &sql,
                &world.visible_accounts(viewer, at),
                "visible to {} at {}",
                viewer,
                at
            );
            let feed = store
                .feed(&FeedQuery {
                    viewer,
                    at,
                    connectors: Vec::new(),
                    kind_prefix: None,
                    from: None,
                    until: None,
                    after: None,
                    limit: TIMELINE_PAGE_MAX,
                })
                .await
                .unwrap();
            prop_assert!(feed.next.is_none(), "the case fits one feed page");
            let shown: BTreeSet<AccountId> = feed
                .events
                .iter()
                .filter_map(|event| event.event.placement.as_ref().map(|p| p.account))
                .collect();
            let expected: BTreeSet<AccountId> = world
                .visible_accounts(viewer, at)
                .intersection(&noted)
                .copied()
                .collect();
            prop_assert!(
                shown.is_subset(&world.visible_accounts(viewer, at)),
                "the feed of {} at {} shows accounts they do not see",
                viewer,
                at
            );
            prop_assert!(
                expected.is_subset(&shown),
                "the feed of {} at {} misses accounts they see",
                viewer,
                at
            );
            // Event by event, the feed shows exactly what core says, withheld where
            // core says metadata only.
            let seen: BTreeMap<EventId, bool> = feed
                .events
                .iter()
                .map(|event| (event.id, event.withheld))
                .collect();
            let wanted: BTreeMap<EventId, bool> = on_accounts
                .iter()
                .filter_map(|(id, account, sightings)| {
                    world
                        .event_access(viewer, *account, sightings, at)
                        .map(|access| (*id, access == Access::MetadataOnly))
                })
                .collect();
            prop_assert_eq!(&seen, &wanted, "the feed of {} at {}", viewer, at);
            // Paged three at a time, every page but the last is full: the query itself
            // leaves out what the reader may not see, so no page comes up short.
            let mut after = None;
            let mut paged = Vec::new();
            loop {
                let page = store
                    .feed(&FeedQuery {
                        viewer,
                        at,
                        connectors: Vec::new(),
                        kind_prefix: None,
                        from: None,
                        until: None,
                        after,
                        limit: 3,
                    })
                    .await
                    .unwrap();
                if page.next.is_some() {
                    prop_assert_eq!(page.events.len(), 3, "a short feed page for {}", viewer);
                }
                paged.extend(page.events.iter().map(|event| event.id));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            prop_assert_eq!(
                paged,
                feed.events.iter().map(|event| event.id).collect::<Vec<_>>()
            );
            for event in &feed.events {
                if event.withheld {
                    prop_assert!(
                        event.event.summary.is_empty() && event.event.url.is_none(),
                        "a withheld event in {}'s feed shows its content",
                        viewer
                    );
                }
            }
            for &account in &candidates {
                let sql = store.can_see(viewer, account, at).await.unwrap();
                prop_assert_eq!(
                    sql,
                    world.can_see(viewer, account, at),
                    "{} sees {} at {}",
                    viewer,
                    account,
                    at
                );
            }
        }
    }
    // Now: each visible account's timeline, single reads, and the inbox.
    let now = Utc::now();
    for &viewer in &viewers {
        let line = world
            .org
            .get(viewer)
            .filter(|node| node.active)
            .map(|_| org.subtree(viewer))
            .unwrap_or_default();
        for &account in &world.visible_accounts(viewer, now) {
            let page = store
                .timeline(&TimelineQuery {
                    limit: TIMELINE_PAGE_MAX,
                    ..TimelineQuery::account(account, Reader::Staff(viewer))
                })
                .await
                .unwrap();
            let seen: BTreeMap<EventId, bool> = page
                .events
                .iter()
                .map(|event| (event.id, event.withheld))
                .collect();
            let wanted: BTreeMap<EventId, bool> = on_accounts
                .iter()
                .filter(|(_, on, _)| *on == account)
                .filter_map(|(id, on, sightings)| {
                    world
                        .event_access(viewer, *on, sightings, now)
                        .map(|access| (*id, access == Access::MetadataOnly))
                })
                .collect();
            prop_assert_eq!(
                &seen,
                &wanted,
                "the timeline of {} as {} reads it",
                account,
                viewer
            );
        }
        for (id, _, sightings) in &captured {
            let read = store.event(*id, Reader::Staff(viewer)).await.unwrap();
            let wanted = sighting::access(sightings.iter().map(Some), &line);
            prop_assert_eq!(
                read.as_ref().map(|event| event.withheld),
                wanted.map(|access| access == Access::MetadataOnly),
                "event {} read by {}",
                id,
                viewer
            );
        }
        let inbox = store
            .unmatched_events(Reader::Staff(viewer), None, None, TIMELINE_PAGE_MAX)
            .await
            .unwrap();
        let seen: BTreeMap<EventId, bool> = inbox
            .events
            .iter()
            .map(|event| (event.id, event.withheld))
            .collect();
        let wanted: BTreeMap<EventId, bool> = captured
            .iter()
            .filter(|(_, account, _)| account.is_none())
            .filter_map(|(id, _, sightings)| {
                sighting::access(sightings.iter().map(Some), &line)
                    .map(|access| (*id, access == Access::MetadataOnly))
            })
            .collect();
        prop_assert_eq!(&seen, &wanted, "the inbox as {} reads it", viewer);
    }
    Ok(())
}

/// Stores the plan's captured events through real connections: each owner connects
/// `mail`, their connection gets the event's level, and the event arrives as their
/// connection's (`mail:<owner>`), placed on its account or left unmatched. A message
/// several mailboxes hold arrives once per capture, its `Message-ID` written
/// variously. Returns each stored event's id, account and the captures of its
/// sightings, at the levels their connections ended with.
async fn capture_events(
    store: &Store,
    plan: &Plan,
    staff: &[Staff],
    accounts: &[AccountId],
) -> Result<Vec<(EventId, Option<AccountId>, Vec<Capture>)>, TestCaseError> {
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    // Per event: id, account, owners of its sightings.
    let mut events: Vec<(EventId, Option<AccountId>, Vec<StaffId>)> = Vec::new();
    let mut by_message: BTreeMap<u8, usize> = BTreeMap::new();
    for (index, (account, owner, level, message)) in plan.captures.iter().enumerate() {
        let owner = staff[owner.index(staff.len())].id;
        let shared = message.and_then(|message| by_message.get(&message).copied());
        let account = match shared {
            Some(event) => events[event].1,
            None => account.map(|choice| accounts[choice.index(accounts.len())]),
        };
        let key = ConnectionKey {
            connector: "mail".into(),
            owner: Some(owner),
        };
        let connection = store
            .grant_connection(
                &key,
                GrantedTokens {
                    access: keys.seal("access", &key.seal_context("access")),
                    access_expires_at: None,
                    refresh: None,
                    scopes: Vec::new(),
                    provider_account: None,
                    sharing: Sharing::Shared,
                },
                t0(),
            )
            .await
            .map_err(|error| TestCaseError::fail(format!("connect: {error}")))?;
        // Every event of a connection carries its latest level: setting it re-stamps
        // what the connection stored before.
        store
            .set_connection_sharing(connection.id, *level, Some(*level), t0())
            .await
            .map_err(|error| TestCaseError::fail(format!("sharing: {error}")))?;
        let mut event = NewEvent::new(
            person_connector_id("mail", owner),
            format!("m{index}"),
            EventKind::parse(EventKind::EMAIL_RECEIVED).unwrap(),
            t0(),
            format!("Message {index}"),
        );
        event.summary = "What was said".into();
        event.url = Some("https://mail.example.com/m".into());
        if let Some(message) = message {
            let id = if index % 2 == 0 {
                format!("<msg{message}@client.example>")
            } else {
                format!("MSG{message}@Client.Example")
            };
            event
                .attributes
                .insert("message_id".into(), AttributeValue::Text(id));
        }
        event.placement = account.map(|account| Placement {
            account,
            reason: MatchReason::Direct,
        });
        let key = event.key.clone();
        let (_, outcomes) = store
            .upsert_events(&[event], t0())
            .await
            .map_err(|error| TestCaseError::fail(format!("capture: {error}")))?;
        match shared {
            Some(existing) => {
                let stored = store.event_by_key(&key).await.unwrap();
                prop_assert_eq!(
                    stored.map(|event| event.id),
                    Some(events[existing].0),
                    "a second sighting of a message is another event"
                );
                prop_assert!(!matches!(outcomes[0], UpsertOutcome::Inserted(_)));
                events[existing].2.push(owner);
            }
            None => {
                let UpsertOutcome::Inserted(id) = outcomes[0] else {
                    return Err(TestCaseError::fail("a captured event was not inserted"));
                };
                if let Some(message) = message {
                    by_message.insert(*message, events.len());
                }
                events.push((id, account, vec![owner]));
            }
        }
    }
    // The level each connection ended with (a later capture of the same owner may
    // have changed it) is the one all its sightings carry.
    let mut result = Vec::new();
    for (id, account, owners) in events {
        let mut sightings = Vec::new();
        for owner in owners {
            let connection = store
                .connections(Some("mail"), Some(owner))
                .await
                .unwrap()
                .remove(0);
            sightings.push(Capture {
                owner,
                sharing: connection.sharing,
            });
        }
        result.push((id, account, sightings));
    }
    Ok(result)
}

#[test]
fn sql_visibility_agrees_with_core_on_sqlite() {
    run_property(
        "SQL visibility disagrees with rapport-core",
        cases(48),
        plan(),
        sqlite_case,
        check_agreement,
    );
}

#[test]
fn sql_visibility_agrees_with_core_on_postgres() {
    run_property(
        "SQL visibility disagrees with rapport-core",
        cases(24),
        plan(),
        postgres_case,
        check_agreement,
    );
}
