//! Owners and supporters on both backends: handoffs recorded on the timeline, all-or-
//! nothing bulk moves, one owner under concurrent handoffs, history that only moves
//! forward.

use crate::support::*;
use rapport_core::assignment::{Role, check_history};
use rapport_core::permission::Authority::Operator;
use rapport_core::timeline::AttributeValue;
use rapport_core::{AccountId, DomainError};
use rapport_store::{Error, Store, TimelineQuery};

on_both_backends!(
    a_handoff_closes_opens_and_records,
    bulk_reassignment_is_all_or_nothing,
    a_book_handoff_moves_only_what_its_owner_still_owns,
    concurrent_handoffs_leave_exactly_one_owner,
    support_rules,
    history_only_moves_forward,
);

async fn a_handoff_closes_opens_and_records(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let assignment = store
        .reassign_owner(Operator, acme, org.max.id, Some(org.director.id), hours(24))
        .await
        .unwrap();
    assert_eq!(
        (assignment.staff, assignment.role),
        (org.max.id, Role::Owner)
    );

    let history = store.assignment_history(acme).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].staff, history[0].valid_to),
        (org.mia.id, Some(hours(24)))
    );
    assert_eq!(
        (history[1].staff, history[1].valid_from, history[1].valid_to),
        (org.max.id, hours(24), None)
    );
    check_history(&history).unwrap();
    assert_eq!(store.account(acme).await.unwrap().owner, Some(org.max.id));
    assert_eq!(
        store.owned_accounts(org.mia.id).await.unwrap(),
        Vec::<AccountId>::new()
    );
    assert_eq!(store.owned_accounts(org.max.id).await.unwrap(), [acme]);

    let page = store
        .timeline(&TimelineQuery::account(
            acme,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    let handoff = &page.events[0].event;
    assert_eq!(handoff.kind.as_str(), "assignment.changed");
    assert_eq!(handoff.title, "Handed off from Mia to Max");
    assert_eq!(handoff.occurred_at, hours(24));
    assert_eq!(handoff.actor.as_ref().unwrap().staff, Some(org.director.id));
    assert_eq!(
        handoff.attributes.get("from_staff_id"),
        Some(&AttributeValue::Integer(org.mia.id.0))
    );
    assert_eq!(
        handoff.attributes.get("to_name"),
        Some(&AttributeValue::Text("Max".into()))
    );

    // Reassigning to the current owner changes nothing and says so.
    assert_eq!(
        store
            .reassign_owner(Operator, acme, org.max.id, None, hours(25))
            .await
            .unwrap_err()
            .to_string(),
        format!("staff #4 already owns {acme}")
    );
    // Associates cannot own.
    assert!(matches!(
        store
            .reassign_owner(Operator, acme, org.ava.id, None, hours(25))
            .await,
        Err(Error::Domain(DomainError::AssociateCannotOwn(_)))
    ));
    assert_eq!(store.assignment_history(acme).await.unwrap().len(), 2);
}

async fn bulk_reassignment_is_all_or_nothing(store: Store) {
    let org = small_org(&store).await;
    let a = open_account(&store, "A", org.mia.id, None).await;
    let b = open_account(&store, "B", org.mia.id, None).await;
    let c = open_account(&store, "C", org.max.id, None).await;
    // C is already Max's: the whole batch is refused and A and B stay with Mia.
    let refused = store
        .reassign_owners(Operator, &[a, b, c], org.max.id, None, hours(1))
        .await;
    assert!(matches!(
        refused,
        Err(Error::Domain(DomainError::AlreadyOwner { .. }))
    ));
    assert_eq!(store.owned_accounts(org.mia.id).await.unwrap(), [a, b]);
    assert_eq!(store.assignment_history(a).await.unwrap().len(), 1);
    // A departing manager's whole book moves at once.
    let book = store.owned_accounts(org.mia.id).await.unwrap();
    let moved = store
        .reassign_owners(Operator, &book, org.max.id, None, hours(2))
        .await
        .unwrap();
    assert_eq!(moved.len(), 2);
    assert_eq!(store.owned_accounts(org.max.id).await.unwrap(), [a, b, c]);
}

/// A handoff of someone's book names whose accounts move; one moved elsewhere after the
/// book was read (by another person's change) refuses the whole handoff, in its
/// transaction, and the other change stands.
async fn a_book_handoff_moves_only_what_its_owner_still_owns(store: Store) {
    let org = small_org(&store).await;
    let a = open_account(&store, "A", org.mia.id, None).await;
    let b = open_account(&store, "B", org.mia.id, None).await;
    let book = store.owned_accounts(org.mia.id).await.unwrap();
    // Meanwhile B goes to the director.
    store
        .reassign_owner(Operator, b, org.director.id, None, hours(1))
        .await
        .unwrap();
    let refused = store
        .hand_off(Operator, org.mia.id, &book, org.max.id, None, hours(2))
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Domain(DomainError::NotAssigned { account, staff, .. }))
                if account == b && staff == org.mia.id
        ),
        "{refused:?}"
    );
    assert_eq!(store.owned_accounts(org.mia.id).await.unwrap(), [a]);
    assert_eq!(store.owned_accounts(org.director.id).await.unwrap(), [b]);
    // What she still owns moves.
    let moved = store
        .hand_off(Operator, org.mia.id, &[a], org.max.id, None, hours(3))
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(store.owned_accounts(org.max.id).await.unwrap(), [a]);
}

async fn concurrent_handoffs_leave_exactly_one_owner(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let mut handles = Vec::new();
    for (round, target) in [org.max.id, org.director.id, org.vp.id, org.max.id]
        .into_iter()
        .enumerate()
    {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .reassign_owner(Operator, acme, target, None, hours(1 + round as i64))
                .await
        }));
    }
    let mut succeeded = 0;
    for handle in handles {
        match handle.await.unwrap() {
            Ok(_) => succeeded += 1,
            // Losing a race is a clean, retryable refusal, never a second owner.
            Err(Error::Conflict(_)) | Err(Error::Domain(_)) => {}
            Err(other) => panic!("unexpected failure: {other}"),
        }
    }
    assert!(succeeded >= 1);
    let history = store.assignment_history(acme).await.unwrap();
    check_history(&history).unwrap();
    let current: Vec<_> = history
        .iter()
        .filter(|row| row.valid_to.is_none())
        .collect();
    assert_eq!(current.len(), 1, "exactly one current owner: {history:?}");
    assert_eq!(
        store.account(acme).await.unwrap().owner,
        Some(current[0].staff)
    );
}

async fn support_rules(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    store
        .add_support(Operator, acme, org.ava.id, Some(org.mia.id), hours(1))
        .await
        .unwrap();
    assert_eq!(
        store
            .add_support(Operator, acme, org.ava.id, None, hours(2))
            .await
            .unwrap_err()
            .to_string(),
        format!("staff #5 is already assigned to {acme} as support")
    );
    assert!(matches!(
        store
            .add_support(Operator, acme, org.mia.id, None, hours(2))
            .await,
        Err(Error::Domain(DomainError::AlreadyAssigned {
            role: Role::Owner,
            ..
        }))
    ));
    assert_eq!(store.account(acme).await.unwrap().supporters, [org.ava.id]);
    let ended = store
        .end_support(Operator, acme, org.ava.id, None, hours(3))
        .await
        .unwrap();
    assert_eq!(ended.valid_to, Some(hours(3)));
    assert!(matches!(
        store
            .end_support(Operator, acme, org.ava.id, None, hours(4))
            .await,
        Err(Error::Domain(DomainError::NotAssigned { .. }))
    ));
    // A supporter who becomes owner stops being a supporter at the same instant.
    store
        .add_support(Operator, acme, org.max.id, None, hours(5))
        .await
        .unwrap();
    store
        .reassign_owner(Operator, acme, org.max.id, None, hours(6))
        .await
        .unwrap();
    let account = store.account(acme).await.unwrap();
    assert_eq!(
        (account.owner, account.supporters),
        (Some(org.max.id), vec![])
    );
    check_history(&store.assignment_history(acme).await.unwrap()).unwrap();
    let kinds: Vec<String> = store
        .timeline(&TimelineQuery::account(
            acme,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|event| event.event.title)
        .collect();
    assert_eq!(
        kinds,
        [
            "Handed off from Mia to Max",
            "Max started supporting",
            "Ava stopped supporting",
            "Ava started supporting",
            "Mia became the owner",
        ]
    );
}

async fn history_only_moves_forward(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    store
        .reassign_owner(Operator, acme, org.max.id, None, hours(10))
        .await
        .unwrap();
    let error = store
        .reassign_owner(Operator, acme, org.director.id, None, hours(5))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("changes cannot be backdated"),
        "{error}"
    );
    assert_eq!(store.assignment_history(acme).await.unwrap().len(), 2);
}
