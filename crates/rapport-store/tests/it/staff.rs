//! Staff records on both backends: the hierarchy rules, unique emails, level changes,
//! deactivation, and the reporting line in SQL agreeing with core.

use crate::support::*;
use rapport_core::DomainError;
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff};
use rapport_store::{Error, StaffUpdate, Store};

on_both_backends!(
    hierarchy_rules_are_enforced,
    staff_emails_are_unique,
    level_changes_keep_the_hierarchy_valid,
    deactivation_needs_a_clean_handover,
    reporting_subtree_matches_core,
);

fn domain_error(result: Result<impl std::fmt::Debug, Error>) -> DomainError {
    match result {
        Err(Error::Domain(error)) => error,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

async fn hierarchy_rules_are_enforced(store: Store) {
    let org = small_org(&store).await;
    let before = store.list_staff().await.unwrap();
    let attempt = |level, reports_to| {
        let store = store.clone();
        async move {
            store
                .create_staff(
                    NewStaff {
                        name: "New Person".into(),
                        email: email("new@rapport.test"),
                        level,
                        reports_to,
                        is_admin: false,
                    },
                    t0(),
                )
                .await
        }
    };
    assert_eq!(
        domain_error(attempt(Level::Manager, Some(org.max.id)).await),
        DomainError::ReportsToNotSenior {
            staff_level: Level::Manager,
            manager_level: Level::Manager
        }
    );
    assert_eq!(
        domain_error(attempt(Level::Vp, Some(org.vp.id)).await),
        DomainError::VpHasManager
    );
    assert_eq!(
        domain_error(attempt(Level::Associate, Some(rapport_core::StaffId(999))).await),
        DomainError::UnknownStaff(rapport_core::StaffId(999))
    );
    let message = attempt(Level::Director, Some(org.ava.id))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        message,
        "a director cannot report to an associate: reports_to must point at someone more senior (associate → manager → director → VP)"
    );
    // Nothing partial was written by any refusal.
    assert_eq!(store.list_staff().await.unwrap(), before);
    // An associate may report straight to a director (strictly upward, not adjacent).
    attempt(Level::Associate, Some(org.director.id))
        .await
        .unwrap();
}

async fn staff_emails_are_unique(store: Store) {
    let org = small_org(&store).await;
    let error = store
        .create_staff(
            NewStaff {
                name: "Mia Again".into(),
                email: email("MIA@rapport.test"),
                level: Level::Associate,
                reports_to: Some(org.mia.id),
                is_admin: false,
            },
            t0(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the email mia@rapport.test already belongs to another staff member"
    );
    let found = store
        .staff_by_email(&email("mia@rapport.test"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, org.mia.id);
}

async fn level_changes_keep_the_hierarchy_valid(store: Store) {
    let org = small_org(&store).await;
    // Mia has Ava reporting to her: demoting Mia to associate would strand Ava.
    let demote = StaffUpdate {
        level: Some(Level::Associate),
        ..StaffUpdate::default()
    };
    assert!(matches!(
        domain_error(store.update_staff(org.mia.id, demote, hours(1)).await),
        DomainError::LevelChangeStrandsReport { .. }
    ));
    // Moving Ava under Max, then promoting Max to director under the VP, is fine.
    let move_ava = StaffUpdate {
        reports_to: Some(Some(org.max.id)),
        ..StaffUpdate::default()
    };
    store
        .update_staff(org.ava.id, move_ava, hours(1))
        .await
        .unwrap();
    let promote = StaffUpdate {
        level: Some(Level::Director),
        reports_to: Some(Some(org.vp.id)),
        ..StaffUpdate::default()
    };
    let max = store
        .update_staff(org.max.id, promote, hours(2))
        .await
        .unwrap();
    assert_eq!(
        (max.level, max.reports_to),
        (Level::Director, Some(org.vp.id))
    );
    // The VP cannot be given a manager.
    let vp_manager = StaffUpdate {
        reports_to: Some(Some(org.director.id)),
        ..StaffUpdate::default()
    };
    assert_eq!(
        domain_error(store.update_staff(org.vp.id, vp_manager, hours(3)).await),
        DomainError::VpHasManager
    );
    // An owner cannot be demoted to associate while owning accounts.
    open_account(&store, "Globex", org.mia.id, None).await;
    let move_ava_back = StaffUpdate {
        reports_to: Some(Some(org.director.id)),
        ..StaffUpdate::default()
    };
    store
        .update_staff(org.ava.id, move_ava_back, hours(4))
        .await
        .unwrap();
    let demote = StaffUpdate {
        level: Some(Level::Associate),
        ..StaffUpdate::default()
    };
    assert_eq!(
        domain_error(store.update_staff(org.mia.id, demote, hours(5)).await),
        DomainError::AssociateCannotOwn(org.mia.id)
    );
    assert_eq!(store.staff(org.mia.id).await.unwrap().level, Level::Manager);
}

async fn deactivation_needs_a_clean_handover(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.max.id, None).await;
    store
        .add_support(Operator, acme, org.ava.id, None, hours(1))
        .await
        .unwrap();
    // Max owns Acme: refused, and nothing changes.
    let error = store
        .deactivate_staff(org.max.id, Some(org.director.id), hours(2))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "staff #4 still owns 1 account(s): reassign them to another owner before deactivating"
    );
    assert!(store.staff(org.max.id).await.unwrap().active);
    // Mia has Ava reporting: refused.
    assert!(matches!(
        domain_error(store.deactivate_staff(org.mia.id, None, hours(2)).await),
        DomainError::StillHasReports { count: 1, .. }
    ));
    // Ava only supports: deactivation ends her support and records it on the timeline.
    let ava = store
        .deactivate_staff(org.ava.id, Some(org.mia.id), hours(3))
        .await
        .unwrap();
    assert!(!ava.active);
    let account = store.account(acme).await.unwrap();
    assert!(account.supporters.is_empty());
    let history = store.assignment_history(acme).await.unwrap();
    let support = history.iter().find(|row| row.staff == org.ava.id).unwrap();
    assert_eq!(support.valid_to, Some(hours(3)));
    let timeline = store
        .timeline(&rapport_store::TimelineQuery::account(
            acme,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    assert_eq!(
        timeline.events[0].event.title,
        "Ava stopped supporting (deactivated)"
    );
    // Deactivated people cannot be given work or managers.
    assert_eq!(
        domain_error(
            store
                .add_support(Operator, acme, org.ava.id, None, hours(4))
                .await
        ),
        DomainError::StaffInactive(org.ava.id)
    );
    // Once Max's book is handed over, he can go.
    store
        .reassign_owner(Operator, acme, org.mia.id, None, hours(5))
        .await
        .unwrap();
    store
        .deactivate_staff(org.max.id, None, hours(6))
        .await
        .unwrap();
    let reactivated = store.reactivate_staff(org.ava.id, hours(7)).await.unwrap();
    assert!(reactivated.active);
}

async fn reporting_subtree_matches_core(store: Store) {
    let org = small_org(&store).await;
    let chart = store.org_chart().await.unwrap();
    chart.validate().unwrap();
    for person in [&org.vp, &org.director, &org.mia, &org.max, &org.ava] {
        assert_eq!(
            store.reporting_subtree(person.id).await.unwrap(),
            chart.subtree(person.id),
            "{}",
            person.name
        );
    }
    assert_eq!(store.reporting_subtree(org.vp.id).await.unwrap().len(), 5);
}
