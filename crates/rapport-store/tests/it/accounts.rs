//! The accounts repository on both backends: identifiers, refused writes that write
//! nothing, the client tree's rules, search and partial updates.

use crate::support::*;
use chrono::NaiveDate;
use rapport_core::account::{ACCOUNT_DEPTH_MAX, Lifecycle};
use rapport_core::permission::Authority::Operator;
use rapport_core::{AccountId, DomainError};
use rapport_store::{AccountUpdate, Error, Store};

on_both_backends!(
    accounts_carry_domains_external_ids_and_contacts,
    external_ids_identify_one_account,
    refused_accounts_write_nothing,
    the_client_tree_refuses_cycles_and_depth,
    search_finds_names_and_domains,
    updates_change_only_what_is_asked,
);

async fn accounts_carry_domains_external_ids_and_contacts(store: Store) {
    let org = small_org(&store).await;
    let mut new = new_account("Acme Corp", org.mia.id);
    new.domains = vec![domain("acme.com"), domain("ACME.io"), domain("acme.com")];
    new.external_ids = vec![external("stripe:cus_123"), external("zendesk_org:42")];
    new.contacts = vec![
        contact("Jane.Doe@Acme.com", "Jane Doe"),
        contact("ops@acme.com", "Ops"),
    ];
    new.renewal_date = NaiveDate::from_ymd_opt(2027, 3, 31);
    let account = store
        .create_account(Operator, new, Some(org.director.id), t0())
        .await
        .unwrap();
    assert_eq!(account.name, "Acme Corp");
    assert_eq!(
        account
            .domains
            .iter()
            .map(|d| d.as_str())
            .collect::<Vec<_>>(),
        ["acme.com", "acme.io"]
    );
    assert_eq!(
        account
            .external_ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["stripe:cus_123", "zendesk_org:42"]
    );
    assert_eq!(
        account
            .contacts
            .iter()
            .map(|c| c.email.as_str())
            .collect::<Vec<_>>(),
        ["jane.doe@acme.com", "ops@acme.com"]
    );
    assert_eq!(account.owner, Some(org.mia.id));
    assert_eq!(account.renewal_date, NaiveDate::from_ymd_opt(2027, 3, 31));
    // The first owner is on the timeline from the start.
    let timeline = store
        .timeline(&rapport_store::TimelineQuery::account(
            account.id,
            rapport_store::Reader::Operator,
        ))
        .await
        .unwrap();
    assert_eq!(timeline.events.len(), 1);
    assert_eq!(timeline.events[0].event.kind.as_str(), "assignment.changed");
    assert_eq!(timeline.events[0].event.title, "Mia became the owner");

    // Lookups used by identity resolution.
    assert_eq!(
        store
            .account_by_external_id(&external("stripe:cus_123"))
            .await
            .unwrap(),
        Some(account.id)
    );
    assert_eq!(
        store
            .accounts_with_contact(&email("JANE.DOE@acme.com"))
            .await
            .unwrap(),
        [account.id]
    );
    let other = open_account(&store, "Acme Labs", org.max.id, None).await;
    store
        .add_domain(Operator, other, &domain("acme.com"))
        .await
        .unwrap();
    store
        .add_domain(Operator, other, &domain("acme.com"))
        .await
        .unwrap();
    assert_eq!(
        store
            .accounts_with_domain(&domain("acme.com"))
            .await
            .unwrap(),
        [account.id, other],
        "a shared domain lists every candidate"
    );
    assert!(
        store
            .remove_domain(Operator, other, &domain("acme.com"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_domain(Operator, other, &domain("acme.com"))
            .await
            .unwrap()
    );

    // Contacts upsert by email.
    store
        .upsert_contact(
            Operator,
            account.id,
            &contact("jane.doe@acme.com", "Jane D. Doe"),
        )
        .await
        .unwrap();
    let account = store.account(account.id).await.unwrap();
    assert_eq!(account.contacts[0].name.as_deref(), Some("Jane D. Doe"));
    assert!(
        store
            .remove_contact(Operator, account.id, &email("ops@acme.com"))
            .await
            .unwrap()
    );
    assert_eq!(store.account(account.id).await.unwrap().contacts.len(), 1);
}

async fn external_ids_identify_one_account(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    let globex = open_account(&store, "Globex", org.max.id, None).await;
    store
        .add_external_id(Operator, acme, &external("stripe:cus_1"))
        .await
        .unwrap();
    // Idempotent on the same account.
    store
        .add_external_id(Operator, acme, &external("stripe:cus_1"))
        .await
        .unwrap();
    let error = store
        .add_external_id(Operator, globex, &external("stripe:cus_1"))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("the external id stripe:cus_1 already belongs to {acme}: remove it there first")
    );
    assert!(
        store
            .remove_external_id(Operator, acme, &external("stripe:cus_1"))
            .await
            .unwrap()
    );
    store
        .add_external_id(Operator, globex, &external("stripe:cus_1"))
        .await
        .unwrap();
    assert_eq!(
        store
            .account_by_external_id(&external("stripe:cus_1"))
            .await
            .unwrap(),
        Some(globex)
    );
}

async fn refused_accounts_write_nothing(store: Store) {
    let org = small_org(&store).await;
    let acme = open_account(&store, "Acme", org.mia.id, None).await;
    store
        .add_external_id(Operator, acme, &external("stripe:cus_1"))
        .await
        .unwrap();
    let before = store.account_tree().await.unwrap();

    let mut taken = new_account("Copycat", org.max.id);
    taken.domains = vec![domain("copycat.com")];
    taken.external_ids = vec![external("stripe:cus_1")];
    assert!(matches!(
        store.create_account(Operator, taken, None, t0()).await,
        Err(Error::Domain(DomainError::ExternalIdTaken { .. }))
    ));
    let associate_owner = new_account("Junior", org.ava.id);
    assert_eq!(
        store
            .create_account(Operator, associate_owner, None, t0())
            .await
            .unwrap_err()
            .to_string(),
        "staff #5 is an associate: associates support accounts, owners must be a manager, director or VP"
    );
    let mut orphan = new_account("Orphan", org.max.id);
    orphan.parent = Some(AccountId(999));
    assert!(matches!(
        store.create_account(Operator, orphan, None, t0()).await,
        Err(Error::Domain(DomainError::UnknownAccount(AccountId(999))))
    ));
    assert!(matches!(
        store
            .create_account(Operator, new_account("   ", org.max.id), None, t0())
            .await,
        Err(Error::Domain(DomainError::InvalidField {
            field: "account name",
            ..
        }))
    ));
    assert_eq!(store.account_tree().await.unwrap(), before);
    assert!(
        store
            .accounts_with_domain(&domain("copycat.com"))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn the_client_tree_refuses_cycles_and_depth(store: Store) {
    let org = small_org(&store).await;
    let group = open_account(&store, "Group", org.mia.id, None).await;
    let sub = open_account(&store, "Subsidiary", org.mia.id, Some(group)).await;
    let leaf = open_account(&store, "Branch", org.mia.id, Some(sub)).await;
    assert_eq!(store.account_children(group).await.unwrap(), [sub]);
    let error = store
        .set_account_parent(Operator, group, Some(leaf), t0())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{group} cannot have {leaf} as parent: {leaf} is already a subsidiary of {group}")
    );
    assert!(matches!(
        store
            .set_account_parent(Operator, group, Some(group), t0())
            .await,
        Err(Error::Domain(DomainError::AccountParentSelf(_)))
    ));
    // Detach and reattach.
    store
        .set_account_parent(Operator, leaf, None, t0())
        .await
        .unwrap();
    let moved = store
        .set_account_parent(Operator, leaf, Some(group), t0())
        .await
        .unwrap();
    assert_eq!(moved.parent, Some(group));

    // Build a chain right up to the depth limit, then one more is refused.
    let mut parent = open_account(&store, "Level 1", org.max.id, None).await;
    for level in 2..=ACCOUNT_DEPTH_MAX {
        parent = open_account(&store, &format!("Level {level}"), org.max.id, Some(parent)).await;
    }
    let mut too_deep = new_account("Too deep", org.max.id);
    too_deep.parent = Some(parent);
    assert!(matches!(
        store.create_account(Operator, too_deep, None, t0()).await,
        Err(Error::Domain(DomainError::AccountTreeTooDeep { .. }))
    ));
    // Moving a two-level subtree under a deep chain counts its height too.
    assert!(matches!(
        store
            .set_account_parent(Operator, group, Some(parent), t0())
            .await,
        Err(Error::Domain(DomainError::AccountTreeTooDeep { .. }))
    ));
}

async fn search_finds_names_and_domains(store: Store) {
    let org = small_org(&store).await;
    let mut acme = new_account("Acme Corporation", org.mia.id);
    acme.domains = vec![domain("acme.com")];
    let acme = store
        .create_account(Operator, acme, None, t0())
        .await
        .unwrap()
        .id;
    let mut globex = new_account("Globex", org.max.id);
    globex.domains = vec![domain("globex.io")];
    let globex = store
        .create_account(Operator, globex, None, t0())
        .await
        .unwrap()
        .id;
    let percent = open_account(&store, "100% Cotton_Co", org.max.id, None).await;
    let all = [acme, globex, percent];
    assert_eq!(store.search_accounts("ACME", &all).await.unwrap(), [acme]);
    assert_eq!(store.search_accounts("glob", &all).await.unwrap(), [globex]);
    assert_eq!(
        store.search_accounts("globex.io", &all).await.unwrap(),
        [globex]
    );
    assert_eq!(store.search_accounts("corp", &all).await.unwrap(), [acme]);
    // LIKE wildcards in the search text are taken literally.
    assert_eq!(store.search_accounts("0%", &all).await.unwrap(), [percent]);
    assert_eq!(
        store.search_accounts("o_e", &all).await.unwrap(),
        Vec::<AccountId>::new()
    );
    // Only among the given accounts.
    assert!(
        store
            .search_accounts("acme", &[globex])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn updates_change_only_what_is_asked(store: Store) {
    let org = small_org(&store).await;
    let mut new = new_account("Initech", org.mia.id);
    new.renewal_date = NaiveDate::from_ymd_opt(2026, 12, 1);
    let id = store
        .create_account(Operator, new, None, t0())
        .await
        .unwrap()
        .id;
    let update = AccountUpdate {
        lifecycle: Some(Lifecycle::Churned),
        ..AccountUpdate::default()
    };
    let account = store
        .update_account(Operator, id, update, hours(1))
        .await
        .unwrap();
    assert_eq!(account.lifecycle, Lifecycle::Churned);
    assert_eq!(account.name, "Initech");
    assert_eq!(account.renewal_date, NaiveDate::from_ymd_opt(2026, 12, 1));
    let update = AccountUpdate {
        name: Some("Initech Ltd".into()),
        renewal_date: Some(None),
        ..AccountUpdate::default()
    };
    let account = store
        .update_account(Operator, id, update, hours(2))
        .await
        .unwrap();
    assert_eq!(
        (account.name.as_str(), account.renewal_date),
        ("Initech Ltd", None)
    );
    assert!(matches!(
        store
            .update_account(Operator, AccountId(404), AccountUpdate::default(), hours(3))
            .await,
        Err(Error::Domain(DomainError::UnknownAccount(AccountId(404))))
    ));
}
