//! The SQL visibility queries must agree with `rapport_core::visibility` everywhere.

use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use rapport_core::account::AccountForest;
use rapport_core::assignment::{Role, check_history};
use rapport_core::staff::{Level, NewStaff, OrgChart, Staff};
use rapport_core::visibility::World;
use rapport_core::{AccountId, StaffId};
use rapport_store::{Error, Store};
use std::collections::BTreeSet;

on_both_backends!(the_rule_in_a_readable_org);

/// The DESIGN.md rule, walked through by hand on the small org.
async fn the_rule_in_a_readable_org(store: Store) {
    let org = small_org(&store).await;
    let group = open_account(&store, "Group", org.mia.id, None).await;
    let subsidiary = open_account(&store, "Group Subsidiary", org.max.id, Some(group)).await;
    let maxs = open_account(&store, "Max's client", org.max.id, None).await;
    let supported = open_account(&store, "Supported", org.max.id, None).await;
    store
        .add_support(supported, org.ava.id, None, hours(1))
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
        .reassign_owner(maxs, org.mia.id, None, hours(3))
        .await
        .unwrap();
    assert!(!store.can_see(org.max.id, maxs, hours(4)).await.unwrap());
    assert!(store.can_see(org.max.id, maxs, hours(2)).await.unwrap());
    // Strangers and unknown accounts see nothing.
    assert!(visible(StaffId(999)).await.is_empty());
    assert!(!store.can_see(org.vp.id, AccountId(999), now).await.unwrap());
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
    )
        .prop_map(|(staff, accounts, ops, deactivate)| Plan {
            staff,
            accounts,
            ops,
            deactivate,
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
            .create_account(new, None, t0())
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
                    .reassign_owner(pick_account(account), pick_staff(staff), None, at)
                    .await
                    .map(|_| ()),
            )?,
            Op::AddSupport { account, staff } => skip_refusals(
                store
                    .add_support(pick_account(account), pick_staff(staff), None, at)
                    .await
                    .map(|_| ()),
            )?,
            Op::EndSupport { account, staff } => skip_refusals(
                store
                    .end_support(pick_account(account), pick_staff(staff), None, at)
                    .await
                    .map(|_| ()),
            )?,
            Op::Reparent { account, parent } => skip_refusals(
                store
                    .set_account_parent(
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
    Ok(())
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
