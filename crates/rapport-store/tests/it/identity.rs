//! Property test: identity resolution through the store — at ingest, and again for
//! waiting events as identities are added — agrees with `rapport_core::matching` (itself
//! proven against a plain model in core), on both backends.

use crate::support::*;
use proptest::prelude::*;
use rapport_core::AccountId;
use rapport_core::account::{Domain, EmailAddress, ExternalId};
use rapport_core::matching::{MatchIndex, Resolution};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::Level;
use rapport_core::timeline::{AccountHints, DedupeKey, EventKind, NewEvent, Placement};
use rapport_store::Store;

#[derive(Debug, Clone)]
enum Identity {
    External(usize, ExternalId),
    Contact(usize, EmailAddress),
    Domain(usize, Domain),
}

#[derive(Debug, Clone)]
struct Plan {
    accounts: usize,
    before: Vec<Identity>,
    events: Vec<AccountHints>,
    after: Vec<Identity>,
}

fn arb_domain() -> impl Strategy<Value = Domain> {
    prop_oneof![
        Just("acme.example"),
        Just("eu.acme.example"),
        Just("globex.example"),
        Just("gmail.com"),
    ]
    .prop_map(|name| Domain::parse(name).unwrap())
}

fn arb_email() -> impl Strategy<Value = EmailAddress> {
    (prop_oneof![Just("ann"), Just("bob")], arb_domain())
        .prop_map(|(user, domain)| EmailAddress::parse(&format!("{user}@{domain}")).unwrap())
}

fn arb_external_id() -> impl Strategy<Value = ExternalId> {
    // `cus_1` and `cus_10` differ only by a suffix: the re-match must not confuse them.
    prop_oneof![Just("cus_1"), Just("cus_10"), Just("cus_2")]
        .prop_map(|id| ExternalId::new("stripe", id).unwrap())
}

fn arb_identity(accounts: usize) -> impl Strategy<Value = Identity> {
    prop_oneof![
        (0..accounts, arb_external_id()).prop_map(|(a, id)| Identity::External(a, id)),
        (0..accounts, arb_email()).prop_map(|(a, email)| Identity::Contact(a, email)),
        (0..accounts, arb_domain()).prop_map(|(a, domain)| Identity::Domain(a, domain)),
    ]
}

fn arb_hints() -> impl Strategy<Value = AccountHints> {
    (
        prop::collection::vec(arb_external_id(), 0..2),
        prop::collection::vec(arb_email(), 0..3),
        prop::collection::vec(arb_domain(), 0..2),
    )
        .prop_map(|(external_ids, emails, domains)| AccountHints {
            external_ids,
            emails,
            domains,
        })
}

fn plan() -> impl Strategy<Value = Plan> {
    (1usize..4).prop_flat_map(|accounts| {
        (
            prop::collection::vec(arb_identity(accounts), 0..5),
            prop::collection::vec(arb_hints(), 1..7),
            prop::collection::vec(arb_identity(accounts), 0..6),
        )
            .prop_map(move |(before, events, after)| Plan {
                accounts,
                before,
                events,
                after,
            })
    })
}

/// Applies an identity to the store and, if the store accepted it, to the model.
async fn add(store: &Store, model: &mut MatchIndex, accounts: &[AccountId], identity: &Identity) {
    match identity {
        Identity::External(a, id) => {
            // An external id names one account: the store refuses a second holder.
            if store
                .add_external_id(Operator, accounts[*a], id)
                .await
                .is_ok()
            {
                model.add_external_id(accounts[*a], id.clone());
            }
        }
        Identity::Contact(a, email) => {
            store
                .upsert_contact(Operator, accounts[*a], &contact(email.as_str(), "Someone"))
                .await
                .unwrap();
            model.add_contact(accounts[*a], email.clone());
        }
        Identity::Domain(a, domain) => {
            store
                .add_domain(Operator, accounts[*a], domain)
                .await
                .unwrap();
            model.add_domain(accounts[*a], domain.clone());
        }
    }
}

type Expected = (Option<Placement>, Vec<AccountId>);

fn expected(resolution: Resolution) -> Expected {
    match resolution {
        Resolution::Matched(placement) => (Some(placement), Vec::new()),
        Resolution::Ambiguous { candidates, .. } => (None, candidates),
        Resolution::Unmatched => (None, Vec::new()),
    }
}

async fn check(store: &Store, plan: &Plan) -> Result<(), TestCaseError> {
    let vp = hire(store, "Vera", Level::Vp, None).await;
    let mut accounts = Vec::new();
    for n in 0..plan.accounts {
        accounts.push(open_account(store, &format!("Client {n}"), vp.id, None).await);
    }
    let mut model = MatchIndex::new();
    for identity in &plan.before {
        add(store, &mut model, &accounts, identity).await;
    }
    let events: Vec<NewEvent> = plan
        .events
        .iter()
        .enumerate()
        .map(|(n, hints)| {
            let mut event = NewEvent::new(
                "feed",
                format!("e{n}"),
                EventKind::parse("email.received").unwrap(),
                hours(n as i64),
                format!("event {n}"),
            );
            event.hints = hints.clone();
            event
        })
        .collect();
    store.upsert_events(&events, hours(10)).await.unwrap();
    let mut model_events: Vec<Expected> = plan
        .events
        .iter()
        .map(|hints| expected(model.resolve(hints)))
        .collect();
    for identity in &plan.after {
        add(store, &mut model, &accounts, identity).await;
        // Placed events stay put; waiting ones are resolved again.
        for (hints, state) in plan.events.iter().zip(model_events.iter_mut()) {
            if state.0.is_none() {
                *state = expected(model.resolve(hints));
            }
        }
    }
    for (n, want) in model_events.iter().enumerate() {
        let stored = store
            .event_by_key(&DedupeKey {
                connector: "feed".into(),
                source_id: format!("e{n}"),
            })
            .await
            .unwrap()
            .unwrap();
        prop_assert_eq!(
            (&stored.event.placement, &stored.match_candidates),
            (&want.0, &want.1),
            "event e{} with hints {:?}",
            n,
            plan.events[n]
        );
    }
    Ok(())
}

#[test]
fn store_resolution_agrees_with_core_on_sqlite() {
    run_property(
        "identity resolution in the store disagrees with rapport-core",
        cases(48),
        plan(),
        sqlite_case,
        check,
    );
}

#[test]
fn store_resolution_agrees_with_core_on_postgres() {
    run_property(
        "identity resolution in the store disagrees with rapport-core",
        cases(16),
        plan(),
        postgres_case,
        check,
    );
}
